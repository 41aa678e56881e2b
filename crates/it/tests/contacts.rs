//! Contact lists over real sockets: `SYN` per dialect (and nothing resent when the client is up
//! to date), `ADD`/`ADC`/`REM` with the peer told at once, the protocol's error codes, and
//! durability across a `kill -9` of the real binary.

#![allow(clippy::unwrap_used)]

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use msgr_it::{ServerOptions, TIMEOUT};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;

/// Runs each scenario once per dialect: the pre-MSNP8 representative (MSNP7) and MSNP8–12.
macro_rules! per_dialect {
    ($scenario:ident: $($name:ident => $dialect:expr),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() -> Result<()> {
                $scenario($dialect).await
            }
        )+
    };
}

fn matches(pattern: &str, line: &str) -> bool {
    msgr_it::transcript::line_matches(pattern, line)
}

fn ensure_lines(got: &[String], want: &[String]) -> Result<()> {
    ensure!(
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| matches(w, g)),
        "expected\n{want:#?}\ngot\n{got:#?}"
    );
    Ok(())
}

/// The full `SYN 7 0` answer of alice, whose FL holds only bob (added at version 1).
fn alice_list(d: Dialect) -> Vec<String> {
    let v: Vec<&str> = match d {
        Dialect::Msnp7 => vec![
            "SYN 7 1",
            "GTC 7 1 A",
            "BLP 7 1 AL",
            "PRP 7 1 PHH",
            "PRP 7 1 PHW",
            "PRP 7 1 PHM",
            "PRP 7 1 MOB N",
            "PRP 7 1 MBE N",
            "LSG 7 1 1 1 0 Other%20Contacts 0",
            "LST 7 FL 1 1 1 bob@x.com Bob%20N 0",
            // bob's own phones (none set), as MSNP5-7 list every one after each FL entry.
            "BPR 1 bob@x.com PHH",
            "BPR 1 bob@x.com PHW",
            "BPR 1 bob@x.com PHM",
            "BPR 1 bob@x.com MOB N",
            "LST 7 AL 1 0 0",
            "LST 7 BL 1 0 0",
            "LST 7 RL 1 0 0",
        ],
        Dialect::Msnp8 | Dialect::Msnp9 => vec![
            "SYN 7 1 1 1",
            "GTC A",
            "BLP AL",
            "LSG 0 Other%20Contacts 0",
            "LST bob@x.com Bob%20N 1 0",
        ],
        Dialect::Msnp10 | Dialect::Msnp11 => vec![
            "SYN 7 1 1 1 0",
            "GTC A",
            "BLP AL",
            "PRP MFN Alice%20N",
            "LST N=bob@x.com F=Bob%20N C={any} 1",
        ],
        // MSNP12 adds the contact's network (1) after the list bits.
        _ => vec![
            "SYN 7 1 1 1 0",
            "GTC A",
            "BLP AL",
            "PRP MFN Alice%20N",
            "LST N=bob@x.com F=Bob%20N C={any} 1 1",
        ],
    };
    v.into_iter().map(str::to_owned).collect()
}

/// The `LST` line for alice on bob's reverse list.
fn bob_rl_entry(d: Dialect) -> &'static str {
    match d {
        Dialect::Msnp7 => "LST 3 RL 1 1 1 alice@x.com Alice%20N",
        Dialect::Msnp8 | Dialect::Msnp9 => "LST alice@x.com Alice%20N 8",
        Dialect::Msnp10 | Dialect::Msnp11 => "LST N=alice@x.com 8",
        _ => "LST N=alice@x.com 8 1",
    }
}

async fn sync_and_reverse_list(d: Dialect) -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, d, "alice").await?;
    let mut bob = user(&srv, d, "bob").await?;

    // A fresh account is at version 0, but a client that says 0 has no copy: it gets the
    // whole (empty) list in the long form, counts included (msn-pecan reads them).
    let fresh = syn(&mut alice, d, 6, 0).await?;
    let long_syn = match d {
        Dialect::Msnp7 => "SYN 6 0",
        Dialect::Msnp8 | Dialect::Msnp9 => "SYN 6 0 0 1",
        _ => "SYN 6 0 0 0 0",
    };
    ensure!(
        fresh.first().map(String::as_str) == Some(long_syn)
            && fresh.iter().any(|l| l.starts_with("GTC "))
            && fresh.iter().any(|l| l.starts_with("BLP ")),
        "a fresh account's SYN 0: {fresh:?}"
    );

    let reply = add(&mut alice, d, 10, "FL", "bob").await?;
    bob.expect_match(&rl_notice(d, "alice")).await?;
    ensure_lines(&syn(&mut alice, d, 7, 0).await?, &alice_list(d))?;
    // Up to date again: only the SYN line.
    let again = if d >= Dialect::Msnp10 {
        "SYN 8 1 1"
    } else {
        "SYN 8 1"
    };
    ensure_lines(&syn(&mut alice, d, 8, 1).await?, &[again.to_owned()])?;

    let bob_list = syn(&mut bob, d, 3, 0).await?;
    ensure!(
        bob_list.iter().any(|l| l == bob_rl_entry(d)),
        "bob's list {bob_list:?} lacks {:?}",
        bob_rl_entry(d)
    );

    // Removing bob takes alice off bob's reverse list, and bob hears it.
    let guid = reply
        .split(' ')
        .find_map(|t| t.strip_prefix("C="))
        .map(str::to_owned);
    rem(&mut alice, d, 11, "FL", "bob", guid.as_deref()).await?;
    if d >= Dialect::Msnp10 {
        bob.expect_line("REM 0 RL alice@x.com").await?;
    } else {
        bob.expect_match("REM 0 RL {digits} alice@x.com").await?;
    }
    quiet(&mut alice).await?;
    quiet(&mut bob).await
}

per_dialect!(sync_and_reverse_list:
    sync_msnp7 => Dialect::Msnp7,
    sync_msnp8 => Dialect::Msnp8,
    sync_msnp9 => Dialect::Msnp9,
    sync_msnp10 => Dialect::Msnp10,
    sync_msnp11 => Dialect::Msnp11,
    sync_msnp12 => Dialect::Msnp12,
);

/// Sends `line` and expects `code trid`.
async fn refused(c: &mut msgr_it::Conn, line: &str, code: u16) -> Result<()> {
    c.send(line).await?;
    let trid = line.split(' ').nth(1).unwrap_or("0");
    c.expect_line(&format!("{code} {trid}"))
        .await
        .with_context(|| format!("after {line:?}"))
}

async fn errors(d: Dialect) -> Result<()> {
    let srv = server_with(ServerOptions {
        limits: LimitsConfig {
            max_groups: 2,
            max_forward: 1,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;
    let mut alice = user(&srv, d, "alice").await?;
    let _bob = user(&srv, d, "bob").await?;
    srv.add_account(&email("carol"), PASSWORD, "Carol").await?;
    let v10 = d >= Dialect::Msnp10;

    // 205 / 208: no such account.
    let line = if v10 {
        "ADC 10 FL N=nobody@x.com F=Nobody".to_owned()
    } else {
        "ADD 10 FL nobody@x.com Nobody".to_owned()
    };
    refused(&mut alice, &line, no_such_user(d)).await?;
    // 201: not a Passport name; FLN and unknown statuses.
    let line = if v10 {
        "ADC 11 FL N=not-an-email F=X"
    } else {
        "ADD 11 FL not-an-email X"
    };
    refused(&mut alice, line, 201).await?;
    refused(&mut alice, "CHG 12 FLN 0", 201).await?;
    refused(&mut alice, "CHG 13 XYZ 0", 201).await?;

    // 215: already there.
    let reply = add(&mut alice, d, 14, "FL", "bob").await?;
    let line = if v10 {
        "ADC 15 FL N=bob@x.com F=Bob"
    } else {
        "ADD 15 FL bob@x.com Bob"
    };
    refused(&mut alice, line, 215).await?;
    // 210: the forward list is full (max_forward = 1 here).
    let line = if v10 {
        "ADC 150 FL N=carol@x.com F=Carol"
    } else {
        "ADD 150 FL carol@x.com Carol"
    };
    refused(&mut alice, line, 210).await?;
    // 209: a display name no client could show.
    let line = if v10 {
        "PRP 151 MFN bad%01name"
    } else {
        "REA 151 alice@x.com bad%01name"
    };
    refused(&mut alice, line, 209).await?;
    // 216: not on the list.
    refused(&mut alice, "REM 16 AL bob@x.com", 216).await?;
    // 219: AL and BL exclude each other.
    add(&mut alice, d, 17, "BL", "bob").await?;
    let line = if v10 {
        "ADC 18 AL N=bob@x.com"
    } else {
        "ADD 18 AL bob@x.com Bob%20N"
    };
    refused(&mut alice, line, 219).await?;
    // The mode already in force is not an error (218 made libpurple reconnect in a loop):
    // it is echoed like a change, at the current list version.
    for (line, want) in [
        ("BLP 19 AL", "BLP 19 {digits} AL"),
        ("GTC 20 A", "GTC 20 {digits} A"),
    ] {
        alice.send(line).await?;
        let want = if v10 {
            want.replace(" {digits}", "")
        } else {
            want.to_owned()
        };
        alice.expect_match(&want).await?;
    }

    // Groups: 229 name too long, 231 unusable name, 223 too many (max_groups = 2 here), 224
    // no such group, 225 not in that group, 230 group 0.
    let long = "A".repeat(62);
    refused(&mut alice, &format!("ADG 21 {long}"), 229).await?;
    let bad_name = if v10 {
        "ADG 210 a%09b"
    } else {
        "ADG 210 a%09b 0"
    };
    refused(&mut alice, bad_name, 231).await?;
    let adg = if v10 { "ADG 22 Work" } else { "ADG 22 Work 0" };
    alice.send(adg).await?;
    let created = if v10 {
        alice.expect_match("ADG 22 Work {any}").await?
    } else {
        alice.expect_match("ADG 22 {digits} Work 1 0").await?
    };
    let second = if v10 { "ADG 23 More" } else { "ADG 23 More 0" };
    refused(&mut alice, second, 223).await?;
    if v10 {
        let bob_guid = reply
            .split(' ')
            .find_map(|t| t.strip_prefix("C="))
            .context("no C= in the ADC reply")?;
        refused(
            &mut alice,
            &format!("ADC 24 FL C={bob_guid} 01234567-89ab-cdef-0123-456789abcdef"),
            224,
        )
        .await?;
        // Into the group that does exist, then rename and remove it.
        let gguid = created.rsplit(' ').next().unwrap_or_default().to_owned();
        alice
            .send(&format!("ADC 25 FL C={bob_guid} {gguid}"))
            .await?;
        alice
            .expect_line(&format!("ADC 25 FL C={bob_guid} {gguid}"))
            .await?;
        // Out of the group (bob stays on the FL), and once more: 225.
        alice
            .send(&format!("REM 251 FL {bob_guid} {gguid}"))
            .await?;
        alice
            .expect_line(&format!("REM 251 FL {bob_guid} {gguid}"))
            .await?;
        refused(&mut alice, &format!("REM 252 FL {bob_guid} {gguid}"), 225).await?;
        alice.send(&format!("REG 26 {gguid} Mates")).await?;
        alice.expect_line(&format!("REG 26 {gguid} Mates")).await?;
        alice.send(&format!("RMG 27 {gguid}")).await?;
        alice.expect_line(&format!("RMG 27 {gguid}")).await?;
    } else {
        refused(&mut alice, "ADD 24 FL bob@x.com Bob%20N 9", 224).await?;
        refused(&mut alice, "RMG 25 0", 230).await?;
        alice.send("REG 26 1 Mates 0").await?;
        alice.expect_match("REG 26 {digits} 1 Mates 0").await?;
        alice.send("ADD 27 FL bob@x.com Bob%20N 1").await?;
        alice
            .expect_match("ADD 27 FL {digits} bob@x.com Bob%20N 1")
            .await?;
        alice.send("REM 28 FL bob@x.com 1").await?;
        alice.expect_match("REM 28 FL {digits} bob@x.com 1").await?;
        refused(&mut alice, "REM 281 FL bob@x.com 1", 225).await?;
        alice.send("RMG 29 1").await?;
        alice.expect_match("RMG 29 {digits} 1").await?;
    }
    quiet(&mut alice).await
}

// MSNP7 has groups (MSNP2–6 do not), so it is the pre-MSNP8 representative here.
per_dialect!(errors:
    errors_msnp7 => Dialect::Msnp7,
    errors_msnp8 => Dialect::Msnp8,
    errors_msnp9 => Dialect::Msnp9,
    errors_msnp10 => Dialect::Msnp10,
    errors_msnp11 => Dialect::Msnp11,
    errors_msnp12 => Dialect::Msnp12,
);

/// Properties, privacy modes and names round-trip through `SYN` and the account.
#[tokio::test]
async fn settings_persist_across_logins() -> Result<()> {
    let srv = server().await?;
    let mut a = user(&srv, Dialect::Msnp8, "alice").await?;
    a.send("PRP 6 PHH 01%20234").await?;
    a.expect_line("PRP 6 1 PHH 01%20234").await?;
    a.send("BLP 7 BL").await?;
    a.expect_line("BLP 7 2 BL").await?;
    a.send("GTC 8 N").await?;
    a.expect_line("GTC 8 3 N").await?;
    a.send("REA 9 alice@x.com New%20Name").await?;
    a.expect_line("REA 9 4 alice@x.com New%20Name").await?;
    // REA of someone not on the forward list: 216.
    a.send("REA 10 bob@x.com Bobby").await?;
    a.expect_line("216 10").await?;
    a.send("OUT").await?;
    a.expect_closed().await?;

    let mut a = relogin(&srv, Dialect::Msnp10, "alice").await?;
    ensure_lines(
        &syn(&mut a, Dialect::Msnp10, 6, 0).await?,
        &[
            "SYN 6 4 4 0 0".to_owned(),
            "GTC N".to_owned(),
            "BLP BL".to_owned(),
            "PRP MFN New%20Name".to_owned(),
            "PRP PHH 01%20234".to_owned(),
        ],
    )?;
    a.send("PRP 7 MFN Third").await?;
    a.expect_line("PRP 7 MFN Third").await?;
    let mut a = relogin(&srv, Dialect::Msnp8, "alice").await?;
    a.send("SYN 1 0").await?;
    a.expect_line("SYN 1 5 0 1").await?;
    Ok(())
}

fn msgr_bin() -> std::path::PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// `msgr serve` on `data`, port 0 everywhere; returns the child and its endpoint.
async fn spawn_serve(data: &std::path::Path) -> Result<(tokio::process::Child, msgr_it::Endpoint)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(msgr_bin())
        .arg("--data")
        .arg(data)
        .args([
            "serve",
            "--msnp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            // The mail listeners default to fixed ports; off here, so parallel runs never collide.
            "--smtp",
            "off",
            "--submission",
            "off",
            "--submissions",
            "off",
            "--pop3",
            "off",
            "--pop3s",
            "off",
            "--imap",
            "off",
            "--imaps",
            "off",
        ])
        .env_remove("MSGR_CONFIG")
        .env_remove("MSGR_DATA")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting msgr serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let (mut msnp, mut https) = (None, None);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while msnp.is_none() || https.is_none() {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .context("no listening lines from msgr serve")??
            .context("msgr serve exited")?;
        let addr = |what: &str| {
            line.split_once(&format!("listening {what}="))
                .and_then(|(_, r)| r.split_whitespace().next())
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        };
        msnp = msnp.or(addr("msnp"));
        https = https.or(addr("https"));
    }
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let ep = msgr_it::Endpoint {
        msnp: msnp.context("no msnp address")?,
        https: https.context("no https address")?,
        ca: data.join("tls-cert.pem"),
    };
    Ok((child, ep))
}

/// Every acknowledged change survives SIGKILL: the reply is only sent once it is durable.
#[tokio::test]
async fn acknowledged_changes_survive_kill_9() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    {
        use msgr_store::{AccountStore, NewAccount, Store};
        let store = Store::open_sqlite(&data.join("msgr.sqlite"))?;
        for name in ["alice", "bob"] {
            store.create_account(NewAccount {
                email: email(name),
                display_name: display(name),
                password_hash: msgr_core::password::hash_password_with(
                    PASSWORD,
                    msgr_it::CHEAP_PASSWORD,
                )?,
                md5_secret: None,
            })?;
        }
    }
    let (mut child, ep) = spawn_serve(&data).await?;
    let d = Dialect::Msnp9;
    let mut alice = msgr_it::login(&ep, d, &email("alice"), PASSWORD).await?;
    add(&mut alice, d, 6, "FL", "bob").await?;
    add(&mut alice, d, 7, "AL", "bob").await?;
    alice.send("ADG 8 Friends 0").await?;
    alice.expect_match("ADG 8 3 Friends 1 0").await?;
    // SIGKILL: no shutdown path runs.
    let pid = child.id().context("msgr already exited")?;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -9 failed");
    child.wait().await?;
    drop(alice);

    let (_child, ep) = spawn_serve(&data).await?;
    let mut alice = msgr_it::login(&ep, d, &email("alice"), PASSWORD).await?;
    ensure_lines(
        &syn(&mut alice, d, 9, 0).await?,
        &[
            "SYN 9 3 1 2".to_owned(),
            "GTC A".to_owned(),
            "BLP AL".to_owned(),
            "LSG 0 Other%20Contacts 0".to_owned(),
            "LSG 1 Friends 0".to_owned(),
            "LST bob@x.com Bob%20N 3 0".to_owned(),
        ],
    )?;
    let mut bob = msgr_it::login(&ep, d, &email("bob"), PASSWORD).await?;
    let lines = syn(&mut bob, d, 6, 0).await?;
    ensure!(
        lines.iter().any(|l| l == "LST alice@x.com Alice%20N 8"),
        "bob's reverse list lost alice: {lines:?}"
    );
    Ok(())
}

/// MSNP2–7 clients may ask for one list or the groups; MSNP8+ clients may not send `LST`.
#[tokio::test]
async fn legacy_lst_and_lsg_requests() -> Result<()> {
    let srv = server().await?;
    let d = Dialect::Msnp7;
    let mut alice = user(&srv, d, "alice").await?;
    let _bob = user(&srv, d, "bob").await?;
    add(&mut alice, d, 6, "FL", "bob").await?;
    alice.send("LST 7 FL").await?;
    alice
        .expect_line("LST 7 FL 1 1 1 bob@x.com Bob%20N 0")
        .await?;
    alice.send("LST 8 BL").await?;
    alice.expect_line("LST 8 BL 1 0 0").await?;
    alice.send("LSG 9").await?;
    alice
        .expect_line("LSG 9 1 1 1 0 Other%20Contacts 0")
        .await?;
    refused(&mut alice, "LST 10 XL", 201).await?;

    let mut carol = user(&srv, Dialect::Msnp8, "carol").await?;
    refused(&mut carol, "LST 6 FL", 200).await?;
    quiet(&mut alice).await
}

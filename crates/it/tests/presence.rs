//! Presence over real sockets: `CHG` → `ILN` for contacts already online, `NLN`/`FLN` to every
//! watcher in the watcher's own dialect, hiding, blocking (BL and BLP), sign-out, a second login
//! of the same account, `UUX`/`UBX`, and the 800 rate limit.

#![allow(clippy::unwrap_used)]

mod common;

use anyhow::Result;
use common::*;
use msgr_it::ServerOptions;
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;

/// Runs a two-user scenario for a (watcher, watched) pair of dialects.
macro_rules! pairs {
    ($scenario:ident: $($name:ident => ($a:expr, $b:expr)),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() -> Result<()> {
                $scenario($a, $b).await
            }
        )+
    };
}

/// alice (dialect `da`) watches bob (dialect `db`).
async fn watch(da: Dialect, db: Dialect) -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, da, "alice").await?;
    let mut bob = user(&srv, db, "bob").await?;
    syn(&mut alice, da, 6, 0).await?;
    syn(&mut bob, db, 6, 0).await?;

    add(&mut alice, da, 7, "FL", "bob").await?;
    bob.expect_match(&rl_notice(db, "alice")).await?;

    // bob comes online; alice, who has not set a status yet, hears nothing until her first
    // CHG, whose ILN burst lists bob.
    let iln = chg(&mut bob, db, 7, "NLN").await?;
    anyhow::ensure!(iln.is_empty(), "bob follows nobody, got {iln:?}");
    quiet(&mut alice).await?;
    let iln = chg(&mut alice, da, 8, "NLN").await?;
    anyhow::ensure!(
        iln == [iln_line(da, db, 8, "NLN", "bob")],
        "alice's ILN burst: {iln:?}"
    );
    // alice is not on bob's FL: bob hears nothing of her.
    quiet(&mut bob).await?;

    for status in ["AWY", "BSY", "BRB", "PHN", "LUN", "IDL"] {
        chg(&mut bob, db, 9, status).await?;
        alice.expect_line(&nln(da, db, status, "bob")).await?;
    }
    // Hidden looks offline; coming back is an NLN.
    chg(&mut bob, db, 10, "HDN").await?;
    alice.expect_line(&fln("bob")).await?;
    chg(&mut bob, db, 11, "HDN").await?;
    chg(&mut bob, db, 12, "NLN").await?;
    alice.expect_line(&nln(da, db, "NLN", "bob")).await?;

    // Blocking hides bob from alice; unblocking shows him again.
    add(&mut bob, db, 13, "BL", "alice").await?;
    alice.expect_line(&fln("bob")).await?;
    chg(&mut bob, db, 14, "AWY").await?;
    rem(&mut bob, db, 15, "BL", "alice", None).await?;
    alice.expect_line(&nln(da, db, "AWY", "bob")).await?;
    // BLP BL hides him from everyone not on his AL; AL lets alice back in.
    bob.send("BLP 16 BL").await?;
    bob.expect_match("BLP 16 {rest}").await?;
    alice.expect_line(&fln("bob")).await?;
    add(&mut bob, db, 17, "AL", "alice").await?;
    alice.expect_line(&nln(da, db, "AWY", "bob")).await?;

    // Signing out (or losing the connection) is an FLN.
    bob.send("OUT").await?;
    bob.expect_closed().await?;
    alice.expect_line(&fln("bob")).await?;
    // bob comes back: his ILN burst is empty (he follows nobody); alice sees him again.
    let mut bob = relogin(&srv, db, "bob").await?;
    let iln = chg(&mut bob, db, 6, "NLN").await?;
    anyhow::ensure!(iln.is_empty(), "bob follows nobody, got {iln:?}");
    alice.expect_line(&nln(da, db, "NLN", "bob")).await?;
    drop(bob);
    alice.expect_line(&fln("bob")).await?;
    quiet(&mut alice).await
}

fn iln_line(watcher: Dialect, changer: Dialect, trid: u32, status: &str, who: &str) -> String {
    iln(watcher, changer, trid, status, who)
}

pairs!(watch:
    watch_msnp7 => (Dialect::Msnp7, Dialect::Msnp7),
    watch_msnp8 => (Dialect::Msnp8, Dialect::Msnp8),
    watch_msnp9 => (Dialect::Msnp9, Dialect::Msnp9),
    watch_msnp10 => (Dialect::Msnp10, Dialect::Msnp10),
    watch_msnp11 => (Dialect::Msnp11, Dialect::Msnp11),
    watch_msnp12 => (Dialect::Msnp12, Dialect::Msnp12),
    watch_msnp8_watches_msnp12 => (Dialect::Msnp8, Dialect::Msnp12),
    watch_msnp12_watches_msnp8 => (Dialect::Msnp12, Dialect::Msnp8),
    watch_msnp7_watches_msnp11 => (Dialect::Msnp7, Dialect::Msnp11),
    watch_msnp11_watches_msnp7 => (Dialect::Msnp11, Dialect::Msnp7),
);

/// Three users: alice and carol both watch bob, each in their own dialect; bob blocks only
/// alice; mutual watching gives each side an ILN.
async fn three(da: Dialect, db: Dialect, dc: Dialect) -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, da, "alice").await?;
    let mut bob = user(&srv, db, "bob").await?;
    let mut carol = user(&srv, dc, "carol").await?;
    add(&mut alice, da, 6, "FL", "bob").await?;
    bob.expect_match(&rl_notice(db, "alice")).await?;
    add(&mut carol, dc, 6, "FL", "bob").await?;
    bob.expect_match(&rl_notice(db, "carol")).await?;
    add(&mut bob, db, 7, "FL", "carol").await?;
    carol.expect_match(&rl_notice(dc, "bob")).await?;

    let iln = chg(&mut alice, da, 8, "NLN").await?;
    anyhow::ensure!(iln.is_empty(), "bob is not online yet, got {iln:?}");
    chg(&mut carol, dc, 8, "BSY").await?;
    // bob's first CHG: carol is online and lets him see her.
    let iln = chg(&mut bob, db, 8, "NLN").await?;
    anyhow::ensure!(
        iln == [common::iln(db, dc, 8, "BSY", "carol")],
        "bob's ILN burst {iln:?}"
    );
    alice.expect_line(&nln(da, db, "NLN", "bob")).await?;
    carol.expect_line(&nln(dc, db, "NLN", "bob")).await?;

    add(&mut bob, db, 9, "BL", "alice").await?;
    alice.expect_line(&fln("bob")).await?;
    chg(&mut bob, db, 10, "AWY").await?;
    carol.expect_line(&nln(dc, db, "AWY", "bob")).await?;
    quiet(&mut alice).await?;

    // alice changes: bob, who does not follow her, hears nothing.
    chg(&mut alice, da, 9, "BRB").await?;
    quiet(&mut bob).await?;

    // carol hides: bob (who follows her) sees her go.
    chg(&mut carol, dc, 9, "HDN").await?;
    bob.expect_line(&fln("carol")).await?;
    quiet(&mut carol).await
}

#[tokio::test]
async fn three_users_same_dialect_msnp9() -> Result<()> {
    three(Dialect::Msnp9, Dialect::Msnp9, Dialect::Msnp9).await
}

#[tokio::test]
async fn three_users_mixed_dialects() -> Result<()> {
    three(Dialect::Msnp7, Dialect::Msnp12, Dialect::Msnp8).await?;
    three(Dialect::Msnp12, Dialect::Msnp8, Dialect::Msnp10).await
}

/// A second login of the same account: the old session gets `OUT OTH`, and watchers see no
/// FLN for it (the account never went offline).
#[tokio::test]
async fn second_login_does_not_flap() -> Result<()> {
    let srv = server().await?;
    let d = Dialect::Msnp11;
    let mut alice = user(&srv, d, "alice").await?;
    let mut bob = user(&srv, d, "bob").await?;
    chg(&mut alice, d, 5, "NLN").await?;
    add(&mut alice, d, 6, "FL", "bob").await?;
    bob.expect_match(&rl_notice(d, "alice")).await?;
    chg(&mut bob, d, 7, "NLN").await?;
    alice.expect_line(&nln(d, d, "NLN", "bob")).await?;

    let mut bob2 = relogin(&srv, d, "bob").await?;
    bob.expect_line("OUT OTH").await?;
    bob.expect_closed().await?;
    quiet(&mut alice).await?;
    chg(&mut bob2, d, 6, "BSY").await?;
    alice.expect_line(&nln(d, d, "BSY", "bob")).await?;
    quiet(&mut alice).await?;

    // A third login that ends before its first CHG still takes bob offline for alice.
    let bob3 = relogin(&srv, d, "bob").await?;
    bob2.expect_line("OUT OTH").await?;
    quiet(&mut alice).await?;
    drop(bob3);
    alice.expect_line(&fln("bob")).await?;
    quiet(&mut alice).await
}

/// `UUX` is stored and relayed as `UBX` to MSNP11+ watchers only; a watcher's first `CHG`
/// gets it after the ILN burst.
#[tokio::test]
async fn personal_message_reaches_msnp11_watchers() -> Result<()> {
    let srv = server().await?;
    let mut old = user(&srv, Dialect::Msnp9, "alice").await?;
    let mut new = user(&srv, Dialect::Msnp12, "carol").await?;
    let mut bob = user(&srv, Dialect::Msnp11, "bob").await?;
    add(&mut old, Dialect::Msnp9, 6, "FL", "bob").await?;
    bob.expect_match(&rl_notice(Dialect::Msnp11, "alice"))
        .await?;
    chg(&mut old, Dialect::Msnp9, 7, "NLN").await?;
    chg(&mut bob, Dialect::Msnp11, 7, "NLN").await?;
    old.expect_line(&nln(Dialect::Msnp9, Dialect::Msnp11, "NLN", "bob"))
        .await?;

    let psm = "<Data><PSM>hi</PSM><CurrentMedia></CurrentMedia></Data>";
    bob.send_raw(format!("UUX 8 {}\r\n{psm}", psm.len()).as_bytes())
        .await?;
    bob.expect_line("UUX 8 0").await?;
    quiet(&mut old).await?;

    // carol adds bob afterwards: her NLN comes with the UBX.
    chg(&mut new, Dialect::Msnp12, 6, "NLN").await?;
    add(&mut new, Dialect::Msnp12, 7, "FL", "bob").await?;
    bob.expect_match(&rl_notice(Dialect::Msnp11, "carol"))
        .await?;
    new.expect_line(&nln(Dialect::Msnp12, Dialect::Msnp11, "NLN", "bob"))
        .await?;
    let ubx = new.recv_frame().await?;
    anyhow::ensure!(
        ubx.line() == format!("UBX bob@x.com {}", psm.len())
            && ubx.payload().map(|p| p.as_ref()) == Some(psm.as_bytes()),
        "expected UBX, got {:?}",
        ubx.line()
    );
    // A later change reaches her directly.
    let psm2 = "<Data><PSM>bye</PSM></Data>";
    bob.send_raw(format!("UUX 9 {}\r\n{psm2}", psm2.len()).as_bytes())
        .await?;
    bob.expect_line("UUX 9 0").await?;
    let ubx = new.recv_frame().await?;
    anyhow::ensure!(ubx.payload().map(|p| p.as_ref()) == Some(psm2.as_bytes()));
    quiet(&mut old).await
}

/// `CHG`, `REA` and `PRP` beyond the burst get 800.
#[tokio::test]
async fn changing_too_fast_is_800() -> Result<()> {
    let srv = server_with(ServerOptions {
        limits: LimitsConfig {
            change_burst: 3,
            change_refill_secs: 3600,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;
    let d = Dialect::Msnp8;
    let mut a = user(&srv, d, "alice").await?;
    chg(&mut a, d, 6, "NLN").await?;
    chg(&mut a, d, 7, "AWY").await?;
    a.send("REA 8 alice@x.com Quick").await?;
    a.expect_match("REA 8 {digits} alice@x.com Quick").await?;
    a.send("CHG 9 NLN 0").await?;
    a.expect_line("800 9").await?;
    a.send("PRP 10 PHH 123").await?;
    a.expect_line("800 10").await?;
    a.send("REA 11 alice@x.com Slow").await?;
    a.expect_line("800 11").await?;
    quiet(&mut a).await
}

/// A display-name change reaches watchers as an NLN with the new name.
#[tokio::test]
async fn rename_is_seen_by_watchers() -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, Dialect::Msnp10, "alice").await?;
    let mut bob = user(&srv, Dialect::Msnp8, "bob").await?;
    chg(&mut alice, Dialect::Msnp10, 5, "NLN").await?;
    add(&mut alice, Dialect::Msnp10, 6, "FL", "bob").await?;
    bob.expect_match(&rl_notice(Dialect::Msnp8, "alice"))
        .await?;
    chg(&mut bob, Dialect::Msnp8, 6, "NLN").await?;
    alice
        .expect_line(&nln(Dialect::Msnp10, Dialect::Msnp8, "NLN", "bob"))
        .await?;
    bob.send("REA 7 bob@x.com Bobby%20Tables").await?;
    bob.expect_match("REA 7 {digits} bob@x.com Bobby%20Tables")
        .await?;
    alice
        .expect_line("NLN NLN bob@x.com Bobby%20Tables 268435456")
        .await?;
    quiet(&mut alice).await
}

/// The MSN object (MSNP9+) is relayed exactly as sent; older watchers get the older form.
#[tokio::test]
async fn msn_object_reaches_msnp9_watchers_only() -> Result<()> {
    let srv = server().await?;
    let mut new = user(&srv, Dialect::Msnp9, "alice").await?;
    let mut old = user(&srv, Dialect::Msnp8, "carol").await?;
    let mut bob = user(&srv, Dialect::Msnp11, "bob").await?;
    for (c, d) in [(&mut new, Dialect::Msnp9), (&mut old, Dialect::Msnp8)] {
        chg(c, d, 6, "NLN").await?;
        add(c, d, 7, "FL", "bob").await?;
    }
    bob.expect_match(&rl_notice(Dialect::Msnp11, "alice"))
        .await?;
    bob.expect_match(&rl_notice(Dialect::Msnp11, "carol"))
        .await?;
    let obj = "%3Cmsnobj%20Creator%3D%22bob%40x.com%22%2F%3E";
    bob.send(&format!("CHG 8 NLN 268435456 {obj}")).await?;
    bob.expect_line(&format!("CHG 8 NLN 268435456 {obj}"))
        .await?;
    new.expect_line(&format!("NLN NLN bob@x.com Bob%20N 268435456 {obj}"))
        .await?;
    old.expect_line("NLN NLN bob@x.com Bob%20N 268435456")
        .await?;
    // Extended capabilities are MSNP12's: an MSNP11 client sending them gets 201.
    bob.send("CHG 9 NLN 268435456:48").await?;
    bob.expect_line("201 9").await?;
    quiet(&mut new).await?;
    quiet(&mut old).await
}

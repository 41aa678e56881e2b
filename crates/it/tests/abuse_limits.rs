//! Issue 12's attacks against the real server, with small configured limits, and the limits
//! holding (items 2, 3, 4, 5 and 9): password guessing over Passport, legacy MD5 and POP3; a
//! flood of parallel guesses from one address against another address's login; pipelined
//! `XFR SB` and `CAL`; `UUX` floods; `Action=open` floods through the HTTP gateway; idle HTTP
//! connections; and `EMFILE` in a spawned `msgr serve` with a lowered RLIMIT_NOFILE.
//!
//! Attackers connect from other loopback addresses (127.0.0.2, …: Linux routes the whole
//! 127/8 to `lo`), so "another address" is a real other client address to the server. Nothing
//! here measures time: refusals are counted, and fairness is shown by the order of answers.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::{md5_hex, percent_encode, ServerOptions, TestServer, TIMEOUT};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

const ALICE: &str = "alice@x.com";
const BOB: &str = "bob@x.com";
const PW: &str = "right-pw-1";

/// A TCP connection to `to` from the loopback address `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let ip: IpAddr = from.parse()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    tokio::time::timeout(TIMEOUT, socket.connect(to))
        .await
        .with_context(|| format!("connecting from {from} to {to}"))?
        .with_context(|| format!("connecting from {from} to {to}"))
}

/// An HTTP answer: status and headers (lowercased names).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) from `from` and reads the whole answer, within `wait`.
async fn http(from: &str, to: SocketAddr, head: &str, wait: Duration) -> Result<Answer> {
    let mut s = tcp_from(from, to).await?;
    s.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(wait, s.read_to_end(&mut raw))
        .await
        .context("no HTTP answer in time")??;
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer { status, headers })
}

/// `login2.srf` over plain HTTP from `from`.
async fn passport(
    srv: &TestServer,
    from: &str,
    email: &str,
    password: &str,
    wait: Duration,
) -> Result<Answer> {
    let head = format!(
        "GET /login2.srf HTTP/1.1\r\nHost: msgr\r\nConnection: close\r\n\
         Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
         sign-in={},pwd={},lc=1033,id=507,tw=40,fs=1\r\n\r\n",
        percent_encode(email),
        percent_encode(password)
    );
    http(from, srv.addrs.http.unwrap(), &head, wait).await
}

/// Counts `login2.srf` answers: tickets, refusals without `Retry-After` (a password checked and
/// wrong), refusals with it (throttled, not checked).
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    ok: usize,
    wrong: usize,
    throttled: usize,
}

impl Tally {
    fn add(&mut self, a: &Answer) {
        match (a.status, a.header("retry-after")) {
            (200, _) => self.ok += 1,
            (401, None) => self.wrong += 1,
            (401, Some(_)) => self.throttled += 1,
            (s, _) => panic!("unexpected status {s}"),
        }
    }
}

async fn server(limits: LimitsConfig, legacy_md5: bool) -> Result<TestServer> {
    let srv = TestServer::start(ServerOptions {
        legacy_md5,
        limits,
        ..ServerOptions::default()
    })
    .await?;
    srv.add_account(ALICE, PW, "Alice").await?;
    srv.add_account(BOB, PW, "Bob").await?;
    Ok(srv)
}

/// Item 5: 20 wrong Passport passwords for alice from 127.0.0.2 with 3 free attempts and a
/// first wait of a minute: 3 are checked, 17 are refused unchecked (with `Retry-After`), and so
/// is the right password from there; from alice's own address it works at once, through a
/// whole MSNP login.
#[tokio::test]
async fn passport_guesses_are_throttled_but_not_the_owner_elsewhere() -> Result<()> {
    let srv = server(
        LimitsConfig {
            login_free_per_pair: 3,
            login_free_per_ip: 1000,
            login_free_per_account: 1000,
            login_delay_ms: 60_000,
            ..LimitsConfig::default()
        },
        false,
    )
    .await?;
    let mut flood = Tally::default();
    for i in 0..20 {
        flood.add(&passport(&srv, "127.0.0.2", ALICE, &format!("guess-{i}"), TIMEOUT).await?);
    }
    assert_eq!(
        flood,
        Tally {
            ok: 0,
            wrong: 3,
            throttled: 17
        }
    );
    let mut late = Tally::default();
    late.add(&passport(&srv, "127.0.0.2", ALICE, PW, TIMEOUT).await?);
    assert_eq!(
        late.throttled, 1,
        "the guesser's address waits even with the right password"
    );
    // Alice, from her address: a ticket, and a whole login with it.
    let mut home = Tally::default();
    home.add(&passport(&srv, "127.0.0.1", ALICE, PW, TIMEOUT).await?);
    assert_eq!(home.ok, 1);
    srv.login(Dialect::Msnp12, ALICE, PW).await?;
    Ok(())
}

/// Item 5: guesses spread over eight addresses use up alice's per-account allowance, so a ninth
/// address is refused at its first guess; alice, who signed in from 127.0.0.1 before, is not.
#[tokio::test]
async fn guessers_elsewhere_cannot_lock_the_owner_out() -> Result<()> {
    let srv = server(
        LimitsConfig {
            login_free_per_pair: 3,
            login_free_per_ip: 1000,
            login_free_per_account: 10,
            login_delay_ms: 60_000,
            ..LimitsConfig::default()
        },
        false,
    )
    .await?;
    let mut home = Tally::default();
    home.add(&passport(&srv, "127.0.0.1", ALICE, PW, TIMEOUT).await?);
    let mut flood = Tally::default();
    for a in 2..10 {
        for i in 0..2 {
            let from = format!("127.0.0.{a}");
            flood.add(&passport(&srv, &from, ALICE, &format!("g{i}"), TIMEOUT).await?);
        }
    }
    assert_eq!(flood.wrong, 10, "{flood:?}");
    assert_eq!(flood.throttled, 6, "{flood:?}");
    let mut fresh = Tally::default();
    fresh.add(&passport(&srv, "127.0.0.20", ALICE, PW, TIMEOUT).await?);
    assert_eq!(
        fresh.throttled, 1,
        "a new address is throttled by the account counter"
    );
    home.add(&passport(&srv, "127.0.0.1", ALICE, PW, TIMEOUT).await?);
    assert_eq!(home.ok, 2, "the owner's usual address is spared: {home:?}");
    Ok(())
}

/// A raw `USR MD5` attempt from `from`: the server's answer to the proof.
async fn md5_attempt(srv: &TestServer, from: &str, password: &str) -> Result<String> {
    let s = tcp_from(from, srv.addrs.msnp).await?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    w.write_all(format!("VER 1 MSNP7 CVR0\r\nINF 2\r\nUSR 3 MD5 I {ALICE}\r\n").as_bytes())
        .await?;
    let mut salt = None;
    while salt.is_none() {
        let mut line = String::new();
        ensure!(
            tokio::time::timeout(TIMEOUT, r.read_line(&mut line)).await?? > 0,
            "closed before the salt"
        );
        salt = line
            .trim_end()
            .strip_prefix("USR 3 MD5 S ")
            .map(str::to_owned);
    }
    let salt = salt.unwrap_or_default();
    w.write_all(format!("USR 4 MD5 S {}\r\n", md5_hex(&salt, password)).as_bytes())
        .await?;
    let mut line = String::new();
    tokio::time::timeout(TIMEOUT, r.read_line(&mut line)).await??;
    Ok(line.trim_end().to_owned())
}

/// Item 5, legacy MD5: after the free attempts the right answer from the guesser's address is
/// refused like a wrong one (911), while alice's own address signs in.
#[tokio::test]
async fn md5_guesses_are_throttled() -> Result<()> {
    let srv = server(
        LimitsConfig {
            login_free_per_pair: 3,
            login_delay_ms: 60_000,
            ..LimitsConfig::default()
        },
        true,
    )
    .await?;
    for i in 0..10 {
        let answer = md5_attempt(&srv, "127.0.0.2", &format!("guess-{i}")).await?;
        ensure!(answer == "911 4", "guess {i}: {answer}");
    }
    let answer = md5_attempt(&srv, "127.0.0.2", PW).await?;
    ensure!(answer == "911 4", "throttled right answer: {answer}");
    let answer = md5_attempt(&srv, "127.0.0.1", PW).await?;
    ensure!(answer.starts_with("USR 4 OK alice@x.com"), "{answer}");
    Ok(())
}

/// One POP3 `USER`/`PASS` from `from`: the answer to `PASS`.
async fn pop3_attempt(pop3: SocketAddr, from: &str, password: &str) -> Result<String> {
    let s = tcp_from(from, pop3).await?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut answers = Vec::new();
    w.write_all(format!("USER {ALICE}\r\nPASS {password}\r\n").as_bytes())
        .await?;
    while answers.len() < 3 {
        let mut line = String::new();
        if tokio::time::timeout(TIMEOUT, r.read_line(&mut line)).await?? == 0 {
            break;
        }
        answers.push(line.trim_end().to_owned());
    }
    answers.get(2).cloned().context("no answer to PASS")
}

/// Item 5, mail: POP3 logins go through the same throttle (the server's authenticator gets
/// the client's address): after the free attempts a guess is a temporary failure, unchecked,
/// and alice's own address still signs in.
#[tokio::test]
async fn pop3_guesses_are_throttled() -> Result<()> {
    let srv = server(
        LimitsConfig {
            login_free_per_pair: 3,
            login_delay_ms: 60_000,
            ..LimitsConfig::default()
        },
        false,
    )
    .await?;
    let pop3 = srv.addrs.mail.pop3.context("no POP3 listener")?;
    let mut refused = 0;
    let mut unavailable = 0;
    for i in 0..8 {
        let answer = pop3_attempt(pop3, "127.0.0.2", &format!("guess-{i}")).await?;
        if answer.starts_with("-ERR [SYS/TEMP]") {
            unavailable += 1;
        } else if answer.starts_with("-ERR") {
            refused += 1;
        } else {
            bail!("guess {i}: {answer}");
        }
    }
    assert_eq!((refused, unavailable), (3, 5));
    let answer = pop3_attempt(pop3, "127.0.0.1", PW).await?;
    ensure!(answer.starts_with("+OK"), "{answer}");
    Ok(())
}

/// Item 5, fairness: one hashing thread; 30 parallel guesses at an unknown account (each a full
/// argon2 hash) from 127.0.0.2; once the first is answered, alice signs in from 127.0.0.1. Her
/// answer comes before most of the flood's: the queue serves addresses in turn, not first come
/// first served (with FIFO she would wait for the whole queued flood).
#[tokio::test]
async fn one_address_flood_does_not_hold_up_another_login() -> Result<()> {
    const FLOOD: usize = 30;
    let srv = server(
        LimitsConfig {
            hash_threads: 1,
            hash_queue_per_ip: 64,
            login_free_per_pair: 10_000,
            login_free_per_ip: 10_000,
            login_free_per_account: 10_000,
            ..LimitsConfig::default()
        },
        false,
    )
    .await?;
    let srv = std::sync::Arc::new(srv);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Result<u16>>(FLOOD);
    for i in 0..FLOOD {
        let srv = srv.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let a = passport(
                &srv,
                "127.0.0.2",
                "nobody@x.com",
                &format!("g{i}"),
                Duration::from_secs(120),
            )
            .await;
            let _ = done.send(a.map(|a| a.status)).await;
        });
    }
    drop(done_tx);
    let first = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
        .await?
        .context("flood ended")??;
    assert_eq!(first, 401);
    let mut home = Tally::default();
    home.add(&passport(&srv, "127.0.0.1", ALICE, PW, Duration::from_secs(120)).await?);
    assert_eq!(home.ok, 1);
    // How much of the flood was answered before alice.
    let mut before = 1;
    while let Ok(a) = done_rx.try_recv() {
        assert_eq!(a?, 401);
        before += 1;
    }
    let mut after = 0;
    while let Some(a) = tokio::time::timeout(Duration::from_secs(120), done_rx.recv()).await? {
        assert_eq!(a?, 401);
        after += 1;
    }
    println!("flood answers before alice's: {before}, after: {after}");
    assert_eq!(before + after, FLOOD);
    assert!(
        before <= FLOOD / 3,
        "alice waited for {before} of {FLOOD} guesses"
    );
    Ok(())
}

/// Signs in over MSNP12 and goes online (`CHG` spends one change token).
async fn online(srv: &TestServer, email: &str) -> Result<msgr_it::Conn> {
    let mut c = srv.login(Dialect::Msnp12, email, PW).await?;
    c.send("CHG 10 NLN 0").await?;
    c.expect_match("CHG 10 NLN 0{rest}").await?;
    Ok(c)
}

/// Reads the answers to `n` pipelined commands and counts them by their first word.
async fn tally_lines(
    c: &mut msgr_it::Conn,
    n: usize,
) -> Result<std::collections::BTreeMap<String, usize>> {
    let mut t = std::collections::BTreeMap::new();
    for _ in 0..n {
        let line = c.recv_line().await?;
        let head = line.split(' ').next().unwrap_or_default().to_owned();
        *t.entry(head).or_default() += 1;
    }
    Ok(t)
}

/// Item 2: 50 pipelined `XFR SB` from alice with a budget of 5 calls and 3 unused cookies per
/// user: 3 cookies, then 714 (too many sessions) for the rest of the budget, then 713 (calling
/// too rapidly). Bob still gets a switchboard and opens it; alice's `CAL` in her own switchboard
/// is 713 too, her budget being spent.
#[tokio::test]
async fn pipelined_xfr_cannot_take_every_switchboard() -> Result<()> {
    let srv = server(
        LimitsConfig {
            sb_call_burst: 5,
            sb_call_refill_secs: 3600,
            sb_cookies_per_user: 3,
            sb_rooms_per_user: 3,
            max_switchboards: 10,
            ..LimitsConfig::default()
        },
        false,
    )
    .await?;
    let mut alice = online(&srv, ALICE).await?;
    let burst: String = (100..150).map(|t| format!("XFR {t} SB\r\n")).collect();
    alice.send_raw(burst.as_bytes()).await?;
    let mut cookies = Vec::new();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..50 {
        let line = alice.recv_line().await?;
        let words: Vec<&str> = line.split(' ').collect();
        if words[0] == "XFR" {
            cookies.push(words[5].to_owned());
        } else {
            *codes.entry(words[0].to_owned()).or_default() += 1;
        }
    }
    assert_eq!(cookies.len(), 3);
    assert_eq!(codes.get("714"), Some(&2), "{codes:?}");
    assert_eq!(codes.get("713"), Some(&45), "{codes:?}");

    let mut bob = online(&srv, BOB).await?;
    bob.send("XFR 20 SB").await?;
    let line = bob.expect_match("XFR 20 SB {rest}").await?;
    let cookie = line.rsplit(' ').next().unwrap_or_default();
    let mut sb = msgr_it::Conn::connect(srv.addrs.msnp).await?;
    sb.send(&format!("USR 1 {BOB} {cookie}")).await?;
    sb.expect_match("USR 1 OK bob@x.com {rest}").await?;

    let mut asb = msgr_it::Conn::connect(srv.addrs.msnp).await?;
    asb.send(&format!("USR 1 {ALICE} {}", cookies[0])).await?;
    asb.expect_match("USR 1 OK alice@x.com {rest}").await?;
    asb.send(&format!("CAL 2 {BOB}")).await?;
    asb.expect_line("713 2").await?;
    Ok(())
}

/// Item 9: `UUX` spends the `CHG` budget: with a burst of 3 (one spent by `CHG`), 6 pipelined
/// personal messages get 2 answers and 4 × 800.
#[tokio::test]
async fn uux_shares_the_change_budget() -> Result<()> {
    let srv = server(
        LimitsConfig {
            change_burst: 3,
            change_refill_secs: 3600,
            ..LimitsConfig::default()
        },
        false,
    )
    .await?;
    let mut alice = online(&srv, ALICE).await?;
    let pm = "<Data><PSM>hi</PSM><CurrentMedia></CurrentMedia></Data>";
    let burst: String = (20..26)
        .map(|t| format!("UUX {t} {}\r\n{pm}", pm.len()))
        .collect();
    alice.send_raw(burst.as_bytes()).await?;
    let t = tally_lines(&mut alice, 6).await?;
    assert_eq!(t.get("UUX"), Some(&2), "{t:?}");
    assert_eq!(t.get("800"), Some(&4), "{t:?}");
    Ok(())
}

/// `Action=open` from `from`: the status.
async fn gateway_open(srv: &TestServer, from: &str) -> Result<u16> {
    let body = "VER 1 MSNP12 CVR0\r\n";
    let head = format!(
        "POST /gateway/gateway.dll?Action=open&Server=NS&IP=msgr HTTP/1.1\r\n\
         Host: msgr\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Ok(http(from, srv.addrs.http.unwrap(), &head, TIMEOUT)
        .await?
        .status)
}

/// Item 3: with 4 gateway sessions not signed in allowed (2 per address) and 8 connections in
/// all, an `Action=open` flood from three addresses gets 4 sessions and 503 for the rest; an
/// MSNP login still succeeds; once the flood's logins time out (3 s), their places are free
/// again and a new open succeeds.
#[tokio::test]
async fn gateway_open_floods_do_not_lock_out_logins() -> Result<()> {
    let srv = server(
        LimitsConfig {
            max_connections: 8,
            gateway_max_pending: 4,
            gateway_max_pending_per_ip: 2,
            login_timeout_secs: 3,
            ..LimitsConfig::default()
        },
        false,
    )
    .await?;
    let mut opened = 0;
    let mut refused = 0;
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        for _ in 0..10 {
            match gateway_open(&srv, from).await? {
                200 => opened += 1,
                503 => refused += 1,
                s => bail!("unexpected status {s}"),
            }
        }
    }
    assert_eq!((opened, refused), (4, 26));
    let _alice = srv.login(Dialect::Msnp12, ALICE, PW).await?;
    // The flood's sessions end at their login timeout and give their places back: a retry
    // succeeds (the loop only waits for that; it asserts nothing about how long it takes).
    let deadline = tokio::time::Instant::now() + 4 * TIMEOUT;
    loop {
        if gateway_open(&srv, "127.0.0.2").await? == 200 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the timed-out sessions never gave their places back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Whether an HTTP connection from `from` is served: a keep-alive `GET /` gets an answer (and
/// the connection stays open, holding its place), a refused one is closed without one.
async fn idle_http(srv: &TestServer, from: &str) -> Result<Option<TcpStream>> {
    let mut s = tcp_from(from, srv.addrs.http.unwrap()).await?;
    if s.write_all(b"GET / HTTP/1.1\r\nHost: msgr\r\n\r\n")
        .await
        .is_err()
    {
        return Ok(None); // closed at accept already
    }
    let mut buf = [0u8; 12];
    // A reset reads as nothing.
    let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
        .await?
        .unwrap_or_default();
    Ok((n > 0 && buf.starts_with(b"HTTP/1.1 200")).then_some(s))
}

/// Item 4: HTTP connections capped at 8 in all and 3 per address: 3 + 3 + 2 held from three
/// addresses, the rest closed at accept (a fourth address gets nothing either); an MSNP login
/// (MSNP7, which needs no HTTP) still succeeds; when one idle connection goes, its place is
/// served again.
#[tokio::test]
async fn idle_http_connections_are_capped() -> Result<()> {
    let srv = server(
        LimitsConfig {
            http_max_connections: 8,
            http_max_connections_per_ip: 3,
            ..LimitsConfig::default()
        },
        true,
    )
    .await?;
    let mut held = Vec::new();
    let mut refused = 0;
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..5 {
            match idle_http(&srv, from).await? {
                Some(s) => held.push(s),
                None => refused += 1,
            }
        }
    }
    assert_eq!((held.len(), refused), (8, 12));
    srv.login(Dialect::Msnp7, ALICE, PW).await?;
    held.pop();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while idle_http(&srv, "127.0.0.6").await?.is_none() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the closed connection never gave its place back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Reads `msgr serve`'s log until a line contains `needle`.
async fn wait_for(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .with_context(|| format!("no {needle:?} line from msgr serve"))??
            .context("msgr serve exited")?;
        if line.contains(needle) {
            return Ok(line);
        }
    }
}

fn msgr_bin() -> std::path::PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// Item 4, `EMFILE`: `msgr serve` started under `prlimit --nofile=128`; MSNP connections (more
/// than 128) use up its descriptors, its accept loop logs that it backs off (instead of spinning); when
/// they close it logs that it accepts again, and a new connection is served.
#[tokio::test]
async fn emfile_backs_off_and_recovers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut child = tokio::process::Command::new("prlimit")
        .arg("--nofile=128:128")
        .arg("--")
        .arg(msgr_bin())
        .arg("--data")
        .arg(&data)
        .arg("serve")
        .args(["--msnp", "127.0.0.1:0", "--http", "off", "--https", "off"])
        .args([
            "--smtp",
            "off",
            "--submission",
            "off",
            "--submissions",
            "off",
        ])
        .args([
            "--pop3", "off", "--pop3s", "off", "--imap", "off", "--imaps", "off",
        ])
        .env_remove("MSGR_CONFIG")
        .env_remove("MSGR_DATA")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting prlimit … msgr serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let listening = wait_for(&mut lines, "listening msnp=").await?;
    let msnp: SocketAddr = listening
        .split_once("listening msnp=")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .context("no address in the listening line")?;
    // Connect until the server's descriptors and then its listen backlog are full (a connect
    // that does not complete at once means the backlog is: stop there).
    let mut conns = Vec::new();
    for _ in 0..300 {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(msnp)).await {
            Ok(c) => conns.push(c?),
            Err(_) => break,
        }
    }
    ensure!(conns.len() > 128, "only {} connections", conns.len());
    let failed = wait_for(&mut lines, "accept failed: backing off").await?;
    println!("{failed}");
    ensure!(failed.contains("msnp"), "{failed}");
    drop(conns);
    let recovered = wait_for(&mut lines, "accepting again after failures").await?;
    println!("{recovered}");
    let mut c = msgr_it::Conn::connect(msnp).await?;
    c.send("VER 1 MSNP12 CVR0").await?;
    c.expect_line("VER 1 MSNP12 CVR0").await?;
    let _ = child.kill().await;
    Ok(())
}

//! Switchboard scenarios over real sockets: both ways in (`XFR SB` → `USR` → `CAL`, and
//! `RNG` → `ANS`), two and three people, mixed dialects, every acknowledgement mode, typing,
//! an MSNFTP invitation, P2P data to its `P2P-Dest` only, the errors, a slow reader, idle
//! timeouts, and a conversation that outlives an NS connection.

#![allow(clippy::unwrap_used)]

mod common;

use anyhow::{anyhow, ensure, Context, Result};
use common::{add, chg, email, encoded_display, server, server_with, user};
use msgr_it::{Conn, ServerOptions, TestServer};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;
use std::time::Duration;

/// The capability number `IRO`/`JOI` show for a client of `dialect` (MSNP12 viewers only).
fn sb_caps(viewer: Dialect, member: Dialect) -> String {
    if viewer < Dialect::Msnp12 {
        return String::new();
    }
    match member {
        d if d >= Dialect::Msnp12 => " 1342177280".into(),
        d if d >= Dialect::Msnp8 => " 268435456".into(),
        _ => " 0".into(),
    }
}

/// One person: the NS connection and dialect.
struct Person {
    name: &'static str,
    dialect: Dialect,
    ns: Conn,
}

async fn person(srv: &TestServer, dialect: Dialect, name: &'static str) -> Result<Person> {
    let mut ns = user(srv, dialect, name).await?;
    chg(&mut ns, dialect, 6, "NLN").await?;
    Ok(Person { name, dialect, ns })
}

/// `XFR SB` on the NS, then `USR` on a new switchboard connection.
async fn open(srv: &TestServer, p: &mut Person) -> Result<Conn> {
    p.ns.send("XFR 10 SB").await?;
    let line = p.ns.expect_match("XFR 10 SB {any} CKI {any}").await?;
    let t: Vec<&str> = line.split(' ').collect();
    ensure!(t[3] == srv.addrs.msnp.to_string(), "XFR address {line}");
    let cookie = t[5];
    let mut sb = srv.connect().await?;
    sb.set_label(format!("sb {}", p.name));
    sb.send(&format!("USR 1 {} {cookie}", email(p.name)))
        .await?;
    sb.expect_line(&format!(
        "USR 1 OK {} {}",
        email(p.name),
        encoded_display(p.name)
    ))
    .await?;
    Ok(sb)
}

/// Someone in a session: who, and their switchboard connection.
struct Seat<'a> {
    name: &'static str,
    dialect: Dialect,
    sb: &'a mut Conn,
}

fn seat<'a>(p: &Person, sb: &'a mut Conn) -> Seat<'a> {
    Seat {
        name: p.name,
        dialect: p.dialect,
        sb,
    }
}

/// `present[caller]` `CAL`s `callee`, who answers the `RNG` with `ANS`: `IRO` lists
/// `present` in join order and each of them sees `JOI`. Returns the callee's connection.
async fn invite(
    srv: &TestServer,
    present: &mut [Seat<'_>],
    caller: usize,
    callee: &mut Person,
    trid: u32,
) -> Result<Conn> {
    let cname = present[caller].name;
    let sb = &mut *present[caller].sb;
    sb.send(&format!("CAL {trid} {}", email(callee.name)))
        .await?;
    let line = sb
        .expect_match(&format!("CAL {trid} RINGING {{digits}}"))
        .await?;
    let sid = line.rsplit(' ').next().unwrap_or_default().to_owned();
    let rng = callee
        .ns
        .expect_match(&format!(
            "RNG {sid} {} CKI {{any}} {} {}",
            srv.addrs.msnp,
            email(cname),
            encoded_display(cname)
        ))
        .await?;
    let cookie = rng.split(' ').nth(4).unwrap_or_default().to_owned();
    let mut csb = srv.connect().await?;
    csb.set_label(format!("sb {}", callee.name));
    csb.send(&format!("ANS 1 {} {cookie} {sid}", email(callee.name)))
        .await?;
    let n = present.len();
    for (i, p) in present.iter().enumerate() {
        csb.expect_line(&format!(
            "IRO 1 {} {n} {} {}{}",
            i + 1,
            email(p.name),
            encoded_display(p.name),
            sb_caps(callee.dialect, p.dialect)
        ))
        .await?;
    }
    csb.expect_line("ANS 1 OK").await?;
    for p in present.iter_mut() {
        p.sb.expect_line(&format!(
            "JOI {} {}{}",
            email(callee.name),
            encoded_display(callee.name),
            sb_caps(p.dialect, callee.dialect)
        ))
        .await?;
    }
    Ok(csb)
}

fn text(body: &str) -> Vec<u8> {
    format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=I; CO=0; CS=0; PF=22\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn send_msg(c: &mut Conn, trid: u32, mode: &str, payload: &[u8]) -> Result<()> {
    let mut bytes = format!("MSG {trid} {mode} {}\r\n", payload.len()).into_bytes();
    bytes.extend_from_slice(payload);
    c.send_raw(&bytes).await
}

/// The next frame must be `MSG from name len` carrying exactly `payload`.
async fn expect_msg(c: &mut Conn, from: &str, payload: &[u8]) -> Result<()> {
    let f = c.recv_frame().await?;
    let want = format!(
        "MSG {} {} {}",
        email(from),
        encoded_display(from),
        payload.len()
    );
    ensure!(
        f.line() == want,
        "{}: expected {want:?}, got {:?}",
        c.label(),
        f.line()
    );
    let got = f.payload().map(|p| p.to_vec()).unwrap_or_default();
    ensure!(got == payload, "{}: payload differs", c.label());
    Ok(())
}

/// Two people talking: alice called bob (XFR/USR/CAL) and bob answered (RNG/ANS).
async fn pair(srv: &TestServer, da: Dialect, db: Dialect) -> Result<(Person, Conn, Person, Conn)> {
    let mut a = person(srv, da, "alice").await?;
    let mut b = person(srv, db, "bob").await?;
    let mut sa = open(srv, &mut a).await?;
    let sb = invite(srv, &mut [seat(&a, &mut sa)], 0, &mut b, 2).await?;
    Ok((a, sa, b, sb))
}

/// Alice and bob in every mix of old and new dialects: both entry paths, a message each way
/// (relayed byte for byte), then alice leaves with `OUT` and bob hears `BYE`.
#[tokio::test]
async fn two_party_in_mixed_dialects() -> Result<()> {
    use Dialect::*;
    for (da, db) in [
        (Msnp8, Msnp12),
        (Msnp12, Msnp8),
        (Msnp12, Msnp12),
        (Msnp7, Msnp11),
    ] {
        let srv = server().await?;
        let (_a, mut sa, _b, mut sb) = pair(&srv, da, db)
            .await
            .with_context(|| format!("{da} calling {db}"))?;
        let hello = text("Hello! How are you? ¿Qué tal? 日本");
        send_msg(&mut sa, 3, "A", &hello).await?;
        expect_msg(&mut sb, "alice", &hello).await?;
        sa.expect_line("ACK 3").await?;
        let reply = text("fine");
        send_msg(&mut sb, 2, "N", &reply).await?;
        expect_msg(&mut sa, "bob", &reply).await?;
        sa.send("OUT").await?;
        sa.expect_closed().await?;
        sb.expect_line(&format!("BYE {}", email("alice"))).await?;
        // Alone now: a message reaches nobody.
        send_msg(&mut sb, 3, "A", &reply).await?;
        sb.expect_line("NAK 3").await?;
        srv.stop().await?;
    }
    Ok(())
}

/// Three people: alice calls bob, then bob calls carol; carol's `IRO` lists both; a message
/// from carol reaches both; leaving one by one, with `OUT` and by dropping the socket.
#[tokio::test]
async fn three_party() -> Result<()> {
    let srv = server().await?;
    let (a, mut sa, b, mut sb) = pair(&srv, Dialect::Msnp9, Dialect::Msnp12).await?;
    let mut c = person(&srv, Dialect::Msnp12, "carol").await?;
    let mut sc = invite(
        &srv,
        &mut [seat(&a, &mut sa), seat(&b, &mut sb)],
        1,
        &mut c,
        5,
    )
    .await?;
    let m = text("hi all");
    send_msg(&mut sc, 2, "A", &m).await?;
    expect_msg(&mut sa, "carol", &m).await?;
    expect_msg(&mut sb, "carol", &m).await?;
    sc.expect_line("ACK 2").await?;
    sb.send("OUT").await?;
    sa.expect_line(&format!("BYE {}", email("bob"))).await?;
    sc.expect_line(&format!("BYE {}", email("bob"))).await?;
    drop(sa);
    sc.expect_line(&format!("BYE {}", email("alice"))).await?;
    Ok(())
}

/// `U` never answers, `N` only on failure, `A` and `D` (MSNP9+) always; `D` before MSNP9 and
/// an unknown mode are 201. A silent reply is shown by the next `A` message's `ACK` coming
/// first.
#[tokio::test]
async fn acknowledgement_modes() -> Result<()> {
    let srv = server().await?;
    let (_a, mut sa, _b, mut sb) = pair(&srv, Dialect::Msnp9, Dialect::Msnp8).await?;
    let m = text("x");
    for (t, mode) in [(10, "U"), (11, "N"), (12, "A"), (13, "D")] {
        send_msg(&mut sa, t, mode, &m).await?;
        expect_msg(&mut sb, "alice", &m).await?;
    }
    sa.expect_line("ACK 12").await?;
    sa.expect_line("ACK 13").await?;
    // Bob speaks MSNP8: no D.
    send_msg(&mut sb, 20, "D", &m).await?;
    sb.expect_line("201 20").await?;
    send_msg(&mut sb, 21, "a", &m).await?;
    sb.expect_line("201 21").await?;
    send_msg(&mut sb, 22, "A", &m).await?;
    expect_msg(&mut sa, "bob", &m).await?;
    sb.expect_line("ACK 22").await?;
    // Nobody left to deliver to: N and A hear NAK, U nothing.
    drop(sb);
    sa.expect_line(&format!("BYE {}", email("bob"))).await?;
    send_msg(&mut sa, 30, "U", &m).await?;
    send_msg(&mut sa, 31, "N", &m).await?;
    sa.expect_line("NAK 31").await?;
    send_msg(&mut sa, 32, "D", &m).await?;
    sa.expect_line("NAK 32").await?;
    Ok(())
}

/// Several commands in one TCP write: every answer arrives, in the order of the commands, and
/// every message reaches the other side in order. The server writes the answers of one read
/// together (one write instead of one per `ACK`); nothing may be lost or reordered by that.
#[tokio::test]
async fn answers_to_one_read_arrive_complete_and_in_order() -> Result<()> {
    let srv = server().await?;
    let (_a, mut sa, _b, mut sb) = pair(&srv, Dialect::Msnp12, Dialect::Msnp12).await?;
    let mut burst = Vec::new();
    let sent: [(u32, &str, &str); 7] = [
        (10, "A", "one"),
        (11, "N", "two"),
        (12, "U", "three"),
        (13, "Z", "bad mode"),
        (14, "A", "four"),
        (15, "D", "five"),
        (16, "A", "six"),
    ];
    for (t, mode, body) in sent {
        let m = text(body);
        burst.extend_from_slice(format!("MSG {t} {mode} {}\r\n", m.len()).as_bytes());
        burst.extend_from_slice(&m);
    }
    sa.send_raw(&burst).await?;
    for body in ["one", "two", "three", "four", "five", "six"] {
        expect_msg(&mut sb, "alice", &text(body)).await?;
    }
    for answer in ["ACK 10", "201 13", "ACK 14", "ACK 15", "ACK 16"] {
        sa.expect_line(answer).await?;
    }
    // Nothing else was answered (no NAK for the N or U message): the next answer is this one.
    send_msg(&mut sa, 17, "A", &text("seven")).await?;
    sa.expect_line("ACK 17").await?;
    expect_msg(&mut sb, "alice", &text("seven")).await?;
    Ok(())
}

/// Both sides send at once, many messages in flight each way, with `ACK`s: relayed messages
/// reach an idle reader's socket from the sender's side while the reader writes answers of its
/// own, and a full socket makes them wait in the queue. Every message and every answer
/// arrives whole, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_traffic_both_ways_stays_whole_and_in_order() -> Result<()> {
    let srv = server().await?;
    let (_a, sa, _b, sb) = pair(&srv, Dialect::Msnp12, Dialect::Msnp12).await?;
    const N: u32 = 2000;
    /// Sends `N` messages (`A` every third) in bursts of 8, staying at most 64 ahead of what it
    /// has received from the peer (so nobody's queue overflows), reads one frame per burst and
    /// checks everything: the peer's messages numbered in order, this side's `ACK`s in order.
    async fn talk(mut c: Conn, me: &'static str, peer: &'static str) -> Result<()> {
        let body =
            |who: &str, i: u32| text(&format!("{who} {i} {}", "x".repeat((i % 700) as usize)));
        let want_acks = (0..N).filter(|i| i % 3 == 0).count();
        let (mut t, mut next_msg, mut next_ack) = (0u32, 0u32, 0usize);
        while next_msg < N || next_ack < want_acks {
            if t < N && t - next_msg.min(t) <= 64 {
                let mut burst = Vec::new();
                for _ in 0..8.min(N - t) {
                    let m = body(me, t);
                    let mode = if t % 3 == 0 { "A" } else { "N" };
                    burst.extend_from_slice(
                        format!("MSG {} {mode} {}\r\n", t + 1, m.len()).as_bytes(),
                    );
                    burst.extend_from_slice(&m);
                    t += 1;
                }
                c.send_raw(&burst).await?;
            }
            let f = c.recv_frame().await?;
            if f.command() == "ACK" {
                let want = format!("ACK {}", next_ack * 3 + 1);
                ensure!(
                    f.line() == want,
                    "{me}: expected {want:?}, got {:?}",
                    f.line()
                );
                next_ack += 1;
            } else {
                ensure!(
                    f.line().starts_with(&format!("MSG {} ", email(peer))),
                    "{me}: got {:?}",
                    f.line()
                );
                ensure!(
                    f.payload().map(|p| p.to_vec()) == Some(body(peer, next_msg)),
                    "{me}: message {next_msg} from {peer} differs"
                );
                next_msg += 1;
            }
        }
        Ok(())
    }
    let alice = tokio::spawn(talk(sa, "alice", "bob"));
    let bob = tokio::spawn(talk(sb, "bob", "alice"));
    tokio::time::timeout(Duration::from_secs(120), alice).await???;
    tokio::time::timeout(Duration::from_secs(120), bob).await???;
    Ok(())
}

/// Typing notifications and an MSNFTP invitation (INVITE, ACCEPT with the address) flow
/// unchanged.
#[tokio::test]
async fn typing_and_msnftp_invitation() -> Result<()> {
    let srv = server().await?;
    let (_a, mut sa, _b, mut sb) = pair(&srv, Dialect::Msnp8, Dialect::Msnp12).await?;
    let typing = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: {}\r\n\r\n\r\n",
        email("alice")
    );
    send_msg(&mut sa, 2, "U", typing.as_bytes()).await?;
    expect_msg(&mut sb, "alice", typing.as_bytes()).await?;
    let invite = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\n\
        Application-Name: File Transfer\r\nApplication-GUID: {5D3E02AB-6190-11d3-BBBB-00C04F795683}\r\n\
        Invitation-Command: INVITE\r\nInvitation-Cookie: 28045\r\nApplication-File: notes.txt\r\n\
        Application-FileSize: 1234\r\nConnectivity: N\r\n\r\n";
    send_msg(&mut sa, 3, "N", invite.as_bytes()).await?;
    expect_msg(&mut sb, "alice", invite.as_bytes()).await?;
    let accept = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\n\
        Invitation-Command: ACCEPT\r\nInvitation-Cookie: 28045\r\nLaunch-Application: FALSE\r\n\
        Request-Data: IP-Address:\r\n\r\n";
    send_msg(&mut sb, 2, "N", accept.as_bytes()).await?;
    expect_msg(&mut sa, "bob", accept.as_bytes()).await?;
    let go = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\n\
        Invitation-Command: ACCEPT\r\nInvitation-Cookie: 28045\r\nIP-Address: 127.0.0.1\r\n\
        Port: 6891\r\nAuthCookie: 1234567\r\nLaunch-Application: FALSE\r\nRequest-Data: IP-Address:\r\n\r\n";
    send_msg(&mut sa, 4, "N", go.as_bytes()).await?;
    expect_msg(&mut sb, "alice", go.as_bytes()).await?;
    // Nothing was acknowledged: the next A message's ACK is alice's next line.
    send_msg(&mut sa, 5, "A", go.as_bytes()).await?;
    expect_msg(&mut sb, "alice", go.as_bytes()).await?;
    sa.expect_line("ACK 5").await?;
    Ok(())
}

/// A binary P2P message (every byte value, CR/LF included) reaches its `P2P-Dest` byte for
/// byte and nobody else; a `P2P-Dest` not in the session is NAK.
#[tokio::test]
async fn p2p_goes_to_its_destination_only() -> Result<()> {
    let srv = server().await?;
    let (a, mut sa, b, mut sb) = pair(&srv, Dialect::Msnp11, Dialect::Msnp12).await?;
    let mut c = person(&srv, Dialect::Msnp9, "carol").await?;
    let mut sc = invite(
        &srv,
        &mut [seat(&a, &mut sa), seat(&b, &mut sb)],
        0,
        &mut c,
        3,
    )
    .await?;
    let p2p = |dest: &str| {
        let mut p = format!(
            "MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: {dest}\r\n\r\n"
        )
        .into_bytes();
        // A 48-byte binary header, a body with every byte value, the 4-byte footer.
        p.extend((0..48u8).map(|i| i.wrapping_mul(37)));
        p.extend(0..=255u8);
        p.extend([0, 0, 0, 1]);
        p
    };
    let to_bob = p2p(&email("bob"));
    send_msg(&mut sa, 4, "D", &to_bob).await?;
    expect_msg(&mut sb, "alice", &to_bob).await?;
    sa.expect_line("ACK 4").await?;
    // Carol's next frame is the text that follows, not the P2P data.
    let t = text("after");
    send_msg(&mut sa, 5, "U", &t).await?;
    expect_msg(&mut sc, "alice", &t).await?;
    expect_msg(&mut sb, "alice", &t).await?;
    let to_nobody = p2p(&email("dave"));
    send_msg(&mut sa, 6, "D", &to_nobody).await?;
    sa.expect_line("NAK 6").await?;
    Ok(())
}

/// Every refusal: `XFR` while hidden or before the first `CHG` (913), `XFR NS` (201), bad,
/// reused and someone else's cookies (911, connection closed), a wrong session id, `CAL` to
/// a bad address (208), to oneself or someone present (215), to someone offline, hidden,
/// blocking the caller or unknown (217), into a full session (712), and an oversized `MSG`
/// (201, the session goes on).
#[tokio::test]
async fn errors() -> Result<()> {
    let srv = server_with(ServerOptions {
        limits: LimitsConfig {
            change_burst: 1000,
            sb_max_participants: 2,
            max_payload: 4096,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;
    let d = Dialect::Msnp8;
    // Before the first CHG the user is not visible to anyone.
    let mut early = user(&srv, d, "early").await?;
    early.send("XFR 7 SB").await?;
    early.expect_line("913 7").await?;
    chg(&mut early, d, 8, "HDN").await?;
    early.send("XFR 9 SB").await?;
    early.expect_line("913 9").await?;
    early.send("XFR 10 NS").await?;
    early.expect_line("201 10").await?;

    let mut a = person(&srv, d, "alice").await?;
    let mut b = person(&srv, d, "bob").await?;
    // A made-up cookie.
    let mut x = srv.connect().await?;
    x.send(&format!("USR 1 {} 123.456.789", email("alice")))
        .await?;
    x.expect_line("911 1").await?;
    x.expect_closed().await?;
    // Someone else's cookie is refused, and stays good for its owner; then it is used up.
    a.ns.send("XFR 11 SB").await?;
    let line = a.ns.expect_match("XFR 11 SB {any} CKI {any}").await?;
    let cookie = line.rsplit(' ').next().unwrap_or_default().to_owned();
    let mut x = srv.connect().await?;
    x.send(&format!("USR 1 {} {cookie}", email("bob"))).await?;
    x.expect_line("911 1").await?;
    x.expect_closed().await?;
    let mut sa = srv.connect().await?;
    sa.send(&format!("USR 1 {} {cookie}", email("alice")))
        .await?;
    sa.expect_match("USR 1 OK {rest}").await?;
    let mut x = srv.connect().await?;
    x.send(&format!("USR 1 {} {cookie}", email("alice")))
        .await?;
    x.expect_line("911 1").await?;
    x.expect_closed().await?;

    sa.send("CAL 2 not-an-address").await?;
    sa.expect_line("208 2").await?;
    sa.send(&format!("CAL 3 {}", email("alice"))).await?;
    sa.expect_line("215 3").await?;
    sa.send(&format!("CAL 4 {}", email("nobody"))).await?;
    sa.expect_line("217 4").await?;
    sa.send(&format!("CAL 5 {}", email("early"))).await?;
    sa.expect_line("217 5").await?;
    // Carol blocks alice: to alice she is offline.
    let mut c = person(&srv, d, "carol").await?;
    add(&mut c.ns, d, 7, "BL", "alice").await?;
    sa.send(&format!("CAL 6 {}", email("carol"))).await?;
    sa.expect_line("217 6").await?;
    // Logged off: offline.
    let mut dave = person(&srv, d, "dave").await?;
    dave.ns.send("OUT").await?;
    dave.ns.expect_closed().await?;
    sa.send(&format!("CAL 7 {}", email("dave"))).await?;
    sa.expect_line("217 7").await?;

    // Bob's RNG cookie with a wrong session id, then the right one.
    sa.send(&format!("CAL 8 {}", email("bob"))).await?;
    let line = sa.expect_match("CAL 8 RINGING {digits}").await?;
    let sid: u32 = line.rsplit(' ').next().unwrap_or_default().parse()?;
    let rng = b.ns.expect_match("RNG {rest}").await?;
    let cookie = rng.split(' ').nth(4).unwrap_or_default().to_owned();
    let mut x = srv.connect().await?;
    x.send(&format!("ANS 1 {} {cookie} {}", email("bob"), sid + 1))
        .await?;
    x.expect_line("911 1").await?;
    x.expect_closed().await?;
    let mut sb = srv.connect().await?;
    sb.send(&format!("ANS 1 {} {cookie} {sid}", email("bob")))
        .await?;
    sb.expect_match("IRO 1 1 1 {rest}").await?;
    sb.expect_line("ANS 1 OK").await?;
    sa.expect_match("JOI {rest}").await?;
    sa.send(&format!("CAL 9 {}", email("bob"))).await?;
    sa.expect_line("215 9").await?;
    // Two is the limit here.
    sa.send(&format!("CAL 10 {}", email("carol"))).await?;
    sa.expect_line("712 10").await?;
    // Too big: 201, skipped, and the session goes on.
    let big = vec![b'x'; 5000];
    send_msg(&mut sa, 11, "A", &big).await?;
    sa.expect_line("201 11").await?;
    let m = text("still here");
    send_msg(&mut sa, 12, "A", &m).await?;
    expect_msg(&mut sb, "alice", &m).await?;
    sa.expect_line("ACK 12").await?;
    // A second login on the same connection.
    sa.send(&format!("USR 13 {} 1.2.3", email("alice"))).await?;
    sa.expect_line("207 13").await?;
    Ok(())
}

/// A participant that never reads is dropped once its queue is full; the others keep
/// talking and hear `BYE slow 1`.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_is_dropped_without_stalling_the_others() -> Result<()> {
    let srv = server_with(ServerOptions {
        limits: LimitsConfig {
            change_burst: 1000,
            event_queue: 64,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;
    let (a, mut sa, b, mut sb) = pair(&srv, Dialect::Msnp12, Dialect::Msnp12).await?;
    let mut c = person(&srv, Dialect::Msnp12, "carol").await?;
    let _slow = invite(
        &srv,
        &mut [seat(&a, &mut sa), seat(&b, &mut sb)],
        0,
        &mut c,
        3,
    )
    .await?;
    // Bob reads everything until carol is gone. Alice never gets more than a window ahead of
    // him, as a real conversation would not: what is measured is carol's backlog, not a race
    // between alice's flood and bob's reading.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = read.clone();
    let reader = tokio::spawn(async move {
        loop {
            let f = sb.recv_frame().await?;
            if f.line() == format!("BYE {} 1", email("carol")) {
                return anyhow::Ok(sb);
            }
            ensure!(f.line().starts_with("MSG "), "bob got {:?}", f.line());
            progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let m = text(&"z".repeat(1400));
    let mut sent = 0;
    while !reader.is_finished() && sent < 100_000 {
        send_msg(&mut sa, 100, "U", &m).await?;
        sent += 1;
        while sent - read.load(std::sync::atomic::Ordering::Relaxed) > 16 && !reader.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let sb = tokio::time::timeout(Duration::from_secs(30), reader).await???;
    let got = read.load(std::sync::atomic::Ordering::Relaxed);
    ensure!(got > 0 && sent < 100_000, "sent {sent}, bob got {got}");
    // Carol's drop also reached alice; alice and bob go on.
    send_msg(&mut sa, 7, "A", &m).await?;
    loop {
        let l = sa.recv_line().await?;
        if l == "ACK 7" {
            break;
        }
        ensure!(l == format!("BYE {} 1", email("carol")), "alice got {l:?}");
    }
    drop(sb);
    Ok(())
}

/// The conversation does not depend on the NS: alice signs out of the NS and still talks.
#[tokio::test]
async fn the_switchboard_outlives_the_ns_connection() -> Result<()> {
    let srv = server().await?;
    let (a, mut sa, _b, mut sb) = pair(&srv, Dialect::Msnp10, Dialect::Msnp8).await?;
    let mut ns = a.ns;
    ns.send("OUT").await?;
    ns.expect_closed().await?;
    drop(ns);
    let m = text("still here");
    send_msg(&mut sa, 3, "A", &m).await?;
    expect_msg(&mut sb, "alice", &m).await?;
    sa.expect_line("ACK 3").await?;
    send_msg(&mut sb, 3, "A", &m).await?;
    expect_msg(&mut sa, "bob", &m).await?;
    sb.expect_line("ACK 3").await?;
    Ok(())
}

/// A silent participant is timed out; the others hear `BYE email 1`.
#[tokio::test]
async fn an_idle_participant_times_out() -> Result<()> {
    let srv = server_with(ServerOptions {
        limits: LimitsConfig {
            change_burst: 1000,
            idle_timeout_secs: 2,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;
    let (_a, mut sa, _b, mut sb) = pair(&srv, Dialect::Msnp8, Dialect::Msnp8).await?;
    // Alice keeps talking (U: no answers), bob says nothing.
    let m = text(".");
    let bye = format!("BYE {} 1", email("bob"));
    for _ in 0..40 {
        send_msg(&mut sa, 3, "U", &m).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        send_msg(&mut sa, 4, "A", &m).await?;
        let l = sa.recv_line().await?;
        if l == bye {
            sb.expect_closed().await.ok();
            return Ok(());
        }
        ensure!(l == "ACK 4", "alice got {l:?}");
    }
    Err(anyhow!("bob was never timed out"))
}

/// Bob blocks alice. Alice cannot reach him herself (217, as if he were offline), but carol,
/// chatting with bob, may invite alice, who then sees bob in `IRO` and bob sees her `JOI` and
/// her messages: the official service worked so (its support pages said a blocked person can
/// still share a conversation when someone else invites both), and msgr keeps it (see
/// `msgr_core::privacy`).
#[tokio::test]
async fn a_blocked_user_joins_through_a_third_party() -> Result<()> {
    let srv = server().await?;
    let d = Dialect::Msnp12;
    let mut a = person(&srv, d, "alice").await?;
    let mut c = person(&srv, d, "carol").await?;
    let mut b = person(&srv, d, "bob").await?;
    add(&mut b.ns, d, 7, "BL", "alice").await?;

    // Directly: refused, indistinguishable from offline.
    let mut sa = open(&srv, &mut a).await?;
    sa.send(&format!("CAL 2 {}", email("bob"))).await?;
    sa.expect_line("217 2").await?;
    drop(sa);

    // Through carol: carol calls bob, then alice.
    let mut sc = open(&srv, &mut c).await?;
    let mut sb = invite(&srv, &mut [seat(&c, &mut sc)], 0, &mut b, 2).await?;
    let mut sa = invite(
        &srv,
        &mut [seat(&c, &mut sc), seat(&b, &mut sb)],
        0,
        &mut a,
        3,
    )
    .await?;
    let m = text("hello bob");
    send_msg(&mut sa, 2, "A", &m).await?;
    expect_msg(&mut sb, "alice", &m).await?;
    expect_msg(&mut sc, "alice", &m).await?;
    sa.expect_line("ACK 2").await?;
    Ok(())
}

//! msgr-client against the real server: login in every dialect, lists, presence, a
//! three-party chat, an MSNFTP transfer checked byte for byte, reconnecting after a restart;
//! and against scripted hostile servers, which must yield typed errors, never a panic or a hang.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, Context, Result};
use msgr_client::{
    AuthFailure, ChatEvent, Client, ClientError, Config, Dialect, DisconnectReason, Event, List,
    ListChange, Status, TlsTrust,
};
use msgr_it::{Endpoint, ServerOptions, TestServer, TIMEOUT};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::Receiver;

const PASSWORD: &str = "pw-123456";

fn config(ep: &Endpoint, dialect: Dialect, email: &str) -> Config {
    let mut c = Config::new(ep.msnp.to_string(), email, PASSWORD);
    c.nexus = format!("https://{}/rdr/pprdr.asp", ep.https);
    c.tls = TlsTrust::CertificateFile(ep.ca.clone());
    c.dialect = dialect;
    c.timeout = TIMEOUT;
    c.reconnect.initial = Duration::from_millis(100);
    c.reconnect.max = Duration::from_millis(500);
    c.reconnect.max_attempts = Some(40);
    c
}

async fn server(legacy: bool) -> Result<TestServer> {
    let s = TestServer::start(if legacy {
        ServerOptions::legacy()
    } else {
        ServerOptions::default()
    })
    .await?;
    for name in ["alice", "bob", "carol"] {
        s.add_account(&format!("{name}@x.com"), PASSWORD, name)
            .await?;
    }
    Ok(s)
}

async fn connect(s: &TestServer, d: Dialect, name: &str) -> Result<(Client, Receiver<Event>)> {
    Client::connect(config(&s.endpoint(), d, &format!("{name}@x.com")))
        .await
        .with_context(|| format!("{name} signing in with {d}"))
}

/// The first event `pick` accepts, skipping the rest; fails after [`TIMEOUT`].
async fn wait_for<T>(
    events: &mut Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + TIMEOUT * 2;
    let mut seen = Vec::new();
    loop {
        let e = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => bail!("event stream ended waiting for {what}; saw {seen:?}"),
            Err(_) => bail!("no {what} in time; saw {seen:?}"),
        };
        if let Some(t) = pick(&e) {
            return Ok(t);
        }
        seen.push(e);
    }
}

#[tokio::test]
async fn signs_in_with_every_dialect() -> Result<()> {
    let s = server(false).await?;
    for d in [
        Dialect::Msnp8,
        Dialect::Msnp9,
        Dialect::Msnp10,
        Dialect::Msnp11,
        Dialect::Msnp12,
    ] {
        let (c, _ev) = connect(&s, d, "alice").await?;
        assert_eq!(c.dialect(), d);
        assert_eq!(c.status(), Status::Online);
        c.set_status(Status::Away).await?;
        c.sign_out().await;
    }
    let legacy = server(true).await?;
    let (c, _ev) = connect(&legacy, Dialect::Msnp7, "bob").await?;
    assert_eq!(c.display_name(), "bob");
    c.set_status(Status::Busy).await?;
    c.sign_out().await;
    Ok(())
}

#[tokio::test]
async fn wrong_passwords_are_typed_errors() -> Result<()> {
    let s = server(true).await?;
    let mut cfg = config(&s.endpoint(), Dialect::Msnp12, "alice@x.com");
    cfg.password = "nope".into();
    match Client::connect(cfg).await {
        Err(ClientError::Auth(AuthFailure::PassportRefused { status: 401 })) => {}
        other => bail!("expected a Passport refusal, got {:?}", other.map(|_| ())),
    }
    let mut cfg = config(&s.endpoint(), Dialect::Msnp7, "alice@x.com");
    cfg.password = "nope".into();
    match Client::connect(cfg).await {
        Err(ClientError::Auth(AuthFailure::Rejected)) => {}
        other => bail!("expected 911, got {:?}", other.map(|_| ())),
    }
    // No trusted certificate: the TLS handshake fails, the password is never sent.
    let mut cfg = config(&s.endpoint(), Dialect::Msnp12, "alice@x.com");
    cfg.tls = TlsTrust::SystemRoots;
    assert!(matches!(
        Client::connect(cfg).await,
        Err(ClientError::Tls(_))
    ));
    // ... unless the caller asks, by name, for no verification.
    let mut cfg = config(&s.endpoint(), Dialect::Msnp12, "alice@x.com");
    cfg.tls = TlsTrust::InsecureAcceptAnyCertificate;
    Client::connect(cfg).await?.0.sign_out().await;
    Ok(())
}

async fn list_management(d: Dialect) -> Result<()> {
    let s = server(false).await?;
    let (alice, mut a_ev) = connect(&s, d, "alice").await?;
    let (_bob, mut b_ev) = connect(&s, d, "bob").await?;
    alice.add_contact(List::Forward, "bob@x.com").await?;
    alice.add_contact(List::Allow, "bob@x.com").await?;
    wait_for(&mut b_ev, "bob hears he was added", |e| match e {
        Event::ListChanged(ListChange::Added {
            list: List::Reverse,
            email,
            ..
        }) if email == "alice@x.com" => Some(()),
        _ => None,
    })
    .await?;
    assert!(alice.lists().contacts["bob@x.com"].on(List::Forward));

    alice.block("bob@x.com").await?;
    let l = alice.lists();
    assert!(l.contacts["bob@x.com"].on(List::Block) && !l.contacts["bob@x.com"].on(List::Allow));
    alice.allow("bob@x.com").await?;
    let l = alice.lists();
    assert!(!l.contacts["bob@x.com"].on(List::Block) && l.contacts["bob@x.com"].on(List::Allow));

    let g = alice.add_group("Work mates").await?;
    alice.rename_group(&g, "Team").await?;
    alice.add_to_group("bob@x.com", &g).await?;
    let l = alice.lists();
    assert_eq!(l.groups[&g], "Team");
    assert!(l.contacts["bob@x.com"].groups.contains(&g));
    alice.remove_from_group("bob@x.com", &g).await?;
    alice.remove_group(&g).await?;
    // A server error reaches the caller with its code and meaning.
    let e = alice
        .remove_group(&g)
        .await
        .err()
        .context("removing a removed group succeeded")?;
    let code = e.server_code().context("a server error")?;
    assert_eq!(code.code, Some(msgr_client::ErrorCode::InvalidGroup), "{e}");
    assert_eq!(code.meaning(), "invalid group");

    // Sign in again with the saved cache: the unchanged list is not downloaded.
    let cache = alice.lists();
    alice.sign_out().await;
    drop(alice);
    tokio::time::timeout(TIMEOUT, async { while a_ev.recv().await.is_some() {} }).await?;
    let mut cfg = config(&s.endpoint(), d, "alice@x.com");
    cfg.list_cache = Some(cache.clone());
    let (again, _ev) = Client::connect(cfg.clone()).await?;
    if d < Dialect::Msnp10 {
        assert!(
            again.lists_from_cache(),
            "{d}: the list was downloaded again"
        );
        assert_eq!(again.lists().contacts, cache.contacts);
    }
    assert!(again.lists().contacts["bob@x.com"].on(List::Forward));
    again.sign_out().await;
    Ok(())
}

#[tokio::test]
async fn list_management_msnp8() -> Result<()> {
    list_management(Dialect::Msnp8).await
}

#[tokio::test]
async fn list_management_msnp12() -> Result<()> {
    list_management(Dialect::Msnp12).await
}

#[tokio::test]
async fn presence_events() -> Result<()> {
    let s = server(false).await?;
    let d = Dialect::Msnp12;
    let (alice, mut a_ev) = connect(&s, d, "alice").await?;
    alice.add_contact(List::Forward, "bob@x.com").await?;
    let (bob, _b_ev) = connect(&s, d, "bob").await?;
    wait_for(&mut a_ev, "bob online", |e| match e {
        Event::Presence {
            email,
            status: Status::Online,
            ..
        } if email == "bob@x.com" => Some(()),
        _ => None,
    })
    .await?;
    bob.set_status(Status::Busy).await?;
    wait_for(&mut a_ev, "bob busy", |e| match e {
        Event::Presence {
            status: Status::Busy,
            ..
        } => Some(()),
        _ => None,
    })
    .await?;
    bob.set_personal_message("on <holiday> & away").await?;
    let psm = wait_for(&mut a_ev, "bob's personal message", |e| match e {
        Event::PersonalMessage { email, text } if email == "bob@x.com" => Some(text.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(psm, "on <holiday> & away");
    bob.set_nickname("Bobby B").await?;
    assert_eq!(bob.display_name(), "Bobby B");
    bob.set_status(Status::AppearOffline).await?;
    wait_for(&mut a_ev, "bob hidden", |e| match e {
        Event::Offline { email } if email == "bob@x.com" => Some(()),
        _ => None,
    })
    .await?;
    bob.set_status(Status::Online).await?;
    let name = wait_for(&mut a_ev, "bob back", |e| match e {
        Event::Presence {
            email,
            status: Status::Online,
            name,
            ..
        } if email == "bob@x.com" => Some(name.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(name, "Bobby B");
    bob.sign_out().await;
    wait_for(&mut a_ev, "bob signed out", |e| {
        matches!(e, Event::Offline { .. }).then_some(())
    })
    .await?;
    Ok(())
}

/// Answers the next ring and returns the chat.
async fn answer_ring(c: &Client, ev: &mut Receiver<Event>) -> Result<msgr_client::Chat> {
    let ring = wait_for(ev, "a ring", |e| match e {
        Event::Ring(r) => Some(r.clone()),
        _ => None,
    })
    .await?;
    Ok(c.answer(&ring).await?)
}

async fn message(ev: &mut Receiver<Event>) -> Result<(String, String)> {
    wait_for(ev, "a message", |e| match e {
        Event::Chat {
            event: ChatEvent::Message { from, text, .. },
            ..
        } => Some((from.clone(), text.clone())),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn three_party_chat() -> Result<()> {
    let s = server(false).await?;
    let d = Dialect::Msnp12;
    let (alice, mut a_ev) = connect(&s, d, "alice").await?;
    let (bob, mut b_ev) = connect(&s, Dialect::Msnp9, "bob").await?;
    let (carol, mut c_ev) = connect(&s, Dialect::Msnp11, "carol").await?;
    let chat = alice.start_chat("bob@x.com").await?;
    let b_chat = answer_ring(&bob, &mut b_ev).await?;
    wait_for(&mut a_ev, "bob joins", |e| match e {
        Event::Chat {
            event: ChatEvent::Joined { email, .. },
            ..
        } if email == "bob@x.com" => Some(()),
        _ => None,
    })
    .await?;
    chat.invite("carol@x.com").await?;
    let c_chat = answer_ring(&carol, &mut c_ev).await?;
    assert_eq!(c_chat.participants().len(), 2);

    chat.send_text("hello both").await?;
    assert_eq!(
        message(&mut b_ev).await?,
        ("alice@x.com".into(), "hello both".into())
    );
    assert_eq!(
        message(&mut c_ev).await?,
        ("alice@x.com".into(), "hello both".into())
    );
    b_chat.send_typing("bob@x.com").await?;
    wait_for(&mut a_ev, "bob typing", |e| match e {
        Event::Chat {
            event: ChatEvent::Typing { from },
            ..
        } if from == "bob@x.com" => Some(()),
        _ => None,
    })
    .await?;
    let fmt = msgr_client::ImFormat::parse("FN=Arial; EF=B; CO=ff; CS=0; PF=22");
    c_chat.send_message("bold from carol", Some(fmt)).await?;
    let got = wait_for(&mut a_ev, "carol's formatted text", |e| match e {
        Event::Chat {
            event:
                ChatEvent::Message {
                    format: Some(f),
                    text,
                    ..
                },
            ..
        } => Some((f.is_bold(), text.clone())),
        _ => None,
    })
    .await?;
    assert_eq!(got, (true, "bold from carol".into()));
    c_chat.leave().await;
    wait_for(&mut a_ev, "carol leaves", |e| match e {
        Event::Chat {
            event: ChatEvent::Left { email, .. },
            ..
        } if email == "carol@x.com" => Some(()),
        _ => None,
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn file_transfer_is_byte_identical() -> Result<()> {
    let s = server(false).await?;
    let (alice, _a_ev) = connect(&s, Dialect::Msnp12, "alice").await?;
    let (bob, mut b_ev) = connect(&s, Dialect::Msnp8, "bob").await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("photo.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data)?;
    let chat = alice.start_chat("bob@x.com").await?;
    let b_chat = answer_ring(&bob, &mut b_ev).await?;
    let sent_progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p = sent_progress.clone();
    let outgoing = chat
        .send_file(
            &src,
            Some(std::sync::Arc::new(move |pr: msgr_client::Progress| {
                p.store(pr.transferred, std::sync::atomic::Ordering::Relaxed)
            })),
        )
        .await?;
    let offer = wait_for(&mut b_ev, "the offer", |e| match e {
        Event::Chat {
            event: ChatEvent::FileOffered(o),
            ..
        } => Some(o.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(
        (offer.file_name.as_str(), offer.size),
        ("photo.bin", data.len() as u64)
    );
    let dest = dir.path().join("received.bin");
    let incoming = b_chat.accept_file(&offer, &dest, None).await?;
    let (got, sent) = tokio::join!(incoming.finished(), outgoing.finished());
    assert_eq!(got?, data.len() as u64);
    assert_eq!(sent?, data.len() as u64);
    assert_eq!(
        sent_progress.load(std::sync::atomic::Ordering::Relaxed),
        data.len() as u64
    );
    assert!(std::fs::read(&dest)? == data, "the received file differs");

    // A declined offer ends the sender's transfer with Cancelled.
    let outgoing = chat.send_file(&src, None).await?;
    let offer = wait_for(&mut b_ev, "the second offer", |e| match e {
        Event::Chat {
            event: ChatEvent::FileOffered(o),
            ..
        } => Some(o.clone()),
        _ => None,
    })
    .await?;
    b_chat.decline_file(&offer).await?;
    assert!(matches!(
        outgoing.finished().await,
        Err(ClientError::Cancelled)
    ));

    // The sender cancels while waiting: the receiver hears CANCEL, the sender gets Cancelled.
    let outgoing = chat.send_file(&src, None).await?;
    let offer = wait_for(&mut b_ev, "the third offer", |e| match e {
        Event::Chat {
            event: ChatEvent::FileOffered(o),
            ..
        } => Some(o.clone()),
        _ => None,
    })
    .await?;
    assert!(matches!(
        outgoing.finished_or_cancelled(async {}).await,
        Err(ClientError::Cancelled)
    ));
    wait_for(&mut b_ev, "the cancel", |e| match e {
        Event::Chat {
            event: ChatEvent::FileCancelled { cookie, .. },
            ..
        } if *cookie == offer.cookie => Some(()),
        _ => None,
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() -> Result<()> {
    let mut s = server(false).await?;
    let (alice, mut a_ev) = connect(&s, Dialect::Msnp12, "alice").await?;
    alice.add_contact(List::Forward, "bob@x.com").await?;
    alice.set_status(Status::Busy).await?;
    s.restart().await?;
    let reason = wait_for(&mut a_ev, "the disconnect", |e| match e {
        Event::Disconnected {
            reason,
            reconnecting: true,
        } => Some(reason.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(reason, DisconnectReason::ServerShutdown);
    wait_for(&mut a_ev, "the reconnect", |e| {
        matches!(e, Event::Reconnected).then_some(())
    })
    .await?;
    // The status was restored and the session works; bob sees exactly one alice.
    assert_eq!(alice.status(), Status::Busy);
    let (bob, mut b_ev) = connect(&s, Dialect::Msnp12, "bob").await?;
    bob.add_contact(List::Forward, "alice@x.com").await?;
    let st = wait_for(&mut b_ev, "alice's presence", |e| match e {
        Event::Presence { email, status, .. } if email == "alice@x.com" => Some(*status),
        _ => None,
    })
    .await?;
    assert_eq!(st, Status::Busy);
    let chat = bob.start_chat("alice@x.com").await?;
    let _a_chat = answer_ring(&alice, &mut a_ev).await?;
    chat.send_text("still there?").await?;
    assert_eq!(message(&mut a_ev).await?.1, "still there?");
    Ok(())
}

/// A server that runs `script` on the first connection it accepts.
async fn fake_server<F, Fut>(script: F) -> Result<String>
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?.to_string();
    tokio::spawn(async move {
        if let Ok((s, _)) = l.accept().await {
            script(s).await;
        }
    });
    Ok(addr)
}

/// Reads one CRLF-terminated line.
async fn line(s: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).await.unwrap_or(0) == 1 {
        if b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

fn fake_config(addr: &str) -> Config {
    let mut c = Config::new(addr, "me@x.com", "pw");
    c.dialect = Dialect::Msnp7;
    c.timeout = Duration::from_millis(800);
    c.reconnect.enabled = false;
    c
}

#[tokio::test]
async fn hostile_servers_give_typed_errors() -> Result<()> {
    // Hangs up at once.
    let addr = fake_server(|s| async move { drop(s) }).await?;
    assert!(matches!(
        Client::connect(fake_config(&addr)).await,
        Err(ClientError::Closed | ClientError::Io(_))
    ));

    // A line longer than the codec allows.
    let addr = fake_server(|mut s| async move {
        let _ = line(&mut s).await;
        let _ = s.write_all(&vec![b'A'; 20_000]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await?;
    assert!(matches!(
        Client::connect(fake_config(&addr)).await,
        Err(ClientError::Frame(_))
    ));

    // A numeric error keeps its code and meaning.
    let addr = fake_server(|mut s| async move {
        let _ = line(&mut s).await;
        let _ = s.write_all(b"600 1\r\n").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await?;
    match Client::connect(fake_config(&addr)).await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.number, 600);
            assert_eq!(e.meaning(), "server busy");
        }
        other => bail!("expected 600, got {:?}", other.map(|_| ())),
    }

    // Chatter and silence: a timeout, not a hang.
    let addr = fake_server(|mut s| async move {
        let _ = line(&mut s).await;
        let _ = s
            .write_all(b"ZZZ nonsense\r\n\x01\x02 junk\r\nFOO 7 bar\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await?;
    assert!(matches!(
        Client::connect(fake_config(&addr)).await,
        Err(ClientError::Timeout(_))
    ));

    // A full MD5 sign-in sprinkled with unknown commands and an over-long payload, then a
    // presence line, then the connection drops.
    let addr = fake_server(|mut s| async move {
        let _ = line(&mut s).await; // VER
        let _ = s.write_all(b"VER 1 MSNP7 CVR0\r\nWHAT is this\r\n").await;
        let _ = line(&mut s).await; // INF
        let _ = s.write_all(b"INF 2 MD5\r\n").await;
        let _ = line(&mut s).await; // USR I
        let _ = s.write_all(b"USR 3 MD5 S 1013928519.693957190\r\n").await;
        let _ = line(&mut s).await; // USR S
        let _ = s.write_all(b"USR 4 OK me@x.com Me\r\n").await;
        let mut big = b"MSG Hotmail Hotmail 200000\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 200_000));
        let _ = s.write_all(&big).await;
        let _ = line(&mut s).await; // SYN
        let _ = s.write_all(b"XYZ 5 1 2 3\r\nSYN 5 0\r\n").await;
        let _ = line(&mut s).await; // CHG
        let _ = s
            .write_all(b"CHG 6 NLN\r\nILN 6 AWY bob@x.com Bob%20B\r\nNLN NOPE x y\r\n")
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await?;
    let (c, mut ev) = Client::connect(fake_config(&addr)).await?;
    let (email, name) = wait_for(&mut ev, "the ILN", |e| match e {
        Event::Presence {
            email,
            name,
            status: Status::Away,
            ..
        } => Some((email.clone(), name.clone())),
        _ => None,
    })
    .await?;
    assert_eq!((email.as_str(), name.as_str()), ("bob@x.com", "Bob B"));
    let reason = wait_for(&mut ev, "the drop", |e| match e {
        Event::Disconnected {
            reason,
            reconnecting: false,
        } => Some(reason.clone()),
        _ => None,
    })
    .await?;
    assert!(matches!(reason, DisconnectReason::ConnectionLost(_)));
    // The event stream ends with the session once the handle is gone.
    drop(c);
    tokio::time::timeout(TIMEOUT, async { while ev.recv().await.is_some() {} }).await?;
    Ok(())
}

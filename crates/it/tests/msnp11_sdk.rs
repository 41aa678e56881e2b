//! A client nobody here wrote: `msnp11-sdk` 0.13.0 (crates.io, MIT), an MSNP11 client library,
//! logs in, goes online and chats through the real msgr (issue "Real clients").
//!
//! How the SDK is pointed at msgr, and why:
//! - **Notification server:** `Client::new("127.0.0.1", port)`. Alice starts at the dispatch
//!   listener and follows `XFR … NS` (the SDK reports `Event::RedirectedTo`; the caller makes a
//!   new `Client` and logs in again, as its documentation says); Bob goes straight to the NS.
//! - **Nexus:** `http://127.0.0.1:<http>/rdr/pprdr-minimal-http.asp`. The SDK takes the whole
//!   `PassportURLs` header, strips `DALogin=` and uses the rest as the login URL (prefixing
//!   `https://` when there is no scheme), so it needs the minimal form. Its HTTP client is
//!   reqwest with rustls and the built-in public (webpki) roots only: it cannot be told to trust
//!   msgr's self-signed certificate, so the login URL must be plain `http://` — which the
//!   `-http` nexus path advertises (the HTTP listener's `login2.srf`).
//! - **Passwords** are put into the `Authorization` header without URL-encoding (an SDK
//!   shortcut; the protocol URL-encodes `pwd`), so the test passwords avoid `%` and `,`.
//!
//! Disagreements found, and who was right:
//! - `GCF t Shields.xml`: the SDK's login waits for the `GCF` reply (with no timeout); msgr
//!   answered `502`. The command is MSNP11/MSNP12 (yellows111 msnp-wiki, "gcf"), so msgr was
//!   wrong and now serves an empty Shields configuration (`ns/gcf.rs`).
//! - Every SDK call waits for its own reply forever and ignores most error codes, so each
//!   call here is wrapped in a deadline: a failure reads as "X timed out", not as a hang.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, Context, Result};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msnp11_sdk::{Client, Event, MsnpList, MsnpStatus, PersonalMessage, PlainText, Switchboard};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "sdk-pass-123";

/// Runs one SDK call under the test deadline.
async fn within<T, E: std::fmt::Debug>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bail!("{what} failed: {e:?}"),
        Err(_) => bail!("{what} timed out"),
    }
}

/// The events of one SDK client or switchboard, in order.
struct Events {
    who: &'static str,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    fn of_client(who: &'static str, client: &Client) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        client.add_event_handler_closure(move |e| {
            let _ = tx.send(e);
            async {}
        });
        Events { who, rx }
    }

    fn of_switchboard(who: &'static str, sb: &Switchboard) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        sb.add_event_handler_closure(move |e| {
            let _ = tx.send(e);
            async {}
        });
        Events { who, rx }
    }

    /// Skips events until `pick` returns something; fails on disconnect or the deadline.
    async fn wait<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let e = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("{}: timed out waiting for {what}; saw {seen:?}", self.who)
                })?
                .with_context(|| format!("{}: events ended waiting for {what}", self.who))?;
            if let Some(v) = pick(&e) {
                return Ok(v);
            }
            if matches!(e, Event::Disconnected | Event::LoggedInAnotherDevice) {
                bail!(
                    "{}: disconnected waiting for {what}; saw {seen:?}",
                    self.who
                );
            }
            seen.push(format!("{e:?}"));
        }
    }
}

/// Logs in through `server:port` (following a dispatch redirect) and returns the client.
async fn log_in(msnp: std::net::SocketAddr, nexus: &str, email: &str) -> Result<Client> {
    let mut client = within("connect", Client::new("127.0.0.1", msnp.port())).await?;
    let mut event = within(
        "login",
        client.login(email.to_owned(), PASSWORD, nexus, "msnp11-sdk", "0.13.0"),
    )
    .await?;
    if let Event::RedirectedTo { server, port } = event {
        client = within("reconnect", Client::new(&server, port)).await?;
        event = within(
            "login after redirect",
            client.login(email.to_owned(), PASSWORD, nexus, "msnp11-sdk", "0.13.0"),
        )
        .await?;
    }
    assert!(matches!(event, Event::Authenticated), "{event:?}");
    Ok(client)
}

fn text(s: &str) -> PlainText {
    PlainText {
        bold: false,
        italic: false,
        underline: false,
        strikethrough: false,
        color: "0".to_owned(),
        text: s.to_owned(),
    }
}

#[tokio::test]
async fn two_sdk_clients_log_in_add_each_other_and_chat() -> Result<()> {
    let server = TestServer::start(ServerOptions {
        dispatch_listener: true,
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    server.add_account(BOB, PASSWORD, "Bob").await?;
    let http = server.addrs.http.context("no HTTP listener")?;
    let nexus = format!(
        "http://127.0.0.1:{}/rdr/pprdr-minimal-http.asp",
        http.port()
    );
    let dispatch = server.addrs.dispatch.context("no dispatch listener")?;

    // Log in: Alice through the dispatch listener, Bob at the NS.
    let alice = log_in(dispatch, &nexus, ALICE).await?;
    let mut alice_ev = Events::of_client("alice", &alice);
    let bob = log_in(server.addrs.msnp, &nexus, BOB).await?;
    let mut bob_ev = Events::of_client("bob", &bob);

    // Online with a personal message.
    for (c, psm) in [(&alice, "alice here"), (&bob, "bob here")] {
        within("CHG", c.set_presence(MsnpStatus::Online)).await?;
        let pm = PersonalMessage {
            psm: psm.to_owned(),
            current_media: String::new(),
        };
        within("UUX", c.set_personal_message(&pm)).await?;
    }

    // Alice adds Bob; Bob is told, adds her back, and each sees the other online.
    let added = within(
        "ADC FL",
        alice.add_contact(BOB, "Bob", MsnpList::ForwardList),
    )
    .await?;
    assert!(
        matches!(&added, Event::ContactInForwardList { email, guid, .. } if email == BOB && !guid.is_empty()),
        "{added:?}"
    );
    within("ADC AL", alice.add_contact(BOB, "Bob", MsnpList::AllowList)).await?;
    bob_ev
        .wait("ADC 0 RL from alice", |e| match e {
            Event::AddedBy { email, .. } if email == ALICE => Some(()),
            _ => None,
        })
        .await?;
    within(
        "ADC FL",
        bob.add_contact(ALICE, "Alice", MsnpList::ForwardList),
    )
    .await?;
    within(
        "ADC AL",
        bob.add_contact(ALICE, "Alice", MsnpList::AllowList),
    )
    .await?;
    alice_ev
        .wait("Bob's NLN", |e| match e {
            Event::PresenceUpdate {
                email, presence, ..
            } if email == BOB => Some(presence.status.clone()),
            _ => None,
        })
        .await
        .map(|s| assert!(matches!(s, MsnpStatus::Online), "{s:?}"))?;
    alice_ev
        .wait("Bob's UBX", |e| match e {
            Event::PersonalMessageUpdate {
                email,
                personal_message,
            } if email == BOB => Some(personal_message.psm.clone()),
            _ => None,
        })
        .await
        .map(|psm| assert_eq!(psm, "bob here"))?;
    bob_ev
        .wait("Alice's NLN", |e| match e {
            Event::PresenceUpdate { email, .. } if email == ALICE => Some(()),
            _ => None,
        })
        .await?;
    bob_ev
        .wait("Alice's UBX", |e| match e {
            Event::PersonalMessageUpdate {
                email,
                personal_message,
            } if email == ALICE => Some(personal_message.psm.clone()),
            _ => None,
        })
        .await
        .map(|psm| assert_eq!(psm, "alice here"))?;

    // Alice opens a conversation (XFR SB, USR, CAL); Bob's client answers the RNG by itself.
    let alice_sb = within("XFR SB + USR + CAL", alice.create_session(BOB)).await?;
    let mut alice_sb_ev = Events::of_switchboard("alice sb", &alice_sb);
    let bob_sb: Arc<Switchboard> = bob_ev
        .wait("RNG answered", |e| match e {
            Event::SessionAnswered(sb) => Some(sb.clone()),
            _ => None,
        })
        .await?;
    let mut bob_sb_ev = Events::of_switchboard("bob sb", &bob_sb);
    alice_sb_ev
        .wait("JOI bob", |e| match e {
            Event::ParticipantInSwitchboard { email } if email == BOB => Some(()),
            _ => None,
        })
        .await?;

    // Typing, then text (MSG A, acknowledged), and Bob's reply.
    within("MSG U typing", alice_sb.send_typing_user(ALICE)).await?;
    within("MSG A", alice_sb.send_text_message(&text("hello Bob"))).await?;
    bob_sb_ev
        .wait("typing", |e| match e {
            Event::TypingNotification { email } if email == ALICE => Some(()),
            _ => None,
        })
        .await?;
    bob_sb_ev
        .wait("Alice's text", |e| match e {
            Event::TextMessage { email, message } if email == ALICE => Some(message.text.clone()),
            _ => None,
        })
        .await
        .map(|t| assert_eq!(t, "hello Bob"))?;
    within("MSG A reply", bob_sb.send_text_message(&text("hi Alice"))).await?;
    alice_sb_ev
        .wait("Bob's reply", |e| match e {
            Event::TextMessage { email, message } if email == BOB => Some(message.text.clone()),
            _ => None,
        })
        .await
        .map(|t| assert_eq!(t, "hi Alice"))?;

    within("OUT", alice.disconnect()).await?;
    within("OUT", bob.disconnect()).await?;
    server.stop().await
}

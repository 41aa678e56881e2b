//! DNS blocklists on the MX (`[mail] dnsbl`) against a DNS server of the test's own on loopback UDP
//! (`msgr_it::dns`), which lists 127.0.0.1 in `bl.test` and never answers for `quiet.test`: a listed
//! client's mail goes to Junk with the hit named in `X-Spam-Status`, an unlisted client's to the Inbox,
//! a list that does not answer costs no mail, and without `dnsbl` (the default) nothing is asked.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Context, Result};
use msgr_it::dns::{DnsStub, Zone};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::MailConfig;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

const ALICE: &str = "alice@example.com";

/// `1.0.0.127.bl.test` is listed (127.0.0.2, the usual test point); `2.0.0.127.bl.test` is not;
/// `quiet.test` never answers.
async fn dns() -> Result<DnsStub> {
    DnsStub::start(Zone {
        a: [("1.0.0.127.bl.test".to_owned(), vec![[127, 0, 0, 2].into()])].into(),
        silent: vec!["quiet.test".into()],
        ..Zone::default()
    })
    .await
}

async fn start(mail: MailConfig) -> Result<TestServer> {
    let server = TestServer::start(ServerOptions {
        mail: Some(mail),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, "pw", "Alice").await?;
    Ok(server)
}

/// An ordinary message (no sign of spam of its own).
fn message(subject: &str) -> String {
    format!(
        "From: Ann <ann@plain.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\
         Date: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{subject}@plain.test>\r\n\r\n\
         The minutes of Tuesday's meeting are below; please check the dates before Friday.\r\n"
    )
}

/// Sends `subjects` in one session over the MX from `from` (a loopback address); the replies to the end
/// of each `DATA`.
async fn send(server: &TestServer, from: IpAddr, subjects: &[&str]) -> Result<Vec<String>> {
    let addr = server.addrs.mail.smtp.context("SMTP listener")?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr)).await??;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut commands = vec!["EHLO mail.plain.test".to_owned()];
    for subject in subjects {
        commands.push("MAIL FROM:<ann@plain.test>".into());
        commands.push(format!("RCPT TO:<{ALICE}>"));
        commands.push("DATA".into());
        commands.push(format!("{}.", message(subject)));
    }
    let mut replies = Vec::new();
    let mut line = String::new();
    for (i, command) in std::iter::once("")
        .chain(commands.iter().map(String::as_str))
        .enumerate()
    {
        if i > 0 {
            wr.write_all(format!("{command}\r\n").as_bytes()).await?;
        }
        loop {
            line.clear();
            tokio::time::timeout(TIMEOUT, rd.read_line(&mut line))
                .await
                .with_context(|| format!("no reply to {command:?} within {TIMEOUT:?}"))??;
            ensure!(!line.is_empty(), "connection closed after {command}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if command.ends_with("\r\n.") {
            replies.push(line.trim_end().to_owned());
        }
    }
    wr.write_all(b"QUIT\r\n").await?;
    Ok(replies)
}

async fn folder(server: &TestServer, name: &str) -> Result<Vec<String>> {
    Ok(server
        .mail_messages(ALICE, name)
        .await?
        .into_iter()
        .map(|(_, raw)| String::from_utf8_lossy(&raw).into_owned())
        .collect())
}

fn spam_status(message: &str) -> &str {
    message
        .lines()
        .find(|l| l.starts_with("X-Spam-Status: "))
        .unwrap_or("")
}

fn asked(dns: &DnsStub, name: &str) -> usize {
    dns.queries().iter().filter(|q| *q == name).count()
}

/// A listed client's mail goes to Junk (accepted, not refused) with the zone's hit; another client's
/// identical mail goes to the Inbox. The blocklists run without sender authentication, and a client's
/// answer is reused for its next message.
#[tokio::test]
async fn a_listed_client_goes_to_junk_and_another_to_the_inbox() -> Result<()> {
    let dns = dns().await?;
    let server = start(MailConfig {
        auth_dns: vec![dns.addr],
        sender_auth: false,
        dnsbl: vec!["bl.test".into()],
        // Enough on its own, whatever the content filter makes of the text.
        dnsbl_score: 10.0,
        dnsbl_skip_private: false,
        ..MailConfig::default()
    })
    .await?;
    let listed: IpAddr = [127, 0, 0, 1].into();
    let replies = send(&server, listed, &["first", "second"]).await?;
    ensure!(replies.iter().all(|r| r.starts_with("250 ")), "{replies:?}");
    let junk = folder(&server, "Junk").await?;
    ensure!(junk.len() == 2, "{} in Junk", junk.len());
    for m in &junk {
        let status = spam_status(m);
        ensure!(
            status.starts_with("X-Spam-Status: Yes") && status.contains("RCVD_IN_DNSBL_BL_TEST"),
            "{status}"
        );
        ensure!(!m.contains("Authentication-Results"), "{m}");
    }
    ensure!(asked(&dns, "1.0.0.127.bl.test") == 1, "{:?}", dns.queries());

    let unlisted: IpAddr = [127, 0, 0, 2].into();
    let replies = send(&server, unlisted, &["third"]).await?;
    ensure!(replies[0].starts_with("250 "), "{replies:?}");
    let inbox = folder(&server, "INBOX").await?;
    ensure!(inbox.len() == 1, "{} in INBOX", inbox.len());
    ensure!(!inbox[0].contains("RCVD_IN_DNSBL"), "{}", inbox[0]);
    ensure!(asked(&dns, "2.0.0.127.bl.test") >= 1, "{:?}", dns.queries());
    server.stop().await
}

/// A list that never answers counts as not listing: the message is accepted in the list's time limit and
/// goes to the Inbox. Sender authentication runs beside it against the same DNS server.
#[tokio::test]
async fn a_list_that_does_not_answer_costs_no_mail() -> Result<()> {
    let dns = dns().await?;
    let server = start(MailConfig {
        auth_dns: vec![dns.addr],
        dnsbl: vec!["quiet.test".into()],
        dnsbl_timeout_secs: 1,
        dnsbl_skip_private: false,
        ..MailConfig::default()
    })
    .await?;
    // `send` fails if a reply takes longer than TIMEOUT.
    let replies = send(&server, [127, 0, 0, 1].into(), &["quiet"]).await?;
    ensure!(replies[0].starts_with("250 "), "{replies:?}");
    let inbox = folder(&server, "INBOX").await?;
    ensure!(inbox.len() == 1, "{} in INBOX", inbox.len());
    ensure!(
        inbox[0].contains("Authentication-Results: "),
        "{}",
        inbox[0]
    );
    ensure!(
        asked(&dns, "1.0.0.127.quiet.test") >= 1,
        "{:?}",
        dns.queries()
    );
    server.stop().await
}

/// Without `[mail] dnsbl` nothing is asked; with it, loopback clients are still not asked about unless
/// `dnsbl_skip_private = false` (a public list knows nothing of them).
#[tokio::test]
async fn nothing_is_asked_by_default_nor_about_private_clients() -> Result<()> {
    let dns = dns().await?;
    for mail in [
        MailConfig {
            auth_dns: vec![dns.addr],
            ..MailConfig::default()
        },
        MailConfig {
            auth_dns: vec![dns.addr],
            dnsbl: vec!["bl.test".into()],
            dnsbl_score: 10.0,
            ..MailConfig::default()
        },
    ] {
        let server = start(mail).await?;
        let replies = send(&server, [127, 0, 0, 1].into(), &["ordinary"]).await?;
        ensure!(replies[0].starts_with("250 "), "{replies:?}");
        let inbox = folder(&server, "INBOX").await?;
        ensure!(inbox.len() == 1, "{} in INBOX", inbox.len());
        ensure!(!inbox[0].contains("RCVD_IN_DNSBL"), "{}", inbox[0]);
        server.stop().await?;
    }
    // Sender authentication asked (the DNS server is in use), the blocklist never.
    let queries = dns.queries();
    ensure!(queries.iter().any(|q| q == "plain.test"), "{queries:?}");
    ensure!(
        !queries.iter().any(|q| q.ends_with("bl.test")),
        "{queries:?}"
    );
    Ok(())
}

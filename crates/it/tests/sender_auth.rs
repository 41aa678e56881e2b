//! SPF, DKIM and DMARC on the MX against a DNS server of the test's own (loopback UDP, answering TXT
//! from a fixed zone) and a DKIM key generated here: a signed message from an authorized address is
//! `pass` all round and lands in INBOX; a forged sender under `p=reject` goes to Junk, or is refused
//! with `550 5.7.1` when `[mail] dmarc_enforce = true`; a signature broken in transit is `dkim=fail`.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::MailConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

const ALICE: &str = "alice@example.com";

/// Answers TXT queries from `zone` (lowercase names without the final dot); other names are NXDOMAIN,
/// other types of known names are empty. Returns the server's address.
async fn dns_server(zone: HashMap<String, String>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let zone = Arc::new(zone);
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            if let Some(reply) = answer(&buf[..n], &zone) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    addr
}

/// One DNS reply (RFC 1035 §4.1) to `query`: the question echoed, TXT answers from `zone`.
fn answer(query: &[u8], zone: &HashMap<String, String>) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let name = labels.join(".");
    let record = zone.get(&name);
    let txt = record.filter(|_| qtype == 16);
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]); // id
    let known = record.is_some() || zone.keys().any(|k| k.ends_with(&format!(".{name}")));
    out.extend_from_slice(if known { &[0x81, 0x80] } else { &[0x81, 0x83] }); // NOERROR / NXDOMAIN
    out.extend_from_slice(&[0, 1, 0, u8::from(txt.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if let Some(text) = txt {
        let mut rdata = Vec::new();
        for chunk in text.as_bytes().chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
        out.extend_from_slice(&[0xC0, 0x0C, 0, 16, 0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// The zone: `good.test` sends from 127.0.0.1 (where the test's client is) and signs with `sel`;
/// `forged.test` sends only from 192.0.2.1. Both publish `p=reject`.
async fn world() -> (SocketAddr, Ed25519Key) {
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let zone = HashMap::from([
        (
            "good.test".to_owned(),
            "v=spf1 ip4:127.0.0.1 -all".to_owned(),
        ),
        (
            "_dmarc.good.test".to_owned(),
            "v=DMARC1; p=reject".to_owned(),
        ),
        (
            "sel._domainkey.good.test".to_owned(),
            format!("v=DKIM1; k=ed25519; p={public}"),
        ),
        (
            "forged.test".to_owned(),
            "v=spf1 ip4:192.0.2.1 -all".to_owned(),
        ),
        (
            "_dmarc.forged.test".to_owned(),
            "v=DMARC1; p=reject".to_owned(),
        ),
    ]);
    (dns_server(zone).await, key)
}

async fn start(dns: SocketAddr, enforce: bool) -> Result<TestServer> {
    let server = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            auth_dns: vec![dns],
            dmarc_enforce: enforce,
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, "pw", "Alice").await?;
    Ok(server)
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nDate: Sun, 29 Nov 2026 09:00:00 +0000\r\n\
         Message-ID: <{subject}@test>\r\n\r\nThe minutes of Tuesday's meeting are below; please check \
         the dates before Friday.\r\n"
    )
}

fn sign(key: Ed25519Key, message: &str) -> String {
    let signature = DkimSigner::from_key(key)
        .domain("good.test")
        .selector("sel")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

/// Sends over the MX from 127.0.0.1; returns the reply to the end of `DATA`.
async fn send(server: &TestServer, mail_from: &str, message: &str) -> Result<String> {
    let addr = server.addrs.mail.smtp.context("SMTP listener")?;
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await??;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut last = String::new();
    let data = format!("{message}.");
    let from = format!("MAIL FROM:<{mail_from}>");
    let rcpt = format!("RCPT TO:<{ALICE}>");
    for (i, cmd) in [
        "",
        "EHLO mail.good.test",
        &from,
        &rcpt,
        "DATA",
        &data,
        "QUIT",
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            wr.write_all(format!("{cmd}\r\n").as_bytes()).await?;
        }
        loop {
            last.clear();
            tokio::time::timeout(TIMEOUT, rd.read_line(&mut last)).await??;
            ensure!(!last.is_empty(), "connection closed after {cmd}");
            if last.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if i == 5 {
            return Ok(last.trim_end().to_owned());
        }
    }
    unreachable!()
}

async fn stored(server: &TestServer, folder: &str) -> Result<Vec<String>> {
    Ok(server
        .mail_messages(ALICE, folder)
        .await?
        .into_iter()
        .map(|(_, raw)| String::from_utf8_lossy(&raw).into_owned())
        .collect())
}

fn auth_results(message: &str) -> &str {
    let start = message.find("Authentication-Results: ").unwrap_or(0);
    let end = message[start..]
        .find("\r\nX-Spam")
        .map_or(message.len(), |e| start + e);
    &message[start..end]
}

#[tokio::test]
async fn signed_and_authorized_mail_passes_everything() -> Result<()> {
    let (dns, key) = world().await;
    let server = start(dns, true).await?;
    let signed = sign(key, &message("Ann <ann@good.test>", "minutes"));
    let reply = send(&server, "ann@good.test", &signed).await?;
    ensure!(reply.starts_with("250 "), "{reply}");
    let inbox = stored(&server, "INBOX").await?;
    ensure!(inbox.len() == 1, "INBOX has {}", inbox.len());
    let results = auth_results(&inbox[0]);
    for want in ["spf=pass", "dkim=pass", "dmarc=pass", "header.d=good.test"] {
        ensure!(results.contains(want), "{want} missing from {results}");
    }
    ensure!(
        inbox[0].contains("DMARC_PASS"),
        "the pass lowers the spam score"
    );
    server.stop().await
}

#[tokio::test]
async fn forged_sender_goes_to_junk_unless_enforced() -> Result<()> {
    let (dns, _) = world().await;
    let lenient = start(dns, false).await?;
    let forged = message("The CEO <ceo@forged.test>", "wire");
    let reply = send(&lenient, "ceo@forged.test", &forged).await?;
    ensure!(
        reply.starts_with("250 "),
        "never refused by default: {reply}"
    );
    let junk = stored(&lenient, "Junk").await?;
    ensure!(junk.len() == 1 && stored(&lenient, "INBOX").await?.is_empty());
    let results = auth_results(&junk[0]);
    for want in ["spf=fail", "dmarc=fail"] {
        ensure!(results.contains(want), "{want} missing from {results}");
    }
    ensure!(junk[0].contains("DMARC_REJECT") && junk[0].contains("SPF_FAIL"));
    lenient.stop().await?;

    let strict = start(dns, true).await?;
    let reply = send(&strict, "ceo@forged.test", &forged).await?;
    ensure!(reply.starts_with("550 5.7.1"), "{reply}");
    ensure!(
        stored(&strict, "INBOX").await?.is_empty() && stored(&strict, "Junk").await?.is_empty()
    );
    strict.stop().await
}

/// A signature whose body changed in transit does not verify (mail-auth says `neutral`, "body hash did
/// not verify"); SPF still passes, so DMARC does too (aligned SPF).
#[tokio::test]
async fn a_broken_signature_is_dkim_fail() -> Result<()> {
    let (dns, key) = world().await;
    let server = start(dns, true).await?;
    let signed = sign(key, &message("Ann <ann@good.test>", "minutes"))
        .replace("before Friday", "before Monday");
    let reply = send(&server, "ann@good.test", &signed).await?;
    ensure!(reply.starts_with("250 "), "{reply}");
    let all = [
        stored(&server, "INBOX").await?,
        stored(&server, "Junk").await?,
    ]
    .concat();
    ensure!(all.len() == 1);
    let results = auth_results(&all[0]);
    for want in [
        "spf=pass",
        "dkim=neutral (body hash did not verify)",
        "dmarc=pass",
    ] {
        ensure!(results.contains(want), "{want} missing from {results}");
    }
    ensure!(all[0].contains("DKIM_INVALID"));
    server.stop().await
}

/// What msgr's own DKIM signer (the one outbound mail goes through) produces verifies at a receiver:
/// the key made on first use, published as `msgr mail dns` prints it, gives `dkim=pass`.
#[tokio::test]
async fn msgr_signatures_verify() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let signer = msgr_mail::dkim::Signer::load_or_create(keys.path())?;
    let records = msgr_mail::dkim::dns_records("good.test", "mx.good.test", &signer.public_key());
    let dkim_txt = records
        .lines()
        .find_map(|l| l.strip_prefix("msgr-ed25519._domainkey.good.test.\tTXT\t"))
        .context("no DKIM record")?
        .trim_matches('"')
        .to_owned();
    let zone = HashMap::from([
        (
            "good.test".to_owned(),
            "v=spf1 ip4:127.0.0.1 -all".to_owned(),
        ),
        (
            "_dmarc.good.test".to_owned(),
            "v=DMARC1; p=reject".to_owned(),
        ),
        ("msgr-ed25519._domainkey.good.test".to_owned(), dkim_txt),
    ]);
    let server = start(dns_server(zone).await, true).await?;
    let body = message("Ann <ann@good.test>", "signed-by-msgr");
    let header = signer
        .sign("good.test", body.as_bytes())
        .context("not signed")?;
    let reply = send(&server, "ann@good.test", &format!("{header}{body}")).await?;
    ensure!(reply.starts_with("250 "), "{reply}");
    let inbox = stored(&server, "INBOX").await?;
    let results = auth_results(&inbox[0]);
    ensure!(
        results.contains("dkim=pass") && results.contains("header.s=msgr-ed25519"),
        "{results}"
    );
    server.stop().await
}

/// ARC (RFC 8617): a message sealed by a forwarder whose key is in the test's DNS is `arc=pass`; the same
/// message changed after sealing is `arc=fail`. The seal is made here with mail-auth's sealer and a key
/// generated in the test.
#[tokio::test]
async fn arc_seals_are_verified() -> Result<()> {
    use mail_auth::arc::ArcSealer;
    use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let public = base64::engine::general_purpose::STANDARD
        .encode(Ed25519Key::from_pkcs8_der(&pkcs8).unwrap().public_key());
    let dns = dns_server(HashMap::from([(
        "arc._domainkey.forwarder.test".to_owned(),
        format!("v=DKIM1; k=ed25519; p={public}"),
    )]))
    .await;
    let server = start(dns, false).await?;
    let original = message("Bob <bob@elsewhere.test>", "forwarded");
    let parsed = AuthenticatedMessage::parse(original.as_bytes()).unwrap();
    let results = AuthenticationResults::new("forwarder.test");
    let set = ArcSealer::from_key(Ed25519Key::from_pkcs8_der(&pkcs8).unwrap())
        .domain("forwarder.test")
        .selector("arc")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .seal(&parsed, &results, &ArcOutput::default())
        .unwrap();
    let sealed = format!("{}{original}", set.to_header());
    let tampered = sealed.replace("before Friday", "before Monday");
    for message in [&sealed, &tampered] {
        let reply = send(&server, "list@forwarder.test", message).await?;
        ensure!(reply.starts_with("250 "), "{reply}");
    }
    let mut all = stored(&server, "INBOX").await?;
    all.extend(stored(&server, "Junk").await?);
    let verdict = |body: &str| {
        all.iter()
            .find(|m| m.contains(body))
            .map(|m| auth_results(m).to_owned())
    };
    let good = verdict("before Friday").context("the sealed message")?;
    ensure!(good.contains("arc=pass"), "{good}");
    let bad = verdict("before Monday").context("the tampered message")?;
    ensure!(bad.contains("arc=fail"), "{bad}");
    server.stop().await
}

//! SPF, DKIM and DMARC on the MX against a DNS server of the test's own (loopback UDP, answering TXT
//! from a fixed zone) and a DKIM key generated here: a signed message from an authorized address is
//! `pass` all round and lands in INBOX; a forged sender under `p=reject` goes to Junk, or is refused
//! with `550 5.7.1` when `[mail] dmarc_enforce = true`; a signature broken in transit is `dkim=fail`.
//! Mail that msgr sends out carries an RSA and an Ed25519 signature, and both verify against the records
//! `msgr mail dns` prints.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use msgr_it::dns::{DnsStub, Zone};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::MailConfig;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.com";

/// The zone: `good.test` sends from 127.0.0.1 (where the test's client is) and signs with `sel`;
/// `forged.test` sends only from 192.0.2.1. Both publish `p=reject`.
async fn world() -> (DnsStub, Ed25519Key) {
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let zone = Zone::txt([
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
    (DnsStub::start(zone).await.unwrap(), key)
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
    let server = start(dns.addr, true).await?;
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
    let lenient = start(dns.addr, false).await?;
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

    let strict = start(dns.addr, true).await?;
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
    let server = start(dns.addr, true).await?;
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

/// The `msgr` binary built from this tree (or `MSGR_BIN`).
fn msgr_bin() -> std::path::PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_msgr-under-test").into())
}

/// The text of a TXT record's data in zone-file form (`"…" "…"`): its strings joined, as a DKIM verifier
/// joins them (RFC 6376 §3.6.2.2). Each string must be at most 255 bytes, as DNS needs.
fn txt_value(data: &str) -> Result<String> {
    let mut out = String::new();
    let mut chars = data.trim().chars();
    loop {
        match chars.next() {
            None => return Ok(out),
            Some(' ') => continue,
            Some('"') => {}
            Some(c) => anyhow::bail!("{c:?} outside a string in {data}"),
        }
        let mut string = String::new();
        loop {
            match chars.next().context("unterminated string")? {
                '"' => break,
                '\\' => string.push(chars.next().context("dangling escape")?),
                c => string.push(c),
            }
        }
        ensure!(
            string.len() <= 255,
            "a {}-byte string in {data}",
            string.len()
        );
        out.push_str(&string);
    }
}

/// alice@a.test sends to bob@other.test through her server A; A signs and delivers it to server B
/// (another msgr, `[mail] routes`), whose MX checks it against DNS holding the records `msgr mail dns`
/// printed for A's keys. Both signatures, RSA-SHA256 and Ed25519-SHA256, must verify there, and again
/// here, signature by signature, with mail-auth.
#[tokio::test]
async fn outbound_mail_carries_two_signatures_that_verify() -> Result<()> {
    // The keys are made by `msgr mail dns`, as an operator does before the first start, then used by A.
    let data = tempfile::tempdir()?;
    let out = tokio::process::Command::new(msgr_bin())
        .arg("--data")
        .arg(data.path())
        .args(["mail", "dns", "a.test"])
        .env_remove("MSGR_CONFIG")
        .env_remove("MSGR_DATA")
        .env_remove("RUST_LOG")
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "msgr mail dns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = String::from_utf8(out.stdout)?;
    let mut zone = Zone::default();
    for line in records.lines() {
        let mut fields = line.splitn(3, '\t');
        let (name, kind, value) = (
            fields.next().context(line.to_owned())?,
            fields.next().context(line.to_owned())?,
            fields.next().context(line.to_owned())?,
        );
        if kind == "TXT" {
            zone.txt
                .insert(name.trim_end_matches('.').to_owned(), txt_value(value)?);
        }
    }
    let rsa = zone
        .txt
        .get("msgr-rsa._domainkey.a.test")
        .context(format!("no RSA record in {records}"))?;
    ensure!(rsa.starts_with("v=DKIM1; k=rsa; p=MIIB"), "{rsa}");
    ensure!(
        records.contains("\" \""),
        "the RSA record is longer than one string: {records}"
    );
    ensure!(zone.txt.contains_key("msgr-ed25519._domainkey.a.test"));
    // The printed SPF record names the MX, which this DNS does not have; A sends from 127.0.0.1.
    zone.txt
        .insert("a.test".into(), "v=spf1 ip4:127.0.0.1 -all".into());
    let dns = DnsStub::start(zone).await?;

    let b = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            hostname: Some("mx.other.test".into()),
            domains: vec!["other.test".into()],
            auth_dns: vec![dns.addr],
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    b.add_account("bob@other.test", "pw", "Bob").await?;
    let a = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            hostname: Some("mx.a.test".into()),
            routes: [(
                "other.test".to_owned(),
                b.addrs.mail.smtp.context("B's MX")?.to_string(),
            )]
            .into(),
            allow_plaintext_auth: true,
            dkim_dir: Some(data.path().join("dkim")),
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    a.add_account("alice@a.test", "alice-pw", "Alice").await?;
    submit_as_alice(&a).await?;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let raw = loop {
        if let Some((_, raw)) = b.mail_messages("bob@other.test", "INBOX").await?.pop() {
            break raw;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "nothing arrived at B"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    ensure!(text.matches("DKIM-Signature: ").count() == 2, "{text}");
    // B's verdict: each signature on its own `dkim=` line.
    let results = auth_results(&text);
    for selector in ["msgr-rsa", "msgr-ed25519"] {
        let part = results
            .split(';')
            .find(|p| p.contains(&format!("header.s={selector} ")))
            .context(format!("no {selector} result in {results}"))?;
        ensure!(part.trim_start().starts_with("dkim=pass"), "{results}");
    }
    ensure!(results.contains("dmarc=pass"), "{results}");

    // The same check made here, with the algorithm of each signature.
    let mut config = mail_auth::hickory_resolver::config::ResolverConfig::from_parts(
        None,
        vec![],
        Vec::<mail_auth::hickory_resolver::config::NameServerConfig>::new(),
    );
    config.add_name_server(mail_auth::hickory_resolver::config::NameServerConfig::new(
        dns.addr,
        mail_auth::hickory_resolver::config::ProtocolConfig::Udp,
    ));
    let verifier = mail_auth::MessageAuthenticator::new(config, Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let parsed = mail_auth::AuthenticatedMessage::parse(&raw).context("unparsable")?;
    let mut verified: Vec<String> = verifier
        .verify_dkim(&parsed)
        .await
        .iter()
        .map(|d| {
            let s = d.signature();
            format!(
                "{:?} {:?} {}",
                d.result(),
                s.map(|s| s.a),
                s.map_or("", |s| s.s.as_str())
            )
        })
        .collect();
    verified.sort();
    ensure!(
        verified
            == [
                "Pass Some(Ed25519Sha256) msgr-ed25519",
                "Pass Some(RsaSha256) msgr-rsa"
            ],
        "{verified:?}"
    );
    a.stop().await?;
    b.stop().await
}

/// alice submits a message to bob@other.test on A's submission port (AUTH PLAIN over plain loopback).
async fn submit_as_alice(a: &TestServer) -> Result<()> {
    let addr = a.addrs.mail.submission.context("no submission listener")?;
    let (rd, mut wr) = TcpStream::connect(addr).await?.into_split();
    let mut rd = BufReader::new(rd);
    let auth = format!(
        "AUTH PLAIN {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(b"\0alice@a.test\0alice-pw")
    );
    let data = format!(
        "{}.\r\n",
        message("Alice <alice@a.test>", "signed-twice").replace(ALICE, "bob@other.test")
    );
    for (send, expect) in [
        ("", "220"),
        ("EHLO client.a.test\r\n", "250"),
        (auth.as_str(), "235"),
        ("MAIL FROM:<alice@a.test>\r\n", "250"),
        ("RCPT TO:<bob@other.test>\r\n", "250"),
        ("DATA\r\n", "354"),
        (data.as_str(), "250"),
        ("QUIT\r\n", "221"),
    ] {
        wr.write_all(send.as_bytes()).await?;
        let mut line = String::new();
        loop {
            line.clear();
            tokio::time::timeout(TIMEOUT, rd.read_line(&mut line)).await??;
            ensure!(!line.is_empty(), "closed after {send:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        ensure!(line.starts_with(expect), "after {send:?}: {line}");
    }
    Ok(())
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
    let dns = DnsStub::start(Zone::txt([(
        "arc._domainkey.forwarder.test".to_owned(),
        format!("v=DKIM1; k=ed25519; p={public}"),
    )]))
    .await?;
    let server = start(dns.addr, false).await?;
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

//! The MIME kinds of the seed (`003_*.txt`: base64, quoted-printable, multipart, message/rfc822) round-trip
//! through msgr: Python's `email` package builds each message, `smtplib` hands it to the MX listener,
//! `poplib` fetches it back, and both the bytes and the decoded parts must be what was sent. The store's
//! summary (decoded subject, has-attachments) is checked from the same delivery.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Context, Result};
use msgr_it::{ServerOptions, TestServer};
use msgr_mail::MailConfig;
use msgr_store::{MailStore, Store};

const SCRIPT: &str = r#"
import sys, smtplib, poplib, base64, hashlib
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage

host, smtp_port, pop_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rcpt = "alice@example.com"

# The seed's own words, so quoted-printable has real work (Cyrillic in UTF-8).
russian = "Закавыченные последовательности печатных символов: CR и LF как =0D=0A.\nВторая строка = с знаком равенства.\n"
binary = bytes(range(256)) * 40  # every byte value: base64 must carry them all
messages = []

# 1. quoted-printable text with a MIME-encoded subject
m = MIMEText(russian, "plain", "utf-8")
m.replace_header("Content-Transfer-Encoding", "quoted-printable")
m.set_payload(__import__("quopri").encodestring(russian.encode("utf-8")).decode("ascii"))
m["Subject"] = "=?utf-8?b?" + base64.b64encode("Привет, MIME".encode()).decode() + "?="
messages.append(("qp", m))

# 2. base64 attachment in multipart/mixed
m = MIMEMultipart("mixed")
m["Subject"] = "base64 attachment"
m.attach(MIMEText("see the attachment\n", "plain", "us-ascii"))
att = MIMEApplication(binary, "octet-stream")
att.add_header("Content-Disposition", "attachment", filename="bytes.bin")
m.attach(att)
messages.append(("b64", m))

# 3. multipart/alternative nested in multipart/mixed, plus a forwarded message/rfc822
inner = EmailMessage()
inner["From"] = "carol@far.test"
inner["Subject"] = "forwarded"
inner.set_content("the forwarded body\n")
alt = MIMEMultipart("alternative")
alt.attach(MIMEText("plain version\n", "plain", "us-ascii"))
alt.attach(MIMEText("<p>html version</p>\n", "html", "us-ascii"))
m = MIMEMultipart("mixed")
m["Subject"] = "nested multipart"
m.attach(alt)
m.attach(MIMEMessage(inner))
messages.append(("nested", m))

sent = {}
with smtplib.SMTP(host, smtp_port) as s:
    s.ehlo("mime.test")
    for name, m in messages:
        m["From"] = "bob@far.test"
        m["To"] = rcpt
        m["Message-ID"] = "<%s@mime.test>" % name
        raw = m.as_bytes(policy=policy.SMTP)
        sent[name] = raw
        s.sendmail("bob@far.test", [rcpt], raw)

def leaves(msg):
    out = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            continue
        out.append((part.get_content_type(), part.get_payload(decode=True)))
    return out

p = poplib.POP3(host, pop_port)
p.user(rcpt)
p.pass_("pw")
count, _ = p.stat()
assert count == len(messages), count
for i in range(1, count + 1):
    lines = p.retr(i)[1]
    got = b"\r\n".join(lines) + b"\r\n"
    msg_id = message_from_bytes(got)["Message-ID"].strip("<>").split("@")[0]
    want = sent[msg_id]
    # Our trace headers come first; after them, every byte as sent.
    assert got.endswith(want), (msg_id, got[-200:], want[-200:])
    prefix = got[: len(got) - len(want)]
    assert prefix.startswith(b"Return-Path: <bob@far.test>\r\n"), prefix
    assert b"\r\nReceived: from mime.test" in b"\r\n" + prefix, prefix
    a = leaves(message_from_bytes(got, policy=policy.default))
    b = leaves(message_from_bytes(want, policy=policy.default))
    assert a == b, msg_id
    print("ok", msg_id, hashlib.sha256(got).hexdigest(), len(a))
p.quit()
"#;

#[tokio::test]
async fn seed_mime_kinds_round_trip_through_smtp_and_pop3() -> Result<()> {
    let server = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            allow_plaintext_auth: true,
            // The round trip compares bytes; the spam filter's headers are tests/spam.rs's business.
            spam: msgr_mail::config::SpamConfig {
                enabled: false,
                ..Default::default()
            },
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    server
        .add_account("alice@example.com", "pw", "Alice")
        .await?;
    let smtp = server.addrs.mail.smtp.context("no smtp listener")?;
    let pop3 = server.addrs.mail.pop3.context("no pop3 listener")?;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args([
            smtp.ip().to_string(),
            smtp.port().to_string(),
            pop3.port().to_string(),
        ])
        .output()
        .await
        .context("running python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let oks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ok ")).collect();
    ensure!(oks.len() == 3, "expected three round trips, got:\n{stdout}");

    // The summaries the store keeps for listing, parsed once at delivery.
    let db = server.config.database_path();
    let metas = tokio::task::spawn_blocking(move || -> Result<_> {
        let store = Store::open_sqlite(&db)?;
        let inbox = store
            .folder("alice@example.com", "INBOX")?
            .context("no INBOX")?;
        Ok(store.messages(inbox.id)?)
    })
    .await??;
    let by_id = |id: &str| {
        metas
            .iter()
            .find(|m| m.summary.message_id == format!("{id}@mime.test"))
            .with_context(|| format!("no message {id}"))
    };
    let qp = by_id("qp")?;
    ensure!(
        qp.summary.subject == "Привет, MIME",
        "{:?}",
        qp.summary.subject
    );
    ensure!(!qp.summary.has_attachments);
    ensure!(qp.summary.from.contains("bob@far.test"));
    ensure!(by_id("b64")?.summary.has_attachments);
    ensure!(by_id("nested")?.summary.subject == "nested multipart");
    Ok(())
}

//! The spam filter on the real server: messages delivered over SMTP to the MX land in `INBOX` or `Junk`
//! by their score, always with `X-Spam-Status` and `X-Spam-Score` (never dropped); signed-in submission is
//! never scored; `[mail.spam]` turns the filter off or moves its threshold.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Context, Result};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::config::SpamConfig;
use msgr_mail::MailConfig;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "correct horse";

/// Everything a bulk mailer does wrong: trigger words, shouting, coloured HTML only, no Date or
/// Message-ID, an unsubscribe footer.
const SPAM: &str = "From: Best Offers <deals@promo-mailer.biz>\r\nTo: undisclosed-recipients:;\r\n\
    Subject: FREE MONEY!!! ACT NOW, LIMITED TIME\r\nContent-Type: text/html\r\n\r\n\
    <html><body><font color=\"red\">CLICK HERE</font> to claim your <font color=green>FREE</font> gift \
    certificate! 100% guaranteed, no obligation. Earn money from home, lowest price, order now. \
    To be removed from our mailing list <a href=\"http://promo-mailer.biz/unsubscribe\">click here</a>.\
    </body></html>\r\n";

/// A person writing to a colleague.
const HAM: &str = "From: Yuri Semenov <ysemenov@cernvm.cern.ch>\r\nTo: alice@example.com\r\n\
    Subject: Re: the patch for the build script\r\nDate: Sun, 29 Nov 2026 09:13:57 +0000\r\n\
    Message-ID: <1@cernvm.cern.ch>\r\nIn-Reply-To: <0@example.com>\r\n\r\n\
    I looked at the patch and the tests pass on my machine. The kernel module still needs a review \
    though; can you check the changes to the config file before we release it?\r\n";

async fn start(spam: SpamConfig) -> Result<TestServer> {
    let server = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            allow_plaintext_auth: true,
            spam,
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    server.add_account(BOB, PASSWORD, "Bob").await?;
    Ok(server)
}

/// One reply, the last line of a multi-line one (whose lines have `-` after the code).
async fn reply(rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<String> {
    let mut line = String::new();
    loop {
        line.clear();
        tokio::time::timeout(TIMEOUT, rd.read_line(&mut line))
            .await
            .context("reply timed out")??;
        ensure!(!line.is_empty(), "connection closed");
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.trim_end().to_owned());
        }
    }
}

/// Runs `commands` (one SMTP line each; a message is one "command" ending in its dot) and returns the
/// reply to each, after the greeting.
async fn smtp(addr: SocketAddr, commands: &[&str]) -> Result<Vec<String>> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await??;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    reply(&mut rd).await?;
    let mut replies = Vec::new();
    for c in commands {
        wr.write_all(c.as_bytes()).await?;
        wr.write_all(b"\r\n").await?;
        replies.push(reply(&mut rd).await?);
    }
    Ok(replies)
}

/// Sends `message` from a stranger to `to` over the MX; expects `250`.
async fn deliver(server: &TestServer, to: &[&str], message: &str) -> Result<()> {
    let addr = server.addrs.mail.smtp.context("SMTP listener")?;
    let rcpts: Vec<String> = to.iter().map(|t| format!("RCPT TO:<{t}>")).collect();
    let data = format!("{message}.");
    let mut cmds = vec!["EHLO sender.test", "MAIL FROM:<someone@sender.test>"];
    cmds.extend(rcpts.iter().map(String::as_str));
    cmds.extend(["DATA", data.as_str(), "QUIT"]);
    let replies = smtp(addr, &cmds).await?;
    let stored = &replies[replies.len() - 2];
    ensure!(stored.starts_with("250 "), "delivery refused: {replies:?}");
    Ok(())
}

/// The one message in `account`'s `folder`, as text; fails if there is not exactly one.
async fn only(server: &TestServer, account: &str, folder: &str) -> Result<String> {
    let messages = server.mail_messages(account, folder).await?;
    ensure!(
        messages.len() == 1,
        "{account} {folder} has {} messages",
        messages.len()
    );
    Ok(String::from_utf8_lossy(&messages[0].1).into_owned())
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let head = message.split("\r\n\r\n").next()?;
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn spam_goes_to_junk_ham_to_inbox_both_with_headers() -> Result<()> {
    let server = start(SpamConfig::default()).await?;
    deliver(&server, &[ALICE], SPAM).await?;
    deliver(&server, &[ALICE], HAM).await?;

    let junk = only(&server, ALICE, "Junk").await?;
    let status = header(&junk, "X-Spam-Status").context("no X-Spam-Status on the spam")?;
    ensure!(status.starts_with("Yes, score="), "{status}");
    for rule in [
        "HTML_ONLY",
        "HTML_FONT_COLOR",
        "TRIGGER_WORDS_4",
        "SUBJECT_ALL_CAPS",
    ] {
        ensure!(status.contains(rule), "{rule} missing from {status}");
    }
    let score: f64 = header(&junk, "X-Spam-Score")
        .context("no X-Spam-Score")?
        .parse()?;
    ensure!(score >= 5.0, "{score}");
    // The verdict sits below our trace fields and above the sender's header, which is unchanged.
    ensure!(junk.starts_with("Return-Path: <someone@sender.test>\r\nReceived: from sender.test"));
    ensure!(junk.contains(&format!("X-Spam-Score: {score:.1}\r\n{}", &SPAM[..40])));

    let inbox = only(&server, ALICE, "INBOX").await?;
    let status = header(&inbox, "X-Spam-Status").context("no X-Spam-Status on the ham")?;
    ensure!(status.starts_with("No, score="), "{status}");
    let score: f64 = header(&inbox, "X-Spam-Score")
        .context("no X-Spam-Score")?
        .parse()?;
    ensure!(score < 5.0, "{score}");
    server.stop().await
}

/// Every recipient gets its copy, in the folder its verdict says.
#[tokio::test]
async fn every_recipient_gets_the_verdict() -> Result<()> {
    let server = start(SpamConfig::default()).await?;
    deliver(&server, &[ALICE, BOB], SPAM).await?;
    for who in [ALICE, BOB] {
        let junk = only(&server, who, "Junk").await?;
        ensure!(header(&junk, "X-Spam-Status").is_some_and(|s| s.starts_with("Yes")));
        ensure!(server.mail_messages(who, "INBOX").await?.is_empty());
    }
    server.stop().await
}

#[tokio::test]
async fn threshold_and_off_switch() -> Result<()> {
    let lenient = start(SpamConfig {
        threshold: 1000.0,
        ..SpamConfig::default()
    })
    .await?;
    deliver(&lenient, &[ALICE], SPAM).await?;
    let inbox = only(&lenient, ALICE, "INBOX").await?;
    let status = header(&inbox, "X-Spam-Status").context("headers even below the threshold")?;
    ensure!(
        status.starts_with("No, ") && status.contains("required=1000.0"),
        "{status}"
    );
    lenient.stop().await?;

    let off = start(SpamConfig {
        enabled: false,
        ..SpamConfig::default()
    })
    .await?;
    deliver(&off, &[ALICE], SPAM).await?;
    let inbox = only(&off, ALICE, "INBOX").await?;
    ensure!(
        header(&inbox, "X-Spam-Status").is_none(),
        "no verdict when off"
    );
    off.stop().await
}

/// What a signed-in user sends is not judged: no headers, and the recipient's Inbox.
#[tokio::test]
async fn submission_is_not_scored() -> Result<()> {
    let server = start(SpamConfig::default()).await?;
    let addr = server
        .addrs
        .mail
        .submission
        .context("submission listener")?;
    let plain = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{BOB}\0{PASSWORD}"))
    };
    let data = format!("{SPAM}.");
    let auth = format!("AUTH PLAIN {plain}");
    let mail = format!("MAIL FROM:<{BOB}>");
    let rcpt = format!("RCPT TO:<{ALICE}>");
    let replies = smtp(
        addr,
        &["EHLO me", &auth, &mail, &rcpt, "DATA", &data, "QUIT"],
    )
    .await?;
    ensure!(replies[1].starts_with("235"), "{replies:?}");
    ensure!(replies[5].starts_with("250"), "{replies:?}");
    let inbox = only(&server, ALICE, "INBOX").await?;
    ensure!(header(&inbox, "X-Spam-Status").is_none());
    server.stop().await
}

/// One IMAP command on a raw connection: sends `tag command`, returns the lines up to the tagged reply,
/// which must be `OK`.
async fn imap(
    rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    tag: &str,
    command: &str,
) -> Result<Vec<String>> {
    wr.write_all(format!("{tag} {command}\r\n").as_bytes())
        .await?;
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        tokio::time::timeout(TIMEOUT, rd.read_line(&mut line))
            .await
            .context("IMAP reply timed out")??;
        ensure!(!line.is_empty(), "IMAP connection closed");
        let done = line.starts_with(&format!("{tag} "));
        lines.push(line.trim_end().to_owned());
        if done {
            ensure!(
                line.starts_with(&format!("{tag} OK")),
                "{command}: {lines:?}"
            );
            return Ok(lines);
        }
    }
}

/// The classifier's probability in an `X-Spam-Status` value (`… bayes=0.1234`).
fn bayes(message: &str) -> Result<f64> {
    let status = header(message, "X-Spam-Status").context("no X-Spam-Status")?;
    let p = status
        .rsplit_once("bayes=")
        .context("no bayes= in X-Spam-Status")?
        .1;
    Ok(p.parse()?)
}

/// A newsletter: neither obviously spam nor a person's mail.
fn newsletter(n: u32) -> String {
    format!(
        "From: Garden Weekly <news@garden-weekly.example>\r\nTo: alice@example.com\r\n\
         Subject: Garden Weekly issue {n}\r\nDate: Sun, 29 Nov 2026 08:00:00 +0000\r\n\
         Message-ID: <issue{n}@garden-weekly.example>\r\n\r\n\
         This week: pruning roses in winter, seed catalogues, compost heaps and the best \
         tulip bulbs for clay soil. Read the full stories on our website.\r\n"
    )
}

/// Moving a message into Junk over IMAP trains Alice's own counts: the next such message scores higher
/// for her, and not for Bob, who trained nothing.
#[tokio::test]
async fn moving_to_junk_over_imap_raises_the_next_score() -> Result<()> {
    let server = start(SpamConfig::default()).await?;
    deliver(&server, &[ALICE, BOB], &newsletter(1)).await?;
    let first = only(&server, ALICE, "INBOX").await?;
    let before = bayes(&first)?;

    let addr = server.addrs.mail.imap.context("IMAP listener")?;
    let (rd, mut wr) = TcpStream::connect(addr).await?.into_split();
    let mut rd = BufReader::new(rd);
    let mut greeting = String::new();
    tokio::time::timeout(TIMEOUT, rd.read_line(&mut greeting)).await??;
    ensure!(greeting.starts_with("* OK"), "{greeting}");
    imap(
        &mut rd,
        &mut wr,
        "a",
        &format!("LOGIN {ALICE} \"{PASSWORD}\""),
    )
    .await?;
    imap(&mut rd, &mut wr, "b", "SELECT INBOX").await?;
    imap(&mut rd, &mut wr, "c", "UID MOVE 1 Junk").await?;
    imap(&mut rd, &mut wr, "d", "LOGOUT").await?;

    // Training runs on the blocking pool after the move: wait until it is in the store.
    let db = server.config.database_path();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let db = db.clone();
        let trained = tokio::task::spawn_blocking(move || -> Result<u32> {
            use msgr_store::SpamStore;
            let store = msgr_store::Store::open_sqlite(&db)?;
            Ok(store.spam_counts(ALICE, &[])?.spam_messages)
        })
        .await??;
        if trained == 1 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "training never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    deliver(&server, &[ALICE, BOB], &newsletter(2)).await?;
    let inbox = server.mail_messages(ALICE, "INBOX").await?;
    let junk = server.mail_messages(ALICE, "Junk").await?;
    let second = inbox
        .iter()
        .chain(junk.iter())
        .map(|(_, raw)| String::from_utf8_lossy(raw).into_owned())
        .find(|m| m.contains("issue 2"))
        .context("issue 2 not delivered to Alice")?;
    let after = bayes(&second)?;
    ensure!(
        after > before,
        "Alice's score did not rise: {before} -> {after}"
    );
    let bobs = server.mail_messages(BOB, "INBOX").await?;
    ensure!(bobs.len() == 2, "Bob has {} in INBOX", bobs.len());
    let bob_second = String::from_utf8_lossy(&bobs[1].1).into_owned();
    ensure!(
        (bayes(&bob_second)? - before).abs() < 0.05,
        "Bob's verdict moved without training"
    );
    server.stop().await
}

//! Per-user allow and block lists of senders on the real server, over SMTP: a sender on the recipient's
//! Messenger forward list reaches the Inbox unscored, one on their Messenger block list goes to Junk
//! (never refused), `msgr mail allow|block|unblock` entries (address or `@domain`) win over the Messenger
//! lists, and each decision is named in `X-Msgr-Sender-List`. Another recipient of the same message is
//! judged by their own lists.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Context, Result};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_proto::Dialect;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const PASSWORD: &str = "correct horse";

/// Scored as spam by a wide margin (see `tests/spam.rs`), whoever it claims to be from.
fn spam(from: &str) -> String {
    format!(
        "From: {from}\r\nTo: undisclosed-recipients:;\r\n\
         Subject: FREE MONEY!!! ACT NOW, LIMITED TIME\r\nContent-Type: text/html\r\n\r\n\
         <html><body><font color=\"red\">CLICK HERE</font> to claim your <font color=green>FREE</font> \
         gift certificate! 100% guaranteed, no obligation. Earn money from home, lowest price, order now. \
         To be removed from our mailing list <a href=\"http://promo-mailer.biz/unsubscribe\">click here</a>.\
         </body></html>\r\n"
    )
}

/// Scored as ham by a wide margin.
fn ham(from: &str) -> String {
    format!(
        "From: {from}\r\nTo: alice@example.com\r\n\
         Subject: Re: the patch for the build script\r\nDate: Sun, 29 Nov 2026 09:13:57 +0000\r\n\
         Message-ID: <1@cernvm.cern.ch>\r\nIn-Reply-To: <0@example.com>\r\n\r\n\
         I looked at the patch and the tests pass on my machine. The kernel module still needs a review \
         though; can you check the changes to the config file before we release it?\r\n"
    )
}

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

/// Sends `message` over the MX from `mail_from` (unauthenticated) to `to`; expects `250`.
async fn deliver(addr: SocketAddr, mail_from: &str, to: &[&str], message: &str) -> Result<()> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await??;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    reply(&mut rd).await?;
    let mut cmds = vec![
        "EHLO sender.test".to_owned(),
        format!("MAIL FROM:<{mail_from}>"),
    ];
    cmds.extend(to.iter().map(|t| format!("RCPT TO:<{t}>")));
    cmds.extend(["DATA".to_owned(), format!("{message}.")]);
    let mut replies = Vec::new();
    for c in &cmds {
        wr.write_all(c.as_bytes()).await?;
        wr.write_all(b"\r\n").await?;
        replies.push(reply(&mut rd).await?);
    }
    ensure!(
        replies.last().is_some_and(|r| r.starts_with("250 ")),
        "delivery refused: {replies:?}"
    );
    Ok(())
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let head = message.split("\r\n\r\n").next()?;
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// The newest message in `account`'s `folder`, and how many there are.
async fn newest(server: &TestServer, account: &str, folder: &str) -> Result<(usize, String)> {
    let messages = server.mail_messages(account, folder).await?;
    let last = messages
        .last()
        .with_context(|| format!("{account} {folder} is empty"))?;
    Ok((
        messages.len(),
        String::from_utf8_lossy(&last.1).into_owned(),
    ))
}

async fn count(server: &TestServer, account: &str, folder: &str) -> Result<usize> {
    Ok(server.mail_messages(account, folder).await?.len())
}

fn msgr_bin() -> PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// `msgr --data DIR mail ARGS…` against the running server's data directory; its stdout.
fn mail_cli(data: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(msgr_bin())
        .arg("--data")
        .arg(data)
        .arg("mail")
        .args(args)
        .env_remove("MSGR_CONFIG")
        .env_remove("MSGR_DATA")
        .env_remove("RUST_LOG")
        .output()?;
    ensure!(
        out.status.success(),
        "msgr mail {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn messenger_and_mail_lists_decide_before_the_score() -> Result<()> {
    let server = TestServer::start(ServerOptions::default()).await?;
    for (who, name) in [(ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol")] {
        server.add_account(who, PASSWORD, name).await?;
    }
    let mx = server.addrs.mail.smtp.context("SMTP listener")?;

    // Alice adds Bob as a contact and blocks Carol in Messenger.
    let mut msn = server.login(Dialect::Msnp12, ALICE, PASSWORD).await?;
    msn.send("ADC 20 FL N=bob@example.com F=Bob").await?;
    msn.expect_match("ADC 20 FL N=bob@example.com F=Bob C={any}")
        .await?;
    msn.send("ADC 21 BL N=carol@example.com").await?;
    msn.expect_line("ADC 21 BL N=carol@example.com").await?;

    // Bob's spam reaches Alice's Inbox unscored; Bob, who has no lists, gets the same message in Junk.
    deliver(mx, BOB, &[ALICE, BOB], &spam("Bob <bob@example.com>")).await?;
    let (_, m) = newest(&server, ALICE, "INBOX").await?;
    ensure!(
        header(&m, "X-Msgr-Sender-List")
            == Some("allow; entry=bob@example.com; list=messenger-contact"),
        "{m}"
    );
    ensure!(header(&m, "X-Spam-Status").is_none(), "not scored: {m}");
    let (_, m) = newest(&server, BOB, "Junk").await?;
    ensure!(header(&m, "X-Msgr-Sender-List").is_none(), "{m}");
    ensure!(header(&m, "X-Spam-Status").is_some_and(|s| s.starts_with("Yes")));

    // Carol's ham goes to Alice's Junk; the envelope sender alone is enough (a different From).
    deliver(mx, CAROL, &[ALICE], &ham("Carol <carol-list@example.org>")).await?;
    let (_, m) = newest(&server, ALICE, "Junk").await?;
    ensure!(
        header(&m, "X-Msgr-Sender-List")
            == Some("block; entry=carol@example.com; list=messenger-block"),
        "{m}"
    );

    // Mail-list entries: a whole domain blocked, and Carol allowed for mail despite Messenger's block.
    let data = server.data_dir().to_path_buf();
    let cli = tokio::task::spawn_blocking(move || -> Result<String> {
        mail_cli(&data, &["block", ALICE, "@Sender.test"])?;
        mail_cli(&data, &["allow", ALICE, "<Carol@example.com>"])?;
        mail_cli(&data, &["senders", ALICE])
    })
    .await??;
    ensure!(
        cli == "block\t@sender.test\nallow\tcarol@example.com\n",
        "{cli:?}"
    );
    let junk_before = count(&server, ALICE, "Junk").await?;
    deliver(
        mx,
        "someone@sender.test",
        &[ALICE],
        &ham("someone@sender.test"),
    )
    .await?;
    let (n, m) = newest(&server, ALICE, "Junk").await?;
    ensure!(n == junk_before + 1);
    ensure!(
        header(&m, "X-Msgr-Sender-List") == Some("block; entry=@sender.test; list=mail"),
        "{m}"
    );
    let inbox_before = count(&server, ALICE, "INBOX").await?;
    deliver(mx, CAROL, &[ALICE], &spam(CAROL)).await?;
    let (n, m) = newest(&server, ALICE, "INBOX").await?;
    ensure!(n == inbox_before + 1);
    ensure!(
        header(&m, "X-Msgr-Sender-List") == Some("allow; entry=carol@example.com; list=mail"),
        "{m}"
    );

    // Unblocked, the domain's mail is scored again (and this one is ham).
    let data = server.data_dir().to_path_buf();
    tokio::task::spawn_blocking(move || mail_cli(&data, &["unblock", ALICE, "@sender.test"]))
        .await??;
    deliver(
        mx,
        "someone@sender.test",
        &[ALICE],
        &ham("someone@sender.test"),
    )
    .await?;
    let (n, m) = newest(&server, ALICE, "INBOX").await?;
    ensure!(n == inbox_before + 2);
    ensure!(header(&m, "X-Msgr-Sender-List").is_none(), "{m}");
    ensure!(
        header(&m, "X-Spam-Status").is_some_and(|s| s.starts_with("No")),
        "{m}"
    );
    server.stop().await
}

/// Sends from `mail_from` to `to` over the MX and returns every reply (greeting first).
async fn attempt(
    addr: SocketAddr,
    mail_from: &str,
    to: &str,
    message: &str,
) -> Result<Vec<String>> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await??;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut replies = vec![reply(&mut rd).await?];
    for c in [
        "EHLO sender.test".to_owned(),
        format!("MAIL FROM:<{mail_from}>"),
        format!("RCPT TO:<{to}>"),
    ] {
        wr.write_all(format!("{c}\r\n").as_bytes()).await?;
        replies.push(reply(&mut rd).await?);
    }
    if replies[3].starts_with("250 ") {
        for c in ["DATA".to_owned(), format!("{message}.")] {
            wr.write_all(format!("{c}\r\n").as_bytes()).await?;
            replies.push(reply(&mut rd).await?);
        }
    }
    Ok(replies)
}

/// `[mail] greylisting`: a new (network, sender, recipient) is told `451 4.7.1` at `RCPT` and nothing is
/// stored; the retry after the delay (0 here, so no waiting) is accepted, and so is the triplet's next
/// message. A sender on the recipient's allow list is never deferred.
#[tokio::test]
async fn greylisting_defers_first_contact_only() -> Result<()> {
    let server = TestServer::start(ServerOptions {
        mail: Some(msgr_mail::MailConfig {
            allow_plaintext_auth: true,
            greylisting: true,
            greylist_delay_secs: 0,
            ..msgr_mail::MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    let mx = server.addrs.mail.smtp.context("SMTP listener")?;
    let first = attempt(mx, "news@sender.test", ALICE, &ham("news@sender.test")).await?;
    ensure!(first[3].starts_with("451 4.7.1 "), "{first:?}");
    ensure!(count(&server, ALICE, "INBOX").await? == 0);
    for _ in 0..2 {
        let retry = attempt(mx, "news@sender.test", ALICE, &ham("news@sender.test")).await?;
        ensure!(
            retry[3].starts_with("250 ") && retry[5].starts_with("250 "),
            "{retry:?}"
        );
    }
    ensure!(count(&server, ALICE, "INBOX").await? == 2);
    // Another sender is a new triplet; one Alice allowed is not.
    let other = attempt(mx, "other@sender.test", ALICE, &ham("other@sender.test")).await?;
    ensure!(other[3].starts_with("451 4.7.1 "), "{other:?}");
    let data = server.data_dir().to_path_buf();
    tokio::task::spawn_blocking(move || mail_cli(&data, &["allow", ALICE, "friend@sender.test"]))
        .await??;
    let friend = attempt(mx, "friend@sender.test", ALICE, &ham("friend@sender.test")).await?;
    ensure!(friend[5].starts_with("250 "), "{friend:?}");
    server.stop().await
}

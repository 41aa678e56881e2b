//! Helpers shared by the contact-list and presence scenarios: log users in, and speak the
//! list and presence commands in each dialect's form.

#![allow(dead_code)]

use anyhow::{ensure, Result};
use msgr_it::{Conn, ServerOptions, TestServer};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;

pub const PASSWORD: &str = "pw-123456";

/// A server that accepts every dialect (legacy MD5 logins on), with a rate limit the
/// scenarios never reach (they change status many times in a row).
pub async fn server() -> Result<TestServer> {
    server_with(ServerOptions {
        limits: LimitsConfig {
            change_burst: 1000,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await
}

pub async fn server_with(opts: ServerOptions) -> Result<TestServer> {
    TestServer::start(ServerOptions {
        legacy_md5: true,
        ..opts
    })
    .await
}

/// `name@x.com` with display name `Name N` (URL-encoded `Name%20N`).
pub fn email(name: &str) -> String {
    format!("{name}@x.com")
}

pub fn display(name: &str) -> String {
    let mut c = name.chars();
    let first: String = c
        .next()
        .map(|f| f.to_uppercase().collect())
        .unwrap_or_default();
    format!("{first}{} N", c.as_str())
}

pub fn encoded_display(name: &str) -> String {
    display(name).replace(' ', "%20")
}

/// Creates the account (if `create`) and logs in in `dialect`.
pub async fn user(srv: &TestServer, dialect: Dialect, name: &str) -> Result<Conn> {
    srv.add_account(&email(name), PASSWORD, &display(name))
        .await?;
    srv.login(dialect, &email(name), PASSWORD).await
}

/// Logs an existing account in again.
pub async fn relogin(srv: &TestServer, dialect: Dialect, name: &str) -> Result<Conn> {
    srv.login(dialect, &email(name), PASSWORD).await
}

/// Every line the server sends until the answer to a `PNG` (which is not included).
pub async fn drain(c: &mut Conn) -> Result<Vec<String>> {
    let dialect = c.dialect().unwrap_or(Dialect::Msnp8);
    c.send("PNG").await?;
    let qng = msgr_it::qng(dialect);
    let mut lines = Vec::new();
    loop {
        let l = c.recv_line().await?;
        if l == qng {
            return Ok(lines);
        }
        lines.push(l);
    }
}

/// Fails unless nothing arrives before the answer to a `PNG`.
pub async fn quiet(c: &mut Conn) -> Result<()> {
    let lines = drain(c).await?;
    ensure!(lines.is_empty(), "{}: unexpected {lines:?}", c.label());
    Ok(())
}

/// `SYN` with the cached version `v`; returns every line of the answer.
pub async fn syn(c: &mut Conn, dialect: Dialect, trid: u32, v: u64) -> Result<Vec<String>> {
    if dialect >= Dialect::Msnp10 {
        c.send(&format!("SYN {trid} {v} {v}")).await?;
    } else {
        c.send(&format!("SYN {trid} {v}")).await?;
    }
    drain(c).await
}

/// The capability field a client of `dialect` sends.
pub fn caps(dialect: Dialect) -> &'static str {
    match dialect {
        d if d >= Dialect::Msnp12 => "1342177280:0",
        d if d >= Dialect::Msnp8 => "268435456",
        _ => "",
    }
}

/// The capability field a watcher of `watcher` dialect sees for a client of `changer` dialect.
pub fn seen_caps(watcher: Dialect, changer: Dialect) -> String {
    if watcher < Dialect::Msnp8 {
        return String::new();
    }
    let full = caps(changer);
    let shown = if watcher >= Dialect::Msnp12 {
        full
    } else {
        full.split(':').next().unwrap_or("")
    };
    if changer < Dialect::Msnp8 {
        " 0".to_owned()
    } else {
        format!(" {shown}")
    }
}

/// `CHG t STATUS caps` → the echo; returns the lines after it up to a ping (the ILN burst).
pub async fn chg(c: &mut Conn, dialect: Dialect, trid: u32, status: &str) -> Result<Vec<String>> {
    let caps = caps(dialect);
    if caps.is_empty() {
        c.send(&format!("CHG {trid} {status}")).await?;
        c.expect_line(&format!("CHG {trid} {status}")).await?;
    } else {
        c.send(&format!("CHG {trid} {status} {caps}")).await?;
        c.expect_line(&format!("CHG {trid} {status} {caps}"))
            .await?;
    }
    drain(c).await
}

/// Adds `who` to `list` (`ADD` or `ADC`) and checks the reply's shape; returns it.
pub async fn add(
    c: &mut Conn,
    dialect: Dialect,
    trid: u32,
    list: &str,
    who: &str,
) -> Result<String> {
    let e = email(who);
    let nick = encoded_display(who);
    if dialect >= Dialect::Msnp10 {
        if list == "FL" {
            c.send(&format!("ADC {trid} FL N={e} F={nick}")).await?;
            c.expect_match(&format!("ADC {trid} FL N={e} F={nick} C={{any}}"))
                .await
        } else {
            c.send(&format!("ADC {trid} {list} N={e}")).await?;
            c.expect_match(&format!("ADC {trid} {list} N={e}")).await
        }
    } else {
        c.send(&format!("ADD {trid} {list} {e} {nick}")).await?;
        let group = if list == "FL" && dialect >= Dialect::Msnp7 {
            " 0"
        } else {
            ""
        };
        c.expect_match(&format!("ADD {trid} {list} {{digits}} {e} {nick}{group}"))
            .await
    }
}

/// Takes `who` off `list` (`guid` is needed for FL in MSNP10+).
pub async fn rem(
    c: &mut Conn,
    dialect: Dialect,
    trid: u32,
    list: &str,
    who: &str,
    guid: Option<&str>,
) -> Result<String> {
    let e = email(who);
    let target = match guid {
        Some(g) if dialect >= Dialect::Msnp10 && list == "FL" => g.to_owned(),
        _ => e,
    };
    c.send(&format!("REM {trid} {list} {target}")).await?;
    if dialect >= Dialect::Msnp10 {
        c.expect_match(&format!("REM {trid} {list} {target}")).await
    } else {
        c.expect_match(&format!("REM {trid} {list} {{digits}} {target}"))
            .await
    }
}

/// The reverse-list notice `who` adding the watcher produces, in `dialect`.
pub fn rl_notice(dialect: Dialect, who: &str) -> String {
    if dialect >= Dialect::Msnp10 {
        format!("ADC 0 RL N={} F={}", email(who), encoded_display(who))
    } else {
        format!(
            "ADD 0 RL {{digits}} {} {}",
            email(who),
            encoded_display(who)
        )
    }
}

/// `NLN STATUS email name caps` as a watcher in `watcher` sees a client in `changer`.
pub fn nln(watcher: Dialect, changer: Dialect, status: &str, who: &str) -> String {
    format!(
        "NLN {status} {} {}{}",
        email(who),
        encoded_display(who),
        seen_caps(watcher, changer)
    )
}

pub fn iln(watcher: Dialect, changer: Dialect, trid: u32, status: &str, who: &str) -> String {
    format!(
        "ILN {trid} {status} {} {}{}",
        email(who),
        encoded_display(who),
        seen_caps(watcher, changer)
    )
}

pub fn fln(who: &str) -> String {
    format!("FLN {}", email(who))
}

/// The dialect tag for error replies about a missing account.
pub fn no_such_user(dialect: Dialect) -> u16 {
    if dialect >= Dialect::Msnp10 {
        208
    } else {
        205
    }
}

//! `msgr-load`: measures an MSNP server from the outside, the way real clients use it.
//!
//! It speaks raw MSNP over its own small code path (not the convenience client) so a
//! simulated user costs little, and it follows the nexus `PassportURLs` → `DALogin` like a
//! real client, so it works against any server implementing Passport 1.4.
//!
//! Scenarios: `login` (TWN logins per second), `idle` (memory and fds per online user),
//! `presence` (CHG → watchers' NLN latency), `relay` (switchboard message round trips), and for
//! mail `smtp` (messages accepted per second), `pop3` (download rate) and `mail-idle` (memory per
//! idle mail session), which work against any SMTP/POP3 server, and `mail-notify` (SMTP `250` →
//! Messenger's new-mail notice).
//! Each prints a table, or one JSON object with `--json`.

mod conn;
mod forward;
mod msnp;
mod passport;
mod scenario;
mod session;
mod stats;
mod worker;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "msgr-load", about = "Load generator for MSNP servers")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// TWN logins (VER, CVR, USR I, nexus, login2.srf, USR S up to USR OK, OUT) in a loop;
    /// --workers W spreads the logins, accounts and concurrency over W processes.
    Login(scenario::login::Args),
    /// N users logged in and online, holding; the server's RSS and fds per user. Beyond
    /// about 18,000 users (one process's files) it runs worker processes (--workers).
    Idle(scenario::idle::Args),
    /// N online users with K contacts each (a ring); time from CHG to each watcher's NLN.
    /// The ring stays in one process (no --workers): keep N under about 18,000.
    Presence(scenario::presence::Args),
    /// P switchboard pairs exchanging messages; messages/s and round trips (--baseline:
    /// the same through a bare byte forwarder, and the ratio).
    Relay(scenario::relay::Args),
    /// S concurrent SMTP senders delivering N messages of a given size (any SMTP server:
    /// run it against msgr and Postfix side by side); messages/s and `.`→`250` latency.
    Smtp(scenario::mail::SmtpArgs),
    /// POP3 sessions downloading their whole maildrop (RETR everything, no DELE).
    Pop3(scenario::mail::Pop3Args),
    /// IMAP sessions looping login, SELECT, fetch 100 headers, APPEND, SEARCH, LOGOUT (any IMAP
    /// server: run it against msgr and Dovecot side by side); cycles/s and each step's latency.
    Imap(scenario::mail::ImapArgs),
    /// N idle SMTP, POP3 or logged-in IMAP sessions; the server's resident memory per session.
    MailIdle(scenario::mail::IdleArgs),
    /// N users online over MSNP while S SMTP senders deliver M messages/s to them; time from
    /// SMTP's `250` to the new-mail notice on the recipient's MSNP socket.
    MailNotify(scenario::mail_notify::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        match cli.scenario {
            Scenario::Login(a) => scenario::login::run(a).await,
            Scenario::Idle(a) => scenario::idle::run(a).await,
            Scenario::Presence(a) => scenario::presence::run(a).await,
            Scenario::Relay(a) => scenario::relay::run(a).await,
            Scenario::Smtp(a) => scenario::mail::smtp(a).await,
            Scenario::Pop3(a) => scenario::mail::pop3(a).await,
            Scenario::Imap(a) => scenario::mail::imap(a).await,
            Scenario::MailIdle(a) => scenario::mail::idle(a).await,
            Scenario::MailNotify(a) => scenario::mail_notify::run(a).await,
        }
    })?;
    worker::finishing();
    report.0.print(report.1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("msgr-load").chain(args.iter().copied()))
    }

    #[test]
    fn every_scenario_parses_with_defaults() {
        for s in [
            "login",
            "idle",
            "presence",
            "relay",
            "smtp",
            "pop3",
            "mail-idle",
            "imap",
            "mail-notify",
        ] {
            assert!(parse(&[s]).is_ok(), "{s}");
            assert!(parse(&[s, "--json"]).is_ok(), "{s} --json");
        }
        assert!(parse(&["nonsense"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn presence_arguments() {
        let cli = parse(&[
            "presence",
            "--count",
            "1000",
            "--contacts",
            "20",
            "--rate",
            "200",
            "--sources",
            "4",
            "--msnp",
            "127.0.0.1:1999",
        ])
        .expect("parses");
        let Scenario::Presence(a) = cli.scenario else {
            panic!("wrong scenario")
        };
        assert_eq!((a.count, a.contacts, a.rate), (1000, 20, 200));
        assert_eq!(a.target.sources, 4);
        assert_eq!(a.target.msnp, "127.0.0.1:1999");
        assert!(!a.target.json);
    }

    #[test]
    fn login_probe_argument() {
        let Scenario::Login(a) = parse(&["login", "--count", "50", "--probe", "4"])
            .expect("parses")
            .scenario
        else {
            panic!("wrong scenario")
        };
        assert_eq!((a.count, a.probe), (50, 4));
        let Scenario::Login(a) = parse(&["login"]).expect("parses").scenario else {
            panic!("wrong scenario")
        };
        assert_eq!(a.probe, 0);
    }

    #[test]
    fn idle_and_relay_arguments() {
        let Scenario::Idle(a) =
            parse(&["idle", "--count", "5", "--server-pid", "42", "--hold", "3"])
                .expect("parses")
                .scenario
        else {
            panic!("wrong scenario")
        };
        assert_eq!((a.count, a.server_pid, a.hold), (5, Some(42), 3));
        let Scenario::Relay(r) = parse(&["relay", "--pairs", "7", "--window", "4", "--json"])
            .expect("parses")
            .scenario
        else {
            panic!("wrong scenario")
        };
        assert_eq!((r.pairs, r.window), (7, 4));
        assert!(r.target.json);
        assert!(!r.baseline);
        let Scenario::Relay(r) = parse(&["relay", "--baseline"]).expect("parses").scenario else {
            panic!("wrong scenario")
        };
        assert!(r.baseline);
        assert!(parse(&["idle", "--count", "many"]).is_err());
        assert!(parse(&["idle", "--sources", "300"]).is_err());
    }
}

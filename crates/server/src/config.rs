//! Server configuration: the TOML file, with every field optional and a sensible default, so
//! `msgr serve` with no configuration runs the whole service on loopback.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `msgr serve` can be told. Command-line flags override the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database and the generated certificate live.
    pub data_dir: PathBuf,
    /// The MSNP listener (dispatch, notification and switchboard on one port).
    pub msnp: SocketAddr,
    /// Plain-HTTP listener (Passport nexus and login2.srf). `None` disables it.
    pub http: Option<SocketAddr>,
    /// HTTPS listener (the same routes over TLS). `None` disables it.
    pub https: Option<SocketAddr>,
    /// Host name or IP written into `XFR`, `RNG` and the nexus `DALogin`; defaults to the
    /// listener's bound IP. Set it when clients reach the server by another name.
    pub public_host: Option<String>,
    /// Dispatch-only mode: when non-empty, `USR … I` is answered with `XFR … NS` to one of
    /// these `host:port` notification servers instead of being served here.
    pub dispatch_to: Vec<String>,
    /// An extra MSNP listener that only dispatches (`XFR … NS` to `dispatch_to`, or to this
    /// node's own MSNP listener), for clients that insist on a dispatch server. Off by default.
    pub dispatch: Option<SocketAddr>,
    /// Allow MSNP2–MSNP7 logins (`USR MD5`). They need a password-equivalent secret kept in
    /// the database, so this is off unless the operator asks for it.
    pub legacy_md5: bool,
    /// PEM certificate chain and private key for HTTPS; generated into `data_dir` if absent.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub limits: LimitsConfig,
    /// The mail side (`[mail]`): SMTP and POP3 listeners, local domains, limits, outbound delivery.
    pub mail: msgr_mail::MailConfig,
    /// The web inbox under `/mail/` (`[web]`): sessions, sign-in throttling, page and body limits.
    pub web: msgr_web::WebConfig,
}

/// Named, configurable limits; the defaults are the official service's where it had one.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest MSNP command line accepted (bytes, CRLF excluded).
    pub max_line: usize,
    /// Largest MSNP payload accepted (bytes).
    pub max_payload: usize,
    /// Simultaneous MSNP connections; further ones are refused at accept.
    pub max_connections: usize,
    /// Bytes queued for one connection before it is treated as a slow consumer and dropped.
    pub outbox_bytes: usize,
    /// Events queued for one session (presence, kicks…) before it is dropped as too slow.
    pub event_queue: usize,
    /// Seconds a connection may take from accept to a completed login.
    pub login_timeout_secs: u64,
    /// Seconds of silence after which an online NS session is closed (clients ping every
    /// 50 s or so).
    pub idle_timeout_secs: u64,
    /// Seconds a Passport ticket stays redeemable.
    pub ticket_ttl_secs: u64,
    /// Password hashes computed at once, on dedicated threads (0 = half the cores, at least 1).
    pub hash_threads: usize,
    /// Seconds allowed for writing queued output to a peer before it is dropped.
    pub write_timeout_secs: u64,
    /// `CHG`, `REA` and `PRP` a session may send in a burst before it is answered 800
    /// ("changing too rapidly").
    pub change_burst: u32,
    /// Seconds for one more such change to be allowed after the burst is used up.
    pub change_refill_secs: u64,
    /// The list sizes and name lengths of the contact lists (`msgr_core::lists::Limits`).
    pub max_forward: usize,
    pub max_reverse: usize,
    pub max_allow_block: usize,
    pub max_groups: usize,
    /// People in one switchboard session at once; a `CAL` beyond it is answered 712.
    pub sb_max_participants: usize,
    /// Switchboard sessions (and, separately, unused cookies) the node holds at once; an
    /// `XFR SB` beyond it is answered 600.
    pub max_switchboards: usize,
    /// Seconds a switchboard cookie (`XFR SB`, `RNG`) stays redeemable.
    pub sb_cookie_ttl_secs: u64,
    /// Seconds an HTTP gateway session may go without a request before it ends like a
    /// dropped TCP connection (the official client polls every two seconds or so).
    pub gateway_idle_secs: u64,
    /// Largest request body the HTTP gateway accepts (bytes); a larger one is answered 413.
    pub gateway_max_body: usize,
    /// Gateway sessions that have not signed in yet, in all and per client IP: an `Action=open`
    /// beyond either is answered 503. Their slot is freed at sign-in or when the login times out,
    /// so sessions that have not signed in never hold more than this of `max_connections`.
    pub gateway_max_pending: usize,
    pub gateway_max_pending_per_ip: usize,
    /// Unused `XFR SB` cookies one user may hold; one more `XFR SB` is answered 714 ("too many
    /// sessions") and logged.
    pub sb_cookies_per_user: usize,
    /// Switchboard sessions one user may have opened with `XFR SB` and still open; 714 beyond.
    pub sb_rooms_per_user: usize,
    /// `XFR SB` and `CAL` one user may send in a burst before it is answered 713 ("calling too
    /// rapidly"), and the seconds for one more to be allowed after that.
    pub sb_call_burst: u32,
    pub sb_call_refill_secs: u64,
    /// Simultaneous connections to the HTTP and HTTPS listeners, in all and per client IP;
    /// further ones are closed at accept and logged. The total is lowered further, at start, to
    /// leave `msnp_fd_reserve` descriptors to MSNP (see `fd_budget`).
    pub http_max_connections: usize,
    pub http_max_connections_per_ip: usize,
    /// File descriptors kept for MSNP connections: HTTP and HTTPS connections never take them.
    /// 0 = half of the process's RLIMIT_NOFILE.
    pub msnp_fd_reserve: usize,
    /// Password-guess throttling (`msgr_core::throttle`): attempts per (account, client IP), per
    /// client IP and per account (not counting addresses the account signed in from) before a
    /// wait, the first wait in milliseconds (doubling with each attempt let through), the
    /// longest wait, and the seconds after which a quiet counter is forgotten. For Passport
    /// (`login2.srf`), `USR MD5`, SMTP `AUTH`, POP3 and IMAP alike.
    pub login_free_per_pair: u32,
    pub login_free_per_ip: u32,
    pub login_free_per_account: u32,
    pub login_delay_ms: u64,
    pub login_max_delay_secs: u64,
    pub login_forget_secs: u64,
    /// Password checks waiting for the hashing threads per client IP (IPv6 by /64) and in all;
    /// the threads take the client addresses in turn. A check beyond either waits in its own
    /// task for a place (so a flood from one address only delays that address).
    pub hash_queue_per_ip: usize,
    pub hash_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("msgr-data"),
            msnp: SocketAddr::from(([127, 0, 0, 1], 1863)),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            https: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            public_host: None,
            dispatch_to: Vec::new(),
            dispatch: None,
            legacy_md5: false,
            tls_cert: None,
            tls_key: None,
            limits: LimitsConfig::default(),
            mail: msgr_mail::MailConfig::default(),
            web: msgr_web::WebConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let proto = msgr_proto::Limits::default();
        let list = msgr_core::lists::Limits::default();
        LimitsConfig {
            max_line: proto.max_line,
            max_payload: proto.max_payload,
            max_connections: 19_000,
            outbox_bytes: 256 * 1024,
            event_queue: 1024,
            login_timeout_secs: 60,
            idle_timeout_secs: 180,
            ticket_ttl_secs: 300,
            hash_threads: 0,
            write_timeout_secs: 30,
            // No official figure was published; the official clients rate-limited themselves
            // to about one status change a second, so a burst of 10 and one a second after that
            // never bothers a real client and stops a script flooding every watcher.
            change_burst: 10,
            change_refill_secs: 1,
            max_forward: list.max_forward,
            max_reverse: list.max_reverse,
            max_allow_block: list.max_allow_block,
            max_groups: list.max_groups,
            // No official figure survives; the official clients capped conversations at a
            // handful of people, so 20 never bothers one and bounds every fan-out.
            sb_max_participants: 20,
            max_switchboards: 100_000,
            sb_cookie_ttl_secs: 60,
            gateway_idle_secs: 120,
            // One command line and one full payload, twice over: a client sends what it has
            // queued since its last request, and that is rarely more than one message.
            gateway_max_body: 2 * (proto.max_line + proto.max_payload),
            // A login takes a few round trips; a thousand at once is a busy minute's worth, and
            // leaves 18,000 of `max_connections` to whoever has signed in.
            gateway_max_pending: 1000,
            gateway_max_pending_per_ip: 16,
            // The official client opens one switchboard per conversation window.
            sb_cookies_per_user: 20,
            sb_rooms_per_user: 50,
            sb_call_burst: 20,
            sb_call_refill_secs: 1,
            http_max_connections: 4096,
            http_max_connections_per_ip: 64,
            msnp_fd_reserve: 0,
            login_free_per_pair: 5,
            login_free_per_ip: 30,
            login_free_per_account: 100,
            login_delay_ms: 1000,
            login_max_delay_secs: 300,
            login_forget_secs: 900,
            hash_queue_per_ip: 16,
            hash_queue: 4096,
        }
    }
}

impl LimitsConfig {
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    pub fn ticket_ttl(&self) -> Duration {
        Duration::from_secs(self.ticket_ttl_secs)
    }
    pub fn sb_cookie_ttl(&self) -> Duration {
        Duration::from_secs(self.sb_cookie_ttl_secs)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
    pub fn gateway_idle(&self) -> Duration {
        Duration::from_secs(self.gateway_idle_secs)
    }
    /// The password-guess throttle's schedule.
    pub fn throttle(&self) -> msgr_core::throttle::ThrottleConfig {
        msgr_core::throttle::ThrottleConfig {
            free_per_pair: self.login_free_per_pair,
            free_per_ip: self.login_free_per_ip,
            free_per_account: self.login_free_per_account,
            base_delay: Duration::from_millis(self.login_delay_ms),
            max_delay: Duration::from_secs(self.login_max_delay_secs),
            forget_after: Duration::from_secs(self.login_forget_secs),
            ..msgr_core::throttle::ThrottleConfig::default()
        }
    }
    /// The contact-list limits, the configured counts over the core's defaults.
    pub fn lists(&self) -> msgr_core::lists::Limits {
        msgr_core::lists::Limits {
            max_forward: self.max_forward,
            max_reverse: self.max_reverse,
            max_allow_block: self.max_allow_block,
            max_groups: self.max_groups,
            ..msgr_core::lists::Limits::default()
        }
    }
    pub fn codec(&self) -> msgr_proto::Limits {
        msgr_proto::Limits {
            max_line: self.max_line,
            max_payload: self.max_payload,
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl Config {
    /// Reads a TOML configuration file; absent keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The SQLite database inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("msgr.sqlite")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn partial_file_keeps_defaults() {
        let c: Config = toml::from_str(
            "msnp = \"0.0.0.0:1864\"\nlegacy_md5 = true\n[limits]\nmax_line = 100\n",
        )
        .unwrap();
        assert_eq!(c.msnp.port(), 1864);
        assert!(c.legacy_md5);
        assert_eq!(c.limits.max_line, 100);
        assert_eq!(c.limits.max_payload, 64 * 1024);
        assert_eq!(c.https.unwrap().port(), 8443);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("msnpp = \"x\"").is_err());
    }

    #[test]
    fn mail_section() {
        let c: Config = toml::from_str(
            "[mail]\nsmtp = \"0.0.0.0:25\"\ndomains = [\"example.com\"]\nmax_recipients = 5\n\
             [mail.routes]\n\"other.test\" = \"127.0.0.1:2526\"\n",
        )
        .unwrap();
        assert_eq!(c.mail.smtp.unwrap().port(), 25);
        assert_eq!(c.mail.submission.unwrap().port(), 2587);
        assert_eq!(c.mail.domains, ["example.com"]);
        assert_eq!(c.mail.max_recipients, 5);
        assert_eq!(c.mail.routes["other.test"], "127.0.0.1:2526");
        assert!(!c.mail.allow_plaintext_auth);
        assert!(toml::from_str::<Config>("[mail]\nsmpt = \"x\"").is_err());
    }
}

//! `[mail]` in the server's TOML file: listeners, local domains, limits, outbound delivery. Every key is
//! optional; the defaults run everything on loopback with unprivileged ports.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The mail side's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Inbound MX listener (port 25 in production). `None` disables it.
    pub smtp: Option<SocketAddr>,
    /// Submission with STARTTLS (port 587 in production).
    pub submission: Option<SocketAddr>,
    /// Submission over implicit TLS (port 465 in production).
    pub submissions: Option<SocketAddr>,
    /// POP3 with STLS (port 110 in production).
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS (port 995 in production).
    pub pop3s: Option<SocketAddr>,
    /// IMAP with STARTTLS (port 143 in production).
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS (port 993 in production).
    pub imaps: Option<SocketAddr>,
    /// Seconds a logged-in IMAP session may stay silent, `IDLE` included (RFC 9051 §5.4: at least 30
    /// minutes). Before login `greeting_timeout_secs` applies.
    pub imap_timeout_secs: u64,
    /// The name this server gives itself in greetings, `Received` headers and bounces. Defaults to the
    /// server's `public_host`, else `localhost`.
    pub hostname: Option<String>,
    /// Domains whose mail is delivered here. Empty: the domains of the accounts.
    pub domains: Vec<String>,
    /// Per-domain next hops (`"other.test" = "127.0.0.1:2526"`), used instead of the domain's MX, like a
    /// transport map.
    pub routes: BTreeMap<String, String>,
    /// Accept `USER/PASS` and `AUTH` without TLS. Only for loopback tests and trusted networks.
    pub allow_plaintext_auth: bool,
    /// Default mailbox quota in bytes (an account's own quota overrides it).
    pub quota_bytes: u64,
    /// Largest message accepted, in bytes (announced as `SIZE`).
    pub max_message_bytes: u64,
    /// Recipients per message; more are answered `452 4.5.3`.
    pub max_recipients: usize,
    /// Failed commands (and failed logins) in one SMTP or POP3 session before it is closed (SMTP `421 4.7.0`,
    /// POP3 `-ERR`).
    pub max_errors: u32,
    /// Simultaneous SMTP/POP3 connections from one client IP; more are refused at accept.
    pub max_connections_per_ip: usize,
    /// Simultaneous mail connections in all; more are refused at accept.
    pub max_connections: usize,
    /// Longest command line accepted (bytes, CRLF excluded). RFC 5321 asks for at least 512.
    pub max_line: usize,
    /// Seconds an SMTP or POP3 session may wait for the client's next command (RFC 5321 §4.5.3.2 asks for
    /// 5 minutes; POP3's autologout timer is at least 10 minutes).
    pub command_timeout_secs: u64,
    /// Seconds allowed for a session before it has authenticated or said `MAIL`: a shorter leash for clients
    /// that connect and say nothing.
    pub greeting_timeout_secs: u64,
    /// Deliveries committed together at most (group commit: one fsync for all of them).
    pub group_commit_max: usize,
    /// How long outbound delivery keeps retrying a temporary failure before giving up with a bounce
    /// (RFC 5321 §4.5.4.1: at least 4–5 days).
    pub queue_lifetime_secs: u64,
    /// The first retry interval; each later one doubles, up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// Outbound SMTP sessions in flight at once.
    pub outbound_concurrency: usize,
    /// Seconds to wait for a remote server at each step of outbound delivery.
    pub outbound_timeout_secs: u64,
    /// Port outbound delivery connects to on an MX host (25; tests use routes instead).
    pub outbound_port: u16,
    /// `[mail.spam]`: the spam filter on the MX.
    pub spam: SpamConfig,
    /// Check SPF, DKIM and DMARC of mail arriving at the MX and record them in `Authentication-Results`.
    pub sender_auth: bool,
    /// DNS servers (UDP) that sender authentication and the DNS blocklists ask; empty: the system's
    /// `resolv.conf`.
    pub auth_dns: Vec<SocketAddr>,
    /// Refuse a message whose DMARC check fails under `p=reject` (`550 5.7.1` at the end of `DATA`);
    /// off: such mail is delivered to `Junk`.
    pub dmarc_enforce: bool,
    /// Where the DKIM signing key lives (generated on first start). The server sets it to `DATA/dkim`;
    /// unset (as in library tests): outbound mail is not signed.
    pub dkim_dir: Option<std::path::PathBuf>,
    /// Greylisting of MX mail (RFC 6647): the first attempt of each (client /24 or /64, sender,
    /// recipient) is answered `451 4.7.1` at `RCPT`, a retry after `greylist_delay_secs` is accepted and
    /// the triplet passes at once for 36 days after its last message. Allow-listed senders and signed-in
    /// submission are exempt. Off by default: it delays every new correspondent's first mail.
    pub greylisting: bool,
    /// How long after its first attempt a greylisted triplet is accepted.
    pub greylist_delay_secs: u64,
    /// DNS blocklist zones (`["zen.example.org"]`) asked about the client of every message arriving at the
    /// MX: `1.2.0.192.zen.example.org` for 192.0.2.1, nibbles for IPv6 (RFC 5782). A listing adds
    /// `dnsbl_score` points to the spam score, as the hit `RCVD_IN_DNSBL_<ZONE>`; it never refuses mail.
    /// Empty (the default): no lookups. Asked through sender authentication's resolver (`auth_dns`).
    pub dnsbl: Vec<String>,
    /// Points a listing in one zone adds to the spam score.
    pub dnsbl_score: f64,
    /// How long the MX waits for the blocklists' answers (asked together, beside SPF); a zone that has
    /// not answered by then counts as not listing the client.
    pub dnsbl_timeout_secs: u64,
    /// Skip the lookups for clients at loopback, private (RFC 1918, RFC 4193), link-local and shared
    /// (RFC 6598) addresses: a public list cannot know them, and asking leaks internal addresses. Tests
    /// set it to `false` to look up 127.0.0.1.
    pub dnsbl_skip_private: bool,
}

/// `[mail.spam]`: how mail arriving at the MX is judged. Submission (signed-in senders) is never scored.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpamConfig {
    /// Whether the MX scores mail at all. Off: every message goes to the Inbox without spam headers.
    pub enabled: bool,
    /// The score at or above which a message goes to `Junk` (never dropped).
    pub threshold: f64,
    /// A directory with `ham.mbox` and `spam.mbox` to train the global model from at start, instead of the
    /// small corpus built into msgr.
    pub corpus: Option<std::path::PathBuf>,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            enabled: true,
            threshold: msgr_spam::DEFAULT_THRESHOLD,
            corpus: None,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        let loopback = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        MailConfig {
            smtp: loopback(2525),
            submission: loopback(2587),
            submissions: loopback(2465),
            pop3: loopback(2110),
            pop3s: loopback(2995),
            imap: loopback(2143),
            imaps: loopback(2993),
            imap_timeout_secs: 30 * 60,
            hostname: None,
            domains: Vec::new(),
            routes: BTreeMap::new(),
            allow_plaintext_auth: false,
            quota_bytes: 1 << 30,
            max_message_bytes: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_connections_per_ip: 20,
            max_connections: 2_000,
            max_line: 4096,
            command_timeout_secs: 300,
            greeting_timeout_secs: 60,
            group_commit_max: 64,
            queue_lifetime_secs: 5 * 24 * 3600,
            retry_initial_secs: 300,
            retry_max_secs: 3 * 3600,
            outbound_concurrency: 16,
            outbound_timeout_secs: 60,
            outbound_port: 25,
            spam: SpamConfig::default(),
            sender_auth: true,
            auth_dns: Vec::new(),
            dmarc_enforce: false,
            dkim_dir: None,
            greylisting: false,
            greylist_delay_secs: 300,
            dnsbl: Vec::new(),
            dnsbl_score: msgr_spam::DEFAULT_THRESHOLD,
            dnsbl_timeout_secs: 3,
            dnsbl_skip_private: true,
        }
    }
}

impl MailConfig {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }
    /// The IMAP autologout timer, never under RFC 9051's thirty minutes unless configured lower for
    /// tests.
    pub fn imap_timeout(&self) -> Duration {
        Duration::from_secs(self.imap_timeout_secs.max(1))
    }
    pub fn greeting_timeout(&self) -> Duration {
        Duration::from_secs(self.greeting_timeout_secs)
    }
    pub fn outbound_timeout(&self) -> Duration {
        Duration::from_secs(self.outbound_timeout_secs)
    }
}

//! How to reach the service and who to sign in as.

use crate::event::Status;
use crate::lists::ListCache;
use crate::tls::TlsTrust;
use msgr_proto::Dialect;
use std::fmt;
use std::time::Duration;

/// Backoff between reconnection attempts after a network loss: `initial`, doubled per failed
/// attempt up to `max`, with up to 25 % random jitter so many clients do not return in step.
#[derive(Debug, Clone)]
pub struct Reconnect {
    pub enabled: bool,
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The wait before attempt `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.initial.saturating_mul(1u32 << n.min(16)).min(self.max);
        let jitter = rand::random::<f64>() * 0.25;
        base.mul_f64(1.0 + jitter).min(self.max.max(self.initial))
    }
}

#[derive(Clone)]
pub struct Config {
    /// `host:port` of the dispatch or notification server; `XFR NS` redirects are followed.
    pub server: String,
    /// The Passport nexus URL (`https://host:port/rdr/pprdr.asp`); needed for MSNP8+.
    pub nexus: String,
    pub tls: TlsTrust,
    /// MSNP12 by default; MSNP8–MSNP11 log in through Passport too, MSNP2–MSNP7 with MD5.
    pub dialect: Dialect,
    pub email: String,
    pub password: String,
    /// Status set right after signing in (and again after each reconnect, unless changed).
    pub initial_status: Status,
    /// A list cache from an earlier run; with its version unchanged no list is downloaded.
    pub list_cache: Option<ListCache>,
    /// How long any single step (a reply, a connect, an HTTPS request) may take.
    pub timeout: Duration,
    /// How often to send `PNG`; a ping unanswered by the next one counts as a lost connection.
    pub ping_interval: Duration,
    pub reconnect: Reconnect,
    /// Capacity of the event queue. When the application does not keep up, the connection
    /// task waits for it (and the server will, in the end, drop a reader that slow).
    pub event_queue: usize,
}

impl Config {
    pub fn new(
        server: impl Into<String>,
        email: impl Into<String>,
        password: impl Into<String>,
    ) -> Config {
        let server = server.into();
        let host = server.rsplit_once(':').map_or(server.as_str(), |(h, _)| h);
        Config {
            nexus: format!("https://{host}/rdr/pprdr.asp"),
            server,
            tls: TlsTrust::SystemRoots,
            dialect: Dialect::Msnp12,
            email: email.into(),
            password: password.into(),
            initial_status: Status::Online,
            list_cache: None,
            timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(45),
            reconnect: Reconnect::default(),
            event_queue: 256,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("nexus", &self.nexus)
            .field("tls", &self.tls)
            .field("dialect", &self.dialect)
            .field("email", &self.email)
            .field("password", &"…")
            .finish_non_exhaustive()
    }
}

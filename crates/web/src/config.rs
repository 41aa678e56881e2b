//! `[web]` in the server's TOML file: the web inbox's limits. Every key is optional.

use serde::Deserialize;
use std::time::Duration;

/// The web inbox's named limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Largest request body read (the compose form with its attachments, in bytes); larger ones get
    /// `413` before anything past the limit is kept.
    pub max_body_bytes: usize,
    /// Messages per page of a folder or of search results.
    pub page_size: usize,
    /// Attachments listed per page of a message.
    pub attachments_per_page: usize,
    /// Bytes of a plain-text body shown in the page; the rest is left out (the whole message stays
    /// downloadable).
    pub max_text_bytes: usize,
    /// Bytes of an HTML body sanitised and shown.
    pub max_html_bytes: usize,
    /// Signed-in sessions kept at once in all; a sign-in beyond it is refused until some expire.
    pub max_sessions: usize,
    /// Sessions one account may hold; its oldest is ended to make room for a new one.
    pub max_sessions_per_account: usize,
    /// Seconds a session lives without a request.
    pub session_idle_secs: u64,
    /// Seconds a session lives at most, however busy.
    pub session_lifetime_secs: u64,
    /// Seconds an `MSPAuth` ticket from the Messenger profile signs in.
    pub ticket_ttl_secs: u64,
    /// Failed sign-ins for one account within `login_window_secs` before its sign-ins are refused for
    /// the rest of the window.
    pub login_failures_per_account: u32,
    /// Failed sign-ins from one IP address within `login_window_secs` before its sign-ins are refused.
    pub login_failures_per_ip: u32,
    /// The window of the two counts above, in seconds.
    pub login_window_secs: u64,
    /// Live-update streams (`/mail/events`) open at once in all.
    pub max_event_streams: usize,
    /// Live-update streams one session may hold (one per open tab).
    pub max_event_streams_per_session: usize,
    /// Bytes of message text searched per search; a search that reaches it says so.
    pub search_scan_bytes: u64,
    /// Search results listed at most.
    pub max_search_results: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            // A message at the mail side's default size limit plus the form around it.
            max_body_bytes: 36 * 1024 * 1024,
            page_size: 50,
            attachments_per_page: 100,
            max_text_bytes: 512 * 1024,
            max_html_bytes: 1024 * 1024,
            max_sessions: 10_000,
            max_sessions_per_account: 20,
            session_idle_secs: 30 * 60,
            session_lifetime_secs: 12 * 3600,
            // A Messenger session lasts for hours and the profile is sent once, at sign-in.
            ticket_ttl_secs: 24 * 3600,
            login_failures_per_account: 10,
            login_failures_per_ip: 30,
            login_window_secs: 15 * 60,
            max_event_streams: 2_000,
            max_event_streams_per_session: 4,
            search_scan_bytes: 64 * 1024 * 1024,
            max_search_results: 200,
        }
    }
}

impl WebConfig {
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_secs)
    }
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_lifetime_secs)
    }
    pub fn login_window(&self) -> Duration {
        Duration::from_secs(self.login_window_secs)
    }
}

//! msgr-client: an async (tokio) MSN Messenger client library for MSNP2–MSNP12.
//!
//! [`Client::connect`] signs in — following `XFR NS`, with Passport 1.4 over HTTPS for MSNP8+
//! or MD5 before — synchronises the lists against a [`ListCache`], sets a status, and returns a
//! handle for typed commands plus a bounded stream of typed [`Event`]s. A task per connection
//! owns each socket; the notification connection reconnects with backoff after a network loss.
//! Switchboard [`Chat`]s carry text, typing notifications and MSNFTP file transfers.
//!
//! Framing, dialects, error codes, challenge answers, URL-encoding and MIME payloads all come
//! from `msgr-proto`; this crate adds only IO and session state.
//!
//! ```no_run
//! # async fn demo() -> Result<(), msgr_client::ClientError> {
//! use msgr_client::{Client, Config, Event, TlsTrust};
//! let mut cfg = Config::new("127.0.0.1:1863", "alice@example.com", "secret");
//! cfg.nexus = "https://127.0.0.1:8443/rdr/pprdr.asp".into();
//! cfg.tls = TlsTrust::CertificateFile("msgr-data/tls-cert.pem".into());
//! let (client, mut events) = Client::connect(cfg).await?;
//! let chat = client.start_chat("bob@example.com").await?;
//! chat.send_text("hello").await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Chat { event, .. } = event { println!("{event:?}"); }
//! }
//! # Ok(()) }
//! ```

mod config;
mod error;
mod event;
pub mod ftp;
mod lists;
mod login;
mod mail;
mod ns;
mod passport;
mod sb;
mod tls;
mod wire;

pub use config::{Config, Reconnect};
pub use error::{AuthFailure, ClientError, ServerError};
pub use event::{ChatEvent, ChatId, DisconnectReason, Event, FileOffer, MailEvent, Ring, Status};
pub use ftp::{Progress, ProgressFn};
pub use lists::{Contact, Generation, List, ListCache, ListChange};
pub use mail::{hotmail_creds, hotmail_fields, hotmail_form, MailPage, PassportProfile};
pub use msgr_proto::mime::ImFormat;
pub use msgr_proto::{Dialect, ErrorCode};
pub use ns::Client;
pub use sb::{Chat, Transfer};
pub use tls::TlsTrust;

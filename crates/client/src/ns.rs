//! The notification-server session: [`Client`] is the handle, one task owns the socket.
//!
//! The task answers `CHL` (`QRY`), sends `PNG` every `ping_interval` and counts a ping still
//! unanswered at the next one as a lost connection, turns server lines into [`Event`]s,
//! applies list lines to the [`ListCache`], and matches replies to requests by TrID. After a
//! network loss or `OUT SSD` it signs in again with backoff (the old socket is closed first,
//! so there is never a second session of ours); after `OUT OTH` it stops.
//!
//! | request | MSNP2–MSNP9 | MSNP10–MSNP12 |
//! |---|---|---|
//! | status | `CHG t ST [caps]` | `CHG t ST caps` |
//! | nickname | `REA t email name` | `PRP t MFN name` |
//! | personal message | — | MSNP11+: `UUX t len` + `<Data><PSM>…</PSM>…</Data>` |
//! | add | `ADD t L email nick [gid]` | `ADC t L N=email [F=nick]`, `ADC t FL C=guid gguid` |
//! | remove | `REM t L email [gid]` | `REM t FL guid [gguid]`, `REM t AL email` |
//! | groups | `ADG t name 0`, `RMG t id`, `REG t id name 0` | `ADG t name`, `RMG t gguid`, `REG t gguid name` |
//! | chat | `XFR t SB` → `XFR t SB host:port CKI cookie` | same |

use crate::config::Config;
use crate::error::{ClientError, ServerError};
use crate::event::{DisconnectReason, Event, MailEvent, Ring, Status};
use crate::lists::{List, ListCache, SyncProgress};
use crate::login::{sign_in, SignedIn};
use crate::mail::{MailPage, PassportProfile};
use crate::sb::{self, Chat, SbContext};
use crate::wire::{server_error, Wire};
use msgr_proto::frame::Frame;
use msgr_proto::{challenge, urlenc, Dialect};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Requests queued for the connection task.
const REQUEST_QUEUE: usize = 64;

/// What the application asks the connection task to do.
enum Request {
    /// Send `command t args…` (with a payload when given) and hand back the reply.
    Call {
        command: &'static str,
        args: Vec<String>,
        payload: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<Frame, ClientError>>,
    },
}

/// State shared between the handle and the task.
struct Shared {
    email: String,
    dialect: Dialect,
    lists: Mutex<ListCache>,
    /// The display name the server last confirmed.
    name: Mutex<String>,
    /// What to restore after a reconnect.
    status: Mutex<Status>,
    personal_message: Mutex<Option<String>>,
    next_chat: Arc<AtomicU64>,
    /// Whether the last `SYN` found the cached lists up to date (nothing downloaded).
    lists_from_cache: std::sync::atomic::AtomicBool,
    /// The Passport fields of the last sign-in's profile (MSNP5+), for opening the web inbox.
    profile: Mutex<Option<PassportProfile>>,
    /// `creds` of the web inbox's form post is made with it, as Messenger did.
    password: String,
    timeout: Duration,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A signed-in client. Cloning gives another handle to the same session; the session ends
/// with [`Client::sign_out`] or when every handle is dropped.
#[derive(Clone)]
pub struct Client {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
}

/// What `XFR`/`CAL` need from the handle, without the whole handle.
pub(crate) type Events = mpsc::Sender<Event>;

impl Client {
    /// Signs in (following `XFR NS`), synchronises the lists and sets the initial status.
    /// Returns the handle and the event stream.
    pub async fn connect(config: Config) -> Result<(Client, mpsc::Receiver<Event>), ClientError> {
        let mut cache = config
            .list_cache
            .clone()
            .unwrap_or_else(|| ListCache::new(&config.email));
        let (events_tx, events_rx) = mpsc::channel(config.event_queue.max(1));
        let mut early = Vec::new();
        let online =
            go_online(&config, &mut cache, config.initial_status, None, &mut early).await?;
        let shared = Arc::new(Shared {
            email: config.email.clone(),
            dialect: config.dialect,
            lists: Mutex::new(cache),
            name: Mutex::new(online.name.clone()),
            status: Mutex::new(config.initial_status),
            personal_message: Mutex::new(None),
            next_chat: Arc::new(AtomicU64::new(1)),
            lists_from_cache: online.lists_from_cache.into(),
            profile: Mutex::new(online.profile.clone()),
            password: config.password.clone(),
            timeout: config.timeout,
            shutdown: CancellationToken::new(),
        });
        let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
        let task = Task {
            config,
            shared: shared.clone(),
            events: events_tx.clone(),
            requests: req_rx,
        };
        tokio::spawn(task.run(online, early));
        Ok((
            Client {
                requests: req_tx,
                shared,
                events: events_tx,
            },
            events_rx,
        ))
    }

    pub fn email(&self) -> &str {
        &self.shared.email
    }

    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// Our display name as the server last confirmed it.
    pub fn display_name(&self) -> String {
        lock(&self.shared.name).clone()
    }

    /// A copy of the lists (save it with [`ListCache::save`] to skip the download next time).
    pub fn lists(&self) -> ListCache {
        lock(&self.shared.lists).clone()
    }

    /// Whether the last sign-in found the cached lists current, so none was downloaded.
    pub fn lists_from_cache(&self) -> bool {
        self.shared
            .lists_from_cache
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn status(&self) -> Status {
        *lock(&self.shared.status)
    }

    /// The Passport fields of the profile the server sent at the last sign-in (MSNP5+; `None`
    /// before, or from a server that sent none).
    pub fn passport_profile(&self) -> Option<PassportProfile> {
        lock(&self.shared.profile).clone()
    }

    /// `URL t SERVICE [arg]`: where a page of the account's mail site is (`INBOX`, `FOLDERS`,
    /// `COMPOSE` with an address, `MESSAGE` with a message URL, …). A server without the service
    /// answers `710`.
    pub async fn mail_page(
        &self,
        service: &str,
        arg: Option<&str>,
    ) -> Result<MailPage, ClientError> {
        if service.is_empty() || service.contains(char::is_whitespace) {
            return Err(ClientError::InvalidArgument(format!(
                "not a URL service: {service:?}"
            )));
        }
        let mut args = vec![service.to_owned()];
        if let Some(a) = arg {
            if a.is_empty() || a.contains(char::is_whitespace) {
                return Err(ClientError::InvalidArgument(format!(
                    "not a URL argument: {a:?}"
                )));
            }
            args.push(a.to_owned());
        }
        let f = self.call("URL", args, None).await?;
        match f.params().as_slice() {
            [rru, post_url, rest @ ..] => Ok(MailPage {
                rru: (*rru).to_owned(),
                post_url: (*post_url).to_owned(),
                site_id: rest.first().map(|s| (*s).to_owned()),
            }),
            _ => Err(ClientError::protocol("URL without a page", f.line())),
        }
    }

    /// The local HTML page that opens `page` signed in (see [`crate::hotmail_form`]); `None` when
    /// the sign-in gave no profile ticket (MSNP2–MSNP4), where [`MailPage::direct_url`] is left.
    pub fn mail_form(&self, page: &MailPage) -> Option<String> {
        let profile = self.passport_profile().filter(|p| !p.mspauth.is_empty())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(crate::mail::hotmail_form(
            &self.shared.email,
            &self.shared.password,
            &profile,
            page,
            now,
        ))
    }

    /// Sends one request and waits for its reply (or its numeric error).
    async fn call(
        &self,
        command: &'static str,
        args: Vec<String>,
        payload: Option<Vec<u8>>,
    ) -> Result<Frame, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Call {
                command,
                args,
                payload,
                reply: tx,
            })
            .await
            .map_err(|_| ClientError::SessionEnded)?;
        match tokio::time::timeout(self.shared.timeout, rx).await {
            Err(_) => Err(ClientError::Timeout(self.shared.timeout)),
            Ok(Err(_)) => Err(ClientError::SessionEnded),
            Ok(Ok(r)) => r,
        }
    }

    pub async fn set_status(&self, status: Status) -> Result<(), ClientError> {
        if status == Status::Offline {
            return Err(ClientError::InvalidArgument(
                "use sign_out, or AppearOffline to stay signed in".into(),
            ));
        }
        self.call("CHG", chg_args(self.shared.dialect, status), None)
            .await?;
        *lock(&self.shared.status) = status;
        Ok(())
    }

    /// Changes our display name (`REA` before MSNP10, `PRP MFN` after).
    pub async fn set_nickname(&self, name: &str) -> Result<(), ClientError> {
        let encoded = urlenc::encode(name).into_owned();
        if self.shared.dialect < Dialect::Msnp10 {
            self.call("REA", vec![self.shared.email.clone(), encoded], None)
                .await?;
        } else {
            self.call("PRP", vec!["MFN".into(), encoded], None).await?;
        }
        *lock(&self.shared.name) = name.to_owned();
        Ok(())
    }

    /// Sets the personal message shown under our name (MSNP11+).
    pub async fn set_personal_message(&self, text: &str) -> Result<(), ClientError> {
        if self.shared.dialect < Dialect::Msnp11 {
            return Err(ClientError::InvalidArgument(
                "personal messages need MSNP11 or later".into(),
            ));
        }
        self.call("UUX", vec![], Some(psm_payload(text))).await?;
        *lock(&self.shared.personal_message) = Some(text.to_owned());
        Ok(())
    }

    /// Puts `email` on `list` (forward, allow or block; the reverse list is the server's).
    pub async fn add_contact(&self, list: List, email: &str) -> Result<(), ClientError> {
        check_email(email)?;
        if list == List::Reverse {
            return Err(ClientError::InvalidArgument(
                "the reverse list is read-only".into(),
            ));
        }
        let l = list.token().to_owned();
        if self.shared.dialect < Dialect::Msnp10 {
            self.call("ADD", vec![l, email.into(), email.into()], None)
                .await?;
        } else if list == List::Forward {
            self.call(
                "ADC",
                vec![l, format!("N={email}"), format!("F={email}")],
                None,
            )
            .await?;
        } else {
            self.call("ADC", vec![l, format!("N={email}")], None)
                .await?;
        }
        Ok(())
    }

    pub async fn remove_contact(&self, list: List, email: &str) -> Result<(), ClientError> {
        check_email(email)?;
        let who = if self.shared.dialect >= Dialect::Msnp10 && list == List::Forward {
            self.guid_of(email)?
        } else {
            email.to_owned()
        };
        self.call("REM", vec![list.token().into(), who], None)
            .await?;
        Ok(())
    }

    /// Blocks `email`: off the allow list, onto the block list.
    pub async fn block(&self, email: &str) -> Result<(), ClientError> {
        self.move_between(List::Allow, List::Block, email).await
    }

    /// Allows `email`: off the block list, onto the allow list.
    pub async fn allow(&self, email: &str) -> Result<(), ClientError> {
        self.move_between(List::Block, List::Allow, email).await
    }

    async fn move_between(&self, from: List, to: List, email: &str) -> Result<(), ClientError> {
        let on = |l| {
            lock(&self.shared.lists)
                .contacts
                .get(&email.to_ascii_lowercase())
                .is_some_and(|c| c.on(l))
        };
        if on(from) {
            self.remove_contact(from, email).await?;
        }
        if !on(to) {
            self.add_contact(to, email).await?;
        }
        Ok(())
    }

    /// Creates a group; returns its id (MSNP7–9) or GUID (MSNP10+).
    pub async fn add_group(&self, name: &str) -> Result<String, ClientError> {
        let encoded = urlenc::encode(name).into_owned();
        let mut args = vec![encoded];
        if self.shared.dialect < Dialect::Msnp10 {
            args.push("0".into());
        }
        let f = self.call("ADG", args, None).await?;
        let p = f.params();
        // MSNP7–9: ver name id 0; MSNP10+: name guid.
        let id = if self.shared.dialect < Dialect::Msnp10 {
            p.get(2)
        } else {
            p.get(1)
        };
        id.map(|s| (*s).to_owned())
            .ok_or_else(|| ClientError::protocol("ADG reply", f.line()))
    }

    pub async fn remove_group(&self, id: &str) -> Result<(), ClientError> {
        self.call("RMG", vec![id.into()], None).await?;
        Ok(())
    }

    pub async fn rename_group(&self, id: &str, name: &str) -> Result<(), ClientError> {
        let mut args = vec![id.to_owned(), urlenc::encode(name).into_owned()];
        if self.shared.dialect < Dialect::Msnp10 {
            args.push("0".into());
        }
        self.call("REG", args, None).await?;
        Ok(())
    }

    /// Files a forward-list contact under a group too.
    pub async fn add_to_group(&self, email: &str, group: &str) -> Result<(), ClientError> {
        check_email(email)?;
        if self.shared.dialect < Dialect::Msnp10 {
            self.call(
                "ADD",
                vec!["FL".into(), email.into(), email.into(), group.into()],
                None,
            )
            .await?;
        } else {
            let guid = self.guid_of(email)?;
            self.call(
                "ADC",
                vec!["FL".into(), format!("C={guid}"), group.into()],
                None,
            )
            .await?;
        }
        Ok(())
    }

    pub async fn remove_from_group(&self, email: &str, group: &str) -> Result<(), ClientError> {
        let who = if self.shared.dialect < Dialect::Msnp10 {
            email.to_owned()
        } else {
            self.guid_of(email)?
        };
        self.call("REM", vec!["FL".into(), who, group.into()], None)
            .await?;
        Ok(())
    }

    fn guid_of(&self, email: &str) -> Result<String, ClientError> {
        lock(&self.shared.lists)
            .contacts
            .get(&email.to_ascii_lowercase())
            .and_then(|c| c.guid.clone())
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!("{email} is not on the forward list"))
            })
    }

    fn sb_context(&self) -> SbContext {
        SbContext {
            email: self.shared.email.clone(),
            dialect: self.shared.dialect,
            events: self.events.clone(),
            timeout: self.shared.timeout,
            shutdown: self.shared.shutdown.child_token(),
            next_chat: self.shared.next_chat.clone(),
        }
    }

    /// Opens a switchboard (`XFR SB`) and invites `email` into it.
    pub async fn start_chat(&self, email: &str) -> Result<Chat, ClientError> {
        check_email(email)?;
        let f = self.call("XFR", vec!["SB".into()], None).await?;
        let (addr, cookie) = match f.params().as_slice() {
            ["SB", addr, "CKI", cookie, ..] => ((*addr).to_owned(), (*cookie).to_owned()),
            _ => return Err(ClientError::protocol("XFR SB reply", f.line())),
        };
        let chat = sb::open(self.sb_context(), sb::Join::Caller { addr, cookie }).await?;
        chat.invite(email).await?;
        Ok(chat)
    }

    /// Joins the chat a [`Ring`] invites us to.
    pub async fn answer(&self, ring: &Ring) -> Result<Chat, ClientError> {
        sb::open(self.sb_context(), sb::Join::Callee(ring.clone())).await
    }

    /// Signs out (`OUT`), ends every chat and stops reconnecting.
    pub async fn sign_out(&self) {
        self.shared.shutdown.cancel();
        // The task sees the token and says goodbye; wait (bounded) for it to close its queue.
        let _ = tokio::time::timeout(self.shared.timeout, self.requests.closed()).await;
    }
}

fn check_email(email: &str) -> Result<(), ClientError> {
    if email.contains('@') && !email.contains(char::is_whitespace) && email.len() <= 129 {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(format!(
            "not an account name: {email:?}"
        )))
    }
}

fn chg_args(dialect: Dialect, status: Status) -> Vec<String> {
    let mut args = vec![status.token().to_owned()];
    if dialect >= Dialect::Msnp8 {
        // No capabilities claimed: this client transfers files with MSNFTP, not P2P.
        args.push("0".into());
    }
    args
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn psm_payload(text: &str) -> Vec<u8> {
    format!(
        "<Data><PSM>{}</PSM><CurrentMedia></CurrentMedia></Data>",
        xml_escape(text)
    )
    .into_bytes()
}

/// The `<PSM>` of a `UBX` payload.
fn psm_of(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    text.split_once("<PSM>")
        .and_then(|(_, rest)| rest.split_once("</PSM>"))
        .map(|(psm, _)| xml_unescape(psm))
        .unwrap_or_default()
}

/// The Passport fields of the profile in an NS `MSG`, if it is the profile.
fn profile_of(f: &Frame) -> Option<PassportProfile> {
    use msgr_proto::mime::{MimeMessage, Profile};
    let m = MimeMessage::parse(f.payload()?).ok()?;
    Profile::from_message(&m)
        .ok()
        .map(|p| PassportProfile::from_profile(&p))
}

/// The Hotmail notice in an NS `MSG`, if it is one.
fn mail_event(f: &Frame) -> Option<MailEvent> {
    use msgr_proto::mime::{
        ActiveMailNotification, EmailNotification, InitialEmailNotification, MimeMessage,
    };
    let m = MimeMessage::parse(f.payload()?).ok()?;
    if let Ok(n) = InitialEmailNotification::from_message(&m) {
        return Some(MailEvent::Unread {
            inbox: n.inbox_unread,
            folders: n.folders_unread,
            inbox_url: n.inbox_url,
            post_url: n.post_url,
        });
    }
    if let Ok(n) = EmailNotification::from_message(&m) {
        return Some(MailEvent::Arrived {
            from: n.from,
            from_addr: n.from_addr,
            subject: n.subject,
            folder: n.dest_folder,
            message_url: n.message_url,
        });
    }
    ActiveMailNotification::from_message(&m)
        .ok()
        .map(|n| MailEvent::Moved {
            src: n.src_folder,
            dest: n.dest_folder,
            delta: n.message_delta,
        })
}

/// A signed-in, synchronised connection with its status set.
struct Online {
    wire: Wire,
    dialect: Dialect,
    next_trid: u32,
    name: String,
    lists_from_cache: bool,
    profile: Option<PassportProfile>,
}

/// Answers `CHL` with the first official client ID this dialect accepts.
async fn answer_challenge(
    wire: &mut Wire,
    dialect: Dialect,
    trid: u32,
    f: &Frame,
) -> Result<(), ClientError> {
    let Some(chl) = f.params().first().map(|s| (*s).to_owned()) else {
        return Err(ClientError::protocol("CHL without a challenge", f.line()));
    };
    let Some(id) = challenge::CLIENT_IDS.iter().find(|c| c.accepts(dialect)) else {
        return Ok(());
    };
    let answer = id.answer(&chl);
    wire.send_payload("QRY", Some(trid), &[id.id], answer.as_bytes())
        .await
}

/// Signs in, sends `SYN` with the cached version, reads the list data if the server sends
/// it, and sets `status`. Lines that belong to the online phase are kept in `early`.
async fn go_online(
    cfg: &Config,
    cache: &mut ListCache,
    status: Status,
    personal_message: Option<&str>,
    early: &mut Vec<Frame>,
) -> Result<Online, ClientError> {
    let SignedIn {
        mut wire,
        dialect,
        name,
        mut next_trid,
    } = sign_in(cfg).await?;
    let t = cfg.timeout;
    let syn_trid = next_trid;
    next_trid += 1;
    let ver = cache.syn_version(&cfg.email, dialect).to_owned();
    if dialect >= Dialect::Msnp10 {
        wire.send_line("SYN", Some(syn_trid), &[&ver, &ver]).await?;
    } else {
        wire.send_line("SYN", Some(syn_trid), &[&ver]).await?;
    }
    let mut progress = SyncProgress::Requested;
    let mut downloaded = false;
    let mut profile = None;
    while progress != SyncProgress::Done {
        let f = wire.read_frame_within(t).await?;
        match f.command() {
            "CHL" => {
                answer_challenge(&mut wire, dialect, next_trid, &f).await?;
                next_trid += 1;
            }
            // The profile: its Passport fields open the web inbox.
            "MSG" if profile_of(&f).is_some() => profile = profile_of(&f),
            // Hotmail notices (the initial unread counts come before the list) are the online
            // phase's.
            "MSG" if mail_event(&f).is_some() => {
                if early.len() < 1024 {
                    early.push(f);
                }
            }
            "QRY" | "MSG" | "SBS" | "GCF" => {}
            "SYN" if f.trid().map(|x| x.0) == Some(syn_trid) => {
                progress = cache.on_syn(&cfg.email, dialect, &f)?;
                downloaded = progress != SyncProgress::Done || ver != cache.version;
            }
            _ if f.trid().map(|x| x.0) == Some(syn_trid) && f.error_code().is_some() => {
                return Err(server_error(&f).unwrap_or(ClientError::Closed));
            }
            _ => {
                let list_data = progress != SyncProgress::Requested
                    && cache.on_list_line(dialect, &f, &mut progress);
                if !list_data && early.len() < 1024 {
                    early.push(f);
                }
            }
        }
    }
    let chg = next_trid;
    next_trid += 1;
    let args = chg_args(dialect, status);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    wire.send_line("CHG", Some(chg), &args).await?;
    // A `SYN` whose counts are 0 (a list with no contacts and no groups) is complete by its
    // counts before the lines that follow it: `GTC`, `BLP` and, from MSNP10, `PRP MFN` with
    // our display name. The server answers in order, so everything up to the `CHG` reply is
    // still list data; without reading it here a new account would show its e-mail address
    // instead of the name the server holds.
    loop {
        let f = wire.read_frame_within(t).await?;
        match f.command() {
            "CHL" => {
                answer_challenge(&mut wire, dialect, next_trid, &f).await?;
                next_trid += 1;
            }
            _ if f.trid().map(|x| x.0) == Some(chg) => {
                if f.error_code().is_some() {
                    return Err(server_error(&f).unwrap_or(ClientError::Closed));
                }
                break;
            }
            "GTC" | "BLP" | "PRP" if f.trid().is_none() => {
                let mut done = SyncProgress::Done;
                cache.on_list_line(dialect, &f, &mut done);
            }
            _ => {
                if early.len() < 1024 {
                    early.push(f);
                }
            }
        }
    }
    if let (Some(psm), true) = (personal_message, dialect >= Dialect::Msnp11) {
        wire.send_payload("UUX", Some(next_trid), &[], &psm_payload(psm))
            .await?;
        next_trid += 1;
    }
    let name = name
        .or_else(|| cache.display_name.clone())
        .unwrap_or_else(|| cfg.email.clone());
    Ok(Online {
        wire,
        dialect,
        next_trid,
        name,
        lists_from_cache: !downloaded,
        profile,
    })
}

struct Pending {
    command: &'static str,
    reply: oneshot::Sender<Result<Frame, ClientError>>,
}

/// The connection task.
struct Task {
    config: Config,
    shared: Arc<Shared>,
    events: Events,
    requests: mpsc::Receiver<Request>,
}

/// How one connection ended.
enum End {
    Reason(DisconnectReason),
}

impl Task {
    async fn emit(&self, e: Event) {
        // A dropped receiver means nobody listens; the session carries on regardless.
        let _ = self.events.send(e).await;
    }

    async fn run(mut self, first: Online, early: Vec<Frame>) {
        let mut online = first;
        let mut early = early;
        loop {
            let End::Reason(reason) = self.connection(online, std::mem::take(&mut early)).await;
            let again = self.config.reconnect.enabled
                && matches!(
                    reason,
                    DisconnectReason::ConnectionLost(_) | DisconnectReason::ServerShutdown
                );
            self.emit(Event::Disconnected {
                reason: reason.clone(),
                reconnecting: again,
            })
            .await;
            if !again {
                break;
            }
            match self.reconnect(&mut early).await {
                Some(o) => {
                    online = o;
                    self.emit(Event::Reconnected).await;
                }
                None => break,
            }
        }
        self.shared.shutdown.cancel();
        self.requests.close();
    }

    /// Signs in again with backoff. `None` when signed out, or when retrying cannot help.
    async fn reconnect(&mut self, early: &mut Vec<Frame>) -> Option<Online> {
        let mut attempt = 0u32;
        loop {
            let wait = self.config.reconnect.delay(attempt);
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = self.shared.shutdown.cancelled() => return None,
                    r = self.requests.recv() => match r {
                        None => return None,
                        Some(Request::Call { reply, .. }) => {
                            let _ = reply.send(Err(ClientError::Closed));
                        }
                    },
                }
            }
            let status = *lock(&self.shared.status);
            let psm = lock(&self.shared.personal_message).clone();
            let mut cache = lock(&self.shared.lists).clone();
            early.clear();
            let result = tokio::select! {
                r = go_online(&self.config, &mut cache, status, psm.as_deref(), early) => r,
                _ = self.shared.shutdown.cancelled() => return None,
            };
            match result {
                Ok(o) => {
                    *lock(&self.shared.lists) = cache;
                    *lock(&self.shared.name) = o.name.clone();
                    *lock(&self.shared.profile) = o.profile.clone();
                    self.shared
                        .lists_from_cache
                        .store(o.lists_from_cache, std::sync::atomic::Ordering::Relaxed);
                    return Some(o);
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, attempt, "reconnect failed");
                    attempt += 1;
                    if self
                        .config
                        .reconnect
                        .max_attempts
                        .is_some_and(|m| attempt >= m)
                    {
                        return None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reconnect refused; giving up");
                    return None;
                }
            }
        }
    }

    async fn connection(&mut self, online: Online, early: Vec<Frame>) -> End {
        let Online {
            mut wire,
            dialect,
            mut next_trid,
            ..
        } = online;
        let mut pending: HashMap<u32, Pending> = HashMap::new();
        let every = self.config.ping_interval;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut awaiting_qng = false;
        for f in early {
            if let Err(reason) = self
                .on_frame(&mut wire, dialect, &mut next_trid, &mut pending, f)
                .await
            {
                return End::Reason(reason);
            }
        }
        let end = loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => {
                    break DisconnectReason::SignedOut;
                }
                r = self.requests.recv() => match r {
                    None => break DisconnectReason::SignedOut,
                    Some(Request::Call { command, args, payload, reply }) => {
                        let trid = next_trid;
                        next_trid += 1;
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        let sent = match &payload {
                            Some(p) => wire.send_payload(command, Some(trid), &args, p).await,
                            None => wire.send_line(command, Some(trid), &args).await,
                        };
                        if let Err(e) = sent {
                            let _ = reply.send(Err(ClientError::Closed));
                            break DisconnectReason::ConnectionLost(e.to_string());
                        }
                        pending.insert(trid, Pending { command, reply });
                    }
                },
                f = wire.read_frame() => match f {
                    Ok(f) => {
                        if f.command() == "QNG" {
                            awaiting_qng = false;
                            continue;
                        }
                        if let Err(reason) = self.on_frame(&mut wire, dialect, &mut next_trid, &mut pending, f).await {
                            break reason;
                        }
                    }
                    Err(ClientError::Frame(e)) => break DisconnectReason::Protocol(e.to_string()),
                    Err(e) => break DisconnectReason::ConnectionLost(e.to_string()),
                },
                _ = ping.tick() => {
                    if awaiting_qng {
                        break DisconnectReason::ConnectionLost("no answer to PNG".into());
                    }
                    pending.retain(|_, p| !p.reply.is_closed());
                    if let Err(e) = wire.send_line("PNG", None, &[]).await {
                        break DisconnectReason::ConnectionLost(e.to_string());
                    }
                    awaiting_qng = true;
                }
            }
        };
        for (_, p) in pending.drain() {
            let _ = p.reply.send(Err(ClientError::Closed));
        }
        if end == DisconnectReason::SignedOut {
            wire.close().await;
        }
        End::Reason(end)
    }

    /// One line from the server while online.
    async fn on_frame(
        &self,
        wire: &mut Wire,
        dialect: Dialect,
        next_trid: &mut u32,
        pending: &mut HashMap<u32, Pending>,
        f: Frame,
    ) -> Result<(), DisconnectReason> {
        let trid = f.trid().map(|t| t.0);
        // A reply to one of our requests: its command, or a numeric error, with our TrID.
        if let Some(t) = trid.filter(|t| *t != 0) {
            let matches = pending
                .get(&t)
                .is_some_and(|p| p.command == f.command() || f.error_code().is_some());
            if matches {
                if let Some(p) = pending.remove(&t) {
                    let result = match f.error_code() {
                        Some(n) => Err(ClientError::Server(ServerError::new(n))),
                        None => {
                            if let Some(change) = self.apply_change(dialect, &f) {
                                let _ = p.reply.send(Ok(f));
                                self.emit(Event::ListChanged(change)).await;
                                return Ok(());
                            }
                            Ok(f)
                        }
                    };
                    let _ = p.reply.send(result);
                    return Ok(());
                }
            }
        }
        match f.command() {
            "CHL" => {
                let t = *next_trid;
                *next_trid += 1;
                answer_challenge(wire, dialect, t, &f)
                    .await
                    .map_err(|e| DisconnectReason::ConnectionLost(e.to_string()))?;
            }
            "OUT" => {
                return Err(match f.args().next() {
                    Some("OTH") => DisconnectReason::SignedInElsewhere,
                    Some("SSD") => DisconnectReason::ServerShutdown,
                    other => DisconnectReason::ConnectionLost(format!(
                        "signed out by the server ({})",
                        other.unwrap_or("no reason")
                    )),
                });
            }
            "ILN" | "NLN" => {
                // ILN t ST email name [caps …]; NLN ST email name [caps …].
                let skip = usize::from(f.command() == "ILN");
                let a: Vec<&str> = f.args().skip(skip).collect();
                if let (Some(st), Some(email), Some(name)) = (a.first(), a.get(1), a.get(2)) {
                    if let Some(status) = Status::from_token(st) {
                        self.emit(Event::Presence {
                            email: (*email).to_owned(),
                            name: urlenc::decode(name)
                                .map_or_else(|_| (*name).to_owned(), |c| c.into_owned()),
                            status,
                            caps: a.get(3).map(|c| (*c).to_owned()),
                        })
                        .await;
                    }
                }
            }
            "FLN" => {
                if let Some(email) = f.args().next() {
                    self.emit(Event::Offline {
                        email: email.to_owned(),
                    })
                    .await;
                }
            }
            "UBX" => {
                if let (Some(email), Some(p)) = (f.args().next(), f.payload()) {
                    self.emit(Event::PersonalMessage {
                        email: email.to_owned(),
                        text: psm_of(p),
                    })
                    .await;
                }
            }
            "MSG" => {
                if let Some(mail) = mail_event(&f) {
                    self.emit(Event::Mail(mail)).await;
                }
            }
            "RNG" => {
                // RNG sid host:port CKI cookie caller callername
                if let [sid, addr, "CKI", cookie, from, name, ..] =
                    f.args().collect::<Vec<_>>().as_slice()
                {
                    self.emit(Event::Ring(Ring {
                        session_id: (*sid).to_owned(),
                        address: (*addr).to_owned(),
                        cookie: (*cookie).to_owned(),
                        from: (*from).to_owned(),
                        from_name: urlenc::decode(name)
                            .map_or_else(|_| (*name).to_owned(), |c| c.into_owned()),
                    }))
                    .await;
                }
            }
            _ => {
                if let Some(change) = self.apply_change(dialect, &f) {
                    self.emit(Event::ListChanged(change)).await;
                } else {
                    let mut done = SyncProgress::Done;
                    let list_data = lock(&self.shared.lists).on_list_line(dialect, &f, &mut done);
                    if !list_data {
                        tracing::debug!(line = f.line(), "ignoring a line from the server");
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_change(&self, dialect: Dialect, f: &Frame) -> Option<crate::lists::ListChange> {
        if f.command() == "PRP" && f.params().contains(&"MFN") {
            if let Some(n) = f.params().last() {
                *lock(&self.shared.name) =
                    urlenc::decode(n).map_or_else(|_| (*n).to_owned(), |c| c.into_owned());
            }
            return None;
        }
        if f.command() == "REA" {
            if let [_, email, name] | [email, name] = f.params().as_slice() {
                if email.eq_ignore_ascii_case(&self.shared.email) {
                    *lock(&self.shared.name) = urlenc::decode(name)
                        .map_or_else(|_| (*name).to_owned(), |c| c.into_owned());
                }
            }
            return None;
        }
        lock(&self.shared.lists).on_change(dialect, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_message_round_trip() {
        assert_eq!(psm_of(&psm_payload("a <b> & c")), "a <b> & c");
        assert_eq!(psm_of(b"garbage"), "");
    }
}

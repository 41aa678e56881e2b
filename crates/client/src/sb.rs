//! Switchboard chats: [`Chat`] is the handle, one task per switchboard connection owns the
//! socket. Events go to the client's one event stream, tagged with the [`ChatId`].
//!
//! | step | client sends | server answers |
//! |---|---|---|
//! | join as caller | `USR t email cookie` | `USR t OK email name` |
//! | join as callee | `ANS t email cookie sid` | `IRO t i n email name [caps]`…, `ANS t OK` |
//! | invite | `CAL t email` | `CAL t RINGING sid`, later `JOI email name [caps]` |
//! | text | `MSG t A len` + `text/plain` | `ACK t` or `NAK t` |
//! | typing | `MSG t U len` + `text/x-msmsgscontrol` | — |
//! | leave | `OUT` | — (the others see `BYE email`) |

use crate::error::ClientError;
use crate::event::{ChatEvent, ChatId, Event, FileOffer, Ring};
use crate::ftp::{self, ProgressFn};
use crate::login::reply;
use crate::ns::Events;
use crate::wire::{server_error, Wire};
use msgr_proto::frame::Frame;
use msgr_proto::mime::{ImFormat, MimeMessage, TextMessage, TypingNotification};
use msgr_proto::{urlenc, Dialect};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const REQUEST_QUEUE: usize = 32;
/// Invitations of one chat waiting for an answer at once.
const MAX_OPEN_INVITATIONS: usize = 16;

pub(crate) struct SbContext {
    pub email: String,
    pub dialect: Dialect,
    pub events: Events,
    pub timeout: Duration,
    pub shutdown: CancellationToken,
    pub next_chat: Arc<AtomicU64>,
}

pub(crate) enum Join {
    Caller { addr: String, cookie: String },
    Callee(Ring),
}

type Reply = oneshot::Sender<Result<Frame, ClientError>>;

enum Request {
    Call {
        command: &'static str,
        args: Vec<String>,
        payload: Option<Vec<u8>>,
        /// `None`: fire and forget (`MSG U`).
        reply: Option<Reply>,
    },
    Offer {
        cookie: String,
        path: PathBuf,
        size: u64,
        file_name: String,
        progress: Option<ProgressFn>,
        cancel: CancellationToken,
        result: oneshot::Sender<Result<u64, ClientError>>,
    },
    Accept {
        offer: FileOffer,
        dest: PathBuf,
        progress: Option<ProgressFn>,
        cancel: CancellationToken,
        result: oneshot::Sender<Result<u64, ClientError>>,
    },
    Cancel {
        cookie: String,
        code: &'static str,
    },
}

/// A file transfer under way. Dropping it does not stop it; [`Transfer::cancel`] does.
pub struct Transfer {
    cookie: String,
    cancel: CancellationToken,
    requests: mpsc::Sender<Request>,
    result: oneshot::Receiver<Result<u64, ClientError>>,
}

impl Transfer {
    /// Stops the transfer: `CANCEL` on the switchboard if it has not started, `1 0 0` or
    /// `CCL` on the direct connection if it has.
    pub async fn cancel(&self) {
        self.cancel.cancel();
        let _ = self
            .requests
            .send(Request::Cancel {
                cookie: self.cookie.clone(),
                code: "OUTBANDCANCEL",
            })
            .await;
    }

    /// Waits for the end: the number of bytes moved, or why it failed.
    pub async fn finished(self) -> Result<u64, ClientError> {
        self.result.await.unwrap_or(Err(ClientError::SessionEnded))
    }

    /// Waits for the end like [`Transfer::finished`], but cancels the transfer first if `stop`
    /// completes before it ends (for a caller that must both wait and be able to cancel).
    pub async fn finished_or_cancelled(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<u64, ClientError> {
        tokio::select! {
            r = &mut self.result => r.unwrap_or(Err(ClientError::SessionEnded)),
            () = stop => {
                self.cancel().await;
                (&mut self.result).await.unwrap_or(Err(ClientError::SessionEnded))
            }
        }
    }

    pub fn cookie(&self) -> &str {
        &self.cookie
    }
}

/// One switchboard chat. Dropping every handle leaves the chat.
#[derive(Clone)]
pub struct Chat {
    id: ChatId,
    requests: mpsc::Sender<Request>,
    participants: Arc<Mutex<BTreeMap<String, String>>>,
    timeout: Duration,
}

impl Chat {
    pub fn id(&self) -> ChatId {
        self.id
    }

    /// The other people in the chat: e-mail → display name.
    pub fn participants(&self) -> BTreeMap<String, String> {
        self.participants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

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
                reply: Some(tx),
            })
            .await
            .map_err(|_| ClientError::SessionEnded)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(Err(_)) => Err(ClientError::SessionEnded),
            Ok(Ok(r)) => r,
        }
    }

    /// Invites one more person (`CAL`); they appear with [`ChatEvent::Joined`].
    pub async fn invite(&self, email: &str) -> Result<(), ClientError> {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(ClientError::InvalidArgument(format!(
                "not an account name: {email:?}"
            )));
        }
        self.call("CAL", vec![email.to_owned()], None).await?;
        Ok(())
    }

    /// Sends plain text; resolves when the switchboard acknowledges it.
    pub async fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.send_message(text, None).await
    }

    /// Sends text with a font, colour and effects (`X-MMS-IM-Format`).
    pub async fn send_message(
        &self,
        text: &str,
        format: Option<ImFormat>,
    ) -> Result<(), ClientError> {
        let payload = TextMessage {
            format,
            text: text.to_owned(),
        }
        .to_payload();
        let f = self.call("MSG", vec!["A".into()], Some(payload)).await?;
        if f.command() == "NAK" {
            return Err(ClientError::Transfer(
                "the switchboard could not deliver the message".into(),
            ));
        }
        Ok(())
    }

    /// Tells the others we are typing (send it again every few seconds while typing).
    pub async fn send_typing(&self, me: &str) -> Result<(), ClientError> {
        let payload = TypingNotification {
            user: me.to_owned(),
        }
        .to_payload();
        self.requests
            .send(Request::Call {
                command: "MSG",
                args: vec!["U".into()],
                payload: Some(payload),
                reply: None,
            })
            .await
            .map_err(|_| ClientError::SessionEnded)
    }

    /// Offers a file to the chat. The transfer starts when someone accepts it.
    pub async fn send_file(
        &self,
        path: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<Transfer, ClientError> {
        let size = tokio::fs::metadata(path).await?.len();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| ClientError::InvalidArgument(format!("no file name in {path:?}")))?;
        let cookie = rand::random::<u32>().max(1).to_string();
        let cancel = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Offer {
                cookie: cookie.clone(),
                path: path.to_owned(),
                size,
                file_name,
                progress,
                cancel: cancel.clone(),
                result: tx,
            })
            .await
            .map_err(|_| ClientError::SessionEnded)?;
        Ok(Transfer {
            cookie,
            cancel,
            requests: self.requests.clone(),
            result: rx,
        })
    }

    /// Accepts an offer; the file is written to `dest` (removed again if the transfer fails).
    pub async fn accept_file(
        &self,
        offer: &FileOffer,
        dest: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<Transfer, ClientError> {
        let cancel = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Accept {
                offer: offer.clone(),
                dest: dest.to_owned(),
                progress,
                cancel: cancel.clone(),
                result: tx,
            })
            .await
            .map_err(|_| ClientError::SessionEnded)?;
        Ok(Transfer {
            cookie: offer.cookie.clone(),
            cancel,
            requests: self.requests.clone(),
            result: rx,
        })
    }

    pub async fn decline_file(&self, offer: &FileOffer) -> Result<(), ClientError> {
        self.requests
            .send(Request::Cancel {
                cookie: offer.cookie.clone(),
                code: "REJECT",
            })
            .await
            .map_err(|_| ClientError::SessionEnded)
    }

    /// Leaves the chat (`OUT`). Other handles to it stop working.
    pub async fn leave(&self) {
        let _ = self
            .requests
            .send(Request::Call {
                command: "OUT",
                args: vec![],
                payload: None,
                reply: None,
            })
            .await;
    }
}

fn decode(s: &str) -> String {
    urlenc::decode(s).map_or_else(|_| s.to_owned(), |c| c.into_owned())
}

/// Connects to the switchboard and joins; returns once we are in.
pub(crate) async fn open(ctx: SbContext, join: Join) -> Result<Chat, ClientError> {
    let t = ctx.timeout;
    let id = ChatId(ctx.next_chat.fetch_add(1, Ordering::Relaxed));
    let addr = match &join {
        Join::Caller { addr, .. } => addr.clone(),
        Join::Callee(r) => r.address.clone(),
    };
    let mut wire = Wire::connect(&addr, t).await?;
    wire.set_dialect(ctx.dialect);
    let mut joined = Vec::new();
    match &join {
        Join::Caller { cookie, .. } => {
            wire.send_line("USR", Some(1), &[&ctx.email, cookie])
                .await?;
            let f = reply(&mut wire, 1, t).await?;
            if f.command() != "USR" || f.params().first() != Some(&"OK") {
                return Err(ClientError::protocol("USR OK", f.line()));
            }
        }
        Join::Callee(r) => {
            wire.send_line("ANS", Some(1), &[&ctx.email, &r.cookie, &r.session_id])
                .await?;
            loop {
                let f = reply(&mut wire, 1, t).await?;
                match (f.command(), f.params().as_slice()) {
                    ("IRO", [_, _, email, name, ..]) => {
                        joined.push(((*email).to_owned(), decode(name)));
                    }
                    ("ANS", ["OK", ..]) => break,
                    _ => return Err(ClientError::protocol("IRO or ANS OK", f.line())),
                }
            }
        }
    }
    let participants = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let task = SbTask {
        id,
        wire,
        ctx,
        participants: participants.clone(),
        requests: rx,
        pending: HashMap::new(),
        next_trid: 2,
        invitations: HashMap::new(),
    };
    for (email, name) in joined {
        task.joined(email, name).await;
    }
    tokio::spawn(task.run());
    Ok(Chat {
        id,
        requests: tx,
        participants,
        timeout: t,
    })
}

struct PendingCall {
    command: &'static str,
    reply: Reply,
}

/// An invitation waiting for the other side.
enum Invitation {
    /// We offered a file; waiting for `ACCEPT`.
    Offered {
        path: PathBuf,
        size: u64,
        progress: Option<ProgressFn>,
        cancel: CancellationToken,
        result: oneshot::Sender<Result<u64, ClientError>>,
    },
    /// We accepted; waiting for the sender's address.
    Accepted {
        dest: PathBuf,
        size: u64,
        progress: Option<ProgressFn>,
        cancel: CancellationToken,
        result: oneshot::Sender<Result<u64, ClientError>>,
    },
}

struct SbTask {
    id: ChatId,
    wire: Wire,
    ctx: SbContext,
    participants: Arc<Mutex<BTreeMap<String, String>>>,
    requests: mpsc::Receiver<Request>,
    pending: HashMap<u32, PendingCall>,
    next_trid: u32,
    invitations: HashMap<String, Invitation>,
}

impl SbTask {
    async fn emit(&self, event: ChatEvent) {
        let _ = self
            .ctx
            .events
            .send(Event::Chat {
                chat: self.id,
                event,
            })
            .await;
    }

    async fn joined(&self, email: String, name: String) {
        self.participants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(email.clone(), name.clone());
        self.emit(ChatEvent::Joined { email, name }).await;
    }

    async fn run(mut self) {
        let reason = loop {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => {
                    let _ = self.wire.send_line("OUT", None, &[]).await;
                    break "signed out".to_owned();
                }
                r = self.requests.recv() => match r {
                    None => {
                        let _ = self.wire.send_line("OUT", None, &[]).await;
                        break "left".to_owned();
                    }
                    Some(req) => match self.on_request(req).await {
                        Ok(true) => {}
                        Ok(false) => break "left".to_owned(),
                        Err(e) => break e.to_string(),
                    },
                },
                f = self.wire.read_frame() => match f {
                    Ok(f) => if let Err(e) = self.on_frame(f).await {
                        break e.to_string();
                    },
                    Err(e) => break e.to_string(),
                },
            }
        };
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(ClientError::SessionEnded));
        }
        for (_, inv) in self.invitations.drain() {
            let (Invitation::Offered { result, .. } | Invitation::Accepted { result, .. }) = inv;
            let _ = result.send(Err(ClientError::SessionEnded));
        }
        self.emit(ChatEvent::Closed { reason }).await;
    }

    async fn send_msg(&mut self, mode: &str, payload: &[u8]) -> Result<(), ClientError> {
        let t = self.next_trid;
        self.next_trid += 1;
        self.wire
            .send_payload("MSG", Some(t), &[mode], payload)
            .await
    }

    /// Returns `Ok(false)` when the chat is over.
    async fn on_request(&mut self, req: Request) -> Result<bool, ClientError> {
        match req {
            Request::Call { command: "OUT", .. } => {
                let _ = self.wire.send_line("OUT", None, &[]).await;
                return Ok(false);
            }
            Request::Call {
                command,
                args,
                payload,
                reply,
            } => {
                let t = self.next_trid;
                self.next_trid += 1;
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                match &payload {
                    Some(p) => self.wire.send_payload(command, Some(t), &args, p).await?,
                    None => self.wire.send_line(command, Some(t), &args).await?,
                }
                if let Some(reply) = reply {
                    self.pending.retain(|_, p| !p.reply.is_closed());
                    self.pending.insert(t, PendingCall { command, reply });
                }
            }
            Request::Offer {
                cookie,
                path,
                size,
                file_name,
                progress,
                cancel,
                result,
            } => {
                if self.invitations.len() >= MAX_OPEN_INVITATIONS {
                    let _ = result.send(Err(ClientError::Transfer(
                        "too many open invitations".into(),
                    )));
                    return Ok(true);
                }
                self.send_msg("N", &ftp::invite(&cookie, &file_name, size))
                    .await?;
                self.invitations.insert(
                    cookie,
                    Invitation::Offered {
                        path,
                        size,
                        progress,
                        cancel,
                        result,
                    },
                );
            }
            Request::Accept {
                offer,
                dest,
                progress,
                cancel,
                result,
            } => {
                if self.invitations.len() >= MAX_OPEN_INVITATIONS {
                    let _ = result.send(Err(ClientError::Transfer(
                        "too many open invitations".into(),
                    )));
                    return Ok(true);
                }
                self.send_msg("N", &ftp::accept(&offer.cookie)).await?;
                self.invitations.insert(
                    offer.cookie.clone(),
                    Invitation::Accepted {
                        dest,
                        size: offer.size,
                        progress,
                        cancel,
                        result,
                    },
                );
            }
            Request::Cancel { cookie, code } => {
                if let Some(inv) = self.invitations.remove(&cookie) {
                    let (Invitation::Offered { result, .. } | Invitation::Accepted { result, .. }) =
                        inv;
                    let _ = result.send(Err(ClientError::Cancelled));
                    self.send_msg("N", &ftp::cancel(&cookie, code)).await?;
                } else if code == "REJECT" {
                    self.send_msg("N", &ftp::cancel(&cookie, code)).await?;
                }
            }
        }
        Ok(true)
    }

    async fn on_frame(&mut self, f: Frame) -> Result<(), ClientError> {
        if let Some(t) = f.trid().map(|t| t.0) {
            let answers = |p: &PendingCall| match p.command {
                "MSG" => matches!(f.command(), "ACK" | "NAK"),
                c => c == f.command(),
            };
            if self
                .pending
                .get(&t)
                .is_some_and(|p| answers(p) || f.error_code().is_some())
            {
                if let Some(p) = self.pending.remove(&t) {
                    let r = server_error(&f).map_or(Ok(f), Err);
                    let _ = p.reply.send(r);
                }
                return Ok(());
            }
        }
        match (f.command(), f.args().collect::<Vec<_>>().as_slice()) {
            ("JOI", [email, name, ..]) => {
                self.joined((*email).to_owned(), decode(name)).await;
            }
            ("BYE", [email, rest @ ..]) => {
                self.participants
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(*email);
                self.emit(ChatEvent::Left {
                    email: (*email).to_owned(),
                    idle: rest.first() == Some(&"1"),
                })
                .await;
            }
            ("MSG", [from, name, ..]) => {
                let (from, name) = ((*from).to_owned(), decode(name));
                if let Some(p) = f.payload() {
                    self.on_message(from, name, p).await?;
                }
            }
            _ => tracing::debug!(line = f.line(), "ignoring a switchboard line"),
        }
        Ok(())
    }

    async fn on_message(
        &mut self,
        from: String,
        name: String,
        p: &[u8],
    ) -> Result<(), ClientError> {
        let Ok(m) = MimeMessage::parse(p) else {
            tracing::debug!(%from, "ignoring a malformed message");
            return Ok(());
        };
        if m.is_content_type(TextMessage::CONTENT_TYPE) {
            if let Ok(t) = TextMessage::from_message(&m) {
                self.emit(ChatEvent::Message {
                    from,
                    name,
                    text: t.text,
                    format: t.format,
                })
                .await;
            }
        } else if m.is_content_type(TypingNotification::CONTENT_TYPE) {
            if m.header("TypingUser").is_some() {
                self.emit(ChatEvent::Typing { from }).await;
            }
        } else if m.is_content_type(ftp::CONTENT_TYPE) {
            let fields: HashMap<String, String> = m
                .body_fields()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect();
            self.on_invitation(from, &fields).await?;
        }
        Ok(())
    }

    async fn on_invitation(
        &mut self,
        from: String,
        fields: &HashMap<String, String>,
    ) -> Result<(), ClientError> {
        let get = |k: &str| fields.get(k).map(String::as_str);
        let Some(cookie) = get("invitation-cookie").map(str::to_owned) else {
            return Ok(());
        };
        match get("invitation-command") {
            Some("INVITE") => {
                let is_file = get("application-guid")
                    .is_some_and(|g| g.eq_ignore_ascii_case(ftp::FILE_TRANSFER_GUID));
                let size = get("application-filesize").and_then(|s| s.parse().ok());
                if let (true, Some(size), Some(name)) = (is_file, size, get("application-file")) {
                    // Only the last path component, whatever the sender claims.
                    let file_name = name.rsplit(['/', '\\']).next().unwrap_or("file").to_owned();
                    self.emit(ChatEvent::FileOffered(FileOffer {
                        chat: self.id,
                        from,
                        cookie,
                        file_name,
                        size,
                    }))
                    .await;
                }
            }
            Some("ACCEPT") => match self.invitations.remove(&cookie) {
                Some(Invitation::Offered {
                    path,
                    size,
                    progress,
                    cancel,
                    result,
                }) => {
                    let ip = self
                        .wire
                        .local_addr()
                        .map(|a| a.ip())
                        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
                    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
                    let addr = listener.local_addr()?;
                    let auth: u32 = rand::random::<u32>().max(1);
                    self.send_msg("N", &ftp::accept_with_address(&cookie, addr, auth))
                        .await?;
                    let t = self.ctx.timeout;
                    tokio::spawn(async move {
                        let r =
                            ftp::serve(listener, from, auth, path, size, progress, cancel, t).await;
                        let _ = result.send(r);
                    });
                }
                Some(Invitation::Accepted {
                    dest,
                    size,
                    progress,
                    cancel,
                    result,
                }) => {
                    let addr = get("ip-address")
                        .zip(get("port"))
                        .and_then(|(ip, port)| format!("{ip}:{port}").parse::<SocketAddr>().ok());
                    let (Some(addr), Some(auth)) = (addr, get("authcookie")) else {
                        let _ = result.send(Err(ClientError::Transfer(
                            "the sender's ACCEPT has no usable address".into(),
                        )));
                        return Ok(());
                    };
                    let (me, auth, t) = (self.ctx.email.clone(), auth.to_owned(), self.ctx.timeout);
                    tokio::spawn(async move {
                        let r = ftp::receive(addr, me, auth, dest, size, progress, cancel, t).await;
                        let _ = result.send(r);
                    });
                }
                None => {}
            },
            Some("CANCEL") => {
                let code = get("cancel-code").unwrap_or("").to_owned();
                if let Some(inv) = self.invitations.remove(&cookie) {
                    let (Invitation::Offered { result, .. } | Invitation::Accepted { result, .. }) =
                        inv;
                    let _ = result.send(Err(ClientError::Cancelled));
                }
                self.emit(ChatEvent::FileCancelled { cookie, code }).await;
            }
            _ => {}
        }
        Ok(())
    }
}

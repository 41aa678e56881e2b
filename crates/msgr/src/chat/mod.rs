//! `msgr chat`: a terminal messenger on `msgr-client`, drawn with ratatui.
//!
//! Three parts: [`app`] is the state and what keys and events do to it (pure, unit-tested),
//! [`ui`] draws it, and this module runs it: it owns the terminal, the [`Client`], the open
//! [`Chat`] handles and the transfers, and turns the app's [`Action`]s into library calls on
//! tasks whose results come back as [`Outcome`]s.
//!
//! Shutdown: `q` or Ctrl+C ends the loop; transfers are cancelled, chats left, the session
//! signed out, the tasks awaited for a grace period, the key reader stopped, and the terminal
//! restored (a panic hook restores it too).

mod app;
mod inbox;
mod ui;

use crate::client_cmd::ConnectArgs;
use anyhow::{Context, Result};
use app::{Action, App, Outcome};
use crossterm::event::{self as term_event, Event as TermEvent, KeyEvent, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use msgr_client::{Chat, ChatEvent, ChatId, Client, Event, FileOffer, List, Progress, Status};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::collections::HashMap;
use std::io::Stdout;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Keys read but not yet handled.
const KEY_QUEUE: usize = 64;
/// Results of actions not yet handled; progress updates beyond it are dropped (the next one
/// says the same, newer).
const OUTCOME_QUEUE: usize = 256;
/// Actions for a chat whose handle has not come back yet (its events can overtake it).
const MAX_PARKED: usize = 64;
/// How long tasks get to finish after quitting.
const GRACE: Duration = Duration::from_secs(3);
/// Redraws without input, so "is typing" fades.
const TICK: Duration = Duration::from_millis(500);

/// What the key-reader thread sends.
enum Input {
    Key(KeyEvent),
    /// The window changed size (or anything else that needs a redraw).
    Redraw,
}

/// What a task sends back to the loop.
enum Done {
    Outcome(Outcome),
    /// A chat handle to keep, with what to tell the app.
    Chat(Chat, Option<Outcome>),
    /// A transfer began; `stop` cancels it.
    Transfer(Outcome, String, CancellationToken),
}

/// Puts the terminal back as it was. Safe to call more than once.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped, however the run ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn enter_terminal() -> Result<(TerminalGuard, Terminal<CrosstermBackend<Stdout>>)> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    enable_raw_mode().context("switching the terminal to raw mode")?;
    let guard = TerminalGuard;
    execute!(std::io::stdout(), EnterAlternateScreen).context("entering the alternate screen")?;
    let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    Ok((guard, terminal))
}

/// Reads keys on a thread of its own (crossterm's reads block) until `stop` is set.
fn spawn_key_reader(tx: mpsc::Sender<Input>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let input = match term_event::poll(Duration::from_millis(100)) {
                Ok(false) => continue,
                Err(_) => break,
                Ok(true) => match term_event::read() {
                    Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Input::Key(k),
                    Ok(TermEvent::Resize(..)) => Input::Redraw,
                    Ok(_) => continue,
                    Err(_) => break,
                },
            };
            if tx.blocking_send(input).is_err() {
                break;
            }
        }
    })
}

/// `msgr chat`: sign in, run the messenger until the user quits, sign out.
pub async fn run(args: &ConnectArgs, downloads: PathBuf) -> Result<()> {
    let mut config = args.config()?;
    config.initial_status = Status::Online;
    // Signing in happens before the screen changes, so a failure prints as usual.
    let (client, events) = Client::connect(config)
        .await
        .with_context(|| format!("signing in as {}", args.email))?;
    let (guard, mut terminal) = enter_terminal()?;
    let (key_tx, keys) = mpsc::channel(KEY_QUEUE);
    let stop_keys = Arc::new(AtomicBool::new(false));
    let reader = spawn_key_reader(key_tx, stop_keys.clone());
    let mut runner = Runner::new(client.clone(), downloads);
    let result = runner.run(&mut terminal, keys, events).await;
    runner.shut_down().await;
    stop_keys.store(true, Ordering::Relaxed);
    let _ = reader.join();
    drop(guard);
    result
}

struct Runner {
    client: Client,
    app: App,
    downloads: PathBuf,
    chats: HashMap<ChatId, Chat>,
    /// Actions waiting for their chat's handle.
    parked: HashMap<ChatId, Vec<Action>>,
    transfers: HashMap<String, CancellationToken>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    tasks: TaskTracker,
    /// Cancelled on quit: ends transfers and anything else still running.
    stop: CancellationToken,
}

impl Runner {
    fn new(client: Client, downloads: PathBuf) -> Runner {
        let app = App::new(
            client.email(),
            &client.display_name(),
            client.status(),
            client.lists(),
        );
        let (done_tx, done_rx) = mpsc::channel(OUTCOME_QUEUE);
        Runner {
            client,
            app,
            downloads,
            chats: HashMap::new(),
            parked: HashMap::new(),
            transfers: HashMap::new(),
            done_tx,
            done_rx,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    async fn run(
        &mut self,
        terminal: &mut Terminal<CrosstermBackend<Stdout>>,
        mut keys: mpsc::Receiver<Input>,
        mut events: mpsc::Receiver<Event>,
    ) -> Result<()> {
        let mut tick = tokio::time::interval(TICK);
        let mut events_open = true;
        while !self.app.quit {
            terminal.draw(|f| ui::draw(f, &self.app, Instant::now()))?;
            let actions = tokio::select! {
                input = keys.recv() => match input {
                    Some(Input::Key(k)) => self.app.on_key(k, Instant::now()),
                    Some(Input::Redraw) => vec![],
                    // The key reader is gone (the terminal closed): quit.
                    None => vec![Action::Quit],
                },
                event = events.recv(), if events_open => match event {
                    Some(e) => self.on_event(e),
                    None => {
                        events_open = false;
                        self.app.connected = false;
                        self.app.notice = Some("the session ended; press q to quit".into());
                        vec![]
                    }
                },
                Some(done) = self.done_rx.recv() => self.on_done(done),
                _ = tick.tick() => vec![],
            };
            for a in actions {
                self.execute(a);
            }
        }
        Ok(())
    }

    fn on_event(&mut self, e: Event) -> Vec<Action> {
        match &e {
            Event::ListChanged(_) | Event::Reconnected => self.app.set_lists(self.client.lists()),
            Event::Chat {
                chat,
                event: ChatEvent::Closed { .. },
            } => {
                self.chats.remove(chat);
                self.parked.remove(chat);
            }
            _ => {}
        }
        self.app.on_event(e, Instant::now())
    }

    fn on_done(&mut self, done: Done) -> Vec<Action> {
        match done {
            Done::Outcome(o) => self.app.on_outcome(o),
            Done::Chat(chat, outcome) => {
                let id = chat.id();
                self.chats.insert(id, chat);
                let mut actions = outcome.map(|o| self.app.on_outcome(o)).unwrap_or_default();
                actions.extend(self.parked.remove(&id).unwrap_or_default());
                actions
            }
            Done::Transfer(outcome, cookie, stop) => {
                self.transfers.insert(cookie, stop);
                self.app.on_outcome(outcome)
            }
        }
    }

    /// Runs `work` on a task and reports its outcome (if any) to the loop.
    fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = Option<Done>> + Send + 'static,
    {
        let tx = self.done_tx.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                done = work => if let Some(d) = done { let _ = tx.send(d).await; },
                () = stop.cancelled() => {}
            }
        });
    }

    fn notice(text: String) -> Option<Done> {
        Some(Done::Outcome(Outcome::Notice(text)))
    }

    /// The chat an action needs, or `None` after parking the action until it arrives.
    fn chat_for(&mut self, chat: ChatId, action: &Action) -> Option<Chat> {
        if let Some(c) = self.chats.get(&chat) {
            return Some(c.clone());
        }
        let parked: usize = self.parked.values().map(Vec::len).sum();
        if parked < MAX_PARKED {
            self.parked.entry(chat).or_default().push(action.clone());
        } else {
            self.app.notice = Some("too much waiting for chats to open; dropped".into());
        }
        None
    }

    fn execute(&mut self, action: Action) {
        let client = self.client.clone();
        match action {
            Action::Quit => self.app.quit = true,
            Action::OpenInbox => self.spawn(async move {
                Some(Done::Outcome(Outcome::Notice(inbox::open(&client).await)))
            }),
            Action::SetStatus(s) => self.spawn(async move {
                Some(Done::Outcome(match client.set_status(s).await {
                    Ok(()) => Outcome::StatusSet(s),
                    Err(e) => Outcome::Notice(format!("status not changed: {e}")),
                }))
            }),
            Action::SetName(n) => self.spawn(async move {
                Some(Done::Outcome(match client.set_nickname(&n).await {
                    Ok(()) => Outcome::NameSet(n),
                    Err(e) => Outcome::Notice(format!("name not changed: {e}")),
                }))
            }),
            Action::SetPersonalMessage(m) => self.spawn(async move {
                Some(Done::Outcome(match client.set_personal_message(&m).await {
                    Ok(()) => Outcome::PersonalMessageSet(m),
                    Err(e) => Outcome::Notice(format!("personal message not set: {e}")),
                }))
            }),
            Action::StartChat { email } => self.spawn(async move {
                Some(match client.start_chat(&email).await {
                    Ok(chat) => {
                        let id = chat.id();
                        Done::Chat(
                            chat,
                            Some(Outcome::ChatOpened {
                                peer: email,
                                chat: id,
                            }),
                        )
                    }
                    Err(e) => Done::Outcome(Outcome::ChatFailed {
                        peer: email,
                        error: e.to_string(),
                    }),
                })
            }),
            Action::Answer(ring) => self.spawn(async move {
                match client.answer(&ring).await {
                    Ok(chat) => Some(Done::Chat(chat, None)),
                    Err(e) => Self::notice(format!("could not join {}'s chat: {e}", ring.from)),
                }
            }),
            ref a @ Action::SendText { chat, ref text } => {
                let text = text.clone();
                if let Some(c) = self.chat_for(chat, a) {
                    self.spawn(async move {
                        match c.send_text(&text).await {
                            Ok(()) => None,
                            Err(e) => Self::notice(format!("not delivered: {text} ({e})")),
                        }
                    })
                }
            }
            ref a @ Action::SendTyping { chat } => {
                if let Some(c) = self.chat_for(chat, a) {
                    let me = self.app.me.clone();
                    self.spawn(async move {
                        let _ = c.send_typing(&me).await;
                        None
                    })
                }
            }
            Action::LeaveChat { chat } => {
                self.parked.remove(&chat);
                if let Some(c) = self.chats.remove(&chat) {
                    self.spawn(async move {
                        c.leave().await;
                        None
                    })
                }
            }
            ref a @ Action::SendFile { chat, ref path } => {
                let path = path.clone();
                if let Some(c) = self.chat_for(chat, a) {
                    self.send_file(c, path);
                }
            }
            ref a @ Action::AcceptFile(ref offer) => {
                let offer = offer.clone();
                if let Some(c) = self.chat_for(offer.chat, a) {
                    self.accept_file(c, offer);
                }
            }
            ref a @ Action::DeclineFile(ref offer) => {
                let offer = offer.clone();
                if let Some(c) = self.chat_for(offer.chat, a) {
                    self.spawn(async move {
                        let _ = c.decline_file(&offer).await;
                        None
                    })
                }
            }
            Action::CancelTransfer { cookie } => match self.transfers.remove(&cookie) {
                Some(stop) => stop.cancel(),
                None => self.app.notice = Some("that transfer has ended".into()),
            },
            Action::AddContact { email } => self.spawn(async move {
                // On the allow list too, so they may see us and talk to us.
                let r = match client.add_contact(List::Forward, &email).await {
                    Ok(()) => client.allow(&email).await,
                    Err(e) => Err(e),
                };
                Self::notice(match r {
                    Ok(()) => format!("added {email}"),
                    Err(e) => format!("could not add {email}: {e}"),
                })
            }),
            Action::RemoveContact { email } => self.spawn(async move {
                Self::notice(match client.remove_contact(List::Forward, &email).await {
                    Ok(()) => format!("removed {email}"),
                    Err(e) => format!("could not remove {email}: {e}"),
                })
            }),
            Action::Block { email } => self.spawn(async move {
                Self::notice(match client.block(&email).await {
                    Ok(()) => format!("blocked {email}"),
                    Err(e) => format!("could not block {email}: {e}"),
                })
            }),
            Action::Allow { email } => self.spawn(async move {
                Self::notice(match client.allow(&email).await {
                    Ok(()) => format!("unblocked {email}"),
                    Err(e) => format!("could not unblock {email}: {e}"),
                })
            }),
            Action::AddGroup { name } => self.spawn(async move {
                Self::notice(match client.add_group(&name).await {
                    Ok(_) => format!("added the group {name}"),
                    Err(e) => format!("could not add the group {name}: {e}"),
                })
            }),
            Action::RenameGroup { id, name } => self.spawn(async move {
                Self::notice(match client.rename_group(&id, &name).await {
                    Ok(()) => format!("renamed the group to {name}"),
                    Err(e) => format!("could not rename the group: {e}"),
                })
            }),
            Action::RemoveGroup { id } => self.spawn(async move {
                Self::notice(match client.remove_group(&id).await {
                    Ok(()) => "removed the group".to_owned(),
                    Err(e) => format!("could not remove the group: {e}"),
                })
            }),
            Action::MoveContact { email, from, to } => self.spawn(async move {
                let r = async {
                    if let Some(to) = &to {
                        if !from.contains(to) {
                            client.add_to_group(&email, to).await?;
                        }
                    }
                    for g in from.iter().filter(|g| Some(*g) != to.as_ref()) {
                        client.remove_from_group(&email, g).await?;
                    }
                    Ok::<_, msgr_client::ClientError>(())
                }
                .await;
                Self::notice(match r {
                    Ok(()) => format!("moved {email}"),
                    Err(e) => format!("could not move {email}: {e}"),
                })
            }),
        }
    }

    /// A progress callback that reports whole-percent steps only, so a big file does not
    /// flood the loop.
    fn progress(&self, cookie: Arc<std::sync::OnceLock<String>>) -> msgr_client::ProgressFn {
        let tx = self.done_tx.clone();
        let last = AtomicU64::new(u64::MAX);
        Arc::new(move |p: Progress| {
            let percent = p.transferred.saturating_mul(100) / p.total.max(1);
            if last.swap(percent, Ordering::Relaxed) == percent {
                return;
            }
            if let Some(cookie) = cookie.get() {
                // Lossy on purpose: a later update or the end replaces a dropped one.
                let _ = tx.try_send(Done::Outcome(Outcome::Progress {
                    cookie: cookie.clone(),
                    transferred: p.transferred,
                    total: p.total,
                }));
            }
        })
    }

    fn send_file(&self, chat: Chat, path: PathBuf) {
        let cookie = Arc::new(std::sync::OnceLock::new());
        let progress = self.progress(cookie.clone());
        let tx = self.done_tx.clone();
        let stop = self.stop.child_token();
        self.spawn(async move {
            let t = match chat.send_file(&path, Some(progress)).await {
                Ok(t) => t,
                Err(e) => return Self::notice(format!("cannot send {}: {e}", path.display())),
            };
            let _ = cookie.set(t.cookie().to_owned());
            let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
            let started = Outcome::TransferStarted {
                chat: chat.id(),
                cookie: t.cookie().to_owned(),
                file_name: path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                size,
                sending: true,
            };
            let c = t.cookie().to_owned();
            let _ = tx
                .send(Done::Transfer(started, c.clone(), stop.clone()))
                .await;
            let result = t.finished_or_cancelled(stop.cancelled_owned()).await;
            Some(Done::Outcome(Outcome::TransferEnded {
                cookie: c,
                result: result.map_err(|e| e.to_string()),
            }))
        });
    }

    fn accept_file(&self, chat: Chat, offer: FileOffer) {
        let dest = unused_path(&self.downloads, &safe_file_name(&offer.file_name));
        let cookie = Arc::new(std::sync::OnceLock::new());
        let _ = cookie.set(offer.cookie.clone());
        let progress = self.progress(cookie);
        let tx = self.done_tx.clone();
        let stop = self.stop.child_token();
        self.spawn(async move {
            let t = match chat.accept_file(&offer, &dest, Some(progress)).await {
                Ok(t) => t,
                Err(e) => return Self::notice(format!("cannot receive {}: {e}", offer.file_name)),
            };
            let started = Outcome::TransferStarted {
                chat: chat.id(),
                cookie: offer.cookie.clone(),
                file_name: offer.file_name.clone(),
                size: offer.size,
                sending: false,
            };
            let _ = tx
                .send(Done::Transfer(started, offer.cookie.clone(), stop.clone()))
                .await;
            let result = t.finished_or_cancelled(stop.cancelled_owned()).await;
            if result.is_ok() {
                let _ = tx
                    .send(Done::Outcome(Outcome::Notice(format!(
                        "saved {}",
                        dest.display()
                    ))))
                    .await;
            }
            Some(Done::Outcome(Outcome::TransferEnded {
                cookie: offer.cookie,
                result: result.map_err(|e| e.to_string()),
            }))
        });
    }

    /// Leaves the chats, signs out and waits (bounded) for the tasks.
    async fn shut_down(&mut self) {
        for stop in self.transfers.values() {
            stop.cancel();
        }
        for (_, chat) in self.chats.drain() {
            chat.leave().await;
        }
        self.client.sign_out().await;
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(GRACE, self.tasks.wait()).await;
    }
}

/// The last path component of a name a peer sent, with nothing that could leave the folder.
fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "download".to_owned()
    } else {
        clean.to_owned()
    }
}

/// `dir/name`, or `dir/stem (n).ext` when that exists already.
fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..1000)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_peers_stay_in_the_folder() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\x\\a.txt"), "a.txt");
        assert_eq!(safe_file_name(".."), "download");
        assert_eq!(safe_file_name(""), "download");
        assert_eq!(safe_file_name("a\u{7}b.txt"), "ab.txt");
    }

    #[test]
    fn existing_files_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unused_path(dir.path(), "a.txt"), dir.path().join("a.txt"));
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        assert_eq!(
            unused_path(dir.path(), "a.txt"),
            dir.path().join("a (1).txt")
        );
    }
}

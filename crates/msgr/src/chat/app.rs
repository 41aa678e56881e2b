//! The state of `msgr chat` and what keys, client events and finished actions do to it.
//!
//! Nothing here does IO or touches the terminal: keys and [`Event`]s go in, [`Action`]s for the
//! runner come out, and the runner's answers come back as [`Outcome`]s. Time is passed in
//! (`now`), so every transition is a plain unit test.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use msgr_client::{
    ChatEvent, ChatId, DisconnectReason, Event, FileOffer, List, ListCache, ListChange, MailEvent,
    Ring, Status,
};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Lines kept per conversation; older ones are dropped.
pub const MAX_LINES: usize = 500;
/// Characters an input line may hold (a switchboard message is at most ~1,600 bytes anyway).
pub const MAX_INPUT: usize = 1200;
/// How long "… is typing" stays up after the last `TypingUser`.
pub const TYPING_SHOWN: Duration = Duration::from_secs(6);
/// How often we repeat our own typing notification while typing.
pub const TYPING_RESEND: Duration = Duration::from_secs(4);
/// File offers waiting for an answer; more are declined at once.
pub const MAX_PENDING_OFFERS: usize = 8;
/// Transfers shown per conversation; finished ones beyond this are forgotten.
pub const MAX_TRANSFERS: usize = 4;

/// What the runner is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SetStatus(Status),
    SetName(String),
    SetPersonalMessage(String),
    /// `XFR SB` + `CAL email`.
    StartChat {
        email: String,
    },
    /// Join the chat an `RNG` invites us to.
    Answer(Ring),
    SendText {
        chat: ChatId,
        text: String,
    },
    SendTyping {
        chat: ChatId,
    },
    /// `OUT` on the switchboard.
    LeaveChat {
        chat: ChatId,
    },
    SendFile {
        chat: ChatId,
        path: PathBuf,
    },
    AcceptFile(FileOffer),
    DeclineFile(FileOffer),
    CancelTransfer {
        cookie: String,
    },
    /// Forward list (and allow list, so they may see us).
    AddContact {
        email: String,
    },
    RemoveContact {
        email: String,
    },
    Block {
        email: String,
    },
    Allow {
        email: String,
    },
    AddGroup {
        name: String,
    },
    RenameGroup {
        id: String,
        name: String,
    },
    RemoveGroup {
        id: String,
    },
    /// File `email` under `to` only (`None`: no group), leaving the groups in `from`.
    MoveContact {
        email: String,
        from: Vec<String>,
        to: Option<String>,
    },
    /// `URL t INBOX`, then the web inbox in the browser, signed in.
    OpenInbox,
    Quit,
}

/// What the runner reports about an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The switchboard is open and `peer` invited; they show up with `Joined`.
    ChatOpened {
        peer: String,
        chat: ChatId,
    },
    ChatFailed {
        peer: String,
        error: String,
    },
    /// An offer went out (`sending`) or we accepted one.
    TransferStarted {
        chat: ChatId,
        cookie: String,
        file_name: String,
        size: u64,
        sending: bool,
    },
    Progress {
        cookie: String,
        transferred: u64,
        total: u64,
    },
    TransferEnded {
        cookie: String,
        result: Result<u64, String>,
    },
    StatusSet(Status),
    NameSet(String),
    PersonalMessageSet(String),
    /// A one-line note for the status line (a confirmation or an error).
    Notice(String),
}

/// Where the keyboard goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    Contacts,
    /// The conversation with this peer (lower-case e-mail).
    Chat(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaker {
    Me,
    /// Someone else, by display name.
    Them(String),
    /// Joins, leaves, transfers, failures.
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub speaker: Speaker,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    /// No switchboard (never opened, or everyone left); sending opens one.
    Idle,
    /// Asked for a switchboard, waiting for the peer to join.
    Opening,
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    /// Offered, not yet accepted.
    Waiting,
    Moving,
    Done,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferView {
    pub cookie: String,
    pub file_name: String,
    pub size: u64,
    pub transferred: u64,
    pub sending: bool,
    pub state: TransferState,
}

impl TransferView {
    pub fn finished(&self) -> bool {
        matches!(self.state, TransferState::Done | TransferState::Failed(_))
    }
}

/// One conversation pane: everything said with one peer, across switchboards.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Lower-case e-mail of the person the pane is about.
    pub peer: String,
    /// The switchboard we send on.
    pub chat: Option<ChatId>,
    pub state: ChatState,
    /// Who is in the chat now, besides us.
    pub present: Vec<String>,
    pub lines: VecDeque<ChatLine>,
    /// Texts typed before anyone joined; sent when they do.
    pub outbox: Vec<String>,
    pub input: String,
    /// Who is typing and when we last heard it.
    pub typing: Option<(String, Instant)>,
    pub last_typing_sent: Option<Instant>,
    pub unread: bool,
    pub transfers: Vec<TransferView>,
}

impl Conversation {
    fn new(peer: &str) -> Conversation {
        Conversation {
            peer: peer.to_ascii_lowercase(),
            chat: None,
            state: ChatState::Idle,
            present: Vec::new(),
            lines: VecDeque::new(),
            outbox: Vec::new(),
            input: String::new(),
            typing: None,
            last_typing_sent: None,
            unread: false,
            transfers: Vec::new(),
        }
    }

    fn push(&mut self, speaker: Speaker, text: impl Into<String>) {
        if self.lines.len() >= MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(ChatLine {
            speaker,
            text: text.into(),
        });
    }

    fn info(&mut self, text: impl Into<String>) {
        self.push(Speaker::Info, text);
    }

    /// Who is typing, if we heard it recently.
    pub fn typing_now(&self, now: Instant) -> Option<&str> {
        self.typing
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < TYPING_SHOWN)
            .map(|(who, _)| who.as_str())
    }
}

/// A line of the contact pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// `id` is `None` for the contacts in no group.
    Group {
        id: Option<String>,
        name: String,
        online: usize,
        total: usize,
    },
    Contact {
        email: String,
    },
    /// Someone who added us and we have not answered (neither allowed nor blocked).
    Pending {
        email: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputPurpose {
    AddContact,
    AddGroup,
    SendFile(ChatId),
    Name,
    PersonalMessage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickPurpose {
    Status,
    /// Move this contact, now in these groups, to the group picked.
    MoveContact {
        email: String,
        from: Vec<String>,
    },
}

/// A dialog over the panes; it takes every key until closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    Help,
    Input {
        purpose: InputPurpose,
        title: String,
        text: String,
    },
    /// Rename group `id`; the text starts as the current name.
    Rename {
        id: String,
        text: String,
    },
    Pick {
        purpose: PickPurpose,
        title: String,
        /// Label and value (a status token or a group id, "" for no group).
        options: Vec<(String, String)>,
        selected: usize,
    },
    Confirm {
        question: String,
        action: Action,
    },
}

/// The whole state of the terminal messenger.
#[derive(Debug)]
pub struct App {
    pub me: String,
    pub my_name: String,
    pub my_status: Status,
    pub my_message: String,
    pub lists: ListCache,
    /// Online contacts: e-mail (lower case) → status and announced name.
    pub presence: HashMap<String, (Status, String)>,
    /// Personal messages by e-mail (lower case).
    pub messages: HashMap<String, String>,
    pub focus: Focus,
    /// Index into [`App::rows`].
    pub selected: usize,
    pub conversations: Vec<Conversation>,
    /// Which conversation each switchboard belongs to.
    chat_peer: HashMap<ChatId, String>,
    pub modal: Option<Modal>,
    /// File offers waiting for yes or no, oldest first (shown after any other dialog).
    pub offers: VecDeque<FileOffer>,
    /// The status line.
    pub notice: Option<String>,
    pub connected: bool,
    pub quit: bool,
    /// Unread mail `(inbox, other folders)` as the server's Hotmail notices tell it; `None` until
    /// the first notice (a server without mail never sends one).
    pub mail_unread: Option<(u32, u32)>,
}

fn plain(key: &KeyEvent) -> bool {
    !key.modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

/// "12.3 KB" and friends.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl App {
    pub fn new(me: &str, my_name: &str, my_status: Status, lists: ListCache) -> App {
        App {
            me: me.to_ascii_lowercase(),
            my_name: my_name.to_owned(),
            my_status,
            my_message: String::new(),
            lists,
            presence: HashMap::new(),
            messages: HashMap::new(),
            focus: Focus::Contacts,
            selected: 0,
            conversations: Vec::new(),
            chat_peer: HashMap::new(),
            modal: None,
            offers: VecDeque::new(),
            notice: None,
            connected: true,
            quit: false,
            mail_unread: None,
        }
    }

    // ---- the contact pane -------------------------------------------------------------------

    /// The contact pane's lines: groups by name, then "No group", then who added us.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut groups: Vec<(Option<&str>, &str)> = self
            .lists
            .groups
            .iter()
            .map(|(id, name)| (Some(id.as_str()), name.as_str()))
            .collect();
        groups.sort_by_key(|(_, n)| n.to_lowercase());
        let ungrouped = self
            .lists
            .in_group(None)
            .filter(|c| c.on(List::Forward))
            .count();
        if ungrouped > 0 || groups.is_empty() {
            groups.push((None, "No group"));
        }
        for (id, name) in groups {
            let mut members: Vec<_> = self
                .lists
                .in_group(id)
                .filter(|c| c.on(List::Forward))
                .collect();
            // Online first, then by name, as the official client sorted them.
            members.sort_by_key(|c| (self.status_of(&c.email) == Status::Offline, c.email.clone()));
            rows.push(Row::Group {
                id: id.map(str::to_owned),
                name: name.to_owned(),
                online: members
                    .iter()
                    .filter(|c| self.status_of(&c.email) != Status::Offline)
                    .count(),
                total: members.len(),
            });
            rows.extend(members.into_iter().map(|c| Row::Contact {
                email: c.email.clone(),
            }));
        }
        for c in self
            .lists
            .on(List::Reverse)
            .filter(|c| !c.on(List::Allow) && !c.on(List::Block) && !c.on(List::Forward))
        {
            rows.push(Row::Pending {
                email: c.email.clone(),
            });
        }
        rows
    }

    pub fn status_of(&self, email: &str) -> Status {
        self.presence
            .get(&email.to_ascii_lowercase())
            .map_or(Status::Offline, |(s, _)| *s)
    }

    /// The name to show: the announced one if online, else the one the list holds.
    pub fn name_of(&self, email: &str) -> String {
        let key = email.to_ascii_lowercase();
        if let Some((_, n)) = self.presence.get(&key) {
            return n.clone();
        }
        self.lists
            .contacts
            .get(&key)
            .map_or_else(|| email.to_owned(), |c| c.name.clone())
    }

    pub fn is_blocked(&self, email: &str) -> bool {
        self.lists
            .contacts
            .get(&email.to_ascii_lowercase())
            .is_some_and(|c| c.on(List::Block))
    }

    fn selected_row(&self) -> Option<Row> {
        self.rows().into_iter().nth(self.selected)
    }

    fn clamp_selection(&mut self) {
        let n = self.rows().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }

    /// Replaces the list copy (after the client reported a change).
    pub fn set_lists(&mut self, lists: ListCache) {
        self.lists = lists;
        self.clamp_selection();
    }

    // ---- conversations ----------------------------------------------------------------------

    pub fn conversation(&self, peer: &str) -> Option<&Conversation> {
        let peer = peer.to_ascii_lowercase();
        self.conversations.iter().find(|c| c.peer == peer)
    }

    fn conversation_mut(&mut self, peer: &str) -> &mut Conversation {
        let peer = peer.to_ascii_lowercase();
        let i = match self.conversations.iter().position(|c| c.peer == peer) {
            Some(i) => i,
            None => {
                self.conversations.push(Conversation::new(&peer));
                self.conversations.len() - 1
            }
        };
        &mut self.conversations[i]
    }

    /// The conversation a switchboard's events belong to: the one it is linked to, or the one
    /// with `who` (created if need be), which the chat is then linked to.
    fn conversation_for(&mut self, chat: ChatId, who: &str) -> &mut Conversation {
        let peer = match self.chat_peer.get(&chat) {
            Some(p) => p.clone(),
            None => {
                let p = who.to_ascii_lowercase();
                self.chat_peer.insert(chat, p.clone());
                p
            }
        };
        let conv = self.conversation_mut(&peer);
        if conv.chat.is_none() || conv.state != ChatState::Open {
            conv.chat = Some(chat);
        }
        conv
    }

    pub fn focused(&self) -> Option<&Conversation> {
        match &self.focus {
            Focus::Chat(p) => self.conversation(p),
            Focus::Contacts => None,
        }
    }

    fn focused_mut(&mut self) -> Option<&mut Conversation> {
        let Focus::Chat(p) = &self.focus else {
            return None;
        };
        let p = p.clone();
        self.conversations.iter_mut().find(|c| c.peer == p)
    }

    fn focus_chat(&mut self, peer: &str) {
        let conv = self.conversation_mut(peer);
        conv.unread = false;
        let p = conv.peer.clone();
        self.focus = Focus::Chat(p);
    }

    /// Tab order: the contact pane, then each conversation.
    fn cycle_focus(&mut self, forward: bool) {
        let n = self.conversations.len() + 1;
        let current = match &self.focus {
            Focus::Contacts => 0,
            Focus::Chat(p) => self
                .conversations
                .iter()
                .position(|c| &c.peer == p)
                .map_or(0, |i| i + 1),
        };
        let next = if forward {
            (current + 1) % n
        } else {
            (current + n - 1) % n
        };
        if next == 0 {
            self.focus = Focus::Contacts;
        } else if let Some(c) = self.conversations.get_mut(next - 1) {
            c.unread = false;
            self.focus = Focus::Chat(c.peer.clone());
        }
    }

    /// Opens (or shows) the conversation with `email`, starting a switchboard if none is open.
    fn open_chat(&mut self, email: &str) -> Vec<Action> {
        if email.eq_ignore_ascii_case(&self.me) {
            self.notice = Some("that is you".into());
            return vec![];
        }
        self.focus_chat(email);
        let conv = self.conversation_mut(email);
        if conv.state == ChatState::Idle {
            conv.state = ChatState::Opening;
            conv.info(format!("inviting {}…", conv.peer));
            return vec![Action::StartChat {
                email: conv.peer.clone(),
            }];
        }
        vec![]
    }

    fn send_input(&mut self) -> Vec<Action> {
        let Some(conv) = self.focused_mut() else {
            return vec![];
        };
        let text = std::mem::take(&mut conv.input);
        if text.trim().is_empty() {
            return vec![];
        }
        conv.push(Speaker::Me, text.clone());
        conv.last_typing_sent = None;
        match (conv.state, conv.chat) {
            (ChatState::Open, Some(chat)) => vec![Action::SendText { chat, text }],
            (ChatState::Opening, _) => {
                conv.outbox.push(text);
                vec![]
            }
            _ => {
                conv.outbox.push(text);
                conv.state = ChatState::Opening;
                vec![Action::StartChat {
                    email: conv.peer.clone(),
                }]
            }
        }
    }

    /// Leaves the focused conversation's chat and closes its pane.
    fn close_focused(&mut self) -> Vec<Action> {
        let Focus::Chat(p) = self.focus.clone() else {
            return vec![];
        };
        self.focus = Focus::Contacts;
        let Some(i) = self.conversations.iter().position(|c| c.peer == p) else {
            return vec![];
        };
        let conv = self.conversations.remove(i);
        let chats: Vec<ChatId> = self
            .chat_peer
            .iter()
            .filter(|(_, peer)| **peer == p)
            .map(|(c, _)| *c)
            .collect();
        for c in &chats {
            self.chat_peer.remove(c);
        }
        let mut actions: Vec<Action> = chats
            .into_iter()
            .map(|chat| Action::LeaveChat { chat })
            .collect();
        actions.extend(conv.transfers.iter().filter(|t| !t.finished()).map(|t| {
            Action::CancelTransfer {
                cookie: t.cookie.clone(),
            }
        }));
        actions
    }

    fn transfer_mut(&mut self, cookie: &str) -> Option<&mut TransferView> {
        self.conversations
            .iter_mut()
            .flat_map(|c| c.transfers.iter_mut())
            .find(|t| t.cookie == cookie)
    }

    fn conversation_of_transfer(&mut self, cookie: &str) -> Option<&mut Conversation> {
        self.conversations
            .iter_mut()
            .find(|c| c.transfers.iter().any(|t| t.cookie == cookie))
    }

    // ---- keys -------------------------------------------------------------------------------

    /// The keys of the help bar for where the keyboard is now.
    pub fn help_bar(&self) -> &'static str {
        match (&self.modal, self.offers.is_empty(), &self.focus) {
            (Some(Modal::Help), _, _) => "any key: close help",
            (Some(Modal::Input { .. } | Modal::Rename { .. }), _, _) => {
                "Enter: OK  Esc: cancel"
            }
            (Some(Modal::Pick { .. }), _, _) => "↑↓: choose  Enter: OK  Esc: cancel",
            (Some(Modal::Confirm { .. }), _, _) => "y: yes  n/Esc: no",
            (None, false, _) => "y: accept the file  n: decline",
            (None, true, Focus::Contacts) => {
                "? help  Enter chat  a add  d delete  b block  g group  r rename  m move  s status  n name  p message  i inbox  Tab chats  q quit"
            }
            (None, true, Focus::Chat(_)) => {
                "F1 help  Enter send  Esc contacts  Tab next chat  ^F send file  ^X cancel  ^W close  ^C quit"
            }
        }
    }

    pub fn on_key(&mut self, key: KeyEvent, now: Instant) -> Vec<Action> {
        if ctrl(&key, 'c') {
            self.quit = true;
            return vec![Action::Quit];
        }
        if let Some(modal) = self.modal.take() {
            return self.modal_key(modal, key);
        }
        if let Some(offer) = self.offers.front().cloned() {
            return match key.code {
                KeyCode::Char('y' | 'Y') => {
                    self.offers.pop_front();
                    vec![Action::AcceptFile(offer)]
                }
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.offers.pop_front();
                    let conv = self.conversation_for(offer.chat, &offer.from);
                    conv.info(format!("declined {}", offer.file_name));
                    vec![Action::DeclineFile(offer)]
                }
                _ => vec![],
            };
        }
        if key.code == KeyCode::F(1) {
            self.modal = Some(Modal::Help);
            return vec![];
        }
        match self.focus {
            Focus::Contacts => self.contacts_key(key),
            Focus::Chat(_) => self.chat_key(key, now),
        }
    }

    fn modal_key(&mut self, modal: Modal, key: KeyEvent) -> Vec<Action> {
        match modal {
            Modal::Help => vec![],
            Modal::Confirm { question, action } => match key.code {
                KeyCode::Char('y' | 'Y') | KeyCode::Enter => vec![action],
                KeyCode::Char('n' | 'N') | KeyCode::Esc => vec![],
                _ => {
                    self.modal = Some(Modal::Confirm { question, action });
                    vec![]
                }
            },
            Modal::Pick {
                purpose,
                title,
                options,
                mut selected,
            } => match key.code {
                KeyCode::Esc => vec![],
                KeyCode::Enter => match options.get(selected) {
                    Some((_, value)) => self.picked(purpose, value),
                    None => vec![],
                },
                code => {
                    match code {
                        KeyCode::Up | KeyCode::Char('k') => selected = selected.saturating_sub(1),
                        KeyCode::Down | KeyCode::Char('j') => {
                            selected = (selected + 1).min(options.len().saturating_sub(1))
                        }
                        _ => {}
                    }
                    self.modal = Some(Modal::Pick {
                        purpose,
                        title,
                        options,
                        selected,
                    });
                    vec![]
                }
            },
            Modal::Input {
                purpose,
                title,
                mut text,
            } => match key.code {
                KeyCode::Esc => vec![],
                KeyCode::Enter => self.entered(purpose, text.trim()),
                code => {
                    edit(&mut text, code, &key);
                    self.modal = Some(Modal::Input {
                        purpose,
                        title,
                        text,
                    });
                    vec![]
                }
            },
            Modal::Rename { id, mut text } => match key.code {
                KeyCode::Esc => vec![],
                KeyCode::Enter if !text.trim().is_empty() => vec![Action::RenameGroup {
                    id,
                    name: text.trim().to_owned(),
                }],
                code => {
                    edit(&mut text, code, &key);
                    self.modal = Some(Modal::Rename { id, text });
                    vec![]
                }
            },
        }
    }

    fn picked(&mut self, purpose: PickPurpose, value: &str) -> Vec<Action> {
        match purpose {
            PickPurpose::Status => Status::from_token(value)
                .map(Action::SetStatus)
                .into_iter()
                .collect(),
            PickPurpose::MoveContact { email, from } => {
                let to = (!value.is_empty()).then(|| value.to_owned());
                if from.len() <= 1 && from.first() == to.as_ref() {
                    return vec![];
                }
                vec![Action::MoveContact { email, from, to }]
            }
        }
    }

    fn entered(&mut self, purpose: InputPurpose, text: &str) -> Vec<Action> {
        match purpose {
            // An empty name or message clears the message; the others need text.
            InputPurpose::PersonalMessage => vec![Action::SetPersonalMessage(text.to_owned())],
            _ if text.is_empty() => vec![],
            InputPurpose::AddContact => {
                if text.contains('@') && !text.contains(char::is_whitespace) {
                    vec![Action::AddContact {
                        email: text.to_ascii_lowercase(),
                    }]
                } else {
                    self.notice = Some(format!("not an account name: {text}"));
                    vec![]
                }
            }
            InputPurpose::AddGroup => vec![Action::AddGroup {
                name: text.to_owned(),
            }],
            InputPurpose::Name => vec![Action::SetName(text.to_owned())],
            InputPurpose::SendFile(chat) => vec![Action::SendFile {
                chat,
                path: PathBuf::from(text),
            }],
        }
    }

    fn input(&mut self, purpose: InputPurpose, title: &str, text: &str) {
        self.modal = Some(Modal::Input {
            purpose,
            title: title.to_owned(),
            text: text.to_owned(),
        });
    }

    fn contacts_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let rows = self.rows();
        if !plain(&key) {
            return vec![];
        }
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(rows.len().saturating_sub(1))
            }
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = rows.len().saturating_sub(1),
            KeyCode::Tab => self.cycle_focus(true),
            KeyCode::BackTab => self.cycle_focus(false),
            KeyCode::Char('?') => self.modal = Some(Modal::Help),
            KeyCode::Char('q') => {
                self.quit = true;
                return vec![Action::Quit];
            }
            KeyCode::Enter => {
                if let Some(Row::Contact { email } | Row::Pending { email }) = self.selected_row() {
                    return self.open_chat(&email);
                }
            }
            KeyCode::Char('a') => match self.selected_row() {
                // On someone who added us: add them back.
                Some(Row::Pending { email }) => return vec![Action::AddContact { email }],
                _ => self.input(InputPurpose::AddContact, "Add a contact (e-mail)", ""),
            },
            KeyCode::Char('d') | KeyCode::Delete => match self.selected_row() {
                Some(Row::Contact { email }) => {
                    self.modal = Some(Modal::Confirm {
                        question: format!("Remove {email} from your contacts?"),
                        action: Action::RemoveContact { email },
                    })
                }
                Some(Row::Group {
                    id: Some(id),
                    name,
                    total,
                    ..
                }) => {
                    if total > 0 {
                        self.notice = Some(format!("move the contacts out of {name} first"));
                    } else {
                        self.modal = Some(Modal::Confirm {
                            question: format!("Remove the group {name}?"),
                            action: Action::RemoveGroup { id },
                        })
                    }
                }
                _ => {}
            },
            KeyCode::Char('b') => {
                if let Some(Row::Contact { email } | Row::Pending { email }) = self.selected_row() {
                    return vec![if self.is_blocked(&email) {
                        Action::Allow { email }
                    } else {
                        Action::Block { email }
                    }];
                }
            }
            KeyCode::Char('g') => self.input(InputPurpose::AddGroup, "New group name", ""),
            KeyCode::Char('r') => match self.selected_row() {
                Some(Row::Group {
                    id: Some(id), name, ..
                }) => self.modal = Some(Modal::Rename { id, text: name }),
                _ => self.notice = Some("select a group to rename it".into()),
            },
            KeyCode::Char('m') => match self.selected_row() {
                Some(Row::Contact { email }) => {
                    let from = self
                        .lists
                        .contacts
                        .get(&email)
                        .map(|c| c.groups.clone())
                        .unwrap_or_default();
                    let mut options: Vec<(String, String)> = self
                        .lists
                        .groups
                        .iter()
                        .map(|(id, name)| (name.clone(), id.clone()))
                        .collect();
                    options.sort_by_key(|(n, _)| n.to_lowercase());
                    options.push(("No group".into(), String::new()));
                    let selected = from
                        .first()
                        .and_then(|g| options.iter().position(|(_, id)| id == g))
                        .unwrap_or(options.len() - 1);
                    self.modal = Some(Modal::Pick {
                        purpose: PickPurpose::MoveContact {
                            email: email.clone(),
                            from,
                        },
                        title: format!("Move {email} to"),
                        options,
                        selected,
                    });
                }
                _ => self.notice = Some("select a contact to move it".into()),
            },
            KeyCode::Char('s') => {
                let options: Vec<(String, String)> = Status::SETTABLE
                    .iter()
                    .map(|s| {
                        let label = if *s == Status::AppearOffline {
                            "appear offline".to_owned()
                        } else {
                            s.label().to_owned()
                        };
                        (label, s.token().to_owned())
                    })
                    .collect();
                let selected = Status::SETTABLE
                    .iter()
                    .position(|s| *s == self.my_status)
                    .unwrap_or(0);
                self.modal = Some(Modal::Pick {
                    purpose: PickPurpose::Status,
                    title: "Status".into(),
                    options,
                    selected,
                });
            }
            KeyCode::Char('n') => {
                let name = self.my_name.clone();
                self.input(InputPurpose::Name, "Display name", &name)
            }
            KeyCode::Char('p') => {
                let m = self.my_message.clone();
                self.input(InputPurpose::PersonalMessage, "Personal message", &m)
            }
            KeyCode::Char('i') => {
                self.notice = Some("opening the inbox…".into());
                return vec![Action::OpenInbox];
            }
            _ => {}
        }
        vec![]
    }

    fn chat_key(&mut self, key: KeyEvent, now: Instant) -> Vec<Action> {
        if ctrl(&key, 'w') {
            return self.close_focused();
        }
        if ctrl(&key, 'f') {
            match self.focused().map(|c| (c.state, c.chat)) {
                Some((ChatState::Open, Some(chat))) => {
                    self.input(InputPurpose::SendFile(chat), "Send a file (path)", "")
                }
                _ => self.notice = Some("the chat is not open: say something first".into()),
            }
            return vec![];
        }
        if ctrl(&key, 'x') {
            let cookie = self.focused().and_then(|c| {
                c.transfers
                    .iter()
                    .rev()
                    .find(|t| !t.finished())
                    .map(|t| t.cookie.clone())
            });
            return cookie
                .map(|cookie| Action::CancelTransfer { cookie })
                .into_iter()
                .collect();
        }
        match key.code {
            KeyCode::Esc => self.focus = Focus::Contacts,
            KeyCode::Tab => self.cycle_focus(true),
            KeyCode::BackTab => self.cycle_focus(false),
            KeyCode::Enter => return self.send_input(),
            code => {
                let Some(conv) = self.focused_mut() else {
                    return vec![];
                };
                let before = conv.input.len();
                edit(&mut conv.input, code, &key);
                let grew = conv.input.len() > before;
                // Typing notifications go out while typing, at most every TYPING_RESEND.
                if grew && conv.state == ChatState::Open {
                    if let Some(chat) = conv.chat {
                        let due = conv
                            .last_typing_sent
                            .is_none_or(|t| now.saturating_duration_since(t) >= TYPING_RESEND);
                        if due {
                            conv.last_typing_sent = Some(now);
                            return vec![Action::SendTyping { chat }];
                        }
                    }
                }
            }
        }
        vec![]
    }

    // ---- what the server and the runner tell us ---------------------------------------------

    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Presence {
                email,
                name,
                status,
                ..
            } => {
                self.presence
                    .insert(email.to_ascii_lowercase(), (status, name));
            }
            Event::Offline { email } => {
                self.presence.remove(&email.to_ascii_lowercase());
            }
            Event::PersonalMessage { email, text } => {
                self.messages.insert(email.to_ascii_lowercase(), text);
            }
            Event::ListChanged(change) => self.list_changed(change),
            Event::Ring(ring) => return vec![Action::Answer(ring)],
            Event::Chat { chat, event } => return self.chat_event(chat, event, now),
            Event::Disconnected {
                reason,
                reconnecting,
            } => {
                self.connected = false;
                self.presence.clear();
                let why = match reason {
                    DisconnectReason::SignedInElsewhere => "signed in somewhere else".into(),
                    DisconnectReason::ServerShutdown => "the server is shutting down".into(),
                    DisconnectReason::ConnectionLost(e) => format!("connection lost: {e}"),
                    DisconnectReason::Protocol(e) => format!("protocol error: {e}"),
                    DisconnectReason::SignedOut => "signed out".into(),
                };
                self.notice = Some(if reconnecting {
                    format!("{why}; reconnecting…")
                } else {
                    format!("{why}; press q to quit")
                });
            }
            Event::Reconnected => {
                self.connected = true;
                self.notice = Some("signed in again".into());
            }
            Event::Mail(mail) => {
                let mut counts = self.mail_unread.unwrap_or_default();
                mail.apply(&mut counts);
                self.mail_unread = Some(counts);
                if let MailEvent::Arrived { from, subject, .. } = &mail {
                    self.notice = Some(format!("new mail from {from}: {subject}"));
                }
            }
        }
        vec![]
    }

    fn list_changed(&mut self, change: ListChange) {
        if let ListChange::Added {
            list: List::Reverse,
            email,
            ..
        } = &change
        {
            self.notice = Some(format!("{email} added you to their contacts"));
        }
        self.clamp_selection();
    }

    fn chat_event(&mut self, chat: ChatId, event: ChatEvent, now: Instant) -> Vec<Action> {
        let focused_peer = match &self.focus {
            Focus::Chat(p) => Some(p.clone()),
            Focus::Contacts => None,
        };
        match event {
            ChatEvent::Joined { email, name } => {
                let conv = self.conversation_for(chat, &email);
                conv.chat = Some(chat);
                conv.state = ChatState::Open;
                if !conv.present.iter().any(|p| p.eq_ignore_ascii_case(&email)) {
                    conv.present.push(email.to_ascii_lowercase());
                }
                conv.info(format!("{name} ({email}) joined"));
                // What was typed before they came goes now, in order.
                return std::mem::take(&mut conv.outbox)
                    .into_iter()
                    .map(|text| Action::SendText { chat, text })
                    .collect();
            }
            ChatEvent::Left { email, idle } => {
                let mut actions = vec![];
                let conv = self.conversation_for(chat, &email);
                conv.present.retain(|p| !p.eq_ignore_ascii_case(&email));
                conv.info(if idle {
                    format!("{email} left (idle)")
                } else {
                    format!("{email} left")
                });
                if conv.present.is_empty() && conv.chat == Some(chat) {
                    conv.chat = None;
                    conv.state = ChatState::Idle;
                    actions.push(Action::LeaveChat { chat });
                }
                return actions;
            }
            ChatEvent::Message {
                from, name, text, ..
            } => {
                let conv = self.conversation_for(chat, &from);
                conv.typing = None;
                conv.push(Speaker::Them(name), text);
                if focused_peer.as_deref() != Some(conv.peer.as_str()) {
                    conv.unread = true;
                }
            }
            ChatEvent::Typing { from } => {
                let name = self.name_of(&from);
                let conv = self.conversation_for(chat, &from);
                conv.typing = Some((name, now));
            }
            ChatEvent::FileOffered(offer) => {
                let name = self.name_of(&offer.from);
                let conv = self.conversation_for(chat, &offer.from);
                conv.info(format!(
                    "{} offers {} ({})",
                    name,
                    offer.file_name,
                    human_size(offer.size)
                ));
                if self.offers.len() >= MAX_PENDING_OFFERS {
                    return vec![Action::DeclineFile(offer)];
                }
                self.offers.push_back(offer);
            }
            ChatEvent::FileCancelled { cookie, code } => {
                self.offers.retain(|o| o.cookie != cookie);
                let why = match code.as_str() {
                    "REJECT" => "declined".to_owned(),
                    "" => "cancelled".to_owned(),
                    c => format!("cancelled ({c})"),
                };
                if let Some(t) = self.transfer_mut(&cookie) {
                    if !t.finished() {
                        t.state = TransferState::Failed(why);
                    }
                }
            }
            ChatEvent::Closed { reason } => {
                self.offers.retain(|o| o.chat != chat);
                if let Some(peer) = self.chat_peer.remove(&chat) {
                    let conv = self.conversation_mut(&peer);
                    if conv.chat == Some(chat) {
                        conv.chat = None;
                        conv.state = ChatState::Idle;
                        conv.present.clear();
                        conv.info(format!("chat closed: {reason}"));
                    }
                }
            }
        }
        vec![]
    }

    pub fn on_outcome(&mut self, outcome: Outcome) -> Vec<Action> {
        match outcome {
            Outcome::ChatOpened { peer, chat } => {
                // The peer may already have joined (events and outcomes race); link either way.
                self.chat_peer.insert(chat, peer.to_ascii_lowercase());
                let conv = self.conversation_mut(&peer);
                conv.chat = Some(chat);
            }
            Outcome::ChatFailed { peer, error } => {
                let conv = self.conversation_mut(&peer);
                conv.state = ChatState::Idle;
                conv.chat = None;
                conv.info(format!("could not reach {peer}: {error}"));
                for text in std::mem::take(&mut conv.outbox) {
                    conv.info(format!("not delivered: {text}"));
                }
            }
            Outcome::TransferStarted {
                chat,
                cookie,
                file_name,
                size,
                sending,
            } => {
                let Some(peer) = self.chat_peer.get(&chat).cloned() else {
                    return vec![Action::CancelTransfer { cookie }];
                };
                let conv = self.conversation_mut(&peer);
                conv.info(if sending {
                    format!("offering {file_name} ({})", human_size(size))
                } else {
                    format!("receiving {file_name} ({})", human_size(size))
                });
                if conv.transfers.len() >= MAX_TRANSFERS {
                    if let Some(i) = conv.transfers.iter().position(TransferView::finished) {
                        conv.transfers.remove(i);
                    }
                }
                conv.transfers.push(TransferView {
                    cookie,
                    file_name,
                    size,
                    transferred: 0,
                    sending,
                    state: if sending {
                        TransferState::Waiting
                    } else {
                        TransferState::Moving
                    },
                });
            }
            Outcome::Progress {
                cookie,
                transferred,
                total,
            } => {
                if let Some(t) = self.transfer_mut(&cookie) {
                    if !t.finished() {
                        t.transferred = transferred;
                        t.size = total;
                        t.state = TransferState::Moving;
                    }
                }
            }
            Outcome::TransferEnded { cookie, result } => {
                let mut line = None;
                if let Some(t) = self.transfer_mut(&cookie) {
                    match result {
                        Ok(n) => {
                            t.transferred = n;
                            t.state = TransferState::Done;
                            line = Some(format!(
                                "{} {}",
                                if t.sending { "sent" } else { "received" },
                                t.file_name
                            ));
                        }
                        Err(e) => {
                            if !t.finished() {
                                t.state = TransferState::Failed(e.clone());
                            }
                            line = Some(format!("{}: {e}", t.file_name));
                        }
                    }
                }
                if let (Some(line), Some(conv)) = (line, self.conversation_of_transfer(&cookie)) {
                    conv.info(line);
                }
            }
            Outcome::StatusSet(s) => {
                self.my_status = s;
                self.notice = Some(format!("status: {}", status_word(s)));
            }
            Outcome::NameSet(n) => self.my_name = n,
            Outcome::PersonalMessageSet(m) => self.my_message = m,
            Outcome::Notice(n) => self.notice = Some(n),
        }
        vec![]
    }
}

/// How a status reads on screen ("appear offline" rather than the CLI's "invisible").
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::AppearOffline => "appear offline",
        s => s.label(),
    }
}

/// Line editing shared by the chat input and the dialogs.
fn edit(text: &mut String, code: KeyCode, key: &KeyEvent) {
    match code {
        KeyCode::Backspace => {
            text.pop();
        }
        KeyCode::Char(c) if plain(key) && text.chars().count() < MAX_INPUT && !c.is_control() => {
            text.push(c)
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use msgr_client::Contact;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl_key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    pub(crate) fn sample() -> App {
        let mut lists = ListCache::new("alice@x.com");
        lists.groups.insert("g1".into(), "Friends".into());
        lists.groups.insert("g2".into(), "Work".into());
        for (email, name, groups, bits) in [
            ("bob@x.com", "Bob", vec!["g1".to_owned()], 1 | 2 | 8),
            ("carol@x.com", "Carol", vec![], 1 | 2 | 8),
            ("dave@x.com", "Dave", vec![], 8),
        ] {
            lists.contacts.insert(
                email.into(),
                Contact {
                    email: email.into(),
                    name: name.into(),
                    lists: bits,
                    groups,
                    guid: Some(format!("guid-{name}")),
                },
            );
        }
        let mut app = App::new("alice@x.com", "Alice", Status::Online, lists);
        app.on_event(
            Event::Presence {
                email: "bob@x.com".into(),
                name: "Bobby".into(),
                status: Status::Busy,
                caps: None,
            },
            Instant::now(),
        );
        app
    }

    fn type_text(app: &mut App, text: &str, now: Instant) -> Vec<Action> {
        text.chars()
            .flat_map(|c| app.on_key(key(KeyCode::Char(c)), now))
            .collect()
    }

    fn select(app: &mut App, row: &Row) {
        app.selected = app.rows().iter().position(|r| r == row).unwrap();
    }

    #[test]
    fn rows_are_groups_by_name_then_no_group_then_pending() {
        let app = sample();
        let rows = app.rows();
        assert_eq!(
            rows,
            vec![
                Row::Group {
                    id: Some("g1".into()),
                    name: "Friends".into(),
                    online: 1,
                    total: 1
                },
                Row::Contact {
                    email: "bob@x.com".into()
                },
                Row::Group {
                    id: Some("g2".into()),
                    name: "Work".into(),
                    online: 0,
                    total: 0
                },
                Row::Group {
                    id: None,
                    name: "No group".into(),
                    online: 0,
                    total: 1
                },
                Row::Contact {
                    email: "carol@x.com".into()
                },
                Row::Pending {
                    email: "dave@x.com".into()
                },
            ]
        );
        assert_eq!(app.name_of("bob@x.com"), "Bobby");
        assert_eq!(app.name_of("carol@x.com"), "Carol");
    }

    #[test]
    fn opening_a_chat_queues_text_until_the_peer_joins() {
        let mut app = sample();
        let now = Instant::now();
        select(
            &mut app,
            &Row::Contact {
                email: "bob@x.com".into(),
            },
        );
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::StartChat {
                email: "bob@x.com".into()
            }]
        );
        assert_eq!(app.focus, Focus::Chat("bob@x.com".into()));
        // Typing before the chat is open sends no typing notification.
        assert!(type_text(&mut app, "hi bob", now).is_empty());
        assert!(app.on_key(key(KeyCode::Enter), now).is_empty());
        let chat = ChatId(7);
        app.on_outcome(Outcome::ChatOpened {
            peer: "bob@x.com".into(),
            chat,
        });
        let sent = app.on_event(
            Event::Chat {
                chat,
                event: ChatEvent::Joined {
                    email: "bob@x.com".into(),
                    name: "Bobby".into(),
                },
            },
            now,
        );
        assert_eq!(
            sent,
            vec![Action::SendText {
                chat,
                text: "hi bob".into()
            }]
        );
        // Now typing notifies (once per TYPING_RESEND) and Enter sends directly.
        assert_eq!(
            type_text(&mut app, "ok", now),
            vec![Action::SendTyping { chat }]
        );
        assert!(type_text(&mut app, "!", now + Duration::from_secs(1)).is_empty());
        assert_eq!(
            type_text(&mut app, "?", now + TYPING_RESEND),
            vec![Action::SendTyping { chat }]
        );
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::SendText {
                chat,
                text: "ok!?".into()
            }]
        );
        let conv = app.conversation("bob@x.com").unwrap();
        assert_eq!(conv.state, ChatState::Open);
        assert_eq!(conv.lines.back().unwrap().speaker, Speaker::Me);
    }

    #[test]
    fn mail_notices_keep_the_unread_count_and_say_who_wrote() {
        let mut app = sample();
        let now = Instant::now();
        assert_eq!(app.mail_unread, None);
        app.on_event(
            Event::Mail(MailEvent::Unread {
                inbox: 2,
                folders: 0,
                inbox_url: "/mail/inbox".into(),
                post_url: String::new(),
            }),
            now,
        );
        app.on_event(
            Event::Mail(MailEvent::Arrived {
                from: "Bob".into(),
                from_addr: "bob@x.com".into(),
                subject: "Lunch?".into(),
                folder: "ACTIVE".into(),
                message_url: String::new(),
            }),
            now,
        );
        assert_eq!(app.mail_unread, Some((3, 0)));
        assert_eq!(app.notice.as_deref(), Some("new mail from Bob: Lunch?"));
        app.on_event(
            Event::Mail(MailEvent::Moved {
                src: "ACTIVE".into(),
                dest: String::new(),
                delta: 2,
            }),
            now,
        );
        assert_eq!(app.mail_unread, Some((1, 0)));
    }

    #[test]
    fn an_incoming_chat_gets_its_own_pane_marked_unread() {
        let mut app = sample();
        let now = Instant::now();
        let ring = Ring {
            session_id: "1".into(),
            address: "127.0.0.1:1".into(),
            cookie: "c".into(),
            from: "carol@x.com".into(),
            from_name: "Carol".into(),
        };
        assert_eq!(
            app.on_event(Event::Ring(ring.clone()), now),
            vec![Action::Answer(ring)]
        );
        let chat = ChatId(3);
        for event in [
            ChatEvent::Joined {
                email: "carol@x.com".into(),
                name: "Carol".into(),
            },
            ChatEvent::Typing {
                from: "carol@x.com".into(),
            },
        ] {
            app.on_event(Event::Chat { chat, event }, now);
        }
        let conv = app.conversation("carol@x.com").unwrap();
        assert_eq!(conv.typing_now(now), Some("Carol"));
        assert_eq!(conv.typing_now(now + TYPING_SHOWN), None);
        app.on_event(
            Event::Chat {
                chat,
                event: ChatEvent::Message {
                    from: "carol@x.com".into(),
                    name: "Carol".into(),
                    text: "hello".into(),
                    format: None,
                },
            },
            now,
        );
        let conv = app.conversation("carol@x.com").unwrap();
        assert!(conv.unread && conv.typing.is_none());
        // Tab moves to it and reads it; Tab again returns to the contacts.
        app.on_key(key(KeyCode::Tab), now);
        assert_eq!(app.focus, Focus::Chat("carol@x.com".into()));
        assert!(!app.conversation("carol@x.com").unwrap().unread);
        app.on_key(key(KeyCode::Tab), now);
        assert_eq!(app.focus, Focus::Contacts);
        // When carol leaves, the chat closes; the next message opens a new one.
        let left = app.on_event(
            Event::Chat {
                chat,
                event: ChatEvent::Left {
                    email: "carol@x.com".into(),
                    idle: false,
                },
            },
            now,
        );
        assert_eq!(left, vec![Action::LeaveChat { chat }]);
        app.on_key(key(KeyCode::Tab), now);
        type_text(&mut app, "back?", now);
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::StartChat {
                email: "carol@x.com".into()
            }]
        );
        // Ctrl+W closes the pane and leaves every chat it had.
        assert_eq!(
            app.on_key(ctrl_key('w'), now),
            vec![Action::LeaveChat { chat }]
        );
        assert!(app.conversations.is_empty());
        assert_eq!(app.focus, Focus::Contacts);
    }

    #[test]
    fn status_picker_includes_appear_offline() {
        let mut app = sample();
        let now = Instant::now();
        app.on_key(key(KeyCode::Char('s')), now);
        let Some(Modal::Pick { options, .. }) = &app.modal else {
            panic!("no picker")
        };
        let hdn = options.iter().position(|(_, v)| v == "HDN").unwrap();
        for _ in 0..hdn {
            app.on_key(key(KeyCode::Down), now);
        }
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::SetStatus(Status::AppearOffline)]
        );
        assert!(app.modal.is_none());
        app.on_outcome(Outcome::StatusSet(Status::AppearOffline));
        assert_eq!(app.my_status, Status::AppearOffline);
    }

    #[test]
    fn contact_and_group_management_keys() {
        let mut app = sample();
        let now = Instant::now();
        // a: add a contact.
        app.on_key(key(KeyCode::Char('a')), now);
        type_text(&mut app, "Erin@X.com", now);
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::AddContact {
                email: "erin@x.com".into()
            }]
        );
        // A bad address is refused with a notice.
        app.on_key(key(KeyCode::Char('a')), now);
        type_text(&mut app, "nobody", now);
        assert!(app.on_key(key(KeyCode::Enter), now).is_empty());
        assert!(app.notice.as_deref().unwrap().contains("not an account"));
        // d on a contact asks first.
        let bob = Row::Contact {
            email: "bob@x.com".into(),
        };
        select(&mut app, &bob);
        app.on_key(key(KeyCode::Char('d')), now);
        assert!(app.on_key(key(KeyCode::Char('n')), now).is_empty());
        app.on_key(key(KeyCode::Char('d')), now);
        assert_eq!(
            app.on_key(key(KeyCode::Char('y')), now),
            vec![Action::RemoveContact {
                email: "bob@x.com".into()
            }]
        );
        // b blocks, and unblocks a blocked contact.
        assert_eq!(
            app.on_key(key(KeyCode::Char('b')), now),
            vec![Action::Block {
                email: "bob@x.com".into()
            }]
        );
        let mut lists = app.lists.clone();
        lists.contacts.get_mut("bob@x.com").unwrap().lists |= List::Block.bit();
        app.set_lists(lists);
        assert_eq!(
            app.on_key(key(KeyCode::Char('b')), now),
            vec![Action::Allow {
                email: "bob@x.com".into()
            }]
        );
        // m moves to another group.
        app.on_key(key(KeyCode::Char('m')), now);
        app.on_key(key(KeyCode::Down), now);
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::MoveContact {
                email: "bob@x.com".into(),
                from: vec!["g1".into()],
                to: Some("g2".into())
            }]
        );
        // g adds a group; r renames the selected one; d removes an empty one.
        app.on_key(key(KeyCode::Char('g')), now);
        type_text(&mut app, "Family", now);
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::AddGroup {
                name: "Family".into()
            }]
        );
        select(
            &mut app,
            &Row::Group {
                id: Some("g2".into()),
                name: "Work".into(),
                online: 0,
                total: 0,
            },
        );
        app.on_key(key(KeyCode::Char('r')), now);
        for _ in 0.."Work".len() {
            app.on_key(key(KeyCode::Backspace), now);
        }
        type_text(&mut app, "Office", now);
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::RenameGroup {
                id: "g2".into(),
                name: "Office".into()
            }]
        );
        app.on_key(key(KeyCode::Char('d')), now);
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::RemoveGroup { id: "g2".into() }]
        );
        // A group with contacts in it is not removed.
        select(
            &mut app,
            &Row::Group {
                id: Some("g1".into()),
                name: "Friends".into(),
                online: 1,
                total: 1,
            },
        );
        app.on_key(key(KeyCode::Char('d')), now);
        assert!(app.modal.is_none());
        // On someone who added us, a adds them back.
        select(
            &mut app,
            &Row::Pending {
                email: "dave@x.com".into(),
            },
        );
        assert_eq!(
            app.on_key(key(KeyCode::Char('a')), now),
            vec![Action::AddContact {
                email: "dave@x.com".into()
            }]
        );
    }

    #[test]
    fn file_offers_prompt_and_transfers_show_progress() {
        let mut app = sample();
        let now = Instant::now();
        let chat = ChatId(1);
        app.on_event(
            Event::Chat {
                chat,
                event: ChatEvent::Joined {
                    email: "bob@x.com".into(),
                    name: "Bobby".into(),
                },
            },
            now,
        );
        let offer = FileOffer {
            chat,
            from: "bob@x.com".into(),
            cookie: "42".into(),
            file_name: "cat.jpg".into(),
            size: 2048,
        };
        app.on_event(
            Event::Chat {
                chat,
                event: ChatEvent::FileOffered(offer.clone()),
            },
            now,
        );
        assert!(app.help_bar().contains("accept"));
        // Other keys do not answer the prompt.
        assert!(app.on_key(key(KeyCode::Char('q')), now).is_empty());
        assert_eq!(
            app.on_key(key(KeyCode::Char('y')), now),
            vec![Action::AcceptFile(offer)]
        );
        app.on_outcome(Outcome::TransferStarted {
            chat,
            cookie: "42".into(),
            file_name: "cat.jpg".into(),
            size: 2048,
            sending: false,
        });
        app.on_outcome(Outcome::Progress {
            cookie: "42".into(),
            transferred: 1024,
            total: 2048,
        });
        let t = &app.conversation("bob@x.com").unwrap().transfers[0];
        assert_eq!((t.transferred, &t.state), (1024, &TransferState::Moving));
        // Ctrl+X in the pane cancels the transfer under way.
        app.on_key(key(KeyCode::Tab), now);
        assert_eq!(
            app.on_key(ctrl_key('x'), now),
            vec![Action::CancelTransfer {
                cookie: "42".into()
            }]
        );
        app.on_outcome(Outcome::TransferEnded {
            cookie: "42".into(),
            result: Err("cancelled".into()),
        });
        let conv = app.conversation("bob@x.com").unwrap();
        assert_eq!(
            conv.transfers[0].state,
            TransferState::Failed("cancelled".into())
        );
        // Ctrl+F asks for a path and sends it.
        app.on_key(ctrl_key('f'), now);
        type_text(&mut app, "/tmp/a b.txt", now);
        assert_eq!(
            app.on_key(key(KeyCode::Enter), now),
            vec![Action::SendFile {
                chat,
                path: "/tmp/a b.txt".into()
            }]
        );
    }

    #[test]
    fn help_opens_with_question_mark_or_f1_and_any_key_closes_it() {
        let mut app = sample();
        let now = Instant::now();
        app.on_key(key(KeyCode::Char('?')), now);
        assert_eq!(app.modal, Some(Modal::Help));
        assert!(app.on_key(key(KeyCode::Char('q')), now).is_empty());
        assert!(app.modal.is_none() && !app.quit);
        app.on_key(key(KeyCode::F(1)), now);
        assert_eq!(app.modal, Some(Modal::Help));
        assert_eq!(app.on_key(ctrl_key('c'), now), vec![Action::Quit]);
    }
}

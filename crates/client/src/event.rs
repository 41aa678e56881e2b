//! What the library tells the application: typed events, one stream per [`crate::Client`].

use crate::lists::ListChange;
use msgr_proto::mime::ImFormat;

/// A presence status, with the protocol's three-letter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Online,
    Busy,
    Away,
    BeRightBack,
    OnThePhone,
    OutToLunch,
    Idle,
    /// `HDN`: signed in but shown offline to everyone.
    AppearOffline,
    Offline,
}

impl Status {
    pub const SETTABLE: [Status; 8] = [
        Status::Online,
        Status::Busy,
        Status::Away,
        Status::BeRightBack,
        Status::OnThePhone,
        Status::OutToLunch,
        Status::Idle,
        Status::AppearOffline,
    ];

    pub fn token(self) -> &'static str {
        match self {
            Status::Online => "NLN",
            Status::Busy => "BSY",
            Status::Away => "AWY",
            Status::BeRightBack => "BRB",
            Status::OnThePhone => "PHN",
            Status::OutToLunch => "LUN",
            Status::Idle => "IDL",
            Status::AppearOffline => "HDN",
            Status::Offline => "FLN",
        }
    }

    pub fn from_token(t: &str) -> Option<Status> {
        Status::SETTABLE
            .into_iter()
            .chain([Status::Offline])
            .find(|s| s.token() == t)
    }

    /// A word for people (and for `msgr status SET`).
    pub fn label(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Busy => "busy",
            Status::Away => "away",
            Status::BeRightBack => "brb",
            Status::OnThePhone => "phone",
            Status::OutToLunch => "lunch",
            Status::Idle => "idle",
            Status::AppearOffline => "invisible",
            Status::Offline => "offline",
        }
    }

    pub fn from_label(s: &str) -> Option<Status> {
        let s = s.to_ascii_lowercase();
        match s.as_str() {
            "appear-offline" | "hidden" | "hdn" => Some(Status::AppearOffline),
            _ => Status::SETTABLE
                .into_iter()
                .chain([Status::Offline])
                .find(|st| st.label() == s || st.token().eq_ignore_ascii_case(&s)),
        }
    }
}

/// Identifies one switchboard chat of this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatId(pub u64);

/// An invitation to a switchboard chat (`RNG`), to pass to [`crate::Client::answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    pub session_id: String,
    /// `host:port` of the switchboard.
    pub address: String,
    pub cookie: String,
    pub from: String,
    pub from_name: String,
}

/// Someone offers us a file (`text/x-msmsgsinvite`, `Invitation-Command: INVITE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    pub chat: ChatId,
    pub from: String,
    /// `Invitation-Cookie`: names this offer in the answer.
    pub cookie: String,
    pub file_name: String,
    pub size: u64,
}

/// Why the notification-server connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// `OUT OTH`: the account signed in somewhere else. Never followed by a reconnect, so two
    /// clients of one account do not take turns kicking each other off.
    SignedInElsewhere,
    /// `OUT SSD`: the server is shutting down.
    ServerShutdown,
    /// The connection broke or stopped answering.
    ConnectionLost(String),
    /// The server sent something we cannot carry on from.
    Protocol(String),
    /// The application signed out.
    SignedOut,
}

/// Something that happened in a switchboard chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// `JOI`/`IRO`: someone is in the chat.
    Joined {
        email: String,
        name: String,
    },
    /// `BYE`; `idle` when the server removed them.
    Left {
        email: String,
        idle: bool,
    },
    Message {
        from: String,
        name: String,
        text: String,
        format: Option<ImFormat>,
    },
    /// `TypingUser`.
    Typing {
        from: String,
    },
    FileOffered(FileOffer),
    /// The other side declined or cancelled an offer (`Invitation-Command: CANCEL`).
    FileCancelled {
        cookie: String,
        code: String,
    },
    /// The connection to the switchboard ended.
    Closed {
        reason: String,
    },
}

/// A Hotmail notice from the notification server (`MSG Hotmail Hotmail`): the account's mailbox.
/// Folders are named as the server names them: `ACTIVE` is the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailEvent {
    /// At sign-in, when there is unread mail (`text/x-msmsgsinitialemailnotification`).
    Unread {
        inbox: u32,
        /// Unread messages in every other folder.
        folders: u32,
        /// The inbox page, relative to the web site, and where its sign-in form is posted.
        inbox_url: String,
        post_url: String,
    },
    /// New mail arrived (`text/x-msmsgsemailnotification`); counts one more unread in `folder`.
    Arrived {
        from: String,
        from_addr: String,
        subject: String,
        folder: String,
        message_url: String,
    },
    /// `delta` unread messages left `src` for `dest` (`text/x-msmsgsactivemailnotification`):
    /// read, moved or deleted. An empty side means nowhere (read, deleted for good) or nowhere
    /// known (marked unread again).
    Moved {
        src: String,
        dest: String,
        delta: u32,
    },
}

impl MailEvent {
    /// The inbox's name on the wire.
    pub const INBOX: &'static str = "ACTIVE";

    /// Applies this notice to `(inbox, other folders)` unread counts, as the official client did.
    pub fn apply(&self, counts: &mut (u32, u32)) {
        fn slot<'a>(c: &'a mut (u32, u32), folder: &str) -> &'a mut u32 {
            if folder == MailEvent::INBOX {
                &mut c.0
            } else {
                &mut c.1
            }
        }
        match self {
            MailEvent::Unread { inbox, folders, .. } => *counts = (*inbox, *folders),
            MailEvent::Arrived { folder, .. } => {
                let n = slot(counts, folder);
                *n = n.saturating_add(1);
            }
            MailEvent::Moved { src, dest, delta } => {
                if !src.is_empty() {
                    let n = slot(counts, src);
                    *n = n.saturating_sub(*delta);
                }
                if !dest.is_empty() {
                    let n = slot(counts, dest);
                    *n = n.saturating_add(*delta);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_counts_follow_the_notices() {
        let mut c = (0, 0);
        MailEvent::Unread {
            inbox: 2,
            folders: 1,
            inbox_url: String::new(),
            post_url: String::new(),
        }
        .apply(&mut c);
        assert_eq!(c, (2, 1));
        let moved = |src: &str, dest: &str, delta| MailEvent::Moved {
            src: src.into(),
            dest: dest.into(),
            delta,
        };
        moved("ACTIVE", "trAsH", 1).apply(&mut c);
        assert_eq!(c, (1, 2));
        moved("trAsH", "", 5).apply(&mut c);
        assert_eq!(c, (1, 0));
        moved("", "ACTIVE", 1).apply(&mut c);
        assert_eq!(c, (2, 0));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `ILN`/`NLN`: a contact is online with this status (first snapshot or a change).
    Presence {
        email: String,
        name: String,
        status: Status,
        /// Capabilities, as sent (`caps` or `caps:extcaps`), if the dialect has them.
        caps: Option<String>,
    },
    /// `FLN`.
    Offline {
        email: String,
    },
    /// `UBX` (MSNP11+): a contact's personal message.
    PersonalMessage {
        email: String,
        text: String,
    },
    /// A list changed (our own confirmed change, or the server's notice such as being added).
    ListChanged(ListChange),
    /// `RNG`: someone invites us to a chat.
    Ring(Ring),
    Chat {
        chat: ChatId,
        event: ChatEvent,
    },
    /// The NS connection ended; `reconnecting` tells whether the library is trying again.
    Disconnected {
        reason: DisconnectReason,
        reconnecting: bool,
    },
    /// Signed in again after a disconnect; the lists were re-synchronised.
    Reconnected,
    /// The account's mailbox: unread counts at sign-in, new mail, mail read or moved.
    Mail(MailEvent),
}

//! The pages: one askama template (under `templates/`) per struct, checked and HTML-escaped at compile
//! time. Element ids and classes are the contract the browser tests and `static/app.js` rely on
//! (README, "Web inbox").

use crate::view::{Body, MessageView};
use askama::Template;

/// What every signed-in page shows around its content: the account, the folder list with unread
/// counts, the search box and the sign-out form.
pub struct Chrome {
    pub account: String,
    pub csrf: String,
    pub folders: Vec<FolderLink>,
    /// The search box's text.
    pub query: String,
    /// A line about what just happened (message sent, moved…).
    pub notice: Option<&'static str>,
}

/// A folder in the navigation and on the folders page.
pub struct FolderLink {
    /// The IMAP name (`data-folder`).
    pub name: String,
    /// What the reader sees (`Inbox` for `INBOX`).
    pub label: String,
    pub href: String,
    pub unread: u32,
    pub messages: u32,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login {
    pub title: &'static str,
    pub chrome: Option<Chrome>,
    pub csrf: String,
    pub rru: String,
    pub user: String,
    pub error: Option<&'static str>,
}

/// The answer to Messenger's ticket post: a page of our own that moves on to `rru`. Messenger
/// posts from a local file, so the browser treats the post as another site's and would not send
/// the new `SameSite=Strict` session cookie along a redirect it started; a navigation this page
/// starts is same-site, and carries it.
#[derive(Template)]
#[template(path = "continue.html")]
pub struct Continue {
    pub rru: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct Error {
    pub title: &'static str,
    pub chrome: Option<Chrome>,
    pub message: &'static str,
}

/// One row of a message list.
pub struct Row {
    pub uid: u32,
    pub folder: String,
    pub unread: bool,
    pub from: String,
    pub subject: String,
    pub href: String,
    pub date: String,
    pub size: String,
    pub attach: bool,
}

#[derive(Template)]
#[template(path = "folder.html")]
pub struct Folder {
    pub title: String,
    pub chrome: Option<Chrome>,
    /// The folder's IMAP name (empty for search results).
    pub folder: String,
    pub heading: String,
    pub note: Option<String>,
    pub empty: &'static str,
    pub rows: Vec<Row>,
    /// Search results come from several folders.
    pub show_folder: bool,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub page_info: String,
}

#[derive(Template)]
#[template(path = "folders.html")]
pub struct Folders {
    pub title: &'static str,
    pub chrome: Option<Chrome>,
    pub list: Vec<FolderLink>,
}

/// An attachment link.
pub struct AttachmentLink {
    pub href: String,
    pub name: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub title: String,
    pub chrome: Option<Chrome>,
    pub folder: String,
    pub uid: u32,
    pub csrf: String,
    pub v: MessageView,
    pub date: String,
    pub in_trash: bool,
    pub in_junk: bool,
    pub images: bool,
    pub move_targets: Vec<String>,
    pub reply_href: String,
    pub reply_all_href: String,
    pub forward_href: String,
    pub html_src: String,
    pub show_images_href: String,
    pub source_href: String,
    pub attachments: Vec<AttachmentLink>,
    pub att_prev: Option<String>,
    pub att_next: Option<String>,
}

/// The compose form's fields.
#[derive(Default, Clone, Debug)]
pub struct ComposeFields {
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub body: String,
    pub in_reply_to: String,
    pub references: String,
    pub reply_folder: String,
    pub reply_uid: String,
    pub forward_folder: String,
    pub forward_uid: String,
}

#[derive(Template)]
#[template(path = "compose.html")]
pub struct Compose {
    pub title: &'static str,
    pub chrome: Option<Chrome>,
    pub heading: &'static str,
    pub csrf: String,
    pub error: Option<String>,
    pub f: ComposeFields,
    /// Names of the original's attachments a forward carries.
    pub forwarded: Vec<String>,
}

/// Renders a template; a template error (which askama checks at compile time, so only a formatting
/// failure) becomes a plain message.
pub fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "rendering a page failed");
        "<!DOCTYPE html><title>Error</title><p id=\"error\">Something went wrong.</p>".to_owned()
    })
}

/// A size in the units people read.
pub fn human_size(n: u64) -> String {
    const K: u64 = 1024;
    if n < K {
        format!("{n} B")
    } else if n < K * K {
        format!("{} KB", n.div_ceil(K))
    } else {
        format!("{:.1} MB", n as f64 / (K * K) as f64)
    }
}

/// A date (seconds since the Unix epoch) as lists show it, in UTC.
pub fn show_date(ts: Option<i64>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// The label of a folder: `Inbox` for `INBOX`, the name otherwise.
pub fn folder_label(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "Inbox".to_owned()
    } else {
        name.to_owned()
    }
}

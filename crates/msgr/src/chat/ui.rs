//! Drawing `msgr chat`: the contact pane on the left, the focused conversation on the right,
//! a help bar and a status line at the bottom, dialogs on top. Reads the [`App`], changes
//! nothing.

use super::app::{
    human_size, status_word, App, ChatState, Conversation, Focus, Modal, Row, Speaker,
    TransferState, TransferView,
};
use msgr_client::Status;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Clear, LineGauge, List, ListItem, ListState, Paragraph, Wrap,
};
use ratatui::Frame;
use std::time::Instant;

/// Width of the contact pane.
const CONTACTS_WIDTH: u16 = 42;

/// The dot before a name, and its colour.
fn status_mark(s: Status) -> (&'static str, Color) {
    match s {
        Status::Online => ("●", Color::Green),
        Status::Busy | Status::OnThePhone => ("●", Color::Red),
        Status::Away | Status::BeRightBack | Status::OutToLunch | Status::Idle => {
            ("●", Color::Yellow)
        }
        Status::AppearOffline | Status::Offline => ("○", Color::DarkGray),
    }
}

pub fn draw(f: &mut Frame, app: &App, now: Instant) {
    let [header, body, help, notice] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(f, app, header);
    let [left, right] =
        Layout::horizontal([Constraint::Length(CONTACTS_WIDTH), Constraint::Min(20)]).areas(body);
    draw_contacts(f, app, left);
    draw_chat(f, app, right, now);
    f.render_widget(
        Paragraph::new(app.help_bar()).style(Style::new().fg(Color::Black).bg(Color::Cyan)),
        help,
    );
    if let Some(n) = &app.notice {
        f.render_widget(Paragraph::new(n.as_str()), notice);
    }
    if let Some(modal) = &app.modal {
        draw_modal(f, modal);
    } else if let Some(offer) = app.offers.front() {
        let text = format!(
            "{} wants to send you {} ({}).\n\nAccept it? (y/n)",
            app.name_of(&offer.from),
            offer.file_name,
            human_size(offer.size)
        );
        popup(f, "Incoming file", &text, 56, 7);
    }
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    let (mark, color) = status_mark(app.my_status);
    let mut spans = vec![
        Span::styled(format!("{mark} "), Style::new().fg(color)),
        Span::styled(
            app.my_name.clone(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" <{}> ({})", app.me, status_word(app.my_status))),
    ];
    if !app.my_message.is_empty() {
        spans.push(Span::styled(
            format!(" — {}", app.my_message),
            Style::new().add_modifier(Modifier::ITALIC),
        ));
    }
    if let Some((inbox, _)) = app.mail_unread {
        spans.push(Span::styled(
            format!("  ✉ {inbox} unread"),
            Style::new().fg(Color::Yellow),
        ));
    }
    if !app.connected {
        spans.push(Span::styled(
            "  [disconnected]",
            Style::new().fg(Color::Red),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_contacts(f: &mut Frame, app: &App, area: Rect) {
    let rows = app.rows();
    let items: Vec<ListItem> = rows
        .iter()
        .map(|row| match row {
            Row::Group {
                name,
                online,
                total,
                ..
            } => ListItem::new(Line::styled(
                format!("{name} ({online}/{total})"),
                Style::new().add_modifier(Modifier::BOLD),
            )),
            Row::Contact { email } => {
                let status = app.status_of(email);
                let (mark, color) = status_mark(status);
                let mut spans = vec![
                    Span::styled(format!(" {mark} "), Style::new().fg(color)),
                    Span::raw(app.name_of(email)),
                ];
                if !matches!(status, Status::Online | Status::Offline) {
                    spans.push(Span::styled(
                        format!(" ({})", status_word(status)),
                        Style::new().fg(Color::DarkGray),
                    ));
                }
                if app.is_blocked(email) {
                    spans.push(Span::styled(" [blocked]", Style::new().fg(Color::Red)));
                }
                let mut lines = vec![Line::from(spans)];
                if let Some(m) = app.messages.get(email).filter(|m| !m.is_empty()) {
                    lines.push(Line::styled(
                        format!("     {m}"),
                        Style::new()
                            .fg(Color::DarkGray)
                            .add_modifier(Modifier::ITALIC),
                    ));
                }
                ListItem::new(lines)
            }
            Row::Pending { email } => ListItem::new(Line::from(vec![
                Span::styled(" + ", Style::new().fg(Color::Cyan)),
                Span::raw(format!("{email} added you")),
            ])),
        })
        .collect();
    let focused = app.focus == Focus::Contacts && app.modal.is_none();
    let list = List::new(items)
        .block(pane("Contacts", focused))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(list, area, &mut state);
}

fn pane(title: &str, focused: bool) -> Block<'_> {
    let b = Block::new().borders(Borders::ALL).title(title);
    if focused {
        b.border_style(Style::new().fg(Color::Cyan))
    } else {
        b
    }
}

fn draw_chat(f: &mut Frame, app: &App, area: Rect, now: Instant) {
    let Some(conv) = app.focused() else {
        let text = if app.conversations.is_empty() {
            "No chats yet. Pick a contact and press Enter.".to_owned()
        } else {
            format!("{} chat(s) open: Tab to switch.", app.conversations.len())
        };
        let block = if app.conversations.is_empty() {
            pane("Chat", false)
        } else {
            Block::new().borders(Borders::ALL).title(tabs_title(app))
        };
        f.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let shown: Vec<&TransferView> = conv.transfers.iter().collect();
    let [messages, typing, transfers, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(shown.len() as u16),
        Constraint::Length(3),
    ])
    .areas(area);
    draw_messages(f, app, conv, messages);
    if let Some(who) = conv.typing_now(now) {
        f.render_widget(
            Paragraph::new(format!("{who} is typing…")).style(Style::new().fg(Color::DarkGray)),
            typing,
        );
    }
    for (i, t) in shown.iter().enumerate() {
        let row = Rect {
            y: transfers.y + i as u16,
            height: 1,
            ..transfers
        };
        draw_transfer(f, t, row);
    }
    let hint = match conv.state {
        ChatState::Open => "Message",
        ChatState::Opening => "Message (waiting for them to join)",
        ChatState::Idle => "Message (sending opens the chat)",
    };
    let focused = app.modal.is_none() && app.offers.is_empty();
    // Show the end of a long line.
    let width = input.width.saturating_sub(2) as usize;
    let chars: Vec<char> = conv.input.chars().collect();
    let visible: String = chars[chars.len().saturating_sub(width.saturating_sub(1))..]
        .iter()
        .collect();
    f.render_widget(
        Paragraph::new(visible.clone()).block(pane(hint, focused)),
        input,
    );
    if focused {
        f.set_cursor_position((input.x + 1 + visible.chars().count() as u16, input.y + 1));
    }
}

/// The conversations as one title line, the focused one highlighted and unread ones starred.
fn tabs_title(app: &App) -> Line<'static> {
    let mut spans = vec![Span::raw("Chats: ")];
    for (i, c) in app.conversations.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" │ "));
        }
        let name = app.name_of(&c.peer);
        let focused = app.focus == Focus::Chat(c.peer.clone());
        let (text, style) = match (focused, c.unread) {
            (true, _) => (name, Style::new().fg(Color::Black).bg(Color::Cyan)),
            (false, true) => (
                format!("*{name}"),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            (false, false) => (name, Style::new()),
        };
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

/// Splits `text` into pieces of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let chars: Vec<char> = line.chars().collect();
        if chars.is_empty() {
            out.push(String::new());
        }
        for piece in chars.chunks(width) {
            out.push(piece.iter().collect());
        }
    }
    out
}

fn draw_messages(f: &mut Frame, app: &App, conv: &Conversation, area: Rect) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(tabs_title(app))
        .title_top(
            Line::from(format!("{} <{}>", app.name_of(&conv.peer), conv.peer)).right_aligned(),
        );
    let inner = block.inner(area);
    f.render_widget(block, area);
    // Only the newest lines that fit, wrapped by hand so the newest is always on screen.
    let mut lines: Vec<Line> = Vec::new();
    for l in conv.lines.iter().rev() {
        let (prefix, style) = match &l.speaker {
            Speaker::Me => (format!("{}: ", app.my_name), Style::new().fg(Color::Cyan)),
            Speaker::Them(name) => (format!("{name}: "), Style::new().fg(Color::Green)),
            Speaker::Info => ("* ".to_owned(), Style::new().fg(Color::DarkGray)),
        };
        let pieces = wrap(&format!("{prefix}{}", l.text), inner.width as usize);
        for p in pieces.into_iter().rev() {
            lines.push(Line::styled(p, style));
        }
        if lines.len() >= inner.height as usize {
            break;
        }
    }
    lines.truncate(inner.height as usize);
    lines.reverse();
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn draw_transfer(f: &mut Frame, t: &TransferView, area: Rect) {
    let arrow = if t.sending { "↑" } else { "↓" };
    let ratio = if t.size == 0 {
        0.0
    } else {
        (t.transferred as f64 / t.size as f64).clamp(0.0, 1.0)
    };
    let label = match &t.state {
        TransferState::Waiting => format!("{arrow} {} waiting for them to accept", t.file_name),
        TransferState::Moving => format!(
            "{arrow} {} {}/{}",
            t.file_name,
            human_size(t.transferred),
            human_size(t.size)
        ),
        TransferState::Done => format!("{arrow} {} done ({})", t.file_name, human_size(t.size)),
        TransferState::Failed(e) => format!("{arrow} {} {e}", t.file_name),
    };
    let color = match t.state {
        TransferState::Failed(_) => Color::Red,
        TransferState::Done => Color::Green,
        _ => Color::Cyan,
    };
    f.render_widget(
        LineGauge::default()
            .label(label)
            .ratio(ratio)
            .filled_style(Style::new().fg(color))
            .unfilled_style(Style::new().fg(Color::DarkGray)),
        area,
    );
}

/// The keys, for the help dialog.
pub const HELP: &str = "\
Contacts
  ↑/↓ j/k    move            Enter      chat with the contact
  a          add a contact   d / Del    remove contact / empty group
  b          block/unblock   g          new group
  r          rename group    m          move contact to a group
  s          status (incl. appear offline)
  n          display name    p          personal message
  i          open the web inbox (signed in)
  Tab        next chat       q          quit
Chat
  Enter      send            Esc        back to contacts
  Tab/S-Tab  switch chats    Ctrl+W     close the chat
  Ctrl+F     send a file     Ctrl+X     cancel a transfer
Anywhere
  ? / F1     this help       Ctrl+C     quit
  y / n      accept or decline an incoming file";

fn draw_modal(f: &mut Frame, modal: &Modal) {
    match modal {
        Modal::Help => popup(
            f,
            "Keys (any key closes)",
            HELP,
            72,
            HELP.lines().count() as u16 + 2,
        ),
        Modal::Confirm { question, .. } => {
            popup(f, "Confirm", &format!("{question}\n\n(y/n)"), 56, 6)
        }
        Modal::Input { title, text, .. } => input_popup(f, title, text),
        Modal::Rename { text, .. } => input_popup(f, "Rename the group", text),
        Modal::Pick {
            title,
            options,
            selected,
            ..
        } => {
            let area = centered(f.area(), 40, options.len() as u16 + 2);
            f.render_widget(Clear, area);
            let items: Vec<ListItem> = options
                .iter()
                .map(|(label, _)| ListItem::new(label.as_str()))
                .collect();
            let mut state = ListState::default().with_selected(Some(*selected));
            f.render_stateful_widget(
                List::new(items)
                    .block(pane(title, true))
                    .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
                    .highlight_symbol("> "),
                area,
                &mut state,
            );
        }
    }
}

fn input_popup(f: &mut Frame, title: &str, text: &str) {
    let area = centered(f.area(), 60, 3);
    f.render_widget(Clear, area);
    let width = area.width.saturating_sub(3) as usize;
    let chars: Vec<char> = text.chars().collect();
    let visible: String = chars[chars.len().saturating_sub(width)..].iter().collect();
    f.render_widget(
        Paragraph::new(visible.clone()).block(pane(title, true)),
        area,
    );
    f.set_cursor_position((area.x + 1 + visible.chars().count() as u16, area.y + 1));
}

fn popup(f: &mut Frame, title: &str, text: &str, width: u16, height: u16) {
    let area = centered(f.area(), width, height);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(pane(title, true)),
        area,
    );
}

fn centered(outer: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(outer.width);
    let h = height.min(outer.height);
    Rect {
        x: outer.x + (outer.width - w) / 2,
        y: outer.y + (outer.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chat::app::{Action, Outcome};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use msgr_client::{ChatEvent, ChatId, Contact, Event, FileOffer, ListCache};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn app() -> App {
        let mut lists = ListCache::new("alice@x.com");
        lists.groups.insert("g1".into(), "Friends".into());
        lists.contacts.insert(
            "bob@x.com".into(),
            Contact {
                email: "bob@x.com".into(),
                name: "Bob".into(),
                lists: 1 | 2 | 8,
                groups: vec!["g1".into()],
                guid: None,
            },
        );
        lists.contacts.insert(
            "carol@x.com".into(),
            Contact {
                email: "carol@x.com".into(),
                name: "Carol".into(),
                lists: 1 | 4,
                groups: vec![],
                guid: None,
            },
        );
        let mut app = App::new("alice@x.com", "Alice", Status::Online, lists);
        let now = Instant::now();
        app.on_event(
            Event::Presence {
                email: "bob@x.com".into(),
                name: "Bobby".into(),
                status: Status::Away,
                caps: None,
            },
            now,
        );
        app.on_event(
            Event::PersonalMessage {
                email: "bob@x.com".into(),
                text: "gone fishing".into(),
            },
            now,
        );
        app
    }

    fn screen(app: &App, now: Instant) -> String {
        let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
        t.draw(|f| draw(f, app, now)).unwrap();
        let buf = t.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn contact_pane_shows_groups_status_and_personal_message() {
        let app = app();
        let s = screen(&app, Instant::now());
        assert!(s.contains("Friends (1/1)"), "{s}");
        assert!(s.contains("● Bobby (away)"), "{s}");
        assert!(s.contains("gone fishing"), "{s}");
        assert!(s.contains("○ Carol [blocked]"), "{s}");
        assert!(s.contains("No group (0/1)"), "{s}");
        assert!(s.contains("Alice <alice@x.com> (online)"), "{s}");
        assert!(s.contains("? help"), "{s}");
    }

    #[test]
    fn chat_pane_shows_messages_typing_progress_and_prompts() {
        let mut app = app();
        let now = Instant::now();
        let chat = ChatId(1);
        for event in [
            ChatEvent::Joined {
                email: "bob@x.com".into(),
                name: "Bobby".into(),
            },
            ChatEvent::Message {
                from: "bob@x.com".into(),
                name: "Bobby".into(),
                text: "how are you?".into(),
                format: None,
            },
            ChatEvent::Typing {
                from: "bob@x.com".into(),
            },
        ] {
            app.on_event(Event::Chat { chat, event }, now);
        }
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
        app.on_outcome(Outcome::TransferStarted {
            chat,
            cookie: "9".into(),
            file_name: "notes.txt".into(),
            size: 4096,
            sending: true,
        });
        app.on_outcome(Outcome::Progress {
            cookie: "9".into(),
            transferred: 2048,
            total: 4096,
        });
        let s = screen(&app, now);
        assert!(s.contains("Bobby: how are you?"), "{s}");
        assert!(s.contains("Bobby is typing…"), "{s}");
        assert!(s.contains("↑ notes.txt 2.0 KB/4.0 KB"), "{s}");
        assert!(s.contains("Enter send"), "{s}");
        // An offer puts up the accept prompt.
        app.on_event(
            Event::Chat {
                chat,
                event: ChatEvent::FileOffered(FileOffer {
                    chat,
                    from: "bob@x.com".into(),
                    cookie: "10".into(),
                    file_name: "cat.jpg".into(),
                    size: 10,
                }),
            },
            now,
        );
        let s = screen(&app, now);
        assert!(s.contains("Bobby wants to send you cat.jpg (10 B)"), "{s}");
        assert!(s.contains("Accept it? (y/n)"), "{s}");
        let a = app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::NONE), now);
        assert!(matches!(a.as_slice(), [Action::DeclineFile(_)]));
        // The help overlay.
        app.on_key(KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE), now);
        let s = screen(&app, now);
        assert!(s.contains("Keys (any key closes)"), "{s}");
        assert!(s.contains("Ctrl+F     send a file"), "{s}");
    }

    #[test]
    fn wrap_splits_long_and_multi_line_text() {
        assert_eq!(wrap("abcdef", 4), vec!["abcd", "ef"]);
        assert_eq!(wrap("a\n\nb", 4), vec!["a", "", "b"]);
    }
}

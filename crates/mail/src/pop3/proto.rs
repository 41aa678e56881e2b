//! POP3 without IO: command lines in, typed commands out; responses and multi-line bodies formatted
//! into a byte buffer.
//!
//! - [`LineDecoder`] finds command lines in whatever the socket has delivered so far. It never
//!   allocates: the caller owns a fixed buffer, and the cap ([`MAX_LINE`]) is checked before a line is
//!   handed out, so a 10 MB "line" is discarded as it arrives and answered once.
//! - [`parse`] turns one line (CRLF removed) into a [`Command`] or a [`ParseError`] the session answers
//!   with `-ERR`.
//! - [`ok`], [`err`] and [`DotStuffer`] format responses: RFC 1939 §3 status lines and multi-line
//!   responses, whose lines starting with `.` are byte-stuffed and which end with `.` alone on a line.
//!
//! Protocol references: RFC 1939 (POP3), RFC 2449 (`CAPA`, response codes), RFC 2595 (`STLS`), RFC 5034
//! (`AUTH`).

use std::fmt;

/// Longest command line accepted, CRLF excluded. RFC 2449 §4 limits a client's command line to 255
/// octets including CRLF; we accept twice that, because being liberal costs nothing here and a client
/// that sends a long user name or SASL response should hear about its password, not about its line.
pub const MAX_LINE: usize = 510;

/// Longest argument of the RFC 1939 commands (RFC 2449 §4: "each argument may be up to 40 characters").
/// The user name, password and SASL response are exempt: addresses can be up to 254 octets long and
/// passwords are whatever the user chose; the line cap bounds them.
pub const MAX_ARG: usize = 40;

/// What [`LineDecoder::decode`] found at the start of the buffer. `consumed` bytes are to be dropped
/// from the front of the buffer in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line: `buf[..len]` is the line without its CRLF.
    Line { len: usize, consumed: usize },
    /// A line longer than [`MAX_LINE`] has ended; it was discarded (possibly over several calls).
    TooLong { consumed: usize },
    /// A line ended with a bare LF. RFC 1939 requires CRLF; the line is refused rather than guessed at.
    BareLf { consumed: usize },
    /// No complete line yet: read more. `consumed` is non-zero while an over-long line is being
    /// discarded.
    Incomplete { consumed: usize },
}

/// Splits a byte stream into command lines, remembering across calls whether it is in the middle of
/// discarding an over-long line. Give it the unconsumed bytes each time; the same input gives the same
/// events however it is split into reads.
#[derive(Debug, Default)]
pub struct LineDecoder {
    discarding: bool,
}

impl LineDecoder {
    pub fn new() -> LineDecoder {
        LineDecoder::default()
    }

    /// The buffer size a caller needs so that any acceptable line fits: the line, its CRLF.
    pub const MIN_BUFFER: usize = MAX_LINE + 2;

    /// Looks for the next line at the start of `buf`.
    pub fn decode(&mut self, buf: &[u8]) -> LineEvent {
        // Only the first MAX_LINE + 2 bytes can hold the end of an acceptable line; looking further
        // would let a long line cost time proportional to the whole buffer on every read.
        let window = &buf[..buf.len().min(Self::MIN_BUFFER)];
        match window.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let consumed = lf + 1;
                if self.discarding {
                    self.discarding = false;
                    LineEvent::TooLong { consumed }
                } else if lf > 0 && window[lf - 1] == b'\r' {
                    LineEvent::Line {
                        len: lf - 1,
                        consumed,
                    }
                } else {
                    LineEvent::BareLf { consumed }
                }
            }
            None if self.discarding || window.len() >= Self::MIN_BUFFER => {
                // Keep a trailing CR: it may be the first half of the CRLF that ends the long line,
                // and it must not be mistaken for the start of the next one. Anything else goes.
                self.discarding = true;
                let keep = usize::from(window.last() == Some(&b'\r'));
                LineEvent::Incomplete {
                    consumed: window.len() - keep,
                }
            }
            None => LineEvent::Incomplete { consumed: 0 },
        }
    }
}

/// A POP3 command, parsed. Message numbers are as the client sent them (1-based); the session checks
/// them against its snapshot of the maildrop.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 §7): names the maildrop; the password follows with `PASS`.
    User(String),
    /// `PASS string`: the rest of the line after one space, spaces included (RFC 1939 §7 allows a
    /// server to treat them as part of the password, and passwords do contain spaces).
    Pass(String),
    /// `AUTH mechanism [initial-response]` (RFC 5034); `AUTH` alone lists the mechanisms, as many
    /// servers do for older clients.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    /// `STAT`: message count and total size of the maildrop.
    Stat,
    /// `LIST [msg]`: the size of one message or of each.
    List(Option<u32>),
    /// `RETR msg`: the whole message.
    Retr(u32),
    /// `DELE msg`: marks a message deleted; it is removed at `QUIT`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`: unmarks every message marked deleted.
    Rset,
    /// `TOP msg n`: the header and the first `n` lines of the body.
    Top(u32, u32),
    /// `UIDL [msg]`: the unique id of one message or of each.
    Uidl(Option<u32>),
    /// `QUIT`: in the transaction state, applies the deletions.
    Quit,
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595): start TLS on this connection.
    Stls,
}

// By hand so a password never reaches a log through `{:?}`.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(u) => write!(f, "User({u:?})"),
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::Auth { mechanism, initial } => write!(
                f,
                "Auth({mechanism:?}, {})",
                if initial.is_some() { "<redacted>" } else { "-" }
            ),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => write!(f, "List({n:?})"),
            Command::Retr(n) => write!(f, "Retr({n})"),
            Command::Dele(n) => write!(f, "Dele({n})"),
            Command::Noop => f.write_str("Noop"),
            Command::Rset => f.write_str("Rset"),
            Command::Top(n, l) => write!(f, "Top({n}, {l})"),
            Command::Uidl(n) => write!(f, "Uidl({n:?})"),
            Command::Quit => f.write_str("Quit"),
            Command::Capa => f.write_str("Capa"),
            Command::Stls => f.write_str("Stls"),
        }
    }
}

/// Why a command line was refused. Each is answered with `-ERR` and its message; none ends the session
/// on its own (the session counts them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command")]
    Empty,
    #[error("NUL or control character in command")]
    ControlChar,
    #[error("unknown command")]
    Unknown,
    /// The command exists but its arguments do not fit; the text is its syntax.
    #[error("syntax: {0}")]
    Syntax(&'static str),
    #[error("argument too long")]
    ArgTooLong,
    #[error("argument is not valid UTF-8")]
    NotUtf8,
}

/// Parses one command line, CRLF already removed. Keywords are case-insensitive (RFC 1939 §3); runs
/// of spaces between arguments and trailing spaces are tolerated.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    // NUL and the other C0 controls (TAB aside) have no place in a command and are the usual sign of a
    // confused or hostile peer; refusing them here keeps them out of user names and logs.
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ParseError::ControlChar);
    }
    let start = line
        .iter()
        .position(|&b| !is_space(b))
        .ok_or(ParseError::Empty)?;
    let line = &line[start..];
    let kw_end = line.iter().position(|&b| is_space(b)).unwrap_or(line.len());
    let keyword = &line[..kw_end];
    // RFC 2449 §4: keywords are three or four characters.
    if !(3..=4).contains(&keyword.len()) || !keyword.iter().all(u8::is_ascii_alphabetic) {
        return Err(ParseError::Unknown);
    }
    let mut kw = [0u8; 4];
    kw[..keyword.len()].copy_from_slice(keyword);
    kw.make_ascii_uppercase();
    // Everything after the single space that ends the keyword, for PASS.
    let rest = line.get(kw_end + 1..).unwrap_or(&[]);
    let args = Args::new(&line[kw_end..]);
    match &kw[..keyword.len()] {
        b"USER" => {
            let [name] = args.exactly::<1>("USER name")?;
            Ok(Command::User(utf8(name)?.to_owned()))
        }
        b"PASS" => {
            if rest.is_empty() {
                return Err(ParseError::Syntax("PASS string"));
            }
            Ok(Command::Pass(utf8(rest)?.to_owned()))
        }
        b"AUTH" => {
            let (mechanism, initial) =
                match args.up_to_two("AUTH [mechanism [initial-response]]")? {
                    (None, _) => (None, None),
                    (Some(m), i) => (
                        Some(short(m)?.to_ascii_uppercase()),
                        i.map(|i| utf8(i).map(str::to_owned)).transpose()?,
                    ),
                };
            Ok(Command::Auth { mechanism, initial })
        }
        b"STAT" => args.none("STAT").map(|()| Command::Stat),
        b"LIST" => args.optional_number("LIST [msg]").map(Command::List),
        b"RETR" => {
            let [n] = args.exactly::<1>("RETR msg")?;
            Ok(Command::Retr(number(n, "RETR msg")?))
        }
        b"DELE" => {
            let [n] = args.exactly::<1>("DELE msg")?;
            Ok(Command::Dele(number(n, "DELE msg")?))
        }
        b"NOOP" => args.none("NOOP").map(|()| Command::Noop),
        b"RSET" => args.none("RSET").map(|()| Command::Rset),
        b"TOP" => {
            let [n, lines] = args.exactly::<2>("TOP msg n")?;
            Ok(Command::Top(
                number(n, "TOP msg n")?,
                number(lines, "TOP msg n")?,
            ))
        }
        b"UIDL" => args.optional_number("UIDL [msg]").map(Command::Uidl),
        b"QUIT" => args.none("QUIT").map(|()| Command::Quit),
        b"CAPA" => args.none("CAPA").map(|()| Command::Capa),
        b"STLS" => args.none("STLS").map(|()| Command::Stls),
        _ => Err(ParseError::Unknown),
    }
}

/// Zero, one or two arguments (`AUTH`).
type UpToTwo<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The space-separated arguments after a keyword.
struct Args<'a>(&'a [u8]);

impl<'a> Args<'a> {
    fn new(after_keyword: &'a [u8]) -> Args<'a> {
        Args(after_keyword)
    }

    fn iter(&self) -> impl Iterator<Item = &'a [u8]> {
        // Tabs count as spaces: liberal in what we accept.
        self.0.split(|&b| is_space(b)).filter(|a| !a.is_empty())
    }

    fn none(&self, usage: &'static str) -> Result<(), ParseError> {
        match self.iter().next() {
            None => Ok(()),
            Some(_) => Err(ParseError::Syntax(usage)),
        }
    }

    fn exactly<const N: usize>(&self, usage: &'static str) -> Result<[&'a [u8]; N], ParseError> {
        let mut out: [&[u8]; N] = [&[]; N];
        let mut it = self.iter();
        for slot in out.iter_mut() {
            *slot = it.next().ok_or(ParseError::Syntax(usage))?;
        }
        match it.next() {
            None => Ok(out),
            Some(_) => Err(ParseError::Syntax(usage)),
        }
    }

    fn up_to_two(&self, usage: &'static str) -> Result<UpToTwo<'a>, ParseError> {
        let mut it = self.iter();
        let out = (it.next(), it.next());
        match it.next() {
            None => Ok(out),
            Some(_) => Err(ParseError::Syntax(usage)),
        }
    }

    fn optional_number(&self, usage: &'static str) -> Result<Option<u32>, ParseError> {
        let mut it = self.iter();
        let n = it.next().map(|n| number(n, usage)).transpose()?;
        match it.next() {
            None => Ok(n),
            Some(_) => Err(ParseError::Syntax(usage)),
        }
    }
}

/// Separators between a keyword and its arguments: RFC 1939 says one space; tabs and runs of either
/// are accepted too.
fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A decimal number: digits only (no sign), at most [`MAX_ARG`] of them, and it must fit in `u32`.
fn number(arg: &[u8], usage: &'static str) -> Result<u32, ParseError> {
    short(arg)?;
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Syntax(usage));
    }
    // Digits only, so the only failure left is overflow: no message has such a number.
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::Syntax(usage))
}

fn short(arg: &[u8]) -> Result<&str, ParseError> {
    if arg.len() > MAX_ARG {
        return Err(ParseError::ArgTooLong);
    }
    utf8(arg)
}

fn utf8(arg: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(arg).map_err(|_| ParseError::NotUtf8)
}

/// RFC 2449 §8 extended response codes, in brackets right after `-ERR`: they tell a client whether to
/// retry, ask the user, or give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespCode {
    /// RFC 2449 §8.1.2: the maildrop is locked by another session.
    InUse,
    /// RFC 3206 §4: the problem is the credentials (or using them without TLS), not the server.
    Auth,
    /// RFC 3206 §5: a temporary server-side failure; trying again later may work.
    SysTemp,
    /// RFC 3206 §5: a permanent server-side failure.
    SysPerm,
}

impl RespCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::InUse => "IN-USE",
            RespCode::Auth => "AUTH",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
        }
    }
}

/// Appends `+OK text` CRLF (just `+OK` when `text` is empty).
pub fn ok(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+OK");
    if !text.is_empty() {
        out.push(b' ');
        push_text(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `-ERR [code] text` CRLF.
pub fn err(out: &mut Vec<u8>, code: Option<RespCode>, text: &str) {
    out.extend_from_slice(b"-ERR");
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.as_str().as_bytes());
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        push_text(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `+ text` CRLF: a SASL continuation (RFC 5034 §4), `text` being base64 (empty for PLAIN).
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Status text never contains a line break, whatever the caller passes (an echoed argument, an error
/// message): a CR or LF in it would let the text forge a second response.
fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// Appends one line of a multi-line response (its CRLF included), byte-stuffed: for lines the server
/// composes itself (`LIST`, `UIDL`, `CAPA`).
pub fn line(out: &mut Vec<u8>, text: &str) {
    if text.starts_with('.') {
        out.push(b'.');
    }
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Appends the end of a multi-line response.
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b".\r\n");
}

/// Turns a message into the body of a multi-line response, in as many pieces as the caller likes:
/// lines starting with `.` get a second `.` (RFC 1939 §3), bare LF and bare CR become CRLF (the
/// response is in lines of CRLF whatever the stored bytes use), and [`DotStuffer::finish`] closes the
/// last line and writes the terminating `.`. For `TOP` it stops after the header and a number of body
/// lines.
#[derive(Debug)]
pub struct DotStuffer {
    /// At the start of a line (nothing of it written yet).
    line_start: bool,
    /// The previous byte was a CR whose line end is not written yet (it might be followed by LF).
    pending_cr: bool,
    /// The body has begun (the empty line after the header has been written).
    in_body: bool,
    /// The current line is empty so far (to find the header's end).
    line_empty: bool,
    /// Body lines still to write, `None` for all of them.
    body_lines: Option<u32>,
    /// Nothing more will be written (the `TOP` limit was reached).
    done: bool,
}

impl DotStuffer {
    /// The whole message (`RETR`).
    pub fn new() -> DotStuffer {
        DotStuffer::with_body_lines(None)
    }

    /// The header and the first `n` body lines (`TOP msg n`), or everything with `None`.
    pub fn with_body_lines(n: Option<u32>) -> DotStuffer {
        DotStuffer {
            line_start: true,
            pending_cr: false,
            in_body: false,
            line_empty: true,
            body_lines: n,
            done: false,
        }
    }

    /// Nothing more will be written before the terminating `.` (the `TOP` limit was reached): the
    /// caller may stop reading the message.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Writes the next piece of the message into `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // Each input byte becomes at most two output bytes (a stuffed dot, or LF → CRLF).
        out.reserve(input.len() + input.len() / 8 + 4);
        for &b in input {
            if self.done {
                return;
            }
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if b == b'\n' {
                    continue;
                }
                if self.done {
                    return;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => self.end_line(out),
                _ => {
                    if self.line_start && b == b'.' {
                        out.push(b'.');
                    }
                    self.line_start = false;
                    self.line_empty = false;
                    out.push(b);
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        if self.in_body {
            if let Some(left) = self.body_lines.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.done = true;
                }
            }
        } else if self.line_empty {
            // The empty line that ends the header; TOP msg 0 stops right after it.
            self.in_body = true;
            if self.body_lines == Some(0) {
                self.done = true;
            }
        }
        self.line_start = true;
        self.line_empty = true;
    }

    /// Ends the response: terminates an unfinished last line and writes `.` CRLF.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if !self.done {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
            } else if !self.line_start {
                self.end_line(out);
            }
        }
        end(out);
    }
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

/// Checks this module's invariants on arbitrary bytes: the body of the `pop3_proto` fuzz target
/// (`fuzz/`), run by the unit tests on seeds so that it always builds. The first byte picks a chunk size.
///
/// - The decoder reports the same lines whatever the chunking and never leaves more than
///   [`LineDecoder::MIN_BUFFER`] bytes unconsumed.
/// - [`parse`] returns for every line.
/// - A message through [`DotStuffer`] comes back, once a client has removed the stuffing, as the input
///   with every line ending made CRLF; no body line is a lone `.`.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) + 1;
    let whole = fuzz_lines(rest, rest.len().max(1));
    assert_eq!(fuzz_lines(rest, chunk), whole);
    for line in whole.iter().filter_map(|l| l.as_deref()) {
        let _ = parse(line);
    }

    let mut stuffer = DotStuffer::new();
    let mut out = Vec::new();
    for piece in rest.chunks(chunk) {
        stuffer.push(piece, &mut out);
    }
    stuffer.finish(&mut out);
    let body = out
        .strip_suffix(b".\r\n")
        .expect("a multi-line response ends with a lone dot");
    let mut unstuffed = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(
            line.ends_with(b"\r\n") && line != b".\r\n",
            "bad line {line:?}"
        );
        unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    // The reference: every CRLF, lone CR and lone LF is a line end, and the last line is ended.
    let mut want = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\r' if rest.get(i + 1) == Some(&b'\n') => {
                want.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => want.extend_from_slice(b"\r\n"),
            b => want.push(b),
        }
        i += 1;
    }
    if !want.is_empty() && !want.ends_with(b"\r\n") {
        want.extend_from_slice(b"\r\n");
    }
    assert_eq!(unstuffed, want);
}

/// The decoder's lines (`None` for a refused one) when `data` arrives in pieces of `chunk` bytes.
fn fuzz_lines(data: &[u8], chunk: usize) -> Vec<Option<Vec<u8>>> {
    let mut dec = LineDecoder::new();
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let consumed = match dec.decode(&buf) {
                LineEvent::Line { len, consumed } => {
                    lines.push(Some(buf[..len].to_vec()));
                    consumed
                }
                LineEvent::TooLong { consumed } | LineEvent::BareLf { consumed } => {
                    lines.push(None);
                    consumed
                }
                LineEvent::Incomplete { consumed: 0 } => break,
                LineEvent::Incomplete { consumed } => consumed,
            };
            buf.drain(..consumed);
        }
        assert!(buf.len() < LineDecoder::MIN_BUFFER);
    }
    lines
}

#[cfg(test)]
mod tests;

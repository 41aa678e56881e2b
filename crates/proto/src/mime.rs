//! MIME payloads carried by `MSG`: a header block, an empty line, then a body.
//!
//! - [`MimeMessage`] parses a payload without copying: header names and values borrow from
//!   the payload bytes, and the body is the raw remainder.
//! - [`MimeBuilder`] writes one with CRLF line endings and `MIME-Version: 1.0` first, which is
//!   how the official servers and clients laid them out.
//! - Typed views ([`Profile`], [`InitialEmailNotification`], [`EmailNotification`],
//!   [`TextMessage`], [`TypingNotification`]) build the payloads the server sends and parse the
//!   ones clients send.
//!
//! Parsing is lenient where real clients differ (bare LF line endings, any header order, header
//! names in any case) and strict where ambiguity would hurt (a payload without an empty line
//! after the headers is rejected instead of being guessed at).

use std::net::IpAddr;

use thiserror::Error;

use crate::urlenc;

/// Why a payload is not a usable MIME message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MimeError {
    /// No empty line ends the header block.
    #[error("MIME header block has no terminating empty line")]
    NoHeaderEnd,
    /// The header block is not UTF-8.
    #[error("MIME headers are not valid UTF-8")]
    NotUtf8Headers,
    /// A header line has no `:` or an empty or malformed name.
    #[error("malformed MIME header on line {line}")]
    MalformedHeader {
        /// 1-based line number within the header block (or within the body for
        /// [`MimeMessage::body_fields`]).
        line: usize,
    },
    /// A body that must be text is not valid in its declared charset.
    #[error("MIME body is not valid UTF-8")]
    NotUtf8Body,
    /// A typed view was asked to parse a message of another content type.
    #[error("expected content type {expected}")]
    WrongContentType { expected: &'static str },
    /// A field a typed view needs is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field a typed view needs has a value it cannot interpret.
    #[error("invalid value for field {0}")]
    InvalidField(&'static str),
}

/// Trims the spaces and tabs that may surround a header value. Unicode whitespace such as
/// U+00A0 is part of the value (it can be a deliberate character in a friendly name).
fn trim_ws(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Splits `Name: value` lines into pairs; `first_line` numbers lines in errors.
fn parse_fields(text: &str, first_line: usize) -> Result<Vec<(&str, &str)>, MimeError> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let malformed = MimeError::MalformedHeader {
            line: first_line + i,
        };
        let (name, value) = line.split_once(':').ok_or(malformed)?;
        // Names are RFC 822 tokens: no whitespace or control characters. A leading space
        // would be header folding, which MSN never used; rejecting it keeps parsing
        // borrow-only.
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(malformed);
        }
        out.push((name, trim_ws(value)));
    }
    Ok(out)
}

/// Finds the end of the header block: the first empty line, with CRLF or bare LF endings.
/// Returns (header text length, body start).
fn split_header_block(payload: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    loop {
        let rest = payload.get(line_start..)?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..nl];
        if line.is_empty() || line == b"\r" {
            return Some((line_start, line_start + nl + 1));
        }
        line_start += nl + 1;
    }
}

/// A parsed `MSG` payload that borrows from the payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeMessage<'a> {
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

impl<'a> MimeMessage<'a> {
    /// Parses `payload`; the header block ends at the first empty line.
    pub fn parse(payload: &'a [u8]) -> Result<Self, MimeError> {
        let (header_len, body_start) = split_header_block(payload).ok_or(MimeError::NoHeaderEnd)?;
        let head = payload.get(..header_len).ok_or(MimeError::NoHeaderEnd)?;
        let body = payload.get(body_start..).ok_or(MimeError::NoHeaderEnd)?;
        let head = std::str::from_utf8(head).map_err(|_| MimeError::NotUtf8Headers)?;
        let headers = parse_fields(head, 1)?;
        Ok(MimeMessage { headers, body })
    }

    /// All headers in wire order, values trimmed of surrounding spaces and tabs.
    pub fn headers(&self) -> &[(&'a str, &'a str)] {
        &self.headers
    }

    /// The first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }

    /// The bytes after the header block.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The media type of `Content-Type` without parameters, e.g. `text/plain`.
    pub fn content_type(&self) -> Option<&'a str> {
        let v = self.header("Content-Type")?;
        let ty = v.split(';').next().map(trim_ws).unwrap_or(v);
        Some(ty)
    }

    /// Whether the media type is `ty`, ignoring ASCII case as MIME requires.
    pub fn is_content_type(&self, ty: &str) -> bool {
        self.content_type()
            .is_some_and(|t| t.eq_ignore_ascii_case(ty))
    }

    /// The `charset` parameter of `Content-Type`, without quotes.
    pub fn charset(&self) -> Option<&'a str> {
        let v = self.header("Content-Type")?;
        v.split(';').skip(1).find_map(|param| {
            let (k, val) = param.split_once('=')?;
            trim_ws(k)
                .eq_ignore_ascii_case("charset")
                .then(|| trim_ws(val).trim_matches('"'))
        })
    }

    /// Reads the body as `Name: value` lines, the layout of e-mail notifications and
    /// invitations. Empty lines are skipped.
    pub fn body_fields(&self) -> Result<Vec<(&'a str, &'a str)>, MimeError> {
        let text = std::str::from_utf8(self.body).map_err(|_| MimeError::NotUtf8Body)?;
        parse_fields(text, 1)
    }

    /// The body as text, honouring `charset`: UTF-8 when declared, otherwise ISO-8859-1, which
    /// is what a plain `text/plain` meant to the official clients.
    pub fn body_text(&self) -> Result<String, MimeError> {
        let utf8 = self
            .charset()
            .is_some_and(|c| c.eq_ignore_ascii_case("UTF-8") || c.eq_ignore_ascii_case("UTF8"));
        if utf8 {
            std::str::from_utf8(self.body)
                .map(str::to_owned)
                .map_err(|_| MimeError::NotUtf8Body)
        } else {
            Ok(self.body.iter().map(|&b| char::from(b)).collect())
        }
    }

    fn expect_type(&self, expected: &'static str) -> Result<(), MimeError> {
        if self.is_content_type(expected) {
            Ok(())
        } else {
            Err(MimeError::WrongContentType { expected })
        }
    }

    fn required(&self, name: &'static str) -> Result<&'a str, MimeError> {
        self.header(name).ok_or(MimeError::MissingField(name))
    }
}

/// Writes a MIME payload: `MIME-Version: 1.0`, the headers in insertion order, an empty line,
/// then the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MimeBuilder {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Replaces characters that would end a header line early or split it differently when
/// parsed back. Values come from users (names, subjects), so this is what stops a value from
/// injecting its own headers.
fn sanitize(s: &str, is_name: bool) -> String {
    s.chars()
        .map(|c| match c {
            '\r' | '\n' => ' ',
            ':' | ' ' | '\t' if is_name => '-',
            c if is_name && c.is_control() => '-',
            c => c,
        })
        .collect()
}

impl MimeBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a header. `MIME-Version` is always written first by [`MimeBuilder::to_bytes`],
    /// so an explicit one is ignored. CR and LF are replaced by spaces (and `:` or whitespace
    /// in names by `-`) so that no input can break the header block.
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        if !name.eq_ignore_ascii_case("MIME-Version") {
            self.headers
                .push((sanitize(name, true), sanitize(value.as_ref(), false)));
        }
        self
    }

    /// Sets the body, replacing any earlier one.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The payload bytes, with CRLF line endings.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = 19
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + 2
            + self.body.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Writes `Name: value\r\n` lines for a body such as an e-mail notification's.
fn fields_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(sanitize(name, true).as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(sanitize(value, false).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn lookup<'a>(fields: &[(&'a str, &'a str)], name: &'static str) -> Result<&'a str, MimeError> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
        .ok_or(MimeError::MissingField(name))
}

fn parse_num<T: std::str::FromStr>(value: &str, field: &'static str) -> Result<T, MimeError> {
    value.parse().map_err(|_| MimeError::InvalidField(field))
}

/// `0`/`1` flags as the profile writes them; any other number counts as set.
fn parse_flag(value: &str, field: &'static str) -> Result<bool, MimeError> {
    parse_num::<u32>(value, field).map(|n| n != 0)
}

/// The value of the profile's `ClientPort` field for a client connecting from `port`.
///
/// The official server wrote the port with its two bytes swapped (network byte order read as
/// a little-endian number), e.g. port 1026 appears as `ClientPort: 516`. Clients undo the
/// swap, so msgr reproduces it. The swap is its own inverse.
pub const fn client_port_field(port: u16) -> u16 {
    port.swap_bytes()
}

/// The `text/x-msmsgsprofile` message the notification server sends right after sign-in.
/// All fields travel as headers; the body is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Sign-in time, Unix seconds.
    pub login_time: u64,
    /// Whether the account has a Hotmail inbox (enables the mail notifications).
    pub email_enabled: bool,
    pub member_id_high: u32,
    /// Low half of the Passport member ID; the official server printed it signed.
    pub member_id_low: i32,
    /// Windows LCID of the account's language, e.g. 1033 for en-US.
    pub lang_preference: u32,
    pub preferred_email: String,
    pub country: String,
    pub postal_code: String,
    pub gender: String,
    pub kid: bool,
    /// Empty on the wire when unknown.
    pub age: Option<u32>,
    pub bday_pre: u32,
    pub birthday: u32,
    pub wallet: bool,
    pub flags: u32,
    /// Passport site ID of Messenger (507).
    pub sid: u32,
    /// Passport key version.
    pub kv: u32,
    /// The Passport `MSPAuth` cookie, used by clients to open Hotmail without a new login.
    pub mspauth: String,
    /// The client's address as the server saw it.
    pub client_ip: IpAddr,
    /// The client's source port as the server saw it (unswapped; see [`client_port_field`]).
    pub client_port: u16,
}

impl Profile {
    pub const CONTENT_TYPE: &'static str = "text/x-msmsgsprofile";

    /// The payload, fields in the order the official server used.
    pub fn to_payload(&self) -> Vec<u8> {
        MimeBuilder::new()
            .header("Content-Type", "text/x-msmsgsprofile; charset=UTF-8")
            .header("LoginTime", self.login_time.to_string())
            .header("EmailEnabled", u8::from(self.email_enabled).to_string())
            .header("MemberIdHigh", self.member_id_high.to_string())
            .header("MemberIdLow", self.member_id_low.to_string())
            .header("lang_preference", self.lang_preference.to_string())
            .header("preferredEmail", &self.preferred_email)
            .header("country", &self.country)
            .header("PostalCode", &self.postal_code)
            .header("Gender", &self.gender)
            .header("Kid", u8::from(self.kid).to_string())
            .header("Age", self.age.map(|a| a.to_string()).unwrap_or_default())
            .header("BDayPre", self.bday_pre.to_string())
            .header("Birthday", self.birthday.to_string())
            .header("Wallet", u8::from(self.wallet).to_string())
            .header("Flags", self.flags.to_string())
            .header("sid", self.sid.to_string())
            .header("kv", self.kv.to_string())
            .header("MSPAuth", &self.mspauth)
            .header("ClientIP", self.client_ip.to_string())
            .header(
                "ClientPort",
                client_port_field(self.client_port).to_string(),
            )
            .to_bytes()
    }

    pub fn from_message(m: &MimeMessage<'_>) -> Result<Self, MimeError> {
        m.expect_type(Self::CONTENT_TYPE)?;
        let age = m.required("Age")?;
        Ok(Profile {
            login_time: parse_num(m.required("LoginTime")?, "LoginTime")?,
            email_enabled: parse_flag(m.required("EmailEnabled")?, "EmailEnabled")?,
            member_id_high: parse_num(m.required("MemberIdHigh")?, "MemberIdHigh")?,
            member_id_low: parse_num(m.required("MemberIdLow")?, "MemberIdLow")?,
            lang_preference: parse_num(m.required("lang_preference")?, "lang_preference")?,
            preferred_email: m.required("preferredEmail")?.to_owned(),
            country: m.required("country")?.to_owned(),
            postal_code: m.required("PostalCode")?.to_owned(),
            gender: m.required("Gender")?.to_owned(),
            kid: parse_flag(m.required("Kid")?, "Kid")?,
            age: if age.is_empty() {
                None
            } else {
                Some(parse_num(age, "Age")?)
            },
            bday_pre: parse_num(m.required("BDayPre")?, "BDayPre")?,
            birthday: parse_num(m.required("Birthday")?, "Birthday")?,
            wallet: parse_flag(m.required("Wallet")?, "Wallet")?,
            flags: parse_num(m.required("Flags")?, "Flags")?,
            sid: parse_num(m.required("sid")?, "sid")?,
            kv: parse_num(m.required("kv")?, "kv")?,
            mspauth: m.required("MSPAuth")?.to_owned(),
            client_ip: parse_num(m.required("ClientIP")?, "ClientIP")?,
            client_port: client_port_field(parse_num(m.required("ClientPort")?, "ClientPort")?),
        })
    }
}

/// `text/x-msmsgsinitialemailnotification`: the unread-mail summary sent after sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialEmailNotification {
    pub inbox_unread: u32,
    /// Unread messages in folders other than the inbox.
    pub folders_unread: u32,
    pub inbox_url: String,
    pub folders_url: String,
    /// Where the client posts the `URL` login form to open the mailbox.
    pub post_url: String,
}

impl InitialEmailNotification {
    pub const CONTENT_TYPE: &'static str = "text/x-msmsgsinitialemailnotification";

    /// The payload; the body ends with an empty line, which makes the seed's example exactly
    /// its declared 221 bytes.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut body = fields_body(&[
            ("Inbox-Unread", &self.inbox_unread.to_string()),
            ("Folders-Unread", &self.folders_unread.to_string()),
            ("Inbox-URL", &self.inbox_url),
            ("Folders-URL", &self.folders_url),
            ("Post-URL", &self.post_url),
        ]);
        body.extend_from_slice(b"\r\n");
        MimeBuilder::new()
            .header(
                "Content-Type",
                "text/x-msmsgsinitialemailnotification; charset=UTF-8",
            )
            .body(body)
            .to_bytes()
    }

    pub fn from_message(m: &MimeMessage<'_>) -> Result<Self, MimeError> {
        m.expect_type(Self::CONTENT_TYPE)?;
        let f = m.body_fields()?;
        Ok(InitialEmailNotification {
            inbox_unread: parse_num(lookup(&f, "Inbox-Unread")?, "Inbox-Unread")?,
            folders_unread: parse_num(lookup(&f, "Folders-Unread")?, "Folders-Unread")?,
            inbox_url: lookup(&f, "Inbox-URL")?.to_owned(),
            folders_url: lookup(&f, "Folders-URL")?.to_owned(),
            post_url: lookup(&f, "Post-URL")?.to_owned(),
        })
    }
}

/// `text/x-msmsgsemailnotification`: one new e-mail arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailNotification {
    /// Sender's display name.
    pub from: String,
    pub message_url: String,
    pub post_url: String,
    /// Subject, possibly RFC 2047-encoded as received.
    pub subject: String,
    /// Folder the message was filed in (`ACTIVE` is the inbox).
    pub dest_folder: String,
    pub from_addr: String,
    /// Identifier the client passes back when opening the message.
    pub id: u32,
}

impl EmailNotification {
    pub const CONTENT_TYPE: &'static str = "text/x-msmsgsemailnotification";

    /// The payload. Unlike the initial notification, the seed's example has no empty line
    /// after the last field (its declared 355 bytes only fit that way), so none is written.
    pub fn to_payload(&self) -> Vec<u8> {
        let body = fields_body(&[
            ("From", &self.from),
            ("Message-URL", &self.message_url),
            ("Post-URL", &self.post_url),
            ("Subject", &self.subject),
            ("Dest-Folder", &self.dest_folder),
            ("From-Addr", &self.from_addr),
            ("id", &self.id.to_string()),
        ]);
        MimeBuilder::new()
            .header(
                "Content-Type",
                "text/x-msmsgsemailnotification; charset=UTF-8",
            )
            .body(body)
            .to_bytes()
    }

    pub fn from_message(m: &MimeMessage<'_>) -> Result<Self, MimeError> {
        m.expect_type(Self::CONTENT_TYPE)?;
        let f = m.body_fields()?;
        Ok(EmailNotification {
            from: lookup(&f, "From")?.to_owned(),
            message_url: lookup(&f, "Message-URL")?.to_owned(),
            post_url: lookup(&f, "Post-URL")?.to_owned(),
            subject: lookup(&f, "Subject")?.to_owned(),
            dest_folder: lookup(&f, "Dest-Folder")?.to_owned(),
            from_addr: lookup(&f, "From-Addr")?.to_owned(),
            id: parse_num(lookup(&f, "id")?, "id")?,
        })
    }
}

/// `text/x-msmsgsactivemailnotification`: unread mail left a folder (read, moved or deleted) or
/// entered one other than by delivery, so the client corrects its unread counts: it takes
/// `message_delta` from `src_folder`'s count and adds it to `dest_folder`'s. Folders are named as
/// Hotmail named them: `ACTIVE` is the inbox, `trAsH` the deleted-items folder; msgr leaves a side
/// empty when the messages came from nowhere or went nowhere (read, unread again, expunged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveMailNotification {
    pub src_folder: String,
    pub dest_folder: String,
    /// How many unread messages moved.
    pub message_delta: u32,
}

impl ActiveMailNotification {
    pub const CONTENT_TYPE: &'static str = "text/x-msmsgsactivemailnotification";

    /// The payload; like the initial notification, the body ends with an empty line.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut body = fields_body(&[
            ("Src-Folder", &self.src_folder),
            ("Dest-Folder", &self.dest_folder),
            ("Message-Delta", &self.message_delta.to_string()),
        ]);
        body.extend_from_slice(b"\r\n");
        MimeBuilder::new()
            .header(
                "Content-Type",
                "text/x-msmsgsactivemailnotification; charset=UTF-8",
            )
            .body(body)
            .to_bytes()
    }

    pub fn from_message(m: &MimeMessage<'_>) -> Result<Self, MimeError> {
        m.expect_type(Self::CONTENT_TYPE)?;
        let f = m.body_fields()?;
        Ok(ActiveMailNotification {
            src_folder: lookup(&f, "Src-Folder")?.to_owned(),
            dest_folder: lookup(&f, "Dest-Folder")?.to_owned(),
            message_delta: parse_num(lookup(&f, "Message-Delta")?, "Message-Delta")?,
        })
    }
}

/// The `X-MMS-IM-Format` header of an instant message: how the sender's text looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImFormat {
    /// Font name, URL-decoded (`FN=MS%20Sans%20Serif` is `MS Sans Serif`).
    pub font_name: String,
    /// Style letters as sent, any of `B`, `I`, `U`, `S` in any order; empty for none.
    pub effects: String,
    /// Text colour as `0xBBGGRR` (blue in the high byte, the reverse of HTML order).
    pub color: u32,
    /// Windows font charset (`CS`), e.g. 0 for ANSI, 0x88 for Big5.
    pub charset: u8,
    /// Windows font pitch and family (`PF`): family in the high nibble, pitch in the low.
    pub pitch_family: u8,
    /// `RL=1`: the text is right-to-left / right-aligned.
    pub right_align: bool,
}

impl Default for ImFormat {
    /// What the official client sent when the user never changed the font.
    fn default() -> Self {
        ImFormat {
            font_name: "MS Sans Serif".to_owned(),
            effects: String::new(),
            color: 0,
            charset: 0,
            pitch_family: 0,
            right_align: false,
        }
    }
}

impl ImFormat {
    pub fn is_bold(&self) -> bool {
        self.effects.contains('B')
    }
    pub fn is_italic(&self) -> bool {
        self.effects.contains('I')
    }
    pub fn is_underline(&self) -> bool {
        self.effects.contains('U')
    }
    pub fn is_strikethrough(&self) -> bool {
        self.effects.contains('S')
    }

    /// Parses the header value leniently: unknown keys are ignored and unparsable values fall
    /// back to the defaults, because clients varied and a bad font must never lose the text.
    pub fn parse(value: &str) -> Self {
        let mut f = ImFormat {
            font_name: String::new(),
            ..ImFormat::default()
        };
        for part in value.split(';') {
            let Some((key, val)) = part.split_once('=') else {
                continue;
            };
            let val = trim_ws(val);
            match trim_ws(key) {
                "FN" => {
                    f.font_name = urlenc::decode(val)
                        .map(|s| s.into_owned())
                        .unwrap_or_else(|_| val.to_owned());
                }
                "EF" => f.effects = val.to_owned(),
                "CO" => f.color = u32::from_str_radix(val, 16).unwrap_or(0),
                "CS" => f.charset = u8::from_str_radix(val, 16).unwrap_or(0),
                "PF" => f.pitch_family = u8::from_str_radix(val, 16).unwrap_or(0),
                "RL" => f.right_align = val == "1",
                _ => {}
            }
        }
        f
    }

    /// The header value, e.g. `FN=MS%20Sans%20Serif; EF=; CO=0; CS=0; PF=0`. Numbers are
    /// lowercase hex without leading zeros, as the official client wrote them.
    pub fn to_header_value(&self) -> String {
        // `;` separates the keys, so it must not appear raw inside the font name.
        let font = urlenc::encode(&self.font_name).replace(';', "%3B");
        let effects: String = self
            .effects
            .chars()
            .filter(|c| !matches!(c, ';' | '\r' | '\n'))
            .collect();
        let mut v = format!(
            "FN={font}; EF={effects}; CO={:x}; CS={:x}; PF={:x}",
            self.color, self.charset, self.pitch_family
        );
        if self.right_align {
            v.push_str("; RL=1");
        }
        v
    }
}

/// A `text/plain` instant message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// Absent when the sender did not send `X-MMS-IM-Format` (older and third-party clients).
    pub format: Option<ImFormat>,
    pub text: String,
}

impl TextMessage {
    pub const CONTENT_TYPE: &'static str = "text/plain";

    pub fn to_payload(&self) -> Vec<u8> {
        let mut b = MimeBuilder::new().header("Content-Type", "text/plain; charset=UTF-8");
        if let Some(f) = &self.format {
            b = b.header("X-MMS-IM-Format", f.to_header_value());
        }
        b.body(self.text.as_bytes()).to_bytes()
    }

    pub fn from_message(m: &MimeMessage<'_>) -> Result<Self, MimeError> {
        m.expect_type(Self::CONTENT_TYPE)?;
        Ok(TextMessage {
            format: m.header("X-MMS-IM-Format").map(ImFormat::parse),
            text: m.body_text()?,
        })
    }
}

/// `text/x-msmsgscontrol` with `TypingUser`: the sender is typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingNotification {
    /// Account name of the principal who is typing.
    pub user: String,
}

impl TypingNotification {
    pub const CONTENT_TYPE: &'static str = "text/x-msmsgscontrol";

    /// The payload; its body is a lone CRLF, as the official client sent it.
    pub fn to_payload(&self) -> Vec<u8> {
        MimeBuilder::new()
            .header("Content-Type", Self::CONTENT_TYPE)
            .header("TypingUser", &self.user)
            .body(&b"\r\n"[..])
            .to_bytes()
    }

    pub fn from_message(m: &MimeMessage<'_>) -> Result<Self, MimeError> {
        m.expect_type(Self::CONTENT_TYPE)?;
        Ok(TypingNotification {
            user: m.required("TypingUser")?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    // Payloads from the seed transcripts. Each test checks the length declared on the `MSG`
    // line, which pins down the exact bytes (line endings, trailing empty lines).

    /// `MSG 5 N 138`: Alice's "Are you there?".
    const ALICE: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=MS%20Sans%20Serif; EF=; CO=0; CS=0; PF=0\r\n\r\nAre you there?";

    /// `MSG bob@passport.com Bob 143`.
    const BOB: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Lucida%20Sans%20Unicode; EF=B; CO=ff0000; CS=0; PF=22\r\n\r\nHello.";

    /// `MSG Hotmail Hotmail 221`.
    const INITIAL_MAIL: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinitialemailnotification; charset=UTF-8\r\n\r\nInbox-Unread: 1\r\nFolders-Unread: 0\r\nInbox-URL: /cgi-bin/HotMail\r\nFolders-URL: /cgi-bin/folders\r\nPost-URL: http://www.hotmail.com\r\n\r\n";

    /// `MSG Hotmail Hotmail 355` (the transcript's PDF line breaks undone).
    const NEW_MAIL: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsemailnotification; charset=UTF-8\r\n\r\nFrom: Mike Mintz\r\nMessage-URL: /cgi-bin/getmsg?msg=MSG1050451140.21&start=2310&len=2059&curmbox=ACTIVE\r\nPost-URL: https://loginnet.passport.com/ppsecure/md5auth.srf?lc=1038\r\nSubject: =\"us-ascii\"?Q?newssubject?=\r\nDest-Folder: ACTIVE\r\nFrom-Addr: example@passport.com\r\nid: 2\r\n";

    /// `MSG 15 U 92` from the NTHU slides.
    const TYPING: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: laplazshu@yahoo.com\r\n\r\n\r\n";

    /// The profile from the seed; `MSPAuth` is rejoined from the transcript's wrapped lines,
    /// so the declared 491 bytes cannot be checked.
    const PROFILE: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsprofile; charset=UTF-8\r\nLoginTime: 1050223062\r\nEmailEnabled: 0\r\nMemberIdHigh: 85040\r\nMemberIdLow: -517030579\r\nlang_preference: 1033\r\npreferredEmail: alice@passport.com\r\ncountry: US\r\nPostalCode: 90201\r\nGender: m\r\nKid: 0\r\nAge: \r\nBDayPre: 5\r\nBirthday: 0\r\nWallet: 0\r\nFlags: 1027\r\nsid: 507\r\nkv: 4\r\nMSPAuth: 41bbzZ*NzDmDQ8ic4HWo89b9zhCBk!ONDJKB3Los8UMgBnCOLSwQKo!8IeIHQF0vVItS1OzIL36e5MAdMaB3mpZw$$\r\nClientIP: 1.2.3.4\r\nClientPort: 516\r\n\r\n";

    #[test]
    fn seed_lengths_match_declared_lengths() {
        assert_eq!(ALICE.len(), 138);
        assert_eq!(BOB.len(), 143);
        assert_eq!(INITIAL_MAIL.len(), 221);
        assert_eq!(NEW_MAIL.len(), 355);
        assert_eq!(TYPING.len(), 92);
    }

    #[test]
    fn parses_alice() {
        let m = MimeMessage::parse(ALICE).unwrap();
        assert_eq!(m.header("mime-version"), Some("1.0"));
        assert_eq!(m.content_type(), Some("text/plain"));
        assert!(m.is_content_type("TEXT/PLAIN"));
        assert_eq!(m.charset(), Some("UTF-8"));
        assert_eq!(m.body(), b"Are you there?");
        let t = TextMessage::from_message(&m).unwrap();
        assert_eq!(t.text, "Are you there?");
        assert_eq!(t.format, Some(ImFormat::default()));
        assert_eq!(t.to_payload(), ALICE);
    }

    #[test]
    fn parses_bob_format() {
        let t = TextMessage::from_message(&MimeMessage::parse(BOB).unwrap()).unwrap();
        let f = t.format.clone().unwrap();
        assert_eq!(f.font_name, "Lucida Sans Unicode");
        assert!(f.is_bold() && !f.is_italic());
        assert_eq!(f.color, 0xff0000);
        assert_eq!(f.pitch_family, 0x22);
        assert_eq!(t.to_payload(), BOB);
    }

    #[test]
    fn im_format_charset_is_hex_and_tolerates_junk() {
        // NTHU slides: a Big5 font sent as `CS=88`, i.e. CHINESEBIG5_CHARSET (136).
        let f = ImFormat::parse("FN=%E6%96%B0%E7%B4%B0%E6%98%8E%E9%AB%94; EF=; CO=0; CS=88; PF=0");
        assert_eq!(f.font_name, "新細明體");
        assert_eq!(f.charset, 0x88);
        let f = ImFormat::parse("FN=A%3Bb; EF=UIS; CO=zz; RL=1; junk; X=1");
        assert_eq!(f.font_name, "A;b");
        assert_eq!(f.color, 0);
        assert!(f.right_align && f.is_underline() && f.is_strikethrough());
        assert_eq!(ImFormat::parse(&f.to_header_value()), f);
    }

    #[test]
    fn parses_typing() {
        let m = MimeMessage::parse(TYPING).unwrap();
        let t = TypingNotification::from_message(&m).unwrap();
        assert_eq!(t.user, "laplazshu@yahoo.com");
        assert_eq!(t.to_payload(), TYPING);
        assert_eq!(
            TextMessage::from_message(&m),
            Err(MimeError::WrongContentType {
                expected: "text/plain"
            })
        );
    }

    #[test]
    fn parses_initial_mail() {
        let m = MimeMessage::parse(INITIAL_MAIL).unwrap();
        let n = InitialEmailNotification::from_message(&m).unwrap();
        assert_eq!(n.inbox_unread, 1);
        assert_eq!(n.folders_unread, 0);
        assert_eq!(n.inbox_url, "/cgi-bin/HotMail");
        assert_eq!(n.folders_url, "/cgi-bin/folders");
        assert_eq!(n.post_url, "http://www.hotmail.com");
        assert_eq!(n.to_payload(), INITIAL_MAIL);
    }

    #[test]
    fn parses_new_mail() {
        let n = EmailNotification::from_message(&MimeMessage::parse(NEW_MAIL).unwrap()).unwrap();
        assert_eq!(n.from, "Mike Mintz");
        assert_eq!(n.subject, "=\"us-ascii\"?Q?newssubject?=");
        assert_eq!(n.dest_folder, "ACTIVE");
        assert_eq!(n.from_addr, "example@passport.com");
        assert_eq!(n.id, 2);
        assert_eq!(n.to_payload(), NEW_MAIL);
    }

    #[test]
    fn active_mail_round_trips() {
        let n = ActiveMailNotification {
            src_folder: "ACTIVE".into(),
            dest_folder: "trAsH".into(),
            message_delta: 1,
        };
        let bytes = n.to_payload();
        assert_eq!(
            bytes,
            b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsactivemailnotification; charset=UTF-8\r\n\r\nSrc-Folder: ACTIVE\r\nDest-Folder: trAsH\r\nMessage-Delta: 1\r\n\r\n"
        );
        let m = MimeMessage::parse(&bytes).unwrap();
        assert_eq!(ActiveMailNotification::from_message(&m).unwrap(), n);
    }

    #[test]
    fn parses_profile() {
        let p = Profile::from_message(&MimeMessage::parse(PROFILE).unwrap()).unwrap();
        assert_eq!(p.login_time, 1_050_223_062);
        assert_eq!(p.member_id_low, -517_030_579);
        assert_eq!(p.age, None);
        assert_eq!(p.flags, 1027);
        assert_eq!(p.client_ip, IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(p.client_port, 1026);
        // Same bytes back, fields in the seed's order.
        assert_eq!(p.to_payload(), PROFILE);
    }

    #[test]
    fn client_port_is_byte_swapped() {
        assert_eq!(client_port_field(1026), 516);
        assert_eq!(client_port_field(516), 1026);
        assert_eq!(client_port_field(1863), 0x4707);
        assert_eq!(client_port_field(0x1234), 0x3412);
    }

    #[test]
    fn tolerates_bare_lf_and_case() {
        let m = MimeMessage::parse(
            b"mime-version:1.0\ncontent-type:  Text/Plain ;CHARSET=\"utf-8\"\n\nhi\r\n\r\nthere",
        )
        .unwrap();
        assert_eq!(m.content_type(), Some("Text/Plain"));
        assert!(m.is_content_type("text/plain"));
        assert_eq!(m.charset(), Some("utf-8"));
        assert_eq!(m.body(), b"hi\r\n\r\nthere");
        // Mixed endings: the first empty line wins whatever its ending.
        let m = MimeMessage::parse(b"A: 1\r\n\nB: 2\r\n\r\n").unwrap();
        assert_eq!(m.headers(), &[("A", "1")]);
        assert_eq!(m.body(), b"B: 2\r\n\r\n");
        // No headers at all.
        let m = MimeMessage::parse(b"\r\nbody").unwrap();
        assert!(m.headers().is_empty());
        assert_eq!(m.content_type(), None);
    }

    #[test]
    fn latin1_body_without_charset() {
        let m = MimeMessage::parse(b"Content-Type: text/plain\r\n\r\ncaf\xe9").unwrap();
        assert_eq!(TextMessage::from_message(&m).unwrap().text, "café");
        let m =
            MimeMessage::parse(b"Content-Type: text/plain; charset=UTF-8\r\n\r\ncaf\xe9").unwrap();
        assert_eq!(TextMessage::from_message(&m), Err(MimeError::NotUtf8Body));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(MimeMessage::parse(b""), Err(MimeError::NoHeaderEnd));
        assert_eq!(
            MimeMessage::parse(b"A: 1\r\nB: 2\r\n"),
            Err(MimeError::NoHeaderEnd)
        );
        assert_eq!(
            MimeMessage::parse(b"A: \xff\r\n\r\n"),
            Err(MimeError::NotUtf8Headers)
        );
        assert_eq!(
            MimeMessage::parse(b"A: 1\r\nnocolon\r\n\r\n"),
            Err(MimeError::MalformedHeader { line: 2 })
        );
        assert_eq!(
            MimeMessage::parse(b": v\r\n\r\n"),
            Err(MimeError::MalformedHeader { line: 1 })
        );
        assert_eq!(
            MimeMessage::parse(b"A: 1\r\n folded\r\n\r\n"),
            Err(MimeError::MalformedHeader { line: 2 })
        );
        let typing_without_user =
            b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\n\r\n\r\n";
        assert_eq!(
            TypingNotification::from_message(&MimeMessage::parse(typing_without_user).unwrap()),
            Err(MimeError::MissingField("TypingUser"))
        );
    }

    #[test]
    fn builder_puts_mime_version_first_and_neutralises_line_breaks() {
        let out = MimeBuilder::new()
            .header("X-Evil", "a\r\nInjected: yes")
            .header("mime-version", "2.0")
            .header("Bad Name:", "v")
            .body(&b"x"[..])
            .to_bytes();
        let m = MimeMessage::parse(&out).unwrap();
        assert_eq!(
            m.headers(),
            &[
                ("MIME-Version", "1.0"),
                ("X-Evil", "a  Injected: yes"),
                ("Bad-Name-", "v")
            ]
        );
        assert_eq!(m.body(), b"x");
    }

    fn header_name() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9_-]{0,15}".prop_filter("MIME-Version is written by the builder", |n| {
            !n.eq_ignore_ascii_case("MIME-Version")
        })
    }

    fn header_value() -> impl Strategy<Value = String> {
        // No leading or trailing space/tab: the parser trims those, as MIME allows.
        "([!-~\u{a0}-\u{2fff}]([ !-~\u{a0}-\u{2fff}]{0,20}[!-~\u{a0}-\u{2fff}])?)?"
    }

    proptest! {
        #[test]
        fn builder_round_trips(
            headers in proptest::collection::vec((header_name(), header_value()), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut b = MimeBuilder::new();
            for (n, v) in &headers {
                b = b.header(n, v);
            }
            let bytes = b.body(body.clone()).to_bytes();
            let m = MimeMessage::parse(&bytes).unwrap();
            let mut expected = vec![("MIME-Version", "1.0")];
            expected.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            prop_assert_eq!(m.headers(), expected.as_slice());
            prop_assert_eq!(m.body(), body.as_slice());
        }

        #[test]
        fn text_message_round_trips(
            text in any::<String>(),
            font in any::<String>(),
            color in any::<u32>(),
            charset in any::<u8>(),
            right_align in any::<bool>(),
        ) {
            let msg = TextMessage {
                format: Some(ImFormat {
                    font_name: font,
                    effects: "BI".to_owned(),
                    color,
                    charset,
                    pitch_family: 0x22,
                    right_align,
                }),
                text,
            };
            let bytes = msg.to_payload();
            let parsed = TextMessage::from_message(&MimeMessage::parse(&bytes).unwrap()).unwrap();
            prop_assert_eq!(parsed, msg);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(m) = MimeMessage::parse(&bytes) {
                let _ = m.content_type();
                let _ = m.charset();
                let _ = m.body_fields();
                let _ = TextMessage::from_message(&m);
                let _ = Profile::from_message(&m);
            }
        }
    }
}

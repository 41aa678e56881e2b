//! Transcript tests: a client script and the exact lines the server must answer, as data.
//!
//! ```text
//! # A comment. Blank lines are ignored.
//! ! server legacy_md5                    server options, before the first exchange:
//! ! server dispatch_to 127.0.0.1:1234      dispatch-only mode (repeatable)
//! ! server max_payload 4096                codec limits
//! ! server max_line 512
//! ! account alice@passport.com secret Alice%20L   an account (name URL-decoded)
//! ! conn bob                             switch to connection `bob`, opening it if new
//! >>> VER 1 MSNP8 CVR0                   sent by the client, CRLF appended
//! >>+ 8f2f5a91b72102cd28355e9fc9000d6e   sent as is, no CRLF (a payload)
//! <<< VER 1 MSNP8 CVR0                   the next line from the server, verbatim
//! <<< MSG Hotmail Hotmail {digits}       a payload command…
//! <<: MIME-Version: 1.0                  …and its payload, one line each (CRLF implied)
//! ! closed                               the server closes the connection, saying nothing more
//! ```
//!
//! Lines run on connection `main` until a `! conn` says otherwise. In `>>>`, `>>+`, `<<<` and
//! `<<:` text, `\r`, `\n`, `\t`, `\\` and `\xNN` are escapes (so tabs, trailing spaces
//! `\x20` and non-UTF-8 bytes can be written down).
//!
//! Placeholders, in braces:
//! - in expected text: `{any}` one or more non-space characters, `{digits}`, `{hex}`,
//!   `{rest}` anything up to the end of the line (maybe nothing); `{msnp}` this server's MSNP
//!   address; `{client_port}` the profile's `ClientPort` for this connection; any other
//!   `{name}` captures a token the first time and must match it again after that;
//! - in sent text: `{ticket}` a real Passport ticket (`t=…&p=…`) for the account of the last
//!   `USR n TWN I`, or `{ticket:EMAIL}` for another one; `{md5}` the `USR MD5 S` proof from
//!   the captured `{salt}` and the account of the last `USR n MD5 I`; `{qry}` the answer to
//!   the captured `{challenge}` for the client ID of the last `QRY` line sent; `{msnp}`; and
//!   any captured `{name}`.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::HashMap;
use std::path::Path;

use crate::{md5_hex, passport_ticket, profile_client_port, Conn, ServerOptions, TestServer};

/// Whether `line` matches `pattern` with the placeholders above (captures match anything).
pub fn line_matches(pattern: &str, line: &str) -> bool {
    let segs = segments(pattern, &HashMap::new());
    matches(&segs, line, &mut HashMap::new())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    /// One or more characters of a class; `Some(name)` captures them.
    Class(Class, Option<String>),
    /// Anything but CR and LF, possibly nothing.
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    NonSpace,
    Digits,
    Hex,
}

impl Class {
    fn accepts(self, c: char) -> bool {
        match self {
            Class::NonSpace => !c.is_whitespace(),
            Class::Digits => c.is_ascii_digit(),
            Class::Hex => c.is_ascii_hexdigit(),
        }
    }
}

/// The placeholder name in `{…}` at the start of `s`, if it is one: a lowercase letter, then
/// lowercase letters, digits and `_`, optionally followed by `:argument`.
fn placeholder(s: &str) -> Option<(&str, usize)> {
    let inner_end = s.get(1..)?.find(['}', '{'])? + 1;
    if s.as_bytes().get(inner_end) != Some(&b'}') {
        return None;
    }
    let inner = &s[1..inner_end];
    let name = inner.split(':').next().unwrap_or_default();
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !inner.contains(char::is_whitespace);
    ok.then_some((inner, inner_end + 1))
}

/// Splits an expected line into literal text and placeholders; `known` values are literal.
fn segments(pattern: &str, known: &HashMap<String, String>) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut lit = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if c == '{' {
            if let Some((name, len)) = placeholder(rest) {
                let seg = match name {
                    "any" => Some(Seg::Class(Class::NonSpace, None)),
                    "digits" => Some(Seg::Class(Class::Digits, None)),
                    "hex" => Some(Seg::Class(Class::Hex, None)),
                    "rest" => Some(Seg::Rest),
                    _ => match known.get(name) {
                        Some(v) => {
                            lit.push_str(v);
                            None
                        }
                        None => Some(Seg::Class(Class::NonSpace, Some(name.to_owned()))),
                    },
                };
                if let Some(seg) = seg {
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit)));
                    }
                    segs.push(seg);
                }
                rest = &rest[len..];
                continue;
            }
        }
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        segs.push(Seg::Lit(lit));
    }
    segs
}

/// Backtracking match, shortest placeholder first; fills `caps` on success.
fn matches(segs: &[Seg], s: &str, caps: &mut HashMap<String, String>) -> bool {
    let Some((first, more)) = segs.split_first() else {
        return s.is_empty();
    };
    match first {
        Seg::Lit(l) => s
            .strip_prefix(l.as_str())
            .is_some_and(|r| matches(more, r, caps)),
        Seg::Rest => {
            let limit = s.find(['\r', '\n']).unwrap_or(s.len());
            (0..=limit)
                .filter(|&i| s.is_char_boundary(i))
                .any(|i| matches(more, &s[i..], caps))
        }
        Seg::Class(class, name) => {
            for (i, c) in s.char_indices() {
                if !class.accepts(c) {
                    break;
                }
                let end = i + c.len_utf8();
                if matches(more, &s[end..], caps) {
                    if let Some(n) = name {
                        caps.insert(n.clone(), s[..end].to_owned());
                    }
                    return true;
                }
            }
            false
        }
    }
}

/// Resolves `\r`, `\n`, `\t`, `\\` and `\xNN`.
fn unescape(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hi = bytes.next();
                let lo = bytes.next();
                let hex = [hi.unwrap_or(b'?'), lo.unwrap_or(b'?')];
                let v = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| anyhow!("bad \\x escape in {s:?}"))?;
                out.push(v);
            }
            other => bail!("unknown escape \\{:?} in {s:?}", other.map(char::from)),
        }
    }
    Ok(out)
}

#[derive(Debug)]
enum Step {
    Conn(String),
    Send { text: String, crlf: bool },
    Expect { line: String, payload: Vec<String> },
    Closed,
}

/// A parsed transcript.
#[derive(Debug)]
pub struct Transcript {
    name: String,
    options: ServerOptions,
    /// (email, password, display name).
    accounts: Vec<(String, String, String)>,
    /// Each step with its line number in the file.
    steps: Vec<(usize, Step)>,
}

impl Transcript {
    pub fn parse(name: &str, text: &str) -> Result<Transcript> {
        let mut t = Transcript {
            name: name.to_owned(),
            options: ServerOptions::default(),
            accounts: Vec::new(),
            steps: Vec::new(),
        };
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let at = || format!("{name}:{n}");
            if raw.trim().is_empty() || raw.starts_with('#') {
                continue;
            }
            if let Some(rest) = raw.strip_prefix("! ") {
                if let Some(step) = t.directive(rest).with_context(at)? {
                    t.steps.push((n, step));
                }
            } else if let Some(rest) = raw.strip_prefix(">>> ") {
                t.steps.push((
                    n,
                    Step::Send {
                        text: rest.to_owned(),
                        crlf: true,
                    },
                ));
            } else if let Some(rest) = raw.strip_prefix(">>+ ") {
                t.steps.push((
                    n,
                    Step::Send {
                        text: rest.to_owned(),
                        crlf: false,
                    },
                ));
            } else if let Some(rest) = raw.strip_prefix("<<< ") {
                t.steps.push((
                    n,
                    Step::Expect {
                        line: rest.to_owned(),
                        payload: Vec::new(),
                    },
                ));
            } else if raw == "<<:" || raw.starts_with("<<: ") {
                let line = raw.get(4..).unwrap_or("").to_owned();
                match t.steps.last_mut() {
                    Some((_, Step::Expect { payload, .. })) => payload.push(line),
                    _ => bail!("{}: `<<:` must follow a `<<<` line", at()),
                }
            } else {
                bail!("{}: cannot read {raw:?}", at());
            }
        }
        Ok(t)
    }

    /// Applies a `! …` line; the ones that happen during the exchange come back as a step.
    fn directive(&mut self, d: &str) -> Result<Option<Step>> {
        let words: Vec<&str> = d.split_whitespace().collect();
        match words.as_slice() {
            ["server", "legacy_md5"] => self.options.legacy_md5 = true,
            ["server", "dispatch_to", addr] => self.options.dispatch_to.push((*addr).to_owned()),
            ["server", "max_payload", n] => self.options.limits.max_payload = n.parse()?,
            ["server", "max_line", n] => self.options.limits.max_line = n.parse()?,
            ["account", email, pw, name] => {
                let name = msgr_proto::urlenc::decode(name)?.into_owned();
                self.accounts
                    .push(((*email).to_owned(), (*pw).to_owned(), name));
            }
            ["conn", name] => return Ok(Some(Step::Conn((*name).to_owned()))),
            ["closed"] => return Ok(Some(Step::Closed)),
            _ => bail!("unknown directive {d:?}"),
        }
        Ok(None)
    }

    /// Starts a server as the transcript asks and plays it.
    pub async fn run(&self) -> Result<()> {
        let server = TestServer::start(self.options.clone()).await?;
        for (email, pw, name) in &self.accounts {
            server.add_account(email, pw, name).await?;
        }
        let mut run = Run {
            server: &server,
            accounts: &self.accounts,
            conns: HashMap::new(),
            current: "main".to_owned(),
            vars: HashMap::new(),
            twn_email: None,
            md5_email: None,
            qry_id: None,
        };
        for (n, step) in &self.steps {
            run.step(step)
                .await
                .with_context(|| format!("{}:{n}", self.name))?;
        }
        server.stop().await
    }
}

/// Reads and plays the transcript file at `path`.
pub async fn run_file(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    Transcript::parse(&name, &text)?.run().await
}

struct Run<'a> {
    server: &'a TestServer,
    accounts: &'a [(String, String, String)],
    conns: HashMap<String, Conn>,
    current: String,
    vars: HashMap<String, String>,
    /// The account named by the last `USR n TWN I`, for `{ticket}`.
    twn_email: Option<String>,
    /// The account named by the last `USR n MD5 I`, for `{md5}`.
    md5_email: Option<String>,
    /// The client ID of the last `QRY` sent, for `{qry}`.
    qry_id: Option<String>,
}

impl Run<'_> {
    async fn conn(&mut self) -> Result<&mut Conn> {
        if !self.conns.contains_key(&self.current) {
            let mut c = self.server.connect().await?;
            c.set_label(self.current.clone());
            self.conns.insert(self.current.clone(), c);
        }
        self.conns
            .get_mut(&self.current)
            .ok_or_else(|| anyhow!("no connection"))
    }

    fn password(&self, email: &str) -> Result<String> {
        self.accounts
            .iter()
            .find(|(e, _, _)| e.eq_ignore_ascii_case(email))
            .map(|(_, pw, _)| pw.clone())
            .with_context(|| format!("no `! account` line for {email}"))
    }

    async fn step(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::Conn(name) => {
                self.current = name.clone();
                self.conn().await?;
            }
            Step::Send { text, crlf } => {
                let text = self.substitute(text).await?;
                let mut bytes = unescape(&text)?;
                self.remember_sent(&bytes);
                if *crlf {
                    bytes.extend_from_slice(b"\r\n");
                }
                self.conn().await?.send_raw(&bytes).await?;
            }
            Step::Expect { line, payload } => self.expect(line, payload).await?,
            Step::Closed => self.conn().await?.expect_closed().await?,
        }
        Ok(())
    }

    /// Notes what later `{ticket}`, `{md5}` and `{qry}` refer to.
    fn remember_sent(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let tokens: Vec<&str> = text.split([' ', '\t']).filter(|t| !t.is_empty()).collect();
        match tokens.as_slice() {
            ["USR", _, "TWN", "I", email, ..] => self.twn_email = Some((*email).to_owned()),
            ["USR", _, "MD5", "I", email, ..] => self.md5_email = Some((*email).to_owned()),
            ["QRY", _, id, ..] => self.qry_id = Some((*id).to_owned()),
            _ => {}
        }
    }

    async fn substitute(&mut self, text: &str) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '{' {
                if let Some((inner, len)) = placeholder(rest) {
                    out.push_str(&self.value(inner).await?);
                    rest = &rest[len..];
                    continue;
                }
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        Ok(out)
    }

    async fn value(&mut self, inner: &str) -> Result<String> {
        let (name, arg) = match inner.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (inner, None),
        };
        match name {
            "ticket" => {
                let email = match arg {
                    Some(e) => e.to_owned(),
                    None => self
                        .twn_email
                        .clone()
                        .context("{ticket} before any `USR n TWN I`")?,
                };
                let pw = self.password(&email)?;
                let ep = self.server.endpoint();
                passport_ticket(ep.https, &ep.ca, &email, &pw).await
            }
            "md5" => {
                let email = self
                    .md5_email
                    .clone()
                    .context("{md5} before any `USR n MD5 I`")?;
                let salt = self.vars.get("salt").context("{md5} without a {salt}")?;
                Ok(md5_hex(salt, &self.password(&email)?))
            }
            "qry" => {
                let id = self.qry_id.as_deref().context("{qry} before a QRY line")?;
                let chl = self
                    .vars
                    .get("challenge")
                    .context("{qry} without a {challenge}")?;
                msgr_proto::challenge::expected_answer(id, chl)
                    .with_context(|| format!("unknown client ID {id:?}"))
            }
            "msnp" => Ok(self.server.addrs.msnp.to_string()),
            _ => self
                .vars
                .get(name)
                .cloned()
                .with_context(|| format!("{{{name}}} was never captured")),
        }
    }

    async fn expect(&mut self, line: &str, payload: &[String]) -> Result<()> {
        let mut known = self.vars.clone();
        known.insert("msnp".into(), self.server.addrs.msnp.to_string());
        let port = self.conn().await?.local_addr().port();
        known.insert("client_port".into(), profile_client_port(port).to_string());
        let pattern = String::from_utf8(unescape(line)?).context("expected line is not UTF-8")?;
        let conn = self.conn().await?;
        let frame = conn
            .recv_frame()
            .await
            .with_context(|| format!("waiting for {line:?}"))?;
        let mut caps = HashMap::new();
        ensure!(
            matches(&segments(&pattern, &known), frame.line(), &mut caps),
            "{}: expected {pattern:?}, got {:?}",
            conn.label(),
            frame.line()
        );
        match (frame.payload(), payload.is_empty()) {
            (None, true) => {}
            (None, false) => bail!("{:?} came without a payload", frame.line()),
            (Some(p), true) => bail!(
                "{:?} has a {}-byte payload the transcript does not describe: {:?}",
                frame.line(),
                p.len(),
                String::from_utf8_lossy(p)
            ),
            (Some(p), false) => {
                let got = std::str::from_utf8(p).context("payload is not UTF-8")?;
                // Every described line ends in CRLF, so the payload splits into them plus "".
                let got_lines: Vec<&str> = got.split("\r\n").collect();
                let mut want = Vec::with_capacity(payload.len() + 1);
                for l in payload {
                    want.push(String::from_utf8(unescape(l)?).context("payload line not UTF-8")?);
                }
                want.push(String::new());
                for (i, (w, g)) in want.iter().zip(&got_lines).enumerate() {
                    let mut known = known.clone();
                    known.extend(caps.clone());
                    ensure!(
                        matches(&segments(w, &known), g, &mut caps),
                        "payload line {} of {:?}: expected {w:?}, got {g:?}\nwhole payload: {got:?}",
                        i + 1,
                        frame.line()
                    );
                }
                ensure!(
                    want.len() == got_lines.len(),
                    "payload of {:?} has {} CRLF-ended lines, the transcript describes {}: {got:?}",
                    frame.line(),
                    got_lines.len() - 1,
                    want.len() - 1
                );
            }
        }
        self.vars.extend(caps);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_match() {
        assert!(line_matches("USR 3 MD5 S {any}", "USR 3 MD5 S 123.456"));
        assert!(!line_matches("USR 3 MD5 S {any}", "USR 3 MD5 S "));
        assert!(!line_matches("USR 3 MD5 S {any}", "USR 3 MD5 S a b"));
        assert!(line_matches("ct={digits},kpp=1", "ct=1062764229,kpp=1"));
        assert!(!line_matches("ct={digits},kpp=1", "ct=10x,kpp=1"));
        assert!(line_matches("tpf={hex}", "tpf=43f8a4c8"));
        assert!(line_matches(
            "USR 4 OK a@b {rest}",
            "USR 4 OK a@b Alice 1 0"
        ));
        assert!(line_matches("QRY {any}", "QRY PROD0090YUAUV{2B"));
        assert!(line_matches("X {2B 32", "X {2B 32"));
        assert!(line_matches("A{}B", "A{}B"));
        assert!(line_matches("{md5} {x2}", "a b"));
    }

    #[test]
    fn captures_bind_and_repeat() {
        let mut caps = HashMap::new();
        let segs = segments("CHL 0 {challenge}", &HashMap::new());
        assert!(matches(&segs, "CHL 0 12345", &mut caps));
        assert_eq!(caps["challenge"], "12345");
        let segs = segments("again {challenge}", &caps);
        assert!(matches(&segs, "again 12345", &mut HashMap::new()));
        assert!(!matches(&segs, "again 54321", &mut HashMap::new()));
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\tb\x20\r\n\\\xff").unwrap(), b"a\tb \r\n\\\xff");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
    }

    #[test]
    fn parse_rejects_strays() {
        assert!(Transcript::parse("t", "<<: x").is_err());
        assert!(Transcript::parse("t", "hello").is_err());
        assert!(Transcript::parse("t", "! nonsense").is_err());
        let t =
            Transcript::parse("t", "! server legacy_md5\n>>> PNG\n<<< QNG\n! closed\n").unwrap();
        assert!(t.options.legacy_md5);
        assert_eq!(t.steps.len(), 3);
    }
}

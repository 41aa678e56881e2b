//! Framing of client input into whole commands, before any parsing (sans-IO).
//!
//! An IMAP command is one or more lines, each but the last ending in a literal announcement `{n}` (the
//! client waits for `+` before sending the bytes) or `{n+}` (LITERAL+: the bytes follow at once). The
//! framer gathers a whole command into one buffer so that imap-codec parses it in one call, and checks
//! the caps as the bytes come: a line longer than `max_line` or a literal over `max_literal` is refused
//! before anything of it is kept, and a command's total is capped at `max_command`.

/// What the framer found in the input it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Need more input.
    Incomplete,
    /// A synchronizing literal was announced and is acceptable: send a continuation request.
    Continue,
    /// A whole command (lines and literals) is in [`Framer::command`].
    Command,
    /// A line or the command grew past its cap: refuse it and close (the rest of it cannot be told
    /// apart from the next command).
    TooLong,
    /// A synchronizing literal over the cap was announced: answer the command `NO`/`BAD` and go on (the
    /// client sends nothing more for it). The partial command is dropped.
    LiteralRefused,
    /// A non-synchronizing literal over the cap: its bytes are on their way, so the session ends.
    LiteralPlusTooBig,
}

/// The framer's state between reads.
#[derive(Debug)]
pub struct Framer {
    max_line: usize,
    max_literal: u64,
    max_command: usize,
    /// The command gathered so far.
    cmd: Vec<u8>,
    /// Literal bytes still to copy into `cmd` before lines resume.
    literal_left: u64,
    /// Where the current line starts in `cmd`.
    line_start: usize,
}

impl Framer {
    pub fn new(max_line: usize, max_literal: u64, max_command: usize) -> Framer {
        Framer {
            max_line,
            max_literal,
            max_command,
            cmd: Vec::new(),
            literal_left: 0,
            line_start: 0,
        }
    }

    /// Changes the literal cap (a session raises it from the pre-login cap once the client logged in).
    pub fn set_max_literal(&mut self, max_literal: u64) {
        self.max_literal = max_literal;
    }

    /// The complete command after [`Event::Command`] (lines with their CRLF, literals inside).
    pub fn command(&self) -> &[u8] {
        &self.cmd
    }

    /// Forgets the command (after it was handled), giving back a large buffer.
    pub fn clear(&mut self) {
        self.cmd.clear();
        if self.cmd.capacity() > 64 * 1024 {
            self.cmd = Vec::new();
        }
        self.line_start = 0;
        self.literal_left = 0;
    }

    /// Takes bytes from `input`; returns how many were consumed and what happened. Call again with the
    /// rest after handling an event other than `Incomplete`.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Event) {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            if self.literal_left > 0 {
                let take = usize::try_from(self.literal_left)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                self.cmd.extend_from_slice(&rest[..take]);
                self.literal_left -= take as u64;
                used += take;
                if self.literal_left > 0 {
                    return (used, Event::Incomplete);
                }
                self.line_start = self.cmd.len();
                continue;
            }
            if rest.is_empty() {
                return (used, Event::Incomplete);
            }
            let line_so_far = self.cmd.len() - self.line_start;
            let Some(lf) = rest.iter().position(|&c| c == b'\n') else {
                if line_so_far + rest.len() > self.max_line {
                    return (used + rest.len(), Event::TooLong);
                }
                self.cmd.extend_from_slice(rest);
                return (used + rest.len(), Event::Incomplete);
            };
            if line_so_far + lf > self.max_line || self.cmd.len() + lf + 1 > self.max_command {
                return (used + lf + 1, Event::TooLong);
            }
            self.cmd.extend_from_slice(&rest[..=lf]);
            used += lf + 1;
            match literal_announcement(&self.cmd[self.line_start..]) {
                None => return (used, Event::Command),
                Some((n, plus)) => {
                    let fits = n <= self.max_literal
                        && (self.cmd.len() as u64).saturating_add(n) <= self.max_command as u64;
                    if !fits {
                        // The caller reads the tag from `command()`, then clears.
                        return (
                            used,
                            if plus {
                                Event::LiteralPlusTooBig
                            } else {
                                Event::LiteralRefused
                            },
                        );
                    }
                    self.literal_left = n;
                    self.line_start = self.cmd.len();
                    if n == 0 {
                        // `{0}`: the line continues right away.
                        if !plus {
                            return (used, Event::Continue);
                        }
                        continue;
                    }
                    if !plus {
                        return (used, Event::Continue);
                    }
                }
            }
        }
    }

    /// The tag of the command being gathered, if its first line has one (for refusing a literal).
    pub fn partial_tag(line: &[u8]) -> Option<&[u8]> {
        let end = line.iter().position(|&c| c == b' ')?;
        Some(&line[..end]).filter(|t| !t.is_empty())
    }
}

/// `Some((n, non_synchronizing))` if the line (with its line break) ends in `{n}` or `{n+}`.
pub fn literal_announcement(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&c| c == b'{')?;
    let mut digits = &inner[open + 1..];
    let plus = digits.last() == Some(&b'+');
    if plus {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, plus))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes; collects events and the commands.
    fn run(input: &[u8], chunk: usize) -> Vec<(Event, Vec<u8>)> {
        let mut f = Framer::new(100, 1000, 2000);
        let mut events = Vec::new();
        for piece in input.chunks(chunk) {
            let mut at = 0;
            loop {
                let (used, ev) = f.feed(&piece[at..]);
                at += used;
                match ev {
                    Event::Incomplete => break,
                    Event::Command => {
                        events.push((Event::Command, f.command().to_vec()));
                        f.clear();
                    }
                    Event::Continue => events.push((Event::Continue, Vec::new())),
                    other => {
                        events.push((other, Vec::new()));
                        f.clear();
                    }
                }
            }
        }
        events
    }

    #[test]
    fn same_commands_in_every_chunk_size() {
        let input = b"a1 NOOP\r\na2 LOGIN {5}\r\nalice {2+}\r\npw\r\na3 APPEND INBOX {0}\r\n\r\n";
        let expected = run(input, input.len());
        assert_eq!(expected.len(), 5, "{expected:?}");
        assert_eq!(expected[0].1, b"a1 NOOP\r\n");
        assert_eq!(expected[1].0, Event::Continue);
        assert_eq!(expected[2].1, b"a2 LOGIN {5}\r\nalice {2+}\r\npw\r\n");
        assert_eq!(expected[3].0, Event::Continue);
        assert_eq!(expected[4].1, b"a3 APPEND INBOX {0}\r\n\r\n");
        for chunk in 1..=input.len() {
            assert_eq!(run(input, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn caps_before_allocation() {
        let long = vec![b'x'; 10_000];
        let events = run(&long, 512);
        assert_eq!(events[0].0, Event::TooLong);
        assert_eq!(
            run(b"a APPEND INBOX {1001}\r\n", 7)[0].0,
            Event::LiteralRefused
        );
        assert_eq!(
            run(b"a APPEND INBOX {1001+}\r\n", 7)[0].0,
            Event::LiteralPlusTooBig
        );
        assert_eq!(
            run(b"a X {99999999999999999999}\r\n", 3)[0].0,
            Event::Command,
            "not a literal: parsed (and refused) as a command"
        );
    }

    #[test]
    fn announcements() {
        assert_eq!(literal_announcement(b"a {12}\r\n"), Some((12, false)));
        assert_eq!(literal_announcement(b"a {12+}\n"), Some((12, true)));
        assert_eq!(literal_announcement(b"a {}\r\n"), None);
        assert_eq!(literal_announcement(b"a {1x}\r\n"), None);
        assert_eq!(literal_announcement(b"a 12}\r\n"), None);
    }
}

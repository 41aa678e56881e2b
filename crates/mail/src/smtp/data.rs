//! The body of `DATA` (RFC 5321 §4.1.1.4, §4.5.2), sans IO: undoes dot-stuffing, finds the end-of-data line
//! and stops keeping bytes past the size limit while still looking for the end.
//!
//! Only `<CRLF>.<CRLF>` ends the data. A bare LF is stored as CRLF (so the stored message has one line
//! ending) but does not start a line for the purpose of the terminator: treating `<LF>.<LF>` or
//! `<LF>.<CRLF>` as the end is what "SMTP smuggling" exploits, where a relay and its next hop disagree on
//! where one message ends and a forged one begins.

/// Where the decoder is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the very beginning).
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, just after a CR.
    Cr,
    /// A line that began with a dot: the dot is dropped (unstuffing) unless this is the end line.
    Dot,
    /// `.` then CR at the start of a line: LF now ends the data.
    DotCr,
}

/// Decodes one message body. Feed it the bytes after `354` until it says it is done.
#[derive(Debug)]
pub(crate) struct DataDecoder {
    state: State,
    limit: usize,
    /// Bytes of the (unstuffed) message seen so far, kept or not.
    seen: usize,
}

impl DataDecoder {
    /// A decoder that keeps at most `limit` bytes of message; beyond that it only counts.
    pub(crate) fn new(limit: usize) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            limit,
            seen: 0,
        }
    }

    /// Whether the message went over the limit (its bytes past the limit were dropped).
    pub(crate) fn too_big(&self) -> bool {
        self.seen > self.limit
    }

    /// Consumes from `input`, appending the message to `out`. Returns how many input bytes were used and
    /// whether the end-of-data line was among them (the bytes after it are the next commands).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        for (i, &b) in input.iter().enumerate() {
            match (self.state, b) {
                (State::LineStart, b'.') => self.state = State::Dot,
                (State::Dot, b'\r') => self.state = State::DotCr,
                (State::DotCr, b'\n') => return (i + 1, true),
                (State::DotCr, _) => {
                    // `.` CR something: an odd line, not the end. The dot was stuffing; keep the CR.
                    self.push(b'\r', out);
                    self.state = State::Cr;
                    self.byte(b, out);
                }
                (State::Dot, _) => {
                    // Unstuffing: the line's first dot goes, the rest is text.
                    self.state = State::Text;
                    self.byte(b, out);
                }
                _ => self.byte(b, out),
            }
        }
        (input.len(), false)
    }

    /// One byte of text in state `Text`, `Cr` or `LineStart`.
    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match (self.state, b) {
            (State::Cr, b'\n') => {
                self.push(b'\n', out);
                self.state = State::LineStart;
            }
            (_, b'\r') => {
                self.push(b'\r', out);
                self.state = State::Cr;
            }
            (_, b'\n') => {
                // A bare LF: written as CRLF, but it does not start a line (see the module comment).
                self.push(b'\r', out);
                self.push(b'\n', out);
                self.state = State::Text;
            }
            (State::Cr, _) => {
                // A bare CR is kept as it came: raw bytes are stored unchanged where that is safe.
                self.push(b, out);
                self.state = State::Text;
            }
            _ => {
                self.push(b, out);
                self.state = State::Text;
            }
        }
    }

    fn push(&mut self, b: u8, out: &mut Vec<u8>) {
        self.seen += 1;
        if self.seen <= self.limit {
            out.push(b);
        }
    }
}

/// Decodes `input` fed in chunks of `chunk` bytes (at least 1) keeping at most `limit`: the message,
/// where the end-of-data line ended (if it came), and whether the message went over the limit.
pub(crate) fn decode_in_chunks(
    input: &[u8],
    chunk: usize,
    limit: usize,
) -> (Vec<u8>, Option<usize>, bool) {
    let mut d = DataDecoder::new(limit);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let end = (pos + chunk.max(1)).min(input.len());
        let (used, done) = d.feed(&input[pos..end], &mut out);
        pos += used;
        if done {
            return (out, Some(pos), d.too_big());
        }
    }
    (out, None, d.too_big())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(input: &[u8], chunk: usize, limit: usize) -> (Vec<u8>, Option<usize>, bool) {
        decode_in_chunks(input, chunk, limit)
    }

    proptest! {
        /// Round trip: any message of CRLF lines, dot-stuffed as a client does and ended with `.`, decodes
        /// to itself in any chunking, and the end is found exactly after the terminator.
        #[test]
        fn stuffed_messages_round_trip(
            lines in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'), 0..40),
                0..20,
            ),
            chunk in 1usize..64,
            trailer in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut message = Vec::new();
            let mut wire = Vec::new();
            for line in &lines {
                message.extend_from_slice(line);
                message.extend_from_slice(b"\r\n");
                if line.first() == Some(&b'.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(line);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b".\r\n");
            let end = wire.len();
            wire.extend_from_slice(&trailer);
            let (out, got_end, too_big) = decode(&wire, chunk, usize::MAX);
            prop_assert_eq!(out, message);
            prop_assert_eq!(got_end, Some(end));
            prop_assert!(!too_big);
        }

        /// Arbitrary bytes through every SMTP parser: no panic, chunking never matters.
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            super::super::fuzz_one(&data);
        }
    }

    /// Input, expected message, expected end offset (None: still waiting for the end).
    const CASES: &[(&[u8], &[u8], Option<usize>)] = &[
        (b".\r\n", b"", Some(3)),
        (b"ni-i-ni...\r\n.\r\nQUIT\r\n", b"ni-i-ni...\r\n", Some(15)),
        (b"..\r\n.\r\n", b".\r\n", Some(7)),
        (
            b"..leading dot\r\n...\r\n.\r\n",
            b".leading dot\r\n..\r\n",
            Some(23),
        ),
        (b"a.\r\nb\r\n.\r\n", b"a.\r\nb\r\n", Some(10)),
        // Bare LFs become CRLF and never end the data.
        (b"a\nb\n.\nc\r\n.\r\n", b"a\r\nb\r\n.\r\nc\r\n", Some(12)),
        (b"a\n.\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n", Some(11)),
        (b"a\r\n.\n.\r\n.\r\n", b"a\r\n\r\n.\r\n", Some(11)),
        // Bare CR stays; `.` CR x is not the end.
        (b"a\rb\r\n.\rx\r\n.\r\n", b"a\rb\r\n\rx\r\n", Some(13)),
        (b"\0\0\r\n.\r\n", b"\0\0\r\n", Some(7)),
        (b"no end\r\n", b"no end\r\n", None),
        (b"no end\r\n.", b"no end\r\n", None),
    ];

    #[test]
    fn every_chunk_size() {
        for (input, message, end) in CASES {
            for chunk in 1..=input.len().max(1) {
                let (out, got_end, too_big) = decode(input, chunk, 1 << 20);
                assert_eq!(
                    (out.as_slice(), got_end, too_big),
                    (*message, *end, false),
                    "input {:?} in chunks of {chunk}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn over_the_limit_keeps_counting_to_the_end() {
        let (out, end, too_big) = decode(b"0123456789\r\n.\r\nQUIT\r\n", 4, 5);
        assert_eq!(
            (out.as_slice(), end, too_big),
            (&b"01234"[..], Some(15), true)
        );
        let (out, _, too_big) = decode(b"0123\r\n.\r\n", 3, 6);
        assert_eq!((out.as_slice(), too_big), (&b"0123\r\n"[..], false));
    }
}

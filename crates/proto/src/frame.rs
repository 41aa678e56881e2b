//! Frame codec: splits a byte stream into MSNP frames.
//!
//! An MSNP frame is a command line terminated by CRLF (`CMD TrID params…`, a numeric error
//! line such as `911 3`, or a command without TrID such as `PNG`), optionally followed by a
//! payload whose byte length is the last parameter of the line (`MSG 5 N 138\r\n` + 138
//! bytes). Which commands carry a payload depends on who sends them and on the dialect; that
//! is the one table [`payload_command`] below.
//!
//! The decoder is sans-IO: it works over a [`BytesMut`] the caller fills however it likes,
//! checks every cap before allocating, and yields the same frames whatever the chunking of the
//! input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt::{self, Write as _};

use crate::Dialect;

/// Who wrote the bytes being decoded. The same command name can carry a payload in one
/// direction and not in the other (`QRY 12 id 32` from a client, `QRY 12` from the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Client,
    Server,
}

/// Hard caps applied before any allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line accepted, CRLF excluded.
    pub max_line: usize,
    /// Largest payload accepted; a larger one is skipped without being buffered.
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // Official clients never send lines near 2 KiB (the longest are ILN/NLN with an MSN
        // object); MSG payloads are capped at 1664 bytes by the official switchboard, but NS
        // payloads and third-party clients go higher, so the codec's cap is generous and the
        // per-command policy lives in the server.
        Limits {
            max_line: 8 * 1024,
            max_payload: 64 * 1024,
        }
    }
}

/// A transaction ID: the client's number echoed in the server's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TrId(pub u32);

impl fmt::Display for TrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why the byte stream could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No CRLF within [`Limits::max_line`] bytes. The stream cannot be resynchronised.
    #[error("command line longer than {max} bytes")]
    LineTooLong { max: usize },
    /// The command line is not UTF-8. The line has been consumed; the stream stays usable.
    /// The TrID is recovered when the second token is plain digits, so the error can echo it.
    #[error("command line is not valid UTF-8")]
    NotUtf8 { trid: Option<TrId> },
    /// A payload command whose length parameter is missing or not a number. The line has
    /// been consumed; since the payload's extent is unknown, the caller should close.
    #[error("{command}: payload length missing or not a number")]
    BadPayloadLength { command: String, trid: Option<TrId> },
    /// A payload larger than [`Limits::max_payload`]. Its bytes are skipped by the decoder as
    /// they arrive, never buffered, so the caller may answer with an error and carry on.
    #[error("{command}: payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge {
        command: String,
        trid: Option<TrId>,
        len: usize,
        max: usize,
    },
}

impl FrameError {
    /// Whether the stream is still aligned on a frame boundary after this error.
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self,
            FrameError::NotUtf8 { .. } | FrameError::PayloadTooLarge { .. }
        )
    }
}

/// Where a payload command keeps its length: always its last parameter; this table says
/// which commands are payload commands, for which sender and from which dialect on.
///
/// | command | sender | dialects | line |
/// |---|---|---|---|
/// | MSG | client | all | `MSG TrID ack-mode length` |
/// | MSG | server | all | `MSG passport name length` |
/// | QRY | client | MSNP6+ | `QRY TrID client-id length` |
/// | PAG | client | MSNP5–MSNP12 | `PAG TrID passport length` |
/// | IPG | server | MSNP5–MSNP12 | `IPG length` |
/// | NOT | server | MSNP8+ | `NOT length` |
/// | UUX | client | MSNP11+ | `UUX TrID length` |
/// | UBX | server | MSNP11+ | `UBX passport length` |
/// | GCF | server | MSNP11+ | `GCF TrID filename length` |
pub fn payload_command(command: &str, peer: Peer, dialect: Option<Dialect>) -> bool {
    // Before VER has been negotiated we accept every dialect's payload commands: the
    // liberal choice, since a frame boundary mistake would desynchronise the stream.
    let from = |min: Dialect| dialect.is_none_or(|d| d >= min);
    match (peer, command) {
        (_, "MSG") => true,
        (Peer::Client, "QRY") => from(Dialect::Msnp6),
        (Peer::Client, "PAG") | (Peer::Server, "IPG") => from(Dialect::Msnp5),
        (Peer::Server, "NOT") => from(Dialect::Msnp8),
        (Peer::Client, "UUX") | (Peer::Server, "UBX") | (Peer::Server, "GCF") => {
            from(Dialect::Msnp11)
        }
        _ => false,
    }
}

/// Commands a client sends without a TrID.
pub fn client_command_without_trid(command: &str) -> bool {
    matches!(command, "PNG" | "OUT")
}

/// One decoded frame: the command line (without CRLF) and the payload, if any.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    line: Bytes,
    payload: Option<Bytes>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("line", &self.line())
            .field("payload_len", &self.payload.as_ref().map(Bytes::len))
            .finish()
    }
}

fn is_sep(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl Frame {
    /// Builds a frame from a line (no CRLF) and an optional payload. Returns `None` if the
    /// line is not UTF-8 or contains CR or LF.
    pub fn new(line: impl Into<Bytes>, payload: Option<Bytes>) -> Option<Frame> {
        let line = line.into();
        let text = std::str::from_utf8(&line).ok()?;
        if text.contains(['\r', '\n']) {
            return None;
        }
        Some(Frame { line, payload })
    }

    /// The command line, without CRLF. Always valid UTF-8 (checked when decoded).
    pub fn line(&self) -> &str {
        std::str::from_utf8(&self.line).unwrap_or_default()
    }

    /// The parameters, split on runs of spaces or tabs (clients were sloppy about both).
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.line().split(is_sep).filter(|t| !t.is_empty())
    }

    /// The command name (`USR`, `911`, …).
    pub fn command(&self) -> &str {
        self.tokens().next().unwrap_or("")
    }

    /// The parameters after the command name.
    pub fn args(&self) -> impl Iterator<Item = &str> {
        self.tokens().skip(1)
    }

    /// The TrID, when the second token is one. `None` for `PNG`, `OUT` or a garbled TrID.
    pub fn trid(&self) -> Option<TrId> {
        if client_command_without_trid(self.command()) {
            return None;
        }
        parse_trid(self.args().next()?)
    }

    /// The parameters after the command name and TrID (client commands).
    pub fn params(&self) -> Vec<&str> {
        let skip = if client_command_without_trid(self.command()) {
            1
        } else {
            2
        };
        self.tokens().skip(skip).collect()
    }

    /// The numeric code of an error line.
    pub fn error_code(&self) -> Option<u16> {
        let cmd = self.command();
        if cmd.len() == 3 && cmd.bytes().all(|b| b.is_ascii_digit()) {
            cmd.parse().ok()
        } else {
            None
        }
    }

    pub fn payload(&self) -> Option<&Bytes> {
        self.payload.as_ref()
    }

    /// Appends the frame in wire form.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.line.len() + 2 + self.payload.as_ref().map_or(0, Bytes::len));
        out.put_slice(&self.line);
        out.put_slice(b"\r\n");
        if let Some(p) = &self.payload {
            out.put_slice(p);
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Parses a TrID the way the official servers did: decimal digits only, 0 allowed.
pub fn parse_trid(token: &str) -> Option<TrId> {
    if token.is_empty() || token.len() > 10 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok().map(TrId)
}

/// Incremental decoder. Holds only the state that must survive between reads: the dialect
/// (which changes the payload table) and how many bytes of a refused payload remain to skip.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    peer: Peer,
    limits: Limits,
    dialect: Option<Dialect>,
    /// Bytes of an oversized payload still to be discarded.
    skip: usize,
    /// A parsed payload command line waiting for its payload bytes.
    pending: Option<(Bytes, usize)>,
}

impl FrameDecoder {
    /// A decoder for bytes written by `peer`.
    pub fn new(peer: Peer, limits: Limits) -> Self {
        FrameDecoder {
            peer,
            limits,
            dialect: None,
            skip: 0,
            pending: None,
        }
    }

    /// Tells the decoder which dialect `VER` settled on.
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.dialect = Some(dialect);
    }

    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the decoder is part-way through a frame (bytes consumed but no frame yet).
    pub fn is_mid_frame(&self) -> bool {
        self.skip > 0 || self.pending.is_some()
    }

    /// Takes the next frame off the front of `buf`. `Ok(None)` means more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            buf.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        if let Some((_, len)) = &self.pending {
            if buf.len() < *len {
                return Ok(None);
            }
            let len = *len;
            let payload = buf.split_to(len).freeze();
            let (line, _) = self.pending.take().unwrap_or_default();
            return Ok(Some(Frame {
                line,
                payload: Some(payload),
            }));
        }

        // Only look at the bytes the line cap allows, so a peer that never sends CRLF costs
        // a bounded scan and buffer.
        let window = &buf[..buf.len().min(self.limits.max_line + 2)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if buf.len() > self.limits.max_line + 1 {
                return Err(FrameError::LineTooLong {
                    max: self.limits.max_line,
                });
            }
            return Ok(None);
        };
        // Liberal: a bare LF also ends a line; a CR before it is dropped.
        let end = if lf > 0 && buf[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        if end > self.limits.max_line {
            return Err(FrameError::LineTooLong {
                max: self.limits.max_line,
            });
        }
        let mut line = buf.split_to(lf + 1);
        line.truncate(end);
        let line = line.freeze();
        let Ok(text) = std::str::from_utf8(&line) else {
            let trid = line
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|t| !t.is_empty())
                .nth(1)
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(parse_trid);
            return Err(FrameError::NotUtf8 { trid });
        };
        let mut tokens = text.split(is_sep).filter(|t| !t.is_empty());
        let command = tokens.next().unwrap_or("");
        if !payload_command(command, self.peer, self.dialect) {
            return Ok(Some(Frame {
                line,
                payload: None,
            }));
        }
        let mut count = 1;
        let mut last = "";
        let mut second = None;
        for t in tokens {
            if count == 1 {
                second = Some(t);
            }
            last = t;
            count += 1;
        }
        let trid = match self.peer {
            Peer::Client => second.and_then(parse_trid),
            Peer::Server => None,
        };
        // A payload command needs at least one parameter besides its name: the length.
        let len = if count >= 2 && last.len() <= 10 && last.bytes().all(|b| b.is_ascii_digit()) {
            last.parse::<usize>().ok()
        } else {
            None
        };
        let Some(len) = len else {
            return Err(FrameError::BadPayloadLength {
                command: command.to_owned(),
                trid,
            });
        };
        if len > self.limits.max_payload {
            let command = command.to_owned();
            let n = len.min(buf.len());
            buf.advance(n);
            self.skip = len - n;
            return Err(FrameError::PayloadTooLarge {
                command,
                trid,
                len,
                max: self.limits.max_payload,
            });
        }
        if buf.len() >= len {
            let payload = buf.split_to(len).freeze();
            return Ok(Some(Frame {
                line,
                payload: Some(payload),
            }));
        }
        buf.reserve(len - buf.len());
        self.pending = Some((line, len));
        Ok(None)
    }
}

/// Builds one outgoing line: `CMD [TrID] args…\r\n`. Parameters must already be
/// URL-encoded where the protocol wants it.
pub fn write_line(out: &mut BytesMut, command: &str, trid: Option<TrId>, args: &[&str]) {
    let len = command.len() + 12 + args.iter().map(|a| a.len() + 1).sum::<usize>() + 2;
    out.reserve(len);
    out.put_slice(command.as_bytes());
    if let Some(t) = trid {
        // BytesMut's fmt::Write never fails: it grows as needed.
        let _ = write!(out, " {t}");
    }
    for a in args {
        out.put_u8(b' ');
        out.put_slice(a.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// Builds one outgoing payload command: `CMD [TrID] args… len\r\n` followed by the payload.
pub fn write_payload(
    out: &mut BytesMut,
    command: &str,
    trid: Option<TrId>,
    args: &[&str],
    payload: &[u8],
) {
    let len = payload.len().to_string();
    let mut all: Vec<&str> = Vec::with_capacity(args.len() + 1);
    all.extend_from_slice(args);
    all.push(&len);
    write_line(out, command, trid, &all);
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// A long client-side transcript touching every frame shape: plain lines, lines without
    /// TrID, pipelined commands, tabs and trailing spaces, bare LF, payload commands (one of
    /// them holding CRLF and binary bytes).
    fn client_transcript() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"VER 1 MSNP8 CVR0\r\nCVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0.0544 MSMSGS example@passport.com\r\n");
        t.extend_from_slice(b"USR 3 TWN I example@passport.com\r\n");
        t.extend_from_slice(b"CVR\t2\t0x0409 win  4.10\r\nINF 2 \r\nPNG\r\nSYN 8 6\n");
        t.extend_from_slice(b"QRY 1049 msmsgs@msnmsgr.com 32\r\n8f2f5a91b72102cd28355e9fc9000d6e");
        let msg = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=MS%20Sans%20Serif; EF=; CO=0; CS=0; PF=0\r\n\r\nAre you there? \r\nI'm Alice";
        t.extend_from_slice(format!("MSG 5 N {}\r\n", msg.len()).as_bytes());
        t.extend_from_slice(msg);
        let p2p: Vec<u8> = (0u8..=255).collect();
        t.extend_from_slice(format!("MSG 6 D {}\r\n", p2p.len()).as_bytes());
        t.extend_from_slice(&p2p);
        t.extend_from_slice(b"MSG 7 U 0\r\n");
        t.extend_from_slice(b"UUX 9 19\r\n<Data><PSM/></Data>");
        t.extend_from_slice(b"CHG 10 NLN 2147778596:0\r\nOUT\r\n");
        t
    }

    fn decode_all(input: &[u8], chunk: usize, peer: Peer) -> Vec<Result<Frame, FrameError>> {
        let mut dec = FrameDecoder::new(peer, Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(f)) => out.push(Ok(f)),
                    Ok(None) => break,
                    Err(e) => {
                        let fatal = !e.is_recoverable();
                        out.push(Err(e));
                        if fatal {
                            return out;
                        }
                    }
                }
            }
        }
        assert!(buf.is_empty(), "bytes left over: {buf:?}");
        out
    }

    #[test]
    fn every_chunk_size_gives_the_same_frames() {
        let input = client_transcript();
        let whole = decode_all(&input, input.len(), Peer::Client);
        assert_eq!(whole.len(), 14);
        for chunk in 1..=512 {
            assert_eq!(
                decode_all(&input, chunk, Peer::Client),
                whole,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn lines_are_split_liberally() {
        let frames = decode_all(&client_transcript(), 7, Peer::Client);
        let f = |i: usize| frames[i].as_ref().unwrap().clone();
        assert_eq!(f(0).command(), "VER");
        assert_eq!(f(0).trid(), Some(TrId(1)));
        assert_eq!(f(0).params(), vec!["MSNP8", "CVR0"]);
        assert_eq!(f(3).params(), vec!["0x0409", "win", "4.10"]);
        assert_eq!(f(4).command(), "INF");
        assert_eq!(f(4).params(), Vec::<&str>::new());
        assert_eq!(f(5).command(), "PNG");
        assert_eq!(f(5).trid(), None);
        assert_eq!(f(6).line(), "SYN 8 6");
        assert_eq!(
            f(7).payload().unwrap().as_ref(),
            b"8f2f5a91b72102cd28355e9fc9000d6e"
        );
        assert_eq!(f(9).payload().unwrap().len(), 256);
        assert_eq!(f(10).payload().unwrap().len(), 0);
        assert_eq!(f(11).payload().unwrap().as_ref(), b"<Data><PSM/></Data>");
        assert_eq!(f(13).command(), "OUT");
    }

    #[test]
    fn server_frames_use_the_server_table() {
        let input =
            b"QRY 12\r\nMSG Hotmail Hotmail 5\r\nhelloNOT 3\r\nabcUBX a@b.c 2\r\nxyCHL 0 123\r\n";
        let frames: Vec<Frame> = decode_all(input, 3, Peer::Server)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames.len(), 5);
        assert_eq!(frames[0].payload(), None);
        assert_eq!(frames[1].payload().unwrap().as_ref(), b"hello");
        assert_eq!(frames[3].payload().unwrap().as_ref(), b"xy");
    }

    #[test]
    fn dialect_decides_payload_commands() {
        let mut dec = FrameDecoder::new(Peer::Client, Limits::default());
        dec.set_dialect(Dialect::Msnp8);
        let mut buf = BytesMut::from(&b"UUX 3 5\r\nPNG\r\n"[..]);
        // At MSNP8 UUX does not exist, so it is a plain (unknown) line, not a payload command.
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap().payload(), None);
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap().command(), "PNG");
    }

    #[test]
    fn malformed_input_is_refused() {
        let limits = Limits {
            max_line: 32,
            max_payload: 16,
        };
        let cases: &[(&[u8], FrameError)] = &[
            (&[b'A'; 40], FrameError::LineTooLong { max: 32 }),
            (
                b"VER 1 \xff\xfe\r\n",
                FrameError::NotUtf8 {
                    trid: Some(TrId(1)),
                },
            ),
            (
                b"MSG 1 N abc\r\n",
                FrameError::BadPayloadLength {
                    command: "MSG".into(),
                    trid: Some(TrId(1)),
                },
            ),
            (
                b"MSG\r\n",
                FrameError::BadPayloadLength {
                    command: "MSG".into(),
                    trid: None,
                },
            ),
            (
                b"MSG 1 N 99999999999999999999\r\n",
                FrameError::BadPayloadLength {
                    command: "MSG".into(),
                    trid: Some(TrId(1)),
                },
            ),
            (
                b"MSG 2 N 17\r\n",
                FrameError::PayloadTooLarge {
                    command: "MSG".into(),
                    trid: Some(TrId(2)),
                    len: 17,
                    max: 16,
                },
            ),
        ];
        for (input, expected) in cases {
            let mut dec = FrameDecoder::new(Peer::Client, limits);
            let mut buf = BytesMut::from(*input);
            assert_eq!(dec.decode(&mut buf).unwrap_err(), *expected, "{input:?}");
        }
    }

    #[test]
    fn oversized_payload_is_skipped_and_stream_recovers() {
        let limits = Limits {
            max_line: 64,
            max_payload: 4,
        };
        let mut input = b"MSG 2 N 10\r\n".to_vec();
        input.extend_from_slice(b"0123456789PNG\r\n");
        for chunk in 1..=input.len() {
            let mut dec = FrameDecoder::new(Peer::Client, limits);
            let mut buf = BytesMut::new();
            let mut seen = Vec::new();
            for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(f)) => seen.push(f.line().to_owned()),
                        Ok(None) => break,
                        Err(e) => seen.push(format!("err {e}")),
                    }
                }
            }
            assert_eq!(seen.len(), 2, "chunk {chunk}: {seen:?}");
            assert!(seen[0].starts_with("err MSG"));
            assert_eq!(seen[1], "PNG");
        }
    }

    #[test]
    fn line_cap_holds_without_crlf() {
        let mut dec = FrameDecoder::new(Peer::Client, Limits::default());
        let mut buf = BytesMut::new();
        let mut err = None;
        for _ in 0..100 {
            buf.extend_from_slice(&[b'x'; 1000]);
            match dec.decode(&mut buf) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("no frame expected"),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err, Some(FrameError::LineTooLong { max: 8192 }));
        assert!(buf.len() <= 10_000);
    }

    #[test]
    fn write_helpers() {
        let mut out = BytesMut::new();
        write_line(&mut out, "VER", Some(TrId(1)), &["MSNP8", "CVR0"]);
        write_line(&mut out, "QNG", None, &[]);
        write_payload(&mut out, "MSG", None, &["Hotmail", "Hotmail"], b"abc");
        assert_eq!(
            &out[..],
            b"VER 1 MSNP8 CVR0\r\nQNG\r\nMSG Hotmail Hotmail 3\r\nabc"
        );
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9@.%_:{}!#-]{1,12}"
    }

    fn frame() -> impl Strategy<Value = (String, Option<u32>, Vec<String>, Option<Vec<u8>>)> {
        let plain = (
            // Payload commands, and `PNG`/`OUT` (which never carry a TrID), have their own arms.
            "[A-Z]{3}".prop_filter("commands with their own arm", |c| {
                !payload_command(c, Peer::Client, None) && !client_command_without_trid(c)
            }),
            any::<u32>(),
            proptest::collection::vec(token(), 0..6),
        )
            .prop_map(|(c, t, a)| (c, Some(t), a, None));
        let payload = (
            prop_oneof![Just("MSG"), Just("QRY"), Just("UUX"), Just("PAG")],
            any::<u32>(),
            proptest::collection::vec(token(), 0..3),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(c, t, a, p)| (c.to_owned(), Some(t), a, Some(p)));
        let bare = prop_oneof![Just("PNG"), Just("OUT")]
            .prop_map(|c| (c.to_owned(), None, Vec::new(), None));
        prop_oneof![plain, payload, bare]
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(frame(), 1..20), chunk in 1usize..64) {
            let mut wire = BytesMut::new();
            for (c, t, a, p) in &frames {
                let args: Vec<&str> = a.iter().map(String::as_str).collect();
                match p {
                    Some(p) => write_payload(&mut wire, c, t.map(TrId), &args, p),
                    None => write_line(&mut wire, c, t.map(TrId), &args),
                }
            }
            let decoded = decode_all(&wire, chunk, Peer::Client);
            prop_assert_eq!(decoded.len(), frames.len());
            for ((c, t, a, p), d) in frames.iter().zip(decoded) {
                let d = d.unwrap();
                prop_assert_eq!(d.command(), c.as_str());
                prop_assert_eq!(d.trid(), t.map(TrId));
                let mut params = d.params();
                if p.is_some() {
                    params.pop();
                }
                prop_assert_eq!(params, a.iter().map(String::as_str).collect::<Vec<_>>());
                prop_assert_eq!(d.payload().map(|b| b.to_vec()), p.clone());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..600) {
            let mut dec = FrameDecoder::new(Peer::Client, Limits { max_line: 256, max_payload: 512 });
            let mut buf = BytesMut::new();
            'outer: for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) if e.is_recoverable() => {}
                        Err(_) => break 'outer,
                    }
                }
                prop_assert!(buf.len() <= 258 + 512);
            }
        }
    }
}

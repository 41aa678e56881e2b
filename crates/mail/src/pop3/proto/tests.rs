#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

/// What a decoder reports, with the line's bytes.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Line(Vec<u8>),
    TooLong,
    BareLf,
}

/// Feeds `chunks` through a decoder the way the session does (append what was read, take events until
/// it needs more), checking that the unconsumed rest never exceeds one line's worth.
fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Ev> {
    let mut dec = LineDecoder::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let ev = dec.decode(&buf);
            let consumed = match ev {
                LineEvent::Line { len, consumed } => {
                    out.push(Ev::Line(buf[..len].to_vec()));
                    consumed
                }
                LineEvent::TooLong { consumed } => {
                    out.push(Ev::TooLong);
                    consumed
                }
                LineEvent::BareLf { consumed } => {
                    out.push(Ev::BareLf);
                    consumed
                }
                LineEvent::Incomplete { consumed: 0 } => break,
                LineEvent::Incomplete { consumed } => consumed,
            };
            buf.drain(..consumed);
        }
        assert!(
            buf.len() < LineDecoder::MIN_BUFFER,
            "kept {} bytes",
            buf.len()
        );
    }
    out
}

fn sample_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"USER alice@example.com\r\nPASS secret word\r\n");
    s.extend_from_slice(b"bare\nSTAT\r\n");
    s.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
    s.extend_from_slice(b"\r\n");
    s.extend(std::iter::repeat_n(b'y', MAX_LINE));
    s.extend_from_slice(b"\r\n\r\nQUIT\r\n");
    // An over-long line whose CRLF straddles the window, then one ending in CR CR LF.
    s.extend(std::iter::repeat_n(b'z', 3 * MAX_LINE));
    s.extend_from_slice(b"\r\nNOOP\r\r\n");
    s
}

#[test]
fn decoder_events() {
    let s = sample_stream();
    let y = vec![b'y'; MAX_LINE];
    assert_eq!(
        feed([&s[..]]),
        vec![
            Ev::Line(b"USER alice@example.com".to_vec()),
            Ev::Line(b"PASS secret word".to_vec()),
            Ev::BareLf,
            Ev::Line(b"STAT".to_vec()),
            Ev::TooLong,
            Ev::Line(y),
            Ev::Line(Vec::new()),
            Ev::Line(b"QUIT".to_vec()),
            Ev::TooLong,
            Ev::Line(b"NOOP\r".to_vec()),
        ]
    );
}

#[test]
fn decoder_same_events_at_every_split() {
    let s = sample_stream();
    let whole = feed([&s[..]]);
    for at in 0..=s.len() {
        assert_eq!(feed([&s[..at], &s[at..]]), whole, "split at {at}");
    }
    for size in 1..=512 {
        assert_eq!(feed(s.chunks(size)), whole, "chunks of {size}");
    }
}

#[test]
fn ten_megabyte_line_is_discarded_in_bounded_memory() {
    let big = vec![b'A'; 10 << 20];
    let mut chunks: Vec<&[u8]> = big.chunks(4096).collect();
    chunks.push(b"\r\nNOOP\r\n");
    assert_eq!(feed(chunks), vec![Ev::TooLong, Ev::Line(b"NOOP".to_vec())]);
}

#[test]
fn parses_commands() {
    let cases: &[(&[u8], Command)] = &[
        (
            b"USER alice@example.com",
            Command::User("alice@example.com".into()),
        ),
        (
            b"user  Alice@Example.com  ",
            Command::User("Alice@Example.com".into()),
        ),
        (b"PASS secret", Command::Pass("secret".into())),
        (b"pass  two words ", Command::Pass(" two words ".into())),
        (b"STAT", Command::Stat),
        (b"  stat ", Command::Stat),
        (b"LIST", Command::List(None)),
        (b"LiSt 3", Command::List(Some(3))),
        (b"RETR 1", Command::Retr(1)),
        (b"DELE 4294967295", Command::Dele(u32::MAX)),
        (b"NOOP", Command::Noop),
        (b"RSET", Command::Rset),
        (b"TOP 1 0", Command::Top(1, 0)),
        (b"top\t2\t10", Command::Top(2, 10)),
        (b"UIDL", Command::Uidl(None)),
        (b"UIDL 007", Command::Uidl(Some(7))),
        (b"QUIT", Command::Quit),
        (b"capa", Command::Capa),
        (b"STLS", Command::Stls),
        (
            b"AUTH",
            Command::Auth {
                mechanism: None,
                initial: None,
            },
        ),
        (
            b"AUTH plain AGFsaWNlAHNlY3JldA==",
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGFsaWNlAHNlY3JldA==".into()),
            },
        ),
    ];
    for (line, want) in cases {
        assert_eq!(
            parse(line).as_ref(),
            Ok(want),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn refuses_malformed_commands() {
    let long_arg = format!("RETR {}", "1".repeat(MAX_ARG + 1));
    let cases: &[(&[u8], ParseError)] = &[
        (b"", ParseError::Empty),
        (b"    ", ParseError::Empty),
        (b"\0", ParseError::ControlChar),
        (b"STAT\0", ParseError::ControlChar),
        (b"USER a\x1bb", ParseError::ControlChar),
        (b"RETR 1\x7f", ParseError::ControlChar),
        (b"ST", ParseError::Unknown),
        (b"STATS", ParseError::Unknown),
        (b"EHLO x", ParseError::Unknown),
        (b"GET / HTTP/1.1", ParseError::Unknown),
        (b"ST4T", ParseError::Unknown),
        (b"\xc3\xa9tat", ParseError::Unknown),
        (b"\x16\x03\x01\x02\x00\x01", ParseError::ControlChar),
        (b"USER", ParseError::Syntax("USER name")),
        (b"USER a b", ParseError::Syntax("USER name")),
        (b"USER \xff", ParseError::NotUtf8),
        (b"PASS", ParseError::Syntax("PASS string")),
        (b"PASS ", ParseError::Syntax("PASS string")),
        (b"PASS \xfe", ParseError::NotUtf8),
        (b"STAT 1", ParseError::Syntax("STAT")),
        (b"LIST 1 2", ParseError::Syntax("LIST [msg]")),
        (b"LIST x", ParseError::Syntax("LIST [msg]")),
        (b"LIST -1", ParseError::Syntax("LIST [msg]")),
        (b"LIST +1", ParseError::Syntax("LIST [msg]")),
        (b"RETR", ParseError::Syntax("RETR msg")),
        (b"RETR 4294967296", ParseError::Syntax("RETR msg")),
        (b"RETR 1.5", ParseError::Syntax("RETR msg")),
        (long_arg.as_bytes(), ParseError::ArgTooLong),
        (b"DELE", ParseError::Syntax("DELE msg")),
        (b"TOP 1", ParseError::Syntax("TOP msg n")),
        (b"TOP 1 2 3", ParseError::Syntax("TOP msg n")),
        (b"UIDL a", ParseError::Syntax("UIDL [msg]")),
        (b"QUIT now", ParseError::Syntax("QUIT")),
        (
            b"AUTH PLAIN a b",
            ParseError::Syntax("AUTH [mechanism [initial-response]]"),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(
            parse(line).as_ref(),
            Err(want),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn password_never_in_debug_output() {
    let cmd = parse(b"PASS hunter2").unwrap();
    assert!(!format!("{cmd:?}").contains("hunter2"));
    let cmd = parse(b"AUTH PLAIN AGFsaWNlAGh1bnRlcjI=").unwrap();
    assert!(!format!("{cmd:?}").contains("AGFsaWNl"));
}

#[test]
fn status_lines() {
    let mut out = Vec::new();
    ok(&mut out, "2 320");
    ok(&mut out, "");
    err(&mut out, Some(RespCode::InUse), "maildrop already locked");
    err(&mut out, None, "no such message\r\n+OK forged");
    continuation(&mut out, "");
    assert_eq!(
        out,
        b"+OK 2 320\r\n+OK\r\n-ERR [IN-USE] maildrop already locked\r\n\
          -ERR no such message  +OK forged\r\n+ \r\n"
    );
}

fn stuff(input: &[u8], top: Option<u32>, chunk: usize) -> Vec<u8> {
    let mut s = DotStuffer::with_body_lines(top);
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        s.push(piece, &mut out);
    }
    s.finish(&mut out);
    out
}

#[test]
fn byte_stuffing() {
    let msg = b"Subject: hi\r\n\r\n.hidden\r\n..two\r\nbare\nlf\r\n.\r\nlast";
    let want: &[u8] = b"Subject: hi\r\n\r\n..hidden\r\n...two\r\nbare\r\nlf\r\n..\r\nlast\r\n.\r\n";
    for chunk in 1..=msg.len() {
        assert_eq!(stuff(msg, None, chunk), want, "chunk {chunk}");
    }
    assert_eq!(stuff(b"", None, 1), b".\r\n");
    assert_eq!(stuff(b"a\r\n", None, 1), b"a\r\n.\r\n");
    assert_eq!(stuff(b"a\r", None, 1), b"a\r\n.\r\n");
    assert_eq!(stuff(b"a\rb", None, 1), b"a\r\nb\r\n.\r\n");
}

#[test]
fn top_limits_body_lines() {
    let msg = b"From: a\r\nSubject: b\r\n\r\none\r\n.two\r\nthree\r\n";
    assert_eq!(
        stuff(msg, Some(0), 3),
        b"From: a\r\nSubject: b\r\n\r\n.\r\n"
    );
    assert_eq!(
        stuff(msg, Some(2), 1),
        b"From: a\r\nSubject: b\r\n\r\none\r\n..two\r\n.\r\n"
    );
    assert_eq!(stuff(msg, Some(99), 5), stuff(msg, None, 5));
    // No body at all: the whole header, whatever the count.
    assert_eq!(stuff(b"From: a", Some(0), 2), b"From: a\r\n.\r\n");
}

/// Undoes the stuffing the way a client does: the inverse of [`DotStuffer`] on CRLF input.
fn unstuff(resp: &[u8]) -> Option<Vec<u8>> {
    let body = resp.strip_suffix(b".\r\n")?;
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_prefix(b".").unwrap_or(line);
        out.extend_from_slice(line);
    }
    Some(out)
}

#[test]
fn fuzz_body_on_seeds() {
    let seeds: [&[u8]; 6] = [
        b"",
        b"\x00",
        b"\x03USER a\r\nPASS b c\r\n.\r\n..x\rbare\nend",
        b"\x00\r\r\n\n\r",
        b"\x10RETR 1\r\nTOP 1 2\r\n\x00\r\n",
        &[0xff; 2000],
    ];
    for seed in seeds {
        fuzz_one(seed);
    }
    let mut long = vec![7u8];
    long.extend(sample_stream());
    fuzz_one(&long);
}

proptest! {
    #[test]
    fn fuzz_body_on_random_input(data in proptest::collection::vec(
        prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b' '), any::<u8>()], 0..1500)) {
        fuzz_one(&data);
    }

    #[test]
    fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&line);
    }

    #[test]
    fn decoder_ignores_how_input_is_split(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), Just(b' ')], 0..2000),
        cuts in proptest::collection::vec(0usize..2000, 0..8),
    ) {
        let whole = feed([&input[..]]);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for c in cuts {
            pieces.push(&input[at..c]);
            at = c;
        }
        pieces.push(&input[at..]);
        prop_assert_eq!(feed(pieces), whole);
    }

    #[test]
    fn stuffing_round_trips(
        lines in proptest::collection::vec("[.a-z ]{0,12}", 0..20),
        chunk in 1usize..40,
    ) {
        let mut msg = Vec::new();
        for l in &lines {
            msg.extend_from_slice(l.as_bytes());
            msg.extend_from_slice(b"\r\n");
        }
        let resp = stuff(&msg, None, chunk);
        // No line of the body is "." alone, so the response cannot end early.
        let body = &resp[..resp.len() - 3];
        prop_assert!(!body.split(|&b| b == b'\n').any(|l| l == b".\r"));
        prop_assert_eq!(unstuff(&resp), Some(msg));
    }
}

//! The few MSNP lines the scenarios write and parse, per dialect, kept free of IO so they can
//! be tested.

use msgr_proto::frame::Frame;
use msgr_proto::Dialect;

/// `VER`, `CVR` and `USR TWN I` of a login, pipelined as the old clients did.
pub fn hello(dialect: Dialect, email: &str) -> String {
    format!(
        "VER 1 {} CVR0\r\nCVR 2 0x0409 winnt 5.1 i386 MSNMSGR 7.0.0816 MSMSGS {email}\r\nUSR 3 TWN I {email}\r\n",
        dialect.token()
    )
}

/// The Passport policy of a `USR t TWN S policy` reply (what login2.srf needs).
pub fn usr_twn_policy(f: &Frame) -> Option<&str> {
    match f.tokens().collect::<Vec<_>>().as_slice() {
        ["USR", _, "TWN", "S", policy, ..] => Some(*policy),
        _ => None,
    }
}

/// The notification server a dispatch server refers us to: `XFR t NS addr …`.
pub fn xfr_ns(f: &Frame) -> Option<String> {
    match f.tokens().collect::<Vec<_>>().as_slice() {
        ["XFR", _, "NS", addr, ..] => Some(addr.to_string()),
        _ => None,
    }
}

/// The `QRY` answering a `CHL`.
pub fn qry(dialect: Dialect, trid: u32, challenge: &str) -> String {
    let (id, answer) = if dialect >= Dialect::Msnp11 {
        let id = "PROD0090YUAUV{2B";
        (
            id,
            msgr_proto::challenge::msnp11(challenge, id, "YMM8C_H7KCQ2S_KL"),
        )
    } else {
        (
            "msmsgs@msnmsgr.com",
            msgr_proto::challenge::md5_concat(challenge, "Q1P7W2E4J9R8U3S5"),
        )
    };
    format!("QRY {trid} {id} {}\r\n{answer}", answer.len())
}

/// A full `SYN` request (list version 0), in the dialect's form.
pub fn syn(dialect: Dialect, trid: u32) -> String {
    if dialect >= Dialect::Msnp10 {
        format!("SYN {trid} 0 0\r\n")
    } else {
        format!("SYN {trid} 0\r\n")
    }
}

/// How many `LST` lines follow the `SYN` reply (0 when the server sent none).
pub fn syn_contacts(dialect: Dialect, f: &Frame) -> usize {
    let at = if dialect >= Dialect::Msnp10 { 2 } else { 1 };
    f.params().get(at).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The e-mail and list bits of a `LST` line from an MSNP8+ `SYN`.
pub fn lst_entry(dialect: Dialect, f: &Frame) -> Option<(String, u32)> {
    if f.command() != "LST" {
        return None;
    }
    let tokens: Vec<&str> = f.tokens().collect();
    if dialect >= Dialect::Msnp10 {
        let email = tokens.iter().find_map(|t| t.strip_prefix("N="))?;
        let bits = tokens
            .iter()
            .skip(1)
            .find(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))?;
        Some((email.to_owned(), bits.parse().ok()?))
    } else {
        Some((tokens.get(1)?.to_string(), tokens.get(3)?.parse().ok()?))
    }
}

/// Puts `email` on the forward list: `ADC t FL N=email F=email` (MSNP10+) or
/// `ADD t FL email email` (MSNP8–9).
pub fn add_forward(dialect: Dialect, trid: u32, email: &str) -> String {
    if dialect >= Dialect::Msnp10 {
        format!("ADC {trid} FL N={email} F={email}\r\n")
    } else {
        format!("ADD {trid} FL {email} {email}\r\n")
    }
}

/// `CHG t ST caps`; the capabilities field carries `caps` (MSNP8+ all relay it unchanged).
pub fn chg(trid: u32, status: &str, caps: u32) -> String {
    format!("CHG {trid} {status} {caps}\r\n")
}

/// The capabilities number of an `NLN ST email nick caps[:ext] [obj]` line.
pub fn nln_caps(f: &Frame) -> Option<u32> {
    if f.command() != "NLN" {
        return None;
    }
    f.tokens().nth(4)?.split(':').next()?.parse().ok()
}

/// The switchboard address and cookie of `XFR t SB addr CKI cookie …`.
pub fn xfr_sb(f: &Frame) -> Option<(String, String)> {
    let t: Vec<&str> = f.tokens().collect();
    match t.as_slice() {
        ["XFR", _, "SB", addr, "CKI", cookie, ..] => Some((addr.to_string(), cookie.to_string())),
        _ => None,
    }
}

/// An invitation: `RNG session addr CKI cookie caller nick …`.
#[derive(Debug, PartialEq, Eq)]
pub struct Ring {
    pub session: String,
    pub addr: String,
    pub cookie: String,
    pub caller: String,
}

pub fn rng(f: &Frame) -> Option<Ring> {
    let t: Vec<&str> = f.tokens().collect();
    match t.as_slice() {
        ["RNG", session, addr, "CKI", cookie, caller, ..] => Some(Ring {
            session: session.to_string(),
            addr: addr.to_string(),
            cookie: cookie.to_string(),
            caller: caller.to_string(),
        }),
        _ => None,
    }
}

/// The acknowledgement mode of a switchboard `MSG`: `A` (always `ACK` or `NAK`), `N` (only
/// `NAK`, what clients use for text) or `U` (never answered, as for typing).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckMode {
    #[default]
    A,
    N,
    U,
}

impl AckMode {
    pub fn token(self) -> &'static str {
        match self {
            AckMode::A => "A",
            AckMode::N => "N",
            AckMode::U => "U",
        }
    }
}

/// `MSG t A len` with a plain-text body carrying `seq`.
pub fn msg(trid: u32, seq: u64) -> Vec<u8> {
    msg_with(trid, AckMode::A, seq)
}

/// `MSG t mode len` with a plain-text body carrying `seq`.
pub fn msg_with(trid: u32, mode: AckMode, seq: u64) -> Vec<u8> {
    let payload = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=0\r\n\r\n{seq}"
    );
    let mut out = format!("MSG {trid} {} {}\r\n", mode.token(), payload.len()).into_bytes();
    out.extend_from_slice(payload.as_bytes());
    out
}

/// The payload length of [`msg`]`(_, seq)`.
pub fn msg_payload_len(seq: u64) -> usize {
    let m = msg(1, seq);
    m.len() - m.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)
}

/// Sends a received message's payload back: `MSG t mode len` + the same payload.
pub fn msg_echo_with(trid: u32, mode: AckMode, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("MSG {trid} {} {}\r\n", mode.token(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The sequence number in the body of a message written by [`msg`].
pub fn msg_seq(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    body.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use msgr_proto::frame::{FrameDecoder, Limits, Peer};

    fn frame(line: &str) -> Frame {
        Frame::new(line.to_owned(), None).expect("valid line")
    }

    fn decode_all(peer: Peer, dialect: Dialect, bytes: &[u8]) -> Vec<Frame> {
        let mut d = FrameDecoder::new(peer, Limits::default());
        d.set_dialect(dialect);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Ok(Some(f)) = d.decode(&mut buf) {
            out.push(f);
        }
        assert!(buf.is_empty(), "undecoded bytes left");
        out
    }

    #[test]
    fn hello_is_three_client_frames() {
        let frames = decode_all(
            Peer::Client,
            Dialect::Msnp12,
            hello(Dialect::Msnp12, "a@b.c").as_bytes(),
        );
        let cmds: Vec<_> = frames.iter().map(|f| f.command().to_owned()).collect();
        assert_eq!(cmds, ["VER", "CVR", "USR"]);
        assert_eq!(frames[0].line(), "VER 1 MSNP12 CVR0");
    }

    #[test]
    fn qry_is_one_client_frame_with_a_32_byte_payload() {
        for d in [Dialect::Msnp8, Dialect::Msnp11] {
            let frames = decode_all(
                Peer::Client,
                d,
                qry(d, 5, "29409134351025259292").as_bytes(),
            );
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].command(), "QRY");
            assert_eq!(frames[0].payload().map(|p| p.len()), Some(32));
        }
    }

    #[test]
    fn syn_forms_and_counts() {
        assert_eq!(syn(Dialect::Msnp8, 4), "SYN 4 0\r\n");
        assert_eq!(syn(Dialect::Msnp12, 4), "SYN 4 0 0\r\n");
        assert_eq!(syn_contacts(Dialect::Msnp8, &frame("SYN 4 7 20 1")), 20);
        assert_eq!(syn_contacts(Dialect::Msnp12, &frame("SYN 4 7 7 20 1")), 20);
        assert_eq!(syn_contacts(Dialect::Msnp12, &frame("SYN 4 7 7")), 0);
    }

    #[test]
    fn lst_lines_per_dialect() {
        assert_eq!(
            lst_entry(Dialect::Msnp8, &frame("LST a@b.c a@b.c 11 0")),
            Some(("a@b.c".to_owned(), 11))
        );
        assert_eq!(
            lst_entry(
                Dialect::Msnp12,
                &frame("LST N=a@b.c F=12 C=6bd736b8-dc18-44c6-ad61-8cd12d641e79 9")
            ),
            Some(("a@b.c".to_owned(), 9))
        );
        assert_eq!(
            lst_entry(Dialect::Msnp12, &frame("LST N=a@b.c 8")),
            Some(("a@b.c".to_owned(), 8))
        );
        assert_eq!(lst_entry(Dialect::Msnp12, &frame("LSG x y")), None);
    }

    #[test]
    fn add_forms() {
        assert_eq!(
            add_forward(Dialect::Msnp12, 9, "x@y.z"),
            "ADC 9 FL N=x@y.z F=x@y.z\r\n"
        );
        assert_eq!(
            add_forward(Dialect::Msnp8, 9, "x@y.z"),
            "ADD 9 FL x@y.z x@y.z\r\n"
        );
    }

    #[test]
    fn nln_caps_in_every_form() {
        assert_eq!(
            nln_caps(&frame("NLN AWY a@b.c a@b.c 1000007")),
            Some(1000007)
        );
        assert_eq!(
            nln_caps(&frame("NLN NLN a@b.c nick 1000007:48 %3Cmsnobj%2F%3E")),
            Some(1000007)
        );
        assert_eq!(nln_caps(&frame("NLN NLN a@b.c nick")), None);
        assert_eq!(nln_caps(&frame("ILN 5 NLN a@b.c nick 3")), None);
    }

    #[test]
    fn login_replies() {
        assert_eq!(
            usr_twn_policy(&frame(
                "USR 3 TWN S lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,ct=1062764229,kpp=1,kv=5,ver=2.1.0173.1,tpf=43f8a4c8ed940c04e3740be46c4d1619"
            )),
            Some("lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,ct=1062764229,kpp=1,kv=5,ver=2.1.0173.1,tpf=43f8a4c8ed940c04e3740be46c4d1619")
        );
        assert_eq!(usr_twn_policy(&frame("USR 3 OK a@b.c a@b.c 1 0")), None);
        assert_eq!(usr_twn_policy(&frame("911 3")), None);
        assert_eq!(
            xfr_ns(&frame("XFR 3 NS 10.0.0.5:1863 0 65.54.239.140:1863")),
            Some("10.0.0.5:1863".to_owned())
        );
        assert_eq!(xfr_ns(&frame("XFR 3 SB 10.0.0.5:1863 CKI 1.2")), None);
    }

    #[test]
    fn switchboard_lines() {
        assert_eq!(
            xfr_sb(&frame(
                "XFR 7 SB 127.0.0.1:1863 CKI 17262740.1050826919.32308 U messenger.msn.com 1"
            )),
            Some((
                "127.0.0.1:1863".to_owned(),
                "17262740.1050826919.32308".to_owned()
            ))
        );
        assert_eq!(
            xfr_sb(&frame("XFR 7 NS 127.0.0.1:1863 0 127.0.0.1:1863")),
            None
        );
        assert_eq!(
            rng(&frame("RNG 11752013 127.0.0.1:1863 CKI 849102291.520491113 a@b.c Alice U messenger.msn.com 1")),
            Some(Ring {
                session: "11752013".to_owned(),
                addr: "127.0.0.1:1863".to_owned(),
                cookie: "849102291.520491113".to_owned(),
                caller: "a@b.c".to_owned(),
            })
        );
        assert_eq!(rng(&frame("RNG 1 x")), None);
    }

    #[test]
    fn messages_round_trip_through_the_codec() {
        let out = msg(3, 42);
        let frames = decode_all(Peer::Client, Dialect::Msnp12, &out);
        assert_eq!(frames.len(), 1);
        let payload = frames[0].payload().expect("payload");
        assert_eq!(msg_seq(payload), Some(42));
        // What the other side receives from the switchboard, and echoes back.
        let mut relayed = format!("MSG a@b.c Alice {}\r\n", payload.len()).into_bytes();
        relayed.extend_from_slice(payload);
        let got = decode_all(Peer::Server, Dialect::Msnp12, &relayed);
        assert_eq!(got.len(), 1);
        let echo = msg_echo_with(8, AckMode::A, got[0].payload().expect("payload"));
        let back = decode_all(Peer::Client, Dialect::Msnp12, &echo);
        assert_eq!(back[0].line(), format!("MSG 8 A {}", payload.len()));
        assert_eq!(back[0].payload().and_then(|p| msg_seq(p)), Some(42));
        assert_eq!(msg_seq(b"no body"), None);
        let n = msg_with(4, AckMode::N, 9);
        let f = decode_all(Peer::Client, Dialect::Msnp12, &n);
        assert_eq!(f[0].line(), format!("MSG 4 N {}", payload.len() - 1));
        let u = msg_echo_with(5, AckMode::U, payload);
        let f = decode_all(Peer::Client, Dialect::Msnp12, &u);
        assert_eq!(f[0].line(), format!("MSG 5 U {}", payload.len()));
    }

    #[test]
    fn forwarded_messages_decode_on_both_sides() {
        // Through a byte forwarder each side reads the other's client-form `MSG t A len`
        // with its server-peer decoder.
        let out = msg(3, 7);
        let got = decode_all(Peer::Server, Dialect::Msnp12, &out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].command(), "MSG");
        let payload = got[0].payload().expect("payload");
        assert_eq!(payload.len(), msg_payload_len(7));
        let back = decode_all(
            Peer::Server,
            Dialect::Msnp12,
            &msg_echo_with(2, AckMode::A, payload),
        );
        assert_eq!(back[0].payload().and_then(|p| msg_seq(p)), Some(7));
        assert_eq!(msg_payload_len(12345), msg_payload_len(1) + 4);
    }

    #[test]
    fn chg_line() {
        assert_eq!(chg(4, "AWY", 1000001), "CHG 4 AWY 1000001\r\n");
    }
}

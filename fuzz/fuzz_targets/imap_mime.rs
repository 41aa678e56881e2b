//! Arbitrary messages through msgr-mail's IMAP view of MIME (`imap::mime`): the part tree, section
//! lookup, `HEADER.FIELDS`, `BODYSTRUCTURE`, `BODY` and `ENVELOPE`. Never a panic, every part's header and
//! body inside the message, and what is written for a client is a FETCH response that imap-codec
//! (an independent parser) reads back.
#![no_main]

use imap_codec::decode::Decoder;
use imap_codec::ResponseCodec;
use libfuzzer_sys::fuzz_target;
use msgr_mail::imap::mime::{self, Kind, Part};

/// Every part is a slice of the message; walks at most `budget` parts. Returns whether a part is a
/// `message/global`, which msgr writes with an envelope like `message/rfc822` (RFC 9051's
/// `media-message`, RFC 6532); imap-codec 1.0 follows RFC 3501's grammar, where only RFC822 has that form.
fn check(part: &Part<'_>, raw: &[u8], budget: &mut usize) -> bool {
    let range = raw.as_ptr_range();
    for s in [part.header, part.body] {
        if !s.is_empty() {
            assert!(range.contains(&s.as_ptr()) && s.as_ptr_range().end <= range.end);
        }
    }
    let global = part.mime_type.0 == "message" && part.mime_type.1 == "global";
    if *budget == 0 {
        return global;
    }
    *budget -= 1;
    match &part.kind {
        Kind::Leaf => global,
        Kind::Multipart(parts) => parts.iter().fold(global, |g, p| check(p, raw, budget) || g),
        Kind::Message(inner) => check(inner, raw, budget) || global,
    }
}

fuzz_target!(|data: &[u8]| {
    let root = mime::parse(data);
    let global = check(&root, data, &mut 10_000);
    // Section paths from the input's first bytes, as a client may name them.
    let path: Vec<u32> = data.iter().take(4).map(|&b| u32::from(b % 4)).collect();
    for depth in 0..=path.len() {
        let _ = mime::find(&root, &path[..depth]);
        if let Some(m) = mime::message_at(&root, &path[..depth]) {
            let names = [b"subject".to_vec(), b"FROM".to_vec(), b"x-\xff".to_vec()];
            let _ = mime::header_fields(m.header, &names, false);
            let _ = mime::header_fields(m.header, &names, true);
        }
    }
    let _ = mime::addresses(data);

    let mut out = b"* 1 FETCH (BODYSTRUCTURE ".to_vec();
    mime::body_structure(&mut out, &root, true);
    out.extend_from_slice(b" BODY ");
    mime::body_structure(&mut out, &root, false);
    out.extend_from_slice(b" ENVELOPE ");
    mime::envelope(&mut out, root.header);
    out.extend_from_slice(b")\r\n");
    if global {
        return;
    }
    match ResponseCodec::default().decode(&out) {
        Ok((rest, _)) => assert!(rest.is_empty(), "bytes after the response"),
        Err(e) => panic!(
            "imap-codec refuses our FETCH response: {e:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
});

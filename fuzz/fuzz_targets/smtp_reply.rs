//! Arbitrary bytes as a remote SMTP server's replies to msgr's outbound client
//! (`msgr_mail::outbound::reply::parse`): never a panic, never more consumed than given, and the same
//! replies whether the bytes come at once or a byte at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msgr_mail::outbound::reply;

/// Replies (or the error that ended them) from `data` fed in pieces of `chunk` bytes, the way the
/// client reads: append, parse from the start, drop what a complete reply used.
fn replies(data: &[u8], chunk: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match reply::parse(&buf) {
                Ok(Some((r, used))) => {
                    assert!(used > 0 && used <= buf.len());
                    out.push(format!("{} {:?} {r}", r.code, r.lines));
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("error {e}"));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = replies(data, data.len());
    assert_eq!(replies(data, 1), whole);
});

//! Feeds arbitrary bytes, in arbitrary chunk sizes, to the MSNP frame decoder: it must never
//! panic, never buffer beyond its caps, and give the same frames whatever the chunking.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use msgr_proto::frame::{FrameDecoder, Limits, Peer};

fn frames(data: &[u8], chunk: usize, peer: Peer) -> Vec<String> {
    let limits = Limits { max_line: 512, max_payload: 1024 };
    let mut dec = FrameDecoder::new(peer, limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => out.push(format!("{:?}{:?}", f.line(), f.payload())),
                Ok(None) => break,
                Err(e) if e.is_recoverable() => out.push(e.to_string()),
                Err(e) => {
                    out.push(e.to_string());
                    return out;
                }
            }
        }
        assert!(buf.len() <= limits.max_line + 2 + limits.max_payload + chunk);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let peer = if first & 1 == 0 { Peer::Client } else { Peer::Server };
    let whole = frames(rest, rest.len(), peer);
    assert_eq!(frames(rest, usize::from(first >> 1) + 1, peer), whole);
});

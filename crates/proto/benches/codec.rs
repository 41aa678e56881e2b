//! Codec hot paths: framing a pipelined client stream and building outgoing lines.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use msgr_proto::frame::{write_line, write_payload, FrameDecoder, Limits, Peer, TrId};

fn client_stream(messages: usize) -> Vec<u8> {
    let body = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=MS%20Sans%20Serif; EF=; CO=0; CS=0; PF=0\r\n\r\nAre you there? I'm Alice";
    let mut out = BytesMut::new();
    for i in 0..messages {
        let t = Some(TrId(i as u32));
        write_payload(&mut out, "MSG", t, &["N"], body);
        write_line(&mut out, "CHG", t, &["NLN", "268435492"]);
        write_line(&mut out, "PNG", None, &[]);
    }
    out.to_vec()
}

fn decode(c: &mut Criterion) {
    let input = client_stream(1000);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("pipelined_client_stream", |b| {
        b.iter(|| {
            let mut dec = FrameDecoder::new(Peer::Client, Limits::default());
            let mut buf = BytesMut::from(&input[..]);
            let mut n = 0;
            while let Ok(Some(f)) = dec.decode(&mut buf) {
                n += f.command().len();
            }
            n
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("nln_line", |b| {
        let mut out = BytesMut::with_capacity(1 << 16);
        b.iter(|| {
            out.clear();
            write_line(
                &mut out,
                "NLN",
                None,
                &["NLN", "alice@example.com", "Alice%20Liddell", "268435492"],
            );
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);

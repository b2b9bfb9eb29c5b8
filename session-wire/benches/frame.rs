//! Encode + decode of the two frames that dominate a connection's traffic:
//! a ping (every idle third of a timeout) and a create carrying 1 KiB of data.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use session_wire::v1::{ClientMessage, Create, NodeKind, Ping, Request, request};
use session_wire::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, decode_message, encode};

fn ping() -> ClientMessage {
    ClientMessage::from(Ping {})
}

fn create_1k() -> ClientMessage {
    ClientMessage::from(Request {
        xid: 42,
        op: Some(request::Op::Create(Create {
            path: "/services/billing/instance-".to_owned(),
            data: Bytes::from(vec![0xab; 1024]),
            kind: NodeKind::Ephemeral as i32,
            sequential: true,
            acl: Vec::new(),
            ttl_ms: 0,
        })),
    })
}

fn bench_message(c: &mut Criterion, name: &str, message: &ClientMessage) {
    let mut wire = BytesMut::new();
    encode(message, DEFAULT_MAX_FRAME_LEN, &mut wire).expect("invariant: fits in a frame");
    let frame_len = wire.len();

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(frame_len as u64));
    let mut dst = BytesMut::with_capacity(4 * frame_len);
    group.bench_function("encode", |b| {
        b.iter(|| {
            dst.clear();
            encode(black_box(message), DEFAULT_MAX_FRAME_LEN, &mut dst)
                .expect("invariant: fits in a frame");
        });
    });
    let body = wire.clone().split_off(4).freeze();
    group.bench_function("decode body", |b| {
        b.iter(|| {
            decode_message::<ClientMessage>(black_box(body.clone())).expect("invariant: valid body")
        });
    });
    let mut decoder = FrameDecoder::new();
    group.bench_function("encode + decode frame", |b| {
        b.iter(|| {
            dst.clear();
            encode(black_box(message), DEFAULT_MAX_FRAME_LEN, &mut dst)
                .expect("invariant: fits in a frame");
            decoder.push(&dst);
            decoder
                .next_message::<ClientMessage>()
                .expect("invariant: valid frame")
                .expect("invariant: whole frame")
        });
    });
    group.finish();
}

fn frames(c: &mut Criterion) {
    bench_message(c, "ping", &ping());
    bench_message(c, "create 1 KiB", &create_1k());
}

criterion_group!(benches, frames);
criterion_main!(benches);

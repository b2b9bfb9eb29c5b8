//! ZooKeeper's client protocol: encode + decode of a ping, a create carrying
//! 1 KiB of data and a getData reply carrying 1 KiB, to compare with the v1
//! framing in `frame.rs`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use session_wire::zookeeper::{
    Acl, CreateRequest, GetDataResponse, JUTE_MAX_BUFFER, OpCode, PING_XID, ReplyHeader, Request,
    Response, Stat, decode_reply, decode_request, encode_reply, encode_request, perms,
};

fn create_1k() -> Request {
    Request::Create2(CreateRequest {
        path: "/services/billing/instance-".to_owned(),
        data: Some(Bytes::from(vec![0xab; 1024])),
        acl: vec![Acl::world_anyone(perms::ALL)],
        flags: 3,
    })
}

fn bench_request(c: &mut Criterion, name: &str, xid: i32, request: &Request) {
    let mut wire = BytesMut::new();
    encode_request(xid, request, JUTE_MAX_BUFFER, &mut wire).expect("invariant: fits in a frame");
    let mut group = c.benchmark_group(format!("zookeeper {name}"));
    group.throughput(Throughput::Bytes(wire.len() as u64));
    let mut dst = BytesMut::with_capacity(4 * wire.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            dst.clear();
            encode_request(xid, black_box(request), JUTE_MAX_BUFFER, &mut dst)
                .expect("invariant: fits in a frame");
        });
    });
    let body = wire.split_off(4).freeze();
    group.bench_function("decode body", |b| {
        b.iter(|| decode_request(black_box(body.clone())).expect("invariant: valid body"));
    });
    group.finish();
}

fn bench_get_data_reply(c: &mut Criterion) {
    let header = ReplyHeader {
        xid: 7,
        zxid: 0x1_0000_002a,
        err: 0,
    };
    let response = Response::GetData(GetDataResponse {
        data: Some(Bytes::from(vec![0xcd; 1024])),
        stat: Stat::default(),
    });
    let mut wire = BytesMut::new();
    encode_reply(&header, Some(&response), JUTE_MAX_BUFFER, &mut wire)
        .expect("invariant: fits in a frame");
    let mut group = c.benchmark_group("zookeeper getData reply 1 KiB");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    let mut dst = BytesMut::with_capacity(4 * wire.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            dst.clear();
            encode_reply(
                &header,
                Some(black_box(&response)),
                JUTE_MAX_BUFFER,
                &mut dst,
            )
            .expect("invariant: fits in a frame");
        });
    });
    let body = wire.split_off(4).freeze();
    group.bench_function("decode body", |b| {
        b.iter(|| {
            decode_reply(black_box(body.clone()), |_| Some(OpCode::GetData))
                .expect("invariant: valid body")
        });
    });
    group.finish();
}

fn frames(c: &mut Criterion) {
    bench_request(c, "ping", PING_XID, &Request::Ping);
    bench_request(c, "create 1 KiB", 42, &create_1k());
    bench_get_data_reply(c);
}

criterion_group!(benches, frames);
criterion_main!(benches);

//! Parsing dumped link messages: the macvlan driver's `config_from_dump` on parsed messages,
//! and the whole per-link path of a dump, from the kernel's bytes to an image record.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;

mod common;

fn drivers(c: &mut Criterion) {
    let links = common::macvlan_messages(common::LINKS);
    let datagrams = common::macvlan_datagrams(common::LINKS);
    let config = netcr_link_macvlan::config_from_dump(&links[0]);
    assert_eq!(netcr_link_macvlan::mode_name(config.mode), "bridge");
    assert!(
        netcr_core::driver_for("macvlan").is_some(),
        "the macvlan driver is registered"
    );

    let mut group = c.benchmark_group("drivers");
    group.throughput(Throughput::Elements(common::LINKS as u64));
    group.sample_size(20);
    group.bench_function("macvlan_config_from_dump_10k", |b| {
        b.iter(|| {
            black_box(&links)
                .iter()
                .map(|l| netcr_link_macvlan::config_from_dump(l).mode)
                .sum::<u32>()
        })
    });
    // netlink-packet-route's share of a dump: bytes to LinkMessage.
    group.bench_function("parse_newlink_10k", |b| {
        b.iter(|| {
            black_box(&datagrams)
                .iter()
                .map(|d| parse(d).attributes.len())
                .sum::<usize>()
        })
    });
    // The dump's work per link: parse, common fields, driver config (held one at a time).
    group.bench_function("newlink_to_record_10k", |b| {
        b.iter(|| {
            black_box(&datagrams)
                .iter()
                .map(|d| common::macvlan_record(&parse(d)).config.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn parse(datagram: &[u8]) -> netlink_packet_route::link::LinkMessage {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(datagram)
        .unwrap()
        .payload
    {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => l,
        _ => unreachable!("RTM_NEWLINK"),
    }
}

criterion_group!(benches, drivers);
criterion_main!(benches);

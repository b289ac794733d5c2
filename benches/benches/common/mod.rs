//! Shared by the benches: link and address messages as the kernel sent them, and images built
//! from them the way `netcr dump` builds one.

#![allow(dead_code)] // Each bench uses part of this module.

use netcr_core::common;
use netcr_image::link::v1::Veth;
use netcr_image::{v1, Image, NetnsImage};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use prost::Message;

// The drivers register themselves only when linked.
use netcr_link_macvlan as _;
use netcr_link_veth as _;

/// RTM_NEWLINK for `mv0`, a macvlan in bridge mode, up, on a veth lower device in another
/// namespace (IFLA_LINK_NETNSID), as kernel 6.18 sent it to a link dump with
/// IFLA_EXT_MASK = RTEXT_FILTER_SKIP_STATS: netlink header included, 1,176 bytes.
pub const MACVLAN_NEWLINK: &[u8] = &[
    152, 4, 0, 0, 16, 0, 2, 0, 1, 0, 0, 0, 198, 46, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 67, 16, 1, 0, 0,
    0, 0, 0, 8, 0, 3, 0, 109, 118, 48, 0, 8, 0, 13, 0, 232, 3, 0, 0, 5, 0, 16, 0, 6, 0, 0, 0, 5, 0,
    17, 0, 0, 0, 0, 0, 5, 0, 67, 0, 0, 0, 0, 0, 8, 0, 4, 0, 220, 5, 0, 0, 8, 0, 50, 0, 68, 0, 0, 0,
    8, 0, 51, 0, 255, 255, 0, 0, 8, 0, 27, 0, 0, 0, 0, 0, 8, 0, 30, 0, 0, 0, 0, 0, 8, 0, 61, 0, 0,
    0, 0, 0, 8, 0, 31, 0, 1, 0, 0, 0, 8, 0, 40, 0, 255, 255, 0, 0, 8, 0, 41, 0, 0, 0, 1, 0, 8, 0,
    58, 0, 0, 0, 1, 0, 8, 0, 63, 0, 0, 0, 1, 0, 8, 0, 64, 0, 0, 0, 1, 0, 8, 0, 59, 0, 248, 255, 7,
    0, 8, 0, 60, 0, 255, 255, 0, 0, 8, 0, 66, 0, 0, 0, 0, 0, 8, 0, 32, 0, 1, 0, 0, 0, 5, 0, 33, 0,
    1, 0, 0, 0, 8, 0, 35, 0, 0, 0, 0, 0, 8, 0, 47, 0, 0, 0, 0, 0, 8, 0, 48, 0, 0, 0, 0, 0, 6, 0,
    68, 0, 0, 0, 0, 0, 6, 0, 69, 0, 0, 0, 0, 0, 5, 0, 39, 0, 0, 0, 0, 0, 10, 0, 1, 0, 162, 254, 55,
    248, 177, 215, 0, 0, 10, 0, 2, 0, 255, 255, 255, 255, 255, 255, 0, 0, 204, 0, 23, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 100, 0, 7, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 10, 1, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 43, 0, 5, 0, 2, 0, 0, 0, 0, 0, 60, 0, 18, 0, 12, 0, 1,
    0, 109, 97, 99, 118, 108, 97, 110, 0, 44, 0, 2, 0, 8, 0, 1, 0, 4, 0, 0, 0, 6, 0, 2, 0, 0, 0, 0,
    0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232, 3, 0, 0, 8, 0, 37, 0, 0,
    0, 0, 0, 8, 0, 5, 0, 3, 0, 0, 0, 12, 0, 6, 0, 110, 111, 113, 117, 101, 117, 101, 0, 192, 1, 26,
    0, 140, 0, 2, 0, 136, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
    0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 39, 0, 0, 232, 3, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 48, 1, 10, 0, 8, 0, 1, 0, 0, 0, 0, 128, 20,
    0, 5, 0, 255, 255, 0, 0, 112, 14, 2, 0, 216, 124, 0, 0, 232, 3, 0, 0, 244, 0, 2, 0, 0, 0, 0, 0,
    64, 0, 0, 0, 220, 5, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 255, 255, 255, 255,
    160, 15, 0, 0, 232, 3, 0, 0, 0, 0, 0, 0, 128, 58, 9, 0, 128, 81, 1, 0, 3, 0, 0, 0, 88, 2, 0, 0,
    16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 96, 234, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16,
    39, 0, 0, 232, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 238, 54, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0,
    0, 0, 255, 255, 0, 0, 255, 255, 255, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20,
    0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 8, 0, 0, 0, 0, 0, 36, 0, 14, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 0, 62, 128, 4, 0, 65, 128,
];

/// RTM_NEWADDR for 10.1.0.1/16 on that macvlan.
pub const IPV4_NEWADDR: &[u8] = &[
    76, 0, 0, 0, 20, 0, 2, 0, 1, 0, 0, 0, 198, 46, 0, 0, 2, 16, 128, 0, 2, 0, 0, 0, 8, 0, 1, 0, 10,
    1, 0, 1, 8, 0, 2, 0, 10, 1, 0, 1, 8, 0, 3, 0, 109, 118, 48, 0, 8, 0, 8, 0, 128, 0, 0, 0, 20, 0,
    6, 0, 255, 255, 255, 255, 255, 255, 255, 255, 112, 14, 2, 0, 112, 14, 2, 0,
];

/// RTM_NEWLINK for the namespace's `lo`, from the same dump.
pub const LOOPBACK_NEWLINK: &[u8] = &[
    76, 4, 0, 0, 16, 0, 2, 0, 1, 0, 0, 0, 198, 46, 0, 0, 0, 0, 4, 3, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0,
    0, 0, 7, 0, 3, 0, 108, 111, 0, 0, 8, 0, 13, 0, 232, 3, 0, 0, 5, 0, 16, 0, 2, 0, 0, 0, 5, 0, 17,
    0, 0, 0, 0, 0, 5, 0, 67, 0, 1, 0, 0, 0, 8, 0, 4, 0, 0, 0, 1, 0, 8, 0, 50, 0, 0, 0, 0, 0, 8, 0,
    51, 0, 0, 0, 0, 0, 8, 0, 27, 0, 0, 0, 0, 0, 8, 0, 30, 0, 0, 0, 0, 0, 8, 0, 61, 0, 0, 0, 0, 0,
    8, 0, 31, 0, 1, 0, 0, 0, 8, 0, 40, 0, 255, 255, 0, 0, 8, 0, 41, 0, 0, 0, 1, 0, 8, 0, 58, 0, 0,
    0, 1, 0, 8, 0, 63, 0, 0, 0, 1, 0, 8, 0, 64, 0, 0, 0, 1, 0, 8, 0, 59, 0, 248, 255, 7, 0, 8, 0,
    60, 0, 255, 255, 0, 0, 8, 0, 66, 0, 0, 0, 0, 0, 8, 0, 32, 0, 1, 0, 0, 0, 5, 0, 33, 0, 1, 0, 0,
    0, 8, 0, 35, 0, 0, 0, 0, 0, 8, 0, 47, 0, 0, 0, 0, 0, 8, 0, 48, 0, 0, 0, 0, 0, 6, 0, 68, 0, 0,
    0, 0, 0, 6, 0, 69, 0, 0, 0, 0, 0, 5, 0, 39, 0, 0, 0, 0, 0, 10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 204, 0, 23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 7, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    12, 0, 43, 0, 5, 0, 2, 0, 0, 0, 0, 0, 9, 0, 6, 0, 110, 111, 111, 112, 0, 0, 0, 0, 192, 1, 26,
    0, 140, 0, 2, 0, 136, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
    0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 39, 0, 0, 232, 3, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 48, 1, 10, 0, 8, 0, 1, 0, 0, 0, 0, 0, 20, 0,
    5, 0, 255, 255, 0, 0, 111, 14, 2, 0, 216, 126, 0, 0, 232, 3, 0, 0, 244, 0, 2, 0, 0, 0, 0, 0,
    64, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 255, 255, 255, 255,
    160, 15, 0, 0, 232, 3, 0, 0, 255, 255, 255, 255, 128, 58, 9, 0, 128, 81, 1, 0, 3, 0, 0, 0, 88,
    2, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 96, 234, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0,
    0, 0, 0, 0, 16, 39, 0, 0, 232, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 238, 54, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 4, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 255, 255, 255, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 20, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 8, 0, 0, 0, 0,
    0, 36, 0, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 4, 0, 62, 128, 4, 0, 65, 128,
];

/// How many links the benches work on.
pub const LINKS: usize = 10_000;

fn payload(bytes: &[u8]) -> RouteNetlinkMessage {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
        .expect("captured message parses")
        .payload
    {
        NetlinkPayload::InnerMessage(m) => m,
        other => panic!("captured message is not an rtnetlink message: {other:?}"),
    }
}

/// Parses one captured RTM_NEWLINK.
pub fn parse_link(bytes: &[u8]) -> LinkMessage {
    match payload(bytes) {
        RouteNetlinkMessage::NewLink(l) => l,
        other => panic!("not RTM_NEWLINK: {other:?}"),
    }
}

/// The captured macvlan made the `i`th of a namespace: `mv{i}`, ifindex `i + 2` (after lo),
/// its own MAC.
pub fn macvlan_message(template: &LinkMessage, i: usize) -> LinkMessage {
    let mut link = template.clone();
    link.header.index = i as u32 + 2;
    for attr in &mut link.attributes {
        match attr {
            LinkAttribute::IfName(name) => *name = format!("mv{i}"),
            LinkAttribute::Address(mac) => {
                let n = (i as u32).to_be_bytes();
                *mac = vec![0x02, 0x00, n[0], n[1], n[2], n[3]];
            }
            _ => {}
        }
    }
    link
}

/// `n` macvlans as a link dump returns them.
pub fn macvlan_messages(n: usize) -> Vec<LinkMessage> {
    let template = parse_link(MACVLAN_NEWLINK);
    (0..n).map(|i| macvlan_message(&template, i)).collect()
}

/// The same, as the bytes of `n` netlink messages.
pub fn macvlan_datagrams(n: usize) -> Vec<Vec<u8>> {
    macvlan_messages(n)
        .into_iter()
        .map(|link| {
            let mut msg = NetlinkMessage::from(RouteNetlinkMessage::NewLink(link));
            msg.finalize();
            let mut buf = vec![0; msg.buffer_len()];
            msg.serialize(&mut buf);
            buf
        })
        .collect()
}

/// What `netcr dump` keeps of a dumped macvlan whose lower device is outside the namespace.
pub fn macvlan_record(link: &LinkMessage) -> v1::Link {
    let mut rec = common::to_image(link);
    rec.config = netcr_link_macvlan::config_from_dump(link).encode_to_vec();
    rec.lower = Some(v1::LinkRef {
        target: Some(v1::link_ref::Target::External(v1::ExternalRef {
            name_hint: "LOWER".into(),
            ifindex_hint: 3,
            nsid: 0,
            in_caller: true,
        })),
    });
    rec
}

/// Where the macvlans of a bench image sit.
#[derive(Debug, Clone, Copy)]
pub enum Lower {
    /// On a device outside the namespace (`--external macvlan[*]:DEV` at restore).
    External,
    /// On one end of a veth pair inside the namespace: one level deeper in the plan.
    Inside,
}

fn local(name: &str) -> Option<v1::LinkRef> {
    Some(v1::LinkRef {
        target: Some(v1::link_ref::Target::Local(v1::LocalRef {
            netns: 0,
            name: name.into(),
        })),
    })
}

/// An image as `netcr dump` writes it for a namespace of `lo` and `n` macvlans, each with an
/// IPv4 address.
pub fn image(n: usize, lower: Lower) -> Image {
    let lo = common::to_image(&parse_link(LOOPBACK_NEWLINK));
    let mut links = vec![lo];
    if let Lower::Inside = lower {
        for (k, (name, peer)) in [("veth0", "veth1"), ("veth1", "veth0")].iter().enumerate() {
            let mut rec = macvlan_record(&parse_link(MACVLAN_NEWLINK));
            rec.name = (*name).into();
            rec.ifindex = (n + 2 + k) as u32;
            rec.kind = "veth".into();
            rec.config = Veth::default().encode_to_vec();
            rec.lower = local(peer);
            links.push(rec);
        }
    }
    let template = parse_link(MACVLAN_NEWLINK);
    let address = match payload(IPV4_NEWADDR) {
        RouteNetlinkMessage::NewAddress(a) => a,
        other => panic!("not RTM_NEWADDR: {other:?}"),
    };
    let mut addresses = Vec::with_capacity(n);
    for i in 0..n {
        let mut rec = macvlan_record(&macvlan_message(&template, i));
        if let Lower::Inside = lower {
            rec.lower = local("veth0");
        }
        addresses.push(address_record(&address, i, &rec.name));
        links.push(rec);
    }
    let netns = v1::Netns {
        id: 0,
        label: "bench".into(),
        ..Default::default()
    };
    Image {
        inventory: v1::Inventory {
            netcr_version: "bench".into(),
            kernel_release: "6.18".into(),
            netns: vec![v1::NetnsInfo {
                id: 0,
                label: "bench".into(),
            }],
            ..Default::default()
        },
        namespaces: vec![NetnsImage {
            netns,
            links,
            addresses,
            ..Default::default()
        }],
    }
}

/// The captured address moved to 10.A.B.1 on link `i`.
fn address_record(template: &AddressMessage, i: usize, dev: &str) -> v1::Address {
    use netlink_packet_route::address::AddressAttribute;
    let ip = std::net::Ipv4Addr::new(10, (i / 256) as u8, (i % 256) as u8, 1);
    let mut msg = template.clone();
    msg.header.index = i as u32 + 2;
    for attr in &mut msg.attributes {
        if let AddressAttribute::Address(a) | AddressAttribute::Local(a) = attr {
            *a = ip.into();
        }
    }
    netcr_core::state::address_record(&msg, dev)
}

//! Shared helpers for the integration tests: sample records and hand-built frames.
#![allow(dead_code)]

use netcr_image::link::v1 as link;
use netcr_image::v1;
use netcr_image::v1::link_ref::Target;
use netcr_image::v1::nsid_entry::Peer;
use netcr_image::{Image, NetnsImage};
use prost::Message;

pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// A file built by hand: header, `body` as given, trailer with `count` and a correct CRC.
pub fn frame(version: u32, kind: u32, body: &[u8], count: u32) -> Vec<u8> {
    let mut bytes = b"NETCRIMG".to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&kind.to_le_bytes());
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&count.to_le_bytes());
    let crc = CRC32C.checksum(&bytes[16..]);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Recomputes the trailer CRC of a file (at least 24 bytes long) after tampering with it.
pub fn refix_crc(bytes: &mut [u8]) {
    let len = bytes.len();
    let crc = CRC32C.checksum(&bytes[16..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
}

pub fn sample_link(i: u32) -> v1::Link {
    let macvlan = link::Macvlan {
        mode: 4,
        flags: 1,
        bc_queue_len: Some(1000),
        bc_cutoff: None,
        source_macs: vec![vec![2, 0, 0, 0, 0, 1]],
        extra: vec![v1::Attr {
            kind: 99,
            value: vec![1, 2, 3],
        }],
    };
    v1::Link {
        name: format!("mv{i}"),
        ifindex: i + 2,
        kind: "macvlan".into(),
        mtu: 1500,
        address: vec![2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        broadcast: vec![0xff; 6],
        flags: 0x1003,
        txqlen: 1000,
        alias: if i % 2 == 0 {
            format!("alias {i}")
        } else {
            String::new()
        },
        group: 0,
        link_type: 1,
        lower: Some(v1::LinkRef {
            target: Some(if i % 3 == 0 {
                Target::External(v1::ExternalRef {
                    name_hint: "eth0".into(),
                    ifindex_hint: 2,
                    nsid: -1,
                    in_caller: true,
                })
            } else {
                Target::Local(v1::LocalRef {
                    netns: 0,
                    name: "br0".into(),
                })
            }),
        }),
        master: None,
        config: macvlan.encode_to_vec(),
        extra: vec![],
        ipv4_devconf: vec![1, 0, 1, 1],
        ipv6_devconf: vec![0, 64, 1],
        num_tx_queues: 1,
        num_rx_queues: 1,
        port_config: vec![],
        altnames: vec![format!("mv{i}-alt")],
        proto_down: i % 2 == 1,
        proto_down_reason: 0,
        gso_max_size: 65536,
        gso_max_segs: 65535,
        gro_max_size: 65536,
        gso_ipv4_max_size: 65536,
        gro_ipv4_max_size: 65536,
        ipv6_stable_secret: String::new(),
        link_mode: 0,
    }
}

pub fn sample_address(i: u32) -> v1::Address {
    v1::Address {
        dev: format!("mv{i}"),
        message: vec![
            2,
            24,
            0,
            0,
            5,
            0,
            0,
            0,
            8,
            0,
            1,
            0,
            10,
            0,
            (i >> 8) as u8,
            i as u8,
        ],
    }
}

pub fn sample_route(i: u32) -> v1::Route {
    v1::Route {
        oif: format!("mv{i}"),
        iif: String::new(),
        nexthop_devs: if i % 2 == 0 {
            vec!["a".into(), "b".into()]
        } else {
            vec![]
        },
        message: vec![2, 24, 0, 0, 254, 4, 2, 1, 0, 0, 0, 0, i as u8],
    }
}

pub fn sample_rule(i: u32) -> v1::Rule {
    v1::Rule {
        message: vec![2, 0, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0, i as u8],
    }
}

pub fn sample_neighbour(i: u32) -> v1::Neighbour {
    v1::Neighbour {
        dev: format!("mv{i}"),
        message: vec![2, 0, 0, 0, 5, 0, 0, 0, 0x80, 0, 0, 0, i as u8],
    }
}

pub fn sample_nexthop(i: u32) -> v1::Nexthop {
    v1::Nexthop {
        dev: if i % 2 == 0 {
            format!("mv{i}")
        } else {
            String::new()
        },
        message: vec![2, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, i as u8, 0, 0, 0],
    }
}

pub fn sample_nft_object(i: u32) -> v1::NftObject {
    v1::NftObject {
        kind: 6,
        family: 1,
        // NFTA_RULE_TABLE "t", NFTA_RULE_CHAIN "c".
        attributes: vec![6, 0, 1, 0, b't', 0, 0, 0, 6, 0, 2, 0, b'c', 0, 0, 0],
        ifindexes: (0..i % 3)
            .map(|k| v1::NftIfindex {
                ifindex: k + 1,
                dev: format!("mv{k}"),
            })
            .collect(),
    }
}

pub fn sample_xfrm_object(i: u32) -> v1::XfrmObject {
    v1::XfrmObject {
        kind: if i % 2 == 0 { 16 } else { 19 },
        message: vec![i as u8; 168 + (i as usize % 2) * 56],
        dev: if i % 3 == 0 {
            String::new()
        } else {
            format!("mv{i}")
        },
    }
}

pub fn sample_tc_object(i: u32) -> v1::TcObject {
    // struct tcmsg (handle 1:0, parent root) and TCA_KIND "tbf".
    let mut message = vec![0u8; 20];
    message[8..12].copy_from_slice(&0x0001_0000u32.to_ne_bytes());
    message[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
    message.extend([8, 0, 1, 0, b't', b'b', b'f', 0]);
    v1::TcObject {
        kind: 36,
        dev: format!("mv{i}"),
        message,
        mirred_devs: (0..i % 2).map(|k| format!("mv{k}")).collect(),
    }
}

pub fn sample_netns(id: u32) -> v1::Netns {
    v1::Netns {
        id,
        label: format!("ns{id}"),
        nsids: vec![
            v1::NsidEntry {
                nsid: 0,
                peer: Some(Peer::Caller(true)),
            },
            v1::NsidEntry {
                nsid: 1,
                peer: Some(Peer::Netns(id + 1)),
            },
        ],
        sysctls: vec![v1::Sysctl {
            name: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        }],
        skipped: vec![v1::SkippedDevice {
            name: "tunl0".into(),
            kind: "ipip".into(),
            reason: "kernel fallback tunnel".into(),
        }],
        left_out: vec![v1::LeftOut {
            family: "tc".into(),
            count: 1,
            found: vec!["qdisc tbf on mv0".into()],
        }],
        deleted_default_rules: vec![],
    }
}

pub fn sample_inventory(ids: &[u32]) -> v1::Inventory {
    v1::Inventory {
        netcr_version: "0.1.0".into(),
        kernel_release: "6.18.0".into(),
        created_unix: 1_700_000_000,
        netns: ids
            .iter()
            .map(|&id| v1::NetnsInfo {
                id,
                label: format!("ns{id}"),
            })
            .collect(),
    }
}

pub fn sample_netns_image(id: u32, links: u32) -> NetnsImage {
    NetnsImage {
        netns: sample_netns(id),
        links: (0..links).map(sample_link).collect(),
        addresses: (0..links).map(sample_address).collect(),
        routes: (0..links).map(sample_route).collect(),
        rules: (0..3).map(sample_rule).collect(),
        neighbours: (0..2).map(sample_neighbour).collect(),
        nexthops: (0..links).map(sample_nexthop).collect(),
        nftables: (0..links).map(sample_nft_object).collect(),
        xfrm: (0..links).map(sample_xfrm_object).collect(),
        tc: (0..links).map(sample_tc_object).collect(),
    }
}

/// An image of namespaces `ids`, each with `links` links.
pub fn sample_image(ids: &[u32], links: u32) -> Image {
    Image {
        inventory: sample_inventory(ids),
        namespaces: ids
            .iter()
            .map(|&id| sample_netns_image(id, links))
            .collect(),
    }
}

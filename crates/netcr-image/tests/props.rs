//! Properties: decoding never panics, whatever the bytes; encoding round-trips.

mod common;

use std::path::Path;

use common::*;
use netcr_image::frame::{decode_file, encode_file};
use netcr_image::v1::link_ref::Target;
use netcr_image::{v1, FileKind, Image};
use proptest::prelude::*;

fn decode_all_kinds(bytes: &[u8]) {
    let path = Path::new("fuzz.img");
    // Every outcome is fine except a panic.
    let _ = decode_file::<v1::Inventory>(bytes, FileKind::Inventory, path);
    let _ = decode_file::<v1::Netns>(bytes, FileKind::Netns, path);
    let _ = decode_file::<v1::Link>(bytes, FileKind::Links, path);
    let _ = decode_file::<v1::Address>(bytes, FileKind::Addresses, path);
    let _ = decode_file::<v1::Route>(bytes, FileKind::Routes, path);
    let _ = decode_file::<v1::Rule>(bytes, FileKind::Rules, path);
    let _ = decode_file::<v1::Neighbour>(bytes, FileKind::Neighbours, path);
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, v)| Mutation::Set(at, v)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, v)| Mutation::Insert(at, v)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Mutation::Remove(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match mutation {
        Mutation::FlipBit(at, bit) => bytes[at % len] ^= 1 << bit,
        Mutation::Set(at, v) => bytes[at % len] = *v,
        Mutation::Insert(at, v) => {
            let at = at % (len + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Remove(at, n) => {
            let at = at % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Truncate(at) => bytes.truncate(at % len),
    }
}

fn link_ref() -> impl Strategy<Value = Option<v1::LinkRef>> {
    prop_oneof![
        Just(None),
        Just(Some(v1::LinkRef { target: None })),
        (any::<u32>(), "[a-z0-9.@-]{0,15}").prop_map(|(netns, name)| Some(v1::LinkRef {
            target: Some(Target::Local(v1::LocalRef { netns, name })),
        })),
        ("[a-z0-9]{0,15}", any::<u32>(), any::<i32>(), any::<bool>()).prop_map(
            |(name_hint, ifindex_hint, nsid, in_caller)| Some(v1::LinkRef {
                target: Some(Target::External(v1::ExternalRef {
                    name_hint,
                    ifindex_hint,
                    nsid,
                    in_caller,
                })),
            })
        ),
    ]
}

fn link() -> impl Strategy<Value = v1::Link> {
    (
        ("\\PC{0,15}", any::<u32>(), "[a-z]{0,8}", any::<u32>()),
        (
            prop::collection::vec(any::<u8>(), 0..8),
            any::<u32>(),
            any::<u32>(),
            "\\PC{0,20}",
        ),
        (
            link_ref(),
            link_ref(),
            prop::collection::vec(any::<u8>(), 0..40),
        ),
        (
            prop::collection::vec(
                (any::<u32>(), prop::collection::vec(any::<u8>(), 0..10))
                    .prop_map(|(kind, value)| v1::Attr { kind, value }),
                0..4,
            ),
            prop::collection::vec(any::<i32>(), 0..40),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (name, ifindex, kind, mtu),
                (address, flags, txqlen, alias),
                (lower, master, config),
                (extra, ipv4_devconf, group),
            )| v1::Link {
                name,
                ifindex,
                kind: kind.clone(),
                mtu,
                broadcast: address.iter().map(|b| !b).collect(),
                address,
                flags,
                txqlen,
                alias: alias.clone(),
                group,
                link_type: 1,
                lower,
                master,
                config,
                extra,
                ipv6_devconf: ipv4_devconf.iter().rev().copied().collect(),
                ipv4_devconf,
                num_tx_queues: txqlen % 7,
                num_rx_queues: mtu % 5,
                port_config: vec![],
                altnames: vec![kind.clone()],
                proto_down: flags & 1 != 0,
                proto_down_reason: group,
                gso_max_size: mtu,
                gso_max_segs: txqlen,
                gro_max_size: mtu / 2,
                gso_ipv4_max_size: mtu / 3,
                gro_ipv4_max_size: mtu / 4,
                ipv6_stable_secret: alias,
                link_mode: flags % 2,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all_kinds(&bytes);
    }

    #[test]
    fn arbitrary_body_behind_a_valid_header_never_panics(
        kind in 1u32..8,
        body in prop::collection::vec(any::<u8>(), 0..512),
        count in prop_oneof![0u32..8, any::<u32>()],
    ) {
        // A correct checksum, so the record walk and protobuf decoding are exercised.
        decode_all_kinds(&frame(1, kind, &body, count));
    }

    #[test]
    fn mutated_files_never_panic(
        links in prop::collection::vec(link(), 0..6),
        mutations in prop::collection::vec(mutation(), 1..4),
        fix_checksum in any::<bool>(),
    ) {
        let mut bytes = encode_file(FileKind::Links, &links).unwrap();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if fix_checksum && bytes.len() >= 24 {
            refix_crc(&mut bytes);
        }
        decode_all_kinds(&bytes);
    }

    #[test]
    fn links_round_trip(links in prop::collection::vec(link(), 0..20)) {
        let bytes = encode_file(FileKind::Links, &links).unwrap();
        let back: Vec<v1::Link> = decode_file(&bytes, FileKind::Links, Path::new("l")).unwrap();
        prop_assert_eq!(back, links);
    }

    #[test]
    fn any_change_to_the_body_or_trailer_is_detected(
        links in prop::collection::vec(link(), 1..6),
        at in any::<usize>(),
        bit in 0u8..8,
    ) {
        let mut bytes = encode_file(FileKind::Links, &links).unwrap();
        let at = 16 + at % (bytes.len() - 16);
        bytes[at] ^= 1 << bit;
        prop_assert!(decode_file::<v1::Link>(&bytes, FileKind::Links, Path::new("l")).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn images_round_trip_in_memory(
        ids in prop::collection::btree_set(any::<u32>(), 0..4),
        links in prop::collection::vec(link(), 0..5),
    ) {
        let ids: Vec<u32> = ids.into_iter().collect();
        let mut image = sample_image(&ids, 0);
        for netns in &mut image.namespaces {
            netns.links = links.clone();
        }
        let files = image.to_files().unwrap();
        let back = Image::from_files(Path::new("img"), |path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            Ok(files.iter().find(|(n, _)| n == name).unwrap().1.clone())
        })
        .unwrap();
        prop_assert_eq!(back, image);
    }
}

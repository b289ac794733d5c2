//! This host's kernel has no 8021q module, so the dump bytes here are constructed the way
//! vlan_fill_info() emits them: IFLA_VLAN_PROTOCOL (be16), IFLA_VLAN_ID, IFLA_VLAN_FLAGS
//! (flags, mask ~0) only when a flag is set, then the ingress and egress QoS nests. The VM
//! round trip (crates/netcr/tests/cli_kinds.rs, `cargo xtask vmtest`) checks them on a kernel.

use netcr_core::LinkDriver;
use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

use super::*;

/// The config the driver makes of a dump.
fn config_from_dump(link: &LinkMessage) -> Vlan {
    netcr_core::kind::dump_config(&VlanDriver, link, &DumpCx::default()).unwrap()
}

fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(len + 3);
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(len.next_multiple_of(4), 0);
    out
}

fn pair(a: u32, b: u32) -> Vec<u8> {
    [a.to_ne_bytes(), b.to_ne_bytes()].concat()
}

/// IFLA_LINKINFO of a vlan as vlan_fill_info() writes it.
fn dump_bytes(
    proto: u16,
    id: u16,
    flags: u32,
    ingress: &[(u32, u32)],
    egress: &[(u32, u32)],
) -> Vec<u8> {
    let mut data = nla(5, &proto.to_be_bytes());
    data.extend(nla(1, &id.to_ne_bytes()));
    if flags != 0 {
        data.extend(nla(2, &pair(flags, !0)));
    }
    if !ingress.is_empty() {
        let maps: Vec<u8> = ingress
            .iter()
            .flat_map(|(f, t)| nla(1, &pair(*f, *t)))
            .collect();
        data.extend(nla(4, &maps));
    }
    if !egress.is_empty() {
        let maps: Vec<u8> = egress
            .iter()
            .flat_map(|(f, t)| nla(1, &pair(*f, *t)))
            .collect();
        data.extend(nla(3, &maps));
    }
    let mut info = nla(1, b"vlan\0");
    info.extend(nla(2, &data));
    nla(18, &info)
}

fn parse(raw: &[u8]) -> LinkMessage {
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
        .expect("IFLA_LINKINFO parses");
    let mut link = LinkMessage::default();
    link.attributes.push(attr);
    link
}

fn maps(list: &[(u32, u32)]) -> Vec<Mapping> {
    list.iter()
        .map(|&(from, to)| Mapping { from, to })
        .collect()
}

#[rstest]
#[case::dot1q_default(0x8100, 10, 1, &[], &[])]
#[case::dot1ad_no_flags(0x88a8, 4094, 0, &[], &[])]
#[case::all_flags(0x8100, 1, 0x1f, &[], &[])]
#[case::qos_maps(0x8100, 100, 0x1, &[(1, 2), (4, 5)], &[(3, 4), (7, 1)])]
fn dump_becomes_config_and_back(
    #[case] proto: u16,
    #[case] id: u16,
    #[case] flags: u32,
    #[case] ingress: &[(u32, u32)],
    #[case] egress: &[(u32, u32)],
) {
    let raw = dump_bytes(proto, id, flags, ingress, egress);
    let link = parse(&raw);
    let mut emitted = vec![0; link.attributes[0].buffer_len()];
    link.attributes[0].emit(&mut emitted);
    assert_eq!(emitted, raw, "nothing lost in parsing");
    let cfg = config_from_dump(&link);
    assert_eq!(
        cfg,
        Vlan {
            id: id as u32,
            protocol: proto as u32,
            flags,
            ingress_qos: maps(ingress),
            egress_qos: maps(egress),
            extra: vec![],
        }
    );
    // The request always carries the flags, with the mask the kernel accepts.
    let data = info_from_config(&cfg).unwrap();
    assert!(data.contains(&InfoVlan::Flags((
        VlanFlags::from_bits_retain(flags),
        VlanFlags::from_bits_retain(0x1f)
    ))));
    // Read back as the kernel would, it is the same config.
    let attr = LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vlan),
        LinkInfo::Data(InfoData::Vlan(data)),
    ]);
    let mut bytes = vec![0; attr.buffer_len()];
    attr.emit(&mut bytes);
    assert_eq!(config_from_dump(&parse(&bytes)), cfg);
}

#[rstest]
fn the_egress_map_is_kept_sorted() {
    let cfg = config_from_dump(&parse(&dump_bytes(0x8100, 5, 1, &[], &[(6, 1), (2, 3)])));
    assert_eq!(cfg.egress_qos, maps(&[(2, 3), (6, 1)]));
}

#[rstest]
#[case::id(Vlan { id: 4096, protocol: 0x8100, ..Default::default() }, "over 4095")]
#[case::protocol(Vlan { id: 1, protocol: 0x0800, ..Default::default() }, "unknown VLAN protocol")]
#[case::flags(Vlan { id: 1, protocol: 0x8100, flags: 0x20, ..Default::default() }, "unknown VLAN flags")]
#[case::ingress(Vlan { id: 1, protocol: 0x8100, ingress_qos: maps(&[(8, 1)]), ..Default::default() }, "over 7")]
fn impossible_configs_are_refused(#[case] cfg: Vlan, #[case] message: &str) {
    let err = info_from_config(&cfg).unwrap_err();
    assert!(err.to_string().contains(message), "{err}");
}

#[rstest]
fn describe_reads_like_iproute2() {
    let cfg = config_from_dump(&parse(&dump_bytes(0x88a8, 7, 0x3, &[(1, 2)], &[])));
    let kv = VlanDriver.describe(&cfg.encode_to_vec()).unwrap();
    assert_eq!(
        kv,
        vec![
            ("protocol".to_string(), "802.1ad".to_string()),
            ("id".to_string(), "7".to_string()),
            ("flags".to_string(), "reorder_hdr,gvrp".to_string()),
            ("ingress-qos-map".to_string(), "1:2".to_string()),
        ]
    );
}

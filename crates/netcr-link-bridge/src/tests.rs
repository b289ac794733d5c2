//! Golden-bytes tests on IFLA_LINKINFO exactly as kernel 6.18 dumped it (captured with a
//! raw netlink socket) for a default bridge, a tuned one and one of its ports. This kernel
//! is built without VLAN filtering, so the bridge-family VLAN views are constructed the way
//! br_fill_ifinfo() writes them (IFLA_AF_SPEC of struct bridge_vlan_info entries); the VM
//! round trip checks them on a kernel.

use netcr_core::netcr_netlink::Request;
use netcr_core::LinkDriver;
use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::AddressFamily;
use rstest::rstest;

use super::*;

/// The config the driver makes of a dumped bridge; `view` is its bridge-family dump (VLANs).
fn config_from_dump(link: &LinkMessage, view: Option<&LinkMessage>) -> Bridge {
    let cx = DumpCx {
        bridge: view,
        ..DumpCx::default()
    };
    netcr_core::kind::dump_config(&BridgeDriver, link, &cx).unwrap()
}

/// IFLA_LINKINFO of a bridge made with defaults (`type bridge`).
const DEFAULT_BRIDGE: &[u8] = &[
    156, 1, 18, 0, 11, 0, 1, 0, 98, 114, 105, 100, 103, 101, 0, 0, 140, 1, 2, 0, 12, 0, 16, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 12, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 12, 0, 19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 220, 5, 0, 0, 8, 0, 2, 0, 200, 0, 0, 0, 8,
    0, 3, 0, 208, 7, 0, 0, 8, 0, 4, 0, 48, 117, 0, 0, 8, 0, 5, 0, 0, 0, 0, 0, 6, 0, 6, 0, 0, 128,
    0, 0, 5, 0, 7, 0, 0, 0, 0, 0, 6, 0, 9, 0, 0, 0, 0, 0, 12, 0, 11, 0, 128, 0, 0, 0, 0, 0, 0, 0,
    12, 0, 10, 0, 128, 0, 0, 0, 0, 0, 0, 0, 6, 0, 12, 0, 0, 0, 0, 0, 8, 0, 13, 0, 0, 0, 0, 0, 5, 0,
    14, 0, 0, 0, 0, 0, 5, 0, 15, 0, 0, 0, 0, 0, 10, 0, 20, 0, 1, 128, 194, 0, 0, 0, 0, 0, 12, 0,
    46, 0, 0, 0, 0, 0, 31, 0, 0, 0, 8, 0, 48, 0, 0, 0, 0, 0, 8, 0, 49, 0, 0, 0, 0, 0, 5, 0, 22, 0,
    1, 0, 0, 0, 5, 0, 23, 0, 1, 0, 0, 0, 5, 0, 24, 0, 0, 0, 0, 0, 5, 0, 25, 0, 0, 0, 0, 0, 5, 0,
    42, 0, 0, 0, 0, 0, 8, 0, 26, 0, 16, 0, 0, 0, 8, 0, 27, 0, 0, 16, 0, 0, 8, 0, 28, 0, 2, 0, 0, 0,
    8, 0, 29, 0, 2, 0, 0, 0, 5, 0, 43, 0, 2, 0, 0, 0, 5, 0, 44, 0, 1, 0, 0, 0, 12, 0, 30, 0, 100,
    0, 0, 0, 0, 0, 0, 0, 12, 0, 31, 0, 144, 101, 0, 0, 0, 0, 0, 0, 12, 0, 32, 0, 156, 99, 0, 0, 0,
    0, 0, 0, 12, 0, 33, 0, 212, 48, 0, 0, 0, 0, 0, 0, 12, 0, 34, 0, 232, 3, 0, 0, 0, 0, 0, 0, 12,
    0, 35, 0, 52, 12, 0, 0, 0, 0, 0, 0, 5, 0, 36, 0, 0, 0, 0, 0, 5, 0, 37, 0, 0, 0, 0, 0, 5, 0, 38,
    0, 0, 0, 0, 0,
];

/// IFLA_LINKINFO of `type bridge stp_state 1 forward_delay 400 hello_time 300 max_age 2500
/// ageing_time 60000 priority 4096 mcast_snooping 0 mcast_querier 1 group_fwd_mask 8
/// no_linklocal_learn 1 mcast_router 2 nf_call_iptables 1`, with two ports.
const TUNED_BRIDGE: &[u8] = &[
    156, 1, 18, 0, 11, 0, 1, 0, 98, 114, 105, 100, 103, 101, 0, 0, 140, 1, 2, 0, 12, 0, 16, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 12, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 12, 0, 19, 0, 252, 233, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 144, 1, 0, 0, 8, 0, 2, 0, 44, 1, 0, 0,
    8, 0, 3, 0, 196, 9, 0, 0, 8, 0, 4, 0, 96, 234, 0, 0, 8, 0, 5, 0, 1, 0, 0, 0, 6, 0, 6, 0, 0, 16,
    0, 0, 5, 0, 7, 0, 0, 0, 0, 0, 6, 0, 9, 0, 8, 0, 0, 0, 12, 0, 11, 0, 16, 0, 142, 138, 175, 225,
    243, 95, 12, 0, 10, 0, 16, 0, 142, 138, 175, 225, 243, 95, 6, 0, 12, 0, 0, 0, 0, 0, 8, 0, 13,
    0, 0, 0, 0, 0, 5, 0, 14, 0, 0, 0, 0, 0, 5, 0, 15, 0, 0, 0, 0, 0, 10, 0, 20, 0, 1, 128, 194, 0,
    0, 0, 0, 0, 12, 0, 46, 0, 1, 0, 0, 0, 31, 0, 0, 0, 8, 0, 48, 0, 0, 0, 0, 0, 8, 0, 49, 0, 0, 0,
    0, 0, 5, 0, 22, 0, 2, 0, 0, 0, 5, 0, 23, 0, 0, 0, 0, 0, 5, 0, 24, 0, 0, 0, 0, 0, 5, 0, 25, 0,
    1, 0, 0, 0, 5, 0, 42, 0, 0, 0, 0, 0, 8, 0, 26, 0, 16, 0, 0, 0, 8, 0, 27, 0, 0, 16, 0, 0, 8, 0,
    28, 0, 2, 0, 0, 0, 8, 0, 29, 0, 2, 0, 0, 0, 5, 0, 43, 0, 2, 0, 0, 0, 5, 0, 44, 0, 1, 0, 0, 0,
    12, 0, 30, 0, 100, 0, 0, 0, 0, 0, 0, 0, 12, 0, 31, 0, 144, 101, 0, 0, 0, 0, 0, 0, 12, 0, 32, 0,
    156, 99, 0, 0, 0, 0, 0, 0, 12, 0, 33, 0, 212, 48, 0, 0, 0, 0, 0, 0, 12, 0, 34, 0, 232, 3, 0, 0,
    0, 0, 0, 0, 12, 0, 35, 0, 52, 12, 0, 0, 0, 0, 0, 0, 5, 0, 36, 0, 1, 0, 0, 0, 5, 0, 37, 0, 0, 0,
    0, 0, 5, 0, 38, 0, 0, 0, 0, 0,
];

/// IFLA_LINKINFO of a veth port of TUNED_BRIDGE after `type bridge_slave cost 7 priority 5
/// learning off flood off hairpin on isolated on mcast_flood off bcast_flood off
/// neigh_suppress on`: the veth kind, then IFLA_INFO_SLAVE_KIND "bridge" and its data.
const PORT: &[u8] = &[
    108, 1, 18, 0, 9, 0, 1, 0, 118, 101, 116, 104, 0, 0, 0, 0, 11, 0, 4, 0, 98, 114, 105, 100, 103,
    101, 0, 0, 80, 1, 5, 0, 5, 0, 1, 0, 0, 0, 0, 0, 6, 0, 2, 0, 5, 0, 0, 0, 8, 0, 3, 0, 7, 0, 0, 0,
    5, 0, 4, 0, 1, 0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0, 5, 0, 6, 0, 0, 0, 0, 0, 5, 0, 7, 0, 0, 0, 0, 0,
    5, 0, 28, 0, 0, 0, 0, 0, 5, 0, 8, 0, 0, 0, 0, 0, 5, 0, 9, 0, 0, 0, 0, 0, 5, 0, 27, 0, 0, 0, 0,
    0, 5, 0, 30, 0, 0, 0, 0, 0, 5, 0, 10, 0, 0, 0, 0, 0, 5, 0, 12, 0, 0, 0, 0, 0, 12, 0, 13, 0, 16,
    0, 142, 138, 175, 225, 243, 95, 12, 0, 14, 0, 16, 0, 142, 138, 175, 225, 243, 95, 6, 0, 15, 0,
    1, 20, 0, 0, 6, 0, 16, 0, 0, 0, 0, 0, 6, 0, 17, 0, 1, 20, 0, 0, 6, 0, 18, 0, 1, 0, 0, 0, 5, 0,
    19, 0, 0, 0, 0, 0, 5, 0, 20, 0, 0, 0, 0, 0, 5, 0, 29, 0, 0, 0, 0, 0, 6, 0, 31, 0, 0, 0, 0, 0,
    5, 0, 32, 0, 1, 0, 0, 0, 5, 0, 35, 0, 0, 0, 0, 0, 5, 0, 36, 0, 0, 0, 0, 0, 5, 0, 33, 0, 1, 0,
    0, 0, 5, 0, 39, 0, 0, 0, 0, 0, 5, 0, 40, 0, 0, 0, 0, 0, 5, 0, 43, 0, 0, 0, 0, 0, 12, 0, 21, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 22, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 23, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 5, 0, 25, 0, 1, 0, 0, 0, 8, 0, 37, 0, 0, 2, 0, 0, 8, 0, 38, 0, 0, 0, 0, 0, 8, 0, 41, 0,
    0, 0, 0, 0, 8, 0, 42, 0, 0, 0, 0, 0,
];

fn parse(raw: &[u8]) -> LinkMessage {
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
        .expect("captured IFLA_LINKINFO parses");
    let mut link = LinkMessage::default();
    link.attributes.push(attr);
    link
}

fn emitted(attr: &LinkAttribute) -> Vec<u8> {
    let mut bytes = vec![0; attr.buffer_len()];
    attr.emit(&mut bytes);
    bytes
}

fn option<'a>(options: &'a [NamedAttr], name: &str) -> Option<&'a [u8]> {
    options
        .iter()
        .find(|o| o.name == name)
        .map(|o| o.value.as_slice())
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

/// A bridge-family link dump's IFLA_AF_SPEC with these (flags, vid) VLAN entries.
fn vlan_view(entries: &[(u16, u16)]) -> LinkMessage {
    let spec: Vec<u8> = entries
        .iter()
        .flat_map(|(flags, vid)| nla(2, &[flags.to_ne_bytes(), vid.to_ne_bytes()].concat()))
        .collect();
    let raw = nla(26, &spec);
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(&raw), AddressFamily::Bridge)
        .expect("IFLA_AF_SPEC parses");
    let mut view = LinkMessage::default();
    view.header.interface_family = AddressFamily::Bridge;
    view.attributes.push(attr);
    view
}

#[rstest]
#[case::default(DEFAULT_BRIDGE)]
#[case::tuned(TUNED_BRIDGE)]
#[case::port(PORT)]
fn captured_bytes_parse_without_loss(#[case] raw: &[u8]) {
    let link = parse(raw);
    assert_eq!(emitted(&link.attributes[0]), raw);
}

#[rstest]
fn a_tuned_bridge_keeps_its_settings_and_drops_state() {
    let cfg = config_from_dump(&parse(TUNED_BRIDGE), None);
    let kinds: Vec<u16> = cfg.options.iter().map(|o| o.kind as u16).collect();
    for ro in BRIDGE_READ_ONLY {
        assert!(!kinds.contains(ro), "read-only attribute {ro} kept");
    }
    let u32_of = |n| u32::from_ne_bytes(option(&cfg.options, n).unwrap().try_into().unwrap());
    assert_eq!(u32_of("forward_delay"), 400);
    assert_eq!(u32_of("hello_time"), 300);
    assert_eq!(u32_of("max_age"), 2500);
    assert_eq!(u32_of("ageing_time"), 60000);
    assert_eq!(u32_of("stp_state"), 1);
    assert_eq!(
        option(&cfg.options, "priority"),
        Some(&4096u16.to_ne_bytes()[..])
    );
    assert_eq!(option(&cfg.options, "mcast_snooping"), Some(&[0u8][..]));
    assert_eq!(option(&cfg.options, "mcast_querier"), Some(&[1u8][..]));
    assert_eq!(option(&cfg.options, "mcast_router"), Some(&[2u8][..]));
    assert_eq!(option(&cfg.options, "nf_call_iptables"), Some(&[1u8][..]));
    assert_eq!(
        option(&cfg.options, "group_fwd_mask"),
        Some(&8u16.to_ne_bytes()[..])
    );
    // no_linklocal_learn lives in the multi-boolopt: value 1 of mask 0x1f.
    assert_eq!(
        option(&cfg.options, "multi_boolopt"),
        Some(&[1, 0, 0, 0, 31, 0, 0, 0][..])
    );
    assert_eq!(
        option(&cfg.options, "group_address"),
        Some(&[1, 0x80, 0xc2, 0, 0, 0][..])
    );
    // Every attribute this kernel sent is named (none unknown).
    assert!(cfg.options.iter().all(|o| !o.name.is_empty()), "{cfg:?}");
    assert!(cfg.vlans.is_empty());
}

#[rstest]
#[case::default(DEFAULT_BRIDGE)]
#[case::tuned(TUNED_BRIDGE)]
fn the_creation_request_round_trips_without_vlan_filtering_0(#[case] raw: &[u8]) {
    let cfg = config_from_dump(&parse(raw), None);
    let link = v1::Link {
        kind: "bridge".into(),
        config: cfg.encode_to_vec(),
        ..Default::default()
    };
    let mut cx = RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index: None,
    };
    let infos = BridgeDriver.restore(&link, &mut cx).unwrap();
    let again = config_from_dump(&parse(&emitted(&LinkAttribute::LinkInfo(infos))), None);
    let mut want = cfg.options.clone();
    want.retain(|o| o.name != "vlan_filtering");
    // The multi-boolopt goes back as the options that are on (value and mask), or not at all.
    want.retain_mut(|o| {
        if o.name != "multi_boolopt" {
            return true;
        }
        let on = o.value[..4].to_vec();
        o.value = [on.clone(), on.clone()].concat();
        on.iter().any(|b| *b != 0)
    });
    assert_eq!(again.options, want);
}

#[rstest]
fn only_the_boolean_options_that_are_on_are_sent() {
    let boolopt = |value: u32, mask: u32| NamedAttr {
        kind: 46,
        name: "multi_boolopt".into(),
        value: [value.to_ne_bytes(), mask.to_ne_bytes()].concat(),
    };
    let sent = |value, mask| {
        info_from_config(&Bridge {
            options: vec![boolopt(value, mask)],
            ..Default::default()
        })
        .unwrap()
    };
    // A mask naming mst_enable fails on kernels without VLAN filtering, even to turn it off.
    assert!(sent(0, 0x1f).is_empty());
    assert_eq!(
        sent(0x1, 0x1f),
        vec![InfoBridge::Other(DefaultNla::new(
            46,
            [1u32.to_ne_bytes(), 1u32.to_ne_bytes()].concat()
        ))]
    );
}

#[rstest]
fn vlan_filtering_on_is_sent() {
    let cfg = Bridge {
        options: vec![NamedAttr {
            kind: 7,
            name: "vlan_filtering".into(),
            value: vec![1],
        }],
        ..Default::default()
    };
    assert_eq!(info_from_config(&cfg).unwrap().len(), 1);
}

#[rstest]
fn a_port_keeps_its_options_and_drops_state() {
    let port = parse(PORT);
    let cfg = port_config_from_dump(&port, None, &netcr_core::driver::no_names).unwrap();
    let kinds: Vec<u16> = cfg.options.iter().map(|o| o.kind as u16).collect();
    for ro in PORT_READ_ONLY {
        assert!(!kinds.contains(ro), "read-only attribute {ro} kept");
    }
    assert_eq!(option(&cfg.options, "cost"), Some(&7u32.to_ne_bytes()[..]));
    assert_eq!(
        option(&cfg.options, "priority"),
        Some(&5u16.to_ne_bytes()[..])
    );
    for (name, value) in [
        ("hairpin", 1),
        ("learning", 0),
        ("flood", 0),
        ("isolated", 1),
        ("mcast_flood", 0),
        ("bcast_flood", 0),
        ("neigh_suppress", 1),
        ("guard", 0),
        ("proxy_arp", 0),
    ] {
        assert_eq!(option(&cfg.options, name), Some(&[value][..]), "{name}");
    }
    assert!(cfg.options.iter().all(|o| !o.name.is_empty()), "{cfg:?}");
    assert!(cfg.backup_port.is_empty());
}

fn port_record(cfg: &BridgePort) -> v1::Link {
    v1::Link {
        name: "p1a".into(),
        kind: "veth".into(),
        port_config: cfg.encode_to_vec(),
        ..Default::default()
    }
}

#[rstest]
fn port_options_go_back_as_slave_data_then_vlans_are_reset() {
    let cfg = port_config_from_dump(&parse(PORT), None, &netcr_core::driver::no_names).unwrap();
    let cx = RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index: None,
    };
    let requests: Vec<Request> = BridgeDriver
        .restore_port(&port_record(&cfg), 5, &cx)
        .unwrap();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let RouteNetlinkMessage::NewLink(msg) = &requests[0].message else {
        panic!("{:?}", requests[0])
    };
    assert_eq!(msg.header.index, 5);
    assert_eq!(requests[0].flags, 0, "changes the port, never creates");
    // Read back as the kernel would, the port data are the options.
    let mut port = parse(&emitted(&msg.attributes[0]));
    // (A dump carries the port's own kind first; the request has none.)
    if let LinkAttribute::LinkInfo(infos) = &mut port.attributes[0] {
        assert!(!infos.iter().any(|i| matches!(i, LinkInfo::Kind(_))));
    }
    let again = port_config_from_dump(&port, None, &netcr_core::driver::no_names).unwrap();
    assert_eq!(again, cfg);
    // Then every VLAN goes (the kernel gave the port the default PVID), bridge-family.
    let RouteNetlinkMessage::DelLink(del) = &requests[1].message else {
        panic!("{:?}", requests[1])
    };
    assert_eq!(del.header.interface_family, AddressFamily::Bridge);
    assert_eq!(
        del.attributes,
        vec![LinkAttribute::AfSpecBridge(vec![
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::RangeBegin,
                vid: 1
            }),
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::RangeEnd,
                vid: 4094
            }),
        ])]
    );
}

#[rstest]
fn vlans_are_read_singly_and_in_ranges_and_restored_exactly() {
    // vid 1 pvid untagged, 10 tagged, 30-32 as a range, with BRENTRY noise on one.
    let view = vlan_view(&[(0x6, 1), (0x0, 10), (0x8, 30), (0x10, 32), (0x20, 40)]);
    let (vlans, extra) = vlans_from(Some(&view));
    let ids: Vec<(u32, u32)> = vlans.iter().map(|v| (v.vid, v.flags)).collect();
    assert_eq!(
        ids,
        vec![(1, 6), (10, 0), (30, 0), (31, 0), (32, 0), (40, 0)]
    );
    assert!(extra.is_empty());

    let requests = vlan_requests(9, false, &vlans, &[], "port").unwrap();
    assert_eq!(requests.len(), 2);
    let RouteNetlinkMessage::SetLink(add) = &requests[1].message else {
        panic!("{:?}", requests[1])
    };
    assert_eq!(add.header.interface_family, AddressFamily::Bridge);
    assert_eq!(add.header.index, 9);
    // The request, read back like a dump, lists the same VLANs.
    let (again, _) = vlans_from(Some(add));
    assert_eq!(again, vlans);
}

#[rstest]
fn the_bridges_own_vlans_are_addressed_with_self() {
    let view = vlan_view(&[(0x6, 1), (0x0, 20)]);
    let mut link_msg = parse(DEFAULT_BRIDGE);
    link_msg.header.index = 4;
    let cfg = config_from_dump(&link_msg, Some(&view));
    assert_eq!(cfg.vlans.len(), 2);
    let link = v1::Link {
        name: "br0".into(),
        kind: "bridge".into(),
        config: cfg.encode_to_vec(),
        ..Default::default()
    };
    let cx = RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index: None,
    };
    let requests = BridgeDriver.after_create(&link, 4, &cx).unwrap();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        let (RouteNetlinkMessage::DelLink(m) | RouteNetlinkMessage::SetLink(m)) = &r.message else {
            panic!("{r:?}")
        };
        let LinkAttribute::AfSpecBridge(spec) = &m.attributes[0] else {
            panic!("{m:?}")
        };
        assert_eq!(spec[0], AfSpecBridge::Flags(BridgeFlag::LowerDev));
    }
}

#[rstest]
fn a_backup_port_is_kept_by_name() {
    let mut port = parse(PORT);
    if let LinkAttribute::LinkInfo(infos) = &mut port.attributes[0] {
        for info in infos.iter_mut() {
            if let LinkInfo::PortData(InfoPortData::BridgePort(d)) = info {
                d.push(InfoBridgePort::BackupPort(7));
            }
        }
    }
    let names = |i: u32| (i == 7).then(|| "p2a".to_string());
    let cfg = port_config_from_dump(&port, None, &names).unwrap();
    assert_eq!(cfg.backup_port, "p2a");
    let indexes = |n: &str| (n == "p2a").then_some(12);
    let cx = RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &indexes,
        lower_index: None,
    };
    let requests = BridgeDriver
        .restore_port(&port_record(&cfg), 5, &cx)
        .unwrap();
    let RouteNetlinkMessage::NewLink(msg) = &requests[0].message else {
        panic!()
    };
    let back = port_config_from_dump(&parse(&emitted(&msg.attributes[0])), None, &|i| {
        (i == 12).then(|| "p2a".to_string())
    })
    .unwrap();
    assert_eq!(back.backup_port, "p2a");
    // Unknown backup port at dump time is an error, not a silent loss.
    assert!(port_config_from_dump(&port, None, &netcr_core::driver::no_names).is_err());
}

#[rstest]
fn unknown_attributes_are_kept_and_sent_verbatim() {
    let mut link = parse(DEFAULT_BRIDGE);
    if let LinkAttribute::LinkInfo(infos) = &mut link.attributes[0] {
        for info in infos.iter_mut() {
            if let LinkInfo::Data(InfoData::Bridge(d)) = info {
                d.push(InfoBridge::Other(DefaultNla::new(99, vec![9, 9, 9, 9])));
            }
        }
    }
    let cfg = config_from_dump(&link, None);
    let unknown = cfg.options.iter().find(|o| o.kind == 99).unwrap();
    assert_eq!(
        (unknown.name.as_str(), unknown.value.as_slice()),
        ("", &[9, 9, 9, 9][..])
    );
    let data = info_from_config(&cfg).unwrap();
    assert!(data.iter().any(|a| a.kind() == 99));
    let kv = BridgeDriver.describe(&cfg.encode_to_vec()).unwrap();
    assert!(
        kv.contains(&("attr99".to_string(), "09090909".to_string())),
        "{kv:?}"
    );
}

#[rstest]
fn describe_reads_like_iproute2() {
    let cfg = config_from_dump(&parse(TUNED_BRIDGE), Some(&vlan_view(&[(0x6, 1)])));
    let kv = BridgeDriver.describe(&cfg.encode_to_vec()).unwrap();
    assert!(kv.contains(&("forward_delay".to_string(), "400".to_string())));
    assert!(kv.contains(&("group_address".to_string(), "01:80:c2:00:00:00".to_string())));
    assert!(kv.contains(&("multi_boolopt".to_string(), "0x1/0x1f".to_string())));
    assert!(kv.contains(&("vlans".to_string(), "1 pvid untagged".to_string())));
    let port = port_config_from_dump(&parse(PORT), None, &netcr_core::driver::no_names).unwrap();
    let kv = describe_port(&port.encode_to_vec()).unwrap();
    assert!(kv.contains(&("cost".to_string(), "7".to_string())));
    assert!(BridgeDriver.describe(&[0xff]).is_err());
}

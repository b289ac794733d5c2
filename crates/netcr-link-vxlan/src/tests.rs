//! Golden-bytes tests on what kernel 6.18 dumped (captured with a raw netlink socket): the
//! IFLA_LINKINFO of three vxlans (unicast remote with an underlay device, multicast group,
//! IPv6) and whole bridge-family neighbour messages of their forwarding entries.

use netcr_core::state::{decode, encode};
use netcr_core::LinkDriver;
use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

use super::*;

/// The config the driver makes of a dump, with its forwarding entries `fdb` and the names
/// `name_of` gives.
fn config_from_dump(
    link: &LinkMessage,
    fdb: &[NeighbourMessage],
    name_of: &dyn Fn(u32) -> Option<String>,
) -> Result<Vxlan, DriverError> {
    let cx = DumpCx {
        fdb,
        name_of,
        ..DumpCx::default()
    };
    netcr_core::kind::dump_config(&VxlanDriver, link, &cx)
}

/// IFLA_VXLAN_LINK of a dumped vxlan, when it names a device.
fn underlay_index(link: &LinkMessage) -> Option<u32> {
    underlay(attrs(netcr_core::kind::info_data(link)))
}

/// IFLA_LINKINFO of `vxlan id 42 remote 10.1.1.2 local 10.1.1.1 dstport 4789 ttl 64 tos 0x10
/// nolearning dev v0` (v0 is ifindex 9).
const VX0: &[u8] = &[
    240, 0, 18, 0, 10, 0, 1, 0, 118, 120, 108, 97, 110, 0, 0, 0, 224, 0, 2, 0, 8, 0, 1, 0, 42, 0,
    0, 0, 8, 0, 2, 0, 10, 1, 1, 2, 8, 0, 3, 0, 9, 0, 0, 0, 8, 0, 4, 0, 10, 1, 1, 1, 5, 0, 5, 0, 64,
    0, 0, 0, 5, 0, 28, 0, 0, 0, 0, 0, 5, 0, 6, 0, 16, 0, 0, 0, 5, 0, 29, 0, 0, 0, 0, 0, 8, 0, 26,
    0, 0, 0, 0, 0, 8, 0, 32, 0, 0, 0, 0, 0, 5, 0, 7, 0, 0, 0, 0, 0, 5, 0, 11, 0, 0, 0, 0, 0, 5, 0,
    12, 0, 0, 0, 0, 0, 5, 0, 13, 0, 0, 0, 0, 0, 5, 0, 14, 0, 0, 0, 0, 0, 5, 0, 25, 0, 0, 0, 0, 0,
    8, 0, 8, 0, 44, 1, 0, 0, 8, 0, 9, 0, 0, 0, 0, 0, 6, 0, 15, 0, 18, 181, 0, 0, 5, 0, 18, 0, 1, 0,
    0, 0, 5, 0, 19, 0, 0, 0, 0, 0, 5, 0, 20, 0, 0, 0, 0, 0, 5, 0, 21, 0, 0, 0, 0, 0, 5, 0, 22, 0,
    0, 0, 0, 0, 5, 0, 31, 0, 1, 0, 0, 0, 8, 0, 10, 0, 0, 0, 0, 0, 12, 0, 33, 0, 247, 255, 255, 255,
    0, 0, 0, 255,
];

/// IFLA_LINKINFO of `vxlan id 43 group 239.1.1.1 dev v0 dstport 4789 ageing 120 maxaddress 50
/// srcport 1000 2000 l2miss l3miss proxy`.
const VX1: &[u8] = &[
    232, 0, 18, 0, 10, 0, 1, 0, 118, 120, 108, 97, 110, 0, 0, 0, 216, 0, 2, 0, 8, 0, 1, 0, 43, 0,
    0, 0, 8, 0, 2, 0, 239, 1, 1, 1, 8, 0, 3, 0, 9, 0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0, 5, 0, 28, 0, 0,
    0, 0, 0, 5, 0, 6, 0, 0, 0, 0, 0, 5, 0, 29, 0, 0, 0, 0, 0, 8, 0, 26, 0, 0, 0, 0, 0, 8, 0, 32, 0,
    0, 0, 0, 0, 5, 0, 7, 0, 1, 0, 0, 0, 5, 0, 11, 0, 1, 0, 0, 0, 5, 0, 12, 0, 0, 0, 0, 0, 5, 0, 13,
    0, 1, 0, 0, 0, 5, 0, 14, 0, 1, 0, 0, 0, 5, 0, 25, 0, 0, 0, 0, 0, 8, 0, 8, 0, 120, 0, 0, 0, 8,
    0, 9, 0, 50, 0, 0, 0, 6, 0, 15, 0, 18, 181, 0, 0, 5, 0, 18, 0, 1, 0, 0, 0, 5, 0, 19, 0, 0, 0,
    0, 0, 5, 0, 20, 0, 0, 0, 0, 0, 5, 0, 21, 0, 0, 0, 0, 0, 5, 0, 22, 0, 0, 0, 0, 0, 5, 0, 31, 0,
    1, 0, 0, 0, 8, 0, 10, 0, 3, 232, 7, 208, 12, 0, 33, 0, 247, 255, 255, 255, 0, 0, 0, 255,
];

/// IFLA_LINKINFO of `vxlan id 44 remote fd00::2 local fd00::1 dstport 4790 udp6zerocsumtx
/// udp6zerocsumrx flowlabel 5` (no underlay device).
const VX6: &[u8] = &[
    0, 1, 18, 0, 10, 0, 1, 0, 118, 120, 108, 97, 110, 0, 0, 0, 240, 0, 2, 0, 8, 0, 1, 0, 44, 0, 0,
    0, 20, 0, 16, 0, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 20, 0, 17, 0, 253, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 5, 0, 0, 0, 0, 0, 5, 0, 28, 0, 0, 0, 0, 0, 5, 0, 6,
    0, 0, 0, 0, 0, 5, 0, 29, 0, 0, 0, 0, 0, 8, 0, 26, 0, 0, 0, 0, 5, 8, 0, 32, 0, 0, 0, 0, 0, 5, 0,
    7, 0, 1, 0, 0, 0, 5, 0, 11, 0, 0, 0, 0, 0, 5, 0, 12, 0, 0, 0, 0, 0, 5, 0, 13, 0, 0, 0, 0, 0, 5,
    0, 14, 0, 0, 0, 0, 0, 5, 0, 25, 0, 0, 0, 0, 0, 8, 0, 8, 0, 44, 1, 0, 0, 8, 0, 9, 0, 0, 0, 0, 0,
    6, 0, 15, 0, 18, 182, 0, 0, 5, 0, 18, 0, 1, 0, 0, 0, 5, 0, 19, 0, 1, 0, 0, 0, 5, 0, 20, 0, 1,
    0, 0, 0, 5, 0, 21, 0, 0, 0, 0, 0, 5, 0, 22, 0, 0, 0, 0, 0, 5, 0, 31, 0, 1, 0, 0, 0, 8, 0, 10,
    0, 0, 0, 0, 0, 12, 0, 33, 0, 247, 255, 255, 255, 0, 0, 0, 255,
];

/// vx0's `02:00:00:00:00:02 dst 10.1.1.5 port 5000 vni 77 self permanent` (whole ndmsg).
const FDB_PORT_VNI: &[u8] = &[
    7, 0, 0, 0, 10, 0, 0, 0, 192, 0, 2, 1, 10, 0, 2, 0, 2, 0, 0, 0, 0, 2, 0, 0, 8, 0, 1, 0, 10, 1,
    1, 5, 6, 0, 6, 0, 19, 136, 0, 0, 8, 0, 7, 0, 77, 0, 0, 0, 20, 0, 3, 0, 0, 0, 0, 0, 27, 5, 0, 0,
    27, 5, 0, 0, 0, 0, 0, 0,
];

/// vx0's `02:00:00:00:00:01 dst 10.1.1.4 self static`.
const FDB_STATIC: &[u8] = &[
    7, 0, 0, 0, 10, 0, 0, 0, 66, 0, 2, 1, 10, 0, 2, 0, 2, 0, 0, 0, 0, 1, 0, 0, 8, 0, 1, 0, 10, 1,
    1, 4, 20, 0, 3, 0, 0, 0, 0, 0, 30, 5, 0, 0, 30, 5, 0, 0, 0, 0, 0, 0,
];

/// vx0's default destination `00:00:00:00:00:00 dst 10.1.1.2 via v0 self permanent`, made by
/// the kernel from `remote` (then made permanent by the append below).
const FDB_DEFAULT: &[u8] = &[
    7, 0, 0, 0, 10, 0, 0, 0, 192, 0, 2, 1, 10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 10, 1,
    1, 2, 8, 0, 8, 0, 9, 0, 0, 0, 20, 0, 3, 0, 0, 0, 0, 0, 44, 5, 0, 0, 32, 5, 0, 0, 0, 0, 0, 0,
];

/// vx0's appended `00:00:00:00:00:00 dst 10.1.1.3 self permanent`.
const FDB_APPENDED: &[u8] = &[
    7, 0, 0, 0, 10, 0, 0, 0, 192, 0, 2, 1, 10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 10, 1,
    1, 3, 20, 0, 3, 0, 0, 0, 0, 0, 44, 5, 0, 0, 32, 5, 0, 0, 0, 0, 0, 0,
];

/// vx1's default destination `00:00:00:00:00:00 dst 239.1.1.1 via v0 self permanent`.
const FDB_VX1_DEFAULT: &[u8] = &[
    7, 0, 0, 0, 11, 0, 0, 0, 130, 0, 2, 1, 10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 239, 1,
    1, 1, 8, 0, 8, 0, 9, 0, 0, 0, 20, 0, 3, 0, 0, 0, 0, 0, 40, 5, 0, 0, 40, 5, 0, 0, 0, 0, 0, 0,
];

/// vx6's default destination `00:00:00:00:00:00 dst fd00::2 self permanent`.
const FDB_VX6_DEFAULT: &[u8] = &[
    7, 0, 0, 0, 12, 0, 0, 0, 130, 0, 2, 1, 10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 1, 0, 253,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 20, 0, 3, 0, 0, 0, 0, 0, 34, 5, 0, 0, 34, 5, 0, 0,
    0, 0, 0, 0,
];

/// vx0's `02:00:00:00:00:03 dst 10.1.1.6 self` added `dynamic`: traffic state, not kept.
const FDB_DYNAMIC: &[u8] = &[
    7, 0, 0, 0, 10, 0, 0, 0, 2, 0, 2, 1, 10, 0, 2, 0, 2, 0, 0, 0, 0, 3, 0, 0, 8, 0, 1, 0, 10, 1, 1,
    6, 20, 0, 3, 0, 0, 0, 0, 0, 31, 0, 0, 0, 31, 0, 0, 0, 0, 0, 0, 0,
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

fn neigh(raw: &[u8]) -> NeighbourMessage {
    decode(raw, "neighbour").unwrap()
}

fn vx0_fdb() -> Vec<NeighbourMessage> {
    [
        FDB_PORT_VNI,
        FDB_STATIC,
        FDB_DEFAULT,
        FDB_APPENDED,
        FDB_DYNAMIC,
    ]
    .into_iter()
    .map(neigh)
    .collect()
}

fn v0(i: u32) -> Option<String> {
    (i == 9).then(|| "v0".to_string())
}

fn option<'a>(cfg: &'a Vxlan, name: &str) -> Option<&'a [u8]> {
    cfg.options
        .iter()
        .find(|o| o.name == name)
        .map(|o| o.value.as_slice())
}

fn cx<'a>(index_of: &'a dyn Fn(&str) -> Option<u32>, lower: Option<u32>) -> RestoreCx<'a> {
    RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of,
        lower_index: lower,
    }
}

#[rstest]
#[case::unicast(VX0)]
#[case::multicast(VX1)]
#[case::ipv6(VX6)]
fn captured_links_parse_without_loss(#[case] raw: &[u8]) {
    assert_eq!(emitted(&parse(raw).attributes[0]), raw);
}

#[rstest]
#[case(FDB_PORT_VNI)]
#[case(FDB_STATIC)]
#[case(FDB_DEFAULT)]
#[case(FDB_APPENDED)]
#[case(FDB_VX1_DEFAULT)]
#[case(FDB_VX6_DEFAULT)]
#[case(FDB_DYNAMIC)]
fn captured_forwarding_entries_parse_without_loss(#[case] raw: &[u8]) {
    assert_eq!(encode(&neigh(raw)), raw);
}

#[rstest]
fn the_underlay_is_the_lower_device_not_an_option() {
    let link = parse(VX0);
    assert_eq!(underlay_index(&link), Some(9));
    assert_eq!(VxlanDriver.lower_ref(&link), LowerRef::Device(9));
    assert_eq!(VxlanDriver.lower_ref(&parse(VX6)), LowerRef::NoDevice);
    let cfg = config_from_dump(&link, &[], &v0).unwrap();
    assert!(cfg.options.iter().all(|o| o.kind != 3));
    assert!(cfg.options.iter().all(|o| !o.name.is_empty()), "{cfg:?}");
    assert_eq!(option(&cfg, "id"), Some(&42u32.to_ne_bytes()[..]));
    assert_eq!(option(&cfg, "remote"), Some(&[10, 1, 1, 2][..]));
    assert_eq!(option(&cfg, "local"), Some(&[10, 1, 1, 1][..]));
    assert_eq!(option(&cfg, "ttl"), Some(&[64][..]));
    assert_eq!(option(&cfg, "tos"), Some(&[0x10][..]));
    assert_eq!(option(&cfg, "learning"), Some(&[0][..]));
    assert_eq!(option(&cfg, "dstport"), Some(&4789u16.to_be_bytes()[..]));
    assert!(!cfg.netns_outside);
}

#[rstest]
#[case::unicast(VX0, Some(9))]
#[case::multicast(VX1, Some(9))]
#[case::ipv6(VX6, None)]
fn the_creation_request_is_the_dump_but_ttl_inherit(
    #[case] raw: &[u8],
    #[case] underlay: Option<u32>,
) {
    let cfg = config_from_dump(&parse(raw), &[], &v0).unwrap();
    let link = v1::Link {
        kind: "vxlan".into(),
        config: cfg.encode_to_vec(),
        ..Default::default()
    };
    let no = netcr_core::driver::no_indexes;
    let mut cx = cx(&no, underlay);
    let infos = VxlanDriver.restore(&link, &mut cx).unwrap();
    let again = parse(&emitted(&LinkAttribute::LinkInfo(infos)));
    assert_eq!(underlay_index(&again), underlay);
    let mut want = cfg.clone();
    // ttl_inherit and remcsumrx go back only when on (both are off here).
    want.options
        .retain(|o| o.name != "ttl_inherit" && o.name != "remcsumrx");
    assert_eq!(config_from_dump(&again, &[], &v0).unwrap(), want);
}

#[rstest]
fn ttl_inherit_goes_back_as_a_flag() {
    let cfg = Vxlan {
        options: vec![NamedAttr {
            kind: 28,
            name: "ttl_inherit".into(),
            value: vec![1],
        }],
        ..Default::default()
    };
    let data = info_from_config(&cfg, None).unwrap();
    assert_eq!(data, vec![InfoVxlan::Other(DefaultNla::new(28, vec![]))]);
}

#[rstest]
fn the_multicast_group_and_flags_are_kept() {
    let cfg = config_from_dump(&parse(VX1), &[], &v0).unwrap();
    assert_eq!(option(&cfg, "remote"), Some(&[239, 1, 1, 1][..]));
    assert_eq!(option(&cfg, "srcport"), Some(&[3, 232, 7, 208][..]));
    for flag in ["l2miss", "l3miss", "proxy", "learning"] {
        assert_eq!(option(&cfg, flag), Some(&[1][..]), "{flag}");
    }
    assert_eq!(option(&cfg, "ageing"), Some(&120u32.to_ne_bytes()[..]));
    assert_eq!(option(&cfg, "maxaddress"), Some(&50u32.to_ne_bytes()[..]));
}

#[rstest]
fn permanent_and_static_entries_are_kept_learned_ones_are_not() {
    let cfg = config_from_dump(&parse(VX0), &vx0_fdb(), &v0).unwrap();
    assert_eq!(cfg.fdb.len(), 4, "the dynamic entry is left out");
    for e in &cfg.fdb {
        let msg = neigh(&e.message);
        assert_eq!(msg.header.ifindex, 0);
        assert!(!msg.attributes.iter().any(|a| matches!(
            a,
            NeighbourAttribute::CacheInfo(_) | NeighbourAttribute::IfIndex(_)
        )));
    }
    // The kernel-made default destination went via the underlay device.
    assert_eq!(cfg.fdb.iter().filter(|e| e.via_underlay).count(), 1);
    assert!(cfg.fdb.iter().all(|e| e.via.is_empty()));
    let mut sorted = cfg.fdb.clone();
    sorted.sort_by(|a, b| a.message.cmp(&b.message));
    assert_eq!(sorted, cfg.fdb, "kept in a stable order");
}

#[rstest]
fn entries_go_back_appended_on_the_new_device_and_underlay() {
    let cfg = config_from_dump(&parse(VX0), &vx0_fdb(), &v0).unwrap();
    let no = netcr_core::driver::no_indexes;
    let requests = fdb_requests(&cfg, "vx0", 30, &cx(&no, Some(21))).unwrap();
    assert_eq!(
        requests.len(),
        3,
        "the kernel makes the default destination itself; nothing is removed"
    );
    for r in &requests {
        assert_eq!(r.flags, NLM_F_CREATE | NLM_F_APPEND);
        let RouteNetlinkMessage::NewNeighbour(m) = &r.message else {
            panic!("{r:?}")
        };
        assert_eq!(m.header.ifindex, 30);
        assert_eq!(m.header.family, AddressFamily::Bridge);
    }
    let vias: Vec<u32> = requests
        .iter()
        .filter_map(|r| match &r.message {
            RouteNetlinkMessage::NewNeighbour(m) => m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::IfIndex(i) => Some(*i),
                _ => None,
            }),
            _ => None,
        })
        .collect();
    assert!(vias.is_empty(), "{vias:?}");
    // An entry of its own via the underlay goes there, wherever the underlay is now.
    let mut extra = neigh(FDB_STATIC);
    extra.attributes.push(NeighbourAttribute::IfIndex(9));
    let cfg = config_from_dump(&parse(VX0), &[extra], &v0).unwrap();
    let requests = fdb_requests(&cfg, "vx0", 30, &cx(&no, Some(21))).unwrap();
    let RouteNetlinkMessage::NewNeighbour(m) = &requests[0].message else {
        panic!("{requests:?}")
    };
    assert!(m.attributes.contains(&NeighbourAttribute::IfIndex(21)));
    // Without knowing the underlay, such an entry cannot be placed.
    assert!(fdb_requests(&cfg, "vx0", 30, &cx(&no, None)).is_err());
}

#[rstest]
fn a_default_destination_the_image_lacks_is_removed() {
    let fdb: Vec<NeighbourMessage> = [FDB_STATIC].into_iter().map(neigh).collect();
    let cfg = config_from_dump(&parse(VX0), &fdb, &v0).unwrap();
    let no = netcr_core::driver::no_indexes;
    let requests = fdb_requests(&cfg, "vx0", 30, &cx(&no, Some(21))).unwrap();
    assert_eq!(requests.len(), 2);
    let RouteNetlinkMessage::DelNeighbour(m) = &requests[1].message else {
        panic!("{:?}", requests[1])
    };
    assert_eq!(lladdr(m), Some(&[0u8; 6][..]));
    assert_eq!(dst(m), Some(vec![10, 1, 1, 2]));
    // vx6's default destination (no underlay) is the kernel's too: nothing to send.
    let cfg6 = config_from_dump(&parse(VX6), &[neigh(FDB_VX6_DEFAULT)], &v0).unwrap();
    let requests = fdb_requests(&cfg6, "vx6", 31, &cx(&no, None)).unwrap();
    assert!(requests.is_empty(), "{requests:?}");
}

#[rstest]
fn an_entry_via_another_device_of_the_namespace_is_kept_by_name() {
    let mut entry = neigh(FDB_STATIC);
    entry.attributes.push(NeighbourAttribute::IfIndex(4));
    let names = |i: u32| (i == 4).then(|| "eth7".to_string()).or_else(|| v0(i));
    let cfg = config_from_dump(&parse(VX0), &[entry], &names).unwrap();
    assert_eq!(cfg.fdb[0].via, "eth7");
    let indexes = |n: &str| (n == "eth7").then_some(44);
    let requests = fdb_requests(&cfg, "vx0", 30, &cx(&indexes, Some(21))).unwrap();
    let RouteNetlinkMessage::NewNeighbour(m) = &requests[0].message else {
        panic!()
    };
    assert!(m.attributes.contains(&NeighbourAttribute::IfIndex(44)));
}

#[rstest]
fn a_socket_in_another_namespace_without_underlay_is_recorded_and_refused() {
    let mut link = parse(VX6);
    link.attributes.push(LinkAttribute::LinkNetNsId(0));
    let cfg = config_from_dump(&link, &[], &v0).unwrap();
    assert!(cfg.netns_outside);
    let err = info_from_config(&cfg, None).unwrap_err();
    assert!(err.to_string().contains("another namespace"), "{err}");
    let kv = VxlanDriver.describe(&cfg.encode_to_vec()).unwrap();
    assert!(kv.iter().any(|(k, _)| k == "netns"));
    // With an underlay device there, it is an external lower device instead.
    let mut link = parse(VX0);
    link.attributes.push(LinkAttribute::LinkNetNsId(0));
    assert!(!config_from_dump(&link, &[], &v0).unwrap().netns_outside);
}

#[rstest]
fn describe_reads_like_iproute2() {
    let cfg = config_from_dump(&parse(VX0), &vx0_fdb(), &v0).unwrap();
    let kv = VxlanDriver.describe(&cfg.encode_to_vec()).unwrap();
    for want in [
        ("id", "42"),
        ("remote", "10.1.1.2"),
        ("local", "10.1.1.1"),
        ("dstport", "4789"),
        (
            "fdb",
            "00:00:00:00:00:00 dst 10.1.1.2 via underlay permanent",
        ),
        (
            "fdb",
            "02:00:00:00:00:02 dst 10.1.1.5 port 5000 vni 77 permanent",
        ),
        ("fdb", "02:00:00:00:00:01 dst 10.1.1.4 static"),
    ] {
        assert!(
            kv.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {kv:?}"
        );
    }
    let kv6 = VxlanDriver
        .describe(
            &config_from_dump(&parse(VX6), &[], &v0)
                .unwrap()
                .encode_to_vec(),
        )
        .unwrap();
    assert!(kv6.contains(&("remote6".to_string(), "fd00::2".to_string())));
}

//! Golden bytes: IFLA_LINKINFO of each kind exactly as Debian's kernel 6.1 (the VM's) dumped
//! it (captured with a raw netlink socket in `cargo xtask vmtest`; this host's kernel has
//! none of these kinds): the devices of the VM round trip, on the underlay ul0 (if9) where
//! they have one. Also bytes built the way the kernel's fill_info functions write them.

use super::*;
use netcr_core::{DumpCx, KindDriver, LinkDriver, RestoreCx};
use netcr_image::v1;
use netlink_packet_core::{Nla, ParseableParametrized};
use netlink_packet_route::link::{InfoKind, LinkInfo};
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

/// One attribute, padded.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// IFLA_LINKINFO { IFLA_INFO_KIND kind, IFLA_INFO_DATA data }.
fn linkinfo(kind: &str, data: &[u8]) -> Vec<u8> {
    let mut k = kind.as_bytes().to_vec();
    k.push(0);
    let mut inner = nla(1, &k);
    inner.extend(nla(2, data));
    nla(18, &inner)
}

fn parse(raw: &[u8]) -> LinkMessage {
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
        .expect("IFLA_LINKINFO parses");
    let mut link = LinkMessage::default();
    link.attributes.push(attr);
    link
}

/// `ip link add gre1 type gre local 192.0.2.1 remote 192.0.2.2 ttl 64 key 5 dev ul0`
/// (ul0 is if2), as ipgre_netlink_fill + ipgre_fill_info write it.
fn gre_data() -> Vec<u8> {
    [
        nla(1, &2u32.to_ne_bytes()),
        nla(2, &0x2000u16.to_be_bytes()),
        nla(3, &0x2000u16.to_be_bytes()),
        nla(4, &5u32.to_be_bytes()),
        nla(5, &5u32.to_be_bytes()),
        nla(6, &[192, 0, 2, 1]),
        nla(7, &[192, 0, 2, 2]),
        nla(8, &[64]),
        nla(9, &[0]),
        nla(10, &[1]),
        nla(20, &0u32.to_ne_bytes()),
        nla(14, &0u16.to_ne_bytes()),
        nla(15, &0u16.to_ne_bytes()),
        nla(16, &0u16.to_be_bytes()),
        nla(17, &0u16.to_be_bytes()),
        nla(19, &[0]),
    ]
    .concat()
}

/// `ip link add ip1 type ipip local 192.0.2.1 remote 198.51.100.2 external`, no device.
fn ipip_data() -> Vec<u8> {
    [
        nla(1, &0u32.to_ne_bytes()),
        nla(2, &[192, 0, 2, 1]),
        nla(3, &[198, 51, 100, 2]),
        nla(4, &[0]),
        nla(5, &[0]),
        nla(9, &[4]),
        nla(10, &[1]),
        nla(20, &0u32.to_ne_bytes()),
        nla(15, &0u16.to_ne_bytes()),
        nla(16, &0u16.to_ne_bytes()),
        nla(17, &0u16.to_be_bytes()),
        nla(18, &0u16.to_be_bytes()),
        nla(19, &[]),
    ]
    .concat()
}

/// `ip link add gn1 type geneve id 42 remote 192.0.2.9`.
fn geneve_data() -> Vec<u8> {
    [
        nla(1, &42u32.to_ne_bytes()),
        nla(2, &[192, 0, 2, 9]),
        nla(3, &[0]),
        nla(4, &[0]),
        nla(13, &[0]),
        nla(11, &0u32.to_be_bytes()),
        nla(5, &6081u16.to_be_bytes()),
        nla(8, &[0]),
        nla(9, &[0]),
        nla(10, &[0]),
        nla(12, &[0]),
    ]
    .concat()
}

/// `gre1` (gre), as kernel 6.1 dumped it in the VM.
const GRE: &[u8] = &[
    144, 0, 18, 0, 8, 0, 1, 0, 103, 114, 101, 0, 132, 0, 2, 0, 8, 0, 1, 0, 9, 0, 0, 0, 6, 0, 2, 0,
    32, 0, 0, 0, 6, 0, 3, 0, 32, 0, 0, 0, 8, 0, 4, 0, 0, 0, 0, 5, 8, 0, 5, 0, 0, 0, 0, 5, 8, 0, 6,
    0, 192, 0, 2, 1, 8, 0, 7, 0, 192, 0, 2, 2, 5, 0, 8, 0, 64, 0, 0, 0, 5, 0, 9, 0, 0, 0, 0, 0, 5,
    0, 10, 0, 1, 0, 0, 0, 8, 0, 20, 0, 0, 0, 0, 0, 6, 0, 14, 0, 0, 0, 0, 0, 6, 0, 16, 0, 0, 0, 0,
    0, 6, 0, 17, 0, 0, 0, 0, 0, 6, 0, 15, 0, 0, 0, 0, 0, 5, 0, 19, 0, 0, 0, 0, 0,
];

/// `gt1` (gretap), as kernel 6.1 dumped it in the VM.
const GRETAP: &[u8] = &[
    148, 0, 18, 0, 11, 0, 1, 0, 103, 114, 101, 116, 97, 112, 0, 0, 132, 0, 2, 0, 8, 0, 1, 0, 0, 0,
    0, 0, 6, 0, 2, 0, 0, 0, 0, 0, 6, 0, 3, 0, 0, 0, 0, 0, 8, 0, 4, 0, 0, 0, 0, 0, 8, 0, 5, 0, 0, 0,
    0, 0, 8, 0, 6, 0, 192, 0, 2, 1, 8, 0, 7, 0, 192, 0, 2, 3, 5, 0, 8, 0, 0, 0, 0, 0, 5, 0, 9, 0,
    0, 0, 0, 0, 5, 0, 10, 0, 1, 0, 0, 0, 8, 0, 20, 0, 0, 0, 0, 0, 6, 0, 14, 0, 0, 0, 0, 0, 6, 0,
    16, 0, 0, 0, 0, 0, 6, 0, 17, 0, 0, 0, 0, 0, 6, 0, 15, 0, 0, 0, 0, 0, 5, 0, 19, 0, 0, 0, 0, 0,
];

/// `ip1` (ipip), as kernel 6.1 dumped it in the VM.
const IPIP: &[u8] = &[
    120, 0, 18, 0, 9, 0, 1, 0, 105, 112, 105, 112, 0, 0, 0, 0, 104, 0, 2, 0, 8, 0, 1, 0, 0, 0, 0,
    0, 8, 0, 2, 0, 192, 0, 2, 1, 8, 0, 3, 0, 198, 51, 100, 2, 5, 0, 4, 0, 0, 0, 0, 0, 5, 0, 5, 0,
    0, 0, 0, 0, 5, 0, 9, 0, 4, 0, 0, 0, 5, 0, 10, 0, 1, 0, 0, 0, 8, 0, 20, 0, 0, 0, 0, 0, 6, 0, 15,
    0, 0, 0, 0, 0, 6, 0, 17, 0, 0, 0, 0, 0, 6, 0, 18, 0, 0, 0, 0, 0, 6, 0, 16, 0, 0, 0, 0, 0, 4, 0,
    19, 0,
];

/// `s1` (sit), as kernel 6.1 dumped it in the VM.
const SIT: &[u8] = &[
    164, 0, 18, 0, 8, 0, 1, 0, 115, 105, 116, 0, 152, 0, 2, 0, 8, 0, 1, 0, 0, 0, 0, 0, 8, 0, 2, 0,
    192, 0, 2, 1, 8, 0, 3, 0, 192, 0, 2, 4, 5, 0, 4, 0, 16, 0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0, 5, 0,
    10, 0, 1, 0, 0, 0, 5, 0, 9, 0, 41, 0, 0, 0, 6, 0, 8, 0, 0, 0, 0, 0, 8, 0, 20, 0, 0, 0, 0, 0,
    20, 0, 11, 0, 32, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 0, 0, 6, 0,
    13, 0, 16, 0, 0, 0, 6, 0, 14, 0, 0, 0, 0, 0, 6, 0, 15, 0, 0, 0, 0, 0, 6, 0, 17, 0, 0, 0, 0, 0,
    6, 0, 18, 0, 0, 0, 0, 0, 6, 0, 16, 0, 0, 0, 0, 0,
];

/// `t6` (ip6tnl), as kernel 6.1 dumped it in the VM.
const IP6TNL: &[u8] = &[
    148, 0, 18, 0, 11, 0, 1, 0, 105, 112, 54, 116, 110, 108, 0, 0, 132, 0, 2, 0, 8, 0, 1, 0, 9, 0,
    0, 0, 20, 0, 2, 0, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 20, 0, 3, 0, 32, 1, 13,
    184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 5, 0, 4, 0, 0, 0, 0, 0, 5, 0, 6, 0, 4, 0, 0, 0, 8, 0,
    7, 0, 0, 0, 0, 0, 8, 0, 8, 0, 0, 0, 3, 0, 5, 0, 9, 0, 0, 0, 0, 0, 8, 0, 20, 0, 0, 0, 0, 0, 6,
    0, 15, 0, 0, 0, 0, 0, 6, 0, 17, 0, 0, 0, 0, 0, 6, 0, 18, 0, 0, 0, 0, 0, 6, 0, 16, 0, 0, 0, 0,
    0,
];

/// `g6` (ip6gre), as kernel 6.1 dumped it in the VM.
const IP6GRE: &[u8] = &[
    172, 0, 18, 0, 11, 0, 1, 0, 105, 112, 54, 103, 114, 101, 0, 0, 156, 0, 2, 0, 8, 0, 1, 0, 0, 0,
    0, 0, 6, 0, 2, 0, 32, 0, 0, 0, 6, 0, 3, 0, 0, 0, 0, 0, 8, 0, 4, 0, 0, 0, 0, 7, 8, 0, 5, 0, 0,
    0, 0, 0, 20, 0, 6, 0, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 20, 0, 7, 0, 32, 1,
    13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 5, 0, 8, 0, 0, 0, 0, 0, 5, 0, 11, 0, 0, 0, 0, 0,
    8, 0, 12, 0, 0, 0, 0, 0, 8, 0, 13, 0, 0, 0, 3, 0, 8, 0, 20, 0, 0, 0, 0, 0, 6, 0, 14, 0, 0, 0,
    0, 0, 6, 0, 16, 0, 0, 0, 0, 0, 6, 0, 17, 0, 0, 0, 0, 0, 6, 0, 15, 0, 0, 0, 0, 0,
];

/// `g6t` (ip6gretap), as kernel 6.1 dumped it in the VM.
const IP6GRETAP: &[u8] = &[
    176, 0, 18, 0, 14, 0, 1, 0, 105, 112, 54, 103, 114, 101, 116, 97, 112, 0, 0, 0, 156, 0, 2, 0,
    8, 0, 1, 0, 0, 0, 0, 0, 6, 0, 2, 0, 0, 0, 0, 0, 6, 0, 3, 0, 0, 0, 0, 0, 8, 0, 4, 0, 0, 0, 0, 0,
    8, 0, 5, 0, 0, 0, 0, 0, 20, 0, 6, 0, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 20, 0,
    7, 0, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 5, 0, 8, 0, 0, 0, 0, 0, 5, 0, 11, 0,
    0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 0, 0, 8, 0, 13, 0, 0, 0, 3, 0, 8, 0, 20, 0, 0, 0, 0, 0, 6, 0,
    14, 0, 0, 0, 0, 0, 6, 0, 16, 0, 0, 0, 0, 0, 6, 0, 17, 0, 0, 0, 0, 0, 6, 0, 15, 0, 0, 0, 0, 0,
];

/// `gn1` (geneve), as kernel 6.1 dumped it in the VM.
const GENEVE: &[u8] = &[
    100, 0, 18, 0, 11, 0, 1, 0, 103, 101, 110, 101, 118, 101, 0, 0, 84, 0, 2, 0, 8, 0, 1, 0, 42, 0,
    0, 0, 8, 0, 2, 0, 192, 0, 2, 9, 5, 0, 8, 0, 0, 0, 0, 0, 5, 0, 3, 0, 0, 0, 0, 0, 5, 0, 4, 0, 0,
    0, 0, 0, 8, 0, 11, 0, 0, 0, 0, 0, 5, 0, 13, 0, 0, 0, 0, 0, 6, 0, 5, 0, 23, 193, 0, 0, 5, 0, 10,
    0, 1, 0, 0, 0, 5, 0, 12, 0, 0, 0, 0, 0,
];

fn cx(lower_index: Option<u32>) -> RestoreCx<'static> {
    RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index,
    }
}

fn restored_data(driver: &dyn LinkDriver, cfg: &Tunnel, lower: Option<u32>) -> Vec<u8> {
    let rec = v1::Link {
        config: cfg.encode_to_vec(),
        ..Default::default()
    };
    let infos = driver.restore(&rec, &mut cx(lower)).unwrap();
    let [LinkInfo::Kind(_), LinkInfo::Data(data)] = infos.as_slice() else {
        panic!("{infos:?}");
    };
    let mut bytes = vec![0; data.value_len()];
    data.emit_value(&mut bytes);
    bytes
}

#[rstest]
#[case::gre(&gre::GreDriver as &dyn LinkDriver, "gre", gre_data(), Some(2))]
#[case::gretap(&gretap::GretapDriver as &dyn LinkDriver, "gretap", gre_data(), Some(2))]
#[case::ipip(&ipip::IpipDriver as &dyn LinkDriver, "ipip", ipip_data(), None)]
#[case::geneve(&geneve::GeneveDriver as &dyn LinkDriver, "geneve", geneve_data(), None)]
fn what_the_kernel_dumped_goes_back_byte_for_byte(
    #[case] driver: &dyn LinkDriver,
    #[case] kind: &str,
    #[case] data: Vec<u8>,
    #[case] underlay: Option<u32>,
) {
    assert_eq!(driver.kind(), kind);
    assert!(
        driver.lower_via_nsid(),
        "made where its underlay is, with IFLA_LINK_NETNSID"
    );
    let link = parse(&linkinfo(kind, &data));
    assert_eq!(
        driver.lower_ref(&link),
        LowerRef::from(underlay),
        "the underlay device"
    );
    let config = driver.dump(&link, &DumpCx::default()).unwrap();
    let cfg = Tunnel::decode(config.as_slice()).unwrap();
    assert!(cfg.options.iter().all(|o| o.kind != 1 || kind == "geneve"));
    assert!(!cfg.netns_outside);
    // On the same underlay index, the request's data is the dump's; without an underlay
    // device, the dump's link 0 (the first attribute) is not sent.
    let expected = match underlay {
        None if kind != "geneve" => data[8..].to_vec(),
        _ => data.clone(),
    };
    assert_eq!(restored_data(driver, &cfg, underlay), expected);
    let shown = driver.describe(&config).unwrap();
    assert!(!shown.is_empty());
    assert!(
        shown.iter().all(|(k, _)| !k.starts_with("attr")),
        "{shown:?}"
    );
}

/// The value of IFLA_INFO_DATA in a captured IFLA_LINKINFO.
fn data_of(raw: &[u8]) -> Vec<u8> {
    let mut off = 4;
    while off + 4 <= raw.len() {
        let len = u16::from_ne_bytes([raw[off], raw[off + 1]]) as usize;
        if u16::from_ne_bytes([raw[off + 2], raw[off + 3]]) == 2 {
            return raw[off + 4..off + len].to_vec();
        }
        off += len.next_multiple_of(4);
    }
    panic!("no IFLA_INFO_DATA");
}

#[rstest]
#[case::gre(&gre::GreDriver as &dyn LinkDriver, GRE, Some(9))]
#[case::gretap(&gretap::GretapDriver as &dyn LinkDriver, GRETAP, None)]
#[case::ipip(&ipip::IpipDriver as &dyn LinkDriver, IPIP, None)]
#[case::sit(&sit::SitDriver as &dyn LinkDriver, SIT, None)]
#[case::ip6tnl(&ip6tnl::Ip6tnlDriver as &dyn LinkDriver, IP6TNL, Some(9))]
#[case::ip6gre(&ip6gre::Ip6greDriver as &dyn LinkDriver, IP6GRE, None)]
#[case::ip6gretap(&ip6gretap::Ip6gretapDriver as &dyn LinkDriver, IP6GRETAP, None)]
#[case::geneve(&geneve::GeneveDriver as &dyn LinkDriver, GENEVE, None)]
fn the_kernels_own_dump_goes_back_byte_for_byte(
    #[case] driver: &dyn LinkDriver,
    #[case] raw: &[u8],
    #[case] underlay: Option<u32>,
) {
    let link = parse(raw);
    assert_eq!(driver.lower_ref(&link), LowerRef::from(underlay));
    let config = driver.dump(&link, &DumpCx::default()).unwrap();
    let cfg = Tunnel::decode(config.as_slice()).unwrap();
    let data = data_of(raw);
    // Link 0 (no underlay device), the first attribute the kernel dumps, is not sent.
    let expected = match underlay {
        None if driver.kind() != "geneve" => {
            assert_eq!(data[..8], [8, 0, 1, 0, 0, 0, 0, 0]);
            data[8..].to_vec()
        }
        _ => data,
    };
    assert_eq!(restored_data(driver, &cfg, underlay), expected);
    let shown = driver.describe(&config).unwrap();
    assert!(
        shown.iter().all(|(k, _)| !k.starts_with("attr")),
        "{shown:?}"
    );
}

#[rstest]
fn show_names_the_settings_as_iproute2_does() {
    let link = parse(&linkinfo("gre", &gre_data()));
    let cfg = gre::SPEC
        .dump(netcr_core::kind::info_data(&link), &link)
        .unwrap();
    let shown = gre::SPEC.show(&cfg).unwrap();
    for pair in [
        ("local", "192.0.2.1"),
        ("remote", "192.0.2.2"),
        ("ttl", "64"),
        ("ikey", "0x5"),
        ("iflags", "0x2000"),
    ] {
        assert!(
            shown.contains(&(pair.0.to_string(), pair.1.to_string())),
            "{shown:?}"
        );
    }
}

#[rstest]
fn a_tunnel_whose_underlay_namespace_is_elsewhere_without_a_device_is_refused_at_restore() {
    let mut link = parse(&linkinfo("ipip", &ipip_data()));
    link.attributes.push(LinkAttribute::LinkNetNsId(3));
    let cfg = ipip::SPEC
        .dump(netcr_core::kind::info_data(&link), &link)
        .unwrap();
    assert!(cfg.netns_outside);
    let err = ipip::SPEC.request(&cfg, None).unwrap_err();
    assert!(err.to_string().contains("another namespace"), "{err}");
    // Shown, though.
    assert!(ipip::SPEC
        .show(&cfg)
        .unwrap()
        .iter()
        .any(|(k, _)| k == "netns"));
}

#[rstest]
#[case::link_attribute(1, vec![0; 4])]
#[case::type_zero(0, vec![])]
#[case::type_too_large(0x4000, vec![])]
#[case::huge(6, vec![0; 4096])]
fn hostile_records_are_refused(#[case] kind: u32, #[case] value: Vec<u8>) {
    let cfg = Tunnel {
        options: vec![NamedAttr {
            kind,
            name: String::new(),
            value,
        }],
        netns_outside: false,
    };
    assert!(gre::SPEC.request(&cfg, None).is_err());
    assert!(gre::GreDriver.show(&cfg).is_err());
}

#[rstest]
fn geneve_has_no_underlay_device() {
    assert!(geneve::SPEC.request(&Tunnel::default(), Some(3)).is_err());
    let link = parse(&linkinfo("geneve", &geneve_data()));
    assert_eq!(geneve::GeneveDriver.lower_ref(&link), LowerRef::NoDevice);
    let _ = InfoKind::Geneve;
}

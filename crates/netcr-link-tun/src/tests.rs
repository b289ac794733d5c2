//! Golden-bytes tests on IFLA_LINKINFO exactly as kernel 6.18 dumped it (captured with a
//! raw netlink socket) for a multi-queue tap with owner and group, a tun, and a tun with
//! packet information; and, as root, the ioctl creation in a namespace of the test's own.

use netcr_core::netcr_netlink::{Rtnl, RtnlExt};
use netcr_core::LinkDriver;
use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

use super::*;

/// The config the driver makes of a dump.
fn config_from_dump(link: &LinkMessage) -> Result<Tun, DriverError> {
    netcr_core::kind::dump_config(&TunDriver, link, &DumpCx::default())
}

/// The tun attributes of a dumped link.
fn info_data(link: &LinkMessage) -> &[InfoTun] {
    attrs(netcr_core::kind::info_data(link))
}

/// `ip tuntap add mode tap name tap0 multi_queue vnet_hdr user 1000 group 100`.
const TAP_MQ: &[u8] = &[
    88, 0, 18, 0, 8, 0, 1, 0, 116, 117, 110, 0, 76, 0, 2, 0, 5, 0, 3, 0, 2, 0, 0, 0, 8, 0, 1, 0,
    232, 3, 0, 0, 8, 0, 2, 0, 100, 0, 0, 0, 5, 0, 4, 0, 0, 0, 0, 0, 5, 0, 5, 0, 1, 0, 0, 0, 5, 0,
    6, 0, 1, 0, 0, 0, 5, 0, 7, 0, 1, 0, 0, 0, 8, 0, 8, 0, 0, 0, 0, 0, 8, 0, 9, 0, 0, 0, 0, 0,
];

/// `ip tuntap add mode tun name tun0`.
const TUN: &[u8] = &[
    56, 0, 18, 0, 8, 0, 1, 0, 116, 117, 110, 0, 44, 0, 2, 0, 5, 0, 3, 0, 1, 0, 0, 0, 5, 0, 4, 0, 0,
    0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0, 5, 0, 6, 0, 1, 0, 0, 0, 5, 0, 7, 0, 0, 0, 0, 0,
];

/// `ip tuntap add mode tun name tun1 pi`.
const TUN_PI: &[u8] = &[
    56, 0, 18, 0, 8, 0, 1, 0, 116, 117, 110, 0, 44, 0, 2, 0, 5, 0, 3, 0, 1, 0, 0, 0, 5, 0, 4, 0, 1,
    0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0, 5, 0, 6, 0, 1, 0, 0, 0, 5, 0, 7, 0, 0, 0, 0, 0,
];

fn parse(raw: &[u8]) -> LinkMessage {
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
        .expect("captured IFLA_LINKINFO parses");
    let mut link = LinkMessage::default();
    link.attributes.push(attr);
    link
}

fn tun(
    type_: u32,
    pi: bool,
    vnet_hdr: bool,
    multi_queue: bool,
    owner: Option<u32>,
    group: Option<u32>,
) -> Tun {
    Tun {
        r#type: type_,
        pi,
        vnet_hdr,
        multi_queue,
        owner,
        group,
        extra: vec![],
    }
}

#[rstest]
#[case::tap_mq(TAP_MQ, tun(2, false, true, true, Some(1000), Some(100)))]
#[case::tun(TUN, tun(1, false, false, false, None, None))]
#[case::tun_pi(TUN_PI, tun(1, true, false, false, None, None))]
fn kernel_dump_becomes_config(#[case] raw: &[u8], #[case] expected: Tun) {
    let link = parse(raw);
    let mut emitted = vec![0; link.attributes[0].buffer_len()];
    link.attributes[0].emit(&mut emitted);
    assert_eq!(emitted, raw, "nothing lost in parsing");
    assert_eq!(config_from_dump(&link).unwrap(), expected);
}

#[rstest]
#[case::tap_mq(TAP_MQ, libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE)]
#[case::tun(TUN, libc::IFF_TUN | libc::IFF_NO_PI)]
#[case::tun_pi(TUN_PI, libc::IFF_TUN)]
fn ioctl_flags_say_what_the_dump_said(#[case] raw: &[u8], #[case] flags: i32) {
    let cfg = config_from_dump(&parse(raw)).unwrap();
    assert_eq!(
        iff_flags(&cfg).unwrap() as u16 as i32,
        flags | libc::IFF_TUN_EXCL
    );
}

#[rstest]
fn netlink_creation_is_refused_and_describe_reads_like_iproute2() {
    let cfg = config_from_dump(&parse(TAP_MQ)).unwrap();
    let link = v1::Link {
        name: "tap0".into(),
        kind: "tun".into(),
        config: cfg.encode_to_vec(),
        ..Default::default()
    };
    let mut cx = RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index: None,
    };
    assert!(TunDriver.restore(&link, &mut cx).is_err());
    let kv = TunDriver.describe(&link.config).unwrap();
    assert_eq!(kv[0], ("type".to_string(), "tap".to_string()));
    assert!(kv.contains(&("multi_queue".to_string(), "on".to_string())));
    assert!(kv.contains(&("user".to_string(), "1000".to_string())));
    assert!(TunDriver
        .describe(&tun(3, false, false, false, None, None).encode_to_vec())
        .is_err());
}

#[rstest]
#[case::tap_mq(TAP_MQ)]
#[case::tun_pi(TUN_PI)]
fn the_ioctls_make_the_device_the_dump_described(#[case] raw: &[u8]) {
    netcr_testkit::require_root!();
    let ns = Netns::new_anonymous("tun-test").unwrap();
    let want = config_from_dump(&parse(raw)).unwrap();
    let link = v1::Link {
        name: "tq0".into(),
        kind: "tun".into(),
        ifindex: 77,
        config: want.encode_to_vec(),
        ..Default::default()
    };
    TunDriver.create(&link, &ns).unwrap().unwrap();
    let links = Rtnl::open_in(&ns).unwrap().dump_links().unwrap();
    let made = links
        .iter()
        .find(|l| l.attributes.contains(&LinkAttribute::IfName("tq0".into())))
        .expect("device made in the namespace");
    assert_eq!(made.header.index, 77, "the ifindex is kept");
    assert_eq!(config_from_dump(made).unwrap(), want);
    let persist = info_data(made).iter().any(|a| {
        a.kind() == IFLA_TUN_PERSIST && {
            let mut v = vec![0; a.value_len()];
            a.emit_value(&mut v);
            v == [1]
        }
    });
    assert!(persist, "a restored device is persistent");
    // A second one of the same name is refused (IFF_TUN_EXCL), never taken over.
    let err = TunDriver.create(&link, &ns).unwrap().unwrap_err();
    assert!(err.to_string().contains("TUNSETIFF"), "{err}");
    // One whose index is taken is made all the same, with another index.
    let other = v1::Link {
        name: "tq1".into(),
        ..link.clone()
    };
    TunDriver.create(&other, &ns).unwrap().unwrap();
    let links = Rtnl::open_in(&ns).unwrap().dump_links().unwrap();
    let made = links
        .iter()
        .find(|l| l.attributes.contains(&LinkAttribute::IfName("tq1".into())))
        .expect("device made in the namespace");
    assert_ne!(made.header.index, 77);
}

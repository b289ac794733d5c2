//! This host's kernel has no ipvlan driver, so the dump bytes here are constructed the way
//! ipvlan_nl_fillinfo() emits them (IFLA_IPVLAN_MODE and IFLA_IPVLAN_FLAGS as u16, inside
//! IFLA_LINKINFO/IFLA_INFO_DATA nests without NLA_F_NESTED). The VM round trip
//! (crates/netcr/tests/cli_kinds.rs, run by `cargo xtask vmtest`) checks them on a kernel.

use netcr_core::LinkDriver;
use netcr_image::v1;
use netlink_packet_core::{Emitable, Nla, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::{InfoIpVlan, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

use super::*;

/// The config the driver makes of a dump.
fn config_from_dump(link: &LinkMessage) -> Ipvlan {
    netcr_core::kind::dump_config(&IpvlanDriver, link, &DumpCx::default()).unwrap()
}

/// IFLA_LINKINFO { KIND "ipvlan", DATA { MODE mode, FLAGS flags } }.
fn linkinfo(mode: u8, flags: u8) -> Vec<u8> {
    vec![
        36, 0, 18, 0, // IFLA_LINKINFO
        11, 0, 1, 0, b'i', b'p', b'v', b'l', b'a', b'n', 0, 0, // IFLA_INFO_KIND
        20, 0, 2, 0, // IFLA_INFO_DATA
        6, 0, 1, 0, mode, 0, 0, 0, // IFLA_IPVLAN_MODE
        6, 0, 2, 0, flags, 0, 0, 0, // IFLA_IPVLAN_FLAGS
    ]
}

fn parse(raw: &[u8]) -> LinkMessage {
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
        .expect("IFLA_LINKINFO parses");
    let mut link = LinkMessage::default();
    link.attributes.push(attr);
    link
}

fn cfg(mode: u32, flags: u32) -> Ipvlan {
    Ipvlan {
        mode,
        flags,
        extra: vec![],
    }
}

#[rstest]
#[case::l2_bridge(0, 0, "l2", "bridge")]
#[case::l3_private(1, 1, "l3", "private")]
#[case::l3s_vepa(2, 2, "l3s", "vepa")]
#[case::l2_vepa(0, 2, "l2", "vepa")]
fn dump_becomes_config_and_the_request_is_the_dump(
    #[case] mode: u8,
    #[case] flags: u8,
    #[case] mode_text: &str,
    #[case] flags_text: &str,
) {
    let raw = linkinfo(mode, flags);
    let link = parse(&raw);
    let mut emitted = vec![0; link.attributes[0].buffer_len()];
    link.attributes[0].emit(&mut emitted);
    assert_eq!(emitted, raw, "nothing lost in parsing");
    let config = config_from_dump(&link);
    assert_eq!(config, cfg(mode as u32, flags as u32));

    let rec = v1::Link {
        kind: "ipvlan".into(),
        config: config.encode_to_vec(),
        ..Default::default()
    };
    let mut cx = RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index: Some(3),
    };
    let attr = LinkAttribute::LinkInfo(IpvlanDriver.restore(&rec, &mut cx).unwrap());
    let mut request = vec![0; attr.buffer_len()];
    attr.emit(&mut request);
    assert_eq!(
        request, raw,
        "the creation request carries what the dump showed"
    );

    let kv = IpvlanDriver.describe(&rec.config).unwrap();
    assert_eq!(kv[0], ("mode".to_string(), mode_text.to_string()));
    assert_eq!(kv[1], ("flags".to_string(), flags_text.to_string()));
}

#[rstest]
#[case::unknown_mode(cfg(3, 0), "unknown ipvlan mode 3")]
#[case::private_and_vepa(cfg(0, 3), "expected bridge (0), private (1) or vepa (2)")]
#[case::unknown_flag(cfg(0, 4), "expected bridge")]
fn impossible_configs_are_refused(#[case] cfg: Ipvlan, #[case] message: &str) {
    let err = info_from_config(&cfg).unwrap_err();
    assert!(err.to_string().contains(message), "{err}");
}

#[rstest]
fn unknown_attributes_are_kept_verbatim_and_the_mac_is_the_lower_devices() {
    let mut link = parse(&linkinfo(1, 0));
    if let LinkAttribute::LinkInfo(infos) = &mut link.attributes[0] {
        for info in infos.iter_mut() {
            if let LinkInfo::Data(InfoData::IpVlan(d)) = info {
                d.push(InfoIpVlan::Other(netlink_packet_core::DefaultNla::new(
                    9,
                    vec![1, 0, 0, 0],
                )));
            }
        }
    }
    let cfg = config_from_dump(&link);
    assert_eq!(
        (cfg.extra[0].kind, cfg.extra[0].value.clone()),
        (9, vec![1, 0, 0, 0])
    );
    let data = info_from_config(&cfg).unwrap();
    assert!(data
        .iter()
        .any(|a| matches!(a, InfoIpVlan::Other(n) if n.value_len() == 4)));
    assert!(IpvlanDriver.inherits_address(&cfg.encode_to_vec()));
}

//! Golden-bytes tests: IFLA_LINKINFO attributes exactly as kernel 6.18 dumped them for
//! macvlans made in each mode (captured with a raw netlink socket), parsed, turned into
//! netcr's config and back into a creation request.

use netcr_core::LinkDriver;
use netlink_packet_core::{Emitable, Nla, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::{InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

use super::*;

const PRIVATE: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 108, 97, 110, 0, 44, 0, 2, 0, 8, 0, 1, 0, 1, 0, 0,
    0, 6, 0, 2, 0, 0, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

const VEPA: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 108, 97, 110, 0, 44, 0, 2, 0, 8, 0, 1, 0, 2, 0, 0,
    0, 6, 0, 2, 0, 0, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

const BRIDGE: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 108, 97, 110, 0, 44, 0, 2, 0, 8, 0, 1, 0, 4, 0, 0,
    0, 6, 0, 2, 0, 0, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 250, 0, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

const SOURCE: &[u8] = &[
    88, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 108, 97, 110, 0, 72, 0, 2, 0, 8, 0, 1, 0, 16, 0,
    0, 0, 6, 0, 2, 0, 0, 0, 0, 0, 8, 0, 6, 0, 2, 0, 0, 0, 28, 0, 5, 0, 10, 0, 4, 0, 2, 0, 0, 0, 0,
    11, 0, 0, 10, 0, 4, 0, 2, 0, 0, 0, 0, 10, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232, 3,
    0, 0,
];

const PASSTHRU: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 108, 97, 110, 0, 44, 0, 2, 0, 8, 0, 1, 0, 8, 0, 0,
    0, 6, 0, 2, 0, 1, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

const NODST: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 108, 97, 110, 0, 44, 0, 2, 0, 8, 0, 1, 0, 2, 0, 0,
    0, 6, 0, 2, 0, 2, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

fn parse(raw: &[u8]) -> LinkMessage {
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
        .expect("captured IFLA_LINKINFO parses");
    let mut link = LinkMessage::default();
    link.attributes.push(attr);
    link
}

fn cfg(mode: u32, flags: u32, bc_queue_len: u32, macs: &[[u8; 6]]) -> Macvlan {
    Macvlan {
        mode,
        flags,
        bc_queue_len: Some(bc_queue_len),
        bc_cutoff: None,
        source_macs: macs.iter().map(|m| m.to_vec()).collect(),
        extra: vec![],
    }
}

#[rstest]
#[case::private(PRIVATE, cfg(1, 0, 1000, &[]))]
#[case::vepa(VEPA, cfg(2, 0, 1000, &[]))]
#[case::bridge_bcqueuelen(BRIDGE, cfg(4, 0, 250, &[]))]
#[case::passthru_nopromisc(PASSTHRU, cfg(8, 1, 1000, &[]))]
#[case::source_macs_sorted(SOURCE, cfg(16, 0, 1000, &[[2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]]))]
#[case::vepa_nodst(NODST, cfg(2, 2, 1000, &[]))]
fn kernel_dump_becomes_config(#[case] raw: &[u8], #[case] expected: Macvlan) {
    let link = parse(raw);
    // The re-emitted attribute is byte-for-byte what the kernel sent: nothing was lost.
    let mut emitted = vec![0; link.attributes[0].buffer_len()];
    link.attributes[0].emit(&mut emitted);
    assert_eq!(emitted, raw);
    assert_eq!(config_from_dump(&link), expected);
}

#[rstest]
#[case::private(PRIVATE)]
#[case::vepa(VEPA)]
#[case::bridge(BRIDGE)]
#[case::passthru(PASSTHRU)]
#[case::source(SOURCE)]
#[case::nodst(NODST)]
fn restore_request_never_carries_derived_attributes_and_round_trips(#[case] raw: &[u8]) {
    let cfg = config_from_dump(&parse(raw));
    let data = info_from_config(&cfg).unwrap();
    assert!(data.iter().all(|a| !matches!(
        a,
        InfoMacVlan::BcQueueLenUsed(_) | InfoMacVlan::MacAddrCount(_)
    )));
    // What the request would carry, emitted and parsed back as the kernel would read it.
    let infos = vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(data)),
    ];
    let attr = LinkAttribute::LinkInfo(infos);
    let mut bytes = vec![0; attr.buffer_len()];
    attr.emit(&mut bytes);
    let again = parse(&bytes);
    assert_eq!(config_from_dump(&again), cfg);
}

#[rstest]
fn source_mode_request_sets_the_mac_list() {
    let cfg = config_from_dump(&parse(SOURCE));
    let data = info_from_config(&cfg).unwrap();
    assert!(data.contains(&InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Set)));
    assert!(data
        .iter()
        .any(|a| matches!(a, InfoMacVlan::MacAddrData(l) if l.len() == 2)));
}

#[rstest]
#[case::nopromisc_outside_passthru(cfg(4, 1, 1000, &[]), "nopromisc is valid only in passthru")]
#[case::macs_outside_source(cfg(4, 0, 1000, &[[2, 0, 0, 0, 0, 1]]), "only in source mode")]
#[case::unknown_mode(cfg(3, 0, 1000, &[]), "unknown macvlan mode 3")]
fn impossible_configs_are_refused(#[case] cfg: Macvlan, #[case] message: &str) {
    let err = info_from_config(&cfg).unwrap_err();
    assert!(err.to_string().contains(message), "{err}");
}

#[rstest]
fn unknown_attributes_are_kept_verbatim() {
    let mut link = parse(BRIDGE);
    if let LinkAttribute::LinkInfo(infos) = &mut link.attributes[0] {
        for info in infos.iter_mut() {
            if let LinkInfo::Data(InfoData::MacVlan(d)) = info {
                d.push(InfoMacVlan::Other(netlink_packet_core::DefaultNla::new(
                    42,
                    vec![1, 2, 3, 4],
                )));
            }
        }
    }
    let cfg = config_from_dump(&link);
    assert_eq!(cfg.extra.len(), 1);
    assert_eq!(
        (cfg.extra[0].kind, cfg.extra[0].value.clone()),
        (42, vec![1, 2, 3, 4])
    );
    let data = info_from_config(&cfg).unwrap();
    assert!(data
        .iter()
        .any(|a| matches!(a, InfoMacVlan::Other(n) if n.kind() == 42)));
}

#[rstest]
fn describe_reads_like_iproute2() {
    let kv = MacvlanDriver
        .describe(&config_from_dump(&parse(PASSTHRU)).encode_to_vec())
        .unwrap();
    assert_eq!(kv[0], ("mode".to_string(), "passthru".to_string()));
    assert_eq!(kv[1], ("flags".to_string(), "nopromisc".to_string()));
    assert!(MacvlanDriver.describe(&[0xff, 0xff]).is_err());
}

//! Golden-bytes tests: IFLA_LINKINFO exactly as kernel 6.18 dumped it for macvtaps made in
//! each mode (captured with a raw netlink socket), parsed, turned into netcr's config and
//! back into a creation request.

use netcr_core::LinkDriver;
use netcr_image::v1;
use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::{InfoKind, LinkInfo, MacVlanMode};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, MacVlanMacAddressMode};
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

use super::*;

/// The config the driver makes of a dump.
fn config_from_dump(link: &LinkMessage) -> Result<Macvlan, DriverError> {
    netcr_core::kind::dump_config(&MacvtapDriver, link, &DumpCx::default())
}

const PRIVATE: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 116, 97, 112, 0, 44, 0, 2, 0, 8, 0, 1, 0, 1, 0, 0,
    0, 6, 0, 2, 0, 0, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

const VEPA_NODST: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 116, 97, 112, 0, 44, 0, 2, 0, 8, 0, 1, 0, 2, 0, 0,
    0, 6, 0, 2, 0, 2, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

const BRIDGE_BCQUEUELEN: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 116, 97, 112, 0, 44, 0, 2, 0, 8, 0, 1, 0, 4, 0, 0,
    0, 6, 0, 2, 0, 0, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 44, 1, 0, 0, 8, 0, 8, 0, 232, 3,
    0, 0,
];

const PASSTHRU_NOPROMISC: &[u8] = &[
    60, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 116, 97, 112, 0, 44, 0, 2, 0, 8, 0, 1, 0, 8, 0, 0,
    0, 6, 0, 2, 0, 1, 0, 0, 0, 8, 0, 6, 0, 0, 0, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232,
    3, 0, 0,
];

const SOURCE: &[u8] = &[
    88, 0, 18, 0, 12, 0, 1, 0, 109, 97, 99, 118, 116, 97, 112, 0, 72, 0, 2, 0, 8, 0, 1, 0, 16, 0,
    0, 0, 6, 0, 2, 0, 0, 0, 0, 0, 8, 0, 6, 0, 2, 0, 0, 0, 28, 0, 5, 0, 10, 0, 4, 0, 2, 0, 0, 0, 0,
    11, 0, 0, 10, 0, 4, 0, 2, 0, 0, 0, 0, 10, 0, 0, 8, 0, 7, 0, 232, 3, 0, 0, 8, 0, 8, 0, 232, 3,
    0, 0,
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
#[case::vepa_nodst(VEPA_NODST, cfg(2, 2, 1000, &[]))]
#[case::bridge_bcqueuelen(BRIDGE_BCQUEUELEN, cfg(4, 0, 300, &[]))]
#[case::passthru_nopromisc(PASSTHRU_NOPROMISC, cfg(8, 1, 1000, &[]))]
#[case::source_macs_sorted(SOURCE, cfg(16, 0, 1000, &[[2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]]))]
fn kernel_dump_becomes_config(#[case] raw: &[u8], #[case] expected: Macvlan) {
    let link = parse(raw);
    let mut emitted = vec![0; link.attributes[0].buffer_len()];
    link.attributes[0].emit(&mut emitted);
    assert_eq!(emitted, raw, "nothing lost in parsing");
    assert_eq!(config_from_dump(&link).unwrap(), expected);
}

#[rstest]
#[case::private(PRIVATE)]
#[case::vepa_nodst(VEPA_NODST)]
#[case::bridge(BRIDGE_BCQUEUELEN)]
#[case::passthru(PASSTHRU_NOPROMISC)]
#[case::source(SOURCE)]
fn restore_request_is_a_macvtap_request_that_round_trips(#[case] raw: &[u8]) {
    let config = config_from_dump(&parse(raw)).unwrap();
    let link = v1::Link {
        kind: "macvtap".into(),
        config: config.encode_to_vec(),
        ..Default::default()
    };
    let mut cx = RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index: Some(2),
    };
    let infos = MacvtapDriver.restore(&link, &mut cx).unwrap();
    assert_eq!(infos[0], LinkInfo::Kind(InfoKind::MacVtap));
    let LinkInfo::Data(InfoData::MacVtap(data)) = &infos[1] else {
        panic!("{infos:?}")
    };
    assert!(data.iter().all(|a| !matches!(
        a,
        InfoMacVtap::BcQueueLenUsed(_) | InfoMacVtap::MacAddrCount(_)
    )));
    let attr = LinkAttribute::LinkInfo(infos);
    let mut bytes = vec![0; attr.buffer_len()];
    attr.emit(&mut bytes);
    assert_eq!(config_from_dump(&parse(&bytes)).unwrap(), config);
}

#[rstest]
fn source_mode_sets_the_mac_list_and_passthru_inherits_the_mac() {
    let config = config_from_dump(&parse(SOURCE)).unwrap();
    let data = to_macvtap(&info_from_config(&config).unwrap()).unwrap();
    assert!(data.contains(&InfoMacVtap::MacAddrMode(MacVlanMacAddressMode::Set)));
    assert!(data
        .iter()
        .any(|a| matches!(a, InfoMacVtap::MacAddrData(l) if l.len() == 2)));
    let pt = config_from_dump(&parse(PASSTHRU_NOPROMISC)).unwrap();
    assert!(MacvtapDriver.inherits_address(&pt.encode_to_vec()));
    assert!(!MacvtapDriver.inherits_address(&config.encode_to_vec()));
}

#[rstest]
fn unknown_attributes_survive_the_conversion() {
    let data = vec![
        InfoMacVtap::Mode(MacVlanMode::Bridge),
        InfoMacVtap::Other(netlink_packet_core::DefaultNla::new(42, vec![1, 2, 3, 4])),
    ];
    let config = config_from_data(&to_macvlan(&data).unwrap());
    assert_eq!(
        (config.extra[0].kind, config.extra[0].value.clone()),
        (42, vec![1, 2, 3, 4])
    );
    let back = to_macvtap(&info_from_config(&config).unwrap()).unwrap();
    assert!(back.contains(&data[1]));
}

#[rstest]
fn describe_reads_like_iproute2() {
    let kv = MacvtapDriver
        .describe(
            &config_from_dump(&parse(VEPA_NODST))
                .unwrap()
                .encode_to_vec(),
        )
        .unwrap();
    assert_eq!(kv[0], ("mode".to_string(), "vepa".to_string()));
    assert_eq!(kv[1], ("flags".to_string(), "nodst".to_string()));
}

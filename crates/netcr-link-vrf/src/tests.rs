//! Golden bytes: IFLA_LINKINFO of a vrf exactly as Debian's kernel 6.1 (the VM's) dumped it,
//! captured with a raw netlink socket in `cargo xtask vmtest` (this host's kernel has no vrf
//! module).

use super::*;
use netcr_core::LinkDriver;
use netcr_image::v1;
use netlink_packet_core::{DefaultNla, Emitable, NlaBuffer, ParseableParametrized};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use netlink_packet_route::AddressFamily;
use prost::Message;
use rstest::rstest;

/// IFLA_LINKINFO { IFLA_INFO_KIND "vrf", IFLA_INFO_DATA { IFLA_VRF_TABLE 10 } } of
/// `ip link add red type vrf table 10`.
const VRF_LINKINFO: &[u8] = &[
    24, 0, 18, 0, 8, 0, 1, 0, 118, 114, 102, 0, 12, 0, 2, 0, 8, 0, 1, 0, 10, 0, 0, 0,
];

fn parse(raw: &[u8]) -> LinkMessage {
    let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
        .expect("IFLA_LINKINFO parses");
    let mut link = LinkMessage::default();
    link.attributes.push(attr);
    link
}

fn cx() -> RestoreCx<'static> {
    RestoreCx {
        peer: None,
        peer_is_external: false,
        index_of: &netcr_core::driver::no_indexes,
        lower_index: None,
    }
}

fn record(cfg: &Vrf) -> v1::Link {
    v1::Link {
        name: "red".into(),
        kind: "vrf".into(),
        config: cfg.encode_to_vec(),
        ..Default::default()
    }
}

#[rstest]
fn a_vrf_keeps_its_table_and_is_created_as_the_kernel_dumped_it() {
    let cfg = netcr_core::kind::dump_config(&VrfDriver, &parse(VRF_LINKINFO), &DumpCx::default())
        .unwrap();
    assert_eq!(
        cfg,
        Vrf {
            table: 10,
            extra: vec![]
        }
    );
    let rec = record(&cfg);
    let infos = VrfDriver.restore(&rec, &mut cx()).unwrap();
    assert_eq!(infos[0], LinkInfo::Kind(InfoKind::Vrf));
    let attr = LinkAttribute::LinkInfo(infos);
    let mut bytes = vec![0; attr.buffer_len()];
    attr.emit(&mut bytes);
    assert_eq!(bytes, VRF_LINKINFO);
    assert_eq!(
        VrfDriver.describe(&rec.config).unwrap(),
        vec![("table".to_string(), "10".to_string())]
    );
}

#[rstest]
fn attributes_a_newer_kernel_dumps_are_kept_verbatim() {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vrf),
        LinkInfo::Data(InfoData::Vrf(vec![
            InfoVrf::TableId(4_000_000_000),
            InfoVrf::Other(DefaultNla::new(9, vec![1, 2, 3, 4])),
        ])),
    ]));
    let cfg = netcr_core::kind::dump_config(&VrfDriver, &link, &DumpCx::default()).unwrap();
    assert_eq!(cfg.table, 4_000_000_000);
    assert_eq!(
        cfg.extra,
        vec![netcr_image::v1::Attr {
            kind: 9,
            value: vec![1, 2, 3, 4]
        }]
    );
    let infos = VrfDriver.restore(&record(&cfg), &mut cx()).unwrap();
    assert_eq!(infos[1], link_data(&link));
    let shown = VrfDriver.describe(&record(&cfg).config).unwrap();
    assert!(shown.contains(&("unknown_attributes".to_string(), "1".to_string())));
}

fn link_data(link: &LinkMessage) -> LinkInfo {
    LinkInfo::Data(netcr_core::kind::info_data(link).unwrap().clone())
}

#[rstest]
#[case::no_table(Vrf { table: 0, extra: vec![] })]
fn a_hostile_record_is_refused_before_any_request(#[case] cfg: Vrf) {
    let err = VrfDriver.restore(&record(&cfg), &mut cx()).unwrap_err();
    assert!(err.to_string().contains("table"), "{err}");
    assert!(VrfDriver.describe(&record(&cfg).config).is_err());
    assert!(VrfDriver.describe(&[0xff]).is_err());
}

#[rstest]
fn a_vrf_without_its_table_in_the_dump_is_an_error() {
    let mut link = LinkMessage::default();
    link.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Vrf)]));
    assert!(netcr_core::kind::dump_config(&VrfDriver, &link, &DumpCx::default()).is_err());
}

//! netcr's veth driver. The kernel dumps no IFLA_INFO_DATA for veth: the peer shows only as
//! IFLA_LINK (+ IFLA_LINK_NETNSID), which the core records as the link's lower reference.
//! A pair with both ends in the image is created once, by one request; a pair whose peer
//! lives outside is re-created with the outer end named by `--external veth[INNER]:OUTER`.

use netcr_core::{DriverError, DumpCx, KindDriver, LowerRole, RestoreCx};
use netcr_image::link::v1::Veth;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};

/// The veth driver.
pub struct VethDriver;

netcr_core::register_driver!(VethDriver);

impl KindDriver for VethDriver {
    const KIND: &'static str = "veth";
    const LOWER_ROLE: LowerRole = LowerRole::Peer;
    type Config = Veth;

    /// The outer end's MTU and MAC, when the peer lies outside the image and netcr can see
    /// it (in the caller's namespace, or in a third one read through its nsid).
    fn dump_config(
        &self,
        _data: Option<&InfoData>,
        _link: &LinkMessage,
        cx: &DumpCx<'_>,
    ) -> Result<Veth, DriverError> {
        let mut cfg = Veth::default();
        if let (true, Some(peer)) = (cx.lower_is_external, cx.lower) {
            for attr in &peer.attributes {
                match attr {
                    LinkAttribute::Mtu(m) => cfg.peer_mtu = *m,
                    LinkAttribute::Address(a) => cfg.peer_address = a.clone(),
                    _ => {}
                }
            }
        }
        Ok(cfg)
    }

    fn request_data(
        &self,
        cfg: Veth,
        cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        let mut peer = cx.peer.take().ok_or_else(|| {
            DriverError::new("the peer end is unknown (it was not recorded at dump time)")
        })?;
        if cx.peer_is_external {
            if cfg.peer_mtu != 0 {
                peer.attributes.push(LinkAttribute::Mtu(cfg.peer_mtu));
            }
            if !cfg.peer_address.is_empty() {
                peer.attributes
                    .push(LinkAttribute::Address(cfg.peer_address));
            }
        }
        Ok(Some(InfoData::Veth(InfoVeth::Peer(peer))))
    }

    /// A peer the dump could not see leaves the image without its MTU or MAC: the
    /// verification does not compare what the image does not hold.
    fn held(&self, image: &Veth, mut kernel: Veth) -> Veth {
        if image.peer_mtu == 0 {
            kernel.peer_mtu = 0;
        }
        if image.peer_address.is_empty() {
            kernel.peer_address.clear();
        }
        kernel
    }

    fn show(&self, cfg: &Veth) -> Result<Vec<(String, String)>, DriverError> {
        let mut out = Vec::new();
        if cfg.peer_mtu != 0 {
            out.push(("peer_mtu".to_string(), cfg.peer_mtu.to_string()));
        }
        if !cfg.peer_address.is_empty() {
            let mac: Vec<String> = cfg
                .peer_address
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            out.push(("peer_address".to_string(), mac.join(":")));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcr_core::LinkDriver;
    use netcr_image::v1;
    use netlink_packet_core::{NlaBuffer, ParseableParametrized};
    use netlink_packet_route::link::{InfoKind, LinkInfo};
    use netlink_packet_route::AddressFamily;
    use prost::Message;
    use rstest::rstest;

    /// The config the driver makes of a dump, from what it sees besides the link.
    fn config_from_dump(cx: &DumpCx<'_>) -> Veth {
        VethDriver
            .dump_config(None, &LinkMessage::default(), cx)
            .unwrap()
    }

    /// IFLA_LINKINFO of a veth as kernel 6.18 dumps it: the kind and nothing else.
    const VETH_LINKINFO: &[u8] = &[16, 0, 18, 0, 9, 0, 1, 0, 118, 101, 116, 104, 0, 0, 0, 0];

    #[rstest]
    fn kernel_dump_carries_no_info_data() {
        let attr =
            LinkAttribute::parse_with_param(&NlaBuffer::new(VETH_LINKINFO), AddressFamily::Unspec)
                .unwrap();
        assert_eq!(
            attr,
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)])
        );
    }

    fn peer(mtu: u32, mac: Vec<u8>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::Address(mac));
        m
    }

    #[rstest]
    #[case::outer_end_recorded(true, 1400, vec![2, 0, 0, 0, 0, 9])]
    #[case::inner_peer_not_duplicated(false, 0, vec![])]
    fn config_records_the_outer_end_only(
        #[case] external: bool,
        #[case] mtu: u32,
        #[case] mac: Vec<u8>,
    ) {
        let p = peer(1400, vec![2, 0, 0, 0, 0, 9]);
        let cx = DumpCx {
            lower: Some(&p),
            lower_is_external: external,
            name_of: &netcr_core::driver::no_names,
            bridge: None,
            fdb: &[],
        };
        let cfg = config_from_dump(&cx);
        assert_eq!((cfg.peer_mtu, cfg.peer_address), (mtu, mac));
    }

    #[rstest]
    fn restore_wraps_the_peer_and_applies_outer_settings() {
        let cfg = Veth {
            peer_mtu: 1400,
            peer_address: vec![2, 0, 0, 0, 0, 9],
        };
        let link = v1::Link {
            name: "eth1".into(),
            kind: "veth".into(),
            config: cfg.encode_to_vec(),
            ..Default::default()
        };
        let mut outer = LinkMessage::default();
        outer.attributes.push(LinkAttribute::IfName("hv0".into()));
        let mut cx = RestoreCx {
            peer: Some(outer),
            peer_is_external: true,
            index_of: &netcr_core::driver::no_indexes,
            lower_index: None,
        };
        let infos = VethDriver.restore(&link, &mut cx).unwrap();
        assert_eq!(infos[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = &infos[1] else {
            panic!("{infos:?}")
        };
        assert!(p.attributes.contains(&LinkAttribute::IfName("hv0".into())));
        assert!(p.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(p
            .attributes
            .contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9])));
    }

    #[rstest]
    #[case::peer_unseen_at_dump(Veth::default(), Veth::default())]
    #[case::peer_recorded(
        Veth { peer_mtu: 1400, peer_address: vec![2, 0, 0, 0, 0, 9] },
        Veth { peer_mtu: 1500, peer_address: vec![2, 0, 0, 0, 0, 8] }
    )]
    fn verification_compares_only_what_the_image_holds(#[case] image: Veth, #[case] want: Veth) {
        let kernel = Veth {
            peer_mtu: 1500,
            peer_address: vec![2, 0, 0, 0, 0, 8],
        };
        let compared = VethDriver
            .compared(&image.encode_to_vec(), &kernel.encode_to_vec())
            .unwrap();
        assert_eq!(Veth::decode(compared.as_slice()).unwrap(), want);
    }

    #[rstest]
    fn restore_without_a_peer_is_an_error() {
        let link = v1::Link {
            name: "eth1".into(),
            kind: "veth".into(),
            ..Default::default()
        };
        let mut cx = RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &netcr_core::driver::no_indexes,
            lower_index: None,
        };
        assert!(VethDriver
            .restore(&link, &mut cx)
            .unwrap_err()
            .to_string()
            .contains("peer end is unknown"));
    }
}

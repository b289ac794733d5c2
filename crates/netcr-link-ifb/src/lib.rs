//! netcr's ifb driver. An ifb (intermediate functional block) has no settings of its own:
//! it is where ingress traffic is redirected to be shaped (`tc ... action mirred egress
//! redirect dev ifb0`), and everything it has (name, MTU, MAC, txqlen, flags, addresses) is
//! common to every link and kept by the core. Its traffic control is the tc family's.
//!
//! Like a dummy, it dumps IFLA_LINKINFO with the kind only, so it shares the dummy driver's
//! config (`netcr.link.v1.Dummy`: IFLA_INFO_DATA verbatim, should a kernel ever send one).

use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::Dummy;
use netcr_link_dummy::DummyDriver;
use netlink_packet_route::link::{InfoData, LinkMessage};

/// The ifb driver.
pub struct IfbDriver;

netcr_core::register_driver!(IfbDriver);

impl KindDriver for IfbDriver {
    const KIND: &'static str = "ifb";
    /// The dummy's: no settings, unknown info data verbatim.
    type Config = Dummy;

    fn dump_config(
        &self,
        data: Option<&InfoData>,
        link: &LinkMessage,
        cx: &DumpCx<'_>,
    ) -> Result<Dummy, DriverError> {
        DummyDriver.dump_config(data, link, cx)
    }

    fn request_data(
        &self,
        cfg: Dummy,
        cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        DummyDriver.request_data(cfg, cx)
    }

    fn show(&self, cfg: &Dummy) -> Result<Vec<(String, String)>, DriverError> {
        DummyDriver.show(cfg)
    }
}

#[cfg(test)]
mod tests {
    //! Golden bytes: IFLA_LINKINFO exactly as kernel 6.18 dumped it for an ifb (captured with
    //! a raw netlink socket).

    use super::*;
    use netcr_core::LinkDriver;
    use netcr_image::v1;
    use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
    use netlink_packet_route::AddressFamily;
    use prost::Message;
    use rstest::rstest;

    /// IFLA_LINKINFO { IFLA_INFO_KIND "ifb" } of `ip link add ifb7 type ifb`.
    const IFB_LINKINFO: &[u8] = &[12, 0, 18, 0, 8, 0, 1, 0, 105, 102, 98, 0];

    fn cx() -> RestoreCx<'static> {
        RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &netcr_core::driver::no_indexes,
            lower_index: None,
        }
    }

    #[rstest]
    fn an_ifb_has_no_settings_and_restores_as_the_kernel_dumped_it() {
        let attr =
            LinkAttribute::parse_with_param(&NlaBuffer::new(IFB_LINKINFO), AddressFamily::Unspec)
                .expect("captured IFLA_LINKINFO parses");
        let mut link = LinkMessage::default();
        link.attributes.push(attr);
        let cfg = netcr_core::kind::dump_config(&IfbDriver, &link, &DumpCx::default()).unwrap();
        assert_eq!(cfg, Dummy::default());
        let rec = v1::Link {
            name: "ifb7".into(),
            kind: "ifb".into(),
            config: cfg.encode_to_vec(),
            ..Default::default()
        };
        let infos = IfbDriver.restore(&rec, &mut cx()).unwrap();
        assert_eq!(infos, vec![LinkInfo::Kind(InfoKind::Ifb)]);
        // The creation request carries the very bytes the kernel dumped.
        let attr = LinkAttribute::LinkInfo(infos);
        let mut bytes = vec![0; attr.buffer_len()];
        attr.emit(&mut bytes);
        assert_eq!(bytes, IFB_LINKINFO);
        assert!(IfbDriver.describe(&rec.config).unwrap().is_empty());
    }

    #[rstest]
    fn info_data_a_kernel_might_send_is_kept_verbatim_and_a_bad_config_refused() {
        let data = vec![8, 0, 1, 0, 7, 0, 0, 0];
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Ifb),
            LinkInfo::Data(InfoData::Other(data.clone())),
        ]));
        let cfg = netcr_core::kind::dump_config(&IfbDriver, &link, &DumpCx::default()).unwrap();
        assert_eq!(cfg.info_data, data);
        let rec = v1::Link {
            config: cfg.encode_to_vec(),
            ..Default::default()
        };
        let infos = IfbDriver.restore(&rec, &mut cx()).unwrap();
        assert_eq!(
            infos,
            vec![
                LinkInfo::Kind(InfoKind::Ifb),
                LinkInfo::Data(InfoData::Other(data))
            ]
        );
        let err = IfbDriver.describe(&[0xff]).unwrap_err();
        assert!(err.to_string().contains("ifb"), "{err}");
    }
}

//! netcr's dummy driver. A dummy has no kind-specific settings: everything it has (name,
//! MTU, MAC, flags, group, addresses) is common to every link and kept by the core. Should a
//! kernel ever dump an IFLA_INFO_DATA for it, the driver keeps and restores it verbatim.

use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::Dummy;
use netlink_packet_core::Nla;
use netlink_packet_route::link::{InfoData, LinkMessage};

/// The dummy driver.
pub struct DummyDriver;

netcr_core::register_driver!(DummyDriver);

impl KindDriver for DummyDriver {
    const KIND: &'static str = "dummy";
    type Config = Dummy;

    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        _cx: &DumpCx<'_>,
    ) -> Result<Dummy, DriverError> {
        let mut info_data = vec![0; data.map_or(0, Nla::value_len)];
        if let Some(data) = data {
            data.emit_value(&mut info_data);
        }
        Ok(Dummy { info_data })
    }

    fn request_data(
        &self,
        cfg: Dummy,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Ok((!cfg.info_data.is_empty()).then_some(InfoData::Other(cfg.info_data)))
    }

    fn show(&self, cfg: &Dummy) -> Result<Vec<(String, String)>, DriverError> {
        let len = cfg.info_data.len();
        Ok((len != 0)
            .then(|| ("info_data_bytes".to_string(), len.to_string()))
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    //! This host's kernel has no dummy driver, so these run on constructed messages: a dummy
    //! dumps IFLA_LINKINFO with the kind only, like veth (the VM round trip checks the rest).

    use super::*;
    use netcr_core::LinkDriver;
    use netcr_image::v1;
    use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
    use netlink_packet_route::AddressFamily;
    use prost::Message;
    use rstest::rstest;

    fn config_from_dump(link: &LinkMessage) -> Dummy {
        netcr_core::kind::dump_config(&DummyDriver, link, &DumpCx::default()).unwrap()
    }

    /// IFLA_LINKINFO { IFLA_INFO_KIND "dummy" }, as the kernel's rtnl_link_fill emits it for
    /// a kind without fill_info.
    const DUMMY_LINKINFO: &[u8] = &[16, 0, 18, 0, 10, 0, 1, 0, 100, 117, 109, 109, 121, 0, 0, 0];

    fn parse(raw: &[u8]) -> LinkMessage {
        let attr = LinkAttribute::parse_with_param(&NlaBuffer::new(raw), AddressFamily::Unspec)
            .expect("IFLA_LINKINFO parses");
        let mut link = LinkMessage::default();
        link.attributes.push(attr);
        link
    }

    #[rstest]
    fn a_dummy_has_no_settings_and_restores_as_its_kind() {
        let link = parse(DUMMY_LINKINFO);
        let mut emitted = vec![0; link.attributes[0].buffer_len()];
        link.attributes[0].emit(&mut emitted);
        assert_eq!(emitted, DUMMY_LINKINFO);
        let cfg = config_from_dump(&link);
        assert_eq!(cfg, Dummy::default());
        let rec = v1::Link {
            name: "d0".into(),
            kind: "dummy".into(),
            config: cfg.encode_to_vec(),
            ..Default::default()
        };
        let mut cx = RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &netcr_core::driver::no_indexes,
            lower_index: None,
        };
        let infos = DummyDriver.restore(&rec, &mut cx).unwrap();
        assert_eq!(infos, vec![LinkInfo::Kind(InfoKind::Dummy)]);
        // What the request carries is what a dump shows.
        let attr = LinkAttribute::LinkInfo(infos);
        let mut bytes = vec![0; attr.buffer_len()];
        attr.emit(&mut bytes);
        assert_eq!(bytes, DUMMY_LINKINFO);
        assert!(DummyDriver.describe(&rec.config).unwrap().is_empty());
    }

    #[rstest]
    fn unexpected_info_data_is_kept_verbatim() {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Dummy),
            LinkInfo::Data(InfoData::Other(vec![8, 0, 1, 0, 7, 0, 0, 0])),
        ]));
        let cfg = config_from_dump(&link);
        assert_eq!(cfg.info_data, vec![8, 0, 1, 0, 7, 0, 0, 0]);
        let rec = v1::Link {
            config: cfg.encode_to_vec(),
            ..Default::default()
        };
        let mut cx = RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &netcr_core::driver::no_indexes,
            lower_index: None,
        };
        let infos = DummyDriver.restore(&rec, &mut cx).unwrap();
        assert_eq!(
            infos[1],
            LinkInfo::Data(InfoData::Other(vec![8, 0, 1, 0, 7, 0, 0, 0]))
        );
        assert!(DummyDriver.describe(&[0xff]).is_err());
    }
}

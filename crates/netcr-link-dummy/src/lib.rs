//! netcr's dummy driver. A dummy has no kind-specific settings: everything it has (name,
//! MTU, MAC, flags, group, addresses) is common to every link and kept by the core. Should a
//! kernel ever dump an IFLA_INFO_DATA for it, the driver keeps and restores it verbatim.

use netcr_core::{DriverError, DumpCx, LinkDriver, RestoreCx};
use netcr_image::link::v1::Dummy;
use netcr_image::v1;
use netlink_packet_core::Nla;
use netlink_packet_route::link::{InfoData, InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use prost::Message;

/// The dummy driver.
pub struct DummyDriver;

netcr_core::inventory::submit! {
    netcr_core::DriverEntry { driver: &DummyDriver }
}

fn decode(config: &[u8]) -> Result<Dummy, DriverError> {
    Dummy::decode(config)
        .map_err(|e| DriverError::new(format!("dummy settings do not decode: {e}")))
}

/// The config of a dumped dummy: its IFLA_INFO_DATA payload, if any.
pub fn config_from_dump(link: &LinkMessage) -> Dummy {
    let data = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(d) => Some(d),
            _ => None,
        }),
        _ => None,
    });
    let mut cfg = Dummy::default();
    if let Some(data) = data {
        let mut bytes = vec![0; data.value_len()];
        data.emit_value(&mut bytes);
        cfg.info_data = bytes;
    }
    cfg
}

impl LinkDriver for DummyDriver {
    fn kind(&self) -> &'static str {
        "dummy"
    }

    fn dump(&self, link: &LinkMessage, _cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(config_from_dump(link).encode_to_vec())
    }

    fn restore(
        &self,
        link: &v1::Link,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Vec<LinkInfo>, DriverError> {
        let cfg = decode(&link.config)?;
        let mut infos = vec![LinkInfo::Kind(InfoKind::Dummy)];
        if !cfg.info_data.is_empty() {
            infos.push(LinkInfo::Data(InfoData::Other(cfg.info_data)));
        }
        Ok(infos)
    }

    fn describe(&self, config: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        let cfg = decode(config)?;
        let mut out = Vec::new();
        if !cfg.info_data.is_empty() {
            out.push((
                "info_data_bytes".to_string(),
                cfg.info_data.len().to_string(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! This host's kernel has no dummy driver, so these run on constructed messages: a dummy
    //! dumps IFLA_LINKINFO with the kind only, like veth (the VM round trip checks the rest).

    use super::*;
    use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};
    use netlink_packet_route::AddressFamily;
    use rstest::rstest;

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

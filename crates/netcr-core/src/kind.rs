//! The typed side of a driver: a kind states its config message and works on decoded
//! configs and on its own `IFLA_INFO_DATA`; one blanket implementation turns it into a
//! [`LinkDriver`], so decoding, encoding, finding the info data and wrapping the request's
//! `Kind` + `Data` live here once instead of in every driver.

use netcr_image::v1;
use netcr_netlink::{Netns, Request};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoPortData, LinkAttribute, LinkInfo, LinkMessage,
};
use prost::Message;

use crate::driver::{DriverError, DumpCx, LinkDriver, LowerRef, LowerRole, RestoreCx};

/// The kind-specific data of a dumped link: `IFLA_INFO_DATA` inside `IFLA_LINKINFO`.
pub fn info_data(link: &LinkMessage) -> Option<&InfoData> {
    linkinfo(link).find_map(|i| match i {
        LinkInfo::Data(d) => Some(d),
        _ => None,
    })
}

/// The port data (`IFLA_INFO_SLAVE_DATA` inside `IFLA_LINKINFO`) of a dumped link that has
/// a master: its settings as the master's kind defines them.
pub fn port_data(link: &LinkMessage) -> Option<&InfoPortData> {
    linkinfo(link).find_map(|i| match i {
        LinkInfo::PortData(d) => Some(d),
        _ => None,
    })
}

/// Every `IFLA_LINKINFO` entry of a dumped link.
fn linkinfo(link: &LinkMessage) -> impl Iterator<Item = &LinkInfo> {
    link.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })
        .flatten()
}

/// Decodes a config message; `what` names it in the error ("macvlan", "bridge port").
pub fn decode_config<M: Message + Default>(what: &str, config: &[u8]) -> Result<M, DriverError> {
    M::decode(config).map_err(|e| DriverError::new(format!("{what} settings do not decode: {e}")))
}

/// One kind of link, typed: what a driver crate implements. The blanket
/// `impl<D: KindDriver> LinkDriver for D` does the rest; method names differ from
/// [`LinkDriver`]'s so both traits can be in scope.
pub trait KindDriver: Sync + 'static {
    /// The `IFLA_INFO_KIND` string it owns, e.g. "macvlan".
    const KIND: &'static str;
    /// How the kind uses `IFLA_LINK`.
    const LOWER_ROLE: LowerRole = LowerRole::Lower;
    /// See [`LinkDriver::wants_bridge_family`].
    const WANTS_BRIDGE_FAMILY: bool = false;
    /// See [`LinkDriver::lower_via_nsid`].
    const LOWER_VIA_NSID: bool = false;
    /// The image's config message for this kind (`netcr.link.v1.*`).
    type Config: Message + Default;

    /// The config of a dumped link, from its info data (`None` when the kernel sent none).
    /// Drops derived, read-only attributes; keeps attributes it does not know, verbatim.
    fn dump_config(
        &self,
        data: Option<&InfoData>,
        link: &LinkMessage,
        cx: &DumpCx<'_>,
    ) -> Result<Self::Config, DriverError>;

    /// The info data of the creation request that recreates `config`; `None` sends the kind
    /// alone.
    fn request_data(
        &self,
        config: Self::Config,
        cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError>;

    /// The config as readable key/value pairs, for `netcr show`; also validates it.
    fn show(&self, config: &Self::Config) -> Result<Vec<(String, String)>, DriverError>;

    /// Decodes an image config, with an error naming the kind.
    fn decode(&self, config: &[u8]) -> Result<Self::Config, DriverError> {
        decode_config(Self::KIND, config)
    }

    /// See [`LinkDriver::compared`]: `kernel` reduced to the settings `image` holds. The
    /// default compares everything.
    fn held(&self, _image: &Self::Config, kernel: Self::Config) -> Self::Config {
        kernel
    }

    /// See [`LinkDriver::inherits_address`].
    fn inherits_lower_address(&self, _config: &Self::Config) -> bool {
        false
    }

    /// For kinds that keep their lower device in their own data (vxlan): where it is.
    fn lower_in_data(&self, _data: Option<&InfoData>) -> LowerRef {
        LowerRef::FromIflaLink
    }

    /// For kinds netlink cannot create (tun): see [`LinkDriver::create`].
    fn make_device(&self, _link: &v1::Link, _target: &Netns) -> Option<Result<(), DriverError>> {
        None
    }

    /// Devices of the same namespace, by name, that `config` refers to: see
    /// [`LinkDriver::depends_on`].
    fn devices_needed(&self, _config: &Self::Config) -> Vec<String> {
        Vec::new()
    }

    /// Requests that finish the link once everything exists: see [`LinkDriver::after_create`].
    fn finish(
        &self,
        _config: Self::Config,
        _link: &v1::Link,
        _index: u32,
        _cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        Ok(Vec::new())
    }

    /// For a master kind (bridge): see [`LinkDriver::dump_port`].
    fn port_config(&self, _port: &LinkMessage, _cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(Vec::new())
    }

    /// For a master kind (bridge): see [`LinkDriver::restore_port`].
    fn port_requests(
        &self,
        _port: &v1::Link,
        _index: u32,
        _cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        Ok(Vec::new())
    }
}

/// The config `driver` makes of a dumped link, before encoding (what [`LinkDriver::dump`]
/// stores); for tests and benchmarks.
pub fn dump_config<D: KindDriver>(
    driver: &D,
    link: &LinkMessage,
    cx: &DumpCx<'_>,
) -> Result<D::Config, DriverError> {
    driver.dump_config(info_data(link), link, cx)
}

/// The one implementation of what every kind has in common: decoding and encoding its
/// config, finding its info data, and sending `Kind` + `Data`.
impl<D: KindDriver> LinkDriver for D {
    fn kind(&self) -> &'static str {
        D::KIND
    }

    fn lower_role(&self) -> LowerRole {
        D::LOWER_ROLE
    }

    fn inherits_address(&self, config: &[u8]) -> bool {
        self.decode(config)
            .is_ok_and(|c| self.inherits_lower_address(&c))
    }

    fn dump(&self, link: &LinkMessage, cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(dump_config(self, link, cx)?.encode_to_vec())
    }

    fn restore(
        &self,
        link: &v1::Link,
        cx: &mut RestoreCx<'_>,
    ) -> Result<Vec<LinkInfo>, DriverError> {
        let data = self.request_data(self.decode(&link.config)?, cx)?;
        let kind = LinkInfo::Kind(InfoKind::from(D::KIND));
        Ok(std::iter::once(kind)
            .chain(data.map(LinkInfo::Data))
            .collect())
    }

    fn describe(&self, config: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        self.show(&self.decode(config)?)
    }

    fn compared(&self, image: &[u8], kernel: &[u8]) -> Result<Vec<u8>, DriverError> {
        Ok(self
            .held(&self.decode(image)?, self.decode(kernel)?)
            .encode_to_vec())
    }

    fn lower_ref(&self, link: &LinkMessage) -> LowerRef {
        self.lower_in_data(info_data(link))
    }

    fn wants_bridge_family(&self) -> bool {
        D::WANTS_BRIDGE_FAMILY
    }

    fn lower_via_nsid(&self) -> bool {
        D::LOWER_VIA_NSID
    }

    fn create(&self, link: &v1::Link, target: &Netns) -> Option<Result<(), DriverError>> {
        self.make_device(link, target)
    }

    fn depends_on(&self, config: &[u8]) -> Vec<String> {
        self.decode(config)
            .map(|c| self.devices_needed(&c))
            .unwrap_or_default()
    }

    fn dump_port(&self, port: &LinkMessage, cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        self.port_config(port, cx)
    }

    fn restore_port(
        &self,
        port: &v1::Link,
        index: u32,
        cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        self.port_requests(port, index, cx)
    }

    fn after_create(
        &self,
        link: &v1::Link,
        index: u32,
        cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        self.finish(self.decode(&link.config)?, link, index, cx)
    }
}

/// Registers a [`KindDriver`] (or any `LinkDriver`) value with the core's registry:
/// `netcr_core::register_driver!(MacvlanDriver);`.
#[macro_export]
macro_rules! register_driver {
    ($driver:expr) => {
        $crate::inventory::submit! {
            $crate::DriverEntry { driver: &$driver }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::no_indexes;
    use netcr_image::link::v1::Dummy;
    use rstest::rstest;

    /// Keeps its info data's bytes as the config and sends them back (none when empty); its
    /// lower device is the first byte of its data, when there is data.
    struct Probe;

    impl KindDriver for Probe {
        const KIND: &'static str = "probe";
        type Config = Dummy;

        fn dump_config(
            &self,
            data: Option<&InfoData>,
            _link: &LinkMessage,
            _cx: &DumpCx<'_>,
        ) -> Result<Dummy, DriverError> {
            let info_data = match data {
                Some(InfoData::Other(b)) => b.clone(),
                _ => Vec::new(),
            };
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
            Ok(vec![("bytes".into(), cfg.info_data.len().to_string())])
        }

        fn lower_in_data(&self, data: Option<&InfoData>) -> LowerRef {
            match data {
                Some(InfoData::Other(b)) => LowerRef::from(b.first().map(|i| u32::from(*i))),
                _ => LowerRef::FromIflaLink,
            }
        }
    }

    fn link_with(infos: Vec<LinkInfo>) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::Mtu(1500));
        link.attributes.push(LinkAttribute::LinkInfo(infos));
        link
    }

    fn record(config: Vec<u8>) -> v1::Link {
        v1::Link {
            kind: "probe".into(),
            config,
            ..Default::default()
        }
    }

    fn restore(config: Vec<u8>) -> Result<Vec<LinkInfo>, DriverError> {
        let mut cx = RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &no_indexes,
            lower_index: None,
        };
        Probe.restore(&record(config), &mut cx)
    }

    #[rstest]
    #[case::with_data(vec![7, 0, 0, 0])]
    #[case::kind_alone(vec![])]
    fn the_request_is_the_kind_then_the_data_the_dump_showed(#[case] bytes: Vec<u8>) {
        let mut infos = vec![LinkInfo::Kind(InfoKind::Other("probe".into()))];
        if !bytes.is_empty() {
            infos.push(LinkInfo::Data(InfoData::Other(bytes.clone())));
        }
        let link = link_with(infos.clone());
        assert_eq!(Probe.kind(), "probe");
        let config = Probe.dump(&link, &DumpCx::default()).unwrap();
        assert_eq!(config, Dummy { info_data: bytes }.encode_to_vec());
        assert_eq!(restore(config).unwrap(), infos);
    }

    #[rstest]
    fn configs_that_do_not_decode_are_errors_naming_the_kind() {
        let garbage = vec![0xff, 0xff];
        let err = restore(garbage.clone()).unwrap_err();
        assert!(err.0.starts_with("probe settings do not decode"), "{err}");
        assert!(Probe.describe(&garbage).is_err());
        let mut cx = RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &no_indexes,
            lower_index: None,
        };
        assert!(Probe
            .after_create(&record(garbage.clone()), 1, &cx)
            .is_err());
        assert!(Probe.restore(&record(garbage.clone()), &mut cx).is_err());
        assert!(!Probe.inherits_address(&garbage));
        assert!(Probe.depends_on(&garbage).is_empty());
    }

    #[rstest]
    #[case::data_names_a_device(vec![LinkInfo::Data(InfoData::Other(vec![9]))], LowerRef::Device(9))]
    #[case::data_names_none(vec![LinkInfo::Data(InfoData::Other(vec![]))], LowerRef::NoDevice)]
    #[case::no_data(vec![], LowerRef::FromIflaLink)]
    fn the_lower_reference_comes_from_the_kinds_data(
        #[case] infos: Vec<LinkInfo>,
        #[case] want: LowerRef,
    ) {
        assert_eq!(Probe.lower_ref(&link_with(infos)), want);
    }

    #[rstest]
    fn info_and_port_data_are_found_in_any_linkinfo_attribute() {
        let mut link = link_with(vec![LinkInfo::Kind(InfoKind::Dummy)]);
        assert_eq!(info_data(&link), None);
        assert_eq!(port_data(&link), None);
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortData(InfoPortData::Other(vec![2])),
            LinkInfo::Data(InfoData::Other(vec![1])),
        ]));
        assert_eq!(info_data(&link), Some(&InfoData::Other(vec![1])));
        assert_eq!(port_data(&link), Some(&InfoPortData::Other(vec![2])));
    }
}

//! netcr's macvtap driver. A macvtap is a macvlan with a character device (/dev/tapN) on
//! top: the same modes (private, vepa, bridge, passthru, source with its MAC list), flags
//! (nopromisc, nodst), bcqueuelen and bc_cutoff, and the same IFLA_MACVLAN_* attribute
//! numbers. So this driver converts macvtap's IFLA_INFO_DATA to macvlan's and back, and
//! shares the macvlan driver's config (netcr.link.v1.Macvlan), validation and display.
//!
//! The queues a process opened on /dev/tapN are that process's, not netcr's: a restored
//! macvtap has none open until a process opens it again.

use netcr_core::{DriverError, DumpCx, LinkDriver, RestoreCx};
use netcr_image::v1;
use netcr_link_macvlan::{config_from_data, decode, describe_config, info_from_config};
use netlink_packet_core::{Emitable, NlaBuffer, Parseable};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoMacVtap, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use prost::Message;

/// The macvtap driver.
pub struct MacvtapDriver;

netcr_core::inventory::submit! {
    netcr_core::DriverEntry { driver: &MacvtapDriver }
}

/// Re-reads one attribute under the other family's type: both use the IFLA_MACVLAN_*
/// numbers and layouts, so emitting and parsing converts exactly, unknown attributes too.
fn convert<A: Emitable, B>(attr: &A) -> Result<B, DriverError>
where
    B: for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    let mut bytes = vec![0; attr.buffer_len()];
    attr.emit(&mut bytes);
    B::parse(&NlaBuffer::new(bytes.as_slice()))
        .map_err(|e| DriverError::new(format!("macvtap attribute does not convert: {e}")))
}

/// Macvtap's IFLA_INFO_DATA as macvlan's.
pub fn to_macvlan(data: &[InfoMacVtap]) -> Result<Vec<InfoMacVlan>, DriverError> {
    data.iter().map(convert).collect()
}

/// Macvlan's IFLA_INFO_DATA as macvtap's.
pub fn to_macvtap(data: &[InfoMacVlan]) -> Result<Vec<InfoMacVtap>, DriverError> {
    data.iter().map(convert).collect()
}

fn info_data(link: &LinkMessage) -> Option<&Vec<InfoMacVtap>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::MacVtap(d)) => Some(d),
            _ => None,
        }),
        _ => None,
    })
}

/// The config a dumped macvtap carries (a macvlan config).
pub fn config_from_dump(link: &LinkMessage) -> Result<netcr_image::link::v1::Macvlan, DriverError> {
    let data = to_macvlan(info_data(link).map(Vec::as_slice).unwrap_or(&[]))?;
    Ok(config_from_data(&data))
}

impl LinkDriver for MacvtapDriver {
    fn kind(&self) -> &'static str {
        "macvtap"
    }

    fn inherits_address(&self, config: &[u8]) -> bool {
        decode(config).is_ok_and(|c| MacVlanMode::from(c.mode) == MacVlanMode::Passthrough)
    }

    fn dump(&self, link: &LinkMessage, _cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(config_from_dump(link)?.encode_to_vec())
    }

    fn restore(
        &self,
        link: &v1::Link,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Vec<LinkInfo>, DriverError> {
        let cfg = decode(&link.config)?;
        Ok(vec![
            LinkInfo::Kind(InfoKind::MacVtap),
            LinkInfo::Data(InfoData::MacVtap(to_macvtap(&info_from_config(&cfg)?)?)),
        ])
    }

    fn describe(&self, config: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        describe_config(&decode(config)?)
    }
}

#[cfg(test)]
mod tests;

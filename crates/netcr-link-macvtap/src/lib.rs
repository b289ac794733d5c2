//! netcr's macvtap driver. A macvtap is a macvlan with a character device (/dev/tapN) on
//! top: the same modes (private, vepa, bridge, passthru, source with its MAC list), flags
//! (nopromisc, nodst), bcqueuelen and bc_cutoff, and the same IFLA_MACVLAN_* attribute
//! numbers. So this driver converts macvtap's IFLA_INFO_DATA to macvlan's and back, and
//! shares the macvlan driver's config (netcr.link.v1.Macvlan), validation and display.
//!
//! The queues a process opened on /dev/tapN are that process's, not netcr's: a restored
//! macvtap has none open until a process opens it again.

use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::Macvlan;
use netcr_link_macvlan::{config_from_data, info_from_config, MacvlanDriver};
use netlink_packet_core::{Emitable, NlaBuffer, Parseable};
use netlink_packet_route::link::{InfoData, InfoMacVlan, InfoMacVtap, LinkMessage};

/// The macvtap driver.
pub struct MacvtapDriver;

netcr_core::register_driver!(MacvtapDriver);

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

impl KindDriver for MacvtapDriver {
    const KIND: &'static str = "macvtap";
    /// Macvlan's: the same settings under the same attribute numbers.
    type Config = Macvlan;

    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        _cx: &DumpCx<'_>,
    ) -> Result<Macvlan, DriverError> {
        let attrs = match data {
            Some(InfoData::MacVtap(d)) => to_macvlan(d)?,
            _ => Vec::new(),
        };
        Ok(config_from_data(&attrs))
    }

    fn request_data(
        &self,
        cfg: Macvlan,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        let data = to_macvtap(&info_from_config(&cfg)?)?;
        Ok(Some(InfoData::MacVtap(data)))
    }

    fn show(&self, cfg: &Macvlan) -> Result<Vec<(String, String)>, DriverError> {
        MacvlanDriver.show(cfg)
    }

    fn inherits_lower_address(&self, cfg: &Macvlan) -> bool {
        MacvlanDriver.inherits_lower_address(cfg)
    }
}

#[cfg(test)]
mod tests;

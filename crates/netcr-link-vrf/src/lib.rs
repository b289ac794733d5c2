//! netcr's vrf driver. A VRF (an L3 master device) has one setting, its routing table
//! (IFLA_VRF_TABLE, required at creation). Its ports are ordinary links whose master is the
//! VRF (the core joins them); the routes in its table are kept by the core like any other
//! table's, and the kernel's own ones there (from the ports' addresses) are told apart by
//! the core as in the main and local tables. The `l3mdev` rule the kernel adds with the
//! first VRF (priority 1000, protocol kernel) is the kernel's; one the user added is a rule
//! like any other.

use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::Vrf;
use netlink_packet_route::link::{InfoData, InfoVrf, LinkMessage};

/// The vrf driver.
pub struct VrfDriver;

netcr_core::register_driver!(VrfDriver);

/// The IFLA_INFO_DATA that recreates `cfg`; a table of 0 (RT_TABLE_UNSPEC) is refused, as
/// the kernel would.
pub fn info_from_config(cfg: &Vrf) -> Result<Vec<InfoVrf>, DriverError> {
    if cfg.table == 0 {
        return Err(DriverError::new("vrf table 0: a VRF needs a table"));
    }
    let mut data = vec![InfoVrf::TableId(cfg.table)];
    for attr in &cfg.extra {
        data.push(InfoVrf::Other(netcr_core::common::nla_of(attr)));
    }
    Ok(data)
}

impl KindDriver for VrfDriver {
    const KIND: &'static str = "vrf";
    type Config = Vrf;

    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        _cx: &DumpCx<'_>,
    ) -> Result<Vrf, DriverError> {
        let mut cfg = Vrf::default();
        let Some(InfoData::Vrf(attrs)) = data else {
            return Err(DriverError::new("the kernel sent no vrf table"));
        };
        for attr in attrs {
            match attr {
                InfoVrf::TableId(t) => cfg.table = *t,
                InfoVrf::Other(nla) => cfg.extra.push(netcr_core::common::attr_of(nla)),
                _ => {}
            }
        }
        Ok(cfg)
    }

    fn request_data(
        &self,
        cfg: Vrf,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Ok(Some(InfoData::Vrf(info_from_config(&cfg)?)))
    }

    fn show(&self, cfg: &Vrf) -> Result<Vec<(String, String)>, DriverError> {
        info_from_config(cfg)?;
        let mut out = vec![("table".to_string(), cfg.table.to_string())];
        if !cfg.extra.is_empty() {
            out.push(("unknown_attributes".into(), cfg.extra.len().to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

//! netcr's ipvlan driver: modes l2, l3 and l3s, flags bridge (none), private and vepa, on a
//! lower device inside the image or external (`--external ipvlan[INNER]:OUTER`), like a
//! macvlan's. An ipvlan always carries its lower device's MAC, so the MAC is neither sent
//! nor verified (a new lower device has another one).

use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::Ipvlan;
use netlink_packet_route::link::{InfoData, InfoIpVlan, IpVlanFlags, IpVlanMode, LinkMessage};

/// The ipvlan driver.
pub struct IpvlanDriver;

netcr_core::register_driver!(IpvlanDriver);

/// Flags the kernel knows (IPVLAN_F_PRIVATE | IPVLAN_F_VEPA); both at once are refused.
const KNOWN_FLAGS: u32 = 0x3;

/// The mode's name as iproute2 spells it.
pub fn mode_name(mode: u32) -> String {
    match mode {
        0 => "l2".into(),
        1 => "l3".into(),
        2 => "l3s".into(),
        n => format!("unknown({n})"),
    }
}

/// The flags' name as iproute2 spells it.
pub fn flags_name(flags: u32) -> String {
    match flags {
        0 => "bridge".into(),
        1 => "private".into(),
        2 => "vepa".into(),
        n => format!("unknown({n:#x})"),
    }
}

/// The IFLA_INFO_DATA that recreates `cfg`.
pub fn info_from_config(cfg: &Ipvlan) -> Result<Vec<InfoIpVlan>, DriverError> {
    if cfg.mode > 2 {
        return Err(DriverError::new(format!(
            "unknown ipvlan mode {}",
            cfg.mode
        )));
    }
    if cfg.flags & !KNOWN_FLAGS != 0 || cfg.flags == KNOWN_FLAGS {
        return Err(DriverError::new(format!(
            "ipvlan flags {:#x}: expected bridge (0), private (1) or vepa (2)",
            cfg.flags
        )));
    }
    let mut data = vec![
        InfoIpVlan::Mode(IpVlanMode::from(cfg.mode as u16)),
        InfoIpVlan::Flags(IpVlanFlags::from_bits_retain(cfg.flags as u16)),
    ];
    for attr in &cfg.extra {
        data.push(InfoIpVlan::Other(netcr_core::common::nla_of(attr)));
    }
    Ok(data)
}

impl KindDriver for IpvlanDriver {
    const KIND: &'static str = "ipvlan";
    type Config = Ipvlan;

    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        _cx: &DumpCx<'_>,
    ) -> Result<Ipvlan, DriverError> {
        let mut cfg = Ipvlan::default();
        let Some(InfoData::IpVlan(attrs)) = data else {
            return Ok(cfg);
        };
        for attr in attrs {
            match attr {
                InfoIpVlan::Mode(m) => cfg.mode = u16::from(*m) as u32,
                InfoIpVlan::Flags(f) => cfg.flags = f.bits() as u32,
                InfoIpVlan::Other(nla) => cfg.extra.push(netcr_core::common::attr_of(nla)),
                _ => {}
            }
        }
        Ok(cfg)
    }

    fn request_data(
        &self,
        cfg: Ipvlan,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Ok(Some(InfoData::IpVlan(info_from_config(&cfg)?)))
    }

    fn show(&self, cfg: &Ipvlan) -> Result<Vec<(String, String)>, DriverError> {
        info_from_config(cfg)?;
        let mut out = vec![
            ("mode".to_string(), mode_name(cfg.mode)),
            ("flags".to_string(), flags_name(cfg.flags)),
        ];
        if !cfg.extra.is_empty() {
            out.push(("unknown_attributes".into(), cfg.extra.len().to_string()));
        }
        Ok(out)
    }

    fn inherits_lower_address(&self, _cfg: &Ipvlan) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;

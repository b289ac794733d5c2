//! netcr's ipvlan driver: modes l2, l3 and l3s, flags bridge (none), private and vepa, on a
//! lower device inside the image or external (`--external ipvlan[INNER]:OUTER`), like a
//! macvlan's. An ipvlan always carries its lower device's MAC, so the MAC is neither sent
//! nor verified (a new lower device has another one).

use netcr_core::{DriverError, DumpCx, LinkDriver, RestoreCx};
use netcr_image::link::v1::Ipvlan;
use netcr_image::v1;
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, IpVlanFlags, IpVlanMode, LinkAttribute, LinkInfo, LinkMessage,
};
use prost::Message;

/// The ipvlan driver.
pub struct IpvlanDriver;

netcr_core::inventory::submit! {
    netcr_core::DriverEntry { driver: &IpvlanDriver }
}

/// Flags the kernel knows (IPVLAN_F_PRIVATE | IPVLAN_F_VEPA); both at once are refused.
const KNOWN_FLAGS: u32 = 0x3;

fn info_data(link: &LinkMessage) -> Option<&Vec<InfoIpVlan>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::IpVlan(d)) => Some(d),
            _ => None,
        }),
        _ => None,
    })
}

/// The config a dumped ipvlan carries.
pub fn config_from_dump(link: &LinkMessage) -> Ipvlan {
    let mut cfg = Ipvlan::default();
    for attr in info_data(link).into_iter().flatten() {
        match attr {
            InfoIpVlan::Mode(m) => cfg.mode = u16::from(*m) as u32,
            InfoIpVlan::Flags(f) => cfg.flags = f.bits() as u32,
            InfoIpVlan::Other(nla) => cfg.extra.push(netcr_core::common::attr_of(nla)),
            _ => {}
        }
    }
    cfg
}

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

fn decode(config: &[u8]) -> Result<Ipvlan, DriverError> {
    Ipvlan::decode(config)
        .map_err(|e| DriverError::new(format!("ipvlan settings do not decode: {e}")))
}

impl LinkDriver for IpvlanDriver {
    fn kind(&self) -> &'static str {
        "ipvlan"
    }

    fn inherits_address(&self, _config: &[u8]) -> bool {
        true
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
        Ok(vec![
            LinkInfo::Kind(InfoKind::IpVlan),
            LinkInfo::Data(InfoData::IpVlan(info_from_config(&cfg)?)),
        ])
    }

    fn describe(&self, config: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        let cfg = decode(config)?;
        info_from_config(&cfg)?;
        let mut out = vec![
            ("mode".to_string(), mode_name(cfg.mode)),
            ("flags".to_string(), flags_name(cfg.flags)),
        ];
        if !cfg.extra.is_empty() {
            out.push(("unknown_attributes".into(), cfg.extra.len().to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

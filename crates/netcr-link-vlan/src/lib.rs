//! netcr's vlan driver: 802.1Q and 802.1ad, the VLAN id, the flags (reorder_hdr, gvrp, mvrp,
//! loose_binding, bridge_binding) and both QoS maps. The lower device is the common lower
//! reference: a device inside the image, or an external one named with
//! `--external vlan[INNER]:OUTER`.

use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::{Vlan, VlanQosMapping as Mapping};
use netcr_image::v1;
use netlink_packet_route::link::{
    InfoData, InfoVlan, LinkMessage, VlanFlags, VlanProtocol, VlanQosMapping,
};

/// The vlan driver.
pub struct VlanDriver;

netcr_core::register_driver!(VlanDriver);

/// 802.1Q.
pub const ETH_P_8021Q: u32 = 0x8100;
/// 802.1ad (QinQ).
pub const ETH_P_8021AD: u32 = 0x88a8;

/// The flags the kernel accepts in a mask (vlan_dev_change_flags refuses any other bit,
/// so the dump's mask of ~0 cannot be sent back).
const KNOWN_FLAGS: u32 = 0x1f;

const FLAG_NAMES: &[(u32, &str)] = &[
    (0x1, "reorder_hdr"),
    (0x2, "gvrp"),
    (0x4, "loose_binding"),
    (0x8, "mvrp"),
    (0x10, "bridge_binding"),
];

fn mappings(list: &[VlanQosMapping], extra: &mut Vec<v1::Attr>) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = list
        .iter()
        .filter_map(|m| match m {
            VlanQosMapping::Mapping(from, to) => Some(Mapping {
                from: *from,
                to: *to,
            }),
            VlanQosMapping::Other(nla) => {
                extra.push(netcr_core::common::attr_of(nla));
                None
            }
            _ => None,
        })
        .collect();
    // The egress map comes from a hash table: keep it in a stable order.
    out.sort_by_key(|m| (m.from, m.to));
    out
}

/// The IFLA_INFO_DATA that recreates `cfg`. Flags are always sent: a new vlan starts with
/// reorder_hdr set, which a config without it must clear.
pub fn info_from_config(cfg: &Vlan) -> Result<Vec<InfoVlan>, DriverError> {
    if cfg.id > 4095 {
        return Err(DriverError::new(format!("VLAN id {} is over 4095", cfg.id)));
    }
    let protocol = match cfg.protocol {
        ETH_P_8021Q => VlanProtocol::Ieee8021Q,
        ETH_P_8021AD => VlanProtocol::Ieee8021Ad,
        p => return Err(DriverError::new(format!("unknown VLAN protocol {p:#06x}"))),
    };
    if cfg.flags & !KNOWN_FLAGS != 0 {
        return Err(DriverError::new(format!(
            "unknown VLAN flags {:#x}",
            cfg.flags & !KNOWN_FLAGS
        )));
    }
    let mut data = vec![
        InfoVlan::Protocol(protocol),
        InfoVlan::Id(cfg.id as u16),
        InfoVlan::Flags((
            VlanFlags::from_bits_retain(cfg.flags),
            VlanFlags::from_bits_retain(KNOWN_FLAGS),
        )),
    ];
    let map = |list: &[Mapping]| -> Vec<VlanQosMapping> {
        list.iter()
            .map(|m| VlanQosMapping::Mapping(m.from, m.to))
            .collect()
    };
    if cfg.ingress_qos.iter().any(|m| m.from > 7) {
        return Err(DriverError::new(
            "an ingress QoS mapping from a priority over 7",
        ));
    }
    if cfg.egress_qos.iter().any(|m| m.to > 7) {
        return Err(DriverError::new(
            "an egress QoS mapping to a priority over 7",
        ));
    }
    if !cfg.ingress_qos.is_empty() {
        data.push(InfoVlan::IngressQos(map(&cfg.ingress_qos)));
    }
    if !cfg.egress_qos.is_empty() {
        data.push(InfoVlan::EgressQos(map(&cfg.egress_qos)));
    }
    for attr in &cfg.extra {
        data.push(InfoVlan::Other(netcr_core::common::nla_of(attr)));
    }
    Ok(data)
}

fn qos_text(list: &[Mapping]) -> String {
    list.iter()
        .map(|m| format!("{}:{}", m.from, m.to))
        .collect::<Vec<_>>()
        .join(" ")
}

impl KindDriver for VlanDriver {
    const KIND: &'static str = "vlan";
    type Config = Vlan;

    /// A dump without IFLA_VLAN_FLAGS means no flag is set.
    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        _cx: &DumpCx<'_>,
    ) -> Result<Vlan, DriverError> {
        let mut cfg = Vlan {
            protocol: ETH_P_8021Q,
            ..Default::default()
        };
        let Some(InfoData::Vlan(attrs)) = data else {
            return Ok(cfg);
        };
        // Only IFLA_VLAN_QOS_MAPPING lives inside a QoS map; anything else there cannot be
        // placed back and is dropped.
        let mut qos_extra = Vec::new();
        for attr in attrs {
            match attr {
                InfoVlan::Id(id) => cfg.id = *id as u32,
                InfoVlan::Protocol(p) => cfg.protocol = u16::from(*p) as u32,
                InfoVlan::Flags((flags, _mask)) => cfg.flags = flags.bits(),
                InfoVlan::IngressQos(list) => cfg.ingress_qos = mappings(list, &mut qos_extra),
                InfoVlan::EgressQos(list) => cfg.egress_qos = mappings(list, &mut qos_extra),
                InfoVlan::Other(nla) => cfg.extra.push(netcr_core::common::attr_of(nla)),
                _ => {}
            }
        }
        Ok(cfg)
    }

    fn request_data(
        &self,
        cfg: Vlan,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Ok(Some(InfoData::Vlan(info_from_config(&cfg)?)))
    }

    fn show(&self, cfg: &Vlan) -> Result<Vec<(String, String)>, DriverError> {
        info_from_config(cfg)?;
        let protocol = match cfg.protocol {
            ETH_P_8021AD => "802.1ad",
            _ => "802.1Q",
        };
        let mut out = vec![
            ("protocol".to_string(), protocol.to_string()),
            ("id".to_string(), cfg.id.to_string()),
        ];
        let names: Vec<&str> = FLAG_NAMES
            .iter()
            .filter(|(bit, _)| cfg.flags & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        out.push((
            "flags".into(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(",")
            },
        ));
        if !cfg.ingress_qos.is_empty() {
            out.push(("ingress-qos-map".into(), qos_text(&cfg.ingress_qos)));
        }
        if !cfg.egress_qos.is_empty() {
            out.push(("egress-qos-map".into(), qos_text(&cfg.egress_qos)));
        }
        if !cfg.extra.is_empty() {
            out.push(("unknown_attributes".into(), cfg.extra.len().to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

//! netcr's bridge driver: the bridge with its options (STP, forward delay, hello time, max
//! age, ageing, priority, VLAN filtering and protocol, default PVID, multicast snooping and
//! querier, ...), its ports' options (cost, priority, learning, flooding, hairpin,
//! isolated, ...; the master's kind owns them, so they live here) and the VLANs of the bridge
//! and of each port.
//!
//! Options are kept as the kernel dumped them, attribute by attribute, minus read-only state
//! (timers, root and bridge ids, topology change flags, querier state, counters); attributes
//! this netcr does not know are kept too. A bridge is created in place (bridges cannot change
//! namespace), with its options in the creation request. Ports get their options back with an
//! RTM_NEWLINK carrying IFLA_INFO_SLAVE_DATA once they joined. VLANs come from a
//! bridge-family dump (RTEXT_FILTER_BRVLAN) and go back with bridge-family RTM_SETLINK
//! requests, after removing the VLANs the kernel adds by itself (the default PVID).

use netcr_core::kind::decode_config;
use netcr_core::netcr_netlink::Request;
use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::{Bridge, BridgePort, BridgeVlan, NamedAttr};
use netcr_image::v1;
use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort,
    InfoData, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use prost::Message;

mod attrs;

pub use attrs::{Ty, BRIDGE_ATTRS, PORT_ATTRS};

/// The bridge driver.
pub struct BridgeDriver;

netcr_core::register_driver!(BridgeDriver);

/// IFLA_BR_* attributes that are state, not settings: never kept, never sent.
pub const BRIDGE_READ_ONLY: &[u16] = &[
    10, // ROOT_ID
    11, // BRIDGE_ID
    12, // ROOT_PORT
    13, // ROOT_PATH_COST
    14, // TOPOLOGY_CHANGE
    15, // TOPOLOGY_CHANGE_DETECTED
    16, // HELLO_TIMER
    17, // TCN_TIMER
    18, // TOPOLOGY_CHANGE_TIMER
    19, // GC_TIMER
    21, // FDB_FLUSH (an action)
    40, // PAD
    47, // MCAST_QUERIER_STATE
    48, // FDB_N_LEARNED
];

/// IFLA_BRPORT_* attributes that are state, not settings, or kept apart (the backup port).
pub const PORT_READ_ONLY: &[u16] = &[
    1,  // STATE: derived from carrier and STP
    13, // ROOT_ID
    14, // BRIDGE_ID
    15, // DESIGNATED_PORT
    16, // DESIGNATED_COST
    17, // ID
    18, // NO
    19, // TOPOLOGY_CHANGE_ACK
    20, // CONFIG_PENDING
    21, // MESSAGE_AGE_TIMER
    22, // FORWARD_DELAY_TIMER
    23, // HOLD_TIMER
    24, // FLUSH (an action)
    26, // PAD
    34, // BACKUP_PORT: kept by name
    35, // MRP_RING_OPEN
    36, // MRP_IN_OPEN
    38, // MCAST_EHT_HOSTS_CNT
    41, // MCAST_N_GROUPS
];

const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_BR_MULTI_BOOLOPT: u16 = 46;
const IFLA_BRPORT_BACKUP_PORT: u16 = 34;

/// VLAN flags kept: PVID and UNTAGGED. (BRENTRY is implied for the bridge's own VLANs.)
const VLAN_FLAGS_KEPT: u16 = 0x2 | 0x4;

fn named<N: Nla>(attr: &N, table: &[(u16, &'static str, Ty)]) -> NamedAttr {
    let mut value = vec![0; attr.value_len()];
    attr.emit_value(&mut value);
    let kind = attr.kind();
    NamedAttr {
        kind: kind as u32,
        name: attrs::name_of(table, kind).to_string(),
        value,
    }
}

fn nla(attr: &NamedAttr) -> DefaultNla {
    DefaultNla::new(attr.kind as u16, attr.value.clone())
}

/// The VLANs and other bridge-family IFLA_AF_SPEC entries of a bridge-family link dump.
pub fn vlans_from(view: Option<&LinkMessage>) -> (Vec<BridgeVlan>, Vec<v1::Attr>) {
    let mut vlans = Vec::new();
    let mut extra = Vec::new();
    for attr in view.map(|v| v.attributes.as_slice()).unwrap_or(&[]) {
        let LinkAttribute::AfSpecBridge(entries) = attr else {
            continue;
        };
        let mut range_start: Option<BridgeVlanInfo> = None;
        for entry in entries {
            match entry {
                AfSpecBridge::VlanInfo(info) => {
                    let flags = info.flags.bits();
                    if flags & BridgeVlanInfoFlags::RangeBegin.bits() != 0 {
                        range_start = Some(*info);
                        continue;
                    }
                    let first = match range_start.take() {
                        Some(start) if flags & BridgeVlanInfoFlags::RangeEnd.bits() != 0 => {
                            start.vid
                        }
                        _ => info.vid,
                    };
                    for vid in first..=info.vid {
                        vlans.push(BridgeVlan {
                            vid: vid as u32,
                            flags: (flags & VLAN_FLAGS_KEPT) as u32,
                        });
                    }
                }
                AfSpecBridge::Flags(_) | AfSpecBridge::Mode(_) => {}
                other => {
                    let mut value = vec![0; other.value_len()];
                    other.emit_value(&mut value);
                    extra.push(v1::Attr {
                        kind: other.kind() as u32,
                        value,
                    });
                }
            }
        }
    }
    vlans.sort_by_key(|v| v.vid);
    vlans.dedup_by_key(|v| v.vid);
    (vlans, extra)
}

/// The IFLA_INFO_DATA that recreates `cfg`. `vlan_filtering 0` is left out: it is the
/// default, and kernels built without VLAN filtering refuse the attribute (EOPNOTSUPP)
/// whatever its value. The multi-boolopt carries only the options that are on.
pub fn info_from_config(cfg: &Bridge) -> Result<Vec<InfoBridge>, DriverError> {
    let mut out = Vec::with_capacity(cfg.options.len());
    for attr in &cfg.options {
        check(attr)?;
        if attr.kind as u16 == IFLA_BR_VLAN_FILTERING && attr.value.iter().all(|b| *b == 0) {
            continue;
        }
        if BRIDGE_READ_ONLY.contains(&(attr.kind as u16)) {
            continue;
        }
        if attr.kind as u16 == IFLA_BR_MULTI_BOOLOPT && attr.value.len() == 8 {
            // Every boolean option is off in a new bridge: send only those that are on, as
            // value and mask. (A mask naming one the kernel cannot change, such as
            // mst_enable without VLAN filtering, fails the whole request.)
            let on = &attr.value[..4];
            if on.iter().any(|b| *b != 0) {
                out.push(InfoBridge::Other(DefaultNla::new(
                    IFLA_BR_MULTI_BOOLOPT,
                    [on, on].concat(),
                )));
            }
            continue;
        }
        out.push(InfoBridge::Other(nla(attr)));
    }
    Ok(out)
}

fn check(attr: &NamedAttr) -> Result<(), DriverError> {
    if attr.kind == 0 || attr.kind > 0x3fff || attr.value.len() > 0xfff0 {
        return Err(DriverError::new(format!(
            "attribute {} ({}) is malformed",
            attr.kind, attr.name
        )));
    }
    Ok(())
}

/// A port's config from its own dump (its IFLA_INFO_SLAVE_DATA) and its bridge-family view.
pub fn port_config_from_dump(
    port: &LinkMessage,
    view: Option<&LinkMessage>,
    name_of: &dyn Fn(u32) -> Option<String>,
) -> Result<BridgePort, DriverError> {
    let mut cfg = BridgePort::default();
    if let Some(InfoPortData::BridgePort(data)) = netcr_core::kind::port_data(port) {
        for attr in data {
            match attr {
                InfoBridgePort::BackupPort(index) if *index != 0 => {
                    cfg.backup_port = name_of(*index).ok_or_else(|| {
                        DriverError::new(format!("backup port if{index} is unknown"))
                    })?;
                }
                a if PORT_READ_ONLY.contains(&a.kind()) => {}
                a => cfg.options.push(named(a, PORT_ATTRS)),
            }
        }
    }
    (cfg.vlans, cfg.vlan_extra) = vlans_from(view);
    Ok(cfg)
}

fn decode_port(config: &[u8]) -> Result<BridgePort, DriverError> {
    decode_config("bridge port", config)
}

/// The bridge-family requests that make a device's VLANs exactly `vlans`: remove every VLAN
/// (1-4094; the kernel skips absent ones, and does nothing on kernels without VLAN
/// filtering), then add the image's. `self_` addresses the bridge itself rather than a port.
pub fn vlan_requests(
    index: u32,
    self_: bool,
    vlans: &[BridgeVlan],
    extra: &[v1::Attr],
    what: &str,
) -> Result<Vec<Request>, DriverError> {
    let header = |msg: &mut LinkMessage| {
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = index;
    };
    let flags = || {
        if self_ {
            vec![AfSpecBridge::Flags(BridgeFlag::LowerDev)]
        } else {
            vec![]
        }
    };
    let mut del = LinkMessage::default();
    header(&mut del);
    let mut spec = flags();
    spec.push(AfSpecBridge::VlanInfo(BridgeVlanInfo {
        flags: BridgeVlanInfoFlags::RangeBegin,
        vid: 1,
    }));
    spec.push(AfSpecBridge::VlanInfo(BridgeVlanInfo {
        flags: BridgeVlanInfoFlags::RangeEnd,
        vid: 4094,
    }));
    del.attributes.push(LinkAttribute::AfSpecBridge(spec));
    let mut out = vec![Request::change(
        RouteNetlinkMessage::DelLink(del),
        format!("clearing the VLANs of {what}"),
    )];
    if vlans.is_empty() && extra.is_empty() {
        return Ok(out);
    }
    let mut spec = flags();
    for v in vlans {
        if v.vid == 0 || v.vid > 4094 {
            return Err(DriverError::new(format!("VLAN {} is out of range", v.vid)));
        }
        spec.push(AfSpecBridge::VlanInfo(BridgeVlanInfo {
            flags: BridgeVlanInfoFlags::from_bits_retain(v.flags as u16 & VLAN_FLAGS_KEPT),
            vid: v.vid as u16,
        }));
    }
    for e in extra {
        spec.push(AfSpecBridge::Other(netcr_core::common::nla_of(e)));
    }
    let mut add = LinkMessage::default();
    header(&mut add);
    add.attributes.push(LinkAttribute::AfSpecBridge(spec));
    out.push(Request::change(
        RouteNetlinkMessage::SetLink(add),
        format!("adding the VLANs of {what}"),
    ));
    Ok(out)
}

fn vlans_text(vlans: &[BridgeVlan]) -> String {
    vlans
        .iter()
        .map(|v| {
            let mut s = v.vid.to_string();
            if v.flags & 0x2 != 0 {
                s.push_str(" pvid");
            }
            if v.flags & 0x4 != 0 {
                s.push_str(" untagged");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_options(
    options: &[NamedAttr],
    table: &[(u16, &'static str, Ty)],
    out: &mut Vec<(String, String)>,
) -> Result<(), DriverError> {
    for attr in options {
        check(attr)?;
        let (name, text) = attrs::display(table, attr);
        out.push((name, text));
    }
    Ok(())
}

impl KindDriver for BridgeDriver {
    const KIND: &'static str = "bridge";
    const WANTS_BRIDGE_FAMILY: bool = true;
    type Config = Bridge;

    /// The options from the info data, the VLANs from the bridge-family view (`cx.bridge`).
    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        cx: &DumpCx<'_>,
    ) -> Result<Bridge, DriverError> {
        let mut cfg = Bridge::default();
        if let Some(InfoData::Bridge(data)) = data {
            for attr in data {
                if !BRIDGE_READ_ONLY.contains(&attr.kind()) {
                    cfg.options.push(named(attr, BRIDGE_ATTRS));
                }
            }
        }
        (cfg.vlans, cfg.vlan_extra) = vlans_from(cx.bridge);
        Ok(cfg)
    }

    fn request_data(
        &self,
        cfg: Bridge,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Ok(Some(InfoData::Bridge(info_from_config(&cfg)?)))
    }

    fn show(&self, cfg: &Bridge) -> Result<Vec<(String, String)>, DriverError> {
        let mut out = Vec::new();
        describe_options(&cfg.options, BRIDGE_ATTRS, &mut out)?;
        if !cfg.vlans.is_empty() {
            out.push(("vlans".into(), vlans_text(&cfg.vlans)));
        }
        if !cfg.vlan_extra.is_empty() {
            out.push(("vlan_extra".into(), cfg.vlan_extra.len().to_string()));
        }
        Ok(out)
    }

    fn port_config(&self, port: &LinkMessage, cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(port_config_from_dump(port, cx.bridge, cx.name_of)?.encode_to_vec())
    }

    fn port_requests(
        &self,
        port: &v1::Link,
        index: u32,
        cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        let cfg = decode_port(&port.port_config)?;
        let mut data = Vec::with_capacity(cfg.options.len() + 1);
        for attr in &cfg.options {
            check(attr)?;
            if !PORT_READ_ONLY.contains(&(attr.kind as u16)) {
                data.push(InfoBridgePort::Other(nla(attr)));
            }
        }
        if !cfg.backup_port.is_empty() {
            let backup = (cx.index_of)(&cfg.backup_port).ok_or_else(|| {
                DriverError::new(format!(
                    "backup port \"{}\" was not restored",
                    cfg.backup_port
                ))
            })?;
            data.push(InfoBridgePort::Other(DefaultNla::new(
                IFLA_BRPORT_BACKUP_PORT,
                backup.to_ne_bytes().to_vec(),
            )));
        }
        let mut out = Vec::new();
        if !data.is_empty() {
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(data)),
            ]));
            out.push(Request::change(
                RouteNetlinkMessage::NewLink(msg),
                format!("setting the bridge port options of \"{}\"", port.name),
            ));
        }
        out.extend(vlan_requests(
            index,
            false,
            &cfg.vlans,
            &cfg.vlan_extra,
            &format!("port \"{}\"", port.name),
        )?);
        Ok(out)
    }

    fn finish(
        &self,
        cfg: Bridge,
        link: &v1::Link,
        index: u32,
        _cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        vlan_requests(
            index,
            true,
            &cfg.vlans,
            &cfg.vlan_extra,
            &format!("bridge \"{}\"", link.name),
        )
    }
}

/// Describes a port config (for `netcr show`).
pub fn describe_port(config: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
    let cfg = decode_port(config)?;
    let mut out = Vec::new();
    describe_options(&cfg.options, PORT_ATTRS, &mut out)?;
    if !cfg.backup_port.is_empty() {
        out.push(("backup_port".into(), cfg.backup_port.clone()));
    }
    if !cfg.vlans.is_empty() {
        out.push(("vlans".into(), vlans_text(&cfg.vlans)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

//! Names and payload types of the IFLA_BR_* and IFLA_BRPORT_* attributes, for people: the
//! image keeps each attribute's payload as the kernel dumped it, so these tables only name
//! and display them. An attribute missing here is still kept and restored.

use netcr_image::link::v1::NamedAttr;

/// How an attribute's payload reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// u8 (booleans and small enums).
    U8,
    /// u16, host order.
    U16,
    /// u32, host order.
    U32,
    /// u64, host order.
    U64,
    /// u16, network order (ethertypes, ports).
    Be16,
    /// A MAC address.
    Mac,
    /// struct br_boolopt_multi: u32 value, u32 mask.
    BoolOpt,
}

/// IFLA_BR_*: (type, iproute2's name, payload).
pub const BRIDGE_ATTRS: &[(u16, &str, Ty)] = &[
    (1, "forward_delay", Ty::U32),
    (2, "hello_time", Ty::U32),
    (3, "max_age", Ty::U32),
    (4, "ageing_time", Ty::U32),
    (5, "stp_state", Ty::U32),
    (6, "priority", Ty::U16),
    (7, "vlan_filtering", Ty::U8),
    (8, "vlan_protocol", Ty::Be16),
    (9, "group_fwd_mask", Ty::U16),
    (20, "group_address", Ty::Mac),
    (22, "mcast_router", Ty::U8),
    (23, "mcast_snooping", Ty::U8),
    (24, "mcast_query_use_ifaddr", Ty::U8),
    (25, "mcast_querier", Ty::U8),
    (26, "mcast_hash_elasticity", Ty::U32),
    (27, "mcast_hash_max", Ty::U32),
    (28, "mcast_last_member_count", Ty::U32),
    (29, "mcast_startup_query_count", Ty::U32),
    (30, "mcast_last_member_interval", Ty::U64),
    (31, "mcast_membership_interval", Ty::U64),
    (32, "mcast_querier_interval", Ty::U64),
    (33, "mcast_query_interval", Ty::U64),
    (34, "mcast_query_response_interval", Ty::U64),
    (35, "mcast_startup_query_interval", Ty::U64),
    (36, "nf_call_iptables", Ty::U8),
    (37, "nf_call_ip6tables", Ty::U8),
    (38, "nf_call_arptables", Ty::U8),
    (39, "vlan_default_pvid", Ty::U16),
    (41, "vlan_stats_enabled", Ty::U8),
    (42, "mcast_stats_enabled", Ty::U8),
    (43, "mcast_igmp_version", Ty::U8),
    (44, "mcast_mld_version", Ty::U8),
    (45, "vlan_stats_per_port", Ty::U8),
    (46, "multi_boolopt", Ty::BoolOpt),
    (49, "fdb_max_learned", Ty::U32),
    (50, "stp_mode", Ty::U32),
];

/// IFLA_BRPORT_*: (type, iproute2's name, payload).
pub const PORT_ATTRS: &[(u16, &str, Ty)] = &[
    (2, "priority", Ty::U16),
    (3, "cost", Ty::U32),
    (4, "hairpin", Ty::U8),
    (5, "guard", Ty::U8),
    (6, "root_block", Ty::U8),
    (7, "fastleave", Ty::U8),
    (8, "learning", Ty::U8),
    (9, "flood", Ty::U8),
    (10, "proxy_arp", Ty::U8),
    (11, "learning_sync", Ty::U8),
    (12, "proxy_arp_wifi", Ty::U8),
    (25, "mcast_router", Ty::U8),
    (27, "mcast_flood", Ty::U8),
    (28, "mcast_to_unicast", Ty::U8),
    (29, "vlan_tunnel", Ty::U8),
    (30, "bcast_flood", Ty::U8),
    (31, "group_fwd_mask", Ty::U16),
    (32, "neigh_suppress", Ty::U8),
    (33, "isolated", Ty::U8),
    (37, "mcast_eht_hosts_limit", Ty::U32),
    (39, "locked", Ty::U8),
    (40, "mab", Ty::U8),
    (42, "mcast_max_groups", Ty::U32),
    (43, "neigh_vlan_suppress", Ty::U8),
    (44, "backup_nhid", Ty::U32),
    (45, "neigh_forward_grat", Ty::U8),
];

/// The name of attribute `kind`, "" when unknown.
pub fn name_of(table: &[(u16, &'static str, Ty)], kind: u16) -> &'static str {
    table
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, n, _)| *n)
        .unwrap_or("")
}

/// (name, value) for `netcr show`: decoded when the table knows the attribute and the
/// payload has the expected size, hex bytes otherwise.
pub fn display(table: &[(u16, &'static str, Ty)], attr: &NamedAttr) -> (String, String) {
    let spec = table.iter().find(|(k, _, _)| *k as u32 == attr.kind);
    let name = match (spec, attr.name.as_str()) {
        (Some((_, n, _)), _) => n.to_string(),
        (None, "") => format!("attr{}", attr.kind),
        (None, n) => n.to_string(),
    };
    let v = attr.value.as_slice();
    let text = match (spec.map(|s| s.2), v.len()) {
        (Some(Ty::U8), 1) => v[0].to_string(),
        (Some(Ty::U16), 2) => u16::from_ne_bytes([v[0], v[1]]).to_string(),
        (Some(Ty::U32), 4) => u32::from_ne_bytes([v[0], v[1], v[2], v[3]]).to_string(),
        (Some(Ty::U64), 8) => u64::from_ne_bytes(v.try_into().expect("8 bytes")).to_string(),
        (Some(Ty::Be16), 2) => format!("{:#06x}", u16::from_be_bytes([v[0], v[1]])),
        (Some(Ty::Mac), 6) => v
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        (Some(Ty::BoolOpt), 8) => format!(
            "{:#x}/{:#x}",
            u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
            u32::from_ne_bytes([v[4], v[5], v[6], v[7]])
        ),
        _ => hex(v),
    };
    (name, text)
}

/// Bytes as hex, "-" for none.
pub fn hex(v: &[u8]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(|b| format!("{b:02x}")).collect()
}

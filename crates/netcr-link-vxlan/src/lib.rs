//! netcr's vxlan driver: VNI, local, remote or group, port and source-port range, TTL, TOS,
//! flow label, learning and the other flags, as the kernel dumped them; the underlay device;
//! and the permanent and static forwarding entries (the default destinations among them).
//!
//! The underlay device is IFLA_VXLAN_LINK, which the kernel does not report as IFLA_LINK:
//! this driver tells the core where it is ([`KindDriver::lower_in_data`]), so the core records
//! it like a macvlan's lower device: a device inside the image (created first, referred to by
//! name) or one outside, re-attached with `--external vxlan[INNER]:OUTER`. A vxlan whose
//! underlay is outside is created so that its UDP socket lives there again (from the
//! caller's namespace, or with IFLA_LINK_NETNSID), as it did.
//!
//! Forwarding entries come from the bridge-family neighbour dump (entries the vxlan owns,
//! NTF_SELF, in state permanent or static; learned ones are traffic, not configuration) and
//! go back after creation with NLM_F_CREATE | NLM_F_APPEND, which adds a further remote to
//! an all-zeros entry and leaves the one the kernel made from `remote` as it is.

use netcr_core::netcr_netlink::Request;
use netcr_core::{DriverError, DumpCx, KindDriver, LowerRef, RestoreCx};
use netcr_image::link::v1::{NamedAttr, Vxlan, VxlanFdb};
use netcr_image::v1;
use netlink_packet_core::{DefaultNla, Nla, NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// The vxlan driver.
pub struct VxlanDriver;

netcr_core::register_driver!(VxlanDriver);

const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_GROUP: u16 = 2;
const IFLA_VXLAN_GROUP6: u16 = 16;
const IFLA_VXLAN_REMCSUM_RX: u16 = 22;
/// Dumped as a u8, accepted only as a flag (no payload) when set.
const IFLA_VXLAN_TTL_INHERIT: u16 = 28;

const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;

/// How an IFLA_VXLAN_* payload reads, for `netcr show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    U8,
    U32,
    Be16,
    Be32,
    Ipv4,
    Ipv6,
    PortRange,
    Flag,
}

/// IFLA_VXLAN_*: (type, iproute2's name, payload).
const ATTRS: &[(u16, &str, Ty)] = &[
    (1, "id", Ty::U32),
    (2, "remote", Ty::Ipv4),
    (4, "local", Ty::Ipv4),
    (5, "ttl", Ty::U8),
    (6, "tos", Ty::U8),
    (7, "learning", Ty::U8),
    (8, "ageing", Ty::U32),
    (9, "maxaddress", Ty::U32),
    (10, "srcport", Ty::PortRange),
    (11, "proxy", Ty::U8),
    (12, "rsc", Ty::U8),
    (13, "l2miss", Ty::U8),
    (14, "l3miss", Ty::U8),
    (15, "dstport", Ty::Be16),
    (16, "remote6", Ty::Ipv6),
    (17, "local6", Ty::Ipv6),
    (18, "udpcsum", Ty::U8),
    (19, "udp6zerocsumtx", Ty::U8),
    (20, "udp6zerocsumrx", Ty::U8),
    (21, "remcsumtx", Ty::U8),
    (22, "remcsumrx", Ty::U8),
    (23, "gbp", Ty::Flag),
    (24, "remcsum_nopartial", Ty::Flag),
    (25, "external", Ty::U8),
    (26, "flowlabel", Ty::Be32),
    (27, "gpe", Ty::Flag),
    (28, "ttl_inherit", Ty::U8),
    (29, "df", Ty::U8),
    (30, "vnifilter", Ty::U8),
    (31, "localbypass", Ty::U8),
    (32, "flowlabel_policy", Ty::U32),
    (34, "mc_route", Ty::U8),
];

fn attr_name(kind: u16) -> &'static str {
    match kind {
        33 => "reserved_bits",
        _ => ATTRS
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, n, _)| *n)
            .unwrap_or(""),
    }
}

/// The vxlan attributes of an info data, if it is vxlan's.
fn attrs(data: Option<&InfoData>) -> &[InfoVxlan] {
    match data {
        Some(InfoData::Vxlan(d)) => d,
        _ => &[],
    }
}

/// IFLA_VXLAN_LINK of a dumped vxlan's attributes, when it names a device.
fn underlay(attrs: &[InfoVxlan]) -> Option<u32> {
    attrs.iter().find_map(|a| match a {
        InfoVxlan::Link(i) if *i != 0 => Some(*i),
        _ => None,
    })
}

fn link_netns_outside(link: &LinkMessage) -> bool {
    link.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)))
}

/// Whether a bridge-family neighbour entry is the vxlan's own configuration: NTF_SELF, in
/// state permanent or static (noarp). Learned or `dynamic` entries are not.
pub fn fdb_entry_is_kept(n: &NeighbourMessage) -> bool {
    n.header.flags.contains(NeighbourFlags::Own)
        && u16::from(n.header.state) & (NUD_PERMANENT | NUD_NOARP) != 0
}

/// The IFLA_INFO_DATA that recreates `cfg` on the underlay device `underlay` (an index in
/// the namespace the vxlan's socket goes to).
pub fn info_from_config(cfg: &Vxlan, underlay: Option<u32>) -> Result<Vec<InfoVxlan>, DriverError> {
    if cfg.netns_outside {
        return Err(DriverError::new(
            "its UDP socket lived in another namespace and it had no underlay device, so \
             nothing tells which namespace to put it in; give it an underlay device (dev) or \
             create it inside the namespace",
        ));
    }
    let mut out = Vec::with_capacity(cfg.options.len() + 1);
    if let Some(i) = underlay {
        out.push(InfoVxlan::Link(i));
    }
    for attr in &cfg.options {
        if attr.kind == 0 || attr.kind > 0x3fff || attr.kind as u16 == IFLA_VXLAN_LINK {
            return Err(DriverError::new(format!(
                "attribute {} ({}) is malformed",
                attr.kind, attr.name
            )));
        }
        if attr.kind as u16 == IFLA_VXLAN_REMCSUM_RX && attr.value.iter().all(|b| *b == 0) {
            // Off is the default, and a kernel with IFLA_VXLAN_RESERVED_BITS counts its mere
            // presence as using the RCO header bits, then refuses the default reserved bits.
            continue;
        }
        if attr.kind as u16 == IFLA_VXLAN_TTL_INHERIT {
            if attr.value.iter().any(|b| *b != 0) {
                out.push(InfoVxlan::Other(DefaultNla::new(
                    IFLA_VXLAN_TTL_INHERIT,
                    vec![],
                )));
            }
            continue;
        }
        out.push(InfoVxlan::Other(DefaultNla::new(
            attr.kind as u16,
            attr.value.clone(),
        )));
    }
    Ok(out)
}

fn remote(cfg: &Vxlan) -> Option<&[u8]> {
    cfg.options
        .iter()
        .find(|o| {
            matches!(o.kind as u16, IFLA_VXLAN_GROUP | IFLA_VXLAN_GROUP6)
                && o.value.iter().any(|b| *b != 0)
        })
        .map(|o| o.value.as_slice())
}

fn lladdr(msg: &NeighbourMessage) -> Option<&[u8]> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) => Some(m.as_slice()),
        _ => None,
    })
}

fn dst(msg: &NeighbourMessage) -> Option<Vec<u8>> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Other(d)) => Some(d.clone()),
        NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => Some(d.octets().to_vec()),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(d)) => Some(d.octets().to_vec()),
        _ => None,
    })
}

/// The requests that give a freshly made vxlan (ifindex `index`) its forwarding entries:
/// the image's but the default destination the kernel makes by itself from `remote`, and the
/// removal of that one when the image no longer had it.
pub fn fdb_requests(
    cfg: &Vxlan,
    name: &str,
    index: u32,
    cx: &RestoreCx<'_>,
) -> Result<Vec<Request>, DriverError> {
    let mut out = Vec::new();
    let mut has_default = false;
    let remote = remote(cfg).map(<[u8]>::to_vec);
    for e in &cfg.fdb {
        let mut msg: NeighbourMessage =
            netcr_core::state::decode(&e.message, "forwarding entry").map_err(DriverError::new)?;
        let plain = !msg.attributes.iter().any(|a| {
            matches!(
                a,
                NeighbourAttribute::Port(_)
                    | NeighbourAttribute::Vni(_)
                    | NeighbourAttribute::SourceVni(_)
            )
        });
        if lladdr(&msg).is_some_and(|m| m.iter().all(|b| *b == 0))
            && dst(&msg) == remote
            && plain
            && e.via.is_empty()
            && e.via_underlay == cx.lower_index.is_some()
        {
            // The default destination the kernel makes from `remote` on the underlay: it is
            // there already. (Sending it again would fail for an underlay outside the
            // namespace: the kernel looks NDA_IFINDEX up in the vxlan's own namespace.)
            has_default = true;
            continue;
        }
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        if e.via_underlay {
            let i = cx.lower_index.ok_or_else(|| {
                DriverError::new(
                    "a forwarding entry goes via the underlay device, which is unknown",
                )
            })?;
            msg.attributes.push(NeighbourAttribute::IfIndex(i));
        } else if !e.via.is_empty() {
            let i = (cx.index_of)(&e.via).ok_or_else(|| {
                DriverError::new(format!(
                    "a forwarding entry goes via \"{}\", which was not restored",
                    e.via
                ))
            })?;
            msg.attributes.push(NeighbourAttribute::IfIndex(i));
        }
        out.push(Request {
            message: RouteNetlinkMessage::NewNeighbour(msg),
            flags: NLM_F_CREATE | NLM_F_APPEND,
            context: format!("adding a forwarding entry to vxlan \"{name}\""),
        });
    }
    if let (Some(remote), false) = (remote, has_default) {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.flags = NeighbourFlags::Own;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Other(
                remote,
            )));
        out.push(Request::change(
            RouteNetlinkMessage::DelNeighbour(msg),
            format!("removing the default destination of vxlan \"{name}\", which the image does not have"),
        ));
    }
    Ok(out)
}

fn display(attr: &NamedAttr) -> (String, String) {
    let spec = ATTRS.iter().find(|(k, _, _)| *k as u32 == attr.kind);
    let name = match attr_name(attr.kind as u16) {
        "" => format!("attr{}", attr.kind),
        n => n.to_string(),
    };
    let v = attr.value.as_slice();
    let text = match (spec.map(|s| s.2), v.len()) {
        (Some(Ty::U8), 1) => v[0].to_string(),
        (Some(Ty::U32), 4) => u32::from_ne_bytes([v[0], v[1], v[2], v[3]]).to_string(),
        (Some(Ty::Be16), 2) => u16::from_be_bytes([v[0], v[1]]).to_string(),
        (Some(Ty::Be32), 4) => format!("{:#x}", u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
        (Some(Ty::Ipv4), 4) => std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string(),
        (Some(Ty::Ipv6), 16) => {
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(v).expect("16 bytes")).to_string()
        }
        (Some(Ty::PortRange), 4) => format!(
            "{} {}",
            u16::from_be_bytes([v[0], v[1]]),
            u16::from_be_bytes([v[2], v[3]])
        ),
        (Some(Ty::Flag), 0) => "on".into(),
        _ if v.is_empty() => "-".into(),
        _ => v.iter().map(|b| format!("{b:02x}")).collect(),
    };
    (name, text)
}

fn fdb_text(e: &VxlanFdb) -> String {
    let Ok(msg) = netcr_core::state::decode::<NeighbourMessage>(&e.message, "forwarding entry")
    else {
        return "(undecodable)".into();
    };
    let mac = lladdr(&msg)
        .map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default();
    let mut s = mac;
    if let Some(d) = dst(&msg) {
        let ip = match d.len() {
            4 => std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3]).to_string(),
            16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(d.as_slice()).expect("16"))
                .to_string(),
            _ => format!("{d:02x?}"),
        };
        s.push_str(&format!(" dst {ip}"));
    }
    for a in &msg.attributes {
        match a {
            NeighbourAttribute::Port(p) => s.push_str(&format!(" port {p}")),
            NeighbourAttribute::Vni(v) => s.push_str(&format!(" vni {v}")),
            NeighbourAttribute::SourceVni(v) => s.push_str(&format!(" src_vni {v}")),
            _ => {}
        }
    }
    if e.via_underlay {
        s.push_str(" via underlay");
    } else if !e.via.is_empty() {
        s.push_str(&format!(" via {}", e.via));
    }
    let state = u16::from(msg.header.state);
    s.push_str(if state & NUD_PERMANENT != 0 {
        " permanent"
    } else {
        " static"
    });
    s
}

impl KindDriver for VxlanDriver {
    const KIND: &'static str = "vxlan";
    const WANTS_BRIDGE_FAMILY: bool = true;
    type Config = Vxlan;

    /// `cx.fdb` is the vxlan's bridge-family neighbour dump; `cx.name_of` names devices of
    /// the dumped namespace.
    fn dump_config(
        &self,
        data: Option<&InfoData>,
        link: &LinkMessage,
        cx: &DumpCx<'_>,
    ) -> Result<Vxlan, DriverError> {
        let attrs = attrs(data);
        let mut cfg = Vxlan::default();
        for attr in attrs {
            let kind = attr.kind();
            if kind == IFLA_VXLAN_LINK {
                continue;
            }
            let mut value = vec![0; attr.value_len()];
            attr.emit_value(&mut value);
            cfg.options.push(NamedAttr {
                kind: kind as u32,
                name: attr_name(kind).to_string(),
                value,
            });
        }
        let underlay = underlay(attrs);
        let outside = link_netns_outside(link);
        cfg.netns_outside = outside && underlay.is_none();
        for n in cx.fdb.iter().filter(|n| fdb_entry_is_kept(n)) {
            let mut msg = n.clone();
            msg.header.ifindex = 0;
            let mut entry = VxlanFdb::default();
            let mut via = None;
            msg.attributes.retain(|a| match a {
                NeighbourAttribute::CacheInfo(_) => false,
                NeighbourAttribute::IfIndex(i) => {
                    via = Some(*i);
                    false
                }
                _ => true,
            });
            match via {
                None => {}
                Some(i) if Some(i) == underlay => entry.via_underlay = true,
                Some(i) if !outside => {
                    entry.via = (cx.name_of)(i).ok_or_else(|| {
                        DriverError::new(format!(
                            "a forwarding entry goes via if{i}, which is unknown"
                        ))
                    })?;
                }
                Some(i) => {
                    return Err(DriverError::new(format!(
                    "a forwarding entry goes via if{i} of another namespace, which netcr cannot name"
                )))
                }
            }
            entry.message = netcr_core::state::encode(&msg);
            cfg.fdb.push(entry);
        }
        cfg.fdb.sort_by(|a, b| {
            (&a.message, &a.via, a.via_underlay).cmp(&(&b.message, &b.via, b.via_underlay))
        });
        Ok(cfg)
    }

    fn lower_in_data(&self, data: Option<&InfoData>) -> LowerRef {
        LowerRef::from(underlay(attrs(data)))
    }

    fn request_data(
        &self,
        cfg: Vxlan,
        cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Ok(Some(InfoData::Vxlan(info_from_config(
            &cfg,
            cx.lower_index,
        )?)))
    }

    fn show(&self, cfg: &Vxlan) -> Result<Vec<(String, String)>, DriverError> {
        info_from_config(
            &Vxlan {
                netns_outside: false,
                ..cfg.clone()
            },
            None,
        )?;
        let mut out: Vec<(String, String)> = cfg.options.iter().map(display).collect();
        if cfg.netns_outside {
            out.push((
                "netns".into(),
                "another one, without an underlay device (cannot be restored)".into(),
            ));
        }
        for e in &cfg.fdb {
            out.push(("fdb".into(), fdb_text(e)));
        }
        Ok(out)
    }

    fn finish(
        &self,
        cfg: Vxlan,
        link: &v1::Link,
        index: u32,
        cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        fdb_requests(&cfg, &link.name, index, cx)
    }
}

#[cfg(test)]
mod tests;

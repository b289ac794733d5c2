//! Addresses, routes, policy rules and permanent neighbours: which the dump keeps (not what
//! the kernel makes by itself), how they are stored (the kernel's own message bodies plus the
//! device names they refer to), and how the restore turns them back into requests.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use netcr_image::v1;
use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use netlink_packet_route::neighbour::{NeighbourMessage, NeighbourState};
use netlink_packet_route::route::{
    RouteAttribute, RouteFlags, RouteMessage, RouteNextHopFlags, RouteProtocol,
};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// The routing table the kernel fills with local and broadcast routes by itself.
const RT_TABLE_LOCAL: u32 = 255;

/// Bytes of a message, as stored in the image.
pub fn encode<M: Emitable>(msg: &M) -> Vec<u8> {
    let mut buf = vec![0; msg.buffer_len()];
    msg.emit(&mut buf);
    buf
}

/// A stored message body, parsed back.
pub fn decode<M: Parseable<[u8]>>(bytes: &[u8], what: &str) -> Result<M, String> {
    M::parse(bytes).map_err(|e| format!("stored {what} does not parse: {e}"))
}

fn address_ip(msg: &AddressMessage) -> Option<IpAddr> {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        })
}

fn address_flags(msg: &AddressMessage) -> AddressFlags {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(msg.header.flags.bits() as u32))
}

/// The IPv6 link-local address the kernel derives from a MAC (EUI-64).
pub fn eui64_link_local(mac: &[u8]) -> Option<Ipv6Addr> {
    let m: [u8; 6] = mac.try_into().ok()?;
    Some(Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ]))
}

/// Whether the kernel makes this address by itself (so the restore must not add it):
/// loopback's 127.0.0.1/8 and ::1/128, the EUI-64 link-local, and privacy addresses.
pub fn address_is_kernel_made(msg: &AddressMessage, dev: &v1::Link) -> bool {
    let Some(ip) = address_ip(msg) else {
        return true;
    };
    // Since 6.1 the kernel says so itself (IFA_PROTO): loopback's, link-local (whatever the
    // address generation mode: ipvlan's are not EUI-64) and router-advertised addresses.
    let kernel_proto = msg.attributes.iter().any(|a| {
        matches!(
            a,
            AddressAttribute::Protocol(
                AddressProtocol::Loopback
                    | AddressProtocol::LinkLocal
                    | AddressProtocol::RouterAnnouncement
            )
        )
    });
    if kernel_proto {
        return true;
    }
    // IFA_F_TEMPORARY (privacy address) shares its bit with IFA_F_SECONDARY.
    if matches!(ip, IpAddr::V6(_)) && address_flags(msg).contains(AddressFlags::Secondary) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => {
            crate::common::is_loopback(dev)
                && v4.octets() == [127, 0, 0, 1]
                && msg.header.prefix_len == 8
        }
        IpAddr::V6(v6) => {
            (crate::common::is_loopback(dev) && v6 == Ipv6Addr::LOCALHOST)
                || (msg.header.prefix_len == 64 && Some(v6) == eui64_link_local(&dev.address))
        }
    }
}

/// Whether the kernel makes this route by itself: the local table, and routes with protocol
/// "kernel" (prefix routes of addresses, IPv6 link-local and multicast routes).
pub fn route_is_kernel_made(msg: &RouteMessage) -> bool {
    route_table(msg) == RT_TABLE_LOCAL || msg.header.protocol == RouteProtocol::Kernel
}

/// A route's table (RTA_TABLE beats the 8-bit header field).
pub fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(msg.header.table as u32)
}

/// Whether this is one of the default rules every namespace starts with (protocol kernel).
pub fn rule_is_kernel_made(msg: &RuleMessage) -> bool {
    msg.attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Protocol(RouteProtocol::Kernel)))
}

/// Only permanent entries are configuration; the rest is cache.
pub fn neighbour_is_kept(msg: &NeighbourMessage) -> bool {
    msg.header.state == NeighbourState::Permanent
}

/// Resolves a device index of the dumped namespace to its name.
pub type NameOf<'a> = dyn Fn(u32) -> Option<String> + 'a;

/// An address for the image.
pub fn address_record(msg: &AddressMessage, dev: &str) -> v1::Address {
    v1::Address {
        dev: dev.to_string(),
        message: encode(msg),
    }
}

/// A route for the image, with its devices by name.
pub fn route_record(msg: &RouteMessage, name_of: &NameOf<'_>) -> v1::Route {
    let mut rec = v1::Route {
        message: encode(msg),
        ..Default::default()
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => rec.oif = name_of(*i).unwrap_or_default(),
            RouteAttribute::Iif(i) => rec.iif = name_of(*i).unwrap_or_default(),
            RouteAttribute::MultiPath(hops) => {
                rec.nexthop_devs = hops
                    .iter()
                    .map(|h| name_of(h.interface_index).unwrap_or_default())
                    .collect()
            }
            _ => {}
        }
    }
    rec
}

/// Resolves a device name in the target to its index at restore time.
pub type IndexOf<'a> = dyn Fn(&str) -> Option<u32> + 'a;

/// The index `dev` has in the target, or an error naming `what` refers to it.
pub(crate) fn index(index_of: &IndexOf<'_>, dev: &str, what: &str) -> Result<u32, String> {
    index_of(dev).ok_or_else(|| {
        format!("{what} refers to device \"{dev}\", which is not in the restored namespace")
    })
}

/// The request that re-adds a stored address on the restored device.
pub fn address_request(
    rec: &v1::Address,
    index_of: &IndexOf<'_>,
) -> Result<(AddressMessage, String), String> {
    let mut msg: AddressMessage = decode(&rec.message, "address")?;
    msg.header.index = index(index_of, &rec.dev, "an address")?;
    // State the kernel keeps for itself, not configuration.
    let state = AddressHeaderFlags::Secondary
        | AddressHeaderFlags::Tentative
        | AddressHeaderFlags::Deprecated
        | AddressHeaderFlags::Dadfailed
        | AddressHeaderFlags::Permanent;
    msg.header.flags.remove(state);
    for attr in msg.attributes.iter_mut() {
        if let AddressAttribute::Flags(f) = attr {
            f.remove(
                AddressFlags::Secondary
                    | AddressFlags::Tentative
                    | AddressFlags::Deprecated
                    | AddressFlags::Dadfailed
                    | AddressFlags::Permanent,
            );
        }
    }
    // Lifetimes: the kernel takes ifa_valid/ifa_prefered from IFA_CACHEINFO; timestamps are its own.
    for attr in msg.attributes.iter_mut() {
        if let AddressAttribute::CacheInfo(ci) = attr {
            ci.cstamp = 0;
            ci.tstamp = 0;
        }
    }
    let what = format!(
        "adding address {}/{} to {}",
        address_ip(&msg).map(|i| i.to_string()).unwrap_or_default(),
        msg.header.prefix_len,
        rec.dev
    );
    Ok((msg, what))
}

/// The route flags (rtm_flags) that are configuration: onlink and pervasive. The others are
/// the kernel's view (dead, linkdown, offload, trap, ...) or ask for something else on a
/// request (RTM_F_CLONED would make an IPv6 cache entry).
pub fn route_config_flags() -> RouteFlags {
    RouteFlags::Onlink | RouteFlags::Pervasive
}

/// The same for each next hop of a multipath route (rtnh_flags).
fn hop_config_flags() -> RouteNextHopFlags {
    RouteNextHopFlags::Onlink | RouteNextHopFlags::Pervasive
}

/// The seconds a route had left when it was dumped (IPv6 `expires`: rta_expires of
/// RTA_CACHEINFO, in clock_t), `None` for a route that does not expire. A route that had
/// already expired (a negative value) gets one second.
pub fn route_expires(msg: &RouteMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::CacheInfo(ci) if ci.expires != 0 => {
            // rta_expires is signed in the kernel (__s32), carried here as u32.
            let ticks = ci.expires as i32;
            Some(if ticks > 0 {
                (ticks as u32).div_ceil(crate::nexthops::USER_HZ)
            } else {
                1
            })
        }
        _ => None,
    })
}

/// The request that re-adds a stored route, with its devices resolved again. A route that
/// uses a nexthop object (RTA_NH_ID) is sent with the id alone: the gateway, device,
/// multipath and encapsulation the kernel reports with it are the nexthop's, and the
/// kernel refuses both at once, as it does the nexthop's flags. A route that expires is
/// sent with the seconds it had left at the dump (RTA_EXPIRES).
pub fn route_request(
    rec: &v1::Route,
    index_of: &IndexOf<'_>,
) -> Result<(RouteMessage, String), String> {
    let mut msg: RouteMessage = decode(&rec.message, "route")?;
    let expires = route_expires(&msg);
    let uses_nexthop = crate::nexthops::route_nexthop_id(&msg).is_some();
    if uses_nexthop {
        msg.attributes.retain(|a| {
            !matches!(
                a,
                RouteAttribute::Oif(_)
                    | RouteAttribute::Gateway(_)
                    | RouteAttribute::Via(_)
                    | RouteAttribute::MultiPath(_)
                    | RouteAttribute::Encap(_)
                    | RouteAttribute::EncapType(_)
            )
        });
    }
    for attr in msg.attributes.iter_mut() {
        match attr {
            RouteAttribute::Oif(i) => *i = index(index_of, &rec.oif, "a route")?,
            RouteAttribute::Iif(i) => *i = index(index_of, &rec.iif, "a route")?,
            RouteAttribute::MultiPath(hops) => {
                for (hop, dev) in hops.iter_mut().zip(&rec.nexthop_devs) {
                    hop.interface_index = index(index_of, dev, "a multipath route")?;
                    hop.flags &= hop_config_flags();
                }
            }
            _ => {}
        }
    }
    msg.attributes
        .retain(|a| !matches!(a, RouteAttribute::CacheInfo(_) | RouteAttribute::Expires(_)));
    if let Some(seconds) = expires {
        msg.attributes.push(RouteAttribute::Expires(seconds));
    }
    msg.header.flags = if uses_nexthop {
        RouteFlags::empty()
    } else {
        msg.header.flags & route_config_flags()
    };
    let what = format!("adding route {}", describe_route(&msg, rec));
    Ok((msg, what))
}

/// A short description of a route for messages: destination, table, device.
pub fn describe_route(msg: &RouteMessage, rec: &v1::Route) -> String {
    let dst = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => Some(format!("{d:?}")),
            _ => None,
        })
        .map(|d| {
            format!(
                "{}/{}",
                strip_debug(&d),
                msg.header.destination_prefix_length
            )
        })
        .unwrap_or_else(|| "default".to_string());
    let family = if msg.header.address_family == AddressFamily::Inet6 {
        "IPv6 "
    } else {
        ""
    };
    let via = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Gateway(g) => Some(format!(" via {}", strip_debug(&format!("{g:?}")))),
            _ => None,
        })
        .unwrap_or_default();
    let kind = match msg.header.kind {
        netlink_packet_route::route::RouteType::Unicast => String::new(),
        other => format!("{other:?} ").to_lowercase(),
    };
    let dev = if rec.oif.is_empty() {
        String::new()
    } else {
        format!(" dev {}", rec.oif)
    };
    let nhid = crate::nexthops::route_nexthop_id(msg)
        .map(|id| format!(" nhid {id}"))
        .unwrap_or_default();
    let onlink = if msg.header.flags.contains(RouteFlags::Onlink) {
        " onlink"
    } else {
        ""
    };
    format!(
        "{family}{kind}{dst}{nhid}{via} table {}{dev}{onlink}",
        route_table(msg)
    )
}

fn strip_debug(s: &str) -> String {
    // RouteAddress debug prints "Inet(10.0.0.0)"; keep the address.
    match (s.find('('), s.rfind(')')) {
        (Some(a), Some(b)) if b > a => s[a + 1..b].to_string(),
        _ => s.to_string(),
    }
}

/// The request that re-adds a stored rule.
pub fn rule_request(rec: &v1::Rule) -> Result<(RuleMessage, String), String> {
    let msg: RuleMessage = decode(&rec.message, "rule")?;
    let prio = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0);
    Ok((msg, format!("adding rule with priority {prio}")))
}

/// The request that re-adds a stored permanent neighbour.
pub fn neighbour_request(
    rec: &v1::Neighbour,
    index_of: &IndexOf<'_>,
) -> Result<(NeighbourMessage, String), String> {
    let mut msg: NeighbourMessage = decode(&rec.message, "neighbour")?;
    msg.header.ifindex = index(index_of, &rec.dev, "a neighbour")?;
    msg.attributes.retain(|a| {
        !matches!(
            a,
            netlink_packet_route::neighbour::NeighbourAttribute::CacheInfo(_)
                | netlink_packet_route::neighbour::NeighbourAttribute::Probes(_)
        )
    });
    Ok((msg, format!("adding a permanent neighbour on {}", rec.dev)))
}

/// Wraps a request body in its rtnetlink message.
pub fn new_address(msg: AddressMessage) -> RouteNetlinkMessage {
    RouteNetlinkMessage::NewAddress(msg)
}

/// Index → name of the links of one namespace dump.
pub fn names_by_index(links: &[netlink_packet_route::link::LinkMessage]) -> HashMap<u32, String> {
    links
        .iter()
        .map(|l| (l.header.index, crate::common::parse(l).name.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn fe80(proto: Option<AddressProtocol>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = 64;
        m.attributes.push(AddressAttribute::Address(
            "fe80::22c5:2d00:1ee:c83d".parse().unwrap(),
        ));
        if let Some(p) = proto {
            m.attributes.push(AddressAttribute::Protocol(p));
        }
        m
    }

    #[rstest]
    #[case::link_local_by_proto(Some(AddressProtocol::LinkLocal), true)]
    #[case::router_advertised(Some(AddressProtocol::RouterAnnouncement), true)]
    #[case::users_own(None, false)]
    #[case::users_own_with_a_protocol(Some(AddressProtocol::Other(42)), false)]
    fn kernel_made_addresses_are_known_by_their_protocol(
        #[case] proto: Option<AddressProtocol>,
        #[case] kernel: bool,
    ) {
        // Not an EUI-64 address of the device: only IFA_PROTO tells (an ipvlan's link-local).
        let dev = v1::Link {
            name: "ipl2".into(),
            kind: "ipvlan".into(),
            address: vec![2, 0, 0, 0, 0, 1],
            ..Default::default()
        };
        assert_eq!(address_is_kernel_made(&fe80(proto), &dev), kernel);
    }
}

//! Addresses, routes, policy rules and permanent neighbours: which the dump keeps (not what
//! the kernel makes by itself), how they are stored (the kernel's own message bodies plus the
//! device names they refer to), and how the restore turns them back into requests.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

use netcr_image::v1;
use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use netlink_packet_route::link::LinkMessage;
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
        // The kernel adds it when lo comes up: on a lo that is down it is the user's (or
        // a leftover), and the restore, which leaves lo down, must add it.
        IpAddr::V4(v4) => {
            crate::common::is_loopback(dev)
                && dev.flags & libc::IFF_UP as u32 != 0
                && v4.octets() == [127, 0, 0, 1]
                && msg.header.prefix_len == 8
        }
        IpAddr::V6(v6) => {
            (crate::common::is_loopback(dev) && v6 == Ipv6Addr::LOCALHOST)
                || (msg.header.prefix_len == 64 && Some(v6) == eui64_link_local(&dev.address))
        }
    }
}

/// What the kernel derives routes from in one namespace: its addresses and loopback devices.
/// A route with protocol "kernel" is the kernel's own when these explain it; any other (one
/// a user or NetworkManager added with `proto kernel`, e.g. for a `noprefixroute` address)
/// is configuration.
#[derive(Debug, Default, Clone)]
pub struct Derived {
    /// device -> the table of its L3 master (a VRF, or the port of one): the kernel puts the
    /// routes it derives for that device there instead of the main and local tables.
    l3mdev: HashMap<u32, u32>,
    /// The addresses, whose local routes the kernel makes (on the address's device, or on lo
    /// for IPv6 on older kernels: the device is not compared).
    local: HashSet<IpAddr>,
    /// (device, address): broadcast routes (an address's broadcast, its subnet's).
    broadcast: HashSet<(u32, IpAddr)>,
    /// (device, prefix, length, metric): prefix routes of primary addresses.
    prefixes: HashSet<(u32, IpAddr, u8, u32)>,
}

/// The IPv6 metric of prefix routes the kernel adds for addresses (IP6_RT_PRIO_ADDRCONF).
const IP6_RT_PRIO_ADDRCONF: u32 = 256;
const RT_TABLE_MAIN: u32 = 254;

fn masked(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// The table each L3 master device (a VRF) and each of its ports routes in, by ifindex: the
/// VRF's IFLA_VRF_TABLE, a port's IFLA_VRF_PORT_TABLE. The kernel puts the routes it derives
/// from their addresses there (l3mdev_fib_table) instead of the main and local tables.
pub fn l3mdev_tables(links: &[LinkMessage]) -> HashMap<u32, u32> {
    use netlink_packet_route::link::{InfoData, InfoPortData, InfoVrf, LinkAttribute, LinkInfo};
    let mut out = HashMap::new();
    for link in links {
        let infos = link.attributes.iter().filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        });
        for info in infos.flatten() {
            let attrs = match info {
                LinkInfo::Data(InfoData::Vrf(attrs)) => attrs,
                LinkInfo::PortData(InfoPortData::VrfPort(attrs)) => attrs,
                _ => continue,
            };
            for attr in attrs {
                if let InfoVrf::TableId(t) = attr {
                    out.insert(link.header.index, *t);
                }
            }
        }
    }
    out
}

impl Derived {
    /// What the dumped `addresses` make the kernel derive, with the L3 master tables of
    /// their devices ([`l3mdev_tables`]).
    pub fn new(addresses: &[AddressMessage], l3mdev: HashMap<u32, u32>) -> Derived {
        let mut d = Derived {
            l3mdev,
            ..Derived::default()
        };
        for a in addresses {
            let dev = a.header.index;
            let len = a.header.prefix_len;
            let flags = address_flags(a);
            let local = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let Some(me) = local.or(address) else {
                continue;
            };
            let peer = address.unwrap_or(me);
            d.local.insert(me);
            let metric = a
                .attributes
                .iter()
                .find_map(|x| match x {
                    AddressAttribute::RoutePriority(p) => Some(*p),
                    _ => None,
                })
                .unwrap_or(0);
            let prefix_route = !flags.contains(AddressFlags::Noprefixroute);
            match me {
                IpAddr::V4(_) => {
                    for x in &a.attributes {
                        if let AddressAttribute::Broadcast(b) = x {
                            d.broadcast.insert((dev, IpAddr::V4(*b)));
                        }
                    }
                    if flags.contains(AddressFlags::Secondary) {
                        continue;
                    }
                    let prefix = masked(peer, len);
                    if prefix_route {
                        d.prefixes.insert((dev, prefix, len, metric));
                    }
                    if len < 31 {
                        if let IpAddr::V4(p) = prefix {
                            let host = u32::MAX >> len;
                            d.broadcast
                                .insert((dev, IpAddr::V4((u32::from(p) | host).into())));
                        }
                    }
                }
                IpAddr::V6(_) => {
                    let metric = if metric == 0 {
                        IP6_RT_PRIO_ADDRCONF
                    } else {
                        metric
                    };
                    if prefix_route {
                        d.prefixes.insert((dev, masked(me, len), len, metric));
                        d.prefixes.insert((dev, masked(peer, len), len, metric));
                    }
                    if peer != me {
                        d.prefixes.insert((dev, peer, 128, metric));
                    }
                }
            }
        }
        d
    }

    /// Whether the kernel made `msg` itself from the namespace's addresses and devices.
    pub fn explains(&self, msg: &RouteMessage) -> bool {
        use netlink_packet_route::route::{RouteAddress, RouteType};
        if msg.header.protocol != RouteProtocol::Kernel {
            return false;
        }
        let oif = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let metric = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Priority(p) => Some(*p),
                _ => None,
            })
            .unwrap_or(0);
        let dst = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
            _ => None,
        });
        let len = msg.header.destination_prefix_length;
        let (Some(dev), Some(dst)) = (oif, dst) else {
            return false;
        };
        let v6 = dst.is_ipv6();
        let host = if v6 { 128 } else { 32 };
        // A VRF's routes and its ports' go to the VRF's table, both kinds.
        let (local, main) = match self.l3mdev.get(&dev) {
            Some(&t) => (t, t),
            None => (RT_TABLE_LOCAL, RT_TABLE_MAIN),
        };
        let table = route_table(msg);
        match (table == local, table == main, msg.header.kind) {
            (true, _, RouteType::Local) if len == host => self.local.contains(&dst),
            // Loopback's prefix (127.0.0.0/8) is a local route of the local table.
            (true, _, RouteType::Local) => self
                .prefixes
                .iter()
                .any(|(d, p, l, _)| *d == dev && *p == dst && *l == len),
            (true, _, RouteType::Broadcast) => len == host && self.broadcast.contains(&(dev, dst)),
            // IPv6: every device's multicast route, and the anycast routes of subnet
            // routers and joined anycast addresses.
            (true, _, RouteType::Multicast | RouteType::Anycast) => v6,
            (_, true, RouteType::Unicast) => {
                let link_local = v6
                    && len == 64
                    && metric == IP6_RT_PRIO_ADDRCONF
                    && dst == IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0));
                link_local || self.prefixes.contains(&(dev, dst, len, metric))
            }
            _ => false,
        }
    }
}

/// Whether the kernel makes this route by itself (so the dump leaves it out and the restore
/// must not add it): see [`Derived`].
pub fn route_is_kernel_made(msg: &RouteMessage, derived: &Derived) -> bool {
    derived.explains(msg)
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

/// The default rules the kernel makes in every namespace: (family, priority, table).
pub const DEFAULT_RULES: &[(AddressFamily, u32, u32)] = &[
    (AddressFamily::Inet, 0, 255),
    (AddressFamily::Inet, 32766, 254),
    (AddressFamily::Inet, 32767, 253),
    (AddressFamily::Inet6, 0, 255),
    (AddressFamily::Inet6, 32766, 254),
];

fn rule_priority(msg: &RuleMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn rule_table(msg: &RuleMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

/// A default rule as the kernel dumps it.
pub fn default_rule(family: AddressFamily, priority: u32, table: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family;
    msg.header.table = table as u8;
    msg.header.action = netlink_packet_route::rule::RuleAction::ToTable;
    msg.attributes.push(RuleAttribute::Table(table));
    msg.attributes.push(RuleAttribute::Priority(priority));
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Kernel));
    msg
}

/// The priority of the `l3mdev` rule the kernel adds with a namespace's first VRF
/// (FIB_RULE_PREF in drivers/net/vrf.c).
pub const L3MDEV_RULE_PRIORITY: u32 = 1000;

/// The `l3mdev` rule the kernel adds, in `family`, when the namespace's first VRF is made
/// (`1000: from all lookup [l3mdev-table]`, protocol kernel): what deletes it.
pub fn l3mdev_rule(family: AddressFamily) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family;
    msg.header.action = netlink_packet_route::rule::RuleAction::ToTable;
    msg.attributes
        .push(RuleAttribute::Priority(L3MDEV_RULE_PRIORITY));
    msg.attributes.push(RuleAttribute::L3MDev(true));
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Kernel));
    msg
}

/// Whether `msg` is one of the kernel's default rules (with `vrf`, its l3mdev rules too).
pub fn is_default_rule(msg: &RuleMessage, vrf: bool) -> bool {
    DEFAULT_RULES
        .iter()
        .any(|d| default_rule(d.0, d.1, d.2) == *msg)
        || (vrf
            && [AddressFamily::Inet, AddressFamily::Inet6]
                .iter()
                .any(|f| l3mdev_rule(*f) == *msg))
}

/// The kernel's default rules that `rules` (one namespace's dump) lacks: the user deleted
/// them (`ip rule del pref 32766`). A family without any rule at all is a kernel without
/// policy routing for it, not one whose defaults were deleted. With `vrf` (the namespace
/// has a VRF, so the kernel added its l3mdev rules), a deleted l3mdev rule is one too: a
/// restore that makes a VRF gets it back from the kernel, and must delete it again.
pub fn deleted_default_rules(rules: &[RuleMessage], vrf: bool) -> Vec<RuleMessage> {
    let has_family = |family: AddressFamily| rules.iter().any(|r| r.header.family == family);
    let mut out: Vec<RuleMessage> = DEFAULT_RULES
        .iter()
        .filter(|(family, _, _)| has_family(*family))
        .filter(|(family, priority, table)| {
            !rules.iter().any(|r| {
                r.header.family == *family
                    && rule_is_kernel_made(r)
                    && rule_priority(r) == *priority
                    && rule_table(r) == *table
            })
        })
        .map(|(family, priority, table)| default_rule(*family, *priority, *table))
        .collect();
    if vrf {
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let kept = rules.iter().any(|r| {
                r.header.family == family
                    && rule_is_kernel_made(r)
                    && rule_priority(r) == L3MDEV_RULE_PRIORITY
                    && r.attributes.contains(&RuleAttribute::L3MDev(true))
            });
            if has_family(family) && !kept {
                out.push(l3mdev_rule(family));
            }
        }
    }
    out
}

/// The request that deletes a default rule the image says was deleted.
pub fn rule_deletion(rec: &v1::Rule) -> Result<(RuleMessage, String), String> {
    let msg: RuleMessage = decode(&rec.message, "deleted default rule")?;
    let what = format!(
        "deleting the default rule with priority {} (table {})",
        rule_priority(&msg),
        rule_table(&msg)
    );
    Ok((msg, what))
}

/// Which neighbour entries are configuration the dump keeps: permanent entries, proxy
/// entries on a device, and noarp entries the user added. The kernel makes noarp entries
/// itself for multicast and broadcast destinations and on devices that do no ARP (lo,
/// NOARP devices); those are cache. `broadcasts` holds the namespace's broadcast addresses.
pub fn neighbour_is_kept(
    msg: &NeighbourMessage,
    dev: &v1::Link,
    broadcasts: &HashSet<IpAddr>,
) -> bool {
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags};
    if crate::families::neighbour_not_kept(msg).is_some() {
        return false;
    }
    if msg.header.flags.contains(NeighbourFlags::Proxy) {
        return true;
    }
    match msg.header.state {
        NeighbourState::Permanent => true,
        NeighbourState::Noarp => {
            let dst = msg.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                    Some(IpAddr::V4(*ip))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                    Some(IpAddr::V6(*ip))
                }
                _ => None,
            });
            let Some(dst) = dst else {
                return false;
            };
            let no_arp = dev.flags & libc::IFF_NOARP as u32 != 0 || crate::common::is_loopback(dev);
            let kernels = dst.is_multicast()
                || broadcasts.contains(&dst)
                || dst == IpAddr::V4(std::net::Ipv4Addr::BROADCAST);
            !no_arp && !kernels
        }
        _ => false,
    }
}

/// The broadcast destinations of a namespace: its broadcast routes (table local).
pub fn broadcast_addresses(routes: &[RouteMessage]) -> HashSet<IpAddr> {
    use netlink_packet_route::route::{RouteAddress, RouteType};
    routes
        .iter()
        .filter(|r| r.header.kind == RouteType::Broadcast)
        .filter_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
                _ => None,
            })
        })
        .collect()
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

/// The image's address records, in the order the restore adds them so that each device's
/// list comes back as it was. IPv4 keeps the dump's order (primaries, then secondaries, each
/// in the order they were added: the kernel appends). The kernel puts a new IPv6 address
/// before the older ones of its scope, so each device's IPv6 addresses are stored oldest
/// first, the reverse of the dump.
pub fn in_creation_order(addresses: Vec<(&AddressMessage, &String)>) -> Vec<v1::Address> {
    let (v6, v4): (Vec<_>, Vec<_>) = addresses
        .into_iter()
        .partition(|(a, _)| a.header.family == AddressFamily::Inet6);
    let mut out: Vec<v1::Address> = v4.iter().map(|(a, d)| address_record(a, d)).collect();
    let mut devices: Vec<&String> = Vec::new();
    for (_, d) in &v6 {
        if !devices.contains(d) {
            devices.push(d);
        }
    }
    for dev in devices {
        out.extend(
            v6.iter()
                .rev()
                .filter(|(_, d)| *d == dev)
                .map(|(a, d)| address_record(a, d)),
        );
    }
    out
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

/// Whether a stored route goes through a gateway (RTA_GATEWAY, RTA_VIA, or a multipath hop
/// with one), which another route must make reachable first.
pub fn route_has_gateway(rec: &v1::Route) -> bool {
    let Ok(msg) = decode::<RouteMessage>(&rec.message, "route") else {
        return false;
    };
    msg.attributes.iter().any(|a| match a {
        RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => true,
        RouteAttribute::MultiPath(hops) => hops.iter().any(|h| {
            h.attributes
                .iter()
                .any(|x| matches!(x, RouteAttribute::Gateway(_) | RouteAttribute::Via(_)))
        }),
        _ => false,
    })
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

/// The request that re-adds a stored neighbour (permanent, noarp or proxy).
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
    Ok((msg, format!("adding a neighbour on {}", rec.dev)))
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

    fn v4(dev: u32, ip: &str, len: u8, flags: AddressFlags) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.index = dev;
        m.header.prefix_len = len;
        let ip: IpAddr = ip.parse().unwrap();
        m.attributes.push(AddressAttribute::Local(ip));
        m.attributes.push(AddressAttribute::Address(ip));
        m.attributes.push(AddressAttribute::Flags(flags));
        m
    }

    fn v6(dev: u32, ip: &str, len: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.index = dev;
        m.header.prefix_len = len;
        m.attributes
            .push(AddressAttribute::Address(ip.parse().unwrap()));
        m
    }

    fn route(
        table: u32,
        kind: netlink_packet_route::route::RouteType,
        dst: &str,
        len: u8,
        proto: RouteProtocol,
        metric: Option<u32>,
    ) -> RouteMessage {
        let mut m = RouteMessage::default();
        let dst: IpAddr = dst.parse().unwrap();
        m.header.address_family = if dst.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.kind = kind;
        m.header.protocol = proto;
        m.header.destination_prefix_length = len;
        m.attributes.push(RouteAttribute::Table(table));
        m.attributes.push(RouteAttribute::Destination(dst.into()));
        m.attributes.push(RouteAttribute::Oif(3));
        if let Some(p) = metric {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        m
    }

    #[rstest]
    #[case::prefix_route(254, "unicast", "10.1.0.0", 24, RouteProtocol::Kernel, None, true)]
    #[case::local_route(255, "local", "10.1.0.1", 32, RouteProtocol::Kernel, None, true)]
    #[case::secondarys_local_route(255, "local", "10.1.0.2", 32, RouteProtocol::Kernel, None, true)]
    #[case::subnet_broadcast(255, "broadcast", "10.1.0.255", 32, RouteProtocol::Kernel, None, true)]
    #[case::peer_route(254, "unicast", "10.9.0.2", 32, RouteProtocol::Kernel, None, true)]
    #[case::v6_prefix(254, "unicast", "fd00::", 64, RouteProtocol::Kernel, Some(256), true)]
    #[case::v6_link_local(254, "unicast", "fe80::", 64, RouteProtocol::Kernel, Some(256), true)]
    #[case::v6_local(255, "local", "fd00::1", 128, RouteProtocol::Kernel, Some(0), true)]
    #[case::v6_multicast(255, "multicast", "ff00::", 8, RouteProtocol::Kernel, Some(256), true)]
    // NetworkManager's prefix route of a noprefixroute address: protocol kernel, metric 100.
    #[case::noprefixroute_by_hand(
        254,
        "unicast",
        "10.3.0.0",
        24,
        RouteProtocol::Kernel,
        Some(100),
        false
    )]
    // The same prefix with another metric than the kernel's.
    #[case::other_metric(254, "unicast", "10.1.0.0", 24, RouteProtocol::Kernel, Some(5), false)]
    #[case::v6_other_metric(254, "unicast", "fd00::", 64, RouteProtocol::Kernel, Some(100), false)]
    // AnyIP and a custom broadcast: the user's, in table local.
    #[case::anyip(255, "local", "10.50.0.0", 16, RouteProtocol::Boot, None, false)]
    #[case::custom_broadcast(255, "broadcast", "10.1.0.200", 32, RouteProtocol::Boot, None, false)]
    #[case::kernel_proto_broadcast_no_address_explains(
        255,
        "broadcast",
        "10.7.0.255",
        32,
        RouteProtocol::Kernel,
        None,
        false
    )]
    #[case::user_route(254, "unicast", "10.8.0.0", 24, RouteProtocol::Boot, None, false)]
    fn kernel_made_routes_are_those_the_addresses_explain(
        #[case] table: u32,
        #[case] kind: &str,
        #[case] dst: &str,
        #[case] len: u8,
        #[case] proto: RouteProtocol,
        #[case] metric: Option<u32>,
        #[case] kernel: bool,
    ) {
        use netlink_packet_route::route::RouteType;
        let kind = match kind {
            "unicast" => RouteType::Unicast,
            "local" => RouteType::Local,
            "broadcast" => RouteType::Broadcast,
            _ => RouteType::Multicast,
        };
        let mut peer = v4(3, "10.9.0.1", 32, AddressFlags::empty());
        peer.attributes
            .retain(|a| !matches!(a, AddressAttribute::Address(_)));
        peer.attributes
            .push(AddressAttribute::Address("10.9.0.2".parse().unwrap()));
        let addresses = [
            v4(3, "10.1.0.1", 24, AddressFlags::empty()),
            v4(3, "10.1.0.2", 24, AddressFlags::Secondary),
            v4(3, "10.3.0.1", 24, AddressFlags::Noprefixroute),
            peer,
            v6(3, "fd00::1", 64),
        ];
        let derived = Derived::new(&addresses, HashMap::new());
        let msg = route(table, kind, dst, len, proto, metric);
        assert_eq!(route_is_kernel_made(&msg, &derived), kernel);
    }

    /// A port of a VRF (device 3, table 10): the kernel's routes for its addresses are in
    /// table 10, local and prefix routes alike; the same routes in main or local are not the
    /// kernel's.
    #[rstest]
    #[case::prefix_route(10, "unicast", "10.1.0.0", 24, None, true)]
    #[case::local_route(10, "local", "10.1.0.1", 32, None, true)]
    #[case::broadcast(10, "broadcast", "10.1.0.255", 32, None, true)]
    #[case::v6_prefix(10, "unicast", "fd00::", 64, Some(256), true)]
    #[case::v6_link_local(10, "unicast", "fe80::", 64, Some(256), true)]
    #[case::v6_local(10, "local", "fd00::1", 128, Some(0), true)]
    #[case::v6_multicast(10, "multicast", "ff00::", 8, Some(256), true)]
    #[case::prefix_in_main(254, "unicast", "10.1.0.0", 24, None, false)]
    #[case::local_in_local(255, "local", "10.1.0.1", 32, None, false)]
    #[case::other_vrfs_table(11, "unicast", "10.1.0.0", 24, None, false)]
    fn a_vrf_ports_kernel_routes_are_in_the_vrfs_table(
        #[case] table: u32,
        #[case] kind: &str,
        #[case] dst: &str,
        #[case] len: u8,
        #[case] metric: Option<u32>,
        #[case] kernel: bool,
    ) {
        use netlink_packet_route::link::LinkInfo;
        use netlink_packet_route::link::{InfoPortData, InfoPortKind, InfoVrf, LinkAttribute};
        use netlink_packet_route::route::RouteType;
        let mut port = LinkMessage::default();
        port.header.index = 3;
        port.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Vrf),
            LinkInfo::PortData(InfoPortData::VrfPort(vec![InfoVrf::TableId(10)])),
        ]));
        let tables = l3mdev_tables(&[port]);
        assert_eq!(tables, HashMap::from([(3, 10)]));
        let kind = match kind {
            "unicast" => RouteType::Unicast,
            "local" => RouteType::Local,
            "broadcast" => RouteType::Broadcast,
            _ => RouteType::Multicast,
        };
        let addresses = [
            v4(3, "10.1.0.1", 24, AddressFlags::empty()),
            v6(3, "fd00::1", 64),
        ];
        let derived = Derived::new(&addresses, tables);
        let msg = route(table, kind, dst, len, RouteProtocol::Kernel, metric);
        assert_eq!(route_is_kernel_made(&msg, &derived), kernel);
    }

    #[rstest]
    fn deleted_default_rules_are_the_defaults_a_family_lacks() {
        let mut rules: Vec<RuleMessage> = DEFAULT_RULES
            .iter()
            .map(|(f, p, t)| default_rule(*f, *p, *t))
            .collect();
        assert!(deleted_default_rules(&rules, false).is_empty());
        // `ip rule del pref 32766; ip rule add pref 32766 lookup 100`.
        rules.remove(1);
        let mut users = default_rule(AddressFamily::Inet, 32766, 100);
        users
            .attributes
            .retain(|a| !matches!(a, RuleAttribute::Protocol(_)));
        rules.push(users);
        assert_eq!(
            deleted_default_rules(&rules, false),
            vec![default_rule(AddressFamily::Inet, 32766, 254)]
        );
        // A kernel without IPv6 policy routing dumps no IPv6 rule at all: nothing deleted.
        rules.retain(|r| r.header.family == AddressFamily::Inet);
        assert_eq!(deleted_default_rules(&rules, false).len(), 1);
    }

    /// The l3mdev rule as kernel 6.1 dumps it: table 0, suppress_prefixlen -1, l3mdev.
    fn dumped_l3mdev_rule(family: AddressFamily) -> RuleMessage {
        let mut msg = l3mdev_rule(family);
        msg.attributes.push(RuleAttribute::Table(0));
        msg.attributes
            .push(RuleAttribute::SuppressPrefixLen(u32::MAX));
        msg
    }

    #[rstest]
    fn with_a_vrf_a_deleted_l3mdev_rule_is_a_deleted_default_rule() {
        let mut rules: Vec<RuleMessage> = DEFAULT_RULES
            .iter()
            .map(|(f, p, t)| default_rule(*f, *p, *t))
            .collect();
        rules.push(dumped_l3mdev_rule(AddressFamily::Inet));
        rules.push(dumped_l3mdev_rule(AddressFamily::Inet6));
        assert!(deleted_default_rules(&rules, true).is_empty());
        // `ip -4 rule del pref 1000; ip -4 rule add pref 2000 l3mdev`: the user's rule
        // (protocol boot) does not stand for the kernel's.
        rules.retain(|r| !(r.header.family == AddressFamily::Inet && rule_priority(r) == 1000));
        let mut users = l3mdev_rule(AddressFamily::Inet);
        users.attributes = vec![
            RuleAttribute::Priority(2000),
            RuleAttribute::L3MDev(true),
            RuleAttribute::Protocol(RouteProtocol::Boot),
        ];
        rules.push(users);
        let deleted = deleted_default_rules(&rules, true);
        assert_eq!(deleted, vec![l3mdev_rule(AddressFamily::Inet)]);
        assert!(is_default_rule(&deleted[0], true));
        assert!(!is_default_rule(&deleted[0], false));
        // Without a VRF the kernel added none: nothing was deleted.
        assert!(deleted_default_rules(&rules, false).is_empty());
    }

    #[rstest]
    fn ipv6_addresses_are_stored_oldest_first_per_device() {
        let (a, b) = ("a".to_string(), "b".to_string());
        let dump = [
            v4(2, "10.0.0.1", 24, AddressFlags::empty()),
            v4(2, "10.0.0.2", 24, AddressFlags::Secondary),
            v6(2, "fd00::3", 64),
            v6(2, "fd00::2", 64),
            v6(3, "fd01::1", 64),
            v6(2, "fd00::1", 64),
        ];
        let devs = [&a, &a, &a, &a, &b, &a];
        let stored = in_creation_order(dump.iter().zip(devs).collect());
        let ips: Vec<String> = stored
            .iter()
            .map(|r| {
                let m: AddressMessage = decode(&r.message, "address").unwrap();
                address_ip(&m).unwrap().to_string()
            })
            .collect();
        assert_eq!(
            ips,
            ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2", "fd00::3", "fd01::1"]
        );
    }

    fn neighbour(
        dst: &str,
        state: NeighbourState,
        flags: netlink_packet_route::neighbour::NeighbourFlags,
    ) -> NeighbourMessage {
        use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
        let mut n = NeighbourMessage::default();
        n.header.ifindex = 3;
        n.header.state = state;
        n.header.flags = flags;
        let ip: IpAddr = dst.parse().unwrap();
        n.attributes.push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(v) => NeighbourAddress::Inet(v),
            IpAddr::V6(v) => NeighbourAddress::Inet6(v),
        }));
        n
    }

    #[rstest]
    #[case::permanent("10.1.0.9", NeighbourState::Permanent, false, 0x1003, true)]
    #[case::users_noarp("10.1.0.9", NeighbourState::Noarp, false, 0x1003, true)]
    #[case::multicast_noarp("224.0.0.1", NeighbourState::Noarp, false, 0x1003, false)]
    #[case::v6_multicast_noarp("ff02::2", NeighbourState::Noarp, false, 0x1003, false)]
    #[case::subnet_broadcast_noarp("10.1.0.255", NeighbourState::Noarp, false, 0x1003, false)]
    #[case::noarp_on_a_noarp_device("10.1.0.9", NeighbourState::Noarp, false, 0x1083, false)]
    #[case::reachable("10.1.0.9", NeighbourState::Reachable, false, 0x1003, false)]
    #[case::proxy("10.1.0.9", NeighbourState::None, true, 0x1003, true)]
    fn configured_neighbours_are_kept_and_the_cache_is_not(
        #[case] dst: &str,
        #[case] state: NeighbourState,
        #[case] proxy: bool,
        #[case] dev_flags: u32,
        #[case] kept: bool,
    ) {
        use netlink_packet_route::neighbour::NeighbourFlags;
        let flags = if proxy {
            NeighbourFlags::Proxy
        } else {
            NeighbourFlags::empty()
        };
        let dev = v1::Link {
            name: "zxa".into(),
            kind: "veth".into(),
            flags: dev_flags,
            ..Default::default()
        };
        let broadcasts: HashSet<IpAddr> = ["10.1.0.255".parse().unwrap()].into();
        assert_eq!(
            neighbour_is_kept(&neighbour(dst, state, flags), &dev, &broadcasts),
            kept
        );
    }

    #[rstest]
    fn routes_through_a_gateway_are_known() {
        let mut direct = RouteMessage::default();
        direct.header.address_family = AddressFamily::Inet;
        let mut via = direct.clone();
        via.attributes.push(RouteAttribute::Gateway(
            std::net::Ipv4Addr::new(10, 7, 0, 254).into(),
        ));
        let rec = |m: &RouteMessage| v1::Route {
            message: encode(m),
            ..Default::default()
        };
        assert!(!route_has_gateway(&rec(&direct)));
        assert!(route_has_gateway(&rec(&via)));
    }
}

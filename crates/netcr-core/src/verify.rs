//! After a restore, the kernel is asked again and its answer compared with the image. Every
//! difference names the object and the field: `mv0: mtu: image 1400, kernel 1500`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use netcr_image::{v1, NetnsImage};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteNextHopFlags,
};
use netlink_packet_route::rule::RuleMessage;

use crate::bridge_family::BridgeFamily;
use crate::common::{self, is_loopback, restorable_flags};
use crate::driver::{driver_for, DumpCx};
use crate::state;

/// Differences between the image's links and the restored ones.
pub fn links(
    image: &NetnsImage,
    after: &[LinkMessage],
    caller: &[LinkMessage],
    nsid_of_caller: Option<i32>,
    outer_of: HashMap<String, String>,
    peers: &HashMap<i32, (u32, HashMap<u32, String>)>,
    bridge: &BridgeFamily,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let by_name: HashMap<&str, &LinkMessage> =
        after.iter().map(|l| (common::parse(l).name, l)).collect();
    let by_index: HashMap<u32, &LinkMessage> = after.iter().map(|l| (l.header.index, l)).collect();
    let caller_by_index: HashMap<u32, &LinkMessage> =
        caller.iter().map(|l| (l.header.index, l)).collect();
    for want in &image.links {
        let Some(got_msg) = by_name.get(want.name.as_str()) else {
            diffs.push(format!("{}: missing", want.name));
            continue;
        };
        let got = common::to_image(got_msg);
        let parsed = common::parse(got_msg);
        let mut field = |name: &str, image: String, kernel: String| {
            if image != kernel {
                diffs.push(format!(
                    "{}: {name}: image {image}, kernel {kernel}",
                    want.name
                ));
            }
        };
        field("kind", want.kind.clone(), got.kind.clone());
        field("mtu", want.mtu.to_string(), got.mtu.to_string());
        let inherited = driver_for(&want.kind).is_some_and(|d| d.inherits_address(&want.config));
        if !want.address.is_empty() && !is_loopback(want) && !inherited {
            field(
                "address",
                common::mac_text(&want.address),
                common::mac_text(&got.address),
            );
        }
        field("txqlen", want.txqlen.to_string(), got.txqlen.to_string());
        field("alias", want.alias.clone(), got.alias.clone());
        field("group", want.group.to_string(), got.group.to_string());
        let mask = restorable_flags(want.master.is_some()).bits();
        field(
            "flags",
            format!("{:#x}", want.flags & mask),
            format!("{:#x}", got.flags & mask),
        );
        let master = parsed
            .master_index
            .and_then(|i| by_index.get(&i))
            .map(|m| common::parse(m).name.to_string())
            .unwrap_or_default();
        let want_master = match want.master.as_ref().and_then(|r| r.target.as_ref()) {
            Some(v1::link_ref::Target::Local(l)) => l.name.clone(),
            _ => String::new(),
        };
        field("master", want_master, master);

        let mut lower_msg = None;
        let (want_lower, got_lower) = match want.lower.as_ref().and_then(|r| r.target.as_ref()) {
            None => (String::new(), String::new()),
            Some(v1::link_ref::Target::Local(l)) => {
                lower_msg = parsed.lower_index.and_then(|i| by_index.get(&i)).copied();
                let got = match (parsed.lower_nsid, parsed.lower_index) {
                    (None, _) => lower_msg
                        .map(|m| common::parse(m).name.to_string())
                        .unwrap_or_default(),
                    (Some(n), Some(i)) => match peers.get(&n) {
                        Some((netns, names)) if *netns == l.netns => {
                            names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"))
                        }
                        Some((netns, _)) => format!("a device of netns {netns}"),
                        None => format!("a device in nsid {n}"),
                    },
                    (Some(n), None) => format!("a device in nsid {n}"),
                };
                (l.name.clone(), got)
            }
            Some(v1::link_ref::Target::External(_)) => {
                let want = outer_of.get(&want.name).cloned().unwrap_or_default();
                let got = match (parsed.lower_index, parsed.lower_nsid) {
                    (Some(i), Some(n)) if Some(n) == nsid_of_caller => {
                        lower_msg = caller_by_index.get(&i).copied();
                        lower_msg
                            .map(|m| common::parse(m).name.to_string())
                            .unwrap_or_else(|| format!("if{i}"))
                    }
                    (Some(i), n) => format!("if{i} in nsid {n:?}"),
                    (None, _) => String::new(),
                };
                (
                    format!("{want} (outside)"),
                    if got.is_empty() {
                        got
                    } else {
                        format!("{got} (outside)")
                    },
                )
            }
        };
        field("lower device", want_lower, got_lower);
        field("altnames", want.altnames.join(","), got.altnames.join(","));
        field(
            "protodown",
            format!("{} reason {:#x}", want.proto_down, want.proto_down_reason),
            format!("{} reason {:#x}", got.proto_down, got.proto_down_reason),
        );
        field(
            "link mode",
            want.link_mode.to_string(),
            got.link_mode.to_string(),
        );
        if let Some(b) = common::custom_broadcast(want) {
            field(
                "broadcast",
                common::mac_text(b),
                common::mac_text(&got.broadcast),
            );
        }
        // The limits the restore set (those that differ from the kernel's defaults).
        for (name, image) in common::offload_limits(want) {
            let kernel = common::offload_limit(&got, name);
            field(name, image.to_string(), kernel.to_string());
        }
        diffs.extend(devconf_diffs(want, &got));
        let name_of = |i: u32| by_index.get(&i).map(|m| common::parse(m).name.to_string());
        if let Some(v1::link_ref::Target::Local(m)) =
            want.master.as_ref().and_then(|r| r.target.as_ref())
        {
            let master_kind = by_name
                .get(m.name.as_str())
                .map(|ml| common::parse(ml).kind)
                .unwrap_or_default();
            if let Some(md) = driver_for(&master_kind) {
                let cx = DumpCx {
                    lower: None,
                    lower_is_external: false,
                    name_of: &name_of,
                    bridge: bridge.link(got_msg.header.index),
                    fdb: bridge.fdb(got_msg.header.index),
                };
                match md.dump_port(got_msg, &cx) {
                    Ok(port) if port == want.port_config => {}
                    Ok(_) => diffs.push(format!(
                        "{}: settings as a port of {}: differ",
                        want.name, m.name
                    )),
                    Err(e) => diffs.push(format!("{}: {e}", want.name)),
                }
            }
        }
        if let Some(driver) = driver_for(&want.kind) {
            let cx = DumpCx {
                name_of: &name_of,
                lower: lower_msg,
                lower_is_external: matches!(
                    want.lower.as_ref().and_then(|r| r.target.as_ref()),
                    Some(v1::link_ref::Target::External(_))
                ),
                bridge: bridge.link(got_msg.header.index),
                fdb: bridge.fdb(got_msg.header.index),
            };
            let config = driver
                .dump(got_msg, &cx)
                .and_then(|c| driver.compared(&want.config, &c));
            match config {
                Ok(config) if config == want.config => {}
                Ok(config) => {
                    let show = |c: &[u8]| {
                        driver
                            .describe(c)
                            .map(|kv| {
                                kv.iter()
                                    .map(|(k, v)| format!("{k} {v}"))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_else(|e| e.to_string())
                    };
                    diffs.push(format!(
                        "{}: {} settings: image {{{}}}, kernel {{{}}}",
                        want.name,
                        want.kind,
                        show(&want.config),
                        show(&config)
                    ));
                }
                Err(e) => diffs.push(format!("{}: {e}", want.name)),
            }
        }
    }
    diffs
}

/// The per-device IPv4 and IPv6 sysctls of `got` that differ from `want`'s (an IPv4 one
/// only where both hold the table).
pub fn devconf_diffs(want: &v1::Link, got: &v1::Link) -> Vec<String> {
    let mut diffs = Vec::new();
    if !want.ipv4_devconf.is_empty() && !got.ipv4_devconf.is_empty() {
        for (i, w, h) in crate::sysctl::ipv4_diffs(&want.ipv4_devconf, &got.ipv4_devconf) {
            diffs.push(format!(
                "{}: IPv4 sysctl #{}: image {w}, kernel {h}",
                want.name,
                i + 1
            ));
        }
    }
    for (file, value) in crate::sysctl::ipv6_writes(&want.ipv6_devconf, &got.ipv6_devconf) {
        diffs.push(format!(
            "{}: sysctl net.ipv6.conf.{}.{file}: image {value}",
            want.name, want.name
        ));
    }
    diffs
}

/// An address's identity: its local address (its peer's, when it has no local one) and
/// prefix length.
pub(crate) fn address_key(msg: &AddressMessage) -> Option<(IpAddr, u8)> {
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
        .map(|ip| (ip, msg.header.prefix_len))
}

/// A device and whether the addresses are IPv6.
type DeviceFamily = (String, bool);

fn secondary(msg: &AddressMessage) -> bool {
    use netlink_packet_route::address::AddressFlags;
    msg.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(f.contains(AddressFlags::Secondary)),
            _ => None,
        })
        .unwrap_or(msg.header.flags.bits() & 0x01 != 0)
}

/// Image addresses missing from the restored namespace, IPv4 addresses that came back
/// primary where they were secondary (or the reverse), and each device's addresses in
/// another order than the image's (the kernel's order decides source address selection).
pub fn addresses(
    image: &NetnsImage,
    after: &[LinkMessage],
    addrs: &[AddressMessage],
) -> Vec<String> {
    let names = state::names_by_index(after);
    let have: HashMap<(String, (IpAddr, u8)), &AddressMessage> = addrs
        .iter()
        .filter_map(|a| Some(((names.get(&a.header.index)?.clone(), address_key(a)?), a)))
        .collect();
    let mut diffs = Vec::new();
    // Per device and family: the image's addresses in the kernel's list order.
    let mut wanted: Vec<(DeviceFamily, Vec<(IpAddr, u8)>)> = Vec::new();
    for rec in &image.addresses {
        let Ok(msg) = state::decode::<AddressMessage>(&rec.message, "address") else {
            continue;
        };
        let Some(key) = address_key(&msg) else {
            continue;
        };
        match have.get(&(rec.dev.clone(), key)) {
            None => diffs.push(format!("{}: address {}/{} missing", rec.dev, key.0, key.1)),
            Some(got) if key.0.is_ipv4() && secondary(got) != secondary(&msg) => {
                let role = |s: bool| if s { "secondary" } else { "primary" };
                diffs.push(format!(
                    "{}: address {}/{}: image {}, kernel {}",
                    rec.dev,
                    key.0,
                    key.1,
                    role(secondary(&msg)),
                    role(secondary(got))
                ));
            }
            Some(_) => {}
        }
        let group = (rec.dev.clone(), key.0.is_ipv6());
        match wanted.iter_mut().find(|(g, _)| *g == group) {
            Some((_, keys)) => keys.push(key),
            None => wanted.push((group, vec![key])),
        }
    }
    for ((dev, v6), mut keys) in wanted {
        // IPv6 addresses are stored oldest first, and the kernel lists them newest first.
        if v6 {
            keys.reverse();
        }
        let set: HashSet<&(IpAddr, u8)> = keys.iter().collect();
        let kernel: Vec<(IpAddr, u8)> = addrs
            .iter()
            .filter(|a| names.get(&a.header.index) == Some(&dev))
            .filter_map(address_key)
            .filter(|k| set.contains(k))
            .collect();
        if kernel.len() == keys.len() && kernel != keys {
            let list = |k: &[(IpAddr, u8)]| {
                k.iter()
                    .map(|(ip, len)| format!("{ip}/{len}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            diffs.push(format!(
                "{dev}: {} address order: image [{}], kernel [{}]",
                if v6 { "IPv6" } else { "IPv4" },
                list(&keys),
                list(&kernel)
            ));
        }
    }
    diffs
}

/// Image rules missing from the restored namespace, and default rules the image says were
/// deleted that are there again.
pub fn rules(image: &NetnsImage, rules: &[RuleMessage]) -> Vec<String> {
    let have: Vec<RuleMessage> = rules.to_vec();
    // The kernel reports attributes of its own (FRA_SUPPRESS_PREFIXLEN, ...): a rule is there
    // when one of the kernel's has every attribute the image's has.
    let matches = |want: &RuleMessage| {
        let wanted = rule_selectors(want);
        have.iter().any(|r| {
            let got = rule_selectors(r);
            r.header.family == want.header.family
                && r.header.action == want.header.action
                && wanted.iter().all(|w| got.contains(w))
        })
    };
    let mut diffs = Vec::new();
    for rec in &image.rules {
        if let Ok(msg) = state::decode::<RuleMessage>(&rec.message, "rule") {
            if !matches(&msg) {
                diffs.push(format!("rule {:?} missing", rule_selectors(&msg)));
            }
        }
    }
    // A deleted default rule is back when the kernel has its own again (a user's rule with
    // the same priority and table may well be there).
    let kernel_made: Vec<RuleMessage> = rules
        .iter()
        .filter(|r| state::rule_is_kernel_made(r))
        .cloned()
        .collect();
    let vrf = image.links.iter().any(|l| l.kind == "vrf");
    for rec in &image.netns.deleted_default_rules {
        if let Ok(msg) = state::decode::<RuleMessage>(&rec.message, "rule") {
            if state::deleted_default_rules(&kernel_made, vrf)
                .iter()
                .all(|d| *d != msg)
                && kernel_made
                    .iter()
                    .any(|r| r.header.family == msg.header.family)
            {
                diffs.push(format!(
                    "default rule {:?} is there, the image had it deleted",
                    rule_selectors(&msg)
                ));
            }
        }
    }
    diffs
}

/// A rule's attributes as configuration: without the kernel's bookkeeping.
pub(crate) fn rule_selectors(msg: &RuleMessage) -> Vec<String> {
    use netlink_packet_route::rule::RuleAttribute;
    let mut out: Vec<String> = msg
        .attributes
        .iter()
        .filter(|a| !matches!(a, RuleAttribute::Protocol(_)))
        .map(|a| format!("{a:?}"))
        .collect();
    out.push(format!(
        "dst_len {} src_len {} tos {}",
        msg.header.dst_len, msg.header.src_len, msg.header.tos
    ));
    out.sort();
    out
}

/// A route's identity: family, destination, table, device, metric and type.
pub(crate) fn route_key(msg: &RouteMessage, oif: &str) -> String {
    let dst = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => Some(format!("{d:?}")),
        _ => None,
    });
    let prio = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    format!(
        "{:?} {:?}/{} table {} oif {oif} prio {:?} type {:?}",
        msg.header.address_family,
        dst,
        msg.header.destination_prefix_length,
        state::route_table(msg),
        prio,
        msg.header.kind
    )
}

/// The onlink flags of a route and of each of its multipath next hops: `yes`, `no,yes`.
fn onlink(msg: &RouteMessage) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let hops: Vec<&str> = msg
        .attributes
        .iter()
        .filter_map(|a| match a {
            RouteAttribute::MultiPath(hops) => Some(hops),
            _ => None,
        })
        .flatten()
        .map(|h| yes(h.flags.contains(RouteNextHopFlags::Onlink)))
        .collect();
    if hops.is_empty() {
        yes(msg.header.flags.contains(RouteFlags::Onlink)).to_string()
    } else {
        hops.join(",")
    }
}

/// The network of `ip` under a prefix of `len` bits.
fn network(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// The prefix routes the kernel must have made for the image's addresses and did not: each
/// address (its peer's, for a point-to-point one) on a device that is up, but lo, ports of a
/// master, host prefixes and `noprefixroute` ones, has its route in the main table (a VRF's
/// own addresses: in the VRF's table). A restore that adds addresses in a way the kernel
/// derives no route from (an IPv6 address with a finite lifetime on a device still down) is
/// caught here.
pub fn derived_routes(
    image: &NetnsImage,
    after: &[LinkMessage],
    routes: &[RouteMessage],
) -> Vec<String> {
    const RT_TABLE_MAIN: u32 = 254;
    let names = state::names_by_index(after);
    let l3mdev = state::l3mdev_tables(after);
    let up: HashSet<&str> = image
        .links
        .iter()
        .filter(|l| l.flags & 1 != 0 && !is_loopback(l) && l.master.is_none())
        .map(|l| l.name.as_str())
        .collect();
    let have: HashSet<(String, IpAddr, u8)> = routes
        .iter()
        .filter_map(|r| {
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })?;
            let table = l3mdev.get(&oif).copied().unwrap_or(RT_TABLE_MAIN);
            if state::route_table(r) != table {
                return None;
            }
            let oif = names.get(&oif).cloned()?;
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
                RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
                _ => None,
            })?;
            Some((oif, dst, r.header.destination_prefix_length))
        })
        .collect();
    let mut diffs = Vec::new();
    for rec in &image.addresses {
        if !up.contains(rec.dev.as_str()) {
            continue;
        }
        let Ok(msg) = state::decode::<AddressMessage>(&rec.message, "address") else {
            continue;
        };
        let noprefixroute = msg.attributes.iter().any(
            |a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Noprefixroute)),
        );
        if noprefixroute {
            continue;
        }
        let find = |peer: bool| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) if peer => Some(*ip),
                AddressAttribute::Local(ip) if !peer => Some(*ip),
                _ => None,
            })
        };
        let Some(ip) = find(true).or_else(|| find(false)) else {
            continue;
        };
        let len = msg.header.prefix_len;
        if len >= if ip.is_ipv4() { 32 } else { 128 } {
            continue;
        }
        let net = network(ip, len);
        if !have.contains(&(rec.dev.clone(), net, len)) {
            diffs.push(format!(
                "{}: the kernel's route to {net}/{len} for address {ip}/{len} is missing",
                rec.dev
            ));
        }
    }
    diffs
}

/// Image routes missing from the restored namespace, and differences in what the key does
/// not cover: the onlink flags, the nexthop object used, whether the route expires.
pub fn routes(image: &NetnsImage, after: &[LinkMessage], routes: &[RouteMessage]) -> Vec<String> {
    let names = state::names_by_index(after);
    let have: HashMap<String, &RouteMessage> = routes
        .iter()
        .map(|r| {
            let oif = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Oif(i) => names.get(i).cloned(),
                    _ => None,
                })
                .unwrap_or_default();
            (route_key(r, &oif), r)
        })
        .collect();
    let mut diffs = Vec::new();
    for rec in &image.routes {
        let Ok(msg) = state::decode::<RouteMessage>(&rec.message, "route") else {
            continue;
        };
        let what = state::describe_route(&msg, rec);
        let Some(got) = have.get(&route_key(&msg, &rec.oif)) else {
            diffs.push(format!("route {what} missing"));
            continue;
        };
        let mut field = |name: &str, image: String, kernel: String| {
            if image != kernel {
                diffs.push(format!(
                    "route {what}: {name}: image {image}, kernel {kernel}"
                ));
            }
        };
        field("onlink", onlink(&msg), onlink(got));
        let nhid = |m: &RouteMessage| {
            crate::nexthops::route_nexthop_id(m)
                .map(|id| id.to_string())
                .unwrap_or_else(|| "none".into())
        };
        field("nexthop id", nhid(&msg), nhid(got));
        // The seconds left differ by the time the restore took: compare whether it expires.
        let (want, now) = (state::route_expires(&msg), state::route_expires(got));
        if want.is_some() != now.is_some() {
            let text = |e: Option<u32>| e.map_or("permanent".to_string(), |s| format!("{s}s"));
            field("expires", text(want), text(now));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::{RouteAddress, RouteCacheInfo};

    fn route(onlink: bool, expires: u32) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = netlink_packet_route::AddressFamily::Inet6;
        m.header.destination_prefix_length = 64;
        m.header.table = 254;
        m.header.kind = netlink_packet_route::route::RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(
                "2001:db8:5::".parse().unwrap(),
            )));
        if onlink {
            m.header.flags |= RouteFlags::Onlink;
        }
        if expires != 0 {
            // struct rta_cacheinfo: rta_expires is its third u32.
            let mut ci = [0u8; 32];
            ci[8..12].copy_from_slice(&expires.to_ne_bytes());
            m.attributes.push(RouteAttribute::CacheInfo(
                RouteCacheInfo::parse(&ci).unwrap(),
            ));
        }
        m
    }

    #[test]
    fn a_dropped_onlink_flag_or_expiry_is_a_difference_naming_the_field() {
        let image = NetnsImage {
            routes: vec![v1::Route {
                message: state::encode(&route(true, 29_950)),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            routes(&image, &[], &[route(true, 29_000)]),
            Vec::<String>::new()
        );
        assert_eq!(
            routes(&image, &[], &[route(false, 0)]),
            vec![
                "route IPv6 2001:db8:5::/64 table 254 onlink: onlink: image yes, kernel no",
                "route IPv6 2001:db8:5::/64 table 254 onlink: expires: image 300s, kernel permanent",
            ]
        );
    }
}

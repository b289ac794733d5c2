//! Checks an image before anything in the kernel changes: names, references, kinds, counts.
//! An image is input like any other: a damaged or hostile one is refused here, clearly.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use netcr_image::{v1, Image, NetnsImage};

use crate::common::{is_loopback, valid_ifname};
use crate::driver::{driver_for, registered_kinds, LowerRole};
use crate::error::{CoreError, Result};
use crate::families::Family;

/// Most links one namespace of an image may hold; far above any real namespace.
pub const MAX_LINKS: usize = 1_000_000;
/// Most addresses, routes, rules or neighbours of each type per namespace.
pub const MAX_OBJECTS: usize = 4_000_000;

/// Validates the whole image.
pub fn validate(image: &Image, dir: &Path) -> Result<()> {
    let invalid = |reason: String| CoreError::InvalidImage {
        dir: dir.to_path_buf(),
        reason,
    };
    if image.namespaces.is_empty() {
        return Err(invalid("it holds no namespace".into()));
    }
    let ids: HashSet<u32> = image.namespaces.iter().map(|n| n.netns.id).collect();
    for ns in &image.namespaces {
        validate_netns(ns, &ids, image)
            .map_err(|reason| invalid(format!("netns \"{}\": {reason}", ns.netns.label)))?;
    }
    Ok(())
}

fn link_ref_target(r: &Option<v1::LinkRef>) -> Option<&v1::link_ref::Target> {
    r.as_ref().and_then(|r| r.target.as_ref())
}

fn validate_netns(ns: &NetnsImage, ids: &HashSet<u32>, image: &Image) -> Result<(), String> {
    if ns.links.len() > MAX_LINKS {
        return Err(format!("{} links (at most {MAX_LINKS})", ns.links.len()));
    }
    for (what, n) in [
        ("addresses", ns.addresses.len()),
        ("routes", ns.routes.len()),
        ("rules", ns.rules.len()),
        ("neighbours", ns.neighbours.len()),
        ("nexthops", ns.nexthops.len()),
        ("xfrm objects", ns.xfrm.len()),
        ("tc objects", ns.tc.len()),
        (
            "left-out objects",
            ns.netns.left_out.iter().map(|l| l.found.len()).sum(),
        ),
    ] {
        if n > MAX_OBJECTS {
            return Err(format!("{n} {what} (at most {MAX_OBJECTS})"));
        }
    }
    let mut names: HashMap<&str, &v1::Link> = HashMap::new();
    let mut indexes = HashSet::new();
    let mut loopbacks = 0;
    let mut altnames: HashSet<&str> = HashSet::new();
    for link in &ns.links {
        if !valid_ifname(&link.name) {
            return Err(format!(
                "device name {:?} is not valid (1-15 bytes, no '/', ':', whitespace)",
                link.name
            ));
        }
        if names.insert(&link.name, link).is_some() {
            return Err(format!("device \"{}\" appears twice", link.name));
        }
        if link.ifindex > i32::MAX as u32 {
            return Err(format!(
                "device \"{}\" has ifindex {}, which no device can have",
                link.name, link.ifindex
            ));
        }
        if link.ifindex != 0 && !indexes.insert(link.ifindex) {
            return Err(format!("ifindex {} is used by two devices", link.ifindex));
        }
        for alt in &link.altnames {
            // The kernel allows altnames up to 127 bytes, with the same characters as names.
            let ok = !alt.is_empty()
                && alt.len() < 128
                && alt != "."
                && alt != ".."
                && !alt
                    .bytes()
                    .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
            if !ok {
                return Err(format!(
                    "device \"{}\" has an altname {alt:?} that is not a valid name",
                    link.name
                ));
            }
            if !altnames.insert(alt.as_str()) {
                return Err(format!("altname \"{alt}\" appears twice"));
            }
        }
        if !link.ipv6_stable_secret.is_empty()
            && link
                .ipv6_stable_secret
                .parse::<std::net::Ipv6Addr>()
                .is_err()
        {
            return Err(format!(
                "device \"{}\" has an IPv6 stable secret that is not an IPv6 address",
                link.name
            ));
        }
        if is_loopback(link) {
            loopbacks += 1;
            continue;
        }
        let Some(driver) = driver_for(&link.kind) else {
            return Err(format!(
                "device \"{}\" is of kind \"{}\", which this netcr does not support (supported: {})",
                link.name,
                link.kind,
                registered_kinds().join(", ")
            ));
        };
        driver
            .describe(&link.config)
            .map_err(|e| format!("{} \"{}\": {e}", link.kind, link.name))?;
        if let Some(v1::link_ref::Target::External(_)) = link_ref_target(&link.master) {
            return Err(format!(
                "device \"{}\" has a master outside the image",
                link.name
            ));
        }
    }
    if loopbacks > 1 {
        return Err("more than one loopback device".into());
    }
    if let Some(clash) = altnames.iter().find(|a| names.contains_key(**a)) {
        return Err(format!("altname \"{clash}\" is also a device's name"));
    }
    for r in &ns.netns.deleted_default_rules {
        let (msg, _) = crate::state::rule_deletion(r)?;
        // The l3mdev rule is the kernel's only where the image makes a VRF.
        let vrf = ns.links.iter().any(|l| l.kind == "vrf");
        if !crate::state::is_default_rule(&msg, vrf) {
            return Err("a deleted default rule is not one of the kernel's default rules".into());
        }
    }
    if ns.netns.left_out.len() > Family::ALL.len() {
        return Err(format!("{} families left out", ns.netns.left_out.len()));
    }
    // References resolve, and lower devices form no cycle.
    let names_in = |netns: u32| -> Option<HashSet<&str>> {
        image
            .namespaces
            .iter()
            .find(|n| n.netns.id == netns)
            .map(|n| n.links.iter().map(|l| l.name.as_str()).collect())
    };
    // Each namespace's names are collected once, not once per reference.
    let mut names_of_netns: HashMap<u32, Option<HashSet<&str>>> = HashMap::new();
    for link in &ns.links {
        for (what, r) in [("lower device", &link.lower), ("master", &link.master)] {
            if let Some(v1::link_ref::Target::Local(local)) = link_ref_target(r) {
                if !ids.contains(&local.netns) {
                    return Err(format!(
                        "{what} of \"{}\" is in netns {}, which the image does not hold",
                        link.name, local.netns
                    ));
                }
                let known = names_of_netns
                    .entry(local.netns)
                    .or_insert_with(|| names_in(local.netns))
                    .as_ref()
                    .is_some_and(|set| set.contains(local.name.as_str()));
                if !known {
                    return Err(format!(
                        "{what} of \"{}\" is \"{}\", which the image does not hold",
                        link.name, local.name
                    ));
                }
                if what == "master" && local.netns != ns.netns.id {
                    return Err(format!(
                        "master of \"{}\" is in another namespace",
                        link.name
                    ));
                }
                if local.netns == ns.netns.id && local.name == link.name {
                    return Err(format!("{what} of \"{}\" is itself", link.name));
                }
            }
        }
    }
    // Cycles through lower devices (veth peers point at each other by design) and masters.
    fn edges(link: &v1::Link, netns: u32) -> Vec<&str> {
        let peer_role = driver_for(&link.kind).map(|d| d.lower_role()) == Some(LowerRole::Peer);
        let mut out = Vec::new();
        for (is_lower, r) in [(true, &link.lower), (false, &link.master)] {
            if is_lower && peer_role {
                continue;
            }
            if let Some(v1::link_ref::Target::Local(l)) = link_ref_target(r) {
                if l.netns == netns {
                    out.push(l.name.as_str());
                }
            }
        }
        out
    }
    // 1 = on the current path, 2 = done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    for start in &ns.links {
        let mut stack: Vec<(&str, usize)> = vec![(start.name.as_str(), 0)];
        while let Some((name, next)) = stack.pop() {
            if next == 0 {
                match state.get(name) {
                    Some(2) => continue,
                    Some(1) => {
                        return Err(format!(
                        "device \"{name}\" depends on itself through its lower devices or masters"
                    ))
                    }
                    _ => {}
                }
                state.insert(name, 1);
            }
            let succ = names
                .get(name)
                .map(|l| edges(l, ns.netns.id))
                .unwrap_or_default();
            if next < succ.len() {
                stack.push((name, next + 1));
                let child = succ[next];
                match state.get(child) {
                    Some(1) => {
                        return Err(format!(
                        "device \"{child}\" depends on itself through its lower devices or masters"
                    ))
                    }
                    Some(2) => {}
                    _ => stack.push((child, 0)),
                }
            } else {
                state.insert(name, 2);
            }
        }
    }
    // Objects name devices the image holds.
    let has = |dev: &str| dev.is_empty() || names.contains_key(dev);
    for a in &ns.addresses {
        if !has(&a.dev) || a.dev.is_empty() {
            return Err(format!(
                "an address is on \"{}\", which the image does not hold",
                a.dev
            ));
        }
    }
    for r in &ns.routes {
        for dev in [&r.oif, &r.iif].into_iter().chain(r.nexthop_devs.iter()) {
            if !has(dev) {
                return Err(format!(
                    "a route uses \"{dev}\", which the image does not hold"
                ));
            }
        }
        route_devices_match(r)?;
    }
    for s in &ns.netns.sysctls {
        if !is_netns_sysctl(&s.name) {
            return Err(format!(
                "sysctl {:?} is not a namespace setting netcr restores (net.{{{}}}.NAME)",
                s.name,
                crate::sysctl::NETNS_SYSCTL_DIRS.join(",").replace('/', ".")
            ));
        }
    }
    for n in &ns.neighbours {
        if !has(&n.dev) || n.dev.is_empty() {
            return Err(format!(
                "a neighbour is on \"{}\", which the image does not hold",
                n.dev
            ));
        }
    }
    crate::nexthops::validate(ns, &|dev| names.contains_key(dev))?;
    crate::nftables::validate(ns, &|dev| names.get(dev).map(|l| l.ifindex))?;
    crate::tc::validate(ns, &|dev| names.contains_key(dev))?;
    // A family saved unless left out is one or the other.
    for (family, held, what) in [
        (Family::Nftables, !ns.nftables.is_empty(), "nf_tables"),
        (Family::Tc, !ns.tc.is_empty(), "tc"),
    ] {
        if held && ns.netns.left_out.iter().any(|l| l.family == family.name()) {
            return Err(format!(
                "it holds {what} objects and says they were left out"
            ));
        }
    }
    crate::xfrm::validate(ns, &|dev| names.contains_key(dev))?;
    if !ns.xfrm.is_empty()
        && ns
            .netns
            .left_out
            .iter()
            .any(|l| l.family == Family::Xfrm.name())
    {
        return Err("it holds xfrm objects and says they were left out".into());
    }
    Ok(())
}

/// A route names its devices by name next to the message; every device index in the message
/// must have its name there (the restore replaces each index by the name's index in the
/// target), or the index would be used as it is.
pub(crate) fn route_devices_match(r: &v1::Route) -> Result<(), String> {
    use netlink_packet_route::route::{RouteAttribute, RouteMessage};
    let msg: RouteMessage = crate::state::decode(&r.message, "route")?;
    let (mut oif, mut iif, mut hops) = (false, false, 0);
    for a in &msg.attributes {
        match a {
            RouteAttribute::Oif(_) => oif = true,
            RouteAttribute::Iif(_) => iif = true,
            RouteAttribute::MultiPath(h) => hops += h.len(),
            _ => {}
        }
    }
    let named = |dev: &String| !dev.is_empty();
    if oif != named(&r.oif) || iif != named(&r.iif) || hops != r.nexthop_devs.len() {
        return Err(format!(
            "a route's devices by index do not match its devices by name ({:?}, {:?}, {:?})",
            r.oif, r.iif, r.nexthop_devs
        ));
    }
    Ok(())
}

/// `net.DIR.FILE` for one of [`crate::sysctl::NETNS_SYSCTL_DIRS`] (dots for slashes) and a
/// plain file name: the only sysctls a restore writes.
fn is_netns_sysctl(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("net.") else {
        return false;
    };
    crate::sysctl::NETNS_SYSCTL_DIRS.iter().any(|dir| {
        rest.strip_prefix(&format!("{}.", dir.replace('/', ".")))
            .is_some_and(|file| !file.is_empty() && !file.contains(['.', '/', '\0']))
    })
}

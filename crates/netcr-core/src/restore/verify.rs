//! Verify: read each restored namespace back and compare it with the image (the comparisons
//! are [`crate::verify`]'s); a difference is an error naming the object and the field.

use std::collections::HashMap;

use netcr_netlink::{RtnlExt, Transport};
use netlink_packet_route::AddressFamily;

use super::plan::index_map;
use super::session::{Key, Session};
use crate::error::{CoreError, Result};
use crate::{state, sysctl};

/// Compares target `ns` with its image, then checks which links kept their ifindex.
pub(crate) fn namespace(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let image = s.image_ns(ns);
    // Pairs reaching into other restored namespaces: how this one numbers them, and their
    // devices by index.
    let mut peers = HashMap::new();
    for other in (0..s.targets.len()).filter(|&o| o != ns) {
        let other_ns = s.netns(Key::Target(other))?.try_clone()?;
        if let Some(nsid) = s.socket(Key::Target(ns))?.get_nsid(&other_ns)? {
            let names = state::names_by_index(&s.socket(Key::Target(other))?.dump_links()?);
            peers.insert(nsid, (s.targets[other].id, names));
        }
    }
    let caller = s.caller;
    let caller_after = s.socket(Key::Caller)?.dump_links()?;
    let socket = s.socket(Key::Target(ns))?;
    let after = socket.dump_links()?;
    let nsid_of_caller = socket.get_nsid(caller)?;
    let bridge = crate::bridge_family::BridgeFamily::read(socket, &after)?;
    // Only the families the image holds addresses or routes of: the comparison looks the
    // image's objects up in these dumps, so other families would be read for nothing.
    let addresses = dump_families(
        socket,
        image.addresses.iter().map(|a| &a.message),
        |t, f| t.dump_addresses(f),
    )?;
    // Routes of the families of the image's routes and of its addresses (whose prefix routes
    // the kernel must have made).
    let route_families = image
        .routes
        .iter()
        .map(|r| &r.message)
        .chain(image.addresses.iter().map(|a| &a.message));
    let routes = dump_families(socket, route_families, |t, f| t.dump_routes(f))?;
    let nexthops = if image.nexthops.is_empty() {
        Vec::new()
    } else {
        socket.dump_nexthops()?
    };
    let rules = if image.rules.is_empty() && image.netns.deleted_default_rules.is_empty() {
        Vec::new()
    } else {
        let mut rules = socket.dump_rules(AddressFamily::Inet)?;
        rules.extend(socket.dump_rules(AddressFamily::Inet6)?);
        rules
    };
    let target = &s.targets[ns];
    let outer_of = target
        .outside
        .iter()
        .map(|(inner, o)| (inner.clone(), o.mapping.outer.clone()))
        .collect();
    let diffs = crate::verify::links(
        image,
        &after,
        &caller_after,
        nsid_of_caller,
        outer_of,
        &peers,
        &bridge,
    );
    // An adopted device kept its own settings: how they differ from the image is said, not
    // an error.
    let (left_alone, mut diffs): (Vec<String>, Vec<String>) = diffs.into_iter().partition(|d| {
        target
            .adopted
            .iter()
            .any(|name| d.starts_with(&format!("{name}: ")))
    });
    diffs.extend(crate::verify::addresses(image, &after, &addresses));
    diffs.extend(crate::nexthops::diffs(image, &after, &nexthops));
    diffs.extend(crate::verify::routes(image, &after, &routes));
    diffs.extend(crate::verify::derived_routes(image, &after, &routes));
    diffs.extend(crate::verify::rules(image, &rules));
    diffs.extend(sysctl_diffs(s, ns)?);
    diffs.extend(nftables_diffs(s, ns, &after)?);
    if !s.image_ns(ns).xfrm.is_empty() {
        let now = super::xfrm::present(s, ns)?;
        // An existing namespace may have had the indexes of the image's policies in use.
        let indexes_kept = !s.targets[ns].existing();
        diffs.extend(
            crate::xfrm::diffs(s.image_ns(ns), &now, indexes_kept).map_err(CoreError::Refused)?,
        );
    }
    diffs.extend(tc_diffs(s, ns, &after)?);
    if !diffs.is_empty() {
        return Err(CoreError::Verify(diffs.join("; ")));
    }
    let now = index_map(&after);
    let target = &mut s.targets[ns];
    let report = &mut target.report;
    report.warnings.extend(
        left_alone
            .into_iter()
            .map(|d| format!("adopted {d}; left as it is")),
    );
    for link in image
        .links
        .iter()
        .filter(|l| !target.adopted.contains(&l.name))
    {
        if let Some(&index) = now.get(&link.name) {
            if link.ifindex != 0 && index != link.ifindex {
                report.ifindex_not_kept.push(format!(
                    "{}: ifindex {} in the image, {index} now (held by another device)",
                    link.name, link.ifindex
                ));
            }
        }
    }
    if s.opts.require_ifindex && !report.ifindex_not_kept.is_empty() {
        return Err(CoreError::Refused(format!(
            "ifindexes not kept: {}",
            report.ifindex_not_kept.join("; ")
        )));
    }
    Ok(())
}

/// The differences between the image's firewall and the kernel's, and the devices its rules
/// match by index that do not have that index now.
fn nftables_diffs(
    s: &mut Session<'_>,
    ns: usize,
    after: &[netlink_packet_route::link::LinkMessage],
) -> Result<Vec<String>> {
    let image = s.image_ns(ns);
    if image.nftables.is_empty() {
        return Ok(Vec::new());
    }
    let label = s.targets[ns].label.clone();
    let dumped = netcr_netlink::nftables::dump_ruleset(s.netfilter(ns)?)?.unwrap_or_default();
    let mut diffs =
        crate::nftables::diffs(image, &dumped).map_err(|detail| netcr_netlink::Error::Decode {
            context: "reading the restored nf_tables firewall".into(),
            netns: label,
            detail,
        })?;
    let now = index_map(after);
    for rec in &image.nftables {
        for i in &rec.ifindexes {
            match now.get(&i.dev) {
                Some(&index) if index != i.ifindex => diffs.push(format!(
                    "nf_tables: a rule matches \"{}\" by index {}, and it has index {index} now",
                    i.dev, i.ifindex
                )),
                _ => {}
            }
        }
    }
    Ok(diffs)
}

/// The namespace sysctls that differ from the image (those the kernel would not take are
/// left out).
fn sysctl_diffs(s: &Session<'_>, ns: usize) -> Result<Vec<String>> {
    let wanted = &s.image_ns(ns).netns.sysctls;
    let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    let now: HashMap<String, String> = sysctl::read_named(s.netns(Key::Target(ns))?, &names)?
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    let left_out = &s.targets[ns].sysctls_left_out;
    Ok(wanted
        .iter()
        .filter(|w| !left_out.contains(&w.name))
        .filter_map(|w| {
            let have = now.get(&w.name)?;
            (*have != w.value)
                .then(|| format!("sysctl {}: image {:?}, kernel {:?}", w.name, w.value, have))
        })
        .collect())
}

/// Dumps with `dump` each address family that `messages` (stored message bodies) hold.
fn dump_families<'m, T>(
    socket: &mut dyn Transport,
    messages: impl Iterator<Item = &'m Vec<u8>>,
    dump: impl Fn(&mut dyn Transport, AddressFamily) -> netcr_netlink::Result<Vec<T>>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for family in stored_families(messages) {
        out.extend(dump(socket, family)?);
    }
    Ok(out)
}

/// The address families of stored address or route message bodies, IPv4 first. Byte 0 of
/// both (`ifa_family`, `rtm_family`) is the family; any other value asks for both.
pub(crate) fn stored_families<'m>(
    messages: impl Iterator<Item = &'m Vec<u8>>,
) -> Vec<AddressFamily> {
    let (mut inet, mut inet6) = (false, false);
    for message in messages {
        match message.first().map(|&b| i32::from(b)) {
            Some(libc::AF_INET) => inet = true,
            Some(libc::AF_INET6) => inet6 = true,
            _ => (inet, inet6) = (true, true),
        }
    }
    let mut out = Vec::new();
    if inet {
        out.push(AddressFamily::Inet);
    }
    if inet6 {
        out.push(AddressFamily::Inet6);
    }
    out
}

/// How target `ns`'s traffic control differs from the image's (read back and kept the way
/// the dump keeps it, so statistics and the kernel's bookkeeping stay aside).
fn tc_diffs(
    s: &mut Session<'_>,
    ns: usize,
    after: &[netlink_packet_route::link::LinkMessage],
) -> Result<Vec<String>> {
    let image = s.image_ns(ns);
    if image.tc.is_empty() {
        return Ok(Vec::new());
    }
    let dumped = crate::tc::read(s.socket(Key::Target(ns))?)?;
    let names = state::names_by_index(after);
    let name_of = |i: u32| names.get(&i).cloned();
    // What netcr could not keep there is the namespace's own (an existing target's BPF
    // filter on a device of its own): the restore made only what the image holds.
    let kept = crate::tc::keep(&dumped, &name_of, &|_| true);
    Ok(crate::tc::diffs(&image.tc, &kept.records))
}

//! Planning: pure functions of the image and of what the kernel reported. Creation order,
//! the private link group, spare ifindexes and the host device of each external link.

use std::collections::{HashMap, HashSet};

use netcr_image::{v1, NetnsImage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};

use crate::common::{self, is_loopback};
use crate::driver::{driver_for, LowerRole};
use crate::error::{CoreError, Result};
use crate::external::{self, ExternalMapping};

/// How one link's outside end was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outside {
    /// The `--external` mapping that names the host device.
    pub mapping: ExternalMapping,
    /// Index of the outer device in the caller's namespace (a lower device; a veth's outer
    /// end does not exist yet).
    pub index: Option<u32>,
}

/// The name → index map of a dump.
pub(crate) fn index_map(links: &[LinkMessage]) -> HashMap<String, u32> {
    links
        .iter()
        .map(|l| (common::parse(l).name.to_string(), l.header.index))
        .collect()
}

/// A link group that no device of `links` uses, starting from `seed`: every link the
/// restore creates is made in it, so one RTM_DELLINK by group removes them all (one RCU
/// grace period, not one per link) if the restore fails.
pub(crate) fn pick_group<'l>(links: impl IntoIterator<Item = &'l LinkMessage>, seed: u32) -> u32 {
    let used: HashSet<u32> = links
        .into_iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Group(g) => Some(*g),
                _ => None,
            })
        })
        .collect();
    let mut g = seed | 0x8000_0000;
    while used.contains(&g) || g == u32::MAX {
        g = g.wrapping_add(1) | 0x8000_0000;
    }
    g
}

/// A seed for [`pick_group`] that differs between processes, so concurrent restores into
/// different namespaces do not pick the same group.
pub(crate) fn group_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// The lowest index above lo's that none of `taken` holds and that was not given before.
pub(crate) fn spare_index(taken: &[&HashSet<u32>], given: &mut HashSet<u32>) -> u32 {
    let mut i = 2;
    while given.contains(&i) || taken.iter().any(|t| t.contains(&i)) {
        i += 1;
    }
    given.insert(i);
    i
}

/// Finds the `--external` mapping and outer device of every link whose lower or peer lies
/// outside the image (but those `skip(namespace id, name)` names: adopted devices, whose
/// other side is already there); refuses, naming every problem at once, when one is missing.
pub(crate) fn resolve_externals(
    namespaces: &[NetnsImage],
    mappings: &[ExternalMapping],
    caller_links: &[LinkMessage],
    skip: &dyn Fn(u32, &str) -> bool,
) -> Result<HashMap<u32, HashMap<String, Outside>>> {
    let caller_by_name: HashMap<&str, &LinkMessage> = caller_links
        .iter()
        .map(|l| (common::parse(l).name, l))
        .collect();
    let mut out: HashMap<u32, HashMap<String, Outside>> = HashMap::new();
    let mut unmapped = Vec::new();
    let mut problems = Vec::new();
    let mut used = HashSet::new();
    for (ns, link) in namespaces
        .iter()
        .flat_map(|ns| ns.links.iter().map(move |l| (ns, l)))
    {
        let Some(v1::link_ref::Target::External(ext)) =
            link.lower.as_ref().and_then(|r| r.target.as_ref())
        else {
            continue;
        };
        if skip(ns.netns.id, &link.name) {
            continue;
        }
        let role = lower_role(link);
        let Some(mapping) = external::find(mappings, &link.kind, &link.name) else {
            unmapped.push((link, ext));
            continue;
        };
        used.insert(mapping.to_string());
        let outer = caller_by_name.get(mapping.outer.as_str());
        let index = match (role, outer) {
            (LowerRole::Lower, Some(l)) => Some(l.header.index),
            (LowerRole::Lower, None) => {
                problems.push(format!(
                    "{} \"{}\": its lower device \"{}\" does not exist in the caller's namespace",
                    link.kind, link.name, mapping.outer
                ));
                None
            }
            (LowerRole::Peer, Some(_)) => {
                problems.push(format!(
                    "{} \"{}\": its outer end \"{}\" already exists in the caller's namespace (still there from before, or a name clash)",
                    link.kind, link.name, mapping.outer
                ));
                None
            }
            (LowerRole::Peer, None) => None,
        };
        match &mapping.bridge {
            Some(_) if role != LowerRole::Peer => problems.push(format!(
                "--external {mapping}: @BRIDGE applies to veth outer ends only"
            )),
            Some(bridge) => match caller_by_name.get(bridge.as_str()) {
                Some(b) if common::parse(b).kind == "bridge" => {}
                Some(_) => problems.push(format!(
                    "--external {mapping}: \"{bridge}\" is not a bridge"
                )),
                None => problems.push(format!(
                    "--external {mapping}: bridge \"{bridge}\" does not exist"
                )),
            },
            None => {}
        }
        out.entry(ns.netns.id).or_default().insert(
            link.name.clone(),
            Outside {
                mapping: mapping.clone(),
                index,
            },
        );
    }
    for m in mappings {
        if driver_for(&m.kind).is_none() {
            let kinds = crate::driver::registered_kinds();
            let hint = kinds
                .iter()
                .find(|k| k.eq_ignore_ascii_case(&m.kind))
                .map(|k| format!("; kinds are lowercase: {k}"))
                .unwrap_or_default();
            problems.push(format!(
                "--external {m}: netcr knows no link kind \"{}\" (it knows {}){hint}",
                m.kind,
                kinds.join(", ")
            ));
            continue;
        }
        if m.inner.is_some() && !used.contains(&m.to_string()) {
            problems.push(format!(
                "--external {m}: the image has no {} \"{}\" whose {} lies outside the namespace",
                m.kind,
                m.inner.as_deref().unwrap_or_default(),
                if m.kind == "veth" {
                    "peer"
                } else {
                    "lower device"
                }
            ));
        }
    }
    if !unmapped.is_empty() {
        let names: Vec<String> = unmapped
            .iter()
            .map(|(l, _)| format!("{} \"{}\"", l.kind, l.name))
            .collect();
        let args: Vec<String> = unmapped
            .iter()
            .map(|(l, e)| {
                let outer = if e.name_hint.is_empty() {
                    "HOSTDEV"
                } else {
                    e.name_hint.as_str()
                };
                format!("--external '{}[{}]:{}'", l.kind, l.name, outer)
            })
            .collect();
        problems.insert(
            0,
            format!(
                "no --external mapping for {}; with the devices recorded at dump time that is: {}",
                names.join(", "),
                args.join(" ")
            ),
        );
    }
    if problems.is_empty() {
        return Ok(out);
    }
    // A `*` mapping's problem is said once, not once per link it maps.
    let mut said = HashSet::new();
    problems.retain(|p| said.insert(p.clone()));
    Err(CoreError::Refused(problems.join("; ")))
}

/// How `link`'s kind uses its `IFLA_LINK` (a lower device unless its driver says otherwise).
pub(crate) fn lower_role(link: &v1::Link) -> LowerRole {
    driver_for(&link.kind)
        .map(|d| d.lower_role())
        .unwrap_or(LowerRole::Lower)
}

/// The other end of a veth pair inside the image (in this namespace or another one of the
/// image), created by the same request.
pub(crate) fn local_peer(link: &v1::Link) -> Option<&v1::LocalRef> {
    let role = driver_for(&link.kind).map(|d| d.lower_role())?;
    match (role, link.lower.as_ref().and_then(|r| r.target.as_ref())) {
        (LowerRole::Peer, Some(v1::link_ref::Target::Local(l))) => Some(l),
        _ => None,
    }
}

/// Groups the links of a single-namespace image into creation levels (see [`plan_levels_in`]).
pub fn plan_levels(links: &[v1::Link]) -> Result<Vec<Vec<&str>>> {
    plan_levels_in(links, 0)
}

/// Groups the links of namespace `own` into creation levels: level 0 needs nothing created
/// before it; a link sits one level above its lower device and the devices it depends on.
/// Each veth pair is created once: inside one namespace by the end that comes first, between
/// two namespaces by the end in the namespace restored first (the lower id).
pub fn plan_levels_in(links: &[v1::Link], own: u32) -> Result<Vec<Vec<&str>>> {
    let by_name: HashMap<&str, &v1::Link> = links.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut level: HashMap<&str, usize> = HashMap::new();
    let mut created_by_peer: HashSet<&str> = HashSet::new();
    for link in links {
        if is_loopback(link) || created_by_peer.contains(link.name.as_str()) {
            continue;
        }
        match local_peer(link) {
            Some(peer) if peer.netns == own => {
                created_by_peer.insert(peer.name.as_str());
            }
            Some(peer) if peer.netns < own => {
                created_by_peer.insert(link.name.as_str());
            }
            _ => {}
        }
    }
    let mut levels: Vec<Vec<&str>> = Vec::new();
    for link in links {
        if is_loopback(link) || created_by_peer.contains(link.name.as_str()) {
            continue;
        }
        let d = depth(&link.name, &by_name, &mut level, 0)?;
        if levels.len() <= d {
            levels.resize_with(d + 1, Vec::new);
        }
        levels[d].push(&link.name);
    }
    Ok(levels)
}

/// The creation level of `name`: one above its lower device and its other dependencies.
fn depth<'l>(
    name: &'l str,
    by_name: &HashMap<&'l str, &'l v1::Link>,
    level: &mut HashMap<&'l str, usize>,
    guard: usize,
) -> Result<usize> {
    if let Some(&d) = level.get(name) {
        return Ok(d);
    }
    if guard > by_name.len() {
        return Err(CoreError::Refused(format!("\"{name}\" depends on itself")));
    }
    let link = by_name[name];
    let mut d = match (
        lower_role(link),
        link.lower.as_ref().and_then(|r| r.target.as_ref()),
    ) {
        (LowerRole::Lower, Some(v1::link_ref::Target::Local(l))) => {
            let lower = by_name
                .get(l.name.as_str())
                .map(|l| l.name.as_str())
                .ok_or_else(|| {
                    CoreError::Refused(format!("lower device of \"{name}\" is missing"))
                })?;
            depth(lower, by_name, level, guard + 1)? + 1
        }
        _ => 0,
    };
    if let Some(driver) = driver_for(&link.kind) {
        for dep in driver.depends_on(&link.config) {
            let (&dep_name, _) = by_name.get_key_value(dep.as_str()).ok_or_else(|| {
                CoreError::Refused(format!(
                    "\"{name}\" needs \"{dep}\", which the image does not hold"
                ))
            })?;
            d = d.max(depth(dep_name, by_name, level, guard + 1)? + 1);
        }
    }
    level.insert(name, d);
    Ok(d)
}

//! Prepare: look at every target before the first change (is it there, is it free, where do
//! external devices attach), then open or create the targets and set their nsid tables.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use netcr_image::v1;
use netcr_netlink::{Netns, RtnlExt};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::AddressFamily;

use netcr_image::journal::{v1 as jv1, JournalWriter};

use super::journal::{Entry, Journal};
use super::lock::{identity_key, lock, name_key};
use super::plan::{group_seed, local_peer, pick_group, resolve_externals};
use super::session::{Key, Session, Target};
use super::{Adopt, RestoreTarget};
use crate::common::{self, is_loopback};
use crate::error::{CoreError, Result};

/// Checks every target and resolves the external devices; changes nothing. Fills the
/// session's targets (namespaces still to create have no handle yet) and picks the link
/// group no device in the caller's namespace or an existing target uses.
pub(crate) fn inspect(s: &mut Session<'_>, targets: Vec<RestoreTarget>) -> Result<()> {
    let image = s.image;
    if targets.len() != image.namespaces.len() {
        return Err(CoreError::Refused(format!(
            "the image holds {} namespaces, {} targets were given",
            image.namespaces.len(),
            targets.len()
        )));
    }
    let caller_links = s.socket(Key::Caller)?.dump_links()?;
    for (ns_image, target) in image.namespaces.iter().zip(targets) {
        let (netns, create, named, label) = match target {
            RestoreTarget::Named(name) if netcr_netlink::netns::named_exists(&name) => (
                Some(Netns::open_name(&name)?),
                None,
                Some(name.clone()),
                name,
            ),
            RestoreTarget::Named(name) => (None, Some(name.clone()), Some(name.clone()), name),
            RestoreTarget::Existing(ns) => {
                let label = ns.label().to_string();
                (Some(ns), None, None, label)
            }
        };
        let twice = || {
            CoreError::Refused(format!(
                "netns \"{label}\" is named as the target of two namespaces"
            ))
        };
        if s.targets.iter().any(|t| t.label == label) {
            return Err(twice());
        }
        if let Some(ns) = &netns {
            if ns.same_as(s.caller)? {
                return Err(CoreError::Refused(format!(
                    "netns \"{label}\" is the namespace netcr runs in; restore into another one"
                )));
            }
            for other in s.targets.iter().filter_map(|t| t.netns.as_ref()) {
                if other.same_as(ns)? {
                    return Err(twice());
                }
            }
        }
        let id = ns_image.netns.id;
        let mut target = Target::new(id, &label, netns, create);
        target.named = named;
        s.targets.push(target);
        let ns = s.targets.len() - 1;
        if s.targets[ns].existing() {
            let before = s.socket(Key::Target(ns))?.dump_links()?;
            let adopted = adoptions(&label, &ns_image.links, &before, s.opts.adopt)?;
            if !ns_image.nexthops.is_empty() {
                let present = s.socket(Key::Target(ns))?.dump_nexthops()?;
                refuse_nexthop_clashes(&label, &ns_image.nexthops, &present)?;
            }
            let target = &mut s.targets[ns];
            target.report.adopted = ns_image
                .links
                .iter()
                .filter(|l| adopted.contains(&l.name))
                .map(|l| l.name.clone())
                .collect();
            target.adopted = adopted;
            target.links_before = before;
        }
        super::nftables::inspect(s, ns)?;
        super::xfrm::inspect(s, ns)?;
        super::tc::inspect(s, ns)?;
    }
    // An adopted device's other side is whatever built it (a CNI plugin): no mapping needed.
    let adopted = |id: u32, name: &str| {
        s.targets
            .iter()
            .any(|t| t.id == id && t.adopted.contains(name))
    };
    let mut outside = resolve_externals(
        &image.namespaces,
        &s.opts.externals,
        &caller_links,
        &adopted,
    )?;
    for target in &mut s.targets {
        target.outside = outside.remove(&target.id).unwrap_or_default();
    }
    let seen = caller_links
        .iter()
        .chain(s.targets.iter().flat_map(|t| &t.links_before));
    s.journal = Journal::new(pick_group(seen, group_seed()));
    Ok(())
}

/// The devices of an existing target that the image holds too (lo aside, which is changed
/// in place): refused, unless the restore adopts them, which needs the same kind, and both
/// ends of a pair inside the namespace.
fn adoptions(
    label: &str,
    links: &[v1::Link],
    present: &[LinkMessage],
    adopt: Adopt,
) -> Result<HashSet<String>> {
    if adopt == Adopt::Never {
        refuse_clashes(label, links, present)?;
        return Ok(HashSet::new());
    }
    let present: HashMap<&str, String> = present
        .iter()
        .map(|l| {
            let p = common::parse(l);
            (p.name, p.kind)
        })
        .collect();
    let mut adopted = HashSet::new();
    for link in links.iter().filter(|l| !is_loopback(l)) {
        let Some(kind) = present.get(link.name.as_str()) else {
            continue;
        };
        if *kind != link.kind {
            return Err(CoreError::Refused(format!(
                "netns \"{label}\" has a device \"{}\" of kind {}, where the image has a {}; remove it or restore into another namespace",
                link.name,
                if kind.is_empty() { "(none)" } else { kind },
                link.kind
            )));
        }
        adopted.insert(link.name.clone());
    }
    for link in links.iter().filter(|l| adopted.contains(&l.name)) {
        if let Some(peer) = local_peer(link) {
            if !adopted.contains(&peer.name) {
                return Err(CoreError::Refused(format!(
                    "netns \"{label}\" has \"{}\" but not its peer \"{}\": a pair is adopted whole or not at all",
                    link.name, peer.name
                )));
            }
        }
    }
    Ok(adopted)
}

/// An existing target may not hold a device the image creates (lo is changed in place).
fn refuse_clashes(label: &str, links: &[v1::Link], present: &[LinkMessage]) -> Result<()> {
    let present: HashSet<&str> = present.iter().map(|l| common::parse(l).name).collect();
    let clashes: Vec<&str> = links
        .iter()
        .filter(|l| !is_loopback(l) && present.contains(l.name.as_str()))
        .map(|l| l.name.as_str())
        .collect();
    if clashes.is_empty() {
        return Ok(());
    }
    Err(CoreError::Refused(format!(
        "netns \"{label}\" already has {}: {}; restore into an empty namespace or remove them",
        if clashes.len() == 1 {
            "a device the image holds"
        } else {
            "devices the image holds"
        },
        clashes.join(", ")
    )))
}

/// With a run directory: takes the lock of every target (by name and by identity), so that
/// a second restore into one of them refuses at once, then opens the journal on disk with a
/// header naming every namespace it may touch. Nothing has changed yet.
pub(crate) fn lock_and_journal(s: &mut Session<'_>, image_dir: &Path) -> Result<()> {
    let Some(run_dir) = s.opts.run_dir.clone() else {
        return Ok(());
    };
    netcr_image::journal::ensure_run_dir(&run_dir)?;
    let mut keys = Vec::new();
    for t in &s.targets {
        if let Some(name) = &t.named {
            keys.push((name_key(name), t.label.clone()));
        }
        if let Some(netns) = &t.netns {
            keys.push((identity_key(netns.id()?), t.label.clone()));
        }
    }
    for (key, label) in keys {
        let held = lock(&run_dir, &key, &label)?;
        s.locks.push(held);
    }
    let namespace = |netns: &Netns| -> Result<jv1::Namespace> {
        let (dev, ino) = netns.id()?;
        Ok(jv1::Namespace {
            path: netns.path().display().to_string(),
            dev,
            ino,
        })
    };
    let mut targets = Vec::new();
    for t in &s.targets {
        targets.push(jv1::Target {
            label: t.label.clone(),
            existing: t.netns.as_ref().map(namespace).transpose()?,
            create: t.create.clone().unwrap_or_default(),
        });
    }
    let header = jv1::Header {
        pid: std::process::id(),
        image_dir: image_dir.display().to_string(),
        group: s.journal.group,
        caller: Some(namespace(s.caller)?),
        targets,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    s.journal.file = Some(JournalWriter::create(&run_dir, &header)?);
    Ok(())
}

/// An existing target may not hold a nexthop id the image creates: ids are kept, and a
/// creation never replaces a nexthop.
fn refuse_nexthop_clashes(
    label: &str,
    nexthops: &[v1::Nexthop],
    present: &[netcr_netlink::nexthop::NexthopMessage],
) -> Result<()> {
    let present: HashSet<u32> = present.iter().map(|n| n.id()).collect();
    let clashes: Vec<String> = nexthops
        .iter()
        .filter_map(|rec| crate::nexthops::decode(rec).ok())
        .map(|n| n.id())
        .filter(|id| present.contains(id))
        .map(|id| id.to_string())
        .collect();
    if clashes.is_empty() {
        return Ok(());
    }
    Err(CoreError::Refused(format!(
        "netns \"{label}\" already has nexthop ids the image holds: {}; restore into an empty namespace or remove them",
        clashes.join(", ")
    )))
}

/// Creates the targets that do not exist yet (as `ip netns add` does, owned by
/// `--userns` when given).
pub(crate) fn open_targets(s: &mut Session<'_>) -> Result<()> {
    for ns in 0..s.targets.len() {
        let Some(name) = s.targets[ns].create.clone() else {
            continue;
        };
        s.journal.intend(&Entry::NetnsCreated {
            ns,
            name: name.clone(),
            identity: None,
        })?;
        let netns = match &s.opts.userns {
            Some(userns) => Netns::create_named_in_userns(&name, userns)?,
            None => Netns::create_named(&name)?,
        };
        let identity = netns.id()?;
        s.journal.push(Entry::NetnsCreated {
            ns,
            name,
            identity: Some(identity),
        })?;
        // A restore that names it by path from now on finds it held too.
        if let Some(run_dir) = &s.opts.run_dir {
            let held = lock(run_dir, &identity_key(identity), &s.targets[ns].label)?;
            s.locks.push(held);
        }
        let target = &mut s.targets[ns];
        target.netns = Some(netns);
        target.report.created_netns = true;
    }
    Ok(())
}

/// A namespace the restore created gets the nsid table it had: the same ids for the other
/// namespaces of the image and for the caller's, as CRIU restores its peer_nsid. (An
/// existing namespace keeps its own table.) A peer the new namespace already numbers
/// otherwise (the kernel cannot renumber it) is a warning; a refusal is an error.
pub(crate) fn nsid_table(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let nsids = &s.image_ns(ns).netns.nsids;
    if s.targets[ns].existing() || nsids.is_empty() {
        return Ok(());
    }
    let mut peers = Vec::new();
    for entry in nsids {
        let peer = match &entry.peer {
            Some(v1::nsid_entry::Peer::Netns(id)) => {
                s.target_of(*id).and_then(|t| s.targets[t].netns.as_ref())
            }
            Some(v1::nsid_entry::Peer::Caller(true)) => Some(s.caller),
            _ => None,
        };
        if let Some(peer) = peer {
            peers.push((entry.nsid, peer.try_clone()?));
        }
    }
    s.check_cancel()?;
    let socket = s.socket(Key::Target(ns))?;
    let mut warnings = Vec::new();
    for (nsid, peer) in peers {
        let got = socket.ensure_nsid(&peer, Some(nsid))?;
        if got != nsid {
            warnings.push(format!(
                "nsid of \"{}\" is {got}, not {nsid} as in the image",
                peer.label()
            ));
        }
    }
    s.targets[ns].report.warnings.extend(warnings);
    Ok(())
}

/// Before the first change to an existing namespace, journals what its undo puts back: its
/// devices' per-device sysctls and lo's addresses.
pub(crate) fn snapshot_existing(s: &mut Session<'_>, ns: usize) -> Result<()> {
    if !s.targets[ns].existing() {
        return Ok(());
    }
    let links = s.targets[ns].links_before.clone();
    let lo = links.iter().find(|l| common::parse(l).name == "lo");
    let lo = lo.map(|l| l.header.index);
    s.journal.push(Entry::DevicesBefore { ns, links })?;
    if let Some(lo) = lo {
        let addresses = lo_addresses(s, ns, lo)?;
        s.journal
            .push(Entry::LoAddressesBefore { ns, lo, addresses })?;
    }
    Ok(())
}

/// The addresses on device `lo` of target `ns`.
pub(crate) fn lo_addresses(
    s: &mut Session<'_>,
    ns: usize,
    lo: u32,
) -> Result<Vec<netlink_packet_route::address::AddressMessage>> {
    let socket = s.socket(Key::Target(ns))?;
    let mut out = socket.dump_addresses(AddressFamily::Inet)?;
    out.extend(socket.dump_addresses(AddressFamily::Inet6)?);
    out.retain(|a| a.header.index == lo);
    Ok(out)
}

//! The xfrm phase: the namespace's IPsec states, policies and default policies, after the
//! links exist (a selector may name a device) and before any of them comes up, so that a
//! block policy is in place before the first packet. One request each, through the session
//! (numbered by the fault injection); states first, then policies, then the default
//! policies.
//!
//! Before any change ([`inspect`]): an existing target holding a state or policy of the
//! image (the same SA id; the same direction, selector, type, mark and if_id) is refused; a
//! policy whose index the target uses already gets a new one from the kernel (said in a
//! warning; the verification then leaves indexes aside). In an existing namespace each change is journaled with
//! the request that undoes it (DELSA, DELPOLICY, the default policies read before); in one
//! the restore created, everything goes with the namespace.

use std::collections::HashSet;

use super::journal::Entry;
use super::session::Session;
use crate::error::{CoreError, Result};
use crate::xfrm::{self, Kind, Object};

/// The checks of target `ns` before any change: an existing target may hold none of the
/// image's states and policies.
pub(crate) fn inspect(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let image = s.image_ns(ns);
    if image.xfrm.is_empty() || !s.targets[ns].existing() {
        return Ok(());
    }
    let label = s.targets[ns].label.clone();
    let present = present(s, ns)?;
    let keys: HashSet<Vec<u8>> = present
        .iter()
        .filter(|(o, _)| o.kind != Kind::Default)
        .map(|(o, dev)| o.key(dev))
        .collect();
    let indexes: HashSet<u32> = present
        .iter()
        .map(|(o, _)| o.index())
        .filter(|i| *i != 0)
        .collect();
    let mut clashes = Vec::new();
    let mut renumbered = Vec::new();
    for rec in &image.xfrm {
        let o = Object::decode(rec).map_err(CoreError::Refused)?;
        if o.kind == Kind::Default {
            continue;
        }
        let what = format!("{} {}", noun(o.kind), xfrm::describe(&o));
        if keys.contains(&o.key(&rec.dev)) {
            clashes.push(what);
        } else if indexes.contains(&o.index()) {
            renumbered.push(format!("{what} (index {})", o.index()));
        }
    }
    if !renumbered.is_empty() {
        // Every namespace numbers its policies alike: the kernel gives these new ones.
        s.targets[ns].report.warnings.push(format!(
            "netns \"{label}\" already uses the index of xfrm {}: the kernel numbers them anew",
            renumbered.join(", ")
        ));
    }
    if !clashes.is_empty() {
        return Err(CoreError::Refused(format!(
            "netns \"{label}\" already has xfrm objects the image holds: {}; restore into another namespace or delete them",
            clashes.join(", ")
        )));
    }
    Ok(())
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::State => "state",
        Kind::Policy => "policy",
        Kind::Default => "default policies",
    }
}

/// What target `ns` holds now, normalized as the dump keeps it (read as the comparison reads
/// it; only asked when the image holds xfrm objects).
pub(crate) fn present(s: &mut Session<'_>, ns: usize) -> Result<Vec<(Object, String)>> {
    let image = s.image_ns(ns);
    let label = s.targets[ns].label.clone();
    // The devices there before the restore, then those there now (which win).
    let target = &s.targets[ns];
    let names: std::collections::HashMap<u32, String> = target
        .links_before
        .iter()
        .map(|l| (l.header.index, crate::common::parse(l).name.to_string()))
        .chain(target.index.iter().map(|(n, i)| (*i, n.clone())))
        .collect();
    let socket = match s.xfrm(ns) {
        Ok(socket) => socket,
        Err(CoreError::Netlink(e)) if e.is_unsupported() => {
            return Err(CoreError::Refused(format!(
                "netns \"{label}\": the image holds IPsec (xfrm) objects, and this kernel has no NETLINK_XFRM"
            )))
        }
        Err(e) => return Err(e),
    };
    crate::compare::observe_xfrm(image, socket, &names)
}

/// Adds the image's states and policies to target `ns` and sets its default policies.
pub(crate) fn add(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let image = s.image_ns(ns);
    if image.xfrm.is_empty() {
        return Ok(());
    }
    let existing = s.targets[ns].existing();
    let mut requests = Vec::with_capacity(image.xfrm.len());
    {
        let target = &s.targets[ns];
        let index_of = |dev: &str| target.index.get(dev).copied();
        for rec in &image.xfrm {
            requests.push(xfrm::creation(rec, &index_of).map_err(CoreError::Refused)?);
        }
    }
    let mut added = 0;
    for request in requests {
        let undo = if request.message.kind == xfrm::SETDEFAULT {
            if existing {
                let before = present(s, ns)?
                    .into_iter()
                    .find(|(o, _)| o.kind == Kind::Default)
                    .map(|(o, _)| [o.head[0], o.head[1], o.head[2]])
                    .unwrap_or([2, 2, 2]);
                Some(xfrm::default_request(
                    before,
                    "setting the xfrm default policies back",
                ))
            } else {
                None
            }
        } else {
            added += 1;
            xfrm::deletion(&request.message)
        };
        let entry = undo
            .filter(|_| existing)
            .map(|undo| Entry::XfrmAdded { ns, undo });
        if let Some(entry) = &entry {
            s.journal.intend(entry)?;
        }
        s.xfrm_change(ns, request)?;
        if let Some(entry) = entry {
            s.journal.push(entry)?;
        }
    }
    s.targets[ns].report.xfrm = added;
    Ok(())
}

//! The traffic control phase: every qdisc, class and filter of the image, after the links
//! exist and before any of them comes up, so that no packet crosses a device unshaped or
//! unfiltered (and a mirred target, being a link, exists by then). Per device, its root,
//! ingress or clsact qdisc, then classes and child qdiscs parent first, then filters, in
//! the image's order, in one pipelined batch: the kernel takes them in order.
//!
//! In an existing namespace each top-level qdisc added is journaled and deleted again on
//! rollback, which removes everything under it; a device there that has a qdisc of its own
//! where the image puts one is refused before any change. In a namespace the restore
//! created, and on the devices it created, they go with the namespace or the device.

use std::collections::HashSet;

use netcr_netlink::tc::{RTM_GETQDISC, RTM_NEWQDISC, TC_H_INGRESS, TC_H_ROOT};
use netcr_netlink::{RawMessage, Request};

use super::journal::Entry;
use super::session::{annotate, Key, Session};
use crate::error::{CoreError, Result};
use crate::tc;

/// Refuses an existing target whose devices (lo, adopted ones) already have a root,
/// ingress or clsact qdisc of their own where the image puts one.
pub(crate) fn inspect(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let image = s.image_ns(ns);
    let tops: Vec<(&str, u32)> = image
        .tc
        .iter()
        .filter_map(|r| tc::is_top_qdisc(r).map(|h| (r.dev.as_str(), h.parent)))
        .collect();
    if tops.is_empty() || !s.targets[ns].existing() {
        return Ok(());
    }
    let names = crate::state::names_by_index(&s.targets[ns].links_before);
    let mut body = netcr_netlink::tc::TcHeader::default().bytes();
    body.extend(netcr_netlink::raw::attribute(
        netcr_netlink::tc::TCA_DUMP_INVISIBLE,
        &[],
    ));
    let present = s.socket(Key::Target(ns))?.dump_raw(
        RawMessage {
            kind: RTM_GETQDISC,
            body,
        },
        "dumping qdiscs",
    )?;
    let mut clashes = Vec::new();
    let mut seen = HashSet::new();
    for m in present.iter().filter(|m| m.kind == RTM_NEWQDISC) {
        let Some(h) = netcr_netlink::tc::TcHeader::parse(&m.body) else {
            continue;
        };
        if !tc::is_user_qdisc(&h) || !matches!(h.parent, TC_H_ROOT | TC_H_INGRESS) {
            continue;
        }
        let Some(dev) = names.get(&h.ifindex) else {
            continue;
        };
        if tops.contains(&(dev.as_str(), h.parent)) && seen.insert((dev.clone(), h.parent)) {
            clashes.push(tc::describe(u32::from(m.kind), dev, &m.body));
        }
    }
    if clashes.is_empty() {
        return Ok(());
    }
    Err(CoreError::Refused(format!(
        "netns \"{}\" already has qdiscs where the image puts its own: {}; restore into an empty namespace or remove them",
        s.targets[ns].label,
        clashes.join(", ")
    )))
}

/// Adds every tc object of the image to target `ns`.
pub(crate) fn add(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let records = &s.image_ns(ns).tc;
    if records.is_empty() {
        return Ok(());
    }
    let existing = s.targets[ns].existing();
    let mut requests = Vec::new();
    let mut entries = Vec::new();
    {
        let target = &s.targets[ns];
        let index_of = |dev: &str| target.index.get(dev).copied();
        for i in tc::to_send(records) {
            let rec = &records[i];
            let message = tc::creation(rec, &index_of).map_err(CoreError::Refused)?;
            let what = tc::describe(rec.kind, &rec.dev, &rec.message);
            let ifindex = index_of(&rec.dev).unwrap_or(0);
            entries.push(
                tc::is_top_qdisc(rec)
                    .filter(|_| existing)
                    .map(|h| Entry::TcQdiscAdded {
                        ns,
                        dev: rec.dev.clone(),
                        ifindex,
                        parent: h.parent,
                        handle: h.handle,
                    }),
            );
            requests.push(Request::create(message, format!("adding {what}")));
        }
    }
    for entry in entries.iter().flatten() {
        s.journal.intend(entry)?;
    }
    let replies = s.send_raw(Key::Target(ns), requests)?;
    let mut added = 0;
    let mut first_err = None;
    for (reply, entry) in replies.into_iter().zip(entries) {
        match reply {
            Ok(_) => {
                added += 1;
                if let Some(entry) = entry {
                    s.journal.push(entry)?;
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    s.targets[ns].report.tc = added;
    match first_err {
        Some(e) => Err(annotate(e)),
        None => Ok(()),
    }
}

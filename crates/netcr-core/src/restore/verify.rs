//! Verify: read each restored namespace back and compare it with the image (the reading and
//! the comparison are [`crate::compare`]'s, which `netcr diff` uses too); a difference is an
//! error naming the object and the field.

use std::collections::HashMap;

use netcr_netlink::RtnlExt;

use super::plan::index_map;
use super::session::{Key, Session};
use crate::compare::{self, Expected};
use crate::error::{CoreError, Result};
use crate::state;

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
    let caller_links = s.socket(Key::Caller)?.dump_links()?;
    let netns = s.netns(Key::Target(ns))?.try_clone()?;
    let mut observed = compare::observe(
        image,
        &netns,
        s.socket(Key::Target(ns))?,
        caller_links,
        caller,
    )?;
    observed.label = s.targets[ns].label.clone();
    observed.peers = peers;
    observed.nftables = if image.nftables.is_empty() {
        Vec::new()
    } else {
        compare::observe_nftables(image, s.netfilter(ns)?)?
    };
    if !image.xfrm.is_empty() {
        observed.xfrm = super::xfrm::present(s, ns)?;
    }
    let target = &s.targets[ns];
    let expected = Expected {
        outer_of: target
            .outside
            .iter()
            .map(|(inner, o)| (inner.clone(), o.mapping.outer.clone()))
            .collect(),
        sysctls_left_out: Some(&target.sysctls_left_out),
        adopted: Some(&target.adopted),
        // An existing namespace may have had the indexes of the image's policies in use.
        xfrm_indexes_may_differ: target.existing(),
    };
    let comparison = compare::compare(image, &observed, &expected)?;
    if !comparison.differences.is_empty() {
        return Err(CoreError::Verify(comparison.differences.join("; ")));
    }
    let left_alone = comparison.adopted;
    let after = observed.links;
    let now = index_map(&after);
    let target = &mut s.targets[ns];
    let report = &mut target.report;
    report.warnings.extend(
        left_alone
            .into_iter()
            .map(|d| format!("adopted {d}; left as it is")),
    );
    report.devices = image
        .links
        .iter()
        .filter_map(|l| Some((l.name.clone(), *now.get(&l.name)?)))
        .collect();
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

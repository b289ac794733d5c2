//! The nf_tables phase: the namespace's whole firewall in one transaction (one nfnetlink
//! batch: the kernel applies it whole or not at all), after the links exist (netdev chains
//! and flowtables name devices) and before any of them comes up, so that the restored
//! namespace is never reachable without its firewall.
//!
//! Before any change ([`inspect`]): an existing target holding a table of the image is
//! refused, and so is a rule that matches a device by index where that device cannot keep
//! its index. In an existing namespace each table is journaled (intended before the
//! transaction, done after it) and deleted again on rollback; in one the restore created,
//! the tables go with the namespace.

use std::collections::HashSet;

use netcr_netlink::nftables::{dump_tables, family_name};

use super::journal::Entry;
use super::session::Session;
use crate::error::{CoreError, Result};
use crate::nftables::{self, Object};

/// The checks of target `ns` before any change: an existing target may hold none of the
/// image's tables, and each device a rule matches by index must keep its index (lo always
/// does; a device the restore makes does where the target does not hold its index; an
/// adopted one only if it has the image's index already).
pub(crate) fn inspect(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let image = s.image_ns(ns);
    if image.nftables.is_empty() {
        return Ok(());
    }
    let target = &s.targets[ns];
    let label = target.label.clone();
    if target.existing() {
        let mut lost = Vec::new();
        let taken: HashSet<u32> = target.links_before.iter().map(|l| l.header.index).collect();
        let index_now = |dev: &str| {
            target
                .links_before
                .iter()
                .find(|l| crate::common::parse(l).name == dev)
                .map(|l| l.header.index)
        };
        let mut position = std::collections::HashMap::new();
        for rec in &image.nftables {
            let o = Object::decode(rec).map_err(CoreError::Refused)?;
            if o.kind != nftables::Kind::Rule {
                continue;
            }
            let key = (
                o.family,
                o.table().unwrap_or("").to_string(),
                o.chain().unwrap_or("").to_string(),
            );
            let n = position
                .entry(key)
                .and_modify(|n| *n += 1)
                .or_insert(1usize);
            for (ifindex, dev) in &o.ifindexes {
                let is_lo = image
                    .links
                    .iter()
                    .any(|l| l.name == *dev && crate::common::is_loopback(l));
                let kept = if is_lo {
                    true
                } else if target.adopted.contains(dev) {
                    index_now(dev) == Some(*ifindex)
                } else {
                    !taken.contains(ifindex)
                };
                if !kept && !dev.is_empty() {
                    lost.push(format!(
                        "{} matches \"{dev}\" by its index {ifindex}, which \"{dev}\" cannot keep here (netns \"{label}\" holds it)",
                        crate::nftables::rule_label(&o, *n)
                    ));
                }
            }
        }
        if !lost.is_empty() {
            return Err(CoreError::Refused(format!(
                "{}; restore into a namespace where the index is free",
                lost.join("; ")
            )));
        }
        let wanted = nftables::tables(image);
        let present = match dump_tables(s.netfilter(ns)?)? {
            Some(tables) => nftables::dumped_tables(&tables),
            None => {
                return Err(CoreError::Refused(format!(
                    "netns \"{label}\": the image holds an nf_tables firewall, and this kernel has no nf_tables"
                )))
            }
        };
        let clashes: Vec<String> = wanted
            .iter()
            .filter(|t| present.contains(t))
            .map(|(family, name)| format!("{} {name}", family_name(*family)))
            .collect();
        if !clashes.is_empty() {
            return Err(CoreError::Refused(format!(
                "netns \"{label}\" already has nf_tables tables the image holds: {}; restore into another namespace or delete them",
                clashes.join(", ")
            )));
        }
    }
    Ok(())
}

/// Adds the image's firewall to target `ns` in one transaction.
pub(crate) fn add(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let image = s.image_ns(ns);
    if image.nftables.is_empty() {
        return Ok(());
    }
    let batch = nftables::requests(image, s.opts.keep_counters).map_err(CoreError::Refused)?;
    s.targets[ns].report.warnings.extend(batch.warnings);
    let existing = s.targets[ns].existing();
    let entry = |(family, name): &(u8, String)| Entry::NftTableAdded {
        ns,
        family: *family,
        name: name.clone(),
    };
    if existing {
        for t in &batch.tables {
            s.journal.intend(&entry(t))?;
        }
    }
    let context = format!(
        "restoring the nf_tables firewall ({} tables, {} requests)",
        batch.tables.len(),
        batch.requests.len()
    );
    if let Err(e) = s.transaction(ns, batch.requests, &context) {
        // A refusal: the kernel applied nothing. Anything else (the answer lost, the
        // transaction never sent): the tables the namespace has now are the restore's, as
        // it held none of them before.
        let refused = matches!(e, CoreError::Netlink(netcr_netlink::Error::Kernel { .. }));
        if existing && !refused && !matches!(e, CoreError::Interrupted(_)) {
            if let Ok(Some(now)) = dump_tables(s.netfilter(ns)?) {
                let now = nftables::dumped_tables(&now);
                for t in batch.tables.iter().filter(|t| now.contains(t)) {
                    s.journal.push(entry(t))?;
                }
            }
        }
        return Err(e);
    }
    if existing {
        for t in &batch.tables {
            s.journal.push(entry(t))?;
        }
    }
    s.targets[ns].report.nft_tables = batch.tables.len();
    Ok(())
}

//! Undo: the journal walked backwards. [`plan`] turns it into steps (a pure function, so
//! rollback ordering is tested without a kernel); [`roll_back`] runs them and says what it
//! did and what it could NOT undo.

use std::collections::{HashMap, HashSet};

use netcr_netlink::{RawMessage, Request, RtnlExt};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkLayerType, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::journal::{Entry, Journal};
use super::plan::index_map;
use super::session::{Key, Session};
use super::sysctls::ipv4_request;
use crate::common;
use crate::error::CoreError;
use crate::sysctl;

/// One step of a rollback.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Deletes objects added to namespace `ns` (not-found counts as done).
    DeleteObjects { ns: usize, requests: Vec<Request> },
    /// Deletes nexthops added to namespace `ns`, by id (not-found counts as done).
    DeleteNexthops { ns: usize, ids: Vec<u32> },
    /// Deletes nf_tables tables (family, name) added to namespace `ns` with all they hold
    /// (not-found counts as done).
    DeleteNftTables {
        ns: usize,
        tables: Vec<(u8, String)>,
    },
    /// Undoes xfrm changes in namespace `ns`, newest first: removes states and policies,
    /// puts default policies back (not-found counts as done).
    UndoXfrm {
        ns: usize,
        requests: Vec<Request<RawMessage>>,
    },
    /// Deletes top-level qdiscs added to namespace `ns` with all under them: (device index,
    /// device name, parent, handle); gone counts as done.
    DeleteTcQdiscs {
        ns: usize,
        qdiscs: Vec<(u32, String, u32, u32)>,
    },
    /// Puts the links created in `ns` back into the private group (the final settings
    /// moved them out), by name.
    Regroup { ns: usize, names: Vec<String> },
    /// Removes every link of the private group in `ns` with one request; `count` links
    /// were created there.
    DeleteGroup { ns: usize, count: usize },
    /// Removes one device by name, if it is still there.
    DeleteByName { key: Key, name: String },
    /// Gives a link changed in place its old settings back.
    PutBackLink { ns: usize, before: LinkMessage },
    /// Writes namespace sysctls back, newest first.
    PutBackSysctls {
        ns: usize,
        changed: Vec<(String, String)>,
    },
    /// Sets the per-device sysctls of these devices back where they differ now.
    PutBackDevconf {
        ns: usize,
        devices: Vec<LinkMessage>,
    },
    /// Removes the addresses on lo that were not there before.
    TrimLoAddresses {
        ns: usize,
        lo: u32,
        before: Vec<AddressMessage>,
    },
    /// Deletes a namespace the restore created (after everything in it).
    DeleteNetns { ns: usize, name: String },
    /// Links a killed restore was about to create in `ns`: those in the private group are
    /// its own (read back from a journal only).
    DeleteIntendedLinks { ns: usize, names: Vec<String> },
}

/// The rollback of `journal`: newest change first, consecutive object deletions in one
/// batch, and each namespace's links removed by one group deletion (placed at its newest
/// creation, after the regrouping that precedes it).
pub(crate) fn plan(journal: &Journal) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut groups_deleted: HashSet<usize> = HashSet::new();
    for entry in journal.entries().iter().rev() {
        match entry {
            Entry::ObjectAdded { ns, delete } => match steps.last_mut() {
                Some(Step::DeleteObjects { ns: n, requests }) if n == ns => {
                    requests.push(delete.clone())
                }
                _ => steps.push(Step::DeleteObjects {
                    ns: *ns,
                    requests: vec![delete.clone()],
                }),
            },
            Entry::NexthopAdded { ns, id } => match steps.last_mut() {
                Some(Step::DeleteNexthops { ns: n, ids }) if n == ns => ids.push(*id),
                _ => steps.push(Step::DeleteNexthops {
                    ns: *ns,
                    ids: vec![*id],
                }),
            },
            Entry::NftTableAdded { ns, family, name } => match steps.last_mut() {
                Some(Step::DeleteNftTables { ns: n, tables }) if n == ns => {
                    tables.push((*family, name.clone()))
                }
                _ => steps.push(Step::DeleteNftTables {
                    ns: *ns,
                    tables: vec![(*family, name.clone())],
                }),
            },
            Entry::XfrmAdded { ns, undo } => match steps.last_mut() {
                Some(Step::UndoXfrm { ns: n, requests }) if n == ns => requests.push(undo.clone()),
                _ => steps.push(Step::UndoXfrm {
                    ns: *ns,
                    requests: vec![undo.clone()],
                }),
            },
            Entry::TcQdiscAdded {
                ns,
                dev,
                ifindex,
                parent,
                handle,
            } => {
                let q = (*ifindex, dev.clone(), *parent, *handle);
                match steps.last_mut() {
                    Some(Step::DeleteTcQdiscs { ns: n, qdiscs }) if n == ns => qdiscs.push(q),
                    _ => steps.push(Step::DeleteTcQdiscs {
                        ns: *ns,
                        qdiscs: vec![q],
                    }),
                }
            }
            Entry::LinksRegrouped { ns } => {
                let names = journal.links_in(*ns);
                if !names.is_empty() {
                    steps.push(Step::Regroup { ns: *ns, names });
                }
            }
            Entry::LinksCreated { ns, .. } => {
                if groups_deleted.insert(*ns) {
                    let count = journal.links_in(*ns).len();
                    steps.push(Step::DeleteGroup { ns: *ns, count });
                }
            }
            Entry::LinksIntended { ns, names } => steps.push(Step::DeleteIntendedLinks {
                ns: *ns,
                names: names.clone(),
            }),
            Entry::DeviceMade { ns, name } => steps.push(Step::DeleteByName {
                key: Key::Target(*ns),
                name: name.clone(),
            }),
            Entry::TemporaryLink { name } => steps.push(Step::DeleteByName {
                key: Key::Caller,
                name: name.clone(),
            }),
            Entry::LinkChanged { ns, before } => steps.push(Step::PutBackLink {
                ns: *ns,
                before: before.clone(),
            }),
            Entry::NetnsSysctls { ns, changed } => steps.push(Step::PutBackSysctls {
                ns: *ns,
                changed: changed.clone(),
            }),
            Entry::DevicesBefore { ns, links } => steps.push(Step::PutBackDevconf {
                ns: *ns,
                devices: links.clone(),
            }),
            Entry::LoAddressesBefore { ns, lo, addresses } => steps.push(Step::TrimLoAddresses {
                ns: *ns,
                lo: *lo,
                before: addresses.clone(),
            }),
            Entry::NetnsCreated { ns, name, .. } => steps.push(Step::DeleteNetns {
                ns: *ns,
                name: name.clone(),
            }),
        }
    }
    steps
}

/// What a rollback did, could not do, and left alone.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub done: Vec<String>,
    pub failed: Vec<String>,
    /// What a recovery found but could not prove was netcr's own.
    pub left_alone: Vec<String>,
    regroupings: usize,
    link_deletions: usize,
}

/// Runs `steps` in order (each one even when an earlier one failed).
pub(crate) fn execute(s: &mut Session<'_>, steps: Vec<Step>) -> Outcome {
    let mut out = Outcome::default();
    for step in steps {
        run(s, step, &mut out);
    }
    out
}

/// Undoes everything the journal holds and turns `cause` into the error the caller sees:
/// [`CoreError::RolledBack`] (or [`CoreError::Interrupted`]) saying what was undone.
pub(crate) fn roll_back(s: &mut Session<'_>, cause: CoreError) -> CoreError {
    let started = std::time::Instant::now();
    let requests_before = s.requests();
    let steps = plan(&s.journal);
    let mut out = execute(s, steps);
    let requests = s.requests() - requests_before;
    log::info!(
        "rollback: {requests} requests: {} regroupings, {} link deletions, {} others; {:.1} ms",
        out.regroupings,
        out.link_deletions,
        requests.saturating_sub(out.regroupings + out.link_deletions),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut text = if out.done.is_empty() && out.failed.is_empty() {
        "nothing had changed".to_string()
    } else {
        out.done.join(", ")
    };
    match s.journal.file.take() {
        Some(file) if out.failed.is_empty() => {
            if let Err(e) = file.remove() {
                out.failed.push(format!("removing the journal: {e}"));
            }
        }
        // What could not be undone stays on record for `netcr recover`.
        Some(file) => out.failed.push(format!(
            "its journal stays in {} (`netcr recover` tries again)",
            file.path().display()
        )),
        None => {}
    }
    if !out.failed.is_empty() {
        text.push_str(&format!("; could NOT undo: {}", out.failed.join("; ")));
    }
    match cause {
        CoreError::Interrupted(_) => CoreError::Interrupted(text),
        cause => CoreError::RolledBack {
            cause: Box::new(cause),
            rollback: text,
        },
    }
}

/// Errors that mean the thing to undo is already gone.
fn gone(e: &netcr_netlink::Error) -> bool {
    e.is_not_found() || e.errno() == Some(libc::EADDRNOTAVAIL)
}

/// Sends `requests` into `key`'s namespace; returns the errors other than "already gone".
fn send(s: &mut Session<'_>, key: Key, requests: Vec<Request>) -> Vec<String> {
    if requests.is_empty() {
        return Vec::new();
    }
    match s.socket(key) {
        Ok(socket) => failures(socket.batch(requests)),
        Err(e) => vec![e.to_string()],
    }
}

/// The errors of a batch's replies other than "already gone".
fn failures<M>(replies: Vec<netcr_netlink::Reply<M>>) -> Vec<String> {
    replies
        .into_iter()
        .filter_map(|r| r.err())
        .filter(|e| !gone(e))
        .map(|e| e.to_string())
        .collect()
}

/// The links of `key`'s namespace now, or why they cannot be read.
fn links_now(s: &mut Session<'_>, key: Key) -> Result<Vec<LinkMessage>, String> {
    s.socket(key)
        .and_then(|t| Ok(t.dump_links()?))
        .map_err(|e| e.to_string())
}

fn run(s: &mut Session<'_>, step: Step, out: &mut Outcome) {
    match step {
        Step::DeleteObjects { ns, requests } => {
            let n = requests.len();
            let errors = send(s, Key::Target(ns), requests);
            if errors.is_empty() {
                out.done
                    .push(format!("removed {n} added addresses, routes and rules"));
            }
            out.failed.extend(errors);
        }
        Step::DeleteNexthops { ns, ids } => {
            let n = ids.len();
            let requests = ids
                .into_iter()
                .map(crate::nexthops::delete_request)
                .collect();
            let errors = match s.socket(Key::Target(ns)) {
                Ok(socket) => failures(socket.batch_raw(requests)),
                Err(e) => vec![e.to_string()],
            };
            if errors.is_empty() {
                out.done.push(format!("removed {n} added nexthops"));
            }
            out.failed.extend(errors);
        }
        Step::DeleteTcQdiscs { ns, qdiscs } => {
            let n = qdiscs.len();
            let requests = qdiscs
                .iter()
                .map(|(ifindex, dev, parent, handle)| {
                    crate::tc::delete_request(*ifindex, dev, *parent, *handle)
                })
                .collect();
            // Gone: the device (ENODEV), or the qdisc (the kernel's default one is there
            // instead: EINVAL, "invalid handle"; or none: ENOENT).
            let errors: Vec<String> = match s.socket(Key::Target(ns)) {
                Ok(socket) => socket
                    .batch_raw(requests)
                    .into_iter()
                    .filter_map(|r| r.err())
                    .filter(|e| !gone(e) && e.errno() != Some(libc::EINVAL))
                    .map(|e| e.to_string())
                    .collect(),
                Err(e) => vec![e.to_string()],
            };
            if errors.is_empty() {
                out.done.push(format!("removed {n} added qdiscs"));
            }
            out.failed.extend(errors);
        }
        Step::DeleteNftTables { ns, tables } => {
            let n = tables.len();
            // One transaction each: in one, a table already gone would keep the others.
            let mut errors = Vec::new();
            for (family, name) in tables {
                let request = crate::nftables::table_deletion(family, &name);
                let context = request.context.clone();
                // No cancellation check: a rollback runs after one too.
                let subsystem = netcr_netlink::nftables::NFNL_SUBSYS_NFTABLES;
                match s.netfilter(ns) {
                    Ok(socket) => match socket.transaction(subsystem, vec![request], &context) {
                        Ok(()) => {}
                        Err(e) if gone(&e) => {}
                        Err(e) => errors.push(e.to_string()),
                    },
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if errors.is_empty() {
                out.done.push(format!("removed {n} added nf_tables tables"));
            }
            out.failed.extend(errors);
        }
        Step::UndoXfrm { ns, requests } => {
            let n = requests.len();
            let mut errors = Vec::new();
            for request in requests {
                // No cancellation check: a rollback runs after one too.
                match s.xfrm(ns) {
                    Ok(socket) => match socket.change(request) {
                        Ok(()) => {}
                        Err(e) if gone(&e) => {}
                        Err(e) => errors.push(e.to_string()),
                    },
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if errors.is_empty() {
                out.done.push(format!("undid {n} xfrm changes"));
            }
            out.failed.extend(errors);
        }
        Step::Regroup { ns, names } => match links_now(s, Key::Target(ns)) {
            Ok(now) => {
                let index = index_map(&now);
                let group = s.journal.group;
                let requests: Vec<Request> = names
                    .iter()
                    .filter_map(|n| index.get(n))
                    .map(|&i| {
                        let mut msg = LinkMessage::default();
                        msg.header.index = i;
                        msg.attributes.push(LinkAttribute::Group(group));
                        Request::change(
                            RouteNetlinkMessage::SetLink(msg),
                            "regrouping for rollback",
                        )
                    })
                    .collect();
                out.regroupings += requests.len();
                out.failed.extend(send(s, Key::Target(ns), requests));
            }
            Err(e) => out.failed.push(e),
        },
        Step::DeleteGroup { ns, count } => {
            if s.strict {
                let names = s.journal.links_maybe_in(ns);
                delete_proven_links(s, ns, &names, out);
                return;
            }
            out.link_deletions += 1;
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::Group(s.journal.group));
            let request = Request::change(
                RouteNetlinkMessage::DelLink(msg),
                "removing the links the restore created",
            );
            // Not found: they went already, with the other end of a pair.
            let errors = send(s, Key::Target(ns), vec![request]);
            if errors.is_empty() {
                out.done.push(format!("removed {count} links"));
            }
            out.failed.extend(errors);
        }
        Step::DeleteIntendedLinks { ns, names } => delete_proven_links(s, ns, &names, out),
        Step::DeleteByName { key, name } => {
            if s.strict && key == Key::Caller {
                // A temporary link is netcr's only while it is in the private group.
                delete_proven_links_in(s, key, std::slice::from_ref(&name), out);
                return;
            }
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(name.clone()));
            let request = Request::change(
                RouteNetlinkMessage::DelLink(msg),
                format!("removing \"{name}\""),
            );
            out.failed.extend(send(s, key, vec![request]));
        }
        Step::PutBackLink { ns, before } => {
            let request = Request::change(
                RouteNetlinkMessage::SetLink(link_as_it_was(&before)),
                format!("putting {} back", common::parse(&before).name),
            );
            let errors = send(s, Key::Target(ns), vec![request]);
            if errors.is_empty() {
                out.done
                    .push(format!("put {} back", common::parse(&before).name));
            }
            out.failed.extend(errors);
        }
        Step::PutBackSysctls { ns, changed } => {
            let errors = match s.netns(Key::Target(ns)) {
                Ok(netns) => sysctl::undo_netns(netns, &changed),
                Err(e) => vec![e.to_string()],
            };
            if errors.is_empty() {
                out.done.push(format!("put back {} sysctls", changed.len()));
            }
            out.failed.extend(errors);
        }
        Step::PutBackDevconf { ns, devices } => {
            if let Err(e) = put_back_devconf(s, ns, &devices) {
                out.failed.push(e);
            }
        }
        Step::TrimLoAddresses { ns, lo, before } => {
            if let Err(e) = trim_lo_addresses(s, ns, lo, &before) {
                out.failed.push(e);
            }
        }
        Step::DeleteNetns { ns, name } => {
            if s.targets[ns].netns.is_none() {
                if netcr_netlink::netns::named_exists(&name) {
                    out.left_alone.push(format!(
                        "netns \"{name}\": not the namespace the journal names; left alone"
                    ));
                }
                return;
            }
            // Sockets in the namespace hold it alive: close them before deleting it.
            s.close(Key::Target(ns));
            if s.strict && !netcr_netlink::netns::named_exists(&name) {
                return;
            }
            match netcr_netlink::Netns::delete_named(&name) {
                Ok(()) => out.done.push(format!("deleted netns \"{name}\"")),
                Err(e) => out.failed.push(e.to_string()),
            }
        }
    }
}

/// In recovery: removes the links of `names` that are in the private group of target `ns`
/// (only those are provably netcr's), with one group deletion when the group holds nothing
/// else.
fn delete_proven_links(s: &mut Session<'_>, ns: usize, names: &[String], out: &mut Outcome) {
    delete_proven_links_in(s, Key::Target(ns), names, out)
}

fn delete_proven_links_in(s: &mut Session<'_>, key: Key, names: &[String], out: &mut Outcome) {
    let group = s.journal.group;
    let now = match links_now(s, key) {
        Ok(now) => now,
        Err(e) => return out.failed.push(e),
    };
    let members: Vec<&LinkMessage> = now
        .iter()
        .filter(|l| l.attributes.contains(&LinkAttribute::Group(group)))
        .collect();
    let (ours, others): (Vec<&LinkMessage>, Vec<&LinkMessage>) = members
        .into_iter()
        .partition(|l| names.iter().any(|n| n == common::parse(l).name));
    if ours.is_empty() {
        return;
    }
    let requests = if others.is_empty() {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        vec![Request::change(
            RouteNetlinkMessage::DelLink(msg),
            "removing the links the restore created",
        )]
    } else {
        for other in &others {
            out.left_alone.push(format!(
                "\"{}\" is in netcr's link group but not in the journal; left alone",
                common::parse(other).name
            ));
        }
        ours.iter()
            .map(|l| {
                let mut msg = LinkMessage::default();
                msg.header.index = l.header.index;
                Request::change(
                    RouteNetlinkMessage::DelLink(msg),
                    format!("removing \"{}\"", common::parse(l).name),
                )
            })
            .collect()
    };
    out.link_deletions += requests.len();
    let errors = send(s, key, requests);
    if errors.is_empty() {
        out.done.push(format!("removed {} links", ours.len()));
    }
    out.failed.extend(errors);
}

/// The change that gives a link its MTU, txqlen, group, alias and flags back.
fn link_as_it_was(before: &LinkMessage) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = before.header.index;
    let mut alias = String::new();
    // A loopback's MAC cannot be set; another device's (an adopted one) was maybe changed.
    let loopback = before.header.link_layer_type == LinkLayerType::Loopback;
    for a in &before.attributes {
        match a {
            LinkAttribute::Mtu(_) | LinkAttribute::TxQueueLen(_) | LinkAttribute::Group(_) => {
                msg.attributes.push(a.clone())
            }
            LinkAttribute::Address(_) if !loopback => msg.attributes.push(a.clone()),
            LinkAttribute::IfAlias(a) => alias = a.clone(),
            _ => {}
        }
    }
    msg.attributes.push(LinkAttribute::IfAlias(alias));
    let mask = common::restorable_flags(false);
    msg.header.change_mask = mask;
    msg.header.flags = before.header.flags & mask;
    msg
}

/// Sets every device that was there before back to the per-device sysctls it had (IPv4
/// over netlink, IPv6 through /proc), where they differ now.
fn put_back_devconf(s: &mut Session<'_>, ns: usize, before: &[LinkMessage]) -> Result<(), String> {
    let now = links_now(s, Key::Target(ns))?;
    let now: HashMap<u32, &LinkMessage> = now.iter().map(|l| (l.header.index, l)).collect();
    let mut requests = Vec::new();
    let mut ipv6 = Vec::new();
    for old in before {
        let Some(cur) = now.get(&old.header.index) else {
            continue;
        };
        let (old4, old6) = sysctl::devconf_of(old);
        let (cur4, cur6) = sysctl::devconf_of(cur);
        requests.extend(ipv4_request(cur, &old4, &cur4, "putting back"));
        for (file, value) in sysctl::ipv6_writes(&old6, &cur6) {
            ipv6.push((common::parse(cur).name.to_string(), file, value));
        }
    }
    let mut errors = send(s, Key::Target(ns), requests);
    match s.netns(Key::Target(ns)) {
        Ok(netns) => match sysctl::write_ipv6(netns, &ipv6) {
            Ok(warnings) => errors.extend(warnings),
            Err(e) => errors.push(e.to_string()),
        },
        Err(e) => errors.push(e.to_string()),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Removes the addresses on lo (index `lo`) that were not there before.
fn trim_lo_addresses(
    s: &mut Session<'_>,
    ns: usize,
    lo: u32,
    before: &[AddressMessage],
) -> Result<(), String> {
    let now = super::prepare::lo_addresses(s, ns, lo).map_err(|e| e.to_string())?;
    let old: HashSet<String> = before.iter().map(address_key).collect();
    let deletes: Vec<Request> = now
        .into_iter()
        .filter(|a| !old.contains(&address_key(a)))
        .map(|a| {
            Request::change(
                RouteNetlinkMessage::DelAddress(a),
                "removing an address lo got during the restore",
            )
        })
        .collect();
    let errors = send(s, Key::Target(ns), deletes);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// What identifies an address on its device: family, prefix length, local and peer address.
fn address_key(a: &AddressMessage) -> String {
    let mut ips: Vec<String> = a
        .attributes
        .iter()
        .filter_map(|x| match x {
            AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    ips.sort();
    format!(
        "{:?}/{} {}",
        a.header.family,
        a.header.prefix_len,
        ips.join(" ")
    )
}

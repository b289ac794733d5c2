//! Recovery: the rollback of restores that were killed (SIGKILL, the OOM killer, a runtime's
//! timeout), from the journals they left in the run directory. A journal is stale when its
//! writer's lock is free, which the kernel guarantees once the writer is gone, however it
//! died. Recovery touches only what the journal proves is netcr's: namespaces by name *and*
//! identity, links by name *and* the private group, values it read before changing them; it
//! reports what it leaves alone. It is idempotent: killed halfway, run it again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use netcr_image::journal::{stale_journals, v1 as jv1, StaleJournal};
use netcr_image::Image;
use netcr_netlink::{Connector, Kernel, Netns, RtnlExt};

use super::journal::{from_record, Entry, Journal};
use super::session::{Key, Session, Target};
use super::undo::{self, Step};
use super::RestoreOptions;
use crate::common;
use crate::error::Result;

/// What recovering one journal did.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// The journal.
    pub journal: PathBuf,
    /// The process whose restore it records.
    pub pid: u32,
    /// The image that restore read.
    pub image_dir: String,
    /// What was undone.
    pub done: Vec<String>,
    /// What could not be undone; the journal then stays, for another try.
    pub failed: Vec<String>,
    /// What was found but is not provably netcr's: left as it is.
    pub left_alone: Vec<String>,
}

/// Rolls back every restore in `run_dir` whose process is gone, from the namespace netcr
/// runs in (`caller`, which must be the one the restore ran in for what it did there).
/// A journal whose rollback is complete is removed.
pub fn recover(
    run_dir: &Path,
    caller: &Netns,
    connector: &mut dyn Connector,
) -> Result<Vec<Recovery>> {
    let mut out = Vec::new();
    for stale in stale_journals(run_dir)? {
        let recovery = recover_one(&stale, caller, connector);
        if recovery.failed.is_empty() {
            if let Err(e) = stale.remove() {
                log::warn!("{}: {e}", recovery.journal.display());
            }
        }
        out.push(recovery);
    }
    Ok(out)
}

/// Before a restore: recovers what killed restores left, logging what it did; a problem is
/// a warning (the restore's own checks refuse what a leftover would spoil).
pub(crate) fn stale_before_restore(run_dir: &Path, caller: &Netns) {
    match recover(run_dir, caller, &mut Kernel) {
        Ok(recoveries) => {
            for r in recoveries {
                let what = format!(
                    "recovered the restore of process {} ({}) from {}",
                    r.pid,
                    r.image_dir,
                    r.journal.display()
                );
                if r.done.is_empty() {
                    log::info!("{what}: nothing had changed");
                } else {
                    log::info!("{what}: {}", r.done.join(", "));
                }
                for left in &r.left_alone {
                    log::warn!("{what}: {left}");
                }
                for failed in &r.failed {
                    log::warn!("{what}: could NOT undo: {failed}");
                }
            }
        }
        Err(e) => log::warn!("looking for killed restores in {}: {e}", run_dir.display()),
    }
}

fn recover_one(stale: &StaleJournal, caller: &Netns, connector: &mut dyn Connector) -> Recovery {
    let mut rec = Recovery {
        journal: stale.path().to_path_buf(),
        ..Default::default()
    };
    let records = match stale.read() {
        Ok(records) => records,
        Err(e) => {
            rec.failed.push(e.to_string());
            return rec;
        }
    };
    rec.pid = records.header.pid;
    rec.image_dir = records.header.image_dir.clone();
    let (entries, intents) = match read_entries(&records.entries) {
        Ok(read) => read,
        Err(e) => {
            rec.failed.push(e.to_string());
            return rec;
        }
    };
    let header = &records.header;
    let mut targets = Vec::new();
    for (ns, t) in header.targets.iter().enumerate() {
        let netns = reopen(ns, t, &entries, &intents, &mut rec);
        let create = (!t.create.is_empty()).then(|| t.create.clone());
        targets.push(Target::new(ns as u32, &t.label, netns, create));
    }
    for intent in &intents {
        match intent {
            Entry::ObjectAdded { ns, delete } if !entries.contains(intent) => {
                rec.left_alone.push(format!(
                    "netns \"{}\": the restore was {} when it was killed; check whether it is there",
                    label(&targets, *ns),
                    delete.context.replace("removing", "adding")
                ))
            }
            Entry::NexthopAdded { ns, id } if !entries.contains(intent) => {
                rec.left_alone.push(format!(
                    "netns \"{}\": the restore was adding nexthop {id} when it was killed; check whether it is there",
                    label(&targets, *ns)
                ))
            }
            Entry::XfrmAdded { ns, undo } if !entries.contains(intent) => {
                rec.left_alone.push(format!(
                    "netns \"{}\": the restore was {} when it was killed; check whether it is there",
                    label(&targets, *ns),
                    undo.context.replace("removing", "adding")
                ))
            }
            Entry::DeviceMade { ns, name } if !entries.contains(intent) => {
                rec.left_alone.push(format!(
                    "netns \"{}\": the restore was making \"{name}\" when it was killed; check whether it is there",
                    label(&targets, *ns)
                ))
            }
            _ => {}
        }
    }
    let same_caller = header
        .caller
        .as_ref()
        .is_some_and(|c| caller.id().is_ok_and(|id| id == (c.dev, c.ino)));
    let image = Image::default();
    let opts = RestoreOptions::default();
    let mut s = Session::new(&image, &opts, caller, connector);
    s.targets = targets;
    let bare_tables: Vec<Entry> = intents
        .iter()
        .filter(|i| matches!(i, Entry::NftTableAdded { .. }) && !entries.contains(i))
        .cloned()
        .collect();
    s.journal = Journal::from_records(header.group, entries);
    s.strict = true;
    rec.left_alone
        .extend(tables_left_alone(&mut s, &bare_tables));
    let mut gone_noted = HashSet::new();
    let mut steps = Vec::new();
    for step in undo::plan(&s.journal) {
        match step_key(&step) {
            Some(Key::Caller) if !same_caller => rec.left_alone.push(format!(
                "{step:?} is in the namespace the restore ran in, not this one: run `netcr recover` there"
            )),
            Some(Key::Target(ns)) if s.targets[ns].netns.is_none() => {
                if gone_noted.insert(ns) {
                    rec.left_alone.push(format!(
                        "netns \"{}\" is gone or not the one the journal names: nothing of it is undone",
                        s.targets[ns].label
                    ));
                }
            }
            _ => steps.push(step),
        }
    }
    let outcome = undo::execute(&mut s, steps);
    rec.done = outcome.done;
    rec.failed = outcome.failed;
    rec.left_alone.extend(outcome.left_alone);
    rec
}

/// The journal's records as entries: what was done and, separately, every intent. An intent
/// to create links is kept with the entries (the private group proves which are netcr's);
/// so are intents whose undo only puts back what was read before the change.
pub(super) fn read_entries(records: &[jv1::Entry]) -> Result<(Vec<Entry>, Vec<Entry>)> {
    let mut entries = Vec::new();
    let mut intents = Vec::new();
    for record in records {
        let Some(entry) = from_record(record)? else {
            continue;
        };
        let harmless = matches!(
            entry,
            Entry::LinksIntended { .. }
                | Entry::NetnsSysctls { .. }
                | Entry::LinkChanged { .. }
                | Entry::TemporaryLink { .. }
                | Entry::LinksRegrouped { .. }
                // The restore refused a device with a qdisc of its own there: one there now
                // is the restore's (none: nothing to undo).
                | Entry::TcQdiscAdded { .. }
        ) || matches!(&entry, Entry::XfrmAdded { undo, .. } if undo.message.kind == crate::xfrm::SETDEFAULT);
        if record.done || harmless {
            entries.push(entry);
        } else {
            intents.push(entry);
        }
    }
    Ok((entries, intents))
}

/// Opens target `ns` again if it is provably the namespace the journal names: an existing
/// one by identity, at its recorded path or, when that leads to it no more, wherever it is
/// still held ([`find_by_identity`]); one the restore created by name and the identity recorded once
/// it was made, or, killed between making it and recording that, when it holds nothing but
/// lo.
fn reopen(
    ns: usize,
    t: &jv1::Target,
    entries: &[Entry],
    intents: &[Entry],
    rec: &mut Recovery,
) -> Option<Netns> {
    let same = |netns: Netns, dev: u64, ino: u64| {
        netns.id().is_ok_and(|id| id == (dev, ino)).then_some(netns)
    };
    if let Some(existing) = &t.existing {
        let at_path = Netns::open_path(Path::new(&existing.path))
            .ok()
            .and_then(|netns| same(netns, existing.dev, existing.ino));
        return at_path
            .or_else(|| find_by_identity(existing.dev, existing.ino))
            .map(|netns| netns.with_label(&t.label));
    }
    if t.create.is_empty() || !netcr_netlink::netns::named_exists(&t.create) {
        return None;
    }
    let netns = Netns::open_name(&t.create).ok()?.with_label(&t.label);
    let identity = entries.iter().find_map(|e| match e {
        Entry::NetnsCreated {
            ns: n,
            identity: Some(id),
            ..
        } if *n == ns => Some(*id),
        _ => None,
    });
    if let Some((dev, ino)) = identity {
        return same(netns, dev, ino);
    }
    let intended = intents
        .iter()
        .any(|e| matches!(e, Entry::NetnsCreated { ns: n, .. } if *n == ns));
    let only_lo = Kernel
        .connect(&netns, &t.label)
        .ok()
        .and_then(|mut socket| {
            let links = socket.dump_links().ok()?;
            Some(links.iter().all(|l| common::parse(l).name == "lo"))
        });
    if intended && only_lo == Some(true) {
        return Some(netns);
    }
    if intended {
        rec.left_alone.push(format!(
            "netns \"{}\" exists, but the restore was killed while making it and it holds devices: left alone",
            t.create
        ));
    }
    None
}

/// The tables a killed restore was about to make (its transaction's answer never recorded)
/// that the namespace has: a table of that name may be someone else's, so it is left alone
/// and named. One it does not have was never made: nothing to say.
pub(super) fn tables_left_alone(s: &mut Session<'_>, intents: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    for intent in intents {
        let Entry::NftTableAdded { ns, family, name } = intent else {
            continue;
        };
        if s.targets[*ns].netns.is_none() {
            continue;
        }
        let present = s
            .netfilter(*ns)
            .and_then(|socket| Ok(netcr_netlink::nftables::dump_tables(socket)?));
        let there = match present {
            Ok(tables) => crate::nftables::dumped_tables(&tables.unwrap_or_default())
                .contains(&(*family, name.clone())),
            // Unknown: say so, as for a table that is there.
            Err(_) => true,
        };
        if there {
            out.push(format!(
                "netns \"{}\": the restore was adding nf_tables table {} {name} when it was killed, and a table of that name is there: left alone (it may be someone else's)",
                s.targets[*ns].label,
                netcr_netlink::nftables::family_name(*family)
            ));
        }
    }
    out
}

/// The directories and files where a namespace whose recorded path leads elsewhere may still
/// be found: the named namespaces (`ip netns`, CNI plugins, podman, CRI-O, containerd pin
/// theirs there), then every process's own.
fn identity_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(netcr_netlink::netns::NETNS_RUN_DIR)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.extend(
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .map(|e| e.path().join("ns/net")),
    );
    out
}

/// The namespace of identity (`dev`, `ino`), wherever it is still held, when the path the
/// journal recorded leads to it no more: a restore into `/proc/PID/ns/net` (CRIU's hook) whose
/// task died with the restore, while the runtime keeps the namespace pinned under
/// `/run/netns`. The identity is what proves it is the one: an nsfs inode is not reused while
/// its namespace lives.
fn find_by_identity(dev: u64, ino: u64) -> Option<Netns> {
    use std::os::unix::fs::MetadataExt;
    identity_candidates().into_iter().find_map(|path| {
        let meta = std::fs::metadata(&path).ok()?;
        if (meta.dev(), meta.ino()) != (dev, ino) {
            return None;
        }
        let netns = Netns::open_path(&path).ok()?;
        netns.id().is_ok_and(|id| id == (dev, ino)).then(|| {
            log::info!(
                "the namespace the journal names is gone from its path; found it by identity at {}",
                path.display()
            );
            netns
        })
    })
}

fn label(targets: &[Target], ns: usize) -> &str {
    targets.get(ns).map_or("?", |t| t.label.as_str())
}

/// The namespace a step works in (a namespace deletion handles a missing one itself).
fn step_key(step: &Step) -> Option<Key> {
    match step {
        Step::DeleteObjects { ns, .. }
        | Step::Regroup { ns, .. }
        | Step::DeleteGroup { ns, .. }
        | Step::PutBackLink { ns, .. }
        | Step::PutBackSysctls { ns, .. }
        | Step::PutBackDevconf { ns, .. }
        | Step::TrimLoAddresses { ns, .. }
        | Step::DeleteIntendedLinks { ns, .. }
        | Step::DeleteNexthops { ns, .. }
        | Step::DeleteNftTables { ns, .. }
        | Step::UndoXfrm { ns, .. } => Some(Key::Target(*ns)),
        Step::DeleteTcQdiscs { ns, .. } => Some(Key::Target(*ns)),
        Step::DeleteByName { key, .. } => Some(*key),
        Step::DeleteNetns { .. } => None,
    }
}

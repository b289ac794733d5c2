//! Restore: a pipeline of phases over one [`Session`](session::Session).
//!
//! Nothing changes before [`prepare::inspect`] has validated the image and every target, and
//! resolved every external device. Then each phase makes its changes through the session,
//! which records each one in a single [`Journal`](journal::Journal) for the whole restore,
//! across all of its namespaces. On any failure (or a cancellation) the journal is walked
//! backwards ([`undo`]); what cannot be undone is reported, never dropped. After the last
//! change every namespace is read back and compared with the image ([`verify`]).
//!
//! A phase is a module with functions `fn(&mut Session, ns) -> Result<()>`; adding one means
//! a call in [`apply`] and, for each change it makes, a journal entry whose undo
//! [`undo::plan`] knows. See docs/architecture.md.

mod journal;
mod links;
mod lock;
mod nexthops;
mod nftables;
mod objects;
mod plan;
mod prepare;
mod recover;
mod request;
mod session;
mod sysctls;
mod tc;
mod undo;
mod verify;
mod xfrm;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use netcr_image::Image;
use netcr_netlink::{Connector, Kernel, Netns};

use crate::error::{CoreError, Result};
use crate::external::ExternalMapping;

pub use links::DEFAULT_TEARDOWN_WAIT;
pub use plan::{plan_levels, plan_levels_in};
pub use recover::{recover, Recovery};

/// Which socket creates a link whose lower device is outside the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreateFrom {
    /// From a socket in the lower device's namespace, with `IFLA_LINK` + `IFLA_NET_NS_FD`.
    /// A link whose index or name that namespace holds is created from the target instead,
    /// so that its index is kept.
    #[default]
    Lower,
    /// From a socket in the target namespace, with `IFLA_LINK` + `IFLA_LINK_NETNSID`
    /// (an nsid for the lower's namespace is assigned first when there is none).
    Target,
}

/// What a restore does with devices already in an existing target (a namespace a CNI plugin
/// or netavark built before the processes come back, as Podman, CRI-O and containerd do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Adopt {
    /// A target that holds a device of the image is refused before any change.
    #[default]
    Never,
    /// A device with the image's name and kind is adopted as it is: not created, not changed
    /// (its differences from the image are warnings); what the image has and the namespace
    /// lacks is added, and a rollback undoes only that.
    Keep,
    /// As `Keep`, but adopted devices get the image's MTU, MAC, alias and flags (put back on
    /// rollback).
    Change,
}

/// Where the image goes.
#[derive(Debug)]
pub enum RestoreTarget {
    /// A named namespace (`/run/netns/NAME`): created when missing, and deleted again if the
    /// restore fails.
    Named(String),
    /// An existing namespace.
    Existing(Netns),
}

/// Told how far a restore got, for a progress display: the step (`links`, `verify`, ...),
/// the units done and their total (links created of the image's; a phase is 0 of 1 when
/// it starts). Called on the restoring thread; it must be quick.
#[derive(Clone)]
pub struct Progress(pub Arc<ProgressFn>);

/// The function behind a [`Progress`]: step, done, total.
pub type ProgressFn = dyn Fn(&str, usize, usize) + Send + Sync;

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// `--external` mappings.
    pub externals: Vec<ExternalMapping>,
    /// Which socket creates links on external lower devices.
    pub create_from: CreateFrom,
    /// Fail (and roll back) when a link cannot keep its ifindex.
    pub require_ifindex: bool,
    /// Set by a signal handler: the restore stops before its next request and rolls back.
    pub cancel: Option<Arc<AtomicBool>>,
    /// The user namespace (e.g. `/proc/PID/ns/user`) that owns the network namespaces the
    /// restore creates; `None`: netcr's own.
    pub userns: Option<PathBuf>,
    /// Where the restore keeps its journal and its target locks
    /// ([`netcr_image::journal::RUN_DIR`] for the binary); stale journals found there are
    /// recovered first. `None`: neither (a caller that locks and recovers by itself).
    pub run_dir: Option<PathBuf>,
    /// Devices already in an existing target: refuse, adopt, or adopt and change.
    pub adopt: Adopt,
    /// Where to say how far the restore got (`netcr` draws it on a terminal); `None`:
    /// nowhere.
    pub progress: Option<Progress>,
    /// Restore the counters of nf_tables rules, chains, objects and set elements (and a
    /// quota's consumption) as the image holds them; otherwise they start at zero.
    pub keep_counters: bool,
    /// How long a creation that the devices of a namespace being torn down may block (a MAC
    /// still in use on the lower device, a passthru lower device still held) is retried;
    /// `None`: [`DEFAULT_TEARDOWN_WAIT`].
    pub teardown_wait: Option<std::time::Duration>,
}

/// What a restore did in one namespace.
#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    /// Label of the target namespace.
    pub netns: String,
    /// Whether the restore created the namespace.
    pub created_netns: bool,
    /// Links created or changed.
    pub links: usize,
    /// Addresses added.
    pub addresses: usize,
    /// Routes added.
    pub routes: usize,
    /// Rules added.
    pub rules: usize,
    /// Neighbours added.
    pub neighbours: usize,
    /// Nexthop objects added.
    pub nexthops: usize,
    /// nf_tables tables added (with all they hold).
    pub nft_tables: usize,
    /// xfrm states and policies added.
    pub xfrm: usize,
    /// Traffic control objects added (qdiscs, classes, filters).
    pub tc: usize,
    /// Links that did not keep their ifindex: `name: image N, now M (why)`.
    pub ifindex_not_kept: Vec<String>,
    /// Links created from the target namespace with IFLA_LINK_NETNSID.
    pub created_via_nsid: Vec<String>,
    /// Links created beside their lower device and moved in with IFLA_NEW_IFINDEX (kernels
    /// before 6.14 create IFLA_LINK_NETNSID links in the lower's namespace first).
    pub created_then_moved: Vec<String>,
    /// Other things the user should know.
    pub warnings: Vec<String>,
    /// Kernel requests sent for this namespace (its phases and its verification).
    pub requests: usize,
    /// Devices that were there already and were adopted, not created.
    pub adopted: Vec<String>,
    /// Objects of the image the namespace had already (or one of its own in their place):
    /// left as they were.
    pub already_present: Vec<String>,
    /// Each device of the image and its ifindex after the restore, in the image's order
    /// (adopted ones are in [`Self::adopted`] too), for reports that must name them.
    pub devices: Vec<(String, u32)>,
}

/// Restores the image's one namespace into `target`.
pub fn restore(
    image: &Image,
    dir: &Path,
    target: RestoreTarget,
    caller: &Netns,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    if image.namespaces.len() != 1 {
        return Err(CoreError::Refused(format!(
            "the image holds {} namespaces ({}); name a target for each",
            image.namespaces.len(),
            image
                .namespaces
                .iter()
                .map(|n| n.netns.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut reports = restore_all(image, dir, vec![target], caller, opts)?;
    Ok(reports.remove(0))
}

/// Restores every namespace of the image, `targets[i]` for `image.namespaces[i]`, with
/// sockets from the kernel. Veth pairs between them are re-created as pairs. Validation
/// covers all of them before the first change; a failure in any undoes all.
pub fn restore_all(
    image: &Image,
    dir: &Path,
    targets: Vec<RestoreTarget>,
    caller: &Netns,
    opts: &RestoreOptions,
) -> Result<Vec<RestoreReport>> {
    restore_all_with(image, dir, targets, caller, opts, &mut Kernel)
}

/// [`restore_all`] with sockets from `connector` (a fake in tests, a fault injector in the
/// binary's test mode).
pub fn restore_all_with(
    image: &Image,
    dir: &Path,
    targets: Vec<RestoreTarget>,
    caller: &Netns,
    opts: &RestoreOptions,
    connector: &mut dyn Connector,
) -> Result<Vec<RestoreReport>> {
    crate::validate::validate(image, dir)?;
    if let Some(run_dir) = &opts.run_dir {
        recover::stale_before_restore(run_dir, caller);
    }
    let mut session = session::Session::new(image, opts, caller, connector);
    // Nothing has changed yet: a refusal here needs no rollback.
    prepare::inspect(&mut session, targets)?;
    prepare::lock_and_journal(&mut session, dir)?;
    match run(&mut session) {
        Ok(()) => Ok(session.into_reports()),
        Err(cause) => Err(undo::roll_back(&mut session, cause)),
    }
}

/// The phases, in order. Every change they make is in the session's journal.
fn run(s: &mut session::Session<'_>) -> Result<()> {
    prepare::open_targets(s)?;
    phase(s, "nsid table", prepare::nsid_table)?;
    phase(
        s,
        "build (links, addresses, routes, rules, firewall)",
        apply,
    )?;
    phase(s, "verify", verify::namespace)?;
    s.commit_point()
}

/// Runs `step` for every target and says at info level (`netcr -v`) what it took:
/// `restore: verify: 2 namespaces, 14 requests, 3.2 ms`.
fn phase(
    s: &mut session::Session<'_>,
    name: &str,
    step: fn(&mut session::Session<'_>, usize) -> Result<()>,
) -> Result<()> {
    let (start, before) = (std::time::Instant::now(), s.requests());
    s.progress(name, 0, 1);
    for ns in 0..s.targets.len() {
        s.counted(ns, step)?;
    }
    log::info!(
        "restore: {name}: {} namespaces, {} requests, {:.1} ms",
        s.targets.len(),
        s.requests() - before,
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Rebuilds one namespace. Links come up after their addresses, the firewall and traffic
/// control, and before
/// nexthops and routes (the kernel keeps neither over a device that is down; routes refer to
/// nexthops); the namespace's own sysctls go first, since `conf/default` shapes every device
/// made next.
fn apply(s: &mut session::Session<'_>, ns: usize) -> Result<()> {
    prepare::snapshot_existing(s, ns)?;
    sysctls::namespace_wide(s, ns)?;
    links::loopback(s, ns)?;
    links::create_all(s, ns)?;
    links::join_masters(s, ns)?;
    links::finish_kinds(s, ns)?;
    sysctls::per_device(s, ns)?;
    objects::add(s, ns, objects::Object::Address)?;
    // The firewall before any link comes up; after they exist, since chains name devices.
    nftables::add(s, ns)?;
    // IPsec likewise: a block policy is in place before the first packet.
    xfrm::add(s, ns)?;
    // Traffic control too: no packet crosses a device unshaped; mirred targets exist.
    tc::add(s, ns)?;
    links::final_settings(s, ns)?;
    objects::renew_addresses(s, ns)?;
    objects::add(s, ns, objects::Object::Altname)?;
    links::outer_ends(s, ns)?;
    nexthops::add(s, ns)?;
    objects::add(s, ns, objects::Object::Route)?;
    objects::add(s, ns, objects::Object::Rule)?;
    objects::add(s, ns, objects::Object::Neighbour)?;
    Ok(())
}

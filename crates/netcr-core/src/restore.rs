//! Restore: validate everything, then create in dependency order with pipelined requests,
//! then verify by dumping again. Any failure undoes everything, in bulk.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::{Netns, Reply, Request, Rtnl, RtnlExt, Transport};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::common::{self, is_loopback, kind_label};
use crate::driver::{driver_for, LowerRole, RestoreCx};
use crate::error::{CoreError, Result};
use crate::external::{self, ExternalMapping};
use crate::state;
use crate::verify;

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

/// Where the image goes.
#[derive(Debug)]
pub enum RestoreTarget {
    /// A named namespace (`/run/netns/NAME`): created when missing, and deleted again if the
    /// restore fails.
    Named(String),
    /// An existing namespace.
    Existing(Netns),
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
    /// Set by a signal handler: the restore stops at the next step and rolls back.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Test-only fault injection: fail before the kernel request with this number (0-based).
    pub fail_at_request: Option<usize>,
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    /// Label of the target namespace.
    pub netns: String,
    /// Whether the restore created the namespace.
    pub created_netns: bool,
    /// Links created or changed.
    pub links: usize,
    /// Addresses, routes, rules and neighbours added.
    pub addresses: usize,
    /// Routes added.
    pub routes: usize,
    /// Rules added.
    pub rules: usize,
    /// Neighbours added.
    pub neighbours: usize,
    /// Links that did not keep their ifindex: `name: image N, now M (why)`.
    pub ifindex_not_kept: Vec<String>,
    /// Links created from the target namespace with IFLA_LINK_NETNSID.
    pub created_via_nsid: Vec<String>,
    /// Other things the user should know.
    pub warnings: Vec<String>,
    /// Kernel requests sent.
    pub requests: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sock {
    Caller,
    Target,
}

/// How one link's outside end was resolved.
#[derive(Debug, Clone)]
struct Outside {
    mapping: ExternalMapping,
    /// Index of the outer device in the caller (Lower role).
    index: Option<u32>,
}

/// Loopback's devconf in an existing namespace: (before v4, before v6, image v4, image v6).
type LoDevconf = (Vec<i32>, Vec<i32>, Vec<i32>, Vec<i32>);

/// Everything the rollback needs to undo.
#[derive(Debug, Default)]
struct Undo {
    created_netns: Option<String>,
    group: u32,
    /// Links the restore created in the target, by name (in `group` until finalized).
    links: Vec<String>,
    finalized: bool,
    /// Loopback as it was, to put back in an existing namespace.
    lo_before: Option<LinkMessage>,
    /// Requests that delete what was added outside the restore's own links.
    deletes: Vec<Request>,
    /// Namespace sysctls changed: (name, previous value).
    sysctls: Vec<(String, String)>,
    /// Loopback's devconf in an existing namespace: (before v4, before v6, image v4, image v6).
    lo_devconf: Option<LoDevconf>,
}

struct Restorer<'a> {
    image_ns: &'a NetnsImage,
    opts: &'a RestoreOptions,
    caller: &'a Netns,
    caller_rtnl: Rtnl,
    target: Netns,
    target_rtnl: Option<Rtnl>,
    requests_sent: usize,
    undo: Undo,
    report: RestoreReport,
}

/// Restores the image's namespace into `target`.
pub fn restore(
    image: &Image,
    dir: &Path,
    target: RestoreTarget,
    caller: &Netns,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    crate::validate::validate(image, dir)?;
    if image.namespaces.len() != 1 {
        return Err(CoreError::Refused(format!(
            "the image holds {} namespaces; this netcr restores one at a time",
            image.namespaces.len()
        )));
    }
    let image_ns = &image.namespaces[0];

    let mut caller_rtnl = Rtnl::open_in(caller)?;
    caller_rtnl.set_label("caller");
    let caller_links = caller_rtnl.dump_links()?;
    let outside = resolve_externals(image_ns, &opts.externals, &caller_links)?;

    // The target: open it, or plan to create it. Nothing changes yet.
    let (existing, name_to_create, label) = match target {
        RestoreTarget::Named(name) => {
            if netcr_netlink::netns::named_exists(&name) {
                (Some(Netns::open_name(&name)?), None, name)
            } else {
                (None, Some(name.clone()), name)
            }
        }
        RestoreTarget::Existing(ns) => {
            let label = ns.label().to_string();
            (Some(ns), None, label)
        }
    };
    let mut target_links_before = Vec::new();
    if let Some(ns) = &existing {
        if ns.same_as(caller)? {
            return Err(CoreError::Refused(format!(
                "netns \"{label}\" is the namespace netcr runs in; restore into another one"
            )));
        }
        let mut rtnl = Rtnl::open_in(ns)?;
        target_links_before = rtnl.dump_links()?;
        let present: HashSet<String> = target_links_before
            .iter()
            .map(|l| common::parse(l).name.to_string())
            .collect();
        let clashes: Vec<&str> = image_ns
            .links
            .iter()
            .filter(|l| !is_loopback(l) && present.contains(&l.name))
            .map(|l| l.name.as_str())
            .collect();
        if !clashes.is_empty() {
            return Err(CoreError::Refused(format!(
                "netns \"{label}\" already has {}: {}; restore into an empty namespace or remove them",
                if clashes.len() == 1 { "a device the image holds" } else { "devices the image holds" },
                clashes.join(", ")
            )));
        }
    }
    let group = pick_group(&caller_links, &target_links_before);

    // From here on, every change is undone on failure.
    let target = match (existing, name_to_create) {
        (Some(ns), _) => ns,
        (None, Some(name)) => {
            let ns = Netns::create_named(&name)?;
            let mut r = Restorer::new(image_ns, opts, caller, caller_rtnl, ns, group, &label)?;
            r.undo.created_netns = Some(name);
            r.report.created_netns = true;
            return r.run(&outside, &[]);
        }
        (None, None) => unreachable!("a target is either existing or to be created"),
    };
    let r = Restorer::new(image_ns, opts, caller, caller_rtnl, target, group, &label)?;
    r.run(&outside, &target_links_before)
}

/// Picks a link group no device in either namespace uses: every link the restore creates is
/// made in it, so one RTM_DELLINK by group removes them all (one RCU grace period, not one
/// per link) if the restore fails.
fn pick_group(caller: &[LinkMessage], target: &[LinkMessage]) -> u32 {
    let used: HashSet<u32> = caller
        .iter()
        .chain(target)
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Group(g) => Some(*g),
                _ => None,
            })
        })
        .collect();
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u32
    };
    let mut g = seed | 0x8000_0000;
    while used.contains(&g) || g == u32::MAX {
        g = g.wrapping_add(1) | 0x8000_0000;
    }
    g
}

/// Finds the `--external` mapping and outer device of every link whose lower or peer lies
/// outside the image; refuses, naming every problem at once, when one is missing.
fn resolve_externals(
    ns: &NetnsImage,
    mappings: &[ExternalMapping],
    caller_links: &[LinkMessage],
) -> Result<HashMap<String, Outside>> {
    let caller_by_name: HashMap<&str, &LinkMessage> = caller_links
        .iter()
        .map(|l| (common::parse(l).name, l))
        .collect();
    let mut out = HashMap::new();
    let mut unmapped = Vec::new();
    let mut problems = Vec::new();
    let mut used = HashSet::new();
    for link in &ns.links {
        let Some(v1::link_ref::Target::External(ext)) =
            link.lower.as_ref().and_then(|r| r.target.as_ref())
        else {
            continue;
        };
        let role = driver_for(&link.kind)
            .map(|d| d.lower_role())
            .unwrap_or(LowerRole::Lower);
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
        if let Some(bridge) = &mapping.bridge {
            match caller_by_name.get(bridge.as_str()) {
                Some(b) if common::parse(b).kind == "bridge" => {}
                Some(_) => problems.push(format!(
                    "--external {mapping}: \"{bridge}\" is not a bridge"
                )),
                None => problems.push(format!(
                    "--external {mapping}: bridge \"{bridge}\" does not exist"
                )),
            }
            if role != LowerRole::Peer {
                problems.push(format!(
                    "--external {mapping}: @BRIDGE applies to veth outer ends only"
                ));
            }
        }
        out.insert(
            link.name.clone(),
            Outside {
                mapping: mapping.clone(),
                index,
            },
        );
    }
    for m in mappings {
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
        Ok(out)
    } else {
        Err(CoreError::Refused(problems.join("; ")))
    }
}

/// The name → index map of a fresh dump.
fn index_map(links: &[LinkMessage]) -> HashMap<String, u32> {
    links
        .iter()
        .map(|l| (common::parse(l).name.to_string(), l.header.index))
        .collect()
}

impl<'a> Restorer<'a> {
    fn new(
        image_ns: &'a NetnsImage,
        opts: &'a RestoreOptions,
        caller: &'a Netns,
        caller_rtnl: Rtnl,
        target: Netns,
        group: u32,
        label: &str,
    ) -> Result<Restorer<'a>> {
        Ok(Restorer {
            image_ns,
            opts,
            caller,
            caller_rtnl,
            target,
            target_rtnl: None,
            requests_sent: 0,
            undo: Undo {
                group,
                ..Default::default()
            },
            report: RestoreReport {
                netns: label.to_string(),
                ..Default::default()
            },
        })
    }

    fn rtnl(&mut self, sock: Sock) -> &mut Rtnl {
        match sock {
            Sock::Caller => &mut self.caller_rtnl,
            Sock::Target => self
                .target_rtnl
                .as_mut()
                .expect("target socket opened first"),
        }
    }

    /// Sends a batch after the cancellation check. A test-injected failure stops the batch at
    /// that request and shows up as its failed reply, so callers record what was done before.
    fn send(&mut self, sock: Sock, mut requests: Vec<Request>) -> Result<Vec<Reply>> {
        if let Some(cancel) = &self.opts.cancel {
            if cancel.load(Ordering::SeqCst) {
                return Err(CoreError::Interrupted(String::new()));
            }
        }
        let mut injected = None;
        if let Some(k) = self.opts.fail_at_request {
            if k >= self.requests_sent && k < self.requests_sent + requests.len() {
                let cut = k - self.requests_sent;
                injected = Some(requests[cut].context.clone());
                requests.truncate(cut);
            }
        }
        self.requests_sent += requests.len();
        self.report.requests += requests.len();
        let mut replies = if requests.is_empty() {
            Vec::new()
        } else {
            self.rtnl(sock).batch(requests)
        };
        if let Some(context) = injected {
            replies.push(Err(netcr_netlink::Error::Protocol {
                context,
                netns: self.report.netns.clone(),
                detail: "injected failure (NETCR_TEST_FAIL_AT_REQUEST)".into(),
            }));
        }
        Ok(replies)
    }

    /// Adds objects (addresses, routes, rules, neighbours); remembers how to delete each one
    /// that was added and would not vanish with the restore's own links.
    fn add_objects(&mut self, items: Vec<(Request, Option<Request>)>) -> Result<usize> {
        let n = items.len();
        let (requests, undos): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        let replies = self.send(Sock::Target, requests)?;
        let mut first_err = None;
        for (reply, undo) in replies.into_iter().zip(undos) {
            match reply {
                Ok(_) => self.undo.deletes.extend(undo),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(annotate(e)),
            None => Ok(n),
        }
    }

    fn run(
        mut self,
        outside: &HashMap<String, Outside>,
        target_links_before: &[LinkMessage],
    ) -> Result<RestoreReport> {
        match self.apply(outside, target_links_before) {
            Ok(()) => Ok(self.report),
            Err(cause) => {
                let rollback = self.rollback();
                match cause {
                    CoreError::Interrupted(_) => Err(CoreError::Interrupted(rollback)),
                    cause => Err(CoreError::RolledBack {
                        cause: Box::new(cause),
                        rollback,
                    }),
                }
            }
        }
    }

    fn apply(
        &mut self,
        outside: &HashMap<String, Outside>,
        target_links_before: &[LinkMessage],
    ) -> Result<()> {
        let mut target_rtnl = Rtnl::open_in(&self.target)?;
        target_rtnl.set_label(self.report.netns.clone());
        self.target_rtnl = Some(target_rtnl);
        let links = &self.image_ns.links;

        // The namespace's own settings first: conf/default shapes every device made next.
        let written = crate::sysctl::write_netns(&self.target, &self.image_ns.netns.sysctls)?;
        self.undo.sysctls = written.changed;
        let sysctls_left_out: HashSet<String> = written
            .warnings
            .iter()
            .filter_map(|w| w.split_whitespace().nth(1).map(str::to_string))
            .collect();
        self.report.warnings.extend(written.warnings);
        if let Some(e) = written.error {
            return Err(CoreError::Refused(e));
        }
        let by_name: HashMap<&str, &v1::Link> =
            links.iter().map(|l| (l.name.as_str(), l)).collect();

        let mut target_links = if target_links_before.is_empty() {
            self.rtnl(Sock::Target).dump_links()?
        } else {
            target_links_before.to_vec()
        };
        let caller_links = self.caller_rtnl.dump_links()?;
        let caller_indexes: HashSet<u32> = caller_links.iter().map(|l| l.header.index).collect();
        let caller_names: HashSet<String> = caller_links
            .iter()
            .map(|l| common::parse(l).name.to_string())
            .collect();

        // Levels: a link comes after its lower device; a veth pair inside is one node.
        let levels = plan_levels(links)?;

        // The target's id for the caller's namespace, for IFLA_LINK_NETNSID, on demand.
        let mut caller_nsid: Option<i32> = None;

        // Loopback is changed in place, never created.
        if let Some(lo) = links.iter().find(|l| is_loopback(l)) {
            if let Some(before) = target_links.iter().find(|l| common::parse(l).name == "lo") {
                if !self.report.created_netns {
                    self.undo.lo_before = Some(before.clone());
                }
                let mut msg = LinkMessage::default();
                msg.header.index = before.header.index;
                msg.attributes.push(LinkAttribute::Mtu(lo.mtu));
                msg.attributes.push(LinkAttribute::TxQueueLen(lo.txqlen));
                let replies = self.send(
                    Sock::Target,
                    vec![Request::change(
                        RouteNetlinkMessage::SetLink(msg),
                        "changing lo",
                    )],
                )?;
                check(replies)?;
                self.report.links += 1;
            }
        }

        for level in &levels {
            let mut per_sock: HashMap<Sock, Vec<(Request, String)>> = HashMap::new();
            let mut target_index = index_map(&target_links);
            let target_indexes: HashSet<u32> = target_index.values().copied().collect();
            for &name in level {
                let link = by_name[name];
                let driver = driver_for(&link.kind)
                    .ok_or_else(|| CoreError::Refused(format!("no driver for {}", link.kind)))?;
                let mut msg = LinkMessage::default();
                msg.attributes = common::create_attributes(link, &link.name);
                if driver.inherits_address(&link.config) {
                    msg.attributes
                        .retain(|a| !matches!(a, LinkAttribute::Address(_)));
                }
                msg.attributes.push(LinkAttribute::Group(self.undo.group));
                let index_free_in_target =
                    link.ifindex != 0 && !target_indexes.contains(&link.ifindex);
                let mut sock = Sock::Target;
                let mut request_index = index_free_in_target;
                let index_of = |n: &str| target_index.get(n).copied();
                let mut cx = RestoreCx {
                    peer: None,
                    peer_is_external: false,
                    index_of: &index_of,
                };
                let lower = link.lower.as_ref().and_then(|r| r.target.as_ref());
                match (driver.lower_role(), lower) {
                    (LowerRole::Lower, Some(v1::link_ref::Target::Local(l))) => {
                        let idx = *target_index.get(&l.name).ok_or_else(|| {
                            CoreError::Refused(format!(
                                "lower device {} of {} was not created",
                                l.name, link.name
                            ))
                        })?;
                        msg.attributes.push(LinkAttribute::Link(idx));
                    }
                    (LowerRole::Lower, Some(v1::link_ref::Target::External(_))) => {
                        let out = &outside[&link.name];
                        let lower_index = out.index.expect("validated: lower exists");
                        msg.attributes.push(LinkAttribute::Link(lower_index));
                        // Path (a) looks the requested index (or, without one, the name) up in
                        // the caller's namespace first: use it only where that finds nothing.
                        let lower_path_ok = if request_index {
                            !caller_indexes.contains(&link.ifindex)
                        } else {
                            !caller_names.contains(&link.name)
                        };
                        if self.opts.create_from == CreateFrom::Lower && lower_path_ok {
                            sock = Sock::Caller;
                            msg.attributes
                                .push(LinkAttribute::NetNsFd(self.target.raw_fd()));
                        } else {
                            let nsid = match caller_nsid {
                                Some(n) => n,
                                None => {
                                    let caller = self.caller;
                                    let n = self.rtnl(Sock::Target).ensure_nsid(caller, None)?;
                                    caller_nsid = Some(n);
                                    n
                                }
                            };
                            msg.attributes.push(LinkAttribute::LinkNetNsId(nsid));
                            self.report.created_via_nsid.push(link.name.clone());
                        }
                    }
                    (LowerRole::Peer, Some(v1::link_ref::Target::Local(l))) => {
                        let peer = by_name[l.name.as_str()];
                        let mut peer_msg = LinkMessage::default();
                        peer_msg.attributes = common::create_attributes(peer, &peer.name);
                        peer_msg
                            .attributes
                            .push(LinkAttribute::Group(self.undo.group));
                        if peer.ifindex != 0
                            && !target_indexes.contains(&peer.ifindex)
                            && peer.ifindex != link.ifindex
                        {
                            peer_msg.header.index = peer.ifindex;
                        }
                        cx.peer = Some(peer_msg);
                    }
                    (LowerRole::Peer, Some(v1::link_ref::Target::External(_))) => {
                        let out = &outside[&link.name];
                        let mut peer_msg = LinkMessage::default();
                        peer_msg
                            .attributes
                            .push(LinkAttribute::IfName(out.mapping.outer.clone()));
                        peer_msg
                            .attributes
                            .push(LinkAttribute::NetNsFd(self.caller.raw_fd()));
                        cx.peer = Some(peer_msg);
                        cx.peer_is_external = true;
                    }
                    (_, None) => {}
                }
                if sock == Sock::Caller && request_index && caller_indexes.contains(&link.ifindex) {
                    request_index = false;
                }
                if request_index {
                    msg.header.index = link.ifindex;
                }
                let infos = driver
                    .restore(link, &mut cx)
                    .map_err(|e| CoreError::Driver {
                        netns: self.report.netns.clone(),
                        kind: link.kind.clone(),
                        device: link.name.clone(),
                        message: e.0,
                    })?;
                msg.attributes.push(LinkAttribute::LinkInfo(infos));
                let what = format!("creating {} \"{}\"", link.kind, link.name);
                per_sock.entry(sock).or_default().push((
                    Request::create(RouteNetlinkMessage::NewLink(msg), what),
                    name.to_string(),
                ));
            }
            for sock in [Sock::Caller, Sock::Target] {
                let Some(batch) = per_sock.remove(&sock) else {
                    continue;
                };
                let (requests, names): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let replies = self.send(sock, requests)?;
                let mut first_err = None;
                for (reply, name) in replies.into_iter().zip(names) {
                    match reply {
                        Ok(_) => {
                            self.undo.links.push(name.clone());
                            if let Some(peer) = local_peer(by_name[name.as_str()]) {
                                self.undo.links.push(peer.to_string());
                            }
                        }
                        Err(e) if first_err.is_none() => first_err = Some(annotate(e)),
                        Err(_) => {}
                    }
                }
                if let Some(e) = first_err {
                    return Err(e);
                }
            }
            target_links = self.rtnl(Sock::Target).dump_links()?;
            target_index = index_map(&target_links);
            let _ = &target_index;
        }
        let target_index = index_map(&target_links);
        self.report.links += self.undo.links.len();

        // Ports join their masters.
        let mut requests = Vec::new();
        for link in links {
            if let Some(v1::link_ref::Target::Local(m)) =
                link.master.as_ref().and_then(|r| r.target.as_ref())
            {
                let mut msg = LinkMessage::default();
                msg.header.index = target_index[&link.name];
                msg.attributes
                    .push(LinkAttribute::Controller(target_index[&m.name]));
                requests.push(Request::change(
                    RouteNetlinkMessage::SetLink(msg),
                    format!("attaching \"{}\" to \"{}\"", link.name, m.name),
                ));
            }
        }
        check(self.send(Sock::Target, requests)?)?;

        // Ports get their settings back from their master's kind; then kinds finish up.
        let index_of = |dev: &str| target_index.get(dev).copied();
        let cx = RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &index_of,
        };
        let mut requests = Vec::new();
        for link in links {
            let Some(&index) = target_index.get(&link.name) else {
                continue;
            };
            let driver_err = |kind: &str, e: crate::DriverError| CoreError::Driver {
                netns: self.report.netns.clone(),
                kind: kind.to_string(),
                device: link.name.clone(),
                message: e.0,
            };
            if let Some(v1::link_ref::Target::Local(m)) =
                link.master.as_ref().and_then(|r| r.target.as_ref())
            {
                if !link.port_config.is_empty() {
                    if let Some(md) = by_name
                        .get(m.name.as_str())
                        .and_then(|ml| driver_for(&ml.kind))
                    {
                        requests.extend(
                            md.restore_port(link, index, &cx)
                                .map_err(|e| driver_err(md.kind(), e))?,
                        );
                    }
                }
            }
            if let Some(d) = driver_for(&link.kind) {
                requests.extend(
                    d.after_create(link, index, &cx)
                        .map_err(|e| driver_err(d.kind(), e))?,
                );
            }
        }
        check(self.send(Sock::Target, requests)?)?;

        // Per-device sysctls, before addresses: disable_ipv6 decides whether IPv6 ones stick.
        let mut requests = Vec::new();
        let mut ipv6 = Vec::new();
        for t in &target_links {
            let name = common::parse(t).name;
            let Some(link) = by_name.get(name) else {
                continue;
            };
            let (v4, v6) = crate::sysctl::devconf_of(t);
            if let Some(attr) = crate::sysctl::ipv4_request(&link.ipv4_devconf, &v4) {
                let mut msg = LinkMessage::default();
                msg.header.index = t.header.index;
                msg.attributes.push(attr);
                requests.push(Request::change(
                    RouteNetlinkMessage::SetLink(msg),
                    format!("setting IPv4 sysctls of \"{name}\""),
                ));
            }
            for (file, value) in crate::sysctl::ipv6_writes(&link.ipv6_devconf, &v6) {
                ipv6.push((name.to_string(), file, value));
            }
            if is_loopback(link) && !self.report.created_netns {
                self.undo.lo_devconf =
                    Some((v4, v6, link.ipv4_devconf.clone(), link.ipv6_devconf.clone()));
            }
        }
        check(self.send(Sock::Target, requests)?)?;
        let warnings = crate::sysctl::write_ipv6(&self.target, &ipv6)?;
        self.report.warnings.extend(warnings);

        // Addresses go on while links are still down (no DAD race, no early traffic).
        let index_of = |dev: &str| target_index.get(dev).copied();
        // In an existing namespace, what lands on its own loopback outlives a rollback of
        // the links, so it needs its own undo.
        let existing = !self.report.created_netns;
        let on_existing_lo = |dev: &str| dev == "lo" && existing;
        let mut items = Vec::new();
        for rec in &self.image_ns.addresses {
            let (msg, what) = state::address_request(rec, &index_of).map_err(CoreError::Refused)?;
            let undo = on_existing_lo(&rec.dev).then(|| {
                Request::change(
                    RouteNetlinkMessage::DelAddress(msg.clone()),
                    "removing an address from lo",
                )
            });
            items.push((
                Request::create(RouteNetlinkMessage::NewAddress(msg), what),
                undo,
            ));
        }
        self.report.addresses = self.add_objects(items)?;

        // Final settings: alias, the image's group, and flags (UP last but routes).
        let mut requests = Vec::new();
        for link in links {
            let Some(&index) = target_index.get(&link.name) else {
                continue;
            };
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            let mask = common::restorable_flags(link.master.is_some());
            msg.header.change_mask = mask;
            msg.header.flags = LinkFlags::from_bits_retain(link.flags) & mask;
            if !link.alias.is_empty() {
                msg.attributes
                    .push(LinkAttribute::IfAlias(link.alias.clone()));
            }
            msg.attributes.push(LinkAttribute::Group(link.group));
            requests.push(Request::change(
                RouteNetlinkMessage::SetLink(msg),
                format!("setting up {} \"{}\"", kind_label(link), link.name),
            ));
        }
        self.undo.finalized = true;
        check(self.send(Sock::Target, requests)?)?;

        // Outer ends of veth pairs: up, and on their bridge when asked.
        let caller_index = index_map(&self.caller_rtnl.dump_links()?);
        let mut requests = Vec::new();
        for out in outside.values().filter(|o| o.index.is_none()) {
            let Some(&index) = caller_index.get(&out.mapping.outer) else {
                return Err(CoreError::Verify(format!(
                    "outer end \"{}\" was not created",
                    out.mapping.outer
                )));
            };
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            msg.header.change_mask = LinkFlags::Up;
            msg.header.flags = LinkFlags::Up;
            if let Some(bridge) = &out.mapping.bridge {
                msg.attributes
                    .push(LinkAttribute::Controller(caller_index[bridge]));
            }
            requests.push(Request::change(
                RouteNetlinkMessage::SetLink(msg),
                format!("setting up outer end \"{}\"", out.mapping.outer),
            ));
        }
        check(self.send(Sock::Caller, requests)?)?;

        // Routes, rules, neighbours.
        let mut items = Vec::new();
        for rec in &self.image_ns.routes {
            let (msg, what) = state::route_request(rec, &index_of).map_err(CoreError::Refused)?;
            let undo = on_existing_lo(&rec.oif).then(|| {
                Request::change(
                    RouteNetlinkMessage::DelRoute(msg.clone()),
                    "removing a route from lo",
                )
            });
            items.push((
                Request::create(RouteNetlinkMessage::NewRoute(msg), what),
                undo,
            ));
        }
        self.report.routes = self.add_objects(items)?;

        let mut items = Vec::new();
        for rec in &self.image_ns.rules {
            let (msg, what) = state::rule_request(rec).map_err(CoreError::Refused)?;
            // Rules belong to the namespace, not to a link: always undone one by one.
            let undo =
                Request::change(RouteNetlinkMessage::DelRule(msg.clone()), "removing a rule");
            items.push((
                Request::create(RouteNetlinkMessage::NewRule(msg), what),
                Some(undo),
            ));
        }
        self.report.rules = self.add_objects(items)?;

        let mut items = Vec::new();
        for rec in &self.image_ns.neighbours {
            let (msg, what) =
                state::neighbour_request(rec, &index_of).map_err(CoreError::Refused)?;
            let undo = on_existing_lo(&rec.dev).then(|| {
                Request::change(
                    RouteNetlinkMessage::DelNeighbour(msg.clone()),
                    "removing a neighbour from lo",
                )
            });
            items.push((
                Request::create(RouteNetlinkMessage::NewNeighbour(msg), what),
                undo,
            ));
        }
        self.report.neighbours = self.add_objects(items)?;

        // Verify: the kernel's view must be the image's.
        let after = self.rtnl(Sock::Target).dump_links()?;
        let caller_after = self.caller_rtnl.dump_links()?;
        let caller = self.caller;
        let nsid_of_caller = self.rtnl(Sock::Target).get_nsid(caller)?;
        let mut diffs = verify::links(
            self.image_ns,
            &after,
            &caller_after,
            nsid_of_caller,
            outside_names(outside),
        );
        let addrs = {
            let t = self.rtnl(Sock::Target);
            let mut v = t.dump_addresses(netlink_packet_route::AddressFamily::Inet)?;
            v.extend(t.dump_addresses(netlink_packet_route::AddressFamily::Inet6)?);
            v
        };
        diffs.extend(verify::addresses(self.image_ns, &after, &addrs));
        let routes = {
            let t = self.rtnl(Sock::Target);
            let mut v = t.dump_routes(netlink_packet_route::AddressFamily::Inet)?;
            v.extend(t.dump_routes(netlink_packet_route::AddressFamily::Inet6)?);
            v
        };
        diffs.extend(verify::routes(self.image_ns, &after, &routes));
        let now: HashMap<String, String> = crate::sysctl::read_netns(&self.target)?
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect();
        for want in &self.image_ns.netns.sysctls {
            if sysctls_left_out.contains(&want.name) {
                continue;
            }
            if let Some(have) = now.get(&want.name) {
                if *have != want.value {
                    diffs.push(format!(
                        "sysctl {}: image {:?}, kernel {:?}",
                        want.name, want.value, have
                    ));
                }
            }
        }
        if !diffs.is_empty() {
            return Err(CoreError::Verify(diffs.join("; ")));
        }
        let new_index = index_map(&after);
        for link in links {
            if let Some(&now) = new_index.get(&link.name) {
                if link.ifindex != 0 && now != link.ifindex {
                    self.report.ifindex_not_kept.push(format!(
                        "{}: ifindex {} in the image, {} now (held by another device)",
                        link.name, link.ifindex, now
                    ));
                }
            }
        }
        if self.opts.require_ifindex && !self.report.ifindex_not_kept.is_empty() {
            return Err(CoreError::Refused(format!(
                "ifindexes not kept: {}",
                self.report.ifindex_not_kept.join("; ")
            )));
        }
        Ok(())
    }

    /// Undoes everything, newest first and in bulk; returns what it did, for the error.
    fn rollback(&mut self) -> String {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let group = self.undo.group;
        // Links created in the target: put them back in the rollback group if the final
        // settings moved them out, then remove them all with one request.
        {
            if let Some(rtnl) = self.target_rtnl.as_mut() {
                if self.undo.finalized {
                    let regroup: Vec<Request> = match rtnl.dump_links() {
                        Ok(now) => {
                            let idx = index_map(&now);
                            self.undo
                                .links
                                .iter()
                                .filter_map(|n| idx.get(n))
                                .map(|&i| {
                                    let mut msg = LinkMessage::default();
                                    msg.header.index = i;
                                    msg.attributes.push(LinkAttribute::Group(group));
                                    Request::change(
                                        RouteNetlinkMessage::SetLink(msg),
                                        "regrouping for rollback",
                                    )
                                })
                                .collect()
                        }
                        Err(_) => Vec::new(),
                    };
                    let _ = rtnl.batch(regroup);
                }
                match rtnl.del_link_group(group, "removing the links the restore created") {
                    Ok(()) if self.undo.links.is_empty() => {}
                    Ok(()) => done.push(format!("removed {} links", self.undo.links.len())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
        }
        if let Some(rtnl) = self.target_rtnl.as_mut() {
            let deletes: Vec<Request> = self.undo.deletes.drain(..).rev().collect();
            if !deletes.is_empty() {
                let n = deletes.len();
                let errors: Vec<String> = rtnl
                    .batch(deletes)
                    .into_iter()
                    .filter_map(|r| r.err())
                    .filter(|e| !e.is_not_found() && e.errno() != Some(libc::EADDRNOTAVAIL))
                    .map(|e| e.to_string())
                    .collect();
                if errors.is_empty() {
                    done.push(format!("removed {n} added addresses, routes and rules"));
                } else {
                    failed.extend(errors);
                }
            }
            if let Some(lo) = self.undo.lo_before.take() {
                let mut msg = LinkMessage::default();
                msg.header.index = lo.header.index;
                for a in &lo.attributes {
                    if matches!(a, LinkAttribute::Mtu(_) | LinkAttribute::TxQueueLen(_)) {
                        msg.attributes.push(a.clone());
                    }
                }
                msg.header.change_mask = LinkFlags::Up;
                msg.header.flags = lo.header.flags & LinkFlags::Up;
                match rtnl.set_link(msg, "putting lo back") {
                    Ok(()) => done.push("put lo back".into()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
        }
        if self.undo.created_netns.is_none() {
            if let Some((old4, old6, new4, new6)) = self.undo.lo_devconf.take() {
                if let (Some(rtnl), Some(attr)) = (
                    self.target_rtnl.as_mut(),
                    crate::sysctl::ipv4_request(&old4, &new4),
                ) {
                    if let Ok(lo) = rtnl.dump_links() {
                        if let Some(l) = lo.iter().find(|l| common::parse(l).name == "lo") {
                            let mut msg = LinkMessage::default();
                            msg.header.index = l.header.index;
                            msg.attributes.push(attr);
                            if let Err(e) = rtnl.set_link(msg, "putting back lo's IPv4 sysctls") {
                                failed.push(e.to_string());
                            }
                        }
                    }
                }
                let writes: Vec<_> = crate::sysctl::ipv6_writes(&old6, &new6)
                    .into_iter()
                    .map(|(f, v)| ("lo".to_string(), f, v))
                    .collect();
                if let Err(e) = crate::sysctl::write_ipv6(&self.target, &writes) {
                    failed.push(e.to_string());
                }
            }
            if !self.undo.sysctls.is_empty() {
                let errors = crate::sysctl::undo_netns(&self.target, &self.undo.sysctls);
                if errors.is_empty() {
                    done.push(format!("put back {} sysctls", self.undo.sysctls.len()));
                } else {
                    failed.extend(errors);
                }
            }
        }
        // Sockets in the namespace hold it alive: close them before deleting it.
        self.target_rtnl = None;
        if let Some(name) = self.undo.created_netns.take() {
            match Netns::delete_named(&name) {
                Ok(()) => done.push(format!("deleted netns \"{name}\"")),
                Err(e) => failed.push(e.to_string()),
            }
        }
        if done.is_empty() && failed.is_empty() {
            return "nothing had changed".into();
        }
        let mut text = done.join(", ");
        if !failed.is_empty() {
            text.push_str(&format!("; could NOT undo: {}", failed.join("; ")));
        }
        text
    }
}

fn outside_names(outside: &HashMap<String, Outside>) -> HashMap<String, String> {
    outside
        .iter()
        .map(|(inner, o)| (inner.clone(), o.mapping.outer.clone()))
        .collect()
}

/// The other end of a veth pair inside the image, created by the same request.
fn local_peer(link: &v1::Link) -> Option<&str> {
    let role = driver_for(&link.kind).map(|d| d.lower_role())?;
    match (role, link.lower.as_ref().and_then(|r| r.target.as_ref())) {
        (LowerRole::Peer, Some(v1::link_ref::Target::Local(l))) => Some(&l.name),
        _ => None,
    }
}

/// Groups links into creation levels: level 0 needs nothing created before it; a link sits
/// one level above its lower device. Each veth pair inside the image is created once, by
/// the end that comes first.
pub fn plan_levels(links: &[v1::Link]) -> Result<Vec<Vec<&str>>> {
    let by_name: HashMap<&str, &v1::Link> = links.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut level: HashMap<&str, usize> = HashMap::new();
    let mut created_by_peer: HashSet<&str> = HashSet::new();
    for link in links {
        if is_loopback(link) || created_by_peer.contains(link.name.as_str()) {
            continue;
        }
        if let Some(peer) = local_peer(link) {
            created_by_peer.insert(peer);
        }
    }
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
        let role = driver_for(&link.kind)
            .map(|d| d.lower_role())
            .unwrap_or(LowerRole::Lower);
        let d = match (role, link.lower.as_ref().and_then(|r| r.target.as_ref())) {
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
        let mut d = d;
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

/// The first failure of a batch, with a hint where the errno has a known cause.
fn check(replies: Vec<Reply>) -> Result<()> {
    match replies.into_iter().find_map(|r| r.err()) {
        Some(e) => Err(annotate(e)),
        None => Ok(()),
    }
}

fn annotate(e: netcr_netlink::Error) -> CoreError {
    if e.errno() == Some(libc::EADDRINUSE) {
        return CoreError::Refused(format!(
            "{e}: its MAC address is already in use on that lower device; is the original device still there?"
        ));
    }
    CoreError::Netlink(e)
}

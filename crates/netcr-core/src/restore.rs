//! Restore: validate everything, then create in dependency order with pipelined requests,
//! then verify by dumping again. Any failure undoes everything, in bulk.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::{Netns, Reply, Request, Rtnl, RtnlExt, Transport};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
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
    /// Test-only: before the kernel request with this number (0-based; the number of requests
    /// means after the last one, before the restore reports success), print
    /// `netcr: test pause before request K` on stderr and wait, up to 60 s, for `cancel` to be
    /// set, so a test can deliver a signal at a known step.
    pub pause_at_request: Option<usize>,
    /// The user namespace (e.g. `/proc/PID/ns/user`) that owns the network namespaces the
    /// restore creates; `None`: netcr's own.
    pub userns: Option<std::path::PathBuf>,
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
    /// Links created beside their lower device and moved in with IFLA_NEW_IFINDEX (kernels
    /// before 6.14 create IFLA_LINK_NETNSID links in the lower's namespace first).
    pub created_then_moved: Vec<String>,
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
    /// In an existing namespace: its devices as they were before any change (their per-device
    /// sysctls are put back, since namespace-wide writes such as `ip_forward` rewrite them).
    devices_before: Vec<LinkMessage>,
    /// In an existing namespace: loopback's addresses before any change (bringing lo up
    /// makes the kernel add 127.0.0.1/8, which taking it down again does not remove).
    lo_addresses: Option<Vec<AddressMessage>>,
}

struct Restorer<'a> {
    image: &'a Image,
    image_ns: &'a NetnsImage,
    /// The image id of the namespace this restorer rebuilds.
    own_id: u32,
    opts: &'a RestoreOptions,
    caller: &'a Netns,
    caller_rtnl: Rtnl,
    target: &'a Netns,
    /// Every target of the restore, by image namespace id (for pairs between them).
    targets: &'a HashMap<u32, Netns>,
    target_rtnl: Option<Rtnl>,
    /// Settings the namespace-wide sysctl writes could not make (left out of verification).
    sysctls_left_out: HashSet<String>,
    requests_sent: usize,
    undo: Undo,
    report: RestoreReport,
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

/// Restores every namespace of the image, `targets[i]` for `image.namespaces[i]`. Veth pairs
/// between them are re-created as pairs. Validation covers all of them before the first
/// change; a failure in any undoes all.
pub fn restore_all(
    image: &Image,
    dir: &Path,
    targets: Vec<RestoreTarget>,
    caller: &Netns,
    opts: &RestoreOptions,
) -> Result<Vec<RestoreReport>> {
    crate::validate::validate(image, dir)?;
    if targets.len() != image.namespaces.len() {
        return Err(CoreError::Refused(format!(
            "the image holds {} namespaces, {} targets were given",
            image.namespaces.len(),
            targets.len()
        )));
    }
    let mut caller_rtnl = Rtnl::open_in(caller)?;
    caller_rtnl.set_label("caller");
    let caller_links = caller_rtnl.dump_links()?;
    let outside = resolve_externals(&image.namespaces, &opts.externals, &caller_links)?;

    // Open or plan every target. Nothing changes yet.
    struct Plan {
        id: u32,
        label: String,
        existing: Option<Netns>,
        create: Option<String>,
        links_before: Vec<LinkMessage>,
    }
    let mut plans = Vec::new();
    let mut all_links = caller_links.clone();
    for (ns_image, target) in image.namespaces.iter().zip(targets) {
        let (existing, create, label) = match target {
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
        if plans.iter().any(|p: &Plan| p.label == label) {
            return Err(CoreError::Refused(format!(
                "netns \"{label}\" is named as the target of two namespaces"
            )));
        }
        let mut links_before = Vec::new();
        if let Some(ns) = &existing {
            if ns.same_as(caller)? {
                return Err(CoreError::Refused(format!(
                    "netns \"{label}\" is the namespace netcr runs in; restore into another one"
                )));
            }
            for p in &plans {
                if let Some(other) = &p.existing {
                    if other.same_as(ns)? {
                        return Err(CoreError::Refused(format!(
                            "netns \"{label}\" is named as the target of two namespaces"
                        )));
                    }
                }
            }
            let mut rtnl = Rtnl::open_in(ns)?;
            links_before = rtnl.dump_links()?;
            let present: HashSet<String> = links_before
                .iter()
                .map(|l| common::parse(l).name.to_string())
                .collect();
            let clashes: Vec<&str> = ns_image
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
            all_links.extend(links_before.iter().cloned());
        }
        plans.push(Plan {
            id: ns_image.netns.id,
            label,
            existing,
            create,
            links_before,
        });
    }
    let group = pick_group(&caller_links, &all_links);

    // From here on, every change is undone on failure.
    let mut created = Vec::new();
    let mut handles: HashMap<u32, Netns> = HashMap::new();
    let mut befores: HashMap<u32, Vec<LinkMessage>> = HashMap::new();
    let mut labels: HashMap<u32, String> = HashMap::new();
    for p in plans {
        let ns = match (p.existing, &p.create) {
            (Some(ns), _) => ns,
            (None, Some(name)) => match match &opts.userns {
                Some(userns) => Netns::create_named_in_userns(name, userns),
                None => Netns::create_named(name),
            } {
                Ok(ns) => {
                    created.push((p.id, name.clone()));
                    ns
                }
                Err(e) => {
                    let mut undone = Vec::new();
                    for (_, name) in created.iter().rev() {
                        if Netns::delete_named(name).is_ok() {
                            undone.push(format!("deleted netns \"{name}\""));
                        }
                    }
                    return Err(CoreError::RolledBack {
                        cause: Box::new(e.into()),
                        rollback: if undone.is_empty() {
                            "nothing had changed".into()
                        } else {
                            undone.join(", ")
                        },
                    });
                }
            },
            (None, None) => unreachable!("a target is either existing or to be created"),
        };
        handles.insert(p.id, ns);
        befores.insert(p.id, p.links_before);
        labels.insert(p.id, p.label);
    }
    // A namespace the restore created gets the nsid table it had: the same ids for the other
    // namespaces of the image and for the caller's, as CRIU restores its peer_nsid. (An
    // existing namespace keeps its own table.)
    let mut nsid_warnings: HashMap<u32, Vec<String>> = HashMap::new();
    for ns_image in &image.namespaces {
        let id = ns_image.netns.id;
        if !created.iter().any(|(c, _)| *c == id) || ns_image.netns.nsids.is_empty() {
            continue;
        }
        let mut rtnl = match Rtnl::open_in(&handles[&id]) {
            Ok(r) => r,
            Err(e) => {
                nsid_warnings
                    .entry(id)
                    .or_default()
                    .push(format!("nsid table not restored: {e}"));
                continue;
            }
        };
        for entry in &ns_image.netns.nsids {
            let peer = match &entry.peer {
                Some(v1::nsid_entry::Peer::Netns(j)) => handles.get(j),
                Some(v1::nsid_entry::Peer::Caller(true)) => Some(caller),
                _ => None,
            };
            let Some(peer) = peer else { continue };
            match rtnl.ensure_nsid(peer, Some(entry.nsid)) {
                Ok(got) if got == entry.nsid => {}
                Ok(got) => nsid_warnings.entry(id).or_default().push(format!(
                    "nsid of \"{}\" is {got}, not {} as in the image",
                    peer.label(),
                    entry.nsid
                )),
                Err(e) => nsid_warnings
                    .entry(id)
                    .or_default()
                    .push(format!("nsid {}: {e}", entry.nsid)),
            }
        }
    }
    let mut restorers: Vec<Restorer<'_>> = Vec::new();
    let mut failure = None;
    for ns_image in &image.namespaces {
        let id = ns_image.netns.id;
        let rtnl = match Rtnl::open_in(caller) {
            Ok(mut r) => {
                r.set_label("caller");
                r
            }
            Err(e) => {
                failure = Some(e.into());
                break;
            }
        };
        let mut r = Restorer::new(
            image,
            ns_image,
            opts,
            caller,
            rtnl,
            &handles,
            group,
            &labels[&id],
        );
        if let Some((_, name)) = created.iter().find(|(i, _)| *i == id) {
            r.undo.created_netns = Some(name.clone());
            r.report.created_netns = true;
        }
        r.report
            .warnings
            .extend(nsid_warnings.remove(&id).unwrap_or_default());
        // Requests are numbered across the whole restore, for the test-only failure point.
        r.requests_sent = restorers.last().map_or(0, |r| r.requests_sent);
        let empty = HashMap::new();
        let result = r.apply(outside.get(&id).unwrap_or(&empty), &befores[&id]);
        restorers.push(r);
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
    }
    if failure.is_none() {
        for r in restorers.iter_mut() {
            let empty = HashMap::new();
            if let Err(e) = r.verify(outside.get(&r.own_id).unwrap_or(&empty)) {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        // A signal after the last request still undoes the restore.
        test_pause(opts, restorers.last().map_or(0, |r| r.requests_sent), 0);
        if opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            failure = Some(CoreError::Interrupted(String::new()));
        }
    }
    match failure {
        None => Ok(restorers.into_iter().map(|r| r.report).collect()),
        Some(cause) => {
            let rollback: Vec<String> = restorers.iter_mut().rev().map(|r| r.rollback()).collect();
            let rollback = rollback.join("; ");
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
    namespaces: &[NetnsImage],
    mappings: &[ExternalMapping],
    caller_links: &[LinkMessage],
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
        out.entry(ns.netns.id).or_default().insert(
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
    #[allow(clippy::too_many_arguments)]
    fn new(
        image: &'a Image,
        image_ns: &'a NetnsImage,
        opts: &'a RestoreOptions,
        caller: &'a Netns,
        caller_rtnl: Rtnl,
        targets: &'a HashMap<u32, Netns>,
        group: u32,
        label: &str,
    ) -> Restorer<'a> {
        let own_id = image_ns.netns.id;
        Restorer {
            image,
            image_ns,
            own_id,
            opts,
            caller,
            caller_rtnl,
            target: &targets[&own_id],
            targets,
            target_rtnl: None,
            sysctls_left_out: HashSet::new(),
            requests_sent: 0,
            undo: Undo {
                group,
                ..Default::default()
            },
            report: RestoreReport {
                netns: label.to_string(),
                ..Default::default()
            },
        }
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
        test_pause(self.opts, self.requests_sent, requests.len());
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

    /// Creates the link of `request` (an IFLA_LINK_NETNSID creation) in the lower device's
    /// namespace under a temporary name, then moves it into the target with its name and
    /// IFLA_NEW_IFINDEX, which the kernel checks against the target only.
    fn create_then_move(&mut self, request: &Request, name: &str) -> Result<()> {
        let RouteNetlinkMessage::NewLink(mut msg) = request.message.clone() else {
            return Err(CoreError::Refused(format!("{name}: not a link creation")));
        };
        let index = msg.header.index;
        msg.header.index = 0;
        msg.attributes
            .retain(|a| !matches!(a, LinkAttribute::LinkNetNsId(_) | LinkAttribute::IfName(_)));
        let temp = format!("ncr{:08x}", self.undo.group.rotate_left(index % 32) ^ index);
        msg.attributes
            .insert(0, LinkAttribute::IfName(temp.clone()));
        netcr_netlink::single(
            &mut self.caller_rtnl,
            Request::create(
                RouteNetlinkMessage::NewLink(msg),
                format!("creating \"{name}\" as \"{temp}\" beside its lower device"),
            ),
        )?;
        let temp_index = self
            .caller_rtnl
            .dump_links()?
            .iter()
            .find(|l| common::parse(l).name == temp)
            .map(|l| l.header.index)
            .ok_or_else(|| CoreError::Refused(format!("\"{temp}\" vanished after its creation")))?;
        let mut mv = LinkMessage::default();
        mv.header.index = temp_index;
        mv.attributes
            .push(LinkAttribute::NetNsFd(self.target.raw_fd()));
        if index != 0 {
            mv.attributes.push(LinkAttribute::NewIfIndex(index as i32));
        }
        mv.attributes.push(LinkAttribute::IfName(name.to_string()));
        let moved = netcr_netlink::single(
            &mut self.caller_rtnl,
            Request::change(
                RouteNetlinkMessage::SetLink(mv),
                format!(
                    "moving \"{name}\" into netns \"{}\" with ifindex {index}",
                    self.report.netns
                ),
            ),
        );
        if let Err(e) = moved {
            let _ = self
                .caller_rtnl
                .del_link(temp_index, "removing the temporary link");
            return Err(e.into());
        }
        self.report.created_via_nsid.retain(|n| n != name);
        self.report.created_then_moved.push(name.to_string());
        Ok(())
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

    fn apply(
        &mut self,
        outside: &HashMap<String, Outside>,
        target_links_before: &[LinkMessage],
    ) -> Result<()> {
        let mut target_rtnl = Rtnl::open_in(self.target)?;
        target_rtnl.set_label(self.report.netns.clone());
        if !self.report.created_netns {
            self.undo.devices_before = target_links_before.to_vec();
            self.undo.lo_addresses = Some(lo_addresses(&mut target_rtnl, target_links_before)?);
        }
        self.target_rtnl = Some(target_rtnl);
        let links = &self.image_ns.links;

        // The namespace's own settings first: conf/default shapes every device made next.
        let written = crate::sysctl::write_netns(self.target, &self.image_ns.netns.sysctls)?;
        self.undo.sysctls = written.changed;
        self.sysctls_left_out = written
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
        let levels = plan_levels_in(links, self.own_id)?;

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

        // A link that cannot keep its index asks for a spare one that no link of the image
        // wants: left to the kernel, the next free index could be one a later link asks for.
        let wanted: HashSet<u32> = links.iter().map(|l| l.ifindex).collect();
        let mut spares_given: HashSet<u32> = HashSet::new();

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
                // A kind netlink cannot create (tun/tap) is made by its driver; the common
                // settings and the rollback group follow as a change of the new device.
                if let Some(made) = driver.create(link, self.target) {
                    made.map_err(|e| CoreError::Driver {
                        netns: self.report.netns.clone(),
                        kind: link.kind.clone(),
                        device: link.name.clone(),
                        message: e.0,
                    })?;
                    let mut del = LinkMessage::default();
                    del.attributes
                        .push(LinkAttribute::IfName(link.name.clone()));
                    self.undo.deletes.push(Request::change(
                        RouteNetlinkMessage::DelLink(del),
                        format!("removing {} \"{}\"", link.kind, link.name),
                    ));
                    msg.attributes.retain(|a| {
                        !matches!(
                            a,
                            LinkAttribute::NumTxQueues(_) | LinkAttribute::NumRxQueues(_)
                        )
                    });
                    per_sock.entry(Sock::Target).or_default().push((
                        Request::change(
                            RouteNetlinkMessage::SetLink(msg),
                            format!("setting up {} \"{}\"", link.kind, link.name),
                        ),
                        name.to_string(),
                    ));
                    continue;
                }
                let index_free_in_target =
                    link.ifindex != 0 && !target_indexes.contains(&link.ifindex);
                let mut sock = Sock::Target;
                let mut request_index = index_free_in_target;
                let index_of = |n: &str| target_index.get(n).copied();
                let mut cx = RestoreCx {
                    peer: None,
                    peer_is_external: false,
                    index_of: &index_of,
                    lower_index: None,
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
                        cx.lower_index = Some(idx);
                    }
                    (LowerRole::Lower, Some(v1::link_ref::Target::External(_))) => {
                        let out = &outside[&link.name];
                        let lower_index = out.index.expect("validated: lower exists");
                        msg.attributes.push(LinkAttribute::Link(lower_index));
                        cx.lower_index = Some(lower_index);
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
                    (LowerRole::Peer, Some(v1::link_ref::Target::Local(l)))
                        if l.netns != self.own_id =>
                    {
                        // The other end lives in another namespace of the image: it goes there.
                        let peer_target = &self.targets[&l.netns];
                        let peer = self
                            .image
                            .namespaces
                            .iter()
                            .find(|n| n.netns.id == l.netns)
                            .and_then(|n| n.links.iter().find(|p| p.name == l.name))
                            .ok_or_else(|| {
                                CoreError::Refused(format!(
                                    "peer {} of {} is missing",
                                    l.name, link.name
                                ))
                            })?;
                        let taken: HashSet<u32> = Rtnl::open_in(peer_target)?
                            .dump_links()?
                            .iter()
                            .map(|m| m.header.index)
                            .collect();
                        let mut peer_msg = LinkMessage::default();
                        peer_msg.attributes = common::create_attributes(peer, &peer.name);
                        peer_msg
                            .attributes
                            .push(LinkAttribute::Group(self.undo.group));
                        peer_msg
                            .attributes
                            .push(LinkAttribute::NetNsFd(peer_target.raw_fd()));
                        if peer.ifindex != 0 && !taken.contains(&peer.ifindex) {
                            peer_msg.header.index = peer.ifindex;
                        }
                        cx.peer = Some(peer_msg);
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
                        } else {
                            peer_msg.header.index =
                                spare_index(&[&wanted, &target_indexes], &mut spares_given);
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
                } else {
                    let taken: &[&HashSet<u32>] = if sock == Sock::Caller {
                        &[&wanted, &target_indexes, &caller_indexes]
                    } else {
                        &[&wanted, &target_indexes]
                    };
                    msg.header.index = spare_index(taken, &mut spares_given);
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
                let sent = requests.clone();
                let replies = self.send(sock, requests)?;
                let mut first_err = None;
                for ((reply, name), request) in replies.into_iter().zip(names).zip(&sent) {
                    // Before 6.14 the kernel makes an IFLA_LINK_NETNSID link in the lower's
                    // namespace first, where its index (EBUSY) or name (EEXIST) may be taken
                    // (the target was checked): make it there under a temporary name and move
                    // it in with IFLA_NEW_IFINDEX instead.
                    let reply = match reply {
                        Err(e)
                            if matches!(e.errno(), Some(libc::EBUSY) | Some(libc::EEXIST))
                                && via_nsid(request) =>
                        {
                            self.create_then_move(request, &name)
                                .map(|()| Vec::new())
                                .map_err(|moved| match moved {
                                    CoreError::Netlink(m) => m,
                                    _ => e,
                                })
                        }
                        other => other,
                    };
                    match reply {
                        Ok(_) => {
                            self.undo.links.push(name.clone());
                            if let Some(peer) = local_peer(by_name[name.as_str()]) {
                                if peer.netns == self.own_id {
                                    self.undo.links.push(peer.name.clone());
                                }
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
        let mut requests = Vec::new();
        for link in links {
            let Some(&index) = target_index.get(&link.name) else {
                continue;
            };
            let cx = RestoreCx {
                peer: None,
                peer_is_external: false,
                index_of: &index_of,
                lower_index: match link.lower.as_ref().and_then(|r| r.target.as_ref()) {
                    Some(v1::link_ref::Target::Local(l)) => index_of(&l.name),
                    Some(v1::link_ref::Target::External(_)) => {
                        outside.get(&link.name).and_then(|o| o.index)
                    }
                    None => None,
                },
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
        let warnings = crate::sysctl::write_ipv6(self.target, &ipv6)?;
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
            // A route over the restore's own links goes with them; one on lo or on no
            // device (blackhole, unreachable, prohibit) stays, so it needs its own undo.
            let undo = (existing && !goes_with_created_links(rec)).then(|| {
                Request::change(
                    RouteNetlinkMessage::DelRoute(msg.clone()),
                    "removing a route",
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

        Ok(())
    }

    /// Reads the namespace back and compares it with the image; then checks the indexes.
    fn verify(&mut self, outside: &HashMap<String, Outside>) -> Result<()> {
        let links = &self.image_ns.links;
        // Pairs reaching into other restored namespaces: how this one numbers them, and
        // their devices by index.
        let mut peers: HashMap<i32, (u32, HashMap<u32, String>)> = HashMap::new();
        for (&id, ns) in self.targets.iter() {
            if id == self.own_id {
                continue;
            }
            if let Some(nsid) = self.rtnl(Sock::Target).get_nsid(ns)? {
                let names = state::names_by_index(&Rtnl::open_in(ns)?.dump_links()?);
                peers.insert(nsid, (id, names));
            }
        }
        // Verify: the kernel's view must be the image's.
        let after = self.rtnl(Sock::Target).dump_links()?;
        let caller_after = self.caller_rtnl.dump_links()?;
        let caller = self.caller;
        let nsid_of_caller = self.rtnl(Sock::Target).get_nsid(caller)?;
        let bridge = crate::bridge_family::BridgeFamily::read(self.rtnl(Sock::Target), &after)?;
        let mut diffs = verify::links(
            self.image_ns,
            &after,
            &caller_after,
            nsid_of_caller,
            outside_names(outside),
            &peers,
            &bridge,
        );
        // Only the families the image holds addresses or routes of: the comparison looks the
        // image's objects up in these dumps, so other families would be read for nothing.
        let addrs = {
            let families = stored_families(self.image_ns.addresses.iter().map(|a| &a.message));
            let t = self.rtnl(Sock::Target);
            let mut v = Vec::new();
            for family in families {
                v.extend(t.dump_addresses(family)?);
            }
            v
        };
        diffs.extend(verify::addresses(self.image_ns, &after, &addrs));
        let routes = {
            let families = stored_families(self.image_ns.routes.iter().map(|r| &r.message));
            let t = self.rtnl(Sock::Target);
            let mut v = Vec::new();
            for family in families {
                v.extend(t.dump_routes(family)?);
            }
            v
        };
        diffs.extend(verify::routes(self.image_ns, &after, &routes));
        let names: Vec<&str> = self
            .image_ns
            .netns
            .sysctls
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let now: HashMap<String, String> = crate::sysctl::read_named(self.target, &names)?
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect();
        for want in &self.image_ns.netns.sysctls {
            if self.sysctls_left_out.contains(&want.name) {
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
        let started = std::time::Instant::now();
        let requests_before = self.target_rtnl.as_ref().map_or(0, |r| r.stats().requests);
        let (mut regroupings, mut link_deletions) = (0, 0);
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
                    regroupings = regroup.len();
                    let _ = rtnl.batch(regroup);
                }
                link_deletions += 1;
                match rtnl.del_link_group(group, "removing the links the restore created") {
                    Ok(()) if self.undo.links.is_empty() => {}
                    Ok(()) => done.push(format!("removed {} links", self.undo.links.len())),
                    // Nothing was created: the group is empty.
                    Err(e) if self.undo.links.is_empty() && e.is_not_found() => {}
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
        }
        if self.undo.created_netns.is_none() {
            // Namespace-wide values first: some (ip_forward, conf/all/forwarding) rewrite
            // every device's own value, which is put back next.
            if !self.undo.sysctls.is_empty() {
                let errors = crate::sysctl::undo_netns(self.target, &self.undo.sysctls);
                if errors.is_empty() {
                    done.push(format!("put back {} sysctls", self.undo.sysctls.len()));
                } else {
                    failed.extend(errors);
                }
            }
            if let Some(rtnl) = self.target_rtnl.as_mut() {
                if let Some(lo) = self.undo.lo_before.take() {
                    let mut msg = LinkMessage::default();
                    msg.header.index = lo.header.index;
                    let mut alias = String::new();
                    for a in &lo.attributes {
                        match a {
                            LinkAttribute::Mtu(_)
                            | LinkAttribute::TxQueueLen(_)
                            | LinkAttribute::Group(_) => msg.attributes.push(a.clone()),
                            LinkAttribute::IfAlias(a) => alias = a.clone(),
                            _ => {}
                        }
                    }
                    msg.attributes.push(LinkAttribute::IfAlias(alias));
                    let mask = common::restorable_flags(false);
                    msg.header.change_mask = mask;
                    msg.header.flags = lo.header.flags & mask;
                    match rtnl.set_link(msg, "putting lo back") {
                        Ok(()) => done.push("put lo back".into()),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
            }
            let lo_devconf_set = self.undo.lo_devconf.take().is_some();
            if let Err(e) = self.put_back_devconf() {
                failed.push(e);
            } else if lo_devconf_set {
                done.push("put back lo's sysctls".into());
            }
            if let Err(e) = self.remove_new_lo_addresses() {
                failed.push(e);
            }
        }
        let requests = self
            .target_rtnl
            .as_ref()
            .map_or(0, |r| r.stats().requests)
            .saturating_sub(requests_before);
        log::info!(
            "rollback: {requests} requests: {regroupings} regroupings, {link_deletions} link deletions, {} others; {:.1} ms",
            (requests as usize).saturating_sub(regroupings + link_deletions),
            started.elapsed().as_secs_f64() * 1000.0
        );
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

    /// In an existing namespace: sets every device that was there before back to the
    /// per-device sysctls it had (IPv4 over netlink, IPv6 through /proc), where they differ.
    fn put_back_devconf(&mut self) -> std::result::Result<(), String> {
        let Some(rtnl) = self.target_rtnl.as_mut() else {
            return Ok(());
        };
        let now = rtnl.dump_links().map_err(|e| e.to_string())?;
        let now: HashMap<u32, &LinkMessage> = now.iter().map(|l| (l.header.index, l)).collect();
        let mut requests = Vec::new();
        let mut ipv6 = Vec::new();
        for before in &self.undo.devices_before {
            let Some(cur) = now.get(&before.header.index) else {
                continue;
            };
            let name = common::parse(cur).name;
            let (old4, old6) = crate::sysctl::devconf_of(before);
            let (cur4, cur6) = crate::sysctl::devconf_of(cur);
            if let Some(attr) = crate::sysctl::ipv4_request(&old4, &cur4) {
                let mut msg = LinkMessage::default();
                msg.header.index = before.header.index;
                msg.attributes.push(attr);
                requests.push(Request::change(
                    RouteNetlinkMessage::SetLink(msg),
                    format!("putting back the IPv4 sysctls of \"{name}\""),
                ));
            }
            for (file, value) in crate::sysctl::ipv6_writes(&old6, &cur6) {
                ipv6.push((name.to_string(), file, value));
            }
        }
        let mut errors: Vec<String> = rtnl
            .batch(requests)
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        match crate::sysctl::write_ipv6(self.target, &ipv6) {
            Ok(warnings) => errors.extend(warnings),
            Err(e) => errors.push(e.to_string()),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// In an existing namespace: removes the addresses on lo that were not there before.
    fn remove_new_lo_addresses(&mut self) -> std::result::Result<(), String> {
        let (Some(before), Some(rtnl)) = (self.undo.lo_addresses.take(), self.target_rtnl.as_mut())
        else {
            return Ok(());
        };
        let now = lo_addresses(rtnl, &self.undo.devices_before).map_err(|e| e.to_string())?;
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
        let errors: Vec<String> = rtnl
            .batch(deletes)
            .into_iter()
            .filter_map(|r| r.err())
            .filter(|e| !e.is_not_found() && e.errno() != Some(libc::EADDRNOTAVAIL))
            .map(|e| e.to_string())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The addresses on the loopback device of `links` (as a dump in that namespace lists it).
fn lo_addresses(rtnl: &mut Rtnl, links: &[LinkMessage]) -> Result<Vec<AddressMessage>> {
    let Some(lo) = links.iter().find(|l| common::parse(l).name == "lo") else {
        return Ok(Vec::new());
    };
    let mut out = rtnl.dump_addresses(netlink_packet_route::AddressFamily::Inet)?;
    out.extend(rtnl.dump_addresses(netlink_packet_route::AddressFamily::Inet6)?);
    out.retain(|a| a.header.index == lo.header.index);
    Ok(out)
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

/// The lowest index above lo's that none of `taken` holds and that was not given before.
fn spare_index(taken: &[&HashSet<u32>], given: &mut HashSet<u32>) -> u32 {
    let mut i = 2;
    while given.contains(&i) || taken.iter().any(|t| t.contains(&i)) {
        i += 1;
    }
    given.insert(i);
    i
}

/// Whether a route goes away by itself when the restore's links are removed: it names at
/// least one device, and every device it names is one the restore creates (not lo).
fn goes_with_created_links(rec: &v1::Route) -> bool {
    let devs: Vec<&str> = std::iter::once(rec.oif.as_str())
        .chain(rec.nexthop_devs.iter().map(String::as_str))
        .filter(|d| !d.is_empty())
        .collect();
    !devs.is_empty() && devs.iter().all(|d| *d != "lo")
}

/// Test-only pause point (RestoreOptions::pause_at_request): waits before a batch of `n`
/// requests that starts at request `sent` when the pause falls in it (`n` = 0: at the end).
fn test_pause(opts: &RestoreOptions, sent: usize, n: usize) {
    let Some(k) = opts.pause_at_request else {
        return;
    };
    if k < sent || k > sent + n || (k == sent + n && n != 0) {
        return;
    }
    static PAUSED: AtomicBool = AtomicBool::new(false);
    if PAUSED.swap(true, Ordering::SeqCst) {
        return;
    }
    eprintln!("netcr: test pause before request {k}");
    for _ in 0..6000 {
        if opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn outside_names(outside: &HashMap<String, Outside>) -> HashMap<String, String> {
    outside
        .iter()
        .map(|(inner, o)| (inner.clone(), o.mapping.outer.clone()))
        .collect()
}

/// The address families of stored address or route message bodies, IPv4 first. Byte 0 of
/// both (`ifa_family`, `rtm_family`) is the family; any other value asks for both.
fn stored_families<'m>(
    messages: impl Iterator<Item = &'m Vec<u8>>,
) -> Vec<netlink_packet_route::AddressFamily> {
    use netlink_packet_route::AddressFamily;
    let (mut inet, mut inet6) = (false, false);
    for message in messages {
        match message.first().map(|&b| i32::from(b)) {
            Some(libc::AF_INET) => inet = true,
            Some(libc::AF_INET6) => inet6 = true,
            _ => (inet, inet6) = (true, true),
        }
    }
    let mut out = Vec::new();
    if inet {
        out.push(AddressFamily::Inet);
    }
    if inet6 {
        out.push(AddressFamily::Inet6);
    }
    out
}

/// The other end of a veth pair inside the image (in this namespace or another one of the
/// image), created by the same request.
fn local_peer(link: &v1::Link) -> Option<&v1::LocalRef> {
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

/// Whether `request` creates a link from the target with IFLA_LINK_NETNSID.
fn via_nsid(request: &Request) -> bool {
    matches!(&request.message, RouteNetlinkMessage::NewLink(m)
        if m.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkNetNsId(_))))
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

#[cfg(test)]
mod stored_families_tests {
    use super::stored_families;
    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::route::RouteMessage;
    use netlink_packet_route::AddressFamily::{self, Inet, Inet6};
    use rstest::rstest;

    fn address(family: AddressFamily) -> Vec<u8> {
        let mut msg = AddressMessage::default();
        msg.header.family = family;
        crate::state::encode(&msg)
    }

    fn route(family: AddressFamily) -> Vec<u8> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        crate::state::encode(&msg)
    }

    #[rstest]
    #[case::none(vec![], vec![])]
    #[case::ipv4(vec![address(Inet), address(Inet)], vec![Inet])]
    #[case::ipv6(vec![address(Inet6)], vec![Inet6])]
    #[case::both_ipv4_first(vec![address(Inet6), address(Inet)], vec![Inet, Inet6])]
    #[case::routes(vec![route(Inet6)], vec![Inet6])]
    #[case::unknown_asks_for_both(vec![vec![7, 0, 0, 0]], vec![Inet, Inet6])]
    #[case::empty_record_asks_for_both(vec![vec![]], vec![Inet, Inet6])]
    fn families_of_stored_messages(
        #[case] messages: Vec<Vec<u8>>,
        #[case] expected: Vec<AddressFamily>,
    ) {
        assert_eq!(stored_families(messages.iter()), expected);
    }
}

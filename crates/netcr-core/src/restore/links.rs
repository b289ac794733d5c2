//! Links: loopback in place, every other link created level by level (pipelined, from the
//! socket its placement names), ports on their masters, the kinds' finishing requests, the
//! final settings, and the outer ends of veths to the caller's namespace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use netcr_image::v1;
use netcr_netlink::{single, Request, RtnlExt};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::journal::Entry;
use super::plan::{index_map, local_peer, lower_role, plan_levels_in};
use super::request::{self, Creation, Placement, Taken, Via};
use super::session::{annotate, check, Key, Session};
use super::Adopt;
use crate::common::{self, is_loopback};
use crate::driver::{driver_for, LowerRole, RestoreCx};
use crate::error::{CoreError, Result};

/// Loopback exists in every namespace: it is changed in place, never created.
pub(crate) fn loopback(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let Some(lo) = s.links(ns).iter().find(|l| is_loopback(l)) else {
        return Ok(());
    };
    let links = if s.targets[ns].existing() {
        s.targets[ns].links_before.clone()
    } else {
        s.socket(Key::Target(ns))?.dump_links()?
    };
    let Some(before) = links.into_iter().find(|l| common::parse(l).name == "lo") else {
        return Ok(());
    };
    let up_early = s.image_ns(ns).addresses.iter().any(|a| a.dev == lo.name);
    let request = request::loopback_request(lo, before.header.index, up_early);
    if s.targets[ns].existing() {
        // Putting lo back is harmless should the change not be made.
        s.journal.push(Entry::LinkChanged { ns, before })?;
    }
    check(s.send(Key::Target(ns), vec![request])?)?;
    s.targets[ns].report.links += 1;
    Ok(())
}

/// Creates every link of target `ns` but loopback, lower devices before their uppers, each
/// level pipelined; a veth pair is one request.
pub(crate) fn create_all(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let links = s.links(ns);
    let own = s.targets[ns].id;
    let levels = plan_levels_in(links, own)?;
    // The links this restore makes, for its progress: every level's, but adopted ones.
    let to_create = levels
        .iter()
        .flatten()
        .filter(|n| !s.targets[ns].adopted.contains(**n))
        .count();
    let mut made = 0;
    let by_name: HashMap<&str, &v1::Link> = links.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut target_links = if s.targets[ns].existing() {
        s.targets[ns].links_before.clone()
    } else {
        s.socket(Key::Target(ns))?.dump_links()?
    };
    let caller_links = s.socket(Key::Caller)?.dump_links()?;
    let caller: HashSet<u32> = caller_links.iter().map(|l| l.header.index).collect();
    let caller_names: HashSet<String> = caller_links
        .iter()
        .map(|l| common::parse(l).name.to_string())
        .collect();
    let wanted: HashSet<u32> = links.iter().map(|l| l.ifindex).collect();
    let mut given = HashSet::new();
    let caller_nsid = caller_nsid(s, ns)?;
    for level in &levels {
        let target_index = index_map(&target_links);
        let target: HashSet<u32> = target_index.values().copied().collect();
        let taken = Taken {
            target: &target,
            caller: &caller,
            caller_names: &caller_names,
            wanted: &wanted,
        };
        let mut from_lower = Vec::new();
        let mut in_target = Vec::new();
        for &name in level {
            if s.targets[ns].adopted.contains(name) {
                continue;
            }
            let link = by_name[name];
            let driver = driver_for(&link.kind)
                .ok_or_else(|| CoreError::Refused(format!("no driver for {}", link.kind)))?;
            // A kind netlink cannot create (tun/tap) is made by its driver; the common
            // settings and the private group follow as a change of the new device.
            let made = Entry::DeviceMade {
                ns,
                name: link.name.clone(),
            };
            s.journal.intend(&made)?;
            if let Some(result) = driver.create(link, s.netns(Key::Target(ns))?) {
                result.map_err(|e| s.driver_error(ns, link, e))?;
                s.journal.push(made)?;
                in_target.push(Creating {
                    request: request::setup_request(link, s.journal.group, driver),
                    name,
                    peer: None,
                    retry: None,
                });
                continue;
            }
            let role = lower_role(link);
            let lower = link.lower.as_ref().and_then(|r| r.target.as_ref());
            let external_lower = matches!(
                (role, lower),
                (LowerRole::Lower, Some(v1::link_ref::Target::External(_)))
            );
            let create_from = if driver.lower_via_nsid() {
                super::CreateFrom::Target
            } else {
                s.opts.create_from
            };
            let (placement, keep) = request::placement(link, external_lower, create_from, taken);
            let index = request::chosen_index(link, placement, keep, taken, &mut given);
            let via = match placement {
                Placement::Target => Via::Here,
                Placement::FromLower => Via::NetnsFd(s.netns(Key::Target(ns))?.raw_fd()),
                Placement::ViaNsid => {
                    let nsid = caller_nsid.ok_or_else(|| {
                        CoreError::Refused(format!("{}: no nsid for the caller", link.name))
                    })?;
                    s.targets[ns]
                        .report
                        .created_via_nsid
                        .push(link.name.clone());
                    Via::Nsid(nsid)
                }
            };
            let lower_index = match (role, lower) {
                (LowerRole::Lower, Some(v1::link_ref::Target::Local(l))) => {
                    Some(*target_index.get(&l.name).ok_or_else(|| {
                        CoreError::Refused(format!(
                            "lower device {} of {} was not created",
                            l.name, link.name
                        ))
                    })?)
                }
                (LowerRole::Lower, Some(v1::link_ref::Target::External(_))) => {
                    s.targets[ns].outside.get(&link.name).and_then(|o| o.index)
                }
                _ => None,
            };
            let (peer, peer_is_external) = peer_end(s, ns, link, &target, &wanted, &mut given)?;
            let index_of = |n: &str| target_index.get(n).copied();
            let creation = Creation {
                link,
                group: s.journal.group,
                index,
                lower_index,
                via,
                peer,
                peer_is_external,
                index_of: &index_of,
            };
            let request = request::creation_request(creation, driver)
                .map_err(|e| s.driver_error(ns, link, e))?;
            let creating = Creating {
                retry: lower_index.is_some().then(|| request.clone()),
                request,
                name,
                peer: local_peer(link).and_then(|p| Some((s.target_of(p.netns)?, p.name.as_str()))),
            };
            match placement {
                Placement::FromLower => from_lower.push(creating),
                _ => in_target.push(creating),
            }
        }
        send_creations(s, ns, Key::Caller, from_lower)?;
        send_creations(s, ns, Key::Target(ns), in_target)?;
        target_links = s.socket(Key::Target(ns))?.dump_links()?;
        made += level
            .iter()
            .filter(|n| !s.targets[ns].adopted.contains(**n))
            .count();
        s.progress("links", made, to_create);
    }
    let created = s.journal.links_in(ns).len();
    let target = &mut s.targets[ns];
    target.report.links += created;
    target.index = index_map(&target_links);
    target.links_now = target_links;
    Ok(())
}

/// The id target `ns` uses for the caller's namespace, for `IFLA_LINK_NETNSID`, when one of
/// its links has its lower device or peer there; assigned when there is none. The kernel
/// assigns one itself as soon as such a link exists, so asking first changes nothing more,
/// and every restore of the image makes the same requests whichever socket creates a link.
fn caller_nsid(s: &mut Session<'_>, ns: usize) -> Result<Option<i32>> {
    if s.targets[ns].outside.is_empty() {
        return Ok(None);
    }
    s.check_cancel()?;
    let caller = s.caller;
    Ok(Some(s.socket(Key::Target(ns))?.ensure_nsid(caller, None)?))
}

/// For a veth: the request for its other end (in this namespace, in another target, or the
/// outer end in the caller's namespace) and whether that end lies outside the image.
fn peer_end(
    s: &mut Session<'_>,
    ns: usize,
    link: &v1::Link,
    target: &HashSet<u32>,
    wanted: &HashSet<u32>,
    given: &mut HashSet<u32>,
) -> Result<(Option<LinkMessage>, bool)> {
    if lower_role(link) != LowerRole::Peer {
        return Ok((None, false));
    }
    let group = s.journal.group;
    match link.lower.as_ref().and_then(|r| r.target.as_ref()) {
        Some(v1::link_ref::Target::Local(l)) if l.netns != s.targets[ns].id => {
            // The other end lives in another namespace of the image: it goes there.
            let missing =
                || CoreError::Refused(format!("peer {} of {} is missing", l.name, link.name));
            let other = s.target_of(l.netns).ok_or_else(missing)?;
            let peer = s
                .links(other)
                .iter()
                .find(|p| p.name == l.name)
                .ok_or_else(missing)?;
            let taken: HashSet<u32> = s
                .socket(Key::Target(other))?
                .dump_links()?
                .iter()
                .map(|m| m.header.index)
                .collect();
            let index = if peer.ifindex != 0 && !taken.contains(&peer.ifindex) {
                peer.ifindex
            } else {
                0
            };
            let fd = s.netns(Key::Target(other))?.raw_fd();
            Ok((
                Some(request::peer_message(peer, group, index, Some(fd))),
                false,
            ))
        }
        Some(v1::link_ref::Target::Local(l)) => {
            let peer = s
                .links(ns)
                .iter()
                .find(|p| p.name == l.name)
                .ok_or_else(|| {
                    CoreError::Refused(format!("peer {} of {} is missing", l.name, link.name))
                })?;
            let index = if peer.ifindex != 0
                && !target.contains(&peer.ifindex)
                && peer.ifindex != link.ifindex
            {
                peer.ifindex
            } else {
                super::plan::spare_index(&[wanted, target], given)
            };
            Ok((Some(request::peer_message(peer, group, index, None)), false))
        }
        Some(v1::link_ref::Target::External(_)) => {
            let outer = s.targets[ns]
                .outside
                .get(&link.name)
                .map(|o| o.mapping.outer.clone())
                .ok_or_else(|| CoreError::Refused(format!("no outer end for {}", link.name)))?;
            let msg = request::outer_end_message(&outer, s.caller.raw_fd());
            Ok((Some(msg), true))
        }
        None => Ok((None, false)),
    }
}

/// One creation request of a level, with what its success means for the journal.
struct Creating<'l> {
    request: Request,
    /// The link it creates.
    name: &'l str,
    /// The other end of a veth pair it creates too: (target, name).
    peer: Option<(usize, &'l str)>,
    /// A copy of the request, where the kernel may refuse it for the lower's namespace or
    /// for a namespace being torn down: a link with a lower device.
    retry: Option<Request>,
}

/// How long a creation that a dying namespace's devices may block is retried when the
/// caller does not say ([`super::RestoreOptions::teardown_wait`]).
pub const DEFAULT_TEARDOWN_WAIT: Duration = Duration::from_secs(5);

/// Sends one level's creations from one socket and journals each link made (and a veth's
/// other end, in the namespace it lives in). The kernel tears a deleted namespace down
/// later, in a worker: until then its macvlans hold their MACs and a passthru macvlan its
/// lower device. A creation such a leftover can explain is retried with backoff, for a
/// bounded time, before it fails.
fn send_creations(
    s: &mut Session<'_>,
    ns: usize,
    key: Key,
    batch: Vec<Creating<'_>>,
) -> Result<()> {
    let wait = s.opts.teardown_wait.unwrap_or(DEFAULT_TEARDOWN_WAIT);
    let started = Instant::now();
    let mut delay = Duration::from_millis(10);
    let mut pending = batch;
    loop {
        let blocked = send_once(s, ns, key, pending)?;
        let Some((_, first)) = blocked.first() else {
            return Ok(());
        };
        if started.elapsed() >= wait {
            return Err(still_blocked(
                s,
                ns,
                &blocked[0].0,
                first,
                started.elapsed(),
            ));
        }
        let names: Vec<&str> = blocked.iter().map(|(c, _)| c.name).collect();
        log::info!(
            "{} ({first}): a namespace being torn down may still hold what it needs; trying again in {} ms",
            names.join(", "),
            delay.as_millis()
        );
        let until = Instant::now() + delay;
        while Instant::now() < until {
            s.check_cancel()?;
            std::thread::sleep(Duration::from_millis(10).min(delay));
        }
        delay = (delay * 2).min(Duration::from_millis(500));
        pending = blocked.into_iter().map(|(c, _)| c).collect();
    }
}

/// One attempt: sends the batch, journals each link made, and returns the creations a dying
/// namespace may be blocking (each with its error). Before 6.14 the kernel makes an
/// IFLA_LINK_NETNSID link in the lower's namespace first, where its index (EBUSY) or name
/// (EEXIST) may be taken (the target was checked): such a link is made there under a
/// temporary name and moved in with IFLA_NEW_IFINDEX instead.
fn send_once<'l>(
    s: &mut Session<'_>,
    ns: usize,
    key: Key,
    batch: Vec<Creating<'l>>,
) -> Result<Vec<(Creating<'l>, netcr_netlink::Error)>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let (requests, rest): (Vec<Request>, Vec<_>) = batch
        .into_iter()
        .map(|c| (c.request, (c.name, c.peer, c.retry)))
        .unzip();
    let mut intended: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (name, peer, _) in &rest {
        intended.entry(ns).or_default().push(name.to_string());
        if let Some((other, peer)) = peer {
            intended.entry(*other).or_default().push(peer.to_string());
        }
    }
    for (ns, names) in intended {
        s.journal.intend(&Entry::LinksCreated { ns, names })?;
    }
    let replies = s.send(key, requests)?;
    let mut created: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut blocked = Vec::new();
    let mut first_err = None;
    for (reply, (name, peer, retry)) in replies.into_iter().zip(rest) {
        let reply = match (reply, retry) {
            (Err(e), Some(retry))
                if request::via_nsid(&retry)
                    && matches!(e.errno(), Some(libc::EBUSY | libc::EEXIST)) =>
            {
                create_then_move(s, ns, &retry, name).map_err(|moved| match moved {
                    CoreError::Netlink(m) => m,
                    _ => e,
                })
            }
            (Err(e), Some(retry)) if dying_namespace_may_explain(s.links(ns), name, &e) => {
                let again = Creating {
                    request: retry.clone(),
                    name,
                    peer,
                    retry: Some(retry),
                };
                blocked.push((again, e));
                continue;
            }
            (reply, _) => reply.map(|_| ()),
        };
        match reply {
            Ok(()) => {
                created.entry(ns).or_default().push(name.to_string());
                if let Some((other, peer)) = peer {
                    created.entry(other).or_default().push(peer.to_string());
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    for (ns, names) in created {
        s.journal.push(Entry::LinksCreated { ns, names })?;
    }
    match first_err {
        Some(e) => Err(annotate(e)),
        None => Ok(blocked),
    }
}

/// Whether the devices of a namespace being torn down can explain why creating `name`
/// failed: its MAC still in use on the lower device (EADDRINUSE), a device or index still
/// taken (EBUSY, EEXIST), or, for a passthru macvlan, its lower device still held by the
/// old one (EINVAL: passthru needs its lower device to itself).
fn dying_namespace_may_explain(links: &[v1::Link], name: &str, e: &netcr_netlink::Error) -> bool {
    match e.errno() {
        Some(libc::EADDRINUSE | libc::EBUSY | libc::EEXIST) => true,
        Some(libc::EINVAL) => links.iter().any(|l| l.name == name && is_passthru(l)),
        _ => false,
    }
}

/// A macvlan or macvtap in passthru mode (the kinds that take the lower's MAC and, unlike
/// ipvlan, need the lower device to themselves).
fn is_passthru(link: &v1::Link) -> bool {
    matches!(link.kind.as_str(), "macvlan" | "macvtap")
        && driver_for(&link.kind).is_some_and(|d| d.inherits_address(&link.config))
}

/// The error for a creation still blocked after waiting: what holds it, in the user's terms.
fn still_blocked(
    s: &Session<'_>,
    ns: usize,
    creating: &Creating<'_>,
    e: &netcr_netlink::Error,
    waited: Duration,
) -> CoreError {
    let waited = format!(
        "waited {:.1} s for a namespace being torn down to release it",
        waited.as_secs_f64()
    );
    let link = s.links(ns).iter().find(|l| l.name == creating.name);
    let lower = link.and_then(|l| match l.lower.as_ref()?.target.as_ref()? {
        v1::link_ref::Target::Local(local) => Some(local.name.clone()),
        v1::link_ref::Target::External(_) => s.targets[ns]
            .outside
            .get(&l.name)
            .map(|o| o.mapping.outer.clone()),
    });
    match (e.errno(), lower) {
        (Some(libc::EINVAL), Some(lower)) if link.is_some_and(is_passthru) => {
            CoreError::Refused(format!(
                "{e}: passthru needs {lower} to itself; another macvlan is on it ({waited})"
            ))
        }
        (Some(libc::EADDRINUSE), _) => CoreError::Refused(format!(
            "{e}: its MAC address is already in use on that lower device; is the original device still there? ({waited})"
        )),
        _ => CoreError::Refused(format!("{e} ({waited})")),
    }
}

/// Creates the link of `request` (an IFLA_LINK_NETNSID creation) in the lower device's
/// namespace under a temporary name, then moves it into the target with its name and
/// IFLA_NEW_IFINDEX, which the kernel checks against the target only.
fn create_then_move(s: &mut Session<'_>, ns: usize, request: &Request, name: &str) -> Result<()> {
    let RouteNetlinkMessage::NewLink(mut msg) = request.message.clone() else {
        return Err(CoreError::Refused(format!("{name}: not a link creation")));
    };
    let index = msg.header.index;
    msg.header.index = 0;
    msg.attributes
        .retain(|a| !matches!(a, LinkAttribute::LinkNetNsId(_) | LinkAttribute::IfName(_)));
    let temp = request::temporary_name(s.journal.group, index);
    msg.attributes
        .insert(0, LinkAttribute::IfName(temp.clone()));
    s.check_cancel()?;
    let temporary = Entry::TemporaryLink { name: temp.clone() };
    s.journal.intend(&temporary)?;
    single(
        s.socket(Key::Caller)?,
        Request::create(
            RouteNetlinkMessage::NewLink(msg),
            format!("creating \"{name}\" as \"{temp}\" beside its lower device"),
        ),
    )?;
    s.journal.push(temporary)?;
    let temp_index = s
        .socket(Key::Caller)?
        .dump_links()?
        .iter()
        .find(|l| common::parse(l).name == temp)
        .map(|l| l.header.index)
        .ok_or_else(|| CoreError::Refused(format!("\"{temp}\" vanished after its creation")))?;
    let mut mv = LinkMessage::default();
    mv.header.index = temp_index;
    mv.attributes
        .push(LinkAttribute::NetNsFd(s.netns(Key::Target(ns))?.raw_fd()));
    if index != 0 {
        mv.attributes.push(LinkAttribute::NewIfIndex(index as i32));
    }
    mv.attributes.push(LinkAttribute::IfName(name.to_string()));
    let label = s.targets[ns].label.clone();
    let caller = s.socket(Key::Caller)?;
    let moved = single(
        caller,
        Request::change(
            RouteNetlinkMessage::SetLink(mv),
            format!("moving \"{name}\" into netns \"{label}\" with ifindex {index}"),
        ),
    );
    if let Err(e) = moved {
        // The journal still names it, should this deletion fail too.
        let _ = caller.del_link(temp_index, "removing the temporary link");
        return Err(e.into());
    }
    let report = &mut s.targets[ns].report;
    report.created_via_nsid.retain(|n| n != name);
    report.created_then_moved.push(name.to_string());
    Ok(())
}

/// Ports join their masters.
pub(crate) fn join_masters(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let index = &s.targets[ns].index;
    let adopted = &s.targets[ns].adopted;
    let mut requests = Vec::new();
    for link in s.links(ns).iter().filter(|l| !adopted.contains(&l.name)) {
        if let Some(v1::link_ref::Target::Local(m)) =
            link.master.as_ref().and_then(|r| r.target.as_ref())
        {
            let (Some(&port), Some(&master)) = (index.get(&link.name), index.get(&m.name)) else {
                return Err(CoreError::Refused(format!(
                    "\"{}\" or its master \"{}\" was not created",
                    link.name, m.name
                )));
            };
            requests.push(request::join_request(&link.name, port, &m.name, master));
        }
    }
    check(s.send(Key::Target(ns), requests)?)
}

/// Ports get their settings back from their master's kind; then kinds finish up (a
/// bridge's own VLANs, static forwarding entries).
pub(crate) fn finish_kinds(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let links = s.links(ns);
    let by_name: HashMap<&str, &v1::Link> = links.iter().map(|l| (l.name.as_str(), l)).collect();
    let target = &s.targets[ns];
    let index_of = |dev: &str| target.index.get(dev).copied();
    let mut requests = Vec::new();
    for link in links.iter().filter(|l| !target.adopted.contains(&l.name)) {
        let Some(&index) = target.index.get(&link.name) else {
            continue;
        };
        let cx = RestoreCx {
            peer: None,
            peer_is_external: false,
            index_of: &index_of,
            lower_index: match link.lower.as_ref().and_then(|r| r.target.as_ref()) {
                Some(v1::link_ref::Target::Local(l)) => index_of(&l.name),
                Some(v1::link_ref::Target::External(_)) => {
                    target.outside.get(&link.name).and_then(|o| o.index)
                }
                None => None,
            },
        };
        if let Some(v1::link_ref::Target::Local(m)) =
            link.master.as_ref().and_then(|r| r.target.as_ref())
        {
            let master_driver = by_name
                .get(m.name.as_str())
                .and_then(|ml| driver_for(&ml.kind));
            if let (false, Some(md)) = (link.port_config.is_empty(), master_driver) {
                let port = md
                    .restore_port(link, index, &cx)
                    .map_err(|e| s.driver_error(ns, link, e))?;
                requests.extend(port);
            }
        }
        if let Some(d) = driver_for(&link.kind) {
            let more = d
                .after_create(link, index, &cx)
                .map_err(|e| s.driver_error(ns, link, e))?;
            requests.extend(more);
        }
    }
    check(s.send(Key::Target(ns), requests)?)
}

/// Final settings: alias, the image's group, and flags (UP last but routes). They take the
/// links out of the private group, which the journal notes first. An adopted device keeps
/// its own settings, or, with [`Adopt::Change`], gets the image's MTU, MAC, alias and flags
/// (its settings before are journaled, to be put back).
pub(crate) fn final_settings(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let target = &s.targets[ns];
    let change_adopted = s.opts.adopt == Adopt::Change;
    let mut requests = Vec::new();
    let mut before = Vec::new();
    for link in s.links(ns) {
        let Some(&index) = target.index.get(&link.name) else {
            continue;
        };
        if !target.adopted.contains(&link.name) {
            requests.push(request::final_request(link, index));
        } else if change_adopted {
            let now = target.links_now.iter().find(|l| l.header.index == index);
            before.extend(now.cloned());
            requests.push(request::adopted_request(link, index));
        }
    }
    for before in before {
        s.journal.push(Entry::LinkChanged { ns, before })?;
    }
    s.journal.push(Entry::LinksRegrouped { ns })?;
    check(s.send(Key::Target(ns), requests)?)
}

/// Outer ends of veth pairs, in the caller's namespace: up, and on their bridge when asked.
pub(crate) fn outer_ends(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let mut ends: Vec<_> = s.targets[ns]
        .outside
        .values()
        .filter(|o| o.index.is_none())
        .map(|o| o.mapping.clone())
        .collect();
    if ends.is_empty() {
        return Ok(());
    }
    ends.sort_by(|a, b| a.outer.cmp(&b.outer));
    let caller_index = index_map(&s.socket(Key::Caller)?.dump_links()?);
    let mut requests = Vec::new();
    for mapping in &ends {
        let Some(&index) = caller_index.get(&mapping.outer) else {
            return Err(CoreError::Verify(format!(
                "outer end \"{}\" was not created",
                mapping.outer
            )));
        };
        let bridge = match &mapping.bridge {
            Some(b) => Some(*caller_index.get(b).ok_or_else(|| {
                CoreError::Refused(format!("bridge \"{b}\" disappeared during the restore"))
            })?),
            None => None,
        };
        requests.push(request::outer_end_up(&mapping.outer, index, bridge));
    }
    check(s.send(Key::Caller, requests)?)
}

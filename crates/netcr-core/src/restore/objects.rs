//! Objects that live on links or in the namespace: addresses, routes, rules and neighbours.
//! One shape for all: the image's records become creation requests, each paired with the
//! deletion that undoes it where the object would outlive the restore's own links.

use std::collections::HashSet;

use netcr_image::NetnsImage;
use netcr_netlink::Request;
use netlink_packet_route::RouteNetlinkMessage;

use super::journal::Entry;
use super::session::{annotate, check, Key, Session};
use super::Adopt;
use crate::error::{CoreError, Result};
use crate::state;

/// A kind of object the restore adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Object {
    /// Addresses, added while links are still down (no DAD race, no early traffic).
    Address,
    /// Routes of every table.
    Route,
    /// Policy rules.
    Rule,
    /// Neighbours: permanent, noarp and proxy entries.
    Neighbour,
    /// Links' alternative names (RTM_NEWLINKPROP), once the links exist.
    Altname,
}

/// A creation and, where the object would outlive the restore's links, its deletion.
pub(crate) type Item = (Request, Option<Request>);

/// The requests that add every object of `kind` the image holds, devices resolved by
/// `index_of`. In a namespace the restore creates, everything goes with the namespace; in
/// an existing one, what is on a device that was there before (its lo, an adopted device),
/// on no device, and rules need their own undo.
pub(crate) fn requests(
    kind: Object,
    image: &NetnsImage,
    index_of: &dyn Fn(&str) -> Option<u32>,
    existing: bool,
    adopted: &HashSet<String>,
) -> Result<Vec<Item>> {
    let stays = |dev: &str| dev == "lo" || adopted.contains(dev);
    let on_existing_lo = |dev: &str| existing && stays(dev);
    let mut items = Vec::new();
    match kind {
        Object::Address => {
            for rec in &image.addresses {
                let (msg, what) =
                    state::address_request(rec, index_of).map_err(CoreError::Refused)?;
                let undo = on_existing_lo(&rec.dev).then(|| {
                    Request::change(
                        RouteNetlinkMessage::DelAddress(msg.clone()),
                        format!("removing an address from {}", rec.dev),
                    )
                });
                items.push((
                    Request::create(RouteNetlinkMessage::NewAddress(msg), what),
                    undo,
                ));
            }
        }
        Object::Route => {
            // A gateway must be reachable when its route is added: routes through one come
            // after the others (the dump lists a default route before the link route that
            // reaches its gateway).
            let mut routes: Vec<&netcr_image::v1::Route> = image.routes.iter().collect();
            routes.sort_by_key(|r| state::route_has_gateway(r));
            for rec in routes {
                let (msg, what) =
                    state::route_request(rec, index_of).map_err(CoreError::Refused)?;
                let undo = (existing && !goes_with_created_links(rec, &stays)).then(|| {
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
        }
        Object::Rule => {
            // The kernel's default rules the namespace had deleted go first; their undo puts
            // them back.
            for rec in &image.netns.deleted_default_rules {
                let (msg, what) = state::rule_deletion(rec).map_err(CoreError::Refused)?;
                let undo = existing.then(|| {
                    Request::create(
                        RouteNetlinkMessage::NewRule(msg.clone()),
                        "putting a default rule back",
                    )
                });
                items.push((
                    Request::change(RouteNetlinkMessage::DelRule(msg), what),
                    undo,
                ));
            }
            for rec in &image.rules {
                let (msg, what) = state::rule_request(rec).map_err(CoreError::Refused)?;
                // Rules belong to the namespace, not to a link.
                let undo = existing.then(|| {
                    Request::change(RouteNetlinkMessage::DelRule(msg.clone()), "removing a rule")
                });
                items.push((
                    Request::create(RouteNetlinkMessage::NewRule(msg), what),
                    undo,
                ));
            }
        }
        Object::Neighbour => {
            for rec in &image.neighbours {
                let (msg, what) =
                    state::neighbour_request(rec, index_of).map_err(CoreError::Refused)?;
                let undo = on_existing_lo(&rec.dev).then(|| {
                    Request::change(
                        RouteNetlinkMessage::DelNeighbour(msg.clone()),
                        format!("removing a neighbour from {}", rec.dev),
                    )
                });
                items.push((
                    Request::create(RouteNetlinkMessage::NewNeighbour(msg), what),
                    undo,
                ));
            }
        }
        Object::Altname => {
            for link in &image.links {
                let Some(index) = index_of(&link.name) else {
                    continue;
                };
                let Some(add) = crate::common::altname_request(link, index) else {
                    continue;
                };
                // The names go with a link the restore made; lo stays.
                let undo = on_existing_lo(&link.name)
                    .then(|| crate::common::altname_deletion(link, index))
                    .flatten();
                items.push((add, undo));
            }
        }
    }
    Ok(items)
}

/// Adds every object of `kind` to target `ns` in one pipelined batch and journals the undo
/// of each one added.
pub(crate) fn add(s: &mut Session<'_>, ns: usize, kind: Object) -> Result<()> {
    let target = &s.targets[ns];
    let index_of = |dev: &str| target.index.get(dev).copied();
    let items = requests(
        kind,
        s.image_ns(ns),
        &index_of,
        target.existing(),
        &target.adopted,
    )?;
    let adopting = s.opts.adopt != Adopt::Never;
    let (creations, undos): (Vec<_>, Vec<_>) = items.into_iter().unzip();
    for delete in undos.iter().flatten() {
        s.journal.intend(&Entry::ObjectAdded {
            ns,
            delete: delete.clone(),
        })?;
    }
    let contexts: Vec<String> = if adopting {
        creations.iter().map(|c| c.context.clone()).collect()
    } else {
        Vec::new()
    };
    // An IPv6 address with a finite lifetime gets its prefix route only when it is added or
    // changed on a device that is up: such addresses are changed again once links are up.
    let renewals: Vec<Option<Request>> = if kind == Object::Address {
        creations.iter().map(renewal).collect()
    } else {
        Vec::new()
    };
    let replies = s.send(Key::Target(ns), creations)?;
    let mut first_err = None;
    let mut added = 0;
    for (i, (reply, undo)) in replies.into_iter().zip(undos).enumerate() {
        if reply.is_ok() {
            if let Some(Some(renew)) = renewals.get(i) {
                s.targets[ns].renewals.push(renew.clone());
            }
        }
        match reply {
            // Adopting: the namespace has it already, or one of its own in its place.
            Err(e) if adopting && e.is_exists() => {
                let what = contexts[i].replacen("adding ", "", 1);
                s.targets[ns].report.already_present.push(what);
            }
            Ok(_) => {
                added += 1;
                if let Some(delete) = undo {
                    s.journal.push(Entry::ObjectAdded { ns, delete })?;
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(annotate(e));
    }
    let report = &mut s.targets[ns].report;
    match kind {
        Object::Address => report.addresses = added,
        Object::Route => report.routes = added,
        Object::Rule => report.rules = added,
        Object::Neighbour => report.neighbours = added,
        Object::Altname => {}
    }
    Ok(())
}

/// The change (`NLM_F_REPLACE`, the same lifetimes) that gives an IPv6 address with a finite
/// valid lifetime the prefix route the kernel did not make while its device was down; `None`
/// for any other address creation.
fn renewal(creation: &Request) -> Option<Request> {
    let RouteNetlinkMessage::NewAddress(msg) = &creation.message else {
        return None;
    };
    let finite = msg.attributes.iter().any(|a| {
        matches!(a, netlink_packet_route::address::AddressAttribute::CacheInfo(c)
            if c.ifa_valid != u32::MAX)
    });
    if msg.header.family != netlink_packet_route::AddressFamily::Inet6 || !finite {
        return None;
    }
    Some(Request {
        message: creation.message.clone(),
        flags: netcr_netlink::netlink_packet_core::NLM_F_REPLACE,
        context: creation.context.replacen("adding", "renewing", 1),
    })
}

/// Changes the addresses [`renewal`] names once their devices are up: the kernel then makes
/// their prefix routes (with the addresses' lifetimes).
pub(crate) fn renew_addresses(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let renewals = std::mem::take(&mut s.targets[ns].renewals);
    check(s.send(Key::Target(ns), renewals)?)
}

/// Whether a route goes away by itself when the restore's links are removed: it names at
/// least one device, and every device it names is one the restore creates (not one that
/// `stays`: lo, an adopted device).
fn goes_with_created_links(rec: &netcr_image::v1::Route, stays: &dyn Fn(&str) -> bool) -> bool {
    let devs: Vec<&str> = std::iter::once(rec.oif.as_str())
        .chain(rec.nexthop_devs.iter().map(String::as_str))
        .filter(|d| !d.is_empty())
        .collect();
    !devs.is_empty() && devs.iter().all(|d| !stays(d))
}

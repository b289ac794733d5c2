//! Dump: one socket per namespace, one dump per object type, references by name.

use std::collections::{BTreeSet, HashMap};

use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::{Connector, Kernel, Netns, Protocol, RtnlExt, Transport};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::AddressFamily;

use crate::bridge_family::BridgeFamily;
use crate::common;
use crate::driver::{driver_for, registered_kinds, DumpCx};
use crate::error::{CoreError, Result};
use crate::families::{self, Family};
use crate::state;

/// How a dump treats what it cannot record.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Leave out devices of unknown kinds (recorded in the image as skipped) instead of failing.
    pub skip_unknown: bool,
    /// State families netcr cannot keep yet to leave out, with what was found recorded in the
    /// image, instead of failing (see [`crate::families`]).
    pub leave_out: BTreeSet<Family>,
}

/// What the dump wants the user to know besides the image.
#[derive(Debug, Default, Clone)]
pub struct DumpReport {
    /// Warnings, one line each.
    pub warnings: Vec<String>,
}

/// Everything read from one namespace's kernel state.
struct Raw {
    links: Vec<LinkMessage>,
    addresses: Vec<netlink_packet_route::address::AddressMessage>,
    routes: Vec<netlink_packet_route::route::RouteMessage>,
    rules: Vec<netlink_packet_route::rule::RuleMessage>,
    neighbours: Vec<netlink_packet_route::neighbour::NeighbourMessage>,
    nexthops: Vec<netcr_netlink::nexthop::NexthopMessage>,
    /// nsid this namespace uses for each other dumped namespace (by image id) and the caller.
    nsid_of_netns: HashMap<i32, NsidTarget>,
    /// VLANs and forwarding entries, for the drivers that want them.
    bridge: BridgeFamily,
    /// Devices in namespaces netcr cannot name (a veth peer in a third namespace), read
    /// through the nsid this namespace gives theirs: (nsid, ifindex).
    foreign: HashMap<(i32, u32), LinkMessage>,
    /// Families found and left out on request.
    left_out: Vec<v1::LeftOut>,
    /// The nf_tables ruleset, as the kernel dumped it (empty when left out).
    nftables: Vec<netcr_netlink::nftables::NftMessage>,
    /// The xfrm states, policies and default policies, as the kernel dumped them (empty
    /// when left out or where the kernel lacks xfrm).
    xfrm: crate::xfrm::Dumped,
    /// Traffic control, as the kernel dumped it (empty when left out).
    tc: crate::tc::Dumped,
}

#[derive(Debug, Clone, Copy)]
enum NsidTarget {
    Netns(u32),
    Caller,
}

fn read_raw(rtnl: &mut dyn Transport) -> Result<Raw> {
    let mut raw = Raw {
        links: rtnl.dump_links()?,
        addresses: Vec::new(),
        routes: Vec::new(),
        rules: Vec::new(),
        neighbours: Vec::new(),
        nexthops: Vec::new(),
        nsid_of_netns: HashMap::new(),
        bridge: BridgeFamily::default(),
        foreign: HashMap::new(),
        left_out: Vec::new(),
        nftables: Vec::new(),
        xfrm: Default::default(),
        tc: Default::default(),
    };
    raw.bridge = BridgeFamily::read(rtnl, &raw.links)?;
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        raw.addresses.extend(rtnl.dump_addresses(family)?);
        raw.routes.extend(rtnl.dump_routes(family)?);
        raw.rules.extend(rtnl.dump_rules(family)?);
        raw.neighbours.extend(rtnl.dump_neighbours(family)?);
        raw.neighbours.extend(rtnl.dump_proxy_neighbours(family)?);
    }
    raw.nexthops = rtnl.dump_nexthops()?;
    Ok(raw)
}

/// Dumps `namespaces` (in order; image ids 0, 1, ...) as seen from `caller`, the namespace
/// netcr runs in, which is where external devices are looked up for their names.
pub fn dump(
    namespaces: &[Netns],
    caller: &Netns,
    options: &DumpOptions,
) -> Result<(Image, DumpReport)> {
    dump_with(namespaces, caller, options, &mut Kernel)
}

/// [`dump`] with sockets from `connector`.
pub fn dump_with(
    namespaces: &[Netns],
    caller: &Netns,
    options: &DumpOptions,
    connector: &mut dyn Connector,
) -> Result<(Image, DumpReport)> {
    let mut report = DumpReport::default();
    let mut caller_rtnl = connector.connect(caller, "caller")?;
    let caller_links = caller_rtnl.dump_links()?;
    let caller_by_index: HashMap<u32, &LinkMessage> =
        caller_links.iter().map(|l| (l.header.index, l)).collect();

    let mut raws = Vec::with_capacity(namespaces.len());
    for ns in namespaces {
        let mut rtnl = connector.connect(ns, ns.label())?;
        let mut raw = read_raw(&mut *rtnl)?;
        // Each namespace numbers the others itself: record its view of each.
        for (id, other) in namespaces.iter().enumerate() {
            if !other.same_as(ns)? {
                if let Some(nsid) = rtnl.get_nsid(other)? {
                    raw.nsid_of_netns.insert(nsid, NsidTarget::Netns(id as u32));
                }
            }
        }
        if !caller.same_as(ns)? {
            if let Some(nsid) = rtnl.get_nsid(caller)? {
                raw.nsid_of_netns.insert(nsid, NsidTarget::Caller);
            }
        }
        // A lower device or peer in a namespace netcr cannot name: read it through its nsid,
        // so that its settings (a veth peer's MTU and MAC) are kept all the same.
        let foreign: Vec<(i32, u32)> = raw
            .links
            .iter()
            .filter_map(|l| {
                let p = common::parse(l);
                match (p.lower_nsid, p.lower_index) {
                    (Some(nsid), Some(index)) if !raw.nsid_of_netns.contains_key(&nsid) => {
                        Some((nsid, index))
                    }
                    _ => None,
                }
            })
            .collect();
        for (nsid, index) in foreign {
            if let Some(link) = rtnl.get_link_in(nsid, index)? {
                raw.foreign.insert((nsid, index), link);
            }
        }
        if !options.leave_out.contains(&Family::Tc) {
            raw.tc = crate::tc::read(&mut *rtnl)?;
        }
        drop(rtnl);
        let mut probe =
            families::Probe::new(ns, ns.label(), &raw.links, &raw.neighbours, &mut *connector);
        let started = std::time::Instant::now();
        raw.left_out = families::check(&mut probe, &options.leave_out)?;
        log::debug!(
            "netns \"{}\": family check in {:?}",
            ns.label(),
            started.elapsed()
        );
        if !options.leave_out.contains(&Family::Nftables) {
            raw.nftables = read_nftables(ns, &mut *connector)?;
        }
        if !options.leave_out.contains(&Family::Xfrm) {
            raw.xfrm = read_xfrm(ns, &mut *connector)?;
        }
        raws.push(raw);
    }

    let by_index: Vec<HashMap<u32, &LinkMessage>> = raws
        .iter()
        .map(|r| r.links.iter().map(|l| (l.header.index, l)).collect())
        .collect();

    let mut image = Image {
        inventory: v1::Inventory {
            netcr_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            netns: Vec::new(),
        },
        namespaces: Vec::new(),
    };

    for (id, (ns, raw)) in namespaces.iter().zip(&raws).enumerate() {
        let id = id as u32;
        let label = ns.label().to_string();
        image.inventory.netns.push(v1::NetnsInfo {
            id,
            label: label.clone(),
        });
        let mut out = NetnsImage {
            netns: v1::Netns {
                id,
                label: label.clone(),
                sysctls: crate::sysctl::read_netns(ns)?,
                left_out: raw.left_out.clone(),
                deleted_default_rules: state::deleted_default_rules(
                    &raw.rules,
                    !state::l3mdev_tables(&raw.links).is_empty(),
                )
                .iter()
                .map(|r| v1::Rule {
                    message: state::encode(r),
                })
                .collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        for l in &raw.left_out {
            report.warnings.push(format!(
                "netns \"{label}\": left out {} (--leave-out {}): {}",
                Family::from_name(&l.family)
                    .map(|f| f.info().title)
                    .unwrap_or(l.family.as_str()),
                l.family,
                l.found.join(", ")
            ));
        }
        let mut nsids: Vec<_> = raw.nsid_of_netns.iter().collect();
        nsids.sort_by_key(|(nsid, _)| **nsid);
        for (nsid, target) in nsids {
            out.netns.nsids.push(v1::NsidEntry {
                nsid: *nsid,
                peer: Some(match target {
                    NsidTarget::Netns(n) => v1::nsid_entry::Peer::Netns(*n),
                    NsidTarget::Caller => v1::nsid_entry::Peer::Caller(true),
                }),
            });
        }

        let names = state::names_by_index(&raw.links);
        let mut kept: HashMap<u32, v1::Link> = HashMap::new();
        for link in &raw.links {
            let parsed = common::parse(link);
            if common::is_kernel_fallback(parsed.name, &parsed.kind) {
                log::info!(
                    "netns \"{label}\": skipping {} ({}), which the kernel makes by itself",
                    parsed.name,
                    parsed.kind
                );
                continue;
            }
            let mut rec = common::to_image(link);
            let loopback = common::is_loopback(&rec);
            let driver = if loopback {
                None
            } else {
                driver_for(&parsed.kind)
            };
            if !loopback && driver.is_none() {
                let kind = if parsed.kind.is_empty() {
                    "(none: a physical or unnamed-kind device)".to_string()
                } else {
                    parsed.kind.clone()
                };
                if options.skip_unknown {
                    let reason = format!("kind \"{kind}\" is not supported");
                    report.warnings.push(format!(
                        "netns \"{label}\": left out {} ({reason})",
                        parsed.name
                    ));
                    out.netns.skipped.push(v1::SkippedDevice {
                        name: parsed.name.to_string(),
                        kind,
                        reason,
                    });
                    continue;
                }
                return Err(CoreError::UnknownKind {
                    netns: label,
                    device: parsed.name.to_string(),
                    kind,
                    supported: registered_kinds().join(", "),
                });
            }

            // The lower device (IFLA_LINK), resolved to a name in the namespace holding it.
            let mut lower_msg: Option<&LinkMessage> = None;
            let mut lower_external = false;
            if let Some(index) = parsed.lower_index {
                let (reference, msg) = match parsed.lower_nsid {
                    None => {
                        let msg = by_index[id as usize].get(&index).copied();
                        (local_ref(id, msg, index), msg)
                    }
                    Some(nsid) => match raw.nsid_of_netns.get(&nsid) {
                        Some(NsidTarget::Netns(other)) => {
                            let msg = by_index[*other as usize].get(&index).copied();
                            (local_ref(*other, msg, index), msg)
                        }
                        Some(NsidTarget::Caller) => {
                            lower_external = true;
                            let msg = caller_by_index.get(&index).copied();
                            (external_ref(msg, index, nsid, true), msg)
                        }
                        None => {
                            lower_external = true;
                            let msg = raw.foreign.get(&(nsid, index));
                            (external_ref(None, index, nsid, false), msg)
                        }
                    },
                };
                rec.lower = Some(reference);
                lower_msg = msg;
            }
            let name_of = |i: u32| names.get(&i).cloned();
            let cx = DumpCx {
                lower: lower_msg,
                lower_is_external: lower_external,
                name_of: &name_of,
                bridge: raw.bridge.link(link.header.index),
                fdb: raw.bridge.fdb(link.header.index),
            };
            let driver_err = |kind: &str, e: crate::DriverError| CoreError::Driver {
                netns: label.clone(),
                kind: kind.to_string(),
                device: parsed.name.to_string(),
                message: e.0,
            };
            if let Some(master) = parsed.master_index {
                let master_msg = by_index[id as usize].get(&master).copied();
                rec.master = Some(local_ref(id, master_msg, master));
                // The master's kind owns the port's settings.
                if let Some(master_driver) =
                    master_msg.and_then(|m| driver_for(&common::parse(m).kind))
                {
                    rec.port_config = master_driver
                        .dump_port(link, &cx)
                        .map_err(|e| driver_err(master_driver.kind(), e))?;
                }
            }
            if let Some(driver) = driver {
                rec.config = driver
                    .dump(link, &cx)
                    .map_err(|e| driver_err(&parsed.kind, e))?;
            }
            kept.insert(link.header.index, rec);
        }
        // Keep dump order (ifindex order).
        out.links = raw
            .links
            .iter()
            .filter_map(|l| kept.remove(&l.header.index))
            .collect();
        crate::sysctl::read_stable_secrets(ns, &mut out.links)?;
        let link_by_name: HashMap<&str, &v1::Link> =
            out.links.iter().map(|l| (l.name.as_str(), l)).collect();
        let name_of = |i: u32| names.get(&i).cloned();

        let nexthops = crate::nexthops::keep(&raw.nexthops, &name_of, &|dev| {
            link_by_name.contains_key(dev)
        });
        for id in &nexthops.left_out {
            report.warnings.push(format!(
                "netns \"{label}\": left out nexthop {id}, over a device that was left out"
            ));
        }
        out.nexthops = nexthops.records;

        let nftables = crate::nftables::keep(&raw.nftables, &name_of).map_err(|detail| {
            netcr_netlink::Error::Decode {
                context: "dumping nf_tables".into(),
                netns: label.clone(),
                detail,
            }
        })?;
        for w in nftables.warnings {
            report.warnings.push(format!("netns \"{label}\": {w}"));
        }
        out.nftables = nftables.records;

        let (states, policies, defaults) = &raw.xfrm;
        out.xfrm = crate::xfrm::keep(states, policies, *defaults, &name_of)
            .map_err(|e| CoreError::Refused(format!("netns \"{label}\": {e}")))?
            .records;
        let tc = crate::tc::keep(&raw.tc, &name_of, &|dev| link_by_name.contains_key(dev));
        if !tc.refused.is_empty() {
            return Err(CoreError::Unkept {
                netns: label,
                found: vec![families::Found::none(Family::Tc).with("object", "objects", tc.refused)],
            });
        }
        for what in tc.left_out {
            report.warnings.push(format!(
                "netns \"{label}\": left out {what}, on a device that was left out"
            ));
        }
        out.tc = tc.records;

        let mut addresses = Vec::new();
        for addr in &raw.addresses {
            let Some(dev) = names.get(&addr.header.index) else {
                continue;
            };
            let Some(link) = link_by_name.get(dev.as_str()) else {
                continue;
            };
            if !state::address_is_kernel_made(addr, link) {
                addresses.push((addr, dev));
            }
        }
        out.addresses = state::in_creation_order(addresses);
        let derived = state::Derived::new(&raw.addresses, state::l3mdev_tables(&raw.links));
        for route in &raw.routes {
            if state::route_is_kernel_made(route, &derived) {
                continue;
            }
            let rec = state::route_record(route, &name_of);
            if let Some(id) = crate::nexthops::route_nexthop_id(route) {
                if nexthops.left_out.contains(&id) {
                    report.warnings.push(format!(
                        "netns \"{label}\": left out a route over nexthop {id}, which was left out"
                    ));
                    continue;
                }
            }
            // A device index the link dump does not name (a device made after it, under
            // churn) would be stored as no device at all: leave such a route out too.
            let devs_kept = crate::validate::route_devices_match(&rec).is_ok()
                && [&rec.oif, &rec.iif]
                    .into_iter()
                    .chain(rec.nexthop_devs.iter())
                    .all(|d| d.is_empty() || link_by_name.contains_key(d.as_str()));
            // The kernel keeps no unicast route over a device that is down: one here was
            // added after the link dump saw the device down (it changed during the dump), and
            // could not be restored over the device as the image has it.
            let up = |d: &String| {
                link_by_name
                    .get(d.as_str())
                    .is_some_and(|l| l.flags & 1 != 0)
            };
            let over_down = route.header.kind == netlink_packet_route::route::RouteType::Unicast
                && ((!rec.oif.is_empty() && !up(&rec.oif))
                    || (!rec.nexthop_devs.is_empty() && !rec.nexthop_devs.iter().any(up)));
            if devs_kept && over_down {
                report.warnings.push(format!(
                    "netns \"{label}\": left out a route over a device that went down or came up during the dump"
                ));
            } else if devs_kept {
                out.routes.push(rec);
            } else {
                report.warnings.push(format!(
                    "netns \"{label}\": left out a route over a device that was left out"
                ));
            }
        }
        for rule in &raw.rules {
            if !state::rule_is_kernel_made(rule) {
                out.rules.push(v1::Rule {
                    message: state::encode(rule),
                });
            }
        }
        let broadcasts = state::broadcast_addresses(&raw.routes);
        for neigh in &raw.neighbours {
            let Some(dev) = names.get(&neigh.header.ifindex) else {
                continue;
            };
            let Some(link) = link_by_name.get(dev.as_str()) else {
                continue;
            };
            if state::neighbour_is_kept(neigh, link, &broadcasts) {
                out.neighbours.push(v1::Neighbour {
                    dev: dev.clone(),
                    message: state::encode(neigh),
                });
            }
        }
        image.namespaces.push(out);
    }
    Ok((image, report))
}

/// The namespace's nf_tables ruleset (none where the kernel lacks nf_tables or
/// NETLINK_NETFILTER).
fn read_nftables(
    ns: &Netns,
    connector: &mut dyn Connector,
) -> Result<Vec<netcr_netlink::nftables::NftMessage>> {
    let mut socket = match connector.connect_raw(ns, Protocol::Netfilter, ns.label()) {
        Ok(socket) => socket,
        Err(e) if e.is_unsupported() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(netcr_netlink::nftables::dump_ruleset(&mut *socket)?.unwrap_or_default())
}

/// The namespace's xfrm states, policies and default policies (none where the kernel lacks
/// NETLINK_XFRM).
fn read_xfrm(ns: &Netns, connector: &mut dyn Connector) -> Result<crate::xfrm::Dumped> {
    let mut socket = match connector.connect_raw(ns, Protocol::Xfrm, ns.label()) {
        Ok(socket) => socket,
        Err(e) if e.is_unsupported() => return Ok(Default::default()),
        Err(e) => return Err(e.into()),
    };
    Ok(crate::xfrm::dump(&mut *socket)?)
}

fn local_ref(netns: u32, msg: Option<&LinkMessage>, index: u32) -> v1::LinkRef {
    let name = msg
        .map(|m| common::parse(m).name.to_string())
        .unwrap_or_else(|| format!("if{index}"));
    v1::LinkRef {
        target: Some(v1::link_ref::Target::Local(v1::LocalRef { netns, name })),
    }
}

fn external_ref(msg: Option<&LinkMessage>, index: u32, nsid: i32, in_caller: bool) -> v1::LinkRef {
    v1::LinkRef {
        target: Some(v1::link_ref::Target::External(v1::ExternalRef {
            name_hint: msg
                .map(|m| common::parse(m).name.to_string())
                .unwrap_or_default(),
            ifindex_hint: index,
            nsid,
            in_caller,
        })),
    }
}

//! An image in readable form, as CRIU's `crit show` gives its images: for `netcr show` and
//! for the demo, which shows the image it made.

use std::path::Path;

use netcr_core::common::mac_text;
use netcr_core::state;
use netcr_image::{v1, Image, NetnsImage};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use serde_json::{json, Value};

use super::AppError;

/// How [`render`] presents an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Lines close to `ip link`, `ip addr`, `ip route`.
    Text,
    /// One JSON document, for scripts.
    Json,
}

fn reference(r: &Option<v1::LinkRef>) -> Value {
    match r.as_ref().and_then(|r| r.target.as_ref()) {
        None => Value::Null,
        Some(v1::link_ref::Target::Local(l)) => json!({"netns": l.netns, "name": l.name}),
        Some(v1::link_ref::Target::External(e)) => json!({
            "external": true,
            "name_at_dump": e.name_hint,
            "ifindex_at_dump": e.ifindex_hint,
            "in_caller_netns": e.in_caller,
        }),
    }
}

fn reference_text(r: &Option<v1::LinkRef>) -> Option<String> {
    match r.as_ref().and_then(|r| r.target.as_ref()) {
        None => None,
        Some(v1::link_ref::Target::Local(l)) => Some(l.name.clone()),
        Some(v1::link_ref::Target::External(e)) => Some(format!(
            "outside ({})",
            if e.name_hint.is_empty() {
                format!("if{}", e.ifindex_hint)
            } else {
                e.name_hint.clone()
            }
        )),
    }
}

/// One link as JSON, every field the image holds (`netcr show --json`'s words).
pub(super) fn link_json(link: &v1::Link) -> Value {
    let settings = netcr_core::driver_for(&link.kind)
        .map(|d| match d.describe(&link.config) {
            Ok(kv) => Value::Object(kv.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
            Err(e) => json!({"error": e.to_string()}),
        })
        .unwrap_or(Value::Null);
    json!({
        "name": link.name,
        "ifindex": link.ifindex,
        "kind": if link.kind.is_empty() { "loopback" } else { link.kind.as_str() },
        "mtu": link.mtu,
        "address": mac_text(&link.address),
        "flags": format!("{:#x}", link.flags),
        "up": link.flags & 1 != 0,
        "txqlen": link.txqlen,
        "alias": link.alias,
        "group": link.group,
        "lower": reference(&link.lower),
        "master": reference(&link.master),
        "settings": settings,
        "altnames": link.altnames,
        "broadcast": mac_text(&link.broadcast),
        "protodown": link.proto_down,
        "protodown_reason": link.proto_down_reason,
        "link_mode": link.link_mode,
        "gso_max_size": link.gso_max_size,
        "gso_max_segs": link.gso_max_segs,
        "gro_max_size": link.gro_max_size,
        "gso_ipv4_max_size": link.gso_ipv4_max_size,
        "gro_ipv4_max_size": link.gro_ipv4_max_size,
        // Whether it has one; never the secret itself.
        "ipv6_stable_secret": !link.ipv6_stable_secret.is_empty(),
        "unknown_attributes": link.extra.len(),
    })
}

fn address_text(rec: &v1::Address) -> String {
    match state::decode::<AddressMessage>(&rec.message, "address") {
        Ok(msg) => {
            let ip = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let ip = ip.or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            let peer = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(p) if Some(*p) != ip => Some(format!(" peer {p}")),
                _ => None,
            });
            format!(
                "{}/{}{} dev {}",
                ip.map(|i| i.to_string()).unwrap_or_default(),
                msg.header.prefix_len,
                peer.unwrap_or_default(),
                rec.dev
            )
        }
        Err(e) => e,
    }
}

fn route_text(rec: &v1::Route) -> String {
    match state::decode::<RouteMessage>(&rec.message, "route") {
        Ok(msg) => state::describe_route(&msg, rec),
        Err(e) => e,
    }
}

fn rule_text(rec: &v1::Rule) -> String {
    match state::decode::<RuleMessage>(&rec.message, "rule") {
        Ok(msg) => format!("{:?}", msg.attributes),
        Err(e) => e,
    }
}

fn neighbour_text(rec: &v1::Neighbour) -> String {
    match state::decode::<NeighbourMessage>(&rec.message, "neighbour") {
        Ok(msg) => {
            let dst = msg.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(ip.to_string()),
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                    Some(ip.to_string())
                }
                _ => None,
            });
            let lladdr = msg.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => Some(mac_text(l)),
                _ => None,
            });
            let proxy = msg
                .header
                .flags
                .contains(netlink_packet_route::neighbour::NeighbourFlags::Proxy);
            if proxy {
                return format!("proxy {} dev {}", dst.unwrap_or_default(), rec.dev);
            }
            format!(
                "{} lladdr {} dev {} {}",
                dst.unwrap_or_default(),
                lladdr.unwrap_or_default(),
                rec.dev,
                msg.header.state
            )
        }
        Err(e) => e,
    }
}

/// Reads and validates the image in `dir` and renders it ([`render`]).
pub fn show(dir: &Path, format: Format) -> Result<String, AppError> {
    let image = super::read_image(dir)?;
    render(&image, dir, format)
}

/// Renders `image` (read from `dir`, which the text names), every line newline-terminated.
pub fn render(image: &Image, dir: &Path, format: Format) -> Result<String, AppError> {
    if format == Format::Json {
        let namespaces: Vec<Value> = image
            .namespaces
            .iter()
            .map(|n| {
                json!({
                    "id": n.netns.id,
                    "label": n.netns.label,
                    "links": n.links.iter().map(link_json).collect::<Vec<_>>(),
                    "addresses": n.addresses.iter().map(address_text).collect::<Vec<_>>(),
                    "routes": n.routes.iter().map(route_text).collect::<Vec<_>>(),
                    "rules": n.rules.iter().map(rule_text).collect::<Vec<_>>(),
                    "neighbours": n.neighbours.iter().map(neighbour_text).collect::<Vec<_>>(),
                    "nexthops": n.nexthops.iter().map(netcr_core::nexthops::describe_record).collect::<Vec<_>>(),
                    "nftables": nftables_json(n),
                    "xfrm": xfrm_json(n),
                    "tc": netcr_core::tc::by_device(&n.tc).iter().map(|d| json!({
                        "dev": d.dev,
                        "qdiscs": d.qdiscs,
                        "classes": d.classes,
                        "filters": d.filters,
                        "mirred_to": d.mirred_to,
                    })).collect::<Vec<_>>(),
                    "skipped": n.netns.skipped.iter().map(|s| json!({"name": s.name, "kind": s.kind, "reason": s.reason})).collect::<Vec<_>>(),
                    "deleted_default_rules": n.netns.deleted_default_rules.iter().map(rule_text).collect::<Vec<_>>(),
                    "left_out": n.netns.left_out.iter().map(|l| json!({"family": l.family, "count": l.count, "found": l.found})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({
            "netcr_version": image.inventory.netcr_version,
            "kernel_release": image.inventory.kernel_release,
            "created_unix": image.inventory.created_unix,
            "namespaces": namespaces,
        });
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(&format!(
        "image {} (netcr {}, kernel {})",
        dir.display(),
        image.inventory.netcr_version,
        image.inventory.kernel_release
    ));
    for n in &image.namespaces {
        line(&format!("netns {} \"{}\"", n.netns.id, n.netns.label));
        for link in &n.links {
            line(&link_text(link));
        }
        for a in &n.addresses {
            line(&format!("  addr {}", address_text(a)));
        }
        for nh in &n.nexthops {
            line(&format!(
                "  nexthop {}",
                netcr_core::nexthops::describe_record(nh)
            ));
        }
        for r in &n.routes {
            line(&format!("  route {}", route_text(r)));
        }
        for r in &n.rules {
            line(&format!("  rule {}", rule_text(r)));
        }
        for nb in &n.neighbours {
            line(&format!("  neigh {}", neighbour_text(nb)));
        }
        for text in nftables_text(n) {
            line(&text);
        }
        for d in netcr_core::tc::by_device(&n.tc) {
            let mut text = format!(
                "  tc dev {}: qdisc {}; {} classes, {} filters",
                d.dev,
                d.qdiscs.join(", qdisc "),
                d.classes,
                d.filters
            );
            if !d.mirred_to.is_empty() {
                text.push_str(&format!(" (mirred to {})", d.mirred_to.join(", ")));
            }
            line(&text);
        }
        for text in xfrm_text(n) {
            line(&text);
        }
        for r in &n.netns.deleted_default_rules {
            line(&format!("  deleted default rule {}", rule_text(r)));
        }
        for s in &n.netns.skipped {
            line(&format!("  skipped {} ({}): {}", s.name, s.kind, s.reason));
        }
        for l in &n.netns.left_out {
            line(&format!("  {}", left_out_text(l)));
        }
    }
    Ok(out)
}

/// The firewall of a namespace as JSON: its tables with their chains, sets, objects and
/// flowtables.
fn nftables_json(n: &NetnsImage) -> Value {
    match netcr_core::nftables::summary(n) {
        Ok(tables) => Value::Array(
            tables
                .iter()
                .map(|t| {
                    json!({
                        "family": t.family,
                        "name": t.name,
                        "flags": t.flags,
                        "chains": t.chains.iter().map(|c| json!({
                            "name": c.name,
                            "type": c.kind,
                            "hook": c.hook,
                            "priority": c.priority,
                            "policy": c.policy,
                            "devices": c.devices,
                            "bound_to_a_rule": c.bound,
                            "rules": c.rules,
                        })).collect::<Vec<_>>(),
                        "sets": t.sets.iter().map(|s| json!({
                            "name": s.name,
                            "map": s.map,
                            "flags": s.flags,
                            "elements": s.elements,
                        })).collect::<Vec<_>>(),
                        "objects": t.objects,
                        "flowtables": t.flowtables,
                    })
                })
                .collect(),
        ),
        Err(e) => json!({ "error": e }),
    }
}

/// The firewall of a namespace, a line per table, chain, set, object and flowtable:
/// `nftables table inet filt`, `  chain input type filter hook input priority 0 policy
/// drop: 6 rules`, `  set s4 (interval): 2 elements`.
fn nftables_text(n: &NetnsImage) -> Vec<String> {
    let tables = match netcr_core::nftables::summary(n) {
        Ok(tables) => tables,
        Err(e) => return vec![format!("  nftables: {e}")],
    };
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = Vec::new();
    for t in &tables {
        let mut head = format!("  nftables table {} {}", t.family, t.name);
        if !t.flags.is_empty() {
            head.push_str(&format!(" flags {}", t.flags.join(",")));
        }
        out.push(head);
        for c in &t.chains {
            let mut text = format!("    chain {}", c.name);
            if let Some(kind) = &c.kind {
                text.push_str(&format!(" type {kind}"));
            }
            if let Some(hook) = &c.hook {
                text.push_str(&format!(" hook {hook}"));
            }
            if !c.devices.is_empty() {
                let mut devices = c.devices.clone();
                devices.dedup();
                text.push_str(&format!(" devices {}", devices.join(",")));
            }
            if let Some(p) = c.priority {
                text.push_str(&format!(" priority {p}"));
            }
            if let Some(policy) = &c.policy {
                text.push_str(&format!(" policy {policy}"));
            }
            if c.bound {
                text.push_str(" (bound to a rule)");
            }
            out.push(format!("{text}: {}", plural(c.rules, "rule", "rules")));
        }
        for s in &t.sets {
            let mut text = format!("    {} {}", if s.map { "map" } else { "set" }, s.name);
            if !s.flags.is_empty() {
                text.push_str(&format!(" ({})", s.flags.join(", ")));
            }
            out.push(format!(
                "{text}: {}",
                plural(s.elements, "element", "elements")
            ));
        }
        for o in &t.objects {
            out.push(format!("    {o}"));
        }
        for f in &t.flowtables {
            out.push(format!("    flowtable {f}"));
        }
    }
    out
}

/// A family the dump left out on request, with what it found:
/// `left out tc (--leave-out tc): 2 found: qdisc tbf on zxa, qdisc ingress on zxb`.
/// The namespace's IPsec objects as JSON: what each is and its settings, never a key.
fn xfrm_json(n: &NetnsImage) -> Value {
    Value::Array(
        n.xfrm
            .iter()
            .map(|rec| match netcr_core::xfrm::details(rec) {
                Ok(d) => {
                    let mut o = serde_json::Map::new();
                    o.insert("kind".into(), json!(d.kind));
                    o.insert("object".into(), json!(d.object));
                    for (name, value) in d.fields {
                        match o.get_mut(name) {
                            Some(Value::Array(values)) => values.push(json!(value)),
                            _ if name == "tmpl" => {
                                o.insert(name.into(), json!([value]));
                            }
                            _ => {
                                o.insert(name.into(), json!(value));
                            }
                        }
                    }
                    Value::Object(o)
                }
                Err(e) => json!({ "error": e }),
            })
            .collect(),
    )
}

/// One line per IPsec object: `  xfrm state esp spi 0x00000100 10.0.0.1 -> 10.0.0.2
/// transport reqid 1 enc cbc(aes)`; never a key.
fn xfrm_text(n: &NetnsImage) -> Vec<String> {
    n.xfrm
        .iter()
        .map(|rec| match netcr_core::xfrm::details(rec) {
            Ok(d) => {
                let mut out = format!("  xfrm {} {}", d.kind, d.object);
                for (name, value) in d.fields {
                    out.push_str(&format!(" {name} {value}"));
                }
                out
            }
            Err(e) => format!("  xfrm: {e}"),
        })
        .collect()
}

fn left_out_text(l: &v1::LeftOut) -> String {
    format!(
        "left out {} (--leave-out {}): {} found: {}",
        netcr_core::Family::from_name(&l.family)
            .map(|f| f.info().title)
            .unwrap_or(l.family.as_str()),
        l.family,
        l.count,
        l.found.join(", ")
    )
}

/// One link, as `ip link` would put it, with its driver's settings.
fn link_text(link: &v1::Link) -> String {
    let mut line = format!(
        "  {}: {} {} mtu {} {}",
        link.ifindex,
        link.name,
        if link.kind.is_empty() {
            "loopback"
        } else {
            &link.kind
        },
        link.mtu,
        if link.flags & 1 != 0 { "UP" } else { "DOWN" }
    );
    if !link.address.is_empty() {
        line.push_str(&format!(" link/ether {}", mac_text(&link.address)));
    }
    line.push_str(&format!(" txqlen {}", link.txqlen));
    if let Some(lower) = reference_text(&link.lower) {
        line.push_str(&format!(" lower {lower}"));
    }
    if let Some(master) = reference_text(&link.master) {
        line.push_str(&format!(" master {master}"));
    }
    if !link.alias.is_empty() {
        line.push_str(&format!(" alias {:?}", link.alias));
    }
    if let Some(b) = netcr_core::common::custom_broadcast(link) {
        line.push_str(&format!(" brd {}", mac_text(b)));
    }
    for a in &link.altnames {
        line.push_str(&format!(" altname {a}"));
    }
    if link.proto_down {
        line.push_str(" protodown");
    }
    if link.proto_down_reason != 0 {
        line.push_str(&format!(" protodown_reason {:#x}", link.proto_down_reason));
    }
    if link.link_mode == 1 {
        line.push_str(" mode dormant");
    }
    for (name, value) in netcr_core::common::offload_limits(link) {
        line.push_str(&format!(" {name} {value}"));
    }
    if let Some(d) = netcr_core::driver_for(&link.kind) {
        if let Ok(kv) = d.describe(&link.config) {
            for (k, v) in kv {
                line.push_str(&format!(" {k} {v}"));
            }
        }
    }
    line
}

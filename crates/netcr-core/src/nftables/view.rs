//! A firewall in readable form, for `netcr show`: tables, their chains (hook, priority,
//! policy, how many rules), sets and maps (how many elements), objects and flowtables.

use netcr_image::NetnsImage;
use netcr_netlink::nftables::{
    chain, common, elem, family_name, find, find_be32, flowtable, hook, set, table,
};

use super::{elements, object_type_name, Kind, Object};

/// A table, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    /// Its family: inet, ip, ip6, arp, bridge, netdev.
    pub family: String,
    /// Its name.
    pub name: String,
    /// Its flags by name (dormant, owner, persist).
    pub flags: Vec<&'static str>,
    /// Its chains, in order.
    pub chains: Vec<ChainView>,
    /// Its sets and maps.
    pub sets: Vec<SetView>,
    /// Its stateful objects: `counter c1`, `quota q1`.
    pub objects: Vec<String>,
    /// Its flowtables: `ft hook ingress priority 0 devices va, vb`.
    pub flowtables: Vec<String>,
}

/// A chain, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainView {
    /// Its name.
    pub name: String,
    /// A base chain's type ("filter", "nat", "route").
    pub kind: Option<String>,
    /// A base chain's hook, by name.
    pub hook: Option<String>,
    /// A base chain's priority.
    pub priority: Option<i32>,
    /// A base chain's policy ("accept", "drop").
    pub policy: Option<String>,
    /// A netdev base chain's devices.
    pub devices: Vec<String>,
    /// Whether it is bound to a rule (an anonymous `jump { ... }`).
    pub bound: bool,
    /// How many rules it holds.
    pub rules: usize,
}

/// A set or map, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetView {
    /// Its name (`__set0` for an anonymous one).
    pub name: String,
    /// Whether it is a map (verdict, data or object map).
    pub map: bool,
    /// Its flags by name (anonymous, constant, interval, timeout, dynamic, concat, ...).
    pub flags: Vec<&'static str>,
    /// How many elements it holds (an interval counts once, not as start and end).
    pub elements: usize,
}

/// The name of hook `n` in `family`.
fn hook_name(family: u8, n: u32) -> String {
    let names: &[&str] = match family {
        3 => &["input", "output", "forward"],
        5 => &["ingress", "egress"],
        _ => &[
            "prerouting",
            "input",
            "forward",
            "output",
            "postrouting",
            "ingress",
        ],
    };
    names
        .get(n as usize)
        .map_or_else(|| format!("hook {n}"), |s| s.to_string())
}

fn flag_names(value: u32, names: &[(u32, &'static str)]) -> Vec<&'static str> {
    names
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// A hook's devices: one (`NFTA_HOOK_DEV`) or a list.
fn devices(
    hook_attrs: &[netcr_netlink::nftables::Attr],
    list_id: u16,
    one_id: Option<u16>,
) -> Vec<String> {
    let mut out: Vec<String> = one_id
        .and_then(|id| find(hook_attrs, id))
        .and_then(|d| d.as_str().ok())
        .map(str::to_string)
        .into_iter()
        .collect();
    if let Some(list) = find(hook_attrs, list_id).and_then(|l| l.children().ok()) {
        out.extend(
            list.iter()
                .filter(|d| d.id() == common::DEVICE_NAME)
                .filter_map(|d| d.as_str().ok().map(str::to_string)),
        );
    }
    out
}

fn chain_view(o: &Object) -> ChainView {
    let mut view = ChainView {
        name: o.name().unwrap_or("?").to_string(),
        kind: o
            .attr(chain::TYPE)
            .and_then(|a| a.as_str().ok())
            .map(str::to_string),
        bound: find_be32(&o.attrs, chain::FLAGS).unwrap_or(0) & chain::F_BINDING != 0,
        ..Default::default()
    };
    if let Some(h) = o.attr(chain::HOOK).and_then(|h| h.children().ok()) {
        view.hook = find_be32(&h, hook::HOOKNUM).map(|n| hook_name(o.family, n));
        view.priority = find_be32(&h, hook::PRIORITY).map(|p| p as i32);
        view.devices = devices(&h, hook::DEVS, Some(hook::DEV));
    }
    view.policy = find_be32(&o.attrs, chain::POLICY).map(|p| match p {
        0 => "drop".to_string(),
        1 => "accept".to_string(),
        other => other.to_string(),
    });
    view
}

fn set_view(o: &Object) -> SetView {
    let flags = find_be32(&o.attrs, set::FLAGS).unwrap_or(0);
    SetView {
        name: o.name().unwrap_or("?").to_string(),
        map: flags & (set::F_MAP | set::F_OBJECT) != 0,
        flags: flag_names(
            flags,
            &[
                (set::F_ANONYMOUS, "anonymous"),
                (set::F_CONSTANT, "constant"),
                (set::F_INTERVAL, "interval"),
                (set::F_TIMEOUT, "timeout"),
                (set::F_EVAL, "dynamic"),
                (set::F_CONCAT, "concat"),
            ],
        ),
        elements: 0,
    }
}

/// `NFT_SET_ELEM_INTERVAL_END`: the closing element of an interval.
const ELEM_INTERVAL_END: u32 = 1;

/// The firewall of `ns`, table by table.
pub fn summary(ns: &NetnsImage) -> Result<Vec<TableView>, String> {
    let objects: Vec<Object> = ns
        .nftables
        .iter()
        .map(Object::decode)
        .collect::<Result<_, _>>()?;
    let mut tables: Vec<TableView> = Vec::new();
    let find_table = |tables: &mut Vec<TableView>, o: &Object| -> Option<usize> {
        let family = family_name(o.family);
        let name = o.table().unwrap_or("");
        tables
            .iter()
            .position(|t| t.family == family && t.name == name)
    };
    for o in &objects {
        if o.kind == Kind::Table {
            tables.push(TableView {
                family: family_name(o.family).to_string(),
                name: o.name().unwrap_or("?").to_string(),
                flags: flag_names(
                    find_be32(&o.attrs, table::FLAGS).unwrap_or(0),
                    &[
                        (table::F_DORMANT, "dormant"),
                        (table::F_OWNER, "owner"),
                        (table::F_PERSIST, "persist"),
                    ],
                ),
                ..Default::default()
            });
            continue;
        }
        let Some(t) = find_table(&mut tables, o) else {
            continue;
        };
        let t = &mut tables[t];
        match o.kind {
            Kind::Chain => t.chains.push(chain_view(o)),
            Kind::Set => t.sets.push(set_view(o)),
            Kind::Object => t.objects.push(format!(
                "{} {}",
                object_type_name(o.object_type().unwrap_or(0)),
                o.name().unwrap_or("?")
            )),
            Kind::Flowtable => {
                let mut text = o.name().unwrap_or("?").to_string();
                if let Some(h) = o.attr(flowtable::HOOK).and_then(|h| h.children().ok()) {
                    if let Some(n) = find_be32(&h, 1) {
                        text.push_str(&format!(" hook {}", hook_name(5, n)));
                    }
                    if let Some(p) = find_be32(&h, 2) {
                        text.push_str(&format!(" priority {}", p as i32));
                    }
                    let devs = devices(&h, flowtable::HOOK_DEVS, None);
                    if !devs.is_empty() {
                        text.push_str(&format!(" devices {}", devs.join(", ")));
                    }
                }
                t.flowtables.push(text);
            }
            Kind::Elements => {
                let n = elements(o)?
                    .iter()
                    .filter(|e| find_be32(e, elem::FLAGS).unwrap_or(0) & ELEM_INTERVAL_END == 0)
                    .count();
                let name = o.name().unwrap_or("");
                if let Some(s) = t.sets.iter_mut().find(|s| s.name == name) {
                    s.elements += n;
                }
            }
            Kind::Rule => {
                let chain = o.chain().unwrap_or("");
                if let Some(c) = t.chains.iter_mut().find(|c| c.name == chain) {
                    c.rules += 1;
                }
            }
            Kind::Table => {}
        }
    }
    Ok(tables)
}

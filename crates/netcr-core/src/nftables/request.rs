//! The restore's transaction: every object of a namespace's firewall, in an order the kernel
//! takes in one batch (each table, then its chains, objects, flowtables, sets, elements and
//! rules; the rules of a chain bound to a rule before that rule), with counters zeroed
//! unless they are to be kept.

use std::collections::{HashMap, HashSet};

use netcr_image::NetnsImage;
use netcr_netlink::nftables::{
    self as nft, chain, common, delete_table, elem, family_name, obj, set, table, Attr,
};
use netcr_netlink::{RawMessage, Request};

use super::refs::{jump_targets, rule_label};
use super::{list_items, Expr, Kind, Object};

/// `NLM_F_CREATE`, `NLM_F_EXCL`, `NLM_F_APPEND`.
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_APPEND: u16 = 0x800;
/// `NFTA_SET_ID`: a set's id within a transaction, which NFT_MSG_NEWSET requires.
const SET_ID: u16 = 10;
/// `NFT_QUOTA_F_DEPLETED`: the kernel's state, refused in a request.
const QUOTA_F_DEPLETED: u32 = 2;

/// The transaction that restores a namespace's firewall.
#[derive(Debug, Default)]
pub struct Batch {
    /// The requests, in order.
    pub requests: Vec<Request<RawMessage>>,
    /// The tables it creates: (family, name).
    pub tables: Vec<(u8, String)>,
    /// What the user should know (an owned table comes back without its owner).
    pub warnings: Vec<String>,
}

/// The transaction that restores the firewall of `ns` (validated before); counters and a
/// quota's consumption as the image has them when `keep_counters`, zero otherwise.
pub fn requests(ns: &NetnsImage, keep_counters: bool) -> Result<Batch, String> {
    let mut by_table: HashMap<(u8, String), Vec<Object>> = HashMap::new();
    let mut order = Vec::new();
    for rec in &ns.nftables {
        let o = Object::decode(rec)?;
        let key = (o.family, o.table().unwrap_or("").to_string());
        if o.kind == Kind::Table {
            order.push(key.clone());
        }
        by_table.entry(key).or_default().push(o);
    }
    let mut batch = Batch::default();
    let mut set_id = 0u32;
    for key in order {
        let mut objects = by_table.remove(&key).unwrap_or_default();
        objects.sort_by_key(|o| o.kind);
        let rules: Vec<Object> = objects
            .iter()
            .filter(|o| o.kind == Kind::Rule)
            .cloned()
            .collect();
        for mut o in objects.into_iter().filter(|o| o.kind != Kind::Rule) {
            if o.kind == Kind::Table {
                if let Some(w) = unowned(&mut o)? {
                    batch.warnings.push(w);
                }
                batch.tables.push(key.clone());
            }
            reset_state(&mut o, keep_counters)?;
            if o.kind == Kind::Set {
                // The kernel takes no set without an id of the transaction's own.
                set_id += 1;
                o.attrs.push(Attr::be32(SET_ID, set_id));
            }
            let flags = match o.kind {
                Kind::Elements => NLM_F_CREATE,
                _ => NLM_F_CREATE | NLM_F_EXCL,
            };
            batch.requests.push(Request {
                message: o.message().to_raw(),
                flags,
                context: format!("adding {}", o.label()),
            });
        }
        for (n, mut rule) in rules_in_order(rules)? {
            let context = format!("adding {}", rule_label(&rule, n));
            reset_state(&mut rule, keep_counters)?;
            add_compat(&mut rule)?;
            batch.requests.push(Request {
                message: rule.message().to_raw(),
                flags: NLM_F_CREATE | NLM_F_APPEND,
                context,
            });
        }
    }
    Ok(batch)
}

/// The request that deletes a table the restore made, with all it holds.
pub fn table_deletion(family: u8, name: &str) -> Request<RawMessage> {
    Request::change(
        delete_table(family, name).to_raw(),
        format!("removing table {} {name}", family_name(family)),
    )
}

/// Rules in the order they can be added, each with its place in its chain (1, 2, ...):
/// chain by chain, but the rules of a chain bound to a rule (an anonymous `jump { ... }`)
/// before that rule, which binds it (the kernel takes no rule into a bound chain).
fn rules_in_order(rules: Vec<Object>) -> Result<Vec<(usize, Object)>, String> {
    let mut chains: Vec<String> = Vec::new();
    let mut of_chain: HashMap<String, Vec<(usize, Object)>> = HashMap::new();
    for rule in rules {
        let chain = rule.chain().unwrap_or("").to_string();
        let list = of_chain.entry(chain.clone()).or_insert_with(|| {
            chains.push(chain.clone());
            Vec::new()
        });
        list.push((list.len() + 1, rule));
    }
    let mut targets: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    for (chain, rules) in &of_chain {
        let t = rules
            .iter()
            .map(|(_, r)| jump_targets(r))
            .collect::<Result<_, _>>()?;
        targets.insert(chain.clone(), t);
    }
    let mut out = Vec::new();
    let mut started: HashSet<String> = HashSet::new();
    let mut queues: HashMap<String, std::vec::IntoIter<(usize, Object)>> = of_chain
        .into_iter()
        .map(|(c, r)| (c, r.into_iter()))
        .collect();
    for first in &chains {
        if !started.insert(first.clone()) {
            continue;
        }
        // (chain, index of its next rule): a bound chain's rules go before the rule that
        // jumps to it; iterative, so a deep nesting cannot exhaust the stack.
        let mut stack: Vec<(String, usize)> = vec![(first.clone(), 0)];
        while let Some((chain, next)) = stack.last().cloned() {
            let jumps = &targets[&chain];
            if next >= jumps.len() {
                stack.pop();
                continue;
            }
            let bound = jumps[next]
                .iter()
                .find(|t| queues.contains_key(*t) && !started.contains(*t))
                .cloned();
            if let Some(target) = bound {
                started.insert(target.clone());
                stack.push((target, 0));
                continue;
            }
            if let Some(rule) = queues.get_mut(&chain).and_then(Iterator::next) {
                out.push(rule);
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
        }
    }
    Ok(out)
}

/// `NFTA_RULE_COMPAT` and its `NFTA_RULE_COMPAT_PROTO`, `NFTA_RULE_COMPAT_FLAGS`.
const RULE_COMPAT: u16 = 5;
const COMPAT_PROTO: u16 = 1;
const COMPAT_FLAGS: u16 = 2;
/// `NFT_RULE_COMPAT_F_INV`: the protocol match is negated.
const COMPAT_F_INV: u32 = 2;
/// `NFT_META_L4PROTO`; `NFT_PAYLOAD_NETWORK_HEADER`.
const META_L4PROTO: u32 = 16;
const PAYLOAD_NETWORK: u32 = 1;

/// The layer-4 protocol a rule matches on, as iptables-nft writes it (`meta l4proto`, or
/// the IPv4 protocol or IPv6 next header loaded and compared), and whether it is negated.
fn matched_protocol(family: u8, exprs: &[Expr]) -> Option<(u32, bool)> {
    let mut proto_reg = None;
    for e in exprs {
        match e.name.as_str() {
            "meta" if e.be32(2) == Some(META_L4PROTO) => proto_reg = e.be32(1),
            "payload" => {
                let header = (e.be32(2), e.be32(3), e.be32(4));
                let at = match family {
                    2 => 9,
                    10 => 6,
                    _ => u32::MAX,
                };
                if header == (Some(PAYLOAD_NETWORK), Some(at), Some(1)) {
                    proto_reg = e.be32(1);
                }
            }
            "cmp" if proto_reg.is_some() && e.be32(1) == proto_reg => {
                let value = e
                    .attr(3)
                    .and_then(|d| super::data_value(d).ok().flatten())?;
                let op = e.be32(2)?;
                if value.len() == 1 && op <= 1 {
                    return Some((u32::from(value[0]), op == 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// iptables-nft's matches and targets are checked against the rule's protocol, which the
/// kernel takes in NFTA_RULE_COMPAT when the rule is added but does not dump: a rule with
/// `xt` expressions gets it back from the protocol match it holds.
fn add_compat(rule: &mut Object) -> Result<(), String> {
    if rule.attr(RULE_COMPAT).is_some() {
        return Ok(());
    }
    let exprs = super::rule_expressions(rule)?;
    if !exprs
        .iter()
        .any(|e| e.name == "match" || e.name == "target")
    {
        return Ok(());
    }
    let Some((proto, inverted)) = matched_protocol(rule.family, &exprs) else {
        return Ok(());
    };
    let flags = if inverted { COMPAT_F_INV } else { 0 };
    rule.attrs.push(Attr::nested(
        RULE_COMPAT,
        &[
            Attr::be32(COMPAT_PROTO, proto),
            Attr::be32(COMPAT_FLAGS, flags),
        ],
    ));
    Ok(())
}

/// A table owned by a process's netlink socket (NFT_TABLE_F_OWNER) would be owned by
/// netcr's, and go when netcr exits: it comes back without an owner, said in a warning.
fn unowned(o: &mut Object) -> Result<Option<String>, String> {
    let Some(flags) = o.attrs.iter_mut().find(|a| a.id() == table::FLAGS) else {
        return Ok(None);
    };
    let value = flags.as_be32()?;
    let owner = table::F_OWNER | table::F_PERSIST;
    if value & owner == 0 {
        return Ok(None);
    }
    flags.value = (value & !owner).to_be_bytes().to_vec();
    Ok(Some(format!(
        "table {} {} belonged to a process (it was to go with that process's netlink socket); it comes back without an owner",
        family_name(o.family),
        o.name().unwrap_or("?")
    )))
}

fn set_zero(attrs: &mut [Attr], id: u16) {
    for a in attrs.iter_mut().filter(|a| a.id() == id) {
        a.value = vec![0; a.value.len()];
    }
}

/// Rewrites the state an expression carries: a counter's values, a quota's consumption, a
/// `last` expression's time (all zero unless `keep`), a quota's depleted flag (always: the
/// kernel takes none). Returns whether anything changed.
fn reset_expr(e: &mut Expr, keep: bool) -> Result<bool, String> {
    let name = e.name.clone();
    let Some(data) = e.data.as_mut() else {
        return Ok(false);
    };
    let before = data.clone();
    match name.as_str() {
        "counter" if !keep => {
            set_zero(data, 1);
            set_zero(data, 2);
        }
        "quota" => {
            clear_depleted(data, 2)?;
            if !keep {
                set_zero(data, 4);
            } else {
                clamp_consumed(data, 1, 4)?;
            }
        }
        "last" if !keep => {
            set_zero(data, 1);
            data.retain(|a| a.id() != 2);
        }
        "dynset" => {
            for a in data.iter_mut() {
                match a.id() {
                    7 => *a = reset_one(a, keep)?,
                    10 => *a = reset_list(a, keep)?,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(*data != before)
}

fn clear_depleted(data: &mut [Attr], flags_id: u16) -> Result<(), String> {
    for a in data.iter_mut().filter(|a| a.id() == flags_id) {
        let flags = a.as_be32()?;
        a.value = (flags & !QUOTA_F_DEPLETED).to_be_bytes().to_vec();
    }
    Ok(())
}

/// A quota's consumption can run past its limit in the kernel, which refuses such a value.
fn clamp_consumed(data: &mut [Attr], limit_id: u16, consumed_id: u16) -> Result<(), String> {
    let Some(limit) = nft::find(data, limit_id).map(Attr::as_be64).transpose()? else {
        return Ok(());
    };
    for a in data.iter_mut().filter(|a| a.id() == consumed_id) {
        let consumed = a.as_be64()?;
        a.value = consumed.min(limit).to_be_bytes().to_vec();
    }
    Ok(())
}

fn reset_one(attr: &Attr, keep: bool) -> Result<Attr, String> {
    let mut e = Expr::parse(attr)?;
    Ok(if reset_expr(&mut e, keep)? {
        e.to_attr()
    } else {
        attr.clone()
    })
}

fn reset_list(list: &Attr, keep: bool) -> Result<Attr, String> {
    // Only the expressions that carry state are parsed and encoded again; the others (most
    // of a rule) are copied as they are.
    let mut changed = false;
    let mut out = Vec::with_capacity(list.value.len());
    for (kind, value) in netcr_netlink::raw::attributes_flagged(&list.value)? {
        if kind & 0x3fff != common::LIST_ELEM {
            return Err(format!("attribute {} in a list", kind & 0x3fff));
        }
        let stateful = match nft::expression_name(value) {
            Some(name) => STATEFUL_EXPRESSIONS.contains(&name),
            // Malformed: the strict parse says how.
            None => true,
        };
        if stateful {
            let mut e = Expr::parse(&Attr::new(kind, value))?;
            if reset_expr(&mut e, keep)? {
                changed = true;
                let a = e.to_attr();
                nft::emit_into(&mut out, a.kind, &a.value);
                continue;
            }
        }
        nft::emit_into(&mut out, kind, value);
    }
    Ok(if changed {
        Attr::new(list.kind, out)
    } else {
        list.clone()
    })
}

/// The expressions whose state [`reset_expr`] rewrites.
const STATEFUL_EXPRESSIONS: [&str; 4] = ["counter", "quota", "last", "dynset"];

/// Rewrites an object's state for a restore: counters and consumption zero unless `keep`
/// (chains' counters, rules' expressions, objects' data, sets' templates, elements'
/// expressions), quotas never depleted.
pub(crate) fn reset_state(o: &mut Object, keep: bool) -> Result<(), String> {
    match o.kind {
        Kind::Chain if !keep => {
            for a in o.attrs.iter_mut().filter(|a| a.id() == chain::COUNTERS) {
                let mut counters = a.children()?;
                set_zero(&mut counters, 1);
                set_zero(&mut counters, 2);
                a.value = nft::emit(&counters);
            }
        }
        Kind::Rule => {
            for a in o
                .attrs
                .iter_mut()
                .filter(|a| a.id() == nft::rule::EXPRESSIONS)
            {
                *a = reset_list(a, keep)?;
            }
        }
        Kind::Object => {
            let kind = o.object_type();
            for a in o.attrs.iter_mut().filter(|a| a.id() == obj::DATA) {
                let mut data = a.children()?;
                match kind {
                    Some(obj::COUNTER) if !keep => {
                        set_zero(&mut data, 1);
                        set_zero(&mut data, 2);
                    }
                    Some(obj::QUOTA) => {
                        clear_depleted(&mut data, 2)?;
                        if keep {
                            clamp_consumed(&mut data, 1, 4)?;
                        } else {
                            set_zero(&mut data, 4);
                        }
                    }
                    _ => continue,
                }
                a.value = nft::emit(&data);
            }
        }
        Kind::Set => {
            for a in o.attrs.iter_mut() {
                match a.id() {
                    set::EXPR => *a = reset_one(a, keep)?,
                    set::EXPRESSIONS => *a = reset_list(a, keep)?,
                    _ => {}
                }
            }
        }
        Kind::Elements => {
            for list in o.attrs.iter_mut().filter(|a| a.id() == elem::LIST_ELEMENTS) {
                let mut items = Vec::new();
                for item in list_items(list)? {
                    let mut e = item.children()?;
                    for a in e.iter_mut() {
                        match a.id() {
                            elem::EXPR => *a = reset_one(a, keep)?,
                            elem::EXPRESSIONS => *a = reset_list(a, keep)?,
                            _ => {}
                        }
                    }
                    items.push(Attr::new(item.kind, nft::emit(&e)));
                }
                list.value = nft::emit(&items);
            }
        }
        _ => {}
    }
    Ok(())
}

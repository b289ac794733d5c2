//! What the objects of a firewall refer to: each other by name (a rule's chain, jumps and
//! gotos, sets, objects, flowtables), which [`validate`] checks before any change, and
//! devices by index, which [`ifindex_uses`] finds by following the registers of each rule.

use std::collections::{BTreeSet, HashMap, HashSet};

use netcr_image::NetnsImage;
use netcr_netlink::nftables::{chain, elem, family_name, find, set, Attr};

use super::{data_value, elements, rule_expressions, verdict_chain, Expr, Kind, Object};

/// Most nf_tables objects one namespace of an image may hold.
pub const MAX_OBJECTS: usize = 4_000_000;

/// `NFT_REG32_00`: the first 4-byte register; `NFT_REG_1..4` are 16 bytes each.
const REG32_00: u32 = 8;
/// `NFT_META_IIF`, `NFT_META_OIF`, `NFT_META_SDIF`: keys that load a device index.
const META_INDEX_KEYS: [u32; 3] = [4, 5, 33];
/// `NFT_FIB_RESULT_OIF`.
const FIB_RESULT_OIF: u32 = 1;

/// The 4-byte slot where register `reg` starts, or `None` for the verdict register.
fn slot(reg: u32) -> Option<u32> {
    match reg {
        1..=4 => Some((reg - 1) * 4),
        r if r >= REG32_00 => Some(r - REG32_00),
        _ => None,
    }
}

/// What a register slot holds, as far as device indexes go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    /// A device index of the packet (`meta iif`, `fib ... oif`).
    Index,
    /// A constant (`immediate`): 4 bytes of it.
    Constant([u8; 4]),
    /// The data of a map's element (`lookup` with a destination register).
    MapData(String),
}

/// A set's key length and elements (key, key end, data), by name, within one table.
struct Sets {
    by_name: HashMap<String, SetData>,
}

#[derive(Default)]
struct SetData {
    key_len: usize,
    /// (key, key end, data) of each element, as values.
    elements: Vec<[Option<Vec<u8>>; 3]>,
}

impl Sets {
    fn of_table(objects: &[&Object]) -> Result<Sets, String> {
        let mut by_name: HashMap<String, SetData> = HashMap::new();
        for o in objects.iter().filter(|o| o.kind == Kind::Set) {
            let key_len = o
                .attr(set::KEY_LEN)
                .and_then(|a| a.as_be32().ok())
                .unwrap_or(0);
            by_name
                .entry(o.name().unwrap_or("").to_string())
                .or_default()
                .key_len = key_len as usize;
        }
        for o in objects.iter().filter(|o| o.kind == Kind::Elements) {
            let entry = by_name
                .entry(o.name().unwrap_or("").to_string())
                .or_default();
            for e in elements(o)? {
                let value = |id: u16| -> Result<Option<Vec<u8>>, String> {
                    find(&e, id)
                        .map(data_value)
                        .transpose()
                        .map(Option::flatten)
                };
                entry
                    .elements
                    .push([value(elem::KEY)?, value(elem::KEY_END)?, value(elem::DATA)?]);
            }
        }
        Ok(Sets { by_name })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Follows one rule's registers: which device indexes its matches and statements use.
struct Tracker<'a> {
    held: HashMap<u32, Held>,
    sets: &'a Sets,
    found: BTreeSet<u32>,
}

impl Tracker<'_> {
    fn reg(e: &Expr, id: u16) -> Option<u32> {
        e.be32(id).and_then(slot)
    }

    /// A loader wrote `len` bytes (at most a 16-byte register when unknown) from slot `at`.
    fn clobber(&mut self, at: u32, len: Option<u32>) {
        let slots = len.map_or(4, |l| l.div_ceil(4).max(1));
        for s in at..at + slots {
            self.held.remove(&s);
        }
    }

    /// The indexes held in the keys of set `name` where the key covers slots from `from`.
    fn keys_of(&mut self, name: &str, from: u32) {
        let Some(data) = self.sets.by_name.get(name) else {
            return;
        };
        let offsets: Vec<usize> = self
            .held
            .iter()
            .filter(|(s, h)| **s >= from && **h == Held::Index)
            .map(|(s, _)| ((s - from) * 4) as usize)
            .filter(|o| o + 4 <= data.key_len.max(4))
            .collect();
        for [key, key_end, _] in &data.elements {
            for value in [key, key_end].into_iter().flatten() {
                for &at in &offsets {
                    self.found.extend(u32_at(value, at).filter(|i| *i != 0));
                }
            }
        }
    }

    fn device_register(&mut self, e: &Expr, id: u16) {
        let Some(s) = Self::reg(e, id) else {
            return;
        };
        match self.held.get(&s).cloned() {
            Some(Held::Constant(bytes)) => {
                self.found.insert(u32::from_ne_bytes(bytes));
            }
            Some(Held::MapData(name)) => {
                if let Some(data) = self.sets.by_name.get(&name) {
                    for [_, _, value] in &data.elements {
                        self.found
                            .extend(value.as_deref().and_then(|v| u32_at(v, 0)));
                    }
                }
            }
            _ => {}
        }
    }

    fn compared(&mut self, e: &Expr, sreg: u16, values: &[u16]) -> Result<(), String> {
        let Some(s) = Self::reg(e, sreg) else {
            return Ok(());
        };
        if self.held.get(&s) != Some(&Held::Index) {
            return Ok(());
        }
        for id in values {
            if let Some(value) = e.attr(*id).map(data_value).transpose()?.flatten() {
                self.found.extend(u32_at(&value, 0).filter(|i| *i != 0));
            }
        }
        Ok(())
    }

    fn step(&mut self, e: &Expr) -> Result<(), String> {
        match e.name.as_str() {
            "meta" => {
                if let Some(d) = Self::reg(e, 1) {
                    self.clobber(d, None);
                    if e.be32(2).is_some_and(|k| META_INDEX_KEYS.contains(&k)) {
                        self.held.insert(d, Held::Index);
                    }
                }
            }
            "fib" => {
                if let Some(d) = Self::reg(e, 1) {
                    self.clobber(d, None);
                    if e.be32(2) == Some(FIB_RESULT_OIF) {
                        self.held.insert(d, Held::Index);
                    }
                }
            }
            "immediate" => {
                if let Some(d) = Self::reg(e, 1) {
                    let value = e.attr(2).map(data_value).transpose()?.flatten();
                    let value = value.unwrap_or_default();
                    self.clobber(d, Some(value.len() as u32));
                    for (i, chunk) in value.chunks(4).enumerate() {
                        let mut bytes = [0u8; 4];
                        bytes[..chunk.len()].copy_from_slice(chunk);
                        self.held.insert(d + i as u32, Held::Constant(bytes));
                    }
                }
            }
            "cmp" => self.compared(e, 1, &[3])?,
            "range" => self.compared(e, 1, &[3, 4])?,
            "lookup" => {
                let name = e.str(1).unwrap_or("").to_string();
                if let Some(s) = Self::reg(e, 2) {
                    self.keys_of(&name, s);
                }
                if let Some(d) = Self::reg(e, 3) {
                    self.clobber(d, None);
                    self.held.insert(d, Held::MapData(name));
                }
            }
            "dynset" => {
                if let Some(s) = Self::reg(e, 4) {
                    self.keys_of(e.str(1).unwrap_or(""), s);
                }
            }
            "objref" => {
                if let Some(s) = Self::reg(e, 3) {
                    self.keys_of(e.str(4).unwrap_or(""), s);
                }
            }
            "fwd" => self.device_register(e, 1),
            "dup" => self.device_register(e, 2),
            // Loaders whose destination is attribute 1, with a length where they say it.
            "payload" | "exthdr" => {
                if let Some(d) = Self::reg(e, 1) {
                    self.clobber(d, e.be32(4));
                }
            }
            "ct" | "rt" | "socket" | "osf" | "numgen" | "xfrm" | "tunnel" => {
                if let Some(d) = Self::reg(e, 1) {
                    self.clobber(d, None);
                }
            }
            // Destination in attribute 2; a length in attribute 4 (bitwise) or 5 (byteorder).
            "hash" | "bitwise" | "byteorder" => {
                if let Some(d) = Self::reg(e, 2) {
                    self.clobber(d, None);
                }
            }
            // Statements and matches that write no register.
            "counter" | "quota" | "limit" | "log" | "reject" | "nat" | "masq" | "redir"
            | "notrack" | "queue" | "connlimit" | "last" | "synproxy" | "tproxy" | "match"
            | "target" | "flow_offload" => {}
            // An expression netcr does not know may write any register.
            _ => self.held.clear(),
        }
        Ok(())
    }
}

/// For each of `objects` (in the order of [`super::keep`]), the device indexes it matches
/// on: a rule's `meta iif`/`oif`/`sdif` or `fib ... oif` compared with a value or looked up
/// in a set, `fwd`/`dup` to a device; nothing for other objects.
pub fn ifindex_uses(objects: &[Object]) -> Result<Vec<BTreeSet<u32>>, String> {
    let mut tables: HashMap<(u8, &str), Vec<&Object>> = HashMap::new();
    for o in objects {
        tables
            .entry((o.family, o.table().unwrap_or("")))
            .or_default()
            .push(o);
    }
    let sets: HashMap<(u8, &str), Sets> = tables
        .iter()
        .map(|(k, v)| Ok((*k, Sets::of_table(v)?)))
        .collect::<Result<_, String>>()?;
    objects
        .iter()
        .map(|o| {
            if o.kind != Kind::Rule {
                return Ok(BTreeSet::new());
            }
            let mut tracker = Tracker {
                held: HashMap::new(),
                sets: &sets[&(o.family, o.table().unwrap_or(""))],
                found: BTreeSet::new(),
            };
            for e in rule_expressions(o)? {
                tracker.step(&e)?;
            }
            Ok(tracker.found)
        })
        .collect()
}

/// Names a table's objects by kind, to check references.
#[derive(Default)]
struct Names<'a> {
    chains: HashMap<&'a str, bool>,
    sets: HashMap<&'a str, Option<u32>>,
    objects: HashSet<(u32, &'a str)>,
    flowtables: HashSet<&'a str>,
}

/// The chains, sets, objects and flowtables an expression names.
fn check_expr(e: &Expr, names: &Names<'_>, what: &dyn Fn() -> String) -> Result<(), String> {
    let missing = |noun: &str, name: &str| {
        Err(format!(
            "{}: {} {noun} \"{name}\", which its table does not hold",
            what(),
            match e.name.as_str() {
                "immediate" => "jumps to",
                _ => "uses",
            }
        ))
    };
    let set_name = match e.name.as_str() {
        "lookup" => e.str(1),
        "dynset" => e.str(1),
        "objref" => e.str(4),
        _ => None,
    };
    if let Some(name) = set_name {
        if !names.sets.contains_key(name) {
            return missing("set", name);
        }
    }
    match e.name.as_str() {
        "immediate" => {
            if let Some(target) = e.attr(2).map(verdict_chain).transpose()?.flatten() {
                if !names.chains.contains_key(target.as_str()) {
                    return missing("chain", &target);
                }
            }
        }
        "objref" => {
            if let (Some(kind), Some(name)) = (e.be32(1), e.str(2)) {
                if !names.objects.contains(&(kind, name)) {
                    return missing(super::object_type_name(kind), name);
                }
            }
        }
        "flow_offload" => {
            if let Some(name) = e.str(1) {
                if !names.flowtables.contains(name) {
                    return missing("flowtable", name);
                }
            }
        }
        _ => {}
    }
    // Expressions nest: a set's templates, a dynset's.
    for id in [7u16, 10] {
        if e.name == "dynset" {
            if let Some(list) = e.attr(id) {
                let nested = if id == 7 {
                    vec![Expr::parse(list)?]
                } else {
                    super::expressions(list)?
                };
                for n in &nested {
                    check_expr(n, names, what)?;
                }
            }
        }
    }
    Ok(())
}

/// Checks a namespace's firewall before anything changes: every record parses (its
/// attributes, a chain's hook, rules' expressions, sets' elements), tables are unique and
/// come before what they hold, names are unique in their table, every reference names an
/// object of the same table (a rule's chain, a jump's target, a set, an object, a
/// flowtable; an element's verdict chain and object), and every device a rule matches by
/// index is a device of the image with that index. `index_of(dev)` is the image's index of
/// a device.
pub fn validate(ns: &NetnsImage, index_of: &dyn Fn(&str) -> Option<u32>) -> Result<(), String> {
    if ns.nftables.len() > MAX_OBJECTS {
        return Err(format!(
            "{} nf_tables objects (at most {MAX_OBJECTS})",
            ns.nftables.len()
        ));
    }
    let objects: Vec<Object> = ns
        .nftables
        .iter()
        .map(Object::decode)
        .collect::<Result<_, _>>()?;
    let mut names: HashMap<(u8, &str), Names<'_>> = HashMap::new();
    for o in &objects {
        let key = (o.family, o.table().unwrap_or(""));
        let label = o.label();
        if o.kind == Kind::Table {
            if names.insert(key, Names::default()).is_some() {
                return Err(format!("{label} appears twice"));
            }
            continue;
        }
        let Some(table) = names.get_mut(&key) else {
            return Err(format!("{label}: its table comes later or not at all"));
        };
        let name = || o.name().ok_or_else(|| format!("{label}: it has no name"));
        let fresh = match o.kind {
            Kind::Chain => {
                let flags = o.attr(chain::FLAGS).and_then(|a| a.as_be32().ok());
                if let Some(hook) = o.attr(chain::HOOK) {
                    hook.children().map_err(|e| format!("{label}: hook: {e}"))?;
                }
                let binding = flags.unwrap_or(0) & chain::F_BINDING != 0;
                table.chains.insert(name()?, binding).is_none()
            }
            Kind::Set => {
                let obj_type = o.attr(set::OBJ_TYPE).and_then(|a| a.as_be32().ok());
                for id in [set::EXPR, set::EXPRESSIONS] {
                    if let Some(a) = o.attr(id) {
                        let parsed = if id == set::EXPR {
                            Expr::parse(a).map(|_| ())
                        } else {
                            super::expressions(a).map(|_| ())
                        };
                        parsed.map_err(|e| format!("{label}: {e}"))?;
                    }
                }
                table.sets.insert(name()?, obj_type).is_none()
            }
            Kind::Object => table
                .objects
                .insert((o.object_type().unwrap_or(0), name()?)),
            Kind::Flowtable => table.flowtables.insert(name()?),
            Kind::Table | Kind::Elements | Kind::Rule => true,
        };
        if !fresh {
            return Err(format!("{label} appears twice"));
        }
    }
    let mut position: HashMap<(u8, &str, &str), usize> = HashMap::new();
    for o in &objects {
        let names = &names[&(o.family, o.table().unwrap_or(""))];
        match o.kind {
            Kind::Rule => {
                let chain_name = o
                    .chain()
                    .ok_or_else(|| format!("{}: a rule without its chain", o.table_label()))?;
                let n = position
                    .entry((o.family, o.table().unwrap_or(""), chain_name))
                    .or_insert(0);
                *n += 1;
                let what = || rule_label(o, *n);
                if !names.chains.contains_key(chain_name) {
                    return Err(format!(
                        "{}: chain \"{chain_name}\" is not in its table",
                        what()
                    ));
                }
                let exprs = rule_expressions(o).map_err(|e| format!("{}: {e}", what()))?;
                for e in &exprs {
                    check_expr(e, names, &what)?;
                }
                for (ifindex, dev) in &o.ifindexes {
                    check_index(&what(), *ifindex, dev, index_of)?;
                }
            }
            Kind::Elements => {
                let label = o.label();
                let set_name = o.name().unwrap_or("");
                let Some(obj_type) = names.sets.get(set_name) else {
                    return Err(format!("{label}: the set is not in its table"));
                };
                for e in elements(o).map_err(|e| format!("{label}: {e}"))? {
                    check_element(&e, names, *obj_type, &label)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `rule 3 of chain inet filt input`: a rule by its place in its chain (from 1).
pub fn rule_label(o: &Object, n: usize) -> String {
    format!(
        "rule {n} of chain {} {} {}",
        family_name(o.family),
        o.table().unwrap_or("?"),
        o.chain().unwrap_or("?")
    )
}

fn check_element(
    e: &[Attr],
    names: &Names<'_>,
    obj_type: Option<u32>,
    label: &str,
) -> Result<(), String> {
    for id in [elem::KEY, elem::KEY_END, elem::DATA] {
        if let Some(a) = find(e, id) {
            a.children().map_err(|err| format!("{label}: {err}"))?;
        }
    }
    if let Some(data) = find(e, elem::DATA) {
        if let Some(target) = verdict_chain(data)? {
            match names.chains.get(target.as_str()) {
                None => {
                    return Err(format!(
                        "{label}: an element jumps to chain \"{target}\", which its table does not hold"
                    ))
                }
                // The kernel refuses a bound (anonymous) chain as an element's verdict.
                Some(true) => {
                    return Err(format!(
                        "{label}: an element jumps to chain \"{target}\", a chain bound to a rule"
                    ))
                }
                Some(false) => {}
            }
        }
    }
    if let Some(objref) = find(e, elem::OBJREF) {
        let name = objref.as_str()?;
        let kind = obj_type.unwrap_or(0);
        if !names.objects.contains(&(kind, name)) {
            return Err(format!(
                "{label}: an element names {} \"{name}\", which its table does not hold",
                super::object_type_name(kind)
            ));
        }
    }
    for (id, single) in [(elem::EXPR, true), (elem::EXPRESSIONS, false)] {
        if let Some(a) = find(e, id) {
            let parsed = if single {
                Expr::parse(a).map(|_| ())
            } else {
                super::expressions(a).map(|_| ())
            };
            parsed.map_err(|err| format!("{label}: {err}"))?;
        }
    }
    Ok(())
}

fn check_index(
    what: &str,
    ifindex: u32,
    dev: &str,
    index_of: &dyn Fn(&str) -> Option<u32>,
) -> Result<(), String> {
    if dev.is_empty() {
        return Ok(());
    }
    match index_of(dev) {
        Some(i) if i == ifindex => Ok(()),
        Some(i) => Err(format!(
            "{what} matches device \"{dev}\" by index {ifindex}, but the image's \"{dev}\" has index {i}"
        )),
        None => Err(format!(
            "{what} matches device \"{dev}\" by index {ifindex}, which the image does not hold"
        )),
    }
}

/// The name of a rule's chain that each rule refers to by jump or goto, for ordering.
pub(crate) fn jump_targets(o: &Object) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for e in rule_expressions(o)? {
        if e.name == "immediate" {
            if let Some(target) = e.attr(2).map(verdict_chain).transpose()?.flatten() {
                out.push(target);
            }
        }
    }
    Ok(out)
}

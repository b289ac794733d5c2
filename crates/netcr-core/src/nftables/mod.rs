//! nf_tables, the namespace's firewall, a state family of its own: which objects the dump
//! keeps (every table of every family and all it holds), how they are stored (each object's
//! attributes as the kernel dumped them, minus what is the kernel's own bookkeeping), how an
//! image's firewall is checked ([`validate`]), how the restore turns it into one transaction
//! ([`requests`]), how the restored one is compared with the image ([`diffs`]), and how it
//! is shown ([`summary`]).
//!
//! netcr parses only what it needs: names, the references between objects (a rule's chain,
//! jumps and gotos, the sets a rule looks up, objects by name, flowtables), the handles and
//! counters to leave out or reset, and the device indexes a rule matches on. Everything
//! else, iptables-nft's `xt` matches and targets included, goes back byte for byte.

mod compare;
mod refs;
mod request;
mod view;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use netcr_image::{v1, NetnsImage};
use netcr_netlink::nftables::{
    self as nft, chain, common, elem, family_name, find, find_str, flowtable, msg, obj, rule, set,
    table, Attr, NftMessage,
};

use crate::state::NameOf;

pub use compare::diffs;
pub use refs::{ifindex_uses, rule_label, validate};
pub use request::{requests, table_deletion, Batch};
pub use view::{summary, ChainView, SetView, TableView};

/// What a record is: the `NFT_MSG_NEW*` message that makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// NFT_MSG_NEWTABLE.
    Table,
    /// NFT_MSG_NEWCHAIN.
    Chain,
    /// NFT_MSG_NEWOBJ: a stateful object (counter, quota, limit, ct helper, ...).
    Object,
    /// NFT_MSG_NEWFLOWTABLE.
    Flowtable,
    /// NFT_MSG_NEWSET: a set or map.
    Set,
    /// NFT_MSG_NEWSETELEM: some elements of a set.
    Elements,
    /// NFT_MSG_NEWRULE.
    Rule,
}

impl Kind {
    /// The kind of an `NFT_MSG_NEW*` type.
    pub fn from_msg(kind: u8) -> Option<Kind> {
        Some(match kind {
            msg::NEWTABLE => Kind::Table,
            msg::NEWCHAIN => Kind::Chain,
            msg::NEWOBJ => Kind::Object,
            msg::NEWFLOWTABLE => Kind::Flowtable,
            msg::NEWSET => Kind::Set,
            msg::NEWSETELEM => Kind::Elements,
            msg::NEWRULE => Kind::Rule,
            _ => return None,
        })
    }

    /// Its `NFT_MSG_NEW*` type.
    pub fn msg(self) -> u8 {
        match self {
            Kind::Table => msg::NEWTABLE,
            Kind::Chain => msg::NEWCHAIN,
            Kind::Object => msg::NEWOBJ,
            Kind::Flowtable => msg::NEWFLOWTABLE,
            Kind::Set => msg::NEWSET,
            Kind::Elements => msg::NEWSETELEM,
            Kind::Rule => msg::NEWRULE,
        }
    }

    /// The attribute naming the table the object belongs to (a table's own name).
    fn table_attr(self) -> u16 {
        match self {
            Kind::Table => table::NAME,
            Kind::Chain => chain::TABLE,
            Kind::Object => obj::TABLE,
            Kind::Flowtable => flowtable::TABLE,
            Kind::Set => set::TABLE,
            Kind::Elements => elem::LIST_TABLE,
            Kind::Rule => rule::TABLE,
        }
    }

    /// The attribute naming the object itself (a rule has none; elements name their set).
    fn name_attr(self) -> Option<u16> {
        match self {
            Kind::Table => Some(table::NAME),
            Kind::Chain => Some(chain::NAME),
            Kind::Object => Some(obj::NAME),
            Kind::Flowtable => Some(flowtable::NAME),
            Kind::Set => Some(set::NAME),
            Kind::Elements => Some(elem::LIST_SET),
            Kind::Rule => None,
        }
    }

    /// The attributes that are the kernel's bookkeeping, never configuration: handles, a
    /// rule's position (its predecessor's handle), use counts, a table's owner port, a set's
    /// backend and element count, and the batch ids a request may carry.
    fn bookkeeping(self) -> &'static [u16] {
        match self {
            Kind::Table => &[table::HANDLE, table::USE, table::OWNER],
            // NFTA_CHAIN_ID (11).
            Kind::Chain => &[chain::HANDLE, chain::USE, 11],
            Kind::Object => &[obj::HANDLE, obj::USE],
            Kind::Flowtable => &[flowtable::HANDLE, flowtable::USE],
            // NFTA_SET_ID (10).
            Kind::Set => &[set::HANDLE, set::TYPE, set::COUNT, 10],
            // NFTA_SET_ELEM_LIST_SET_ID (4).
            Kind::Elements => &[4],
            // NFTA_RULE_ID (9), NFTA_RULE_POSITION_ID (10), NFTA_RULE_CHAIN_ID (11).
            Kind::Rule => &[rule::HANDLE, rule::POSITION, 9, 10, 11],
        }
    }
}

/// One nf_tables object of an image (or of a dump), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// What it is.
    pub kind: Kind,
    /// `nfgen_family`.
    pub family: u8,
    /// Its attributes, in the kernel's order.
    pub attrs: Vec<Attr>,
    /// The device indexes a rule matches on, with their devices at dump time.
    pub ifindexes: Vec<(u32, String)>,
}

/// The families nf_tables has (NFPROTO_*).
const FAMILIES: [u8; 6] = [1, 2, 3, 5, 7, 10];

impl Object {
    /// A stored object, parsed back strictly: a known kind and family, attributes that
    /// frame, and a table.
    pub fn decode(rec: &v1::NftObject) -> Result<Object, String> {
        let kind = u8::try_from(rec.kind)
            .ok()
            .and_then(Kind::from_msg)
            .ok_or_else(|| format!("an nf_tables object of unknown type {}", rec.kind))?;
        let family = u8::try_from(rec.family)
            .ok()
            .filter(|f| FAMILIES.contains(f))
            .ok_or_else(|| format!("an nf_tables object of unknown family {}", rec.family))?;
        let attrs = nft::parse(&rec.attributes)
            .map_err(|e| format!("an nf_tables {kind:?} does not parse: {e}"))?;
        let object = Object {
            kind,
            family,
            attrs,
            ifindexes: rec
                .ifindexes
                .iter()
                .map(|i| (i.ifindex, i.dev.clone()))
                .collect(),
        };
        if object.table().is_none() {
            return Err(format!(
                "an nf_tables {kind:?} without its table ({})",
                family_name(family)
            ));
        }
        Ok(object)
    }

    /// A message the kernel sent, as an object; `None` for other messages.
    pub fn from_message(m: &NftMessage) -> Option<Object> {
        Some(Object {
            kind: Kind::from_msg(m.kind)?,
            family: m.family,
            attrs: m.attrs.clone(),
            ifindexes: Vec::new(),
        })
    }

    /// The image record.
    pub fn record(&self) -> v1::NftObject {
        v1::NftObject {
            kind: u32::from(self.kind.msg()),
            family: u32::from(self.family),
            attributes: nft::emit(&self.attrs),
            ifindexes: self
                .ifindexes
                .iter()
                .map(|(ifindex, dev)| v1::NftIfindex {
                    ifindex: *ifindex,
                    dev: dev.clone(),
                })
                .collect(),
        }
    }

    /// The message that creates it.
    pub fn message(&self) -> NftMessage {
        NftMessage::new(self.kind.msg(), self.family, self.attrs.clone())
    }

    /// The table it belongs to (its own name, for a table).
    pub fn table(&self) -> Option<&str> {
        find_str(&self.attrs, self.kind.table_attr())
    }

    /// Its name (a set's, for elements); `None` for rules.
    pub fn name(&self) -> Option<&str> {
        find_str(&self.attrs, self.kind.name_attr()?)
    }

    /// The chain a rule is in.
    pub fn chain(&self) -> Option<&str> {
        find_str(&self.attrs, rule::CHAIN)
    }

    /// The attribute `id`.
    pub fn attr(&self, id: u16) -> Option<&Attr> {
        find(&self.attrs, id)
    }

    /// An object's type (`NFT_OBJECT_*`).
    pub fn object_type(&self) -> Option<u32> {
        nft::find_be32(&self.attrs, obj::TYPE)
    }

    /// `inet filt` for its table.
    pub fn table_label(&self) -> String {
        format!(
            "{} {}",
            family_name(self.family),
            self.table().unwrap_or("?")
        )
    }

    /// What it is, as nft names it: `table inet filt`, `chain inet filt input`, `set inet
    /// filt s4`, `elements of set inet filt s4`, `counter inet filt c1`, `flowtable inet
    /// filt ft`; a rule is named by its caller, who knows its place in the chain.
    pub fn label(&self) -> String {
        let name = self.name().unwrap_or("?");
        let table = self.table_label();
        match self.kind {
            Kind::Table => format!("table {table}"),
            Kind::Chain => format!("chain {table} {name}"),
            Kind::Object => format!(
                "{} {table} {name}",
                object_type_name(self.object_type().unwrap_or(0))
            ),
            Kind::Flowtable => format!("flowtable {table} {name}"),
            Kind::Set => format!("set {table} {name}"),
            Kind::Elements => format!("elements of set {table} {name}"),
            Kind::Rule => format!("a rule of chain {table} {}", self.chain().unwrap_or("?")),
        }
    }
}

/// nft's name of an object type (`NFT_OBJECT_*`).
pub fn object_type_name(kind: u32) -> &'static str {
    match kind {
        obj::COUNTER => "counter",
        obj::QUOTA => "quota",
        3 => "ct helper",
        4 => "limit",
        5 => "ct count",
        6 => "tunnel",
        7 => "ct timeout",
        8 => "secmark",
        9 => "ct expectation",
        10 => "synproxy",
        _ => "object",
    }
}

/// An expression of a rule (or a set's, an element's): its name and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// `NFTA_EXPR_NAME`: "meta", "cmp", "counter", "match", ...
    pub name: String,
    /// `NFTA_EXPR_DATA`, parsed; `None` when the expression has none (`notrack`).
    pub data: Option<Vec<Attr>>,
    /// The attribute kinds as they came, to write them back the same.
    kinds: (u16, u16, Option<u16>),
}

impl Expr {
    /// An expression from its attributes (`NFTA_EXPR_NAME`, `NFTA_EXPR_DATA`).
    pub fn parse(attr: &Attr) -> Result<Expr, String> {
        let parts = attr.children()?;
        let name_attr = find(&parts, common::EXPR_NAME)
            .ok_or_else(|| "an expression without a name".to_string())?;
        let name = name_attr.as_str()?.to_string();
        let data_attr = find(&parts, common::EXPR_DATA);
        let data = data_attr
            .map(|d| d.children())
            .transpose()
            .map_err(|e| format!("expression {name}: {e}"))?;
        if parts.len() != 1 + usize::from(data_attr.is_some()) {
            return Err(format!("expression {name}: attributes it cannot have"));
        }
        Ok(Expr {
            name,
            data,
            kinds: (attr.kind, name_attr.kind, data_attr.map(|d| d.kind)),
        })
    }

    /// The expression as an attribute again.
    pub fn to_attr(&self) -> Attr {
        let mut parts = vec![Attr::string(self.kinds.1, &self.name)];
        if let (Some(kind), Some(data)) = (self.kinds.2, &self.data) {
            parts.push(Attr::new(kind, nft::emit(data)));
        }
        Attr::new(self.kinds.0, nft::emit(&parts))
    }

    /// Its attribute `id`.
    pub fn attr(&self, id: u16) -> Option<&Attr> {
        self.data.as_deref().and_then(|d| find(d, id))
    }

    /// Its big-endian u32 attribute `id`.
    pub fn be32(&self, id: u16) -> Option<u32> {
        self.attr(id).and_then(|a| a.as_be32().ok())
    }

    /// Its string attribute `id`.
    pub fn str(&self, id: u16) -> Option<&str> {
        self.attr(id).and_then(|a| a.as_str().ok())
    }
}

/// The items of a list attribute (`NFTA_LIST_ELEM` each).
pub fn list_items(list: &Attr) -> Result<Vec<Attr>, String> {
    let items = list.children()?;
    if let Some(other) = items.iter().find(|i| i.id() != common::LIST_ELEM) {
        return Err(format!("attribute {} in a list", other.id()));
    }
    Ok(items)
}

/// The expressions of a list attribute (a rule's, a set's templates, an element's).
pub fn expressions(list: &Attr) -> Result<Vec<Expr>, String> {
    list_items(list)?.iter().map(Expr::parse).collect()
}

/// A rule's expressions (none when it has none).
pub fn rule_expressions(rule: &Object) -> Result<Vec<Expr>, String> {
    rule.attr(rule::EXPRESSIONS)
        .map(expressions)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The elements of an elements object, each its `NFTA_SET_ELEM_*` attributes.
pub fn elements(object: &Object) -> Result<Vec<Vec<Attr>>, String> {
    let Some(list) = object.attr(elem::LIST_ELEMENTS) else {
        return Ok(Vec::new());
    };
    list_items(list)?.iter().map(Attr::children).collect()
}

/// The value of an `NFTA_DATA_*` attribute (a key, a map's data): its bytes when it is a
/// value, `None` when it is a verdict.
pub fn data_value(data: &Attr) -> Result<Option<Vec<u8>>, String> {
    let parts = data.children()?;
    Ok(find(&parts, common::DATA_VALUE).map(|v| v.value.clone()))
}

/// The chain a verdict (`NFTA_DATA_*` attribute) jumps or goes to.
pub fn verdict_chain(data: &Attr) -> Result<Option<String>, String> {
    let parts = data.children()?;
    let Some(verdict) = find(&parts, common::DATA_VERDICT) else {
        return Ok(None);
    };
    let verdict = verdict.children()?;
    find(&verdict, common::VERDICT_CHAIN)
        .map(|c| c.as_str().map(str::to_string))
        .transpose()
}

/// What a dump keeps of a namespace's firewall: its records, tables first then what each
/// holds, and what the user should know.
#[derive(Debug, Default)]
pub struct Kept {
    /// The records.
    pub records: Vec<v1::NftObject>,
    /// Warnings (a rule matching an index no device has).
    pub warnings: Vec<String>,
}

/// The records of a dumped ruleset; `name_of` names devices by index (for the rules that
/// match devices by index). Each table comes first, then its chains, objects, flowtables,
/// sets, elements and rules, each kind in the kernel's order.
pub fn keep(dumped: &[NftMessage], name_of: &NameOf<'_>) -> Result<Kept, String> {
    let objects = organize(dumped)?;
    let mut kept = Kept::default();
    let uses = ifindex_uses(&objects)?;
    for (mut object, uses) in objects.into_iter().zip(uses) {
        for ifindex in uses {
            let dev = name_of(ifindex).unwrap_or_default();
            if dev.is_empty() {
                kept.warnings.push(format!(
                    "{} matches device index {ifindex}, which no device of the namespace has",
                    object.label()
                ));
            }
            object.ifindexes.push((ifindex, dev));
        }
        kept.records.push(object.record());
    }
    Ok(kept)
}

/// The objects of a dump without the kernel's bookkeeping, in the order of [`keep`].
pub fn organize(dumped: &[NftMessage]) -> Result<Vec<Object>, String> {
    let mut tables: Vec<(u8, String)> = Vec::new();
    let mut by_table: HashMap<(u8, String), Vec<Object>> = HashMap::new();
    for m in dumped {
        let Some(mut object) = Object::from_message(m) else {
            continue;
        };
        let bookkeeping = object.kind.bookkeeping();
        object.attrs.retain(|a| !bookkeeping.contains(&a.id()));
        // A set's dump ends with a message of no elements: nothing to keep.
        if object.kind == Kind::Elements && elements(&object)?.is_empty() {
            continue;
        }
        let Some(table) = object.table().map(str::to_string) else {
            return Err(format!(
                "the kernel dumped an nf_tables {:?} without its table",
                object.kind
            ));
        };
        let key = (object.family, table);
        if object.kind == Kind::Table {
            tables.push(key.clone());
        }
        by_table.entry(key).or_default().push(object);
    }
    let mut out = Vec::with_capacity(dumped.len());
    for key in &tables {
        let mut objects = by_table.remove(key).unwrap_or_default();
        // A stable sort: the kernel's order within each kind.
        objects.sort_by_key(|o| o.kind);
        out.extend(objects);
    }
    if let Some(((family, table), _)) = by_table.into_iter().next() {
        return Err(format!(
            "the kernel dumped objects of table {} {table}, which it did not list",
            family_name(family)
        ));
    }
    Ok(out)
}

/// The tables of a namespace's image: (family, name).
pub fn tables(ns: &NetnsImage) -> Vec<(u8, String)> {
    ns.nftables
        .iter()
        .filter_map(|r| Object::decode(r).ok())
        .filter(|o| o.kind == Kind::Table)
        .filter_map(|o| Some((o.family, o.name()?.to_string())))
        .collect()
}

/// The tables a dumped ruleset holds: (family, name).
pub fn dumped_tables(dumped: &[NftMessage]) -> Vec<(u8, String)> {
    dumped
        .iter()
        .filter(|m| m.kind == msg::NEWTABLE)
        .filter_map(|m| Some((m.family, m.str(table::NAME)?.to_string())))
        .collect()
}

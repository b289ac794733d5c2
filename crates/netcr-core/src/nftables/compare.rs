//! The verification of a restored firewall: the kernel's dump against the image, object by
//! object (in the image's tables only: an existing namespace keeps tables of its own),
//! naming the table, chain, set or rule and the field that differs. State that moves by
//! itself is not compared: counters, a quota's consumption, the time an element has left,
//! the elements of dynamic sets and of sets whose elements time out.

use std::collections::{BTreeMap, HashMap};

use netcr_image::NetnsImage;
use netcr_netlink::nftables::{self as nft, elem, family_name, Attr, NftMessage};

use super::refs::rule_label;
use super::request::reset_state;
use super::{expressions, list_items, organize, Kind, Object};

/// What a field of an object is called in messages.
fn field(kind: Kind, id: u16) -> String {
    let name = match (kind, id) {
        (Kind::Table, 2) => "flags",
        (Kind::Chain, 4) => "hook",
        (Kind::Chain, 5) => "policy",
        (Kind::Chain, 7) => "type",
        (Kind::Chain, 8) => "counters",
        (Kind::Chain, 10) => "flags",
        (Kind::Set, 3) => "flags",
        (Kind::Set, 4) => "key type",
        (Kind::Set, 5) => "key length",
        (Kind::Set, 6) => "data type",
        (Kind::Set, 7) => "data length",
        (Kind::Set, 8) => "policy",
        (Kind::Set, 9) => "description",
        (Kind::Set, 11) => "timeout",
        (Kind::Set, 12) => "gc interval",
        (Kind::Set, 15) => "object type",
        (Kind::Set, 17) | (Kind::Set, 18) => "expressions",
        (Kind::Object, 3) => "type",
        (Kind::Object, 4) => "settings",
        (Kind::Flowtable, 3) => "hook",
        (Kind::Flowtable, 7) => "flags",
        (Kind::Rule, 4) => "expressions",
        (Kind::Rule, 5) => "compat",
        (Kind::Table | Kind::Chain | Kind::Rule, 6 | 7 | 12)
        | (Kind::Set, 13)
        | (Kind::Object, 8) => "comment (user data)",
        _ => return format!("attribute {id}"),
    };
    name.to_string()
}

/// An attribute's value for a message: a string, a number, or bytes in hex.
fn shown(a: Option<&Attr>) -> String {
    let Some(a) = a else {
        return "none".into();
    };
    let v = &a.value;
    if v.len() > 1
        && v.last() == Some(&0)
        && v[..v.len() - 1]
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
    {
        return format!("\"{}\"", String::from_utf8_lossy(&v[..v.len() - 1]));
    }
    if let Ok(n) = a.as_be32() {
        return n.to_string();
    }
    let hex: String = v.iter().take(48).map(|b| format!("{b:02x}")).collect();
    if v.len() > 48 {
        format!("{hex}... ({} bytes)", v.len())
    } else {
        hex
    }
}

/// An object as the comparison sees it: state zeroed, an owner's flags and an element's
/// remaining time left out.
fn normalized(mut o: Object) -> Result<Object, String> {
    reset_state(&mut o, false)?;
    o.ifindexes.clear();
    if o.kind == Kind::Table {
        for a in o.attrs.iter_mut().filter(|a| a.id() == nft::table::FLAGS) {
            let flags = a.as_be32()? & !(nft::table::F_OWNER | nft::table::F_PERSIST);
            a.value = flags.to_be_bytes().to_vec();
        }
    }
    Ok(o)
}

/// The elements of a set's element objects, each encoded without its remaining time, sorted.
fn element_set(objects: &[&Object]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for o in objects {
        if let Some(list) = o.attr(elem::LIST_ELEMENTS) {
            for item in list_items(list)? {
                let mut e = item.children()?;
                e.retain(|a| a.id() != elem::EXPIRATION);
                out.push(nft::emit(&e));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Differences of one object's fields: `label: field: image X, kernel Y`.
fn field_diffs(label: &str, want: &Object, got: &Object, out: &mut Vec<String>) {
    let ids: std::collections::BTreeSet<u16> =
        want.attrs.iter().chain(&got.attrs).map(Attr::id).collect();
    for id in ids {
        let (w, g) = (want.attr(id), got.attr(id));
        if w.map(|a| &a.value) == g.map(|a| &a.value) {
            continue;
        }
        if want.kind == Kind::Rule && id == nft::rule::EXPRESSIONS {
            out.push(format!("{label}: {}", expression_diff(w, g)));
            continue;
        }
        out.push(format!(
            "{label}: {}: image {}, kernel {}",
            field(want.kind, id),
            shown(w),
            shown(g)
        ));
    }
}

/// Which expression of two lists differs first.
fn expression_diff(want: Option<&Attr>, got: Option<&Attr>) -> String {
    let parse = |a: Option<&Attr>| {
        a.map(expressions)
            .transpose()
            .map(Option::unwrap_or_default)
    };
    match (parse(want), parse(got)) {
        (Ok(w), Ok(g)) => {
            for (i, (a, b)) in w.iter().zip(&g).enumerate() {
                if a != b {
                    return format!(
                        "expression {} ({}): image {}, kernel {}",
                        i + 1,
                        a.name,
                        shown(Some(&a.to_attr())),
                        shown(Some(&b.to_attr()))
                    );
                }
            }
            format!("expressions: image {}, kernel {}", w.len(), g.len())
        }
        (Err(e), _) | (_, Err(e)) => format!("expressions: {e}"),
    }
}

/// A table's objects by kind and name (objects by type and name; rules by chain, in order).
type Index<'a> = BTreeMap<(Kind, String), Vec<&'a Object>>;

fn index(objects: &[Object]) -> HashMap<(u8, String), Index<'_>> {
    let mut out: HashMap<(u8, String), Index<'_>> = HashMap::new();
    for o in objects {
        let table = (o.family, o.table().unwrap_or("").to_string());
        let name = match o.kind {
            Kind::Rule => o.chain().unwrap_or("").to_string(),
            Kind::Object => format!(
                "{} {}",
                o.object_type().unwrap_or(0),
                o.name().unwrap_or("")
            ),
            _ => o.name().unwrap_or("").to_string(),
        };
        out.entry(table)
            .or_default()
            .entry((o.kind, name))
            .or_default()
            .push(o);
    }
    out
}

/// Differences between the image's firewall and the kernel's (`dumped`), each naming the
/// object and the field: `chain inet filt input: policy: image 0, kernel 1`,
/// `rule 2 of chain inet filt input: expression 3 (cmp): image ..., kernel ...`,
/// `set inet filt s4: elements: 2 in the image are not in the kernel`.
pub fn diffs(image: &NetnsImage, dumped: &[NftMessage]) -> Result<Vec<String>, String> {
    let want: Vec<Object> = image
        .nftables
        .iter()
        .map(|r| Object::decode(r).and_then(normalized))
        .collect::<Result<_, _>>()?;
    let got: Vec<Object> = organize(dumped)?
        .into_iter()
        .map(normalized)
        .collect::<Result<_, _>>()?;
    let (want_index, got_index) = (index(&want), index(&got));
    let mut out = Vec::new();
    for (table, want_objects) in &want_index {
        let Some(got_objects) = got_index.get(table) else {
            out.push(format!(
                "table {} {}: missing",
                family_name(table.0),
                table.1
            ));
            continue;
        };
        let keys: std::collections::BTreeSet<&(Kind, String)> =
            want_objects.keys().chain(got_objects.keys()).collect();
        for key in keys {
            if key.0 == Kind::Elements && moving(want_objects, &key.1) {
                continue;
            }
            let w = want_objects.get(key).map(Vec::as_slice).unwrap_or_default();
            let g = got_objects.get(key).map(Vec::as_slice).unwrap_or_default();
            compare_group(key.0, w, g, &mut out)?;
        }
    }
    Ok(out)
}

/// Whether set `name` of a table is one whose elements change by themselves: a dynamic set
/// (packets add to it) or one whose elements time out. Its elements are restored, not
/// compared: traffic or time may have changed them by the time they are read back.
fn moving(objects: &Index<'_>, name: &str) -> bool {
    objects
        .get(&(Kind::Set, name.to_string()))
        .and_then(|s| s.first())
        .and_then(|s| nft::find_be32(&s.attrs, nft::set::FLAGS))
        .is_some_and(|flags| flags & (nft::set::F_EVAL | nft::set::F_TIMEOUT) != 0)
}

/// Compares the image's and the kernel's objects of one kind and name.
fn compare_group(
    kind: Kind,
    want: &[&Object],
    got: &[&Object],
    out: &mut Vec<String>,
) -> Result<(), String> {
    let any = want.first().or(got.first()).copied();
    let Some(any) = any else {
        return Ok(());
    };
    match kind {
        Kind::Elements => {
            let (w, g) = (element_set(want)?, element_set(got)?);
            if w != g {
                let missing = w.iter().filter(|e| !g.contains(e)).count();
                let extra = g.iter().filter(|e| !w.contains(e)).count();
                out.push(format!(
                    "set {} {}: elements: {missing} in the image are not in the kernel, {extra} in the kernel are not in the image",
                    any.table_label(),
                    any.name().unwrap_or("?")
                ));
            }
        }
        Kind::Rule => {
            for (i, pair) in want.iter().zip(got.iter()).enumerate() {
                field_diffs(&rule_label(pair.0, i + 1), pair.0, pair.1, out);
            }
            if want.len() != got.len() {
                out.push(format!(
                    "chain {} {}: rules: image {}, kernel {}",
                    any.table_label(),
                    any.chain().unwrap_or("?"),
                    want.len(),
                    got.len()
                ));
            }
        }
        _ => match (want.first(), got.first()) {
            (Some(w), Some(g)) => field_diffs(&w.label(), w, g, out),
            (Some(w), None) => out.push(format!("{}: missing", w.label())),
            (None, Some(g)) => out.push(format!("{}: not in the image", g.label())),
            (None, None) => {}
        },
    }
    Ok(())
}

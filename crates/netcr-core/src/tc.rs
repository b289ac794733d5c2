//! Traffic control (`tc`), a state family of its own: which objects the dump keeps (the
//! qdiscs the user made, ingress and clsact included, the classes that `tc class add` makes,
//! every filter of every chain with its actions), how they are stored (the kernel's message,
//! its statistics and bookkeeping left out, devices by name, mirred targets too), how an
//! image's objects are checked, the order the restore creates them in, and how the restored
//! ones are compared with the image.
//!
//! What cannot be made again is refused by name at dump time (`--leave-out tc`): BPF
//! filters and actions (the program is gone), filter and action kinds whose options netcr
//! cannot walk (a device index could hide in them), shared blocks, chain templates and
//! empty chains, a mirred target outside the namespace.

use std::collections::{BTreeMap, HashMap, HashSet};

use netcr_image::{v1, NetnsImage};
use netcr_netlink::raw::{attribute, attributes_flagged};
use netcr_netlink::tc::{
    handle_text, major, minor, TcHeader, RTM_DELQDISC, RTM_GETACTION, RTM_GETCHAIN, RTM_GETQDISC,
    RTM_GETTCLASS, RTM_GETTFILTER, RTM_NEWACTION, RTM_NEWCHAIN, RTM_NEWQDISC, RTM_NEWTCLASS,
    RTM_NEWTFILTER, TCA_ACT_IN_HW_COUNT, TCA_ACT_KIND, TCA_ACT_OPTIONS, TCA_ACT_PAD, TCA_ACT_STATS,
    TCA_ACT_TAB, TCA_ACT_USED_HW_STATS, TCA_CHAIN, TCA_DUMP_FLAGS, TCA_DUMP_INVISIBLE,
    TCA_EGRESS_BLOCK, TCA_EXT_WARN_MSG, TCA_FCNT, TCA_HW_OFFLOAD, TCA_INGRESS_BLOCK, TCA_KIND,
    TCA_OPTIONS, TCA_PAD, TCA_STATS, TCA_STATS2, TCA_XSTATS, TCMSG_LEN, TC_H_INGRESS,
    TC_H_MIN_EGRESS, TC_H_MIN_INGRESS, TC_H_ROOT,
};
use netcr_netlink::{RawMessage, Request, Transport};

use crate::state::{IndexOf, NameOf};

/// Qdisc kinds whose classes `tc class add` makes; other kinds' classes are their own
/// (prio's bands, tbf's child slot, fq_codel's flows) and come back with the qdisc.
const CLASSFUL: [&str; 4] = ["htb", "hfsc", "drr", "qfq"];

/// `TCA_HTB_INIT` in an htb qdisc's options: `struct tc_htb_glob`, whose `direct_pkts`
/// (offset 16) is a counter, and whose `version` the kernel reports in full (3.17:
/// 0x30011) but takes as its major number only (3).
const TCA_HTB_INIT: u16 = 2;

/// An htb qdisc's `struct tc_htb_glob` as the kernel takes it.
fn htb_glob(v: &[u8]) -> Vec<u8> {
    let mut v = zero(v, 16, 4);
    let version = u32_of(&v);
    if version > 0xffff && v.len() >= 4 {
        v[..4].copy_from_slice(&(version >> 16).to_ne_bytes());
    }
    v
}

/// What netcr knows of a filter kind's options: where its actions are (a list of actions,
/// and the legacy single police action), what is statistics, and which flags the kernel
/// adds (`in_hw`, `not_in_hw`: only skip_hw and skip_sw are the user's).
struct FilterKind {
    name: &'static str,
    actions: Option<u16>,
    police: Option<u16>,
    dropped: &'static [u16],
    flags: Option<u16>,
    /// u32's `TCA_U32_MARK`: `struct tc_u32_mark`, whose `success` (offset 8) is a counter.
    mark: Option<u16>,
}

const FILTER_KINDS: &[FilterKind] = &[
    FilterKind {
        name: "u32",
        actions: Some(7),
        police: Some(6),
        dropped: &[9, 12],
        flags: Some(11),
        mark: Some(10),
    },
    FilterKind {
        name: "matchall",
        actions: Some(2),
        police: None,
        dropped: &[4, 5],
        flags: Some(3),
        mark: None,
    },
    FilterKind {
        name: "basic",
        actions: Some(3),
        police: Some(4),
        dropped: &[5, 6],
        flags: None,
        mark: None,
    },
    FilterKind {
        name: "flower",
        actions: Some(3),
        police: None,
        dropped: &[86],
        flags: Some(22),
        mark: None,
    },
    FilterKind {
        name: "fw",
        actions: Some(4),
        police: Some(2),
        dropped: &[],
        flags: None,
        mark: None,
    },
    FilterKind {
        name: "cgroup",
        actions: Some(1),
        police: Some(2),
        dropped: &[],
        flags: None,
        mark: None,
    },
    FilterKind {
        name: "route",
        actions: Some(6),
        police: Some(5),
        dropped: &[],
        flags: None,
        mark: None,
    },
];

/// What netcr knows of an action kind's options: (kind, install/use times `*_TM`, padding,
/// parameters, offset of `refcnt` in the parameters; `bindcnt` follows it).
const ACTION_KINDS: &[(&str, u16, u16, u16, usize)] = &[
    ("gact", 1, 4, 2, 12),
    ("mirred", 1, 3, 2, 12),
    ("skbedit", 1, 6, 2, 12),
    ("police", 6, 7, 1, 44),
    ("pedit", 1, 3, 2, 12),
    ("vlan", 1, 5, 2, 12),
    ("csum", 2, 3, 1, 12),
    ("nat", 2, 3, 1, 12),
    ("tunnel_key", 1, 8, 2, 12),
    ("connmark", 2, 3, 1, 12),
    ("ct", 2, 15, 1, 12),
    ("sample", 1, 6, 2, 12),
    ("skbmod", 1, 6, 2, 12),
    ("mpls", 1, 3, 2, 12),
    ("simple", 1, 4, 2, 12),
];

/// `struct tc_mirred`: `tc_gen` (20 bytes), `eaction`, then `ifindex` at this offset.
const MIRRED_IFINDEX_AT: usize = 24;

/// Everything a dump read of a namespace's traffic control, as the kernel sent it.
#[derive(Debug, Default, Clone)]
pub struct Dumped {
    /// Qdisc messages (every one, the kernel's own included).
    pub qdiscs: Vec<RawMessage>,
    /// Class messages of the devices that have a qdisc the user made.
    pub classes: Vec<RawMessage>,
    /// Filter messages of every parent that can hold filters.
    pub filters: Vec<RawMessage>,
    /// Chain messages of the same parents.
    pub chains: Vec<RawMessage>,
    /// The action table, kind by kind (the actions of filters are there too).
    pub actions: Vec<RawMessage>,
}

fn header(m: &RawMessage) -> TcHeader {
    TcHeader::parse(&m.body).unwrap_or_default()
}

fn attrs(body: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    attributes_flagged(body.get(TCMSG_LEN..).unwrap_or(&[]))
}

fn find<'a>(list: &[(u16, &'a [u8])], kind: u16) -> Option<&'a [u8]> {
    list.iter()
        .find(|(k, _)| k & 0x3fff == kind)
        .map(|(_, v)| *v)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(&[])).into_owned()
}

fn u32_of(b: &[u8]) -> u32 {
    b.get(..4)
        .map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
        .unwrap_or(0)
}

/// The kind (`TCA_KIND`) of a tc message body, if it has one.
pub fn kind_of(body: &[u8]) -> Option<String> {
    attrs(body).ok().and_then(|a| find(&a, TCA_KIND).map(text))
}

/// The chain (`TCA_CHAIN`) of a filter message body; 0 when it has none.
pub fn chain_of(body: &[u8]) -> u32 {
    attrs(body)
        .ok()
        .and_then(|a| find(&a, TCA_CHAIN).map(u32_of))
        .unwrap_or(0)
}

/// Whether a qdisc is one the user made: the kernel's own (noqueue, pfifo_fast, mq and its
/// children, net.core.default_qdisc, a new class's default pfifo) have handle 0.
pub fn is_user_qdisc(h: &TcHeader) -> bool {
    h.handle >> 16 != 0
}

/// The parents a qdisc's filters hang off: ingress (and egress for clsact), or its handle.
fn filter_parents(h: &TcHeader, kind: &str) -> Vec<u32> {
    match kind {
        "clsact" => vec![
            major(h.handle) | TC_H_MIN_INGRESS,
            major(h.handle) | TC_H_MIN_EGRESS,
        ],
        "ingress" => vec![major(h.handle) | TC_H_MIN_INGRESS],
        _ => vec![h.handle],
    }
}

fn tcmsg(ifindex: u32, parent: u32) -> Vec<u8> {
    TcHeader {
        ifindex,
        parent,
        ..Default::default()
    }
    .bytes()
}

/// A dump that some parents do not answer (a qdisc without classes or filters: EINVAL,
/// EOPNOTSUPP) holds nothing.
fn dump_or_none(
    rtnl: &mut dyn Transport,
    kind: u16,
    body: Vec<u8>,
    answer: u16,
    context: &str,
) -> netcr_netlink::Result<Vec<RawMessage>> {
    match rtnl.dump_raw(RawMessage { kind, body }, context) {
        Ok(list) => Ok(list.into_iter().filter(|m| m.kind == answer).collect()),
        Err(e)
            if matches!(
                e.errno(),
                Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT)
            ) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// Reads a namespace's traffic control: every qdisc, then the classes, filters (every chain)
/// and chains of the devices holding a qdisc the user made.
pub fn read(rtnl: &mut dyn Transport) -> netcr_netlink::Result<Dumped> {
    let mut body = tcmsg(0, 0);
    body.extend(attribute(TCA_DUMP_INVISIBLE, &[]));
    let qdiscs: Vec<RawMessage> = rtnl
        .dump_raw(
            RawMessage {
                kind: RTM_GETQDISC,
                body,
            },
            "dumping qdiscs",
        )?
        .into_iter()
        .filter(|m| m.kind == RTM_NEWQDISC && m.body.len() >= TCMSG_LEN)
        .collect();
    let mut out = Dumped {
        qdiscs,
        ..Default::default()
    };
    let user: Vec<(TcHeader, String)> = out
        .qdiscs
        .iter()
        .map(|m| (header(m), kind_of(&m.body).unwrap_or_default()))
        .filter(|(h, _)| is_user_qdisc(h))
        .collect();
    let mut devices: Vec<u32> = user.iter().map(|(h, _)| h.ifindex).collect();
    devices.dedup();
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for ifindex in devices {
        let classes = dump_or_none(
            rtnl,
            RTM_GETTCLASS,
            tcmsg(ifindex, 0),
            RTM_NEWTCLASS,
            &format!("dumping the classes of device {ifindex}"),
        )?;
        for (h, kind) in user.iter().filter(|(h, _)| h.ifindex == ifindex) {
            parents.extend(filter_parents(h, kind).into_iter().map(|p| (ifindex, p)));
        }
        for c in &classes {
            parents.push((ifindex, header(c).handle));
        }
        out.classes.extend(classes);
    }
    for kind in crate::families::TC_ACTION_KINDS {
        let mut name = kind.as_bytes().to_vec();
        name.push(0);
        let one = attribute(1, &attribute(TCA_ACT_KIND, &name));
        let mut body = vec![0u8; 4];
        body.extend(attribute(TCA_ACT_TAB | 0x8000, &one));
        // The kernel answers an action dump with the request's own type.
        let answer = |m: &RawMessage| m.kind == RTM_NEWACTION || m.kind == RTM_GETACTION;
        match rtnl.dump_raw(
            RawMessage {
                kind: RTM_GETACTION,
                body,
            },
            &format!("dumping {kind} actions"),
        ) {
            Ok(list) => out.actions.extend(list.into_iter().filter(answer)),
            Err(e)
                if matches!(
                    e.errno(),
                    Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    for (ifindex, parent) in parents {
        let what = format!("device {ifindex} parent {}", handle_text(parent));
        out.filters.extend(dump_or_none(
            rtnl,
            RTM_GETTFILTER,
            tcmsg(ifindex, parent),
            RTM_NEWTFILTER,
            &format!("dumping the filters of {what}"),
        )?);
        out.chains.extend(dump_or_none(
            rtnl,
            RTM_GETCHAIN,
            tcmsg(ifindex, parent),
            RTM_NEWCHAIN,
            &format!("dumping the filter chains of {what}"),
        )?);
    }
    Ok(out)
}

/// Where a filter hangs: `ingress`, `egress` or `parent 1:`.
fn filter_place(parent: u32) -> String {
    match minor(parent) {
        TC_H_MIN_INGRESS if major(parent) == 0xffff_0000 => "ingress".into(),
        TC_H_MIN_EGRESS if major(parent) == 0xffff_0000 => "egress".into(),
        _ => format!("parent {}", handle_text(parent)),
    }
}

/// `ip`, `all`, `ipv6` or the number: a filter's protocol (tcm_info's low 16 bits, network
/// order).
fn protocol_text(info: u32) -> String {
    match u16::from_be(info as u16) {
        0x0003 => "all".into(),
        0x0800 => "ip".into(),
        0x86dd => "ipv6".into(),
        0x0806 => "arp".into(),
        0x8100 => "802.1Q".into(),
        p => format!("0x{p:04x}"),
    }
}

/// A tc object as `tc` names it: `qdisc tbf 1: root dev va`, `class htb 1:10 parent 1:1 dev
/// vc`, `filter u32 dev vb ingress pref 1 protocol ip chain 0 handle 800::800`.
pub fn describe(kind: u32, dev: &str, body: &[u8]) -> String {
    let h = TcHeader::parse(body).unwrap_or_default();
    let what = kind_of(body).unwrap_or_else(|| "(no kind)".into());
    match kind as u16 {
        RTM_NEWQDISC => {
            let place = match h.parent {
                TC_H_ROOT => "root".to_string(),
                TC_H_INGRESS => "ingress".to_string(),
                p => format!("parent {}", handle_text(p)),
            };
            format!("qdisc {what} {} {place} dev {dev}", handle_text(h.handle))
        }
        RTM_NEWTCLASS => format!(
            "class {what} {} parent {} dev {dev}",
            handle_text(h.handle),
            handle_text(h.parent)
        ),
        _ => format!(
            "filter {what} dev {dev} {} pref {} protocol {} chain {} handle 0x{:x}",
            filter_place(h.parent),
            h.info >> 16,
            protocol_text(h.info),
            chain_of(body),
            h.handle
        ),
    }
}

/// Rebuilds a nested attribute list, each attribute through `f` (`None` drops it).
fn rebuild<'a>(
    list: &[(u16, &'a [u8])],
    mut f: impl FnMut(u16, &'a [u8]) -> Result<Option<Vec<u8>>, String>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (kind, value) in list {
        if let Some(v) = f(kind & 0x3fff, value)? {
            out.extend(attribute(*kind, &v));
        }
    }
    Ok(out)
}

fn zero(bytes: &[u8], at: usize, len: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    if let Some(s) = v.get_mut(at..at + len) {
        s.fill(0);
    }
    v
}

/// What a mirred action's target becomes: at dump time the index is named, at restore time
/// the name gives the restored device's index.
pub type OnMirred<'a> = dyn FnMut(u32) -> Result<u32, String> + 'a;

/// One action's options, normalized (times, padding, reference counts out), its mirred
/// target through `on_mirred`.
fn action_options(
    kind: &str,
    opts: &[u8],
    on_mirred: &mut OnMirred<'_>,
) -> Result<Vec<u8>, String> {
    let Some(&(_, tm, pad, parms, refcnt)) = ACTION_KINDS.iter().find(|a| a.0 == kind) else {
        return Err(match kind {
            "bpf" => "a bpf action (its BPF program cannot be re-created from a dump)".into(),
            _ => format!("a {kind} action (netcr does not know its options)"),
        });
    };
    let list = attributes_flagged(opts)?;
    rebuild(&list, |k, v| {
        if k == tm || k == pad {
            return Ok(None);
        }
        if k != parms {
            return Ok(Some(v.to_vec()));
        }
        let mut v = zero(v, refcnt, 8);
        if kind == "mirred" {
            let at = MIRRED_IFINDEX_AT;
            let Some(slot) = v.get_mut(at..at + 4) else {
                return Err("a mirred action's parameters are too short".into());
            };
            let ifindex = u32_of(slot);
            slot.copy_from_slice(&on_mirred(ifindex)?.to_ne_bytes());
        }
        Ok(Some(v))
    })
}

/// A list of actions (`TCA_*_ACT`), normalized.
fn actions(list: &[u8], on_mirred: &mut OnMirred<'_>) -> Result<Vec<u8>, String> {
    let list = attributes_flagged(list)?;
    rebuild(&list, |_, action| {
        let a = attributes_flagged(action)?;
        let kind = find(&a, TCA_ACT_KIND)
            .map(text)
            .ok_or("an action without a kind")?;
        let v = rebuild(&a, |k, v| match k {
            TCA_ACT_STATS | TCA_ACT_PAD | TCA_ACT_USED_HW_STATS | TCA_ACT_IN_HW_COUNT => Ok(None),
            TCA_ACT_OPTIONS => action_options(&kind, v, on_mirred).map(Some),
            _ => Ok(Some(v.to_vec())),
        })?;
        Ok(Some(v))
    })
}

/// A filter's options, normalized.
fn filter_options(
    kind: &str,
    opts: &[u8],
    on_mirred: &mut OnMirred<'_>,
) -> Result<Vec<u8>, String> {
    let Some(fk) = FILTER_KINDS.iter().find(|f| f.name == kind) else {
        return Err(match kind {
            "bpf" => "a bpf filter (its BPF program cannot be re-created from a dump)".into(),
            _ => format!("a {kind} filter (netcr does not know its options)"),
        });
    };
    let list = attributes_flagged(opts)?;
    rebuild(&list, |k, v| {
        if fk.dropped.contains(&k) {
            Ok(None)
        } else if Some(k) == fk.actions {
            actions(v, on_mirred).map(Some)
        } else if Some(k) == fk.police {
            action_options("police", v, on_mirred).map(Some)
        } else if Some(k) == fk.flags {
            // skip_hw and skip_sw are the user's; in_hw and not_in_hw the kernel's.
            Ok(Some((u32_of(v) & 3).to_ne_bytes().to_vec()))
        } else if Some(k) == fk.mark {
            Ok(Some(zero(v, 8, 4)))
        } else {
            Ok(Some(v.to_vec()))
        }
    })
}

/// A tc message body as the image keeps it: ifindex 0, tcm_info of qdiscs and classes
/// (reference counts, a leaf's qdisc) 0, statistics and the kernel's bookkeeping out, actions
/// normalized, mirred targets through `on_mirred`. An error names what cannot be kept.
pub fn normalize(kind: u32, body: &[u8], on_mirred: &mut OnMirred<'_>) -> Result<Vec<u8>, String> {
    let mut h = TcHeader::parse(body).ok_or("a tc message shorter than struct tcmsg")?;
    h.ifindex = 0;
    if kind as u16 != RTM_NEWTFILTER {
        h.info = 0;
    }
    let list = attrs(body)?;
    let what = find(&list, TCA_KIND).map(text).unwrap_or_default();
    let rest = rebuild(&list, |k, v| match k {
        TCA_STATS | TCA_XSTATS | TCA_FCNT | TCA_STATS2 | TCA_PAD | TCA_DUMP_INVISIBLE
        | TCA_HW_OFFLOAD | TCA_DUMP_FLAGS | TCA_EXT_WARN_MSG => Ok(None),
        TCA_INGRESS_BLOCK | TCA_EGRESS_BLOCK if u32_of(v) != 0 => Err(format!(
            "a shared block ({} {})",
            if k == TCA_INGRESS_BLOCK {
                "ingress_block"
            } else {
                "egress_block"
            },
            u32_of(v)
        )),
        TCA_INGRESS_BLOCK | TCA_EGRESS_BLOCK => Ok(None),
        TCA_OPTIONS if kind as u16 == RTM_NEWTFILTER => {
            filter_options(&what, v, on_mirred).map(Some)
        }
        TCA_OPTIONS if kind as u16 == RTM_NEWQDISC && what == "htb" => {
            let opts = attributes_flagged(v)?;
            rebuild(&opts, |k, v| {
                Ok(Some(if k == TCA_HTB_INIT {
                    htb_glob(v)
                } else {
                    v.to_vec()
                }))
            })
            .map(Some)
        }
        _ => Ok(Some(v.to_vec())),
    })?;
    if kind as u16 == RTM_NEWTFILTER && find(&list, TCA_OPTIONS).is_none() && what == "bpf" {
        return Err("a bpf filter (its BPF program cannot be re-created from a dump)".into());
    }
    let mut out = h.bytes();
    out.extend(rest);
    Ok(out)
}

/// What a dump keeps of a namespace's traffic control.
#[derive(Debug, Default)]
pub struct Kept {
    /// The records, in the order a restore creates them.
    pub records: Vec<v1::TcObject>,
    /// What cannot be kept, each named (`filter bpf dev vb ingress ...: a bpf filter ...`).
    pub refused: Vec<String>,
    /// Objects left out over a device the image does not hold (left out itself).
    pub left_out: Vec<String>,
}

/// The order a device's qdiscs and classes are created in: top-level qdiscs, then each
/// class and child qdisc after its parent. What has no parent among them is returned apart.
/// A class of a qdisc in `classful` (majors of htb, hfsc, drr, qfq ones) is there only if
/// it is among them; other qdiscs' classes (prio's bands) come with the qdisc.
fn tree_order<T: Copy>(items: &[(u16, TcHeader, T)], classful: &HashSet<u32>) -> (Vec<T>, Vec<T>) {
    let recorded: HashSet<u32> = items
        .iter()
        .filter(|(k, _, _)| *k == RTM_NEWTCLASS)
        .map(|(_, h, _)| h.handle)
        .collect();
    let mut majors: HashSet<u32> = HashSet::new();
    let mut classes: HashSet<u32> = HashSet::new();
    let mut placed = vec![false; items.len()];
    let mut order = Vec::new();
    loop {
        let mut progress = false;
        for (i, (k, h, t)) in items.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let parent_there = |p: u32| {
                majors.contains(&major(p))
                    && (minor(p) == 0
                        || classes.contains(&p)
                        || !(recorded.contains(&p) || classful.contains(&major(p))))
            };
            let ok = match *k {
                RTM_NEWQDISC => {
                    h.parent == TC_H_ROOT || h.parent == TC_H_INGRESS || parent_there(h.parent)
                }
                // A class at the top of its qdisc's tree has parent TC_H_ROOT.
                _ if h.parent == TC_H_ROOT => {
                    major(h.handle) != 0 && majors.contains(&major(h.handle))
                }
                _ => major(h.handle) != 0 && parent_there(h.parent),
            };
            if ok {
                placed[i] = true;
                progress = true;
                if *k == RTM_NEWQDISC {
                    majors.insert(major(h.handle));
                } else {
                    classes.insert(h.handle);
                }
                order.push(*t);
            }
        }
        if !progress {
            break;
        }
    }
    let orphans = items
        .iter()
        .zip(placed)
        .filter(|(_, p)| !p)
        .map(|((_, _, t), _)| *t)
        .collect();
    (order, orphans)
}

/// The root hash table of each u32 classifier (device, parent, priority and protocol,
/// chain): the last hash table in its messages (newer ones go first).
fn u32_roots(filters: &[&RawMessage]) -> HashMap<(u32, u32, u32, u32), u32> {
    let mut roots = HashMap::new();
    for m in filters {
        let h = header(m);
        if h.handle != 0 && h.handle & 0xfff == 0 && kind_of(&m.body).as_deref() == Some("u32") {
            roots.insert((h.ifindex, h.parent, h.info, chain_of(&m.body)), h.handle);
        }
    }
    roots
}

/// The records of `dumped`; `holds(dev)` says whether the image holds a device.
pub fn keep(dumped: &Dumped, name_of: &NameOf<'_>, holds: &dyn Fn(&str) -> bool) -> Kept {
    let mut kept = Kept::default();
    let dev_of = |m: &RawMessage| name_of(header(m).ifindex);
    // Qdisc kinds by (device, major): which classes are the user's.
    let mut qdisc_kind: HashMap<(u32, u32), String> = HashMap::new();
    let mut per_dev: BTreeMap<u32, Vec<(u16, TcHeader, usize)>> = BTreeMap::new();
    let mut all: Vec<&RawMessage> = Vec::new();
    for m in &dumped.qdiscs {
        let h = header(m);
        if is_user_qdisc(&h) {
            qdisc_kind.insert(
                (h.ifindex, major(h.handle)),
                kind_of(&m.body).unwrap_or_default(),
            );
            per_dev
                .entry(h.ifindex)
                .or_default()
                .push((RTM_NEWQDISC, h, all.len()));
            all.push(m);
        }
    }
    for m in &dumped.classes {
        let h = header(m);
        let owner = qdisc_kind
            .get(&(h.ifindex, major(h.handle)))
            .map(String::as_str)
            .unwrap_or("");
        if CLASSFUL.contains(&owner) {
            per_dev
                .entry(h.ifindex)
                .or_default()
                .push((RTM_NEWTCLASS, h, all.len()));
            all.push(m);
        }
    }
    let mut order: Vec<usize> = Vec::new();
    for (ifindex, items) in per_dev {
        let classful: HashSet<u32> = qdisc_kind
            .iter()
            .filter(|((i, _), kind)| *i == ifindex && CLASSFUL.contains(&kind.as_str()))
            .map(|((_, m), _)| *m)
            .collect();
        let (placed, orphans) = tree_order(&items, &classful);
        order.extend(placed);
        for i in orphans {
            let m = all[i];
            let dev = dev_of(m).unwrap_or_default();
            kept.refused.push(format!(
                "{}: its parent is not there",
                describe(u32::from(m.kind), &dev, &m.body)
            ));
        }
    }
    let mut seen_filters = HashSet::new();
    let mut filters: Vec<&RawMessage> = dumped
        .filters
        .iter()
        // A device's filters can be dumped twice (a class and its qdisc share a block).
        .filter(|m| seen_filters.insert(m.body.clone()))
        .collect();
    let roots = u32_roots(&filters);
    // u32 classifiers in the order of their root hash tables: the kernel numbers a new
    // one's next (800:, 801:, ... per qdisc), so made in that order they get theirs back.
    filters.sort_by_key(|m| {
        let h = header(m);
        let key = (h.ifindex, h.parent, h.info, chain_of(&m.body));
        (h.ifindex, roots.get(&key).copied().unwrap_or(0))
    });
    for m in filters {
        order.push(all.len());
        all.push(m);
    }
    let mut filtered: HashSet<(u32, u32)> = HashSet::new();
    for i in order {
        let m = all[i];
        let h = header(m);
        let Some(dev) = dev_of(m) else {
            continue;
        };
        let what = describe(u32::from(m.kind), &dev, &m.body);
        if !holds(&dev) {
            kept.left_out.push(what);
            continue;
        }
        let mut mirred_devs = Vec::new();
        let mut on_mirred = |ifindex: u32| -> Result<u32, String> {
            match name_of(ifindex) {
                // The name is the reference: the index in the message is 0.
                Some(target) if holds(&target) => {
                    mirred_devs.push(target);
                    Ok(0)
                }
                Some(target) => Err(format!(
                    "a mirred action to \"{target}\", which the image leaves out"
                )),
                None => Err(format!(
                    "a mirred action to ifindex {ifindex}, which is not in the namespace"
                )),
            }
        };
        match normalize(u32::from(m.kind), &m.body, &mut on_mirred) {
            Ok(message) => {
                if m.kind == RTM_NEWTFILTER {
                    filtered.insert((h.ifindex, chain_of(&m.body)));
                }
                kept.records.push(v1::TcObject {
                    kind: u32::from(m.kind),
                    dev,
                    message,
                    mirred_devs,
                });
            }
            Err(why) => kept.refused.push(format!("{what}: {why}")),
        }
    }
    kept.refused.extend(standalone_actions(&dumped.actions));
    let mut seen_chains = HashSet::new();
    for c in &dumped.chains {
        if !seen_chains.insert(&c.body) {
            continue;
        }
        let h = header(c);
        let chain = chain_of(&c.body);
        let dev = dev_of(c).unwrap_or_else(|| format!("if{}", h.ifindex));
        let template = kind_of(&c.body);
        let place = filter_place(h.parent);
        if let Some(kind) = template {
            kept.refused.push(format!(
                "chain {chain} dev {dev} {place}: a {kind} template (netcr cannot keep templates yet)"
            ));
        } else if !filtered.contains(&(h.ifindex, chain)) {
            kept.refused.push(format!(
                "chain {chain} dev {dev} {place}: an empty chain (netcr cannot keep one yet)"
            ));
        }
    }
    kept
}

/// The actions of the action table that no filter holds (`tc actions add`): netcr keeps
/// actions with their filters only. An action of a kind whose parameters netcr does not know
/// is named whether bound or not (its filter is refused for it anyway).
fn standalone_actions(messages: &[RawMessage]) -> Vec<String> {
    let mut out = Vec::new();
    for m in messages {
        let Ok(top) = attributes_flagged(m.body.get(4..).unwrap_or(&[])) else {
            out.push("an action table that does not parse".into());
            continue;
        };
        let Some(tab) = find(&top, TCA_ACT_TAB) else {
            continue;
        };
        for (_, action) in attributes_flagged(tab).unwrap_or_default() {
            let a = attributes_flagged(action).unwrap_or_default();
            let kind = find(&a, TCA_ACT_KIND).map(text).unwrap_or_default();
            let opts = find(&a, TCA_ACT_OPTIONS)
                .and_then(|o| attributes_flagged(o).ok())
                .unwrap_or_default();
            match ACTION_KINDS.iter().find(|k| k.0 == kind) {
                Some(&(_, _, _, parms, refcnt)) => {
                    let p = find(&opts, parms).unwrap_or(&[]);
                    let index = u32_of(p);
                    let bindcnt = p.get(refcnt + 4..).map(u32_of).unwrap_or(0);
                    if bindcnt == 0 {
                        out.push(format!(
                            "action {kind} index {index}: not held by any filter (netcr keeps actions with their filters only)"
                        ));
                    }
                }
                None => out.push(format!(
                    "action {kind}: netcr does not know its options{}",
                    if kind == "bpf" {
                        " (its BPF program cannot be re-created from a dump)"
                    } else {
                        ""
                    }
                )),
            }
        }
    }
    out
}

/// A classifier instance: device, parent, priority and protocol, chain.
type GroupKey = (String, u32, u32, u32);

/// The filter group a record belongs to: one classifier instance of a device (parent,
/// priority and protocol, chain), whose first message the kernel sends for the instance
/// itself (handle 0, no options).
fn group_key(rec: &v1::TcObject) -> Option<GroupKey> {
    let h = TcHeader::parse(&rec.message)?;
    (rec.kind as u16 == RTM_NEWTFILTER)
        .then(|| (rec.dev.clone(), h.parent, h.info, chain_of(&rec.message)))
}

/// Which records a restore sends, in the order it sends them, by position: every qdisc and
/// class as the image orders them; then each u32 classifier made bare (its own message:
/// handle 0, no options; the kernel gives it its root hash table, numbered in the order the
/// classifiers are made), then their other hash tables, then their keys (which may link to
/// any of those tables); then the elements of the other classifiers, a classifier's own
/// message only where it is all the classifier holds. A u32 root hash table is not sent:
/// the kernel made it with the classifier.
pub fn to_send(records: &[v1::TcObject]) -> Vec<usize> {
    let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
    let mut out = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        match group_key(rec) {
            None => out.push(i),
            Some(key) => match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            },
        }
    }
    let handle = |i: usize| TcHeader::parse(&records[i].message).map_or(0, |h| h.handle);
    let is_table = |i: usize| handle(i) != 0 && handle(i) & 0xfff == 0;
    let is_u32 = |members: &[usize]| {
        members
            .iter()
            .any(|&i| kind_of(&records[i].message).as_deref() == Some("u32"))
    };
    let (u32s, others): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(_, m)| is_u32(m));
    let mut tables = Vec::new();
    let mut keys = Vec::new();
    for (_, members) in &u32s {
        let root = members.iter().copied().rfind(|&i| is_table(i));
        for &i in members {
            if handle(i) == 0 {
                out.push(i);
            } else if Some(i) == root {
            } else if is_table(i) {
                tables.push(i);
            } else {
                keys.push(i);
            }
        }
    }
    out.extend(tables);
    out.extend(keys);
    for (_, members) in others {
        let elements: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| handle(i) != 0)
            .collect();
        if elements.is_empty() {
            out.extend(members.first());
        } else {
            out.extend(elements);
        }
    }
    out
}

/// The message that re-creates a record on the restored devices, `index_of` giving their
/// indexes (the record's own device and its mirred targets).
pub fn creation(rec: &v1::TcObject, index_of: &IndexOf<'_>) -> Result<RawMessage, String> {
    let what = describe(rec.kind, &rec.dev, &rec.message);
    let ifindex = crate::state::index(index_of, &rec.dev, &what)?;
    let mut targets = rec.mirred_devs.iter();
    let mut on_mirred = |_: u32| -> Result<u32, String> {
        let dev = targets
            .next()
            .ok_or_else(|| format!("{what}: more mirred actions than targets"))?;
        crate::state::index(index_of, dev, &what)
    };
    let mut body = normalize(rec.kind, &rec.message, &mut on_mirred)?;
    body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    Ok(RawMessage {
        kind: rec.kind as u16,
        body,
    })
}

/// Whether a record is a device's top-level qdisc (root, ingress, clsact): deleting it
/// removes everything under it.
pub fn is_top_qdisc(rec: &v1::TcObject) -> Option<TcHeader> {
    let h = TcHeader::parse(&rec.message)?;
    (rec.kind as u16 == RTM_NEWQDISC && (h.parent == TC_H_ROOT || h.parent == TC_H_INGRESS))
        .then_some(h)
}

/// The request that deletes the top-level qdisc `handle` at `parent` of device `ifindex`
/// (`dev` for messages), and with it everything under it.
pub fn delete_request(ifindex: u32, dev: &str, parent: u32, handle: u32) -> Request<RawMessage> {
    let body = TcHeader {
        ifindex,
        handle,
        parent,
        ..Default::default()
    }
    .bytes();
    Request::change(
        RawMessage {
            kind: RTM_DELQDISC,
            body,
        },
        format!(
            "removing the {} qdisc {} of \"{dev}\"",
            if parent == TC_H_INGRESS {
                "ingress"
            } else {
                "root"
            },
            handle_text(handle)
        ),
    )
}

/// Checks a namespace's tc records before anything changes: known message types, devices
/// the image holds, attribute framing, the kinds and actions netcr can re-create, one
/// mirred target by name for each mirred action, each object after its parent (qdiscs and
/// classes form a tree per device, filters hang off one of them), no object twice.
pub fn validate(ns: &NetnsImage, holds: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let mut per_dev: BTreeMap<&str, Vec<(u16, TcHeader, usize)>> = BTreeMap::new();
    let mut classful: HashMap<&str, HashSet<u32>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut parents: HashMap<&str, HashSet<u32>> = HashMap::new();
    for (i, rec) in ns.tc.iter().enumerate() {
        let n = i + 1;
        let kind = rec.kind as u16;
        if !matches!(kind, RTM_NEWQDISC | RTM_NEWTCLASS | RTM_NEWTFILTER) {
            return Err(format!("tc record {n}: unknown message type {}", rec.kind));
        }
        if rec.dev.is_empty() || !holds(&rec.dev) {
            return Err(format!(
                "tc record {n}: device \"{}\" is not in the image",
                rec.dev
            ));
        }
        let h = TcHeader::parse(&rec.message)
            .ok_or_else(|| format!("tc record {n}: shorter than struct tcmsg"))?;
        let what = describe(rec.kind, &rec.dev, &rec.message);
        if h.ifindex != 0 {
            return Err(format!("{what}: holds a device index"));
        }
        let list = attrs(&rec.message).map_err(|e| format!("{what}: {e}"))?;
        if find(&list, TCA_KIND).is_none_or(|k| text(k).is_empty()) {
            return Err(format!("tc record {n} on \"{}\": no kind", rec.dev));
        }
        for dev in &rec.mirred_devs {
            if !holds(dev) {
                return Err(format!(
                    "{what}: a mirred action to \"{dev}\", which is not in the image"
                ));
            }
        }
        let mut count = 0usize;
        normalize(rec.kind, &rec.message, &mut |ifindex| {
            count += 1;
            Ok(ifindex)
        })
        .map_err(|e| format!("{what}: {e}"))?;
        if count != rec.mirred_devs.len() {
            return Err(format!(
                "{what}: {count} mirred actions, {} targets",
                rec.mirred_devs.len()
            ));
        }
        let identity = match kind {
            RTM_NEWTFILTER => (kind, h.parent, h.info, chain_of(&rec.message), h.handle),
            RTM_NEWQDISC => (kind, 0, 0, 0, major(h.handle)),
            _ => (kind, 0, 0, 0, h.handle),
        };
        if !seen.insert((rec.dev.as_str(), identity)) {
            return Err(format!("{what}: appears twice"));
        }
        if kind == RTM_NEWTFILTER {
            let there = parents.get(rec.dev.as_str());
            let parent_ok =
                there.is_some_and(|p| p.contains(&h.parent) || p.contains(&major(h.parent)));
            if !parent_ok {
                return Err(format!("{what}: its parent comes nowhere before it"));
            }
        } else {
            if kind == RTM_NEWQDISC && major(h.handle) == 0 {
                return Err(format!("{what}: a qdisc without a handle"));
            }
            let qkind = find(&list, TCA_KIND).map(text).unwrap_or_default();
            if kind == RTM_NEWQDISC && CLASSFUL.contains(&qkind.as_str()) {
                classful
                    .entry(rec.dev.as_str())
                    .or_default()
                    .insert(major(h.handle));
            }
            per_dev
                .entry(rec.dev.as_str())
                .or_default()
                .push((kind, h, i));
            let none = HashSet::new();
            let (order, orphans) = tree_order(
                &per_dev[rec.dev.as_str()],
                classful.get(rec.dev.as_str()).unwrap_or(&none),
            );
            if !orphans.is_empty() || order.last() != Some(&i) {
                return Err(format!("{what}: its parent comes nowhere before it"));
            }
            let p = parents.entry(rec.dev.as_str()).or_default();
            p.insert(h.handle);
            if kind == RTM_NEWQDISC {
                p.extend(filter_parents(&h, &qkind));
            }
        }
    }
    Ok(())
}

/// A device's traffic control as `netcr show` sums it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// The device.
    pub dev: String,
    /// Its qdiscs: `tbf 801f: root`, `pfifo 10: parent 1:10`, `clsact ffff: ingress`.
    pub qdiscs: Vec<String>,
    /// How many classes.
    pub classes: usize,
    /// How many classifiers (one per device, parent, priority, protocol and chain: what
    /// `tc filter add` makes), and how many elements they hold (u32 keys and hash tables).
    pub filters: usize,
    /// The mirred targets of its filters' actions.
    pub mirred_to: Vec<String>,
}

/// The records of a namespace summed up per device, in the image's order.
pub fn by_device(records: &[v1::TcObject]) -> Vec<DeviceSummary> {
    let mut out: Vec<DeviceSummary> = Vec::new();
    let mut groups = HashSet::new();
    for rec in records {
        let i = match out.iter().position(|d| d.dev == rec.dev) {
            Some(i) => i,
            None => {
                out.push(DeviceSummary {
                    dev: rec.dev.clone(),
                    qdiscs: Vec::new(),
                    classes: 0,
                    filters: 0,
                    mirred_to: Vec::new(),
                });
                out.len() - 1
            }
        };
        let d = &mut out[i];
        let h = TcHeader::parse(&rec.message).unwrap_or_default();
        let what = kind_of(&rec.message).unwrap_or_default();
        match rec.kind as u16 {
            RTM_NEWQDISC => {
                let place = match h.parent {
                    TC_H_ROOT => "root".to_string(),
                    TC_H_INGRESS => "ingress".to_string(),
                    p => format!("parent {}", handle_text(p)),
                };
                d.qdiscs
                    .push(format!("{what} {} {place}", handle_text(h.handle)));
            }
            RTM_NEWTCLASS => d.classes += 1,
            _ => {
                if let Some(key) = group_key(rec) {
                    if groups.insert(key) {
                        d.filters += 1;
                    }
                }
                for t in &rec.mirred_devs {
                    if !d.mirred_to.contains(t) {
                        d.mirred_to.push(t.clone());
                    }
                }
            }
        }
    }
    out
}

/// Differences between the image's tc records and those of the restored namespace
/// (`after`, kept the same way), each naming the object.
pub fn diffs(image: &[v1::TcObject], after: &[v1::TcObject]) -> Vec<String> {
    let key = |r: &v1::TcObject| {
        let h = TcHeader::parse(&r.message).unwrap_or_default();
        (
            r.kind,
            r.dev.clone(),
            h.parent,
            h.handle,
            h.info,
            chain_of(&r.message),
        )
    };
    let got: HashMap<_, &v1::TcObject> = after.iter().map(|r| (key(r), r)).collect();
    let want: HashSet<_> = image.iter().map(key).collect();
    let mut out = Vec::new();
    for rec in image {
        let what = describe(rec.kind, &rec.dev, &rec.message);
        match got.get(&key(rec)) {
            None => out.push(format!("{what}: missing")),
            Some(g) if g.message != rec.message => {
                out.push(format!("{what}: its settings differ from the image's"))
            }
            Some(g) if g.mirred_devs != rec.mirred_devs => out.push(format!(
                "{what}: mirred to {:?}, image {:?}",
                g.mirred_devs, rec.mirred_devs
            )),
            Some(_) => {}
        }
    }
    let devs: HashSet<&str> = image.iter().map(|r| r.dev.as_str()).collect();
    for rec in after {
        if devs.contains(rec.dev.as_str()) && !want.contains(&key(rec)) {
            out.push(format!(
                "{}: not in the image",
                describe(rec.kind, &rec.dev, &rec.message)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, ifindex: u32, handle: u32, parent: u32, attrs: &[Vec<u8>]) -> RawMessage {
        let mut body = TcHeader {
            ifindex,
            handle,
            parent,
            info: if kind == RTM_NEWTFILTER {
                1 << 16 | 8
            } else {
                7
            },
            ..Default::default()
        }
        .bytes();
        for a in attrs {
            body.extend(a);
        }
        RawMessage { kind, body }
    }

    fn kind(k: &str) -> Vec<u8> {
        let mut v = k.as_bytes().to_vec();
        v.push(0);
        attribute(TCA_KIND, &v)
    }

    /// A u32 filter element with one mirred action to `target` and the kernel's extras.
    fn mirred_filter(ifindex: u32, handle: u32, target: u32) -> RawMessage {
        let mut parms = vec![0u8; 28];
        parms[12..16].copy_from_slice(&1u32.to_ne_bytes());
        parms[16..20].copy_from_slice(&1u32.to_ne_bytes());
        parms[24..28].copy_from_slice(&target.to_ne_bytes());
        let mut opts = attribute(1, &[9u8; 32]);
        opts.extend(attribute(2, &parms));
        let mut action = attribute(TCA_ACT_KIND, b"mirred\0");
        action.extend(attribute(TCA_ACT_OPTIONS | 0x8000, &opts));
        action.extend(attribute(TCA_ACT_STATS | 0x8000, &[1u8; 8]));
        let mut u32opts = attribute(7 | 0x8000, &attribute(1 | 0x8000, &action));
        u32opts.extend(attribute(11, &9u32.to_ne_bytes()));
        u32opts.extend(attribute(9, &[5u8; 16]));
        msg(
            RTM_NEWTFILTER,
            ifindex,
            handle,
            0xffff_fff2,
            &[
                kind("u32"),
                attribute(TCA_OPTIONS | 0x8000, &u32opts),
                attribute(TCA_STATS2 | 0x8000, &[3u8; 8]),
            ],
        )
    }

    fn names(i: u32) -> Option<String> {
        ["", "lo", "zxa", "zxb"]
            .get(i as usize)
            .map(|s| s.to_string())
    }

    #[test]
    fn the_dump_keeps_settings_and_names_devices_and_mirred_targets() {
        let dumped = Dumped {
            qdiscs: vec![
                // The kernel's own noqueue (handle 0) is not kept.
                msg(RTM_NEWQDISC, 2, 0, TC_H_ROOT, &[kind("noqueue")]),
                msg(
                    RTM_NEWQDISC,
                    2,
                    0xffff_0000,
                    TC_H_INGRESS,
                    &[kind("ingress"), attribute(TCA_STATS2, &[1u8; 8])],
                ),
            ],
            filters: vec![mirred_filter(2, 0x8000_0800, 3)],
            ..Default::default()
        };
        let kept = keep(&dumped, &names, &|_| true);
        assert!(kept.refused.is_empty(), "{:?}", kept.refused);
        assert_eq!(kept.records.len(), 2);
        let q = &kept.records[0];
        assert_eq!((q.kind, q.dev.as_str()), (36, "zxa"));
        let h = TcHeader::parse(&q.message).unwrap();
        assert_eq!((h.ifindex, h.info), (0, 0), "index and refcount out");
        assert_eq!(q.message.len(), TCMSG_LEN + 12, "statistics out");
        let f = &kept.records[1];
        assert_eq!(f.mirred_devs, ["zxb"]);
        // Statistics, times, counts and the kernel's flags out; the target's index 0.
        let mut n = 0;
        let again = normalize(f.kind, &f.message, &mut |i| {
            n += 1;
            assert_eq!(i, 0);
            Ok(i)
        })
        .unwrap();
        assert_eq!(
            (again, n),
            (f.message.clone(), 1),
            "normalizing is idempotent"
        );
        let text = format!("{:?}", f.message);
        assert!(!f.message.windows(4).any(|w| w == [9, 9, 9, 9]), "{text}");
        assert!(!f.message.windows(4).any(|w| w == [5, 5, 5, 5]), "{text}");
        // The restore writes the restored device's index.
        let made = creation(f, &|d: &str| (d == "zxb").then_some(7).or(Some(4))).unwrap();
        assert_eq!(TcHeader::parse(&made.body).unwrap().ifindex, 4);
        assert!(made.body.windows(4).any(|w| w == 7u32.to_ne_bytes()));
    }

    #[test]
    fn what_cannot_be_made_again_is_refused_by_name() {
        let outside = Dumped {
            qdiscs: vec![msg(
                RTM_NEWQDISC,
                2,
                0xffff_0000,
                TC_H_INGRESS,
                &[kind("ingress")],
            )],
            filters: vec![
                mirred_filter(2, 0x8000_0800, 42),
                msg(
                    RTM_NEWTFILTER,
                    2,
                    1,
                    0xffff_fff2,
                    &[kind("bpf"), attribute(TCA_OPTIONS | 0x8000, &[])],
                ),
            ],
            ..Default::default()
        };
        let kept = keep(&outside, &names, &|_| true);
        assert_eq!(kept.refused.len(), 2, "{:?}", kept.refused);
        assert!(kept.refused[0].contains("ifindex 42, which is not in the namespace"));
        assert!(kept.refused[1].starts_with("filter bpf dev zxa ingress pref 1"));
        assert!(kept.refused[1].contains("BPF program cannot be re-created"));
    }

    #[test]
    fn u32_classifiers_are_made_bare_in_root_order_then_tables_then_keys() {
        let rec = |handle: u32, prio: u32| {
            let mut m = mirred_filter(2, handle, 3).body;
            m[16..20].copy_from_slice(&(prio << 16 | 8).to_ne_bytes());
            v1::TcObject {
                kind: 44,
                dev: "zxa".into(),
                message: m,
                mirred_devs: vec!["zxb".into()],
            }
        };
        // Classifier 1: its own message, a key, its root table 800:; classifier 2: its own
        // message, a table 2: of the user's, its root 801:, a key in 801: linking to 2:.
        let records = vec![
            rec(0, 1),
            rec(0x8000_0800, 1),
            rec(0x8000_0000, 1),
            rec(0, 2),
            rec(0x0020_0000, 2),
            rec(0x8010_0000, 2),
            rec(0x8010_0800, 2),
        ];
        assert_eq!(to_send(&records), vec![0, 3, 4, 1, 6]);
    }
}

//! Nexthop objects (`ip nexthop`), a state family of their own: which the dump keeps (every
//! one: the kernel makes none by itself), how they are stored (the kernel's message bodies
//! plus the device name, ids as they are), how an image's nexthops are checked, how the
//! restore turns them back into requests (single nexthops, then the groups made of them),
//! and how the restored ones are compared with the image.
//!
//! Ids are the namespace's own: routes (RTA_NH_ID) and groups (NHA_GROUP) refer to
//! nexthops by id, so the restore creates each nexthop under its image id, never replacing
//! one (NLM_F_EXCL).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use netcr_image::{v1, NetnsImage};
use netcr_netlink::nexthop::{
    NexthopAttribute as Nha, NexthopHeader, NexthopMessage, ResilientAttribute,
    NEXTHOP_GRP_TYPE_MPATH, NEXTHOP_GRP_TYPE_RES, RTM_DELNEXTHOP, RTM_NEWNEXTHOP, RTNH_F_ONLINK,
};
use netcr_netlink::{RawMessage, Request};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};

use crate::state::{self, IndexOf, NameOf};

/// Ticks per second of the kernel's clock_t values (USER_HZ; 100 on every Linux
/// architecture netcr builds for): resilient groups' timers, route expiry.
pub const USER_HZ: u32 = 100;

/// A stored nexthop, parsed back.
pub fn decode(rec: &v1::Nexthop) -> Result<NexthopMessage, String> {
    state::decode(&rec.message, "nexthop")
}

/// Whether a nexthop is a group: it refers to other nexthops, so it is made after them.
pub fn is_group(msg: &NexthopMessage) -> bool {
    msg.group().is_some()
}

/// The nexthop id a route uses (RTA_NH_ID), if it uses a nexthop object.
pub fn route_nexthop_id(msg: &RouteMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::NhId(id) => Some(*id),
        _ => None,
    })
}

/// A nexthop for the image: the kernel's message without the statistics a dump can carry
/// (the kernel's state, not configuration), its device by name.
pub fn record(msg: &NexthopMessage, name_of: &NameOf<'_>) -> v1::Nexthop {
    let mut kept = msg.clone();
    kept.attributes.retain(|a| {
        !matches!(
            a,
            Nha::GroupStats(_) | Nha::HwStatsUsed(_) | Nha::OpFlags(_)
        )
    });
    for attr in kept.attributes.iter_mut() {
        if let Nha::ResilientGroup(res) = attr {
            res.retain(|r| !matches!(r, ResilientAttribute::UnbalancedTime(_)));
        }
    }
    v1::Nexthop {
        dev: msg.oif().and_then(name_of).unwrap_or_default(),
        message: state::encode(&kept),
    }
}

/// What a dump keeps of a namespace's nexthops.
#[derive(Debug, Default)]
pub struct Kept {
    /// The records, in the kernel's order (by id).
    pub records: Vec<v1::Nexthop>,
    /// Ids left out: over a device the image does not hold (a device left out, or one made
    /// after the link dump), or groups holding such a nexthop. Routes using them are left
    /// out too.
    pub left_out: BTreeSet<u32>,
}

/// The records of `dumped`; `holds(dev)` says whether the image holds a device.
pub fn keep(dumped: &[NexthopMessage], name_of: &NameOf<'_>, holds: &dyn Fn(&str) -> bool) -> Kept {
    let mut kept = Kept::default();
    for msg in dumped.iter().filter(|m| !is_group(m)) {
        let rec = record(msg, name_of);
        if msg.oif().is_some() && (rec.dev.is_empty() || !holds(&rec.dev)) {
            kept.left_out.insert(msg.id());
        }
    }
    for msg in dumped.iter().filter(|m| is_group(m)) {
        let members = msg.group().unwrap_or_default();
        if members.iter().any(|m| kept.left_out.contains(&m.id)) {
            kept.left_out.insert(msg.id());
        }
    }
    kept.records = dumped
        .iter()
        .filter(|m| !kept.left_out.contains(&m.id()))
        .map(|m| record(m, name_of))
        .collect();
    kept
}

/// The request that re-creates a stored nexthop, and what of it is not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Creation {
    /// The nexthop's id.
    pub id: u32,
    /// The RTM_NEWNEXTHOP body.
    pub message: NexthopMessage,
    /// Attributes the kernel reported that netcr does not know, so does not send
    /// ("nexthop 4: attribute 42"), for the restore's warnings.
    pub left_out: Vec<String>,
}

/// The creation of a stored nexthop, its device resolved by `index_of`: what the kernel
/// takes on RTM_NEWNEXTHOP (id, gateway, device, blackhole, fdb, encapsulation, group and
/// its type and resilient parameters, hw_stats when on, the onlink flag, the protocol).
pub fn creation(rec: &v1::Nexthop, index_of: &IndexOf<'_>) -> Result<Creation, String> {
    let msg = decode(rec)?;
    let id = msg.id();
    let mut out = NexthopMessage {
        header: NexthopHeader {
            family: msg.header.family,
            protocol: msg.header.protocol,
            // Dead and linkdown are the kernel's view; scope is reported only.
            flags: msg.header.flags & RTNH_F_ONLINK,
            scope: 0,
            reserved: 0,
        },
        attributes: Vec::new(),
    };
    let mut left_out = Vec::new();
    for attr in msg.attributes {
        match attr {
            Nha::Oif(_) => {
                let what = format!("nexthop {id}");
                out.attributes
                    .push(Nha::Oif(state::index(index_of, &rec.dev, &what)?));
            }
            Nha::ResilientGroup(res) => {
                let mut sent = Vec::new();
                for r in res {
                    match r {
                        ResilientAttribute::Buckets(_)
                        | ResilientAttribute::IdleTimer(_)
                        | ResilientAttribute::UnbalancedTimer(_) => sent.push(r),
                        ResilientAttribute::UnbalancedTime(_) => {}
                        ResilientAttribute::Other(nla) => left_out.push(format!(
                            "nexthop {id}: resilient group attribute {}",
                            netcr_netlink::netlink_packet_core::Nla::kind(&nla)
                        )),
                    }
                }
                out.attributes.push(Nha::ResilientGroup(sent));
            }
            // Off is the default, and a kernel before 6.9 knows no such attribute.
            Nha::HwStatsEnable(0) => {}
            attr @ (Nha::Id(_)
            | Nha::Group(_)
            | Nha::GroupType(_)
            | Nha::Blackhole
            | Nha::Gateway(_)
            | Nha::EncapType(_)
            | Nha::Encap(_)
            | Nha::Fdb
            | Nha::HwStatsEnable(_)) => out.attributes.push(attr),
            // Dump filters and statistics: never configuration.
            Nha::Groups | Nha::Master(_) | Nha::OpFlags(_) | Nha::GroupStats(_) => {}
            Nha::HwStatsUsed(_) => {}
            Nha::Other(nla) => left_out.push(format!(
                "nexthop {id}: attribute {}",
                netcr_netlink::netlink_packet_core::Nla::kind(&nla)
            )),
        }
    }
    Ok(Creation {
        id,
        message: out,
        left_out,
    })
}

/// The request that adds a nexthop (never replacing one: NLM_F_EXCL).
pub fn create_request(creation: &Creation) -> Request<RawMessage> {
    Request::create(
        creation.message.to_raw(RTM_NEWNEXTHOP),
        format!("adding nexthop {}", creation.id),
    )
}

/// The request that deletes nexthop `id` (routes using it go with it).
pub fn delete_request(id: u32) -> Request<RawMessage> {
    let mut msg = NexthopMessage::default();
    msg.attributes.push(Nha::Id(id));
    Request::change(msg.to_raw(RTM_DELNEXTHOP), format!("removing nexthop {id}"))
}

/// Checks a namespace's nexthops before anything changes: each parses and has an id of its
/// own, its device by index and by name agree and the image holds the device, every
/// member of a group is a single nexthop of the image, and every route's nexthop id names
/// one. `holds(dev)` says whether the image holds a device.
pub fn validate(ns: &NetnsImage, holds: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let mut groups: HashMap<u32, bool> = HashMap::new();
    let mut parsed = Vec::with_capacity(ns.nexthops.len());
    for rec in &ns.nexthops {
        let msg = decode(rec)?;
        let id = msg.id();
        if id == 0 {
            return Err("a nexthop has no id".into());
        }
        if groups.insert(id, is_group(&msg)).is_some() {
            return Err(format!("nexthop id {id} appears twice"));
        }
        match (msg.oif(), rec.dev.is_empty()) {
            (Some(_), true) | (None, false) => {
                return Err(format!(
                    "nexthop {id}: its device by index does not match its device by name ({:?})",
                    rec.dev
                ))
            }
            (Some(_), false) if !holds(&rec.dev) => {
                return Err(format!(
                    "nexthop {id} uses \"{}\", which the image does not hold",
                    rec.dev
                ))
            }
            _ => {}
        }
        parsed.push(msg);
    }
    for msg in &parsed {
        for member in msg.group().unwrap_or_default() {
            match groups.get(&member.id) {
                None => {
                    return Err(format!(
                        "nexthop group {} holds nexthop {}, which the image does not hold",
                        msg.id(),
                        member.id
                    ))
                }
                Some(true) => {
                    return Err(format!(
                        "nexthop group {} holds nexthop group {} (groups do not nest)",
                        msg.id(),
                        member.id
                    ))
                }
                Some(false) => {}
            }
        }
    }
    for r in &ns.routes {
        let msg: RouteMessage = state::decode(&r.message, "route")?;
        if let Some(id) = route_nexthop_id(&msg) {
            if !groups.contains_key(&id) {
                return Err(format!(
                    "route {} uses nexthop {id}, which the image does not hold",
                    state::describe_route(&msg, r)
                ));
            }
        }
    }
    Ok(())
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn family(f: u8) -> String {
    match i32::from(f) {
        libc::AF_INET => "inet".into(),
        libc::AF_INET6 => "inet6".into(),
        libc::AF_UNSPEC => "unspec".into(),
        other => other.to_string(),
    }
}

/// Group members as `ip nexthop` writes them: `1,3/2,5` (a weight of 1 is not written).
fn members(msg: &NexthopMessage) -> String {
    msg.group()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            if m.weight == 1 {
                m.id.to_string()
            } else {
                format!("{},{}", m.id, m.weight)
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn group_type(msg: &NexthopMessage) -> u16 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            Nha::GroupType(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(NEXTHOP_GRP_TYPE_MPATH)
}

/// A resilient group's parameter, in seconds where it is a timer.
fn resilient(msg: &NexthopMessage, which: &str) -> Option<u64> {
    msg.attributes.iter().find_map(|a| match a {
        Nha::ResilientGroup(res) => res.iter().find_map(|r| match (which, r) {
            ("buckets", ResilientAttribute::Buckets(b)) => Some(u64::from(*b)),
            ("idle_timer", ResilientAttribute::IdleTimer(t))
            | ("unbalanced_timer", ResilientAttribute::UnbalancedTimer(t)) => {
                Some(u64::from(*t / USER_HZ))
            }
            _ => None,
        }),
        _ => None,
    })
}

fn encap(msg: &NexthopMessage) -> String {
    let kind = msg.attributes.iter().find_map(|a| match a {
        Nha::EncapType(t) => Some(*t),
        _ => None,
    });
    let data = msg.attributes.iter().find_map(|a| match a {
        Nha::Encap(d) => Some(d.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        _ => None,
    });
    match (kind, data) {
        (None, None) => "none".into(),
        (k, d) => format!(
            "type {} {}",
            k.map(|k| k.to_string()).unwrap_or_default(),
            d.unwrap_or_default()
        ),
    }
}

fn hw_stats(msg: &NexthopMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        Nha::HwStatsEnable(v) => Some(*v),
        _ => None,
    })
}

/// What the verification compares of a nexthop, field by field; `dev` is its device's name.
fn fields(msg: &NexthopMessage, dev: &str) -> Vec<(&'static str, String)> {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    vec![
        ("family", family(msg.header.family)),
        ("protocol", msg.header.protocol.to_string()),
        ("gateway", opt(msg.gateway().map(|g| g.to_string()))),
        (
            "device",
            if dev.is_empty() {
                "none".into()
            } else {
                dev.into()
            },
        ),
        ("onlink", yes(msg.header.flags & RTNH_F_ONLINK != 0)),
        ("blackhole", yes(msg.has(&Nha::Blackhole))),
        ("fdb", yes(msg.has(&Nha::Fdb))),
        ("encapsulation", encap(msg)),
        (
            "group",
            if is_group(msg) {
                members(msg)
            } else {
                "none".into()
            },
        ),
        ("group type", group_type(msg).to_string()),
        (
            "buckets",
            opt(resilient(msg, "buckets").map(|v| v.to_string())),
        ),
        (
            "idle_timer",
            opt(resilient(msg, "idle_timer").map(|v| v.to_string())),
        ),
        (
            "unbalanced_timer",
            opt(resilient(msg, "unbalanced_timer").map(|v| v.to_string())),
        ),
    ]
}

/// Differences between the image's nexthops and the kernel's (`after`, with the links
/// `after_links` naming their devices): each names the nexthop and the field,
/// `nexthop 1: gateway: image 10.1.0.2, kernel 10.1.0.3`.
pub fn diffs(
    image: &NetnsImage,
    after_links: &[LinkMessage],
    after: &[NexthopMessage],
) -> Vec<String> {
    let names = state::names_by_index(after_links);
    let by_id: HashMap<u32, &NexthopMessage> = after.iter().map(|n| (n.id(), n)).collect();
    let mut out = Vec::new();
    for rec in &image.nexthops {
        let Ok(want) = decode(rec) else {
            continue;
        };
        let id = want.id();
        let Some(got) = by_id.get(&id) else {
            out.push(format!("nexthop {id}: missing"));
            continue;
        };
        let got_dev = got
            .oif()
            .map(|i| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}")))
            .unwrap_or_default();
        let mut want_fields = fields(&want, &rec.dev);
        let mut got_fields = fields(got, &got_dev);
        // The kernel reports hw_stats only with statistics; compare it where it is on.
        if let Some(on @ 1..) = hw_stats(&want) {
            want_fields.push(("hw_stats", on.to_string()));
            got_fields.push(("hw_stats", hw_stats(got).unwrap_or(0).to_string()));
        }
        for ((name, w), (_, g)) in want_fields.into_iter().zip(got_fields) {
            if w != g {
                out.push(format!("nexthop {id}: {name}: image {w}, kernel {g}"));
            }
        }
    }
    out
}

/// A nexthop as `ip nexthop` shows it: `id 1 via 10.1.0.2 dev zxa onlink`,
/// `id 10 group 1,3/2,5`, `id 11 group 1/2 type resilient buckets 32 idle_timer 120 ...`,
/// `id 3 blackhole`; `dev` names its device.
pub fn describe(msg: &NexthopMessage, dev: &str) -> String {
    let mut out = format!("id {}", msg.id());
    if is_group(msg) {
        out.push_str(&format!(" group {}", members(msg)));
        if group_type(msg) == NEXTHOP_GRP_TYPE_RES {
            out.push_str(" type resilient");
            for which in ["buckets", "idle_timer", "unbalanced_timer"] {
                if let Some(v) = resilient(msg, which) {
                    out.push_str(&format!(" {which} {v}"));
                }
            }
        }
    }
    if let Some(gw) = msg.gateway() {
        let inet6 = matches!(gw, IpAddr::V6(_));
        if inet6 && i32::from(msg.header.family) == libc::AF_INET {
            out.push_str(&format!(" via inet6 {gw}"));
        } else {
            out.push_str(&format!(" via {gw}"));
        }
    }
    if msg.has(&Nha::Blackhole) {
        out.push_str(" blackhole");
    }
    if !dev.is_empty() {
        out.push_str(&format!(" dev {dev}"));
    }
    if msg
        .attributes
        .iter()
        .any(|a| matches!(a, Nha::EncapType(_)))
    {
        out.push_str(&format!(" encap {}", encap(msg)));
    }
    if msg.header.flags & RTNH_F_ONLINK != 0 {
        out.push_str(" onlink");
    }
    if msg.header.protocol != 0 {
        out.push_str(&format!(" proto {}", msg.header.protocol));
    }
    if msg.has(&Nha::Fdb) {
        out.push_str(" fdb");
    }
    if hw_stats(msg).is_some_and(|v| v != 0) {
        out.push_str(" hw_stats on");
    }
    out
}

/// A stored nexthop as `ip nexthop` shows it, or why it does not parse.
pub fn describe_record(rec: &v1::Nexthop) -> String {
    match decode(rec) {
        Ok(msg) => describe(&msg, &rec.dev),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcr_netlink::nexthop::NexthopGroupEntry;

    fn single(id: u32, dev: &str) -> v1::Nexthop {
        let mut msg = NexthopMessage::default();
        msg.header.family = libc::AF_INET as u8;
        msg.header.scope = 253;
        msg.header.flags = RTNH_F_ONLINK | 1;
        msg.attributes.push(Nha::Id(id));
        msg.attributes
            .push(Nha::Gateway("10.9.9.9".parse().unwrap()));
        msg.attributes.push(Nha::Oif(7));
        v1::Nexthop {
            dev: dev.into(),
            message: state::encode(&msg),
        }
    }

    fn group(id: u32, members: &[u32]) -> v1::Nexthop {
        let mut msg = NexthopMessage::default();
        msg.attributes.push(Nha::Id(id));
        msg.attributes.push(Nha::Group(
            members
                .iter()
                .map(|&id| NexthopGroupEntry { id, weight: 2 })
                .collect(),
        ));
        msg.attributes.push(Nha::GroupStats(vec![1, 2, 3, 4]));
        msg.attributes.push(Nha::HwStatsEnable(0));
        v1::Nexthop {
            dev: String::new(),
            message: state::encode(&msg),
        }
    }

    fn image(nexthops: Vec<v1::Nexthop>) -> NetnsImage {
        NetnsImage {
            nexthops,
            ..Default::default()
        }
    }

    #[test]
    fn a_creation_sends_what_the_kernel_takes_with_the_device_resolved_again() {
        let index_of = |d: &str| (d == "zxa").then_some(42);
        let c = creation(&single(4, "zxa"), &index_of).unwrap();
        assert_eq!(c.id, 4);
        // Onlink stays; dead (1) and the scope are the kernel's.
        assert_eq!(c.message.header.flags, RTNH_F_ONLINK);
        assert_eq!(c.message.header.scope, 0);
        assert_eq!(c.message.oif(), Some(42));
        assert!(c.left_out.is_empty());
        let err = creation(&single(4, "gone0"), &index_of).unwrap_err();
        assert!(err.contains("\"gone0\""), "{err}");

        let g = creation(&group(10, &[4]), &index_of).unwrap();
        assert_eq!(g.message.attributes.len(), 2, "{:?}", g.message);
    }

    #[test]
    fn a_dump_leaves_out_nexthops_over_devices_it_left_out_and_their_groups() {
        let msgs: Vec<NexthopMessage> = [
            single(1, ""),
            single(2, ""),
            group(10, &[1]),
            group(11, &[2]),
        ]
        .iter()
        .map(|r| decode(r).unwrap())
        .collect();
        let name_of = |i: u32| (i == 7).then(|| "zxa".to_string());
        let kept = keep(&msgs, &name_of, &|d| d == "zxa");
        assert!(kept.left_out.is_empty());
        assert_eq!(kept.records.len(), 4);
        // The group's statistics are not kept.
        assert!(!decode(&kept.records[2])
            .unwrap()
            .attributes
            .iter()
            .any(|a| matches!(a, Nha::GroupStats(_))));
        let kept = keep(&msgs, &name_of, &|_| false);
        assert_eq!(kept.left_out, BTreeSet::from([1, 2, 10, 11]));
        assert!(kept.records.is_empty());
    }

    #[test]
    fn validation_refuses_what_the_restore_could_not_make() {
        let holds = |d: &str| d == "zxa";
        assert_eq!(
            validate(&image(vec![single(1, "zxa"), group(10, &[1])]), &holds),
            Ok(())
        );
        for (nexthops, expect) in [
            (
                vec![single(1, "zxa"), single(1, "zxa")],
                "nexthop id 1 appears twice",
            ),
            (
                vec![single(1, "eth9")],
                "nexthop 1 uses \"eth9\", which the image does not hold",
            ),
            (vec![single(1, "")], "device by index does not match"),
            (
                vec![group(10, &[3])],
                "nexthop group 10 holds nexthop 3, which the image does not hold",
            ),
            (
                vec![single(1, "zxa"), group(10, &[1]), group(11, &[10])],
                "nexthop group 11 holds nexthop group 10 (groups do not nest)",
            ),
            (
                vec![v1::Nexthop {
                    dev: String::new(),
                    message: vec![2, 0],
                }],
                "stored nexthop does not parse",
            ),
        ] {
            let err = validate(&image(nexthops), &holds).unwrap_err();
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn differences_name_the_nexthop_and_the_field() {
        let want = image(vec![single(1, "zxa"), group(10, &[1]), group(11, &[1])]);
        let mut got = decode(&single(1, "zxa")).unwrap();
        got.header.flags = 0;
        let mut lo = LinkMessage::default();
        lo.header.index = 7;
        lo.attributes
            .push(netlink_packet_route::link::LinkAttribute::IfName(
                "zxa".into(),
            ));
        let g = decode(&group(10, &[1])).unwrap();
        let diffs = diffs(&want, &[lo], &[got, g]);
        assert_eq!(
            diffs,
            vec![
                "nexthop 1: onlink: image yes, kernel no",
                "nexthop 11: missing"
            ]
        );
    }

    #[test]
    fn described_as_ip_nexthop_shows_them() {
        assert_eq!(
            describe_record(&single(4, "zxa")),
            "id 4 via 10.9.9.9 dev zxa onlink"
        );
        assert_eq!(describe_record(&group(10, &[1, 2])), "id 10 group 1,2/2,2");
    }
}

//! An image is input like any other. Crafted ones (invalid names, dangling or cyclic
//! references, duplicates, absurd counts, unknown kinds, references to host devices) are
//! refused at validation with a clear error, before any change; and no image makes netcr
//! create, rename, delete or modify a device of the namespace it runs in, except the outer
//! ends that `--external` names. Also: without the capabilities netcr needs, a clear error
//! naming what is missing; image files are 0600 in a 0700 directory, and a restore reads only
//! a private image, never through a symbolic link out of its directory.

mod common;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::{netcr, ok, Dir, Run};
use netcr_image::frame::{FileKind, FrameEncoder};
use netcr_image::{v1, Image};
use netcr_netlink::netlink_packet_route::link::{InfoMacVlan, MacVlanMode};
use netcr_netlink::netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use netcr_netlink::netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netcr_netlink::{Rtnl, RtnlExt};
use netcr_testkit::{
    add_macvlan, add_veth, ifindex, require_root, set_link, unique_name, TestHost, TestNetns,
};
use support::{address, assert_same_state, route, settle, whole_state};

/// The test host with lower devices lowA/lowB, lowC/lowD (veth pairs, up).
fn host() -> (TestHost, Rtnl) {
    let host = TestHost::enter();
    let mut h = host.rtnl();
    for (a, b) in [("lowA", "lowB"), ("lowC", "lowD")] {
        add_veth(&mut h, a, b, None).unwrap();
        set_link(&mut h, a, Some(true), vec![]).unwrap();
        set_link(&mut h, b, Some(true), vec![]).unwrap();
    }
    (host, h)
}

/// A real image to start from: lo, a macvlan on the host's lowA, a veth pair inside, a
/// macvlan on one of its ends, a veth to the host (outer end hostv0), an address and a route.
fn base_image(h: &mut Rtnl) -> Image {
    let src = TestNetns::new("s");
    add_macvlan(
        h,
        "mv0",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
        Some(&src.netns),
    )
    .unwrap();
    add_veth(h, "hostv0", "eth0", Some(&src.netns)).unwrap();
    let mut r = src.rtnl();
    add_veth(&mut r, "in0", "in1", None).unwrap();
    add_macvlan(
        &mut r,
        "mvi",
        "in0",
        vec![InfoMacVlan::Mode(MacVlanMode::Private)],
        None,
    )
    .unwrap();
    for dev in ["lo", "mv0", "in0", "in1", "mvi", "eth0"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    address(&mut r, "mv0", "10.70.0.2", 24, vec![]);
    route(
        &mut r,
        Some(("10.71.0.0", 16)),
        Some("10.70.0.1"),
        Some("mv0"),
        254,
        RouteType::Unicast,
    );
    let dir = Dir::new();
    let img = dir.path("img");
    ok(&["dump", "-D", img.to_str().unwrap(), "--netns", &src.name]);
    for l in r.dump_links().unwrap() {
        if netcr_testkit::link_name(&l) != Some("lo") {
            let _ = r.del_link(l.header.index, "deleting");
        }
    }
    drop(r);
    support::wait_gone(h, "hostv0");
    Image::read(&img).unwrap()
}

fn link<'a>(image: &'a mut Image, name: &str) -> &'a mut v1::Link {
    image.namespaces[0]
        .links
        .iter_mut()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no {name} in the image"))
}

fn local(name: &str) -> Option<v1::LinkRef> {
    Some(v1::LinkRef {
        target: Some(v1::link_ref::Target::Local(v1::LocalRef {
            netns: 0,
            name: name.into(),
        })),
    })
}

const EXTERNALS: [&str; 4] = [
    "--external",
    "macvlan[*]:lowA",
    "--external",
    "veth[eth0]:hostv0",
];

/// Restores `image` (written with `Image::write`) into a new namespace and into an existing
/// one; both must fail with exit 1 and one error line containing every `expect` string, and
/// leave the host and the existing namespace exactly as they were, the new one not created.
fn assert_refused(host: &TestHost, image: &Image, case: &str, expect: &[&str]) -> Run {
    let dir = Dir::new();
    let img = dir.path("img");
    write_image(image, &img);
    restore_refused(host, img.to_str().unwrap(), case, expect)
}

fn write_image(image: &Image, dir: &Path) {
    image
        .write(dir)
        .unwrap_or_else(|e| panic!("writing a crafted image: {e}"));
}

fn restore_refused(host: &TestHost, img: &str, case: &str, expect: &[&str]) -> Run {
    let existing = TestNetns::new("e");
    settle(&host.ns.netns);
    let host_before = whole_state(&host.ns.netns);
    let existing_before = whole_state(&existing.netns);
    let dst = unique_name("n");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    let path = netcr_netlink::netns::named_path(&existing.name);
    let mut last = None;
    for (flag, target) in [
        ("--netns", dst.as_str()),
        ("--netns-path", path.to_str().unwrap()),
    ] {
        let mut args = vec!["restore", "-D", img, flag, target];
        args.extend(EXTERNALS);
        let run = netcr(&args);
        assert_eq!(run.code, 1, "{case}: {}{}", run.stdout, run.stderr);
        for e in expect {
            assert!(
                run.stderr.contains(e),
                "{case}: {e:?} not in: {}",
                run.stderr
            );
        }
        assert_eq!(run.stderr.lines().count(), 1, "{case}: {}", run.stderr);
        assert!(
            !run.stderr.contains("rolled back"),
            "{case}: refused before any change, nothing to roll back: {}",
            run.stderr
        );
        assert!(!netcr_netlink::netns::named_exists(&dst), "{case}");
        assert_same_state(&host_before, &whole_state(&host.ns.netns), case);
        assert_same_state(&existing_before, &whole_state(&existing.netns), case);
        last = Some(run);
    }
    last.unwrap()
}

#[test]
fn hostile_images_are_refused_at_validation_before_any_change() {
    require_root!();
    let (host, mut h) = host();
    let base = base_image(&mut h);
    // The base image itself restores (so each refusal below is the crafted part's doing).
    {
        let dir = Dir::new();
        let img = dir.path("img");
        write_image(&base, &img);
        let dst = unique_name("ok");
        let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
        let mut args = vec!["restore", "-D", img.to_str().unwrap(), "--netns", &dst];
        args.extend(EXTERNALS);
        ok(&args);
        let ns = netcr_netlink::Netns::open_name(&dst).unwrap();
        let mut r = Rtnl::open_in(&ns).unwrap();
        for l in r.dump_links().unwrap() {
            if netcr_testkit::link_name(&l) != Some("lo") {
                let _ = r.del_link(l.header.index, "deleting");
            }
        }
        support::wait_gone(&mut h, "hostv0");
    }
    type Craft = Box<dyn Fn(&mut Image)>;
    let cases: Vec<(&str, Craft, Vec<&str>)> = vec![
        (
            "a name of 16 bytes",
            Box::new(|i| link(i, "mvi").name = "a234567890123456".into()),
            vec![
                "invalid image",
                "device name \"a234567890123456\" is not valid",
            ],
        ),
        (
            "a name with '/'",
            Box::new(|i| link(i, "mvi").name = "../mvi".into()),
            vec!["invalid image", "device name \"../mvi\" is not valid"],
        ),
        (
            "an empty name",
            Box::new(|i| link(i, "mvi").name = String::new()),
            vec!["invalid image", "device name \"\" is not valid"],
        ),
        (
            "a name with a newline",
            Box::new(|i| link(i, "mvi").name = "mv\nx".into()),
            vec!["invalid image", "is not valid"],
        ),
        (
            "a lower device that is not in the image",
            Box::new(|i| link(i, "mvi").lower = local("ghost0")),
            vec![
                "invalid image",
                "lower device of \"mvi\" is \"ghost0\", which the image does not hold",
            ],
        ),
        (
            "a lower device in a namespace the image does not hold",
            Box::new(|i| {
                link(i, "mvi").lower = Some(v1::LinkRef {
                    target: Some(v1::link_ref::Target::Local(v1::LocalRef {
                        netns: 7,
                        name: "in0".into(),
                    })),
                })
            }),
            vec!["invalid image", "netns 7, which the image does not hold"],
        ),
        (
            "a device that is its own lower device",
            Box::new(|i| link(i, "mvi").lower = local("mvi")),
            vec!["invalid image", "lower device of \"mvi\" is itself"],
        ),
        (
            "two macvlans that are each other's lower device",
            Box::new(|i| {
                let mut other = link(i, "mvi").clone();
                other.name = "mvj".into();
                other.ifindex = 0;
                other.address = vec![2, 0, 0, 0, 0x77, 1];
                other.lower = local("mvi");
                link(i, "mvi").lower = local("mvj");
                i.namespaces[0].links.push(other);
            }),
            vec!["invalid image", "depends on itself"],
        ),
        (
            "a vrf without a table",
            Box::new(|i| {
                let mut vrf = link(i, "mvi").clone();
                vrf.name = "vrf0".into();
                vrf.kind = "vrf".into();
                vrf.ifindex = 0;
                vrf.lower = None;
                vrf.address = vec![2, 0, 0, 0, 0x77, 2];
                vrf.config = prost::Message::encode_to_vec(&netcr_image::link::v1::Vrf {
                    table: 0,
                    extra: vec![],
                });
                i.namespaces[0].links.push(vrf);
            }),
            vec!["invalid image", "vrf0", "vrf table 0"],
        ),
        (
            "a master cycle",
            Box::new(|i| {
                link(i, "in0").master = local("in1");
                link(i, "in1").master = local("in0");
            }),
            vec!["invalid image", "depends on itself"],
        ),
        (
            "a master outside the image",
            Box::new(|i| {
                link(i, "mvi").master = Some(v1::LinkRef {
                    target: Some(v1::link_ref::Target::External(v1::ExternalRef {
                        name_hint: "lowA".into(),
                        ..Default::default()
                    })),
                })
            }),
            vec!["invalid image", "has a master outside the image"],
        ),
        (
            "a duplicate name",
            Box::new(|i| {
                let mut dup = link(i, "mvi").clone();
                dup.ifindex = 0;
                i.namespaces[0].links.push(dup);
            }),
            vec!["invalid image", "device \"mvi\" appears twice"],
        ),
        (
            "a duplicate ifindex",
            Box::new(|i| {
                let index = link(i, "in0").ifindex;
                link(i, "mvi").ifindex = index;
            }),
            vec!["invalid image", "is used by two devices"],
        ),
        (
            "an ifindex no device can have",
            Box::new(|i| link(i, "mvi").ifindex = u32::MAX),
            vec![
                "invalid image",
                "ifindex 4294967295, which no device can have",
            ],
        ),
        (
            "two loopback devices",
            Box::new(|i| {
                let mut lo = link(i, "lo").clone();
                lo.name = "lo2".into();
                lo.ifindex = 0;
                i.namespaces[0].links.push(lo);
            }),
            vec!["invalid image", "more than one loopback device"],
        ),
        (
            "a kind no driver knows",
            Box::new(|i| link(i, "mvi").kind = "nosuchkind".into()),
            vec![
                "invalid image",
                "device \"mvi\" is of kind \"nosuchkind\", which this netcr does not support",
            ],
        ),
        (
            "driver settings that do not decode",
            Box::new(|i| link(i, "mvi").config = vec![0xff, 0xff, 0xff]),
            vec!["invalid image", "macvlan \"mvi\"", "do not decode"],
        ),
        (
            "an address on a host device",
            Box::new(|i| i.namespaces[0].addresses[0].dev = "lowA".into()),
            vec![
                "invalid image",
                "an address is on \"lowA\", which the image does not hold",
            ],
        ),
        (
            "an address on no device",
            Box::new(|i| i.namespaces[0].addresses[0].dev = String::new()),
            vec!["invalid image", "an address is on \"\""],
        ),
        (
            "a route over a host device",
            Box::new(|i| i.namespaces[0].routes[0].oif = "lowC".into()),
            vec![
                "invalid image",
                "a route uses \"lowC\", which the image does not hold",
            ],
        ),
        (
            "a route that names its device by index only",
            Box::new(|i| i.namespaces[0].routes[0].oif = String::new()),
            vec![
                "invalid image",
                "devices by index do not match its devices by name",
            ],
        ),
        (
            "a neighbour on a host device",
            Box::new(|i| {
                let mut n = i.namespaces[0].addresses[0].clone();
                n.dev = "hostv0".into();
                i.namespaces[0].neighbours.push(v1::Neighbour {
                    dev: n.dev,
                    message: Vec::new(),
                });
            }),
            vec![
                "invalid image",
                "a neighbour is on \"hostv0\", which the image does not hold",
            ],
        ),
        (
            "a sysctl of a host device",
            Box::new(|i| {
                i.namespaces[0].netns.sysctls.push(v1::Sysctl {
                    name: "net.ipv4.conf.lowA.forwarding".into(),
                    value: "1".into(),
                })
            }),
            vec![
                "invalid image",
                "sysctl \"net.ipv4.conf.lowA.forwarding\" is not a namespace setting",
            ],
        ),
        (
            "a sysctl outside /proc/sys/net",
            Box::new(|i| {
                i.namespaces[0].netns.sysctls.push(v1::Sysctl {
                    name: "net.ipv4.conf.all.../../../kernel/hostname".into(),
                    value: "x".into(),
                })
            }),
            vec!["invalid image", "is not a namespace setting"],
        ),
        (
            "an image of no namespace",
            Box::new(|i| {
                i.namespaces.clear();
                i.inventory.netns.clear();
            }),
            vec!["invalid image", "it holds no namespace"],
        ),
        (
            "an altname with '/'",
            Box::new(|i| link(i, "mvi").altnames = vec!["../etc".into()]),
            vec![
                "invalid image",
                "altname \"../etc\" that is not a valid name",
            ],
        ),
        (
            "an altname that is another device's name",
            Box::new(|i| link(i, "mvi").altnames = vec!["lo".into()]),
            vec!["invalid image", "altname \"lo\" is also a device's name"],
        ),
        (
            "an IPv6 stable secret that is not an address",
            Box::new(|i| link(i, "mvi").ipv6_stable_secret = "1\n2".into()),
            vec!["invalid image", "stable secret that is not an IPv6 address"],
        ),
        (
            "a deleted default rule that is no default rule",
            Box::new(|i| {
                let mut rule = netcr_core::state::default_rule(
                    netcr_netlink::netlink_packet_route::AddressFamily::Inet,
                    100,
                    254,
                );
                rule.header.tos = 4;
                i.namespaces[0].netns.deleted_default_rules.push(v1::Rule {
                    message: netcr_core::state::encode(&rule),
                })
            }),
            vec!["invalid image", "is not one of the kernel's default rules"],
        ),
        (
            "a deleted l3mdev rule in a namespace without a VRF (the kernel adds none there)",
            Box::new(|i| {
                let rule = netcr_core::state::l3mdev_rule(
                    netcr_netlink::netlink_packet_route::AddressFamily::Inet,
                );
                i.namespaces[0].netns.deleted_default_rules.push(v1::Rule {
                    message: netcr_core::state::encode(&rule),
                })
            }),
            vec!["invalid image", "is not one of the kernel's default rules"],
        ),
        (
            "a deleted default rule that does not parse",
            Box::new(|i| {
                i.namespaces[0].netns.deleted_default_rules.push(v1::Rule {
                    message: vec![2, 0, 0],
                })
            }),
            vec!["invalid image", "deleted default rule does not parse"],
        ),
    ];
    for (case, craft, expect) in &cases {
        let mut image = base.clone();
        craft(&mut image);
        assert_refused(&host, &image, case, expect);
    }
}

/// A nexthop record: `msg` as the image stores it, on device `dev`.
fn nexthop_record(msg: &netcr_netlink::nexthop::NexthopMessage, dev: &str) -> v1::Nexthop {
    v1::Nexthop {
        dev: dev.into(),
        message: netcr_core::state::encode(msg),
    }
}

#[test]
fn hostile_nexthops_are_refused_at_validation_before_any_change() {
    require_root!();
    let (host, mut h) = host();
    let base = base_image(&mut h);
    let via = |id: u32| netcr_testkit::nexthop(id, Some("10.70.0.1".parse().unwrap()), Some(7), 0);
    type Craft = Box<dyn Fn(&mut Image)>;
    let cases: Vec<(&str, Craft, Vec<&str>)> = vec![
        (
            "a nexthop on a host device",
            Box::new(move |i| {
                i.namespaces[0]
                    .nexthops
                    .push(nexthop_record(&via(1), "lowA"))
            }),
            vec![
                "invalid image",
                "nexthop 1 uses \"lowA\", which the image does not hold",
            ],
        ),
        (
            "a nexthop that names its device by index only",
            Box::new(move |i| i.namespaces[0].nexthops.push(nexthop_record(&via(1), ""))),
            vec![
                "invalid image",
                "nexthop 1: its device by index does not match its device by name",
            ],
        ),
        (
            "two nexthops with one id",
            Box::new(move |i| {
                for _ in 0..2 {
                    i.namespaces[0]
                        .nexthops
                        .push(nexthop_record(&via(1), "mv0"));
                }
            }),
            vec!["invalid image", "nexthop id 1 appears twice"],
        ),
        (
            "a group naming a nexthop the image does not hold",
            Box::new(move |i| {
                i.namespaces[0]
                    .nexthops
                    .push(nexthop_record(&via(1), "mv0"));
                let group = netcr_testkit::nexthop_group(10, &[(1, 1), (7, 2)]);
                i.namespaces[0].nexthops.push(nexthop_record(&group, ""));
            }),
            vec![
                "invalid image",
                "nexthop group 10 holds nexthop 7, which the image does not hold",
            ],
        ),
        (
            "a route using a nexthop the image does not hold",
            Box::new(|i| {
                let route = &mut i.namespaces[0].routes[0];
                let mut msg: RouteMessage =
                    netcr_core::state::decode(&route.message, "route").unwrap();
                msg.attributes.push(RouteAttribute::NhId(9));
                route.message = netcr_core::state::encode(&msg);
            }),
            vec![
                "invalid image",
                "uses nexthop 9, which the image does not hold",
            ],
        ),
        (
            "a nexthop that does not parse",
            Box::new(|i| {
                i.namespaces[0].nexthops.push(v1::Nexthop {
                    dev: String::new(),
                    message: vec![2, 0, 0],
                })
            }),
            vec!["invalid image", "stored nexthop does not parse"],
        ),
    ];
    for (case, craft, expect) in &cases {
        let mut image = base.clone();
        craft(&mut image);
        assert_refused(&host, &image, case, expect);
    }
}

/// nf_tables records for crafted images: table inet h, its chain c, and rules in c made of
/// `exprs` (each an expression's name and data).
mod nft_records {
    use netcr_image::v1;
    use netcr_netlink::nftables::{self as nft, chain, common, msg, rule, table, Attr};

    fn record(kind: u8, attrs: Vec<Attr>) -> v1::NftObject {
        v1::NftObject {
            kind: u32::from(kind),
            family: 1,
            attributes: nft::emit(&attrs),
            ifindexes: Vec::new(),
        }
    }

    pub fn table() -> v1::NftObject {
        record(msg::NEWTABLE, vec![Attr::string(table::NAME, "h")])
    }

    pub fn chain(name: &str) -> v1::NftObject {
        record(
            msg::NEWCHAIN,
            vec![
                Attr::string(chain::TABLE, "h"),
                Attr::string(chain::NAME, name),
            ],
        )
    }

    pub fn expr(name: &str, data: Vec<Attr>) -> Attr {
        Attr::nested(
            common::LIST_ELEM,
            &[
                Attr::string(common::EXPR_NAME, name),
                Attr::nested(common::EXPR_DATA, &data),
            ],
        )
    }

    /// A rule in chain `chain` made of `exprs`.
    pub fn rule(chain: &str, exprs: &[Attr]) -> v1::NftObject {
        record(
            msg::NEWRULE,
            vec![
                Attr::string(rule::TABLE, "h"),
                Attr::string(rule::CHAIN, chain),
                Attr::nested(rule::EXPRESSIONS, exprs),
            ],
        )
    }

    /// `jump target`.
    pub fn jump(target: &str) -> Attr {
        let verdict = Attr::nested(
            common::DATA_VERDICT,
            &[
                Attr::be32(common::VERDICT_CODE, common::JUMP as u32),
                Attr::string(common::VERDICT_CHAIN, target),
            ],
        );
        expr(
            "immediate",
            vec![Attr::be32(1, 0), Attr::nested(2, &[verdict])],
        )
    }
}

#[test]
fn hostile_firewalls_are_refused_at_validation_before_any_change() {
    require_root!();
    let (host, mut h) = host();
    let base = base_image(&mut h);
    use nft_records::{chain, expr, jump, rule, table};
    type Craft = Box<dyn Fn(&mut Vec<v1::NftObject>)>;
    let lookup = |set: &str| {
        expr(
            "lookup",
            vec![
                netcr_netlink::nftables::Attr::string(1, set),
                netcr_netlink::nftables::Attr::be32(2, 1),
            ],
        )
    };
    let cases: Vec<(&str, Craft, Vec<&str>)> = vec![
        (
            "a rule with truncated expressions",
            Box::new(|f| {
                let mut r = rule("c", &[jump("c")]);
                // The list's first item claims more bytes than the list holds.
                let at = r.attributes.len() - 40;
                r.attributes[at] = 0xf0;
                f.push(r);
            }),
            vec!["invalid image", "rule 1 of chain inet h c"],
        ),
        (
            "a rule in a chain the image does not hold",
            Box::new(|f| f.push(rule("nochain", &[]))),
            vec![
                "invalid image",
                "rule 1 of chain inet h nochain: chain \"nochain\" is not in its table",
            ],
        ),
        (
            "a rule looking up a set the image does not hold",
            Box::new(move |f| f.push(rule("c", &[lookup("nosuchset")]))),
            vec![
                "invalid image",
                "rule 1 of chain inet h c: uses set \"nosuchset\", which its table does not hold",
            ],
        ),
        (
            "a jump to a chain the image does not hold",
            Box::new(|f| f.push(rule("c", &[jump("elsewhere")]))),
            vec![
                "invalid image",
                "rule 1 of chain inet h c: jumps to chain \"elsewhere\", which its table does not hold",
            ],
        ),
        (
            "a record whose attributes do not frame",
            Box::new(|f| {
                let mut r = rule("c", &[]);
                r.attributes.truncate(r.attributes.len() - 2);
                f.push(r);
            }),
            vec!["invalid image", "an nf_tables Rule does not parse"],
        ),
        (
            "a chain before its table",
            Box::new(|f| f.insert(0, chain("early"))),
            vec![
                "invalid image",
                "chain inet h early: its table comes later or not at all",
            ],
        ),
        (
            "a rule matching by index a device of the host",
            Box::new(|f| {
                let mut r = rule("c", &[]);
                r.ifindexes.push(v1::NftIfindex {
                    ifindex: 2,
                    dev: "lowA".into(),
                });
                f.push(r);
            }),
            vec![
                "invalid image",
                "rule 1 of chain inet h c matches device \"lowA\" by index 2, which the image does not hold",
            ],
        ),
    ];
    for (case, craft, expect) in &cases {
        let mut image = base.clone();
        let mut firewall = vec![table(), chain("c")];
        craft(&mut firewall);
        image.namespaces[0].nftables = firewall;
        assert_refused(&host, &image, case, expect);
    }
}

/// Crafted traffic control records: a message type (36 qdisc, 40 class, 44 filter), its
/// device, handle and parent, its kind and options.
mod tc_records {
    use netcr_image::v1;
    use netcr_netlink::raw::attribute;
    use netcr_netlink::tc::TcHeader;

    pub fn record(
        kind: u32,
        dev: &str,
        handle: u32,
        parent: u32,
        what: &str,
        opts: Option<Vec<u8>>,
    ) -> v1::TcObject {
        let mut message = TcHeader {
            handle,
            parent,
            info: if kind == 44 { (1 << 16) | 0x0008 } else { 0 },
            ..Default::default()
        }
        .bytes();
        let mut name = what.as_bytes().to_vec();
        name.push(0);
        message.extend(attribute(1, &name));
        if let Some(opts) = opts {
            message.extend(attribute(2 | 0x8000, &opts));
        }
        v1::TcObject {
            kind,
            dev: dev.into(),
            message,
            mirred_devs: Vec::new(),
        }
    }

    /// htb 1: root on `dev`.
    pub fn htb(dev: &str) -> v1::TcObject {
        let mut glob = vec![0u8; 20];
        glob[..4].copy_from_slice(&3u32.to_ne_bytes());
        glob[4..8].copy_from_slice(&10u32.to_ne_bytes());
        record(
            36,
            dev,
            0x1_0000,
            u32::MAX,
            "htb",
            Some(attribute(2, &glob)),
        )
    }

    /// A u32 filter under 1: with one mirred action.
    pub fn mirred_filter(dev: &str) -> v1::TcObject {
        let mut parms = vec![0u8; 28];
        parms[..4].copy_from_slice(&1u32.to_ne_bytes());
        parms[20..24].copy_from_slice(&1u32.to_ne_bytes());
        parms[24..28].copy_from_slice(&7u32.to_ne_bytes());
        let mut action = attribute(1, b"mirred\0");
        action.extend(attribute(2 | 0x8000, &attribute(2, &parms)));
        let list = attribute(1 | 0x8000, &action);
        record(
            44,
            dev,
            0x8000_0800,
            0x1_0000,
            "u32",
            Some(attribute(7 | 0x8000, &list)),
        )
    }
}

#[test]
fn hostile_traffic_control_is_refused_at_validation_before_any_change() {
    require_root!();
    let (host, mut h) = host();
    let base = base_image(&mut h);
    use tc_records::{htb, mirred_filter, record};
    type Craft = Box<dyn Fn(&mut Vec<v1::TcObject>)>;
    let cases: Vec<(&str, Craft, Vec<&str>)> = vec![
        (
            "a record of an unknown message type",
            Box::new(|t| t[0].kind = 99),
            vec!["invalid image", "tc record 1: unknown message type 99"],
        ),
        (
            "a qdisc on a device the image does not hold",
            Box::new(|t| t[0].dev = "lowA".into()),
            vec![
                "invalid image",
                "tc record 1: device \"lowA\" is not in the image",
            ],
        ),
        (
            "a record whose attributes do not frame",
            Box::new(|t| {
                let n = t[0].message.len();
                t[0].message[n - 24] = 0xf0;
            }),
            vec!["invalid image", "qdisc htb 1: root dev in0: attribute"],
        ),
        (
            "a record holding a device index",
            Box::new(|t| t[0].message[4] = 3),
            vec![
                "invalid image",
                "qdisc htb 1: root dev in0: holds a device index",
            ],
        ),
        (
            "a class whose parent is nowhere before it",
            Box::new(|t| t.push(record(40, "in0", 0x1_0010, 0x1_0001, "htb", None))),
            vec![
                "invalid image",
                "class htb 1:10 parent 1:1 dev in0: its parent comes nowhere before it",
            ],
        ),
        (
            "a child qdisc before its parent",
            Box::new(|t| t.insert(0, record(36, "in0", 0x10_0000, 0x1_0010, "pfifo", None))),
            vec![
                "invalid image",
                "qdisc pfifo 10: parent 1:10 dev in0: its parent comes nowhere before it",
            ],
        ),
        (
            "a qdisc twice",
            Box::new(|t| t.push(htb("in0"))),
            vec!["invalid image", "qdisc htb 1: root dev in0: appears twice"],
        ),
        (
            "a filter on a parent the image does not hold",
            Box::new(|t| {
                let mut f = mirred_filter("in1");
                f.mirred_devs.push("in0".into());
                t.push(f);
            }),
            vec![
                "invalid image",
                "dev in1 parent 1: pref 1",
                "its parent comes nowhere before it",
            ],
        ),
        (
            "a mirred action without its target",
            Box::new(|t| t.push(mirred_filter("in0"))),
            vec![
                "invalid image",
                "filter u32 dev in0 parent 1:",
                "1 mirred actions, 0 targets",
            ],
        ),
        (
            "a mirred action to a device the image does not hold",
            Box::new(|t| {
                let mut f = mirred_filter("in0");
                f.mirred_devs.push("lowA".into());
                t.push(f);
            }),
            vec![
                "invalid image",
                "a mirred action to \"lowA\", which is not in the image",
            ],
        ),
        (
            "a bpf filter",
            Box::new(|t| t.push(record(44, "in0", 1, 0x1_0000, "bpf", Some(Vec::new())))),
            vec![
                "invalid image",
                "a bpf filter (its BPF program cannot be re-created from a dump)",
            ],
        ),
    ];
    for (case, craft, expect) in &cases {
        let mut image = base.clone();
        let mut tc = vec![htb("in0")];
        craft(&mut tc);
        image.namespaces[0].tc = tc;
        assert_refused(&host, &image, case, expect);
    }
}

#[test]
fn hostile_ipsec_records_are_refused_at_validation_before_any_change() {
    require_root!();
    let (host, mut h) = host();
    let base = base_image(&mut h);
    let key: Vec<u8> = (1..=16).collect();
    let state = || support::esp_state([10, 70, 0, 2], [10, 70, 0, 1], 0x100, 0, &key, &[7; 32]);
    // An attribute appended to a record's message.
    let with = |mut rec: v1::XfrmObject, kind: u16, value: &[u8]| {
        rec.message
            .extend(netcr_netlink::raw::attribute(kind, value));
        rec
    };
    // A policy out of 10.70.0.2, as the kernel dumps one: struct xfrm_userpolicy_info.
    let policy = |dir: u8, index: u32| {
        let mut m = vec![0u8; 168];
        m[40..42].copy_from_slice(&2u16.to_ne_bytes());
        m[16..20].copy_from_slice(&[10, 70, 0, 2]);
        m[43] = 32;
        m[156..160].copy_from_slice(&index.to_ne_bytes());
        m[160] = dir;
        v1::XfrmObject {
            kind: 19,
            message: m,
            dev: String::new(),
        }
    };
    let cases: Vec<(&str, Vec<v1::XfrmObject>, Vec<&str>)> = vec![
        (
            "a record of another message type",
            vec![v1::XfrmObject {
                kind: 17,
                ..state()
            }],
            vec!["invalid image", "an xfrm record of message type 17"],
        ),
        (
            "a state shorter than its struct",
            vec![v1::XfrmObject {
                message: state().message[..200].to_vec(),
                ..state()
            }],
            vec![
                "invalid image",
                "an xfrm state of 200 bytes, less than its 224-byte struct",
            ],
        ),
        (
            "attributes that do not frame",
            vec![{
                let mut s = state();
                s.message.extend([40, 0, 2, 0]);
                s
            }],
            vec!["invalid image", "an xfrm state: attribute 2 of 40 bytes"],
        ),
        (
            "a key shorter than its length says",
            vec![{
                let mut s = state();
                s.message.truncate(224);
                let mut alg = netcr_core::xfrm::algorithm("cbc(aes)", &key, None);
                alg[64..68].copy_from_slice(&256u32.to_ne_bytes());
                with(s, 2, &alg)
            }],
            vec![
                "invalid image",
                "algorithm cbc(aes): a 256-bit key in 16 bytes",
            ],
        ),
        (
            "the kernel's lifetime counters",
            vec![with(state(), 9, &[0; 32])],
            vec!["invalid image", "attribute 9: the kernel's own bookkeeping"],
        ),
        (
            "a selector naming a device of the host",
            vec![{
                let mut s = state();
                s.message[48..52].copy_from_slice(&2u32.to_ne_bytes());
                s.dev = "lowA".into();
                s
            }],
            vec![
                "invalid image",
                "its selector names \"lowA\", which the image does not hold",
            ],
        ),
        (
            "a selector device by index only",
            vec![{
                let mut s = state();
                s.message[48..52].copy_from_slice(&2u32.to_ne_bytes());
                s
            }],
            vec![
                "invalid image",
                "its selector's device by index does not match its device by name",
            ],
        ),
        (
            "a socket's own policy",
            vec![policy(3, 0)],
            vec!["invalid image", "direction 3"],
        ),
        (
            "a policy index of another direction",
            vec![policy(1, 8)],
            vec!["invalid image", "index 8 is not one of direction 1"],
        ),
        (
            "the same policy twice",
            vec![policy(1, 0), policy(1, 0)],
            vec!["invalid image", "appears twice"],
        ),
        (
            "default policies the kernel does not know",
            vec![v1::XfrmObject {
                kind: 39,
                message: vec![1, 7, 2],
                dev: String::new(),
            }],
            vec!["invalid image", "values [1, 7, 2]"],
        ),
    ];
    for (case, records, expect) in cases {
        let mut image = base.clone();
        image.namespaces[0].xfrm = records;
        assert_refused(&host, &image, case, &expect);
    }
}

#[test]
fn absurd_object_counts_are_refused_at_validation() {
    require_root!();
    let (host, mut h) = host();
    let base = base_image(&mut h);
    // One link more than validation allows: each an empty record (one byte), so the file is
    // small while the count is absurd.
    let n = netcr_core::validate::MAX_LINKS + 1;
    let dir = Dir::new();
    let img = dir.path("img");
    write_image(&base, &img);
    let mut enc = FrameEncoder::new(FileKind::Links);
    for _ in 0..n {
        enc.push(&v1::Link::default()).unwrap();
    }
    std::fs::write(img.join("links-0.img"), enc.finish()).unwrap();
    let run = restore_refused(
        &host,
        img.to_str().unwrap(),
        "too many links",
        &["invalid image", &format!("{n} links (at most {})", n - 1)],
    );
    let _ = run;
    // Past what a file may hold at all, the reader refuses before decoding a record.
    let mut bytes = std::fs::read(img.join("links-0.img")).unwrap();
    let len = bytes.len();
    let count = (netcr_image::frame::MAX_RECORDS + 1) as u32;
    bytes[len - 8..len - 4].copy_from_slice(&count.to_le_bytes());
    std::fs::write(img.join("links-0.img"), &bytes).unwrap();
    restore_refused(
        &host,
        img.to_str().unwrap(),
        "a record count past the limit",
        &["links-0.img"],
    );
}

/// The host's whole state without the lines of `skip` devices (by name and index).
fn host_state_without(host: &TestHost, skip: &[(&str, u32)]) -> Vec<String> {
    whole_state(&host.ns.netns)
        .into_iter()
        .filter(|l| {
            !skip.iter().any(|(name, index)| {
                l.starts_with(&format!("link {name} "))
                    || l.contains(&format!("index: {index},"))
                    || l.contains(&format!("index: {index} "))
                    || l.contains(&format!("Oif({index})"))
            })
        })
        .collect()
}

#[test]
fn an_image_cannot_rename_delete_or_modify_a_host_device() {
    require_root!();
    let (host, mut h) = host();
    let mut image = base_image(&mut h);
    let index = |h: &mut Rtnl, n: &str| ifindex(h, n).unwrap();
    let (low_a, low_c, low_d) = (
        index(&mut h, "lowA"),
        index(&mut h, "lowC"),
        index(&mut h, "lowD"),
    );
    // Every device of the image named like a host device and holding a host device's
    // ifindex; the objects follow the new names; a rule names host devices too.
    let renames = [
        ("mv0", "lowC", low_c),
        ("mvi", "lowD", low_d),
        ("in0", "lowB", low_a),
    ];
    for (old, new, index) in renames {
        let ns = &mut image.namespaces[0];
        for l in ns.links.iter_mut() {
            if l.name == old {
                l.name = new.into();
                l.ifindex = index;
            }
            if let Some(v1::LinkRef {
                target: Some(v1::link_ref::Target::Local(r)),
            }) = l.lower.as_mut()
            {
                if r.name == old {
                    r.name = new.into();
                }
            }
        }
        for a in ns.addresses.iter_mut().filter(|a| a.dev == old) {
            a.dev = new.into();
        }
        for r in ns.routes.iter_mut().filter(|r| r.oif == old) {
            r.oif = new.into();
        }
    }
    // Keep the image's own indexes unique.
    for (i, l) in image.namespaces[0].links.iter_mut().enumerate() {
        let renamed = renames.iter().any(|(_, new, _)| l.name == *new);
        if !renamed && l.ifindex != 1 {
            l.ifindex = 100 + i as u32;
        }
    }
    let mut rule = RuleMessage::default();
    rule.header.family = netcr_netlink::netlink_packet_route::AddressFamily::Inet;
    rule.header.action = netcr_netlink::netlink_packet_route::rule::RuleAction::ToTable;
    rule.attributes.push(RuleAttribute::Priority(500));
    rule.attributes.push(RuleAttribute::Table(100));
    rule.attributes.push(RuleAttribute::Iifname("lowA".into()));
    rule.attributes
        .push(RuleAttribute::Oifname("hostv0".into()));
    image.namespaces[0].rules.push(v1::Rule {
        message: netcr_core::state::encode(&rule),
    });
    let dir = Dir::new();
    let img = dir.path("img");
    write_image(&image, &img);
    let img = img.to_str().unwrap();

    // Without --external for the veth: refused, naming the mapping that would work.
    let dst = unique_name("h");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    settle(&host.ns.netns);
    let before = whole_state(&host.ns.netns);
    let run = netcr(&[
        "restore",
        "-D",
        img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:lowA",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no --external mapping for veth \"eth0\""),
        "{}",
        run.stderr
    );
    // An outer end named like a host device: refused, never taken over.
    for outer in ["lowB", "lowC", "lo"] {
        let run = netcr(&[
            "restore",
            "-D",
            img,
            "--netns",
            &dst,
            "--external",
            "macvlan[*]:lowA",
            "--external",
            &format!("veth[eth0]:{outer}"),
        ]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "its outer end \"{outer}\" already exists in the caller's namespace"
            )),
            "{}",
            run.stderr
        );
    }
    assert!(!netcr_netlink::netns::named_exists(&dst));
    assert_same_state(&before, &whole_state(&host.ns.netns), "refused restores");

    // With a new outer end it restores, by both creation paths, and the host changes only by
    // that outer end (and by the macvlan on lowA, the lower device the user named).
    for create_from in ["lower", "target"] {
        let dst = unique_name("h");
        let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
        let skip = [("lowA", low_a)];
        let before = host_state_without(&host, &skip);
        let run = netcr(&[
            "restore",
            "-D",
            img,
            "--netns",
            &dst,
            "--create-from",
            create_from,
            "--external",
            "macvlan[*]:lowA",
            "--external",
            "veth[eth0]:hostv9",
        ]);
        assert_eq!(run.code, 0, "{create_from}: {}{}", run.stdout, run.stderr);
        let outer = ifindex(&mut h, "hostv9").expect("outer end created");
        let after = host_state_without(&host, &[("lowA", low_a), ("hostv9", outer)]);
        assert_same_state(
            &before,
            &after,
            &format!("host after a restore ({create_from})"),
        );
        // The devices are in the target, under the host devices' names.
        let ns = netcr_netlink::Netns::open_name(&dst).unwrap();
        let mut r = Rtnl::open_in(&ns).unwrap();
        for (_, new, _) in renames {
            assert!(ifindex(&mut r, new).is_some(), "{new} in the target");
        }
        // Removing the target's links takes the outer end with them: the host is as before.
        for l in r.dump_links().unwrap() {
            if netcr_testkit::link_name(&l) != Some("lo") {
                let _ = r.del_link(l.header.index, "deleting");
            }
        }
        support::wait_gone(&mut h, "hostv9");
        drop(r);
    }
}

/// Runs netcr with `pre_exec` applied in the child before exec.
fn netcr_as(
    args: &[&str],
    pre: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netcr"));
    cmd.args(args);
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(pre);
    }
    let out = cmd.output().expect("running netcr");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Capability numbers (linux/capability.h).
const CAP_NET_ADMIN: i32 = 12;
const CAP_SYS_ADMIN: i32 = 21;

/// Drops `cap` from the bounding set, so the exec'd program (even as root) never has it.
fn drop_cap(cap: i32) -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn without_root_or_capabilities_the_error_names_what_is_missing() {
    require_root!();
    let _host = TestHost::enter();
    let ns = TestNetns::new("p");
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    let dump = ["dump", "-D", img, "--netns", ns.name.as_str()];
    let restore = ["restore", "-D", img, "--netns", "nct-never-made"];
    let check = ["check"];
    let as_nobody = || {
        // SAFETY: plain system calls in the child before exec.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    for args in [&dump[..], &restore[..], &check[..]] {
        let run = netcr_as(args, as_nobody);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim(),
            "netcr: error: missing CAP_NET_ADMIN and CAP_SYS_ADMIN (uid 65534): netcr needs \
             CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root): it enters namespaces and changes \
             their links",
            "{args:?}"
        );
    }
    // Root, but without one of them (a container's root, `capsh --drop`).
    for (cap, name) in [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ] {
        for args in [&dump[..], &restore[..], &check[..]] {
            let run = netcr_as(args, move || drop_cap(cap));
            assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
            assert!(
                run.stderr.starts_with(&format!(
                    "netcr: error: missing {name} (uid 0): netcr needs"
                )),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    assert!(!Path::new(img).exists(), "nothing written");
    assert!(!netcr_netlink::netns::named_exists("nct-never-made"));
    // Reading an image needs no privilege: `show` works for whoever can read it.
    ok(&["dump", "-D", img, "--netns", &ns.name]);
    let run = netcr_as(&["show", "-D", img], move || drop_cap(CAP_NET_ADMIN));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn assert_private(img: &Path) {
    assert_eq!(mode(img), 0o700, "{}", img.display());
    let mut files = 0;
    for e in std::fs::read_dir(img).unwrap() {
        let e = e.unwrap();
        assert!(e.file_type().unwrap().is_file());
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        files += 1;
    }
    assert!(files >= 7, "{files} files");
}

#[test]
fn image_files_are_0600_in_a_0700_directory_whatever_the_umask() {
    require_root!();
    let (_host, mut h) = host();
    let src = TestNetns::new("m");
    add_macvlan(
        &mut h,
        "mv0",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
        Some(&src.netns),
    )
    .unwrap();
    let dir = Dir::new();
    let img = dir.path("img");
    let args = [
        "dump",
        "-D",
        img.to_str().unwrap(),
        "--netns",
        src.name.as_str(),
    ];
    for umask in [0o000, 0o022, 0o077] {
        // A new image, then one that replaces it.
        for _ in 0..2 {
            let run = netcr_as(&args, move || {
                // SAFETY: umask cannot fail.
                unsafe { libc::umask(umask) };
                Ok(())
            });
            assert_eq!(run.code, 0, "umask {umask:o}: {}", run.stderr);
            assert_private(&img);
        }
        std::fs::remove_dir_all(&img).unwrap();
    }
    // An existing empty directory with open permissions becomes a private image.
    std::fs::create_dir(&img).unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o777)).unwrap();
    ok(&args);
    assert_private(&img);
}

/// `netcr restore` reads an image only from a directory nobody but root can change, and never
/// through a symbolic link out of that directory: each case is refused before any change,
/// saying what is wrong and how to fix it. `show` still reads such an image: looking at one
/// is not restoring it.
#[test]
fn a_restore_reads_only_a_private_image_from_inside_its_directory() {
    require_root!();
    let (host, mut h) = host();
    let image = base_image(&mut h);
    let dir = Dir::new();
    let img = dir.path("img");
    write_image(&image, &img);
    let s = img.to_str().unwrap();
    let chmod = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };

    // A file of the image linked to a good copy of itself outside the image directory.
    let links = img.join("links-0.img");
    let outside = dir.path("links-0.img");
    std::fs::rename(&links, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &links).unwrap();
    restore_refused(
        &host,
        s,
        "a linked image file",
        &[&format!(
            "{}: a symbolic link that leads out of the image directory: refused",
            links.display()
        )],
    );
    std::fs::remove_file(&links).unwrap();
    std::fs::rename(&outside, &links).unwrap();

    for (mode, problem) in [
        (0o777, "writable by group and others (mode 0777)"),
        (0o770, "writable by its group (mode 0770)"),
        (0o703, "writable by others (mode 0703)"),
    ] {
        chmod(&img, mode);
        restore_refused(
            &host,
            s,
            &format!("mode {mode:o}"),
            &[
                &format!("{s}: the image directory is {problem}"),
                &format!("(fix: chmod go-w {s})"),
            ],
        );
        ok(&["show", "-D", s]);
    }
    chmod(&img, 0o700);

    std::os::unix::fs::chown(&img, Some(65534), None).unwrap();
    restore_refused(
        &host,
        s,
        "owned by 65534",
        &[
            &format!("{s}: the image directory is owned by uid 65534, not by root"),
            &format!("(fix: chown root {s})"),
        ],
    );
    std::os::unix::fs::chown(&img, Some(0), None).unwrap();

    let routes = img.join("routes-0.img");
    chmod(&routes, 0o666);
    restore_refused(
        &host,
        s,
        "a file others can write",
        &[&format!(
            "{}: the image file is writable by group and others (mode 0666)",
            routes.display()
        )],
    );
    chmod(&routes, 0o600);

    // As it was written, it restores.
    let dst = unique_name("p");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    let mut args = vec!["restore", "-D", s, "--netns", &dst];
    args.extend(EXTERNALS);
    ok(&args);
}

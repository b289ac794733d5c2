//! Unit tests of the restore without root: placement and request building are pure, the
//! links phase runs against a fake kernel, and the rollback order comes from the journal.

use std::collections::{HashMap, HashSet};

use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netcr_netlink::{Netns, Request};
use netcr_testkit::FakeKernel;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use rstest::rstest;

use super::journal::{Entry, Journal};
use super::plan::Outside;
use super::request::{self, Creation, Placement, Taken, Via};
use super::session::{Key, Session, Target};
use super::undo::{self, Step};
use super::{links, CreateFrom, RestoreOptions, RestoreReport};
use crate::driver::{DriverEntry, DriverError, DumpCx, LinkDriver, LowerRole, RestoreCx};
use crate::error::CoreError;
use crate::external::ExternalMapping;

/// A kind that sits on a lower device, like macvlan.
struct UpperKind;
/// A kind made in pairs by one request, like veth.
struct PairKind;

inventory::submit! { DriverEntry { driver: &UpperKind } }
inventory::submit! { DriverEntry { driver: &PairKind } }

impl LinkDriver for UpperKind {
    fn kind(&self) -> &'static str {
        "t-upper"
    }
    fn dump(&self, _: &LinkMessage, _: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(Vec::new())
    }
    fn restore(&self, _: &v1::Link, _: &mut RestoreCx<'_>) -> Result<Vec<LinkInfo>, DriverError> {
        Ok(vec![LinkInfo::Kind(InfoKind::Other("t-upper".into()))])
    }
    fn describe(&self, _: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        Ok(Vec::new())
    }
}

impl LinkDriver for PairKind {
    fn kind(&self) -> &'static str {
        "t-pair"
    }
    fn lower_role(&self) -> LowerRole {
        LowerRole::Peer
    }
    fn dump(&self, _: &LinkMessage, _: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(Vec::new())
    }
    fn restore(&self, _: &v1::Link, cx: &mut RestoreCx<'_>) -> Result<Vec<LinkInfo>, DriverError> {
        let peer = cx.peer.take().ok_or_else(|| DriverError::new("no peer"))?;
        Ok(vec![
            LinkInfo::Kind(InfoKind::Other("t-pair".into())),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ])
    }
    fn describe(&self, _: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        Ok(Vec::new())
    }
}

fn local(netns: u32, name: &str) -> Option<v1::LinkRef> {
    Some(v1::LinkRef {
        target: Some(v1::link_ref::Target::Local(v1::LocalRef {
            netns,
            name: name.into(),
        })),
    })
}

fn external(hint: &str) -> Option<v1::LinkRef> {
    Some(v1::LinkRef {
        target: Some(v1::link_ref::Target::External(v1::ExternalRef {
            name_hint: hint.into(),
            ..Default::default()
        })),
    })
}

fn link(name: &str, kind: &str, ifindex: u32, lower: Option<v1::LinkRef>) -> v1::Link {
    v1::Link {
        name: name.into(),
        kind: kind.into(),
        ifindex,
        mtu: 1500,
        lower,
        ..Default::default()
    }
}

fn loopback() -> v1::Link {
    v1::Link {
        name: "lo".into(),
        ifindex: 1,
        link_type: 772,
        mtu: 65536,
        ..Default::default()
    }
}

/// One namespace: lo, a pair p0/p1, an upper u0 on p0 and an upper x0 on a host device.
fn image() -> Image {
    let ns = NetnsImage {
        netns: v1::Netns {
            id: 0,
            label: "src".into(),
            ..Default::default()
        },
        links: vec![
            loopback(),
            link("x0", "t-upper", 2, external("eth9")),
            link("p0", "t-pair", 3, local(0, "p1")),
            link("p1", "t-pair", 4, local(0, "p0")),
            link("u0", "t-upper", 5, local(0, "p0")),
        ],
        ..Default::default()
    };
    Image {
        inventory: Default::default(),
        namespaces: vec![ns],
    }
}

fn this_netns() -> Netns {
    Netns::open_path(std::path::Path::new("/proc/thread-self/ns/net")).unwrap()
}

/// A session restoring `image` into one existing namespace, labelled "t", that holds lo;
/// x0's lower device is the caller's index 7.
fn session<'a>(
    image: &'a Image,
    opts: &'a RestoreOptions,
    caller: &'a Netns,
    kernel: &'a mut FakeKernel,
) -> Session<'a> {
    let mut s = Session::new(image, opts, caller, kernel);
    let mut lo = LinkMessage::default();
    lo.header.index = 1;
    lo.attributes.push(LinkAttribute::IfName("lo".into()));
    let outside = HashMap::from([(
        "x0".to_string(),
        Outside {
            mapping: "t-upper[x0]:eth9".parse::<ExternalMapping>().unwrap(),
            index: Some(7),
        },
    )]);
    s.targets.push(Target {
        id: 0,
        label: "t".into(),
        netns: Some(this_netns()),
        create: None,
        links_before: vec![lo],
        outside,
        sysctls_left_out: HashSet::new(),
        links_now: Vec::new(),
        index: HashMap::new(),
        report: RestoreReport::default(),
    });
    s.journal = Journal::new(0x8000_1234);
    s
}

#[rstest]
fn links_are_created_level_by_level_from_the_socket_their_placement_names() {
    let image = image();
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let fake = kernel.clone();
    let mut s = session(&image, &opts, &caller, &mut kernel);
    s.socket(Key::Target(0)).unwrap();
    links::create_all(&mut s, 0).unwrap();
    let contexts: Vec<(String, String)> = fake.contexts();
    let label = |c: &(String, String)| c.0.clone();
    // The caller's nsid first (x0's lower device is there), then level 0 (x0 from the
    // caller's namespace, the pair from the target's), then level 1 (u0 on p0).
    assert_eq!(
        contexts.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        vec![
            "reading the nsid of netns \"/proc/thread-self/ns/net\"",
            "assigning an nsid to netns \"/proc/thread-self/ns/net\"",
            "reading the nsid of netns \"/proc/thread-self/ns/net\"",
            "creating t-upper \"x0\"",
            "creating t-pair \"p0\"",
            "creating t-upper \"u0\"",
        ]
    );
    assert_eq!(
        contexts.iter().map(label).collect::<Vec<_>>(),
        vec!["t", "t", "t", "caller", "t", "t"]
    );
    // x0 went into the target through IFLA_NET_NS_FD and kept its index; u0 names its
    // lower device by the index the pair got.
    assert_eq!(fake.names("t"), vec!["lo", "x0", "p0", "p1", "u0"]);
    assert_eq!(s.targets[0].index["x0"], 2);
    let sent = fake.0.borrow().sent.clone();
    let RouteNetlinkMessage::NewLink(u0) = &sent[5].1.message else {
        panic!("not a creation: {:?}", sent[5]);
    };
    assert!(u0.attributes.contains(&LinkAttribute::Link(3)));
    assert!(u0.attributes.contains(&LinkAttribute::Group(0x8000_1234)));
    assert_eq!(sent[5].1.flags, NLM_F_CREATE | NLM_F_EXCL);
    assert_eq!(
        s.journal.entries(),
        &[
            Entry::LinksCreated {
                ns: 0,
                names: vec!["x0".into()]
            },
            Entry::LinksCreated {
                ns: 0,
                names: vec!["p0".into(), "p1".into()]
            },
            Entry::LinksCreated {
                ns: 0,
                names: vec!["u0".into()]
            },
        ]
    );
    assert_eq!(s.targets[0].report.links, 4);
}

#[rstest]
fn a_failed_creation_is_undone_with_what_was_made_before_it() {
    let image = image();
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let fake = kernel.clone();
    // Request 5 creates u0.
    fake.0.borrow_mut().fail_at = Some(5);
    let mut s = session(&image, &opts, &caller, &mut kernel);
    s.socket(Key::Target(0)).unwrap();
    let err = links::create_all(&mut s, 0).unwrap_err();
    assert!(err.to_string().contains("creating t-upper \"u0\""), "{err}");
    assert_eq!(
        undo::plan(&s.journal),
        vec![Step::DeleteGroup { ns: 0, count: 3 }]
    );
    let err = undo::roll_back(&mut s, err);
    let CoreError::RolledBack { rollback, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(rollback, "removed 3 links");
    assert_eq!(fake.names("t"), vec!["lo"]);
    let last = fake.contexts().pop().unwrap();
    assert_eq!(
        last,
        ("t".into(), "removing the links the restore created".into())
    );
}

fn delete(what: &str) -> Request {
    Request::change(RouteNetlinkMessage::DelRule(Default::default()), what)
}

#[rstest]
fn a_rollback_walks_the_journal_backwards_across_namespaces() {
    let mut j = Journal::new(7);
    for (ns, name) in [(0, "r2"), (1, "a2"), (2, "b2")] {
        j.push(Entry::NetnsCreated {
            ns,
            name: name.into(),
        });
    }
    // r's requests make the pairs: each end is journaled where it lives.
    j.push(Entry::LinksCreated {
        ns: 0,
        names: vec!["ra".into(), "rb".into()],
    });
    j.push(Entry::LinksCreated {
        ns: 1,
        names: vec!["a0".into()],
    });
    j.push(Entry::LinksCreated {
        ns: 2,
        names: vec!["b0".into()],
    });
    j.push(Entry::LinksRegrouped { ns: 0 });
    j.push(Entry::LinksRegrouped { ns: 1 });
    assert_eq!(
        undo::plan(&j),
        vec![
            Step::Regroup {
                ns: 1,
                names: vec!["a0".into()]
            },
            Step::Regroup {
                ns: 0,
                names: vec!["ra".into(), "rb".into()]
            },
            Step::DeleteGroup { ns: 2, count: 1 },
            Step::DeleteGroup { ns: 1, count: 1 },
            Step::DeleteGroup { ns: 0, count: 2 },
            Step::DeleteNetns {
                ns: 2,
                name: "b2".into()
            },
            Step::DeleteNetns {
                ns: 1,
                name: "a2".into()
            },
            Step::DeleteNetns {
                ns: 0,
                name: "r2".into()
            },
        ]
    );
}

#[rstest]
fn an_existing_namespace_gets_its_own_state_back_after_the_links_go() {
    let mut j = Journal::new(7);
    let mut lo = LinkMessage::default();
    lo.header.index = 1;
    j.push(Entry::DevicesBefore {
        ns: 0,
        links: vec![lo.clone()],
    });
    j.push(Entry::LoAddressesBefore {
        ns: 0,
        lo: 1,
        addresses: vec![],
    });
    j.push(Entry::NetnsSysctls {
        ns: 0,
        changed: vec![("net.ipv4.ip_forward".into(), "0".into())],
    });
    j.push(Entry::LinkChanged {
        ns: 0,
        before: lo.clone(),
    });
    j.push(Entry::TemporaryLink {
        name: "ncr1".into(),
    });
    for name in ["m0", "m1"] {
        j.push(Entry::LinksCreated {
            ns: 0,
            names: vec![name.into()],
        });
    }
    j.push(Entry::ObjectAdded {
        ns: 0,
        delete: delete("address"),
    });
    j.push(Entry::LinksRegrouped { ns: 0 });
    j.push(Entry::ObjectAdded {
        ns: 0,
        delete: delete("route"),
    });
    j.push(Entry::ObjectAdded {
        ns: 0,
        delete: delete("rule"),
    });
    assert_eq!(
        undo::plan(&j),
        vec![
            // Consecutive deletions go in one batch, newest first.
            Step::DeleteObjects {
                ns: 0,
                requests: vec![delete("rule"), delete("route")]
            },
            Step::Regroup {
                ns: 0,
                names: vec!["m0".into(), "m1".into()]
            },
            Step::DeleteObjects {
                ns: 0,
                requests: vec![delete("address")]
            },
            // One group deletion for both batches of links.
            Step::DeleteGroup { ns: 0, count: 2 },
            Step::DeleteByName {
                key: Key::Caller,
                name: "ncr1".into()
            },
            Step::PutBackLink {
                ns: 0,
                before: lo.clone()
            },
            // Namespace-wide values first: they rewrite the devices' own, put back next.
            Step::PutBackSysctls {
                ns: 0,
                changed: vec![("net.ipv4.ip_forward".into(), "0".into())]
            },
            Step::TrimLoAddresses {
                ns: 0,
                lo: 1,
                before: vec![]
            },
            Step::PutBackDevconf {
                ns: 0,
                devices: vec![lo]
            },
        ]
    );
}

fn set(items: &[u32]) -> HashSet<u32> {
    items.iter().copied().collect()
}

#[rstest]
// No lower device outside: made in the target, keeping its index when free there.
#[case::inside(false, CreateFrom::Lower, 5, &[], &[], Placement::Target, true)]
#[case::inside_index_taken(false, CreateFrom::Lower, 5, &[5], &[], Placement::Target, false)]
// On a host device: from the host's side unless the host holds the index it keeps.
#[case::from_lower(true, CreateFrom::Lower, 5, &[], &[], Placement::FromLower, true)]
#[case::index_held_by_host(true, CreateFrom::Lower, 5, &[], &[5], Placement::ViaNsid, true)]
#[case::index_held_in_target(true, CreateFrom::Lower, 5, &[5], &[5], Placement::FromLower, false)]
#[case::asked_for_target(true, CreateFrom::Target, 5, &[], &[], Placement::ViaNsid, true)]
fn placement_keeps_indexes_only_where_the_kernel_checks_them(
    #[case] external: bool,
    #[case] create_from: CreateFrom,
    #[case] ifindex: u32,
    #[case] target: &[u32],
    #[case] caller: &[u32],
    #[case] placement: Placement,
    #[case] keep: bool,
) {
    let l = link("m0", "t-upper", ifindex, None);
    let (target, caller, names, wanted) = (set(target), set(caller), HashSet::new(), set(&[]));
    let taken = Taken {
        target: &target,
        caller: &caller,
        caller_names: &names,
        wanted: &wanted,
    };
    assert_eq!(
        request::placement(&l, external, create_from, taken),
        (placement, keep)
    );
}

#[rstest]
fn a_spare_index_avoids_every_index_an_image_link_wants() {
    let l = link("m0", "t-upper", 2, None);
    let (target, caller, names, wanted) = (set(&[1, 2]), set(&[1, 3]), HashSet::new(), set(&[4]));
    let taken = Taken {
        target: &target,
        caller: &caller,
        caller_names: &names,
        wanted: &wanted,
    };
    let mut given = HashSet::new();
    let first = request::chosen_index(&l, Placement::FromLower, false, taken, &mut given);
    let second = request::chosen_index(&l, Placement::FromLower, false, taken, &mut given);
    let in_target = request::chosen_index(&l, Placement::Target, false, taken, &mut given);
    assert_eq!((first, second, in_target), (5, 6, 3));
}

#[rstest]
#[case::from_lower(Via::NetnsFd(42), LinkAttribute::NetNsFd(42))]
#[case::via_nsid(Via::Nsid(3), LinkAttribute::LinkNetNsId(3))]
fn a_creation_request_names_the_lower_namespace_as_placed(
    #[case] via: Via,
    #[case] attr: LinkAttribute,
) {
    let l = link("x0", "t-upper", 2, external("eth9"));
    let none = |_: &str| None;
    let request = request::creation_request(
        Creation {
            link: &l,
            group: 9,
            index: 2,
            lower_index: Some(7),
            via,
            peer: None,
            peer_is_external: false,
            index_of: &none,
        },
        &UpperKind,
    )
    .unwrap();
    assert_eq!(request.flags, NLM_F_CREATE | NLM_F_EXCL);
    assert_eq!(request.context, "creating t-upper \"x0\"");
    let RouteNetlinkMessage::NewLink(msg) = request.message else {
        panic!()
    };
    assert_eq!(msg.header.index, 2);
    for want in [
        LinkAttribute::IfName("x0".into()),
        LinkAttribute::Group(9),
        LinkAttribute::Link(7),
        attr,
    ] {
        assert!(msg.attributes.contains(&want), "{want:?} in {msg:?}");
    }
}

mod stored_families {
    use super::super::verify::stored_families;
    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::route::RouteMessage;
    use netlink_packet_route::AddressFamily::{self, Inet, Inet6};
    use rstest::rstest;

    fn address(family: AddressFamily) -> Vec<u8> {
        let mut msg = AddressMessage::default();
        msg.header.family = family;
        crate::state::encode(&msg)
    }

    fn route(family: AddressFamily) -> Vec<u8> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        crate::state::encode(&msg)
    }

    #[rstest]
    #[case::none(vec![], vec![])]
    #[case::ipv4(vec![address(Inet), address(Inet)], vec![Inet])]
    #[case::ipv6(vec![address(Inet6)], vec![Inet6])]
    #[case::both_ipv4_first(vec![address(Inet6), address(Inet)], vec![Inet, Inet6])]
    #[case::routes(vec![route(Inet6)], vec![Inet6])]
    #[case::unknown_asks_for_both(vec![vec![7, 0, 0, 0]], vec![Inet, Inet6])]
    #[case::empty_record_asks_for_both(vec![vec![]], vec![Inet, Inet6])]
    fn families_of_stored_messages(
        #[case] messages: Vec<Vec<u8>>,
        #[case] expected: Vec<AddressFamily>,
    ) {
        assert_eq!(stored_families(messages.iter()), expected);
    }
}

mod nexthops {
    use super::*;
    use netcr_netlink::netlink_packet_core::Parseable;
    use netcr_netlink::nexthop::{
        NexthopAttribute, NexthopGroupEntry, NexthopMessage, RTM_DELNEXTHOP, RTM_NEWNEXTHOP,
    };

    fn record(id: u32, dev: &str, group: &[u32]) -> v1::Nexthop {
        let mut msg = NexthopMessage::default();
        msg.header.family = libc::AF_INET as u8;
        msg.attributes.push(NexthopAttribute::Id(id));
        if !dev.is_empty() {
            msg.attributes
                .push(NexthopAttribute::Gateway("10.1.0.2".parse().unwrap()));
            msg.attributes.push(NexthopAttribute::Oif(99));
        } else if group.is_empty() {
            msg.attributes.push(NexthopAttribute::Blackhole);
        } else {
            msg.header.family = 0;
            msg.attributes.push(NexthopAttribute::Group(
                group
                    .iter()
                    .map(|&id| NexthopGroupEntry { id, weight: 1 })
                    .collect(),
            ));
        }
        v1::Nexthop {
            dev: dev.into(),
            message: crate::state::encode(&msg),
        }
    }

    /// The base image with a gateway nexthop on p0, a blackhole one and a group of both,
    /// listed group first (as no kernel dumps them) to show the order comes from the phase.
    fn image_with_nexthops() -> Image {
        let mut image = image();
        image.namespaces[0].nexthops = vec![
            record(10, "", &[1, 2]),
            record(1, "p0", &[]),
            record(2, "", &[]),
        ];
        image
    }

    fn sent(fake: &FakeKernel) -> Vec<(u16, String)> {
        fake.0
            .borrow()
            .sent_raw
            .iter()
            .map(|(_, r)| (r.message.kind, r.context.clone()))
            .collect()
    }

    #[rstest]
    fn singles_go_first_then_groups_and_each_is_journaled_in_an_existing_namespace() {
        let image = image_with_nexthops();
        let opts = RestoreOptions::default();
        let caller = this_netns();
        let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
        let fake = kernel.clone();
        let mut s = session(&image, &opts, &caller, &mut kernel);
        s.targets[0].index = HashMap::from([("p0".to_string(), 3)]);
        super::super::nexthops::add(&mut s, 0).unwrap();
        assert_eq!(
            sent(&fake),
            vec![
                (RTM_NEWNEXTHOP, "adding nexthop 1".into()),
                (RTM_NEWNEXTHOP, "adding nexthop 2".into()),
                (RTM_NEWNEXTHOP, "adding nexthop 10".into()),
            ]
        );
        // The device index is the target's, not the dumped one.
        let first = fake.0.borrow().sent_raw[0].1.message.clone();
        let msg = NexthopMessage::parse(first.body.as_slice()).unwrap();
        assert_eq!(msg.oif(), Some(3));
        assert_eq!(
            s.journal.entries(),
            &[
                Entry::NexthopAdded { ns: 0, id: 1 },
                Entry::NexthopAdded { ns: 0, id: 2 },
                Entry::NexthopAdded { ns: 0, id: 10 },
            ]
        );
        assert_eq!(s.targets[0].report.nexthops, 3);
    }

    #[rstest]
    fn in_a_namespace_the_restore_created_they_go_with_it() {
        let image = image_with_nexthops();
        let opts = RestoreOptions::default();
        let caller = this_netns();
        let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
        let mut s = session(&image, &opts, &caller, &mut kernel);
        s.targets[0].create = Some("t".into());
        s.targets[0].index = HashMap::from([("p0".to_string(), 3)]);
        super::super::nexthops::add(&mut s, 0).unwrap();
        assert_eq!(s.journal.entries(), &[]);
    }

    #[rstest]
    fn a_failed_group_is_undone_with_the_nexthops_made_before_it() {
        let image = image_with_nexthops();
        let opts = RestoreOptions::default();
        let caller = this_netns();
        let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
        let fake = kernel.clone();
        // Request 2 (from 0) adds the group.
        fake.0.borrow_mut().fail_at = Some(2);
        let mut s = session(&image, &opts, &caller, &mut kernel);
        s.targets[0].index = HashMap::from([("p0".to_string(), 3)]);
        let err = super::super::nexthops::add(&mut s, 0).unwrap_err();
        assert!(err.to_string().contains("adding nexthop 10"), "{err}");
        assert_eq!(
            undo::plan(&s.journal),
            vec![Step::DeleteNexthops {
                ns: 0,
                ids: vec![2, 1]
            }]
        );
        let err = undo::roll_back(&mut s, err);
        let CoreError::RolledBack { rollback, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(rollback, "removed 2 added nexthops");
        assert_eq!(fake.0.borrow().nexthops["t"], Vec::<u32>::new());
        let last = sent(&fake).pop().unwrap();
        assert_eq!(last, (RTM_DELNEXTHOP, "removing nexthop 1".into()));
    }

    #[rstest]
    fn nexthops_are_deleted_after_the_routes_that_use_them_and_before_the_links() {
        let mut j = Journal::new(7);
        let lo = LinkMessage::default();
        j.push(Entry::DevicesBefore {
            ns: 0,
            links: vec![lo.clone()],
        });
        j.push(Entry::LinksCreated {
            ns: 0,
            names: vec!["m0".into()],
        });
        j.push(Entry::LinksRegrouped { ns: 0 });
        for id in [1, 2, 10] {
            j.push(Entry::NexthopAdded { ns: 0, id });
        }
        j.push(Entry::ObjectAdded {
            ns: 0,
            delete: delete("route"),
        });
        assert_eq!(
            undo::plan(&j),
            vec![
                Step::DeleteObjects {
                    ns: 0,
                    requests: vec![delete("route")]
                },
                // Newest first: the group before its members, in one batch.
                Step::DeleteNexthops {
                    ns: 0,
                    ids: vec![10, 2, 1]
                },
                Step::Regroup {
                    ns: 0,
                    names: vec!["m0".into()]
                },
                Step::DeleteGroup { ns: 0, count: 1 },
                Step::PutBackDevconf {
                    ns: 0,
                    devices: vec![lo]
                },
            ]
        );
    }
}

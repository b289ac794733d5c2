//! The nexthops phase against the fake kernel, and where its undo lands.

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
    })
    .unwrap();
    j.push(Entry::LinksCreated {
        ns: 0,
        names: vec!["m0".into()],
    })
    .unwrap();
    j.push(Entry::LinksRegrouped { ns: 0 }).unwrap();
    for id in [1, 2, 10] {
        j.push(Entry::NexthopAdded { ns: 0, id }).unwrap();
    }
    j.push(Entry::ObjectAdded {
        ns: 0,
        delete: delete("route"),
    })
    .unwrap();
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

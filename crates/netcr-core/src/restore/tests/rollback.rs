//! Where each undo lands: the journal walked backwards.

use super::*;

#[rstest]
fn a_rollback_walks_the_journal_backwards_across_namespaces() {
    let mut j = Journal::new(7);
    for (ns, name) in [(0, "r2"), (1, "a2"), (2, "b2")] {
        j.push(Entry::NetnsCreated {
            ns,
            name: name.into(),
            identity: None,
        })
        .unwrap();
    }
    // r's requests make the pairs: each end is journaled where it lives.
    j.push(Entry::LinksCreated {
        ns: 0,
        names: vec!["ra".into(), "rb".into()],
    })
    .unwrap();
    j.push(Entry::LinksCreated {
        ns: 1,
        names: vec!["a0".into()],
    })
    .unwrap();
    j.push(Entry::LinksCreated {
        ns: 2,
        names: vec!["b0".into()],
    })
    .unwrap();
    j.push(Entry::LinksRegrouped { ns: 0 }).unwrap();
    j.push(Entry::LinksRegrouped { ns: 1 }).unwrap();
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
    })
    .unwrap();
    j.push(Entry::LoAddressesBefore {
        ns: 0,
        lo: 1,
        addresses: vec![],
    })
    .unwrap();
    j.push(Entry::NetnsSysctls {
        ns: 0,
        changed: vec![("net.ipv4.ip_forward".into(), "0".into())],
    })
    .unwrap();
    j.push(Entry::LinkChanged {
        ns: 0,
        before: lo.clone(),
    })
    .unwrap();
    j.push(Entry::TemporaryLink {
        name: "ncr1".into(),
    })
    .unwrap();
    for name in ["m0", "m1"] {
        j.push(Entry::LinksCreated {
            ns: 0,
            names: vec![name.into()],
        })
        .unwrap();
    }
    j.push(Entry::ObjectAdded {
        ns: 0,
        delete: delete("address"),
    })
    .unwrap();
    j.push(Entry::LinksRegrouped { ns: 0 }).unwrap();
    j.push(Entry::ObjectAdded {
        ns: 0,
        delete: delete("route"),
    })
    .unwrap();
    j.push(Entry::ObjectAdded {
        ns: 0,
        delete: delete("rule"),
    })
    .unwrap();
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

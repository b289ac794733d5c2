//! The links phase against the fake kernel, and its rollback.

use super::*;

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

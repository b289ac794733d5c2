//! The nf_tables phase against the fake kernel: one transaction in the kernel's order, the
//! checks before any change, and where its undo lands.

use super::*;
use netcr_netlink::nftables::{self as nft, chain, hook, msg, rule, table, Attr, NftMessage};

use crate::nftables::Kind;

const INET: u8 = 1;

fn object(m: NftMessage, ifindexes: &[(u32, &str)]) -> v1::NftObject {
    v1::NftObject {
        kind: u32::from(m.kind),
        family: u32::from(m.family),
        attributes: nft::emit(&m.attrs),
        ifindexes: ifindexes
            .iter()
            .map(|(ifindex, dev)| v1::NftIfindex {
                ifindex: *ifindex,
                dev: dev.to_string(),
            })
            .collect(),
    }
}

/// Table inet `name` with a base chain "input" and one rule, which matches `uses` by index.
fn firewall(name: &str, uses: &[(u32, &str)]) -> Vec<v1::NftObject> {
    let hook = Attr::nested(
        chain::HOOK,
        &[Attr::be32(hook::HOOKNUM, 1), Attr::be32(hook::PRIORITY, 0)],
    );
    vec![
        object(
            NftMessage::new(msg::NEWTABLE, INET, vec![Attr::string(table::NAME, name)]),
            &[],
        ),
        // Listed rule first, as no kernel dumps them: the order comes from the phase.
        object(
            NftMessage::new(
                msg::NEWRULE,
                INET,
                vec![
                    Attr::string(rule::TABLE, name),
                    Attr::string(rule::CHAIN, "input"),
                ],
            ),
            uses,
        ),
        object(
            NftMessage::new(
                msg::NEWCHAIN,
                INET,
                vec![
                    Attr::string(chain::TABLE, name),
                    Attr::string(chain::NAME, "input"),
                    hook,
                    Attr::be32(chain::POLICY, 0),
                    Attr::string(chain::TYPE, "filter"),
                ],
            ),
            &[],
        ),
    ]
}

fn image_with_firewall(uses: &[(u32, &str)]) -> Image {
    let mut image = image();
    image.namespaces[0].nftables = firewall("t1", uses);
    image
}

fn transactions(fake: &FakeKernel) -> Vec<Vec<String>> {
    fake.0
        .borrow()
        .sent_nft
        .iter()
        .map(|(_, r)| r.iter().map(|r| r.context.clone()).collect())
        .collect()
}

fn tables(fake: &FakeKernel) -> Vec<(u8, String)> {
    fake.0
        .borrow()
        .nft_tables
        .get("t")
        .cloned()
        .unwrap_or_default()
}

#[rstest]
fn the_firewall_is_one_transaction_in_the_kernels_order_and_journaled_in_an_existing_namespace() {
    let image = image_with_firewall(&[]);
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let fake = kernel.clone();
    let mut s = session(&image, &opts, &caller, &mut kernel);
    super::super::nftables::inspect(&mut s, 0).unwrap();
    super::super::nftables::add(&mut s, 0).unwrap();
    assert_eq!(
        transactions(&fake),
        vec![vec![
            "adding table inet t1".to_string(),
            "adding chain inet t1 input".to_string(),
            "adding rule 1 of chain inet t1 input".to_string(),
        ]]
    );
    assert_eq!(tables(&fake), vec![(INET, "t1".to_string())]);
    assert_eq!(
        s.journal.entries(),
        &[Entry::NftTableAdded {
            ns: 0,
            family: INET,
            name: "t1".into()
        }]
    );
    assert_eq!(s.targets[0].report.nft_tables, 1);
    // Every request of the transaction counts.
    assert_eq!(s.requests(), 3);
}

#[rstest]
fn in_a_namespace_the_restore_created_the_tables_go_with_it() {
    let image = image_with_firewall(&[]);
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let mut s = session(&image, &opts, &caller, &mut kernel);
    s.targets[0].create = Some("t".into());
    super::super::nftables::add(&mut s, 0).unwrap();
    assert_eq!(s.journal.entries(), &[]);
}

#[rstest]
fn a_refused_transaction_leaves_nothing_to_undo() {
    let image = image_with_firewall(&[]);
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let fake = kernel.clone();
    // Request 2 (from 0) is the rule: the kernel applies none of the transaction.
    fake.0.borrow_mut().fail_at = Some(2);
    let mut s = session(&image, &opts, &caller, &mut kernel);
    let err = super::super::nftables::add(&mut s, 0).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("adding rule 1 of chain inet t1 input"),
        "{err}"
    );
    assert!(tables(&fake).is_empty());
    assert_eq!(undo::plan(&s.journal), vec![]);
}

#[rstest]
fn a_transaction_whose_answer_is_lost_is_undone_by_the_tables_it_left() {
    let image = image_with_firewall(&[]);
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let fake = kernel.clone();
    fake.0.borrow_mut().nft_lose_answer = true;
    let mut s = session(&image, &opts, &caller, &mut kernel);
    let err = super::super::nftables::add(&mut s, 0).unwrap_err();
    assert_eq!(tables(&fake), vec![(INET, "t1".to_string())]);
    assert_eq!(
        undo::plan(&s.journal),
        vec![Step::DeleteNftTables {
            ns: 0,
            tables: vec![(INET, "t1".into())]
        }]
    );
    fake.0.borrow_mut().nft_lose_answer = false;
    let err = undo::roll_back(&mut s, err);
    let CoreError::RolledBack { rollback, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(rollback, "removed 1 added nf_tables tables");
    assert!(tables(&fake).is_empty());
}

#[rstest]
fn a_table_the_existing_namespace_holds_is_refused_before_any_change() {
    let image = image_with_firewall(&[]);
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let fake = kernel.clone();
    fake.0
        .borrow_mut()
        .nft_tables
        .insert("t".into(), vec![(2, "t1".into()), (INET, "t1".into())]);
    let mut s = session(&image, &opts, &caller, &mut kernel);
    let err = super::super::nftables::inspect(&mut s, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "netns \"t\" already has nf_tables tables the image holds: inet t1; restore into another namespace or delete them"
    );
    assert!(transactions(&fake).is_empty());
}

#[rstest]
fn a_rule_matching_a_device_by_an_index_it_cannot_keep_is_refused_before_any_change() {
    let image = image_with_firewall(&[(3, "p0"), (1, "lo")]);
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let mut s = session(&image, &opts, &caller, &mut kernel);
    // The target holds index 3 already: p0 is made under another one.
    let mut other = LinkMessage::default();
    other.header.index = 3;
    other
        .attributes
        .push(LinkAttribute::IfName("theirs0".into()));
    s.targets[0].links_before.push(other);
    let err = super::super::nftables::inspect(&mut s, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule 1 of chain inet t1 input matches \"p0\" by its index 3, which \"p0\" cannot keep here (netns \"t\" holds it); restore into a namespace where the index is free"
    );
    // Where the index is free, or the device is lo (always 1), it passes.
    s.targets[0].links_before.pop();
    super::super::nftables::inspect(&mut s, 0).unwrap();
}

#[rstest]
fn tables_are_deleted_after_the_routes_and_before_the_links_in_one_step() {
    let mut j = Journal::new(7);
    j.push(Entry::LinksCreated {
        ns: 0,
        names: vec!["m0".into()],
    })
    .unwrap();
    for name in ["a", "b"] {
        j.push(Entry::NftTableAdded {
            ns: 0,
            family: INET,
            name: name.into(),
        })
        .unwrap();
    }
    j.push(Entry::LinksRegrouped { ns: 0 }).unwrap();
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
            Step::Regroup {
                ns: 0,
                names: vec!["m0".into()]
            },
            Step::DeleteNftTables {
                ns: 0,
                tables: vec![(INET, "b".into()), (INET, "a".into())]
            },
            Step::DeleteGroup { ns: 0, count: 1 },
        ]
    );
}

#[rstest]
fn the_kinds_come_back_in_the_order_the_kernel_takes_them() {
    let order = [
        Kind::Table,
        Kind::Chain,
        Kind::Object,
        Kind::Flowtable,
        Kind::Set,
        Kind::Elements,
        Kind::Rule,
    ];
    let mut sorted = order;
    sorted.sort();
    assert_eq!(sorted, order);
}

#[rstest]
fn a_recovery_undoes_tables_made_and_leaves_a_bare_intent_alone() {
    use super::super::journal::to_record;
    let entry = Entry::NftTableAdded {
        ns: 0,
        family: INET,
        name: "t1".into(),
    };
    // Killed before the transaction's answer: a table of that name may be someone else's.
    let (entries, intents) =
        super::super::recover::read_entries(&[to_record(&entry, false)]).unwrap();
    assert_eq!((entries, intents), (vec![], vec![entry.clone()]));
    // Once made, the journal proves it.
    let (entries, intents) =
        super::super::recover::read_entries(&[to_record(&entry, false), to_record(&entry, true)])
            .unwrap();
    assert_eq!(entries, vec![entry.clone()]);
    assert_eq!(intents, vec![entry]);
}

#[rstest]
fn a_table_a_killed_restore_was_adding_is_named_only_where_one_is_there() {
    let image = image_with_firewall(&[]);
    let opts = RestoreOptions::default();
    let caller = this_netns();
    let mut kernel = FakeKernel::with_namespaces(&["caller", "t"]);
    let fake = kernel.clone();
    let mut s = session(&image, &opts, &caller, &mut kernel);
    let intent = Entry::NftTableAdded {
        ns: 0,
        family: INET,
        name: "t1".into(),
    };
    let bare = std::slice::from_ref(&intent);
    // Never made: nothing to say.
    assert_eq!(
        super::super::recover::tables_left_alone(&mut s, bare),
        Vec::<String>::new()
    );
    // One of that name is there: maybe the restore's, maybe someone else's.
    fake.0
        .borrow_mut()
        .nft_tables
        .insert("t".into(), vec![(INET, "t1".into())]);
    let said = super::super::recover::tables_left_alone(&mut s, bare);
    assert_eq!(
        said,
        ["netns \"t\": the restore was adding nf_tables table inet t1 when it was killed, and a table of that name is there: left alone (it may be someone else's)"]
    );
    assert_eq!(tables(&fake), [(INET, "t1".to_string())]);
}

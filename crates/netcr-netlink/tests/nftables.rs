//! nf_tables over NETLINK_NETFILTER against this kernel, each test in a namespace of its own:
//! a transaction applies whole or not at all, a refusal names the request and carries the
//! kernel's text, and the ruleset dump reads back what was made.

use netcr_netlink::nftables::{
    self, chain, dump_ruleset, find_str, hook, msg, rule, table, Attr, NftMessage,
    NFNL_SUBSYS_NFTABLES,
};
use netcr_netlink::{Protocol, RawSocket, RawTransport, Request};
use netcr_testkit::{require_root, TestNetns};

const INET: u8 = 1;

fn socket(ns: &TestNetns) -> RawSocket {
    RawSocket::open_in(&ns.netns, Protocol::Netfilter, &ns.name).expect("netfilter socket")
}

/// A socket in a fresh namespace, or `None` (the test skips) in the VM's guest when its
/// kernel has no nf_tables (the module did not load); natively nf_tables must be there.
fn fresh() -> Option<(TestNetns, RawSocket)> {
    let ns = TestNetns::new("nft");
    let mut s = socket(&ns);
    if nftables::generation(&mut s).unwrap().is_none() {
        let vm = std::env::var_os("NETCR_VMTEST").is_some_and(|v| v == "1");
        assert!(vm, "this kernel has no nf_tables");
        eprintln!("SKIPPED: the guest's kernel has no nf_tables");
        return None;
    }
    Some((ns, s))
}

fn create(m: NftMessage, what: &str) -> Request<netcr_netlink::RawMessage> {
    Request::create(m.to_raw(), what)
}

fn new_table(name: &str) -> Request<netcr_netlink::RawMessage> {
    create(
        NftMessage::new(msg::NEWTABLE, INET, vec![Attr::string(table::NAME, name)]),
        &format!("adding table inet {name}"),
    )
}

fn base_chain(table_name: &str, name: &str) -> Request<netcr_netlink::RawMessage> {
    let hook = Attr::nested(
        chain::HOOK,
        &[Attr::be32(hook::HOOKNUM, 1), Attr::be32(hook::PRIORITY, 0)],
    );
    create(
        NftMessage::new(
            msg::NEWCHAIN,
            INET,
            vec![
                Attr::string(chain::TABLE, table_name),
                Attr::string(chain::NAME, name),
                hook,
                Attr::be32(chain::POLICY, 0),
                Attr::string(chain::TYPE, "filter"),
            ],
        ),
        &format!("adding chain inet {table_name} {name}"),
    )
}

/// A rule with no expressions in `chain_name`.
fn empty_rule(table_name: &str, chain_name: &str) -> Request<netcr_netlink::RawMessage> {
    create(
        NftMessage::new(
            msg::NEWRULE,
            INET,
            vec![
                Attr::string(rule::TABLE, table_name),
                Attr::string(rule::CHAIN, chain_name),
            ],
        ),
        &format!("adding rule 1 of chain inet {table_name} {chain_name}"),
    )
}

fn tables(s: &mut RawSocket) -> Vec<String> {
    dump_ruleset(s)
        .unwrap()
        .expect("this kernel has nf_tables")
        .iter()
        .filter(|m| m.kind == msg::NEWTABLE)
        .filter_map(|m| find_str(&m.attrs, table::NAME).map(str::to_string))
        .collect()
}

#[test]
fn a_transaction_applies_whole_and_the_dump_reads_it_back() {
    require_root!();
    let Some((_ns, mut s)) = fresh() else {
        return;
    };
    assert_eq!(dump_ruleset(&mut s).unwrap(), Some(vec![]));
    s.transaction(
        NFNL_SUBSYS_NFTABLES,
        vec![
            new_table("t1"),
            base_chain("t1", "input"),
            empty_rule("t1", "input"),
        ],
        "restoring",
    )
    .unwrap();
    let dumped = dump_ruleset(&mut s).unwrap().unwrap();
    let kinds: Vec<u8> = dumped.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec![msg::NEWTABLE, msg::NEWCHAIN, msg::NEWRULE]);
    assert_eq!(dumped[1].str(chain::NAME), Some("input"));
    assert_eq!(dumped[2].str(rule::CHAIN), Some("input"));
    // The generation moved: the same socket reads it.
    assert!(nftables::generation(&mut s).unwrap().is_some());
}

#[test]
fn a_refused_transaction_names_the_request_and_leaves_nothing() {
    require_root!();
    let Some((_ns, mut s)) = fresh() else {
        return;
    };
    let err = s
        .transaction(
            NFNL_SUBSYS_NFTABLES,
            vec![
                new_table("t1"),
                base_chain("t1", "input"),
                empty_rule("t1", "nosuchchain"),
            ],
            "restoring",
        )
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    assert!(
        err.to_string()
            .starts_with("adding rule 1 of chain inet t1 nosuchchain"),
        "{err}"
    );
    assert!(tables(&mut s).is_empty(), "nothing was applied");
    // The socket is usable afterwards: a second transaction goes through.
    s.transaction(NFNL_SUBSYS_NFTABLES, vec![new_table("t2")], "restoring")
        .unwrap();
    assert_eq!(tables(&mut s), vec!["t2"]);
    // An existing table is refused on creation (NLM_F_EXCL), the whole batch with it.
    let err = s
        .transaction(
            NFNL_SUBSYS_NFTABLES,
            vec![new_table("t3"), new_table("t2")],
            "restoring",
        )
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(tables(&mut s), vec!["t2"]);
}

#[test]
fn deleting_a_table_takes_its_contents_and_a_missing_one_is_not_found() {
    require_root!();
    let Some((_ns, mut s)) = fresh() else {
        return;
    };
    s.transaction(
        NFNL_SUBSYS_NFTABLES,
        vec![new_table("t1"), base_chain("t1", "input")],
        "restoring",
    )
    .unwrap();
    let delete = |name: &str| {
        vec![Request::change(
            nftables::delete_table(INET, name).to_raw(),
            format!("removing table inet {name}"),
        )]
    };
    s.transaction(NFNL_SUBSYS_NFTABLES, delete("t1"), "undoing")
        .unwrap();
    assert_eq!(dump_ruleset(&mut s).unwrap(), Some(vec![]));
    let err = s
        .transaction(NFNL_SUBSYS_NFTABLES, delete("t1"), "undoing")
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn a_large_transaction_is_acknowledged_whole() {
    require_root!();
    let Some((_ns, mut s)) = fresh() else {
        return;
    };
    let mut requests = vec![new_table("big"), base_chain("big", "input")];
    requests.extend((0..5000).map(|_| empty_rule("big", "input")));
    s.transaction(NFNL_SUBSYS_NFTABLES, requests, "restoring")
        .unwrap();
    let rules = dump_ruleset(&mut s)
        .unwrap()
        .unwrap()
        .iter()
        .filter(|m| m.kind == msg::NEWRULE)
        .count();
    assert_eq!(rules, 5000);
}

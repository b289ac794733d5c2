//! Unit tests of the nf_tables family on messages captured from kernel 6.18: what the dump
//! keeps, the checks of an image, the restore's transaction, the comparison and the
//! summary.

use netcr_image::{v1, NetnsImage};
use netcr_netlink::nftables::{self as nft, chain, msg, rule, set, table, Attr, NftMessage};
use rstest::rstest;

use super::*;

/// `nft -a list ruleset` of the namespace these messages were dumped from (kernel 6.18,
/// nft 1.0.6), plus `iptables-nft -A INPUT -p tcp -m multiport --dports 80,443 -j ACCEPT`:
///
/// ```text
/// table inet filt {
///   counter c1 { packets 3 bytes 180 }
///   map vm { type inet_service : verdict; elements = { 22 : jump other } }
///   chain input {
///     type filter hook input priority filter; policy drop;
///     iif "lo" counter packets 2 bytes 100 accept
///     tcp dport { 80, 443 } accept
///     tcp dport vmap @vm
///   }
///   chain other { counter name "c1" accept }
/// }
/// table ip filter { chain INPUT { ... xt match multiport ... accept } }
/// ```
///
/// Tables, chains, sets, each set's elements (each set's dump ends with an empty message),
/// objects, rules: (message type, body).
const GOLDEN: &[(u16, &str)] = &[
    (0x0a00, "010000030900010066696c740000000008000300000000040c00040000000000000000010800020000000000"),
    (0x0a00, "020000030b00010066696c746572000008000300000000010c00040000000000000000020800020000000000"),
    (0x0a03, "010000030900010066696c74000000000a000300696e7075740000000c0002000000000000000001140004000800010000000001080002000000000008000500000000000b00070066696c746572000008000a00000000010800060000000003"),
    (0x0a03, "010000030900010066696c74000000000a0003006f746865720000000c00020000000000000000020800060000000002"),
    (0x0a03, "020000030b00010066696c74657200000a000300494e5055540000000c0002000000000000000001140004000800010000000001080002000000000008000500000000010b00070066696c746572000008000a00000000010800060000000001"),
    (0x0a09, "010000030900010066696c740000000007000200766d00000c00100000000000000000040800030000000008080004000000000d080005000000000208000600ffffff00080007000000001016000d000004020000000104000000000604000000000000040009001700130030786666666666666666383235303866343000000800140000000001"),
    (0x0a09, "010000030900010066696c74000000000b0002005f5f7365743000000c00100000000000000000060800030000000003080004000000000d080005000000000220000d000004020000000314000407000000010c0004080000000104020000000c00090008000100000000021700130030786666666666666666383235303930323000000800140000000002"),
    (0x0a0c, "010000030900010066696c740000000007000200766d0000300003002c0001000c00010006000100001600001c0002001800020008000100fffffffd0a0002006f74686572000000"),
    (0x0a0c, "010000030900010066696c740000000007000200766d000004000300"),
    (0x0a0c, "010000030900010066696c74000000000b0002005f5f73657430000024000300100001000c0001000600010000500000100001000c0001000600010001bb0000"),
    (0x0a0c, "010000030900010066696c74000000000b0002005f5f73657430000004000300"),
    (0x0a12, "010000030900010066696c7400000000070002006331000008000300000000010c000600000000000000000308000500000000011c0004000c00010000000000000000b40c0002000000000000000003"),
    (0x0a06, "010000030900010066696c74000000000a000200696e7075740000000c0003000000000000000005b000040024000100090001006d6574610000000014000200080002000000000408000100000000012c00010008000100636d700020000200080001000000000108000200000000000c00030008000100010000002c0001000c000100636f756e746572001c0002000c00010000000000000000640c0002000000000000000002300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001"),
    (0x0a06, "010000030900010066696c74000000000a000200696e7075740000000c00030000000000000000070c0006000000000000000005e800040024000100090001006d6574610000000014000200080002000000001008000100000000012c00010008000100636d700020000200080001000000000108000200000000000c0003000500010006000000340001000c0001007061796c6f616400240002000800010000000001080002000000000208000300000000020800040000000002300001000b0001006c6f6f6b75700000200002000b0001005f5f73657430000008000200000000010800050000000000300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001"),
    (0x0a06, "010000030900010066696c74000000000a000200696e7075740000000c00030000000000000000080c0006000000000000000007bc00040024000100090001006d6574610000000014000200080002000000001008000100000000012c00010008000100636d700020000200080001000000000108000200000000000c0003000500010006000000340001000c0001007061796c6f616400240002000800010000000001080002000000000208000300000000020800040000000002340001000b0001006c6f6f6b757000002400020007000100766d0000080002000000000108000300000000000800050000000000"),
    (0x0a06, "010000030900010066696c74000000000a0002006f746865720000000c000300000000000000000958000400240001000b0001006f626a72656600001400020007000200633100000800010000000001300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001"),
    (0x0a06, "020000030b00010066696c74657200000a000200494e5055540000000c00030000000000000000021001040024000100090001006d6574610000000014000200080002000000001008000100000000012c00010008000100636d700020000200080001000000000108000200000000000c0003000500010006000000600001000a0001006d61746368000000500002000e0001006d756c7469706f727400000008000200000000013400030001025000bb010000000000000000000000000000000000000000000000000000000000000000000000000000000000002c0001000c000100636f756e746572001c0002000c00010000000000000000000c0002000000000000000000300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001"),
];

fn golden() -> Vec<NftMessage> {
    GOLDEN
        .iter()
        .map(|(kind, hex)| {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            NftMessage::parse(*kind, &bytes).unwrap()
        })
        .collect()
}

/// lo is index 1 in every namespace.
fn name_of(index: u32) -> Option<String> {
    (index == 1).then(|| "lo".to_string())
}

fn kept() -> Vec<v1::NftObject> {
    let kept = keep(&golden(), &name_of).unwrap();
    assert_eq!(kept.warnings, Vec::<String>::new());
    kept.records
}

fn image(records: Vec<v1::NftObject>) -> NetnsImage {
    NetnsImage {
        nftables: records,
        ..Default::default()
    }
}

fn decoded(records: &[v1::NftObject]) -> Vec<Object> {
    records.iter().map(|r| Object::decode(r).unwrap()).collect()
}

fn lo_index(dev: &str) -> Option<u32> {
    (dev == "lo").then_some(1)
}

#[rstest]
fn a_dump_keeps_every_object_table_by_table_in_the_order_the_kernel_takes_them() {
    let labels: Vec<String> = decoded(&kept()).iter().map(Object::label).collect();
    assert_eq!(
        labels,
        [
            "table inet filt",
            "chain inet filt input",
            "chain inet filt other",
            "counter inet filt c1",
            "set inet filt vm",
            "set inet filt __set0",
            "elements of set inet filt vm",
            "elements of set inet filt __set0",
            "a rule of chain inet filt input",
            "a rule of chain inet filt input",
            "a rule of chain inet filt input",
            "a rule of chain inet filt other",
            "table ip filter",
            "chain ip filter INPUT",
            "a rule of chain ip filter INPUT",
        ]
    );
}

#[rstest]
fn the_kernels_bookkeeping_is_left_out_and_the_rest_kept_byte_for_byte() {
    let dumped = golden();
    let objects = decoded(&kept());
    for o in &objects {
        for id in o.kind.bookkeeping() {
            assert!(o.attr(*id).is_none(), "{}: attribute {id} kept", o.label());
        }
    }
    // The table: name and flags; its handle and use count go.
    assert_eq!(
        objects[0].attrs,
        vec![
            Attr::string(table::NAME, "filt"),
            Attr::be32(table::FLAGS, 0)
        ]
    );
    // A rule's expressions are the kernel's bytes, untouched (the second rule of input has
    // a position, its predecessor's handle, which goes too).
    let second = dumped
        .iter()
        .filter(|m| m.kind == msg::NEWRULE)
        .nth(1)
        .unwrap();
    assert!(second.attr(rule::POSITION).is_some());
    assert_eq!(
        objects[9].attr(rule::EXPRESSIONS),
        second.attr(rule::EXPRESSIONS)
    );
    // A set's backend and count are the kernel's; its key and flags are kept.
    let vm = &objects[4];
    assert!(vm.attr(set::TYPE).is_none() && vm.attr(set::COUNT).is_none());
    assert_eq!(nft::find_be32(&vm.attrs, set::FLAGS), Some(set::F_MAP));
}

#[rstest]
fn a_rule_matching_lo_by_index_records_it_and_one_by_name_does_not() {
    let objects = decoded(&kept());
    let uses: Vec<&[(u32, String)]> = objects
        .iter()
        .filter(|o| o.kind == Kind::Rule)
        .map(|o| o.ifindexes.as_slice())
        .collect();
    assert_eq!(uses[0], &[(1, "lo".to_string())]);
    assert!(uses[1..].iter().all(|u| u.is_empty()), "{uses:?}");
    // An index no device has is kept, with a warning.
    let kept = keep(&golden(), &|_| None).unwrap();
    assert_eq!(
        kept.warnings,
        ["a rule of chain inet filt input matches device index 1, which no device of the namespace has"]
    );
}

/// The request of the object labelled `label` in `batch`, parsed.
fn request_of(batch: &Batch, context: &str) -> (u16, NftMessage) {
    let r = batch
        .requests
        .iter()
        .find(|r| r.context == context)
        .unwrap_or_else(|| panic!("no request {context:?}"));
    (
        r.flags,
        NftMessage::parse(r.message.kind, &r.message.body).unwrap(),
    )
}

fn counter_of(m: &NftMessage) -> Vec<u64> {
    let exprs = expressions(m.attr(rule::EXPRESSIONS).unwrap()).unwrap();
    let counter = exprs.iter().find(|e| e.name == "counter").unwrap();
    [1, 2]
        .iter()
        .map(|id| counter.attr(*id).unwrap().as_be64().unwrap())
        .collect()
}

#[rstest]
fn the_transaction_adds_each_table_whole_in_order_with_fresh_counters() {
    let image = image(kept());
    let batch = requests(&image, false).unwrap();
    let contexts: Vec<&str> = batch.requests.iter().map(|r| r.context.as_str()).collect();
    assert_eq!(
        contexts,
        [
            "adding table inet filt",
            "adding chain inet filt input",
            "adding chain inet filt other",
            "adding counter inet filt c1",
            "adding set inet filt vm",
            "adding set inet filt __set0",
            "adding elements of set inet filt vm",
            "adding elements of set inet filt __set0",
            "adding rule 1 of chain inet filt input",
            "adding rule 2 of chain inet filt input",
            "adding rule 3 of chain inet filt input",
            "adding rule 1 of chain inet filt other",
            "adding table ip filter",
            "adding chain ip filter INPUT",
            "adding rule 1 of chain ip filter INPUT",
        ]
    );
    assert_eq!(batch.tables, [(1, "filt".into()), (2, "filter".into())]);
    assert!(batch.warnings.is_empty());
    let (create, excl, append) = (0x400, 0x200, 0x800);
    let (flags, _) = request_of(&batch, "adding table inet filt");
    assert_eq!(flags, create | excl);
    let (flags, _) = request_of(&batch, "adding elements of set inet filt vm");
    assert_eq!(flags, create);
    // Rules are appended (the kernel would put each first otherwise), counters zero.
    let (flags, first) = request_of(&batch, "adding rule 1 of chain inet filt input");
    assert_eq!(flags, create | append);
    assert_eq!(counter_of(&first), [0, 0]);
    // Each set carries an id of the transaction's own (NFT_MSG_NEWSET requires one).
    let (_, vm) = request_of(&batch, "adding set inet filt vm");
    let (_, anon) = request_of(&batch, "adding set inet filt __set0");
    assert_eq!(
        (
            nft::find_be32(&vm.attrs, 10),
            nft::find_be32(&anon.attrs, 10)
        ),
        (Some(1), Some(2))
    );
    let (_, c1) = request_of(&batch, "adding counter inet filt c1");
    let data = c1.attr(nft::obj::DATA).unwrap().children().unwrap();
    assert!(
        data.iter().all(|a| a.value.iter().all(|b| *b == 0)),
        "{data:?}"
    );

    // With --keep-counters they are the image's.
    let batch = requests(&image, true).unwrap();
    let (_, first) = request_of(&batch, "adding rule 1 of chain inet filt input");
    assert_eq!(counter_of(&first), [100, 2]);
    let (_, c1) = request_of(&batch, "adding counter inet filt c1");
    let data = c1.attr(nft::obj::DATA).unwrap().children().unwrap();
    assert_eq!(data[0].as_be64(), Ok(180));
}

#[rstest]
fn an_xt_rule_gets_back_the_protocol_the_kernel_checks_its_match_against() {
    let batch = requests(&image(kept()), false).unwrap();
    let (_, rule) = request_of(&batch, "adding rule 1 of chain ip filter INPUT");
    // NFTA_RULE_COMPAT { PROTO 6 (tcp), FLAGS 0 }: the dump does not carry it.
    let compat = rule.attr(5).expect("compat").children().unwrap();
    assert_eq!(
        compat,
        vec![Attr::be32(1, libc::IPPROTO_TCP as u32), Attr::be32(2, 0)]
    );
    let (_, plain) = request_of(&batch, "adding rule 2 of chain inet filt input");
    assert!(plain.attr(5).is_none());
}

#[rstest]
fn an_owned_table_comes_back_without_its_owner() {
    let mut records = kept();
    let mut table = Object::decode(&records[0]).unwrap();
    table.attrs[1] = Attr::be32(nft::table::FLAGS, nft::table::F_OWNER);
    records[0] = table.record();
    let batch = requests(&image(records), false).unwrap();
    let (_, t) = request_of(&batch, "adding table inet filt");
    assert_eq!(nft::find_be32(&t.attrs, nft::table::FLAGS), Some(0));
    assert_eq!(batch.warnings.len(), 1, "{:?}", batch.warnings);
    assert!(batch.warnings[0].contains("comes back without an owner"));
}

#[rstest]
fn a_kept_image_validates() {
    validate(&image(kept()), &lo_index).unwrap();
}

/// Record `i` of the golden image with its attributes changed by `f`.
fn changed(records: &mut [v1::NftObject], i: usize, f: impl FnOnce(&mut Vec<Attr>)) {
    let mut o = Object::decode(&records[i]).unwrap();
    f(&mut o.attrs);
    records[i] = o.record();
}

fn set_str(attrs: &mut [Attr], id: u16, value: &str) {
    let a = attrs.iter_mut().find(|a| a.id() == id).unwrap();
    *a = Attr::string(a.kind, value);
}

#[rstest]
#[case::rule_in_a_missing_chain(
    |r: &mut Vec<v1::NftObject>| changed(r, 8, |a| set_str(a, rule::CHAIN, "nochain")),
    "rule 1 of chain inet filt nochain: chain \"nochain\" is not in its table"
)]
#[case::lookup_of_a_missing_set(
    |r: &mut Vec<v1::NftObject>| { r.remove(7); r.remove(5); },
    "rule 2 of chain inet filt input: uses set \"__set0\", which its table does not hold"
)]
#[case::jump_to_a_missing_chain(
    |r: &mut Vec<v1::NftObject>| { r.remove(11); r.remove(2); },
    "elements of set inet filt vm: an element jumps to chain \"other\", which its table does not hold"
)]
#[case::object_missing(
    |r: &mut Vec<v1::NftObject>| { r.remove(3); },
    "rule 1 of chain inet filt other: uses counter \"c1\", which its table does not hold"
)]
#[case::truncated_expressions(
    |r: &mut Vec<v1::NftObject>| changed(r, 9, |a| {
        let e = a.iter_mut().find(|a| a.id() == rule::EXPRESSIONS).unwrap();
        // The first expression claims more bytes than the list holds.
        e.value[0] = 0xf0;
    }),
    "rule 2 of chain inet filt input: in attribute 4: attribute 1 of 240 bytes"
)]
#[case::truncated_record(
    |r: &mut Vec<v1::NftObject>| { let n = r[9].attributes.len(); r[9].attributes.truncate(n - 3); },
    "an nf_tables Rule does not parse"
)]
#[case::table_twice(
    |r: &mut Vec<v1::NftObject>| { let t = r[0].clone(); r.push(t); },
    "table inet filt appears twice"
)]
#[case::chain_before_its_table(
    |r: &mut Vec<v1::NftObject>| { let t = r.remove(0); r.push(t); },
    "chain inet filt input: its table comes later or not at all"
)]
#[case::chain_twice(
    |r: &mut Vec<v1::NftObject>| { let c = r[1].clone(); r.insert(2, c); },
    "chain inet filt input appears twice"
)]
#[case::unknown_type(
    |r: &mut Vec<v1::NftObject>| r[3].kind = 99,
    "an nf_tables object of unknown type 99"
)]
#[case::unknown_family(
    |r: &mut Vec<v1::NftObject>| r[3].family = 4,
    "an nf_tables object of unknown family 4"
)]
#[case::index_of_another_device(
    |r: &mut Vec<v1::NftObject>| r[8].ifindexes[0].dev = "eth9".into(),
    "rule 1 of chain inet filt input matches device \"eth9\" by index 1, which the image does not hold"
)]
#[case::index_not_the_devices(
    |r: &mut Vec<v1::NftObject>| r[8].ifindexes[0].ifindex = 7,
    "rule 1 of chain inet filt input matches device \"lo\" by index 7, but the image's \"lo\" has index 1"
)]
fn hostile_records_are_refused_at_validation(
    #[case] spoil: fn(&mut Vec<v1::NftObject>),
    #[case] expect: &str,
) {
    let mut records = kept();
    spoil(&mut records);
    let err = validate(&image(records), &lo_index).unwrap_err();
    assert!(err.starts_with(expect), "{err}");
}

#[rstest]
fn the_restored_ruleset_compares_equal_and_a_difference_names_the_object_and_field() {
    let image = image(kept());
    assert_eq!(diffs(&image, &golden()), Ok(vec![]));
    // Counters move by themselves: not a difference.
    let mut kernel = golden();
    let mut changed_policy = kernel.clone();
    let input = changed_policy
        .iter_mut()
        .find(|m| m.kind == msg::NEWCHAIN && m.str(chain::NAME) == Some("input"))
        .unwrap();
    let policy = input
        .attrs
        .iter_mut()
        .find(|a| a.id() == chain::POLICY)
        .unwrap();
    *policy = Attr::be32(chain::POLICY, 1);
    assert_eq!(
        diffs(&image, &changed_policy).unwrap(),
        ["chain inet filt input: policy: image 0, kernel 1"]
    );
    // The last rule of input missing.
    let last = kernel
        .iter()
        .rposition(|m| m.kind == msg::NEWRULE && m.str(rule::CHAIN) == Some("input"))
        .unwrap();
    kernel.remove(last);
    assert_eq!(
        diffs(&image, &kernel).unwrap(),
        ["chain inet filt input: rules: image 3, kernel 2"]
    );
    // A table missing; a table of the namespace's own is not the image's business.
    let mut other = golden();
    other.retain(|m| m.str(table::NAME) != Some("filter") && m.str(rule::TABLE) != Some("filter"));
    other.push(NftMessage::new(
        msg::NEWTABLE,
        2,
        vec![Attr::string(table::NAME, "theirs")],
    ));
    assert_eq!(diffs(&image, &other).unwrap(), ["table ip filter: missing"]);
}

#[rstest]
fn the_summary_names_tables_chains_sets_and_counts() {
    let tables = summary(&image(kept())).unwrap();
    assert_eq!(tables.len(), 2);
    let filt = &tables[0];
    assert_eq!((filt.family.as_str(), filt.name.as_str()), ("inet", "filt"));
    let input = &filt.chains[0];
    assert_eq!(
        (
            input.name.as_str(),
            input.kind.as_deref(),
            input.hook.as_deref(),
            input.priority,
            input.policy.as_deref(),
            input.rules
        ),
        (
            "input",
            Some("filter"),
            Some("input"),
            Some(0),
            Some("drop"),
            3
        )
    );
    assert_eq!(
        (filt.chains[1].hook.as_deref(), filt.chains[1].rules),
        (None, 1)
    );
    let sets: Vec<(&str, bool, usize)> = filt
        .sets
        .iter()
        .map(|s| (s.name.as_str(), s.map, s.elements))
        .collect();
    assert_eq!(sets, [("vm", true, 1), ("__set0", false, 2)]);
    assert_eq!(filt.objects, ["counter c1"]);
    assert_eq!(tables[1].chains[0].rules, 1);
}

/// An expression `name` with `data`, as an item of a rule's list.
fn expr(name: &str, data: Vec<Attr>) -> Attr {
    Attr::nested(
        nft::common::LIST_ELEM,
        &[Attr::string(1, name), Attr::nested(2, &data)],
    )
}

fn value(bytes: &[u8]) -> Attr {
    Attr::nested(3, &[Attr::new(1, bytes.to_vec())])
}

fn rule_with(exprs: Vec<Attr>) -> Object {
    Object {
        kind: Kind::Rule,
        family: 1,
        attrs: vec![
            Attr::string(rule::TABLE, "t"),
            Attr::string(rule::CHAIN, "c"),
            Attr::nested(rule::EXPRESSIONS, &exprs),
        ],
        ifindexes: Vec::new(),
    }
}

/// A set "s" of table inet t with 4-byte keys (8 with `concat`) holding `keys`, and `data`
/// for a map.
fn set_with(keys: &[&[u8]], data: &[&[u8]], key_len: u32) -> Vec<Object> {
    let set = Object {
        kind: Kind::Set,
        family: 1,
        attrs: vec![
            Attr::string(set::TABLE, "t"),
            Attr::string(set::NAME, "s"),
            Attr::be32(set::KEY_LEN, key_len),
        ],
        ifindexes: Vec::new(),
    };
    let items: Vec<Attr> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut e = vec![Attr::nested(1, &[Attr::new(1, k.to_vec())])];
            if let Some(d) = data.get(i) {
                e.push(Attr::nested(2, &[Attr::new(1, d.to_vec())]));
            }
            Attr::nested(nft::common::LIST_ELEM, &e)
        })
        .collect();
    let elements = Object {
        kind: Kind::Elements,
        family: 1,
        attrs: vec![
            Attr::string(1, "t"),
            Attr::string(2, "s"),
            Attr::nested(3, &items),
        ],
        ifindexes: Vec::new(),
    };
    vec![set, elements]
}

fn uses(objects: &[Object]) -> Vec<u32> {
    ifindex_uses(objects)
        .unwrap()
        .into_iter()
        .flatten()
        .collect()
}

const REG32_00: u32 = 8;

fn meta(key: u32, dreg: u32) -> Attr {
    expr("meta", vec![Attr::be32(1, dreg), Attr::be32(2, key)])
}

#[rstest]
// meta iif (4) compared with 7.
#[case::iif_compared(vec![meta(4, REG32_00), expr("cmp", vec![Attr::be32(1, REG32_00), Attr::be32(2, 0), value(&7u32.to_ne_bytes())])], vec![7])]
// meta oif in a 16-byte register.
#[case::oif_in_reg_1(vec![meta(5, 1), expr("cmp", vec![Attr::be32(1, 1), Attr::be32(2, 1), value(&9u32.to_ne_bytes())])], vec![9])]
// meta iifname: a name, not an index.
#[case::by_name(vec![meta(6, 1), expr("cmp", vec![Attr::be32(1, 1), Attr::be32(2, 0), value(b"lo\0\0")])], vec![])]
// The register is loaded again (ip saddr) before the compare.
#[case::overwritten(vec![meta(4, 1), expr("payload", vec![Attr::be32(1, 1), Attr::be32(2, 1), Attr::be32(3, 12), Attr::be32(4, 4)]), expr("cmp", vec![Attr::be32(1, 1), Attr::be32(2, 0), value(&[10, 0, 0, 1])])], vec![])]
// fib daddr oif compared with 0 (`fib ... oif missing`): no device.
#[case::fib_missing(vec![expr("fib", vec![Attr::be32(1, 1), Attr::be32(2, 1), Attr::be32(3, 2)]), expr("cmp", vec![Attr::be32(1, 1), Attr::be32(2, 0), value(&[0, 0, 0, 0])])], vec![])]
// fwd to a device: an immediate index in the device register.
#[case::fwd(vec![expr("immediate", vec![Attr::be32(1, REG32_00), Attr::nested(2, &[Attr::new(1, 5u32.to_ne_bytes().to_vec())])]), expr("fwd", vec![Attr::be32(1, REG32_00)])], vec![5])]
// An expression netcr does not know may write any register.
#[case::unknown_expression(vec![meta(4, 1), expr("someday", vec![]), expr("cmp", vec![Attr::be32(1, 1), Attr::be32(2, 0), value(&7u32.to_ne_bytes())])], vec![])]
fn a_rule_matches_devices_by_index_where_its_registers_say_so(
    #[case] exprs: Vec<Attr>,
    #[case] expect: Vec<u32>,
) {
    assert_eq!(uses(&[rule_with(exprs)]), expect);
}

#[rstest]
fn indexes_in_a_set_a_rule_looks_up_count_where_the_key_holds_the_index() {
    // iif @s: every key is an index.
    let mut objects = set_with(&[&3u32.to_ne_bytes(), &4u32.to_ne_bytes()], &[], 4);
    objects.push(rule_with(vec![
        meta(4, REG32_00),
        expr(
            "lookup",
            vec![Attr::string(1, "s"), Attr::be32(2, REG32_00)],
        ),
    ]));
    assert_eq!(uses(&objects), [3, 4]);
    // ip saddr . iif @s: the index is the key's second word.
    let key = |ip: [u8; 4], index: u32| {
        let mut k = ip.to_vec();
        k.extend(index.to_ne_bytes());
        k
    };
    let (a, b) = (key([10, 0, 0, 1], 5), key([10, 0, 0, 2], 6));
    let mut objects = set_with(&[&a, &b], &[], 8);
    objects.push(rule_with(vec![
        expr(
            "payload",
            vec![
                Attr::be32(1, REG32_00),
                Attr::be32(2, 1),
                Attr::be32(3, 12),
                Attr::be32(4, 4),
            ],
        ),
        meta(4, REG32_00 + 1),
        expr(
            "lookup",
            vec![Attr::string(1, "s"), Attr::be32(2, REG32_00)],
        ),
    ]));
    assert_eq!(uses(&objects), [5, 6]);
    // fwd to ip saddr map @s: the map's data are indexes.
    let mut objects = set_with(&[&[10, 0, 0, 1]], &[&8u32.to_ne_bytes()], 4);
    objects.push(rule_with(vec![
        expr(
            "payload",
            vec![
                Attr::be32(1, 1),
                Attr::be32(2, 1),
                Attr::be32(3, 12),
                Attr::be32(4, 4),
            ],
        ),
        expr(
            "lookup",
            vec![Attr::string(1, "s"), Attr::be32(2, 1), Attr::be32(3, 1)],
        ),
        expr("fwd", vec![Attr::be32(1, 1)]),
    ]));
    assert_eq!(uses(&objects), [8]);
}

#[rstest]
fn the_elements_of_a_dynamic_set_are_restored_but_not_compared() {
    let mut records = kept();
    let image_of = |records: &[v1::NftObject]| image(records.to_vec());
    // The kernel lost vm's element: a difference...
    let mut kernel = golden();
    kernel.retain(|m| !(m.kind == msg::NEWSETELEM && m.str(nft::elem::LIST_SET) == Some("vm")));
    assert_eq!(
        diffs(&image_of(&records), &kernel).unwrap(),
        ["set inet filt vm: elements: 1 in the image are not in the kernel, 0 in the kernel are not in the image"]
    );
    // ... unless packets or time change the set by themselves.
    changed(&mut records, 4, |a| {
        let flags = a.iter_mut().find(|a| a.id() == set::FLAGS).unwrap();
        *flags = Attr::be32(set::FLAGS, set::F_MAP | set::F_TIMEOUT);
    });
    let mut kernel_set = golden();
    for m in kernel_set.iter_mut() {
        if m.kind == msg::NEWSET && m.str(set::NAME) == Some("vm") {
            let flags = m.attrs.iter_mut().find(|a| a.id() == set::FLAGS).unwrap();
            *flags = Attr::be32(set::FLAGS, set::F_MAP | set::F_TIMEOUT);
        }
    }
    kernel_set.retain(|m| !(m.kind == msg::NEWSETELEM && m.str(nft::elem::LIST_SET) == Some("vm")));
    assert_eq!(diffs(&image_of(&records), &kernel_set), Ok(vec![]));
}

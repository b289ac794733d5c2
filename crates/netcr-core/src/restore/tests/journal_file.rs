//! The journal file's records, and intents read back.

use super::*;

#[rstest]
fn every_entry_survives_its_record_in_the_journal_file() {
    use crate::restore::journal::{from_record, to_record};
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
    let mut lo = LinkMessage::default();
    lo.header.index = 1;
    lo.attributes.push(LinkAttribute::IfName("lo".into()));
    lo.attributes.push(LinkAttribute::Mtu(65536));
    let mut address = AddressMessage::default();
    address.header.index = 1;
    address.header.prefix_len = 8;
    address
        .attributes
        .push(AddressAttribute::Local("127.0.0.1".parse().unwrap()));
    let mut rule = RuleMessage::default();
    rule.attributes.push(RuleAttribute::Priority(1000));
    rule.attributes.push(RuleAttribute::Table(100));
    let entries = vec![
        Entry::NetnsCreated {
            ns: 1,
            name: "web2".into(),
            identity: Some((4, 4026532000)),
        },
        Entry::DevicesBefore {
            ns: 0,
            links: vec![lo.clone()],
        },
        Entry::LoAddressesBefore {
            ns: 0,
            lo: 1,
            addresses: vec![address],
        },
        Entry::NetnsSysctls {
            ns: 0,
            changed: vec![("net.ipv4.ip_forward".into(), "0".into())],
        },
        Entry::LinkChanged { ns: 0, before: lo },
        Entry::LinksCreated {
            ns: 2,
            names: vec!["p0".into(), "p1".into()],
        },
        Entry::DeviceMade {
            ns: 0,
            name: "tap0".into(),
        },
        Entry::TemporaryLink {
            name: "ncr1234".into(),
        },
        Entry::LinksRegrouped { ns: 2 },
        Entry::NexthopAdded { ns: 0, id: 10 },
        Entry::NftTableAdded {
            ns: 1,
            family: 1,
            name: "filter".into(),
        },
        Entry::XfrmAdded {
            ns: 1,
            undo: netcr_netlink::Request::change(
                netcr_netlink::RawMessage {
                    kind: crate::xfrm::DELSA,
                    body: vec![10, 0, 0, 2, 0, 0, 0, 0],
                },
                "removing xfrm state esp spi 0x00000100 10.0.0.1 -> 10.0.0.2 transport",
            ),
        },
        Entry::ObjectAdded {
            ns: 0,
            delete: Request::change(RouteNetlinkMessage::DelRule(rule), "removing a rule"),
        },
    ];
    for entry in entries {
        let record = to_record(&entry, true);
        assert_eq!(from_record(&record).unwrap(), Some(entry));
    }
    // An intent to create links reads back as such: only the private group proves them.
    let intent = to_record(
        &Entry::LinksCreated {
            ns: 0,
            names: vec!["m0".into()],
        },
        false,
    );
    assert_eq!(
        from_record(&intent).unwrap(),
        Some(Entry::LinksIntended {
            ns: 0,
            names: vec!["m0".into()]
        })
    );
}

#[rstest]
fn links_a_killed_restore_was_creating_are_removed_where_its_group_proves_them() {
    let mut j = Journal::new(7);
    for entry in [
        Entry::LinksIntended {
            ns: 0,
            names: vec!["m0".into(), "m1".into()],
        },
        Entry::LinksCreated {
            ns: 0,
            names: vec!["m0".into()],
        },
    ] {
        j.push(entry).unwrap();
    }
    assert_eq!(j.links_in(0), vec!["m0".to_string()]);
    assert_eq!(
        j.links_maybe_in(0),
        vec!["m0".to_string(), "m1".to_string()]
    );
    assert_eq!(
        undo::plan(&j),
        vec![
            Step::DeleteGroup { ns: 0, count: 1 },
            Step::DeleteIntendedLinks {
                ns: 0,
                names: vec!["m0".into(), "m1".into()]
            },
        ]
    );
}

//! Placement, index choice and request building: pure functions.

use super::*;

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
    use crate::compare::stored_families;
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

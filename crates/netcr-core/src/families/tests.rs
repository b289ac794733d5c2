use std::collections::{BTreeSet, HashMap};

use netcr_netlink::raw::attribute;
use netcr_netlink::{Connector, Netns, Protocol, RawTransport, ReceivedMessage, Transport};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::{NeighbourExtFlags, NeighbourFlags, NeighbourMessage};
use rstest::rstest;

use super::*;

#[rstest]
fn every_family_has_exactly_one_row_and_every_row_a_family() {
    for family in Family::ALL {
        let rows = FAMILIES.iter().filter(|f| f.family == *family).count();
        assert_eq!(rows, 1, "{family:?} has {rows} rows in FAMILIES");
    }
    assert_eq!(
        FAMILIES.len(),
        Family::ALL.len(),
        "a row without a family in ALL"
    );
    let names: BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), FAMILIES.len(), "two families share a name");
}

/// The no-silent-loss rule: every family is saved or detected, and a detected one has a
/// flag that leaves it out, which `--leave-out` parses back.
#[rstest]
fn every_family_is_saved_or_detected_with_a_flag() {
    for info in FAMILIES {
        assert!(!info.title.is_empty(), "{:?} has no title", info.family);
        match info.handling {
            Handling::Saved { kept } => assert!(!kept.is_empty(), "{:?}", info.family),
            Handling::Refused { detected_by, .. }
            | Handling::SavedUnlessLeftOut { detected_by, .. } => {
                assert!(!detected_by.is_empty(), "{:?}", info.family);
                assert!(
                    info.name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                    "{} is not a flag value",
                    info.name
                );
                assert_eq!(Family::from_name(info.name), Some(info.family));
            }
        }
    }
    let refused: Vec<Family> = Family::refused().collect();
    // nf_tables, traffic control and xfrm are saved, and left out only on request.
    for family in [Family::Nftables, Family::Tc, Family::Xfrm] {
        assert!(!refused.contains(&family));
        assert!(Family::can_leave_out().any(|f| f == family));
        assert!(matches!(
            family.info().handling,
            Handling::SavedUnlessLeftOut { .. }
        ));
    }
    for family in [
        Family::Iptables,
        Family::AddrLabels,
        Family::Mpls,
        Family::Ipv6Tokens,
    ] {
        assert!(refused.contains(&family), "{family:?} must be detected");
    }
}

fn tc_found() -> Found {
    Found::none(Family::Tc)
        .with(
            "qdisc",
            "qdiscs",
            vec!["tbf on zxa".into(), "ingress on zxb".into()],
        )
        .with("class", "classes", vec!["htb 1:1 on zxb".into()])
        .with("filter", "filters", vec![])
}

#[rstest]
fn found_objects_are_counted_named_and_recorded() {
    let f = tc_found();
    assert_eq!(f.count(), 3);
    assert_eq!(
        f.to_string(),
        "2 qdiscs (tbf on zxa, ingress on zxb), 1 class (htb 1:1 on zxb)"
    );
    let rec = f.record();
    assert_eq!(rec.family, "tc");
    assert_eq!(rec.count, 3);
    assert_eq!(
        rec.found,
        vec![
            "qdisc tbf on zxa",
            "qdisc ingress on zxb",
            "class htb 1:1 on zxb"
        ]
    );
    let many = Found::none(Family::Nexthops).with(
        "nexthop",
        "nexthops",
        (1..=8).map(|i| format!("id {i}")).collect(),
    );
    assert!(many.to_string().ends_with("id 6, and 2 more)"), "{many}");
}

#[rstest]
fn the_refusal_names_the_families_and_their_flags() {
    let one = refusal_text("web", &[tc_found()]);
    assert_eq!(
        one,
        "netns \"web\": traffic control netcr cannot keep yet: 2 qdiscs (tbf on zxa, ingress on zxb), \
         1 class (htb 1:1 on zxb); --leave-out tc leaves it out (recorded in the image)"
    );
    let xfrm =
        Found::none(Family::Xfrm).with("policy", "policies", vec!["out a -> b block".into()]);
    let two = refusal_text("web", &[tc_found(), xfrm]);
    assert!(two.contains("traffic control: 2 qdiscs"), "{two}");
    assert!(
        two.contains("IPsec (xfrm): 1 policy (out a -> b block)"),
        "{two}"
    );
    assert!(two.ends_with("--leave-out tc --leave-out xfrm leave them out (recorded in the image)"));
}

#[rstest]
fn ipvs_services_are_read_from_proc() {
    let text = "IP Virtual Server version 1.2.1 (size=4096)\n\
                Prot LocalAddress:Port Scheduler Flags\n  \
                -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n\
                TCP  0A000001:0050 rr\n  \
                -> 0A000002:0050      Masq    1      0          0\n\
                FWM  00000001 wlc\n";
    assert_eq!(
        ipvs_services(text),
        vec!["TCP 0A000001:0050", "FWM 00000001"]
    );
    assert!(ipvs_services("IP Virtual Server version 1.2.1\n").is_empty());
}

#[rstest]
#[case::permanent(NeighbourFlags::empty(), 3, None, None)]
#[case::proxy_on_a_device(NeighbourFlags::Proxy, 3, None, None)]
#[case::proxy_on_no_device(NeighbourFlags::Proxy, 0, None, Some("proxy on no device"))]
#[case::extern_learn(NeighbourFlags::ExtLearned, 3, None, Some("extern_learn"))]
#[case::managed(
    NeighbourFlags::empty(),
    3,
    Some(NeighbourExtFlags::Managed),
    Some("managed")
)]
fn neighbour_entries_netcr_does_not_keep_are_named(
    #[case] flags: NeighbourFlags,
    #[case] ifindex: u32,
    #[case] ext: Option<NeighbourExtFlags>,
    #[case] why: Option<&str>,
) {
    let mut n = NeighbourMessage::default();
    n.header.flags = flags;
    n.header.ifindex = ifindex;
    if let Some(e) = ext {
        n.attributes.push(NeighbourAttribute::ExtFlags(e));
    }
    assert_eq!(neighbour_not_kept(&n), why);
}

/// A request body and the messages that answer it.
type Answer = (Vec<u8>, Vec<ReceivedMessage>);

/// Raw sockets that answer each (protocol, type, body) with canned messages.
#[derive(Default, Clone)]
struct Canned {
    answers: HashMap<(Protocol, u16), Vec<Answer>>,
    unsupported: Vec<Protocol>,
}

impl Canned {
    fn answer(
        mut self,
        protocol: Protocol,
        kind: u16,
        body: Vec<u8>,
        messages: Vec<ReceivedMessage>,
    ) -> Self {
        self.answers
            .entry((protocol, kind))
            .or_default()
            .push((body, messages));
        self
    }
}

struct CannedSocket(Canned, Protocol);

impl RawTransport for CannedSocket {
    fn netns_label(&self) -> &str {
        "test"
    }

    fn dump(
        &mut self,
        kind: u16,
        body: &[u8],
        _: &str,
    ) -> netcr_netlink::Result<Vec<ReceivedMessage>> {
        Ok(self
            .0
            .answers
            .get(&(self.1, kind))
            .and_then(|a| a.iter().find(|(b, _)| b == body))
            .map(|(_, m)| m.clone())
            .unwrap_or_default())
    }

    fn request(
        &mut self,
        kind: u16,
        body: &[u8],
        c: &str,
    ) -> netcr_netlink::Result<Vec<ReceivedMessage>> {
        self.dump(kind, body, c)
    }

    fn transaction(
        &mut self,
        _: u8,
        _: Vec<netcr_netlink::Request<netcr_netlink::RawMessage>>,
        _: &str,
    ) -> netcr_netlink::Result<()> {
        unreachable!("the detectors only read")
    }

    fn change(
        &mut self,
        _: netcr_netlink::Request<netcr_netlink::RawMessage>,
    ) -> netcr_netlink::Result<()> {
        unreachable!("the detectors only read")
    }
}

impl Connector for Canned {
    fn connect(&mut self, _: &Netns, _: &str) -> netcr_netlink::Result<Box<dyn Transport>> {
        unreachable!("the detectors use raw sockets only")
    }

    fn connect_raw(
        &mut self,
        _: &Netns,
        protocol: Protocol,
        label: &str,
    ) -> netcr_netlink::Result<Box<dyn RawTransport>> {
        if self.unsupported.contains(&protocol) {
            return Err(netcr_netlink::Error::Socket {
                netns: label.into(),
                source: std::io::Error::from_raw_os_error(libc::EPROTONOSUPPORT),
            });
        }
        Ok(Box::new(CannedSocket(self.clone(), protocol)))
    }
}

fn message(kind: u16, head: Vec<u8>, attrs: &[(u16, &[u8])]) -> ReceivedMessage {
    let mut payload = head;
    for (k, v) in attrs {
        payload.extend(attribute(*k, v));
    }
    ReceivedMessage {
        kind,
        flags: 2,
        payload,
    }
}

fn qdisc(ifindex: u32, handle: u32, parent: u32, kind: &str) -> ReceivedMessage {
    let mut head = tcmsg(ifindex, parent);
    head[8..12].copy_from_slice(&handle.to_ne_bytes());
    message(
        RTM_NEWQDISC,
        head,
        &[(TCA_KIND, format!("{kind}\0").as_bytes())],
    )
}

fn run(detect: Detector, canned: Canned) -> Result<Found> {
    let netns = Netns::current_thread().unwrap();
    let mut lo = LinkMessage::default();
    lo.header.index = 1;
    lo.attributes
        .push(netlink_packet_route::link::LinkAttribute::IfName(
            "lo".into(),
        ));
    let mut zxa = LinkMessage::default();
    zxa.header.index = 4;
    zxa.attributes
        .push(netlink_packet_route::link::LinkAttribute::IfName(
            "zxa".into(),
        ));
    let links = [lo, zxa];
    let mut connector = canned;
    let mut probe = Probe::new(&netns, "test", &links, &[], &mut connector);
    detect(&mut probe)
}

fn qdisc_dump_body() -> Vec<u8> {
    let mut b = tcmsg(0, 0);
    b.extend(attribute(TCA_DUMP_INVISIBLE, &[]));
    b
}

#[rstest]
fn the_kernels_default_qdiscs_are_not_traffic_control_the_user_made() {
    let canned = Canned::default().answer(
        Protocol::Route,
        RTM_GETQDISC,
        qdisc_dump_body(),
        vec![
            qdisc(1, 0, TC_H_ROOT, "noqueue"),
            qdisc(4, 0, TC_H_ROOT, "mq"),
            qdisc(4, 0, 0x0000_0001, "pfifo_fast"),
        ],
    );
    assert!(run(detect_tc, canned).unwrap().is_empty());
}

#[rstest]
fn user_qdiscs_their_filters_and_standalone_actions_are_found() {
    let mut filter_head = tcmsg(4, 0xffff_fff2);
    filter_head[16..20].copy_from_slice(&((49152u32 << 16) | 0x0300).to_ne_bytes());
    let filter = message(RTM_NEWTFILTER, filter_head, &[(TCA_KIND, b"bpf\0")]);
    let action = {
        let one = attribute(
            1,
            &[
                attribute(TCA_ACT_KIND, b"gact\0"),
                attribute(TCA_ACT_INDEX, &7u32.to_ne_bytes()),
            ]
            .concat(),
        );
        message(RTM_NEWACTION, vec![0; 4], &[(TCA_ACT_TAB, &one)])
    };
    let gact_body = {
        let one = attribute(1, &attribute(TCA_ACT_KIND, b"gact\0"));
        let mut b = vec![0u8; 4];
        b.extend(attribute(TCA_ACT_TAB | 0x8000, &one));
        b
    };
    let canned = Canned::default()
        .answer(
            Protocol::Route,
            RTM_GETQDISC,
            qdisc_dump_body(),
            vec![
                qdisc(4, 0x8001_0000, TC_H_ROOT, "tbf"),
                qdisc(4, 0xffff_0000, 0xffff_fff1, "ingress"),
            ],
        )
        .answer(
            Protocol::Route,
            RTM_GETTFILTER,
            tcmsg(4, 0xffff_fff2),
            vec![filter.clone(), filter],
        )
        .answer(Protocol::Route, RTM_GETACTION, gact_body, vec![action]);
    let found = run(detect_tc, canned).unwrap();
    assert_eq!(
        found.record().found,
        vec![
            "qdisc tbf on zxa",
            "qdisc ingress on zxa",
            "filter bpf (a BPF program: it cannot be re-created from a dump) on zxa ingress pref 49152",
            "action gact index 7",
        ]
    );
}

#[rstest]
fn a_truncated_message_is_an_error_not_skipped() {
    let canned = Canned::default().answer(
        Protocol::Route,
        RTM_GETQDISC,
        qdisc_dump_body(),
        vec![ReceivedMessage {
            kind: RTM_NEWQDISC,
            flags: 2,
            payload: vec![0; 10],
        }],
    );
    let err = run(detect_tc, canned).unwrap_err().to_string();
    assert!(err.contains("less than its 20-byte header"), "{err}");
}

#[rstest]
fn a_kernel_without_xfrm_holds_none() {
    let canned = Canned {
        unsupported: vec![Protocol::Xfrm],
        ..Default::default()
    };
    assert!(run(detect_xfrm, canned).unwrap().is_empty());
}

#[rstest]
fn xfrm_states_and_policies_are_named_without_keys() {
    let mut sa = vec![0u8; XFRM_SA_INFO];
    sa[56..60].copy_from_slice(&[10, 0, 0, 2]);
    sa[72..76].copy_from_slice(&0x100u32.to_be_bytes());
    sa[76] = 50;
    sa[80..84].copy_from_slice(&[10, 0, 0, 1]);
    sa[212..214].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    let mut pol = vec![0u8; XFRM_POLICY_INFO];
    pol[0..4].copy_from_slice(&[10, 1, 0, 0]);
    pol[16..20].copy_from_slice(&[10, 0, 0, 0]);
    pol[40..42].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    pol[42] = 24;
    pol[43] = 24;
    pol[160] = 1;
    pol[161] = 1;
    let mut socket_policy = pol.clone();
    socket_policy[160] = 4;
    let canned = Canned::default()
        .answer(
            Protocol::Xfrm,
            XFRM_MSG_GETSA,
            vec![],
            vec![message(XFRM_MSG_NEWSA, sa, &[(2, b"secret key bytes")])],
        )
        .answer(
            Protocol::Xfrm,
            XFRM_MSG_GETPOLICY,
            vec![],
            vec![
                message(XFRM_MSG_NEWPOLICY, pol, &[]),
                message(XFRM_MSG_NEWPOLICY, socket_policy, &[]),
            ],
        )
        .answer(
            Protocol::Xfrm,
            XFRM_MSG_GETDEFAULT,
            vec![0; 4],
            vec![message(XFRM_MSG_GETDEFAULT, vec![2, 2, 1, 0], &[])],
        );
    let found = run(detect_xfrm, canned).unwrap();
    assert_eq!(
        found.record().found,
        vec![
            "state esp spi 0x00000100 10.0.0.1 -> 10.0.0.2 transport",
            "policy out 10.0.0.0/24 -> 10.1.0.0/24 block",
            "default policy out block",
        ]
    );
}

#[rstest]
fn address_labels_are_compared_with_the_kernels_defaults() {
    let label = |prefix: &str, len: u8, label: u32| {
        let mut head = vec![0u8; 12];
        head[0] = libc::AF_INET6 as u8;
        head[2] = len;
        let a: Ipv6Addr = prefix.parse().unwrap();
        message(
            RTM_NEWADDRLABEL,
            head,
            &[(1, &a.octets()), (2, &label.to_ne_bytes())],
        )
    };
    let mut body = vec![0u8; 12];
    body[0] = libc::AF_INET6 as u8;
    let defaults: Vec<ReceivedMessage> = DEFAULT_ADDRLABELS
        .iter()
        .map(|(p, l, lab)| label(p, *l, *lab))
        .collect();
    let canned = Canned::default().answer(
        Protocol::Route,
        RTM_GETADDRLABEL,
        body.clone(),
        defaults.clone(),
    );
    assert!(run(detect_addrlabels, canned).unwrap().is_empty());
    let mut changed = defaults[1..].to_vec();
    changed.push(label("2001:db8::", 32, 99));
    let canned = Canned::default().answer(Protocol::Route, RTM_GETADDRLABEL, body, changed);
    assert_eq!(
        run(detect_addrlabels, canned).unwrap().record().found,
        vec![
            "label 2001:db8::/32 label 99",
            "deleted default label ::1/128 label 0"
        ]
    );
}

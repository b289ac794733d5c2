use super::*;

const KEY: [u8; 16] = [0xa5; 16];

/// An ESP tunnel state 10.0.0.1 -> 10.0.0.2, SPI 0x100, cbc(aes) with KEY, as dumped:
/// current lifetime and statistics set, a last-use time and a replay state.
fn state_body(sel_ifindex: u32) -> Vec<u8> {
    let mut head = vec![0u8; SA_INFO_LEN];
    head[SEL_FAMILY..SEL_FAMILY + 2].copy_from_slice(&2u16.to_ne_bytes());
    head[SEL_IFINDEX..SEL_IFINDEX + 4].copy_from_slice(&sel_ifindex.to_ne_bytes());
    head[SA_DADDR..SA_DADDR + 4].copy_from_slice(&[10, 0, 0, 2]);
    head[SA_SPI..SA_SPI + 4].copy_from_slice(&0x100u32.to_be_bytes());
    head[SA_PROTO] = 50;
    head[SA_SADDR..SA_SADDR + 4].copy_from_slice(&[10, 0, 0, 1]);
    head[SA_CURLFT].fill(7);
    head[SA_FAMILY..SA_FAMILY + 2].copy_from_slice(&2u16.to_ne_bytes());
    head[SA_MODE] = 1;
    let mut o = Object {
        kind: Kind::State,
        head,
        attrs: Vec::new(),
    };
    o.attrs.push((ALG_CRYPT, algorithm("cbc(aes)", &KEY, None)));
    o.attrs.push((LTIME_VAL, vec![1; 32]));
    o.attrs.push((REPLAY_VAL, vec![2; 12]));
    o.attrs.push((LASTUSED, vec![3; 8]));
    o.encode()
}

fn policy_body(dir: u8, action: u8, index: u32) -> Vec<u8> {
    let mut head = vec![0u8; POLICY_INFO_LEN];
    head[SEL_FAMILY..SEL_FAMILY + 2].copy_from_slice(&2u16.to_ne_bytes());
    head[..4].copy_from_slice(&[10, 0, 0, 2]);
    head[16..20].copy_from_slice(&[10, 0, 0, 1]);
    head[42] = 32;
    head[43] = 32;
    head[POL_CURLFT].fill(9);
    head[POL_INDEX..POL_INDEX + 4].copy_from_slice(&index.to_ne_bytes());
    head[POL_DIR] = dir;
    head[POL_ACTION] = action;
    let o = Object {
        kind: Kind::Policy,
        head,
        attrs: vec![(MARK, [7u32.to_ne_bytes(), u32::MAX.to_ne_bytes()].concat())],
    };
    o.encode()
}

fn msg(kind: u16, payload: Vec<u8>) -> ReceivedMessage {
    ReceivedMessage {
        kind,
        flags: 0,
        payload,
    }
}

fn names(i: u32) -> Option<String> {
    (i == 4).then(|| "zxa".to_string())
}

fn kept() -> Vec<v1::XfrmObject> {
    keep(
        &[msg(NEWSA, state_body(4))],
        &[
            msg(NEWPOLICY, policy_body(1, 1, 9)),
            // A socket's own policy: not the namespace's.
            msg(NEWPOLICY, policy_body(4, 0, 0)),
        ],
        Some([1, 2, 2]),
        &names,
    )
    .unwrap()
    .records
}

#[test]
fn the_dump_keeps_what_the_restore_sets_and_names_the_selector_device() {
    let records = kept();
    assert_eq!(records.len(), 3, "{records:?}");
    let state = Object::decode(&records[0]).unwrap();
    assert_eq!(records[0].dev, "zxa");
    assert!(state.head[SA_CURLFT].iter().all(|b| *b == 0));
    assert!(state.attr(LTIME_VAL).is_none() && state.attr(LASTUSED).is_none());
    assert_eq!(state.attr(REPLAY_VAL), Some(&[2u8; 12][..]));
    assert_eq!(
        state.attr(ALG_CRYPT),
        Some(&algorithm("cbc(aes)", &KEY, None)[..])
    );
    let policy = Object::decode(&records[1]).unwrap();
    assert!(policy.head[POL_CURLFT].iter().all(|b| *b == 0));
    assert_eq!(records[2].kind, u32::from(SETDEFAULT));
    assert_eq!(records[2].message, vec![1, 2, 2]);
    let image = NetnsImage {
        xfrm: records,
        ..Default::default()
    };
    validate(&image, &|d| d == "zxa").unwrap();
}

#[test]
fn default_policies_that_all_accept_are_not_kept_and_a_device_not_named_stops_the_dump() {
    let none = keep(&[], &[], Some([2, 2, 2]), &names).unwrap();
    assert!(none.records.is_empty());
    let err = keep(&[msg(NEWSA, state_body(5))], &[], None, &names).unwrap_err();
    assert!(err.contains("device index 5"), "{err}");
}

#[test]
fn descriptions_never_hold_key_material() {
    for rec in kept() {
        let d = details(&rec).unwrap();
        let all = format!("{} {:?}", d.object, d.fields);
        assert!(!all.contains("a5"), "{all}");
        assert!(!all.to_lowercase().contains("a5a5"), "{all}");
    }
    let d = details(&kept()[0]).unwrap();
    assert_eq!(d.object, "esp spi 0x00000100 10.0.0.1 -> 10.0.0.2 tunnel");
    assert!(d.fields.contains(&("enc", "cbc(aes)".to_string())), "{d:?}");
}

#[test]
fn creation_rewrites_the_selector_device_and_deletion_names_the_object() {
    let records = kept();
    let request = creation(&records[0], &|d| (d == "zxa").then_some(11)).unwrap();
    assert_eq!(request.message.kind, NEWSA);
    let sent = Object::parse(Kind::State, &request.message.body).unwrap();
    assert_eq!(sent.sel_ifindex(), 11);
    let del = deletion(&request.message).unwrap();
    assert_eq!(del.message.kind, DELSA);
    assert_eq!(&del.message.body[..4], &[10, 0, 0, 2]);
    assert_eq!(&del.message.body[16..20], &0x100u32.to_be_bytes());
    assert_eq!(del.message.body[22], 50);
    let request = creation(&records[1], &|_| None).unwrap();
    let del = deletion(&request.message).unwrap();
    assert_eq!(del.message.kind, DELPOLICY);
    assert_eq!(del.message.body[60], 1);
    // The mark goes with it: the kernel finds the policy by it.
    assert_eq!(del.message.body.len(), POLICY_ID_LEN + 12);
    assert!(creation(&records[0], &|_| None).is_err());
}

#[test]
fn hostile_records_are_refused() {
    let good = kept();
    let check = |rec: v1::XfrmObject| {
        let image = NetnsImage {
            xfrm: vec![rec],
            ..Default::default()
        };
        validate(&image, &|d| d == "zxa")
    };
    let mut short_key = good[0].clone();
    let mut o = Object::decode(&short_key).unwrap();
    let mut a = algorithm("cbc(aes)", &KEY, None);
    a.truncate(a.len() - 1);
    o.attrs = vec![(ALG_CRYPT, a)];
    short_key.message = o.encode();
    let cases = vec![
        v1::XfrmObject {
            kind: 99,
            ..good[1].clone()
        },
        v1::XfrmObject {
            message: good[0].message[..100].to_vec(),
            ..good[0].clone()
        },
        v1::XfrmObject {
            message: [&good[1].message[..], &[40, 0, 1, 0]].concat(),
            ..good[1].clone()
        },
        short_key,
        v1::XfrmObject {
            dev: String::new(),
            ..good[0].clone()
        },
        v1::XfrmObject {
            dev: "eth0".into(),
            ..good[0].clone()
        },
        v1::XfrmObject {
            message: policy_body(3, 0, 0),
            ..good[1].clone()
        },
        v1::XfrmObject {
            message: policy_body(1, 0, 10),
            ..good[1].clone()
        },
        v1::XfrmObject {
            message: vec![1, 9, 2],
            ..good[2].clone()
        },
    ];
    for (i, rec) in cases.into_iter().enumerate() {
        assert!(check(rec).is_err(), "case {i} was taken");
    }
    let twice = NetnsImage {
        xfrm: vec![good[1].clone(), good[1].clone()],
        ..Default::default()
    };
    assert!(validate(&twice, &|_| true).unwrap_err().contains("twice"));
}

#[test]
fn the_comparison_names_a_missing_or_changed_object_and_ignores_counters() {
    let image = NetnsImage {
        xfrm: kept(),
        ..Default::default()
    };
    let mut dumped: Dumped = (
        vec![msg(NEWSA, state_body(4))],
        vec![msg(NEWPOLICY, policy_body(1, 1, 9))],
        Some([1, 2, 2]),
    );
    let now = dumped_objects(&dumped, &names).unwrap();
    assert_eq!(diffs(&image, &now, true).unwrap(), Vec::<String>::new());
    dumped.1 = vec![msg(NEWPOLICY, policy_body(1, 0, 9))];
    dumped.2 = Some([2, 2, 2]);
    let now = dumped_objects(&dumped, &names).unwrap();
    let d = diffs(&image, &now, true).unwrap();
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d[0].starts_with("xfrm policy out 10.0.0.1/32 -> 10.0.0.2/32 block: its settings differ"),
        "{d:?}"
    );
    assert!(d[1].contains("image in block"), "{d:?}");
    dumped.0.clear();
    let now = dumped_objects(&dumped, &names).unwrap();
    assert!(diffs(&image, &now, true).unwrap()[0].ends_with("missing"));
}

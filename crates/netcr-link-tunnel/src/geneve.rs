//! geneve: Ethernet in UDP with options. It has no underlay device: its UDP socket lives in
//! the namespace it was made in; one moved in from elsewhere is recorded and refused at
//! restore, as a vxlan without an underlay device is.

use crate::{tunnel_driver, Spec, Ty};

/// IFLA_GENEVE_*.
pub const ATTRS: &[(u16, &str, Ty)] = &[
    (1, "id", Ty::Num),
    (2, "remote", Ty::Ip),
    (3, "ttl", Ty::Num),
    (4, "tos", Ty::Num),
    (5, "dstport", Ty::Be16),
    (6, "external", Ty::Flag),
    (7, "remote6", Ty::Ip),
    (8, "udpcsum", Ty::Num),
    (9, "udp6zerocsumtx", Ty::Num),
    (10, "udp6zerocsumrx", Ty::Num),
    (11, "flowlabel", Ty::Be32),
    (12, "ttl_inherit", Ty::Num),
    (13, "df", Ty::Num),
    (14, "inner_proto_inherit", Ty::Flag),
];

/// The geneve attributes.
pub const SPEC: Spec = Spec {
    kind: "geneve",
    link_attr: None,
    attrs: ATTRS,
};

tunnel_driver!(
    /// The geneve driver.
    GeneveDriver,
    SPEC
);

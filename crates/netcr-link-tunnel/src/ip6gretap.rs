//! ip6gretap: a GRE tunnel over IPv6 carrying Ethernet. Its IFLA_INFO_DATA attributes are the table's; its underlay device is
//! attribute 1 (the link).

use crate::{tunnel_driver, Spec, GRE_ATTRS};

/// The ip6gretap attributes.
pub const SPEC: Spec = Spec {
    kind: "ip6gretap",
    link_attr: Some(1),
    attrs: GRE_ATTRS,
};

tunnel_driver!(
    /// The ip6gretap driver.
    Ip6gretapDriver,
    SPEC
);

//! ip6gre: a GRE tunnel over IPv6 (layer 3). Its IFLA_INFO_DATA attributes are the table's; its underlay device is
//! attribute 1 (the link).

use crate::{tunnel_driver, Spec, GRE_ATTRS};

/// The ip6gre attributes.
pub const SPEC: Spec = Spec {
    kind: "ip6gre",
    link_attr: Some(1),
    attrs: GRE_ATTRS,
};

tunnel_driver!(
    /// The ip6gre driver.
    Ip6greDriver,
    SPEC
);

//! gre: a GRE tunnel (IPv4, layer 3). Its IFLA_INFO_DATA attributes are the table's; its underlay device is
//! attribute 1 (the link).

use crate::{tunnel_driver, Spec, GRE_ATTRS};

/// The gre attributes.
pub const SPEC: Spec = Spec {
    kind: "gre",
    link_attr: Some(1),
    attrs: GRE_ATTRS,
};

tunnel_driver!(
    /// The gre driver.
    GreDriver,
    SPEC
);

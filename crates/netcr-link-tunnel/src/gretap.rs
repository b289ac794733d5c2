//! gretap: a GRE tunnel carrying Ethernet (IPv4). Its IFLA_INFO_DATA attributes are the table's; its underlay device is
//! attribute 1 (the link).

use crate::{tunnel_driver, Spec, GRE_ATTRS};

/// The gretap attributes.
pub const SPEC: Spec = Spec {
    kind: "gretap",
    link_attr: Some(1),
    attrs: GRE_ATTRS,
};

tunnel_driver!(
    /// The gretap driver.
    GretapDriver,
    SPEC
);

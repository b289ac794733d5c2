//! ip6tnl: IPv4 or IPv6 in IPv6. Its IFLA_INFO_DATA attributes are the table's; its underlay device is
//! attribute 1 (the link).

use crate::{tunnel_driver, Spec, IPTUN_ATTRS};

/// The ip6tnl attributes.
pub const SPEC: Spec = Spec {
    kind: "ip6tnl",
    link_attr: Some(1),
    attrs: IPTUN_ATTRS,
};

tunnel_driver!(
    /// The ip6tnl driver.
    Ip6tnlDriver,
    SPEC
);

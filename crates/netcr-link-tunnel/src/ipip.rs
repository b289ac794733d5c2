//! ipip: IPv4 in IPv4 (also MPLS in IPv4, or any with proto 0). Its IFLA_INFO_DATA attributes are the table's; its underlay device is
//! attribute 1 (the link).

use crate::{tunnel_driver, Spec, IPTUN_ATTRS};

/// The ipip attributes.
pub const SPEC: Spec = Spec {
    kind: "ipip",
    link_attr: Some(1),
    attrs: IPTUN_ATTRS,
};

tunnel_driver!(
    /// The ipip driver.
    IpipDriver,
    SPEC
);

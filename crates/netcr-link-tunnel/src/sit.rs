//! sit: IPv6 in IPv4 (sit, 6rd, ISATAP). Its IFLA_INFO_DATA attributes are the table's; its underlay device is
//! attribute 1 (the link).

use crate::{tunnel_driver, Spec, IPTUN_ATTRS};

/// The sit attributes.
pub const SPEC: Spec = Spec {
    kind: "sit",
    link_attr: Some(1),
    attrs: IPTUN_ATTRS,
};

tunnel_driver!(
    /// The sit driver.
    SitDriver,
    SPEC
);

//! The link-driver trait and the registry drivers join with `inventory`.
//!
//! A driver owns one `IFLA_INFO_KIND`. The core handles everything links have in common
//! (name, MTU, MAC, txqlen, alias, group, flags, the lower device and the master); a driver
//! turns the kind-specific part of a dumped link into its own config message and back.

use netcr_image::v1;
use netlink_packet_route::link::{LinkInfo, LinkMessage};

/// What a driver could not do, in its own words; the core adds which link and namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

impl DriverError {
    /// A driver error from any message.
    pub fn new(msg: impl Into<String>) -> DriverError {
        DriverError(msg.into())
    }
}

/// How a kind uses the device its `IFLA_LINK` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowerRole {
    /// The kind sits on an existing device that must exist first (macvlan, vlan, ipvlan).
    /// Outside the image, `--external KIND[INNER]:OUTER` names an existing host device.
    Lower,
    /// The referenced device is the other end of a pair made by the same request (veth).
    /// Outside the image, `--external KIND[INNER]:OUTER` names the end to create in the host.
    Peer,
}

/// What a driver sees of a dumped link besides the link itself.
#[derive(Debug, Clone, Copy)]
pub struct DumpCx<'a> {
    /// The lower or peer device's own dump, when netcr can see it (in the image, or in the
    /// caller's namespace).
    pub lower: Option<&'a LinkMessage>,
    /// Whether that device lies outside every namespace of the image.
    pub lower_is_external: bool,
}

/// What the core prepared for a creation request.
#[derive(Debug)]
pub struct RestoreCx {
    /// For a [`LowerRole::Peer`] kind: the peer end's request (name, index, MTU, MAC and its
    /// namespace fd as the core resolved them). The driver places it in its info data.
    pub peer: Option<LinkMessage>,
    /// Whether the peer lives outside the image (its settings then come from the driver's
    /// config, not from a link record).
    pub peer_is_external: bool,
}

/// One kind of link.
pub trait LinkDriver: Sync + 'static {
    /// The `IFLA_INFO_KIND` string it owns, e.g. "macvlan".
    fn kind(&self) -> &'static str;

    /// How the kind uses `IFLA_LINK`.
    fn lower_role(&self) -> LowerRole {
        LowerRole::Lower
    }

    /// Whether the kernel gives this link its lower device's MAC (macvlan passthru): the
    /// restore then neither sends nor verifies the MAC, which on a new lower device differs.
    fn inherits_address(&self, _config: &[u8]) -> bool {
        false
    }

    /// Turns the kind-specific part of a dumped link into the driver's encoded config. Drops
    /// derived, read-only attributes; keeps attributes it does not know, verbatim.
    fn dump(&self, link: &LinkMessage, cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError>;

    /// Turns the config back into the `IFLA_LINKINFO` entries of a creation request:
    /// `Kind` first, then `Data`.
    fn restore(&self, link: &v1::Link, cx: &mut RestoreCx) -> Result<Vec<LinkInfo>, DriverError>;

    /// The config as readable key/value pairs, for `netcr show`; also validates it.
    fn describe(&self, config: &[u8]) -> Result<Vec<(String, String)>, DriverError>;
}

/// A registered driver. Driver crates submit one with `inventory::submit!`.
pub struct DriverEntry {
    /// The driver.
    pub driver: &'static dyn LinkDriver,
}

inventory::collect!(DriverEntry);

/// The driver for a kind, if one is linked in.
pub fn driver_for(kind: &str) -> Option<&'static dyn LinkDriver> {
    inventory::iter::<DriverEntry>
        .into_iter()
        .map(|e| e.driver)
        .find(|d| d.kind() == kind)
}

/// Every registered kind, sorted. A driver crate that no code names is not linked and its
/// registration vanishes: binaries `use netcr_link_x as _;` for each.
pub fn registered_kinds() -> Vec<&'static str> {
    let mut kinds: Vec<_> = inventory::iter::<DriverEntry>
        .into_iter()
        .map(|e| e.driver.kind())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

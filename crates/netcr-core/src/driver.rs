//! The link-driver trait and the registry drivers join with `inventory`.
//!
//! A driver owns one `IFLA_INFO_KIND`. The core handles everything links have in common
//! (name, MTU, MAC, txqlen, alias, group, flags, the lower device and the master); a driver
//! turns the kind-specific part of a dumped link into its own config message and back.

use netcr_image::v1;
use netcr_netlink::Request;
use netlink_packet_route::link::{LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::NeighbourMessage;

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

/// Where a dumped link's lower device is, as its kind tells it. Kinds that keep the lower
/// device in their own data say so, because the kernel's `IFLA_LINK` does not name it then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowerRef {
    /// `IFLA_LINK` names it (or its absence means none): what most kinds do.
    FromIflaLink,
    /// The kind's own data names this ifindex.
    Device(u32),
    /// The kind's own data names none, whatever `IFLA_LINK` says.
    NoDevice,
}

impl From<Option<u32>> for LowerRef {
    fn from(index: Option<u32>) -> LowerRef {
        index.map_or(LowerRef::NoDevice, LowerRef::Device)
    }
}

/// What a driver sees of a dumped link besides the link itself.
#[derive(Clone, Copy)]
pub struct DumpCx<'a> {
    /// The lower or peer device's own dump, when netcr can see it (in the image, or in the
    /// caller's namespace).
    pub lower: Option<&'a LinkMessage>,
    /// Whether that device lies outside every namespace of the image.
    pub lower_is_external: bool,
    /// Names a device of the dumped namespace by ifindex, for references a kind keeps in its
    /// own data (a vxlan's underlay device, say). References are stored by name.
    pub name_of: &'a dyn Fn(u32) -> Option<String>,
    /// The link as a bridge-family link dump shows it (`RTM_GETLINK`, `AF_BRIDGE`,
    /// `IFLA_EXT_MASK` = `RTEXT_FILTER_BRVLAN`): a bridge's or a port's VLANs in
    /// `IFLA_AF_SPEC`. Filled only in namespaces holding a kind whose driver
    /// [wants it](LinkDriver::wants_bridge_family).
    pub bridge: Option<&'a LinkMessage>,
    /// The link's bridge-family neighbour entries (`RTM_GETNEIGH`, `AF_BRIDGE`): forwarding
    /// entries, a vxlan's remote destinations. Filled like [`DumpCx::bridge`].
    pub fdb: &'a [NeighbourMessage],
}

/// What the core prepared for a creation request.
pub struct RestoreCx<'a> {
    /// For a [`LowerRole::Peer`] kind: the peer end's request (name, index, MTU, MAC and its
    /// namespace fd as the core resolved them). The driver places it in its info data.
    pub peer: Option<LinkMessage>,
    /// Whether the peer lives outside the image (its settings then come from the driver's
    /// config, not from a link record).
    pub peer_is_external: bool,
    /// The index of a device already created in the target namespace, by name.
    pub index_of: &'a dyn Fn(&str) -> Option<u32>,
    /// For a [`LowerRole::Lower`] kind: the lower device's index as the creation request
    /// names it in `IFLA_LINK` (in the target for a lower device inside the image, in the
    /// caller's namespace for an external one), for kinds that repeat it in their own data
    /// (a vxlan's `IFLA_VXLAN_LINK`). Also set for `after_create`.
    pub lower_index: Option<u32>,
}

impl std::fmt::Debug for RestoreCx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreCx")
            .field("peer", &self.peer)
            .field("peer_is_external", &self.peer_is_external)
            .field("lower_index", &self.lower_index)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DumpCx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpCx")
            .field("lower", &self.lower)
            .field("lower_is_external", &self.lower_is_external)
            .field("bridge", &self.bridge)
            .field("fdb", &self.fdb.len())
            .finish_non_exhaustive()
    }
}

impl Default for DumpCx<'_> {
    /// Nothing besides the link itself: no lower device, no names, no bridge-family view.
    fn default() -> Self {
        DumpCx {
            lower: None,
            lower_is_external: false,
            name_of: &no_names,
            bridge: None,
            fdb: &[],
        }
    }
}

/// Resolves nothing: for contexts where no other device is known.
pub fn no_names(_: u32) -> Option<String> {
    None
}

/// Resolves nothing: for contexts where no device exists yet.
pub fn no_indexes(_: &str) -> Option<u32> {
    None
}

/// One kind of link, as the core calls it. Driver crates implement [`KindDriver`] instead,
/// which implements this.
///
/// [`KindDriver`]: crate::kind::KindDriver
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
    fn restore(
        &self,
        link: &v1::Link,
        cx: &mut RestoreCx<'_>,
    ) -> Result<Vec<LinkInfo>, DriverError>;

    /// The config as readable key/value pairs, for `netcr show`; also validates it.
    fn describe(&self, config: &[u8]) -> Result<Vec<(String, String)>, DriverError>;

    /// The verification compares a restored link's config (`kernel`, what [`LinkDriver::dump`]
    /// makes of it now) with the image's after this: reduced to what the image holds, so
    /// that settings the dump could not see (a veth peer netcr could not read) are not
    /// compared. The default compares everything.
    fn compared(&self, _image: &[u8], kernel: &[u8]) -> Result<Vec<u8>, DriverError> {
        Ok(kernel.to_vec())
    }

    /// Where the dumped link's lower device is. Kinds that keep it in their own data instead
    /// of `IFLA_LINK` (vxlan's `IFLA_VXLAN_LINK`; the kernel then reports `IFLA_LINK` as the
    /// device itself whenever it adds `IFLA_LINK_NETNSID`) say so; the core reads references
    /// through this.
    fn lower_ref(&self, _link: &LinkMessage) -> LowerRef {
        LowerRef::FromIflaLink
    }

    /// Whether `dump` or `dump_port` reads [`DumpCx::bridge`] and [`DumpCx::fdb`]. The core
    /// runs the two bridge-family dumps only for namespaces holding such a kind.
    fn wants_bridge_family(&self) -> bool {
        false
    }

    /// Whether a link of this kind on an external lower device must be created from the
    /// target with `IFLA_LINK_NETNSID` naming the lower's namespace. An IP tunnel belongs to
    /// the namespace it is created in: made from the lower's namespace with
    /// `IFLA_NET_NS_FD`, it would be the target's, its underlay a dangling index there.
    fn lower_via_nsid(&self) -> bool {
        false
    }

    /// For kinds netlink cannot create (tun/tap, made only by /dev/net/tun ioctls): makes the
    /// device named `link.name` in `target` (through [`Netns::run`], the one place allowed to
    /// enter a namespace) and returns `Some(Ok(()))`. The core then gives it the common
    /// settings and the rollback group with an RTM_SETLINK, and deletes it by name if the
    /// restore rolls back; `restore` is not called. `None` (the default): the kind is created
    /// with an RTM_NEWLINK built from [`LinkDriver::restore`].
    ///
    /// [`Netns::run`]: netcr_netlink::Netns::run
    fn create(
        &self,
        _link: &v1::Link,
        _target: &netcr_netlink::Netns,
    ) -> Option<Result<(), DriverError>> {
        None
    }

    /// Devices of the same namespace, by name, that must exist before this one is created,
    /// besides its lower device: references the kind keeps in its own data.
    fn depends_on(&self, _config: &[u8]) -> Vec<String> {
        Vec::new()
    }

    /// For a master kind (bridge): one port's settings, from the port's own dump (its port
    /// data, IFLA_PROTINFO, VLANs); kept in the port's `port_config`.
    fn dump_port(&self, _port: &LinkMessage, _cx: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(Vec::new())
    }

    /// Requests that give a port its settings back, once it has joined its master.
    fn restore_port(
        &self,
        _port: &v1::Link,
        _index: u32,
        _cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        Ok(Vec::new())
    }

    /// Requests that finish a link once every link exists and ports joined their masters
    /// (a bridge's own VLANs, static forwarding entries).
    fn after_create(
        &self,
        _link: &v1::Link,
        _index: u32,
        _cx: &RestoreCx<'_>,
    ) -> Result<Vec<Request>, DriverError> {
        Ok(Vec::new())
    }
}

/// A registered driver. Driver crates submit one with [`register_driver!`](crate::register_driver).
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

//! netcr's core: the link-driver framework and registry, the dump, and the restore planner
//! and executor (validate everything, change, verify; undo everything on failure).

pub mod bridge_family;
pub mod common;
pub mod compare;
pub mod driver;
pub mod dump;
pub mod error;
pub mod external;
pub mod families;
pub mod kind;
pub mod nexthops;
pub mod nftables;
pub mod restore;
pub mod state;
pub mod sysctl;
pub mod validate;
pub mod verify;

pub use driver::{
    driver_for, registered_kinds, DriverEntry, DriverError, DumpCx, LinkDriver, LowerRef,
    LowerRole, RestoreCx,
};
pub use dump::{dump, dump_with, DumpOptions, DumpReport};
pub use error::{CoreError, Result};
pub use external::{ExternalMapping, ExternalParseError};
pub use families::Family;
pub use kind::KindDriver;
pub use restore::{
    restore, restore_all, restore_all_with, Adopt, CreateFrom, RestoreOptions, RestoreReport,
    RestoreTarget,
};
pub use validate::validate;

/// Re-exported so driver crates register without depending on `inventory` themselves.
pub use inventory;
pub use netcr_image;
pub use netcr_netlink;
pub use netlink_packet_route;

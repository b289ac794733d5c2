//! netcr's core: the link-driver framework and registry, the dump, and the restore planner
//! and executor (validate everything, change, verify; undo everything on failure).
//!
//! A runtime embeds it without the CLI: [`dump()`] namespaces into an [`netcr_image::Image`],
//! write it, and later read it, [`validate()`] it (images are untrusted input) and [`restore()`]
//! it; [`compare`] tells whether a namespace still matches its image. Link kinds come from
//! driver crates (`netcr-link-veth`, `netcr-link-macvlan`, ...) that register themselves when
//! linked: name each one you want (`use netcr_link_veth as _;`), or its devices are refused
//! by kind. `crates/netcr/examples/migrate.rs` is this example as a program.
//!
//! ```no_run
//! use std::path::Path;
//!
//! use netcr_core::netcr_image::Image;
//! use netcr_core::netcr_netlink::Netns;
//! use netcr_core::{DumpOptions, RestoreOptions, RestoreTarget};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let caller = Netns::current_thread()?; // where external lower devices are looked up
//! let source = Netns::open_name("web")?;
//! let (image, _report) = netcr_core::dump(&[source], &caller, &DumpOptions::default())?;
//! let dir = Path::new("/var/lib/runtime/web.netcr");
//! image.write(dir)?;
//!
//! let image = Image::read(dir)?;
//! netcr_core::validate(&image, dir)?;
//! let report = netcr_core::restore(
//!     &image,
//!     dir,
//!     RestoreTarget::Named("web-restored".into()),
//!     &caller,
//!     &RestoreOptions::default(),
//! )?;
//! println!("{} links, {} addresses", report.links, report.addresses);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

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
pub mod tc;
pub mod validate;
pub mod verify;
pub mod xfrm;

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
    restore, restore_all, restore_all_with, Adopt, CreateFrom, Progress, RestoreOptions,
    RestoreReport, RestoreTarget,
};
pub use validate::validate;

/// Re-exported so driver crates register without depending on `inventory` themselves.
pub use inventory;
pub use netcr_image;
pub use netcr_netlink;
pub use netlink_packet_route;

//! The application layer: what netcr does, apart from how it is asked and how the answer is
//! printed. The front ends (the `netcr` command line, CRIU's action script, the demo, `netcr
//! check`) call these functions and format their structured results; none of them calls
//! another front end, so each can change its wording without touching the others.
//!
//! - [`require_privileges`]: the one capability check, before anything is opened.
//! - [`dump_to_dir`]: namespaces to an image directory, written atomically.
//! - [`read_image`], [`restore_image`], [`restore_from_dir`]: an image back into namespaces,
//!   with [`Targets`] saying which namespace goes where; [`open_for_restore`] and
//!   [`require_private`]: a restore reads only an image nobody else can change.
//! - [`policy`]: the host's word on where a restored namespace may attach when only the image
//!   names the host device.
//! - [`show`] and [`render`]: an image in readable form.
//! - [`report`]: the `--json` documents.
//! - [`diff_netns`]: an image held against a live namespace, with the restore's verification.
//! - [`FaultInjection`]: the test mode's failures and pauses, around the kernel's sockets.
//! - [`recover`]: the rollback of restores that were killed, from their journals in
//!   [`run_dir`].

mod diff;
mod dump;
mod faults;
pub mod policy;
mod privileges;
mod recover;
mod render;
pub mod report;
mod restore;

pub use diff::{diff_images, diff_live, diff_netns, Change, DiffReport, Difference};
pub use dump::{
    dump_to_dir, open_sources, write_image, DumpSummary, Durability, NetnsCounts, NetnsSource,
    ENV_PAUSE_BEFORE_COMMIT,
};
pub use faults::{FaultInjection, ENV_FAIL_AT, ENV_PAUSE_AT};
pub use policy::{Policy, PolicyError};
pub use privileges::require_privileges;
pub use recover::{recover, run_dir, ENV_RUN_DIR};
pub use render::{render, show, Format};
pub use restore::{
    open_for_restore, read_image, read_image_in, require_private, restore_from_dir, restore_image,
    NetnsRestored, Target, TargetSpec, Targets,
};

use netcr_core::CoreError;
use netcr_image::ImageError;

/// Why an application step failed. Each variant displays as the one line a front end prints
/// after its own prefix (`netcr: error: `, `netcr-criu-hook: error: ACTION: `).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The process lacks capabilities the kernel requires: said plainly, before anything is
    /// opened, instead of an EPERM halfway through.
    #[error(
        "missing {} (uid {euid}): netcr needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root): it enters namespaces and changes their links",
        .missing.join(" and ")
    )]
    MissingCapabilities {
        /// The capabilities missing from the effective set.
        missing: Vec<&'static str>,
        /// The effective uid, to tell a non-root user from a root without capabilities.
        euid: u32,
    },
    /// The namespaces to dump or the targets to restore into do not fit the request or the
    /// image: a usage problem, caught before anything is changed.
    #[error(transparent)]
    Targets(#[from] TargetError),
    /// SIGINT or SIGTERM arrived during a dump: no image was written, a previous one stays.
    #[error("interrupted by a signal; no image written")]
    Interrupted,
    /// Opening a namespace or a netlink socket failed.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
    /// The dump, the validation or the restore failed (a restore has rolled back).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Reading or writing the image directory failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A recovery left something it could not undo (each journal said what).
    #[error("{0}")]
    Incomplete(String),
    /// The image could not be rendered as JSON.
    #[error("rendering the image as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Namespaces named for a dump or a restore that do not fit: usage problems, found before
/// anything is written or changed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The same namespace was named twice for a dump.
    #[error("\"{first}\" and \"{second}\" are the same namespace")]
    SameNamespace {
        /// The label of the first naming.
        first: String,
        /// The label of the second.
        second: String,
    },
    /// A restore target with an empty name or path.
    #[error("an empty namespace name or path")]
    Empty,
    /// A namespace of a several-namespace image without a target.
    #[error(
        "the image holds the namespaces {}: map each with --netns OLD=NEW (no mapping for \"{label}\")",
        .labels.join(", ")
    )]
    Unmapped {
        /// The image's namespace labels.
        labels: Vec<String>,
        /// The one without a target.
        label: String,
    },
    /// A namespace of the image was given two targets.
    #[error("namespace \"{0}\" is mapped twice")]
    MappedTwice(String),
    /// A mapping names a namespace the image does not hold.
    #[error("the image has no namespace \"{old}\" (it holds {})", .labels.join(", "))]
    NoSuchNamespace {
        /// The label given.
        old: String,
        /// The image's namespace labels.
        labels: Vec<String>,
    },
    /// A target without `OLD=` for an image of several namespaces.
    #[error("the image holds the namespaces {}: map each with --netns OLD=NEW", .labels.join(", "))]
    MappingRequired {
        /// The image's namespace labels.
        labels: Vec<String>,
    },
}

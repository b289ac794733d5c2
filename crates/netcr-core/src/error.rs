//! The core's errors: each names the namespace, the device and what went wrong.

use std::path::PathBuf;

/// Why a dump, validation or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The kernel or a namespace operation failed.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
    /// Reading or writing the image failed.
    #[error(transparent)]
    Image(#[from] netcr_image::ImageError),
    /// A device of a kind no driver knows.
    #[error("netns \"{netns}\": device \"{device}\" is of kind \"{kind}\", which netcr does not support (supported: {supported}); --skip-unknown leaves such devices out")]
    UnknownKind {
        /// Namespace label.
        netns: String,
        /// Device name.
        device: String,
        /// Its IFLA_INFO_KIND, or a description.
        kind: String,
        /// Supported kinds, comma-separated.
        supported: String,
    },
    /// The namespace holds state netcr cannot keep yet (traffic control, xfrm, ...), and no
    /// `--leave-out` names its family.
    #[error("{}", crate::families::refusal_text(netns, found))]
    Unkept {
        /// Namespace label.
        netns: String,
        /// What was found, per family.
        found: Vec<crate::families::Found>,
    },
    /// A driver could not handle a link.
    #[error("netns \"{netns}\": {kind} \"{device}\": {message}")]
    Driver {
        /// Namespace label.
        netns: String,
        /// Kind.
        kind: String,
        /// Device name.
        device: String,
        /// The driver's explanation.
        message: String,
    },
    /// The image is not something netcr can restore (hostile or damaged).
    #[error("invalid image {}: {reason}", dir.display())]
    InvalidImage {
        /// Image directory.
        dir: PathBuf,
        /// What is wrong, naming the object.
        reason: String,
    },
    /// The restore cannot start: a mapping is missing, a device absent, a name taken.
    #[error("{0}")]
    Refused(String),
    /// The restored namespace differs from the image.
    #[error("the restored namespace differs from the image: {0}")]
    Verify(String),
    /// A restore step failed and everything done was undone.
    #[error("{cause}; rolled back: {rollback}")]
    RolledBack {
        /// The first failure.
        cause: Box<CoreError>,
        /// What the rollback did (or what it could not undo).
        rollback: String,
    },
    /// The restore was interrupted by a signal and rolled back.
    #[error("interrupted by a signal; rolled back: {0}")]
    Interrupted(String),
}

/// Result alias for the core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

//! Reading an image directory that may have come from elsewhere ([`ImageDir`]).
//!
//! An image travels (a checkpoint archive imported on another node, a directory handed over
//! by someone else), so the names in it are input too. The directory is opened once and every
//! file is opened relative to it, never through a symbolic link that leads out of it: with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, or, on kernels without `openat2`
//! (before 5.6, or behind a seccomp filter that hides it), with `O_NOFOLLOW`, which refuses
//! every symbolic link. A restore also asks that nobody but root and the reader can change
//! the image ([`ImageDir::require_private`]), as CRIU expects of its own images.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::dir::Image;
use crate::error::ImageError;
use crate::frame;

/// An image directory opened for reading: every file is read relative to it and never
/// through a symbolic link that leaves it. Optionally private ([`require_private`]): then
/// the directory and every file read from it must be owned by root or the reader and not
/// writable by group or others.
///
/// [`require_private`]: ImageDir::require_private
#[derive(Debug)]
pub struct ImageDir {
    path: PathBuf,
    fd: OwnedFd,
    /// Set by [`ImageDir::require_private`]: the uid allowed besides root.
    private_for: Option<u32>,
}

/// `struct open_how` of linux/openat2.h (libc's is `#[non_exhaustive]`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

impl ImageDir {
    /// Opens the directory at `path`, following `path` as given (the caller named it).
    pub fn open(path: &Path) -> Result<ImageDir, ImageError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ImageError::NoImage {
                    path: path.to_path_buf(),
                },
                _ => ImageError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        Ok(ImageDir {
            path: path.to_path_buf(),
            fd: file.into(),
            private_for: None,
        })
    }

    /// Opens the directory `name` inside this one, never through a symbolic link that leaves
    /// this one; it inherits [`require_private`](ImageDir::require_private).
    pub fn open_dir(&self, name: &str) -> Result<ImageDir, ImageError> {
        let fd = self.open_beneath(name, libc::O_DIRECTORY | libc::O_RDONLY)?;
        let dir = ImageDir {
            path: self.path.join(name),
            fd,
            private_for: None,
        };
        match self.private_for {
            Some(uid) => dir.require_private(uid),
            None => Ok(dir),
        }
    }

    /// The directory's path, as given (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Insists that the directory, and every file read from it afterwards, is owned by root
    /// or `uid` and not writable by group or others: otherwise someone else could change what
    /// a restore builds. Checked on what was opened, so renaming things afterwards changes
    /// nothing. [`ImageError::NotPrivate`] says what is wrong and the command that fixes it.
    pub fn require_private(mut self, uid: u32) -> Result<ImageDir, ImageError> {
        let meta = File::from(self.fd.try_clone().map_err(|e| self.io(e))?)
            .metadata()
            .map_err(|e| self.io(e))?;
        check_private(&meta, &self.path, "the image directory", uid)?;
        self.private_for = Some(uid);
        Ok(self)
    }

    /// Reads the file `name` (a plain name, no `/`) of the directory: a regular file, at
    /// most [`frame::MAX_FILE_LEN`] bytes. [`ImageError::Missing`] when there is none.
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path.join(name);
        // O_NONBLOCK: a FIFO planted in an image directory must not hang the reader.
        let file = File::from(self.open_beneath(name, libc::O_RDONLY | libc::O_NONBLOCK)?);
        if let Some(uid) = self.private_for {
            let meta = file.metadata().map_err(|e| frame::io_error(&path, e))?;
            if meta.is_file() {
                check_private(&meta, &path, "the image file", uid)?;
            }
        }
        frame::read_opened(file, &path)
    }

    /// Reads the whole image, as [`Image::read`] does.
    pub fn read_image(&self) -> Result<Image, ImageError> {
        Image::from_files(&self.path, |path| {
            match path.file_name().and_then(|n| n.to_str()) {
                Some(name) => self.read_file(name),
                None => Err(ImageError::BadPath {
                    path: path.to_path_buf(),
                }),
            }
        })
    }

    fn io(&self, source: std::io::Error) -> ImageError {
        ImageError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens `name` relative to the directory, never through a link that leaves it.
    fn open_beneath(&self, name: &str, flags: i32) -> Result<OwnedFd, ImageError> {
        let path = self.path.join(name);
        let c_name = match CString::new(name) {
            Ok(c) if !name.is_empty() && name != "." && name != ".." && !name.contains('/') => c,
            _ => return Err(ImageError::BadPath { path }),
        };
        let dir = self.fd.as_raw_fd();
        let (result, why_loop) = match openat2_beneath(dir, &c_name, flags) {
            // No openat2 here (before 5.6, or hidden by seccomp): refuse every symbolic link.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => (
                openat_nofollow(dir, &c_name, flags),
                "(this kernel has no openat2, so netcr follows no symbolic link in an image)",
            ),
            other => (
                other,
                "that netcr does not follow (a loop, or a /proc magic link)",
            ),
        };
        result.map_err(|e| match e.raw_os_error() {
            Some(libc::EXDEV) => ImageError::Symlink {
                path,
                why: "that leads out of the image directory",
            },
            Some(libc::ELOOP) => ImageError::Symlink {
                path,
                why: why_loop,
            },
            _ => frame::io_error(&path, e),
        })
    }
}

/// `openat2(dir, name, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: EXDEV when the path
/// leads out of `dir`, ELOOP at a /proc magic link.
fn openat2_beneath(dir: RawFd, name: &CStr, flags: i32) -> std::io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a directory fd, a NUL-terminated name and an `open_how` of the size passed, all
    // alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    owned(fd)
}

/// `openat(dir, name, flags | O_NOFOLLOW)`: ELOOP at any symbolic link.
fn openat_nofollow(dir: RawFd, name: &CStr, flags: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: a directory fd and a NUL-terminated name, alive for the call.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    owned(fd.into())
}

/// The fd an open call returned, or its errno.
fn owned(fd: libc::c_long) -> std::io::Result<OwnedFd> {
    match RawFd::try_from(fd) {
        // SAFETY: a new fd the kernel just returned, owned by nobody else.
        Ok(fd) if fd >= 0 => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Owned by root or `uid`, and not writable by group or others.
fn check_private(
    meta: &std::fs::Metadata,
    path: &Path,
    what: &str,
    uid: u32,
) -> Result<(), ImageError> {
    let owner = meta.uid();
    let mode = meta.mode() & 0o7777;
    let (problem, fix) = if owner != 0 && owner != uid {
        let allowed = if uid == 0 {
            "root".to_string()
        } else {
            format!("root or uid {uid} (this process)")
        };
        (
            format!("{what} is owned by uid {owner}, not by {allowed}"),
            format!("chown root {}", path.display()),
        )
    } else if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        (
            format!("{what} is writable by {who} (mode {mode:04o})"),
            format!("chmod go-w {}", path.display()),
        )
    } else {
        return Ok(());
    };
    Err(ImageError::NotPrivate {
        path: path.to_path_buf(),
        problem,
        fix,
    })
}

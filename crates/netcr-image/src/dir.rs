//! Image directories: atomic writes ([`ImageWriter`]) and the whole-image type ([`Image`]).
//!
//! A dump must never leave a half-written image where a good one was: files are written into
//! a temporary directory beside the target, fsynced, and the directory is then renamed over
//! (or, when a previous image exists, atomically exchanged with) the target.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fs::{self, DirBuilder, File};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;

use crate::error::ImageError;
use crate::frame::{self, FileKind, MAGIC};
use crate::reader::ImageDir;
use crate::v1;

/// Name of the file every image directory holds; its presence marks a directory as an image.
pub const INVENTORY_FILE: &str = "inventory.img";

/// File name of a per-namespace file: `netns-3.img`, `links-3.img`, ...
/// For [`FileKind::Inventory`] it is [`INVENTORY_FILE`], whatever the id.
pub fn file_name(kind: FileKind, netns_id: u32) -> String {
    match kind {
        FileKind::Inventory => INVENTORY_FILE.to_owned(),
        _ => format!("{}-{netns_id}.img", kind.file_stem()),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(path: &Path) -> Result<(), ImageError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(path, e))
}

/// A random suffix for temporary names; std's hasher keys are seeded from the OS.
pub(crate) fn random_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// `.<name>.<what>-<pid>-<random>` in `parent`.
fn sibling_name(parent: &Path, name: &std::ffi::OsStr, what: &str) -> PathBuf {
    // Keep the result under NAME_MAX (255) for long target names.
    let name = &name.as_bytes()[..name.len().min(200)];
    let mut bytes = Vec::with_capacity(name.len() + 40);
    bytes.push(b'.');
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(
        format!(".{what}-{}-{:016x}", std::process::id(), random_suffix()).as_bytes(),
    );
    parent.join(OsString::from_vec(bytes))
}

/// What lies at an image target.
enum Target {
    Absent,
    /// An empty directory or a previous image: fine to replace.
    Replaceable,
}

/// Checks that `target` is absent, an empty directory, or a netcr image directory.
fn inspect_target(target: &Path) -> Result<Target, ImageError> {
    let meta = match fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::Absent),
        Err(e) => return Err(io_error(target, e)),
    };
    let file_type = meta.file_type();
    if !file_type.is_dir() {
        let what = if file_type.is_symlink() {
            "a symbolic link"
        } else if file_type.is_file() {
            "a regular file"
        } else {
            "a special file"
        };
        return Err(ImageError::TargetNotDirectory {
            path: target.to_path_buf(),
            what,
        });
    }
    let mut entries = fs::read_dir(target).map_err(|e| io_error(target, e))?;
    if entries.next().is_none() {
        return Ok(Target::Replaceable);
    }
    if is_image_dir(target) {
        Ok(Target::Replaceable)
    } else {
        Err(ImageError::TargetNotImage {
            path: target.to_path_buf(),
        })
    }
}

/// True when `dir` holds a regular `inventory.img` starting with the netcr magic.
fn is_image_dir(dir: &Path) -> bool {
    let path = dir.join(INVENTORY_FILE);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {}
        _ => return false,
    }
    let mut magic = [0u8; 8];
    File::open(&path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == MAGIC)
}

/// Atomically swaps two paths (renameat2 with RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call;
    // the raw syscall avoids depending on a libc version that wraps renameat2.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes an image directory atomically: files go to a temporary directory beside the target
/// (mode 0700, files 0600, each fsynced), which [`commit`](ImageWriter::commit) puts in place.
/// Dropping the writer without committing removes the temporary directory.
#[derive(Debug)]
pub struct ImageWriter {
    target: PathBuf,
    parent: PathBuf,
    temp: PathBuf,
    /// Set once the temporary directory is no longer ours to remove.
    done: bool,
    /// fsync files and directories (the default). Off for writers inside a time budget, such
    /// as CRIU's frozen window, whose images are as durable as CRIU's own (not fsynced).
    durable: bool,
}

impl ImageWriter {
    /// Prepares to write an image at `target`. Refuses, before writing anything, a target that
    /// exists and is not a directory, or is a non-empty directory that is not a netcr image.
    pub fn create(target: &Path) -> Result<ImageWriter, ImageError> {
        let Some(name) = target.file_name() else {
            return Err(ImageError::BadPath {
                path: target.to_path_buf(),
            });
        };
        let parent = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Normalized (no trailing "/" or "/."), so renames address the directory itself.
        let target = parent.join(name);
        if !parent.is_dir() {
            return Err(ImageError::NoParent { path: target });
        }
        inspect_target(&target)?;

        let mut attempts = 0;
        let temp = loop {
            let temp = sibling_name(&parent, name, "tmp");
            match DirBuilder::new().mode(0o700).create(&temp) {
                Ok(()) => break temp,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) => return Err(io_error(&temp, e)),
            }
        };
        let writer = ImageWriter {
            target,
            parent,
            temp,
            done: false,
            durable: true,
        };
        // The mode given to mkdir is filtered by the umask.
        fs::set_permissions(&writer.temp, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error(&writer.temp, e))?;
        Ok(writer)
    }

    /// Skips the fsyncs: still atomic (rename), no longer durable across a power loss.
    pub fn without_fsync(mut self) -> ImageWriter {
        self.durable = false;
        self
    }

    /// The temporary directory being filled; remove it if the process is interrupted.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Where the image will be once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    fn file_path(&self, file_name: &str) -> Result<PathBuf, ImageError> {
        if file_name.is_empty()
            || file_name == "."
            || file_name == ".."
            || file_name.contains('/')
            || file_name.contains('\0')
        {
            return Err(ImageError::BadPath {
                path: self.temp.join(file_name),
            });
        }
        Ok(self.temp.join(file_name))
    }

    /// Writes an already encoded file (see [`frame::encode_file`]).
    pub fn write_bytes(&self, file_name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let path = self.file_path(file_name)?;
        frame::write_file_bytes(&path, bytes, self.durable)
    }

    /// Encodes and writes one file of the image.
    pub fn write_records<M: Message>(
        &self,
        file_name: &str,
        kind: FileKind,
        records: &[M],
    ) -> Result<(), ImageError> {
        let path = self.file_path(file_name)?;
        let bytes = frame::encode_file(kind, records).map_err(|source| ImageError::Encode {
            path: path.clone(),
            source,
        })?;
        frame::write_file_bytes(&path, &bytes, self.durable)
    }

    /// Writes `inventory.img`.
    pub fn write_inventory(&self, inventory: &v1::Inventory) -> Result<(), ImageError> {
        self.write_records(
            INVENTORY_FILE,
            FileKind::Inventory,
            std::slice::from_ref(inventory),
        )
    }

    /// Writes the ten files of one namespace, named after `netns.netns.id`.
    pub fn write_netns(&self, netns: &NetnsImage) -> Result<(), ImageError> {
        netns.encode_files(|name, result| {
            let bytes = result.map_err(|source| ImageError::Encode {
                path: self.temp.join(&name),
                source,
            })?;
            self.write_bytes(&name, &bytes)
        })
    }

    /// Puts the image in place: renames the temporary directory to the target, or atomically
    /// exchanges it with a previous image there (which is then removed), and fsyncs the
    /// parent directory. On [`ImageError::StaleCopyLeft`] the new image is in place.
    pub fn commit(mut self) -> Result<(), ImageError> {
        if self.durable {
            sync_dir(&self.temp)?;
        }
        let old = match inspect_target(&self.target)? {
            Target::Absent => {
                fs::rename(&self.temp, &self.target).map_err(|e| io_error(&self.target, e))?;
                self.done = true;
                None
            }
            Target::Replaceable => Some(self.replace()?),
        };
        let removed = match old {
            Some(old) => fs::remove_dir_all(&old)
                .map_err(|source| ImageError::StaleCopyLeft { path: old, source }),
            None => Ok(()),
        };
        if self.durable {
            sync_dir(&self.parent)?;
        }
        removed
    }

    /// Swaps the new image with the existing target; returns where the old one now is.
    fn replace(&mut self) -> Result<PathBuf, ImageError> {
        match exchange(&self.temp, &self.target) {
            Ok(()) => {
                // The temporary path now holds the previous image; commit removes it.
                self.done = true;
                return Ok(self.temp.clone());
            }
            // Filesystems without RENAME_EXCHANGE: fall back to two renames.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {}
            Err(e) => return Err(io_error(&self.target, e)),
        }
        let name = self.target.file_name().unwrap_or_default().to_owned();
        let aside = sibling_name(&self.parent, &name, "old");
        fs::rename(&self.target, &aside).map_err(|e| io_error(&self.target, e))?;
        if let Err(e) = fs::rename(&self.temp, &self.target) {
            // Put the previous image back; the temporary one is removed on drop.
            let _ = fs::rename(&aside, &self.target);
            return Err(io_error(&self.target, e));
        }
        self.done = true;
        Ok(aside)
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.temp);
        }
    }
}

/// How [`Image::write_with`] writes an image.
#[derive(Clone, Copy)]
pub struct WriteOptions<'a> {
    /// fsync every file and directory (the default), so the image survives a power loss.
    /// Off for writers inside a time budget, such as CRIU's frozen window, whose images need
    /// be no more durable than CRIU's own (not fsynced); the write stays atomic either way.
    pub durable: bool,
    /// Asked once every file is written, just before the image is put in place: `false`
    /// abandons the write ([`ImageError::Abandoned`]; the temporary directory is removed and
    /// whatever was at the target stays). Lets a caller honour a signal that arrived during
    /// the write, at the last moment it can still leave everything as it was.
    pub before_commit: Option<&'a dyn Fn() -> bool>,
}

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        WriteOptions {
            durable: true,
            before_commit: None,
        }
    }
}

impl std::fmt::Debug for WriteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("durable", &self.durable)
            .field("before_commit", &self.before_commit.map(|_| "Fn"))
            .finish()
    }
}

/// Everything dumped from one network namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetnsImage {
    /// Namespace-wide state; `netns.id` names its files.
    pub netns: v1::Netns,
    /// `links-N.img`.
    pub links: Vec<v1::Link>,
    /// `addrs-N.img`.
    pub addresses: Vec<v1::Address>,
    /// `routes-N.img`.
    pub routes: Vec<v1::Route>,
    /// `rules-N.img`.
    pub rules: Vec<v1::Rule>,
    /// `neigh-N.img`.
    pub neighbours: Vec<v1::Neighbour>,
    /// `nexthops-N.img` (absent from, and empty for, images of format version 1).
    pub nexthops: Vec<v1::Nexthop>,
    /// `nftables-N.img` (absent from, and empty for, images of format versions 1 and 2).
    pub nftables: Vec<v1::NftObject>,
    /// `tc-N.img` (absent from, and empty for, images of format versions 1 to 3).
    pub tc: Vec<v1::TcObject>,
    /// `xfrm-N.img` (absent from, and empty for, images of format versions 1 to 3).
    pub xfrm: Vec<v1::XfrmObject>,
}

impl NetnsImage {
    /// Encodes the ten files of this namespace, handing each name and result to `sink`.
    fn encode_files<F>(&self, mut sink: F) -> Result<(), ImageError>
    where
        F: FnMut(String, Result<Vec<u8>, crate::EncodeError>) -> Result<(), ImageError>,
    {
        let id = self.netns.id;
        let name = |kind| file_name(kind, id);
        sink(
            name(FileKind::Netns),
            frame::encode_file(FileKind::Netns, std::slice::from_ref(&self.netns)),
        )?;
        sink(
            name(FileKind::Links),
            frame::encode_file(FileKind::Links, &self.links),
        )?;
        sink(
            name(FileKind::Addresses),
            frame::encode_file(FileKind::Addresses, &self.addresses),
        )?;
        sink(
            name(FileKind::Routes),
            frame::encode_file(FileKind::Routes, &self.routes),
        )?;
        sink(
            name(FileKind::Rules),
            frame::encode_file(FileKind::Rules, &self.rules),
        )?;
        sink(
            name(FileKind::Neighbours),
            frame::encode_file(FileKind::Neighbours, &self.neighbours),
        )?;
        sink(
            name(FileKind::Nexthops),
            frame::encode_file(FileKind::Nexthops, &self.nexthops),
        )?;
        sink(
            name(FileKind::Nftables),
            frame::encode_file(FileKind::Nftables, &self.nftables),
        )?;
        sink(
            name(FileKind::Tc),
            frame::encode_file(FileKind::Tc, &self.tc),
        )?;
        sink(
            name(FileKind::Xfrm),
            frame::encode_file(FileKind::Xfrm, &self.xfrm),
        )
    }
}

/// A whole image: the inventory and, in the inventory's order, one [`NetnsImage`] per
/// namespace it lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    /// Contents of `inventory.img`; `inventory.netns` lists the namespaces.
    pub inventory: v1::Inventory,
    /// One entry per `inventory.netns` entry, same order, same ids.
    pub namespaces: Vec<NetnsImage>,
}

fn single<M>(mut records: Vec<M>, path: &Path) -> Result<M, ImageError> {
    match records.len() {
        1 => Ok(records.remove(0)),
        found => Err(ImageError::NotSingleRecord {
            path: path.to_path_buf(),
            found: found as u64,
        }),
    }
}

impl Image {
    /// Checks that the inventory and the namespaces agree, so a written image reads back.
    fn check_consistent(&self, dir: &Path) -> Result<(), ImageError> {
        let inconsistent = |reason: String| ImageError::Inconsistent {
            path: dir.to_path_buf(),
            reason,
        };
        if self.inventory.netns.len() != self.namespaces.len() {
            return Err(inconsistent(format!(
                "the inventory lists {} namespaces, the image holds {}",
                self.inventory.netns.len(),
                self.namespaces.len()
            )));
        }
        let mut seen = HashSet::new();
        for (info, netns) in self.inventory.netns.iter().zip(&self.namespaces) {
            if !seen.insert(info.id) {
                return Err(inconsistent(format!(
                    "namespace id {} is listed twice",
                    info.id
                )));
            }
            if info.id != netns.netns.id {
                return Err(inconsistent(format!(
                    "the inventory lists namespace {} where the image holds namespace {}",
                    info.id, netns.netns.id
                )));
            }
        }
        Ok(())
    }

    /// Encodes every file of the image in memory, as (file name, bytes), inventory first.
    pub fn to_files(&self) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
        self.check_consistent(Path::new("."))?;
        let mut files = Vec::with_capacity(1 + 9 * self.namespaces.len());
        let inventory =
            frame::encode_file(FileKind::Inventory, std::slice::from_ref(&self.inventory))
                .map_err(|source| ImageError::Encode {
                    path: PathBuf::from(INVENTORY_FILE),
                    source,
                })?;
        files.push((INVENTORY_FILE.to_owned(), inventory));
        for netns in &self.namespaces {
            netns.encode_files(|name, result| {
                let bytes = result.map_err(|source| ImageError::Encode {
                    path: PathBuf::from(&name),
                    source,
                })?;
                files.push((name, bytes));
                Ok(())
            })?;
        }
        Ok(files)
    }

    /// Decodes an image from its files. `load(path)` returns the bytes of the file at
    /// `dir/<name>` (or [`ImageError::Missing`]); `dir` also names files in errors. The
    /// inventory's format version says which files a namespace has: `nexthops-N.img` only
    /// from version 2 on (a version 1 image holds no nexthops), `nftables-N.img` from 3 on,
    /// `tc-N.img` and `xfrm-N.img` from 4 on.
    pub fn from_files<F>(dir: &Path, mut load: F) -> Result<Image, ImageError>
    where
        F: FnMut(&Path) -> Result<Vec<u8>, ImageError>,
    {
        let path = dir.join(INVENTORY_FILE);
        let bytes = load(&path)?;
        let inventory: v1::Inventory = single(
            frame::decode_file(&bytes, FileKind::Inventory, &path)?,
            &path,
        )?;
        // decode_file checked the header: the version is there and supported.
        let version = frame::file_version(&bytes).unwrap_or(frame::MIN_FORMAT_VERSION);
        drop(bytes);

        let mut seen = HashSet::new();
        for info in &inventory.netns {
            if !seen.insert(info.id) {
                return Err(ImageError::DuplicateNetns { path, id: info.id });
            }
        }

        let mut namespaces = Vec::new();
        for info in &inventory.netns {
            let id = info.id;
            let path_of = |kind| dir.join(file_name(kind, id));

            let path = path_of(FileKind::Netns);
            let netns: v1::Netns = single(
                frame::decode_file(&load(&path)?, FileKind::Netns, &path)?,
                &path,
            )?;
            if netns.id != id {
                return Err(ImageError::NetnsIdMismatch {
                    path,
                    expected: id,
                    found: netns.id,
                });
            }
            let mut read = |kind| -> Result<_, ImageError> {
                let path = path_of(kind);
                let bytes = load(&path)?;
                Ok((bytes, path))
            };
            let (bytes, path) = read(FileKind::Links)?;
            let links = frame::decode_file(&bytes, FileKind::Links, &path)?;
            let (bytes, path) = read(FileKind::Addresses)?;
            let addresses = frame::decode_file(&bytes, FileKind::Addresses, &path)?;
            let (bytes, path) = read(FileKind::Routes)?;
            let routes = frame::decode_file(&bytes, FileKind::Routes, &path)?;
            let (bytes, path) = read(FileKind::Rules)?;
            let rules = frame::decode_file(&bytes, FileKind::Rules, &path)?;
            let (bytes, path) = read(FileKind::Neighbours)?;
            let neighbours = frame::decode_file(&bytes, FileKind::Neighbours, &path)?;
            let nexthops = if version >= 2 {
                let (bytes, path) = read(FileKind::Nexthops)?;
                frame::decode_file(&bytes, FileKind::Nexthops, &path)?
            } else {
                Vec::new()
            };
            let nftables = if version >= 3 {
                let (bytes, path) = read(FileKind::Nftables)?;
                frame::decode_file(&bytes, FileKind::Nftables, &path)?
            } else {
                Vec::new()
            };
            let tc = if version >= 4 {
                let (bytes, path) = read(FileKind::Tc)?;
                frame::decode_file(&bytes, FileKind::Tc, &path)?
            } else {
                Vec::new()
            };
            let xfrm = if version >= 4 {
                let (bytes, path) = read(FileKind::Xfrm)?;
                frame::decode_file(&bytes, FileKind::Xfrm, &path)?
            } else {
                Vec::new()
            };
            namespaces.push(NetnsImage {
                netns,
                links,
                addresses,
                routes,
                rules,
                neighbours,
                nexthops,
                nftables,
                tc,
                xfrm,
            });
        }
        Ok(Image {
            inventory,
            namespaces,
        })
    }

    /// Writes the image to `dir` atomically: either the whole new image is there afterwards,
    /// or whatever was there before is left untouched. Durable (fsynced); see
    /// [`write_with`](Image::write_with) for the choices.
    pub fn write(&self, dir: &Path) -> Result<(), ImageError> {
        self.write_with(dir, &WriteOptions::default())
    }

    /// Writes the image to `dir` atomically, as [`write`](Image::write) does, with the
    /// durability and the last-moment check of `options`. Every caller writing a whole image
    /// goes through here, so an image is always written the same way: inventory, each
    /// namespace, then one commit. On [`ImageError::StaleCopyLeft`] the new image is in place;
    /// on [`ImageError::Abandoned`] nothing changed at `dir`.
    pub fn write_with(&self, dir: &Path, options: &WriteOptions<'_>) -> Result<(), ImageError> {
        self.check_consistent(dir)?;
        let mut writer = ImageWriter::create(dir)?;
        if !options.durable {
            writer = writer.without_fsync();
        }
        writer.write_inventory(&self.inventory)?;
        for netns in &self.namespaces {
            writer.write_netns(netns)?;
        }
        if let Some(before_commit) = options.before_commit {
            if !before_commit() {
                // Dropping the writer removes the temporary directory.
                return Err(ImageError::Abandoned {
                    path: writer.target().to_path_buf(),
                });
            }
        }
        writer.commit()
    }

    /// Reads the image in `dir`: `inventory.img`, then the files of every namespace it lists
    /// (ten; six in an image of format version 1, seven in one of version 2, eight in one of
    /// version 3). Checks framing and checksums, one
    /// inventory record, unique namespace ids and that each `netns-N.img` describes
    /// namespace N; deeper checks are the caller's. Files are read as [`ImageDir`] reads
    /// them: never through a symbolic link out of `dir`.
    pub fn read(dir: &Path) -> Result<Image, ImageError> {
        ImageDir::open(dir)?.read_image()
    }
}

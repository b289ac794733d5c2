//! Network-namespace handles: open by name, path or pid, create and delete named ones the way
//! `ip netns add` does, and run code inside one on the calling thread only.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open network namespace: an fd that keeps it alive, and a label for messages.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    label: String,
    /// The file it was opened from (a journal names it so that recovery can find it again).
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace bind-mounted at `path` (or `/proc/PID/ns/net`).
    pub fn open_path(path: &Path) -> Result<Netns> {
        Self::open_labeled(path, path.display().to_string())
    }

    /// Opens a named namespace (`/run/netns/NAME`), as `ip netns` names them.
    pub fn open_name(name: &str) -> Result<Netns> {
        validate_name(name)?;
        Self::open_labeled(&named_path(name), name.to_string())
    }

    /// Opens the namespace of process `pid`.
    pub fn open_pid(pid: u32) -> Result<Netns> {
        Self::open_labeled(
            &PathBuf::from(format!("/proc/{pid}/ns/net")),
            format!("pid:{pid}"),
        )
    }

    /// Opens the calling thread's namespace. After a per-thread `setns`/`unshare` this differs
    /// from `/proc/self/ns/net`, which is the main thread's.
    pub fn current_thread() -> Result<Netns> {
        Self::open_labeled(Path::new("/proc/thread-self/ns/net"), "current".to_string())
    }

    fn open_labeled(path: &Path, label: String) -> Result<Netns> {
        match File::open(path) {
            Ok(file) => {
                let netns = Netns {
                    fd: file.into(),
                    label,
                    path: path.to_path_buf(),
                };
                netns.check_is_netns(path)?;
                Ok(netns)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NetnsNotFound {
                netns: label,
                path: path.to_path_buf(),
            }),
            Err(source) => Err(Error::Netns {
                netns: label,
                op: "open",
                source,
            }),
        }
    }

    fn check_is_netns(&self, path: &Path) -> Result<()> {
        // NS_GET_NSTYPE would be exact; comparing the filesystem is enough: nsfs files only.
        let meta = File::from(
            self.fd
                .try_clone()
                .map_err(|source| self.err("dup", source))?,
        )
        .metadata()
        .map_err(|source| self.err("stat", source))?;
        let nsfs_dev = fs::metadata("/proc/thread-self/ns/net")
            .map_err(|source| self.err("stat /proc/thread-self/ns/net", source))?
            .dev();
        if meta.dev() != nsfs_dev {
            return Err(self.err(
                "open",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a namespace file", path.display()),
                ),
            ));
        }
        Ok(())
    }

    /// Label used in messages: the name, path or `pid:N` the namespace was opened by.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Replaces the label (e.g. to show the user's spelling).
    pub fn with_label(mut self, label: impl Into<String>) -> Netns {
        self.label = label.into();
        self
    }

    /// The namespace's identity (device and inode of its nsfs file).
    pub fn id(&self) -> Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(self.fd.as_fd())
            .map_err(|e| self.err("fstat", io::Error::from(e)))?;
        Ok((st.st_dev, st.st_ino))
    }

    /// True when both handles refer to the same namespace.
    pub fn same_as(&self, other: &Netns) -> Result<bool> {
        Ok(self.id()? == other.id()?)
    }

    /// The raw fd, for `IFLA_NET_NS_FD` / `NETNSA_FD`. The fd stays valid while `self` lives:
    /// keep the handle until the kernel has answered the request that carries it.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A second handle to the same namespace.
    pub fn try_clone(&self) -> Result<Netns> {
        Ok(Netns {
            fd: self
                .fd
                .try_clone()
                .map_err(|source| self.err("dup", source))?,
            label: self.label.clone(),
            path: self.path.clone(),
        })
    }

    /// The file the namespace was opened from: `/run/netns/NAME`, `/proc/PID/ns/net` or the
    /// path given (for the calling thread's, `/proc/thread-self/ns/net`, which names another
    /// namespace in another thread or process).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard> {
        let previous = Netns::current_thread()?;
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| self.err("setns", io::Error::from(e)))?;
        Ok(NetnsGuard { previous })
    }

    /// Runs `f` with the calling thread inside this namespace, and moves it back on every path.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let _guard = self.enter()?;
        Ok(f())
    }

    /// Creates a fresh namespace that lives only as long as this handle (and sockets in it).
    pub fn new_anonymous(label: &str) -> Result<Netns> {
        let label = label.to_string();
        std::thread::spawn(move || -> Result<Netns> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                netns: label.clone(),
                op: "unshare",
                source: e.into(),
            })?;
            Ok(Netns::current_thread()?.with_label(label))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Netns {
                netns: "anonymous".into(),
                op: "unshare",
                source: io::Error::other("namespace thread panicked"),
            })
        })
    }

    /// Creates a named namespace as `ip netns add NAME` does: an nsfs bind mount at
    /// `/run/netns/NAME` on a shared mount, so `ip netns exec` and `ip -n` see it.
    /// Fails with EEXIST when the name is taken.
    pub fn create_named(name: &str) -> Result<Netns> {
        validate_name(name)?;
        let label = name.to_string();
        let err = |op, source| Error::Netns {
            netns: label.clone(),
            op,
            source,
        };
        prepare_run_dir().map_err(|e| err("preparing /run/netns", e))?;
        let path = named_path(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|e| err("creating the mount point", e))?;
        // A fresh thread: unshare there, bind-mount its namespace, and let the thread end,
        // so no thread of ours is left in the new namespace.
        let target = path.clone();
        let made = std::thread::spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some(Path::new("/proc/thread-self/ns/net")),
                &target,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
        if let Err(e) = made {
            let _ = fs::remove_file(&path);
            return Err(err("creating the namespace", e));
        }
        Netns::open_name(name)
    }

    /// Like [`Netns::create_named`], but the new namespace is owned by the user namespace at
    /// `userns` (e.g. `/proc/PID/ns/user`), as a rootless container's is. Joining a user
    /// namespace needs a single-threaded caller, so a forked child joins it and unshares the
    /// network namespace; this process, which keeps its capabilities, bind-mounts it.
    pub fn create_named_in_userns(name: &str, userns: &Path) -> Result<Netns> {
        validate_name(name)?;
        let label = name.to_string();
        let err = |op, source| Error::Netns {
            netns: label.clone(),
            op,
            source,
        };
        let owner = File::open(userns).map_err(|e| Error::Netns {
            netns: userns.display().to_string(),
            op: "opening the user namespace",
            source: e,
        })?;
        prepare_run_dir().map_err(|e| err("preparing /run/netns", e))?;
        let path = named_path(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|e| err("creating the mount point", e))?;
        let made = create_in_userns(&owner, &path);
        if let Err(e) = made {
            let _ = fs::remove_file(&path);
            return Err(err("creating the namespace in the user namespace", e));
        }
        Netns::open_name(name)
    }

    /// The user namespace that owns this network namespace (NS_GET_USERNS), as (dev, inode).
    pub fn owner_id(&self) -> Result<(u64, u64)> {
        const NS_GET_USERNS: libc::c_ulong = 0xb701;
        // SAFETY: the ioctl takes no argument and returns a new fd or -1.
        let fd = unsafe { libc::ioctl(self.fd.as_raw_fd(), NS_GET_USERNS) };
        if fd < 0 {
            return Err(self.err("NS_GET_USERNS", io::Error::last_os_error()));
        }
        // SAFETY: the kernel just gave us this fd; we own it now.
        let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let st = nix::sys::stat::fstat(owned.as_fd()).map_err(|e| self.err("fstat", e.into()))?;
        Ok((st.st_dev, st.st_ino))
    }

    /// Deletes a named namespace as `ip netns del` does: unmount and remove the file. The
    /// namespace itself goes away when nothing else holds it.
    pub fn delete_named(name: &str) -> Result<()> {
        validate_name(name)?;
        let path = named_path(name);
        if !path.exists() {
            return Err(Error::NetnsNotFound {
                netns: name.to_string(),
                path,
            });
        }
        let err = |op, source| Error::Netns {
            netns: name.to_string(),
            op,
            source,
        };
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(err("unmounting", e.into())),
        }
        fs::remove_file(&path).map_err(|e| err("removing", e))
    }

    fn err(&self, op: &'static str, source: io::Error) -> Error {
        Error::Netns {
            netns: self.label.clone(),
            op,
            source,
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Moves the thread back to its previous namespace when dropped.
#[must_use = "the thread leaves the namespace when the guard drops"]
#[derive(Debug)]
pub struct NetnsGuard {
    previous: Netns,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(self.previous.fd.as_fd(), CloneFlags::CLONE_NEWNET) {
            // A thread stranded in another namespace would send later requests to the wrong
            // place; stopping is the only safe answer.
            eprintln!("netcr: fatal: cannot return the thread to its namespace: {e}");
            std::process::abort();
        }
    }
}

/// Path of a named namespace.
pub fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// True when a named namespace exists.
pub fn named_exists(name: &str) -> bool {
    validate_name(name).is_ok() && named_path(name).exists()
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.len() > 255 {
        return Err(Error::Netns {
            netns: name.to_string(),
            op: "checking the name",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "a namespace name must be 1-255 bytes without '/'",
            ),
        });
    }
    Ok(())
}

/// Makes /run/netns a shared mount point, as iproute2 does, so mounts made in it propagate to
/// other mount namespaces.
fn prepare_run_dir() -> io::Result<()> {
    fs::create_dir_all(NETNS_RUN_DIR)?;
    let shared = |flags| {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            flags,
            None::<&str>,
        )
    };
    match shared(MsFlags::MS_SHARED | MsFlags::MS_REC) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared(MsFlags::MS_SHARED | MsFlags::MS_REC)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Forks a child that joins `owner` (a user namespace) and unshares a network namespace, then
/// bind-mounts that namespace at `target` from this process.
fn create_in_userns(owner: &File, target: &Path) -> io::Result<()> {
    use nix::sys::wait::waitpid;
    use nix::unistd::{fork, pipe, read, write, ForkResult};
    let (ready_r, ready_w) = pipe()?;
    let (done_r, done_w) = pipe()?;
    // SAFETY: the child only makes async-signal-safe system calls, then _exits.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let ok = setns(owner.as_fd(), CloneFlags::CLONE_NEWUSER).is_ok()
                && unshare(CloneFlags::CLONE_NEWNET).is_ok();
            let _ = write(&ready_w, &[u8::from(ok)]);
            let mut b = [0u8; 1];
            let _ = read(&done_r, &mut b);
            // SAFETY: ending the forked child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let mut b = [0u8; 1];
            let joined = read(&ready_r, &mut b)
                .map(|n| n == 1 && b[0] == 1)
                .unwrap_or(false);
            let result = if joined {
                mount(
                    Some(Path::new(&format!("/proc/{child}/ns/net"))),
                    target,
                    Some("none"),
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            } else {
                Err(io::Error::other(
                    "the child could not join the user namespace and unshare a network namespace",
                ))
            };
            let _ = write(&done_w, &[1]);
            let _ = waitpid(child, None);
            result
        }
    }
}

//! `netcr-criu-hook`: the network step of CRIU checkpoints, run as CRIU's action script.
//!
//! Container runtimes (runc, crun) never let CRIU restore a container's network namespace:
//! they pass `--empty-ns net` or mark the namespace external (runc issue 3146), so a container
//! comes back in an empty namespace. CRIU's action scripts are the way in. CRIU runs the
//! configured executable with no arguments; everything comes from its environment:
//!
//! - `CRTOOLS_SCRIPT_ACTION`: what CRIU is doing. `network-lock` (dump: tasks frozen) dumps
//!   the namespace of `/proc/$CRTOOLS_INIT_PID/ns/net` into `$CRTOOLS_IMAGE_DIR/netcr/`;
//!   `setup-namespaces` (restore: the root task sits in a new, empty namespace) restores that
//!   image into `/proc/$CRTOOLS_INIT_PID/ns/net`, keeping every ifindex and name. Every other
//!   action returns at once and does nothing.
//! - `CRTOOLS_IMAGE_DIR`: CRIU's image directory, or a `/proc/PID/fd/N` link to it.
//! - `CRTOOLS_INIT_PID`: the root task of the tree, as seen from the hook.
//!
//! A failure exits non-zero with one line on stderr, so CRIU aborts: a dump resumes the
//! tasks, a restore leaves nothing behind (the restore rolls back everything it created).
//!
//! With no command line to carry `--external` mappings, the hook collects them from, in this
//! order (the first source with a mapping for a device wins, a `*` mapping included):
//! `NETCR_EXTERNAL` (the `--external` syntax, several separated by commas), the file
//! `external` in the image's `netcr/` directory, the node-wide file `/etc/netcr/external`
//! (`NETCR_EXTERNAL_FILE` names another, an empty value none), and last the device recorded
//! at dump time, when a lower device of that name exists here (or, for a veth, when its
//! outer end's name is free). The files hold one mapping per line; `#` starts a comment.
//!
//! A checkpoint travels between nodes, so the image is not the host's word: `NETCR_EXTERNAL`
//! and the node-wide file are always honoured, but a mapping that comes from the image (its
//! `external` file, the devices recorded at dump time) only where the host policy
//! (`/etc/netcr/policy`, or the file `NETCR_POLICY_FILE` names; see [`crate::app::policy`])
//! allows that host device. The image directory must be owned by root and not writable by
//! group or others, and none of its files is read through a symbolic link out of it.
//!
//! The same code path runs as the `netcr-criu-hook` binary and as `netcr` invoked under that
//! name (a symlink): see [`invoked_as_hook`].

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use log::LevelFilter;
use netcr_core::{
    driver_for, Adopt, DumpOptions, ExternalMapping, Family, LowerRole, RestoreOptions,
    RestoreTarget,
};
use netcr_image::{v1, Image, ImageDir, ImageError};
use netcr_netlink::{Netns, Rtnl, RtnlExt};

use crate::app::policy::{read_host_file, strip_comment, Refusal, POLICY_FILE};
use crate::app::{self, AppError, Durability, Policy, PolicyError, Targets};

/// The name the hook is installed under; `netcr` run under this name acts as the hook.
pub const HOOK_NAME: &str = "netcr-criu-hook";
/// The environment variable holding CRIU's action.
pub const ENV_ACTION: &str = "CRTOOLS_SCRIPT_ACTION";
/// The environment variable holding CRIU's image directory.
pub const ENV_IMAGE_DIR: &str = "CRTOOLS_IMAGE_DIR";
/// The environment variable holding the root task's pid.
pub const ENV_INIT_PID: &str = "CRTOOLS_INIT_PID";
/// `--external` mappings, comma-separated: the first source.
pub const ENV_EXTERNAL: &str = "NETCR_EXTERNAL";
/// Overrides the node-wide mapping file's path; an empty value means no node-wide file.
pub const ENV_EXTERNAL_FILE: &str = "NETCR_EXTERNAL_FILE";
/// Overrides the host policy's path ([`POLICY_FILE`]) when set and not empty.
pub const ENV_POLICY_FILE: &str = "NETCR_POLICY_FILE";
/// Log level on stderr: off, error, warn, info (the default), debug, trace.
pub const ENV_LOG: &str = "NETCR_LOG";
/// State families that checkpoints on this node leave out (recorded in each image) instead
/// of failing (or, for nftables, instead of keeping it), comma-separated: `tc,xfrm`, as
/// `netcr dump --leave-out` takes them.
pub const ENV_LEAVE_OUT: &str = "NETCR_LEAVE_OUT";
/// What the restore does with devices the runtime built in the namespace first: `keep`
/// (the default: adopt them as they are), `change` (adopt them and give them the image's
/// settings), `off` (refuse a namespace that holds a device of the image).
pub const ENV_ADOPT: &str = "NETCR_ADOPT";
/// Whether a restore gives nf_tables counters (and quotas' consumption) back as the
/// checkpoint holds them: `1` (the default: a restored container carries on) or `0` (they
/// start at zero, as `netcr restore` without `--keep-counters`).
pub const ENV_KEEP_COUNTERS: &str = "NETCR_KEEP_COUNTERS";
/// The node-wide mapping file.
pub const NODE_EXTERNAL_FILE: &str = "/etc/netcr/external";
/// The subdirectory of CRIU's image directory that holds netcr's image.
pub const IMAGE_SUBDIR: &str = "netcr";
/// The mapping file inside netcr's image directory.
pub const IMAGE_EXTERNAL_FILE: &str = "external";
/// The source name of the last resort: the devices recorded at dump time.
pub const RECORDED_SOURCE: &str = "the devices recorded at dump time";

/// The CRIU action that dumps (tasks frozen, CRIU's own network lock not yet in place).
pub const ACTION_NETWORK_LOCK: &str = "network-lock";
/// The CRIU action that restores (the root task sits in its new, empty namespace).
pub const ACTION_SETUP_NAMESPACES: &str = "setup-namespaces";

/// Why an action failed; displayed after `netcr-criu-hook: error: ACTION: `.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A variable CRIU sets is missing.
    #[error("{0} is not set")]
    NotSet(&'static str),
    /// `CRTOOLS_IMAGE_DIR` names something else than a directory.
    #[error("{ENV_IMAGE_DIR}={} is not a directory", .0.display())]
    ImagesNotADirectory(PathBuf),
    /// `CRTOOLS_IMAGE_DIR` cannot be looked at.
    #[error("{ENV_IMAGE_DIR}={}: {source}", .path.display())]
    ImagesUnusable {
        /// The value.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `CRTOOLS_INIT_PID` is not a process id.
    #[error("{ENV_INIT_PID}={0:?} is not a process id")]
    BadPid(OsString),
    /// The root task's namespace cannot be opened (the task is gone?).
    #[error("opening the network namespace of process {pid} ({ENV_INIT_PID}): {source}")]
    OpenNetns {
        /// The root task.
        pid: u32,
        /// Why.
        source: netcr_netlink::Error,
    },
    /// No image to restore.
    #[error("no netcr image: {} does not exist (was the checkpoint made with {HOOK_NAME} as CRIU's action script?)", .0.display())]
    NoImage(PathBuf),
    /// A mapping source is malformed, or a link of the image has no host device, or the
    /// host policy does not allow the one the image asks for.
    #[error("{0}")]
    Mappings(String),
    /// The host policy, or the node-wide mapping file, cannot be used.
    #[error(transparent)]
    HostFile(#[from] PolicyError),
    /// A setting in the environment is not one the hook knows.
    #[error("{0}")]
    Config(String),
    /// A step of the application layer failed; `doing` says which.
    #[error("{doing}: {source}")]
    Step {
        /// What the hook was doing, e.g. `restoring DIR`.
        doing: String,
        /// Why it failed (boxed: an [`AppError`] is large, and this is the rare path).
        source: Box<AppError>,
    },
    /// The privilege check, or a namespace operation outside the steps, failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// Looking at the hook's own namespace failed.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
}

impl HookError {
    /// Wraps an application error with what the hook was doing.
    fn step(doing: impl Display, source: AppError) -> HookError {
        HookError::Step {
            doing: doing.to_string(),
            source: Box::new(source),
        }
    }
}

/// What CRIU asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `network-lock`: dump.
    NetworkLock,
    /// `setup-namespaces`: restore.
    SetupNamespaces,
}

impl Action {
    /// The action for a `CRTOOLS_SCRIPT_ACTION` value; `None` for the ones the hook ignores.
    pub fn from_env_value(value: &OsStr) -> Option<Action> {
        match value.to_str() {
            Some(ACTION_NETWORK_LOCK) => Some(Action::NetworkLock),
            Some(ACTION_SETUP_NAMESPACES) => Some(Action::SetupNamespaces),
            _ => None,
        }
    }

    /// CRIU's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Action::NetworkLock => ACTION_NETWORK_LOCK,
            Action::SetupNamespaces => ACTION_SETUP_NAMESPACES,
        }
    }
}

/// True when the process was started under the hook's name (argv[0]'s basename), e.g.
/// through a symlink `netcr-criu-hook -> netcr`.
pub fn invoked_as_hook() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|argv0| is_hook_name(&argv0))
}

/// True when `argv0`'s last path component is [`HOOK_NAME`].
pub fn is_hook_name(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|name| name == HOOK_NAME)
}

const HELP: &str = "\
netcr-criu-hook: the network step of CRIU checkpoints, run as CRIU's action script.

CRIU runs it with no arguments; everything comes from the environment CRIU sets:
  CRTOOLS_SCRIPT_ACTION  network-lock: dump /proc/$CRTOOLS_INIT_PID/ns/net into
                         $CRTOOLS_IMAGE_DIR/netcr/
                         setup-namespaces: restore that image into
                         /proc/$CRTOOLS_INIT_PID/ns/net, keeping every ifindex
                         any other action: exit 0 at once, doing nothing
  CRTOOLS_IMAGE_DIR      CRIU's image directory (or a /proc/PID/fd/N link to it)
  CRTOOLS_INIT_PID       the root task of the process tree

Enable it with a line in a CRIU configuration file (/etc/criu/default.conf,
/etc/criu/runc.conf, /etc/criu/crun.conf, the file named by CRIU_CONFIG_FILE or by
the org.criu.config annotation):
  action-script /usr/local/bin/netcr-criu-hook

Host devices for links whose lower device or peer lies outside the namespace
(the --external mappings of `netcr restore`), first source wins per device:
  NETCR_EXTERNAL         mappings separated by commas, e.g. macvlan[mv0]:eth0,macvlan[*]:eth1
  $CRTOOLS_IMAGE_DIR/netcr/external
                         one mapping per line, # comments
  /etc/netcr/external    the same, node-wide (NETCR_EXTERNAL_FILE names another file;
                         an empty value, none)
  the device recorded at dump time, when it exists on this host
NETCR_EXTERNAL and the node-wide file are the host's word. The image's own file and
the devices recorded at dump time come with the image: they are honoured only where
the host policy allows the host device (none is without a policy file):
  /etc/netcr/policy      (NETCR_POLICY_FILE names another file) one rule a line:
                         lower DEVICE [KIND...]  links may sit on host device DEVICE
                         outer NAME              a veth's host end may be named NAME
                         bridge BRIDGE           a veth's host end may join BRIDGE
                         '*' matches any run of characters; # comments
Other settings:
  NETCR_LEAVE_OUT        state families netcr cannot keep yet that checkpoints leave
                         out instead of failing, e.g. tc,xfrm (recorded in the image)
  NETCR_KEEP_COUNTERS    1 (default): nf_tables counters come back as checkpointed;
                         0: they start at zero
  NETCR_ADOPT            devices the runtime built in the namespace first (Podman, CNI):
                         keep (default: adopt them as they are), change (adopt them
                         and give them the image's settings), off (refuse)
  NETCR_LOG              stderr log level: off, error, warn, info (default), debug, trace
";

/// Entry point of the hook (both the `netcr-criu-hook` binary and `netcr` run under that
/// name): 0 on success or an ignored action, 1 on failure, 2 when not run as CRIU runs it.
pub fn main() -> ExitCode {
    if let Some(arg) = std::env::args_os().nth(1) {
        return match arg.to_str() {
            Some("-h" | "--help") => {
                print!("{HELP}");
                ExitCode::SUCCESS
            }
            Some("-V" | "--version") => {
                println!("{HOOK_NAME} {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!(
                    "{HOOK_NAME}: error: unexpected argument {arg:?}: CRIU runs the hook with none, and the environment says what to do (see --help)"
                );
                ExitCode::from(2)
            }
        };
    }
    let Some(value) = std::env::var_os(ENV_ACTION) else {
        eprintln!(
            "{HOOK_NAME}: error: {ENV_ACTION} is not set: the hook is meant to be run by CRIU as its action script (see --help)"
        );
        return ExitCode::from(2);
    };
    // Every action but two: nothing to do, and nothing to say.
    let Some(action) = Action::from_env_value(&value) else {
        return ExitCode::SUCCESS;
    };
    init_logger();
    match run(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{HOOK_NAME}: error: {}: {}",
                action.name(),
                e.to_string().replace('\n', " ")
            );
            ExitCode::from(1)
        }
    }
}

/// Runs one action with the process environment. Privileges first, as for `netcr dump` and
/// `netcr restore`: root in a container or under `capsh --drop` may lack them.
pub fn run(action: Action) -> Result<(), HookError> {
    app::require_privileges()?;
    let images = ImagesDir::from_env(std::env::var_os(ENV_IMAGE_DIR))?;
    let pid = init_pid(std::env::var_os(ENV_INIT_PID))?;
    match action {
        Action::NetworkLock => network_lock(pid, &images),
        Action::SetupNamespaces => setup_namespaces(pid, &images),
    }
}

/// `CRTOOLS_IMAGE_DIR` as CRIU gives it: a directory, or a `/proc/PID/fd/N` link to one
/// (the image directory's fd in the CRIU process). Paths through such a link work like paths
/// in the directory itself, renames included, so it is used as given.
#[derive(Debug, Clone)]
pub struct ImagesDir {
    given: PathBuf,
}

impl ImagesDir {
    /// Checks the variable's value: set, and a directory.
    pub fn from_env(value: Option<OsString>) -> Result<ImagesDir, HookError> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Err(HookError::NotSet(ENV_IMAGE_DIR));
        };
        let given = PathBuf::from(value);
        match std::fs::metadata(&given) {
            Ok(meta) if meta.is_dir() => Ok(ImagesDir { given }),
            Ok(_) => Err(HookError::ImagesNotADirectory(given)),
            Err(source) => Err(HookError::ImagesUnusable {
                path: given,
                source,
            }),
        }
    }

    /// The directory as given.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// netcr's image directory inside it.
    pub fn netcr_dir(&self) -> PathBuf {
        self.given.join(IMAGE_SUBDIR)
    }

    /// The path for messages, with the target of a `/proc/.../fd/N` link.
    pub fn describe(&self) -> String {
        match std::fs::read_link(&self.given) {
            Ok(target) if self.given.starts_with("/proc") => {
                format!("{} ({})", self.given.display(), target.display())
            }
            _ => self.given.display().to_string(),
        }
    }
}

/// Parses `CRTOOLS_INIT_PID`.
pub fn init_pid(value: Option<OsString>) -> Result<u32, HookError> {
    let Some(value) = value else {
        return Err(HookError::NotSet(ENV_INIT_PID));
    };
    match value.to_str().and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(pid) if pid > 0 => Ok(pid),
        _ => Err(HookError::BadPid(value)),
    }
}

fn open_pid_netns(pid: u32) -> Result<Netns, HookError> {
    Netns::open_pid(pid).map_err(|source| HookError::OpenNetns { pid, source })
}

/// `network-lock`: dump the root task's namespace into `$CRTOOLS_IMAGE_DIR/netcr/`. The tasks
/// are frozen meanwhile, so this is kept short: one kernel dump, one write, no fsync
/// ([`Durability::NoFsync`]).
fn network_lock(pid: u32, images: &ImagesDir) -> Result<(), HookError> {
    let start = Instant::now();
    crate::signals::install();
    let ns = open_pid_netns(pid)?;
    let caller = Netns::current_thread()?;
    if ns.same_as(&caller)? {
        log::info!(
            "process {pid} shares the hook's network namespace: nothing to dump (that namespace is not the container's own)"
        );
        return Ok(());
    }
    let dir = images.netcr_dir();
    let summary = app::dump_to_dir(
        std::slice::from_ref(&ns),
        &dir,
        &dump_options()?,
        Durability::NoFsync,
    )
    .map_err(|e| match e {
        // Writing the image, or abandoning it for a signal.
        AppError::Image(_) | AppError::Interrupted => {
            HookError::step(format_args!("writing {}", dir.display()), e)
        }
        e => HookError::step(
            format_args!("dumping the network namespace of process {pid}"),
            e,
        ),
    })?;
    for w in &summary.warnings {
        log::warn!("{w}");
    }
    for n in &summary.namespaces {
        log::info!(
            "dumped {n} into {} in {:.2} ms (kernel dump {:.2} ms; image directory {})",
            summary.dir.display(),
            start.elapsed().as_secs_f64() * 1e3,
            summary.kernel_dump.as_secs_f64() * 1e3,
            images.describe()
        );
    }
    Ok(())
}

/// `setup-namespaces`: restore `$CRTOOLS_IMAGE_DIR/netcr/` into the root task's namespace.
fn setup_namespaces(pid: u32, images: &ImagesDir) -> Result<(), HookError> {
    let start = Instant::now();
    let cancel = crate::signals::install();
    let target = open_pid_netns(pid)?;
    let caller = Netns::current_thread()?;
    if target.same_as(&caller)? {
        log::info!(
            "process {pid} shares the hook's network namespace: nothing to restore into (that namespace is not the container's own)"
        );
        return Ok(());
    }
    let dir = images.netcr_dir();
    let reading = |e| HookError::step(format_args!("reading the image in {}", dir.display()), e);
    let opened = match ImageDir::open(images.path()).and_then(|d| d.open_dir(IMAGE_SUBDIR)) {
        Ok(opened) => app::require_private(opened).map_err(reading)?,
        Err(ImageError::Missing { .. }) => return Err(HookError::NoImage(dir)),
        Err(e) => return Err(reading(e.into())),
    };
    let image = app::read_image_in(&opened).map_err(reading)?;
    let sources = read_sources(&opened)?;
    let policy = load_policy()?;
    let caller_links: HashSet<String> = {
        let mut rtnl = Rtnl::open_in(&caller)?;
        rtnl.dump_links()?
            .iter()
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    netlink_packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect()
    };
    // Runtimes that build the network first (Podman, CRI-O, containerd through CNI) hand
    // over a namespace that has it: its devices of the image are adopted, not refused.
    let adopt = adopt_mode()?;
    let keep_counters = keep_counters()?;
    let present: HashSet<String> = if adopt == Adopt::Never {
        HashSet::new()
    } else {
        let mut rtnl = Rtnl::open_in(&target)?;
        rtnl.dump_links()?
            .iter()
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    netlink_packet_route::link::LinkAttribute::IfName(n) if n != "lo" => {
                        Some(n.clone())
                    }
                    _ => None,
                })
            })
            .collect()
    };
    if !present.is_empty() {
        let mut names: Vec<&String> = present.iter().collect();
        names.sort();
        log::info!(
            "the namespace has devices already ({}): those the image holds too are adopted",
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let resolution =
        choose_externals_adopting(&image, &present, &sources, &caller_links, &policy, &hint())
            .map_err(HookError::Mappings)?;
    // The node-wide file serves every container: its other entries are expected.
    let image_file = dir.join(IMAGE_EXTERNAL_FILE).display().to_string();
    for (source, mapping) in &resolution.unused {
        let text = format!("{source}: {mapping} names no device of this image; ignored");
        if source == ENV_EXTERNAL || *source == image_file {
            log::warn!("{text}");
        } else {
            log::debug!("{text}");
        }
    }
    if resolution.choices.is_empty() {
        log::info!("the image has no device whose lower device or peer lies outside it");
    }
    for choice in &resolution.choices {
        log::info!("{choice}");
    }
    let options = RestoreOptions {
        externals: resolution.choices.into_iter().map(|c| c.mapping).collect(),
        require_ifindex: true,
        cancel: Some(cancel),
        adopt,
        keep_counters,
        ..Default::default()
    };
    let targets = Targets::Opened(vec![RestoreTarget::Existing(target)]);
    let restored = app::restore_image(&image, &dir, targets, &options)
        .map_err(|e| HookError::step(format_args!("restoring {}", dir.display()), e))?;
    for r in restored {
        log::info!("{r} in {:.2} ms", start.elapsed().as_secs_f64() * 1e3);
        for w in r.warnings() {
            log::warn!("{w}");
        }
    }
    Ok(())
}

/// Where the host's own mappings go, for error messages.
fn hint() -> String {
    match node_file_path() {
        Some(node) => format!("{ENV_EXTERNAL} or {}", node.display()),
        None => ENV_EXTERNAL.to_string(),
    }
}

/// The host policy: [`ENV_POLICY_FILE`] when set and not empty, else [`POLICY_FILE`]; logged.
fn load_policy() -> Result<Policy, HookError> {
    let path = match std::env::var_os(ENV_POLICY_FILE) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(POLICY_FILE),
    };
    let policy = Policy::load(&path)?;
    if policy.is_present() {
        let rules: Vec<String> = policy.rules().iter().map(|r| r.grant.to_string()).collect();
        log::info!(
            "host policy {}: {}",
            path.display(),
            if rules.is_empty() {
                "no rules".to_string()
            } else {
                rules.join(", ")
            }
        );
    } else {
        log::info!(
            "host policy {}: not present, so no host device the image alone names is used",
            path.display()
        );
    }
    Ok(policy)
}

/// The node-wide file: [`ENV_EXTERNAL_FILE`] when set (empty: none), else
/// [`NODE_EXTERNAL_FILE`].
fn node_file_path() -> Option<PathBuf> {
    match std::env::var_os(ENV_EXTERNAL_FILE) {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from(NODE_EXTERNAL_FILE)),
    }
}

/// Whose word a mapping is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The host's own (`NETCR_EXTERNAL`, the node-wide file): always honoured.
    Host,
    /// The image's (its `external` file, the devices recorded at dump time): it came with the
    /// checkpoint, from wherever that was made, so it is honoured only where the host policy
    /// allows it.
    Image,
}

/// Mappings from one source, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSource {
    /// Where they came from: `NETCR_EXTERNAL` or a file's path.
    pub name: String,
    /// Whose word they are.
    pub origin: Origin,
    /// The mappings.
    pub mappings: Vec<ExternalMapping>,
}

/// Reads the three configured sources in precedence order ([`ENV_EXTERNAL`] from the process
/// environment, the image's mapping file in `netcr_dir`, the node-wide file), logging each; a
/// source that is absent gives no mappings, one that cannot be read or parsed is an error
/// naming it. The image's file is read as the image is (never through a symbolic link out of
/// its directory); the node-wide file only when nobody but root can change it.
pub fn read_sources(netcr_dir: &ImageDir) -> Result<Vec<MappingSource>, HookError> {
    let mut sources = Vec::new();
    match std::env::var_os(ENV_EXTERNAL) {
        None => log::info!("external mappings, 1. {ENV_EXTERNAL}: not set"),
        Some(value) => {
            let text = value.to_str().ok_or_else(|| {
                HookError::Mappings(format!("{ENV_EXTERNAL}: not valid UTF-8: {value:?}"))
            })?;
            let mappings = parse_list(ENV_EXTERNAL, text).map_err(HookError::Mappings)?;
            log::info!("external mappings, 1. {ENV_EXTERNAL}: {}", list(&mappings));
            sources.push(MappingSource {
                name: ENV_EXTERNAL.to_string(),
                origin: Origin::Host,
                mappings,
            });
        }
    }
    let image_file = netcr_dir.path().join(IMAGE_EXTERNAL_FILE);
    let bytes = match netcr_dir.read_file(IMAGE_EXTERNAL_FILE) {
        Ok(bytes) => Some(bytes),
        Err(ImageError::Missing { .. }) => None,
        Err(e) => {
            return Err(HookError::step(
                "reading the image's own mappings",
                e.into(),
            ))
        }
    };
    sources.extend(file_source("2.", &image_file, Origin::Image, bytes)?);
    match node_file_path() {
        None => {
            log::info!("external mappings, 3. node-wide file: none ({ENV_EXTERNAL_FILE} is empty)")
        }
        Some(path) => {
            let bytes = read_host_file(&path)?;
            sources.extend(file_source("3.", &path, Origin::Host, bytes)?);
        }
    }
    Ok(sources)
}

/// Parses and logs a mapping file's contents (`None`: the file is absent).
fn file_source(
    number: &str,
    path: &Path,
    origin: Origin,
    bytes: Option<Vec<u8>>,
) -> Result<Option<MappingSource>, HookError> {
    let name = path.display().to_string();
    let whose = match origin {
        Origin::Host => "",
        Origin::Image => " (the image's: honoured where the host policy allows)",
    };
    let Some(bytes) = bytes else {
        log::info!("external mappings, {number} {name}{whose}: not present");
        return Ok(None);
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(HookError::Mappings(format!("{name}: not valid UTF-8")));
    };
    let mappings = parse_file(&name, &text).map_err(HookError::Mappings)?;
    log::info!(
        "external mappings, {number} {name}{whose}: {}",
        list(&mappings)
    );
    Ok(Some(MappingSource {
        name,
        origin,
        mappings,
    }))
}

fn list(mappings: &[ExternalMapping]) -> String {
    if mappings.is_empty() {
        return "none".into();
    }
    mappings
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `NETCR_EXTERNAL`: mappings separated by commas (blanks around them and empty items
/// are ignored). Errors name `source` and the item.
pub fn parse_list(source: &str, text: &str) -> Result<Vec<ExternalMapping>, String> {
    let mut out = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let mapping = item
            .parse::<ExternalMapping>()
            .map_err(|e| format!("{source}, item {}: {e}", i + 1))?;
        out.push(mapping);
    }
    check_unique(source, &out)?;
    Ok(out)
}

/// Parses a mapping file: one mapping per line; blank lines are ignored and `#` starts a
/// comment (at the start of a line or after a blank: `#` may occur in device names). Errors
/// name `source` and the line.
pub fn parse_file(source: &str, text: &str) -> Result<Vec<ExternalMapping>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let mapping = line
            .parse::<ExternalMapping>()
            .map_err(|e| format!("{source}, line {}: {e}", n + 1))?;
        out.push(mapping);
    }
    check_unique(source, &out)?;
    Ok(out)
}

/// Two different mappings for the same device in one source are a mistake, not a choice.
fn check_unique(source: &str, mappings: &[ExternalMapping]) -> Result<(), String> {
    let mut seen: HashMap<(&str, Option<&str>), &ExternalMapping> = HashMap::new();
    for m in mappings {
        if let Some(first) = seen.insert((&m.kind, m.inner.as_deref()), m) {
            if first != m {
                return Err(format!(
                    "{source}: {}[{}] is mapped twice ({first} and {m})",
                    m.kind,
                    m.inner.as_deref().unwrap_or("*")
                ));
            }
        }
    }
    Ok(())
}

/// The host device chosen for one link whose lower device or peer lies outside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The mapping, naming the link itself (never `*`).
    pub mapping: ExternalMapping,
    /// The source it came from.
    pub source: String,
    /// The source's mapping was a `*` one.
    pub wildcard: bool,
    /// How the kind uses the outer device.
    pub role: LowerRole,
    /// For a mapping that came from the image: the host policy's file and the lines that
    /// allow it (`/etc/netcr/policy, line 3`).
    pub allowed_by: Option<String>,
}

/// `lower device "eth0"`, `outer end "vweb" on bridge "br0"`.
fn attachment(mapping: &ExternalMapping, role: LowerRole) -> String {
    let mut out = match role {
        LowerRole::Lower => format!("lower device \"{}\"", mapping.outer),
        LowerRole::Peer => format!("outer end \"{}\"", mapping.outer),
    };
    if let Some(b) = &mapping.bridge {
        out.push_str(&format!(" on bridge \"{b}\""));
    }
    out
}

impl Choice {
    /// `macvlan "mv0"`.
    fn device(&self) -> String {
        let m = &self.mapping;
        format!("{} \"{}\"", m.kind, m.inner.as_deref().unwrap_or("*"))
    }

    /// `lower device "eth0" (from SOURCE, via *`: what, and from where; the caller closes
    /// the parenthesis.
    fn asked(&self) -> String {
        format!(
            "{} (from {}{}",
            attachment(&self.mapping, self.role),
            self.source,
            if self.wildcard { ", via *" } else { "" }
        )
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.device(), self.asked())?;
        if let Some(policy) = &self.allowed_by {
            write!(f, "; allowed by {policy}")?;
        }
        write!(f, ")")
    }
}

/// The outcome of [`choose_externals`].
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// One choice per external link, in image order.
    pub choices: Vec<Choice>,
    /// Named mappings (not `*`) that match no external link of the image, with their source.
    pub unused: Vec<(String, ExternalMapping)>,
}

/// Picks the host device of every link whose lower device or peer lies outside the image:
/// per link, the first source with a mapping for it (its own, else its kind's `*`); failing
/// that, the device recorded at dump time when `caller_links` holds it (a lower device) or
/// does not (a veth's outer end, created by the restore). A mapping that comes from the image
/// (a source of [`Origin::Image`], or the device recorded at dump time) is used only where
/// `policy` allows it. Every link left without a host device, or refused, is named in the
/// error, with `hint` saying where the host's own mappings go.
pub fn choose_externals(
    image: &Image,
    sources: &[MappingSource],
    caller_links: &HashSet<String>,
    policy: &Policy,
    hint: &str,
) -> Result<Resolution, String> {
    choose_externals_adopting(image, &HashSet::new(), sources, caller_links, policy, hint)
}

/// [`choose_externals`] for a restore that adopts the devices named in `adopted` (those the
/// runtime built in the namespace already): their other side is there, nothing is chosen.
pub fn choose_externals_adopting(
    image: &Image,
    adopted: &HashSet<String>,
    sources: &[MappingSource],
    caller_links: &HashSet<String>,
    policy: &Policy,
    hint: &str,
) -> Result<Resolution, String> {
    let mut out = Resolution::default();
    let mut problems = Vec::new();
    let mut external_links: HashSet<(&str, &str)> = HashSet::new();
    for link in image.namespaces.iter().flat_map(|ns| &ns.links) {
        let Some(v1::link_ref::Target::External(ext)) =
            link.lower.as_ref().and_then(|r| r.target.as_ref())
        else {
            continue;
        };
        external_links.insert((&link.kind, &link.name));
        if adopted.contains(&link.name) {
            continue;
        }
        let role = driver_for(&link.kind)
            .map(|d| d.lower_role())
            .unwrap_or(LowerRole::Lower);
        let found = sources.iter().find_map(|s| {
            netcr_core::external::find(&s.mappings, &link.kind, &link.name).map(|m| (s, m))
        });
        let (choice, origin) = match found {
            Some((source, m)) => (
                Choice {
                    mapping: ExternalMapping {
                        inner: Some(link.name.clone()),
                        ..m.clone()
                    },
                    source: source.name.clone(),
                    wildcard: m.inner.is_none(),
                    role,
                    allowed_by: None,
                },
                source.origin,
            ),
            None => match recorded(link, ext, role, caller_links, hint) {
                Ok(choice) => (choice, Origin::Image),
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            },
        };
        if origin == Origin::Host {
            out.choices.push(choice);
            continue;
        }
        match policy.check(&choice.mapping, role) {
            Ok(allowed) => {
                let lines: Vec<String> = allowed.lines.iter().map(|l| l.to_string()).collect();
                out.choices.push(Choice {
                    allowed_by: Some(format!(
                        "{}, line{} {}",
                        policy.path().display(),
                        if lines.len() > 1 { "s" } else { "" },
                        lines.join(" and ")
                    )),
                    ..choice
                });
            }
            Err(refusal) => problems.push(refused(&choice, &refusal, hint)),
        }
    }
    for source in sources {
        for m in &source.mappings {
            if let Some(inner) = &m.inner {
                if !external_links.contains(&(m.kind.as_str(), inner.as_str())) {
                    out.unused.push((source.name.clone(), m.clone()));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

/// The choice the device recorded at dump time gives `link`, when it fits this host: a lower
/// device that exists here, a veth's outer end whose name is free. Otherwise what is wrong.
fn recorded(
    link: &v1::Link,
    ext: &v1::ExternalRef,
    role: LowerRole,
    caller_links: &HashSet<String>,
    hint: &str,
) -> Result<Choice, String> {
    let hint_name = ext.name_hint.as_str();
    let example = format!(
        "e.g. {}[{}]:{}",
        link.kind,
        link.name,
        if hint_name.is_empty() {
            "HOSTDEV"
        } else {
            hint_name
        }
    );
    let what = match role {
        LowerRole::Lower => "lower device",
        LowerRole::Peer => "peer",
    };
    let usable = match role {
        LowerRole::Lower => caller_links.contains(hint_name),
        LowerRole::Peer => !caller_links.contains(hint_name),
    };
    if hint_name.is_empty() {
        return Err(format!(
            "{} \"{}\": no mapping, and its {what} lay in a namespace netcr could not name at dump time; map it in {hint} ({example})",
            link.kind, link.name
        ));
    }
    if !usable {
        let why = match role {
            LowerRole::Lower => format!("its lower device at dump time, \"{hint_name}\", does not exist here"),
            LowerRole::Peer => format!("its outer end at dump time, \"{hint_name}\", already exists here (is the original still there?)"),
        };
        return Err(format!(
            "{} \"{}\": no mapping, and {why}; map it in {hint} ({example})",
            link.kind, link.name
        ));
    }
    Ok(Choice {
        mapping: ExternalMapping {
            kind: link.kind.clone(),
            inner: Some(link.name.clone()),
            outer: hint_name.to_string(),
            bridge: None,
        },
        source: RECORDED_SOURCE.to_string(),
        wildcard: false,
        role,
        allowed_by: None,
    })
}

/// Why the image's `choice` is refused, and the policy line or host mapping that would allow
/// it.
fn refused(choice: &Choice, refusal: &Refusal, hint: &str) -> String {
    format!(
        "{}: the image asks for {}), but {refusal}, or map it on this host in {hint}: {ENV_EXTERNAL}={}",
        choice.device(),
        choice.asked(),
        choice.mapping
    )
}

/// The dump's options from [`ENV_LEAVE_OUT`]: the state families the node leaves out of its
/// checkpoints (recorded in each image), instead of failing a checkpoint that holds them.
fn dump_options() -> Result<DumpOptions, HookError> {
    let mut options = DumpOptions::default();
    let Ok(value) = std::env::var(ENV_LEAVE_OUT) else {
        return Ok(options);
    };
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let family = Family::from_name(name)
            .filter(|f| Family::can_leave_out().any(|r| r == *f))
            .ok_or_else(|| {
                let known: Vec<&str> = Family::can_leave_out().map(Family::name).collect();
                HookError::Config(format!(
                    "{ENV_LEAVE_OUT}: {name:?} is not a family that can be left out ({})",
                    known.join(", ")
                ))
            })?;
        options.leave_out.insert(family);
    }
    Ok(options)
}

/// [`ENV_KEEP_COUNTERS`]: 1 (the default) or 0.
fn keep_counters() -> Result<bool, HookError> {
    match std::env::var(ENV_KEEP_COUNTERS).as_deref() {
        Err(_) | Ok("") | Ok("1") => Ok(true),
        Ok("0") => Ok(false),
        Ok(other) => Err(HookError::Config(format!(
            "{ENV_KEEP_COUNTERS}={other:?}: expected 1 or 0"
        ))),
    }
}

/// [`ENV_ADOPT`]: keep (the default), change, or off.
fn adopt_mode() -> Result<Adopt, HookError> {
    match std::env::var(ENV_ADOPT).as_deref() {
        Err(_) | Ok("") | Ok("keep") => Ok(Adopt::Keep),
        Ok("change") => Ok(Adopt::Change),
        Ok("off") => Ok(Adopt::Never),
        Ok(other) => Err(HookError::Config(format!(
            "{ENV_ADOPT}={other:?}: expected keep, change or off"
        ))),
    }
}

/// Logs to stderr, which CRIU copies into its log file: info by default, [`ENV_LOG`] to
/// change it.
fn init_logger() {
    let level = std::env::var(ENV_LOG)
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    crate::logger::init_hook(level);
}

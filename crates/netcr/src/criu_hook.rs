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
    driver_for, DumpOptions, ExternalMapping, LowerRole, RestoreOptions, RestoreTarget,
};
use netcr_image::{v1, Image};
use netcr_netlink::{Netns, Rtnl, RtnlExt};

use crate::app::{self, AppError, Durability, Targets};

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
/// Log level on stderr: off, error, warn, info (the default), debug, trace.
pub const ENV_LOG: &str = "NETCR_LOG";
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
    /// A mapping file cannot be read.
    #[error("reading {name}: {source}")]
    ReadMappings {
        /// The file.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A mapping source is malformed, or a link of the image has no host device.
    #[error("{0}")]
    Mappings(String),
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
Other settings:
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
        &DumpOptions::default(),
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
    if !dir.is_dir() {
        return Err(HookError::NoImage(dir));
    }
    let image = app::read_image(&dir)
        .map_err(|e| HookError::step(format_args!("reading the image in {}", dir.display()), e))?;
    let sources = read_sources(&dir)?;
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
    let resolution = choose_externals(&image, &sources, &caller_links, &hint_for(&dir))
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

/// The sources a mapping can come from, for error messages.
fn hint_for(netcr_dir: &Path) -> String {
    let image_file = netcr_dir.join(IMAGE_EXTERNAL_FILE);
    match node_file_path() {
        Some(node) => format!(
            "{ENV_EXTERNAL}, {} or {}",
            image_file.display(),
            node.display()
        ),
        None => format!("{ENV_EXTERNAL} or {}", image_file.display()),
    }
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

/// Mappings from one source, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSource {
    /// Where they came from: `NETCR_EXTERNAL` or a file's path.
    pub name: String,
    /// The mappings.
    pub mappings: Vec<ExternalMapping>,
}

/// Reads the three configured sources in precedence order ([`ENV_EXTERNAL`] from the process
/// environment, the image's mapping file in `netcr_dir`, the node-wide file), logging each; a
/// source that is absent gives no mappings, one that cannot be read or parsed is an error
/// naming it.
pub fn read_sources(netcr_dir: &Path) -> Result<Vec<MappingSource>, HookError> {
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
                mappings,
            });
        }
    }
    let image_file = netcr_dir.join(IMAGE_EXTERNAL_FILE);
    if let Some(source) = read_file_source("2.", &image_file)? {
        sources.push(source);
    }
    match node_file_path() {
        None => {
            log::info!("external mappings, 3. node-wide file: none ({ENV_EXTERNAL_FILE} is empty)")
        }
        Some(path) => {
            if let Some(source) = read_file_source("3.", &path)? {
                sources.push(source);
            }
        }
    }
    Ok(sources)
}

fn read_file_source(number: &str, path: &Path) -> Result<Option<MappingSource>, HookError> {
    let name = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!("external mappings, {number} {name}: not present");
            return Ok(None);
        }
        Err(source) => return Err(HookError::ReadMappings { name, source }),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(HookError::Mappings(format!("{name}: not valid UTF-8")));
    };
    let mappings = parse_file(&name, &text).map_err(HookError::Mappings)?;
    log::info!("external mappings, {number} {name}: {}", list(&mappings));
    Ok(Some(MappingSource { name, mappings }))
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

fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
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
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.mapping;
        let inner = m.inner.as_deref().unwrap_or("*");
        match self.role {
            LowerRole::Lower => write!(f, "{} \"{inner}\": lower device \"{}\"", m.kind, m.outer)?,
            LowerRole::Peer => write!(f, "{} \"{inner}\": outer end \"{}\"", m.kind, m.outer)?,
        }
        if let Some(b) = &m.bridge {
            write!(f, " on bridge \"{b}\"")?;
        }
        write!(
            f,
            " (from {}{})",
            self.source,
            if self.wildcard { ", via *" } else { "" }
        )
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
/// does not (a veth's outer end, created by the restore). Every link left without one is
/// named in the error, with `hint` saying where mappings go.
pub fn choose_externals(
    image: &Image,
    sources: &[MappingSource],
    caller_links: &HashSet<String>,
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
        let role = driver_for(&link.kind)
            .map(|d| d.lower_role())
            .unwrap_or(LowerRole::Lower);
        let found = sources.iter().find_map(|s| {
            netcr_core::external::find(&s.mappings, &link.kind, &link.name).map(|m| (s, m))
        });
        if let Some((source, m)) = found {
            out.choices.push(Choice {
                mapping: ExternalMapping {
                    inner: Some(link.name.clone()),
                    ..m.clone()
                },
                source: source.name.clone(),
                wildcard: m.inner.is_none(),
                role,
            });
            continue;
        }
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
            problems.push(format!(
                "{} \"{}\": no mapping, and its {what} lay in a namespace netcr could not name at dump time; map it in {hint} ({example})",
                link.kind, link.name
            ));
        } else if !usable {
            let why = match role {
                LowerRole::Lower => format!("its lower device at dump time, \"{hint_name}\", does not exist here"),
                LowerRole::Peer => format!("its outer end at dump time, \"{hint_name}\", already exists here (is the original still there?)"),
            };
            problems.push(format!(
                "{} \"{}\": no mapping, and {why}; map it in {hint} ({example})",
                link.kind, link.name
            ));
        } else {
            out.choices.push(Choice {
                mapping: ExternalMapping {
                    kind: link.kind.clone(),
                    inner: Some(link.name.clone()),
                    outer: hint_name.to_string(),
                    bridge: None,
                },
                source: RECORDED_SOURCE.to_string(),
                wildcard: false,
                role,
            });
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

/// Logs to stderr, which CRIU copies into its log file: info by default, [`ENV_LOG`] to
/// change it.
fn init_logger() {
    let level = std::env::var(ENV_LOG)
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    crate::logger::init_hook(level);
}

//! Argument parsing and the dump/restore commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use netcr_core::{
    CoreError, CreateFrom, DumpOptions, ExternalMapping, RestoreOptions, RestoreTarget,
};
use netcr_image::{Image, ImageWriter};
use netcr_netlink::Netns;

/// Checkpoint and restore the network configuration of Linux network namespaces.
#[derive(Debug, Parser)]
#[command(name = "netcr", version, propagate_version = true)]
pub struct Cli {
    /// More output on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Dump a namespace's links, addresses, routes, rules and neighbours to an image.
    Dump(DumpArgs),
    /// Rebuild a namespace from an image.
    Restore(RestoreArgs),
    /// Print an image in readable form.
    Show(ShowArgs),
    /// Report what this kernel supports for netcr.
    Check,
    /// Run a dump/restore round trip on throwaway namespaces and say what happened.
    Demo(crate::demo::DemoArgs),
}

/// Which namespaces to dump; several go into one image, veth pairs between them as pairs.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct DumpSource {
    /// A named namespace (/run/netns/NAME, as `ip netns` names them). Repeatable.
    #[arg(long, value_name = "NAME")]
    netns: Vec<String>,
    /// A namespace file, e.g. /proc/PID/ns/net or a bind mount. Repeatable.
    #[arg(long, value_name = "PATH")]
    netns_path: Vec<PathBuf>,
    /// The namespace of process PID. Repeatable.
    #[arg(long, value_name = "PID")]
    pid: Vec<u32>,
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// Image directory to write (replaced atomically if it holds an image).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    source: DumpSource,
    /// Leave out devices of kinds netcr does not support (recorded in the image) instead of failing.
    #[arg(long)]
    skip_unknown: bool,
}

/// Where to restore. For an image of several namespaces, map each: `--netns OLD=NEW`, where
/// OLD is the namespace's label in the image (`netcr show` lists them).
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct RestoreDest {
    /// A named namespace, `NAME` or `OLD=NAME`; created when it does not exist, and deleted
    /// again if the restore fails. Repeatable.
    #[arg(long, value_name = "[OLD=]NAME")]
    netns: Vec<String>,
    /// An existing namespace file, `PATH` or `OLD=PATH`, e.g. /proc/PID/ns/net. Repeatable.
    #[arg(long, value_name = "[OLD=]PATH")]
    netns_path: Vec<String>,
}

/// Which socket creates a link on a lower device outside the namespace.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CreateFromArg {
    /// From the lower device's namespace (IFLA_LINK + IFLA_NET_NS_FD).
    Lower,
    /// From the target namespace (IFLA_LINK + IFLA_LINK_NETNSID).
    Target,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// Image directory to read.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    dest: RestoreDest,
    /// The host device for a link's outside end: KIND[INNER]:OUTER[@BRIDGE], e.g.
    /// macvlan[mv0]:eth0 (lower device), macvlan[*]:eth0 (every unmapped macvlan),
    /// veth[eth1]:hv0@br0 (outer end to create, attached to br0). Repeatable.
    #[arg(long, value_name = "KIND[INNER]:OUTER", value_parser = parse_external)]
    external: Vec<ExternalMapping>,
    /// Which namespace's socket creates links on outside lower devices.
    #[arg(long, value_enum, default_value = "lower")]
    create_from: CreateFromArg,
    /// Fail (and roll back) unless every link keeps its ifindex.
    #[arg(long)]
    require_ifindex: bool,
    /// The user namespace that owns the network namespaces the restore creates, e.g.
    /// /proc/PID/ns/user of a rootless container.
    #[arg(long, value_name = "PATH")]
    userns: Option<PathBuf>,
}

fn parse_external(s: &str) -> Result<ExternalMapping, String> {
    s.parse()
        .map_err(|e: netcr_core::ExternalParseError| e.to_string())
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Image directory to read.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A failure with the one line that explains it.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// Entry point of the binary: parse, run, exit 0 / 1 (failure) / 2 (usage).
pub fn main() -> ExitCode {
    // Run under the name netcr-criu-hook (a symlink), netcr is CRIU's action script.
    if crate::criu_hook::invoked_as_hook() {
        return crate::criu_hook::main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    crate::logger::init(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("netcr: error: {}", msg.replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::Dump(a) => dump(a),
        Cmd::Restore(a) => restore(a),
        Cmd::Show(a) => crate::show::show(&a.dir, a.json),
        Cmd::Check => crate::check::check(),
        Cmd::Demo(a) => crate::demo::demo(a),
    }
}

/// The capabilities netcr needs that this process lacks in its effective set. Checked also
/// for uid 0: root in a container or under `capsh --drop` may lack them.
pub(crate) fn missing_capabilities() -> Vec<&'static str> {
    let caps = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| eff & bit == 0)
    .map(|(_, name)| name)
    .collect()
}

fn require_root() -> Result<(), Failure> {
    // Without CAP_NET_ADMIN and CAP_SYS_ADMIN the kernel refuses setns and every change.
    let missing = missing_capabilities();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure(format!(
        "missing {} (uid {}): netcr needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root): it enters namespaces and changes their links",
        missing.join(" and "),
        nix::unistd::geteuid()
    )))
}

fn open_sources(s: &DumpSource) -> Result<Vec<Netns>, Failure> {
    let mut out = Vec::new();
    for name in &s.netns {
        out.push(Netns::open_name(name)?);
    }
    for path in &s.netns_path {
        out.push(Netns::open_path(path)?);
    }
    for pid in &s.pid {
        out.push(Netns::open_pid(*pid)?);
    }
    for (i, a) in out.iter().enumerate() {
        for b in &out[..i] {
            if a.same_as(b)? {
                return Err(Failure(format!(
                    "\"{}\" and \"{}\" are the same namespace",
                    b.label(),
                    a.label()
                )));
            }
        }
    }
    Ok(out)
}

/// Dumps `ns` into `dir` atomically; returns a one-line summary.
pub fn dump_to(ns: &Netns, dir: &Path, options: &DumpOptions) -> Result<String, Failure> {
    dump_many(std::slice::from_ref(ns), dir, options)
}

/// Dumps several namespaces into one image in `dir`, atomically; returns the summary.
pub fn dump_many(
    namespaces: &[Netns],
    dir: &Path,
    options: &DumpOptions,
) -> Result<String, Failure> {
    let caller = Netns::current_thread()?;
    let (image, report) = netcr_core::dump(namespaces, &caller, options)?;
    for w in &report.warnings {
        log::warn!("{w}");
    }
    let writer = ImageWriter::create(dir)?;
    if crate::signals::raised() {
        return Err(Failure("interrupted by a signal; no image written".into()));
    }
    writer.write_inventory(&image.inventory)?;
    for netns in &image.namespaces {
        writer.write_netns(netns)?;
    }
    crate::signals::test_pause("NETCR_TEST_PAUSE_BEFORE_COMMIT", "commit");
    if crate::signals::raised() {
        // Dropping the writer removes the temporary directory.
        return Err(Failure("interrupted by a signal; no image written".into()));
    }
    match writer.commit() {
        Ok(()) => {}
        Err(netcr_image::ImageError::StaleCopyLeft { .. }) => {
            log::warn!(
                "the image is in place, but a copy of the previous image could not be removed"
            )
        }
        Err(e) => return Err(e.into()),
    }
    let lines: Vec<String> = image
        .namespaces
        .iter()
        .map(|n| {
            format!(
                "dumped netns \"{}\": {} links, {} addresses, {} routes, {} rules, {} neighbours",
                n.netns.label,
                n.links.len(),
                n.addresses.len(),
                n.routes.len(),
                n.rules.len(),
                n.neighbours.len(),
            )
        })
        .collect();
    Ok(format!("{} into {}", lines.join("\n"), dir.display()))
}

fn dump(a: DumpArgs) -> Result<(), Failure> {
    require_root()?;
    crate::signals::install();
    let namespaces = open_sources(&a.source)?;
    let summary = dump_many(
        &namespaces,
        &a.dir,
        &DumpOptions {
            skip_unknown: a.skip_unknown,
        },
    )?;
    println!("{summary}");
    Ok(())
}

/// Restores the image in `dir` (one namespace) into `target`; returns the summary lines.
pub fn restore_from(
    dir: &Path,
    target: RestoreTarget,
    options: &RestoreOptions,
) -> Result<Vec<String>, Failure> {
    restore_targets(dir, |_| Ok(vec![target]), options)
}

/// Restores every namespace of the image in `dir`; `targets` picks a target for each
/// namespace of the image, in its order.
fn restore_targets(
    dir: &Path,
    targets: impl FnOnce(&Image) -> Result<Vec<RestoreTarget>, Failure>,
    options: &RestoreOptions,
) -> Result<Vec<String>, Failure> {
    let image = Image::read(dir)?;
    // A damaged or hostile image is refused for what it is before its namespaces are mapped.
    netcr_core::validate(&image, dir)?;
    let targets = targets(&image)?;
    let caller = Netns::current_thread()?;
    // The binary's test mode numbers every request and fails or pauses at the one named.
    let result = match crate::faults::FaultInjection::from_env(options.cancel.clone()) {
        Some(mut faults) => netcr_core::restore::restore_all_with(
            &image,
            dir,
            targets,
            &caller,
            options,
            &mut faults,
        ),
        None => netcr_core::restore::restore_all(&image, dir, targets, &caller, options),
    };
    let reports = match result {
        Ok(r) => r,
        Err(CoreError::Interrupted(rollback)) => {
            return Err(Failure(format!(
                "interrupted by a signal; rolled back: {rollback}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let mut lines = Vec::new();
    for report in reports {
        lines.push(format!(
            "restored netns \"{}\"{}: {} links, {} addresses, {} routes, {} rules, {} neighbours ({} requests)",
            report.netns,
            if report.created_netns { " (created)" } else { "" },
            report.links,
            report.addresses,
            report.routes,
            report.rules,
            report.neighbours,
            report.requests
        ));
        if !report.created_via_nsid.is_empty() {
            log::info!(
                "created from the target namespace with IFLA_LINK_NETNSID: {}",
                report.created_via_nsid.join(", ")
            );
        }
        if !report.created_then_moved.is_empty() {
            log::info!(
                "created beside the lower device and moved in with IFLA_NEW_IFINDEX: {}",
                report.created_then_moved.join(", ")
            );
        }
        for w in report.ifindex_not_kept.iter().chain(&report.warnings) {
            lines.push(format!("warning: {w}"));
        }
    }
    Ok(lines)
}

/// One `--netns`/`--netns-path` value: `NEW` or `OLD=NEW`.
fn split_mapping(value: &str) -> (Option<&str>, &str) {
    match value.split_once('=') {
        Some((old, new)) => (Some(old), new),
        None => (None, value),
    }
}

/// Matches the `--netns`/`--netns-path` values to the image's namespaces: `OLD=NEW` by the
/// label the namespace had at dump time, a bare value only for a one-namespace image.
fn pick_targets(image: &Image, dest: &RestoreDest) -> Result<Vec<RestoreTarget>, Failure> {
    let labels: Vec<&str> = image
        .namespaces
        .iter()
        .map(|n| n.netns.label.as_str())
        .collect();
    let mut specs: Vec<(Option<&str>, bool, &str)> = Vec::new();
    specs.extend(dest.netns.iter().map(|v| {
        let (old, new) = split_mapping(v);
        (old, true, new)
    }));
    specs.extend(dest.netns_path.iter().map(|v| {
        let (old, new) = split_mapping(v);
        (old, false, new)
    }));
    let open = |named: bool, target: &str| -> Result<RestoreTarget, Failure> {
        if target.is_empty() {
            return Err(Failure("an empty namespace name or path".into()));
        }
        Ok(if named {
            RestoreTarget::Named(target.to_string())
        } else {
            RestoreTarget::Existing(Netns::open_path(Path::new(target))?)
        })
    };
    if labels.len() == 1 && specs.len() == 1 && specs[0].0.is_none() {
        return Ok(vec![open(specs[0].1, specs[0].2)?]);
    }
    let mut targets = Vec::new();
    for label in &labels {
        let matching: Vec<_> = specs
            .iter()
            .filter(|(old, _, _)| *old == Some(*label))
            .collect();
        match matching.as_slice() {
            [(_, named, target)] => targets.push(open(*named, target)?),
            [] => {
                return Err(Failure(format!(
                    "the image holds the namespaces {}: map each with --netns OLD=NEW (no mapping for \"{label}\")",
                    labels.join(", ")
                )))
            }
            _ => return Err(Failure(format!("namespace \"{label}\" is mapped twice"))),
        }
    }
    if let Some((old, _, _)) = specs
        .iter()
        .find(|(old, _, _)| !old.is_some_and(|o| labels.contains(&o)))
    {
        return Err(Failure(match old {
            Some(o) => format!(
                "the image has no namespace \"{o}\" (it holds {})",
                labels.join(", ")
            ),
            None => format!(
                "the image holds the namespaces {}: map each with --netns OLD=NEW",
                labels.join(", ")
            ),
        }));
    }
    Ok(targets)
}

fn restore(a: RestoreArgs) -> Result<(), Failure> {
    require_root()?;
    let cancel = crate::signals::install();
    let options = RestoreOptions {
        externals: a.external,
        create_from: match a.create_from {
            CreateFromArg::Lower => CreateFrom::Lower,
            CreateFromArg::Target => CreateFrom::Target,
        },
        require_ifindex: a.require_ifindex,
        cancel: Some(cancel),
        userns: a.userns.clone(),
    };
    for line in restore_targets(&a.dir, |image| pick_targets(image, &a.dest), &options)? {
        if let Some(w) = line.strip_prefix("warning: ") {
            eprintln!("netcr: warning: {w}");
        } else {
            println!("{line}");
        }
    }
    Ok(())
}

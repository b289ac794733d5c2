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

/// Which namespace to dump.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct DumpSource {
    /// A named namespace (/run/netns/NAME, as `ip netns` names them).
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// A namespace file, e.g. /proc/PID/ns/net or a bind mount.
    #[arg(long, value_name = "PATH")]
    netns_path: Option<PathBuf>,
    /// The namespace of process PID.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
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

/// Where to restore.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RestoreDest {
    /// A named namespace; created when it does not exist, and deleted again if the restore fails.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// An existing namespace file, e.g. /proc/PID/ns/net.
    #[arg(long, value_name = "PATH")]
    netns_path: Option<PathBuf>,
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

fn require_root() -> Result<(), Failure> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    // Without CAP_NET_ADMIN and CAP_SYS_ADMIN the kernel refuses setns and every change.
    let caps = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    if eff & CAP_NET_ADMIN != 0 && eff & CAP_SYS_ADMIN != 0 {
        return Ok(());
    }
    Err(Failure(
        "netcr needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root): it enters namespaces and changes their links".into(),
    ))
}

fn open_source(s: &DumpSource) -> Result<Netns, Failure> {
    Ok(match (&s.netns, &s.netns_path, s.pid) {
        (Some(name), _, _) => Netns::open_name(name)?,
        (_, Some(path), _) => Netns::open_path(path)?,
        (_, _, Some(pid)) => Netns::open_pid(pid)?,
        _ => {
            return Err(Failure(
                "name a namespace with --netns, --netns-path or --pid".into(),
            ))
        }
    })
}

/// Dumps `ns` into `dir` atomically; returns a one-line summary.
pub fn dump_to(ns: &Netns, dir: &Path, options: &DumpOptions) -> Result<String, Failure> {
    let caller = Netns::current_thread()?;
    let (image, report) = netcr_core::dump(std::slice::from_ref(ns), &caller, options)?;
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
    let n = &image.namespaces[0];
    Ok(format!(
        "dumped netns \"{}\": {} links, {} addresses, {} routes, {} rules, {} neighbours into {}",
        ns.label(),
        n.links.len(),
        n.addresses.len(),
        n.routes.len(),
        n.rules.len(),
        n.neighbours.len(),
        dir.display()
    ))
}

fn dump(a: DumpArgs) -> Result<(), Failure> {
    require_root()?;
    crate::signals::install();
    let ns = open_source(&a.source)?;
    let summary = dump_to(
        &ns,
        &a.dir,
        &DumpOptions {
            skip_unknown: a.skip_unknown,
        },
    )?;
    println!("{summary}");
    Ok(())
}

/// Restores the image in `dir` into `target`; returns the summary lines.
pub fn restore_from(
    dir: &Path,
    target: RestoreTarget,
    options: &RestoreOptions,
) -> Result<Vec<String>, Failure> {
    let image = Image::read(dir)?;
    let caller = Netns::current_thread()?;
    let report = match netcr_core::restore(&image, dir, target, &caller, options) {
        Ok(r) => r,
        Err(CoreError::Interrupted(rollback)) => {
            return Err(Failure(format!(
                "interrupted by a signal; rolled back: {rollback}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let mut lines = vec![format!(
        "restored netns \"{}\"{}: {} links, {} addresses, {} routes, {} rules, {} neighbours ({} requests)",
        report.netns,
        if report.created_netns { " (created)" } else { "" },
        report.links,
        report.addresses,
        report.routes,
        report.rules,
        report.neighbours,
        report.requests
    )];
    if !report.created_via_nsid.is_empty() {
        log::info!(
            "created from the target namespace with IFLA_LINK_NETNSID: {}",
            report.created_via_nsid.join(", ")
        );
    }
    for w in report.ifindex_not_kept.iter().chain(&report.warnings) {
        lines.push(format!("warning: {w}"));
    }
    Ok(lines)
}

fn restore(a: RestoreArgs) -> Result<(), Failure> {
    require_root()?;
    let cancel = crate::signals::install();
    let target = match (&a.dest.netns, &a.dest.netns_path) {
        (Some(name), _) => RestoreTarget::Named(name.clone()),
        (_, Some(path)) => RestoreTarget::Existing(Netns::open_path(path)?),
        _ => {
            return Err(Failure(
                "name a namespace with --netns or --netns-path".into(),
            ))
        }
    };
    let options = RestoreOptions {
        externals: a.external,
        create_from: match a.create_from {
            CreateFromArg::Lower => CreateFrom::Lower,
            CreateFromArg::Target => CreateFrom::Target,
        },
        require_ifindex: a.require_ifindex,
        cancel: Some(cancel),
        fail_at_request: std::env::var("NETCR_TEST_FAIL_AT_REQUEST")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    for line in restore_from(&a.dir, target, &options)? {
        if let Some(w) = line.strip_prefix("warning: ") {
            eprintln!("netcr: warning: {w}");
        } else {
            println!("{line}");
        }
    }
    Ok(())
}

//! The `netcr` command line: argument parsing, and each command as a call into the
//! application layer ([`crate::app`]) whose result is printed here.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::OnceLock;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use netcr_core::{Adopt, CreateFrom, DumpOptions, ExternalMapping, Family, RestoreOptions};

use crate::app::{self, AppError, Durability, NetnsSource, Target, TargetSpec, Targets};
use crate::check::CheckError;
use crate::demo::DemoError;

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
    /// Dump a namespace's links, addresses, routes, rules, neighbours and sysctls to an image.
    Dump(DumpArgs),
    /// Rebuild a namespace from an image.
    Restore(RestoreArgs),
    /// Print an image in readable form.
    Show(ShowArgs),
    /// Compare an image with a live namespace (or another image): exit 0 when identical, 1
    /// when they differ, 2 on trouble (as diff(1)).
    Diff(DiffArgs),
    /// Roll back restores that were killed (SIGKILL, OOM, power loss) from their journals.
    Recover,
    /// Report what this kernel supports for netcr: each link kind and feature, tried.
    Check(CheckArgs),
    /// Run a dump/restore round trip on throwaway namespaces and say what happened.
    Demo(DemoArgs),
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
    /// Leave out a state family netcr cannot keep yet instead of failing (or nftables, which
    /// it keeps otherwise); what was found is recorded in the image (`netcr show` prints
    /// it). Repeatable.
    #[arg(long, value_name = "FAMILY")]
    leave_out: Vec<LeaveOut>,
    /// One JSON document on stdout (docs/report-schema.md) instead of the summary line.
    #[arg(long)]
    json: bool,
}

/// A `--leave-out` value: one of the families the dump refuses when it finds them, or one
/// it saves unless left out (nftables), spelled as the family table names it
/// (netcr_core::families).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaveOut(Family);

impl ValueEnum for LeaveOut {
    fn value_variants<'a>() -> &'a [Self] {
        static VARIANTS: OnceLock<Vec<LeaveOut>> = OnceLock::new();
        VARIANTS.get_or_init(|| Family::can_leave_out().map(LeaveOut).collect())
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.name()).help(self.0.info().title))
    }
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

/// What to do with devices an existing target already has.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum AdoptArg {
    /// Adopt them as they are.
    Keep,
    /// Adopt them and give them the image's settings.
    Change,
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
    /// Give nf_tables counters (rules', chains', objects', set elements') and quotas'
    /// consumption back as the image holds them; without it they start at zero.
    #[arg(long)]
    keep_counters: bool,
    /// The user namespace that owns the network namespaces the restore creates, e.g.
    /// /proc/PID/ns/user of a rootless container.
    #[arg(long, value_name = "PATH")]
    userns: Option<PathBuf>,
    /// Adopt the devices an existing target already has with the image's name and kind (as
    /// a CNI plugin built them) instead of refusing it: keep them as they are (`keep`, the
    /// default when given without a value) or give them the image's MTU, MAC, alias and
    /// flags (`change`); add what the image has and the namespace lacks.
    #[arg(long, value_enum, value_name = "HOW", num_args = 0..=1, default_missing_value = "keep")]
    adopt: Option<AdoptArg>,
    /// How long to retry a link creation that a namespace still being torn down may block
    /// (its macvlans keep their MACs on the lower device for a while after `ip netns del`).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    wait_for_teardown: std::time::Duration,
    /// One JSON document on stdout (docs/report-schema.md) instead of a line per namespace.
    #[arg(long)]
    json: bool,
    /// No progress display on the terminal.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("{s} s is out of range (0 to 3600)"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn parse_external(s: &str) -> Result<ExternalMapping, String> {
    s.parse()
        .map_err(|e: netcr_core::ExternalParseError| e.to_string())
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the image here instead of a temporary directory.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// One JSON document on stdout (docs/report-schema.md).
    #[arg(long)]
    json: bool,
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

/// What `netcr diff` compares the image with.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct DiffWith {
    /// A named namespace, `NAME` or `OLD=NAME` (OLD: the namespace's label in an image of
    /// several).
    #[arg(long, value_name = "[OLD=]NAME")]
    netns: Option<String>,
    /// A namespace file, `PATH` or `OLD=PATH`, e.g. /proc/PID/ns/net.
    #[arg(long, value_name = "[OLD=]PATH")]
    netns_path: Option<String>,
    /// The namespace of process PID.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Another image directory: compare the two images instead (`-` lines this one's).
    #[arg(long, value_name = "DIR2")]
    image2: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// Image directory to read.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    with: DiffWith,
    /// The image namespace to compare (its label), for an image of several and `--pid`.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Why a command failed; displayed after `netcr: error: `.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// dump, restore, show.
    #[error(transparent)]
    App(#[from] AppError),
    /// check.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// demo.
    #[error(transparent)]
    Demo(#[from] DemoError),
}

/// Entry point of `netcr`: parse, run, exit 0 / 1 (failure) / 2 (usage).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    crate::logger::init(cli.verbose);
    // diff(1)'s convention: 1 says "different", so trouble is 2.
    let trouble = if matches!(cli.cmd, Cmd::Diff(_)) {
        EXIT_DIFF_TROUBLE
    } else {
        1
    };
    match run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("netcr: error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(trouble)
        }
    }
}

/// Exit status of `netcr diff` when the two sides differ (0 when identical).
pub const EXIT_DIFFERENT: u8 = 1;
/// Exit status of `netcr diff` on trouble (an error or a usage problem), as diff(1) has it.
pub const EXIT_DIFF_TROUBLE: u8 = 2;

/// Runs the command; its exit status (0 but for a `netcr diff` that found differences).
fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.cmd {
        Cmd::Diff(a) => return Ok(if diff(a)? { 0 } else { EXIT_DIFFERENT }),
        Cmd::Dump(a) => dump(a)?,
        Cmd::Restore(a) => restore(a)?,
        Cmd::Show(a) => show(a)?,
        Cmd::Recover => recover()?,
        Cmd::Check(a) => crate::check::check(a.json)?,
        Cmd::Demo(a) => crate::demo::demo(a.dir.as_deref())?,
    }
    Ok(0)
}

/// The sources in the order netcr has always opened them: names, paths, pids.
fn sources(s: DumpSource) -> Vec<NetnsSource> {
    let names = s.netns.into_iter().map(NetnsSource::Name);
    let paths = s.netns_path.into_iter().map(NetnsSource::Path);
    let pids = s.pid.into_iter().map(NetnsSource::Pid);
    names.chain(paths).chain(pids).collect()
}

fn dump(a: DumpArgs) -> Result<(), AppError> {
    let start = std::time::Instant::now();
    app::require_privileges()?;
    crate::signals::install();
    let namespaces = app::open_sources(&sources(a.source))?;
    let options = DumpOptions {
        skip_unknown: a.skip_unknown,
        leave_out: a.leave_out.iter().map(|l| l.0).collect(),
    };
    let summary = app::dump_to_dir(&namespaces, &a.dir, &options, Durability::Fsync)?;
    for w in &summary.warnings {
        log::warn!("{w}");
    }
    if a.json {
        println!("{}", app::report::dump(&summary, start.elapsed()));
    } else {
        println!("{summary}");
        println!("{}", elapsed(start));
    }
    Ok(())
}

fn recover() -> Result<(), AppError> {
    app::require_privileges()?;
    let recoveries = app::recover()?;
    if recoveries.is_empty() {
        println!(
            "no killed restore to recover in {}",
            app::run_dir().display()
        );
    }
    let mut failed = 0;
    for r in &recoveries {
        let done = if r.done.is_empty() {
            "nothing had changed".to_string()
        } else {
            r.done.join(", ")
        };
        println!(
            "recovered the restore of process {} ({}): {done}",
            r.pid, r.image_dir
        );
        for left in &r.left_alone {
            log::warn!("{left}");
        }
        if !r.failed.is_empty() {
            failed += 1;
            eprintln!(
                "netcr: error: {}: could NOT undo: {} (the journal stays; run netcr recover again)",
                r.journal.display(),
                r.failed.join("; ")
            );
        }
    }
    if failed > 0 {
        return Err(AppError::Incomplete(format!(
            "{failed} of {} killed restores are not fully undone",
            recoveries.len()
        )));
    }
    Ok(())
}

fn show(a: ShowArgs) -> Result<(), AppError> {
    let format = if a.json {
        app::Format::Json
    } else {
        app::Format::Text
    };
    print!("{}", app::show(&a.dir, format)?);
    Ok(())
}

/// The last line of a command's human output: `elapsed 0.352 s`.
pub fn elapsed(start: std::time::Instant) -> String {
    format!("elapsed {:.3} s", start.elapsed().as_secs_f64())
}

/// `netcr diff`: prints the differences; whether there were none.
fn diff(a: DiffArgs) -> Result<bool, AppError> {
    let start = std::time::Instant::now();
    let report = if let Some(other) = &a.with.image2 {
        // Two images: no kernel to ask, no privileges needed.
        app::diff_images(&a.dir, other, a.label.as_deref())?
    } else {
        app::require_privileges()?;
        let (label, source) = match (a.with.netns, a.with.netns_path, a.with.pid) {
            (Some(v), _, _) => split_label(&v, |t| NetnsSource::Name(t.to_string())),
            (_, Some(v), _) => split_label(&v, |t| NetnsSource::Path(PathBuf::from(t))),
            (_, _, pid) => (None, NetnsSource::Pid(pid.unwrap_or_default())),
        };
        let label = a.label.or(label);
        app::diff_netns(&a.dir, label.as_deref(), &source)?
    };
    if a.json {
        println!("{}", app::report::diff(&report, start.elapsed()));
    } else {
        print!("{}", report.text());
    }
    Ok(report.identical())
}

/// `OLD=VALUE` or `VALUE`, as a label and a namespace source.
fn split_label(value: &str, source: fn(&str) -> NetnsSource) -> (Option<String>, NetnsSource) {
    match value.split_once('=') {
        Some((old, v)) => (Some(old.to_string()), source(v)),
        None => (None, source(value)),
    }
}

/// One `--netns`/`--netns-path` value: `NEW` or `OLD=NEW`.
fn target_spec(value: &str, target: fn(&str) -> Target) -> TargetSpec {
    match value.split_once('=') {
        Some((old, new)) => TargetSpec {
            label: Some(old.to_string()),
            target: target(new),
        },
        None => TargetSpec {
            label: None,
            target: target(value),
        },
    }
}

fn restore(a: RestoreArgs) -> Result<(), AppError> {
    let start = std::time::Instant::now();
    app::require_privileges()?;
    let cancel = crate::signals::install();
    let named = a
        .dest
        .netns
        .iter()
        .map(|v| target_spec(v, |t| Target::Named(t.to_string())));
    let paths = a
        .dest
        .netns_path
        .iter()
        .map(|v| target_spec(v, |t| Target::Path(PathBuf::from(t))));
    let targets = Targets::Mapped(named.chain(paths).collect());
    let options = RestoreOptions {
        externals: a.external,
        create_from: match a.create_from {
            CreateFromArg::Lower => CreateFrom::Lower,
            CreateFromArg::Target => CreateFrom::Target,
        },
        require_ifindex: a.require_ifindex,
        keep_counters: a.keep_counters,
        cancel: Some(cancel),
        userns: a.userns,
        run_dir: None,
        teardown_wait: Some(a.wait_for_teardown),
        adopt: match a.adopt {
            None => Adopt::Never,
            Some(AdoptArg::Keep) => Adopt::Keep,
            Some(AdoptArg::Change) => Adopt::Change,
        },
        progress: (!a.quiet && !a.json)
            .then(crate::progress::on_terminal)
            .flatten(),
    };
    let restored = app::restore_from_dir(&a.dir, targets, &options);
    crate::progress::clear(options.progress.is_some());
    let restored = restored?;
    for r in &restored {
        if !a.json {
            println!("{r}");
        }
        for w in r.warnings() {
            log::warn!("{w}");
        }
    }
    if a.json {
        println!(
            "{}",
            app::report::restore(&a.dir, &restored, start.elapsed())
        );
    } else {
        println!("{}", elapsed(start));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump_leaving_out(value: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([
            "netcr",
            "dump",
            "-D",
            "d",
            "--netns",
            "x",
            "--leave-out",
            value,
        ])
    }

    /// Every family the dump refuses can be left out by its name, and so can nf_tables
    /// (saved unless left out), and nothing else.
    #[test]
    fn leave_out_accepts_exactly_the_families_that_can_be_left_out() {
        let names: Vec<&str> = LeaveOut::value_variants()
            .iter()
            .map(|v| v.0.name())
            .collect();
        let refused: Vec<&str> = Family::can_leave_out().map(|f| f.name()).collect();
        assert_eq!(names, refused);
        assert!(names.contains(&"nftables"));
        for name in refused {
            let cli = dump_leaving_out(name).unwrap_or_else(|e| panic!("--leave-out {name}: {e}"));
            let Cmd::Dump(a) = cli.cmd else { panic!() };
            assert_eq!(a.leave_out[0].0.name(), name);
        }
        assert!(dump_leaving_out("links").is_err());
    }
}

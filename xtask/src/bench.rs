//! `cargo xtask bench`: netcr against iproute2 doing the same work, at N = 100, 1,000 and
//! 10,000 macvlans (each up, with an address) on a veth lower device.
//!
//! Everything happens in namespaces the bench makes and removes: a "host" namespace H holding
//! the veth pair LOWER/LOWER2, the namespace NS iproute2 builds, and the namespace netcr
//! restores into. netcr runs as `nsenter --net=/run/netns/H netcr ...`, so H is its caller
//! namespace. (Not `ip netns exec H`: that also gives netcr a private mount namespace, so the
//! /run/netns bind mount of the namespace a restore creates is gone when netcr exits, and the
//! kernel then deletes the N restored links in the background, during the next measurement.)
//! One run of a size:
//!
//! 1. iproute2 builds NS: `ip netns add NS`, IPv6 off for new devices (see below),
//!    `ip -n H -batch` (macvlans created on LOWER, moved into NS), `ip -n NS -batch`
//!    (addresses, links up). Timed.
//! 2. With `--ipv6`: the kernel settles (no IPv6 address tentative any more). Not timed.
//! 3. iproute2 lists NS: links (`-d`), addresses, IPv4 and IPv6 routes of every table, output
//!    to /dev/null. Timed.
//! 4. `netcr dump` NS. Timed, peak RSS from `/usr/bin/time -f %M`.
//! 5. The original goes, as in a migration: deleting LOWER removes LOWER2 and every macvlan on
//!    either in one request, synchronously (`ip netns del` alone would leave the kernel
//!    deleting them in the background, holding the RTNL lock into the next measurement).
//!    The veth pair is made again. Not timed.
//! 6. `netcr restore` into a fresh namespace with `--external macvlan[*]:LOWER2`. Timed, peak
//!    RSS. Then it goes too.
//!
//! Why the original goes first: LOWER and LOWER2 are ends of one veth pair, so with the
//! original still on LOWER, every multicast frame the restored links send as they come up
//! (IPv6 DAD, MLD) reaches all N original macvlans. With IPv6 on, iproute2 building such a
//! second copy took about 1.5x as long as the first (N = 1,000: 0.55-0.94 s against
//! 0.36-0.62 s), which would be charged to netcr. This way the restore meets the kernel in the
//! state the build met it in.
//!
//! Why IPv6 is off by default (`net.ipv6.conf.default.disable_ipv6 = 1` in NS before its
//! links are made; the image carries it and netcr sets it in the new namespace before it
//! creates links): with it on, every link that comes up runs duplicate address detection and
//! MLD in kernel workers under the RTNL lock. At N = 10,000 that took the kernel minutes and
//! swamped both tools' own work. `--ipv6` measures that case too.
//!
//! Each size runs up to `--runs` times, fewer once a size has used `--budget-secs`; every time
//! keeps its best run, every RSS its worst. A guard removes what the bench made, also on
//! failure; namespaces left by an interrupted bench (Ctrl-C) are removed by the next one.
//! Needs root, iproute2, util-linux (nsenter) and GNU time (`apt-get install time`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, display_cmd, run_output, run_status, target_dir, Result};

mod firewall;

/// Prefix of every namespace the bench makes: `netcr-bench-<pid>-<role>`.
const PREFIX: &str = "netcr-bench-";
/// The lower device of the macvlans iproute2 builds.
const LOWER: &str = "LOWER";
/// The other end of the veth pair: the lower device of the restored macvlans.
const LOWER2: &str = "LOWER2";
const GNU_TIME: &str = "/usr/bin/time";
/// How long the kernel may take to finish duplicate address detection after a build.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);
/// Run inside NS before its links exist: they come up without IPv6.
const DISABLE_IPV6: &str = "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6";

/// Targets, as ratios measured in one run.
const RESTORE_MAX_RATIO: f64 = 1.0;
const DUMP_MAX_RATIO: f64 = 0.5;
const RSS_MAX_MIB: f64 = 64.0;
/// Time may grow at most this much faster than N between two sizes (12x for 10x).
const GROWTH_SLACK: f64 = 1.2;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Numbers of macvlans (with --firewall: of rules), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    sizes: Vec<usize>,
    /// Runs per size; each time keeps its best run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Start no further run of a size once its runs took this long, in seconds (each size runs
    /// at least once; at 10,000 one run takes about a minute, nearly all of it in the kernel,
    /// half of that deleting the links).
    #[arg(long, default_value_t = 120)]
    budget_secs: u64,
    /// Use this netcr binary instead of building one (`cargo build --release -p netcr`).
    #[arg(long, value_name = "PATH")]
    netcr: Option<PathBuf>,
    /// Keep IPv6 on the macvlans (link-local addresses, DAD, MLD): at N = 10,000 the kernel's
    /// own IPv6 work then takes minutes.
    #[arg(long)]
    ipv6: bool,
    /// Directory for the image and batch files [default: /dev/shm, else the temp directory].
    /// On a disk, the dump's fsyncs add the disk's latency to its time.
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Bench the firewall instead: `--sizes` are numbers of nf_tables rules (in up to 100
    /// chains, beside a set of as many elements), netcr against `nft -f` and `nft -j list
    /// ruleset` (needs the nftables package).
    #[arg(long)]
    firewall: bool,
}

/// Runs the task.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.sizes.is_empty() || args.sizes.contains(&0) || args.runs == 0 {
        return Err("--sizes takes positive numbers, --runs a positive count".into());
    }
    check_prerequisites()?;
    let netcr = match &args.netcr {
        Some(path) => path.clone(),
        None => build_netcr()?,
    };
    if !netcr.is_file() {
        return Err(format!("no netcr binary at {}", netcr.display()));
    }
    remove_stale();

    let machine = Machine::probe();
    eprintln!("bench: {}", machine.describe());
    eprintln!("bench: netcr {}", netcr.display());
    let parent = match &args.scratch {
        Some(dir) => dir.clone(),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    let mut scratch = Scratch::create(&parent)?;
    let rows = if args.firewall {
        firewall::run(args, &netcr, &mut scratch)?
    } else {
        links(args, &netcr, &mut scratch)?
    };
    drop(scratch);
    println!("{}", machine.describe());
    println!("netcr: {}.", source_version());
    let (what, peer) = if args.firewall {
        (firewall::DESCRIPTION.to_string(), &firewall::NFT)
    } else {
        let ipv6 = if args.ipv6 { "on" } else { "off" };
        (format!("IPv6 {ipv6} for the macvlans."), &IPROUTE2)
    };
    println!(
        "{what} Images in {} ({}). Times: best of the runs; RSS: netcr's peak (GNU time %M), \
         worst run.",
        parent.display(),
        fs_type(&parent)
    );
    println!();
    print!("{}", render(&rows, peer));
    Ok(())
}

/// The macvlan bench: each size's runs.
fn links(args: &BenchArgs, netcr: &Path, scratch: &mut Scratch) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &n in &args.sizes {
        let batches = Batches::write(scratch, n)?;
        let samples = runs(args, n, || scratch.measure(netcr, n, &batches, args.ipv6))?;
        rows.push(Row::best_of(n, &samples));
    }
    Ok(rows)
}

/// Up to `--runs` runs of one size, fewer once the size has used its budget.
fn runs(
    args: &BenchArgs,
    n: usize,
    mut measure: impl FnMut() -> Result<Sample>,
) -> Result<Vec<Sample>> {
    let started = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < args.runs
        && (samples.is_empty() || started.elapsed().as_secs() < args.budget_secs)
    {
        let sample = measure()?;
        eprintln!(
            "bench: N={n} run {}: build {}, list {}, dump {}, restore {}, teardown {}",
            samples.len() + 1,
            ms(sample.build),
            ms(sample.list),
            ms(sample.dump),
            ms(sample.restore),
            ms(sample.teardown),
        );
        samples.push(sample);
    }
    Ok(samples)
}

/// The tool netcr is compared with, as the table names it.
#[derive(Debug)]
struct Peer {
    /// What N counts.
    n: &'static str,
    /// The peer building the state from scratch ("iproute2 build").
    build: &'static str,
    /// The peer listing the state ("iproute2 list").
    list: &'static str,
}

const IPROUTE2: Peer = Peer {
    n: "N",
    build: "iproute2 build",
    list: "iproute2 list",
};

fn check_prerequisites() -> Result<()> {
    if !crate::is_root() {
        return Err("cargo xtask bench needs root: it creates network namespaces and links".into());
    }
    run_output(Command::new("ip").arg("-V"))
        .map_err(|e| format!("iproute2's `ip` is needed: {e}"))?;
    run_output(Command::new("nsenter").arg("--version"))
        .map_err(|e| format!("util-linux's `nsenter` is needed: {e}"))?;
    if !Path::new(GNU_TIME).is_file() {
        return Err(format!(
            "{GNU_TIME} (GNU time) measures netcr's peak RSS: apt-get install time"
        ));
    }
    Ok(())
}

fn build_netcr() -> Result<PathBuf> {
    eprintln!("bench: cargo build --release -p netcr");
    run_status(cargo().args(["build", "--release", "-p", "netcr"]))?;
    Ok(target_dir()?.join("release").join("netcr"))
}

/// An `ip` command.
fn ip() -> Command {
    Command::new("ip")
}

/// Runs `cmd` quietly; fails with its stderr unless it exits with 0.
fn quiet(cmd: &mut Command) -> Result<()> {
    run_output(cmd.stdin(Stdio::null())).map(|_| ())
}

/// Runs `cmd` with its output to /dev/null; returns how long it took.
fn timed(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", display_cmd(cmd)))?;
    let took = start.elapsed();
    if out.status.success() {
        Ok(took)
    } else {
        Err(format!(
            "{} failed ({}): {}",
            display_cmd(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and files of one bench; dropping it removes them all.
#[derive(Debug)]
struct Scratch {
    host: String,
    built: String,
    restored: String,
    dir: PathBuf,
    /// Namespaces that exist now, made by this bench.
    namespaces: Vec<String>,
}

impl Scratch {
    fn create(parent: &Path) -> Result<Scratch> {
        let pid = std::process::id();
        let name = |role: &str| format!("{PREFIX}{pid}-{role}");
        let dir = parent.join(format!("netcr-bench-{pid}"));
        let mut scratch = Scratch {
            host: name("host"),
            built: name("built"),
            restored: name("restored"),
            dir,
            namespaces: Vec::new(),
        };
        fs::create_dir_all(&scratch.dir)
            .map_err(|e| format!("cannot create {}: {e}", scratch.dir.display()))?;
        let host = scratch.host.clone();
        scratch.add_netns(&host)?;
        Ok(scratch)
    }

    fn add_netns(&mut self, name: &str) -> Result<()> {
        quiet(ip().args(["netns", "add", name]))?;
        self.namespaces.push(name.to_string());
        Ok(())
    }

    /// Deletes one namespace of a run.
    fn remove_netns(&mut self, name: &str) -> Result<()> {
        self.namespaces.retain(|n| n != name);
        quiet(ip().args(["netns", "del", name]))
    }

    fn image(&self) -> PathBuf {
        self.dir.join("image")
    }

    /// The veth pair in H, both ends up (a macvlan on a down lower device has no carrier).
    fn make_lower(&self) -> Result<()> {
        let h = self.host.as_str();
        quiet(ip().args([
            "-n", h, "link", "add", LOWER, "type", "veth", "peer", LOWER2,
        ]))?;
        quiet(ip().args(["-n", h, "link", "set", LOWER, "up"]))?;
        quiet(ip().args(["-n", h, "link", "set", LOWER2, "up"]))
    }

    /// One run: build, list, dump, teardown, restore, teardown.
    fn measure(&mut self, netcr: &Path, n: usize, batches: &Batches, ipv6: bool) -> Result<Sample> {
        self.make_lower()?;
        let (h, built, restored) = (self.host.clone(), self.built.clone(), self.restored.clone());

        let start = Instant::now();
        self.add_netns(&built)?;
        if !ipv6 {
            quiet(ip().args(["netns", "exec", &built, "sh", "-c", DISABLE_IPV6]))?;
        }
        timed(ip().args(["-n", &h, "-batch"]).arg(&batches.links))?;
        timed(ip().args(["-n", &built, "-batch"]).arg(&batches.settings))?;
        let build = start.elapsed();
        if ipv6 {
            settle(&built)?;
        }

        let mut list = Duration::ZERO;
        for args in [
            &["-d", "link", "show"][..],
            &["address", "show"],
            &["-4", "route", "show", "table", "all"],
            &["-6", "route", "show", "table", "all"],
        ] {
            list += timed(ip().args(["-n", &built]).args(args))?;
        }

        let image = self.image();
        let _ = fs::remove_dir_all(&image);
        let image_arg = image.to_string_lossy().into_owned();
        let (dump, rss_dump, dump_says) = self.netcr(
            netcr,
            &["dump", "-D", &image_arg, "--netns", &built],
            "dump",
        )?;
        expect_links(&dump_says, n)?;
        let image_bytes = dir_bytes(&image)?;

        let start = Instant::now();
        self.teardown()?;
        let mut teardown = start.elapsed();
        self.make_lower()?;

        self.namespaces.push(restored.clone());
        let external = format!("macvlan[*]:{LOWER2}");
        let (restore, rss_restore, restore_says) = self.netcr(
            netcr,
            &[
                "restore",
                "-D",
                &image_arg,
                "--netns",
                &restored,
                "--external",
                &external,
            ],
            "restore",
        )?;
        expect_links(&restore_says, n)?;
        if !ipv6 {
            // The restore must have set the namespace's default before making the links.
            let v6 =
                run_output(ip().args(["-n", &restored, "-6", "address", "show", "dev", "mv0"]))?;
            if !v6.trim().is_empty() {
                return Err(
                    "the restored mv0 has IPv6 addresses although the image says \
                     net.ipv6.conf.default.disable_ipv6 = 1: the two builds differ"
                        .into(),
                );
            }
        }

        let start = Instant::now();
        self.teardown()?;
        teardown += start.elapsed();
        Ok(Sample {
            build,
            list,
            dump,
            restore,
            teardown,
            rss_dump_kib: rss_dump,
            rss_restore_kib: rss_restore,
            image_bytes,
        })
    }

    /// Runs `netcr ARGS` in H under GNU time; returns the time, peak RSS (KiB) and stdout.
    fn netcr(&self, netcr: &Path, args: &[&str], what: &str) -> Result<(Duration, u64, String)> {
        let rss_file = self.dir.join(format!("rss-{what}"));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.host))
            .args(["--", GNU_TIME, "-f", "%M", "-o"])
            .arg(&rss_file)
            .arg(netcr)
            .args(args)
            .stdin(Stdio::null());
        let start = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", display_cmd(&cmd)))?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                display_cmd(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = fs::read_to_string(&rss_file)
            .map_err(|e| format!("cannot read {}: {e}", rss_file.display()))?;
        let rss = parse_gnu_time_rss(&text)
            .ok_or_else(|| format!("{GNU_TIME} wrote no peak RSS: {text:?}"))?;
        Ok((took, rss, String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Removes the veth pair, every macvlan on it and the namespaces of a run but H. Deleting
    /// LOWER takes its peer and every macvlan on either end with it, in one request that
    /// returns when they are gone.
    fn teardown(&mut self) -> Result<()> {
        let deleted = quiet(ip().args(["-n", &self.host, "link", "del", LOWER]));
        let host = self.host.clone();
        let mut failed = Vec::new();
        for name in std::mem::take(&mut self.namespaces) {
            if name == host {
                self.namespaces.push(name);
            } else if !netns_exists(&name) {
                // A failed restore deletes the namespace it created.
            } else if let Err(e) = quiet(ip().args(["netns", "del", &name])) {
                failed.push(e);
            }
        }
        deleted?;
        match failed.pop() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = quiet(ip().args(["-n", &self.host, "link", "del", LOWER]));
        for name in self.namespaces.drain(..).rev() {
            if !netns_exists(&name) {
                continue;
            }
            if let Err(e) = quiet(ip().args(["netns", "del", &name])) {
                eprintln!("bench: warning: could not delete netns {name}: {e}");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Waits until no IPv6 address in `netns` is tentative: duplicate address detection runs in
/// the kernel after links come up, under the RTNL lock, and would disturb what runs next.
fn settle(netns: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let out = run_output(ip().args(["-n", netns, "-6", "address", "show", "tentative"]))?;
        if out.trim().is_empty() {
            return Ok(());
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            return Err(format!(
                "IPv6 addresses in {netns} still tentative after {}s",
                SETTLE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// netcr's summary line names the link count: N macvlans and lo.
fn expect_links(summary: &str, n: usize) -> Result<()> {
    let want = format!(": {} links,", n + 1);
    if summary.contains(&want) {
        Ok(())
    } else {
        Err(format!(
            "netcr handled a different number of links than the {n} macvlans and lo: {}",
            summary.trim()
        ))
    }
}

/// Sum of the sizes of the files in `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let meta = entry
            .and_then(|e| e.metadata())
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        total += meta.len();
    }
    Ok(total)
}

/// The peak RSS (KiB) GNU time's `-f %M` wrote: the last line (an exit-status note may come
/// first).
fn parse_gnu_time_rss(text: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .parse()
        .ok()
}

/// The iproute2 batch files of one size.
#[derive(Debug)]
struct Batches {
    /// For `ip -n H -batch`: create each macvlan on LOWER, in NS.
    links: PathBuf,
    /// For `ip -n NS -batch`: an address on each, then up.
    settings: PathBuf,
}

impl Batches {
    fn write(scratch: &Scratch, n: usize) -> Result<Batches> {
        let links = scratch.dir.join(format!("links-{n}.batch"));
        let settings = scratch.dir.join(format!("settings-{n}.batch"));
        let (l, s) = batch_texts(n, &scratch.built);
        fs::write(&links, l).map_err(|e| format!("cannot write {}: {e}", links.display()))?;
        fs::write(&settings, s).map_err(|e| format!("cannot write {}: {e}", settings.display()))?;
        Ok(Batches { links, settings })
    }
}

/// The address of macvlan `i`: its own /24, 10.A.B.1 (distinct prefixes: one connected route
/// per link, as on a host whose containers sit in their own subnets).
fn address(i: usize) -> String {
    format!("10.{}.{}.1/24", i / 256, i % 256)
}

fn batch_texts(n: usize, netns: &str) -> (String, String) {
    let mut links = String::new();
    let mut settings = String::new();
    for i in 0..n {
        let _ = writeln!(
            links,
            "link add mv{i} link {LOWER} netns {netns} type macvlan mode bridge"
        );
        let _ = writeln!(settings, "address add {} dev mv{i}", address(i));
        let _ = writeln!(settings, "link set mv{i} up");
    }
    (links, settings)
}

/// Removes namespaces an earlier, interrupted bench left (its process is gone).
fn remove_stale() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    let mut stale: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            stale_owner(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    // Hosts first: deleting their LOWER removes every macvlan of that bench at once.
    stale.sort_by_key(|name| !name.ends_with("-host"));
    for name in stale {
        eprintln!("bench: removing netns {name}, left by an interrupted bench");
        if name.ends_with("-host") {
            let _ = quiet(ip().args(["-n", &name, "link", "del", LOWER]));
        }
        let _ = quiet(ip().args(["netns", "del", &name]));
    }
}

/// The pid in a bench namespace's name, `netcr-bench-<pid>-<role>`.
fn stale_owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split_once('-')?.0.parse().ok()
}

/// One run's measurements.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    build: Duration,
    list: Duration,
    dump: Duration,
    restore: Duration,
    teardown: Duration,
    rss_dump_kib: u64,
    rss_restore_kib: u64,
    image_bytes: u64,
}

/// One size: the best time of each measurement, the worst RSS.
#[derive(Debug, Clone, Copy)]
struct Row {
    n: usize,
    runs: usize,
    best: Sample,
}

impl Row {
    fn best_of(n: usize, samples: &[Sample]) -> Row {
        let min = |f: fn(&Sample) -> Duration| samples.iter().map(f).min().unwrap_or_default();
        let max = |f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or_default();
        Row {
            n,
            runs: samples.len(),
            best: Sample {
                build: min(|s| s.build),
                list: min(|s| s.list),
                dump: min(|s| s.dump),
                restore: min(|s| s.restore),
                teardown: min(|s| s.teardown),
                rss_dump_kib: max(|s| s.rss_dump_kib),
                rss_restore_kib: max(|s| s.rss_restore_kib),
                image_bytes: max(|s| s.image_bytes),
            },
        }
    }

    fn restore_ratio(&self) -> f64 {
        ratio(self.best.restore, self.best.build)
    }

    fn dump_ratio(&self) -> f64 {
        ratio(self.best.dump, self.best.list)
    }

    fn rss_mib(&self) -> f64 {
        self.best.rss_dump_kib.max(self.best.rss_restore_kib) as f64 / 1024.0
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The results as a Markdown table, then the growth between sizes.
fn render(rows: &[Row], peer: &Peer) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {} | runs | {} | netcr restore | restore/build (<= {RESTORE_MAX_RATIO:.1}x) \
         | {} | netcr dump | dump/list (<= {DUMP_MAX_RATIO:.1}x) | image KiB \
         | RSS MiB dump / restore (<= {RSS_MAX_MIB:.0}) |",
        peer.n, peer.build, peer.list
    );
    let _ = writeln!(out, "|--:|--:|--:|--:|--|--:|--:|--|--:|--|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2}x {} | {} | {} | {:.2}x {} | {:.0} | {} / {} {} |",
            r.n,
            r.runs,
            ms(r.best.build),
            ms(r.best.restore),
            r.restore_ratio(),
            verdict(r.restore_ratio() <= RESTORE_MAX_RATIO),
            ms(r.best.list),
            ms(r.best.dump),
            r.dump_ratio(),
            verdict(r.dump_ratio() <= DUMP_MAX_RATIO),
            r.best.image_bytes as f64 / 1024.0,
            mib(r.best.rss_dump_kib),
            mib(r.best.rss_restore_kib),
            verdict(r.rss_mib() <= RSS_MAX_MIB),
        );
    }
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|r| r.n);
    for pair in sorted.windows(2) {
        let (small, big) = (&pair[0], &pair[1]);
        if small.n == big.n {
            continue;
        }
        let allowed = GROWTH_SLACK * big.n as f64 / small.n as f64;
        let growth = |f: fn(&Sample) -> Duration| ratio(f(&big.best), f(&small.best));
        let (dump, restore) = (growth(|s| s.dump), growth(|s| s.restore));
        let _ = writeln!(
            out,
            "\nGrowth from {} = {} to {} (<= {allowed:.1}x): dump {dump:.1}x {}, restore {restore:.1}x {}; \
             {} {:.1}x, {} {:.1}x.",
            peer.n,
            small.n,
            big.n,
            verdict(dump <= allowed),
            verdict(restore <= allowed),
            peer.list,
            growth(|s| s.list),
            peer.build,
            growth(|s| s.build),
        );
    }
    out
}

/// The workspace's commit, and whether the tree differs from it.
fn source_version() -> String {
    let git = |args: &[&str]| {
        run_output(
            Command::new("git")
                .arg("-C")
                .arg(crate::workspace_root())
                .args(args),
        )
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Ok(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false);
            format!(
                "commit {}{}",
                commit.trim(),
                if dirty {
                    " with uncommitted changes"
                } else {
                    ""
                }
            )
        }
        Err(_) => "built from a tree outside git".into(),
    }
}

/// The type of the filesystem holding `path` (the longest mount point above it).
fn fs_type(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
        .unwrap_or_else(|| "unknown filesystem".into())
}

/// The machine a table was measured on.
#[derive(Debug)]
struct Machine {
    cpus: String,
    kernel: String,
    cpu_model: String,
    load: String,
}

impl Machine {
    fn probe() -> Machine {
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
        let load = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Machine {
            cpus,
            kernel,
            cpu_model,
            load,
        }
    }

    fn describe(&self) -> String {
        format!(
            "Machine: {} CPUs ({}), kernel {}, load average at start {}.",
            self.cpus, self.cpu_model, self.kernel, self.load
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    fn batches_name_every_link_once_with_its_own_subnet() {
        let (links, settings) = batch_texts(10_000, "ns");
        assert_eq!(links.lines().count(), 10_000);
        assert_eq!(
            links.lines().next(),
            Some("link add mv0 link LOWER netns ns type macvlan mode bridge")
        );
        assert_eq!(settings.lines().count(), 20_000);
        let addresses: std::collections::HashSet<_> = (0..10_000).map(address).collect();
        assert_eq!(addresses.len(), 10_000);
        assert_eq!(address(9_999), "10.39.15.1/24");
        assert!(settings.contains("address add 10.39.15.1/24 dev mv9999\nlink set mv9999 up\n"));
    }

    #[rstest]
    #[case::plain("23456\n", Some(23456))]
    #[case::after_exit_note("Command exited with non-zero status 1\n812\n", Some(812))]
    #[case::empty("", None)]
    #[case::garbage("oops\n", None)]
    fn gnu_time_output(#[case] text: &str, #[case] expected: Option<u64>) {
        assert_eq!(parse_gnu_time_rss(text), expected);
    }

    #[rstest]
    #[case::host("netcr-bench-4242-host", Some(4242))]
    #[case::restored("netcr-bench-17-restored", Some(17))]
    #[case::other_tool("nct21869x0c", None)]
    #[case::no_pid("netcr-bench-x-host", None)]
    fn stale_names(#[case] name: &str, #[case] expected: Option<u32>) {
        assert_eq!(stale_owner(name), expected);
    }

    #[rstest]
    #[case::match_(": 1001 links,", 1000, true)]
    #[case::short(": 1000 links,", 1000, false)]
    fn link_counts(#[case] line: &str, #[case] n: usize, #[case] ok: bool) {
        let summary = format!("dumped netns \"x\"{line} 1000 addresses");
        assert_eq!(expect_links(&summary, n).is_ok(), ok);
    }

    fn sample(dump_ms: u64, restore_ms: u64, rss_kib: u64) -> Sample {
        Sample {
            build: Duration::from_millis(100),
            list: Duration::from_millis(100),
            dump: Duration::from_millis(dump_ms),
            restore: Duration::from_millis(restore_ms),
            rss_dump_kib: rss_kib,
            rss_restore_kib: rss_kib / 2,
            ..Sample::default()
        }
    }

    #[rstest]
    fn best_time_and_worst_rss() {
        let row = Row::best_of(10, &[sample(50, 90, 1000), sample(40, 120, 3000)]);
        assert_eq!(row.runs, 2);
        assert_eq!(row.best.dump, Duration::from_millis(40));
        assert_eq!(row.best.restore, Duration::from_millis(90));
        assert_eq!(row.best.rss_dump_kib, 3000);
    }

    #[rstest]
    fn table_marks_targets() {
        let rows = [
            Row::best_of(1000, &[sample(40, 90, 20 * 1024)]),
            Row::best_of(10_000, &[sample(500, 1300, 70 * 1024)]),
        ];
        let table = render(&rows, &IPROUTE2);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[2].contains("0.90x PASS"), "{table}");
        assert!(lines[2].contains("0.40x PASS"), "{table}");
        assert!(lines[2].ends_with("20.0 / 10.0 PASS |"), "{table}");
        assert!(lines[3].contains("13.00x MISS"), "{table}");
        assert!(lines[3].ends_with("70.0 / 35.0 MISS |"), "{table}");
        assert!(
            table.contains("(<= 12.0x): dump 12.5x MISS, restore 14.4x MISS"),
            "{table}"
        );
    }
}

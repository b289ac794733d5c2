//! Dumping namespaces into an image directory, for the command line and the CRIU hook alike.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netcr_core::DumpOptions;
use netcr_image::{Image, ImageError, NetnsImage, WriteOptions};
use netcr_netlink::Netns;

use super::{AppError, TargetError};
use crate::signals;

/// Test-only: when set, a dump waits before its commit for a signal (see
/// [`signals::test_pause`]), so a test can interrupt it at that step.
pub const ENV_PAUSE_BEFORE_COMMIT: &str = "NETCR_TEST_PAUSE_BEFORE_COMMIT";

/// A namespace to dump, as the user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsSource {
    /// A named namespace (`/run/netns/NAME`).
    Name(String),
    /// A namespace file, e.g. `/proc/PID/ns/net` or a bind mount.
    Path(PathBuf),
    /// The namespace of a process.
    Pid(u32),
}

/// Opens the namespaces in the order given; refuses one named twice (by any two means), as
/// its links would be dumped twice.
pub fn open_sources(sources: &[NetnsSource]) -> Result<Vec<Netns>, AppError> {
    let mut out: Vec<Netns> = Vec::with_capacity(sources.len());
    for source in sources {
        out.push(match source {
            NetnsSource::Name(name) => Netns::open_name(name)?,
            NetnsSource::Path(path) => Netns::open_path(path)?,
            NetnsSource::Pid(pid) => Netns::open_pid(*pid)?,
        });
    }
    for (i, later) in out.iter().enumerate() {
        for earlier in &out[..i] {
            if later.same_as(earlier)? {
                return Err(TargetError::SameNamespace {
                    first: earlier.label().to_string(),
                    second: later.label().to_string(),
                }
                .into());
            }
        }
    }
    Ok(out)
}

/// How durable a written image must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every file and directory fsynced: the image survives a power loss (`netcr dump`).
    Fsync,
    /// No fsync, still atomic: inside CRIU's frozen window the fsyncs cost more than the whole
    /// dump (20-30 ms on a virtual disk), and CRIU does not fsync its own image files either.
    NoFsync,
}

/// What one namespace of a dump holds, for the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsCounts {
    /// The namespace's label (its name, path or pid as given).
    pub label: String,
    /// Links dumped.
    pub links: usize,
    /// Addresses dumped.
    pub addresses: usize,
    /// Routes dumped.
    pub routes: usize,
    /// Rules dumped.
    pub rules: usize,
    /// Neighbours dumped.
    pub neighbours: usize,
    /// Nexthop objects dumped.
    pub nexthops: usize,
    /// nf_tables tables dumped.
    pub nft_tables: usize,
    /// nf_tables rules dumped.
    pub nft_rules: usize,
    /// xfrm states and policies dumped.
    pub xfrm: usize,
    /// Each device dumped: name, ifindex and kind (empty for loopback).
    pub devices: Vec<(String, u32, String)>,
}

impl NetnsCounts {
    fn of(netns: &NetnsImage) -> NetnsCounts {
        NetnsCounts {
            label: netns.netns.label.clone(),
            links: netns.links.len(),
            addresses: netns.addresses.len(),
            routes: netns.routes.len(),
            rules: netns.rules.len(),
            neighbours: netns.neighbours.len(),
            nexthops: netns.nexthops.len(),
            nft_tables: count_kind(netns, netcr_core::nftables::Kind::Table),
            nft_rules: count_kind(netns, netcr_core::nftables::Kind::Rule),
            xfrm: netns
                .xfrm
                .iter()
                .filter(|r| r.kind != u32::from(netcr_core::xfrm::SETDEFAULT))
                .count(),
            devices: netns
                .links
                .iter()
                .map(|l| (l.name.clone(), l.ifindex, l.kind.clone()))
                .collect(),
        }
    }
}

fn count_kind(netns: &NetnsImage, kind: netcr_core::nftables::Kind) -> usize {
    netns
        .nftables
        .iter()
        .filter(|r| r.kind == u32::from(kind.msg()))
        .count()
}

impl fmt::Display for NetnsCounts {
    /// `netns "LABEL": N links, N addresses, N routes, N rules, N neighbours, N nexthops`,
    /// and `, N nf_tables tables (N rules)` when it has a firewall, `, N xfrm states and
    /// policies` when it has IPsec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "netns \"{}\": {} links, {} addresses, {} routes, {} rules, {} neighbours, {} nexthops",
            self.label,
            self.links,
            self.addresses,
            self.routes,
            self.rules,
            self.neighbours,
            self.nexthops
        )?;
        if self.nft_tables > 0 {
            write!(
                f,
                ", {} nf_tables tables ({} rules)",
                self.nft_tables, self.nft_rules
            )?;
        }
        if self.xfrm > 0 {
            write!(f, ", {} xfrm states and policies", self.xfrm)?;
        }
        Ok(())
    }
}

/// What a dump wrote.
#[derive(Debug, Clone)]
pub struct DumpSummary {
    /// The image directory.
    pub dir: PathBuf,
    /// One entry per namespace, in image order.
    pub namespaces: Vec<NetnsCounts>,
    /// What the user should know: devices left out, a previous image's copy left behind.
    pub warnings: Vec<String>,
    /// How long the kernel dump took, apart from writing (the hook reports it: it is most of
    /// a container's frozen time).
    pub kernel_dump: Duration,
}

impl fmt::Display for DumpSummary {
    /// `dumped netns "LABEL": N links, ...` per namespace, one per line, then ` into DIR`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.namespaces.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "dumped {n}")?;
        }
        write!(f, " into {}", self.dir.display())
    }
}

/// Dumps `namespaces` into one image at `dir`, written atomically: the whole new image is
/// there afterwards, or whatever was there before. A SIGINT or SIGTERM before the commit
/// (once [`signals::install`]ed) abandons it with [`AppError::Interrupted`].
pub fn dump_to_dir(
    namespaces: &[Netns],
    dir: &Path,
    options: &DumpOptions,
    durability: Durability,
) -> Result<DumpSummary, AppError> {
    let start = Instant::now();
    let caller = Netns::current_thread()?;
    let (image, report) = netcr_core::dump(namespaces, &caller, options)?;
    let kernel_dump = start.elapsed();
    log::info!(
        "dump: {} namespaces read from the kernel in {:.1} ms",
        namespaces.len(),
        kernel_dump.as_secs_f64() * 1000.0
    );
    let mut warnings = report.warnings;
    warnings.extend(write_image(&image, dir, durability)?);
    log::info!(
        "dump: image written to {} in {:.1} ms",
        dir.display(),
        (start.elapsed() - kernel_dump).as_secs_f64() * 1000.0
    );
    Ok(DumpSummary {
        dir: dir.to_path_buf(),
        namespaces: image.namespaces.iter().map(NetnsCounts::of).collect(),
        warnings,
        kernel_dump,
    })
}

/// Writes `image` at `dir` atomically ([`Image::write_with`]): a previous image there is
/// replaced, anything else refused. The commit is abandoned when a signal arrived meanwhile
/// ([`AppError::Interrupted`]; nothing changes at `dir`); a previous image's copy that could
/// not be removed is a warning, returned, as the new image is in place.
pub fn write_image(
    image: &Image,
    dir: &Path,
    durability: Durability,
) -> Result<Vec<String>, AppError> {
    let before_commit = || {
        signals::test_pause(ENV_PAUSE_BEFORE_COMMIT, "commit");
        !signals::raised()
    };
    let options = WriteOptions {
        durable: durability == Durability::Fsync,
        before_commit: Some(&before_commit),
    };
    match image.write_with(dir, &options) {
        Ok(()) => Ok(Vec::new()),
        Err(ImageError::Abandoned { .. }) => Err(AppError::Interrupted),
        Err(e @ ImageError::StaleCopyLeft { .. }) => Ok(vec![e.to_string()]),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(label: &str, links: usize) -> NetnsCounts {
        NetnsCounts {
            label: label.into(),
            links,
            addresses: 2,
            routes: 3,
            rules: 4,
            neighbours: 5,
            nexthops: 6,
            nft_tables: 0,
            nft_rules: 0,
            xfrm: 0,
            devices: Vec::new(),
        }
    }

    /// The wording scripts and tests read: one line per namespace, the directory at the end.
    #[test]
    fn the_summary_names_every_namespace_and_the_directory() {
        let mut summary = DumpSummary {
            dir: PathBuf::from("/tmp/img"),
            namespaces: vec![counts("a", 1)],
            warnings: Vec::new(),
            kernel_dump: Duration::ZERO,
        };
        assert_eq!(
            summary.to_string(),
            "dumped netns \"a\": 1 links, 2 addresses, 3 routes, 4 rules, 5 neighbours, 6 nexthops into /tmp/img"
        );
        summary.namespaces.push(counts("b", 7));
        assert_eq!(
            summary.to_string(),
            "dumped netns \"a\": 1 links, 2 addresses, 3 routes, 4 rules, 5 neighbours, 6 nexthops\n\
             dumped netns \"b\": 7 links, 2 addresses, 3 routes, 4 rules, 5 neighbours, 6 nexthops into /tmp/img"
        );
        summary.namespaces[1].nft_tables = 2;
        summary.namespaces[1].nft_rules = 9;
        assert!(summary
            .to_string()
            .ends_with("6 nexthops, 2 nf_tables tables (9 rules) into /tmp/img"));
    }
}

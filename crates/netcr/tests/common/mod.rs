//! Helpers for the CLI tests: run the `netcr` binary, and compare images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use netcr_image::{v1, Image};

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `netcr ARGS` in the calling thread's namespace (the test host).
pub fn netcr(args: &[&str]) -> Run {
    netcr_env(args, &[])
}

/// Runs `netcr ARGS` with extra environment variables.
pub fn netcr_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_netcr"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running netcr");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs netcr and insists on success.
pub fn ok(args: &[&str]) -> Run {
    let run = netcr(args);
    assert_eq!(
        run.code, 0,
        "netcr {args:?} failed: {}{}",
        run.stdout, run.stderr
    );
    run
}

/// The requests a successful restore reports, over all its namespaces: the sum of the
/// `(N requests)` that ends each line.
pub fn requests_reported(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| {
            l.rsplit_once('(')?
                .1
                .strip_suffix(" requests)")?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// Runs the restore with a failure injected before request k = 0, 1, ... until a run gets
/// through (k then equals the number of requests). Every failed run must say it was the
/// injected failure and undo everything it did; `check(k, run)` looks at each one further.
/// Returns the number of requests of the successful run.
pub fn fail_at_every_step(args: &[&str], mut check: impl FnMut(usize, &Run)) -> usize {
    for k in 0..500 {
        let run = netcr_env(args, &[("NETCR_TEST_FAIL_AT_REQUEST", &k.to_string())]);
        if run.code == 0 {
            assert_eq!(
                requests_reported(&run.stdout),
                k,
                "the first run to get through is the one whose failure point lies past its \
                 last request: {}",
                run.stdout
            );
            return k;
        }
        assert_eq!(run.code, 1, "request {k}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("injected failure"),
            "request {k}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("could NOT undo"),
            "request {k}: {}",
            run.stderr
        );
        check(k, &run);
    }
    panic!("the restore never got through");
}

/// A temporary directory for images, removed when dropped.
pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Dir {
        Dir(tempfile::tempdir().expect("tempdir"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// One link as a user compares it: everything but the lower device's name and the ifindex.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct LinkView {
    pub name: String,
    pub kind: String,
    pub mtu: u32,
    pub address: Vec<u8>,
    pub up: bool,
    pub flags: u32,
    pub txqlen: u32,
    pub alias: String,
    pub group: u32,
    pub config: Vec<u8>,
    pub lower: String,
    pub ifindex: u32,
}

pub fn lower_name(link: &v1::Link) -> String {
    match link.lower.as_ref().and_then(|r| r.target.as_ref()) {
        None => String::new(),
        Some(v1::link_ref::Target::Local(l)) => l.name.clone(),
        Some(v1::link_ref::Target::External(e)) => format!("outside:{}", e.name_hint),
    }
}

/// The links of an image's first namespace, sorted by name.
pub fn links(dir: &Path) -> Vec<LinkView> {
    let image = Image::read(dir).expect("reading image");
    let mut out: Vec<LinkView> = image.namespaces[0]
        .links
        .iter()
        .map(|l| LinkView {
            name: l.name.clone(),
            kind: l.kind.clone(),
            mtu: l.mtu,
            address: l.address.clone(),
            up: l.flags & 1 != 0,
            // up, noarp, promisc, allmulti, multicast: what a user sets.
            flags: l.flags & (1 | 0x80 | 0x100 | 0x200 | 0x1000),
            txqlen: l.txqlen,
            alias: l.alias.clone(),
            group: l.group,
            config: l.config.clone(),
            lower: lower_name(l),
            ifindex: l.ifindex,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The image's addresses and routes as text, sorted.
pub fn state(dir: &Path) -> (Vec<String>, Vec<String>) {
    let image = Image::read(dir).expect("reading image");
    let ns = &image.namespaces[0];
    let mut addrs: Vec<String> = ns
        .addresses
        .iter()
        .map(|a| {
            let m: netlink_packet_route::address::AddressMessage =
                netcr_core::state::decode(&a.message, "address").unwrap();
            format!(
                "{} {:?} /{}",
                a.dev,
                m.attributes
                    .iter()
                    .filter(|x| matches!(
                        x,
                        netlink_packet_route::address::AddressAttribute::Local(_)
                            | netlink_packet_route::address::AddressAttribute::Address(_)
                    ))
                    .collect::<Vec<_>>(),
                m.header.prefix_len
            )
        })
        .collect();
    addrs.sort();
    let mut routes: Vec<String> = ns
        .routes
        .iter()
        .map(|r| {
            let m: netlink_packet_route::route::RouteMessage =
                netcr_core::state::decode(&r.message, "route").unwrap();
            netcr_core::state::describe_route(&m, r)
        })
        .collect();
    routes.sort();
    (addrs, routes)
}

//! `cargo xtask bench --firewall`: netcr's nf_tables dump and restore against nft doing the
//! same work. For N rules: an `inet` table with a set of N IPv4 addresses (dropped at input)
//! and N rules spread over up to 100 regular chains the input chain jumps to, each rule a
//! port and /24 match with a counter, as a firewall with per-service chains has them.
//!
//! One run: `nft -f` builds the ruleset in a fresh namespace (timed), `nft -j list ruleset`
//! lists it (timed), `netcr dump` (timed, peak RSS), the namespace goes, `netcr restore` into
//! a fresh one (timed, peak RSS; it holds the firewall's transaction and the verification's
//! re-dump), then a check that the restored namespace holds N rules and N elements. nft runs
//! under `nsenter --net`, like netcr, so neither pays for `ip netns exec`'s mount namespace.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{dir_bytes, run_output, runs, timed, BenchArgs, Peer, Row, Sample, Scratch};
use crate::Result;

/// How the table names the peer.
pub(super) const NFT: Peer = Peer {
    n: "rules",
    build: "nft -f",
    list: "nft -j list",
};

/// What the firewall bench holds, for the table's heading.
pub(super) const DESCRIPTION: &str = "Firewall: an inet table with N rules in up to 100 chains \
    (tcp dport and ip saddr /24, counter, accept) and a set of N IPv4 addresses.";

/// Regular chains the rules are spread over, at most.
const CHAINS: usize = 100;

/// Runs each size.
pub(super) fn run(args: &BenchArgs, netcr: &Path, scratch: &mut Scratch) -> Result<Vec<Row>> {
    run_output(Command::new("nft").arg("--version"))
        .map_err(|e| format!("nftables' `nft` is needed for --firewall: {e}"))?;
    let mut rows = Vec::new();
    for &n in &args.sizes {
        let ruleset = scratch.dir.join(format!("ruleset-{n}.nft"));
        fs::write(&ruleset, ruleset_text(n))
            .map_err(|e| format!("cannot write {}: {e}", ruleset.display()))?;
        let samples = runs(args, n, || measure(scratch, netcr, n, &ruleset))?;
        rows.push(Row::best_of(n, &samples));
    }
    Ok(rows)
}

/// `nft ARGS` inside the named namespace.
fn nft_in(netns: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}"))
        .args(["--", "nft"]);
    cmd
}

fn measure(scratch: &mut Scratch, netcr: &Path, n: usize, ruleset: &Path) -> Result<Sample> {
    let (built, restored) = (scratch.built.clone(), scratch.restored.clone());
    scratch.add_netns(&built)?;
    let build = timed(nft_in(&built).arg("-f").arg(ruleset))?;
    let list = timed(nft_in(&built).args(["-j", "list", "ruleset"]))?;

    let image = scratch.image();
    let _ = fs::remove_dir_all(&image);
    let image_arg = image.to_string_lossy().into_owned();
    let (dump, rss_dump, _) = scratch.netcr(
        netcr,
        &["dump", "-D", &image_arg, "--netns", &built],
        "dump",
    )?;
    let image_bytes = dir_bytes(&image)?;

    let start = Instant::now();
    scratch.remove_netns(&built)?;
    let mut teardown = start.elapsed();

    scratch.namespaces.push(restored.clone());
    let (restore, rss_restore, _) = scratch.netcr(
        netcr,
        &["restore", "-D", &image_arg, "--netns", &restored],
        "restore",
    )?;
    let listed = run_output(nft_in(&restored).args(["-j", "list", "ruleset"]))?;
    let (rules, elements) = count_rules_and_elements(&listed)?;
    // The input chain's drop and its jumps come on top of the N rules.
    let want_rules = n + 1 + chains(n);
    if rules != want_rules || elements != n {
        return Err(format!(
            "the restored firewall holds {rules} rules and {elements} set elements, not \
             {want_rules} and {n}"
        ));
    }

    let start = Instant::now();
    scratch.remove_netns(&restored)?;
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

/// The number of regular chains N rules are spread over.
fn chains(n: usize) -> usize {
    n.clamp(1, CHAINS)
}

/// Element `i` of the set: 10.200.0.0 upwards.
fn element(i: usize) -> String {
    format!("10.{}.{}.{}", 200 + i / 65_536, (i / 256) % 256, i % 256)
}

/// The ruleset, in nft's syntax.
fn ruleset_text(n: usize) -> String {
    let chains = chains(n);
    let mut out = String::from("table inet netcr_bench {\n");
    out.push_str("\tset blocked {\n\t\ttype ipv4_addr\n");
    if n > 0 {
        out.push_str("\t\telements = { ");
        let elements: Vec<String> = (0..n).map(element).collect();
        out.push_str(&elements.join(", "));
        out.push_str(" }\n");
    }
    out.push_str("\t}\n");
    out.push_str(
        "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\
         \t\tip saddr @blocked drop\n",
    );
    for c in 0..chains {
        let _ = writeln!(out, "\t\tjump svc{c}");
    }
    out.push_str("\t}\n");
    for c in 0..chains {
        let _ = writeln!(out, "\tchain svc{c} {{");
        for r in (c..n).step_by(chains) {
            let _ = writeln!(
                out,
                "\t\ttcp dport {} ip saddr 10.{}.{}.0/24 counter accept",
                1024 + r % 60_000,
                r / 256 % 256,
                r % 256
            );
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// Rules and set elements in `nft -j list ruleset` output.
fn count_rules_and_elements(json: &str) -> Result<(usize, usize)> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("nft -j printed no JSON: {e}"))?;
    let objects = value["nftables"]
        .as_array()
        .ok_or("nft -j printed no \"nftables\" array")?;
    let mut rules = 0;
    let mut elements = 0;
    for object in objects {
        if object.get("rule").is_some() {
            rules += 1;
        }
        if let Some(elem) = object.get("set").and_then(|s| s.get("elem")) {
            elements += elem.as_array().map_or(0, Vec::len);
        }
    }
    Ok((rules, elements))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::small(10, 10)]
    #[case::issue_size(10_000, 100)]
    fn the_ruleset_holds_n_rules_in_its_chains_and_n_elements(
        #[case] n: usize,
        #[case] chains_made: usize,
    ) {
        let text = ruleset_text(n);
        assert_eq!(chains(n), chains_made);
        assert_eq!(text.matches(" counter accept").count(), n);
        assert_eq!(text.matches("\tchain svc").count(), chains_made);
        assert_eq!(text.matches("jump svc").count(), chains_made);
        let elements = text.lines().find(|l| l.contains("elements = ")).unwrap();
        assert_eq!(elements.matches(", ").count() + 1, n);
        let distinct: std::collections::HashSet<_> = (0..n).map(element).collect();
        assert_eq!(distinct.len(), n);
    }

    #[rstest]
    fn rules_and_elements_are_counted_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {}}, {"table": {}},
            {"set": {"name": "blocked", "elem": ["10.200.0.0", "10.200.0.1"]}},
            {"chain": {}}, {"rule": {}}, {"rule": {}}, {"rule": {}}]}"#;
        assert_eq!(count_rules_and_elements(json).unwrap(), (3, 2));
        assert!(count_rules_and_elements("not json").is_err());
    }
}

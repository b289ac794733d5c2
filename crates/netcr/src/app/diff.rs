//! `netcr diff`: has a namespace drifted from its image? The image is held against the
//! namespace with the restore's own verification ([`netcr_core::compare`]), so "identical"
//! here means "a restore of this image would verify against this namespace"; what the
//! namespace holds beyond the image comes from a dump of it ([`netcr_core::compare::extras`]).
//! Two images are compared object by object, in `netcr show`'s words.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use netcr_core::compare::{self, Expected};
use netcr_core::{DumpOptions, Family};
use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::{Connector, Kernel, Netns, Protocol, RtnlExt};
use serde::Serialize;

use super::{AppError, NetnsSource, TargetError};

/// How one object differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The image has it, the other side does not.
    Missing,
    /// The other side has it, the image does not.
    Added,
    /// Both have it; a field differs.
    Changed,
    /// A difference that names no single field (an order, a rule's selectors).
    Other,
}

/// One difference, grouped by [`Self::object`] when printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The device it is about, or `routes`, `rules`, `nexthops`, `sysctls`, `nf_tables`,
    /// `namespace`.
    pub object: String,
    /// What kind of difference.
    pub change: Change,
    /// What differs, without the object: `mtu`, `address 10.0.0.1/24`, `link`.
    pub what: String,
    /// The image's value of a changed field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The other side's value of a changed field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
    /// The comparison's own sentence, as a failed restore's verification would say it.
    pub text: String,
}

/// What `netcr diff` found.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The image compared.
    pub image: PathBuf,
    /// The image namespace's label.
    pub label: String,
    /// What it was compared with: `netns NAME`, `image DIR`.
    pub against: String,
    /// Every difference; none when identical.
    pub differences: Vec<Difference>,
}

impl DiffReport {
    /// Whether the two sides hold the same state.
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }

    /// The differences grouped by object, as `diff -u` marks lines: `-` the image's, `+` the
    /// other side's, `!` a difference of neither alone; nothing when identical.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.identical() {
            return out;
        }
        out.push_str(&format!(
            "--- image {} (netns \"{}\")\n+++ {}\n",
            self.image.display(),
            self.label,
            self.against
        ));
        let mut groups: Vec<&str> = Vec::new();
        for d in &self.differences {
            if !groups.contains(&d.object.as_str()) {
                groups.push(&d.object);
            }
        }
        for group in groups {
            out.push_str(&format!("{group}\n"));
            for d in self.differences.iter().filter(|d| d.object == group) {
                match d.change {
                    Change::Missing => out.push_str(&format!("-   {}\n", d.what)),
                    Change::Added => out.push_str(&format!("+   {}\n", d.what)),
                    Change::Changed => {
                        let value = |v: &Option<String>| match v.as_deref() {
                            Some("") | None => "(none)".to_string(),
                            Some(v) => v.to_string(),
                        };
                        out.push_str(&format!("-   {} {}\n", d.what, value(&d.image)));
                        // Some comparisons name the image's value only.
                        if d.other.is_some() {
                            out.push_str(&format!("+   {} {}\n", d.what, value(&d.other)));
                        }
                    }
                    Change::Other => out.push_str(&format!("!   {}\n", d.what)),
                }
            }
        }
        out
    }
}

/// Splits a comparison's subject into its group and the rest: `dev0: mtu` is about `dev0`,
/// `route 10.0.0.0/8 ...` about `routes`.
fn group_of(subject: &str) -> (String, String) {
    for (prefix, group) in [
        ("route ", "routes"),
        ("default rule ", "rules"),
        ("rule ", "rules"),
        ("sysctl ", "sysctls"),
        ("nexthop ", "nexthops"),
        ("nf_tables: ", "nf_tables"),
    ] {
        if let Some(rest) = subject.strip_prefix(prefix) {
            let rest = if group == "rules" && prefix == "default rule " {
                subject
            } else {
                rest
            };
            return (group.to_string(), rest.to_string());
        }
    }
    match subject.split_once(": ") {
        Some((dev, rest)) if !dev.contains(' ') => (dev.to_string(), rest.to_string()),
        _ => ("namespace".to_string(), subject.to_string()),
    }
}

/// [`group_of`] for a whole object: a bare device name is its link.
fn subject_of(subject: &str) -> (String, String) {
    if subject.contains(' ') {
        group_of(subject)
    } else {
        (subject.to_string(), "link".to_string())
    }
}

/// One line of [`compare::compare`] (the image's side: what the namespace lacks or holds
/// otherwise) as a [`Difference`].
fn from_comparison(text: &str) -> Difference {
    // `SUBJECT: image A, kernel B`, where A may hold commas (an address order), or
    // `dev0: sysctl net.ipv6.conf.dev0.mtu: image 1500`, the image's value only.
    if let Some((subject, values)) = text.rsplit_once(": image ") {
        let (image, kernel) = match values.rsplit_once(", kernel ") {
            Some((image, kernel)) => (image, Some(kernel.to_string())),
            None => (values, None),
        };
        let (object, what) = group_of(subject);
        return Difference {
            object,
            change: Change::Changed,
            what,
            image: Some(image.to_string()),
            other: kernel,
            text: text.to_string(),
        };
    }
    let missing = text
        .strip_suffix(" is missing")
        .or_else(|| text.strip_suffix(" missing"));
    let (object, what, change) = match missing {
        Some(subject) => {
            let (object, what) = subject_of(subject.trim_end_matches(':'));
            (object, what, Change::Missing)
        }
        None => {
            let (object, what) = group_of(text);
            (object, what, Change::Other)
        }
    };
    Difference {
        object,
        change,
        what,
        image: None,
        other: None,
        text: text.to_string(),
    }
}

/// One line of [`compare::extras`] (what the other side holds beyond the image).
fn from_extra(text: &str) -> Difference {
    let (object, what) = match text.split_once(": not in the image, kernel ") {
        // A sysctl: `sysctl NAME: not in the image, kernel "V"`.
        Some((subject, value)) => {
            let (object, what) = group_of(subject);
            (object, format!("{what} {value}"))
        }
        None => subject_of(
            text.trim_end_matches(" not in the image")
                .trim_end_matches(':'),
        ),
    };
    Difference {
        object,
        change: Change::Added,
        what,
        image: None,
        other: None,
        text: text.to_string(),
    }
}

/// The namespace of `image` that `label` names (any, for an image of one namespace).
fn pick<'i>(image: &'i Image, label: Option<&str>) -> Result<&'i NetnsImage, AppError> {
    let labels = || {
        image
            .namespaces
            .iter()
            .map(|n| n.netns.label.clone())
            .collect::<Vec<_>>()
    };
    match label {
        None if image.namespaces.len() == 1 => Ok(&image.namespaces[0]),
        None => Err(TargetError::MappingRequired { labels: labels() }.into()),
        Some(old) => image
            .namespaces
            .iter()
            .find(|n| n.netns.label == old)
            .ok_or_else(|| {
                TargetError::NoSuchNamespace {
                    old: old.to_string(),
                    labels: labels(),
                }
                .into()
            }),
    }
}

/// Compares the image in `dir` (its namespace `label`, needed for an image of several) with
/// the live namespace `source`.
pub fn diff_netns(
    dir: &Path,
    label: Option<&str>,
    source: &NetnsSource,
) -> Result<DiffReport, AppError> {
    let image = super::read_image(dir)?;
    let want = pick(&image, label)?;
    let Some(netns) = super::open_sources(std::slice::from_ref(source))?.pop() else {
        return Err(TargetError::Empty.into());
    };
    let caller = Netns::current_thread()?;
    let differences = diff_live(want, &netns, &caller)?;
    Ok(DiffReport {
        image: dir.to_path_buf(),
        label: want.netns.label.clone(),
        against: format!("netns {}", netns.label()),
        differences,
    })
}

/// The differences between `want` and the live namespace `netns`, seen from `caller`.
pub fn diff_live(
    want: &NetnsImage,
    netns: &Netns,
    caller: &Netns,
) -> Result<Vec<Difference>, AppError> {
    let mut kernel = Kernel;
    let mut rtnl = kernel.connect(netns, netns.label())?;
    let caller_links = kernel.connect(caller, "caller")?.dump_links()?;
    let mut observed = compare::observe(want, netns, &mut *rtnl, caller_links, caller)?;
    if !want.nftables.is_empty() {
        let mut nf = kernel.connect_raw(netns, Protocol::Netfilter, netns.label())?;
        observed.nftables = compare::observe_nftables(want, &mut *nf)?;
    }
    if !want.xfrm.is_empty() {
        let names = netcr_core::state::names_by_index(&observed.links);
        let mut xfrm = kernel.connect_raw(netns, Protocol::Xfrm, netns.label())?;
        observed.xfrm = compare::observe_xfrm(want, &mut *xfrm, &names)?;
    }
    // A link on a device outside is compared with the device it had at the dump.
    let outer_of: HashMap<String, String> = want
        .links
        .iter()
        .filter_map(|l| match l.lower.as_ref().and_then(|r| r.target.as_ref()) {
            Some(v1::link_ref::Target::External(e)) => Some((l.name.clone(), e.name_hint.clone())),
            _ => None,
        })
        .collect();
    let expected = Expected {
        outer_of,
        ..Expected::default()
    };
    let comparison = compare::compare(want, &observed, &expected)?;
    let mut out: Vec<Difference> = comparison
        .differences
        .iter()
        .map(|d| from_comparison(d))
        .collect();
    // What the namespace holds beyond the image: a dump of it. Every family the dump
    // refuses is left out of it (so the diff never fails on one); what it finds of those the
    // image does not know of is said.
    let options = DumpOptions {
        skip_unknown: true,
        leave_out: Family::refused().collect::<BTreeSet<_>>(),
    };
    let (live, _) = netcr_core::dump(std::slice::from_ref(netns), caller, &options)?;
    let Some(live) = live.namespaces.first() else {
        return Ok(out);
    };
    out.extend(compare::extras(want, live).iter().map(|e| from_extra(e)));
    let known: Vec<&str> = want
        .netns
        .left_out
        .iter()
        .map(|l| l.family.as_str())
        .collect();
    for l in &live.netns.left_out {
        if !known.contains(&l.family.as_str()) {
            out.push(Difference {
                object: "namespace".into(),
                change: Change::Added,
                what: format!("{} ({} found: {})", l.family, l.count, l.found.join(", ")),
                image: None,
                other: None,
                text: format!(
                    "{}: {} found, which the image does not hold: {}",
                    l.family,
                    l.count,
                    l.found.join(", ")
                ),
            });
        }
    }
    Ok(out)
}

/// Compares the image in `dir` with the image in `other` (their namespaces `label`, needed
/// for images of several): object by object, in `netcr show`'s words, as there is no kernel
/// to ask. Links by name, field by field; addresses, routes, rules, nexthops and namespace
/// sysctls by identity ([`compare::extras`] both ways) and sysctls by value; the firewall
/// as a whole.
pub fn diff_images(dir: &Path, other: &Path, label: Option<&str>) -> Result<DiffReport, AppError> {
    let a_image = super::read_image(dir)?;
    let b_image = super::read_image(other)?;
    let a = pick(&a_image, label)?;
    let b = pick(&b_image, label)?;
    Ok(DiffReport {
        image: dir.to_path_buf(),
        label: a.netns.label.clone(),
        against: format!("image {}", other.display()),
        differences: image_differences(a, b),
    })
}

/// The differences between two images' namespaces, `a` the image's side.
fn image_differences(a: &NetnsImage, b: &NetnsImage) -> Vec<Difference> {
    let mut out = Vec::new();
    let b_links: HashMap<&str, &v1::Link> = b.links.iter().map(|l| (l.name.as_str(), l)).collect();
    for link in &a.links {
        let Some(other) = b_links.get(link.name.as_str()) else {
            out.push(from_comparison(&format!("{}: missing", link.name)));
            continue;
        };
        out.extend(
            netcr_core::verify::devconf_diffs(link, other)
                .iter()
                .map(|d| from_comparison(d)),
        );
        let (want, got) = (
            super::render::link_json(link),
            super::render::link_json(other),
        );
        let (Some(want), Some(got)) = (want.as_object(), got.as_object()) else {
            continue;
        };
        for (field, value) in want {
            let theirs = got.get(field).cloned().unwrap_or_default();
            if field != "ifindex" && *value != theirs {
                let text = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                out.push(from_comparison(&format!(
                    "{}: {field}: image {}, kernel {}",
                    link.name,
                    text(value),
                    text(&theirs)
                )));
            }
        }
    }
    // What `a` holds and `b` does not (links are said above, with their fields).
    for e in compare::extras(b, a) {
        let mut d = from_extra(&e);
        if d.what != "link" {
            d.change = Change::Missing;
            d.text = format!(
                "only in the image: {}",
                e.trim_end_matches(" not in the image")
            );
            out.push(d);
        }
    }
    out.extend(compare::extras(a, b).iter().map(|e| from_extra(e)));
    let b_sysctls: HashMap<&str, &str> = b
        .netns
        .sysctls
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_str()))
        .collect();
    for s in &a.netns.sysctls {
        match b_sysctls.get(s.name.as_str()) {
            Some(v) if *v != s.value => out.push(from_comparison(&format!(
                "sysctl {}: image {:?}, kernel {v:?}",
                s.name, s.value
            ))),
            _ => {}
        }
    }
    if a.nftables != b.nftables {
        out.push(from_comparison("nf_tables: the rulesets differ"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(
        object: &str,
        change: Change,
        what: &str,
        image: Option<&str>,
        other: Option<&str>,
    ) -> (String, Change, String, Option<String>, Option<String>) {
        (
            object.into(),
            change,
            what.into(),
            image.map(Into::into),
            other.map(Into::into),
        )
    }

    fn parts(x: Difference) -> (String, Change, String, Option<String>, Option<String>) {
        (x.object, x.change, x.what, x.image, x.other)
    }

    /// Each sentence the verification says is grouped by its device (or object family) and
    /// split into the image's value and the namespace's.
    #[test]
    fn comparison_lines_become_grouped_differences() {
        use Change::*;
        let cases = [
            ("d0: mtu: image 1500, kernel 1400", d("d0", Changed, "mtu", Some("1500"), Some("1400"))),
            ("d0: missing", d("d0", Missing, "link", None, None)),
            ("d0: address 10.0.0.1/24 missing", d("d0", Missing, "address 10.0.0.1/24", None, None)),
            (
                "d0: IPv4 address order: image [10.0.0.1/24, 10.0.0.2/24], kernel [10.0.0.2/24, 10.0.0.1/24]",
                d("d0", Changed, "IPv4 address order", Some("[10.0.0.1/24, 10.0.0.2/24]"), Some("[10.0.0.2/24, 10.0.0.1/24]")),
            ),
            ("route IPv4 10.9.0.0/16 via 10.0.0.9 dev d0 table 254 missing", d("routes", Missing, "IPv4 10.9.0.0/16 via 10.0.0.9 dev d0 table 254", None, None)),
            ("sysctl net.ipv4.ip_forward: image \"1\", kernel \"0\"", d("sysctls", Changed, "net.ipv4.ip_forward", Some("\"1\""), Some("\"0\""))),
            ("nexthop 7: missing", d("nexthops", Missing, "7", None, None)),
            ("d0: sysctl net.ipv6.conf.d0.mtu: image 1500", d("d0", Changed, "sysctl net.ipv6.conf.d0.mtu", Some("1500"), None)),
            (
                "d0: the kernel's route to 10.7.0.0/24 for address 10.7.0.1/24 is missing",
                d("d0", Missing, "the kernel's route to 10.7.0.0/24 for address 10.7.0.1/24", None, None),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parts(from_comparison(text)), want, "{text}");
        }
        let extras = [
            ("d1: not in the image", d("d1", Added, "link", None, None)),
            (
                "d0: address 10.0.0.3/24 not in the image",
                d("d0", Added, "address 10.0.0.3/24", None, None),
            ),
            (
                "route IPv4 10.8.0.0/16 dev d0 table 254 not in the image",
                d(
                    "routes",
                    Added,
                    "IPv4 10.8.0.0/16 dev d0 table 254",
                    None,
                    None,
                ),
            ),
            (
                "sysctl net.x: not in the image, kernel \"1\"",
                d("sysctls", Added, "net.x \"1\"", None, None),
            ),
        ];
        for (text, want) in extras {
            assert_eq!(parts(from_extra(text)), want, "{text}");
        }
    }
}

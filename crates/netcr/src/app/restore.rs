//! Restoring an image into namespaces: reading and validating it, picking a target for each of
//! its namespaces, and the restore itself.

use std::fmt;
use std::path::{Path, PathBuf};

use netcr_core::{RestoreOptions, RestoreReport, RestoreTarget};
use netcr_image::{Image, ImageDir};
use netcr_netlink::Netns;

use super::faults::FaultInjection;
use super::{AppError, TargetError};

/// A restore target as the user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A named namespace: created when it does not exist, deleted again if the restore fails.
    Named(String),
    /// An existing namespace file, e.g. `/proc/PID/ns/net`.
    Path(PathBuf),
}

/// One target, with the label (at dump time) of the image's namespace it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// The image namespace's label (`OLD` of `OLD=NEW`); `None` fits only an image of one
    /// namespace.
    pub label: Option<String>,
    /// Where it goes.
    pub target: Target,
}

/// Which namespace each of the image's namespaces is restored into.
#[derive(Debug)]
pub enum Targets {
    /// Already opened targets, one per namespace of the image in its order (the CRIU hook
    /// and the demo know exactly where their one namespace goes).
    Opened(Vec<RestoreTarget>),
    /// Targets matched to the image's namespaces by label ([`TargetSpec::label`]); one
    /// without a label for an image of one namespace.
    Mapped(Vec<TargetSpec>),
}

/// What a restore did in one namespace.
#[derive(Debug, Clone)]
pub struct NetnsRestored {
    /// The core's report: counts, and what the user should know.
    pub report: RestoreReport,
}

impl NetnsRestored {
    /// Everything to warn about: the links that did not keep their ifindex, then the rest.
    pub fn warnings(&self) -> impl Iterator<Item = &str> {
        self.report
            .ifindex_not_kept
            .iter()
            .chain(&self.report.warnings)
            .map(String::as_str)
    }
}

impl fmt::Display for NetnsRestored {
    /// `restored netns "LABEL" (created): N links, ... (N requests)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        write!(
            f,
            "restored netns \"{}\"{}: {} links, {} addresses, {} routes, {} rules, {} neighbours, {} nexthops",
            r.netns,
            if r.created_netns { " (created)" } else { "" },
            r.links,
            r.addresses,
            r.routes,
            r.rules,
            r.neighbours,
            r.nexthops,
        )?;
        if r.nft_tables > 0 {
            write!(f, ", {} nf_tables tables", r.nft_tables)?;
        }
        if r.xfrm > 0 {
            write!(f, ", {} xfrm states and policies", r.xfrm)?;
        }
        if r.tc > 0 {
            write!(f, ", {} tc objects", r.tc)?;
        }
        if !r.adopted.is_empty() {
            write!(f, "; adopted {}", r.adopted.join(", "))?;
        }
        if !r.already_present.is_empty() {
            write!(f, "; {} there already", r.already_present.len())?;
        }
        write!(f, " ({} requests)", r.requests)
    }
}

/// Reads the image in `dir` and validates it: a damaged or hostile image is refused for what
/// it is before anything looks at its namespaces. For showing an image, which anyone who can
/// read it may do; a restore opens it with [`open_for_restore`] first.
pub fn read_image(dir: &Path) -> Result<Image, AppError> {
    read_image_in(&ImageDir::open(dir)?)
}

/// Reads and validates the image in an opened directory (see [`read_image`]). Its files are
/// never read through a symbolic link out of it.
pub fn read_image_in(dir: &ImageDir) -> Result<Image, AppError> {
    let image = dir.read_image()?;
    netcr_core::validate(&image, dir.path())?;
    Ok(image)
}

/// Opens the image directory `dir` for a restore ([`require_private`]).
pub fn open_for_restore(dir: &Path) -> Result<ImageDir, AppError> {
    require_private(ImageDir::open(dir)?)
}

/// Insists that nobody but root and this process's user can change the image: the directory
/// and every file read from it owned by one of them and not writable by group or others, as
/// CRIU expects of its own images. Whoever can change an image decides what a restore builds;
/// the error says what is wrong and the chmod or chown that fixes it.
pub fn require_private(dir: ImageDir) -> Result<ImageDir, AppError> {
    Ok(dir.require_private(nix::unistd::geteuid().as_raw())?)
}

/// Reads the image in `dir` and restores it ([`open_for_restore`], [`read_image_in`], then
/// [`restore_image`]).
pub fn restore_from_dir(
    dir: &Path,
    targets: Targets,
    options: &RestoreOptions,
) -> Result<Vec<NetnsRestored>, AppError> {
    let image = read_image_in(&open_for_restore(dir)?)?;
    restore_image(&image, dir, targets, options)
}

/// Restores every namespace of `image` (read from `dir`, which names it in messages) into
/// its target; a failure anywhere rolls back everything. In the binary's test mode
/// ([`FaultInjection`]) every request is numbered and the one named fails or pauses.
pub fn restore_image(
    image: &Image,
    dir: &Path,
    targets: Targets,
    options: &RestoreOptions,
) -> Result<Vec<NetnsRestored>, AppError> {
    let targets = match targets {
        Targets::Opened(targets) => targets,
        Targets::Mapped(specs) => pick_targets(image, &specs)?,
    };
    let caller = Netns::current_thread()?;
    // Every restore of the binary keeps a journal, so that a killed one can be recovered.
    let mut options = options.clone();
    options.run_dir.get_or_insert_with(super::run_dir);
    let reports = match FaultInjection::from_env(options.cancel.clone()) {
        Some(mut faults) => netcr_core::restore::restore_all_with(
            image,
            dir,
            targets,
            &caller,
            &options,
            &mut faults,
        )?,
        None => netcr_core::restore::restore_all(image, dir, targets, &caller, &options)?,
    };
    Ok(reports
        .into_iter()
        .map(|report| {
            if !report.created_via_nsid.is_empty() {
                log::info!(
                    "created from the target namespace with IFLA_LINK_NETNSID: {}",
                    report.created_via_nsid.join(", ")
                );
            }
            for what in &report.already_present {
                log::info!(
                    "netns \"{}\": there already, left as it is: {what}",
                    report.netns
                );
            }
            if !report.created_then_moved.is_empty() {
                log::info!(
                    "created beside the lower device and moved in with IFLA_NEW_IFINDEX: {}",
                    report.created_then_moved.join(", ")
                );
            }
            NetnsRestored { report }
        })
        .collect())
}

fn open(target: &Target) -> Result<RestoreTarget, AppError> {
    Ok(match target {
        Target::Named(name) if !name.is_empty() => RestoreTarget::Named(name.clone()),
        Target::Path(path) if !path.as_os_str().is_empty() => {
            RestoreTarget::Existing(Netns::open_path(path)?)
        }
        _ => return Err(TargetError::Empty.into()),
    })
}

/// Matches `specs` to the image's namespaces: by the label each had at dump time, or a single
/// unlabelled spec for an image of one namespace. Opens each target, in image order.
fn pick_targets(image: &Image, specs: &[TargetSpec]) -> Result<Vec<RestoreTarget>, AppError> {
    let labels: Vec<&str> = image
        .namespaces
        .iter()
        .map(|n| n.netns.label.as_str())
        .collect();
    let owned = || labels.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    if let (
        [_],
        [TargetSpec {
            label: None,
            target,
        }],
    ) = (labels.as_slice(), specs)
    {
        return Ok(vec![open(target)?]);
    }
    let mut targets = Vec::new();
    for label in &labels {
        let matching: Vec<&TargetSpec> = specs
            .iter()
            .filter(|s| s.label.as_deref() == Some(*label))
            .collect();
        match matching.as_slice() {
            [spec] => targets.push(open(&spec.target)?),
            [] => {
                return Err(TargetError::Unmapped {
                    labels: owned(),
                    label: label.to_string(),
                }
                .into())
            }
            _ => return Err(TargetError::MappedTwice(label.to_string()).into()),
        }
    }
    if let Some(spec) = specs
        .iter()
        .find(|s| !s.label.as_deref().is_some_and(|l| labels.contains(&l)))
    {
        return Err(match &spec.label {
            Some(old) => TargetError::NoSuchNamespace {
                old: old.clone(),
                labels: owned(),
            },
            None => TargetError::MappingRequired { labels: owned() },
        }
        .into());
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use netcr_image::{v1, NetnsImage};

    use super::*;

    fn image(labels: &[&str]) -> Image {
        Image {
            namespaces: labels
                .iter()
                .zip(0..)
                .map(|(label, id)| NetnsImage {
                    netns: v1::Netns {
                        id,
                        label: label.to_string(),
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn named(label: Option<&str>, name: &str) -> TargetSpec {
        TargetSpec {
            label: label.map(str::to_string),
            target: Target::Named(name.to_string()),
        }
    }

    fn names(targets: Vec<RestoreTarget>) -> Vec<String> {
        targets
            .into_iter()
            .map(|t| match t {
                RestoreTarget::Named(n) => n,
                RestoreTarget::Existing(ns) => ns.label().to_string(),
            })
            .collect()
    }

    fn refusal(image: &Image, specs: &[TargetSpec]) -> String {
        match pick_targets(image, specs) {
            Err(e @ AppError::Targets(_)) => e.to_string(),
            other => panic!("expected a target error, got {other:?}"),
        }
    }

    #[test]
    fn a_bare_target_fits_an_image_of_one_namespace() {
        let one = image(&["a"]);
        let targets = pick_targets(&one, &[named(None, "new")]).unwrap();
        assert_eq!(names(targets), ["new"]);
        let targets = pick_targets(&one, &[named(Some("a"), "new")]).unwrap();
        assert_eq!(names(targets), ["new"]);
    }

    #[test]
    fn targets_follow_the_image_order_whatever_the_order_given() {
        let two = image(&["a", "b"]);
        let specs = [named(Some("b"), "nb"), named(Some("a"), "na")];
        assert_eq!(names(pick_targets(&two, &specs).unwrap()), ["na", "nb"]);
    }

    #[test]
    fn targets_that_do_not_fit_are_refused_naming_the_namespace() {
        let (a, b) = (named(Some("a"), "na"), named(Some("b"), "nb"));
        let cases: Vec<(Vec<TargetSpec>, &str)> = vec![
            (
                vec![a.clone()],
                "the image holds the namespaces a, b: map each with --netns OLD=NEW (no mapping for \"b\")",
            ),
            (
                vec![a.clone(), named(Some("a"), "n2"), b.clone()],
                "namespace \"a\" is mapped twice",
            ),
            (
                vec![a.clone(), b.clone(), named(Some("c"), "nc")],
                "the image has no namespace \"c\" (it holds a, b)",
            ),
            (
                vec![a, b, named(None, "x")],
                "the image holds the namespaces a, b: map each with --netns OLD=NEW",
            ),
        ];
        let two = image(&["a", "b"]);
        for (specs, expected) in cases {
            assert_eq!(refusal(&two, &specs), expected, "{specs:?}");
        }
        let empty_path = TargetSpec {
            label: None,
            target: Target::Path(PathBuf::new()),
        };
        for empty in [named(None, ""), empty_path] {
            assert_eq!(
                refusal(&image(&["a"]), &[empty]),
                "an empty namespace name or path"
            );
        }
    }
}

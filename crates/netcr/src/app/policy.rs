//! The host's policy: where a restored namespace may attach to the host when only the image
//! says so.
//!
//! A checkpoint travels between nodes and anyone can hand one over, so an image is input, not
//! the host's word. Where a link's lower device or peer lies outside the namespace, a mapping
//! the caller gives (`--external`, `NETCR_EXTERNAL`, the node-wide mapping file) is always
//! honoured; one that comes from the image (its own mapping file, the devices recorded at dump
//! time) only where this policy allows the host device. Without a policy file, none is.
//!
//! The file (`/etc/netcr/policy`) holds one rule a line; `#` starts a comment (at the start of
//! a line or after a blank); `*` in a name matches any run of characters:
//!
//! ```text
//! lower DEVICE [KIND...]   links of these kinds (every kind, when none is listed) may sit on
//!                          the host device DEVICE: macvlan, macvtap, ipvlan, vlan, the
//!                          underlay of a vxlan
//! outer NAME               a veth's host end may be created under the name NAME
//! bridge BRIDGE            a veth's host end may join the bridge BRIDGE
//! ```
//!
//! A veth whose image asks for a bridge needs both its `outer` and its `bridge` line.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netcr_core::{driver_for, ExternalMapping, LowerRole};

/// The host policy's file, unless a front end names another.
pub const POLICY_FILE: &str = "/etc/netcr/policy";

/// Why a host file (the policy, the node-wide mappings) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file exists but cannot be read.
    #[error("reading {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Someone other than root and this process's user could change the file, and with it
    /// what restored namespaces attach to.
    #[error(
        "{}: {problem}; whoever can change it decides what restored namespaces attach to, so it is refused (fix: {fix})",
        .path.display()
    )]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. `writable by others (mode 0666)`.
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// A line of the policy is malformed.
    #[error("{}, line {line}: {reason}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads a file of the host's own configuration (the policy, the node-wide mappings); `None`
/// when there is none. Refused when someone other than root and this process's user owns it
/// or can write it: its contents are taken as the host's word.
pub fn read_host_file(path: &Path) -> Result<Option<Vec<u8>>, PolicyError> {
    let read_error = |source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let meta = file.metadata().map_err(read_error)?;
    let uid = nix::unistd::geteuid().as_raw();
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    let refuse = |problem: String, fix: String| PolicyError::NotPrivate {
        path: path.to_path_buf(),
        problem,
        fix,
    };
    if owner != 0 && owner != uid {
        return Err(refuse(
            format!("owned by uid {owner}, not by root"),
            format!("chown root {}", path.display()),
        ));
    }
    if mode & 0o022 != 0 {
        return Err(refuse(
            format!("writable by others than its owner (mode {mode:04o})"),
            format!("chmod go-w {}", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_error)?;
    Ok(Some(bytes))
}

/// `line` without its comment: `#` at the start of the line or after a blank starts one (`#`
/// may occur inside device names).
pub fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// A device-name pattern: `*` matches any run of characters (none included), every other
/// character itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Parses a pattern: what a device name may hold (no `/`, `:`, blank or NUL; at most 15
    /// bytes besides the `*`s).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let literal = text.bytes().filter(|&b| b != b'*').count();
        if text.is_empty()
            || literal > 15
            || text
                .bytes()
                .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
        {
            return Err(format!(
                "\"{text}\" is not a device name or pattern (at most 15 bytes, no '/' or ':'; '*' matches any run)"
            ));
        }
        Ok(Pattern(text.to_string()))
    }

    /// Does `name` match?
    pub fn matches(&self, name: &str) -> bool {
        let (p, s) = (self.0.as_bytes(), name.as_bytes());
        let (mut pi, mut si) = (0, 0);
        // The last `*` seen and where in `name` it started matching, to backtrack to.
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if pi < p.len() && p[pi] == s[si] {
                pi += 1;
                si += 1;
            } else if let Some((star_at, from)) = star {
                // Let that `*` take one more character.
                star = Some((star_at, from + 1));
                pi = star_at + 1;
                si = from + 1;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one rule of the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `lower DEVICE [KIND...]`: links of these kinds (all, when empty) on host devices
    /// matching DEVICE.
    Lower {
        /// The host devices.
        device: Pattern,
        /// The kinds; empty for every kind.
        kinds: Vec<String>,
    },
    /// `outer NAME`: a veth's host end created under a name matching NAME.
    Outer(Pattern),
    /// `bridge BRIDGE`: a veth's host end on a bridge matching BRIDGE.
    Bridge(Pattern),
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Lower { device, kinds } => {
                write!(f, "lower {device}")?;
                for kind in kinds {
                    write!(f, " {kind}")?;
                }
                Ok(())
            }
            Grant::Outer(name) => write!(f, "outer {name}"),
            Grant::Bridge(bridge) => write!(f, "bridge {bridge}"),
        }
    }
}

/// One rule, with its line in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The line, from 1.
    pub line: usize,
    /// What it allows.
    pub grant: Grant,
}

/// The host's policy, as read from its file. An absent file is a policy that allows nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    path: PathBuf,
    present: bool,
    rules: Vec<Rule>,
}

/// The policy lines that allow an attachment, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// One line per thing asked for (the device; for a veth on a bridge, also the bridge).
    pub lines: Vec<usize>,
}

/// An attachment the policy does not allow, with the lines that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the host policy {} does not allow it{}; {} there would",
    .policy.display(),
    if *.present { "" } else { " (there is no such file)" },
    lines_phrase(.missing)
)]
pub struct Refusal {
    /// The policy's file.
    pub policy: PathBuf,
    /// Whether that file exists.
    pub present: bool,
    /// The lines to add, e.g. `lower eth0 macvlan`.
    pub missing: Vec<String>,
}

/// `the line "a"`, `the lines "a" and "b"`.
fn lines_phrase(lines: &[String]) -> String {
    let quoted: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
    match quoted.as_slice() {
        [one] => format!("the line {one}"),
        _ => format!("the lines {}", quoted.join(" and ")),
    }
}

impl Policy {
    /// Reads the policy at `path` ([`read_host_file`]: owned by root, not writable by
    /// others); an absent file is a policy that allows nothing.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        match read_host_file(path)? {
            Some(bytes) => Policy::parse(path, &bytes),
            None => Ok(Policy {
                path: path.to_path_buf(),
                present: false,
                rules: Vec::new(),
            }),
        }
    }

    /// Parses the contents of the policy file `path`. Errors name the file and the line.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let syntax = |reason: String| PolicyError::Syntax {
                path: path.to_path_buf(),
                line: n + 1,
                reason,
            };
            let line = std::str::from_utf8(raw).map_err(|_| syntax("not valid UTF-8".into()))?;
            let words: Vec<&str> = strip_comment(line).split_whitespace().collect();
            let grant = match words.as_slice() {
                [] => continue,
                ["lower", device, kinds @ ..] => Grant::Lower {
                    device: Pattern::parse(device).map_err(syntax)?,
                    kinds: kinds
                        .iter()
                        .map(|k| lower_kind(k))
                        .collect::<Result<_, _>>()
                        .map_err(syntax)?,
                },
                ["outer", name] => Grant::Outer(Pattern::parse(name).map_err(syntax)?),
                ["bridge", bridge] => Grant::Bridge(Pattern::parse(bridge).map_err(syntax)?),
                [rule @ ("lower" | "outer" | "bridge")] => {
                    return Err(syntax(format!("\"{rule}\" needs a device name or pattern")))
                }
                [rule @ ("outer" | "bridge"), _, extra, ..] => {
                    return Err(syntax(format!(
                        "\"{rule}\" takes one name or pattern (\"{extra}\" is one too many)"
                    )))
                }
                [other, ..] => {
                    return Err(syntax(format!(
                        "unknown rule \"{other}\" (a line is \"lower DEVICE [KIND...]\", \"outer NAME\" or \"bridge BRIDGE\")"
                    )))
                }
            };
            rules.push(Rule { line: n + 1, grant });
        }
        Ok(Policy {
            path: path.to_path_buf(),
            present: true,
            rules,
        })
    }

    /// The policy's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists.
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Does the policy allow what an image asks for, `mapping` of a link whose kind uses its
    /// outside device as `role`? A lower device needs a `lower` line for it and the kind, a
    /// veth's host end an `outer` line for its name, and a bridge a `bridge` line.
    pub fn check(&self, mapping: &ExternalMapping, role: LowerRole) -> Result<Allowed, Refusal> {
        let mut asked: Vec<(Grant, &str)> = Vec::new();
        let own = |name: &str| Pattern(name.to_string());
        asked.push(match role {
            LowerRole::Lower => (
                Grant::Lower {
                    device: own(&mapping.outer),
                    kinds: vec![mapping.kind.clone()],
                },
                &mapping.outer,
            ),
            LowerRole::Peer => (Grant::Outer(own(&mapping.outer)), &mapping.outer),
        });
        if let Some(bridge) = &mapping.bridge {
            asked.push((Grant::Bridge(own(bridge)), bridge));
        }
        let mut lines = Vec::new();
        let mut missing = Vec::new();
        for (grant, name) in asked {
            match self
                .rules
                .iter()
                .find(|r| grants(&r.grant, &grant, name, &mapping.kind))
            {
                Some(rule) => lines.push(rule.line),
                None => missing.push(grant.to_string()),
            }
        }
        if missing.is_empty() {
            Ok(Allowed { lines })
        } else {
            Err(Refusal {
                policy: self.path.clone(),
                present: self.present,
                missing,
            })
        }
    }
}

/// Does `rule` allow `asked` (built by [`Policy::check`]) for the device `name` of `kind`?
fn grants(rule: &Grant, asked: &Grant, name: &str, kind: &str) -> bool {
    match (rule, asked) {
        (Grant::Lower { device, kinds }, Grant::Lower { .. }) => {
            device.matches(name) && (kinds.is_empty() || kinds.iter().any(|k| k == kind))
        }
        (Grant::Outer(p), Grant::Outer(_)) | (Grant::Bridge(p), Grant::Bridge(_)) => {
            p.matches(name)
        }
        _ => false,
    }
}

/// A kind named in a `lower` line: one netcr knows, whose outside device is a lower device.
fn lower_kind(kind: &str) -> Result<String, String> {
    match driver_for(kind) {
        Some(d) if d.lower_role() == LowerRole::Lower => Ok(kind.to_string()),
        Some(_) => Err(format!(
            "a {kind}'s outside device is its peer, not a lower device: allow its host end with \"outer NAME\""
        )),
        None => Err(format!(
            "unknown kind \"{kind}\" (netcr knows {})",
            netcr_core::registered_kinds().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const FILE: &str = "/etc/netcr/policy";

    fn policy(text: &str) -> Policy {
        Policy::parse(Path::new(FILE), text.as_bytes()).unwrap()
    }

    fn syntax_error(text: &str) -> String {
        match Policy::parse(Path::new(FILE), text.as_bytes()) {
            Err(e @ PolicyError::Syntax { .. }) => e.to_string(),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    fn mapping(text: &str) -> ExternalMapping {
        text.parse().unwrap()
    }

    #[rstest]
    #[case("eth0", "eth0", true)]
    #[case("eth0", "eth01", false)]
    #[case("eth0", "eth", false)]
    #[case("eth*", "eth", true)]
    #[case("eth*", "eth12", true)]
    #[case("eth*", "veth1", false)]
    #[case("*", "anything", true)]
    #[case("*-ct", "br-ct", true)]
    #[case("*-ct", "br-ctx", false)]
    #[case("a*b*c", "aXbYbZc", true)]
    #[case("a*b*c", "aXcYb", false)]
    #[case("a**", "a", true)]
    #[case("*a*a", "aaa", true)]
    #[case("*a*a", "aab", false)]
    fn patterns_match_with_stars(#[case] pattern: &str, #[case] name: &str, #[case] hit: bool) {
        assert_eq!(Pattern::parse(pattern).unwrap().matches(name), hit);
    }

    #[rstest]
    #[case::empty("")]
    #[case::slash("a/b")]
    #[case::colon("eth0:1")]
    #[case::long("abcdefghijklmnop")]
    fn patterns_are_device_names(#[case] text: &str) {
        assert!(Pattern::parse(text).is_err(), "{text:?}");
    }

    #[test]
    fn a_policy_has_one_rule_a_line_with_comments() {
        let p = policy(
            "# host policy\n\nlower eth1 macvlan macvtap  # the uplink\nlower vx-*\n\touter ct-*\nbridge br#ct\n#bridge br-mgmt\n",
        );
        let rules: Vec<(usize, String)> = p
            .rules()
            .iter()
            .map(|r| (r.line, r.grant.to_string()))
            .collect();
        assert_eq!(
            rules,
            [
                (3, "lower eth1 macvlan macvtap"),
                (4, "lower vx-*"),
                (5, "outer ct-*"),
                (6, "bridge br#ct"),
            ]
            .map(|(n, s)| (n, s.to_string()))
        );
        assert!(p.is_present());
        assert_eq!(p.path(), Path::new(FILE));
    }

    #[rstest]
    #[case("lower eth0\nallow eth1\n", "line 2: unknown rule \"allow\"")]
    #[case("lower\n", "line 1: \"lower\" needs a device name or pattern")]
    #[case("\n\nbridge\n", "line 3: \"bridge\" needs a device name or pattern")]
    #[case(
        "outer a b\n",
        "line 1: \"outer\" takes one name or pattern (\"b\" is one too many)"
    )]
    #[case(
        "lower eth0 macvlna\n",
        "line 1: unknown kind \"macvlna\" (netcr knows "
    )]
    #[case("lower eth0 veth\n", "line 1: a veth's outside device is its peer")]
    #[case("lower eth0:1\n", "line 1: \"eth0:1\" is not a device name or pattern")]
    fn malformed_lines_are_named_by_file_and_line(#[case] text: &str, #[case] expected: &str) {
        let e = syntax_error(text);
        assert!(
            e.starts_with(&format!("{FILE}, {expected}")),
            "{e:?} should start with {expected:?}"
        );
    }

    #[test]
    fn invalid_utf8_is_named_by_line() {
        let e = Policy::parse(Path::new(FILE), b"lower eth0\n\xff\xfe\n").unwrap_err();
        assert_eq!(e.to_string(), format!("{FILE}, line 2: not valid UTF-8"));
    }

    #[rstest]
    #[case::lower_any_kind("lower eth1", "macvlan[mv0]:eth1", Ok(vec![1]))]
    #[case::lower_its_kind("lower eth1 macvtap macvlan", "macvlan[mv0]:eth1", Ok(vec![1]))]
    #[case::lower_other_kind("lower eth1 macvtap", "macvlan[mv0]:eth1", Err(vec!["lower eth1 macvlan"]))]
    #[case::lower_pattern("lower eth*", "vxlan[vx0]:eth7", Ok(vec![1]))]
    #[case::lower_other_device("lower eth1", "ipvlan[ip0]:eth0", Err(vec!["lower eth0 ipvlan"]))]
    #[case::second_line("lower eth0 vlan\nlower eth* macvlan", "macvlan[mv0]:eth0", Ok(vec![2]))]
    #[case::outer_is_not_lower("outer eth1", "macvlan[mv0]:eth1", Err(vec!["lower eth1 macvlan"]))]
    fn lower_devices_need_a_lower_line(
        #[case] text: &str,
        #[case] asked: &str,
        #[case] expected: Result<Vec<usize>, Vec<&str>>,
    ) {
        assert_checks(text, asked, LowerRole::Lower, expected);
    }

    /// The policy `text` allows `asked` by the lines `Ok`, or lacks the lines `Err`.
    fn assert_checks(
        text: &str,
        asked: &str,
        role: LowerRole,
        expected: Result<Vec<usize>, Vec<&str>>,
    ) {
        let got = policy(text).check(&mapping(asked), role);
        let got = got.map(|a| a.lines).map_err(|r| r.missing);
        let expected = expected.map_err(|m| m.iter().map(|s| s.to_string()).collect());
        assert_eq!(got, expected, "{text:?} {asked}");
    }

    #[rstest]
    #[case::outer("outer ct-*", "veth[eth0]:ct-1", Ok(vec![1]))]
    #[case::no_outer("bridge br-ct", "veth[eth0]:ct-1", Err(vec!["outer ct-1"]))]
    #[case::lower_is_not_outer("lower ct-1", "veth[eth0]:ct-1", Err(vec!["outer ct-1"]))]
    #[case::both("bridge br-*\nouter ct-*", "veth[eth0]:ct-1@br-ct", Ok(vec![2, 1]))]
    #[case::bridge_outside("outer ct-*\nbridge br-ct", "veth[eth0]:ct-1@br-mgmt", Err(vec!["bridge br-mgmt"]))]
    #[case::neither("", "veth[eth0]:x@br-mgmt", Err(vec!["outer x", "bridge br-mgmt"]))]
    fn veth_ends_need_an_outer_line_and_their_bridge(
        #[case] text: &str,
        #[case] asked: &str,
        #[case] expected: Result<Vec<usize>, Vec<&str>>,
    ) {
        assert_checks(text, asked, LowerRole::Peer, expected);
    }

    #[test]
    fn a_refusal_names_the_file_and_the_lines_that_would_allow_it() {
        let r = policy("outer *\n")
            .check(&mapping("veth[eth0]:x@br-mgmt"), LowerRole::Peer)
            .unwrap_err();
        assert_eq!(
            r.to_string(),
            format!(
                "the host policy {FILE} does not allow it; the line \"bridge br-mgmt\" there would"
            )
        );
        let absent = Policy::load(Path::new("/nonexistent/netcr-policy")).unwrap();
        assert!(!absent.is_present());
        assert!(absent.rules().is_empty());
        let r = absent
            .check(&mapping("veth[eth0]:x@br-mgmt"), LowerRole::Peer)
            .unwrap_err();
        assert_eq!(
            r.to_string(),
            "the host policy /nonexistent/netcr-policy does not allow it (there is no such file); the lines \"outer x\" and \"bridge br-mgmt\" there would"
        );
    }

    #[test]
    fn host_files_others_can_change_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy");
        std::fs::write(&path, "lower eth0\n").unwrap();
        for (mode, ok) in [(0o600, true), (0o644, true), (0o664, false), (0o646, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match Policy::load(&path) {
                Ok(p) => {
                    assert!(ok, "mode {mode:o} was accepted");
                    assert_eq!(p.rules().len(), 1);
                }
                Err(e) => {
                    assert!(!ok, "mode {mode:o}: {e}");
                    assert_eq!(
                        e.to_string(),
                        format!(
                            "{p}: writable by others than its owner (mode {mode:04o}); whoever can change it decides what restored namespaces attach to, so it is refused (fix: chmod go-w {p})",
                            p = path.display()
                        )
                    );
                }
            }
        }
        if nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let e = Policy::load(&path).unwrap_err().to_string();
            assert!(
                e.contains("owned by uid 65534, not by root") && e.contains("fix: chown root"),
                "{e}"
            );
        }
        assert!(read_host_file(&dir.path().join("absent"))
            .unwrap()
            .is_none());
    }
}

//! `--external KIND[INNER]:OUTER[@BRIDGE]`: which host device a link's outside end is.

use std::fmt;
use std::str::FromStr;

use crate::common::valid_ifname;

/// One `--external` argument, CRIU's syntax: `macvlan[mv0]:eth0`, `macvlan[*]:eth0`,
/// `veth[eth1]:hv0@br0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMapping {
    /// Link kind, e.g. "macvlan".
    pub kind: String,
    /// The device inside the namespace; `None` for `*` (every device of the kind without a
    /// mapping of its own).
    pub inner: Option<String>,
    /// The device in the caller's namespace.
    pub outer: String,
    /// For peer kinds (veth): a bridge in the caller's namespace to attach the outer end to.
    pub bridge: Option<String>,
}

/// Why an `--external` argument is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --external \"{arg}\": {reason} (expected KIND[INNER]:OUTER[@BRIDGE], e.g. macvlan[mv0]:eth0)")]
pub struct ExternalParseError {
    /// The argument as given.
    pub arg: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl FromStr for ExternalMapping {
    type Err = ExternalParseError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let err = |reason| ExternalParseError {
            arg: arg.to_string(),
            reason,
        };
        let open = arg.find('[').ok_or_else(|| err("no '['"))?;
        let close = arg.find("]:").ok_or_else(|| err("no ']:'"))?;
        if close < open {
            return Err(err("']:' before '['"));
        }
        let kind = &arg[..open];
        let inner = &arg[open + 1..close];
        let rest = &arg[close + 2..];
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(err("the kind must be a word such as macvlan or veth"));
        }
        let inner = match inner {
            "*" => None,
            name if valid_ifname(name) => Some(name.to_string()),
            _ => {
                return Err(err(
                    "INNER must be a device name (1-15 bytes, no '/', ':' or spaces) or *",
                ))
            }
        };
        let (outer, bridge) = match rest.split_once('@') {
            Some((o, b)) => (o, Some(b)),
            None => (rest, None),
        };
        if !valid_ifname(outer) {
            return Err(err(
                "OUTER must be a device name (1-15 bytes, no '/', ':' or spaces)",
            ));
        }
        if let Some(b) = bridge {
            if !valid_ifname(b) {
                return Err(err("BRIDGE must be a device name"));
            }
        }
        Ok(ExternalMapping {
            kind: kind.to_string(),
            inner,
            outer: outer.to_string(),
            bridge: bridge.map(str::to_string),
        })
    }
}

impl fmt::Display for ExternalMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]:{}",
            self.kind,
            self.inner.as_deref().unwrap_or("*"),
            self.outer
        )?;
        if let Some(b) = &self.bridge {
            write!(f, "@{b}")?;
        }
        Ok(())
    }
}

/// The mapping for device `inner` of `kind`: its own first, then the kind's `*`.
pub fn find<'a>(
    mappings: &'a [ExternalMapping],
    kind: &str,
    inner: &str,
) -> Option<&'a ExternalMapping> {
    mappings
        .iter()
        .find(|m| m.kind == kind && m.inner.as_deref() == Some(inner))
        .or_else(|| {
            mappings
                .iter()
                .find(|m| m.kind == kind && m.inner.is_none())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("macvlan[mv0]:eth0", "macvlan", Some("mv0"), "eth0", None)]
    #[case("macvlan[*]:br-lan", "macvlan", None, "br-lan", None)]
    #[case("veth[eth1]:hv0@br0", "veth", Some("eth1"), "hv0", Some("br0"))]
    fn parses(
        #[case] arg: &str,
        #[case] kind: &str,
        #[case] inner: Option<&str>,
        #[case] outer: &str,
        #[case] bridge: Option<&str>,
    ) {
        let m: ExternalMapping = arg.parse().unwrap();
        assert_eq!(m.kind, kind);
        assert_eq!(m.inner.as_deref(), inner);
        assert_eq!(m.outer, outer);
        assert_eq!(m.bridge.as_deref(), bridge);
        assert_eq!(m.to_string(), arg);
    }

    #[rstest]
    #[case::no_brackets("macvlan:eth0")]
    #[case::no_outer("macvlan[mv0]")]
    #[case::empty_outer("macvlan[mv0]:")]
    #[case::empty_kind("[mv0]:eth0")]
    #[case::long_inner("macvlan[abcdefghijklmnop]:eth0")]
    #[case::slash("macvlan[a/b]:eth0")]
    #[case::empty_bridge("veth[a]:b@")]
    #[case::reversed("macvlan]:x[")]
    fn rejects(#[case] arg: &str) {
        let err = arg.parse::<ExternalMapping>().unwrap_err();
        assert!(err
            .to_string()
            .starts_with(&format!("invalid --external \"{arg}\"")));
    }

    #[rstest]
    fn own_mapping_beats_wildcard() {
        let maps: Vec<ExternalMapping> = ["macvlan[*]:a", "macvlan[mv1]:b"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(find(&maps, "macvlan", "mv1").unwrap().outer, "b");
        assert_eq!(find(&maps, "macvlan", "mv2").unwrap().outer, "a");
        assert!(find(&maps, "veth", "mv2").is_none());
    }
}

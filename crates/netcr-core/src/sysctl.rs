//! Sysctls: the namespace's own `net.*` settings, read and written through /proc/sys/net from
//! inside the namespace, and each device's IPv4/IPv6 settings, which arrive with the link
//! dump (IFLA_AF_SPEC devconf arrays) so a dump reads no file per device. IPv4 device values
//! are set back over netlink; IPv6 ones only exist as /proc/sys/net/ipv6/conf/DEV files.
//! Only values that differ from what the target has are written.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use netcr_image::v1;
use netcr_netlink::Netns;
use netlink_packet_core::{DefaultNla, Emitable, NLA_F_NESTED};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, LinkAttribute, LinkMessage,
};

/// Directories (under /proc/sys/net) whose writable files are the namespace's own settings,
/// in the order they are restored: `ip_forward` before `conf/all` (it rewrites every
/// device's forwarding), `all` before `default`, and `default` before devices are created.
/// Directories a kernel lacks (no conntrack, MPLS, MPTCP or br_netfilter) are skipped at
/// dump; at restore, a setting the target lacks is a warning. Per-device neighbour
/// parameters (`ipv4/neigh/DEV`) are a family of their own (crate::families).
pub const NETNS_SYSCTL_DIRS: &[&str] = &[
    "ipv4",
    "ipv4/conf/all",
    "ipv4/conf/default",
    "ipv4/route",
    "ipv6",
    "ipv6/conf/all",
    "ipv6/conf/default",
    "ipv6/route",
    "ipv6/icmp",
    "core",
    "unix",
    "mptcp",
    "bridge",
    "netfilter",
    "netfilter/nf_log",
    "mpls",
];

/// Reads every writable setting of [`NETNS_SYSCTL_DIRS`] inside `ns`.
pub fn read_netns(ns: &Netns) -> crate::Result<Vec<v1::Sysctl>> {
    Ok(ns.run(read_here)?)
}

fn read_here() -> Vec<v1::Sysctl> {
    let mut out = Vec::new();
    for dir in NETNS_SYSCTL_DIRS {
        let path = Path::new("/proc/sys/net").join(dir);
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.metadata()
                    .map(|m| m.is_file() && m.permissions().mode() & 0o200 != 0)
                    .unwrap_or(false)
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        for file in files {
            // Unset secrets (stable_secret) and write-only knobs fail to read: nothing to keep.
            if let Ok(value) = std::fs::read_to_string(path.join(&file)) {
                out.push(v1::Sysctl {
                    name: format!("net.{}.{}", dir.replace('/', "."), file),
                    value: value.trim_end_matches('\n').to_string(),
                });
            }
        }
    }
    out
}

fn proc_path(name: &str) -> Option<std::path::PathBuf> {
    let rest = name.strip_prefix("net.")?;
    // Device names cannot contain dots only when they are "all"/"default": map the known
    // directories back, the file name last.
    for dir in NETNS_SYSCTL_DIRS {
        let prefix = format!("{}.", dir.replace('/', "."));
        if let Some(file) = rest.strip_prefix(&prefix) {
            if !file.contains('.') && !file.contains('/') && !file.is_empty() {
                return Some(Path::new("/proc/sys/net").join(dir).join(file));
            }
        }
    }
    None
}

/// What writing the namespace sysctls did.
#[derive(Debug, Default)]
pub struct Written {
    /// (name, previous value) of every value changed, for the undo.
    pub changed: Vec<(String, String)>,
    /// Settings this kernel or namespace does not have or does not let us change.
    pub warnings: Vec<String>,
    /// The names of those settings (left out of the verification).
    pub left_out: Vec<String>,
    /// The write that failed, if one did (the values changed before it are in `changed`).
    pub error: Option<String>,
}

/// Writes the image's namespace sysctls into `ns` where they differ from its current values.
pub fn write_netns(ns: &Netns, wanted: &[v1::Sysctl]) -> crate::Result<Written> {
    Ok(ns.run(|| write_here(wanted))?)
}

fn write_here(wanted: &[v1::Sysctl]) -> Written {
    let mut done = Written::default();
    for s in wanted {
        let Some(path) = proc_path(&s.name) else {
            done.error = Some(format!(
                "sysctl {}: not a namespace setting netcr restores",
                s.name
            ));
            return done;
        };
        let current = match std::fs::read_to_string(&path) {
            Ok(v) => v.trim_end_matches('\n').to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                done.warnings.push(format!(
                    "sysctl {} does not exist on this kernel; left out",
                    s.name
                ));
                done.left_out.push(s.name.clone());
                continue;
            }
            Err(_) => continue,
        };
        if current == s.value {
            continue;
        }
        match std::fs::write(&path, &s.value) {
            Ok(()) => done.changed.push((s.name.clone(), current)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
                done.warnings.push(format!(
                    "sysctl {} cannot be changed in this namespace; left at {current:?}",
                    s.name
                ));
                done.left_out.push(s.name.clone());
            }
            Err(e) => {
                done.error = Some(format!("writing sysctl {} = {:?}: {e}", s.name, s.value));
                return done;
            }
        }
    }
    done
}

/// Reads the current values of the named namespace sysctls inside `ns` (names that are not
/// namespace settings, or files this kernel lacks, are left out): one read per name, instead
/// of walking every directory as [`read_netns`] does.
pub fn read_named(ns: &Netns, names: &[&str]) -> crate::Result<Vec<v1::Sysctl>> {
    Ok(ns.run(|| {
        names
            .iter()
            .filter_map(|name| {
                let value = std::fs::read_to_string(proc_path(name)?).ok()?;
                Some(v1::Sysctl {
                    name: name.to_string(),
                    value: value.trim_end_matches('\n').to_string(),
                })
            })
            .collect()
    })?)
}

/// Puts back values changed by [`write_netns`], newest first.
pub fn undo_netns(ns: &Netns, changed: &[(String, String)]) -> Vec<String> {
    let r = ns.run(|| {
        let mut errors = Vec::new();
        for (name, old) in changed.iter().rev() {
            if let Some(path) = proc_path(name) {
                if let Err(e) = std::fs::write(&path, old) {
                    errors.push(format!("sysctl {name}: {e}"));
                }
            }
        }
        errors
    });
    r.unwrap_or_else(|e| vec![e.to_string()])
}

/// The IPv4 and IPv6 per-device settings a dumped link carries, as arrays indexed like the
/// kernel's (IPv4: IPV4_DEVCONF_x - 1; IPv6: DEVCONF_x).
pub fn devconf_of(link: &LinkMessage) -> (Vec<i32>, Vec<i32>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for attr in &link.attributes {
        if let LinkAttribute::AfSpecUnspec(specs) = attr {
            for spec in specs {
                match spec {
                    AfSpecUnspec::Inet(items) => {
                        for item in items {
                            if let AfSpecInet::DevConf(c) = item {
                                v4 = ints(c);
                            }
                        }
                    }
                    AfSpecUnspec::Inet6(items) => {
                        for item in items {
                            if let AfSpecInet6::DevConf(c) = item {
                                v6 = ints(c);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    (v4, v6)
}

fn ints<T: Emitable>(conf: &T) -> Vec<i32> {
    let mut buf = vec![0u8; conf.buffer_len()];
    conf.emit(&mut buf);
    buf.chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const IFLA_INET_CONF: u16 = 1;
/// Index of IPV4_DEVCONF_MC_FORWARDING in the devconf array.
const IPV4_MC_FORWARDING: usize = 1;

/// Differences between two IPv4 devconf arrays, by index, as netcr restores them.
pub fn ipv4_diffs(want: &[i32], have: &[i32]) -> Vec<(usize, i32, i32)> {
    want.iter()
        .zip(have)
        .enumerate()
        .filter(|(i, (w, h))| w != h && *i != IPV4_MC_FORWARDING)
        .map(|(i, (w, h))| (i, *w, *h))
        .collect()
}

/// The IFLA_AF_SPEC attribute that sets the IPv4 values of `want` that differ from `have`,
/// or `None` when none differ.
pub fn ipv4_request(want: &[i32], have: &[i32]) -> Option<LinkAttribute> {
    let mut nested = Vec::new();
    for (i, (w, h)) in want.iter().zip(have).enumerate() {
        // IPV4_DEVCONF_MC_FORWARDING belongs to a multicast routing daemon, not to settings.
        if w != h && i != IPV4_MC_FORWARDING {
            let nla = DefaultNla::new(i as u16 + 1, (*w as u32).to_ne_bytes().to_vec());
            let mut buf = vec![0; nla.buffer_len()];
            nla.emit(&mut buf);
            nested.extend_from_slice(&buf);
        }
    }
    if nested.is_empty() {
        return None;
    }
    Some(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
        AfSpecInet::Other(DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, nested)),
    ])]))
}

/// IPv6 device settings by DEVCONF index: their /proc name, and whether netlink reports them
/// in milliseconds where the file takes seconds.
const IPV6_DEVCONF: &[(usize, &str, bool)] = &[
    (0, "forwarding", false),
    (1, "hop_limit", false),
    (2, "mtu", false),
    (3, "accept_ra", false),
    (4, "accept_redirects", false),
    (5, "autoconf", false),
    (6, "dad_transmits", false),
    (7, "router_solicitations", false),
    (8, "router_solicitation_interval", true),
    (9, "router_solicitation_delay", true),
    (10, "use_tempaddr", false),
    (11, "temp_valid_lft", false),
    (12, "temp_prefered_lft", false),
    (13, "regen_max_retry", false),
    (14, "max_desync_factor", false),
    (15, "max_addresses", false),
    (16, "force_mld_version", false),
    (17, "accept_ra_defrtr", false),
    (18, "accept_ra_pinfo", false),
    (19, "accept_ra_rtr_pref", false),
    (20, "router_probe_interval", true),
    (21, "accept_ra_rt_info_max_plen", false),
    (22, "proxy_ndp", false),
    (23, "optimistic_dad", false),
    (24, "accept_source_route", false),
    (27, "accept_dad", false),
    (28, "force_tllao", false),
    (29, "ndisc_notify", false),
    (30, "mldv1_unsolicited_report_interval", false),
    (31, "mldv2_unsolicited_report_interval", false),
    (32, "suppress_frag_ndisc", false),
    (33, "accept_ra_from_local", false),
    (34, "use_optimistic", false),
    (35, "accept_ra_mtu", false),
    (37, "use_oif_addrs_only", false),
    (38, "accept_ra_min_hop_limit", false),
    (39, "ignore_routes_with_linkdown", false),
    (40, "drop_unicast_in_l2_multicast", false),
    (41, "drop_unsolicited_na", false),
    (42, "keep_addr_on_down", false),
    (43, "router_solicitation_max_interval", true),
    (44, "seg6_enabled", false),
    (45, "seg6_require_hmac", false),
    (46, "enhanced_dad", false),
    (47, "addr_gen_mode", false),
    (48, "disable_policy", false),
    (49, "accept_ra_rt_info_min_plen", false),
    (50, "ndisc_tclass", false),
    (51, "rpl_seg_enabled", false),
    (52, "ra_defrtr_metric", false),
    (53, "ioam6_enabled", false),
    (54, "ioam6_id", false),
    (55, "ioam6_id_wide", false),
    (56, "ndisc_evict_nocarrier", false),
    (57, "accept_untracked_na", false),
    (58, "accept_ra_min_lft", false),
];

/// DEVCONF_DISABLE_IPV6, written before the others: it resets the device's IPv6 state.
const DISABLE_IPV6: (usize, &str, bool) = (26, "disable_ipv6", false);

/// The /proc writes (file name, value) that set the IPv6 values of `want` differing from
/// `have`, disable_ipv6 first.
pub fn ipv6_writes(want: &[i32], have: &[i32]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (i, name, ms) in std::iter::once(&DISABLE_IPV6).chain(IPV6_DEVCONF) {
        if let (Some(w), Some(h)) = (want.get(*i), have.get(*i)) {
            if w != h {
                let value = if *ms {
                    (*w / 1000).to_string()
                } else {
                    w.to_string()
                };
                out.push((*name, value));
            }
        }
    }
    out
}

/// DEVCONF_ADDR_GEN_MODE, and its value for stable privacy addresses.
const ADDR_GEN_MODE: usize = 47;
const ADDR_GEN_MODE_STABLE_PRIVACY: i32 = 2;

/// Reads, inside `ns`, the IPv6 stable secret of every device whose addresses are generated
/// from one (addr_gen_mode 2) into `links`: netlink does not report it, and without it the
/// restore could not set that mode back. One file read per such device.
pub fn read_stable_secrets(ns: &Netns, links: &mut [v1::Link]) -> crate::Result<()> {
    let wanted: Vec<usize> = links
        .iter()
        .enumerate()
        .filter(|(_, l)| l.ipv6_devconf.get(ADDR_GEN_MODE) == Some(&ADDR_GEN_MODE_STABLE_PRIVACY))
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = wanted.iter().map(|&i| links[i].name.clone()).collect();
    let secrets = ns.run(|| {
        names
            .iter()
            .map(|n| {
                let path = Path::new("/proc/sys/net/ipv6/conf")
                    .join(n)
                    .join("stable_secret");
                // EIO: no secret of its own (the namespace default's is used).
                std::fs::read_to_string(path)
                    .map(|v| v.trim_end_matches('\n').to_string())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    })?;
    for (i, secret) in wanted.into_iter().zip(secrets) {
        links[i].ipv6_stable_secret = secret;
    }
    Ok(())
}

/// The /proc writes (file name, value) that give a restored device `link`'s IPv6 settings,
/// from what it has now (`have`): disable_ipv6 first, then its stable secret (before
/// addr_gen_mode 2, which the kernel refuses without one), then the rest.
pub fn device_ipv6_writes(link: &v1::Link, have: &[i32]) -> Vec<(&'static str, String)> {
    let mut writes = ipv6_writes(&link.ipv6_devconf, have);
    if !link.ipv6_stable_secret.is_empty() {
        let at = usize::from(writes.first().is_some_and(|(f, _)| *f == DISABLE_IPV6.1));
        writes.insert(at, ("stable_secret", link.ipv6_stable_secret.clone()));
    }
    writes
}

/// Writes per-device IPv6 settings inside `ns`: `(device, file, value)`.
pub fn write_ipv6(
    ns: &Netns,
    writes: &[(String, &'static str, String)],
) -> crate::Result<Vec<String>> {
    let r = ns.run(|| {
        let mut warnings = Vec::new();
        for (dev, file, value) in writes {
            let path = Path::new("/proc/sys/net/ipv6/conf").join(dev).join(file);
            match std::fs::write(&path, value) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::EACCES) | Some(libc::EPERM)
                    ) =>
                {
                    warnings.push(format!(
                        "sysctl net.ipv6.conf.{dev}.{file} could not be set: {e}"
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "writing sysctl net.ipv6.conf.{dev}.{file} = {value}: {e}"
                    ))
                }
            }
        }
        Ok(warnings)
    })?;
    r.map_err(crate::CoreError::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Nla;
    use rstest::rstest;

    #[rstest]
    #[case("net.ipv4.ip_forward", Some("/proc/sys/net/ipv4/ip_forward"))]
    #[case(
        "net.ipv4.conf.all.rp_filter",
        Some("/proc/sys/net/ipv4/conf/all/rp_filter")
    )]
    #[case(
        "net.ipv6.conf.default.accept_ra",
        Some("/proc/sys/net/ipv6/conf/default/accept_ra")
    )]
    #[case("net.unix.max_dgram_qlen", Some("/proc/sys/net/unix/max_dgram_qlen"))]
    #[case("net.ipv4.conf.eth0.forwarding", None)]
    #[case("net.ipv4.neigh.eth0.locktime", None)]
    #[case("net.ipv4.route.min_pmtu", Some("/proc/sys/net/ipv4/route/min_pmtu"))]
    #[case("net.netfilter.nf_log.2", Some("/proc/sys/net/netfilter/nf_log/2"))]
    #[case("kernel.hostname", None)]
    #[case("net.ipv4../../../etc/passwd", None)]
    fn only_namespace_settings_map_to_files(#[case] name: &str, #[case] path: Option<&str>) {
        assert_eq!(proc_path(name).as_deref(), path.map(Path::new));
    }

    #[rstest]
    fn ipv4_request_sets_only_differences_including_zero() {
        let attr = ipv4_request(&[1, 0, 5], &[0, 0, 0]).unwrap();
        let LinkAttribute::AfSpecUnspec(specs) = attr else {
            panic!()
        };
        let AfSpecUnspec::Inet(items) = &specs[0] else {
            panic!()
        };
        let AfSpecInet::Other(nla) = &items[0] else {
            panic!()
        };
        assert_eq!(nla.kind(), IFLA_INET_CONF | NLA_F_NESTED);
        let mut value = vec![0; nla.value_len()];
        nla.emit_value(&mut value);
        // forwarding (1) = 1, then index 3 = 5: eight bytes each.
        assert_eq!(value, [8, 0, 1, 0, 1, 0, 0, 0, 8, 0, 3, 0, 5, 0, 0, 0]);
        assert!(ipv4_request(&[1, 2], &[1, 2]).is_none());
        let back_to_zero = ipv4_request(&[0], &[1]).unwrap();
        assert!(matches!(back_to_zero, LinkAttribute::AfSpecUnspec(_)));
    }

    #[rstest]
    fn ipv6_writes_convert_milliseconds_and_disable_first() {
        let mut have = vec![0; 40];
        let mut want = have.clone();
        want[8] = 9000; // router_solicitation_interval, ms in netlink, s in /proc
        want[26] = 1; // disable_ipv6
        want[1] = 33; // hop_limit
        have[36] = 5; // stable_secret has no file: ignored
        let w = ipv6_writes(&want, &have);
        assert_eq!(
            w,
            vec![
                ("disable_ipv6", "1".to_string()),
                ("hop_limit", "33".to_string()),
                ("router_solicitation_interval", "9".to_string()),
            ]
        );
    }

    #[rstest]
    fn the_stable_secret_is_written_before_addr_gen_mode() {
        let mut have = vec![0; 59];
        have[26] = 1;
        let mut want = vec![0; 59];
        want[47] = 2; // addr_gen_mode stable privacy
        let link = v1::Link {
            ipv6_devconf: want,
            ipv6_stable_secret: "2001:db8::1234".into(),
            ..Default::default()
        };
        let w = device_ipv6_writes(&link, &have);
        let files: Vec<&str> = w.iter().map(|(f, _)| *f).collect();
        assert_eq!(files, ["disable_ipv6", "stable_secret", "addr_gen_mode"]);
        assert_eq!(w[1].1, "2001:db8::1234");
        have[26] = 0;
        let files: Vec<&str> = device_ipv6_writes(&link, &have)
            .iter()
            .map(|(f, _)| *f)
            .collect();
        assert_eq!(files, ["stable_secret", "addr_gen_mode"]);
    }
}

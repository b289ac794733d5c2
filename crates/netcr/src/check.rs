//! `netcr check`: what this kernel supports for netcr, tried on throwaway namespaces, as
//! `criu check` does.

use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVlan, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netcr_netlink::{Netns, Rtnl, RtnlExt, Transport};

use crate::app::{self, AppError};

/// Why `netcr check` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Not privileged enough to try anything.
    #[error(transparent)]
    App(#[from] AppError),
    /// The throwaway namespaces or their sockets could not be made.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
    /// Some probes failed (each printed with its cause).
    #[error("{0} checks failed")]
    Failed(usize),
}

/// Why one probe failed, printed on its line.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// The kernel refused.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
    /// A link was created but is not there.
    #[error("{0} not found after creation")]
    NotFound(String),
    /// A failure of a step more than one probe relies on (the lower device, the nsid): each
    /// of them reports its text, as the error itself is consumed once.
    #[error("{0}")]
    Shared(String),
    /// Steps this probe builds on failed.
    #[error("needs {0}")]
    Needs(&'static str),
}

fn named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m
}

fn macvlan(name: &str, lower: u32) -> LinkMessage {
    let mut m = named(name);
    m.attributes.push(LinkAttribute::Link(lower));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
            MacVlanMode::Bridge,
        )])),
    ]));
    m
}

fn index_of(rtnl: &mut Rtnl, name: &str) -> Result<u32, ProbeError> {
    rtnl.dump_links()?
        .into_iter()
        .find(|l| l.attributes.contains(&LinkAttribute::IfName(name.into())))
        .map(|l| l.header.index)
        .ok_or_else(|| ProbeError::NotFound(name.to_string()))
}

/// How trying one link kind came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindSupport {
    /// A device of the kind was made.
    Supported,
    /// The kernel does not know the kind (its module is absent): images with such devices
    /// cannot be restored here.
    NotSupported(String),
    /// The kernel knows the kind, but the probe's device was refused for another reason.
    Failed(String),
}

impl KindSupport {
    /// `supported`, `not_supported`, `failed`: the word of `--json`.
    pub fn word(&self) -> &'static str {
        match self {
            KindSupport::Supported => "supported",
            KindSupport::NotSupported(_) => "not_supported",
            KindSupport::Failed(_) => "failed",
        }
    }
}

/// A device of `kind` named `name` for the probe; `lower` is a device it may sit on.
fn probe_link(kind: &str, name: &str, lower: u32) -> LinkMessage {
    let mut m = named(name);
    let (info_kind, data, on_lower) = match kind {
        "veth" => (
            InfoKind::Veth,
            Some(InfoData::Veth(
                netcr_netlink::netlink_packet_route::link::InfoVeth::Peer(named(&format!(
                    "{name}p"
                ))),
            )),
            false,
        ),
        "macvlan" => return macvlan(name, lower),
        "macvtap" => (InfoKind::MacVtap, None, true),
        "ipvlan" => (InfoKind::IpVlan, None, true),
        "vlan" => (
            InfoKind::Vlan,
            Some(InfoData::Vlan(vec![InfoVlan::Id(7)])),
            true,
        ),
        "vxlan" => (
            InfoKind::Vxlan,
            Some(InfoData::Vxlan(vec![InfoVxlan::Id(42)])),
            false,
        ),
        "bridge" => (InfoKind::Bridge, None, false),
        "dummy" => (InfoKind::Dummy, None, false),
        other => (
            InfoKind::Other(other.to_string()),
            probe_data(other).map(InfoData::Other),
            false,
        ),
    };
    if on_lower {
        m.attributes.push(LinkAttribute::Link(lower));
    }
    let mut info = vec![LinkInfo::Kind(info_kind)];
    info.extend(data.map(LinkInfo::Data));
    m.attributes.push(LinkAttribute::LinkInfo(info));
    m
}

/// The IFLA_INFO_DATA a probe of `kind` needs, for the kinds that cannot be made bare. A tunnel
/// with neither end set would clash with the kernel's fallback device of its kind (gre0,
/// tunl0, ...), so it gets a remote end from the documentation ranges; it stays down in a
/// namespace of its own, and nothing is ever sent to it.
fn probe_data(kind: &str) -> Option<Vec<u8>> {
    use netcr_netlink::raw::attribute;
    const V4: [u8; 4] = [192, 0, 2, 1];
    const V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    // IFLA_GRE_REMOTE, IFLA_IPTUN_REMOTE, IFLA_GENEVE_ID and IFLA_GENEVE_REMOTE,
    // IFLA_VRF_TABLE.
    Some(match kind {
        "gre" | "gretap" => attribute(7, &V4),
        "ip6gre" | "ip6gretap" => attribute(7, &V6),
        "ipip" | "sit" => attribute(3, &V4),
        "ip6tnl" => attribute(3, &V6),
        "geneve" => [attribute(1, &42u32.to_ne_bytes()), attribute(2, &V4)].concat(),
        "vrf" => attribute(1, &4242u32.to_ne_bytes()),
        _ => return None,
    })
}

/// Makes a tun device in `netns` and lets it go (not persistent: it vanishes with the file).
fn probe_tun(netns: &Netns) -> KindSupport {
    let made = netns.run(|| -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // struct ifreq: the name, then the flags.
        let mut ifr = [0u8; 40];
        ifr[..5].copy_from_slice(b"ktun0");
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq (40 bytes) through the pointer.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    });
    match made {
        Ok(Ok(())) => KindSupport::Supported,
        Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
            KindSupport::NotSupported(format!("/dev/net/tun: {e}"))
        }
        Ok(Err(e)) => KindSupport::Failed(format!("/dev/net/tun: {e}")),
        Err(e) => KindSupport::Failed(e.to_string()),
    }
}

/// Tries to make a device of each kind in `kinds` in `netns` (`rtnl` a socket there), on
/// `lower` where the kind needs a lower device. The kernel's EOPNOTSUPP for a kind it does
/// not know (its module absent, or not loadable from here) is "not supported", not a
/// failure of netcr.
pub fn probe_kinds(
    netns: &Netns,
    rtnl: &mut Rtnl,
    lower: u32,
    kinds: &[&str],
) -> Vec<(String, KindSupport)> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let support = if *kind == "tun" {
                probe_tun(netns)
            } else {
                let name = format!("k{i}");
                match rtnl.new_link(
                    probe_link(kind, &name, lower),
                    &format!("creating {kind} {name}"),
                ) {
                    Ok(()) => {
                        // Gone again, so that the next kind finds the lower device free (a
                        // device carries ipvlans or macvlans, not both).
                        if let Ok(index) = index_of(rtnl, &name) {
                            let _ = rtnl.del_link(index, &format!("deleting {kind} {name}"));
                        }
                        KindSupport::Supported
                    }
                    Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {
                        KindSupport::NotSupported(e.to_string())
                    }
                    Err(e) => KindSupport::Failed(e.to_string()),
                }
            };
            (kind.to_string(), support)
        })
        .collect()
}

/// What `netcr check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The kernel's release.
    pub kernel: String,
    /// The link kinds this binary has drivers for.
    pub drivers: Vec<&'static str>,
    /// Each driver's kind, tried on this kernel.
    pub kinds: Vec<(String, KindSupport)>,
    /// Each feature netcr relies on (cross-namespace creation, nsids), and the error of each
    /// that failed.
    pub features: Vec<(String, Result<(), String>)>,
}

impl CheckReport {
    /// Probes that failed (a kind the kernel lacks is not a failure).
    pub fn failed(&self) -> usize {
        self.features.iter().filter(|(_, r)| r.is_err()).count()
            + self
                .kinds
                .iter()
                .filter(|(_, k)| matches!(k, KindSupport::Failed(_)))
                .count()
    }

    /// The kinds this kernel lacks.
    pub fn not_supported(&self) -> Vec<&str> {
        self.kinds
            .iter()
            .filter(|(_, k)| matches!(k, KindSupport::NotSupported(_)))
            .map(|(kind, _)| kind.as_str())
            .collect()
    }

    /// The human report: a line per kind and per feature, then the verdict.
    pub fn text(&self) -> String {
        let mut out = format!(
            "kernel {}\ndrivers: {}\nkinds (a device of each, made in a scratch namespace):\n",
            self.kernel,
            self.drivers.join(", ")
        );
        for (kind, support) in &self.kinds {
            let verdict = match support {
                KindSupport::Supported => "ok".to_string(),
                KindSupport::NotSupported(_) => {
                    "not supported by this kernel (module absent)".to_string()
                }
                KindSupport::Failed(e) => format!("FAILED: {e}"),
            };
            out.push_str(&format!("  {kind:<58} {verdict}\n"));
        }
        out.push_str("features:\n");
        for (what, result) in &self.features {
            match result {
                Ok(()) => out.push_str(&format!("  {what:<58} ok\n")),
                Err(e) => out.push_str(&format!("  {what:<58} FAILED: {e}\n")),
            }
        }
        let missing = self.not_supported();
        if self.failed() == 0 && missing.is_empty() {
            out.push_str("looks good\n");
        } else if self.failed() == 0 {
            out.push_str(&format!(
                "looks good, but for the kinds this kernel lacks: {} (images with such devices cannot be restored here)\n",
                missing.join(", ")
            ));
        }
        out
    }
}

/// Runs every probe and prints the report ([`CheckReport::text`], or JSON); fails when any
/// probe fails (a kind the kernel lacks is reported, not a failure). Without the privileges
/// every probe needs, fails at once saying so.
pub fn check(json: bool) -> Result<(), CheckError> {
    let start = std::time::Instant::now();
    app::require_privileges()?;
    let report = probe_all()?;
    if json {
        println!("{}", app::report::check(&report, start.elapsed()));
    } else {
        print!("{}", report.text());
        println!("{}", crate::cli::elapsed(start));
    }
    match report.failed() {
        0 => Ok(()),
        n => Err(CheckError::Failed(n)),
    }
}

/// Every probe, in two throwaway namespaces.
fn probe_all() -> Result<CheckReport, CheckError> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower_ns = Netns::new_anonymous("check-lower")?;
    let target_ns = Netns::new_anonymous("check-target")?;
    let mut lower = Rtnl::open_in(&lower_ns)?;
    let mut target = Rtnl::open_in(&target_ns)?;
    let mut features = Vec::new();
    let mut report = |what: &str, result: Result<(), ProbeError>| {
        features.push((what.to_string(), result.map_err(|e| e.to_string())));
    };

    let mut veth = named("c0");
    veth.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(
            netcr_netlink::netlink_packet_route::link::InfoVeth::Peer(named("c1")),
        )),
    ]));
    report(
        "veth: create a pair",
        lower
            .new_link(veth, "creating veth c0")
            .map_err(ProbeError::from),
    );
    let lower_index = index_of(&mut lower, "c0");
    report(
        "macvlan: create one on a veth",
        match &lower_index {
            Ok(i) => lower
                .new_link(macvlan("m0", *i), "creating macvlan m0")
                .map_err(ProbeError::from),
            Err(e) => Err(ProbeError::Shared(e.to_string())),
        },
    );
    report(
        "macvlan across namespaces: IFLA_LINK + IFLA_NET_NS_FD",
        match &lower_index {
            Ok(i) => {
                let mut m = macvlan("m1", *i);
                m.attributes
                    .push(LinkAttribute::NetNsFd(target_ns.raw_fd()));
                lower
                    .new_link(m, "creating macvlan m1 from the lower's namespace")
                    .map_err(ProbeError::from)
                    .and_then(|()| index_of(&mut target, "m1").map(|_| ()))
            }
            Err(e) => Err(ProbeError::Shared(e.to_string())),
        },
    );
    let nsid = target.ensure_nsid(&lower_ns, None);
    report(
        "nsid: assign one (RTM_NEWNSID)",
        nsid.as_ref()
            .map(|_| ())
            .map_err(|e| ProbeError::Shared(e.to_string())),
    );
    report(
        "macvlan across namespaces: IFLA_LINK + IFLA_LINK_NETNSID",
        match (&lower_index, &nsid) {
            (Ok(i), Ok(id)) => {
                let mut m = macvlan("m2", *i);
                m.attributes.push(LinkAttribute::LinkNetNsId(*id));
                target
                    .new_link(m, "creating macvlan m2 from the target namespace")
                    .map_err(ProbeError::from)
            }
            _ => Err(ProbeError::Needs("the lower device and an nsid")),
        },
    );
    let _ = target.netns_label();
    let drivers = netcr_core::registered_kinds();
    // The kinds are tried in a namespace of their own, on a veth end there.
    let kinds_ns = Netns::new_anonymous("check-kinds")?;
    let mut kinds_rtnl = Rtnl::open_in(&kinds_ns)?;
    let kinds = match kinds_rtnl
        .new_link(probe_link("veth", "kl", 0), "creating veth kl")
        .map_err(ProbeError::from)
        .and_then(|()| index_of(&mut kinds_rtnl, "kl"))
    {
        Ok(lower) => probe_kinds(&kinds_ns, &mut kinds_rtnl, lower, &drivers),
        Err(e) => drivers
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    KindSupport::Failed(format!("no lower device: {e}")),
                )
            })
            .collect(),
    };
    Ok(CheckReport {
        kernel: release,
        drivers,
        kinds,
        features,
    })
}

//! netcr's tun/tap driver: persistent tun and tap devices with their type, owner, group and
//! flags (pi, vnet_hdr, multi_queue).
//!
//! Netlink cannot create a tun device: only the /dev/net/tun ioctls can (TUNSETIFF,
//! TUNSETOWNER, TUNSETGROUP, TUNSETPERSIST), from a thread inside the target namespace. This
//! driver makes the device through [`KindDriver::make_device`], entering the namespace with
//! [`Netns::run`] (netcr-netlink stays the only crate that calls setns); the core then sets
//! the common attributes. The queues a process holds open are that process's, not netcr's: a
//! restored device has no queue attached and is persistent, ready for a process to attach
//! (TUNSETIFF on its name), which may then clear the persistence it had not asked for. The
//! ifindex is kept where it is free (TUNSETIFINDEX, the ioctl CRIU uses).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use netcr_core::netcr_netlink::Netns;
use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::Tun;
use netcr_image::v1;
use netlink_packet_core::Nla;
use netlink_packet_route::link::{InfoData, InfoTun, LinkMessage};

/// The tun driver.
pub struct TunDriver;

netcr_core::register_driver!(TunDriver);

const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PI: u16 = 4;
const IFLA_TUN_VNET_HDR: u16 = 5;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;
/// Runtime state: how many queues processes hold open, and how many are disabled.
const IFLA_TUN_NUM_QUEUES: u16 = 8;
const IFLA_TUN_NUM_DISABLED_QUEUES: u16 = 9;

/// IFF_TUN.
pub const TYPE_TUN: u32 = 1;
/// IFF_TAP.
pub const TYPE_TAP: u32 = 2;

/// The tun attributes of an info data, if it is tun's.
fn attrs(data: Option<&InfoData>) -> &[InfoTun] {
    match data {
        Some(InfoData::Tun(d)) => d,
        _ => &[],
    }
}

fn u8_of(v: &[u8]) -> Option<u8> {
    (v.len() == 1).then(|| v[0])
}

fn u32_of(v: &[u8]) -> Option<u32> {
    v.try_into().ok().map(u32::from_ne_bytes)
}

/// The TUNSETIFF flags that make a device like `cfg`; `IFF_TUN_EXCL` so an existing device
/// of that name is never taken over.
pub fn iff_flags(cfg: &Tun) -> Result<i16, DriverError> {
    let mut flags = match cfg.r#type {
        TYPE_TUN => libc::IFF_TUN,
        TYPE_TAP => libc::IFF_TAP,
        t => return Err(DriverError::new(format!("unknown tun type {t}"))),
    };
    if !cfg.pi {
        flags |= libc::IFF_NO_PI;
    }
    if cfg.vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if cfg.multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    flags |= libc::IFF_TUN_EXCL;
    Ok(flags as u16 as i16)
}

fn os_error(what: &str, name: &str) -> DriverError {
    DriverError::new(format!(
        "{what} for \"{name}\": {}",
        std::io::Error::last_os_error()
    ))
}

/// Makes the persistent device `name` like `cfg` in the calling thread's namespace: open
/// /dev/net/tun, TUNSETIFINDEX (when `ifindex` is not 0), TUNSETIFF, TUNSETOWNER,
/// TUNSETGROUP, TUNSETPERSIST, close. An ifindex another device holds is given up, not an
/// error: the device is made with the index the kernel picks.
pub fn create_here(name: &str, cfg: &Tun, ifindex: u32) -> Result<(), DriverError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(DriverError::new(format!(
            "device name \"{name}\" is too long"
        )));
    }
    let flags = iff_flags(cfg)?;
    let attempt = |index: u32| -> Result<std::fs::File, (DriverError, Option<i32>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| (DriverError::new(format!("opening /dev/net/tun: {e}")), None))?;
        let fd = file.as_raw_fd();
        if index != 0 {
            let index: libc::c_uint = index;
            // SAFETY: TUNSETIFINDEX reads an unsigned int through the pointer.
            if unsafe { libc::ioctl(fd, libc::TUNSETIFINDEX, &index) } < 0 {
                let errno = std::io::Error::last_os_error().raw_os_error();
                return Err((os_error("TUNSETIFINDEX", name), errno));
            }
        }
        // SAFETY: ifreq is plain old data; all zeros is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = flags;
        // SAFETY: fd is open for the duration of the call; ifr is a valid struct ifreq.
        if unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut ifr) } < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            return Err((os_error("TUNSETIFF", name), errno));
        }
        Ok(file)
    };
    let file = match attempt(ifindex) {
        Ok(f) => f,
        // The index is taken (or the kernel refuses it): let the kernel pick one.
        Err((_, Some(libc::EEXIST | libc::EBUSY | libc::EINVAL))) if ifindex != 0 => {
            attempt(0).map_err(|(e, _)| e)?
        }
        Err((e, _)) => return Err(e),
    };
    let fd = file.as_raw_fd();
    if let Some(owner) = cfg.owner {
        // SAFETY: TUNSETOWNER takes the uid by value.
        if unsafe { libc::ioctl(fd, libc::TUNSETOWNER, owner as libc::c_ulong) } < 0 {
            return Err(os_error("TUNSETOWNER", name));
        }
    }
    if let Some(group) = cfg.group {
        // SAFETY: TUNSETGROUP takes the gid by value.
        if unsafe { libc::ioctl(fd, libc::TUNSETGROUP, group as libc::c_ulong) } < 0 {
            return Err(os_error("TUNSETGROUP", name));
        }
    }
    // SAFETY: TUNSETPERSIST takes a flag by value.
    if unsafe { libc::ioctl(fd, libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(os_error("TUNSETPERSIST", name));
    }
    drop(file);
    Ok(())
}

/// [`create_here`] from inside `target`.
pub fn create_in(target: &Netns, name: &str, cfg: &Tun, ifindex: u32) -> Result<(), DriverError> {
    target
        .run(|| create_here(name, cfg, ifindex))
        .map_err(|e| DriverError::new(e.to_string()))?
}

impl KindDriver for TunDriver {
    const KIND: &'static str = "tun";
    type Config = Tun;

    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        _cx: &DumpCx<'_>,
    ) -> Result<Tun, DriverError> {
        let mut cfg = Tun::default();
        for attr in attrs(data) {
            let mut v = vec![0; attr.value_len()];
            attr.emit_value(&mut v);
            let bad = || {
                DriverError::new(format!(
                    "IFLA_TUN attribute {} of {} bytes",
                    attr.kind(),
                    v.len()
                ))
            };
            match attr.kind() {
                IFLA_TUN_TYPE => cfg.r#type = u8_of(&v).ok_or_else(bad)? as u32,
                IFLA_TUN_PI => cfg.pi = u8_of(&v).ok_or_else(bad)? != 0,
                IFLA_TUN_VNET_HDR => cfg.vnet_hdr = u8_of(&v).ok_or_else(bad)? != 0,
                IFLA_TUN_MULTI_QUEUE => cfg.multi_queue = u8_of(&v).ok_or_else(bad)? != 0,
                IFLA_TUN_OWNER => cfg.owner = Some(u32_of(&v).ok_or_else(bad)?),
                IFLA_TUN_GROUP => cfg.group = Some(u32_of(&v).ok_or_else(bad)?),
                // Runtime state, and persistence, which every restored device has.
                IFLA_TUN_PERSIST | IFLA_TUN_NUM_QUEUES | IFLA_TUN_NUM_DISABLED_QUEUES => {}
                kind => cfg.extra.push(v1::Attr {
                    kind: kind as u32,
                    value: v,
                }),
            }
        }
        Ok(cfg)
    }

    fn request_data(
        &self,
        _cfg: Tun,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Err(DriverError::new(
            "netlink cannot create tun devices; they are made by LinkDriver::create",
        ))
    }

    fn make_device(&self, link: &v1::Link, target: &Netns) -> Option<Result<(), DriverError>> {
        Some(
            self.decode(&link.config)
                .and_then(|cfg| create_in(target, &link.name, &cfg, link.ifindex)),
        )
    }

    fn show(&self, cfg: &Tun) -> Result<Vec<(String, String)>, DriverError> {
        iff_flags(cfg)?;
        let mut out = vec![(
            "type".to_string(),
            if cfg.r#type == TYPE_TAP { "tap" } else { "tun" }.to_string(),
        )];
        let onoff = |b: bool| if b { "on" } else { "off" }.to_string();
        out.push(("pi".into(), onoff(cfg.pi)));
        out.push(("vnet_hdr".into(), onoff(cfg.vnet_hdr)));
        out.push(("multi_queue".into(), onoff(cfg.multi_queue)));
        if let Some(o) = cfg.owner {
            out.push(("user".into(), o.to_string()));
        }
        if let Some(g) = cfg.group {
            out.push(("group".into(), g.to_string()));
        }
        if !cfg.extra.is_empty() {
            out.push(("unknown_attributes".into(), cfg.extra.len().to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

//! netcr's macvlan driver: every mode (private, vepa, bridge, passthru, source with its MAC
//! list), the flags nopromisc and nodst, bcqueuelen and bc_cutoff. Derived attributes
//! (BC_QUEUE_LEN_USED, MACADDR_COUNT) are never sent: the kernel rejects the first.

use netcr_core::{DriverError, DumpCx, KindDriver, RestoreCx};
use netcr_image::link::v1::Macvlan;
use netlink_packet_route::link::{
    InfoData, InfoMacVlan, LinkMessage, MacVlanFlags, MacVlanMacAddressMode, MacVlanMode,
};

/// The macvlan driver.
pub struct MacvlanDriver;

netcr_core::register_driver!(MacvlanDriver);

/// The mode's name as iproute2 spells it.
pub fn mode_name(mode: u32) -> String {
    match MacVlanMode::from(mode) {
        MacVlanMode::Other(n) => format!("unknown({n})"),
        m => m.to_string(),
    }
}

/// The macvlan attributes of an info data, if it is macvlan's.
fn attrs(data: Option<&InfoData>) -> &[InfoMacVlan] {
    match data {
        Some(InfoData::MacVlan(d)) => d,
        _ => &[],
    }
}

/// The config a dumped macvlan carries.
pub fn config_from_dump(link: &LinkMessage) -> Macvlan {
    config_from_data(attrs(netcr_core::kind::info_data(link)))
}

/// The config of macvlan-family IFLA_INFO_DATA (macvlan's, or macvtap's converted).
pub fn config_from_data(data: &[InfoMacVlan]) -> Macvlan {
    let mut cfg = Macvlan::default();
    for attr in data {
        match attr {
            InfoMacVlan::Mode(m) => cfg.mode = u32::from(*m),
            InfoMacVlan::Flags(f) => cfg.flags = f.bits() as u32,
            InfoMacVlan::BcQueueLen(n) => cfg.bc_queue_len = Some(*n),
            InfoMacVlan::BcCutoff(n) => cfg.bc_cutoff = Some(*n),
            InfoMacVlan::MacAddrData(list) => {
                for entry in list {
                    if let InfoMacVlan::MacAddr(mac) = entry {
                        cfg.source_macs.push(mac.to_vec());
                    }
                }
            }
            // Derived state, or input-only attributes the kernel never dumps.
            InfoMacVlan::MacAddrCount(_)
            | InfoMacVlan::BcQueueLenUsed(_)
            | InfoMacVlan::MacAddrMode(_)
            | InfoMacVlan::MacAddr(_) => {}
            InfoMacVlan::Other(nla) => cfg.extra.push(netcr_core::common::attr_of(nla)),
            _ => {}
        }
    }
    // The kernel lists source MACs in hash order; the image keeps them sorted.
    cfg.source_macs.sort();
    cfg
}

/// The IFLA_INFO_DATA that recreates `cfg`.
pub fn info_from_config(cfg: &Macvlan) -> Result<Vec<InfoMacVlan>, DriverError> {
    let mode = MacVlanMode::from(cfg.mode);
    if let MacVlanMode::Other(n) = mode {
        return Err(DriverError::new(format!("unknown macvlan mode {n}")));
    }
    let flags = MacVlanFlags::from_bits_retain(cfg.flags as u16);
    if flags.contains(MacVlanFlags::NoPromisc) && mode != MacVlanMode::Passthrough {
        return Err(DriverError::new(
            "flag nopromisc is valid only in passthru mode",
        ));
    }
    let mut data = vec![InfoMacVlan::Mode(mode)];
    if cfg.flags != 0 {
        data.push(InfoMacVlan::Flags(flags));
    }
    if let Some(n) = cfg.bc_queue_len {
        data.push(InfoMacVlan::BcQueueLen(n));
    }
    if let Some(n) = cfg.bc_cutoff {
        data.push(InfoMacVlan::BcCutoff(n));
    }
    if !cfg.source_macs.is_empty() {
        if mode != MacVlanMode::Source {
            return Err(DriverError::new(
                "a source MAC list is valid only in source mode",
            ));
        }
        let mut list = Vec::with_capacity(cfg.source_macs.len());
        for mac in &cfg.source_macs {
            let mac: [u8; 6] = mac
                .as_slice()
                .try_into()
                .map_err(|_| DriverError::new(format!("source MAC of {} bytes", mac.len())))?;
            list.push(InfoMacVlan::MacAddr(mac));
        }
        data.push(InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Set));
        data.push(InfoMacVlan::MacAddrData(list));
    }
    for attr in &cfg.extra {
        data.push(InfoMacVlan::Other(netcr_core::common::nla_of(attr)));
    }
    Ok(data)
}

impl KindDriver for MacvlanDriver {
    const KIND: &'static str = "macvlan";
    type Config = Macvlan;

    fn dump_config(
        &self,
        data: Option<&InfoData>,
        _link: &LinkMessage,
        _cx: &DumpCx<'_>,
    ) -> Result<Macvlan, DriverError> {
        Ok(config_from_data(attrs(data)))
    }

    fn request_data(
        &self,
        cfg: Macvlan,
        _cx: &mut RestoreCx<'_>,
    ) -> Result<Option<InfoData>, DriverError> {
        Ok(Some(InfoData::MacVlan(info_from_config(&cfg)?)))
    }

    fn show(&self, cfg: &Macvlan) -> Result<Vec<(String, String)>, DriverError> {
        describe_config(cfg)
    }

    fn inherits_lower_address(&self, cfg: &Macvlan) -> bool {
        MacVlanMode::from(cfg.mode) == MacVlanMode::Passthrough
    }
}

/// The config as `netcr show` prints it; validates it too.
pub fn describe_config(cfg: &Macvlan) -> Result<Vec<(String, String)>, DriverError> {
    info_from_config(cfg)?;
    let mut out = vec![("mode".to_string(), mode_name(cfg.mode))];
    let flags = MacVlanFlags::from_bits_retain(cfg.flags as u16);
    let mut names = Vec::new();
    if flags.contains(MacVlanFlags::NoPromisc) {
        names.push("nopromisc");
    }
    if flags.contains(MacVlanFlags::NoDst) {
        names.push("nodst");
    }
    if !names.is_empty() {
        out.push(("flags".into(), names.join(",")));
    }
    if let Some(n) = cfg.bc_queue_len {
        out.push(("bcqueuelen".into(), n.to_string()));
    }
    if let Some(n) = cfg.bc_cutoff {
        out.push(("bc_cutoff".into(), n.to_string()));
    }
    if !cfg.source_macs.is_empty() {
        let macs: Vec<String> = cfg
            .source_macs
            .iter()
            .map(|m| netcr_core::common::mac_text(m))
            .collect();
        out.push(("source_macs".into(), macs.join(",")));
    }
    if !cfg.extra.is_empty() {
        out.push(("unknown_attributes".into(), cfg.extra.len().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

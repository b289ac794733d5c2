//! Moves a namespace's network configuration into a new namespace through the library, as a
//! container runtime would embed it: dump, write the image, read and validate it, restore
//! (the restore verifies what it built and undoes everything on failure).
//!
//! ```text
//! cargo run -p netcr --example migrate -- SOURCE_NETNS IMAGE_DIR TARGET_NETNS   (as root)
//! ```
//!
//! A program that depends on netcr-core names the driver crates of the link kinds it wants
//! (each registers itself when linked); a kind without its driver is refused by name.

use std::error::Error;
use std::path::Path;

use netcr_core::netcr_image::Image;
use netcr_core::netcr_netlink::Netns;
use netcr_core::{DumpOptions, RestoreOptions, RestoreReport, RestoreTarget};

use netcr_link_bridge as _;
use netcr_link_dummy as _;
use netcr_link_ipvlan as _;
use netcr_link_macvlan as _;
use netcr_link_macvtap as _;
use netcr_link_tun as _;
use netcr_link_veth as _;
use netcr_link_vlan as _;
use netcr_link_vxlan as _;

/// Dumps the named namespace `source` into `image_dir`, then restores that image into the
/// named namespace `target` (created, and deleted again if the restore fails).
pub fn migrate(
    source: &str,
    image_dir: &Path,
    target: &str,
) -> Result<RestoreReport, Box<dyn Error>> {
    // Where netcr runs: external lower devices are looked up here.
    let caller = Netns::current_thread()?;
    let netns = Netns::open_name(source)?;
    let (image, dump) = netcr_core::dump(&[netns], &caller, &DumpOptions::default())?;
    for w in &dump.warnings {
        eprintln!("warning: {w}");
    }
    image.write(image_dir)?;

    // Elsewhere, later: an image is untrusted input, validated before anything changes.
    let image = Image::read(image_dir)?;
    netcr_core::validate(&image, image_dir)?;
    let report = netcr_core::restore(
        &image,
        image_dir,
        RestoreTarget::Named(target.to_string()),
        &caller,
        &RestoreOptions::default(),
    )?;
    Ok(report)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, dir, target] = args.as_slice() else {
        eprintln!("usage: migrate SOURCE_NETNS IMAGE_DIR TARGET_NETNS");
        return std::process::ExitCode::from(2);
    };
    match migrate(source, Path::new(dir), target) {
        Ok(r) => {
            println!(
                "{source} -> {target}: {} links, {} addresses, {} routes ({} requests)",
                r.links, r.addresses, r.routes, r.requests
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrate: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

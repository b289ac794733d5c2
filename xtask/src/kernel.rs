//! The guest kernel: one the user names, or Debian's cloud kernel, downloaded with apt and
//! cached under the target directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{display_cmd, run_output, Result};

/// The metapackage whose dependency is the current Debian cloud kernel.
const META_PACKAGE: &str = "linux-image-cloud-amd64";
/// Marks a cache directory whose package was fully unpacked.
const STAMP: &str = ".unpacked";

/// A kernel to boot and its modules.
#[derive(Debug)]
pub struct Kernel {
    /// The bzImage.
    pub image: PathBuf,
    /// Its `lib/modules/<version>` tree, if any.
    pub modules: Option<PathBuf>,
    /// A name for messages (package or file name).
    pub label: String,
}

/// The kernel named on the command line, checked to exist.
pub fn given(image: &Path, modules: Option<&Path>) -> Result<Kernel> {
    if !image.is_file() {
        return Err(format!("kernel image {} does not exist", image.display()));
    }
    if let Some(dir) = modules {
        if !dir.is_dir() {
            return Err(format!("module directory {} does not exist", dir.display()));
        }
    }
    Ok(Kernel {
        image: image.to_path_buf(),
        modules: modules.map(Path::to_path_buf),
        label: image.display().to_string(),
    })
}

/// Debian's cloud kernel, from the cache under `cache_dir` or downloaded into it.
pub fn debian_cloud(cache_dir: &Path) -> Result<Kernel> {
    let package = match cloud_kernel_package() {
        Ok(package) => package,
        Err(e) => match cached_packages(cache_dir).pop() {
            // Offline, or apt without lists: a kernel we unpacked before will do.
            Some(package) => {
                eprintln!("vmtest: warning: {e}\nvmtest: using the cached {package}");
                package
            }
            None => return Err(e),
        },
    };
    let dir = cache_dir.join(&package);
    let root = dir.join("root");
    if !dir.join(STAMP).exists() {
        download(&package, &dir)?;
    } else {
        eprintln!("vmtest: kernel {package} (cached in {})", dir.display());
    }
    let boot = root.join("boot");
    let image = find_one(&boot, "vmlinuz-")?;
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
        .ok_or_else(|| format!("{} holds no lib/modules directory", root.display()))?;
    let modules = find_one(&modules, "")?;
    Ok(Kernel {
        image,
        modules: Some(modules),
        label: package,
    })
}

/// The kernel packages fully unpacked in `cache_dir`, sorted by name.
fn cached_packages(cache_dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(cache_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STAMP).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    found.sort();
    found
}

/// The package `linux-image-cloud-amd64` depends on, e.g. `linux-image-6.1.0-56-cloud-amd64`.
fn cloud_kernel_package() -> Result<String> {
    let mut cmd = Command::new("apt-cache");
    cmd.args(["depends", "--important", META_PACKAGE]);
    let out = run_output(&mut cmd).map_err(|e| {
        format!(
            "{e}\nvmtest: cannot find Debian's cloud kernel: run `apt-get update` first \
             (apt needs its package lists), or pass --kernel PATH [--modules DIR]"
        )
    })?;
    parse_depends(&out).ok_or_else(|| {
        format!(
            "{} names no linux-image-* dependency; output:\n{out}\nrun `apt-get update`, \
             or pass --kernel PATH [--modules DIR]",
            display_cmd(&cmd)
        )
    })
}

/// The first `Depends: linux-image-*` package in `apt-cache depends` output.
fn parse_depends(out: &str) -> Option<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.contains(['<', ' ']))
        .map(str::to_owned)
}

fn download(package: &str, dir: &Path) -> Result<()> {
    eprintln!("vmtest: downloading {package} into {}", dir.display());
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut cmd = Command::new("apt-get");
    cmd.args(["download", package]).current_dir(dir);
    run_output(&mut cmd).map_err(|e| {
        format!("{e}\nvmtest: if apt lacks its package lists, run `apt-get update` first")
    })?;
    let deb = find_one(dir, &format!("{package}_"))?;
    let tmp = dir.join("root.tmp");
    let mut cmd = Command::new("dpkg");
    cmd.arg("-x").arg(&deb).arg(&tmp);
    run_output(&mut cmd)?;
    fs::rename(&tmp, dir.join("root"))
        .and_then(|()| fs::remove_file(&deb))
        .and_then(|()| fs::write(dir.join(STAMP), package))
        .map_err(|e| format!("cannot finish unpacking in {}: {e}", dir.display()))
}

/// The single entry of `dir` whose name starts with `prefix`.
fn find_one(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.starts_with('.'))
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("{} holds no {prefix}* entry", dir.display())),
        _ => Err(format!(
            "{} holds several {prefix}* entries: {found:?}",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::bookworm(
        "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n",
        Some("linux-image-6.1.0-56-cloud-amd64")
    )]
    #[case::virtual_first(
        "linux-image-cloud-amd64\n  Depends: <linux-image-x>\n  Depends: linux-image-6.12.9-cloud-amd64\n",
        Some("linux-image-6.12.9-cloud-amd64")
    )]
    #[case::none("linux-image-cloud-amd64\n", None)]
    fn parses_apt_cache_depends(#[case] out: &str, #[case] expected: Option<&str>) {
        assert_eq!(parse_depends(out).as_deref(), expected);
    }
}

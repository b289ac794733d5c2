//! `cargo xtask dist`: the files a package ships beside the binary, in `target/dist/`: man
//! pages (`man/man1/netcr.1`, one `netcr-SUBCOMMAND.1` each) and bash, zsh and fish
//! completions (`completions/`). They are generated from netcr's clap definitions by
//! `netcr::dist::generate` (through the netcr crate's `dist` example, so that this crate need
//! not build netcr); `cargo test -p netcr` tests that function.

use clap::Args;

use crate::{cargo, workspace_root, Result};

/// `cargo xtask dist`.
#[derive(Debug, Args)]
pub struct DistArgs {}

/// Generates everything under `target/dist/`, replacing what an earlier run left there.
pub fn run(_args: &DistArgs) -> Result<()> {
    let out = workspace_root().join("target").join("dist");
    for sub in ["man", "completions"] {
        let dir = out.join(sub);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let status = cargo()
        .args(["run", "--quiet", "-p", "netcr", "--example", "dist", "--"])
        .arg(&out)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("generating {} failed ({status})", out.display()));
    }
    eprintln!(
        "wrote {}: man/man1/*.1, completions/{{netcr.bash,_netcr,netcr.fish}}",
        out.display()
    );
    Ok(())
}

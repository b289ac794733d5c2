//! What a package ships beside the binary, generated from the clap definitions so it cannot
//! drift from them: man pages (`netcr.1`, one `netcr-SUBCOMMAND.1` each) and bash, zsh and
//! fish completions. `cargo xtask dist` writes them to `target/dist/`.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes the man pages under `out/man/man1/` and the completions under `out/completions/`
/// (`netcr.bash`, `_netcr`, `netcr.fish`); returns every file written.
pub fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = out.join("man").join("man1");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(Cli::command(), &man)?;
    for entry in std::fs::read_dir(&man)? {
        written.push(entry?.path());
    }
    written.sort();
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "netcr", &completions)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand has its page, each page names its command and options, and each
    /// shell's completion offers the subcommands.
    #[test]
    fn man_pages_and_completions_are_generated_for_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "netcr.1",
            "netcr-dump.1",
            "netcr-restore.1",
            "netcr-show.1",
            "netcr-diff.1",
            "netcr-recover.1",
            "netcr-check.1",
            "netcr-demo.1",
            "netcr.bash",
            "_netcr",
            "netcr.fish",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        let read = |name: &str| {
            std::fs::read_to_string(files.iter().find(|p| p.ends_with(name)).unwrap()).unwrap()
        };
        let dump = read("netcr-dump.1");
        assert!(dump.contains(".TH netcr-dump 1"), "{dump}");
        assert!(dump.contains("\\-\\-leave\\-out"), "{dump}");
        assert!(
            read("netcr.1").contains("netcr\\-diff(1)"),
            "the main page lists the others"
        );
        let bash = read("netcr.bash");
        for sub in ["dump", "restore", "diff", "check"] {
            assert!(bash.contains(sub), "bash completion lacks {sub}");
            assert!(read("_netcr").contains(sub), "zsh completion lacks {sub}");
            assert!(
                read("netcr.fish").contains(sub),
                "fish completion lacks {sub}"
            );
        }
        assert!(bash.contains("--images-dir"));
    }
}

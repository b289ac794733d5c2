//! Writes netcr's man pages and shell completions (see `netcr::dist`) under the directory
//! given (`cargo xtask dist` runs it with `target/dist`).

fn main() -> std::process::ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: dist OUT_DIR");
        return std::process::ExitCode::from(2);
    };
    match netcr::dist::generate(std::path::Path::new(&out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dist: {}: {e}", std::path::Path::new(&out).display());
            std::process::ExitCode::FAILURE
        }
    }
}

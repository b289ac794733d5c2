//! The `netcr` binary; run under the name `netcr-criu-hook` (a symlink), it is CRIU's action
//! script instead.

fn main() -> std::process::ExitCode {
    if netcr::criu_hook::invoked_as_hook() {
        return netcr::criu_hook::main();
    }
    netcr::cli::main()
}

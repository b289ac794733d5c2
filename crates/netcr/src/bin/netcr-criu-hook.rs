//! The `netcr-criu-hook` binary: netcr as CRIU's action script (see `netcr::criu_hook`).

fn main() -> std::process::ExitCode {
    netcr::criu_hook::main()
}

//! The `netcr` binary.

fn main() -> std::process::ExitCode {
    netcr::cli::main()
}

//! The `s3rf-agent` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    s3rf_agent::cli::main()
}

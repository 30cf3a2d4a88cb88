//! The `obd` binary: everything is in the library ([`obd::cmd::main`]).

fn main() -> std::process::ExitCode {
    obd::cmd::main()
}

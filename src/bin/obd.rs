fn main() -> std::process::ExitCode {
    obd::cmd::main()
}

fn main() -> std::process::ExitCode {
    wasio::run_cli()
}

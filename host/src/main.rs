fn main() -> std::process::ExitCode {
    wasio::cli::main()
}

fn main() -> std::process::ExitCode {
    vaarta::main_entry()
}

//! The `vaarta` CLI, built inside the test package (see Cargo.toml).
fn main() -> std::process::ExitCode {
    vaarta::main_entry()
}

//! The real `opsrun` program, built inside this package so that tests can start it as a
//! separate process (`CARGO_BIN_EXE_opsrun-under-test`) and kill it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    opsrun_app::main_entry().await
}

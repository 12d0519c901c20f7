//! The `opsrun` binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    opsrun_app::main_entry().await
}

//! The `opsrun` binary: parses the command line. Subcommands arrive with the app issue; today
//! `opsrun --help` and `opsrun --version` describe the tool.

use clap::Parser;
use opsrun_app::Cli;

fn main() {
    let _cli = Cli::parse();
}

//! The `tessera` command: the only composition root of the workspace.
//!
//! Subcommands grow with the issues; today there are the `debug` tools over the filenode core.

mod bench;
mod debug;

use clap::{Parser, Subcommand};

/// Tessera: a decentralized, encrypted storage grid compatible with Tahoe-LAFS.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Low-level tools for inspecting caps and encodings.
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug(command) => debug::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tessera: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The `tessera` command: the only composition root of the workspace.
//!
//! Subcommands: `create-node` and `run` for storage nodes, and the `debug` tools.

mod announcement;
mod bench;
mod bench_dir;
mod bench_grid;
mod cli_client;
mod client;
mod config;
mod daemon;
mod debug;
mod devgrid;
mod introducer;
mod nodedir;
mod output;

use clap::{Parser, Subcommand};

/// Tessera: a decentralized, encrypted storage grid compatible with Tahoe-LAFS.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, propagate_version = true)]
struct Cli {
    /// The node directory of the gateway that put/get/status talk to.
    #[arg(long, global = true, env = "TESSERA_NODE_DIRECTORY", value_name = "DIR")]
    node_directory: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    fn node_directory(&self) -> std::path::PathBuf {
        self.node_directory.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default()
                .join(".tessera")
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node directory (a storage server; the client side comes with the grid).
    CreateNode(nodedir::CreateNodeArgs),
    /// Create an introducer, where storage nodes announce themselves and clients learn of them.
    CreateIntroducer(nodedir::CreateIntroducerArgs),
    /// Create a client node (a web gateway without storage).
    CreateClient(nodedir::CreateClientArgs),
    /// Create (first time) and run a local grid: storage nodes and a gateway on 127.0.0.1.
    Devgrid(devgrid::DevgridArgs),
    /// Run the node in DIR in the foreground until Ctrl-C or SIGTERM.
    Run {
        /// The node directory.
        dir: std::path::PathBuf,
    },
    /// Upload a file (or standard input) and print its cap.
    Put {
        /// Use a random key instead of the convergence secret (no deduplication; one pass).
        #[arg(long)]
        no_convergence: bool,
        /// The file; `-` or nothing reads standard input.
        file: Option<String>,
    },
    /// Download a file by its cap to OUTFILE (or standard output).
    Get {
        /// The file's cap.
        cap: String,
        /// Where to write it; `-` or nothing writes to standard output.
        outfile: Option<String>,
    },
    /// Show the storage servers the node knows and whether they are connected.
    Status,
    /// Low-level tools for inspecting caps and encodings.
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let node_dir = cli.node_directory();
    let result = match cli.command {
        Command::Put { file, no_convergence } => cli_client::put(&node_dir, file.as_deref(), !no_convergence),
        Command::Get { cap, outfile } => cli_client::get(&node_dir, &cap, outfile.as_deref()),
        Command::Status => cli_client::status(&node_dir),
        Command::CreateNode(args) => nodedir::create_node(&args),
        Command::CreateIntroducer(args) => nodedir::create_introducer(&args),
        Command::CreateClient(args) => nodedir::create_node(&args.into_node_args()),
        Command::Devgrid(args) => devgrid::run(&args),
        Command::Run { dir } => daemon::run(&dir),
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

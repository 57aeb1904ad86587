//! The `tessera` command: the only composition root of the workspace.
//!
//! Subcommands: `create-node` and `run` for storage nodes, the file-store commands (`put`, `get`,
//! `ls`, `cp`, ... over a gateway, as Tahoe's CLI), the checking commands (`check`, `deep-check`,
//! `manifest`), `admin` (SFTP accounts), and the `debug` tools.

mod admin;
mod aliases;
mod announcement;
mod bench;
mod bench_dir;
mod bench_grid;
mod bench_hundred;
mod cli_check;
mod cli_client;
mod cli_fs;
mod cli_tls;
mod client;
mod config;
mod daemon;
mod debug;
mod devgrid;
mod ftpd;
#[cfg(test)]
mod fuzz;
mod introducer;
mod introducer_config;
mod logging;
mod nodedir;
mod output;
mod refused;
mod webdavd;
mod weblayers;
mod webtls;

use clap::{Parser, Subcommand};

/// jemalloc instead of the system's malloc, with its background thread on (see `main`): a node's
/// resident memory then follows what it holds, not the peak of every transfer it ever served.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tessera: a decentralized, encrypted storage grid compatible with Tahoe-LAFS.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, propagate_version = true)]
struct Cli {
    /// The node directory of the gateway that the file-store commands talk to (its `node.url`
    /// and `private/aliases`).
    #[arg(
        short = 'd',
        long,
        global = true,
        env = "TESSERA_NODE_DIRECTORY",
        value_name = "DIR"
    )]
    node_directory: Option<std::path::PathBuf>,
    /// The gateway's URL (such as http://127.0.0.1:3456), instead of the node directory's node.url.
    #[arg(short = 'u', long, global = true, value_name = "URL")]
    node_url: Option<String>,
    /// For an https gateway: trust only certificates signed by the CA certificates in this PEM
    /// file (instead of the node directory's own web.port certificate, or the system's roots).
    #[arg(long, global = true, env = cli_tls::CA_FILE_ENV, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
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
    /// Upload a file (or standard input), optionally linking it at ALIAS:path, and print its cap.
    Put(cli_fs::PutArgs),
    /// Download a file (by ALIAS:path or cap) to a local file or standard output.
    Get(cli_fs::GetArgs),
    /// List a directory (default `tahoe:`).
    Ls(cli_fs::LsArgs),
    /// Make a directory (linked at ALIAS:path, or unlinked) and print its cap.
    Mkdir(cli_fs::MkdirArgs),
    /// Copy files and directories between the local filesystem and the grid, or within the grid.
    Cp(cli_fs::CpArgs),
    /// Move a link within the grid.
    Mv(cli_fs::MoveArgs),
    /// Link an object that is in the grid at a second name.
    Ln(cli_fs::MoveArgs),
    /// Remove a link from its directory (the object itself stays in the grid).
    Unlink(cli_fs::UnlinkArgs),
    /// Make a new directory and name it with a new alias.
    CreateAlias(cli_fs::CreateAliasArgs),
    /// Name an existing directory (by its cap) with a new alias.
    AddAlias(cli_fs::AddAliasArgs),
    /// Show the aliases and their directory caps.
    ListAliases(cli_fs::ListAliasesArgs),
    /// Check a file or directory: how many of its shares the servers hold (and, with --verify,
    /// whether they are intact); optionally renew leases.
    Check(cli_check::CheckArgs),
    /// Check every file and directory reachable from a directory, like `check` for each.
    DeepCheck(cli_check::DeepCheckArgs),
    /// List every file and directory reachable from a directory, with its cap and path.
    Manifest(cli_check::ManifestArgs),
    /// Show the storage servers the node knows and whether they are connected.
    Status,
    /// Manage the SFTP accounts of a client node (`add-user`, `passwd`).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Low-level tools for inspecting caps and encodings.
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

/// jemalloc keeps freed pages for 10 s by default, then only marks them reclaimable
/// (`MADV_FREE`), which still counts as resident until the kernel is short of memory: a gateway
/// idle after transfers stayed 17.6 MiB above its 8.4 MiB at start. Pages unused for a second are
/// now returned outright; a transfer reuses its buffers within milliseconds, so it does not notice.
/// (The `arenas.*` keys set the arenas made later, one per thread group; `arena.4096.*` the ones
/// already made.) The workspace's build of jemalloc has the same built in, with one arena
/// (`.cargo/config.toml`); this keeps a build without that configuration (another workspace, a
/// `cargo install` from elsewhere) as frugal as it can be at run time.
fn release_freed_memory_sooner() {
    use tikv_jemalloc_ctl::{Access, AsName};
    for (key, value) in [
        (&b"arenas.dirty_decay_ms\0"[..], 1000isize),
        (b"arenas.muzzy_decay_ms\0", 0),
        (b"arena.4096.dirty_decay_ms\0", 1000),
        (b"arena.4096.muzzy_decay_ms\0", 0),
    ] {
        // Memory, never correctness: a key this jemalloc lacks is no failure.
        let _ = key.name().write(value);
    }
}

fn main() -> std::process::ExitCode {
    // Without its background thread jemalloc returns freed pages only when a thread next
    // allocates, so an idle gateway would keep the memory of its last transfer. A failure here
    // only costs memory, never correctness, so it is not fatal.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    release_freed_memory_sooner();
    let cli = Cli::parse();
    let node_dir = cli.node_directory();
    let Cli {
        command,
        node_url,
        ca_file,
        ..
    } = cli;
    let gateway = cli_client::GatewayArgs { node_url, ca_file };
    let fs = |node_dir: &std::path::Path| cli_fs::FileStore::new(node_dir, &gateway);
    let result = match command {
        Command::Put(args) => fs(&node_dir).and_then(|ctx| cli_fs::put(&ctx, &args)),
        Command::Get(args) => fs(&node_dir).and_then(|ctx| cli_fs::get(&ctx, &args)),
        Command::Ls(args) => fs(&node_dir).and_then(|ctx| cli_fs::ls(&ctx, &args)),
        Command::Mkdir(args) => fs(&node_dir).and_then(|ctx| cli_fs::mkdir(&ctx, &args)),
        Command::Cp(args) => fs(&node_dir).and_then(|ctx| cli_fs::cp(&ctx, &args)),
        Command::Mv(args) => fs(&node_dir).and_then(|ctx| cli_fs::mv(&ctx, &args)),
        Command::Ln(args) => fs(&node_dir).and_then(|ctx| cli_fs::ln(&ctx, &args)),
        Command::Unlink(args) => fs(&node_dir).and_then(|ctx| cli_fs::unlink(&ctx, &args)),
        Command::CreateAlias(args) => fs(&node_dir).and_then(|mut ctx| cli_fs::create_alias(&mut ctx, &args)),
        Command::AddAlias(args) => fs(&node_dir).and_then(|mut ctx| cli_fs::add_alias(&mut ctx, &args)),
        Command::ListAliases(args) => fs(&node_dir).and_then(|ctx| cli_fs::list_aliases(&ctx, &args)),
        Command::Check(args) => fs(&node_dir).and_then(|ctx| cli_check::check(&ctx, &args)),
        Command::DeepCheck(args) => fs(&node_dir).and_then(|ctx| cli_check::deep_check(&ctx, &args)),
        Command::Manifest(args) => fs(&node_dir).and_then(|ctx| cli_check::manifest(&ctx, &args)),
        Command::Status => cli_client::status(&node_dir, &gateway),
        Command::CreateNode(args) => nodedir::create_node(&args),
        Command::CreateIntroducer(args) => nodedir::create_introducer(&args),
        Command::CreateClient(args) => nodedir::create_node(&args.into_node_args()),
        Command::Devgrid(args) => devgrid::run(&args),
        Command::Run { dir } => daemon::run(&dir),
        Command::Admin(command) => admin::run(&node_dir, &gateway, command),
        Command::Debug(command) => debug::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tessera: {error:#}");
            match error.downcast_ref::<cli_fs::Exit>() {
                Some(exit) => std::process::ExitCode::from(exit.code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

//! `tessera admin add-user` and `tessera admin passwd`: the SFTP (and later FTP) accounts file of a
//! client node (`[sftpd] accounts.file`, default `private/accounts`). Passwords are read without
//! echo (or from standard input with `--password-stdin`) and only their argon2id hash is written.
//! A running node picks the change up at the next login.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use filenode::cap::{Cap, DirCap};
use frontends::accounts::{self, Credential};
use hyper::Method;

use crate::config::NodeConfig;

/// `tessera admin ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AdminCommand {
    /// Add an SFTP account (or one more public key of an existing account).
    AddUser(AddUserArgs),
    /// Set or change the password of an SFTP account.
    Passwd(PasswdArgs),
}

/// Options of `tessera admin add-user`.
#[derive(Debug, clap::Args)]
pub(crate) struct AddUserArgs {
    /// The login name.
    user: String,
    /// Log in with this OpenSSH public key: a `.pub` file or the key line itself.
    #[arg(long, value_name = "PUBKEY")]
    key: Option<String>,
    /// The user's root directory cap (default: a new directory made through the node's gateway,
    /// or the account's existing root when adding a key).
    #[arg(long, value_name = "DIRCAP")]
    root_cap: Option<String>,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

/// Options of `tessera admin passwd`.
#[derive(Debug, clap::Args)]
pub(crate) struct PasswdArgs {
    /// The login name.
    user: String,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

pub(crate) fn run(
    node_dir: &Path,
    gateway_args: &crate::cli_client::GatewayArgs,
    command: AdminCommand,
) -> anyhow::Result<()> {
    let file = accounts_file(node_dir)?;
    match command {
        AdminCommand::AddUser(args) => add_user(node_dir, gateway_args, &file, args),
        AdminCommand::Passwd(args) => {
            let password = read_password(args.password_stdin)?;
            accounts::set_password(&file, &args.user, &password)?;
            crate::output::line(&format!(
                "Password of {} changed in {}",
                args.user,
                file.display()
            ))
        }
    }
}

fn accounts_file(node_dir: &Path) -> anyhow::Result<PathBuf> {
    if !node_dir.join("tahoe.cfg").is_file() {
        bail!(
            "{} is not a Tessera node directory; pass the client node's with --node-directory",
            node_dir.display()
        );
    }
    Ok(NodeConfig::load(node_dir)?.sftp.accounts_file)
}

fn add_user(
    node_dir: &Path,
    gateway_args: &crate::cli_client::GatewayArgs,
    file: &Path,
    args: AddUserArgs,
) -> anyhow::Result<()> {
    let existing_root = std::fs::read_to_string(file).ok().and_then(|text| {
        accounts::Accounts::parse(&text, "")
            .get(&args.user)
            .map(|a| a.root.clone())
    });
    let credential = match &args.key {
        Some(key) => {
            let line = if Path::new(key).is_file() {
                std::fs::read_to_string(key).with_context(|| format!("cannot read {key}"))?
            } else {
                key.clone()
            };
            Credential::Key(line.trim().to_owned())
        }
        None => Credential::Password(read_password(args.password_stdin)?),
    };
    let root = match (&args.root_cap, existing_root) {
        (Some(text), _) => match Cap::parse(text.trim()) {
            Ok(Cap::Dir(dir)) => dir,
            _ => bail!("--root-cap must be a directory cap (URI:DIR2...)"),
        },
        (None, Some(root)) => root,
        (None, None) => new_directory(node_dir, gateway_args)?,
    };
    accounts::add_user(file, &args.user, &credential, &root)?;
    crate::output::line(&format!("User {} added to {}", args.user, file.display()))
}

/// A new, empty directory made through the gateway.
fn new_directory(node_dir: &Path, gateway_args: &crate::cli_client::GatewayArgs) -> anyhow::Result<DirCap> {
    let gateway = crate::cli_client::Gateway::open(node_dir, gateway_args)
        .context("a new user's root directory is made through the running gateway (or pass --root-cap)")?;
    let (_, body) = gateway.call(
        Method::POST,
        &format!("{}?t=mkdir", gateway.unlinked()),
        Bytes::new(),
    )?;
    match Cap::parse(String::from_utf8_lossy(&body).trim()) {
        Ok(Cap::Dir(dir)) => Ok(dir),
        _ => bail!("the gateway did not answer with a directory cap"),
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("New password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Repeat it: ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords differ; nothing changed");
        }
        first
    };
    if password.is_empty() {
        bail!("the password is empty; nothing changed");
    }
    Ok(password)
}

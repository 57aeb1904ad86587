//! The file-system layer beneath the frontends: one user's view of the grid as paths (their root
//! directory, plus any cap named by `/uri/CAP/...`), with the policy every protocol shares written
//! once.
//!
//! - [`FsPath`]: the one path parser (see [`path`] for the rules and the `/uri/not-a-cap`
//!   decision).
//! - [`Fs::stat`], [`Fs::list`]: what a path is, with the link's times. A link's modification time
//!   is the user's `mtime` (set by an SFTP SETSTAT, a WebDAV client, …), else Tahoe's
//!   `linkmotime`: the user's is what their client last set (SFTP read it so; FTP read
//!   `linkmotime` first, which a client's own time could not change).
//! - [`Fs::open`]: a file for ranged reads streamed in bounded memory ([`FileReader::stream`]
//!   fetches only the segments a range needs).
//! - [`Fs::prepare_write`] and [`WriteTarget::commit`] (or [`Fs::write`]): Tahoe's replace
//!   semantics and the mutable-in-place rule: writing a name that holds a writable mutable file
//!   publishes a new version of that file (its cap, and every other link to it, see the new
//!   contents); a directory is never replaced by a write; anything else (no child, an immutable
//!   file, a read-only mutable file) is uploaded as a new immutable file and linked under the
//!   name, keeping the old link's user metadata. The input is any `Read + Seek` (the frontends'
//!   encrypted spool), read once for the convergent key and once to encode.
//! - [`Fs::mkdir`], [`Fs::mkdir_all`], [`Fs::unlink`] (files), [`Fs::rmdir`] (empty
//!   directories), [`Fs::remove`] (any link, as Tahoe's unlink), [`Fs::rename`] (within and
//!   across directories, one call), [`Fs::copy`]; for protocols that name a child apart from a
//!   path (the web API's `name=`), [`Fs::remove_child`] and [`Fs::rename_child`], which find it as
//!   stored; [`Fs::link`] links objects that exist (Tahoe's `t=uri`, `set_children`).
//! - [`Fs::without_root`]: a file system whose every path starts at a cap ([`FsPath::at_cap`]),
//!   the web API's.
//! - [`Fs::set_metadata`]: a link's user metadata (a client's `mtime`, the read-only mark).
//! - [`FsError`]: one error type, whose [`FsErrorKind`] each protocol maps in its one place; no
//!   message holds a cap.
//!
//! ## Read-only links (Tahoe's `no-write`)
//!
//! A link whose metadata holds `"no-write": true` (set by SFTP's `chmod` without write bits, as
//! Tahoe's SFTP server sets it; [`Fs::set_metadata`] with [`MetadataChange::no_write`]) is
//! read-only for every frontend on this layer:
//! - writing its name ([`Fs::prepare_write`], so also a mutable file written in place through it)
//!   and replacing it (a rename or copy over it) are refused with [`FsErrorKind::ReadOnly`]; a
//!   write is checked when it is prepared (before any byte arrives, as Tahoe checks at open), so
//!   a mark set while an upload is under way does not stop that upload;
//! - removing it ([`Fs::unlink`], [`Fs::rmdir`], [`Fs::remove`]) is refused too, as Windows
//!   refuses to delete a read-only file (Tahoe, like POSIX, lets the link be deleted: it only
//!   refuses to open it for writing). Clearing the mark first (`chmod u+w`) allows both;
//! - renaming it *away* is allowed: the link keeps its metadata, so the mark moves with it and
//!   nothing is lost or replaced;
//! - a directory or mutable file reached through it is seen through its read-only cap, so nothing
//!   below a marked directory link can be changed through that path ([`Stat::writable`] is false).
//!
//! Every change that would replace or remove a marked link checks the mark inside the directory
//! write that makes it (a [`crate::node::EntryGuard`]), on the directory as it is then.
//!
//! Tahoe's directories go further and replace a marked link's write cap by its read-only cap when
//! the mark is set, for good; here the write cap stays in the directory, so clearing the mark
//! gives write access back. Tahoe reads the mark the same way (its SFTP server refuses writes
//! through it), but its web API does not honour it; Tessera's web API, on this layer, does.

pub mod append;
mod error;
pub mod path;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

pub use error::{FsError, FsErrorKind};
pub use path::{Base, FsPath};

use crate::cap::{Cap, FileCap, MutableFormat};
use crate::grid::Grid;
use crate::grid::mutable::{ChunkSource, chunks_from_read};
use crate::node::metadata::Metadata;
use crate::node::{Child, DirNode, FileNode, FileReader, Node, NodeError, Replace, unusable_as_path};

/// The largest SDMF file written: an SDMF file is one segment, encoded and published in memory
/// (MDMF files have no such bound).
pub const SDMF_MAX_SIZE: u64 = 16 << 20;

/// The most objects one [`Fs::copy`] of a directory tree creates or links.
pub const MAX_COPY_ENTRIES: usize = 10_000;
/// The deepest directory tree one [`Fs::copy`] copies.
pub const MAX_COPY_DEPTH: usize = 64;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A file.
    File,
    /// A cap this version cannot interpret.
    Unknown,
}

/// What [`Fs::stat`] and [`Fs::list`] tell of an object and its link.
#[derive(Debug, Clone)]
pub struct Stat {
    /// File, directory or unknown.
    pub kind: EntryKind,
    /// The size of a file (0 for a directory or an unknown object; for a mutable file, its current
    /// version's, 0 if that could not be read).
    pub size: u64,
    /// Whether the object can change (a mutable file or directory).
    pub mutable: bool,
    /// Whether this cap can change the object itself (a directory's children, a mutable file's
    /// contents).
    pub writable: bool,
    /// Whether the link can be changed (renamed, removed, replaced): its directory is writable.
    /// False for a path's base (the root, a cap).
    pub link_writable: bool,
    /// The link's modification time (Unix seconds): the user's `mtime`, else `linkmotime`.
    pub mtime: Option<f64>,
    /// The link's creation time: the user's `ctime`, else `linkcrtime`.
    pub ctime: Option<f64>,
    /// The `CHK`/`SDMF`/`MDMF` format of a file (directories: of their file).
    pub format: &'static str,
    /// Whether the link is marked read-only (Tahoe's `no-write`; see the module).
    pub no_write: bool,
}

/// One child in a listing.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name (usable as a path segment: names that are not are left out of listings).
    pub name: String,
    /// What it is.
    pub stat: Stat,
}

/// An object found at a path, with the link that led to it (none for a path's base).
#[derive(Debug, Clone)]
pub struct Found {
    /// The object.
    pub node: Node,
    /// The directory that holds the link and the link itself.
    pub link: Option<(DirNode, Child)>,
}

/// The metadata key of Tahoe's read-only mark on a link.
pub const NO_WRITE: &str = "no-write";

/// Whether a link's metadata marks it read-only (Tahoe's `no-write`, read as Python's truth of the
/// value: `true`, a non-zero number, a non-empty string, list or object).
pub fn is_no_write(metadata: &Metadata) -> bool {
    match metadata.get(NO_WRITE) {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(serde_json::Value::String(s)) => !s.is_empty(),
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Object(o)) => !o.is_empty(),
    }
}

/// Changes to a link's user metadata ([`Fs::set_metadata`]): each `Some` is applied, each `None`
/// leaves what is there.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetadataChange {
    /// The modification time a client gives (Unix seconds), stored as the user's `mtime`.
    pub mtime: Option<f64>,
    /// `true` marks the link read-only (`"no-write": true`), `false` removes the mark.
    pub no_write: Option<bool>,
}

fn no_write_refused(what: &str) -> FsError {
    FsError::new(
        FsErrorKind::ReadOnly,
        format!("{what} is marked read-only (no-write): clear the mark first (chmod u+w)"),
    )
}

/// One user's file system: their root directory over a grid.
#[derive(Clone)]
pub struct Fs {
    grid: Arc<Grid>,
    /// None for a file system of caps only ([`Fs::without_root`]).
    root: Option<DirNode>,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the root cap.
        f.debug_struct("Fs").finish_non_exhaustive()
    }
}

/// Unix seconds in a metadata value.
fn seconds(metadata: &Metadata, user: &str, tahoe: &str) -> Option<f64> {
    metadata
        .get(user)
        .and_then(serde_json::Value::as_f64)
        .or_else(|| {
            metadata
                .get("tahoe")
                .and_then(|t| t.get(tahoe))
                .and_then(serde_json::Value::as_f64)
        })
        .filter(|s| s.is_finite() && *s >= 0.0)
}

/// The user part of a link's metadata (without Tahoe's own `tahoe` key).
fn user_metadata(metadata: &Metadata) -> Metadata {
    let mut user = metadata.clone();
    user.shift_remove("tahoe");
    user
}

fn not_a_directory() -> FsError {
    FsError::new(FsErrorKind::NotADirectory, "not a directory")
}

fn is_a_directory() -> FsError {
    FsError::new(FsErrorKind::IsADirectory, "is a directory")
}

fn no_link() -> FsError {
    FsError::new(
        FsErrorKind::ReadOnly,
        "the root directory (or an object reached by its cap) has no link to change",
    )
}

impl Fs {
    /// The file system of a user whose root directory is `root`.
    pub fn new(grid: &Arc<Grid>, root: DirNode) -> Self {
        Fs {
            grid: Arc::clone(grid),
            root: Some(root),
        }
    }

    /// A file system with no root directory, where every path starts at a cap
    /// ([`FsPath::at_cap`]): the web API's, whose every URL names its cap (`/uri/$CAP/...`; the
    /// gateway has no accounts). A path from the root is refused ([`FsErrorKind::BadPath`]).
    pub fn without_root(grid: &Arc<Grid>) -> Self {
        Fs {
            grid: Arc::clone(grid),
            root: None,
        }
    }

    /// The grid.
    pub fn grid(&self) -> &Arc<Grid> {
        &self.grid
    }

    /// The node a path starts at.
    fn base_node(&self, base: &Base) -> Result<Node, FsError> {
        match (base, &self.root) {
            (Base::Root, Some(root)) => Ok(Node::Dir(root.clone())),
            (Base::Root, None) => Err(FsError::bad_path(
                "here every path starts at a cap (/uri/CAP/...)",
            )),
            (Base::Cap(cap), _) => Ok(self.grid.node(cap.clone())),
        }
    }

    /// Follows a path.
    pub async fn find(&self, path: &FsPath) -> Result<Found, FsError> {
        let mut node = self.base_node(path.base())?;
        let mut link = None;
        for name in path.names() {
            let Node::Dir(dir) = node else {
                // Tahoe's words (the web API's "Files have no children named ...").
                return Err(FsError::new(
                    FsErrorKind::NotADirectory,
                    format!("a file is not a directory: files have no children (no {name:?})"),
                ));
            };
            let child = dir.get(name).await?;
            node = self.through_link(&child);
            link = Some((dir, child));
        }
        Ok(Found { node, link })
    }

    /// The object a link leads to, as the link allows: through a link marked `no-write`, a
    /// writable directory or mutable file is seen through its read-only cap.
    fn through_link(&self, child: &Child) -> Node {
        if is_no_write(&child.metadata)
            && !child.cap.is_readonly()
            && let Some(readonly) = child.cap.readonly()
        {
            return self.grid.node(readonly);
        }
        child.node(&self.grid)
    }

    /// The directory at a path.
    pub async fn dir(&self, path: &FsPath) -> Result<DirNode, FsError> {
        match self.find(path).await?.node {
            Node::Dir(dir) => Ok(dir),
            _ => Err(not_a_directory()),
        }
    }

    /// The directory that holds (or would hold) a path's last name, and that name.
    pub async fn parent(&self, path: &FsPath) -> Result<(DirNode, String), FsError> {
        let (Some(parent), Some(name)) = (path.parent(), path.name()) else {
            return Err(no_link());
        };
        Ok((self.dir(&parent).await?, name.to_owned()))
    }

    /// What a path names. A mutable file's size is its current version's (one read of the grid).
    pub async fn stat(&self, path: &FsPath) -> Result<Stat, FsError> {
        let found = self.find(path).await?;
        let (link_writable, metadata) = match &found.link {
            Some((dir, child)) => (!dir.is_readonly(), Some(&child.metadata)),
            None => (false, None),
        };
        if let (Node::Unknown(_), None) = (&found.node, &found.link) {
            return Err(FsError::bad_path("this version cannot open that kind of object"));
        }
        Ok(stat_of(&found.node, metadata, link_writable, true).await)
    }

    /// The children of the directory at `path`, sorted by name, each with its stat. Names that
    /// cannot be path segments (empty, `.`, `..`, holding `/` or NUL: only a directory written by
    /// hand holds such) are left out. Mutable files' sizes are read a few at a time.
    pub async fn list(&self, path: &FsPath) -> Result<Vec<Entry>, FsError> {
        let dir = self.dir(path).await?;
        let writable = !dir.is_readonly();
        let children: Vec<Child> = dir
            .list()
            .await?
            .into_iter()
            .filter(|child| unusable_as_path(&child.name).is_none())
            .collect();
        // Owned items: a future that borrows from the listing would not be `Send` for every
        // lifetime, which a frontend that boxes it needs.
        let items: Vec<(Node, Metadata)> = children
            .iter()
            .map(|child| (self.through_link(child), child.metadata.clone()))
            .collect();
        let stats =
            futures::stream::iter(items.into_iter().map(|(node, metadata)| async move {
                stat_of(&node, Some(&metadata), writable, true).await
            }))
            .buffered(8)
            .collect::<Vec<_>>()
            .await;
        Ok(children
            .into_iter()
            .zip(stats)
            .map(|(child, stat)| Entry {
                name: child.name,
                stat,
            })
            .collect())
    }

    /// The file at `path`.
    pub async fn file(&self, path: &FsPath) -> Result<FileNode, FsError> {
        match self.find(path).await?.node {
            Node::File(file) => Ok(file),
            Node::Dir(_) => Err(is_a_directory()),
            Node::Unknown(_) => Err(FsError::new(
                FsErrorKind::Other,
                "this version cannot read that kind of object",
            )),
        }
    }

    /// Opens the file at `path` for ranged reads (one version of a mutable file):
    /// [`FileReader::stream`] streams any range in bounded memory.
    pub async fn open(&self, path: &FsPath) -> Result<FileReader, FsError> {
        Ok(self.file(path).await?.open().await?)
    }

    /// Where a write of `path` goes, checked before any byte is received: refuses a directory, a
    /// read-only directory or file, a missing parent, and (with [`Replace::Never`]) a taken name.
    /// [`Replace::Always`] and [`Replace::OnlyFiles`] mean the same here: a write never replaces
    /// a directory.
    pub async fn prepare_write(&self, path: &FsPath, replace: Replace) -> Result<WriteTarget, FsError> {
        self.prepare_write_with(path, WriteOptions::new(replace)).await
    }

    /// [`Fs::prepare_write`] with [`WriteOptions`]: missing parent directories created (Tahoe's
    /// web `PUT`), or a new object instead of a new version of a writable mutable file there.
    /// The directory read that finds what is at the name is kept for the commit's directory
    /// write ([`DirNode::lookup_for_update`]), which then does not read the directory again.
    pub async fn prepare_write_with(
        &self,
        path: &FsPath,
        options: WriteOptions,
    ) -> Result<WriteTarget, FsError> {
        let create_parents = options.create_parents;
        if path.names().is_empty() {
            // `/uri/CAP` of a mutable file: a new version of that file.
            return match self.base_node(path.base())? {
                Node::File(file) if file.is_mutable() && !file.is_readonly() => Ok(WriteTarget {
                    grid: Arc::clone(&self.grid),
                    destination: Destination::InPlace { file, link: None },
                    mtime: None,
                    hashed: None,
                    keep_link: false,
                }),
                Node::Dir(_) => Err(is_a_directory()),
                _ => Err(FsError::new(
                    FsErrorKind::ReadOnly,
                    "that object cannot be written",
                )),
            };
        }
        let (parent, name) = match (create_parents, path.parent(), path.name()) {
            (Some(format), Some(parent), Some(name)) => {
                (self.mkdir_all_as(&parent, format).await?, name.to_owned())
            }
            _ => self.parent(path).await?,
        };
        self.prepare_write_in(&parent, &name, options).await
    }

    /// [`Fs::prepare_write_with`] of the child `name` of a directory already found (by
    /// [`Fs::find`] or [`Fs::dir`]: a protocol that names the directory and the child apart, as
    /// the web API's `POST t=upload&name=` does, finds the directory once). `name` must be
    /// usable as a path segment.
    pub async fn prepare_write_in(
        &self,
        parent: &DirNode,
        name: &str,
        options: WriteOptions,
    ) -> Result<WriteTarget, FsError> {
        let WriteOptions {
            replace, in_place, ..
        } = options;
        let name = FsPath::root().join(name)?.name().unwrap_or(name).to_owned();
        let parent = parent.clone();
        if parent.is_readonly() {
            return Err(FsError::new(FsErrorKind::ReadOnly, "the directory is read-only"));
        }
        let existing = parent.lookup_for_update(&name).await?;
        let destination = match existing {
            None => Destination::Link {
                parent,
                name,
                old_metadata: None,
                old: None,
                replace,
            },
            Some(_) if replace == Replace::Never => {
                return Err(FsError::new(FsErrorKind::Exists, "the name exists already"));
            }
            Some(child) if is_no_write(&child.metadata) => {
                return Err(if child.is_dir() {
                    is_a_directory()
                } else {
                    no_write_refused("the file")
                });
            }
            Some(child) => match child.node(&self.grid) {
                Node::Dir(_) => return Err(is_a_directory()),
                Node::File(file) if in_place && file.is_mutable() && !file.is_readonly() => {
                    Destination::InPlace {
                        file,
                        link: Some((parent, child.name, child.metadata)),
                    }
                }
                // An immutable file, a read-only mutable file or an unknown object: replaced by a
                // new immutable file under the same name.
                old => Destination::Link {
                    parent,
                    name,
                    old_metadata: Some(child.metadata),
                    old: Some(old),
                    replace: Replace::OnlyFiles,
                },
            },
        };
        Ok(WriteTarget {
            grid: Arc::clone(&self.grid),
            destination,
            mtime: None,
            hashed: None,
            keep_link: false,
        })
    }

    /// Writes `len` bytes of `input` as `path` ([`Fs::prepare_write`], then
    /// [`WriteTarget::commit`]). Returns whether the name is new.
    pub async fn write<R>(&self, path: &FsPath, input: R, len: u64, replace: Replace) -> Result<bool, FsError>
    where
        R: std::io::Read + std::io::Seek + Send + 'static,
    {
        let target = self.prepare_write(path, replace).await?;
        target.commit(input, len, None).await
    }

    /// Creates an empty directory at `path`; its parent must exist, its name must be free.
    pub async fn mkdir(&self, path: &FsPath) -> Result<DirNode, FsError> {
        if path.names().is_empty() {
            return Err(FsError::new(FsErrorKind::Exists, "the directory already exists"));
        }
        let (parent, name) = self.parent(path).await?;
        Ok(parent
            .create_subdirectory(&name, MutableFormat::Sdmf, Replace::Never)
            .await?)
    }

    /// Creates the directory at `path` and any missing parents (Tahoe's SFTP mkdir); an existing
    /// directory at `path` is not an error, a file in the way is. A directory reached through a
    /// link marked `no-write` is read-only here as everywhere.
    pub async fn mkdir_all(&self, path: &FsPath) -> Result<DirNode, FsError> {
        self.mkdir_all_as(path, MutableFormat::Sdmf).await
    }

    /// [`Fs::mkdir_all`], making each missing directory in `format` (Tahoe's web API takes
    /// `format=MDMF` for `t=mkdir`).
    pub async fn mkdir_all_as(&self, path: &FsPath, format: MutableFormat) -> Result<DirNode, FsError> {
        let Node::Dir(mut dir) = self.base_node(path.base())? else {
            return Err(not_a_directory());
        };
        for name in path.names() {
            let child = match dir.lookup(name).await? {
                Some(child) => child,
                None => match dir.create_subdirectory(name, format, Replace::Never).await {
                    Ok(created) => {
                        dir = created;
                        continue;
                    }
                    // Linked meanwhile by another writer: follow theirs.
                    Err(NodeError::ExistingChild(_)) => dir.get(name).await?,
                    Err(e) => return Err(e.into()),
                },
            };
            dir = match self.through_link(&child) {
                Node::Dir(next) => next,
                _ => {
                    return Err(FsError::new(
                        FsErrorKind::NotADirectory,
                        format!("Unable to create directory {name:?}: a file was in the way"),
                    ));
                }
            };
        }
        Ok(dir)
    }

    /// Removes the link to the file at `path`; a directory is refused ([`Fs::rmdir`]), and so is
    /// a link marked `no-write` (see the module). One directory write, which checks both.
    pub async fn unlink(&self, path: &FsPath) -> Result<(), FsError> {
        let (parent, name) = self.parent(path).await?;
        unlink_checked(&parent, name, Want::File).await.map(|_| ())
    }

    /// Removes the link to the empty directory at `path` (unlike Tahoe, a directory must be empty
    /// to be removed this way, as with rmdir(2)); a link marked `no-write` is refused.
    pub async fn rmdir(&self, path: &FsPath) -> Result<(), FsError> {
        let (parent, name) = self.parent(path).await?;
        let Node::Dir(dir) = parent.get(&name).await?.node(&self.grid) else {
            return Err(not_a_directory());
        };
        if !dir.list().await?.is_empty() {
            return Err(FsError::new(FsErrorKind::NotEmpty, "the directory is not empty"));
        }
        unlink_checked(&parent, name, Want::Dir).await.map(|_| ())
    }

    /// Removes the link at `path` whatever it names (Tahoe's unlink: a directory's children are
    /// not visited; they stay wherever else they are linked), unless it is marked `no-write`.
    pub async fn remove(&self, path: &FsPath) -> Result<(), FsError> {
        let (parent, name) = self.parent(path).await?;
        unlink_checked(&parent, name, Want::Any).await.map(|_| ())
    }

    /// Removes the link `name` of the directory at `dir` whatever it names, as [`Fs::remove`],
    /// and returns the cap it held. `name` is the child's name exactly as stored (else
    /// normalised): for a protocol that names a child apart from any path (the web API's
    /// `t=unlink&name=`), so that a name no path can carry (empty, `..`, holding `/`: only a
    /// directory written by hand holds such) can still be unlinked.
    pub async fn remove_child(&self, dir: &FsPath, name: &str) -> Result<Cap, FsError> {
        let parent = self.dir(dir).await?;
        unlink_checked(&parent, name.to_owned(), Want::Any).await
    }

    /// Moves the link at `from` to `to`, within one directory or across two, keeping its
    /// metadata; one call whatever the directories are (the same directory is recognised by its
    /// storage index, not by comparing caps). `replace` as Tahoe's: [`Replace::OnlyFiles`] never
    /// replaces a directory. A directory cannot be moved below itself. A link marked `no-write`
    /// at `to` is not replaced; one at `from` moves with its mark (see the module).
    pub async fn rename(&self, from: &FsPath, to: &FsPath, replace: Replace) -> Result<(), FsError> {
        let (Some(from_dir), Some(from_name), Some(to_dir), Some(to_name)) =
            (from.parent(), from.name(), to.parent(), to.name())
        else {
            return Err(no_link());
        };
        self.rename_child(&from_dir, from_name, &to_dir, to_name, replace)
            .await
    }

    /// Moves the link `from_name` of the directory at `from_dir` to `to_name` in the directory at
    /// `to_dir`, as [`Fs::rename`]. `from_name` is found as [`Fs::remove_child`] finds a name
    /// (exactly as stored, else normalised), so that a name no path can carry can be renamed to
    /// one that can (the web API's `t=rename&from_name=`); `to_name` must be a usable name. A
    /// link marked `no-write` at the target is refused in the same directory write that would
    /// replace it.
    pub async fn rename_child(
        &self,
        from_dir: &FsPath,
        from_name: &str,
        to_dir: &FsPath,
        to_name: &str,
        replace: Replace,
    ) -> Result<(), FsError> {
        let to = to_dir.join(to_name)?;
        // The source as a path, when its name can be one: a directory cannot go below itself.
        if let Ok(from) = from_dir.join(from_name)
            && to.is_within(&from)
            && from != to
        {
            return Err(FsError::bad_path("a directory cannot be moved below itself"));
        }
        let source = self.dir(from_dir).await?;
        let target = if to_dir == from_dir {
            source.clone()
        } else {
            self.dir(to_dir).await?
        };
        source
            .move_child_to_guarded(
                from_name,
                &target,
                to.name().unwrap_or(to_name),
                replace,
                Some(refuse_marked),
            )
            .await?;
        Ok(())
    }

    /// Links `children` (name, cap, user metadata) in the directory at `dir` in one write: Tahoe's
    /// `set_children` and `t=uri` (the objects exist already; only links are made). `replace` as
    /// [`DirNode::set_children`] takes it ([`Replace::Always`] replaces a directory's link too),
    /// except that a link marked `no-write` is never replaced (checked in the same directory
    /// write). `create`: missing directories on the way to `dir` are made first (in `format`).
    /// Returns, per child, whether the name is new.
    pub async fn link(
        &self,
        dir: &FsPath,
        children: Vec<(String, Cap, Option<Metadata>)>,
        replace: Replace,
        create: Option<MutableFormat>,
    ) -> Result<Vec<bool>, FsError> {
        let parent = match create {
            Some(format) => self.mkdir_all_as(dir, format).await?,
            None => self.dir(dir).await?,
        };
        self.link_in(&parent, children, replace).await
    }

    /// [`Fs::link`] in a directory already found. Each name must be usable as a path segment.
    pub async fn link_in(
        &self,
        parent: &DirNode,
        children: Vec<(String, Cap, Option<Metadata>)>,
        replace: Replace,
    ) -> Result<Vec<bool>, FsError> {
        for (name, _, _) in &children {
            FsPath::root().join(name)?;
        }
        Ok(parent
            .set_children_guarded(children, replace, Some(refuse_marked))
            .await?)
    }

    /// Changes the user metadata of the link at `path` (one directory write, which reads the link
    /// as it is then, so a concurrent write of the file is kept): its `mtime`, and Tahoe's
    /// `no-write` mark. Tahoe's `linkmotime` becomes now, as Tahoe's `set_metadata_for` makes it.
    /// A path's base has no link to change ([`FsErrorKind::ReadOnly`]).
    pub async fn set_metadata(&self, path: &FsPath, change: MetadataChange) -> Result<(), FsError> {
        let (parent, name) = self.parent(path).await?;
        if change == MetadataChange::default() {
            // Nothing to change; the link must still exist.
            parent.get(&name).await?;
            return Ok(());
        }
        if parent.is_readonly() {
            return Err(FsError::new(FsErrorKind::ReadOnly, "the directory is read-only"));
        }
        parent
            .modify(move |entries| {
                let Some(entry) = entries.iter_mut().find(|e| e.name == name) else {
                    return Err(NodeError::NoSuchChild(name.clone()));
                };
                let old = parse_metadata(&entry.metadata_json);
                let mut user = user_metadata(&old);
                if let Some(mtime) = change.mtime {
                    user.insert("mtime".into(), float(mtime));
                }
                match change.no_write {
                    Some(true) => {
                        user.insert(NO_WRITE.into(), serde_json::Value::Bool(true));
                    }
                    Some(false) => {
                        user.shift_remove(NO_WRITE);
                    }
                    None => {}
                }
                let metadata = crate::node::metadata::update_metadata(
                    Some(&old),
                    Some(user),
                    crate::node::metadata::now(),
                );
                entry.metadata_json = crate::node::python_json(&serde_json::Value::Object(metadata));
                Ok((true, ()))
            })
            .await?;
        Ok(())
    }

    /// Copies the object at `from` to the name `to`. An immutable object (a CHK or LIT file, an
    /// immutable directory) is linked again: its contents cannot change, so the copy is the same
    /// cap. A mutable file becomes a new mutable file of the same format with the current
    /// contents (streamed, never whole in memory); a directory becomes a new directory whose
    /// children are copied so, at most [`MAX_COPY_DEPTH`] deep and [`MAX_COPY_ENTRIES`] objects.
    /// Returns whether the name is new.
    pub async fn copy(&self, from: &FsPath, to: &FsPath, replace: Replace) -> Result<bool, FsError> {
        if to.is_within(from) {
            return Err(FsError::bad_path("an object cannot be copied into itself"));
        }
        let found = self.find(from).await?;
        let (parent, name) = self.parent(to).await?;
        if parent.is_readonly() {
            return Err(FsError::new(FsErrorKind::ReadOnly, "the directory is read-only"));
        }
        if let Some(existing) = parent.lookup(&name).await? {
            if replace == Replace::Never || (replace == Replace::OnlyFiles && existing.is_dir()) {
                return Err(FsError::new(FsErrorKind::Exists, "the name exists already"));
            }
            if is_no_write(&existing.metadata) {
                return Err(no_write_refused("the target"));
            }
        }
        let mut budget = MAX_COPY_ENTRIES;
        let cap = Box::pin(self.copy_node(&found.node, 0, &mut budget)).await?;
        let metadata = found
            .link
            .as_ref()
            .map(|(_, child)| user_metadata(&child.metadata));
        Ok(parent.set_child(&name, &cap, metadata, replace).await?)
    }

    /// A cap holding a copy of `node` (see [`Fs::copy`]).
    async fn copy_node(&self, node: &Node, depth: usize, budget: &mut usize) -> Result<Cap, FsError> {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            FsError::new(
                FsErrorKind::TooLarge,
                format!("a copy makes at most {MAX_COPY_ENTRIES} objects"),
            )
        })?;
        match node {
            Node::File(file) if file.is_mutable() => {
                let FileCap::Mutable(cap) = file.cap() else {
                    return Err(FsError::new(FsErrorKind::Other, "not a mutable file"));
                };
                let reader = file.open().await?;
                let len = reader.size();
                let copy = self
                    .grid
                    .create_mutable(cap.format, len, chunks_from_stream(reader.stream(0, len)))
                    .await?;
                Ok(Cap::File(FileCap::Mutable(copy)))
            }
            Node::File(file) => Ok(Cap::File(file.cap().clone())),
            Node::Dir(dir) if !dir.is_mutable() => Ok(Cap::Dir(dir.cap().clone())),
            Node::Dir(dir) => {
                if depth >= MAX_COPY_DEPTH {
                    return Err(FsError::new(
                        FsErrorKind::TooLarge,
                        format!("a copy goes at most {MAX_COPY_DEPTH} directories deep"),
                    ));
                }
                let mut children = Vec::new();
                for child in dir.list().await? {
                    let cap = Box::pin(self.copy_node(&child.node(&self.grid), depth + 1, budget)).await?;
                    children.push((child.name.clone(), cap, Some(user_metadata(&child.metadata))));
                }
                let copy = self.grid.create_directory(MutableFormat::Sdmf).await?;
                if !children.is_empty() {
                    copy.set_children(children, Replace::Never).await?;
                }
                Ok(Cap::Dir(copy.cap().clone()))
            }
            Node::Unknown(_) => Err(FsError::new(
                FsErrorKind::Other,
                "this version cannot copy that kind of object",
            )),
        }
    }
}

/// What a link must name to be unlinked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    File,
    Dir,
    Any,
}

/// A link's metadata from its JSON text (empty when it is not an object).
fn parse_metadata(json: &str) -> Metadata {
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Metadata::new(),
    }
}

/// Removes the link `name` of `parent` in one directory write that first checks, on the
/// directory as it is then, what the link names and that it is not marked `no-write`; a refusal
/// writes nothing.
async fn unlink_checked(parent: &DirNode, name: String, want: Want) -> Result<Cap, FsError> {
    parent
        .modify(move |entries| {
            // As `DirNode::unlink` finds a name: exactly (a hand-written entry), else normalised
            // (a name that normalising refuses, and nothing holds, is a bad name); else a
            // hand-written entry whose normalised name it is (the layer's paths are NFC).
            let i = match crate::node::find_child(entries, &name) {
                Ok(i) => i,
                Err(e) => entries
                    .iter()
                    .position(|entry| crate::node::normalize_name(&entry.name).is_ok_and(|n| n == name))
                    .ok_or(e)?,
            };
            let entry = &entries[i];
            let is_dir = Cap::parse_lenient(entry.rw_uri.as_deref().unwrap_or(&entry.ro_uri))
                .kind()
                .starts_with("URI:DIR2");
            let refusal = match want {
                Want::File if is_dir => Some(is_a_directory()),
                Want::Dir if !is_dir => Some(not_a_directory()),
                _ if is_no_write(&parse_metadata(&entry.metadata_json)) => {
                    Some(no_write_refused(if is_dir {
                        "the directory's link"
                    } else {
                        "the file"
                    }))
                }
                _ => None,
            };
            if let Some(refusal) = refusal {
                return Ok((false, Err(refusal)));
            }
            let removed = crate::node::entry_to_child(entries.remove(i));
            Ok((true, Ok(removed.cap)))
        })
        .await?
}

/// The stat of a node with its link's metadata.
async fn stat_of(node: &Node, metadata: Option<&Metadata>, link_writable: bool, exact: bool) -> Stat {
    let mtime = metadata.and_then(|m| seconds(m, "mtime", "linkmotime"));
    let ctime = metadata.and_then(|m| seconds(m, "ctime", "linkcrtime"));
    let no_write = metadata.is_some_and(is_no_write);
    match node {
        Node::Dir(dir) => Stat {
            kind: EntryKind::Dir,
            size: 0,
            mutable: dir.is_mutable(),
            writable: !dir.is_readonly(),
            link_writable,
            mtime,
            ctime,
            format: dir.format(),
            no_write,
        },
        Node::File(file) => {
            let size = match file.cap().size() {
                Some(size) => size,
                None if exact => file.size().await.unwrap_or(0),
                None => 0,
            };
            Stat {
                kind: EntryKind::File,
                size,
                mutable: file.is_mutable(),
                writable: !file.is_readonly(),
                link_writable,
                mtime,
                ctime,
                format: file.format(),
                no_write,
            }
        }
        Node::Unknown(_) => Stat {
            kind: EntryKind::Unknown,
            size: 0,
            mutable: false,
            writable: false,
            link_writable,
            mtime,
            ctime,
            format: "unknown",
            no_write,
        },
    }
}

/// The user part of a link's metadata with `mtime` set (now, unless given).
fn with_mtime(old: &Metadata, mtime: Option<f64>) -> Metadata {
    let mut user = user_metadata(old);
    user.insert(
        "mtime".into(),
        float(mtime.unwrap_or_else(crate::node::metadata::now)),
    );
    user
}

fn float(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// How [`Fs::prepare_write_with`] prepares a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Tahoe's replace semantics ([`Fs::prepare_write`]).
    pub replace: Replace,
    /// Missing directories on the way to the name are made (in this format), as Tahoe's web
    /// `PUT` to a path makes them; `None`: the parent must exist.
    pub create_parents: Option<MutableFormat>,
    /// A writable mutable file at the name gets a new version (the mutable-in-place rule, the
    /// default); `false`: a new object replaces its link, as a file of another kind would (the web
    /// API's `PUT ?format=`, which asks for a new file).
    pub in_place: bool,
}

impl WriteOptions {
    /// The defaults: `replace`, parents must exist, mutable files written in place.
    pub fn new(replace: Replace) -> Self {
        WriteOptions {
            replace,
            create_parents: None,
            in_place: true,
        }
    }
}

/// The [`crate::node::EntryGuard`] of every change that replaces a link: a link marked
/// `no-write` is not replaced.
fn refuse_marked(entry: &crate::dirnode::DirEntry) -> Result<(), NodeError> {
    if is_no_write(&parse_metadata(&entry.metadata_json)) {
        Err(NodeError::MarkedReadOnly("the target".into()))
    } else {
        Ok(())
    }
}

/// Where a prepared write goes.
#[derive(Debug)]
enum Destination {
    /// A new version of a writable mutable file (and the link to it, if any).
    InPlace {
        file: FileNode,
        link: Option<(DirNode, String, Metadata)>,
    },
    /// A new immutable file linked as `name`, replacing `old` (a file, or an unknown object).
    Link {
        parent: DirNode,
        name: String,
        old_metadata: Option<Metadata>,
        old: Option<Node>,
        replace: Replace,
    },
}

/// A write checked by [`Fs::prepare_write`], waiting for its bytes.
#[derive(Debug)]
pub struct WriteTarget {
    grid: Arc<Grid>,
    destination: Destination,
    /// The link's `mtime` at commit (default: the commit's time).
    mtime: Option<f64>,
    /// The convergent key of the bytes to commit, hashed as they arrived.
    hashed: Option<([u8; 16], u64)>,
    /// The link is left as Tahoe's web API leaves it ([`WriteTarget::keep_link`]).
    keep_link: bool,
}

impl WriteTarget {
    /// The grid the bytes go to (to open its connections ahead: [`Grid::warm_for_upload`]).
    pub fn grid(&self) -> &Arc<Grid> {
        &self.grid
    }

    /// A hasher for the convergent key of the bytes this write will commit, when the commit
    /// uploads a new immutable file convergently (not for a mutable file written in place): a
    /// frontend's spool feeds it as the bytes arrive ([`WriteTarget::set_convergent_key`]), so
    /// the commit reads them once instead of twice.
    pub fn convergent_hasher(&self) -> Option<crate::immutable::ConvergentHasher> {
        match self.destination {
            Destination::Link { .. } => self.grid.convergent_hasher(),
            Destination::InPlace { .. } => None,
        }
    }

    /// The convergent key and length of the bytes to commit, from
    /// [`WriteTarget::convergent_hasher`]: used when the commit's length is the same.
    pub fn set_convergent_key(&mut self, hashed: Option<([u8; 16], u64)>) {
        self.hashed = hashed;
    }

    /// What the write replaces: the file there now (a writable mutable file written in place, or
    /// the file or unknown object a new immutable file replaces), for writers that start from the
    /// old contents (SFTP without `TRUNCATE`). `None` for a new name.
    pub fn existing(&self) -> Option<Node> {
        match &self.destination {
            Destination::InPlace { file, .. } => Some(Node::File(file.clone())),
            Destination::Link { old, .. } => old.clone(),
        }
    }

    /// The modification time the link gets at [`WriteTarget::commit`] when no metadata is given
    /// (a client's, e.g. SFTP's FSETSTAT on the open file; default: the commit's time).
    pub fn set_mtime(&mut self, mtime: Option<f64>) {
        self.mtime = mtime;
    }

    /// Leaves the link as Tahoe's web API leaves it: a mutable file written in place keeps its
    /// link untouched (no second write, of the directory, for the link's `mtime`), and a new file
    /// linked over an old one gets the old link's user metadata as it is (no `mtime` added;
    /// Tahoe's `linkmotime` still becomes now).
    pub fn keep_link(&mut self) {
        self.keep_link = true;
    }

    /// The directory and name of the link the write goes to (none for `/uri/CAP` of a mutable
    /// file).
    pub fn link(&self) -> Option<(&DirNode, &str)> {
        match &self.destination {
            Destination::InPlace { link, .. } => link.as_ref().map(|(dir, name, _)| (dir, name.as_str())),
            Destination::Link { parent, name, .. } => Some((parent, name.as_str())),
        }
    }

    /// Whether the write makes a new name (nothing was linked there).
    pub fn is_new(&self) -> bool {
        matches!(
            self.destination,
            Destination::Link {
                old_metadata: None,
                ..
            }
        )
    }

    /// The mutable file the write replaces in place, if it does.
    pub fn in_place(&self) -> Option<&FileNode> {
        match &self.destination {
            Destination::InPlace { file, .. } => Some(file),
            Destination::Link { .. } => None,
        }
    }

    /// Refuses `len` bytes before they arrive, when the destination cannot take them (an SDMF
    /// file is bounded by [`SDMF_MAX_SIZE`]).
    pub fn check_size(&self, len: u64) -> Result<(), FsError> {
        match &self.destination {
            Destination::InPlace { file, .. } if file.format() == "SDMF" && len > SDMF_MAX_SIZE => {
                Err(FsError::new(
                    FsErrorKind::TooLarge,
                    format!(
                        "an SDMF file is one segment, encoded in memory, and is bounded at {SDMF_MAX_SIZE} \
                         bytes (write MDMF for larger mutable files)"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Stores `len` bytes of `input` (read twice for an immutable upload: convergent key, then
    /// encoding; once when [`WriteTarget::set_convergent_key`] gave the key) and links them; returns once the grid holds them. `metadata`: the user metadata
    /// of the link (default: the old link's, with `mtime` now; a mutable file written in place
    /// through a link gets its link's `mtime` updated so too). Returns whether the name is new.
    pub async fn commit<R>(self, input: R, len: u64, metadata: Option<Metadata>) -> Result<bool, FsError>
    where
        R: std::io::Read + std::io::Seek + Send + 'static,
    {
        self.check_size(len)?;
        match self.destination {
            Destination::InPlace { file, link } => {
                file.overwrite(len, chunks_from_read(input)).await?;
                // The link's times say the contents changed (clients compare them, and WebDAV's
                // ETag holds them): one more write, of the directory.
                if let Some((parent, name, old)) = link.filter(|_| !self.keep_link) {
                    let metadata = metadata.unwrap_or_else(|| with_mtime(&old, self.mtime));
                    parent
                        .set_child(
                            &name,
                            &Cap::File(file.cap().clone()),
                            Some(metadata),
                            Replace::OnlyFiles,
                        )
                        .await?;
                }
                Ok(false)
            }
            Destination::Link { .. } => {
                let result = match self.hashed.filter(|(_, size)| *size == len) {
                    Some((key, size)) => self.grid.upload_hashed(input, key, size, None).await,
                    None => self.grid.upload(input, None).await,
                }
                .map_err(NodeError::from)?;
                self.link_stored(&Cap::File(result.cap), metadata).await
            }
        }
    }

    /// Links `cap`, an object the caller stored itself (a new mutable file, an upload streamed
    /// without convergence), under the prepared name, with the same rules as
    /// [`WriteTarget::commit`]: a directory linked there meanwhile is not replaced, nor is a
    /// link marked `no-write` (both checked in the directory write that links it). Not for a
    /// write that goes in place ([`WriteTarget::in_place`]; prepare with
    /// [`WriteOptions::in_place`] false). Returns whether the name is new.
    pub async fn link_stored(self, cap: &Cap, metadata: Option<Metadata>) -> Result<bool, FsError> {
        let Destination::Link {
            parent,
            name,
            old_metadata,
            replace,
            ..
        } = self.destination
        else {
            return Err(FsError::new(
                FsErrorKind::Other,
                "this write goes in place, into the mutable file at the name",
            ));
        };
        let metadata = match metadata {
            Some(metadata) => Some(metadata),
            // `None` keeps the old link's user metadata (`update_metadata`).
            None if self.keep_link => None,
            None => Some(with_mtime(&old_metadata.unwrap_or_default(), self.mtime)),
        };
        let replace = if replace == Replace::Never {
            Replace::Never
        } else {
            Replace::OnlyFiles
        };
        match parent
            .set_children_guarded(vec![(name, cap.clone(), metadata)], replace, Some(refuse_marked))
            .await
        {
            Ok(created) => Ok(created[0]),
            // A directory linked under the name since the write was prepared.
            Err(NodeError::ExistingChild(_)) if replace == Replace::OnlyFiles => Err(is_a_directory()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether [`WriteTarget::commit`] would upload a new immutable file with a random key (the
    /// grid's convergence is off, and no mutable file is written in place): the bytes may then
    /// stream into the encoder as they arrive ([`Grid::upload_streamed`], which needs their
    /// length first), and the file so made be linked with [`WriteTarget::link_stored`].
    pub fn uploads_without_convergence(&self) -> bool {
        matches!(self.destination, Destination::Link { .. }) && self.grid.secrets().convergence.is_none()
    }
}

/// A [`ChunkSource`] over a stream of chunks (a file's ranged read): each call gathers up to the
/// bytes asked for, so at most one segment is held.
fn chunks_from_stream(stream: BoxStream<'static, Result<Bytes, NodeError>>) -> ChunkSource {
    struct State {
        stream: BoxStream<'static, Result<Bytes, NodeError>>,
        left: Bytes,
    }
    let state = Arc::new(futures::lock::Mutex::new(State {
        stream,
        left: Bytes::new(),
    }));
    Box::new(move |n| {
        let state = Arc::clone(&state);
        Box::pin(async move {
            let mut state = state.lock().await;
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let mut out = Vec::with_capacity(n.min(1 << 20));
            while out.len() < n {
                if state.left.is_empty() {
                    match state.stream.next().await {
                        Some(Ok(chunk)) => state.left = chunk,
                        Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                        None => break,
                    }
                }
                let take = (n - out.len()).min(state.left.len());
                out.extend_from_slice(&state.left.split_to(take));
            }
            Ok(out)
        })
    })
}

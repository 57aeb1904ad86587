//! `tessera cp`: copy files and trees between the local disk and the grid, either way, recursively
//! with `-r`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use crate::aliases::Location;
use crate::cli_client::{Gateway, gateway_status};
use crate::output;

use super::get::write_local;
use super::{FileStore, about, check_typed_cap, node_kind, note, split_last, str_field};

/// `tessera cp`.
#[derive(Debug, clap::Args)]
pub(crate) struct CpArgs {
    /// Copy directories recursively.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Say what is being copied.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// When copying grid files to local files, write their caps instead of their contents.
    #[arg(long)]
    caps_only: bool,
    /// FROM... TO: sources, then the destination. Arguments with an alias (`ALIAS:path`) or a cap are in the
    /// grid; others are local paths.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    paths: Vec<String>,
}

/// Tahoe's `abspath_expanduser_unicode`: `~` expanded, made absolute, `.` and `..` removed lexically.
fn local_abspath(path: &str) -> PathBuf {
    let expanded = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    };
    let absolute = if expanded.is_absolute() {
        expanded
    } else {
        std::env::current_dir().unwrap_or_default().join(expanded)
    };
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// `dir/name` for a name that came from the grid (or a grid path), refused unless the name is one
/// plain file name here: a directory's owner can put any bytes in a name (`..`, `/etc/x`, `a/b`),
/// and such a name must never lead outside `dir`.
fn local_child(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let reason = filenode::node::unusable_as_path(name).or_else(|| {
        let mut parts = Path::new(name).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(part)), None) if part == std::ffi::OsStr::new(name) => None,
            _ => Some("the name is not a single file name on this system"),
        }
    });
    match reason {
        Some(reason) => bail!(
            "cannot copy the entry named {}: {reason}",
            crate::cli_check::quote_output(name, true, true)
        ),
        None => Ok(dir.join(name)),
    }
}

fn utf8_name(path: &Path) -> anyhow::Result<String> {
    let name = path.file_name().unwrap_or_default();
    name.to_str().map(str::to_owned).with_context(|| {
        format!(
            "{}: the name is not UTF-8, so it cannot be a name in the grid; rename it",
            path.display()
        )
    })
}

/// A file to copy.
#[derive(Debug, Clone)]
enum FileSource {
    Local(PathBuf),
    Grid {
        mutable: bool,
        writecap: Option<String>,
        readcap: Option<String>,
    },
}

impl FileSource {
    /// Local files and mutable grid files are copied by content; immutable grid files by cap.
    fn needs_bytes(&self) -> bool {
        match self {
            FileSource::Local(_) => true,
            FileSource::Grid { mutable, .. } => *mutable,
        }
    }

    fn best_cap(&self) -> Option<&str> {
        match self {
            FileSource::Local(_) => None,
            FileSource::Grid {
                writecap, readcap, ..
            } => writecap.as_deref().or(readcap.as_deref()),
        }
    }
}

/// A directory to copy from, not yet listed.
#[derive(Debug, Clone)]
enum DirSource {
    Local(PathBuf),
    Grid {
        cap: String,
        children: serde_json::Map<String, Value>,
    },
}

/// A source argument of `cp`; `name` is `None` for a bare cap (its contents are copied).
#[derive(Debug, Clone)]
enum Source {
    File(Option<String>, FileSource),
    Dir(Option<String>, DirSource),
}

/// A listed source directory.
#[derive(Debug)]
struct SourceTree {
    files: Vec<(String, FileSource)>,
    dirs: Vec<(String, SourceTree)>,
}

/// The destination argument of `cp`.
#[derive(Debug)]
enum Target {
    LocalFile(PathBuf),
    LocalMissing(PathBuf),
    LocalDir(PathBuf),
    GridFile(String),
    GridMissing(String),
    GridDir {
        cap: String,
        writecap: Option<String>,
        children: serde_json::Map<String, Value>,
    },
}

/// A child of a destination directory.
#[derive(Debug, Clone)]
enum ChildTarget {
    Dir(usize),
    LocalFile,
    GridFile { mutable: bool, writecap: Option<String> },
}

/// A destination directory: where files go, and (for the grid) the links to add at the end.
#[derive(Debug)]
struct DirTarget {
    place: DirPlace,
    children: Option<BTreeMap<String, ChildTarget>>,
    new_links: BTreeMap<String, String>,
}

#[derive(Debug)]
enum DirPlace {
    Local(PathBuf),
    Grid {
        /// The write cap, or the read cap of a read-only directory.
        cap: String,
        writecap: Option<String>,
        /// The children, once listed.
        listing: Option<serde_json::Map<String, Value>>,
    },
}

/// Tahoe's `Copier`, with destination directories kept in an arena.
struct Copier<'a> {
    ctx: &'a FileStore,
    gateway: Gateway,
    args: &'a CpArgs,
    dirs: Vec<DirTarget>,
}

impl std::fmt::Debug for Copier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier").field("dirs", &self.dirs.len()).finish()
    }
}

/// `tessera cp [-r] FROM.. TO`.
pub(crate) fn cp(ctx: &FileStore, args: &CpArgs) -> anyhow::Result<()> {
    let mut copier = Copier {
        ctx,
        gateway: ctx.gateway()?,
        args,
        dirs: Vec::new(),
    };
    let message = copier.copy()?;
    output::line(&format!("Success: {message}"))
}

impl Copier<'_> {
    fn progress(&self, message: &str) {
        if self.args.verbose {
            note(message);
        }
    }

    fn copy(&mut self) -> anyhow::Result<&'static str> {
        let (sources_specs, destination) = self.args.paths.split_at(self.args.paths.len() - 1);
        let destination = &destination[0];
        let target = self.target_info(destination)?;
        let mut sources = Vec::new();
        for spec in sources_specs {
            sources.push(self.source_info(spec)?);
        }
        if !self.args.recursive && sources.iter().any(|s| matches!(s, Source::Dir(..))) {
            bail!("cannot copy directories without --recursive (-r)");
        }
        let target_is_file = match &target {
            Target::LocalFile(_) | Target::GridFile(_) => true,
            Target::LocalDir(_) | Target::GridDir { .. } => false,
            Target::LocalMissing(_) | Target::GridMissing(_) => {
                sources.len() == 1 && matches!(sources[0], Source::File(..))
            }
        };
        if target_is_file && destination.ends_with('/') {
            bail!("target {destination} is not a directory, but ends with a slash");
        }
        if target_is_file && sources.len() > 1 {
            bail!("copying multiple things requires the target ({destination}) be a directory");
        }
        if target_is_file {
            let Source::File(_, source) = &sources[0] else {
                bail!("cannot copy a directory into a file ({destination})");
            };
            return self.copy_file_to_file(source, target);
        }
        for (spec, source) in sources_specs.iter().zip(&sources) {
            if let Source::File(None, _) = source {
                bail!(
                    "when copying into a directory, all source files must have names, but {spec} is unnamed; copy it to a file name"
                );
            }
        }
        self.copy_things_to_directory(sources, target)?;
        Ok("files copied")
    }

    // ---- arguments

    fn target_info(&self, spec: &str) -> anyhow::Result<Target> {
        match self.ctx.aliases.resolve(spec, None)? {
            Location::Local(path) => {
                let path = local_abspath(&path);
                Ok(match std::fs::metadata(&path) {
                    Err(_) => Target::LocalMissing(path),
                    Ok(meta) if meta.is_dir() => Target::LocalDir(path),
                    Ok(_) => Target::LocalFile(path),
                })
            }
            Location::Grid { root, path } => {
                check_typed_cap(&root)?;
                let url = self.gateway.object(&root, path.trim_end_matches('/'));
                match self.gateway.json(&url) {
                    Err(e) if gateway_status(&e) == Some(404) => Ok(Target::GridMissing(url)),
                    Err(e) => Err(about(spec, e)),
                    Ok(json) => {
                        let (kind, fields) = node_kind(&json)?;
                        Ok(if kind == "dirnode" {
                            Target::GridDir {
                                cap: str_field(fields, "rw_uri")
                                    .or_else(|| str_field(fields, "ro_uri"))
                                    .unwrap_or(root),
                                writecap: str_field(fields, "rw_uri"),
                                children: fields["children"].as_object().cloned().unwrap_or_default(),
                            }
                        } else {
                            Target::GridFile(url)
                        })
                    }
                }
            }
        }
    }

    fn source_info(&self, spec: &str) -> anyhow::Result<Source> {
        match self.ctx.aliases.resolve(spec, None)? {
            Location::Local(path) => {
                let had_trailing_slash = path.ends_with('/');
                let path = local_abspath(&path);
                let meta = std::fs::metadata(&path)
                    .map_err(|_| anyhow::anyhow!("No such file or directory: {spec}"))?;
                let name = utf8_name(&path)?;
                if meta.is_dir() {
                    Ok(Source::Dir(Some(name), DirSource::Local(path)))
                } else if had_trailing_slash {
                    bail!("source {spec} is not a directory, but ends with a slash");
                } else if !meta.is_file() {
                    bail!("source {spec} is neither a file nor a directory; cannot copy it");
                } else {
                    Ok(Source::File(Some(name), FileSource::Local(path)))
                }
            }
            Location::Grid { root, path } => {
                check_typed_cap(&root)?;
                let had_trailing_slash = path.ends_with('/');
                let path = path.trim_end_matches('/');
                let name = (!path.is_empty()).then(|| split_last(path).1.to_owned());
                let url = self.gateway.object(&root, path);
                let json = self.gateway.json(&url).map_err(|e| about(spec, e))?;
                let (kind, fields) = node_kind(&json)?;
                match kind {
                    "dirnode" => Ok(Source::Dir(
                        name,
                        DirSource::Grid {
                            cap: str_field(fields, "rw_uri")
                                .or_else(|| str_field(fields, "ro_uri"))
                                .unwrap_or(root),
                            children: fields["children"].as_object().cloned().unwrap_or_default(),
                        },
                    )),
                    "filenode" if had_trailing_slash => {
                        bail!("source {spec} is not a directory, but ends with a slash")
                    }
                    "filenode" => Ok(Source::File(name, grid_file(fields))),
                    _ => bail!("cannot copy {spec}: the gateway does not know what kind of object it is"),
                }
            }
        }
    }

    // ---- listing sources

    fn list_source(&self, dir: &DirSource, stack: &mut Vec<String>) -> anyhow::Result<SourceTree> {
        let mut tree = SourceTree {
            files: Vec::new(),
            dirs: Vec::new(),
        };
        match dir {
            DirSource::Local(path) => {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("cannot list {}", path.display()))?
                    .map(|entry| entry.map(|e| e.path()))
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("cannot list {}", path.display()))?;
                entries.sort();
                for child in entries {
                    let name = utf8_name(&child)?;
                    self.progress(&format!("examining {}", child.display()));
                    match std::fs::metadata(&child) {
                        Ok(meta) if meta.is_dir() => {
                            let canonical = std::fs::canonicalize(&child)
                                .map(|p| p.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            if stack.contains(&canonical) {
                                bail!(
                                    "{} leads back into a directory being copied (a symlink loop)",
                                    child.display()
                                );
                            }
                            stack.push(canonical);
                            let subtree = self.list_source(&DirSource::Local(child), stack)?;
                            stack.pop();
                            tree.dirs.push((name, subtree));
                        }
                        Ok(meta) if meta.is_file() => tree.files.push((name, FileSource::Local(child))),
                        // Dangling symlinks, sockets, devices: not copyable (Tahoe skips them too).
                        _ => self.progress(&format!("skipping {}", child.display())),
                    }
                }
            }
            DirSource::Grid { cap, children } => {
                stack.push(cap.clone());
                for (name, child) in children {
                    // Whoever wrote the directory chose its names: one that cannot be a file name
                    // (`..`, `/abs`, `a/b`, empty, NUL) is skipped, never joined to a path.
                    if let Some(reason) = filenode::node::unusable_as_path(name) {
                        note(&format!(
                            "skipping the entry named {}: {reason}, so it cannot be copied",
                            crate::cli_check::quote_output(name, true, true)
                        ));
                        continue;
                    }
                    let (kind, fields) = node_kind(child)?;
                    match kind {
                        "filenode" => tree.files.push((name.clone(), grid_file(fields))),
                        "dirnode" => {
                            let child_cap = str_field(fields, "rw_uri")
                                .or_else(|| str_field(fields, "ro_uri"))
                                .with_context(|| {
                                    format!("directory {name} has no cap the gateway will show")
                                })?;
                            if stack.contains(&child_cap) {
                                bail!("directory {name} contains itself (a cycle); cp -r cannot copy it");
                            }
                            self.progress(&format!("examining {name}"));
                            let json = self.gateway.json(&self.gateway.object(&child_cap, ""))?;
                            let (_, child_fields) = node_kind(&json)?;
                            let subtree = self.list_source(
                                &DirSource::Grid {
                                    cap: child_cap,
                                    children: child_fields["children"]
                                        .as_object()
                                        .cloned()
                                        .unwrap_or_default(),
                                },
                                stack,
                            )?;
                            tree.dirs.push((name.clone(), subtree));
                        }
                        _ => bail!(
                            "cannot copy {name}: it is an unknown kind of object (made by a newer version of Tahoe-LAFS?)"
                        ),
                    }
                }
                stack.pop();
            }
        }
        Ok(tree)
    }

    // ---- destination directories

    fn new_dir(&mut self, place: DirPlace, known_empty: bool) -> usize {
        self.dirs.push(DirTarget {
            place,
            children: known_empty.then(BTreeMap::new),
            new_links: BTreeMap::new(),
        });
        self.dirs.len() - 1
    }

    fn populate(&mut self, index: usize) -> anyhow::Result<()> {
        if self.dirs[index].children.is_some() {
            return Ok(());
        }
        let mut children = BTreeMap::new();
        let mut subdirs = Vec::new();
        match &self.dirs[index].place {
            DirPlace::Local(path) => {
                for entry in
                    std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
                {
                    let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if entry.path().is_dir() {
                        subdirs.push((name, DirPlace::Local(entry.path())));
                    } else {
                        children.insert(name, ChildTarget::LocalFile);
                    }
                }
            }
            DirPlace::Grid { cap, listing, .. } => {
                let fetched;
                let json = match listing {
                    Some(listing) => listing,
                    None => {
                        let json = self.gateway.json(&self.gateway.object(cap, ""))?;
                        fetched = json[1]["children"].as_object().cloned().unwrap_or_default();
                        &fetched
                    }
                };
                for (name, child) in json {
                    let (kind, fields) = node_kind(child)?;
                    match kind {
                        "dirnode" => {
                            let Some(cap) =
                                str_field(fields, "rw_uri").or_else(|| str_field(fields, "ro_uri"))
                            else {
                                continue;
                            };
                            subdirs.push((
                                name.clone(),
                                DirPlace::Grid {
                                    cap,
                                    writecap: str_field(fields, "rw_uri"),
                                    listing: None,
                                },
                            ));
                        }
                        _ => {
                            children.insert(
                                name.clone(),
                                ChildTarget::GridFile {
                                    mutable: fields["mutable"].as_bool().unwrap_or(false),
                                    writecap: str_field(fields, "rw_uri"),
                                },
                            );
                        }
                    }
                }
            }
        }
        for (name, place) in subdirs {
            let child = self.new_dir(place, false);
            children.insert(name, ChildTarget::Dir(child));
        }
        self.dirs[index].children = Some(children);
        Ok(())
    }

    fn describe(&self, index: usize) -> String {
        match &self.dirs[index].place {
            DirPlace::Local(path) => path.display().to_string(),
            DirPlace::Grid { .. } => "the target directory".to_owned(),
        }
    }

    /// The destination directory for a source directory called `name` inside `index`, made if
    /// missing.
    fn child_dir(&mut self, index: usize, name: &str) -> anyhow::Result<usize> {
        self.populate(index)?;
        if let Some(existing) = self.dirs[index].children.as_ref().and_then(|c| c.get(name)) {
            return match existing {
                ChildTarget::Dir(child) => Ok(*child),
                _ => bail!(
                    "cannot copy directory {name} into {}: a file named {name} is in the way",
                    self.describe(index)
                ),
            };
        }
        let place = match &self.dirs[index].place {
            DirPlace::Local(path) => {
                let path = local_child(path, name)?;
                std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
                DirPlace::Local(path)
            }
            DirPlace::Grid { writecap, .. } => {
                let Some(writecap) = writecap else {
                    bail!("cannot create directory {name}: the target directory is read-only");
                };
                let url = format!("{}?t=mkdir", self.gateway.object(writecap, name));
                let (_, cap) = self
                    .gateway
                    .call(Method::POST, &url, Bytes::new())
                    .map_err(|e| about(name, e))?;
                let cap = String::from_utf8_lossy(&cap).trim().to_owned();
                DirPlace::Grid {
                    writecap: Some(cap.clone()),
                    cap,
                    listing: Some(serde_json::Map::new()),
                }
            }
        };
        let child = self.new_dir(place, true);
        if let Some(children) = self.dirs[index].children.as_mut() {
            children.insert(name.to_owned(), ChildTarget::Dir(child));
        }
        Ok(child)
    }

    // ---- copying

    fn copy_things_to_directory(&mut self, sources: Vec<Source>, target: Target) -> anyhow::Result<()> {
        let root = match target {
            Target::LocalMissing(path) => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                self.new_dir(DirPlace::Local(path), true)
            }
            Target::LocalDir(path) => self.new_dir(DirPlace::Local(path), false),
            Target::GridMissing(url) => {
                let (_, cap) = self
                    .gateway
                    .call(Method::POST, &format!("{url}?t=mkdir"), Bytes::new())
                    .map_err(|e| about(self.args.paths.last().map_or("", String::as_str), e))?;
                let cap = String::from_utf8_lossy(&cap).trim().to_owned();
                let place = DirPlace::Grid {
                    writecap: Some(cap.clone()),
                    cap,
                    listing: Some(serde_json::Map::new()),
                };
                self.new_dir(place, true)
            }
            Target::GridDir {
                cap,
                writecap,
                children,
            } => self.new_dir(
                DirPlace::Grid {
                    cap,
                    writecap,
                    listing: Some(children),
                },
                false,
            ),
            Target::LocalFile(_) | Target::GridFile(_) => bail!("the target must be a directory"),
        };
        self.populate(root)?;
        // Which files go to which destination directory, in the order the directories were found.
        let mut plan: Vec<(usize, Vec<(String, FileSource)>)> = vec![(root, Vec::new())];
        for source in sources {
            match source {
                Source::File(name, file) => {
                    let name = name.expect("invariant: unnamed file sources were refused above");
                    plan[0].1.push((name, file));
                }
                Source::Dir(name, dir) => {
                    let mut stack = Vec::new();
                    let tree = self.list_source(&dir, &mut stack)?;
                    let destination = match name {
                        Some(name) => self.child_dir(root, &name)?,
                        None => root,
                    };
                    self.assign(&mut plan, tree, destination)?;
                }
            }
        }
        for (_, files) in &plan {
            let mut seen = std::collections::BTreeSet::new();
            for (name, _) in files {
                if !seen.insert(name) {
                    bail!(
                        "cannot copy multiple files with the same name ({name}) into the same target directory"
                    );
                }
            }
        }
        let total: usize = plan.iter().map(|(_, files)| files.len()).sum();
        let mut copied = 0;
        for (index, files) in plan {
            for (name, file) in files {
                self.copy_file_into_dir(&file, &name, index)?;
                copied += 1;
                self.progress(&format!("{copied}/{total} files"));
            }
            self.set_children(index)?;
        }
        Ok(())
    }

    fn assign(
        &mut self,
        plan: &mut Vec<(usize, Vec<(String, FileSource)>)>,
        tree: SourceTree,
        destination: usize,
    ) -> anyhow::Result<()> {
        let slot = match plan.iter().position(|(index, _)| *index == destination) {
            Some(slot) => slot,
            None => {
                plan.push((destination, Vec::new()));
                plan.len() - 1
            }
        };
        plan[slot].1.extend(tree.files);
        for (name, subtree) in tree.dirs {
            let child = self.child_dir(destination, &name)?;
            self.assign(plan, subtree, child)?;
        }
        Ok(())
    }

    /// Copies a file's bytes into a writer (the source may be local or in the grid).
    fn read_source(&self, source: &FileSource, sink: &mut dyn Write, label: &str) -> anyhow::Result<()> {
        match source {
            FileSource::Local(path) => {
                let mut file =
                    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                std::io::copy(&mut file, sink).with_context(|| format!("cannot copy {}", path.display()))?;
                Ok(())
            }
            FileSource::Grid {
                readcap, writecap, ..
            } => {
                let cap = readcap
                    .as_deref()
                    .or(writecap.as_deref())
                    .context("the file has no read cap")?;
                if self.args.caps_only {
                    sink.write_all(cap.as_bytes())?;
                    return Ok(());
                }
                let download = self.gateway.start_download(&self.gateway.object(cap, ""))?;
                self.gateway.finish_download(download, sink, label)?;
                Ok(())
            }
        }
    }

    /// A reader over the source's bytes and its size, for an upload.
    fn open_source(
        &self,
        source: &FileSource,
        label: &str,
    ) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
        match source {
            FileSource::Local(path) => {
                let file =
                    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let size = file.metadata().ok().map(|m| m.len());
                Ok((Box::new(file), size))
            }
            FileSource::Grid { .. } => {
                let mut spool = tempfile::tempfile().context("cannot create a temporary file")?;
                self.read_source(source, &mut spool, label)?;
                let size = spool.stream_position().ok();
                spool.rewind().context("cannot reread the temporary file")?;
                Ok((Box::new(spool), size))
            }
        }
    }

    fn upload(&self, method: Method, url: &str, source: &FileSource, label: &str) -> anyhow::Result<String> {
        let (input, size) = self.open_source(source, label)?;
        let (_, cap) = self
            .gateway
            .upload(method, url, input, size, label)
            .map_err(|e| about(label, e))?;
        Ok(String::from_utf8_lossy(&cap).trim().to_owned())
    }

    fn copy_file_to_file(&mut self, source: &FileSource, target: Target) -> anyhow::Result<&'static str> {
        let label = match source {
            FileSource::Local(path) => utf8_name(path).unwrap_or_default(),
            FileSource::Grid { .. } => "copying".to_owned(),
        };
        match target {
            Target::LocalFile(path) | Target::LocalMissing(path) => {
                write_local(&path, |sink| self.read_source(source, sink, &label))?;
                Ok("file copied")
            }
            Target::GridFile(url) | Target::GridMissing(url) => {
                if source.needs_bytes() {
                    self.upload(Method::PUT, &url, source, &label)?;
                    Ok("file copied")
                } else {
                    let cap = source.best_cap().context("the file has no cap")?;
                    self.gateway
                        .call(Method::PUT, &format!("{url}?t=uri"), Bytes::from(cap.to_owned()))
                        .map_err(|e| about(self.args.paths.last().map_or("", String::as_str), e))?;
                    Ok("file linked")
                }
            }
            Target::LocalDir(_) | Target::GridDir { .. } => bail!("the target is a directory"),
        }
    }

    fn copy_file_into_dir(&mut self, source: &FileSource, name: &str, index: usize) -> anyhow::Result<()> {
        self.progress(&format!("copying {name}"));
        let writecap = match &self.dirs[index].place {
            DirPlace::Local(dir) => {
                let path = local_child(dir, name)?;
                if path.is_dir() {
                    bail!(
                        "cannot copy file {name} to {}: a directory is in the way",
                        path.display()
                    );
                }
                return write_local(&path, |sink| self.read_source(source, sink, name));
            }
            DirPlace::Grid { writecap, .. } => writecap
                .clone()
                .with_context(|| format!("cannot copy {name}: the target directory is read-only"))?,
        };
        self.populate(index)?;
        let existing = self.dirs[index]
            .children
            .as_ref()
            .and_then(|c| c.get(name))
            .cloned();
        if let Some(ChildTarget::Dir(_)) = existing {
            bail!("cannot copy file {name}: a directory with that name is in the way");
        }
        if !source.needs_bytes() {
            let cap = source.best_cap().context("the file has no cap")?.to_owned();
            self.dirs[index].new_links.insert(name.to_owned(), cap);
            return Ok(());
        }
        // A mutable file already there is overwritten in place, as Tahoe does.
        if let Some(ChildTarget::GridFile {
            mutable: true,
            writecap: Some(_),
        }) = existing
        {
            let url = self.gateway.object(&writecap, name);
            self.upload(Method::PUT, &url, source, name)?;
            return Ok(());
        }
        let url = self.gateway.unlinked();
        let cap = self.upload(Method::PUT, &url, source, name)?;
        self.dirs[index].new_links.insert(name.to_owned(), cap);
        Ok(())
    }

    /// Links everything uploaded into a grid directory in one `t=set_children`.
    fn set_children(&mut self, index: usize) -> anyhow::Result<()> {
        let links = std::mem::take(&mut self.dirs[index].new_links);
        if links.is_empty() {
            return Ok(());
        }
        let DirPlace::Grid {
            writecap: Some(writecap),
            ..
        } = &self.dirs[index].place
        else {
            return Ok(());
        };
        let body: serde_json::Map<String, Value> = links
            .into_iter()
            .map(|(name, cap)| (name, serde_json::json!(["filenode", { "rw_uri": cap }])))
            .collect();
        let body = serde_json::to_vec(&Value::Object(body)).context("cannot write JSON")?;
        let url = format!("{}?t=set_children", self.gateway.object(writecap, ""));
        self.gateway
            .call(Method::POST, &url, Bytes::from(body))
            .context("linking the copied files failed")?;
        Ok(())
    }
}

fn grid_file(fields: &Value) -> FileSource {
    FileSource::Grid {
        mutable: fields["mutable"].as_bool().unwrap_or(false),
        writecap: str_field(fields, "rw_uri"),
        readcap: str_field(fields, "ro_uri"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_made_absolute_lexically() {
        let cwd = std::env::current_dir().unwrap_or_default();
        assert_eq!(local_abspath("a/./b/../c"), cwd.join("a/c"));
        assert_eq!(local_abspath("/x/y/.."), PathBuf::from("/x"));
    }
}

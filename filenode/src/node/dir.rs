//! Directories: a mutable file (DIR2 over SDMF, DIR2-MDMF) or an immutable file (DIR2-CHK,
//! DIR2-LIT) whose contents are Tahoe's packed children (`crate::dirnode`).

use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

use super::metadata::{self, Metadata};
use super::{FileNode, Node, NodeError};
use crate::cap::{ALLEGED_IMMUTABLE_PREFIX, ALLEGED_READONLY_PREFIX, Cap, DirCap, FileCap, MutableFormat};
use crate::dirnode::{self, DirEntry};
use crate::grid::Grid;
use crate::grid::mutable::chunks_from_bytes;

/// What to do when a name is already taken (`replace=` of the web API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace whatever is there (`true`, the default).
    Always,
    /// Refuse (`false`): [`NodeError::ExistingChild`].
    Never,
    /// Replace files but not directories (`only-files`).
    OnlyFiles,
}

/// One child of a directory.
#[derive(Clone)]
pub struct Child {
    /// The name (NFC).
    pub name: String,
    /// The strongest cap known: the write cap when the directory is writable and the child has
    /// one, else the read cap.
    pub cap: Cap,
    /// The read-only cap, when there is one.
    pub ro_cap: Option<Cap>,
    /// The link's metadata.
    pub metadata: Metadata,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("name", &self.name)
            .field("kind", &self.cap.kind())
            .finish_non_exhaustive()
    }
}

/// One object found by [`DirNode::manifest`].
#[derive(Debug, Clone)]
pub struct ManifestEntry {
    /// The names leading to it from the starting directory.
    pub path: Vec<String>,
    /// Its cap (the strongest the walk could see).
    pub cap: Cap,
    /// Why a directory could not be listed (its children are then missing).
    pub error: Option<String>,
}

impl Child {
    /// Whether the child is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.cap, Cap::Dir(_))
    }

    /// The child as a node.
    pub fn node(&self, grid: &Arc<Grid>) -> Node {
        Node::from_cap(grid, self.cap.clone())
    }

    /// The size when the cap tells it (immutable files).
    pub fn size(&self) -> Option<u64> {
        match &self.cap {
            Cap::File(file) => file.size(),
            _ => None,
        }
    }
}

/// Normalises a child name to NFC and checks it: not empty, no `/`, no NUL.
pub fn normalize_name(name: &str) -> Result<String, NodeError> {
    let bad = |reason| NodeError::BadName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("names cannot be empty"));
    }
    if name.contains('/') {
        return Err(bad("names cannot contain '/'"));
    }
    if name.contains('\0') {
        return Err(bad("names cannot contain NUL"));
    }
    Ok(name.nfc().collect())
}

/// The index of the child `name` in `entries`: the name exactly as given (a directory may hold
/// names [`normalize_name`] would refuse or change), else as normalized.
pub(crate) fn find_child(entries: &[DirEntry], name: &str) -> Result<usize, NodeError> {
    if let Some(i) = entries.iter().position(|e| e.name == name) {
        return Ok(i);
    }
    let normalized = normalize_name(name)?;
    entries
        .iter()
        .position(|e| e.name == normalized)
        .ok_or(NodeError::NoSuchChild(normalized))
}

/// Why a child name read from a directory cannot be used as one segment of a path (a local file
/// name, an SFTP or FTP path, a relative URL): `None` when it can.
///
/// A directory's packed contents can hold any bytes (its owner writes them, through the
/// directory's own SSK form if need be), so names from the grid are not the names
/// [`normalize_name`] lets in: every frontend that turns a child name into a path checks it with
/// this first and skips (or shows by cap) the child when it answers.
pub fn unusable_as_path(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name is empty")
    } else if name == "." || name == ".." {
        Some("the name is a dot segment ('.' or '..')")
    } else if name.starts_with('/') {
        Some("the name is an absolute path (it starts with '/')")
    } else if name.contains('/') {
        Some("the name contains '/'")
    } else if name.contains('\0') {
        Some("the name contains NUL")
    } else {
        None
    }
}

/// A check of a directory entry that a change would replace, run inside the directory write
/// that replaces it (so on the directory as it is then): an error refuses the change, which then
/// writes nothing.
pub type EntryGuard = fn(&DirEntry) -> Result<(), NodeError>;

/// A directory.
#[derive(Debug, Clone)]
pub struct DirNode {
    grid: Arc<Grid>,
    cap: DirCap,
}

pub(crate) fn entry_to_child(entry: DirEntry) -> Child {
    let ro_cap = (!entry.ro_uri.is_empty()).then(|| Cap::parse_lenient(&entry.ro_uri));
    let cap = match (&entry.rw_uri, &ro_cap) {
        (Some(rw), _) => Cap::parse_lenient(rw),
        (None, Some(ro)) => ro.clone(),
        (None, None) => Cap::Unknown(String::new()),
    };
    let metadata = match serde_json::from_str(&entry.metadata_json) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Metadata::new(),
    };
    Child {
        name: entry.name,
        cap,
        ro_cap,
        metadata,
    }
}

/// A directory entry's caps as stored: the read-only slot (plaintext) and the write slot
/// (encrypted in the directory).
type Slots = (String, Option<String>);

/// The (ro, rw) slots a cap takes in a directory entry.
fn slots_for(cap: &Cap, deep_immutable: bool) -> Result<Slots, NodeError> {
    match cap {
        Cap::Unknown(text) => {
            if text.is_empty() {
                return Err(NodeError::BadChild("an empty cap cannot be linked".into()));
            }
            let prefixed =
                text.starts_with(ALLEGED_READONLY_PREFIX) || text.starts_with(ALLEGED_IMMUTABLE_PREFIX);
            if deep_immutable && !text.starts_with(ALLEGED_IMMUTABLE_PREFIX) {
                return Err(NodeError::BadChild(
                    "an immutable directory can only hold unknown caps marked immutable (imm.)".into(),
                ));
            }
            // As Tahoe (MustNotBeUnknownRWError): a cap of an unknown kind may be a write cap,
            // which must never sit in the plaintext read-only slot; only marked read-only caps go.
            if !prefixed {
                return Err(NodeError::BadChild(
                    "a cap of a kind this version does not know can only be linked read-only (prefix it with ro.)"
                        .into(),
                ));
            }
            Ok((text.clone(), None))
        }
        known => {
            if matches!(known, Cap::File(FileCap::ChkVerifier(_)))
                || matches!(known, Cap::File(FileCap::Mutable(m)) if m.readkey().is_none())
            {
                return Err(NodeError::BadChild(
                    "verify caps cannot be linked into a directory".into(),
                ));
            }
            if deep_immutable && known.is_mutable() {
                return Err(NodeError::BadChild(
                    "an immutable directory can only hold immutable files and directories".into(),
                ));
            }
            let ro = known.readonly().unwrap_or_else(|| known.clone());
            let rw = (!known.is_readonly()).then(|| known.to_string());
            Ok((ro.to_string(), rw))
        }
    }
}

impl DirNode {
    /// The directory a cap names.
    pub fn new(grid: &Arc<Grid>, cap: DirCap) -> Self {
        DirNode {
            grid: Arc::clone(grid),
            cap,
        }
    }

    /// The cap.
    pub fn cap(&self) -> &DirCap {
        &self.cap
    }

    /// The grid this directory lives on.
    pub fn grid(&self) -> &Arc<Grid> {
        &self.grid
    }

    /// Whether the directory can change through this cap.
    pub fn is_readonly(&self) -> bool {
        self.cap.file().is_readonly()
    }

    /// Whether the directory is mutable (DIR2, DIR2-MDMF).
    pub fn is_mutable(&self) -> bool {
        self.cap.file().is_mutable()
    }

    /// `SDMF`, `MDMF` or `CHK` (Tahoe's names; DIR2-LIT reports `LIT`).
    pub fn format(&self) -> &'static str {
        match self.cap.file() {
            FileCap::Lit(_) => "LIT",
            FileCap::Mutable(m) if m.format == MutableFormat::Mdmf => "MDMF",
            FileCap::Mutable(_) => "SDMF",
            _ => "CHK",
        }
    }

    fn file(&self) -> FileNode {
        FileNode::new(&self.grid, self.cap.file().clone())
    }

    fn writekey(&self) -> Option<[u8; 16]> {
        match self.cap.file() {
            FileCap::Mutable(m) => m.writekey(),
            _ => None,
        }
    }

    /// Every object reachable from this directory, itself first (path `[]`), each directory listed
    /// once however many links lead to it (so cycles end), in breadth-first order. A directory that
    /// cannot be read is reported with its error and not descended into.
    pub async fn manifest(&self) -> Vec<ManifestEntry> {
        let mut out = vec![ManifestEntry {
            path: Vec::new(),
            cap: Cap::Dir(self.cap.clone()),
            error: None,
        }];
        let mut seen: std::collections::HashSet<Option<storage::StorageIndex>> =
            std::collections::HashSet::new();
        seen.insert(self.cap.file().storage_index());
        let mut queue = std::collections::VecDeque::from([(Vec::<String>::new(), self.clone(), 0usize)]);
        while let Some((path, dir, index)) = queue.pop_front() {
            match dir.list().await {
                Ok(children) => {
                    for child in children {
                        let mut child_path = path.clone();
                        child_path.push(child.name.clone());
                        if let Cap::Dir(cap) = &child.cap {
                            // LIT directories have no storage index: each is its own contents.
                            let si = cap.file().storage_index();
                            if si.is_none() || seen.insert(si) {
                                let node = DirNode::new(&self.grid, cap.clone());
                                queue.push_back((child_path.clone(), node, out.len()));
                            } else {
                                continue;
                            }
                        }
                        out.push(ManifestEntry {
                            path: child_path,
                            cap: child.cap,
                            error: None,
                        });
                    }
                }
                Err(e) => out[index].error = Some(e.to_string()),
            }
        }
        out
    }

    /// Every child, sorted by name, whatever its name: a directory written by someone else can
    /// hold names [`normalize_name`] refuses (check them with [`unusable_as_path`] before
    /// making a path of one).
    pub async fn list(&self) -> Result<Vec<Child>, NodeError> {
        let plaintext = self.file().read_all().await?;
        let writekey = self.writekey();
        let entries = dirnode::unpack(&plaintext, writekey.as_ref())
            .map_err(|e| NodeError::CorruptDirectory(e.to_string()))?;
        Ok(entries.into_iter().map(entry_to_child).collect())
    }

    /// One child.
    pub async fn get(&self, name: &str) -> Result<Child, NodeError> {
        let name = normalize_name(name)?;
        self.list()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or(NodeError::NoSuchChild(name))
    }

    /// One child, or `None` when the name is free, read for a change that follows
    /// ([`FileNode::read_for_update`]: the change starts from this read instead of reading again).
    pub async fn lookup_for_update(&self, name: &str) -> Result<Option<Child>, NodeError> {
        let name = normalize_name(name)?;
        let plaintext = self.file().read_for_update().await?;
        let writekey = self.writekey();
        let entries = dirnode::unpack(&plaintext, writekey.as_ref())
            .map_err(|e| NodeError::CorruptDirectory(e.to_string()))?;
        Ok(entries.into_iter().find(|e| e.name == name).map(entry_to_child))
    }

    /// One child, or `None` when the name is free.
    pub async fn lookup(&self, name: &str) -> Result<Option<Child>, NodeError> {
        match self.get(name).await {
            Ok(child) => Ok(Some(child)),
            Err(NodeError::NoSuchChild(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follows `path` (child names) from this directory.
    pub async fn walk<S: AsRef<str>>(&self, path: &[S]) -> Result<Node, NodeError> {
        let mut here = Node::Dir(self.clone());
        for (i, name) in path.iter().enumerate() {
            let Node::Dir(dir) = &here else {
                return Err(NodeError::NotADirectory(path[i - 1].as_ref().to_owned()));
            };
            here = dir.get(name.as_ref()).await?.node(&self.grid);
        }
        Ok(here)
    }

    /// Applies `change` to the children under this client's lock for the directory, retrying if
    /// another client wrote at the same time. `change` returns whether it changed anything.
    pub(crate) async fn modify<T, F>(&self, mut change: F) -> Result<T, NodeError>
    where
        F: FnMut(&mut Vec<DirEntry>) -> Result<(bool, T), NodeError> + Send,
        T: Send,
    {
        if self.is_readonly() {
            return Err(NodeError::NotWritable("the directory's cap is read-only"));
        }
        let writekey = self.writekey();
        let mut outcome = None;
        self.file()
            .modify(|plaintext| {
                let mut entries = dirnode::unpack(plaintext, writekey.as_ref())
                    .map_err(|e| NodeError::CorruptDirectory(e.to_string()))?;
                let (changed, value) = change(&mut entries)?;
                outcome = Some(value);
                Ok(changed.then(|| dirnode::pack(&entries, writekey.as_ref())))
            })
            .await?;
        Ok(outcome.expect("invariant: modify ran the change at least once"))
    }

    /// Links `cap` as `name`. Returns whether the name is new.
    pub async fn set_child(
        &self,
        name: &str,
        cap: &Cap,
        metadata: Option<Metadata>,
        replace: Replace,
    ) -> Result<bool, NodeError> {
        self.set_children(vec![(name.to_owned(), cap.clone(), metadata)], replace)
            .await
            .map(|created| created[0])
    }

    /// Links several children at once (one write). Returns, per child, whether the name was new.
    pub async fn set_children(
        &self,
        children: Vec<(String, Cap, Option<Metadata>)>,
        replace: Replace,
    ) -> Result<Vec<bool>, NodeError> {
        self.set_children_guarded(children, replace, None).await
    }

    /// [`DirNode::set_children`], where each link that would be replaced is first shown to
    /// `guard` in the same directory write (the file-system layer refuses links marked
    /// `no-write` so); a refusal writes nothing.
    pub async fn set_children_guarded(
        &self,
        children: Vec<(String, Cap, Option<Metadata>)>,
        replace: Replace,
        guard: Option<EntryGuard>,
    ) -> Result<Vec<bool>, NodeError> {
        let mut prepared = Vec::with_capacity(children.len());
        for (name, cap, metadata) in children {
            prepared.push((name, slots_for(&cap, false)?, metadata));
        }
        self.link_slots(prepared, replace, guard).await
    }

    /// Links children given by their (read-only, write) slots, as stored in a directory entry.
    async fn link_slots(
        &self,
        children: Vec<(String, Slots, Option<Metadata>)>,
        replace: Replace,
        guard: Option<EntryGuard>,
    ) -> Result<Vec<bool>, NodeError> {
        let mut prepared = Vec::with_capacity(children.len());
        for (name, slots, metadata) in children {
            prepared.push((normalize_name(&name)?, slots, metadata));
        }
        self.modify(move |entries| {
            let now = metadata::now();
            let mut created = Vec::with_capacity(prepared.len());
            for (name, (ro, rw), metadata) in &prepared {
                let existing = entries.binary_search_by(|e| e.name.as_str().cmp(name));
                let old_metadata = match existing {
                    Ok(i) => {
                        let old = &entries[i];
                        let old_is_dir = Cap::parse_lenient(old.rw_uri.as_deref().unwrap_or(&old.ro_uri))
                            .kind()
                            .starts_with("URI:DIR2");
                        if replace == Replace::Never || (replace == Replace::OnlyFiles && old_is_dir) {
                            return Err(NodeError::ExistingChild(name.clone()));
                        }
                        if let Some(guard) = guard {
                            guard(old)?;
                        }
                        serde_json::from_str::<Metadata>(&old.metadata_json).ok()
                    }
                    Err(_) => None,
                };
                let metadata = metadata::update_metadata(old_metadata.as_ref(), metadata.clone(), now);
                let entry = DirEntry {
                    name: name.clone(),
                    ro_uri: ro.clone(),
                    rw_uri: rw.clone(),
                    metadata_json: metadata::python_json(&serde_json::Value::Object(metadata)),
                };
                match existing {
                    Ok(i) => entries[i] = entry,
                    Err(i) => entries.insert(i, entry),
                }
                created.push(existing.is_err());
            }
            Ok((true, created))
        })
        .await
    }

    /// Creates an empty directory and links it as `name`.
    pub async fn create_subdirectory(
        &self,
        name: &str,
        format: MutableFormat,
        replace: Replace,
    ) -> Result<DirNode, NodeError> {
        if self.is_readonly() {
            return Err(NodeError::NotWritable("the directory's cap is read-only"));
        }
        let name = normalize_name(name)?;
        if replace != Replace::Always
            && let Ok(existing) = self.get(&name).await
            && (replace == Replace::Never || existing.is_dir())
        {
            return Err(NodeError::ExistingChild(name));
        }
        let child = self.grid.create_directory(format).await?;
        self.set_child(&name, &Cap::Dir(child.cap().clone()), None, replace)
            .await?;
        Ok(child)
    }

    /// Returns the directory at `path` below this one, creating missing directories on the way (a
    /// file in the way is an error).
    pub async fn create_path<S: AsRef<str>>(
        &self,
        path: &[S],
        format: MutableFormat,
    ) -> Result<DirNode, NodeError> {
        let mut here = self.clone();
        for name in path {
            let name = name.as_ref();
            here = match here.lookup(name).await? {
                Some(child) => match child.node(&self.grid) {
                    Node::Dir(dir) => dir,
                    _ => {
                        return Err(NodeError::WrongType(format!(
                            "Unable to create directory {name:?}: a file was in the way"
                        )));
                    }
                },
                None => here.create_subdirectory(name, format, Replace::Never).await?,
            };
        }
        Ok(here)
    }

    /// Removes the link `name` (the object itself stays) and returns what it pointed to.
    ///
    /// A child is found by its name exactly as given first, so that a name which [`normalize_name`]
    /// does not let in (empty, holding `/` or NUL, not NFC: only a hand-written directory holds
    /// such, see [`unusable_as_path`]) can still be unlinked; otherwise by the normalized name.
    pub async fn unlink(&self, name: &str) -> Result<Child, NodeError> {
        self.modify(|entries| {
            let i = find_child(entries, name)?;
            Ok((true, entry_to_child(entries.remove(i))))
        })
        .await
    }

    /// Renames a child within this directory, keeping its metadata (one write). `from` is found
    /// as [`DirNode::unlink`] finds a name (so a name no frontend could write can be renamed to
    /// one it can); `to` is normalized.
    pub async fn rename(&self, from: &str, to: &str, replace: Replace) -> Result<(), NodeError> {
        self.rename_guarded(from, to, replace, None).await
    }

    /// [`DirNode::rename`], where a link the rename would replace is first shown to `guard` in
    /// the same directory write.
    pub async fn rename_guarded(
        &self,
        from: &str,
        to: &str,
        replace: Replace,
        guard: Option<EntryGuard>,
    ) -> Result<(), NodeError> {
        let to = normalize_name(to)?;
        if from == to {
            return self.get(&to).await.map(|_| ());
        }
        self.modify(|entries| {
            let i = find_child(entries, from)?;
            if entries[i].name == to {
                return Ok((false, ()));
            }
            if let Some(j) = entries.iter().position(|e| e.name == to) {
                let old = &entries[j];
                let old_is_dir = Cap::parse_lenient(old.rw_uri.as_deref().unwrap_or(&old.ro_uri))
                    .kind()
                    .starts_with("URI:DIR2");
                if replace == Replace::Never || (replace == Replace::OnlyFiles && old_is_dir) {
                    return Err(NodeError::ExistingChild(to.clone()));
                }
                if let Some(guard) = guard {
                    guard(old)?;
                }
            }
            let mut entry = entries.remove(i);
            entries.retain(|e| e.name != to);
            entry.name = to.clone();
            let at = entries
                .binary_search_by(|e| e.name.as_str().cmp(&to))
                .unwrap_or_else(|i| i);
            entries.insert(at, entry);
            Ok((true, ()))
        })
        .await
    }

    /// Moves child `from` of this directory to `to` in `target` (Tahoe's relink): the new link is
    /// made before the old one is removed, so a failure in between leaves it linked twice, never
    /// lost.
    pub async fn move_child_to(
        &self,
        from: &str,
        target: &DirNode,
        to: &str,
        replace: Replace,
    ) -> Result<(), NodeError> {
        self.move_child_to_guarded(from, target, to, replace, None).await
    }

    /// [`DirNode::move_child_to`], where a link the move would replace in `target` is first
    /// shown to `guard` in the same directory write.
    pub async fn move_child_to_guarded(
        &self,
        from: &str,
        target: &DirNode,
        to: &str,
        replace: Replace,
        guard: Option<EntryGuard>,
    ) -> Result<(), NodeError> {
        if target.cap.file().storage_index() == self.cap.file().storage_index() {
            return self.rename_guarded(from, to, replace, guard).await;
        }
        if target.is_readonly() {
            return Err(NodeError::NotWritable("the target directory's cap is read-only"));
        }
        if self.is_readonly() {
            return Err(NodeError::NotWritable("the directory's cap is read-only"));
        }
        let child = self.get(from).await?;
        // The link moves as stored: an unknown child's write cap stays in the encrypted slot.
        let slots = match &child.cap {
            Cap::Unknown(text) => (
                child.ro_cap.as_ref().map(Cap::to_string).unwrap_or_default(),
                (child.ro_cap.as_ref() != Some(&child.cap)).then(|| text.clone()),
            ),
            known => slots_for(known, false)?,
        };
        target
            .link_slots(
                vec![(to.to_owned(), slots, Some(user_metadata(&child.metadata)))],
                replace,
                guard,
            )
            .await?;
        self.unlink(from).await.map(|_| ())
    }
}

/// The user part of a link's metadata (without Tahoe's own `tahoe` key).
fn user_metadata(metadata: &Metadata) -> Metadata {
    let mut user = metadata.clone();
    user.shift_remove("tahoe");
    user
}

impl Grid {
    /// Creates a mutable directory holding `children`, in one write.
    pub async fn create_directory_with_children(
        self: &Arc<Self>,
        format: MutableFormat,
        children: Vec<(String, Cap, Option<Metadata>)>,
    ) -> Result<DirNode, NodeError> {
        let key = self.fresh_key().await?;
        let writekey = key.writekey();
        let packed = pack_children(children, Some(&writekey), false)?;
        let cap = self
            .create_mutable_with_new_key(format, key, packed.len() as u64, chunks_from_bytes(packed))
            .await?;
        Ok(DirNode::new(self, DirCap::new(FileCap::Mutable(cap))))
    }

    /// Creates an immutable directory (DIR2-CHK, or DIR2-LIT when it packs into ≤ 55 bytes) of
    /// immutable children.
    pub async fn create_immutable_directory(
        self: &Arc<Self>,
        children: Vec<(String, Cap, Option<Metadata>)>,
    ) -> Result<DirNode, NodeError> {
        let packed = pack_children(children, None, true)?;
        let file = self.upload_bytes(packed).await?;
        Ok(DirNode::new(self, DirCap::new(file)))
    }
}

fn pack_children(
    children: Vec<(String, Cap, Option<Metadata>)>,
    writekey: Option<&[u8; 16]>,
    deep_immutable: bool,
) -> Result<Vec<u8>, NodeError> {
    let now = metadata::now();
    let mut entries: Vec<DirEntry> = Vec::with_capacity(children.len());
    for (name, cap, user) in children {
        let name = normalize_name(&name)?;
        if entries.iter().any(|e| e.name == name) {
            return Err(NodeError::BadChild(format!("the name {name:?} is given twice")));
        }
        let (ro, rw) = slots_for(&cap, deep_immutable)?;
        let metadata = metadata::update_metadata(None, user, now);
        entries.push(DirEntry {
            name,
            ro_uri: ro,
            rw_uri: if deep_immutable { None } else { rw },
            metadata_json: metadata::python_json(&serde_json::Value::Object(metadata)),
        });
    }
    Ok(dirnode::pack(&entries, writekey))
}

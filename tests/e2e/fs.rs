//! The file-system layer (`filenode::fs`) over a real in-process grid: paths from the root and
//! from `/uri/CAP`, stat and list, ranged reads, writes with Tahoe's replace semantics and the
//! mutable-in-place rule, mkdir, unlink, rmdir, remove, rename within and across directories,
//! copy, links marked read-only (Tahoe's `no-write`), and the error kinds (never with a cap in the
//! message).

use std::io::Cursor;
use std::sync::Arc;

use filenode::cap::{Cap, FileCap, MutableFormat};
use filenode::fs::{EntryKind, Fs, FsErrorKind, FsPath, MetadataChange, WriteOptions};
use filenode::grid::Grid;
use filenode::grid::upload::UploadParams;
use filenode::node::{DirNode, Replace};
use futures::StreamExt;
use tests::grid::TestGrid;

struct Setup {
    _grid: TestGrid,
    client: Arc<Grid>,
    root: DirNode,
    fs: Fs,
}

async fn setup() -> Setup {
    let grid = TestGrid::new(5);
    let params = UploadParams {
        needed: 2,
        happy: 3,
        total: 4,
        max_segment_size: 16 * 1024,
    };
    let client = Arc::new(Grid::with_key_pool(
        grid.secrets.clone(),
        params,
        filenode::mutable::keys::KeyPool::new(1),
    ));
    client.set_servers(grid.entries());
    let root = client.create_directory(MutableFormat::Sdmf).await.unwrap();
    let fs = Fs::new(&client, root.clone());
    Setup {
        _grid: grid,
        client,
        root,
        fs,
    }
}

/// A new mutable file holding `contents`, linked in the root as `m` and as `alias`.
async fn linked_twice(s: &Setup, format: MutableFormat, contents: &[u8]) -> Cap {
    let cap = s
        .client
        .create_mutable_file(format, contents.to_vec())
        .await
        .unwrap();
    let cap = Cap::File(FileCap::Mutable(cap));
    s.root.set_child("m", &cap, None, Replace::Never).await.unwrap();
    s.root
        .set_child("alias", &cap, None, Replace::Never)
        .await
        .unwrap();
    cap
}

fn p(text: &str) -> FsPath {
    FsPath::parse(text).unwrap()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn put(fs: &Fs, path: &str, contents: &[u8]) -> bool {
    fs.write(
        &p(path),
        Cursor::new(contents.to_vec()),
        contents.len() as u64,
        Replace::Always,
    )
    .await
    .unwrap()
}

async fn read(fs: &Fs, path: &str) -> Vec<u8> {
    fs.open(&p(path)).await.unwrap().read(0, u64::MAX).await.unwrap()
}

fn names(entries: &[filenode::fs::Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

#[tokio::test]
async fn writes_reads_and_the_replace_rules() {
    let s = setup().await;
    let fs = &s.fs;
    let big = data(100_000, 1);
    assert!(put(fs, "/big.bin", &big).await);
    assert_eq!(read(fs, "/big.bin").await, big);
    // A ranged read streams only the range, in chunks no larger than a segment.
    let reader = fs.open(&p("/big.bin")).await.unwrap();
    let mut stream = reader.stream(40_000, 30_000);
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 16 * 1024);
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, big[40_000..70_000]);

    // Replacing an immutable file makes a new one under the same name, keeping user metadata.
    assert!(!put(fs, "/big.bin", b"small now").await);
    assert_eq!(read(fs, "/big.bin").await, b"small now");
    let stat = fs.stat(&p("/big.bin")).await.unwrap();
    assert_eq!((stat.kind, stat.size, stat.mutable), (EntryKind::File, 9, false));
    assert!(stat.link_writable && stat.mtime.is_some() && stat.ctime.is_some());

    // Replace::Never refuses a taken name before any byte is sent.
    let refused = fs
        .prepare_write(&p("/big.bin"), Replace::Never)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), FsErrorKind::Exists);

    // A directory is never replaced by a write.
    fs.mkdir(&p("/d")).await.unwrap();
    let refused = fs.prepare_write(&p("/d"), Replace::Always).await.unwrap_err();
    assert_eq!(refused.kind(), FsErrorKind::IsADirectory);
    // A missing parent, a file as parent.
    assert_eq!(
        fs.prepare_write(&p("/nope/x"), Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        FsErrorKind::NotFound
    );
    assert_eq!(
        fs.prepare_write(&p("/big.bin/x"), Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        FsErrorKind::NotADirectory
    );
    // The root has no link to write.
    assert_eq!(
        fs.prepare_write(&FsPath::root(), Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        FsErrorKind::IsADirectory
    );
}

#[tokio::test]
async fn a_writable_mutable_file_is_written_in_place() {
    let s = setup().await;
    let fs = &s.fs;
    let cap = linked_twice(&s, MutableFormat::Mdmf, b"version one").await;
    let before = fs.stat(&p("/m")).await.unwrap().mtime;
    let target = fs.prepare_write(&p("/m"), Replace::Always).await.unwrap();
    assert!(target.in_place().is_some() && !target.is_new());
    target
        .commit(Cursor::new(b"version two".to_vec()), 11, None)
        .await
        .unwrap();
    // Same cap: the other link sees the new contents; the written link's mtime moved.
    assert_eq!(read(fs, "/alias").await, b"version two");
    assert!(fs.stat(&p("/m")).await.unwrap().mtime > before, "{before:?}");
    assert_eq!(s.root.get("m").await.unwrap().cap, cap);
    // And through /uri/CAP with no names at all.
    let by_cap = format!("/uri/{cap}");
    fs.write(&p(&by_cap), Cursor::new(b"three".to_vec()), 5, Replace::Always)
        .await
        .unwrap();
    assert_eq!(read(fs, "/m").await, b"three");
    let stat = fs.stat(&p("/m")).await.unwrap();
    assert_eq!(
        (stat.size, stat.mutable, stat.writable, stat.format),
        (5, true, true, "MDMF")
    );

    // A read-only mutable file is not written in place: a new immutable file takes the name.
    let ro = cap.readonly().unwrap();
    s.root.set_child("ro", &ro, None, Replace::Never).await.unwrap();
    let target = fs.prepare_write(&p("/ro"), Replace::Always).await.unwrap();
    assert!(target.in_place().is_none());
    target
        .commit(Cursor::new(b"new".to_vec()), 3, None)
        .await
        .unwrap();
    assert!(!s.root.get("ro").await.unwrap().cap.is_mutable());
    assert_eq!(read(fs, "/m").await, b"three");

    // An SDMF file refuses more than its bound before the bytes come.
    let sdmf = s
        .client
        .create_mutable_file(MutableFormat::Sdmf, b"s".to_vec())
        .await
        .unwrap();
    s.root
        .set_child("sdmf", &Cap::File(FileCap::Mutable(sdmf)), None, Replace::Never)
        .await
        .unwrap();
    let target = fs.prepare_write(&p("/sdmf"), Replace::Always).await.unwrap();
    assert_eq!(
        target
            .check_size(filenode::fs::SDMF_MAX_SIZE + 1)
            .unwrap_err()
            .kind(),
        FsErrorKind::TooLarge
    );
}

#[tokio::test]
async fn directories_listing_removal_and_read_only_caps() {
    let s = setup().await;
    let fs = &s.fs;
    fs.mkdir(&p("/a")).await.unwrap();
    assert_eq!(fs.mkdir(&p("/a")).await.unwrap_err().kind(), FsErrorKind::Exists);
    assert_eq!(
        fs.mkdir(&p("/x/y")).await.unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    fs.mkdir_all(&p("/x/y/z")).await.unwrap();
    put(fs, "/a/f", b"file").await;
    // NFC: the decomposed name finds the composed one.
    put(fs, "/a/caf\u{e9}", b"coffee").await;
    assert_eq!(read(fs, "/a/cafe\u{301}").await, b"coffee");
    let listing = fs.list(&p("/a")).await.unwrap();
    assert_eq!(names(&listing), ["caf\u{e9}", "f"]);
    assert!(
        listing
            .iter()
            .all(|e| e.stat.kind == EntryKind::File && e.stat.link_writable)
    );
    let root = fs.list(&FsPath::root()).await.unwrap();
    assert_eq!(names(&root), ["a", "x"]);
    assert_eq!(root[0].stat.kind, EntryKind::Dir);
    assert_eq!(
        fs.list(&p("/a/f")).await.unwrap_err().kind(),
        FsErrorKind::NotADirectory
    );
    assert_eq!(
        fs.open(&p("/a")).await.unwrap_err().kind(),
        FsErrorKind::IsADirectory
    );
    assert_eq!(
        fs.stat(&p("/a/none")).await.unwrap_err().kind(),
        FsErrorKind::NotFound
    );

    // unlink takes files only; rmdir empty directories only; remove anything.
    assert_eq!(
        fs.unlink(&p("/a")).await.unwrap_err().kind(),
        FsErrorKind::IsADirectory
    );
    assert_eq!(
        fs.rmdir(&p("/a")).await.unwrap_err().kind(),
        FsErrorKind::NotEmpty
    );
    assert_eq!(
        fs.rmdir(&p("/a/f")).await.unwrap_err().kind(),
        FsErrorKind::NotADirectory
    );
    fs.unlink(&p("/a/f")).await.unwrap();
    assert_eq!(
        fs.unlink(&p("/a/f")).await.unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    fs.remove(&p("/x")).await.unwrap();
    assert_eq!(
        fs.unlink(&FsPath::root()).await.unwrap_err().kind(),
        FsErrorKind::ReadOnly
    );

    // A read-only view: reads work, every change is ReadOnly.
    let ro_cap = Cap::Dir(s.root.cap().readonly().unwrap());
    let ro = format!("/uri/{ro_cap}");
    assert_eq!(read(fs, &format!("{ro}/a/caf\u{e9}")).await, b"coffee");
    let stat = fs.stat(&p(&format!("{ro}/a"))).await.unwrap();
    assert!(!stat.writable && !stat.link_writable);
    let tries = [
        fs.prepare_write(&p(&format!("{ro}/new")), Replace::Always)
            .await
            .map(|_| ()),
        fs.mkdir(&p(&format!("{ro}/new"))).await.map(|_| ()),
        fs.unlink(&p(&format!("{ro}/a/caf\u{e9}"))).await,
        fs.remove(&p(&format!("{ro}/a"))).await,
        fs.rename(&p(&format!("{ro}/a")), &p("/b"), Replace::Never).await,
    ];
    for (i, tried) in tries.into_iter().enumerate() {
        let e = tried.unwrap_err();
        assert_eq!(e.kind(), FsErrorKind::ReadOnly, "attempt {i}: {e}");
        assert!(!e.to_string().contains("URI:"), "attempt {i}: {e}");
    }
}

#[tokio::test]
async fn renames_within_and_across_directories_and_copies() {
    let s = setup().await;
    let fs = &s.fs;
    fs.mkdir(&p("/a")).await.unwrap();
    fs.mkdir(&p("/b")).await.unwrap();
    put(fs, "/a/one", b"one").await;
    put(fs, "/a/two", b"two").await;
    // Within a directory.
    fs.rename(&p("/a/one"), &p("/a/uno"), Replace::OnlyFiles)
        .await
        .unwrap();
    assert_eq!(names(&fs.list(&p("/a")).await.unwrap()), ["two", "uno"]);
    // Replace::Never refuses a taken name; OnlyFiles replaces a file but not a directory.
    let e = fs
        .rename(&p("/a/uno"), &p("/a/two"), Replace::Never)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::Exists);
    fs.rename(&p("/a/uno"), &p("/a/two"), Replace::OnlyFiles)
        .await
        .unwrap();
    assert_eq!(read(fs, "/a/two").await, b"one");
    let e = fs
        .rename(&p("/a/two"), &p("/b"), Replace::OnlyFiles)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::Exists);
    // Across directories, and the same directory named through its cap.
    fs.rename(&p("/a/two"), &p("/b/moved"), Replace::Never)
        .await
        .unwrap();
    assert!(fs.list(&p("/a")).await.unwrap().is_empty());
    let b_cap = s.root.get("b").await.unwrap().cap;
    fs.rename(&p("/b/moved"), &p(&format!("/uri/{b_cap}/again")), Replace::Never)
        .await
        .unwrap();
    assert_eq!(read(fs, "/b/again").await, b"one");
    // Not below itself; not from a missing name.
    let e = fs
        .rename(&p("/b"), &p("/b/inner"), Replace::Never)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::BadPath);
    let e = fs
        .rename(&p("/a/none"), &p("/a/x"), Replace::Never)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::NotFound);

    // Copy: an immutable file is the same cap; a mutable file and a directory are new objects.
    fs.copy(&p("/b/again"), &p("/a/copy"), Replace::Never)
        .await
        .unwrap();
    assert_eq!(
        s.root.get("b").await.unwrap().node(&s.client).cap(),
        b_cap,
        "the source is untouched"
    );
    let a = fs.dir(&p("/a")).await.unwrap();
    let b = fs.dir(&p("/b")).await.unwrap();
    assert_eq!(
        a.get("copy").await.unwrap().cap,
        b.get("again").await.unwrap().cap
    );
    let big = data(50_000, 7);
    let mutable = s
        .client
        .create_mutable_file(MutableFormat::Mdmf, big.clone())
        .await
        .unwrap();
    b.set_child("m", &Cap::File(FileCap::Mutable(mutable)), None, Replace::Never)
        .await
        .unwrap();
    fs.copy(&p("/b"), &p("/a/b-copy"), Replace::Never).await.unwrap();
    assert_eq!(read(fs, "/a/b-copy/m").await, big);
    assert_eq!(read(fs, "/a/b-copy/again").await, b"one");
    // The copy is independent: writing it leaves the original alone.
    put(fs, "/a/b-copy/m", b"changed").await;
    assert_eq!(read(fs, "/b/m").await, big);
    assert_ne!(
        fs.dir(&p("/a/b-copy")).await.unwrap().cap(),
        fs.dir(&p("/b")).await.unwrap().cap()
    );
    let e = fs
        .copy(&p("/b"), &p("/a/b-copy"), Replace::Never)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::Exists);
    let e = fs
        .copy(&p("/a"), &p("/a/inside"), Replace::Never)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::BadPath);
}

#[tokio::test]
async fn uri_paths_and_their_errors() {
    let s = setup().await;
    let fs = &s.fs;
    // A root child named `uri` is reachable as `/uri`; `/uri/not-a-cap` is refused, never taken
    // for its child (the FTP server's old reading).
    fs.mkdir(&p("/uri")).await.unwrap();
    put(fs, "/uri/../uri-file", b"x").await;
    assert_eq!(fs.stat(&p("/uri")).await.unwrap().kind, EntryKind::Dir);
    assert_eq!(
        FsPath::parse("/uri/not-a-cap").unwrap_err().kind(),
        FsErrorKind::BadPath
    );
    // A file reached by cap: its stat has no link.
    put(fs, "/f", &data(1000, 3)).await;
    let cap = s.root.get("f").await.unwrap().cap;
    let stat = fs.stat(&p(&format!("/uri/{cap}"))).await.unwrap();
    assert_eq!((stat.size, stat.link_writable), (1000, false));
    let e = fs.stat(&p(&format!("/uri/{cap}/below"))).await.unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::NotADirectory);
    assert!(!e.to_string().contains("URI:"));
    // A cap whose shares are nowhere: unavailable, and the message holds no cap.
    let other = TestGrid::new(3);
    let elsewhere = Arc::new(Grid::with_key_pool(
        other.secrets.clone(),
        UploadParams {
            needed: 2,
            happy: 2,
            total: 3,
            ..UploadParams::default()
        },
        filenode::mutable::keys::KeyPool::new(0),
    ));
    elsewhere.set_servers(other.entries());
    let lost = elsewhere.upload_bytes(data(5000, 9)).await.unwrap();
    let path = p(&format!("/uri/{}", Cap::File(lost.clone())));
    let e = match fs.open(&path).await {
        Ok(reader) => match reader.read(0, u64::MAX).await {
            Ok(_) => panic!("a file with no shares read"),
            Err(e) => filenode::fs::FsError::from(e),
        },
        Err(e) => e,
    };
    assert_eq!(e.kind(), FsErrorKind::Gone, "{e}");
    assert!(!e.to_string().contains(&Cap::File(lost).to_string()));
}

const MARK: MetadataChange = MetadataChange {
    mtime: None,
    no_write: Some(true),
};
const CLEAR: MetadataChange = MetadataChange {
    mtime: None,
    no_write: Some(false),
};

/// Tahoe's `no-write` on a link: set and cleared through `set_metadata` (as SFTP's chmod does),
/// stored as Tahoe's key, and honoured by every operation: writes, unlinks and replacements of the
/// link are refused (and change nothing) while a rename away keeps the mark; once cleared, writes
/// work again.
#[tokio::test]
async fn a_link_marked_no_write_refuses_writes_until_cleared() {
    let s = setup().await;
    let fs = &s.fs;
    put(fs, "/f", b"first").await;
    put(fs, "/other", b"other").await;
    fs.set_metadata(&p("/f"), MARK).await.unwrap();
    assert!(fs.stat(&p("/f")).await.unwrap().no_write);
    assert!(!fs.stat(&p("/other")).await.unwrap().no_write);
    let link = s.root.get("f").await.unwrap();
    assert_eq!(
        link.metadata.get("no-write"),
        Some(&serde_json::Value::Bool(true))
    );
    assert!(
        link.metadata.contains_key("mtime"),
        "the other user metadata stays"
    );

    let refused = fs
        .write(&p("/f"), Cursor::new(b"second".to_vec()), 6, Replace::Always)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), FsErrorKind::ReadOnly);
    assert!(refused.message().contains("no-write"), "{refused}");
    let kinds = [
        fs.unlink(&p("/f")).await.unwrap_err().kind(),
        fs.remove(&p("/f")).await.unwrap_err().kind(),
        fs.rename(&p("/other"), &p("/f"), Replace::OnlyFiles)
            .await
            .unwrap_err()
            .kind(),
        fs.copy(&p("/other"), &p("/f"), Replace::OnlyFiles)
            .await
            .unwrap_err()
            .kind(),
    ];
    assert_eq!(kinds, [FsErrorKind::ReadOnly; 4]);
    assert_eq!(read(fs, "/f").await, b"first");
    assert_eq!(read(fs, "/other").await, b"other");

    // A rename away moves the mark with the link; the mtime can still be set, keeping the mark.
    fs.rename(&p("/f"), &p("/g"), Replace::Never).await.unwrap();
    fs.set_metadata(
        &p("/g"),
        MetadataChange {
            mtime: Some(1_000_000.0),
            no_write: None,
        },
    )
    .await
    .unwrap();
    let stat = fs.stat(&p("/g")).await.unwrap();
    assert!(stat.no_write);
    assert_eq!(stat.mtime, Some(1_000_000.0));

    // Cleared: the key is gone and writing, then unlinking, work.
    fs.set_metadata(&p("/g"), CLEAR).await.unwrap();
    assert!(!s.root.get("g").await.unwrap().metadata.contains_key("no-write"));
    assert!(!fs.stat(&p("/g")).await.unwrap().no_write);
    assert!(!put(fs, "/g", b"second").await);
    assert_eq!(read(fs, "/g").await, b"second");
    fs.unlink(&p("/g")).await.unwrap();

    // A path's base has no link to mark; a missing name is not found.
    assert_eq!(
        fs.set_metadata(&FsPath::root(), MARK).await.unwrap_err().kind(),
        FsErrorKind::ReadOnly
    );
    assert_eq!(
        fs.set_metadata(&p("/missing"), MARK).await.unwrap_err().kind(),
        FsErrorKind::NotFound
    );
}

/// Through a marked link a writable mutable file is not written in place (its other links still
/// write it), and a directory is read-only below it: nothing is created, written or removed in
/// it, and the marked directory link itself is not removed.
#[tokio::test]
async fn no_write_on_a_mutable_file_or_directory_link() {
    let s = setup().await;
    let fs = &s.fs;
    let cap = linked_twice(&s, MutableFormat::Sdmf, b"one").await;
    fs.set_metadata(&p("/m"), MARK).await.unwrap();
    let stat = fs.stat(&p("/m")).await.unwrap();
    assert!(stat.no_write && stat.mutable && !stat.writable);
    assert_eq!(
        fs.prepare_write(&p("/m"), Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        FsErrorKind::ReadOnly
    );
    put(fs, "/alias", b"two").await;
    assert_eq!(read(fs, "/m").await, b"two");
    // The write cap stays in the directory: clearing the mark gives write access back.
    assert_eq!(s.root.get("m").await.unwrap().cap, cap);
    fs.set_metadata(&p("/m"), CLEAR).await.unwrap();
    assert!(fs.stat(&p("/m")).await.unwrap().writable);
    put(fs, "/m", b"three").await;
    assert_eq!(read(fs, "/alias").await, b"three");

    fs.mkdir(&p("/d")).await.unwrap();
    put(fs, "/d/inner", b"inner").await;
    fs.set_metadata(&p("/d"), MARK).await.unwrap();
    assert!(!fs.stat(&p("/d")).await.unwrap().writable);
    let kinds = [
        fs.prepare_write(&p("/d/new"), Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        fs.prepare_write(&p("/d/inner"), Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        fs.unlink(&p("/d/inner")).await.unwrap_err().kind(),
        fs.mkdir(&p("/d/sub")).await.unwrap_err().kind(),
        fs.mkdir_all(&p("/d/sub/deeper")).await.unwrap_err().kind(),
        fs.remove(&p("/d")).await.unwrap_err().kind(),
    ];
    assert_eq!(kinds, [FsErrorKind::ReadOnly; 6]);
    assert!(
        fs.list(&p("/d"))
            .await
            .unwrap()
            .iter()
            .all(|e| !e.stat.link_writable)
    );
    assert_eq!(read(fs, "/d/inner").await, b"inner");
    fs.set_metadata(&p("/d"), CLEAR).await.unwrap();
    put(fs, "/d/new", b"new").await;
    fs.mkdir_all(&p("/d/sub/deeper")).await.unwrap();
    assert_eq!(names(&fs.list(&p("/d")).await.unwrap()), ["inner", "new", "sub"]);
}

/// A link's metadata change (SFTP's SETSTAT) racing a write of the same name: the change is made
/// inside the directory's own update, so it never puts the old file back over the write. After
/// each race the name holds what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_change_racing_a_write_never_undoes_it() {
    let s = setup().await;
    let fs = &s.fs;
    fs.write(&p("/f"), Cursor::new(b"first".to_vec()), 5, Replace::Always)
        .await
        .unwrap();
    for i in 0..6u32 {
        let contents = format!("version {i}").into_bytes();
        let len = contents.len() as u64;
        let change = MetadataChange {
            mtime: Some(1_000_000.0 + f64::from(i)),
            no_write: None,
        };
        let path = p("/f");
        let (written, changed) = tokio::join!(
            fs.write(&path, Cursor::new(contents.clone()), len, Replace::Always),
            fs.set_metadata(&path, change),
        );
        written.unwrap();
        changed.unwrap();
        assert_eq!(read(fs, "/f").await, contents, "race {i}: the write was undone");
    }
}

/// A file system of caps only (the web API's): every path starts at a cap given apart from the
/// names, which are taken whole; a path from the root is refused.
#[tokio::test]
async fn a_file_system_without_a_root_takes_paths_at_caps() {
    let s = setup().await;
    s.fs.mkdir(&p("/sub")).await.unwrap();
    put(&s.fs, "/sub/f", b"below a cap").await;
    let caps = Fs::without_root(&s.client);
    let base = Cap::Dir(s.root.cap().clone());
    let at = |names: &[&str]| FsPath::at_cap(base.clone(), names).unwrap();
    assert_eq!(
        caps.open(&at(&["sub", "f"]))
            .await
            .unwrap()
            .read(0, u64::MAX)
            .await
            .unwrap(),
        b"below a cap"
    );
    assert_eq!(names(&caps.list(&at(&["sub"])).await.unwrap()), ["f"]);
    assert_eq!(
        caps.stat(&p("/sub")).await.unwrap_err().kind(),
        FsErrorKind::BadPath
    );
    // A walk through a file names what is missing, as Tahoe's web API words it.
    let e = caps.find(&at(&["sub", "f", "x"])).await.unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::NotADirectory);
    assert!(e.message().contains("no children"), "{e}");
}

/// `remove_child` and `rename_child` find a name as stored, so names no path can carry (planted
/// by a directory's owner) can be unlinked, or renamed to one that can; a marked link is still
/// refused by both, in the directory write itself; a rename away from a marked link is allowed.
#[tokio::test]
async fn children_named_apart_from_paths_are_removed_and_renamed_by_their_stored_names() {
    let s = setup().await;
    let file = Cap::File(s.client.upload_bytes(b"planted".to_vec()).await.unwrap());
    tests::write_raw_children(
        &s.client,
        s.root.cap(),
        &[("", &file), ("..", &file), ("a/b", &file), ("ok", &file)],
    )
    .await;
    let root = FsPath::root();
    assert_eq!(s.fs.remove_child(&root, "").await.unwrap(), file);
    s.fs.remove_child(&root, "a/b").await.unwrap();
    s.fs.rename_child(&root, "..", &root, "dots", Replace::Never)
        .await
        .unwrap();
    let mut left: Vec<String> = s.root.list().await.unwrap().into_iter().map(|c| c.name).collect();
    left.sort();
    assert_eq!(left, ["dots", "ok"]);
    assert_eq!(
        s.fs.remove_child(&root, "gone").await.unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    // The new name must be one a path can carry.
    assert_eq!(
        s.fs.rename_child(&root, "ok", &root, "..", Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        FsErrorKind::BadPath
    );

    s.fs.set_metadata(&p("/ok"), MARK).await.unwrap();
    let refused = [
        s.fs.remove_child(&root, "ok").await.unwrap_err(),
        s.fs.rename_child(&root, "dots", &root, "ok", Replace::Always)
            .await
            .unwrap_err(),
    ];
    for e in &refused {
        assert_eq!(e.kind(), FsErrorKind::ReadOnly, "{e}");
        assert!(e.message().contains("no-write"), "{e}");
    }
    // Across directories too (the target's write checks it).
    s.fs.mkdir(&p("/d")).await.unwrap();
    put(&s.fs, "/d/x", b"x").await;
    assert_eq!(
        s.fs.rename_child(&p("/d"), "x", &root, "ok", Replace::Always)
            .await
            .unwrap_err()
            .kind(),
        FsErrorKind::ReadOnly
    );
    assert_eq!(read(&s.fs, "/d/x").await, b"x");
    // Away: allowed, and the mark moves with the link.
    s.fs.rename_child(&root, "ok", &p("/d"), "moved", Replace::Never)
        .await
        .unwrap();
    assert!(s.fs.stat(&p("/d/moved")).await.unwrap().no_write);
    assert_eq!(
        s.fs.stat(&p("/ok")).await.unwrap_err().kind(),
        FsErrorKind::NotFound
    );
}

/// `link`: objects that exist already linked under names in one write (Tahoe's `t=uri`,
/// `set_children`): `replace` as the directory takes it, missing directories made when asked,
/// names that paths cannot carry refused, and a link marked `no-write` never replaced.
#[tokio::test]
async fn link_makes_links_to_existing_objects_and_keeps_marked_ones() {
    let s = setup().await;
    let fs = &s.fs;
    let one = Cap::File(s.client.upload_bytes(data(100, 1)).await.unwrap());
    let two = Cap::File(s.client.upload_bytes(data(100, 2)).await.unwrap());
    let created = fs
        .link(
            &p("/new/dir"),
            vec![("a".into(), one.clone(), None), ("b".into(), two.clone(), None)],
            Replace::Never,
            Some(MutableFormat::Sdmf),
        )
        .await
        .unwrap();
    assert_eq!(created, [true, true]);
    assert_eq!(read(fs, "/new/dir/b").await, data(100, 2));
    let dir = p("/new/dir");
    assert_eq!(
        fs.link(&dir, vec![("a".into(), two.clone(), None)], Replace::Never, None)
            .await
            .unwrap_err()
            .kind(),
        FsErrorKind::Exists
    );
    assert_eq!(
        fs.link(&dir, vec![("a".into(), two.clone(), None)], Replace::Always, None)
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(read(fs, "/new/dir/a").await, data(100, 2));
    // Replace::Always replaces a directory's link (Tahoe's t=uri); only-files does not.
    fs.mkdir(&p("/new/dir/sub")).await.unwrap();
    assert_eq!(
        fs.link(
            &dir,
            vec![("sub".into(), one.clone(), None)],
            Replace::OnlyFiles,
            None
        )
        .await
        .unwrap_err()
        .kind(),
        FsErrorKind::Exists
    );
    fs.link(
        &dir,
        vec![("sub".into(), one.clone(), None)],
        Replace::Always,
        None,
    )
    .await
    .unwrap();
    assert_eq!(read(fs, "/new/dir/sub").await, data(100, 1));
    assert_eq!(
        fs.link(
            &dir,
            vec![("..".into(), one.clone(), None)],
            Replace::Always,
            None
        )
        .await
        .unwrap_err()
        .kind(),
        FsErrorKind::BadPath
    );
    fs.set_metadata(&p("/new/dir/b"), MARK).await.unwrap();
    let e = fs
        .link(&dir, vec![("b".into(), one.clone(), None)], Replace::Always, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FsErrorKind::ReadOnly, "{e}");
    assert_eq!(read(fs, "/new/dir/b").await, data(100, 2));
    // A file in the way of the directories to make.
    assert_eq!(
        fs.link(
            &p("/new/dir/a/deeper"),
            vec![],
            Replace::Always,
            Some(MutableFormat::Sdmf)
        )
        .await
        .unwrap_err()
        .kind(),
        FsErrorKind::NotADirectory
    );
}

/// `prepare_write_with`: missing parents made (in the format asked), a new object instead of a
/// new version of a writable mutable file (`in_place: false`), an object the caller stored linked
/// with `WriteTarget::link_stored`, and `keep_link`, which leaves a link as Tahoe's web API does (no
/// `mtime` added, and no directory write after a write in place).
#[tokio::test]
async fn prepare_write_with_options_and_caller_stored_objects() {
    let s = setup().await;
    let fs = &s.fs;
    let options = |replace| WriteOptions {
        create_parents: Some(MutableFormat::Mdmf),
        ..WriteOptions::new(replace)
    };
    let mut write = fs
        .prepare_write_with(&p("/made/here/f"), options(Replace::Always))
        .await
        .unwrap();
    assert!(write.is_new());
    write.keep_link();
    assert!(
        write
            .commit(Cursor::new(b"hello".to_vec()), 5, None)
            .await
            .unwrap()
    );
    assert_eq!(fs.stat(&p("/made/here")).await.unwrap().format, "MDMF");
    let link = fs.find(&p("/made/here/f")).await.unwrap().link.unwrap().1;
    assert!(!link.metadata.contains_key("mtime"), "{:?}", link.metadata);

    // A writable mutable file: written in place by default, replaced when asked not to.
    let cap = linked_twice(&s, MutableFormat::Sdmf, b"one").await;
    let before = s.root.get("m").await.unwrap().metadata;
    let mut write = fs.prepare_write(&p("/m"), Replace::Always).await.unwrap();
    assert!(write.in_place().is_some());
    write.keep_link();
    assert!(!write.commit(Cursor::new(b"two".to_vec()), 3, None).await.unwrap());
    assert_eq!(read(fs, "/alias").await, b"two");
    assert_eq!(
        s.root.get("m").await.unwrap().metadata,
        before,
        "the link is untouched"
    );
    let replacement = Cap::File(s.client.upload_bytes(data(500, 3)).await.unwrap());
    let write = fs
        .prepare_write_with(
            &p("/m"),
            WriteOptions {
                in_place: false,
                ..WriteOptions::new(Replace::Always)
            },
        )
        .await
        .unwrap();
    assert!(write.in_place().is_none() && !write.is_new());
    assert!(!write.link_stored(&replacement, None).await.unwrap());
    assert_eq!(read(fs, "/m").await, data(500, 3));
    assert_eq!(
        read(fs, "/alias").await,
        b"two",
        "the mutable file itself is unchanged"
    );
    assert_eq!(s.root.get("alias").await.unwrap().cap, cap);
    // A write that goes in place cannot link another object.
    let write = fs.prepare_write(&p("/alias"), Replace::Always).await.unwrap();
    assert_eq!(
        write.link_stored(&replacement, None).await.unwrap_err().kind(),
        FsErrorKind::Other
    );
    // Marked meanwhile: the link is refused in the directory write that would replace it.
    let write = fs
        .prepare_write(&p("/made/here/f"), Replace::Always)
        .await
        .unwrap();
    fs.set_metadata(&p("/made/here/f"), MARK).await.unwrap();
    assert_eq!(
        write.link_stored(&replacement, None).await.unwrap_err().kind(),
        FsErrorKind::ReadOnly
    );
    assert_eq!(read(fs, "/made/here/f").await, b"hello");
}

/// A write into a directory this client has not written (another client made it) reads the
/// directory once: the commit's directory write starts from the read `prepare_write` made
/// (issue 15's round trips: it read it twice).
#[tokio::test]
async fn a_write_reads_the_directory_once() {
    let s = setup().await;
    put(&s.fs, "/existing", b"old").await;
    let other = Arc::new(Grid::with_key_pool(
        s._grid.secrets.clone(),
        UploadParams {
            needed: 2,
            happy: 3,
            total: 4,
            max_segment_size: 16 * 1024,
        },
        filenode::mutable::keys::KeyPool::new(0),
    ));
    other.set_servers(s._grid.entries());
    let fs = Fs::new(&other, DirNode::new(&other, s.root.cap().clone()));
    let retrieves = || {
        let (active, recent) = other.operations().snapshot();
        active
            .iter()
            .chain(&recent)
            .filter(|op| op.kind == filenode::operations::OpKind::Retrieve)
            .count()
    };
    assert_eq!(retrieves(), 0);
    put(&fs, "/new", b"a new file").await;
    assert_eq!(retrieves(), 1, "one read of the directory for a new name");
    assert!(!put(&fs, "/existing", b"replaced").await);
    assert_eq!(retrieves(), 2);
    assert_eq!(read(&s.fs, "/new").await, b"a new file");
    assert_eq!(read(&s.fs, "/existing").await, b"replaced");
}

//! The directory browser: the HTML page for `GET /uri/$DIRCAP[/path]/` (tahoe-interfaces.md §3.9).
//!
//! The page is rendered whole on the server from one read of the directory: sizes come from the
//! children's caps ([`Child::size`]), never from a request per child, so a directory of 10,000
//! children renders in one pass. Everything on the page works without JavaScript (plain POST forms
//! to the directory's web API with `when_done=.`); the script adds drag and drop, upload progress,
//! inline rename, confirmations, sorting, local times and in-page error messages.
//!
//! Links are relative to the page's URL, which ends with a slash (`/uri/$DIRCAP/a/b/`): a child is
//! `NAME` (a directory `NAME/`), the page itself `.`, its parent `../`. So the page never needs the
//! root cap it was reached through, and the router must redirect a slash-less directory URL to the
//! slashed one before calling [`directory_page`]. Child names are percent-encoded as one path
//! segment; names no URL path can carry (`.`, `..`, empty, or with `/` or NUL: only a directory
//! written by hand holds them) are linked by their caps instead.

use axum::response::Response;
use filenode::cap::{Cap, DirCap, FileCap, MutableFormat};
use filenode::node::{Child, DirNode, normalize_name, unusable_as_path};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use storage::civil::civil_from_days;

use super::{WebError, WebState, html, human_size};

/// Bytes kept as they are in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The directory page for `dir`, reached from a root cap through the child names `path`.
pub(super) async fn directory_page(
    state: &WebState,
    dir: &DirNode,
    path: &[String],
) -> Result<Response, WebError> {
    let children = dir.list().await?;
    render_directory(state, dir, path, &children).map(html)
}

/// One row of the listing, as the template sees it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    name: &'a str,
    /// The name as shown: control characters (which only a directory written by hand holds)
    /// escaped, so a NUL or line break is visible rather than dropped or reflowed.
    shown: String,
    /// Whether the Rename button is offered: the name is one `normalize_name` takes as it is,
    /// without line breaks (forms rewrite those).
    editable: bool,
    /// Whether a form can send the name exactly, so the Unlink button works: every name but those
    /// holding CR, LF (which browsers rewrite in form values) or NUL.
    unlinkable: bool,
    /// The link to the child (relative to the page, or by cap for names no path can carry).
    href: String,
    /// The "save" link for files.
    save_href: Option<String>,
    /// The "more info" link.
    info_href: String,
    /// `dir`, `file`, `mutable` or `unknown` (the icon).
    icon: &'static str,
    /// What the child is, in words.
    kind: String,
    /// Whether the link gives no write access to a mutable child.
    readonly: bool,
    /// Bytes when the cap tells, else -1 (the sort key).
    size_key: i64,
    size_text: String,
    /// `tahoe.linkmotime` (Unix seconds), else the user's `mtime`, else 0 (the sort key).
    mtime_key: i64,
    /// The time in ISO 8601 and as shown without JavaScript (UTC); empty when unknown.
    mtime_iso: String,
    mtime_text: String,
}

/// A cap as one percent-encoded path segment.
fn encode(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// `URI:DIR2:abcdef…`: enough of a cap to recognise it, not enough to use it.
fn abbreviate(cap: &DirCap) -> String {
    let text = cap.to_string();
    let kind = cap.kind();
    let rest: String = text[kind.len()..].chars().take(7).collect();
    format!("{kind}{rest}…")
}

fn child_kind(cap: &Cap) -> (&'static str, String) {
    match cap {
        Cap::Dir(dir) => {
            let format = match dir.file() {
                FileCap::Mutable(m) if m.format == MutableFormat::Mdmf => "MDMF",
                FileCap::Mutable(_) => "SDMF",
                FileCap::Lit(_) => "LIT, immutable",
                _ => "CHK, immutable",
            };
            ("dir", format!("Directory ({format})"))
        }
        Cap::File(FileCap::Mutable(m)) => {
            let format = match m.format {
                MutableFormat::Sdmf => "SDMF",
                MutableFormat::Mdmf => "MDMF",
            };
            ("mutable", format!("Mutable file ({format})"))
        }
        Cap::File(FileCap::Lit(_)) => ("file", "File (LIT)".to_owned()),
        Cap::File(_) => ("file", "File (CHK)".to_owned()),
        Cap::Unknown(_) => ("unknown", "Unknown cap".to_owned()),
    }
}

/// The link time of a child: Tahoe's `linkmotime`, else the `mtime` that `tahoe backup` writes.
fn modified(child: &Child) -> Option<i64> {
    child
        .metadata
        .get("tahoe")
        .and_then(|tahoe| tahoe.get("linkmotime"))
        .or_else(|| child.metadata.get("mtime"))
        .and_then(serde_json::Value::as_f64)
        .filter(|t| t.is_finite() && *t >= 0.0 && *t < 253_402_300_800.0)
        .map(|t| t as i64)
}

/// `(ISO 8601, "2024-11-24 20:26 UTC")` for Unix seconds.
fn utc_times(seconds: i64) -> (String, String) {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    (
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC"),
    )
}

fn row(child: &Child) -> Row<'_> {
    let (icon, kind) = child_kind(&child.cap);
    let is_dir = icon == "dir";
    let unknown = icon == "unknown";
    // `.` and `..` are dot-segments to every URL parser, even percent-encoded; a `/` comes back
    // as a separator once the router decodes the path, and an empty name links to the page
    // itself: such names (which only a hand-written directory holds) are linked by cap.
    let by_cap = unusable_as_path(&child.name).is_some();
    let (href, save_href, info_href) = if by_cap {
        let cap = encode(&child.cap.to_string());
        let name = encode(&child.name);
        if is_dir {
            (format!("/uri/{cap}/"), None, format!("/uri/{cap}/?t=info"))
        } else {
            (
                format!("/uri/{cap}?filename={name}"),
                (!unknown).then(|| format!("/uri/{cap}?save=true&filename={name}")),
                format!("/uri/{cap}?t=info&filename={name}"),
            )
        }
    } else {
        let name = encode(&child.name);
        if is_dir {
            (format!("{name}/"), None, format!("{name}/?t=info"))
        } else {
            (
                name.clone(),
                (!unknown).then(|| format!("{name}?save=true")),
                format!("{name}?t=info"),
            )
        }
    };
    let size = child.size();
    let size_text = match (size, icon) {
        (Some(bytes), _) => human_size(bytes),
        (None, "mutable") => "?".to_owned(),
        (None, _) => "—".to_owned(),
    };
    let mtime = modified(child);
    let (mtime_iso, mtime_text) = mtime.map(utc_times).unwrap_or_default();
    let mut shown = String::with_capacity(child.name.len());
    for c in child.name.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    let editable =
        normalize_name(&child.name).is_ok_and(|n| n == child.name) && !child.name.contains(['\r', '\n']);
    Row {
        name: &child.name,
        shown,
        editable,
        unlinkable: !child.name.contains(['\r', '\n', '\0']),
        href,
        save_href,
        info_href,
        icon,
        kind,
        readonly: child.cap.is_mutable() && child.cap.is_readonly() && !unknown,
        size_key: size.map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
        size_text,
        mtime_key: mtime.unwrap_or(0),
        mtime_iso,
        mtime_text,
    }
}

/// The page for `dir` with `children` (in the order given: the directory's, by name).
fn render_directory(
    state: &WebState,
    dir: &DirNode,
    path: &[String],
    children: &[Child],
) -> Result<String, WebError> {
    let cap = dir.cap();
    let writable = !dir.is_readonly();
    // The breadcrumb: the root, then each name; every entry links to its directory.
    let depth = path.len();
    let up = |levels: usize| {
        if levels == 0 {
            "./".to_owned()
        } else {
            "../".repeat(levels)
        }
    };
    let crumbs: Vec<minijinja::Value> = path
        .iter()
        .enumerate()
        .map(|(i, name)| minijinja::context! { name => name, href => up(depth - 1 - i) })
        .collect();
    let mut caps = Vec::new();
    if writable {
        caps.push(minijinja::context! { label => "Write cap", value => cap.to_string() });
    }
    if let Some(readonly) = cap.readonly() {
        caps.push(minijinja::context! { label => "Read-only cap", value => readonly.to_string() });
    }
    if let Some(verifier) = cap.verifier() {
        caps.push(minijinja::context! { label => "Verify cap", value => verifier.to_string() });
    }
    let readonly_href = cap.readonly().map(|readonly| super::fs::dir_url(&readonly, &[]));
    let rows: Vec<Row<'_>> = children.iter().map(row).collect();
    let count = rows.len();
    let title = path.last().cloned().unwrap_or_else(|| abbreviate(cap));
    state.pages.render(
        "directory.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            title => title,
            root_label => (depth == 0).then(|| abbreviate(cap)),
            root_href => up(depth),
            crumbs => crumbs,
            writable => writable,
            mutable => dir.is_mutable(),
            format => dir.format(),
            kind => cap.kind(),
            caps => caps,
            readonly_href => readonly_href,
            rows => minijinja::Value::from(minijinja::value::Serde(rows)),
            count => count,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use filenode::cap::{ChkCap, LitCap, MutableAccess, MutableCap};
    use filenode::grid::upload::UploadParams;
    use filenode::grid::{ClientSecrets, Grid};
    use filenode::mutable::keys::KeyPool;
    use filenode::node::{Metadata, Replace};
    use http_body_util::BodyExt;

    use super::*;

    use crate::testing::grid;

    async fn page(state: &WebState, dir: &DirNode, path: &[&str]) -> String {
        let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        let response = directory_page(state, dir, &path).await.unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn lists_a_real_directory_with_controls_only_when_writable() {
        let (_dirs, grid) = grid(4);
        let state = WebState::new(Arc::clone(&grid), "browse-test");
        let root = grid.create_directory(MutableFormat::Sdmf).await.unwrap();
        let sub = root
            .create_subdirectory("sub dir", MutableFormat::Mdmf, Replace::Never)
            .await
            .unwrap();
        let report = grid.upload_bytes(vec![7; 70_000]).await.unwrap();
        let small = grid.upload_bytes(b"hello".to_vec()).await.unwrap();
        let mutable = grid
            .create_mutable_file(MutableFormat::Mdmf, b"changing".to_vec())
            .await
            .unwrap();
        root.set_children(
            vec![
                ("<b>report<i> & \"co\".txt".into(), Cap::File(report), None),
                ("a:b?c#d%e.txt".into(), Cap::File(small.clone()), None),
                ("notes".into(), Cap::File(FileCap::Mutable(mutable)), None),
                ("..".into(), Cap::File(small), None),
                ("future".into(), Cap::Unknown("ro.URI:NEW:xyz".into()), None),
            ],
            Replace::Never,
        )
        .await
        .unwrap();

        let html = page(&state, &root, &[]).await;
        // Names are escaped, links are percent-encoded single segments relative to the page.
        assert!(
            html.contains("&lt;b&gt;report&lt;i&gt; &amp; &quot;co&quot;.txt"),
            "{html}"
        );
        assert!(!html.contains("<b>report"));
        assert!(html.contains(r#"href="%3Cb%3Ereport%3Ci%3E%20%26%20%22co%22.txt""#));
        assert!(html.contains(r#"href="%3Cb%3Ereport%3Ci%3E%20%26%20%22co%22.txt?save=true""#));
        assert!(html.contains(r#"href="a%3Ab%3Fc%23d%25e.txt""#));
        assert!(html.contains(r#"href="sub%20dir&#x2f;""#) || html.contains(r#"href="sub%20dir/""#));
        // `..` cannot be a URL path segment: it is linked by its cap.
        assert!(
            html.contains(r#"href="&#x2f;uri&#x2f;URI%3ALIT%3A"#)
                || html.contains(r#"href="/uri/URI%3ALIT%3A"#)
        );
        // Sizes from the caps; a mutable file's size is not fetched.
        assert!(html.contains("70.0 kB"));
        assert!(html.contains(">5 B<"));
        assert!(html.contains("Mutable file (MDMF)"));
        assert!(html.contains("Directory (MDMF)"));
        assert!(html.contains("Unknown cap"));
        assert!(html.contains(" UTC</time>"));
        assert!(html.contains("6 items"));
        // Writable: the badge, the caps, every form, one unlink button per child.
        assert!(html.contains("Writable"));
        assert!(html.contains(&root.cap().to_string()));
        for action in ["upload", "mkdir", "uri", "rename", "unlink"] {
            assert!(html.contains(&format!(r#"action="?t={action}"#)), "{action}");
        }
        assert_eq!(html.matches(r#"action="?t=unlink&amp;when_done=.""#).count(), 6);
        assert!(html.contains(r#"name="when_done" value=".""#));
        // New links never replace an existing child; uploads replace files but not directories.
        assert_eq!(html.matches(r#"name="replace" value="false""#).count(), 3);
        assert!(html.contains(r#"name="replace" value="only-files""#));
        let readonly = root.cap().readonly().unwrap();
        let readonly_href = crate::web::fs::dir_url(&readonly, &[]);
        assert!(html.contains(&readonly_href.replace('/', "&#x2f;")) || html.contains(&readonly_href));

        // The read-only view of the same directory has no controls at all.
        let ro = DirNode::new(&grid, readonly);
        let html = page(&state, &ro, &[]).await;
        assert!(html.contains("Read-only"));
        assert!(html.contains("70.0 kB"));
        assert!(!html.contains("<form"), "{html}");
        assert!(!html.contains(&root.cap().to_string()), "the write cap leaked");

        // A subdirectory: the breadcrumb walks back up, the listing is empty.
        let html = page(&state, &sub, &["sub dir"]).await;
        assert!(html.contains(r#"href="..&#x2f;""#) || html.contains(r#"href="../""#));
        assert!(html.contains(">sub dir</a>"));
        assert!(html.contains("This directory is empty."));
        assert!(html.contains("Mutable directory, MDMF"));
    }

    fn chk(i: u32) -> Cap {
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&i.to_be_bytes());
        Cap::File(FileCap::Chk(ChkCap {
            key,
            ueb_hash: [9; 32],
            needed: 3,
            total: 10,
            size: u64::from(i) * 1000,
        }))
    }

    #[test]
    fn ten_thousand_children_render_in_one_pass() {
        let state = WebState::new(
            Arc::new(Grid::with_key_pool(
                ClientSecrets {
                    lease_secret: Vec::new(),
                    convergence: None,
                },
                UploadParams::default(),
                KeyPool::new(0),
            )),
            "big",
        );
        let dir = DirNode::new(
            &state.grid,
            DirCap::new(FileCap::Mutable(MutableCap {
                format: MutableFormat::Sdmf,
                access: MutableAccess::Write { writekey: [1; 16] },
                fingerprint: [2; 32],
            })),
        );
        let metadata: Metadata =
            serde_json::from_str(r#"{"tahoe": {"linkcrtime": 1732480000.5, "linkmotime": 1732480000.5}}"#)
                .unwrap();
        let children: Vec<Child> = (0..10_000)
            .map(|i| Child {
                name: format!("file {i:05}.dat"),
                cap: chk(i),
                ro_cap: None,
                metadata: metadata.clone(),
            })
            .collect();
        let started = Instant::now();
        let html = render_directory(&state, &dir, &[], &children).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(html.matches("<tr><td class=\"t\">").count(), 10_000);
        assert!(html.contains("file 09999.dat"));
        assert!(html.contains("10000 items"));
        // About 60 ms in a debug build on the CI machine; the bound only catches a regression to
        // per-child work that is orders of magnitude slower.
        assert!(elapsed.as_secs_f64() < 5.0, "rendering took {elapsed:?}");
        // About 630 bytes a row.
        assert!(html.len() < 7_000_000, "the page is {} bytes", html.len());
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(
            utc_times(0),
            ("1970-01-01T00:00:00Z".into(), "1970-01-01 00:00 UTC".into())
        );
        assert_eq!(utc_times(1_732_480_000).0, "2024-11-24T20:26:40Z");
        assert_eq!(utc_times(951_782_400).0, "2000-02-29T00:00:00Z");
        assert_eq!(utc_times(4_107_542_399).0, "2100-02-28T23:59:59Z");
    }

    #[test]
    fn rows_describe_children() {
        let lit = Child {
            name: "tiny".into(),
            cap: Cap::File(FileCap::Lit(LitCap { data: vec![1, 2, 3] })),
            ro_cap: None,
            metadata: Metadata::new(),
        };
        let r = row(&lit);
        assert_eq!(
            (r.icon, r.kind.as_str(), r.size_text.as_str()),
            ("file", "File (LIT)", "3 B")
        );
        assert_eq!((r.mtime_key, r.mtime_text.as_str()), (0, ""));
        let readonly_dir = Child {
            name: ".".into(),
            cap: Cap::Dir(DirCap::new(FileCap::Mutable(MutableCap {
                format: MutableFormat::Sdmf,
                access: MutableAccess::Read { readkey: [4; 16] },
                fingerprint: [5; 32],
            }))),
            ro_cap: None,
            metadata: serde_json::from_str(r#"{"mtime": 86400.0}"#).unwrap(),
        };
        let r = row(&readonly_dir);
        assert!(r.readonly);
        assert!(r.href.starts_with("/uri/URI%3ADIR2-RO%3A") && r.href.ends_with('/'));
        assert_eq!(r.save_href, None);
        assert_eq!(r.mtime_text, "1970-01-02 00:00 UTC");
        assert_eq!(r.size_text, "—");
    }
}

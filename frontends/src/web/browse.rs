//! The directory page (`GET /uri/$DIRCAP/`): the listing as an HTML table.

use axum::response::Response;
use filenode::node::DirNode;

use super::{WebError, WebState};

/// Renders the directory at `path` below the URL's root cap.
pub(super) async fn directory_page(
    state: &WebState,
    dir: &DirNode,
    path: &[String],
) -> Result<Response, WebError> {
    let base = super::fs::dir_url(dir.cap(), &[]);
    let children = dir.list().await?;
    let rows: Vec<minijinja::Value> = children
        .iter()
        .map(|child| {
            minijinja::context! {
                name => child.name.clone(),
                is_dir => child.is_dir(),
                size => child.size().map(super::human_size),
                href => format!("{base}{}{}", percent_encoding::utf8_percent_encode(&child.name, percent_encoding::NON_ALPHANUMERIC), if child.is_dir() { "/" } else { "" }),
            }
        })
        .collect();
    let page = state.pages.render(
        "error.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            status => 200,
            reason => format!("Directory {}", path.join("/")),
            message => rows.iter().map(|r| r.get_attr("name").map(|n| n.to_string()).unwrap_or_default()).collect::<Vec<_>>().join("\n"),
        },
    )?;
    Ok(super::html(page))
}

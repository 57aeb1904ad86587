//! The web UI's HTML pages, rendered with minijinja from the templates in `web-templates/`.
//!
//! The templates are compiled into the binary; setting `TESSERA_TEMPLATES_DIR` to a folder of the
//! same layout loads (and reloads on change) edited copies instead. Values are auto-escaped.

use minijinja::Environment;

use super::WebError;

const BUILT_IN: [(&str, &str); 12] = [
    ("error.html", include_str!("../../../web-templates/error.html")),
    ("base.html", include_str!("../../../web-templates/base.html")),
    (
        "welcome.html",
        include_str!("../../../web-templates/welcome.html"),
    ),
    ("file.html", include_str!("../../../web-templates/file.html")),
    ("check.html", include_str!("../../../web-templates/check.html")),
    (
        "deep-check.html",
        include_str!("../../../web-templates/deep-check.html"),
    ),
    (
        "directory.html",
        include_str!("../../../web-templates/directory.html"),
    ),
    (
        "storage.html",
        include_str!("../../../web-templates/storage.html"),
    ),
    ("node.html", include_str!("../../../web-templates/node.html")),
    ("status.html", include_str!("../../../web-templates/status.html")),
    (
        "operation.html",
        include_str!("../../../web-templates/operation.html"),
    ),
    (
        "introducer.html",
        include_str!("../../../web-templates/introducer.html"),
    ),
];

/// The page renderer.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

impl Pages {
    /// Built-in templates, or those of `TESSERA_TEMPLATES_DIR`.
    pub fn new() -> Self {
        let mut env = Environment::new();
        match std::env::var_os("TESSERA_TEMPLATES_DIR") {
            Some(dir) => env.set_loader(minijinja::path_loader(dir)),
            None => {
                for (name, source) in BUILT_IN {
                    env.add_template(name, source)
                        .expect("invariant: the built-in templates parse");
                }
            }
        }
        Pages { env }
    }

    /// Renders template `name` with `context`.
    pub fn render(&self, name: &str, context: minijinja::Value) -> Result<String, WebError> {
        self.env
            .get_template(name)
            .and_then(|template| template.render(context))
            .map_err(|e| WebError::Internal(format!("template {name}: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_page(kind: &str) -> String {
        Pages::new()
            .render(
                "file.html",
                minijinja::context! {
                    nickname => "n", name => "x.txt", kind => kind, size_text => "1 B", caps => Vec::<String>::new(),
                    download_url => "/d", save_url => "/s",
                },
            )
            .unwrap()
    }

    #[test]
    fn file_page_says_whether_a_file_is_mutable() {
        assert!(file_page("URI:MDMF").contains("Mutable file (MDMF), writable"));
        assert!(file_page("URI:SSK-RO").contains("Mutable file (SDMF), read-only cap"));
        assert!(file_page("URI:CHK").contains("Immutable file (CHK)"));
        assert!(file_page("URI:LIT").contains("Immutable file (LIT)"));
        assert!(file_page("URI:DIR2").contains("Mutable directory (SDMF), writable"));
        assert!(file_page("URI:DIR2-MDMF-RO").contains("Mutable directory (MDMF), read-only cap"));
        assert!(file_page("URI:DIR2-CHK").contains("Immutable directory (CHK)"));
        assert!(!file_page("URI:DIR2").contains("Save as"));
        assert!(file_page("URI:CHK").contains("Save as"));
    }

    #[test]
    fn welcome_page_offers_formats_and_directories() {
        let page = Pages::new()
            .render(
                "welcome.html",
                minijinja::context! { nickname => "n", servers => Vec::<String>::new() },
            )
            .unwrap();
        assert!(page.contains(r#"action="/uri?t=mkdir&amp;redirect_to_result=true""#));
        for format in ["CHK", "SDMF", "MDMF"] {
            assert!(page.contains(&format!(r#"<option value="{format}""#)), "{format}");
        }
    }
}

//! The web UI's HTML pages, rendered with minijinja from the templates in `web-templates/`.
//!
//! The templates are compiled into the binary; setting `TESSERA_TEMPLATES_DIR` to a folder of the
//! same layout loads (and reloads on change) edited copies instead. Values are auto-escaped.

use minijinja::Environment;

use super::WebError;

const BUILT_IN: [(&str, &str); 4] = [
    ("error.html", include_str!("../../../web-templates/error.html")),
    ("base.html", include_str!("../../../web-templates/base.html")),
    (
        "welcome.html",
        include_str!("../../../web-templates/welcome.html"),
    ),
    ("file.html", include_str!("../../../web-templates/file.html")),
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

//! The pages' only script and style sheet, compiled into the Worker
//! (`include_str!`) and served under `/assets/{name}.{hash}.{ext}`: the
//! name changes with the content, so a browser may keep a copy for a
//! year (`immutable`) and a new deploy is picked up at once.

use std::sync::OnceLock;

use sha1::{Digest, Sha1};

/// One static file.
#[derive(Debug)]
pub struct Asset {
    stem: &'static str,
    ext: &'static str,
    /// The file's text.
    pub body: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    path: OnceLock<String>,
}

impl Asset {
    const fn new(
        stem: &'static str,
        ext: &'static str,
        body: &'static str,
        content_type: &'static str,
    ) -> Self {
        Self {
            stem,
            ext,
            body,
            content_type,
            path: OnceLock::new(),
        }
    }

    /// `/assets/app.<first 10 hex of SHA-1>.js`.
    pub fn path(&self) -> &str {
        self.path.get_or_init(|| {
            let hash = hex::encode(Sha1::digest(self.body.as_bytes()));
            format!("/assets/{}.{}.{}", self.stem, &hash[..10], self.ext)
        })
    }
}

/// The script: progressive enhancement of every page.
pub static JS: Asset = Asset::new(
    "app",
    "js",
    include_str!("../../assets/app.js"),
    "text/javascript; charset=utf-8",
);

/// The style sheet.
pub static CSS: Asset = Asset::new(
    "app",
    "css",
    include_str!("../../assets/app.css"),
    "text/css; charset=utf-8",
);

/// The asset served under `/assets/{name}`, if `name` is a current one
/// (an old hash is not served: its content is gone).
pub fn find(name: &str) -> Option<&'static Asset> {
    [&JS, &CSS]
        .into_iter()
        .find(|a| a.path().strip_prefix("/assets/") == Some(name))
}

/// Response headers of an asset: cached for a year, never re-checked.
pub fn headers() -> Vec<(&'static str, String)> {
    vec![
        (
            "Cache-Control",
            "public, max-age=31536000, immutable".into(),
        ),
        ("X-Content-Type-Options", "nosniff".into()),
    ]
}

/// The budget for all script and style together, gzipped (issue 11).
pub const BUDGET_GZIP_BYTES: usize = 50 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn assets_have_hashed_names_and_are_found_by_them() {
        assert!(JS.path().starts_with("/assets/app.") && JS.path().ends_with(".js"));
        assert_ne!(JS.path(), CSS.path());
        let name = CSS.path().trim_start_matches("/assets/");
        assert!(std::ptr::eq(find(name).unwrap(), &CSS));
        assert!(find("app.0000000000.css").is_none());
        assert!(find("../secret").is_none());
    }

    /// All script and style, gzipped, within 50 KB.
    #[test]
    fn script_and_style_fit_the_size_budget() {
        let total: usize = [&JS, &CSS]
            .into_iter()
            .map(|asset| {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                enc.write_all(asset.body.as_bytes()).unwrap();
                enc.finish().unwrap().len()
            })
            .sum();
        assert!(
            total <= BUDGET_GZIP_BYTES,
            "script + style are {total} bytes gzipped, over {BUDGET_GZIP_BYTES}"
        );
    }
}

//! The dashboard's static files, embedded in the binary and served at
//! `/static/{file}`: the pages' own stylesheet and script, and the
//! vendored libraries listed in `static/MANIFEST.toml`.
//!
//! Pages link each file as `/static/{file}?v={hash}` (see [`url`]), where
//! the hash is a prefix of the file's SHA-256: such a link names one
//! content forever, so it is served `immutable`; a link without the
//! current hash is answered `no-cache` with an `ETag` to revalidate.
//! Nothing is read from disk at run time.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::app::App;

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/", $name)),
        }
    };
}

/// Every file served under `/static/`.
pub static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("stream.js", "text/javascript; charset=utf-8"),
    asset!("htmx-2.0.11.min.js", "text/javascript; charset=utf-8"),
    asset!("uPlot-1.6.32.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("uPlot-1.6.32.min.css", "text/css; charset=utf-8"),
    asset!("licenses/htmx.org-LICENSE.txt", "text/plain; charset=utf-8"),
    asset!("licenses/uplot-LICENSE.txt", "text/plain; charset=utf-8"),
];

/// The vendored htmx script.
pub const HTMX: &str = "htmx-2.0.11.min.js";
/// The vendored uPlot script and stylesheet.
pub const UPLOT_JS: &str = "uPlot-1.6.32.iife.min.js";
pub const UPLOT_CSS: &str = "uPlot-1.6.32.min.css";

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Each file by name with its version tag (the first 16 hex digits of
/// its SHA-256), computed once.
static INDEX: LazyLock<HashMap<&'static str, (&'static Asset, String)>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| (a.name, (a, sha256_hex(a.bytes)[..16].to_string())))
        .collect()
});

/// The link to embedded file `name`, carrying its content hash so that
/// browsers may keep it for good. An unknown name yields a plain
/// `/static/` link that answers 404.
pub fn url(name: &str) -> String {
    match INDEX.get(name) {
        Some((_, tag)) => format!("/static/{name}?v={tag}"),
        None => format!("/static/{name}"),
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/static/{*file}", get(serve))
        // Browsers ask for an icon on their own whenever a document (an
        // error in JSON, say) declares none: answer that there is none
        // rather than 404, which they report as a failed load.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

async fn serve(Path(file): Path<String>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let Some((asset, tag)) = INDEX.get(file.as_str()) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no static file {file:?}"),
        )
            .into_response();
    };
    let etag = format!("\"{tag}\"");
    let pinned = query.as_deref() == Some(&format!("v={tag}"));
    let cache = if pinned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/MANIFEST.toml"));

    #[derive(serde::Deserialize)]
    struct Manifest {
        file: Vec<Entry>,
    }

    #[derive(serde::Deserialize)]
    struct Entry {
        name: String,
        package: String,
        version: String,
        license: String,
        license_file: String,
        sha256: String,
    }

    #[test]
    fn vendored_files_match_their_manifest_hashes() {
        let manifest: Manifest = toml::from_str(MANIFEST).expect("MANIFEST.toml parses");
        assert!(manifest.file.len() >= 3, "htmx and uPlot are listed");
        for entry in &manifest.file {
            let (asset, _) = INDEX
                .get(entry.name.as_str())
                .unwrap_or_else(|| panic!("{} is listed but not embedded", entry.name));
            assert_eq!(
                sha256_hex(asset.bytes),
                entry.sha256,
                "{} ({} {}) differs from the manifest",
                entry.name,
                entry.package,
                entry.version
            );
            assert!(!entry.license.is_empty(), "{} names its license", entry.name);
            assert!(
                INDEX.contains_key(entry.license_file.as_str()),
                "{}'s license text {} is embedded",
                entry.name,
                entry.license_file
            );
        }
        // Every third-party file served is listed.
        for name in [HTMX, UPLOT_JS, UPLOT_CSS] {
            assert!(
                manifest.file.iter().any(|e| e.name == name),
                "{name} is in the manifest"
            );
        }
    }

    #[test]
    fn links_carry_the_content_hash() {
        let u = url("app.css");
        let tag = &sha256_hex(include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/app.css")))[..16];
        assert_eq!(u, format!("/static/app.css?v={tag}"));
        assert_eq!(url("nope.js"), "/static/nope.js");
    }
}

//! The browser client: the chat page and the embeddable widget, compiled into
//! the binary so that the server needs no files beside it.
//!
//! Every file of `assets/` that the browser loads is listed in `ASSETS`; the
//! HTTP layer serves them with an ETag, and `write_client_files` copies them
//! out for operators who let their own web server or proxy serve them.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The URL path it is served at, and its file name, without the leading `/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// The files of the browser client.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "talk.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/talk.html"),
    },
    Asset {
        name: "talk.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/talk.js"),
    },
    Asset {
        name: "talk.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/talk.css"),
    },
    Asset {
        name: "talk.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/talk.svg"),
    },
];

/// The asset served at `name` (the URL path without its leading `/`).
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

impl Asset {
    /// A strong ETag for the asset's bytes, the same on every run of one
    /// build; computed once per asset.
    pub fn etag(&self) -> &'static str {
        static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
        let etags = ETAGS.get_or_init(|| {
            ASSETS
                .iter()
                .map(|asset| {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    asset.body.hash(&mut hasher);
                    format!("\"{:016x}\"", hasher.finish())
                })
                .collect()
        });
        let index = ASSETS
            .iter()
            .position(|asset| std::ptr::eq(asset, self))
            .expect("assets are the ones in ASSETS");
        &etags[index]
    }
}

/// Writes every asset into `dir` (created if missing) and returns the paths
/// written, for `talk client-files`.
pub fn write_client_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    ASSETS
        .iter()
        .map(|asset| {
            let path = dir.join(asset.name);
            std::fs::write(&path, asset.body)?;
            Ok(path)
        })
        .collect()
}

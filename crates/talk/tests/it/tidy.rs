//! House rules that a compiler does not check: every Rust file of the
//! repository (the workspace, and the peer bench and fuzz workspaces
//! beside it) starts with a `//!` comment saying what it owns, and the
//! README's install command installs the `talk` command.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Build output and npm packages are not ours.
        let generated = path
            .file_name()
            .is_some_and(|name| name == "target" || name == "node_modules");
        if generated {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_owns() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for workspace in ["crates", "bench", "fuzz"] {
        let before = files.len();
        rust_files(&root.join(workspace), &mut files);
        assert!(
            files.len() > before,
            "found no Rust file under {workspace}/"
        );
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let undocumented: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a //! header: {undocumented:?}"
    );
}

// Issue 22, row 12: the README called `talk` without saying how to get it.
#[test]
fn r22_the_readme_says_how_to_put_talk_on_the_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let crate_path = readme
        .lines()
        .find_map(|line| line.trim().strip_prefix("cargo install --path "))
        .expect("the README has a `cargo install --path` line")
        .split_whitespace()
        .next()
        .unwrap();
    // The package there is the one whose binary is `talk`.
    let manifest = std::fs::read_to_string(root.join(crate_path).join("Cargo.toml"))
        .unwrap_or_else(|error| panic!("{crate_path}/Cargo.toml: {error}"));
    assert!(
        manifest.contains("name = \"talk\"") && root.join(crate_path).join("src/main.rs").exists(),
        "{crate_path} does not build the talk binary"
    );
    assert!(
        readme.contains("target/release/talk"),
        "the README says where cargo build --release puts talk"
    );
}

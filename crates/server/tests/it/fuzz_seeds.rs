//! The fuzz targets' properties over their committed seeds (`fuzz/seeds/`),
//! without a fuzzer: the checks stay compiled, and the inputs that once
//! broke them, kept as seeds, keep passing.

use std::path::Path;

use talk_server::fuzzing;

fn check_seeds(target: &str, property: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut n_seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{dir:?}: {error}")) {
        let path = entry.unwrap().path();
        let seed = std::fs::read(&path).unwrap();
        // Name the seed if the property panics.
        eprintln!("{target}: {}", path.display());
        property(&seed);
        n_seeds += 1;
    }
    assert!(n_seeds > 0, "no seeds in {dir:?}");
}

#[test]
fn command_seeds_keep_their_properties() {
    check_seeds("command", fuzzing::command);
}

#[test]
fn request_body_seeds_keep_their_properties() {
    check_seeds("request_body", fuzzing::request_body);
}

#[test]
fn values_seeds_keep_their_properties() {
    check_seeds("values", fuzzing::values);
}

#[test]
fn request_head_seeds_keep_their_properties() {
    check_seeds("request_head", fuzzing::request_head);
}

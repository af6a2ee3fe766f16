//! Directory renames on the simulated storage: the running process sees
//! them at once, a crash image only once the parent directory is synced.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used)]

use std::path::Path;

use sealtrail_storage::sim::SimStorage;
use sealtrail_storage::Storage;

/// A file written and synced under `dir`, its name synced too.
fn durable_file(s: &SimStorage, dir: &Path, name: &str, bytes: &[u8]) {
    s.create_dir_all(dir).unwrap();
    let f = s.open(&dir.join(name), true).unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.sync_data().unwrap();
    s.sync_dir(dir).unwrap();
}

#[test]
fn a_directory_rename_is_durable_once_its_parent_is_synced() {
    let s = SimStorage::new();
    let root = Path::new("/d");
    durable_file(&s, &root.join("index"), "MANIFEST", b"old");
    durable_file(&s, &root.join("index.rebuild"), "MANIFEST", b"new");

    s.rename(&root.join("index"), &root.join("index.retired")).unwrap();
    s.rename(&root.join("index.rebuild"), &root.join("index")).unwrap();
    assert_eq!(s.read(&root.join("index/MANIFEST")).unwrap(), b"new");
    assert_eq!(s.read(&root.join("index.retired/MANIFEST")).unwrap(), b"old");
    assert!(!s.exists(&root.join("index.rebuild")));
    assert_eq!(s.list_dirs(root).unwrap(), ["index", "index.retired"]);

    // Not yet durable: the old names, in the old directories.
    let before = s.crash_image(|n| n);
    assert_eq!(before.read(&root.join("index/MANIFEST")).unwrap(), b"old");
    assert_eq!(before.read(&root.join("index.rebuild/MANIFEST")).unwrap(), b"new");
    assert!(!before.exists(&root.join("index.retired/MANIFEST")));
    assert_eq!(before.list_dirs(root).unwrap(), ["index", "index.rebuild"]);
    // Unless the file system wrote every name change.
    let all = s.crash_image_all_names(|n| n);
    assert_eq!(all.read(&root.join("index/MANIFEST")).unwrap(), b"new");

    s.sync_dir(root).unwrap();
    let after = s.crash_image(|n| n);
    assert_eq!(after.read(&root.join("index/MANIFEST")).unwrap(), b"new");
    assert_eq!(after.read(&root.join("index.retired/MANIFEST")).unwrap(), b"old");
    assert!(!after.exists(&root.join("index.rebuild")));
    assert_eq!(after.list_dirs(root).unwrap(), ["index", "index.retired"]);
}

#[test]
fn a_directory_is_not_renamed_onto_one_that_holds_files() {
    let s = SimStorage::new();
    let root = Path::new("/d");
    durable_file(&s, &root.join("a"), "f", b"a");
    durable_file(&s, &root.join("b"), "f", b"b");
    let e = s.rename(&root.join("a"), &root.join("b")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(s.read(&root.join("a/f")).unwrap(), b"a");
}

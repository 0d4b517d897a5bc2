//! What the drop box fuzz targets share: one box in a temporary folder
//! for the whole run, and the check that a session left nothing behind
//! but accepted files with accepted names.

use backuppc_enroll::dropbox::store::DropBox;
use backuppc_enroll::dropbox::DropboxConfig;
use backuppc_enroll::log::Audit;
use std::path::PathBuf;

pub fn folder() -> PathBuf {
    std::env::temp_dir().join(format!("dropbox-fuzz-{}", std::process::id()))
}

pub fn open() -> DropBox {
    let dir = folder();
    for d in [".incoming", ".quarantine", ".receipts"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let cfg = DropboxConfig::parse(&format!(
        "user = \"fuzz\"\nfolder = {dir:?}\nkeep_free = 0\nmax_file_size = 1000000\nname_pattern = 'a[0-9]\\.tar\\.gz'\n"
    ))
    .unwrap();
    DropBox::open(cfg, Audit::new(c"dropbox-fuzz", None)).unwrap()
}

/// No upload left in progress, and nothing in the box but its folders
/// and names the pattern (or its sidecars) accept.
pub fn assert_clean(bx: &DropBox) {
    let dir = folder();
    assert_eq!(std::fs::read_dir(dir.join(".incoming")).unwrap().count(), 0, "an upload was left behind");
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let ok = [".incoming", ".quarantine", ".receipts"].contains(&name.as_str())
            || backuppc_enroll::dropbox::store::classify(&bx.cfg, &name).is_ok();
        assert!(ok, "{name:?} appeared in the box");
    }
}

#![no_main]
//! rsyncsend's reading of `run-job NAME` from SSH_ORIGINAL_COMMAND: never
//! panics, and a name it accepts is a plain declared-name word, the whole
//! command being exactly `run-job NAME`.

use backuppc_enroll::jobs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = std::str::from_utf8(data) else { return };
    if let Some(Ok(name)) = jobs::request(cmd) {
        assert_eq!(cmd, format!("{} {name}", jobs::VERB));
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
    }
});

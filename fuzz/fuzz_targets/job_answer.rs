#![no_main]
//! The backup server's reader of a workstation's job answer (an untrusted
//! tar stream): never panics, and what it accepts holds only plain
//! relative names, each listed in the status with its size.

use backuppc_enroll::jobs::answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = answer::read(data) {
        assert_eq!(a.results.len(), a.status.results.len());
        for (name, bytes) in &a.results {
            assert!(answer::plain_name(name).is_ok(), "{name:?}");
            assert!(!name.split('/').any(|c| c == ".." || c.is_empty()), "{name:?}");
            let listed = a.status.results.iter().find(|r| answer::result_name(&r.path) == format!("results/{name}"));
            assert_eq!(listed.map(|r| r.size), Some(bytes.len() as u64));
        }
    }
});

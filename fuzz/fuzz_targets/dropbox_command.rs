#![no_main]
//! The drop box's reading of SSH_ORIGINAL_COMMAND and of a sha256
//! sidecar: never panics; an accepted scp target holds no newline or NUL,
//! an accepted digest is 64 lower-case hex digits.

use backuppc_enroll::dropbox::command::{self, Service};
use backuppc_enroll::dropbox::verify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(Service::ScpSink { target, .. }) = command::parse(Some(&text)) {
        assert!(!target.contains(['\n', '\r', '\0', ' ']));
    }
    if let Ok(d) = verify::sidecar_digest(data, "a1.tar.gz") {
        assert!(d.len() == 64 && d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
});

#![no_main]
//! forced-command's hello-block parser: never panics, round-trips, and
//! accepted values carry no newline or quote.

use backuppc_enroll::protocol::hello::Hello;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Hello::parse(data) {
        assert_eq!(Hello::parse(h.render().as_bytes()), Ok(h.clone()));
        for v in h.hostname.iter().chain(h.user.iter()).chain(h.hostkeys.iter()) {
            assert!(!v.contains(['\n', '\'', '"', '\\']));
            assert!(!v.starts_with('-'));
        }
    }
});

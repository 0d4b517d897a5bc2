#![no_main]
//! forced-command's request parser: never panics, accepted prints back.

use backuppc_enroll::protocol::request::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Request::parse(cmd) {
        assert_eq!(r.to_string(), cmd);
        assert!(!cmd.contains(|c: char| c.is_whitespace() || c.is_control()));
    }
});

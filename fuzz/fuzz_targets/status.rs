#![no_main]
//! enroll's parser of the server's status answer: never panics, and what
//! it accepts renders back to an answer that parses the same.

use backuppc_enroll::protocol::status::Status;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Status::parse(data) {
        assert_eq!(Status::parse(s.render().as_bytes()), Ok(s.clone()));
        assert!(!s.host.contains(['\n', ' ', '/']));
    }
});

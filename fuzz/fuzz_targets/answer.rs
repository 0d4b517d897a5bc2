#![no_main]
//! enroll's parser of the server's answer: never panics, round-trips, and
//! an accepted key is one bare key.

use backuppc_enroll::protocol::answer::Answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Answer::Success(s)) = Answer::parse(data) {
        assert_eq!(Answer::parse(s.render().as_bytes()), Ok(Answer::Success(s.clone())));
        assert_eq!(s.key.split(' ').count(), 2, "algorithm and data only");
        assert!(!s.key.contains(['\n', '"']));
    }
});

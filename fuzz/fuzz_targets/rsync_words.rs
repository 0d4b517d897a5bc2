#![no_main]
//! The root helper's parser (`rsyncsend exec-rsync -- WORDS`): the words
//! come from whoever can run sudo as the backup account. Never panics;
//! what it accepts stays in the shares and reads back the same from the
//! words it rebuilds.

mod common;

use backuppc_enroll::rsync::parse_words;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // NUL separates words, as in an argv.
    let text = String::from_utf8_lossy(data);
    let words: Vec<String> = text.split('\0').map(str::to_string).collect();
    if let Ok(inv) = parse_words(&words, &common::policy(), &common::Table) {
        common::assert_inside(&inv.paths);
        let again = parse_words(&inv.words("/usr/bin/rsync"), &common::policy(), &common::Table);
        assert_eq!(again, Ok(inv));
    }
});

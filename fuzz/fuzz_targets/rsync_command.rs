#![no_main]
//! rsyncsend's command-line parser: never panics; what it accepts stays in
//! the shares and reads back the same from its rebuilt command line.

mod common;

use backuppc_enroll::rsync::{parse_command, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cmd = String::from_utf8_lossy(data);
    if let Ok(Parsed::Ready(inv)) = parse_command(&cmd, &common::policy(), &common::Table) {
        common::assert_inside(&inv.paths);
        let again = parse_command(&inv.to_command_line(), &common::policy(), &common::Table);
        assert_eq!(again, Ok(Parsed::Ready(inv)));
    }
});

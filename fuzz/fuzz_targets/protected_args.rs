#![no_main]
//! rsyncsend's protected-argument reader and validator, fed as stdin.

mod common;

use backuppc_enroll::rsync::{parse_command, read_protected_args, Parsed};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let Ok(args) = read_protected_args(&mut input, Instant::now() + Duration::from_secs(5)) else { return };
    for head in ["rsync --server --sender -slHogDtprcxe.iLsfxC", "rsync --server -slHogDtprRe.iLsfxC"] {
        let Ok(Parsed::NeedsProtectedArgs(n)) = parse_command(head, &common::policy(), &common::Table) else {
            panic!("BackupPC's command line must parse")
        };
        if let Ok(inv) = n.complete(&args, &common::policy(), &common::Table) {
            common::assert_inside(&inv.paths);
        }
    }
});

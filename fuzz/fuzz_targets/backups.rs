#![no_main]
//! BackupPC's `backups` file: never panics; every backup read has a type
//! BackupPC knows, and a file made of the lines read parses to the same.

use backuppc_enroll::backuppc::backups::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(backups) = parse(data) else { return };
    let mut again = String::new();
    for b in &backups {
        let end = b.end_time.map(|t| t.to_string()).unwrap_or_default();
        let level = b.level.map(|t| t.to_string()).unwrap_or_default();
        again.push_str(&format!(
            "{}\t{}\t{}\t{end}\t{}\t{}\t0\t0\t0\t0\t{}\t{}\t{}\t{}\t0\t0\t0\t0\t\t0\trsync\t{level}\n",
            b.num,
            b.kind.as_str(),
            b.start_time,
            b.n_files,
            b.size,
            b.xfer_errs,
            b.xfer_bad_file,
            b.xfer_bad_share,
            b.tar_errs
        ));
    }
    assert_eq!(parse(again.as_bytes()).unwrap(), backups);
});

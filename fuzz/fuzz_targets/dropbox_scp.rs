#![no_main]
//! The drop box's scp sink: any byte stream from a client never panics,
//! never leaves an upload in progress, and never puts a file in the box
//! under a name the pattern refuses; a parsed file record's name is one
//! plain component.

mod dropbox_box;

use backuppc_enroll::dropbox::scp;
use backuppc_enroll::dropbox::store::Session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = data.split(|b| *b == b'\n').next().unwrap_or(data);
    if let Ok(scp::Record::File { name, .. }) = scp::parse_record(line) {
        assert!(!name.contains('/') && name != ".." && name != "." && !name.is_empty());
    }
    let bx = dropbox_box::open();
    let _ = scp::serve(data, std::io::sink(), &bx, &Session::default(), ".");
    dropbox_box::assert_clean(&bx);
});

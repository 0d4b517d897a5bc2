#![no_main]
//! The drop box's SFTP server: any byte stream from a client (framing,
//! packets, requests in any order) never panics, never leaves an upload
//! in progress, and never puts a file in the box under a name the
//! pattern refuses; every single packet parses or is refused.

mod dropbox_box;

use backuppc_enroll::dropbox::sftp;
use backuppc_enroll::dropbox::store::Session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sftp::Request::Open { path, .. }) = sftp::parse(data) {
        if let Ok(sftp::Target::Name(n)) = sftp::target(path) {
            assert!(!n.contains('/') && n != ".." && n != "." && !n.is_empty());
        }
    }
    let bx = dropbox_box::open();
    // A stream that starts with INIT, so the session goes past it.
    let mut input = vec![0, 0, 0, 5, 1, 0, 0, 0, 3];
    input.extend_from_slice(data);
    let _ = sftp::serve(&input[..], std::io::sink(), &bx, &Session::default());
    dropbox_box::assert_clean(&bx);
});

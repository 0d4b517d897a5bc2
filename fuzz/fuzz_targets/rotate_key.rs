#![no_main]
//! The key rotation's parsers of untrusted input: the restricted key's
//! command (`rotate-key add|retire ssh-ed25519 BASE64`), the root helper's
//! stdin, and the authorized_keys edits made with what they accept. Never
//! a panic; what is accepted is one ed25519 key that renders back the
//! same; an added line is always restricted to the forced command, and
//! every line that was not this server's is kept.

use backuppc_enroll::fleet::rotate::{self, Request};
use libfuzzer_sys::fuzz_target;

const PRESENT: &str = "restrict,from=\"10.0.0.1\",command=\"/usr/lib/backuppc-enroll/rsyncsend --config /etc/backuppc-enroll/client.toml\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q backuppc-enroll@dugong\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line is a request; the rest, an authorized_keys file.
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let parsed = [rotate::command(first).and_then(Result::ok), Request::parse(first).ok()];
    for r in parsed.into_iter().flatten() {
        assert_eq!(Request::parse(r.line().trim_end_matches('\n')).as_ref(), Ok(&r));
        assert_eq!(r.key.openssh().len(), "ssh-ed25519 ".len() + 68);
        for existing in [format!("{PRESENT}{rest}"), rest.to_string()] {
            let others: Vec<&str> =
                existing.lines().filter(|l| !l.trim_end().ends_with(" backuppc-enroll@dugong")).collect();
            for edit in [rotate::add(&existing, "dugong", &r.key), rotate::retire(&existing, "dugong", &r.key)] {
                let Ok(Some(out)) = edit else { continue };
                let kept: Vec<&str> =
                    out.lines().filter(|l| !l.trim_end().ends_with(" backuppc-enroll@dugong")).collect();
                assert_eq!(kept, others, "the other lines are kept");
                for l in out.lines().filter(|l| l.trim_end().ends_with(" backuppc-enroll@dugong")) {
                    if l.contains(r.key.base64()) && !existing.lines().any(|e| e == l) {
                        assert!(l.starts_with("restrict,"), "an added line is restricted: {l}");
                        assert!(l.contains(",command=\""), "an added line has its forced command: {l}");
                    }
                }
            }
        }
    }
});

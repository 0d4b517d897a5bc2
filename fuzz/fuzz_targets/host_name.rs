#![no_main]
//! Host names a client asks for: never panics; an accepted name is a
//! lower-case DNS name, is no address in any spelling, is stable when
//! checked again, and is not a name BackupPC keeps for itself once that
//! check passes too.

use backuppc_enroll::backuppc::names::check_host;
use backuppc_enroll::names::{client_host_name, is_address_spelling};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(name) = client_host_name(s) {
        assert!(!is_address_spelling(&name));
        assert!(name.parse::<std::net::IpAddr>().is_err());
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
        assert_eq!(client_host_name(&name).as_deref(), Ok(name.as_str()));
        if check_host(&name).is_ok() {
            assert!(!["config", "localconfig", "host"].contains(&name.as_str()));
        }
    }
});

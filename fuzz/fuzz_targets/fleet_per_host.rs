#![no_main]
//! How the fleet reads a host's per-host config (which BackupPC's web
//! interface and admins may rewrite): never panics, always names a key to
//! try, and reads back exactly the Perl strings the toolkit's own quoting
//! writes.

use backuppc_enroll::backuppc::perhost::perl_quote;
use backuppc_enroll::fleet::target::{from_per_host_config, perl_strings, Defaults};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let defaults = Defaults { user: "u".into(), key: "/k".into(), known_hosts: "/kh".into() };
    if let Ok(t) = from_per_host_config("h", s, &defaults) {
        assert!(!t.keys.is_empty());
    }
    let _ = perl_strings(s);
    let items: Vec<&str> = s.split('\u{0}').collect();
    let quoted: Vec<String> = items.iter().map(|i| perl_quote(i)).collect();
    let statement = format!("$Conf{{X}} = [{}];", quoted.join(", "));
    assert_eq!(perl_strings(&statement).unwrap(), items);
});

#![no_main]
//! `enroll bundle`'s inputs: host key text (ssh-keyscan output may come
//! from whoever answered on the network) and the server name written into
//! client.toml. Never panics; a server name it accepts yields a client.toml
//! with one `server` line and a known_hosts file that pins the key for
//! exactly that server.

use backuppc_enroll::bundle::{self, Site, CLIENT_TOML_TEMPLATE};
use backuppc_enroll::ssh::client::pinned_keys;
use backuppc_enroll::names;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOAtGEPL38yR09qVtT1lfn2nMIKASLkXsPwaZ1BwlsLp";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (server, keys) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(found) = bundle::host_keys(keys) {
        assert!(!found.is_empty());
    }
    let site = Site { server: server.to_string(), port: 2222, server_user: None };
    if let Ok(toml) = bundle::client_toml(CLIENT_TOML_TEMPLATE, &site) {
        assert_eq!(toml.lines().filter(|l| l.starts_with("server =")).count(), 1);
        let known = bundle::known_hosts(&site, &[names::public_key(KEY).unwrap()]);
        assert_eq!(pinned_keys(&known, server, 2222), vec![KEY.to_string()]);
    }
});

//! What an attacker holding the register key tried against forced-command,
//! through the real sshd: a host named after BackupPC's main config on a
//! Debian-shaped config folder, the client's address spelt as a host name,
//! taking over a host the admin wrote by hand, an approval reused with
//! other host keys, a request overwriting a live host, and a directory
//! failure told to the client in full. Each asserts that no BackupPC file
//! the toolkit did not write changes.

mod common;

use backuppc_enroll::names;
use common::forced::ForcedBench;
use common::world::{Options, World, STOCK_HOSTS};
use common::*;
use std::fs;
use std::path::{Path, PathBuf};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Set `key = value` in a TOML file's top level (before its first table).
fn set_key(file: &Path, key: &str, value: &str) {
    let old = fs::read_to_string(file).unwrap();
    let kept: String = old.lines().filter(|l| !l.starts_with(&format!("{key} = "))).map(|l| format!("{l}\n")).collect();
    fs::write(file, format!("{key} = {value}\n{kept}")).unwrap();
}

/// Turn the World's config folder into Debian's: BackupPC's own
/// config.pl and localhost.pl beside hosts, and `pc -> .`, so that
/// `pc/HOST.pl` is `HOST.pl` in the config folder itself.
fn debian_shape(w: &World) {
    for f in ["config.pl", "localhost.pl"] {
        let p = w.conf_dir.join(f);
        fs::copy(Path::new("/etc/backuppc").join(f), &p).unwrap_or_else(|e| {
            panic!("/etc/backuppc/{f}: {e}: install Debian's backuppc package (the README's test command does)")
        });
        w.server.chown(&p);
    }
    std::os::unix::fs::symlink(".", w.conf_dir.join("pc")).unwrap();
}

/// An /etc/hosts that only the test's sshd (and so forced-command) sees.
fn resolver_file(dir: &TestDir, lines: &str) -> (PathBuf, PathBuf) {
    let p = dir.join("etc-hosts");
    fs::write(&p, lines).unwrap();
    chmod(&p, 0o644);
    (p, PathBuf::from("/etc/hosts"))
}

type Files = Vec<(PathBuf, Vec<u8>, u32)>;

/// The files that differ between two snapshots, other than lock files
/// (BackupPC's empty `LOCK`, the registry's lock) that a read creates.
fn changed(before: &Files, after: &Files) -> Vec<PathBuf> {
    let is_lock = |p: &Path| p.ends_with("LOCK") || p.extension().is_some_and(|e| e == "lock");
    let mut out: Vec<PathBuf> = after
        .iter()
        .filter(|f| !before.contains(f))
        .chain(before.iter().filter(|f| !after.iter().any(|a| a.0 == f.0)))
        .map(|f| f.0.clone())
        .filter(|p| !is_lock(p))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What changed outside the registry.
fn changed_outside(w: &World, before: &Files) -> Vec<PathBuf> {
    changed(before, &w.server_files()).into_iter().filter(|p| !p.starts_with(&w.registry_dir)).collect()
}

const NONE: Vec<PathBuf> = Vec::new();

fn conf_bytes(w: &World, name: &str) -> Vec<u8> {
    fs::read(w.conf_dir.join(name)).unwrap_or_default()
}

#[test]
fn a_host_named_config_never_touches_backuppcs_main_config() {
    let hosts_dir = TestDir::new("etchosts");
    // The attacker's DNS confirms `config` for its address.
    let mount = resolver_file(&hosts_dir, "127.0.0.1 localhost\n127.0.0.5 config\n");
    let w = World::new(Options { sshd_mounts: vec![mount], ..Options::default() });
    debian_shape(&w);
    set_key(&w.client_toml, "hostname", "\"config\"");
    set_key(&w.client_toml, "source_address", "\"127.0.0.5\"");
    let main = conf_bytes(&w, "config.pl");
    let before = w.server_files();

    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "refused: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("reserved by BackupPC"), "{}", text(&out.stderr));
    assert_eq!(conf_bytes(&w, "config.pl"), main, "BackupPC's config.pl unchanged byte for byte");
    assert_eq!(changed(&before, &w.server_files()), NONE, "nothing changed on the server");

    // revoke refuses the name, even with a registry entry for it (as a
    // registry written before this check could hold).
    let out = w.admin(&["revoke", "config"]);
    assert!(!out.status.success());
    let reg = w.registry_dir.join("registry.json");
    fs::write(
        &reg,
        r#"{"version":1,"hosts":{"config":{"host":"config","logon":"cmartin","os":"linux","address":"127.0.0.5","key_fingerprint":"","host_key_fingerprints":[],"enrolled_at":"2026-01-01T00:00:00Z","state":"enrolled"}}}"#,
    )
    .unwrap();
    let out = w.admin(&["revoke", "config"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("reserved by BackupPC"), "{}", text(&out.stderr));
    assert_eq!(conf_bytes(&w, "config.pl"), main, "revoke left config.pl alone");
    let out = w.admin(&["adopt", "config"]);
    assert!(!out.status.success(), "a reserved name cannot be adopted either");
    assert_eq!(conf_bytes(&w, "config.pl"), main);
}

#[test]
fn spellings_of_the_clients_address_are_not_host_names() {
    let f = ForcedBench::new();
    let before = f.files();
    // Each is what getaddrinfo turns back into 127.0.0.5, the client's address.
    for spelling in [
        "2130706437",
        "127.5",
        "127.0.5",
        "0x7f000005",
        "0x7f.0.0.5",
        "0177.0.0.5",
        "0177.0.0.05",
        "127.0.0.5",
        "127.0.0.5.",
    ] {
        let hello = format!("protocol: 2\nhostname: {spelling}\n");
        let out = f.run("linux:cmartin", "127.0.0.5", hello.as_bytes(), None);
        assert_eq!(out.status.code(), Some(1), "{spelling}: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains("is an address, not a host name"), "{spelling}: {}", text(&out.stdout));
        assert!(out.stderr.is_empty(), "nothing on stderr while serving");
        assert_eq!(changed(&before, &f.files()), NONE, "{spelling}: nothing written");
    }

    // And through sshd, from a loopback address of the client's own.
    let w = World::new(Options::default());
    set_key(&w.client_toml, "source_address", "\"127.0.0.5\"");
    let before = w.server_files();
    for spelling in ["2130706437", "0x7f000005"] {
        set_key(&w.client_toml, "hostname", &format!("{spelling:?}"));
        let out = w.enroll(&["--logon", "cmartin", "--yes"]);
        assert_eq!(out.status.code(), Some(3), "{spelling}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("is an address"), "{}", text(&out.stderr));
        assert_eq!(changed(&before, &w.server_files()), NONE, "{spelling}: nothing written");
    }
}

#[test]
fn a_host_the_admin_wrote_by_hand_is_the_admins() {
    let w = World::new(Options::default());
    debian_shape(&w);
    // Debian's stock line; `backuppc` made a logon the directory knows, as
    // it is on a server checking logons through NSS.
    let hosts = format!("{STOCK_HOSTS}localhost       0       backuppc\n");
    fs::write(w.conf_dir.join("hosts"), &hosts).unwrap();
    fs::write(w.etc.join("logons"), "cmartin\njdupont\nbackuppc\n").unwrap();
    let known_hosts = w.server.home.join(".ssh/known_hosts");
    let kh = "localhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q\n";
    fs::write(&known_hosts, kh).unwrap();
    w.server.chown(&known_hosts);
    let local_pl = conf_bytes(&w, "localhost.pl");
    let before = w.server_files();

    // The hosts line's own user: nothing else stood in its way before.
    let out = w.enroll(&["--logon", "backuppc", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(changed(&before, &w.server_files()), NONE, "nothing changed on the server");
    assert!(text(&out.stderr).contains("set up in BackupPC by hand"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("forced-command adopt localhost"), "{}", text(&out.stderr));
    // Another logon, with re-assignment allowed.
    set_key(&w.server_toml, "allow_reassign", "true");
    let before_cfg = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(changed(&before_cfg, &w.server_files()), NONE, "refusals change nothing");
    assert_eq!(conf_bytes(&w, "hosts"), hosts.as_bytes(), "hosts unchanged byte for byte");
    assert_eq!(conf_bytes(&w, "localhost.pl"), local_pl, "localhost.pl unchanged");
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), kh, "known_hosts unchanged");

    // revoke removes nothing the toolkit did not write.
    let out = w.admin(&["revoke", "localhost"]);
    assert!(!out.status.success());
    assert_eq!(conf_bytes(&w, "hosts"), hosts.as_bytes());
    assert_eq!(conf_bytes(&w, "localhost.pl"), local_pl);

    // The admin hands it over: it enrolls, every other line stays.
    let out = w.admin_ok(&["adopt", "localhost"]);
    assert!(out.contains("adopted localhost"), "{out}");
    assert!(fs::read_to_string(&w.audit_log).unwrap().contains("\"adopted\""), "logged");
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert_eq!(
        fs::read_to_string(w.conf_dir.join("hosts")).unwrap(),
        format!("{STOCK_HOSTS}localhost\t0\tcmartin\n"),
        "only the adopted line was rewritten"
    );
    assert_eq!(conf_bytes(&w, "config.pl"), fs::read("/etc/backuppc/config.pl").unwrap(), "config.pl untouched");
    w.admin_ok(&["revoke", "localhost"]);
    assert_eq!(fs::read_to_string(w.conf_dir.join("hosts")).unwrap(), STOCK_HOSTS);
    assert!(!w.conf_dir.join("localhost.pl").exists(), "adopted, so revoke removes it");
}

fn fingerprint_of(pub_file: &Path) -> String {
    names::fingerprint(&names::public_key(fs::read_to_string(pub_file).unwrap().trim()).unwrap())
}

#[test]
fn an_approval_covers_the_host_keys_the_admin_saw() {
    let w = World::new(Options { mode: "approve", ..Options::default() });
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let seen = fingerprint_of(&w.sshd.host_pub_path);
    let pending = w.admin_ok(&["pending"]);
    assert!(pending.contains(&seen), "pending shows the host keys: {pending}");
    let approved = w.admin_ok(&["approve", "localhost"]);
    assert!(approved.contains(&seen), "{approved}");

    // The same address and logon, other host keys.
    let other = w.dir.join("other_host_key");
    keygen(&other, "attacker");
    set_key(&w.client_toml, "host_keys", &format!("[{:?}]", other.with_extension("pub")));
    let before = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "waits again: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("waits for approval anew"), "{}", text(&out.stderr));
    let known_hosts = w.server.home.join(".ssh/known_hosts");
    assert!(!fs::read_to_string(&known_hosts).unwrap_or_default().contains("localhost"), "nothing pinned");
    assert!(!fs::read_to_string(w.conf_dir.join("hosts")).unwrap().contains("localhost"), "nothing registered");
    assert!(!w.conf_dir.join("pc/localhost.pl").exists());
    assert_eq!(changed_outside(&w, &before), NONE, "only the registry changed");
    let pending = w.admin_ok(&["pending"]);
    assert!(pending.contains(&fingerprint_of(&other.with_extension("pub"))), "the new request: {pending}");
    assert!(!pending.contains(&seen), "the approved one was replaced: {pending}");

    // Approved in its turn, it enrolls with exactly those keys.
    w.admin_ok(&["approve", "localhost"]);
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let pinned = fs::read_to_string(&known_hosts).unwrap();
    assert!(pinned.contains(fs::read_to_string(other.with_extension("pub")).unwrap().split(' ').nth(1).unwrap()));
}

#[test]
fn a_request_never_overwrites_a_live_host() {
    let w =
        World::new(Options { mode: "approve", server_extra: "allow_reassign = true\n".into(), ..Options::default() });
    assert_eq!(w.enroll(&["--logon", "cmartin", "--yes"]).status.code(), Some(4));
    w.admin_ok(&["approve", "localhost"]);
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let before = w.server_files();
    let hosts = conf_bytes(&w, "hosts");

    let out = w.enroll(&["--logon", "jdupont", "--yes", "--rekey", "--reassign"]);
    assert_eq!(out.status.code(), Some(4), "another logon waits: {}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_str(&w.admin_ok(&["list", "--json"])).unwrap();
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["logon"].as_str().unwrap().into(), e["state"].as_str().unwrap().into()))
        .collect();
    assert!(states.contains(&("cmartin".into(), "enrolled".into())), "the live entry stays: {states:?}");
    assert!(states.contains(&("jdupont".into(), "pending".into())), "{states:?}");
    assert_eq!(conf_bytes(&w, "hosts"), hosts);
    assert_eq!(changed_outside(&w, &before), NONE, "only the registry changed");
    // The live host can still be revoked as the toolkit's.
    assert!(w.admin_ok(&["show", "localhost"]).contains("\"enrolled\""));
    // Once approved, the re-assignment goes through.
    w.admin_ok(&["approve", "localhost"]);
    w.enroll_ok(&["--logon", "jdupont", "--yes", "--rekey", "--reassign"]);
    assert!(fs::read_to_string(w.conf_dir.join("hosts")).unwrap().contains("localhost\t0\tjdupont"));
}

#[test]
fn a_directory_failure_is_the_servers_and_stays_in_its_log() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ldap://127.0.0.1:{port}");
    let w = World::new(Options {
        logon_check: "ldap",
        server_extra: format!("[ldap]\nurl = {url:?}\nbase = \"dc=example,dc=org\"\ntimeout = 2\n"),
        ..Options::default()
    });
    let before = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "a server-side failure: {}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("could not complete the enrollment"), "{said}");
    assert!(!said.contains("refused"), "not a refusal: {said}");
    assert!(!said.contains(&url) && !said.contains("ldap"), "no server detail for the client: {said}");
    let audit = fs::read_to_string(&w.audit_log).unwrap();
    assert!(audit.contains(&url) && audit.contains("logon directory could not be asked"), "{audit}");
    assert_eq!(changed(&before, &w.server_files()), NONE, "nothing written");

    // As sshd runs it: exit 2, one short line, nothing on stderr.
    let out = feed(&mut as_sshd_runs(&w.bins.forced_command, &w.server_toml, "linux:cmartin", "127.0.0.1"), b"", None)
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout).lines().count(), 1, "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("ldap"), "{}", text(&out.stdout));
    assert!(out.stderr.is_empty());
}

#[test]
fn any_hand_made_file_of_a_host_keeps_the_toolkit_off_it() {
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";
    let hello = format!("protocol: 2\nhostname: localhost\nhostkey: {KEY}\n");
    // One row per thing an admin may have written for `localhost` by hand.
    let rows: &[(&str, &str, &str)] = &[
        ("backuppc/hosts", "localhost 0 cmartin\n", "a hosts line of the same logon"),
        ("backuppc/pc/localhost.pl", "$Conf{XferMethod} = 'tar';\n", "a per-host config alone"),
        ("ssh/known_hosts", "localhost ssh-ed25519 AAAAadmin\n", "known_hosts lines alone"),
    ];
    for (file, contents, why) in rows {
        let f = ForcedBench::new();
        let path = f.dir.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut written = if file.ends_with("hosts") { STOCK_HOSTS.to_string() } else { String::new() };
        written.push_str(contents);
        fs::write(&path, &written).unwrap();
        let before = f.files();
        let out = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
        assert_eq!(out.status.code(), Some(1), "{why}: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains("set up in BackupPC by hand"), "{why}: {}", text(&out.stdout));
        assert_eq!(changed(&before, &f.files()), NONE, "{why}: nothing changed");
        assert_eq!(fs::read_to_string(&path).unwrap(), written, "{why}: byte for byte");
        // Handed over, the same request enrolls.
        let admin = std::process::Command::new(&f.bins.forced_command)
            .arg("--config")
            .arg(&f.config)
            .args(["adopt", "localhost"])
            .output()
            .unwrap();
        assert!(admin.status.success(), "{why}: {}", text(&admin.stderr));
        let out = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
        assert_eq!(out.status.code(), Some(0), "{why}: {}", text(&out.stdout));
    }
}

#[test]
fn a_status_query_tells_another_machine_nothing_and_changes_nothing() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let before = w.server_files();
    // The same address and register key, other host keys: the query is
    // answered "another machine", without the logon or the key's fate.
    let other = w.dir.join("other_host_key");
    keygen(&other, "attacker");
    set_key(&w.client_toml, "host_keys", &format!("[{:?}]", other.with_extension("pub")));
    let out = w.enroll(&["--check", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["server_status"]["state"], "other-machine", "{v}");
    assert_eq!(v["server_status"]["key"], "unknown", "{v}");
    assert!(text(&out.stderr).contains("other SSH host keys"), "{}", text(&out.stderr));
    assert_eq!(w.server_files(), before, "a status query writes nothing on the server");
    let audit = fs::read_to_string(&w.audit_log).unwrap();
    assert!(audit.contains("\"status\"") && audit.contains("other-machine"), "audited: {audit}");
}

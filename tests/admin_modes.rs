//! Enrollment modes (token, approve) and the admin subcommands of
//! forced-command (list, show, revoke, clear, pending, approve, deny,
//! token, check-config, install-register-key), through the real sshd, plus
//! the notification webhook.

mod common;

use common::chmod;
use common::world::{Options, World};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn token_mode() {
    let w = World::new(Options { mode: "token", ..Options::default() });
    let before = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("enrolls only with a token"), "{}", text(&out.stderr));
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--token", "wrongtoken"]);
    assert!(text(&out.stderr).contains("token is not valid"), "{}", text(&out.stderr));
    assert_eq!(w.server_files(), before, "refusals change nothing");

    let token = w.admin_ok(&["token", "create", "--uses", "1", "--expires", "1h"]).trim().to_string();
    assert_eq!(token.len(), 32);
    let stored = fs::read_to_string(w.registry_dir.join("tokens.json")).unwrap();
    assert!(!stored.contains(&token), "tokens are stored hashed");
    w.enroll_ok(&["--logon", "cmartin", "--yes", "--token", &token]);
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey", "--token", &token]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("used up"), "single use: {}", text(&out.stderr));

    let list: serde_json::Value = serde_json::from_str(&w.admin_ok(&["token", "list", "--json"])).unwrap();
    assert_eq!(list[0]["uses_left"], 0);

    let short = w.admin_ok(&["token", "create", "--expires", "1s"]).trim().to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey", "--token", &short]);
    assert!(text(&out.stderr).contains("expired"), "{}", text(&out.stderr));

    let many = w.admin_ok(&["token", "create", "--logon", "cmartin"]).trim().to_string();
    let list: serde_json::Value = serde_json::from_str(&w.admin_ok(&["token", "list", "--json"])).unwrap();
    let id = list[2]["id"].as_str().unwrap().to_string();
    w.enroll_ok(&["--logon", "cmartin", "--yes", "--rekey", "--token", &many]);
    w.admin_ok(&["token", "revoke", &id]);
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey", "--token", &many]);
    assert!(text(&out.stderr).contains("revoked"), "{}", text(&out.stderr));
}

#[test]
fn approve_mode_and_deny() {
    let w = World::new(Options { mode: "approve", ..Options::default() });
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("waits for the backup administrator's approval"), "{}", text(&out.stderr));
    assert!(w.admin_ok(&["pending"]).contains("localhost"));
    assert!(!fs::read_to_string(w.conf_dir.join("hosts")).unwrap().contains("cmartin"), "nothing registered yet");
    assert!(!w.client_home().join(".ssh/authorized_keys").exists(), "nothing installed yet");

    w.admin_ok(&["approve", "localhost"]);
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert!(fs::read_to_string(w.conf_dir.join("hosts")).unwrap().contains("localhost\t0\tcmartin"));

    // Revoked, cleared, asks again, denied.
    w.admin_ok(&["revoke", "localhost"]);
    w.admin_ok(&["clear", "localhost"]);
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    w.admin_ok(&["deny", "localhost"]);
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("denied"), "{}", text(&out.stderr));
    let out = w.admin(&["approve", "localhost"]);
    assert!(!out.status.success(), "a denied host is not pending");
}

#[test]
fn revoke_list_show_and_clear() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let backup = w.pull("localhost", &format!("{}/", w.data.display()), &w.dir.join("b1"), &[]);
    assert!(backup.status.success(), "{}", text(&backup.stderr));

    let list: serde_json::Value = serde_json::from_str(&w.admin_ok(&["list", "--json"])).unwrap();
    let entry = &list[0];
    for key in ["host", "logon", "os", "address", "key_fingerprint", "host_key_fingerprints", "enrolled_at", "state"] {
        assert!(entry.get(key).is_some(), "list --json has {key}: {entry}");
    }
    assert_eq!(entry["host"], "localhost");
    assert_eq!(entry["state"], "enrolled");
    assert!(entry["key_fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    assert!(w.admin_ok(&["list"]).contains("localhost"));
    assert!(w.admin_ok(&["show", "localhost"]).contains("present"));

    let ssh_command = w.ssh_command("localhost");
    let out = w.admin_ok(&["revoke", "localhost"]);
    assert!(out.contains("revoked localhost"), "{out}");
    let key = w.server.home.join(".ssh/backuppc-enroll/localhost.key");
    assert!(!key.exists(), "the host's private key is gone");
    assert!(!w.conf_dir.join("pc/localhost.pl").exists());
    assert!(!fs::read_to_string(w.conf_dir.join("hosts")).unwrap().contains("localhost\t"));
    assert!(!fs::read_to_string(w.server.home.join(".ssh/known_hosts")).unwrap_or_default().contains("localhost "));
    // The old key stops working at once: the server no longer has it.
    let mut words = ssh_command.split(' ');
    let out = w.server.command(words.next().unwrap()).args(words).arg("127.0.0.1").arg("true").output().unwrap();
    assert!(!out.status.success(), "ssh with the revoked key fails");
    let list: serde_json::Value = serde_json::from_str(&w.admin_ok(&["list", "--json"])).unwrap();
    assert_eq!(list[0]["state"], "revoked");

    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("revoked by the backup administrator"), "{}", text(&out.stderr));
    w.admin_ok(&["clear", "localhost"]);
    w.enroll_ok(&["--logon", "cmartin", "--yes", "--rekey"]);
    assert!(key.exists());
    let out = w.admin(&["revoke", "nosuchhost"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no host nosuchhost"));
}

#[test]
fn check_config_and_install_register_key() {
    let w = World::new(Options { logon_check: "any", ..Options::default() });
    let pubkey = w.register_key.with_extension("pub");
    let out = w.admin(&["check-config", "--register-key", pubkey.to_str().unwrap()]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    assert!(report.contains("warning: logon_check = \"any\""), "{report}");
    // The machine's own sshd_config (Debian's default MaxStartups 10:30:100,
    // unless changed) is checked too.
    assert!(report.contains("sshd MaxStartups"), "{report}");
    let key = fs::read_to_string(&pubkey).unwrap();
    let key_bare: Vec<&str> = key.split(' ').take(2).collect();
    let expected = format!(
        "restrict,command=\"{} --config {}\" {} backuppc-enroll-register-key",
        w.bins.forced_command.display(),
        w.server_toml.display(),
        key_bare.join(" ")
    );
    assert!(report.contains(&expected), "{report}");

    let target = w.dir.join("ak-test");
    fs::write(&target, "ssh-ed25519 AAAAother admin\n").unwrap();
    let out =
        w.admin_ok(&["install-register-key", pubkey.to_str().unwrap(), "--authorized-keys", target.to_str().unwrap()]);
    assert!(out.contains("installed"));
    let once = fs::read_to_string(&target).unwrap();
    assert_eq!(once, format!("ssh-ed25519 AAAAother admin\n{expected}\n"));
    let out =
        w.admin_ok(&["install-register-key", pubkey.to_str().unwrap(), "--authorized-keys", target.to_str().unwrap()]);
    assert!(out.contains("already"), "idempotent: {out}");
    assert_eq!(fs::read_to_string(&target).unwrap(), once);

    assert!(report.contains("is the shipped example"), "the example url is flagged: {report}");

    // A config the BackupPC account cannot read breaks every enrollment.
    chmod(&w.server_toml, 0o600);
    let out = w.admin(&["check-config"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("is not readable by"), "{}", text(&out.stdout));
    chmod(&w.server_toml, 0o644);

    // A broken setup is reported with exit status 1.
    let cfg =
        fs::read_to_string(&w.server_toml).unwrap().replace(w.conf_dir.to_str().unwrap(), "/nonexistent/backuppc");
    fs::write(&w.server_toml, cfg).unwrap();
    let out = w.admin(&["check-config"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("error: cannot read /nonexistent/backuppc/hosts"), "{}", text(&out.stdout));
}

/// A one-shot HTTP server that records what it was sent.
fn webhook_listener() -> (String, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/abc", l.local_addr().unwrap().port());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let _ = tx.send(format!("{head}\n{}", String::from_utf8_lossy(&body)));
        }
    });
    (url, rx)
}

#[test]
fn webhook_is_told_and_never_blocks() {
    let (url, rx) = webhook_listener();
    let w = World::new(Options { server_extra: format!("notify_webhook = {url:?}\n"), ..Options::default() });
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("the webhook was called");
    assert!(got.starts_with("POST /hooks/abc"), "{got}");
    let body: serde_json::Value = serde_json::from_str(got.split("\n\n").last().unwrap()).unwrap();
    assert!(body["text"].as_str().unwrap().contains("enrolled localhost for linux:cmartin"), "{body}");
    let out = w.enroll(&["--logon", "nosuchuser", "--yes", "--reassign"]);
    assert_eq!(out.status.code(), Some(3));
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("refusals are told too");
    assert!(got.contains("refused"), "{got}");

    // A webhook that accepts and never answers does not hold the client.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    let cfg = fs::read_to_string(&w.server_toml).unwrap().replace(&url, &dead);
    fs::write(&w.server_toml, cfg).unwrap();
    let start = Instant::now();
    w.enroll_ok(&["--logon", "cmartin", "--yes", "--rekey"]);
    assert!(start.elapsed() < Duration::from_secs(2), "enrollment took {:?}", start.elapsed());
}

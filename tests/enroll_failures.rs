//! `enroll` when things go wrong: no server, a server that never answers,
//! a hostile answer, a missing program. Each fails with a clear message and
//! the documented exit status, and installs nothing.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn set(w: &World, from: &str, to: &str) {
    let c = fs::read_to_string(&w.client_toml).unwrap();
    assert!(c.contains(from), "{from} not in client config");
    fs::write(&w.client_toml, c.replace(from, to)).unwrap();
}

fn assert_nothing_installed(w: &World) {
    assert!(nix::unistd::User::from_name(&w.backup_user).unwrap().is_none(), "no user created");
    assert!(!w.sudoers_file().exists(), "no sudoers drop-in");
    assert!(!w.state_file.exists(), "no state");
}

#[test]
fn unreachable_server() {
    let w = World::new(Options::default());
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    set(&w, &format!("port = {}\n", w.sshd.port), &format!("port = {closed}\n"));
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the backup server 127.0.0.1 port"), "{}", text(&out.stderr));
    assert_nothing_installed(&w);
}

#[test]
fn server_that_never_answers() {
    let w = World::new(Options::default());
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accept and hold connections without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().take(4) {
            held.push(c);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    set(&w, &format!("port = {}\n", w.sshd.port), &format!("port = {port}\n"));
    set(&w, "timeout = 20", "timeout = 2");
    let start = Instant::now();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("SSH exchange with the backup server failed"), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(15), "bounded by the timeout, took {took:?}");
    assert_nothing_installed(&w);
}

#[test]
fn hostile_answers_install_nothing() {
    let w = World::new(Options::default());
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";
    let rows: &[(String, &str)] = &[
        (format!("success\nkey: command=\"/bin/sh\" {key}\nurl: https://b/\n"), "key with an options prefix"),
        (format!("success\nkey: {key}\nkey: {key}\nurl: https://b/\n"), "two keys"),
        (
            format!("success\nkey: {key}\nurl: https://b/\nfrom: 1.2.3.4\",command=\"/bin/sh\n"),
            "from= that escapes its quotes",
        ),
        (format!("success\nkey: {key}\nurl: file:///etc/passwd\n"), "url not http(s)"),
        (format!("success\nkey: {key}\nurl: https://b/\nshare: /home/../root\n"), "share with dot-dot"),
        (format!("success\nkey: {key}\nurl: https://b/\nshare: relative\n"), "relative share"),
        ("success\nurl: https://b/\n".to_string(), "no key"),
    ];
    let script = w.dir.join("bin/evil-server");
    let ak = w.server.home.join(".ssh/authorized_keys");
    let register_pub = fs::read_to_string(w.register_key.with_extension("pub")).unwrap();
    for (answer, why) in rows {
        write_script(&script, &format!("#!/bin/sh\ncat >/dev/null\nprintf '%s' '{}'\n", answer.replace('\'', "'\\''")));
        fs::write(&ak, format!("restrict,command=\"{}\" {register_pub}", script.display())).unwrap();
        let out = w.enroll(&["--logon", "cmartin", "--yes"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{why}: {err}");
        assert!(err.contains("the server's answer"), "{why}: says why: {err}");
        assert_nothing_installed(&w);
    }
}

#[test]
fn missing_programs_are_named_with_the_fix() {
    let w = World::new(Options::default());
    set(&w, "timeout = 20", "timeout = 20\nrsync = \"/nonexistent/rsync\"");
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/rsync is missing; install rsync: apt-get install rsync"),
        "{}",
        text(&out.stderr)
    );
    assert_nothing_installed(&w);
}

#[test]
fn dry_run_changes_nothing() {
    let w = World::new(Options::default());
    let server = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("enroll would"), "{}", text(&out.stdout));
    assert_eq!(w.server_files(), server, "no server contacted");
    assert_nothing_installed(&w);
}

#[test]
fn json_output() {
    let w = World::new(Options::default());
    let out = w.enroll_ok(&["--logon", "cmartin", "--yes", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["host"], "localhost");
    assert_eq!(v["logon"], "cmartin");
    assert_eq!(v["url"], "https://backup.example.org/backuppc/index.cgi?host=localhost");
    assert!(v["key_fingerprint"].as_str().unwrap().starts_with("SHA256:"));
}

/// A proxy in front of the test sshd that drops the first connections the
/// way sshd does past MaxStartups (closed before the key exchange).
fn dropping_proxy(target: u16, drops: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(client) = client else { continue };
            if counter.fetch_add(1, Ordering::SeqCst) < drops {
                drop(client);
                continue;
            }
            let server = std::net::TcpStream::connect(("127.0.0.1", target)).unwrap();
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c1, mut s1) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut s1);
                let _ = s1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, seen)
}

#[test]
fn dropped_key_exchanges_are_retried() {
    let w = World::new(Options::default());
    let (port, seen) = dropping_proxy(w.sshd.port, 3);
    set(&w, &format!("port = {}\n", w.sshd.port), &format!("port = {port}\n"));
    fs::write(w.etc.join("server_host_keys"), format!("[127.0.0.1]:{port} {}\n", w.sshd.host_pub)).unwrap();
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 4, "three drops, then the retry that worked");
}

#[test]
fn enroll_killed_at_any_step_then_rerun_ends_enrolled() {
    let w = World::new(Options::default());
    // Spread kills over the whole run (an enrollment takes a few hundred ms).
    for delay_ms in [0u64, 20, 60, 120, 180, 250, 350, 500] {
        let mut child = std::process::Command::new(&w.bins.enroll)
            .arg("--config")
            .arg(&w.client_toml)
            .args(["--logon", "cmartin", "--yes"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let ak = fs::read_to_string(w.client_home().join(".ssh/authorized_keys")).unwrap();
    assert_eq!(ak.lines().count(), 1, "one key line: {ak}");
    let drop_ins: Vec<_> = fs::read_dir("/etc/sudoers.d")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(&w.backup_user))
        .collect();
    assert_eq!(drop_ins, [format!("backuppc-enroll-{}", w.backup_user)], "one sudoers drop-in, no staging file");
    // And it works: the installed key matches the server's key.
    let out = w.pull("localhost", &format!("{}/", w.data.display()), &w.dir.join("after-kills"), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

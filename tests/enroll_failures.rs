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
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("connecting to 127.0.0.1 port {port} as")) && err.contains("(timeout 2 s)"),
        "says it waits: {err}"
    );
    assert!(
        err.contains(&format!(
            "the backup server 127.0.0.1 port {port} accepted the connection but did not answer within 2 s: check"
        )),
        "{err}"
    );
    assert!(!err.contains("Session(-9)"), "worded for a person: {err}");
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

/// Put a script behind the register key that reads the hello block and
/// answers `answer` with exit status `status`, as a hostile server would.
fn hostile_server(w: &World, answer: &str, status: i32) {
    let script = w.dir.join("bin/evil-server");
    let ak = w.server.home.join(".ssh/authorized_keys");
    let register_pub = fs::read_to_string(w.register_key.with_extension("pub")).unwrap();
    write_script(
        &script,
        &format!("#!/bin/sh\ncat >/dev/null\nprintf '%s' '{}'\nexit {status}\n", answer.replace('\'', "'\\''")),
    );
    fs::write(&ak, format!("restrict,command=\"{}\" {register_pub}", script.display())).unwrap();
}

const SOME_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";

#[test]
fn shares_that_are_the_whole_disk_or_the_kernel_are_refused() {
    let w = World::new(Options::default());
    let to_root = w.dir.join("all-of-it");
    std::os::unix::fs::symlink("/", &to_root).unwrap();
    let to_sys = w.dir.join("kernel");
    std::os::unix::fs::symlink("/sys/kernel", &to_sys).unwrap();
    let rows: Vec<(String, &str)> = vec![
        ("/proc/self/root".into(), "resolves to / on this machine"),
        ("/proc/thread-self/root".into(), "resolves to / on this machine"),
        // Unreadable in some containers: refused for being under /proc then.
        ("/proc/1/root".into(), "/proc"),
        ("/proc/self/root/etc".into(), "under /proc"),
        (to_root.display().to_string(), "resolves to / on this machine"),
        (to_sys.display().to_string(), "under /sys"),
        ("/dev".into(), "under /dev"),
        ("/".into(), "the whole disk"),
        ("//".into(), "not in normal form"),
        ("/./".into(), "not in normal form"),
    ];
    for (share, why) in &rows {
        let answer = format!(
            "success\nkey: {SOME_KEY}\nurl: https://b/\nhost: localhost\nshare: {}\nshare: {share}\n",
            w.data.display()
        );
        hostile_server(&w, &answer, 0);
        let out = w.enroll(&["--logon", "cmartin", "--yes"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{share}: {err}");
        assert!(err.contains("the server's answer"), "{share}: {err}");
        assert!(err.contains(why), "{share}: says why ({why}): {err}");
        assert_nothing_installed(&w);
    }
}

#[test]
fn keys_already_in_use_are_not_installed_as_the_per_host_key() {
    let w = World::new(Options::default());
    let register_pub = fs::read_to_string(w.register_key.with_extension("pub")).unwrap();
    let register_bare: Vec<&str> = register_pub.split(' ').take(2).collect();
    let host_bare: Vec<&str> = w.sshd.host_pub.split(' ').take(2).collect();
    // The derivation is from the private key file, not its .pub beside it.
    fs::remove_file(w.register_key.with_extension("pub")).unwrap();
    let rows = [
        (register_bare.join(" "), "the register key itself"),
        (format!("{} with another comment", register_bare.join(" ")), "the register key itself"),
        (host_bare.join(" "), "this machine's own host key"),
    ];
    let answer = |key: &str| format!("success\nkey: {key}\nurl: https://b/\nhost: localhost\n");
    let ak = w.server.home.join(".ssh/authorized_keys");
    for (key, why) in &rows {
        let script = w.dir.join("bin/evil-server");
        write_script(&script, &format!("#!/bin/sh\ncat >/dev/null\nprintf '%s' '{}'\n", answer(key)));
        fs::write(&ak, format!("restrict,command=\"{}\" {register_pub}", script.display())).unwrap();
        let out = w.enroll(&["--logon", "cmartin", "--yes"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(err.contains("forced-command revoke localhost"), "says what the server still has: {err}");
        assert_nothing_installed(&w);
    }

    // A key the backup user already has for something else.
    let ssh_dir = w.client_home().join(".ssh");
    fs::create_dir_all(&ssh_dir).unwrap();
    let admin_line = format!("no-pty {SOME_KEY} admin@elsewhere\n");
    fs::write(ssh_dir.join("authorized_keys"), &admin_line).unwrap();
    let script = w.dir.join("bin/evil-server");
    write_script(&script, &format!("#!/bin/sh\ncat >/dev/null\nprintf '%s' '{}'\n", answer(SOME_KEY)));
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("already has in"), "{err}");
    assert_eq!(fs::read_to_string(ssh_dir.join("authorized_keys")).unwrap(), admin_line, "left as it was");
    assert!(!w.state_file.exists());
}

#[test]
fn bidi_and_invisible_characters_from_the_server_are_escaped() {
    let w = World::new(Options::default());
    let message = "your logon is \u{202e}nimda\u{202c} ok\u{200b}\u{200f}\u{2066}x\u{2069}\u{feff}\u{1b}[31m red\u{7}\nask j\u{e9}r\u{f4}me\n";
    hostile_server(&w, message, 1);
    for json in [false, true] {
        let mut args = vec!["--logon", "cmartin", "--yes"];
        if json {
            args.push("--json");
        }
        let out = w.enroll(&args);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        for (stream, shown) in [("stderr", text(&out.stderr)), ("stdout", text(&out.stdout))] {
            for c in
                ['\u{202e}', '\u{202c}', '\u{200b}', '\u{200f}', '\u{2066}', '\u{2069}', '\u{feff}', '\u{1b}', '\u{7}']
            {
                assert!(!shown.contains(c), "{stream} (json {json}) carries U+{:04X}: {shown:?}", c as u32);
            }
        }
        let err = text(&out.stderr);
        assert!(err.contains("\\u{202e}nimda\\u{202c}"), "escaped, visibly: {err}");
        assert!(err.contains("ask j\u{e9}r\u{f4}me"), "letters kept readable: {err}");
        if json {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
            assert_eq!(v["exit_code"], 3);
            assert!(v["error"].as_str().unwrap().contains("\\u{202e}"), "{v}");
        }
    }
}

#[test]
fn from_that_lets_everyone_in_is_no_restriction() {
    let w = World::new(Options::default());
    for from in ["*", "*,*", "*.*.*.*", "0.0.0.0/0"] {
        let answer = format!(
            "success\nkey: {SOME_KEY}\nurl: https://b/?host=localhost\nhost: localhost\nfrom: {from}\nshare: {}\n",
            w.data.display()
        );
        hostile_server(&w, &answer, 0);
        let out = w.enroll_ok(&["--logon", "cmartin", "--yes", "--rekey"]);
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("`from: {from}` lets every address in")), "{from}: said so: {stdout}");
        let ak = fs::read_to_string(w.client_home().join(".ssh/authorized_keys")).unwrap();
        assert!(ak.starts_with("restrict,command=\""), "{from}: no from= at all: {ak}");
        let state: serde_json::Value = serde_json::from_slice(&fs::read(&w.state_file).unwrap()).unwrap();
        assert!(state["from"].is_null(), "{from}: recorded as absent: {state}");
    }
    // A real restriction is kept.
    let answer = format!("success\nkey: {SOME_KEY}\nurl: https://b/\nhost: localhost\nfrom: 127.0.0.1\n");
    hostile_server(&w, &answer, 0);
    let out = w.enroll_ok(&["--logon", "cmartin", "--yes", "--rekey"]);
    assert!(!text(&out.stdout).contains("lets every address in"));
    let ak = fs::read_to_string(w.client_home().join(".ssh/authorized_keys")).unwrap();
    assert!(ak.starts_with("restrict,from=\"127.0.0.1\",command=\""), "{ak}");
}

#[test]
fn json_means_json_on_stdout_always() {
    let w = World::new(Options::default());
    let out = w.enroll(&["--logon", "cmartin", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dry run: stdout is JSON");
    assert_eq!(v["dry_run"], true);
    assert!(v["plan"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().contains("enroll linux:cmartin")), "{v}");

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    set(&w, &format!("port = {}\n", w.sshd.port), &format!("port = {closed}\n"));
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("error: stdout is JSON");
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].as_str().unwrap().contains("cannot reach the backup server"), "{v}");

    let out = w.enroll(&["--logon", "J\u{e9}r\u{f4}me", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bad logon: stdout is JSON");
    assert_eq!(v["exit_code"], 1);

    let out = w.enroll(&["--no-such-flag", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bad command line: stdout is JSON");
    assert!(v["error"].as_str().unwrap().contains("--no-such-flag"), "{v}");
}

#[test]
fn logons_are_checked_here_with_a_persons_message() {
    let w = World::new(Options::default());
    let before = w.server_files();
    let long = "a".repeat(200);
    let rows: &[(&str, &str)] = &[
        (&long, "is 200 characters long; a logon has at most 32"),
        ("j\u{e9}r\u{f4}me", "logon \"j\u{e9}r\u{f4}me\" has the characters \"\u{e9}\", \"\u{f4}\""),
        ("JDupont", "logons are lower-case"),
        ("9lives", "must start with a letter or '_'"),
    ];
    for (logon, want) in rows {
        let out = w.enroll(&["--logon", logon, "--yes"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{logon}: {err}");
        assert!(!err.contains("expected OS:logon") && !err.contains("\\\\u"), "{logon}: speaks to a person: {err}");
    }
    assert_eq!(w.server_files(), before, "the server was not asked");
    assert_nothing_installed(&w);
}

#[test]
fn missing_client_config_is_one_message_with_the_fix() {
    let w = World::new(Options::default());
    let missing = w.dir.join("no-such-client.toml");
    let out = std::process::Command::new(&w.bins.enroll).arg("--config").arg(&missing).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one message: {err}");
    assert!(err.contains(&missing.display().to_string()) && err.contains("tar -xpzf site.tar.gz -C /"), "{err}");
    assert!(err.contains("--config"), "{err}");
    assert_eq!(err.matches("No such file").count(), 0, "{err}");
}

#[test]
fn server_that_takes_the_request_and_never_finishes() {
    let w = World::new(Options::default());
    let script = w.dir.join("bin/stuck-server");
    write_script(&script, "#!/bin/sh\ncat >/dev/null\nexec sleep 60\n");
    let ak = w.server.home.join(".ssh/authorized_keys");
    let register_pub = fs::read_to_string(w.register_key.with_extension("pub")).unwrap();
    fs::write(&ak, format!("restrict,command=\"{}\" {register_pub}", script.display())).unwrap();
    set(&w, "timeout = 20", "timeout = 2");
    let start = Instant::now();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("took the request but did not finish the enrollment within 2 s"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
    assert_nothing_installed(&w);
}

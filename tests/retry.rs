//! An enrollment cut off between the server's writes and the
//! workstation's: the server answered, but the answer never arrived in
//! time (a server slower than the client's timeout). Backups keep working
//! with the key the workstation has, and a plain re-run finishes the job;
//! a single-use token survives the retry, and only for the same request.

mod common;

use common::world::{Options, World};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The register key's forced command wrapped in a script that, while
/// `hold` exists, keeps the session open after forced-command answered:
/// the client sees no end of the answer before its timeout, as with a
/// slow server or a connection lost on the way back.
struct SlowServer {
    hold: PathBuf,
}

impl SlowServer {
    fn install(w: &World) -> SlowServer {
        let hold = w.server.home.join("hold");
        let script = w.server.home.join("slow-forced-command");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\n{} --config {}\nrc=$?\nwhile [ -e {} ]; do sleep 0.1; done\nexit $rc\n",
                w.bins.forced_command.display(),
                w.server_toml.display(),
                hold.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let ak = w.server.home.join(".ssh/authorized_keys");
        let line = fs::read_to_string(&ak).unwrap();
        let forced = format!("command=\"{} --config {}\"", w.bins.forced_command.display(), w.server_toml.display());
        assert!(line.contains(&forced), "{line}");
        fs::write(&ak, line.replace(&forced, &format!("command=\"{}\"", script.display()))).unwrap();
        // The client gives up after 3 s.
        let toml = fs::read_to_string(&w.client_toml).unwrap();
        fs::write(&w.client_toml, toml.replace("timeout = 20", "timeout = 3")).unwrap();
        SlowServer { hold }
    }

    /// Run enroll while the server holds the session past the client's
    /// timeout; the session is let go afterwards.
    fn enroll_cut_off(&self, w: &World, args: &[&str]) -> std::process::Output {
        fs::write(&self.hold, "").unwrap();
        let out = w.enroll(args);
        let _ = fs::remove_file(&self.hold);
        // The held session ends within a tenth of a second.
        std::thread::sleep(Duration::from_millis(300));
        out
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.hold);
    }
}

fn key_lines(w: &World) -> Vec<String> {
    let ak = fs::read_to_string(w.client_home().join(".ssh/authorized_keys")).unwrap_or_default();
    ak.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

fn state(w: &World) -> serde_json::Value {
    serde_json::from_slice(&fs::read(&w.state_file).unwrap()).unwrap()
}

fn backup_works(w: &World, dest: &str) {
    let dest = w.dir.join(dest);
    let out = w.pull("localhost", &format!("{}/", w.data.display()), &dest, &[]);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    assert_eq!(fs::read_to_string(dest.join("plain.txt")).unwrap(), "plain\n");
}

#[test]
fn interrupted_rekey_keeps_backups_working_and_a_rerun_finishes_it() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let keys = w.server.home.join(".ssh/backuppc-enroll");
    let (key, prev) = (keys.join("localhost.key"), keys.join("localhost.key.prev"));
    let old_private = fs::read(&key).unwrap();
    let old_line = key_lines(&w);
    assert_eq!(old_line.len(), 1);
    backup_works(&w, "before");

    let slow = SlowServer::install(&w);
    let started = Instant::now();
    let out = slow.enroll_cut_off(&w, &["--logon", "cmartin", "--yes", "--rekey"]);
    assert_eq!(out.status.code(), Some(2), "the client timed out: {}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(15), "cut off by the client's timeout");
    // The server has the new key, the workstation the old one.
    let new_private = fs::read(&key).unwrap();
    assert_ne!(new_private, old_private, "the server made a new key");
    assert_eq!(fs::read(&prev).unwrap(), old_private, "the old key is kept beside it");
    assert_eq!(key_lines(&w), old_line, "the workstation still has the old key line");
    assert!(state(&w)["rekey_from"].is_string(), "the re-enrollment is recorded as under way");
    let ssh = w.ssh_command("localhost");
    assert!(ssh.contains(&format!("-i {} -i {}", key.display(), prev.display())), "{ssh}");
    backup_works(&w, "during");
    let out = w.enroll(&["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("was cut off"), "{}", text(&out.stdout));

    // A plain re-run (no --rekey) finishes the job, with the same new key.
    let out = w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert!(text(&out.stderr).contains("interrupted"), "{}", text(&out.stderr));
    assert_eq!(fs::read(&key).unwrap(), new_private, "the lost answer was answered again, no third key");
    assert!(!prev.exists(), "the old key is gone on the server");
    let ssh = w.ssh_command("localhost");
    assert!(!ssh.contains(".prev") && ssh.contains(&format!("-i {} ", key.display())), "{ssh}");
    let lines = key_lines(&w);
    assert_eq!(lines.len(), 1, "exactly one key line: {lines:?}");
    assert_ne!(lines, old_line, "the new key is installed");
    let st = state(&w);
    assert!(st.get("rekey_from").is_none(), "done: {st}");
    let public = fs::read_to_string(keys.join("localhost.pub")).unwrap();
    assert!(lines[0].contains(public.split(' ').nth(1).unwrap()), "the line holds the server's new key");
    backup_works(&w, "after");

    // The old private key no longer gets in, even offered by hand.
    let old_copy = w.server.home.join("old.key");
    fs::write(&old_copy, &old_private).unwrap();
    fs::set_permissions(&old_copy, fs::Permissions::from_mode(0o600)).unwrap();
    w.server.chown(&old_copy);
    let ssh_old = ssh.replace(&key.display().to_string(), &old_copy.display().to_string());
    let out = w
        .server
        .command("/usr/bin/ssh")
        .args(ssh_old.split(' ').skip(1))
        .arg("127.0.0.1")
        .arg("true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the old key still logs in: {}", text(&out.stderr));

    // Nothing more to do: a plain re-run does not ask the server.
    let out = w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert!(text(&out.stdout).contains("already enrolled"), "{}", text(&out.stdout));
    assert_eq!(fs::read(&key).unwrap(), new_private);

    // revoke removes every key of the host, the previous one too.
    let out = slow.enroll_cut_off(&w, &["--logon", "cmartin", "--yes", "--rekey"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(prev.exists());
    w.admin_ok(&["revoke", "localhost"]);
    assert!(!prev.exists() && !key.exists(), "revoke leaves no key of the host");
}

#[test]
fn interrupted_token_enrollment_reruns_with_the_same_single_use_token() {
    let w = World::new(Options { mode: "token", ..Options::default() });
    for (args, why) in [(&["--uses", "0"][..], "never usable"), (&["--expires", "0s"][..], "expired at once")] {
        let out = w.admin(&[&["token", "create"][..], args].concat());
        assert_eq!(out.status.code(), Some(1), "{why}: {}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("never be used") || text(&out.stderr).contains("expired at once"),
            "{why}: {}",
            text(&out.stderr)
        );
    }
    let token = w.admin_ok(&["token", "create", "--uses", "1", "--expires", "1h"]).trim().to_string();
    let slow = SlowServer::install(&w);
    let out = slow.enroll_cut_off(&w, &["--logon", "cmartin", "--yes", "--token", &token]);
    assert_eq!(out.status.code(), Some(2), "the client timed out: {}", text(&out.stderr));
    assert!(key_lines(&w).is_empty(), "nothing installed on the workstation");
    let list: serde_json::Value = serde_json::from_str(&w.admin_ok(&["token", "list", "--json"])).unwrap();
    assert_eq!(list[0]["uses_left"], 0, "the server counted the use");

    // The same request again with the same token goes through.
    w.enroll_ok(&["--logon", "cmartin", "--yes", "--token", &token]);
    assert_eq!(key_lines(&w).len(), 1);
    backup_works(&w, "after");

    // A new key for the enrolled host is a new use: refused.
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey", "--token", &token]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("used up"), "{}", text(&out.stderr));
    assert!(state(&w).get("rekey_from").is_none(), "a refused re-enrollment is not left under way");

    // Another host (`vm` resolves to 127.0.0.1 here) with that token: refused.
    let toml = fs::read_to_string(&w.client_toml).unwrap();
    fs::write(&w.client_toml, toml.replace("hostname = \"localhost\"", "hostname = \"vm\"")).unwrap();
    let before = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey", "--token", &token]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("used up"), "{}", text(&out.stderr));
    assert_eq!(w.server_files(), before, "the refusal changed nothing");
}

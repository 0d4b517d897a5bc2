//! `enroll` as a workstation admin uses it: the question at a real
//! terminal (tmux), a machine that changes hands, a re-run after the
//! administrator revoked the host, `--check`, and `--uninstall` after an
//! interrupted first run.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `enroll` run in a tmux pane of its own tmux server (own socket), so a
/// test types at the prompt as a person would and reads the screen.
struct Terminal {
    socket: String,
}

impl Terminal {
    fn start(w: &World, args: &str) -> Terminal {
        let socket = unique("bpe-tmux");
        let command = format!(
            "env -u SUDO_USER {} --config {} {args}; echo EXIT=$?; sleep 600",
            w.bins.enroll.display(),
            w.client_toml.display()
        );
        run_ok(Command::new("tmux").args([
            "-L",
            &socket,
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "160",
            "-y",
            "50",
            &command,
        ]));
        Terminal { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-t", "t", "-S", "-200"])
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// Wait until the screen shows `what`.
    fn expect(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(what) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {what:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_line(&self, line: &str) {
        if !line.is_empty() {
            run_ok(Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "t", "-l", line]));
        }
        run_ok(Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "t", "Enter"]));
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Only this test's own tmux server, by its socket.
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

#[test]
fn the_prompt_asks_again_on_a_bad_logon_and_proposes_the_enrolled_one() {
    let w = World::new(Options::default());
    let t = Terminal::start(&w, "");
    t.expect("Logon of this machine's main user");
    t.type_line("J\u{e9}r\u{f4}me");
    let screen = t.expect("has the characters");
    assert!(screen.contains("\"J\u{e9}r\u{f4}me\""), "shown readably: {screen}");
    assert!(!screen.contains("EXIT="), "asks again instead of ending: {screen}");
    t.type_line(&"a".repeat(40));
    t.expect("is 40 characters long; a logon has at most 32");
    // dialoguer keeps the typed text after an error: clear it first.
    run_ok(Command::new("tmux").args(["-L", &t.socket, "send-keys", "-t", "t", "C-u"]));
    t.type_line("cmartin");
    let screen = t.expect("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(screen.contains("This machine is enrolled for backups"), "{screen}");
    drop(t);

    // Enrolled: the question proposes cmartin, and Enter keeps it.
    let t = Terminal::start(&w, "");
    let screen = t.expect("Logon of this machine's main user");
    t.expect("cmartin");
    assert!(!screen.contains("EXIT="), "{screen}");
    t.type_line("");
    let screen = t.expect("EXIT=");
    assert!(screen.contains("EXIT=0") && screen.contains("already enrolled as host localhost for cmartin"), "{screen}");
    drop(t);

    // Another logon is confirmed first; the default answer keeps the enrollment.
    let server = w.server_files();
    let t = Terminal::start(&w, "");
    t.expect("Logon of this machine's main user");
    run_ok(Command::new("tmux").args(["-L", &t.socket, "send-keys", "-t", "t", "C-u"]));
    t.type_line("jdupont");
    t.expect("This machine is enrolled as host localhost for cmartin. Enroll it for jdupont instead?");
    t.type_line("");
    let screen = t.expect("EXIT=");
    assert!(
        screen.contains("EXIT=1") && screen.contains("kept the enrollment of host localhost for cmartin"),
        "{screen}"
    );
    assert_eq!(w.server_files(), server, "the server was not asked");
}

#[test]
fn another_logon_needs_reassign_with_yes() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let server = w.server_files();
    // --yes on an enrolled machine keeps its logon, whoever ran sudo.
    let out = Command::new(&w.bins.enroll)
        .arg("--config")
        .arg(&w.client_toml)
        .arg("--yes")
        .env("SUDO_USER", "jdupont")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already enrolled as host localhost for cmartin"), "{}", text(&out.stderr));
    let out = w.enroll(&["--logon", "jdupont", "--yes"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("enrolled as host localhost for cmartin") && err.contains("add --reassign"), "{err}");
    assert_eq!(w.server_files(), server, "refused before asking the server");
    let out = w.enroll(&["--logon", "jdupont", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "a dry run says the same: {}", text(&out.stderr));
    // With --reassign the server is asked, and this one does not allow it.
    let out = w.enroll(&["--logon", "jdupont", "--yes", "--reassign"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already registered for another logon"), "{}", text(&out.stderr));
}

#[test]
fn rerun_and_check_ask_the_server_whether_it_still_lists_the_host() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let out = w.enroll_ok(&["--check"]);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
    assert_eq!(stdout.matches("  ok ").count(), 6, "five local rows and the server's: {stdout}");
    assert!(stdout.contains("127.0.0.1 lists this machine as host localhost, with the key installed here"), "{stdout}");
    assert!(!stdout.contains("Not checked"), "{stdout}");
    let out = w.enroll_ok(&["--check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        (v["server_status"]["state"].as_str(), v["server_status"]["key"].as_str()),
        (Some("enrolled"), Some("current"))
    );
    let out = w.enroll_ok(&["--check", "--offline"]);
    assert!(text(&out.stdout).contains("Not checked: whether 127.0.0.1 still lists this host (not asked: --offline)"));

    let out = w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("already enrolled for backups on 127.0.0.1 as localhost"), "{stdout}");
    assert!(
        stdout.contains("Checked: the backup user, the sudoers drop-in and the key line on this machine"),
        "{stdout}"
    );
    assert!(stdout.contains("and 127.0.0.1 lists this machine as host localhost"), "{stdout}");

    // Revoked by the admin: neither a re-run nor --check says "enrolled",
    // and neither changes anything here.
    w.admin_ok(&["revoke", "localhost"]);
    let before = w.client_files();
    for args in [&["--logon", "cmartin", "--yes"][..], &["--check"][..]] {
        let out = w.enroll(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("revoked host localhost"), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("forced-command clear localhost"), "{}", text(&out.stderr));
    }
    let out = w.enroll(&["--check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!((v["ok"].as_bool(), v["exit_code"].as_u64()), (Some(false), Some(3)));
    assert_eq!(v["server_status"]["state"], "revoked");
    assert_eq!(w.client_files(), before, "asking changes nothing here");
    // Forgotten: the server has nothing, the re-run says to enroll again.
    w.admin_ok(&["clear", "localhost"]);
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no enrollment for host localhost"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("enroll --rekey"), "{}", text(&out.stderr));
    assert!(w.admin_ok(&["list"]).lines().all(|l| !l.contains("localhost")), "a status query enrolls nothing");
    w.enroll_ok(&["--logon", "cmartin", "--yes", "--rekey"]);
    w.enroll_ok(&["--check"]);

    let before = w.client_files();
    fs::remove_file(w.sudoers_file()).unwrap();
    let out = w.enroll(&["--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("PROBLEM"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("run enroll as root to repair it"), "{}", text(&out.stderr));
    let out = w.enroll(&["--check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 1);
    assert!(!w.sudoers_file().exists(), "--check changes nothing");
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert_eq!(w.client_files(), before, "a re-run repairs it");
}

#[test]
fn uninstall_after_an_interrupted_first_run_deletes_the_user_it_created() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    // As if the first run had stopped after creating the user, before the
    // state was written: the re-run finds the user in place.
    fs::remove_file(&w.state_file).unwrap();
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let state: serde_json::Value = serde_json::from_slice(&fs::read(&w.state_file).unwrap()).unwrap();
    assert_eq!(state["created_user"], true, "{state}");
    // A plain uninstall keeps the user, and the record that enroll made it.
    let out = w.enroll_ok(&["--uninstall"]);
    assert!(text(&out.stdout).contains("forced-command revoke localhost"), "{}", text(&out.stdout));
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let out = w.enroll_ok(&["--uninstall", "--remove-user"]);
    let err = text(&out.stderr);
    assert!(err.contains(&format!("deleted user {} and its home", w.backup_user)), "{err}");
    assert!(!err.contains("kept user"), "{err}");
    assert!(err.contains("127.0.0.1 still lists this machine as host localhost"), "{err}");
    assert!(err.contains("`forced-command revoke localhost`"), "{err}");
    assert!(nix::unistd::User::from_name(&w.backup_user).unwrap().is_none());
    assert!(!w.state_file.with_extension("created-user.json").exists(), "the record went with the user");
}

#[test]
fn a_user_that_existed_before_is_kept() {
    let w = World::new(Options::default());
    let existing = SystemUser::create(&w.backup_user, &w.client_home());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let out = w.enroll_ok(&["--uninstall", "--remove-user"]);
    assert!(
        text(&out.stderr).contains(&format!("kept user {}: enroll did not create it", w.backup_user)),
        "{}",
        text(&out.stderr)
    );
    assert!(nix::unistd::User::from_name(&existing.name).unwrap().is_some());
}

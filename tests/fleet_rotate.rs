//! `forced-command fleet rotate-key` against a real enrolled workstation
//! (enroll, its root-owned authorized_keys, rsyncsend through sudo, a real
//! sshd on loopback): afterwards the workstation has exactly one key line
//! for the server, rsync through rsyncsend as BackupPC runs it works with
//! the new key (and a real BackupPC full backup does), the old private
//! key no longer opens a session; SIGKILLed at every step (strace's fault
//! injection) and run again, it ends there too, with a working key at
//! every moment; hostile requests over the restricted key and to the root
//! helper change nothing.

mod common;

use common::world::{Options, World};
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const HOST: &str = "localhost";

struct Rig {
    w: World,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Rig {
    fn new() -> Rig {
        let w = World::new(Options::default());
        w.enroll_ok(&["--logon", "cmartin", "--yes"]);
        // What `forced-command fleet` execs, beside it.
        install_executable(
            Path::new(env!("CARGO_BIN_EXE_forced-command-fleet")),
            &w.bins.forced_command.with_file_name("forced-command-fleet"),
        );
        Rig { w }
    }

    fn key_dir(&self) -> PathBuf {
        self.w.server.home.join(".ssh/backuppc-enroll")
    }

    fn key(&self) -> PathBuf {
        self.key_dir().join(format!("{HOST}.key"))
    }

    fn authorized_keys(&self) -> PathBuf {
        self.w.client_home().join(".ssh/authorized_keys")
    }

    fn server_lines(&self) -> Vec<String> {
        fs::read_to_string(self.authorized_keys())
            .unwrap()
            .lines()
            .filter(|l| l.ends_with(" backuppc-enroll@127.0.0.1"))
            .map(str::to_string)
            .collect()
    }

    fn fleet_command(&self) -> Command {
        let mut c = Command::new(&self.w.bins.forced_command);
        c.arg("--config").arg(&self.w.server_toml).args(["fleet", "rotate-key", "--hosts", HOST, "--json"]);
        c.stdin(Stdio::null());
        c
    }

    fn rotate(&self) -> Output {
        self.fleet_command().output().unwrap()
    }

    /// A rotation that must succeed; its per-host JSON object.
    fn rotate_ok(&self) -> Value {
        let out = self.rotate();
        let host = host_json(&out);
        assert!(
            out.status.success() && host["outcome"] == "ok",
            "rotate-key: {:?}\n{}\n{}\naudit: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            fs::read_to_string(&self.w.audit_log).unwrap_or_default()
        );
        host
    }

    /// A copy of the present private key, readable by the server account.
    fn save_key(&self, name: &str) -> PathBuf {
        let p = self.w.dir.join(name);
        fs::copy(self.key(), &p).unwrap();
        chmod(&p, 0o600);
        self.w.server.chown(&p);
        p
    }

    /// A session as BackupPC's ssh opens it, but with `key` alone.
    fn ssh_with(&self, key: &Path, command: &str) -> Output {
        let ssh = self.w.ssh_command(HOST);
        let mut words: Vec<String> = Vec::new();
        let mut it = ssh.split(' ');
        let program = it.next().unwrap().to_string();
        while let Some(word) = it.next() {
            if word == "-i" {
                it.next();
            } else {
                words.push(word.to_string());
            }
        }
        self.w
            .server
            .command(&program)
            .args(&words)
            .arg("-i")
            .arg(key)
            .arg("127.0.0.1")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// What must hold whenever no rotation runs: BackupPC's own ssh
    /// command (whatever keys pc/HOST.pl offers) opens rsyncsend.
    fn backups_work(&self, when: &str) {
        let out = self.w.ssh_as_server(HOST, "true");
        assert!(
            out.status.success(),
            "{when}: BackupPC's ssh command no longer opens rsyncsend: {}\nlines: {:?}\nsshd: {}",
            text(&out.stderr),
            self.server_lines(),
            fs::read_to_string(&self.w.sshd.log).unwrap_or_default()
        );
    }

    /// The files a finished rotation leaves (no session opened): one line
    /// of the server, holding HOST.pub, which is not the `old` key.
    fn assert_files_rotated(&self, old: &Path, when: &str) {
        let lines = self.server_lines();
        assert_eq!(lines.len(), 1, "{when}: exactly one key line of the server: {lines:#?}");
        let public = fs::read_to_string(self.key_dir().join(format!("{HOST}.pub"))).unwrap();
        let blob = public.split_whitespace().nth(1).unwrap();
        assert!(lines[0].contains(&format!(" ssh-ed25519 {blob} ")), "{when}: the line holds HOST.pub: {lines:?}");
        assert!(lines[0].starts_with("restrict,"), "{when}: still restricted: {}", lines[0]);
        assert!(lines[0].contains(&format!("command=\"{} --config ", self.w.bins.rsyncsend.display())));
        let pl = fs::read_to_string(self.w.conf_dir.join(format!("pc/{HOST}.pl"))).unwrap();
        assert_eq!(pl.matches(" -i ").count(), pl.matches("$sshPath").count(), "{when}: one key offered:\n{pl}");
        for leftover in [".key.next", ".key.prev"] {
            let p = self.key_dir().join(format!("{HOST}{leftover}"));
            assert!(!p.exists(), "{when}: {} left", p.display());
        }
        let old_public = text(&run_ok(Command::new("ssh-keygen").arg("-yf").arg(old)).stdout);
        let old_blob = old_public.split_whitespace().nth(1).unwrap();
        assert_ne!(old_blob, blob, "{when}: the key changed");
        assert!(!fs::read_to_string(self.authorized_keys()).unwrap().contains(old_blob), "{when}: the old key is gone");
    }

    /// The state a finished rotation leaves, sessions included.
    fn assert_rotated(&self, old: &Path, when: &str) {
        self.assert_files_rotated(old, when);
        self.backups_work(when);
        let refused = self.ssh_with(old, "true");
        assert!(!refused.status.success(), "{when}: the old key still opens a session");
        assert!(text(&refused.stderr).contains("Permission denied"), "{when}: {}", text(&refused.stderr));
        let new = self.ssh_with(&self.key(), "true");
        assert!(new.status.success(), "{when}: the new key alone: {}", text(&new.stderr));
        let reg: Value = serde_json::from_slice(&fs::read(self.w.registry_dir.join("registry.json")).unwrap()).unwrap();
        let fp =
            text(&run_ok(Command::new("ssh-keygen").arg("-lf").arg(self.key_dir().join(format!("{HOST}.pub")))).stdout);
        assert!(
            fp.contains(reg["hosts"][HOST]["key_fingerprint"].as_str().unwrap()),
            "{when}: the registry has the new key: {fp} / {}",
            reg["hosts"][HOST]
        );
    }
}

fn host_json(out: &Output) -> Value {
    text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["host"] == HOST)
        .unwrap_or_else(|| panic!("no result for {HOST}: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn rotation_replaces_the_key_and_backups_go_on() {
    let r = Rig::new();
    let old = r.save_key("old.key");
    assert_eq!(r.server_lines().len(), 1);
    let host = r.rotate_ok();
    assert!(host["stdout"].as_str().unwrap().starts_with("rotated"), "{host}");
    r.assert_rotated(&old, "after a rotation");
    // rsync through rsyncsend, as BackupPC runs it, with the new key.
    let dest = r.w.dir.join("pulled");
    let out = r.w.pull(HOST, &format!("{}/", r.w.data.display()), &dest, &[]);
    assert!(out.status.success(), "rsync after the rotation: {}", text(&out.stderr));
    assert_eq!(fs::read(dest.join("plain.txt")).unwrap(), b"plain\n");
    // The workstation's own record follows: enroll --check is content and
    // a re-run of enroll keeps the new key rather than putting back the old.
    let check = r.w.enroll(&["--check"]);
    assert!(check.status.success(), "enroll --check: {}\n{}", text(&check.stdout), text(&check.stderr));
    let keys = fs::read(r.authorized_keys()).unwrap();
    r.w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert_eq!(fs::read(r.authorized_keys()).unwrap(), keys, "a re-run of enroll keeps the rotated key line");
    // A second rotation replaces the new key in its turn; a misspelt name
    // beside it is reported (and retried), not left out.
    let second = r.save_key("second.key");
    let out = Command::new(&r.w.bins.forced_command)
        .arg("--config")
        .arg(&r.w.server_toml)
        .args(["fleet", "rotate-key", "--hosts", "localhost,nosuchhost", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(host_json(&out)["outcome"], "ok");
    let unknown = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["host"] == "nosuchhost");
    assert_eq!(unknown.map(|v| v["outcome"].clone()), Some(Value::from("unknown-host")), "{}", text(&out.stdout));
    let retry = fs::read_to_string(r.w.registry_dir.join("fleet.retry")).unwrap();
    assert_eq!(retry.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(), ["nosuchhost"], "{retry}");
    r.assert_rotated(&second, "after a second rotation");
    r.assert_rotated(&old, "the first key");
}

/// Where a whole rotation changes a file (`renameat`: each atomic
/// replacement; `unlink`: the pending and previous keys going) or opens a
/// session (`connect` to the sshd), as strace's `inject=CALL:when=N` counts
/// them: per thread, in the thread that works on the host.
fn kill_points(r: &Rig) -> Vec<(&'static str, usize)> {
    let log = r.w.dir.join("strace.log");
    let cmd = r.fleet_command();
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", log.to_str().unwrap(), "-e", "trace=renameat,unlink,connect"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "traced rotation: {}\n{}", text(&out.stdout), text(&out.stderr));
    let log = fs::read_to_string(&log).unwrap();
    let pid_of = |l: &str| l.split_whitespace().next().unwrap_or_default().to_string();
    // The host's thread: the one that writes the pending key.
    let worker = log.lines().find(|l| l.contains(".key.next.")).map(pid_of).expect("the pending key is written");
    let mut points = Vec::new();
    let mut seen: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in log.lines().filter(|l| pid_of(l) == worker) {
        let Some(call) = ["renameat", "unlink", "connect"].into_iter().find(|c| l.contains(&format!(" {c}("))) else {
            continue;
        };
        let n = seen.entry(call).or_default();
        *n += 1;
        if call != "connect" || l.contains("AF_INET") {
            points.push((call, *n));
        }
    }
    points
}

#[test]
fn killed_at_every_step_then_rerun_ends_rotated() {
    require_root();
    let r = Rig::new();
    let first = r.save_key("first.key");
    let points = kill_points(&r);
    assert!(points.len() >= 10, "a rotation renames, removes and connects: {points:?}");
    let mut killed = 0;
    for (call, when) in &points {
        {
            let label = format!("killed at {call} #{when}");
            let before = r.save_key("before.key");
            let cmd = r.fleet_command();
            let out = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e", &format!("inject={call}:signal=KILL:when={when}")])
                .arg(cmd.get_program())
                .args(cmd.get_args())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if !out.status.success() {
                killed += 1;
            }
            // At this moment, as BackupPC would try: a key that works.
            r.backups_work(&label);
            assert!(r.server_lines().len() <= 3, "{label}: {:?}", r.server_lines());
            r.rotate_ok();
            r.assert_files_rotated(&before, &label);
        }
    }
    assert_eq!(killed, points.len(), "every injected kill stopped a rotation");
    // Sessions, once at the end (each costs a few hundred milliseconds):
    // the last key works alone, the one before it and the first no more.
    r.assert_rotated(&r.w.dir.join("before.key"), "after the last re-run");
    r.assert_rotated(&first, "the key before any rotation");
}

/// The restricted key's requests an attacker holding it (or a broken
/// server) might send, and the root helper's stdin as the backup account
/// could feed it: each refused, authorized_keys unchanged.
#[test]
fn hostile_requests_change_nothing() {
    let r = Rig::new();
    let before = fs::read(r.authorized_keys()).unwrap();
    let a = "AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";
    let b = "AAAAC3NzaC1lZDI1NTE5AAAAIJCa2C8gerPWjNJTOEsSFkgItNQmRNPf/GDPKR0Hl2rX";
    let rsa = keygen_type(&r.w.dir.join("rsa"), "rsa", "an rsa key");
    let rsa = rsa.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let huge = format!("rotate-key add ssh-ed25519 {}", "A".repeat(100_000));
    let cases: Vec<(String, &str)> = vec![
        (format!("rotate-key add ssh-ed25519 {a} ssh-ed25519 {b}"), "a second key"),
        (format!("rotate-key add {rsa}"), "an RSA key"),
        (format!("rotate-key add command=\"/bin/sh\" ssh-ed25519 {a}"), "options before the key"),
        (format!("rotate-key add restrict,pty ssh-ed25519 {a}"), "options before the key"),
        (format!("rotate-key add ssh-ed25519 {a},command=\"/bin/sh\""), "options glued to the key"),
        (format!("rotate-key add ssh-ed25519 {a}\nssh-ed25519 {b}"), "a newline and a second line"),
        (format!("rotate-key add ssh-ed25519 {a}\n"), "a trailing newline"),
        (format!("rotate-key add ssh-ed25519 {a}; /bin/sh"), "shell syntax"),
        (huge, "a huge line"),
        (format!("rotate-key retire ssh-ed25519 {a}"), "retiring to a key that has no line"),
        ("rotate-key".into(), "no arguments"),
    ];
    for (cmd, why) in &cases {
        let out = r.w.ssh_as_server(HOST, cmd);
        assert!(!out.status.success(), "{why}: accepted");
        let err = text(&out.stderr);
        assert!(err.contains("rsyncsend: refused"), "{why}: one refusal line: {err}");
        assert_eq!(fs::read(r.authorized_keys()).unwrap(), before, "{why}: authorized_keys changed");
    }
    // The root helper checks again what comes on its stdin.
    let stdin_cases: Vec<(String, &str)> = vec![
        (format!("add ssh-ed25519 {a}\nadd ssh-ed25519 {b}\n"), "two requests"),
        (format!("add ssh-ed25519 {a}\n\n"), "an empty line after it"),
        (format!("add {rsa}\n"), "an RSA key"),
        (format!("add ssh-ed25519 {a} comment\n"), "a comment"),
        (format!("add ssh-ed25519 {}\n", "A".repeat(10_000)), "a huge line"),
        ("".into(), "nothing"),
    ];
    for (input, why) in &stdin_cases {
        let mut cmd = Command::new(&r.w.bins.rsyncsend);
        cmd.arg("--config").arg(&r.w.client_toml).arg("rotate-key");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = feed(&mut cmd, input.as_bytes(), None).wait_with_output().unwrap();
        assert!(!out.status.success(), "helper, {why}: accepted");
        assert!(text(&out.stderr).contains("refused"), "helper, {why}: {}", text(&out.stderr));
        assert_eq!(fs::read(r.authorized_keys()).unwrap(), before, "helper, {why}: authorized_keys changed");
    }
    // A request that is well formed but not the server's own key: added
    // as a restricted line like the present one, never with a shell.
    let out = r.w.ssh_as_server(HOST, &format!("rotate-key add ssh-ed25519 {a}"));
    assert!(out.status.success(), "a well-formed add: {}", text(&out.stderr));
    let lines = r.server_lines();
    assert_eq!(lines.len(), 2);
    let options = |l: &str| l.split(" ssh-ed25519 ").next().unwrap().to_string();
    assert_eq!(options(&lines[0]), options(&lines[1]), "the same options: {lines:?}");
    // A second stray key (as a thief of the present key would add, to
    // fill the lines a rotation may use): the rotation retires the
    // strays over the present key first, and still ends with one line.
    let out = r.w.ssh_as_server(HOST, &format!("rotate-key add ssh-ed25519 {b}"));
    assert!(out.status.success(), "a second stray add: {}", text(&out.stderr));
    assert_eq!(r.server_lines().len(), 3);
    let old = r.save_key("old.key");
    r.rotate_ok();
    r.assert_rotated(&old, "after a stray add");
}

/// The backup account owns its home, so it can swap `~/.ssh` for a
/// symlink while the root helper waits for the folder's lock: the helper
/// edits the folder it checked, never the one the link points to.
#[test]
fn a_swapped_ssh_folder_does_not_lead_the_helper_elsewhere() {
    let r = Rig::new();
    let ssh = r.w.client_home().join(".ssh");
    let a = "AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";
    // A root-owned folder elsewhere, with its own authorized_keys.
    let target = r.w.dir.mkdir("elsewhere");
    let theirs = target.join("authorized_keys");
    fs::write(&theirs, "ssh-ed25519 AAAA the admin's own line\n").unwrap();
    let before = fs::read(&theirs).unwrap();
    let held = fs::File::open(&ssh).unwrap();
    held.lock().unwrap();
    let mut cmd = Command::new(&r.w.bins.rsyncsend);
    cmd.arg("--config").arg(&r.w.client_toml).arg("rotate-key");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = feed(&mut cmd, format!("add ssh-ed25519 {a}\n").as_bytes(), None);
    // The helper has checked `.ssh` and waits for the lock: swap it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let moved = r.w.client_home().join(".ssh-moved");
    fs::rename(&ssh, &moved).unwrap();
    std::os::unix::fs::symlink(&target, &ssh).unwrap();
    drop(held);
    let out = child.wait_with_output().unwrap();
    fs::remove_file(&ssh).unwrap();
    fs::rename(&moved, &ssh).unwrap();
    assert_eq!(fs::read(&theirs).unwrap(), before, "the folder the link points to is untouched");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 1, "nothing created there");
    assert!(out.status.success(), "the checked folder was edited: {}", text(&out.stderr));
    assert!(r.server_lines().iter().any(|l| l.contains(a)), "{:?}", r.server_lines());
}

/// A workstation whose rsyncsend is older than rotation is reported as
/// such, and keeps its key.
#[test]
fn an_older_rsyncsend_is_reported_unsupported() {
    let r = Rig::new();
    // What an older rsyncsend makes of the command: refused as no rsync.
    let old_rsyncsend = r.w.dir.join("bin/rsyncsend-old");
    write_script(
        &old_rsyncsend,
        "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  status) echo 'rsyncsend 0.0.1'; echo 'shares: /home';;\n  \
         true) ;;\n  *) echo 'rsyncsend: refused: not an rsync server command' >&2; exit 1;;\nesac\n",
    );
    let ak = r.authorized_keys();
    let before = fs::read_to_string(&ak).unwrap();
    fs::write(
        &ak,
        before.replace(
            &format!("command=\"{} ", r.w.bins.rsyncsend.display()),
            &format!("command=\"{} ", old_rsyncsend.display()),
        ),
    )
    .unwrap();
    let pinned = fs::read(&ak).unwrap();
    let key_before = fs::read(r.key()).unwrap();
    let out = r.rotate();
    let host = host_json(&out);
    assert_eq!(host["outcome"], "unsupported", "{host}");
    assert_eq!(out.status.code(), Some(3), "unsupported counts as not done");
    assert_eq!(fs::read(&ak).unwrap(), pinned, "the workstation is unchanged");
    assert_eq!(fs::read(r.key()).unwrap(), key_before, "the server's key is unchanged");
    assert!(!r.key_dir().join(format!("{HOST}.key.next")).exists(), "no pending key is left");
    let retry = fs::read_to_string(r.w.registry_dir.join("fleet.retry")).unwrap();
    assert!(retry.lines().any(|l| l == HOST), "in the retry file: {retry}");

    // A new rsyncsend under a sudoers drop-in written before rotation
    // (the package upgraded, enroll not run since): unsupported too.
    fs::write(&ak, &before).unwrap();
    let sudoers = r.w.sudoers_file();
    let dropin = fs::read_to_string(&sudoers).unwrap();
    assert!(dropin.ends_with(" rotate-key\n"), "{dropin}");
    let older: String = dropin.lines().filter(|l| !l.ends_with(" rotate-key")).map(|l| format!("{l}\n")).collect();
    fs::write(&sudoers, &older).unwrap();
    let out = r.rotate();
    let host = host_json(&out);
    assert_eq!(host["outcome"], "unsupported", "{host}");
    assert!(host["stderr"].as_str().unwrap().contains("run enroll on this workstation"), "{host}");
    assert_eq!(fs::read_to_string(&ak).unwrap(), before, "the workstation is unchanged");
    assert_eq!(fs::read(r.key()).unwrap(), key_before, "the server's key is unchanged");
    // enroll rewrites the drop-in; then the rotation goes through.
    r.w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    assert_eq!(fs::read_to_string(&sudoers).unwrap(), dropin);
    let old = r.save_key("old.key");
    r.rotate_ok();
    r.assert_files_rotated(&old, "after enroll updated the drop-in");
}

/// A real BackupPC 4 (Debian's) backs a workstation up through the key
/// `rotate-key` gave it, with only the files the rotation rewrote.
#[test]
fn backuppc_backs_up_through_the_new_key() {
    use common::backuppc::{as_backuppc, require_backuppc, within, BackupPc, BIN};
    use std::time::Duration;
    require_backuppc();
    let dir = TestDir::new("bpcrot");
    let bins = install_bins(&dir);
    install_executable(
        Path::new(env!("CARGO_BIN_EXE_forced-command-fleet")),
        &bins.forced_command.with_file_name("forced-command-fleet"),
    );
    let backup_user = unique("bprb");
    // Dropped after the sshd and daemon below.
    let _user = DeleteUser(backup_user.clone());
    let data = dir.mkdir("data");
    common::world::make_tree(&data);
    let bpc = BackupPc::new(&dir, &bins.forced_command, &format!("[shares]\nlinux = [{data:?}]\n"));
    let sshd = bpc.sshd(&dir.join("sshd"), &["backuppc", &backup_user], "");
    let ns = sshd.pid();
    bpc.enroll_workstation(&dir, &bins, &sshd, &backup_user, "");
    let ak = dir.join("clienthome/.ssh/authorized_keys");
    let old_blob = fs::read_to_string(bpc.top.join(".ssh/backuppc-enroll/localhost.pub")).unwrap();
    let old_blob = old_blob.split_whitespace().nth(1).unwrap().to_string();

    // As the BackupPC account, inside the namespace where its files are.
    let server_toml = bpc.server_toml.display().to_string();
    let fc = bins.forced_command.display().to_string();
    let out = within(
        as_backuppc(ns, &fc, &["--config", &server_toml, "fleet", "rotate-key", "--hosts", "localhost", "--json"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "rotate-key as backuppc: {}\n{}", text(&out.stdout), text(&out.stderr));
    let keys = fs::read_to_string(&ak).unwrap();
    let ours: Vec<&str> = keys.lines().filter(|l| l.ends_with(" backuppc-enroll@127.0.0.1")).collect();
    assert_eq!(ours.len(), 1, "one key line of the server: {keys}");
    assert!(!keys.contains(&old_blob), "the old key is gone: {keys}");

    // The daemon, which BackupPC_dump asks for its lock; stopped by pid.
    let _daemon = bpc.start_daemon(&dir, ns);
    let out =
        within(as_backuppc(ns, &format!("{BIN}/BackupPC_dump"), &["-f", "-v", "localhost"]), Duration::from_secs(180));
    assert!(out.status.success(), "BackupPC_dump -f: {}\n{}", text(&out.stdout), text(&out.stderr));
    let backups = fs::read_to_string(bpc.top.join("pc/localhost/backups")).unwrap();
    let last: Vec<&str> = backups.lines().last().unwrap().split('\t').collect();
    assert_eq!(last[1], "full", "{backups}");
    assert_eq!(last[10], "0", "no transfer errors: {}", text(&out.stdout));
    assert!(last[4].parse::<u64>().unwrap() >= 7, "the tree's files were backed up: {backups}");
}

/// Removes the backup user enroll created, and its sudoers drop-in.
struct DeleteUser(String);

impl Drop for DeleteUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(Path::new("/etc/sudoers.d").join(format!("backuppc-enroll-{}", self.0)));
        delete_user(&self.0);
    }
}

//! Enrollment end to end through a real sshd: `enroll` on the workstation,
//! `forced-command` behind the register key, then a real rsync backup
//! pulled through `rsyncsend` with the per-host key and pinned host key.

mod common;

use common::world::{Options, World, STOCK_HOSTS};
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn enroll_then_backup_through_rsyncsend() {
    let w = World::new(Options::default());
    let out = w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("https://backup.example.org/backuppc/index.cgi?host=localhost"), "URL shown: {stdout}");

    // Server side: hosts line appended, everything else byte for byte.
    let hosts = fs::read_to_string(w.conf_dir.join("hosts")).unwrap();
    assert_eq!(hosts, format!("{STOCK_HOSTS}localhost\t0\tcmartin\n"));
    assert_eq!(fs::read_to_string(w.conf_dir.join("hosts.old")).unwrap(), STOCK_HOSTS);
    let key_path = w.server.home.join(".ssh/backuppc-enroll/localhost.key");
    let meta = fs::metadata(&key_path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "private key 0600");
    assert_eq!(meta.uid(), w.server.ids().0, "private key owned by the BackupPC user");
    let kh = fs::read_to_string(w.server.home.join(".ssh/known_hosts")).unwrap();
    let host_key_bare: Vec<&str> = w.sshd.host_pub.split(' ').take(2).collect();
    assert_eq!(kh, format!("localhost {}\n", host_key_bare.join(" ")), "client host key pinned under the alias");
    let reg: serde_json::Value =
        serde_json::from_slice(&fs::read(w.registry_dir.join("registry.json")).unwrap()).unwrap();
    assert_eq!(reg["hosts"]["localhost"]["logon"], "cmartin");
    assert_eq!(reg["hosts"]["localhost"]["state"], "enrolled");

    // Client side: the key line is bound to rsyncsend, root-owned.
    let ak_path = w.client_home().join(".ssh/authorized_keys");
    let ak = fs::read_to_string(&ak_path).unwrap();
    assert!(ak.starts_with("restrict,from=\"127.0.0.1\",command=\""), "{ak}");
    assert!(ak.contains(&format!("{} --config {}", w.bins.rsyncsend.display(), w.client_toml.display())));
    assert_eq!(fs::metadata(&ak_path).unwrap().uid(), 0, "authorized_keys owned by root");
    let passwd = nix::unistd::User::from_name(&w.backup_user).unwrap().expect("backup user created");
    assert_eq!(passwd.shell.to_str(), Some("/bin/sh"));

    // A real backup, as BackupPC would pull it, without and with -s.
    for (name, extra) in [("plain", &[][..]), ("protect-args", &["--protect-args"][..])] {
        let dest = w.dir.join(&format!("backup-{name}"));
        let src = format!("{}/", w.data.display());
        let out = w.pull("localhost", &src, &dest, extra);
        assert!(
            out.status.success(),
            "{name} pull failed: {}\nsshd: {}",
            text(&out.stderr),
            fs::read_to_string(&w.sshd.log).unwrap()
        );
        assert_same_tree(&w.data, &dest);
        assert_eq!(
            fs::read_to_string(dest.join("root-only")).unwrap(),
            "secret only root can read\n",
            "sudo read the root-only file"
        );
    }
    // A single file whose name has spaces, with -s.
    let dest = w.dir.join("backup-one");
    let out = w.pull("localhost", &format!("{}/name with spaces.txt", w.data.display()), &dest, &["--protect-args"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(dest.join("name with spaces.txt")).unwrap(), "spaces\n");

    // The per-host key cannot do anything else.
    let ok = w.ssh_as_server("localhost", "true");
    assert!(ok.status.success(), "connectivity check: {}", text(&ok.stderr));
    let status = w.ssh_as_server("localhost", "status");
    let report = text(&status.stdout);
    assert!(status.status.success(), "status: {}", text(&status.stderr));
    assert!(report.starts_with(&format!("rsyncsend {}", backuppc_enroll::LONG_VERSION)), "{report}");
    assert!(report.contains(&format!("shares: {}", w.data.display())), "{report}");
    assert!(report.contains("restore: false"), "{report}");
    for cmd in ["id", "cat /etc/shadow", "rsync --server --sender -l . /etc", "rsync --server -l . /tmp"] {
        let out = w.ssh_as_server("localhost", cmd);
        assert!(!out.status.success(), "{cmd} must be refused");
        assert!(text(&out.stderr).contains("rsyncsend: refused"), "{cmd}: {}", text(&out.stderr));
    }
    let outside = w.pull("localhost", "/etc/", &w.dir.join("backup-etc"), &["--protect-args"]);
    assert!(!outside.status.success(), "paths outside the shares are refused");
}

#[test]
fn seed_openssh_client_line_gets_success() {
    let w = World::new(Options::default());
    // The seed's client: plain OpenSSH, register key, no hello block.
    let out = std::process::Command::new("ssh")
        .args(["-x", "-a", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", w.etc.join("server_host_keys").display()))
        .arg("-i")
        .arg(&w.register_key)
        .args(["-p", &w.sshd.port.to_string(), "-l", &w.server.name, "127.0.0.1", "mac:cmartin"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let answer = text(&out.stdout);
    assert!(out.status.success(), "{answer}\n{}", text(&out.stderr));
    let mut lines = answer.lines();
    assert_eq!(lines.next(), Some("success"));
    assert!(answer.lines().any(|l| l.starts_with("key: ssh-ed25519 ")), "{answer}");
    assert!(
        answer.lines().any(|l| l == "url: https://backup.example.org/backuppc/index.cgi?host=localhost"),
        "{answer}"
    );
    assert!(answer.lines().any(|l| l == "host: localhost"), "named by confirmed reverse DNS: {answer}");
    // A client that did not say its rsyncsend serves the dumps trigger
    // gets none: an older rsyncsend would refuse it and fail each backup.
    let pl = fs::read_to_string(w.conf_dir.join("pc/localhost.pl")).unwrap();
    let set = |name: &str| pl.lines().any(|l| l.starts_with(&format!("$Conf{{{name}}}")));
    assert!(set("RsyncSshArgs"), "{pl}");
    assert!(!set("DumpPreUserCmd") && !set("UserCmdCheckStatus"), "{pl}");
    let audit = fs::read_to_string(&w.audit_log).unwrap();
    assert!(audit.contains("\"event\":\"accepted\"") && audit.contains("\"client\":\"127.0.0.1\""), "{audit}");
}

#[test]
fn refused_requests_change_nothing_on_the_server() {
    let w = World::new(Options::default());
    let ssh = |command: &str| {
        std::process::Command::new("ssh")
            .args(["-x", "-a", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", w.etc.join("server_host_keys").display()))
            .arg("-i")
            .arg(&w.register_key)
            .args(["-p", &w.sshd.port.to_string(), "-l", &w.server.name, "127.0.0.1", command])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let before = w.server_files();
    for (command, expect) in [
        ("windows:cmartin", "operating system"),
        ("linux:Cmartin", "form"),
        ("linux:cm;id", "character"),
        ("linux:nosuchuser", "not known"),
        ("linux:cmartin:extra", "exactly OS:logon"),
        ("", "no command"),
    ] {
        let out = ssh(command);
        let answer = text(&out.stdout);
        assert!(!out.status.success(), "{command:?} must be refused: {answer}");
        assert!(!answer.starts_with("success"), "{command:?}: {answer}");
        assert!(answer.contains(expect), "{command:?}: message {answer:?} should mention {expect:?}");
        assert!(text(&out.stderr).is_empty(), "nothing on stderr while serving: {}", text(&out.stderr));
        assert_eq!(w.server_files(), before, "{command:?} changed a server file");
    }
    // The client sees the refusal as exit status 3 with the message.
    let out = w.enroll(&["--logon", "nosuchuser", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not known to this server's directory"), "{}", text(&out.stderr));
    assert_eq!(w.server_files(), before);
    assert!(!w.client_home().join(".ssh/authorized_keys").exists(), "no key installed after a refusal");
    let audit = fs::read_to_string(&w.audit_log).unwrap();
    assert!(audit.matches("\"event\":\"refused\"").count() >= 7, "every refusal is audited: {audit}");
}

#[test]
fn network_not_allowed_changes_nothing() {
    let w = World::new(Options { networks: Some("[\"10.0.0.0/8\"]"), ..Options::default() });
    let before = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not in a network allowed to enroll"), "{}", text(&out.stderr));
    assert_eq!(w.server_files(), before);
}

#[test]
fn rerun_is_idempotent_repairs_and_uninstall_leaves_no_trace() {
    let w = World::new(Options { logon_check: "nss", ..Options::default() });
    // nss: "root" exists in every passwd.
    w.enroll_ok(&["--logon", "root", "--yes"]);
    let client = w.client_files();
    let server = w.server_files();
    let again = w.enroll_ok(&["--logon", "root", "--yes"]);
    assert!(text(&again.stderr).contains("already enrolled"), "{}", text(&again.stderr));
    assert_eq!(w.client_files(), client, "a re-run with nothing changed changes nothing");
    assert_eq!(w.server_files(), server, "and does not re-key on the server");

    // A deleted key line is repaired from the recorded enrollment.
    let ak = w.client_home().join(".ssh/authorized_keys");
    fs::write(&ak, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q someone-else\n")
        .unwrap();
    w.enroll_ok(&["--logon", "root", "--yes"]);
    let repaired = fs::read_to_string(&ak).unwrap();
    assert!(
        repaired.starts_with(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q someone-else\n"
        ),
        "other lines kept"
    );
    assert_eq!(repaired.lines().count(), 2);
    fs::write(&ak, repaired.lines().nth(1).unwrap().to_string() + "\n").unwrap();
    assert_eq!(w.client_files(), client, "repair restores the same key line");

    // A deleted sudoers drop-in is repaired too.
    fs::remove_file(w.sudoers_file()).unwrap();
    w.enroll_ok(&["--logon", "root", "--yes"]);
    assert_eq!(w.client_files(), client);

    // --rekey asks the server again: new key, same single line.
    w.enroll_ok(&["--logon", "root", "--yes", "--rekey"]);
    let ak_text = fs::read_to_string(&ak).unwrap();
    assert_eq!(ak_text.lines().count(), 1, "one key line for this server");
    assert_ne!(w.client_files(), client, "a new key");

    // Another logon for the same host is refused by the server, and the
    // host's working key is left as it was.
    let key_file = w.server.home.join(".ssh/backuppc-enroll/localhost.key");
    let key_before = fs::read(&key_file).unwrap();
    let refused_here = w.enroll(&["--logon", "daemon", "--yes", "--rekey"]);
    assert_eq!(refused_here.status.code(), Some(1), "another logon with --yes needs --reassign");
    assert!(text(&refused_here.stderr).contains("add --reassign"), "{}", text(&refused_here.stderr));
    assert_eq!(fs::read(&key_file).unwrap(), key_before);
    let other = w.enroll(&["--logon", "daemon", "--yes", "--rekey", "--reassign"]);
    assert_eq!(fs::read(&key_file).unwrap(), key_before, "a refusal keeps the key");
    assert!(!key_file.with_extension("key.new").exists(), "no staged key left behind");
    assert_eq!(other.status.code(), Some(3), "{}", text(&other.stderr));
    assert!(text(&other.stderr).contains("already registered for another logon"), "{}", text(&other.stderr));

    // Uninstall leaves no trace of the toolkit, and the user goes too.
    let out = w.enroll_ok(&["--uninstall", "--remove-user"]);
    assert!(text(&out.stderr).contains("removed"), "{}", text(&out.stderr));
    assert!(!w.sudoers_file().exists());
    assert!(!w.state_file.exists());
    assert!(nix::unistd::User::from_name(&w.backup_user).unwrap().is_none(), "user deleted");
    assert!(!w.client_home().exists(), "home deleted");
}

#[test]
fn uninstall_keeps_other_keys() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let ak = w.client_home().join(".ssh/authorized_keys");
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q admin\n";
    let mut text_ak = fs::read_to_string(&ak).unwrap();
    text_ak.insert_str(0, other);
    fs::write(&ak, &text_ak).unwrap();
    w.enroll_ok(&["--uninstall"]);
    assert_eq!(fs::read_to_string(&ak).unwrap(), other, "only this server's line removed");
    assert!(nix::unistd::User::from_name(&w.backup_user).unwrap().is_some(), "user kept without --remove-user");
}

#[test]
fn host_key_mismatch_is_refused_with_both_fingerprints() {
    let w = World::new(Options::default());
    let other = w.dir.join("other_host_key");
    let other_pub = keygen(&other, "not the server");
    fs::write(w.etc.join("server_host_keys"), format!("[127.0.0.1]:{} {other_pub}\n", w.sshd.port)).unwrap();
    let before = w.server_files();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not match the pinned one"), "{err}");
    let offered = run_ok(std::process::Command::new("ssh-keygen").arg("-lf").arg(&w.sshd.host_pub_path));
    let pinned = run_ok(std::process::Command::new("ssh-keygen").arg("-lf").arg(other.with_extension("pub")));
    for fp in [text(&offered.stdout), text(&pinned.stdout)] {
        let sha = fp.split(' ').nth(1).unwrap();
        assert!(err.contains(sha), "{sha} missing from: {err}");
    }
    assert_eq!(w.server_files(), before);
    assert!(!w.client_home().join(".ssh/authorized_keys").exists());

    // No pinned key at all: refused too, never trust on first use.
    fs::write(w.etc.join("server_host_keys"), "").unwrap();
    let out = w.enroll(&["--logon", "cmartin", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no host key is pinned"), "{}", text(&out.stderr));
}

#[test]
fn restore_only_when_enabled() {
    let w = World::new(Options { restore: true, ..Options::default() });
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let target = w.data.join("restored");
    fs::create_dir_all(&target).unwrap();
    let src = w.dir.join("to-restore");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("back.txt"), "restored\n").unwrap();
    w.server.chown(&src);
    w.server.chown(&src.join("back.txt"));
    let ssh = w.ssh_command("localhost");
    let push = |dest: &str| {
        w.server
            .command("/usr/bin/rsync")
            .args(["-a", "--protect-args", "--rsync-path=/usr/bin/rsync", "-e", &ssh])
            .arg(format!("{}/", src.display()))
            .arg(format!("127.0.0.1:{dest}"))
            .output()
            .unwrap()
    };
    let out = push(&format!("{}/", target.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let restored = target.join("back.txt");
    assert_eq!(fs::read_to_string(&restored).unwrap(), "restored\n");
    let out = push(&format!("{}/.ssh/", w.client_home().display()));
    assert!(!out.status.success(), "restore into the backup user's .ssh is refused");

    // With restore = false the same push is refused.
    let cfg = fs::read_to_string(&w.client_toml).unwrap().replace("restore = true", "restore = false");
    fs::write(&w.client_toml, cfg).unwrap();
    fs::remove_file(&restored).unwrap();
    let out = push(&format!("{}/", target.display()));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("restores are not enabled"), "{}", text(&out.stderr));
    assert!(!restored.exists());
}

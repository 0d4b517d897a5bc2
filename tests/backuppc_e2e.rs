//! A real BackupPC 4 (Debian's `backuppc` and `backuppc-rsync`) backs up
//! and restores a workstation enrolled by `enroll` against
//! `forced-command`, using only the files those two wrote.
//!
//! BackupPC's config folder is fixed at /etc/backuppc in Debian's build, so
//! the test copies it and bind-mounts the copy (and a fresh
//! /var/lib/backuppc) in a private mount namespace that only the test's
//! sshd, BackupPC daemon and tools see: the machine's own /etc/backuppc and
//! /var/lib/backuppc are left as they were, which the test checks.

mod common;

use common::backuppc::*;
use common::world::make_tree;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The last line of a host's `backups` file, as BackupPC's fields.
struct BackupRow {
    num: String,
    kind: String,
    n_files: u64,
    xfer_errs: u64,
}

fn backups(top: &Path, host: &str) -> Vec<BackupRow> {
    let text = fs::read_to_string(top.join("pc").join(host).join("backups")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            BackupRow {
                num: f[0].to_string(),
                kind: f[1].to_string(),
                n_files: f[4].parse().unwrap(),
                xfer_errs: f[10].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn backuppc_backs_up_and_restores_an_enrolled_workstation() {
    require_backuppc();
    let real_before = snapshot(&[Path::new("/etc/backuppc"), Path::new("/var/lib/backuppc")]);
    run();
    assert_eq!(
        snapshot(&[Path::new("/etc/backuppc"), Path::new("/var/lib/backuppc")]),
        real_before,
        "the machine's /etc/backuppc and /var/lib/backuppc are as they were"
    );
}

fn run() {
    let dir = TestDir::new("bpc");
    let bins = install_bins(&dir);
    let backup_user = unique("bpcb");
    let _cleanup = UserGuard(backup_user.clone());

    // The server: a copy of Debian's BackupPC config, a fresh TopDir,
    // forced-command behind the register key, for the backuppc account.
    let data = dir.mkdir("data");
    make_tree(&data);
    std::os::unix::fs::chown(data.join("plain.txt"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(data.join("sub/deeper"), Some(4321), Some(8765)).unwrap();
    let restore_area = dir.mkdir("restore");
    let bpc = BackupPc::new(&dir, &bins.forced_command, &format!("[shares]\nlinux = [{data:?}, {restore_area:?}]\n"));
    let (etc, top) = (bpc.etc.clone(), bpc.top.clone());
    let server_toml = bpc.server_toml.clone();

    // One sshd plays both the server (backuppc, behind its forced command)
    // and the workstation (the backup user, behind rsyncsend). It runs in
    // the namespace where the copies are mounted.
    let sshd = bpc.sshd(&dir.join("sshd"), &["backuppc", &backup_user], "");
    let ns = sshd.pid();

    // The BackupPC daemon, started by the test, stopped by pid.
    let daemon = bpc.start_daemon(&dir, ns);
    let mesg = |what: &[&str]| bpc.mesg(ns, what);
    let known = text(&mesg(&["status", "hosts"]).stdout);
    assert!(!known.contains("\"localhost\""), "localhost is not a BackupPC host yet: {known}");

    // The workstation enrolls.
    let (client_toml, _) = bpc.enroll_workstation(&dir, &bins, &sshd, &backup_user, "restore = true\n");
    let client_cfg = fs::read_to_string(&client_toml).unwrap();
    let audit = bpc.audit_after_reloads(1);
    assert!(audit.contains("\"backuppc_reload\":\"ok\""), "forced-command told BackupPC to reload: {audit}");
    // The audit line says how long the registry lock was waited for and
    // held, so that an admin can see what serialises a burst.
    let reload: serde_json::Value = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "reload")
        .unwrap_or_else(|| panic!("a reload event: {audit}"));
    let (wait, held) = (reload["lock_wait_ms"].as_f64(), reload["lock_held_ms"].as_f64());
    assert!(wait.is_some_and(|w| w >= 0.0) && held.is_some_and(|h| h > 0.0), "lock times: {reload}");
    let known = text(&mesg(&["status", "hosts"]).stdout);
    assert!(known.contains("\"localhost\""), "the daemon lists the host without a restart: {known}");
    assert!(fs::read_to_string(etc.join("hosts")).unwrap().ends_with("localhost\t0\tcmartin\n"));

    // The host's web user is the enrolled logon, as BackupPC reads it.
    let user = within(
        as_backuppc(
            ns,
            "/usr/bin/perl",
            &[
                "-I/usr/share/backuppc/lib",
                "-MBackupPC::Lib",
                "-e",
                "print BackupPC::Lib->new->HostInfoRead('localhost')->{localhost}{user}",
            ],
        ),
        Duration::from_secs(30),
    );
    assert_eq!(text(&user.stdout), "cmartin", "{}", text(&user.stderr));

    // Full, then incremental, with BackupPC's default RsyncArgs
    // (--protect-args included); only the known_hosts line forced-command
    // wrote lets StrictHostKeyChecking=yes pass.
    let kh = fs::read_to_string(top.join(".ssh/known_hosts")).unwrap();
    assert_eq!(kh.lines().count(), 1, "one pinned key, written by forced-command: {kh}");
    for (flag, kind) in [("-f", "full"), ("-i", "incr")] {
        let out = within(
            as_backuppc(ns, &format!("{BIN}/BackupPC_dump"), &[flag, "-v", "localhost"]),
            Duration::from_secs(180),
        );
        let rows = backups(&top, "localhost");
        let last =
            rows.last().unwrap_or_else(|| panic!("no backup recorded: {}\n{}", text(&out.stdout), text(&out.stderr)));
        assert!(out.status.success(), "BackupPC_dump {flag}: {}\n{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(last.kind, kind, "{}", text(&out.stdout));
        assert_eq!(last.xfer_errs, 0, "xferErrs of the {kind} backup: {}", text(&out.stdout));
        assert!(last.n_files >= 7, "{kind} backup has the 7 files and links of the tree ({})", last.n_files);
    }
    let full_num = backups(&top, "localhost")[0].num.clone();

    // Restore the whole data share into another folder, as the CGI asks.
    let restore = |name: &str, dest: &str| {
        let req = top.join("pc/localhost").join(name);
        fs::write(
            &req,
            format!(
                "%RestoreReq = (\n  'fileList' => ['/'],\n  'hostDest' => 'localhost',\n  'hostSrc' => 'localhost',\n  \
                 'num' => '{full_num}',\n  'pathHdrDest' => '/{dest}',\n  'pathHdrSrc' => '/',\n  'reqTime' => 1795365000,\n  \
                 'shareDest' => '{}',\n  'shareSrc' => '{}',\n  'user' => 'cmartin'\n);\n",
                restore_area.display(),
                data.display()
            ),
        )
        .unwrap();
        run_ok(Command::new("chown").args(["backuppc:backuppc"]).arg(&req));
        within(
            as_backuppc(ns, &format!("{BIN}/BackupPC_restore"), &["-v", "localhost", "localhost", name]),
            Duration::from_secs(120),
        )
    };
    let out = restore("restoreReq.test.1", "copy");
    assert!(out.status.success(), "restore: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert_same_tree_with_owners(&data, &restore_area.join("copy"));
    assert_eq!(fs::read_to_string(restore_area.join("copy/root-only")).unwrap(), "secret only root can read\n");

    // With restore = false the workstation refuses.
    fs::write(&client_toml, client_cfg.replace("restore = true", "restore = false")).unwrap();
    let out = restore("restoreReq.test.2", "refused");
    assert!(!out.status.success() || text(&out.stdout).contains("failed"), "restore must fail: {}", text(&out.stdout));
    assert!(!restore_area.join("refused").exists(), "nothing restored");
    let restores = fs::read_to_string(top.join("pc/localhost/restores")).unwrap();
    assert_eq!(restores.lines().nth(1).map(|l| l.split('\t').nth(3).unwrap()), Some("failed"), "{restores}");

    // A changed client host key: the next backup fails (pinning works).
    let port = sshd.port;
    drop(sshd);
    let other_key = dir.join("other_host_key");
    keygen(&other_key, "changed host key");
    let sshd2 = Sshd::start_with(
        &dir.join("sshd2"),
        &["backuppc", &backup_user],
        SshdOptions {
            extra_config: "UsePAM yes\n".into(),
            mounts: bpc.mounts(),
            host_key: Some(other_key),
            port: Some(port),
        },
    );
    let before = backups(&top, "localhost").len();
    let out = within(
        as_backuppc(daemon.0.id(), &format!("{BIN}/BackupPC_dump"), &["-i", "-v", "localhost"]),
        Duration::from_secs(180),
    );
    let rows = backups(&top, "localhost");
    let good_after = rows.iter().filter(|r| r.kind != "partial" && r.xfer_errs == 0).count();
    assert!(!out.status.success() || rows.len() == before, "backup must fail: {}", text(&out.stdout));
    assert_eq!(good_after, before, "no new good backup with a changed host key");
    drop(sshd2);

    // The admin revokes the host: after forced-command's reload the
    // daemon no longer lists it, and its private key is gone.
    let out = within(
        {
            let mut c = Command::new("nsenter");
            c.arg(format!("--target={}", daemon.0.id())).args(["--mount", "--"]).arg(&bins.forced_command);
            c.arg("--config").arg(&server_toml).args(["revoke", "localhost"]);
            c
        },
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "revoke: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("BackupPC reload: ok"), "{}", text(&out.stdout));
    let known = text(&mesg(&["status", "hosts"]).stdout);
    assert!(!known.contains("\"localhost\""), "revoked host no longer listed: {known}");
    assert!(!top.join(".ssh/backuppc-enroll/localhost.key").exists());
    assert!(top.join("pc/localhost/backups").exists(), "its backups are kept");
    drop(daemon);
}

/// Removes the backup user `enroll` created, whatever happens.
struct UserGuard(String);

impl Drop for UserGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(Path::new("/etc/sudoers.d").join(format!("backuppc-enroll-{}", self.0)));
        delete_user(&self.0);
    }
}

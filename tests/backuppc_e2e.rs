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

use common::world::make_tree;
use common::*;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/share/backuppc/bin";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run `cmd`, killing it after `limit` (BackupPC's own ClientTimeout is
/// 20 hours, so every step gets its own bound).
fn within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} did not finish within {limit:?}: {}\n{}", text(&out.stdout), text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command run as backuppc inside the namespace of process `ns`.
fn as_backuppc(ns: u32, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--target={ns}"))
        .args([
            "--mount",
            "--",
            "setpriv",
            "--reuid=backuppc",
            "--regid=backuppc",
            "--init-groups",
            "--reset-env",
            "--",
        ])
        .arg(program)
        .args(args);
    c
}

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

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_backuppc() {
    require_root();
    for p in [format!("{BIN}/BackupPC"), "/usr/libexec/backuppc-rsync/rsync_bpc".into(), "/usr/bin/nsenter".into()] {
        assert!(Path::new(&p).exists(), "{p} is missing: run the README's test command, which installs backuppc");
    }
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

    // The server: a copy of Debian's BackupPC config, a fresh TopDir.
    let etc = dir.join("etc-backuppc");
    run_ok(Command::new("cp").arg("-a").arg("/etc/backuppc").arg(&etc));
    // The stock `localhost` host is the one this test enrolls.
    let hosts = fs::read_to_string(etc.join("hosts")).unwrap();
    let hosts: String = hosts.lines().filter(|l| !l.starts_with("localhost")).map(|l| format!("{l}\n")).collect();
    fs::write(etc.join("hosts"), &hosts).unwrap();
    let _ = fs::remove_file(etc.join("localhost.pl"));
    let top = dir.mkdir("var-backuppc");
    let run_dir = dir.mkdir("run-backuppc");
    for d in ["pc", "pool", "cpool", "log", ".ssh"] {
        fs::create_dir_all(top.join(d)).unwrap();
    }
    let mut cfg = fs::read_to_string(etc.join("config.pl")).unwrap();
    // Server setup an admin would do on a test box: where the daemon's
    // socket lives, and no SMB tools needed.
    writeln!(cfg, "$Conf{{RunDir}} = '{}';", run_dir.display()).unwrap();
    writeln!(cfg, "$Conf{{SmbClientPath}} = '';\n$Conf{{NmbLookupPath}} = '';\n$Conf{{NmbLookupCmd}} = '';").unwrap();
    fs::write(etc.join("config.pl"), cfg).unwrap();
    run_ok(Command::new("chown").args(["-R", "backuppc:backuppc"]).arg(&top).arg(&run_dir));
    chmod(&top, 0o750);
    chmod(&top.join(".ssh"), 0o700);

    // forced-command behind the register key, for the backuppc account.
    let enroll_etc = dir.mkdir("etc-enroll");
    let registry = dir.mkdir("registry");
    run_ok(Command::new("chown").args(["backuppc:backuppc"]).arg(&registry));
    let data = dir.mkdir("data");
    make_tree(&data);
    std::os::unix::fs::chown(data.join("plain.txt"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(data.join("sub/deeper"), Some(4321), Some(8765)).unwrap();
    let restore_area = dir.mkdir("restore");
    fs::write(enroll_etc.join("logons"), "cmartin\n").unwrap();
    let server_toml = enroll_etc.join("server.toml");
    fs::write(
        &server_toml,
        format!(
            "url = \"https://backup.example.org/backuppc/index.cgi?host={{host}}\"\nlogon_check = \"file\"\n\
             logon_file = {:?}\nregistry = {:?}\naudit_log = {:?}\n[shares]\nlinux = [{:?}, {:?}]\n",
            enroll_etc.join("logons"),
            registry.join("registry.json"),
            registry.join("audit.log"),
            data,
            restore_area
        ),
    )
    .unwrap();
    let register_key = enroll_etc.join("register-key");
    let register_pub = keygen(&register_key, "register key");
    let ak = top.join(".ssh/authorized_keys");
    fs::write(
        &ak,
        format!(
            "restrict,command=\"{} --config {}\" {register_pub}\n",
            bins.forced_command.display(),
            server_toml.display()
        ),
    )
    .unwrap();
    run_ok(Command::new("chown").args(["backuppc:backuppc"]).arg(&ak));
    chmod(&ak, 0o600);

    // One sshd plays both the server (backuppc, behind its forced command)
    // and the workstation (the backup user, behind rsyncsend). It runs in
    // the namespace where the copies are mounted; PAM as on Debian, which
    // accepts backuppc's locked password for key logins.
    let mounts = vec![(etc.clone(), PathBuf::from("/etc/backuppc")), (top.clone(), PathBuf::from("/var/lib/backuppc"))];
    let sshd_dir = dir.join("sshd");
    let sshd = Sshd::start_with(
        &sshd_dir,
        &["backuppc", &backup_user],
        SshdOptions { extra_config: "UsePAM yes\n".into(), mounts: mounts.clone(), ..Default::default() },
    );
    let ns = sshd.pid();

    // The BackupPC daemon, started by the test, stopped by pid.
    let daemon_log = fs::File::create(dir.join("daemon.log")).unwrap();
    let daemon = Daemon(
        as_backuppc(ns, &format!("{BIN}/BackupPC"), &[])
            .stdin(Stdio::null())
            .stdout(daemon_log.try_clone().unwrap())
            .stderr(daemon_log)
            .spawn()
            .unwrap(),
    );
    let mesg =
        |what: &[&str]| within(as_backuppc(ns, &format!("{BIN}/BackupPC_serverMesg"), what), Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(run_dir.join("BackupPC.sock").exists() && mesg(&["status", "info"]).status.success()) {
        assert!(
            Instant::now() < deadline,
            "BackupPC did not start: {}",
            fs::read_to_string(dir.join("daemon.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let known = text(&mesg(&["status", "hosts"]).stdout);
    assert!(!known.contains("\"localhost\""), "localhost is not a BackupPC host yet: {known}");

    // The workstation enrolls.
    let client_etc = dir.mkdir("etc-client");
    fs::write(client_etc.join("server_host_keys"), sshd.known_hosts_line()).unwrap();
    let client_toml = client_etc.join("client.toml");
    let client_cfg = format!(
        "server = \"127.0.0.1\"\nport = {port}\nserver_host_keys = {:?}\nregister_key = {:?}\nbackup_user = {backup_user:?}\n\
         backup_home = {:?}\nrsyncsend = {:?}\nstate_file = {:?}\nhostname = \"localhost\"\nsshd_port = {port}\n\
         host_keys = [{:?}]\nrestore = true\n",
        client_etc.join("server_host_keys"),
        register_key,
        dir.join("clienthome"),
        bins.rsyncsend,
        dir.mkdir("state").join("client-state.json"),
        sshd.host_pub_path,
        port = sshd.port
    );
    fs::write(&client_toml, &client_cfg).unwrap();
    let out = Command::new(&bins.enroll)
        .arg("--config")
        .arg(&client_toml)
        .args(["--logon", "cmartin", "--yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enroll: {}\n{}\nsshd: {}\naudit: {}",
        text(&out.stdout),
        text(&out.stderr),
        fs::read_to_string(&sshd.log).unwrap(),
        fs::read_to_string(registry.join("audit.log")).unwrap_or_default()
    );
    let audit = fs::read_to_string(registry.join("audit.log")).unwrap();
    assert!(audit.contains("\"backuppc_reload\":\"ok\""), "forced-command told BackupPC to reload: {audit}");
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
        SshdOptions { extra_config: "UsePAM yes\n".into(), mounts, host_key: Some(other_key), port: Some(port) },
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

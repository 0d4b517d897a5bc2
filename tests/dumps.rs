//! Application dumps before a backup, with the real parts: a private
//! PostgreSQL 15 cluster from Debian (its own folder and Unix socket, run
//! as `postgres`, stopped by pid), a real BackupPC 4 (as in
//! backuppc_e2e.rs) backing up a workstation enrolled on loopback, and
//! the server asking for the dumps only through the per-host key.

mod common;

use common::backuppc::*;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn require_postgresql() {
    for p in ["initdb", "pg_ctl", "psql", "pg_dump", "pg_dumpall", "pg_restore"] {
        let p = Path::new(PG_BIN).join(p);
        assert!(p.exists(), "{} is missing: run the README's test command, which installs postgresql", p.display());
    }
}

/// A private PostgreSQL cluster: data and socket in the test folder, no
/// TCP listener, peer authentication on the socket.
struct Pg {
    data: PathBuf,
    sock: PathBuf,
    port: u16,
    log: PathBuf,
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(Path::new(PG_BIN).join(program)).current_dir("/").env("LC_ALL", "C");
    c
}

impl Pg {
    fn init(dir: &TestDir) -> Pg {
        let root = dir.mkdir("pg");
        let data = root.join("data");
        let sock = root.join("sock");
        fs::create_dir(&sock).unwrap();
        run_ok(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root));
        chmod(&sock, 0o755);
        run_ok(as_postgres("initdb").arg("-D").arg(&data).args([
            "--auth-local=peer",
            "--auth-host=reject",
            "-U",
            "postgres",
        ]));
        let port = 20000 + (std::process::id() % 10000) as u16;
        let pg = Pg { data, sock, port, log: root.join("postgres.log") };
        pg.start();
        pg
    }

    fn start(&self) {
        let opts = format!("-k {} -p {} -c listen_addresses=", self.sock.display(), self.port);
        run_ok(
            as_postgres("pg_ctl").arg("-D").arg(&self.data).arg("-l").arg(&self.log).args(["-o", &opts, "-w", "start"]),
        );
    }

    fn pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Fast shutdown by the postmaster's pid; returns once it is gone.
    fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while nix::sys::signal::kill(pid, None).is_ok() {
            if Instant::now() > deadline {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = run_ok(as_postgres("psql").arg("-h").arg(&self.sock).args([
            "-p",
            &self.port.to_string(),
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ]));
        text(&out.stdout)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}

const ROWS: &str = "SELECT id || ':' || body FROM posts ORDER BY id";

/// A root-owned file only root can write.
fn write_root(path: &Path, contents: &str, mode: u32) {
    fs::write(path, contents).unwrap();
    chmod(path, mode);
}

fn sha256_hex(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    text(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn status(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The rows of BackupPC's `backups` file: (num, type, xferErrs).
fn backups(top: &Path) -> Vec<(String, String, u64)> {
    let text = fs::read_to_string(top.join("pc/localhost/backups")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[10].parse().unwrap())
        })
        .collect()
}

#[test]
fn postgresql_dump_taken_before_the_backup_restores_to_the_backup_moment() {
    require_backuppc();
    require_postgresql();
    let dir = TestDir::new("dumps");
    let bins = install_bins(&dir);
    let backup_user = unique("bpdb");
    let _cleanup = UserGuard(backup_user.clone());
    let pg = Pg::init(&dir);

    // The application: its database, a config folder and a data folder,
    // and the folder its dump goes to, all in one share.
    let app = dir.mkdir("app");
    let (config, data, dumps) = (dir.mkdir("app/config"), dir.mkdir("app/data"), dir.mkdir("app/dumps"));
    chmod(&dumps, 0o700);
    pg.psql("postgres", "CREATE DATABASE mattermost");
    pg.psql("mattermost", "CREATE TABLE posts (id int PRIMARY KEY, body text); INSERT INTO posts VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    fs::write(config.join("config.json"), "{\"SiteURL\": \"https://chat.example.org\", \"v\": 1}\n").unwrap();
    fs::write(data.join("attachment.bin"), vec![1u8; 50_000]).unwrap();

    let bpc = BackupPc::new(&dir, &bins.forced_command, &format!("[shares]\nlinux = [{app:?}]\n"));
    let top = bpc.top.clone();
    let sshd = bpc.sshd(&dir.join("sshd"), &["backuppc", &backup_user], "");
    let ns = sshd.pid();
    let daemon = bpc.start_daemon(&dir, ns);

    // The workstation declares the dump (root-owned drop-in) and enrolls.
    let dumps_d = dir.mkdir("dumps.d");
    let declaration = dumps_d.join("mattermost.toml");
    let declare = |on_failure: &str| {
        write_root(
            &declaration,
            &format!(
                "[dump]\nname = \"mattermost\"\nkind = \"postgresql\"\noutput = {dumps:?}\ndatabase = \"mattermost\"\n\
                 host = {:?}\nport = {}\nbin_dir = {PG_BIN:?}\ntimeout = 120\non_failure = {on_failure:?}\n",
                pg.sock, pg.port
            ),
            0o644,
        )
    };
    declare("fail");
    bpc.enroll_workstation(&dir, &bins, &sshd, &backup_user, &format!("dumps_dir = {dumps_d:?}\n"));
    let per_host = fs::read_to_string(bpc.etc.join("localhost.pl")).unwrap();
    assert!(per_host.contains("$Conf{UserCmdCheckStatus} = 1;"), "{per_host}");
    assert!(per_host.contains(" $hostIP run-dumps';"), "{per_host}");

    let dump = |flag: &str| {
        within(as_backuppc(ns, &format!("{BIN}/BackupPC_dump"), &[flag, "-v", "localhost"]), Duration::from_secs(240))
    };
    // forced-command verify, in the namespace where BackupPC's folders are.
    let verify = |extra: &[&str]| -> (bool, serde_json::Value) {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={ns}")).args(["--mount", "--"]).arg(&bins.forced_command);
        c.arg("--config").arg(&bpc.server_toml).arg("verify").args(extra).arg("--json");
        let out = within(c, Duration::from_secs(120));
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify --json: {e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
        (out.status.success(), report)
    };
    let problems = |r: &serde_json::Value| r[0]["problems"].to_string();
    // A full backup: the dump is taken first, then copied with the files.
    let out = dump("-f");
    assert!(out.status.success(), "BackupPC_dump -f: {}\n{}", text(&out.stdout), text(&out.stderr));
    let rows = backups(&top);
    assert_eq!(rows.len(), 1, "one backup: {}", text(&out.stdout));
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("full", 0), "a full backup without transfer errors");
    let first_num = rows[0].0.clone();
    let dump_file = dumps.join("mattermost.pgdump");
    let first_sha = sha256_hex(&dump_file);
    let st = status(&dumps.join("mattermost.status.json"));
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["sha256"], first_sha.as_str(), "the status records the dump's sha256");
    assert_eq!(st["size"], fs::metadata(&dump_file).unwrap().len());
    assert!(st["tool_version"].as_str().unwrap().starts_with("pg_dump (PostgreSQL) 15"), "{st}");
    let m = fs::metadata(&dump_file).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o600), "the dump is root's alone");
    assert!(fs::read_to_string(dumps.join("mattermost.globals.sql")).unwrap().contains("CREATE ROLE postgres"));

    // verify: healthy, its dump found inside the backup; too old for a
    // zero-hour threshold.
    let (ok, r) = verify(&[]);
    assert!(ok, "every enrolled host healthy: {r}");
    assert_eq!(r[0]["host"], "localhost");
    assert_eq!(r[0]["last_backup"]["type"], "full");
    assert_eq!(r[0]["dumps"][0]["status"]["name"], "mattermost", "{r}");
    assert_eq!(r[0]["dumps"][0]["status"]["ok"], true);
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, r) = verify(&["localhost", "--max-age", "0"]);
    assert!(!ok, "stale: {r}");
    assert!(problems(&r).contains("more than 0 h"), "{r}");

    // The application goes on after the backup.
    pg.psql("mattermost", "INSERT INTO posts VALUES (4, 'four'); UPDATE posts SET body = 'ONE' WHERE id = 1; DELETE FROM posts WHERE id = 2");
    fs::write(config.join("config.json"), "{\"v\": 2}\n").unwrap();
    fs::write(data.join("attachment.bin"), b"changed").unwrap();

    // Restore the share from the full backup with BackupPC's own tool and
    // load the dump into a fresh database: exactly the rows of the moment.
    let restored = restore_share(ns, &first_num, &app, &dir.mkdir("restored"));
    assert_eq!(
        fs::read_to_string(restored.join("config/config.json")).unwrap(),
        "{\"SiteURL\": \"https://chat.example.org\", \"v\": 1}\n"
    );
    assert_eq!(fs::read(restored.join("data/attachment.bin")).unwrap(), vec![1u8; 50_000]);
    let in_backup = status(&restored.join("dumps/mattermost.status.json"));
    assert_eq!(in_backup["ok"], true);
    assert_eq!(
        sha256_hex(&restored.join("dumps/mattermost.pgdump")),
        first_sha,
        "the dump in the backup is the one taken"
    );
    pg.psql("postgres", "CREATE DATABASE scratch");
    let load = restored.join("dumps/mattermost.pgdump");
    let readable = pg.data.parent().unwrap().join("load.pgdump");
    fs::copy(&load, &readable).unwrap();
    run_ok(Command::new("chown").arg("postgres").arg(&readable));
    run_ok(
        as_postgres("pg_restore")
            .arg("-h")
            .arg(&pg.sock)
            .args(["-p", &pg.port.to_string(), "-d", "scratch"])
            .arg(&readable),
    );
    assert_eq!(pg.psql("scratch", ROWS), "1:one\n2:two\n3:three\n", "the rows at the backup moment");
    assert_eq!(pg.psql("mattermost", ROWS), "1:ONE\n3:three\n4:four\n", "the live database moved on");

    // PostgreSQL down: the backup fails, BackupPC's log names the dump and
    // the reason, and the previous dump stays.
    pg.stop();
    let good = |top: &Path| backups(top).into_iter().filter(|r| r.1 != "partial").count();
    let before = good(&top);
    let out = dump("-i");
    let log = xfer_log(ns, &top, &latest_xfer_log(&top));
    assert!(text(&out.stdout).contains("dump failed: DumpPreUserCmd returned error status"), "{}", text(&out.stdout));
    assert_eq!(good(&top), before, "no new good backup (at most a partial one): {:?}", backups(&top));
    assert!(log.contains("DumpPreUserCmd returned error status"), "BackupPC's XferLOG: {log}");
    assert!(log.contains("dump mattermost failed: pg_dump"), "the dump is named: {log}");
    assert!(log.contains("sock") && log.contains("connection"), "the reason is given: {log}");
    assert!(log.contains("the previous dump is kept"), "{log}");
    assert_eq!(sha256_hex(&dump_file), first_sha, "the previous dump is still there");
    let st = status(&dumps.join("mattermost.status.json"));
    assert_eq!(st["ok"], false, "{st}");
    assert!(st["error"].as_str().unwrap().contains("pg_dump exited with status 1"), "{st}");
    assert_eq!(st["sha256"], first_sha.as_str(), "the status points at the dump still in place");
    assert!(
        fs::read_dir(&dumps).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")),
        "no temporary file left"
    );

    let (ok, r) = verify(&["localhost"]);
    assert!(!ok && problems(&r).contains("did not finish"), "the failed backup is reported: {r}");

    // With on_failure = "continue" the next backup succeeds and carries
    // the previous dump and the status saying the last run failed.
    declare("continue");
    let out = dump("-f");
    assert!(out.status.success(), "BackupPC_dump: {}\n{}", text(&out.stdout), text(&out.stderr));
    let rows = backups(&top);
    assert_eq!(good(&top), before + 1, "{rows:?}");
    assert_eq!((rows.last().unwrap().1.as_str(), rows.last().unwrap().2), ("full", 0), "{rows:?}");
    let log = xfer_log(ns, &top, &format!("XferLOG.{}.z", rows.last().unwrap().0));
    assert!(log.contains("dump mattermost failed"), "the failure is said in the log: {log}");
    let again = restore_share(ns, &rows.last().unwrap().0, &app, &dir.mkdir("restored2"));
    assert_eq!(
        sha256_hex(&again.join("dumps/mattermost.pgdump")),
        first_sha,
        "the previous dump is in the next backup"
    );
    assert_eq!(status(&again.join("dumps/mattermost.status.json"))["ok"], false);

    let (ok, r) = verify(&["localhost"]);
    assert!(!ok, "a failed dump inside the last backup: {r}");
    assert!(problems(&r).contains("dump mattermost failed at"), "{r}");
    assert!(problems(&r).contains("pg_dump exited with status 1"), "{r}");

    // PostgreSQL back: a fresh dump of the current rows.
    pg.start();
    declare("fail");
    let out = dump("-i");
    assert!(out.status.success(), "BackupPC_dump -i: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(sha256_hex(&dump_file), first_sha, "a new dump");
    assert_eq!(status(&dumps.join("mattermost.status.json"))["ok"], true);
    let (ok, r) = verify(&["localhost"]);
    assert!(ok, "healthy again: {r}");

    // A file in the share that even root cannot read (a write-only sysfs
    // file bound over it, in the namespace where rsync runs): the backup
    // finishes with a transfer error in BackupPC's own `backups` file,
    // and verify reports it and exits non-zero.
    let unreadable = data.join("unreadable");
    fs::write(&unreadable, b"").unwrap();
    let in_ns = |args: &[&str]| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={ns}")).args(["--mount", "--"]).args(args);
        run_ok(&mut c);
    };
    in_ns(&["mount", "--bind", "/sys/bus/pci/rescan", unreadable.to_str().unwrap()]);
    let out = dump("-i");
    in_ns(&["umount", unreadable.to_str().unwrap()]);
    let rows = backups(&top);
    let last = rows.last().unwrap();
    assert!(out.status.success(), "BackupPC_dump -i: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(last.2 > 0, "BackupPC counted the transfer error: {rows:?}");
    let (ok, r) = verify(&["localhost"]);
    assert!(!ok, "transfer errors in the last backup: {r}");
    assert!(problems(&r).contains(&format!("the last backup (#{}) had errors: xferErrs {}", last.0, last.2)), "{r}");
    assert_eq!(r[0]["dumps"][0]["status"]["ok"], true, "its dump is fine all the same: {r}");
    drop(daemon);
}

/// A workstation enrolled on loopback with a `command` dump that counts
/// its runs in a marker file, for the refusals below.
struct Hostile {
    w: common::world::World,
    dumps_d: PathBuf,
    out: PathBuf,
    marker: PathBuf,
}

impl Hostile {
    fn new() -> Hostile {
        let w = common::world::World::new(common::world::Options::default());
        let dumps_d = w.dir.mkdir("dumps.d");
        let mut c = fs::read_to_string(&w.client_toml).unwrap();
        c.push_str(&format!("dumps_dir = {dumps_d:?}\n"));
        fs::write(&w.client_toml, c).unwrap();
        w.enroll_ok(&["--logon", "cmartin", "--yes"]);
        let out = w.data.join("dumps");
        fs::create_dir(&out).unwrap();
        chmod(&out, 0o700);
        let marker = w.dir.join("marker.log");
        let h = Hostile { w, dumps_d, out, marker };
        h.declare("marker.toml", "marker", &h.out, "/bin/sh");
        h
    }

    /// A command dump `name` running `program -c 'echo ran; echo x >> MARKER'`.
    fn declare(&self, file: &str, name: &str, out: &Path, program: &str) {
        write_root(
            &self.dumps_d.join(file),
            &format!(
                "[dump]\nname = {name:?}\nkind = \"command\"\noutput = {out:?}\nuser = \"root\"\ntimeout = 20\n\
                 argv = [{program:?}, \"-c\", \"echo ran; echo {name} >> {}\"]\n",
                self.marker.display()
            ),
            0o644,
        );
    }

    /// `enroll SUBCOMMAND… --config CLIENT` (the option after the
    /// subcommand: before it, clap takes it for an enrollment's).
    fn enroll(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.w.bins.enroll)
            .args(args)
            .arg("--config")
            .arg(&self.w.client_toml)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn runs(&self) -> usize {
        fs::read_to_string(&self.marker).map(|t| t.lines().count()).unwrap_or(0)
    }

    /// `command` over the per-host key must be refused with `why` in its
    /// one line, and run nothing.
    fn refused(&self, command: &str, why: &str) {
        let before = self.runs();
        let out = self.w.ssh_as_server("localhost", command);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{command:?} must be refused: {err}");
        assert!(err.contains(why), "{command:?}: {why:?} not in {err:?}");
        assert!(err.contains("rsyncsend: refused"), "{command:?}: {err}");
        assert_eq!(self.runs(), before, "{command:?}: nothing ran");
    }
}

#[test]
fn the_server_can_trigger_the_declared_dumps_and_nothing_else() {
    let h = Hostile::new();
    let out = h.w.ssh_as_server("localhost", "run-dumps");
    assert!(out.status.success(), "run-dumps: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("dump marker: ok, 4 bytes"), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(h.out.join("marker.out")).unwrap(), "ran\n");
    assert_eq!(h.runs(), 1);

    for (command, why) in [
        ("run-dumps marker", "takes no arguments"),
        ("run-dumps --all", "takes no arguments"),
        ("run-dumps;id", "takes no arguments"),
        ("run-dumps && touch /tmp/pwned", "takes no arguments"),
        ("run-dumps $(id)", "takes no arguments"),
        ("run-dumps\nrun-dumps", "takes no arguments"),
        (" run-dumps", "takes no arguments"),
        ("RUN-DUMPS", "takes no arguments"),
        ("'run-dumps'", "refused"),
        ("rsyncsend run-dumps", "refused"),
        ("sudo -n rsyncsend run-dumps", "refused"),
        ("/bin/sh -c run-dumps", "refused"),
    ] {
        h.refused(command, why);
    }

    // A shell as the backup account gets no further through sudo: the
    // line allows exactly `run-dumps` with the fixed config.
    let cfg = h.w.client_toml.display().to_string();
    let rs = h.w.bins.rsyncsend.display().to_string();
    for args in [
        vec!["-n", "--", &rs, "--config", &cfg, "run-dumps", "marker"],
        vec!["-n", "--", &rs, "--config", "/tmp/other.toml", "run-dumps"],
        vec!["-n", "--", &rs, "--config", &cfg, "run-dumps", "--help"],
    ] {
        let out =
            Command::new("runuser").args(["-u", &h.w.backup_user, "--", "/usr/bin/sudo"]).args(&args).output().unwrap();
        assert!(!out.status.success(), "sudo {args:?} must be refused");
        assert!(
            text(&out.stderr).contains("password is required") || text(&out.stderr).contains("not allowed"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = Command::new("runuser")
        .args(["-u", &h.w.backup_user, "--", "/usr/bin/sudo", "-n", "--", &rs, "--config", &cfg, "run-dumps"])
        .output()
        .unwrap();
    assert!(out.status.success(), "the exact line is allowed: {}", text(&out.stderr));
    assert_eq!(h.runs(), 2);
}

#[test]
fn declarations_someone_else_could_change_are_refused_and_nothing_runs() {
    let h = Hostile::new();
    let (uid, gid) = {
        let u = nix::unistd::User::from_name(&h.w.backup_user).unwrap().unwrap();
        (u.uid.as_raw(), u.gid.as_raw())
    };
    let bad = h.dumps_d.join("zz-bad.toml");

    // Output folder outside the shares.
    let outside = h.w.dir.mkdir("outside");
    chmod(&outside, 0o700);
    h.declare("zz-bad.toml", "outside", &outside, "/bin/sh");
    h.refused("run-dumps", "is outside the shares");
    fs::remove_file(&bad).unwrap();

    // A declaration writable by others, or owned by the backup account.
    h.declare("zz-bad.toml", "other", &h.out, "/bin/sh");
    chmod(&bad, 0o646);
    h.refused("run-dumps", "must be owned by root and writable by root only");
    chmod(&bad, 0o644);
    std::os::unix::fs::chown(&bad, Some(uid), Some(gid)).unwrap();
    h.refused("run-dumps", "must be owned by root and writable by root only");
    fs::remove_file(&bad).unwrap();

    // The dumps folder or the output folder writable by others.
    chmod(&h.dumps_d, 0o777);
    h.refused("run-dumps", "the dumps folder");
    chmod(&h.dumps_d, 0o755);
    chmod(&h.out, 0o777);
    h.refused("run-dumps", "the output folder of dump marker");
    chmod(&h.out, 0o700);

    // A program that is a symlink (in a root-owned folder) to a file the
    // backup account can write, or a root-owned program in a folder it
    // can write.
    let user_bin = h.w.dir.mkdir("user-bin");
    std::os::unix::fs::chown(&user_bin, Some(uid), Some(gid)).unwrap();
    let evil = user_bin.join("tool");
    fs::copy("/bin/sh", &evil).unwrap();
    chmod(&evil, 0o755);
    std::os::unix::fs::chown(&evil, Some(uid), Some(gid)).unwrap();
    let root_bin = h.w.dir.mkdir("root-bin");
    std::os::unix::fs::symlink(&evil, root_bin.join("tool")).unwrap();
    h.declare("zz-bad.toml", "linked", &h.out, &root_bin.join("tool").display().to_string());
    h.refused("run-dumps", &format!("(the target of {}) must be owned by root", root_bin.join("tool").display()));
    std::os::unix::fs::chown(&evil, Some(0), Some(0)).unwrap();
    h.refused("run-dumps", &format!("the folder {} above the program of dump linked", user_bin.display()));
    assert!(!text(&fs::read(&h.marker).unwrap_or_default()).contains("linked"), "the linked program never ran");
    // A root-owned program in a root-owned folder, inside a folder the
    // backup account owns: it could rename `bin` away after the check.
    let app = h.w.dir.mkdir("app-of-user");
    std::os::unix::fs::chown(&app, Some(uid), Some(gid)).unwrap();
    let deep = h.w.dir.mkdir("app-of-user/bin");
    fs::copy("/bin/true", deep.join("tool")).unwrap();
    h.declare("zz-bad.toml", "deep", &h.out, &deep.join("tool").display().to_string());
    h.refused("run-dumps", &format!("the folder {} above the program of dump deep", app.display()));
    fs::remove_file(&bad).unwrap();

    // Put right, the dumps run again; an output folder of root's inside
    // a folder of the application's account (/opt/mattermost/dumps) is
    // accepted.
    let app_dir = h.w.data.join("app-owned");
    fs::create_dir(&app_dir).unwrap();
    std::os::unix::fs::chown(&app_dir, Some(uid), Some(gid)).unwrap();
    let app_dumps = app_dir.join("dumps");
    fs::create_dir(&app_dumps).unwrap();
    chmod(&app_dumps, 0o700);
    h.declare("app.toml", "app", &app_dumps, "/bin/sh");
    let out = h.w.ssh_as_server("localhost", "run-dumps");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(h.runs(), 2);
    assert_eq!(fs::read_to_string(app_dumps.join("app.out")).unwrap(), "ran\n");
}

#[test]
fn a_person_takes_and_lists_the_dumps_by_hand() {
    let h = Hostile::new();
    let out = h.enroll(&["dumps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.contains("marker") && listed.contains("never"), "not run yet: {listed}");

    let out = h.enroll(&["dump", "marker"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dump marker: ok, 4 bytes"), "{}", text(&out.stdout));
    assert_eq!(h.runs(), 1);

    // A failing second dump: --all runs both, says which failed, exits 1.
    write_root(
        &h.dumps_d.join("broken.toml"),
        &format!(
            "[dump]\nname = \"broken\"\nkind = \"command\"\noutput = {:?}\nuser = \"nobody\"\n\
             argv = [\"/bin/sh\", \"-c\", \"echo half; echo cannot reach the app >&2; exit 3\"]\n",
            h.out
        ),
        0o644,
    );
    let out = h.enroll(&["dump", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("exited with status 3: cannot reach the app (no previous dump)"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("broken failed"), "{}", text(&out.stderr));
    assert_eq!(h.runs(), 2, "the other dump ran too");
    assert!(!h.out.join("broken.out").exists(), "a failed dump leaves no file");

    let out = h.enroll(&["dumps", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| list.as_array().unwrap().iter().find(|d| d["name"] == n).unwrap().clone();
    assert_eq!(by_name("marker")["status"]["ok"], true);
    assert_eq!(by_name("broken")["status"]["ok"], false);
    assert_eq!(by_name("broken")["status"]["exit_status"], 3);
    assert!(text(&h.enroll(&["dumps"]).stdout).contains("FAILED"));

    // Bounded in time (the whole process group killed) and in size.
    for (name, limit, script, why) in [
        ("slow", "timeout = 1", "sleep 30 & sleep 30", "did not finish within 1 s and was killed"),
        (
            "big",
            "max_size = 1000",
            "head -c 100000 /dev/zero",
            "output grew past max_size (1000 bytes) and it was killed",
        ),
    ] {
        write_root(
            &h.dumps_d.join(format!("{name}.toml")),
            &format!(
                "[dump]\nname = {name:?}\nkind = \"command\"\noutput = {:?}\nuser = \"nobody\"\n{limit}\n\
                 argv = [\"/bin/sh\", \"-c\", {script:?}]\n",
                h.out
            ),
            0o644,
        );
        let started = Instant::now();
        let out = h.enroll(&["dump", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains(why), "{name}: {}", text(&out.stdout));
        assert!(started.elapsed() < Duration::from_secs(20), "{name}: stopped in time");
        assert!(!h.out.join(format!("{name}.out")).exists());
        let left = Command::new("pgrep").args(["-u", "nobody", "-f", "sleep 30"]).output().unwrap().stdout;
        assert!(left.is_empty(), "{name}: nothing of its process group left: {}", text(&left));
        fs::remove_file(h.dumps_d.join(format!("{name}.toml"))).unwrap();
    }

    let out = h.enroll(&["dump", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no dump named \"nosuch\" is declared (declared: broken, marker)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(h.runs(), 2);
}

/// The share `share` of backup `num`, through BackupPC_tarCreate (as
/// backuppc, in the namespace of process `ns`), unpacked into `dest`.
fn restore_share(ns: u32, num: &str, share: &Path, dest: &Path) -> PathBuf {
    let share = share.display().to_string();
    let out = within(
        as_backuppc(ns, &format!("{BIN}/BackupPC_tarCreate"), &["-h", "localhost", "-n", num, "-s", &share, "/"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "BackupPC_tarCreate: {}", text(&out.stderr));
    let tar = dest.with_extension("tar");
    fs::write(&tar, &out.stdout).unwrap();
    run_ok(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(dest));
    dest.to_path_buf()
}

/// The name of the XferLOG BackupPC wrote last for localhost.
fn latest_xfer_log(top: &Path) -> String {
    let dir = top.join("pc/localhost");
    let mut logs: Vec<(std::time::SystemTime, String)> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| (e.metadata().unwrap().modified().unwrap(), e.file_name().to_string_lossy().into_owned()))
        .filter(|(_, n)| n.starts_with("XferLOG"))
        .collect();
    logs.sort();
    logs.pop().map(|(_, n)| n).unwrap_or_else(|| panic!("no XferLOG in {}", dir.display()))
}

/// A compressed XferLOG of localhost, through BackupPC_zcat.
fn xfer_log(ns: u32, top: &Path, name: &str) -> String {
    let path = top.join("pc/localhost").join(name);
    let out = within(
        as_backuppc(ns, &format!("{BIN}/BackupPC_zcat"), &[&path.display().to_string()]),
        Duration::from_secs(30),
    );
    text(&out.stdout)
}

/// Removes the backup user `enroll` created, whatever happens.
struct UserGuard(String);

impl Drop for UserGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(Path::new("/etc/sudoers.d").join(format!("backuppc-enroll-{}", self.0)));
        delete_user(&self.0);
    }
}

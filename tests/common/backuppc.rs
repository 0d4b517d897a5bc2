//! A real BackupPC 4 server for the tests and benches (Debian's `backuppc`
//! and `backuppc-rsync`): copies of its config folder and a fresh TopDir,
//! bind-mounted over /etc/backuppc and /var/lib/backuppc in a private mount
//! namespace that only the test's sshd, daemon and tools see, with
//! `forced-command` behind a register key of the `backuppc` account.
//!
//! BackupPC's config folder is fixed at /etc/backuppc in Debian's build,
//! hence the namespace: the machine's own /etc/backuppc and
//! /var/lib/backuppc are never written.

use super::*;
use std::fmt::Write as _;

pub const BIN: &str = "/usr/share/backuppc/bin";

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run `cmd`, killing it after `limit` (BackupPC's own ClientTimeout is
/// 20 hours, so every step gets its own bound).
pub fn within(mut cmd: Command, limit: Duration) -> Output {
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
pub fn as_backuppc(ns: u32, program: &str, args: &[&str]) -> Command {
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

/// The BackupPC daemon, started by the test, stopped by its pid.
pub struct Daemon(pub Child);

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

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

pub fn require_backuppc() {
    require_root();
    for p in [format!("{BIN}/BackupPC"), "/usr/libexec/backuppc-rsync/rsync_bpc".into(), "/usr/bin/nsenter".into()] {
        assert!(Path::new(&p).exists(), "{p} is missing: run the README's test command, which installs backuppc");
    }
}

/// The server side: BackupPC's copies and forced-command's config, key
/// and registry, all in the test folder.
pub struct BackupPc {
    /// Mounted over /etc/backuppc.
    pub etc: PathBuf,
    /// Mounted over /var/lib/backuppc.
    pub top: PathBuf,
    /// `$Conf{RunDir}`: the daemon's socket and pid file.
    pub run_dir: PathBuf,
    pub enroll_etc: PathBuf,
    pub registry: PathBuf,
    pub server_toml: PathBuf,
    pub register_key: PathBuf,
}

impl BackupPc {
    /// Copy Debian's BackupPC config (without its stock `localhost` host,
    /// the one the tests enroll) and make a fresh TopDir; write
    /// server.toml (`server_extra`: more top-level lines, then tables such
    /// as `[shares]`) and put forced-command behind the register key.
    pub fn new(dir: &TestDir, forced_command: &Path, server_extra: &str) -> BackupPc {
        let etc = dir.join("etc-backuppc");
        run_ok(Command::new("cp").arg("-a").arg("/etc/backuppc").arg(&etc));
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
        writeln!(cfg, "$Conf{{SmbClientPath}} = '';\n$Conf{{NmbLookupPath}} = '';\n$Conf{{NmbLookupCmd}} = '';")
            .unwrap();
        fs::write(etc.join("config.pl"), cfg).unwrap();
        run_ok(Command::new("chown").args(["-R", "backuppc:backuppc"]).arg(&top).arg(&run_dir));
        chmod(&top, 0o750);
        chmod(&top.join(".ssh"), 0o700);

        let enroll_etc = dir.mkdir("etc-enroll");
        let registry = dir.mkdir("registry");
        run_ok(Command::new("chown").args(["backuppc:backuppc"]).arg(&registry));
        fs::write(enroll_etc.join("logons"), "cmartin\n").unwrap();
        let server_toml = enroll_etc.join("server.toml");
        fs::write(
            &server_toml,
            format!(
                "url = \"https://backup.example.org/backuppc/index.cgi?host={{host}}\"\nlogon_check = \"file\"\n\
                 logon_file = {:?}\nregistry = {:?}\naudit_log = {:?}\n{server_extra}",
                enroll_etc.join("logons"),
                registry.join("registry.json"),
                registry.join("audit.log"),
            ),
        )
        .unwrap();
        let register_key = enroll_etc.join("register-key");
        let register_pub = keygen(&register_key, "register key");
        let bpc = BackupPc { etc, top, run_dir, enroll_etc, registry, server_toml, register_key };
        bpc.authorize(&format!(
            "restrict,command=\"{} --config {}\" {register_pub}",
            forced_command.display(),
            bpc.server_toml.display()
        ));
        bpc
    }

    /// Append a line to backuppc's authorized_keys.
    pub fn authorize(&self, line: &str) {
        let ak = self.top.join(".ssh/authorized_keys");
        let mut keys = fs::read_to_string(&ak).unwrap_or_default();
        keys.push_str(line);
        keys.push('\n');
        fs::write(&ak, keys).unwrap();
        run_ok(Command::new("chown").args(["backuppc:backuppc"]).arg(&ak));
        chmod(&ak, 0o600);
    }

    /// The bind mounts of the namespace: the copies over the real folders.
    pub fn mounts(&self) -> Vec<(PathBuf, PathBuf)> {
        vec![(self.etc.clone(), PathBuf::from("/etc/backuppc")), (self.top.clone(), PathBuf::from("/var/lib/backuppc"))]
    }

    /// An sshd in its own namespace with the mounts, allowing `users`; PAM
    /// as on Debian, which accepts backuppc's locked password for keys.
    pub fn sshd(&self, dir: &Path, users: &[&str], extra_config: &str) -> Sshd {
        Sshd::start_with(
            dir,
            users,
            SshdOptions {
                extra_config: format!("UsePAM yes\n{extra_config}"),
                mounts: self.mounts(),
                ..Default::default()
            },
        )
    }

    /// Start the daemon as backuppc in the namespace of process `ns` (an
    /// sshd of [`BackupPc::sshd`]); returns once it answers `status info`.
    pub fn start_daemon(&self, dir: &TestDir, ns: u32) -> Daemon {
        let log = dir.join("daemon.log");
        let daemon_log = fs::File::create(&log).unwrap();
        let daemon = Daemon(
            as_backuppc(ns, &format!("{BIN}/BackupPC"), &[])
                .stdin(Stdio::null())
                .stdout(daemon_log.try_clone().unwrap())
                .stderr(daemon_log)
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(self.run_dir.join("BackupPC.sock").exists() && self.mesg(ns, &["status", "info"]).status.success()) {
            assert!(Instant::now() < deadline, "BackupPC did not start: {}", fs::read_to_string(&log).unwrap());
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    /// The audit log once it holds at least `n` `reload` events:
    /// forced-command tells the daemon in the background, just after the
    /// client has its answer.
    pub fn audit_after_reloads(&self, n: usize) -> String {
        let start = std::time::Instant::now();
        loop {
            let audit = fs::read_to_string(self.registry.join("audit.log")).unwrap_or_default();
            let reloads = audit
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|e| e["event"] == "reload")
                .count();
            if reloads >= n {
                return audit;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "{reloads} of {n} reload events after 120 s:\n{audit}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// BackupPC_serverMesg as backuppc in the namespace of process `ns`.
    pub fn mesg(&self, ns: u32, what: &[&str]) -> Output {
        within(as_backuppc(ns, &format!("{BIN}/BackupPC_serverMesg"), what), Duration::from_secs(30))
    }

    /// The workstation of a test against this server, enrolled as
    /// `localhost` for the logon cmartin: its client.toml in
    /// `DIR/etc-client` (this server's sshd pinned, the register key, the
    /// backup user `backup_user` with its home in `DIR/clienthome`, its
    /// state in `DIR/state`), `extra` appended. Returns the config's path
    /// and enroll's output (asserted successful).
    pub fn enroll_workstation(
        &self,
        dir: &TestDir,
        bins: &Bins,
        sshd: &Sshd,
        backup_user: &str,
        extra: &str,
    ) -> (PathBuf, Output) {
        let client_etc = dir.mkdir("etc-client");
        fs::write(client_etc.join("server_host_keys"), sshd.known_hosts_line()).unwrap();
        let client_toml = client_etc.join("client.toml");
        let config = format!(
            "server = \"127.0.0.1\"\nport = {port}\nserver_host_keys = {:?}\nregister_key = {:?}\n\
             backup_user = {backup_user:?}\nbackup_home = {:?}\nrsyncsend = {:?}\nstate_file = {:?}\n\
             hostname = \"localhost\"\nsshd_port = {port}\nhost_keys = [{:?}]\n{extra}",
            client_etc.join("server_host_keys"),
            self.register_key,
            dir.join("clienthome"),
            bins.rsyncsend,
            dir.mkdir("state").join("client-state.json"),
            sshd.host_pub_path,
            port = sshd.port
        );
        fs::write(&client_toml, config).unwrap();
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
            fs::read_to_string(&sshd.log).unwrap_or_default(),
            fs::read_to_string(self.registry.join("audit.log")).unwrap_or_default()
        );
        (client_toml, out)
    }
}

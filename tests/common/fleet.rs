//! A backup server with many enrolled hosts, for `forced-command fleet`:
//! the server account's per-host keys, per-host configs, known_hosts pins
//! and registry written by the library's own writers (as forced-command
//! writes them when it enrolls a host), and workstation sshds on loopback
//! addresses (127.0.x.y) whose backup account runs the toolkit's
//! `rsyncsend` as the forced command of each per-host key.

use super::*;
use backuppc_enroll::backuppc::perhost::PerHostConfig;
use backuppc_enroll::ssh::known_hosts;
use backuppc_enroll::store::atomic::Ownership;
use backuppc_enroll::store::registry::{Enrollment, Registry};
use std::fmt::Write as _;

/// One host to register: its name (an address, which BackupPC then
/// connects to), the port of its sshd, and the host key to pin (none: no
/// pin).
pub struct HostSpec {
    pub host: String,
    pub port: u16,
    pub pin: Option<String>,
}

pub struct FleetServer {
    pub bins: Bins,
    pub server: SystemUser,
    pub backup: SystemUser,
    pub conf_dir: PathBuf,
    pub registry: PathBuf,
    pub server_toml: PathBuf,
    pub client_toml: PathBuf,
    pub audit_log: PathBuf,
    pub data: PathBuf,
    // Last: removed after the users are gone.
    pub dir: TestDir,
}

impl FleetServer {
    pub fn new() -> FleetServer {
        require_root();
        let dir = TestDir::new("fleet");
        let bins = install_bins(&dir);
        // What `forced-command fleet` execs, beside it.
        install_executable(
            Path::new(env!("CARGO_BIN_EXE_forced-command-fleet")),
            &bins.forced_command.with_file_name("forced-command-fleet"),
        );
        let server = SystemUser::create(&unique("bpfs"), &dir.join("srvhome"));
        let backup = SystemUser::create(&unique("bpfc"), &dir.join("clienthome"));
        let owned = |name: &str| {
            let d = dir.mkdir(name);
            server.chown(&d);
            d
        };
        let conf_dir = owned("backuppc");
        let registry_dir = owned("registry");
        let log_dir = owned("log");
        let pc = conf_dir.join("pc");
        fs::create_dir(&pc).unwrap();
        server.chown(&pc);
        let ssh = server.home.join(".ssh");
        fs::create_dir_all(ssh.join("backuppc-enroll")).unwrap();
        for d in [&ssh, &ssh.join("backuppc-enroll")] {
            chmod(d, 0o700);
            server.chown(d);
        }
        let data = dir.mkdir("data");
        fs::write(data.join("file"), "data\n").unwrap();
        let etc = dir.mkdir("etc");
        let registry = registry_dir.join("registry.json");
        let audit_log = log_dir.join("audit.log");
        let server_toml = etc.join("server.toml");
        let mut s = String::new();
        writeln!(s, "backuppc_conf_dir = {:?}", conf_dir).unwrap();
        writeln!(s, "backuppc_user = {:?}", server.name).unwrap();
        writeln!(s, "url = \"https://backup.example.org/backuppc/index.cgi?host={{host}}\"").unwrap();
        writeln!(s, "registry = {:?}", registry).unwrap();
        writeln!(s, "audit_log = {:?}", audit_log).unwrap();
        writeln!(s, "client_user = {:?}", backup.name).unwrap();
        writeln!(s, "reload_command = []").unwrap();
        fs::write(&server_toml, s).unwrap();
        let client_toml = etc.join("client.toml");
        let mut c = String::new();
        writeln!(c, "backup_user = {:?}", backup.name).unwrap();
        writeln!(c, "backup_home = {:?}", backup.home).unwrap();
        writeln!(c, "rsyncsend = {:?}", bins.rsyncsend).unwrap();
        writeln!(c, "state_file = {:?}", etc.join("client-state.json")).unwrap();
        writeln!(c, "shares = [{:?}]", data).unwrap();
        fs::write(&client_toml, c).unwrap();
        FleetServer { bins, server, backup, conf_dir, registry, server_toml, client_toml, audit_log, data, dir }
    }

    pub fn ssh_dir(&self) -> PathBuf {
        self.server.home.join(".ssh")
    }

    pub fn key_path(&self, host: &str) -> PathBuf {
        self.ssh_dir().join("backuppc-enroll").join(format!("{host}.key"))
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.ssh_dir().join("known_hosts")
    }

    fn own(&self, mode: u32) -> Ownership {
        let (uid, gid) = self.server.ids();
        Ownership { uid, gid, mode }
    }

    /// Enroll `hosts` on the server side: a per-host key pair each,
    /// pc/HOST.pl, the pinned host key, the registry entry. Returns the
    /// public per-host keys, in order.
    pub fn register(&self, hosts: &[HostSpec]) -> Vec<String> {
        let mut reg = Registry::load(&self.registry).unwrap();
        reg.version = 1;
        let mut kh = String::from_utf8(fs::read(self.known_hosts()).unwrap_or_default()).unwrap();
        let mut keys = Vec::new();
        for h in hosts {
            let key = self.key_path(&h.host);
            // HOST.key and HOST.pub, as forced-command names them.
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                    .arg(format!("backuppc server to client {}", h.host))
                    .arg("-f")
                    .arg(&key),
            );
            let public_path = self.ssh_dir().join("backuppc-enroll").join(format!("{}.pub", h.host));
            fs::rename(format!("{}.pub", key.display()), &public_path).unwrap();
            let public = fs::read_to_string(&public_path).unwrap().trim().to_string();
            for p in [&key, &public_path] {
                self.server.chown(p);
            }
            let pl = PerHostConfig {
                host: h.host.clone(),
                logon: "cmartin".into(),
                client_user: self.backup.name.clone(),
                client_port: h.port,
                key_path: key.display().to_string(),
                previous_key_path: None,
                known_hosts: self.known_hosts().display().to_string(),
                rsync_client_path: "/usr/bin/rsync".into(),
                shares: vec![self.data.display().to_string()],
                dumps: true,
            };
            let pl_path = self.conf_dir.join("pc").join(format!("{}.pl", h.host));
            atomic::write(&pl_path, pl.render("2026-01-01T00:00:00Z").as_bytes(), self.own(0o644)).unwrap();
            kh = known_hosts::replace(&kh, &h.host, &h.pin.iter().cloned().collect::<Vec<_>>());
            reg.hosts.insert(
                h.host.clone(),
                Enrollment {
                    host: h.host.clone(),
                    logon: "cmartin".into(),
                    os: "linux".into(),
                    address: h.host.clone(),
                    key_fingerprint: String::new(),
                    host_key_fingerprints: vec![],
                    enrolled_at: "2026-01-01T00:00:00Z".into(),
                    state: "enrolled".into(),
                },
            );
            keys.push(public);
        }
        atomic::write(&self.known_hosts(), kh.as_bytes(), self.own(0o644)).unwrap();
        reg.save(&self.registry, self.own(0o640)).unwrap();
        keys
    }

    /// The workstation's key line for a per-host key, as enroll installs
    /// it: restricted, bound to rsyncsend.
    pub fn key_line(&self, public: &str) -> String {
        format!(
            "restrict,command=\"{} --config {}\" {public}\n",
            self.bins.rsyncsend.display(),
            self.client_toml.display()
        )
    }

    /// A workstation sshd listening on `addresses` (on one port), with its
    /// own host key (or `host_key`), taking the backup account's keys
    /// from `authorized_keys` (root-owned, as enroll leaves it).
    pub fn workstation(&self, dir: &Path, addresses: &[&str], authorized_keys: &Path, extra: &str) -> Sshd {
        let mut config = String::new();
        for a in addresses {
            writeln!(config, "ListenAddress {a}").unwrap();
        }
        config.push_str(extra);
        writeln!(config, "Match User {}\n  AuthorizedKeysFile {}", self.backup.name, authorized_keys.display())
            .unwrap();
        Sshd::start_with(dir, &[&self.backup.name], SshdOptions { extra_config: config, ..SshdOptions::default() })
    }

    /// `forced-command fleet ARGS` as root.
    pub fn fleet(&self, args: &[&str]) -> Output {
        Command::new(&self.bins.forced_command)
            .arg("--config")
            .arg(&self.server_toml)
            .arg("fleet")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Write a root-owned authorized_keys file of `lines`.
pub fn write_authorized_keys(path: &Path, lines: &[String]) {
    fs::write(path, lines.concat()).unwrap();
    chmod(path, 0o644);
}

use backuppc_enroll::store::atomic;

/// A sudoers drop-in of the test's own that lets the backup account run
/// the root helper for the given verbs, exactly as enroll's drop-in
/// words them (`RSYNCSEND --config CONFIG VERB`, no arguments), checked
/// with `visudo -cf`; removed on drop.
pub struct RootHelperSudoers {
    path: PathBuf,
}

impl FleetServer {
    pub fn allow_root_helper(&self, verbs: &[&str]) -> RootHelperSudoers {
        let u = &self.backup.name;
        let mut text = format!("Defaults:{u} !requiretty\n");
        for v in verbs {
            writeln!(
                text,
                "{u} ALL=(root) NOPASSWD: {} --config {} {v}",
                self.bins.rsyncsend.display(),
                self.client_toml.display()
            )
            .unwrap();
        }
        let staged = self.dir.join("sudoers-dropin");
        fs::write(&staged, &text).unwrap();
        chmod(&staged, 0o440);
        run_ok(Command::new("visudo").arg("-cf").arg(&staged));
        let path = Path::new("/etc/sudoers.d").join(format!("bpe-test-{u}"));
        fs::copy(&staged, &path).unwrap();
        chmod(&path, 0o440);
        RootHelperSudoers { path }
    }

    /// OpenSSH's client as the backup server would run it for `host`
    /// (its per-host key, the pinned host key), sending `command`.
    pub fn ssh(&self, host: &str, port: u16, command: &str) -> Output {
        Command::new("/usr/bin/ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts().display()))
            .arg("-o")
            .arg(format!("HostKeyAlias={host}"))
            .arg("-i")
            .arg(self.key_path(host))
            .arg("-p")
            .arg(port.to_string())
            .arg(format!("{}@{host}", self.backup.name))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for RootHelperSudoers {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A `backups` line as BackupPC 4.4 writes it: backup `num` of `kind`
/// that ended `hours_ago`, with `errs` transfer errors.
pub fn backups_line(num: u64, kind: &str, hours_ago: u64, errs: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let end = now - hours_ago * 3600;
    format!(
        "{num}\t{kind}\t{}\t{end}\t120\t4096000\t0\t0\t120\t4096000\t{errs}\t0\t0\t0\t3\t0\t1200000\t0\t\t1\trsync\t0\tutf8\t4.4.0\t130\t0\t\n",
        end - 300
    )
}

/// BackupPC's view of each host under the top folder `top`: its
/// `pc/HOST/backups` file, with the given lines.
pub fn write_backups(top: &Path, hosts: &[(&str, String)]) {
    for (host, lines) in hosts {
        let d = top.join("pc").join(host);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("backups"), lines).unwrap();
    }
}

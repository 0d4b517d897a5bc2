//! A whole enrollment setup on one machine: a server account running
//! `forced-command` behind a private sshd with a temporary BackupPC config
//! folder, and a workstation side (`enroll`, the backup user, `rsyncsend`)
//! talking to that same sshd over loopback.

use super::*;
use std::fmt::Write as _;

/// BackupPC's stock hosts file (Debian 12), with its `localhost` row
/// replaced by another host (the tests enroll as `localhost`).
pub const STOCK_HOSTS: &str = "#============================================================= -*-perl-*-\n\
#\n# Host file list for BackupPC.\n#\n\
host        dhcp    user      moreUsers     # <--- do not edit this line\n\
#farside    0       craig     jill,jeff     # <--- example static IP host entry\n\
farside     0       craig     jill,jeff\n";

pub struct Options {
    pub logon_check: &'static str,
    pub networks: Option<&'static str>,
    pub restore: bool,
    pub mode: &'static str,
    /// More top-level server.toml lines.
    pub server_extra: String,
    /// Bind mounts (from, to) that only the sshd, and so the programs it
    /// runs, see.
    pub sshd_mounts: Vec<(PathBuf, PathBuf)>,
    /// The sshd's one host key (a fresh ed25519 key if unset).
    pub sshd_host_key: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            logon_check: "file",
            networks: None,
            restore: false,
            mode: "open",
            server_extra: String::new(),
            sshd_mounts: Vec::new(),
            sshd_host_key: None,
        }
    }
}

pub struct World {
    pub bins: Bins,
    pub server: SystemUser,
    pub backup_user: String,
    pub conf_dir: PathBuf,
    pub registry_dir: PathBuf,
    pub audit_log: PathBuf,
    pub data: PathBuf,
    pub etc: PathBuf,
    pub client_toml: PathBuf,
    pub server_toml: PathBuf,
    pub register_key: PathBuf,
    pub state_file: PathBuf,
    pub sshd: Sshd,
    // Last: removed after the users and sshd are gone.
    pub dir: TestDir,
}

impl World {
    pub fn new(opts: Options) -> World {
        require_root();
        let dir = TestDir::new("w");
        let bins = install_bins(&dir);
        let server = SystemUser::create(&unique("bpes"), &dir.join("srvhome"));
        let backup_user = unique("bpec");
        let etc = dir.mkdir("etc");
        let owned = |name: &str| {
            let d = dir.mkdir(name);
            server.chown(&d);
            d
        };
        let conf_dir = owned("backuppc");
        let registry_dir = owned("registry");
        let log_dir = owned("log");
        fs::write(conf_dir.join("hosts"), STOCK_HOSTS).unwrap();
        chmod(&conf_dir.join("hosts"), 0o644);
        server.chown(&conf_dir.join("hosts"));

        let data = dir.mkdir("data");
        make_tree(&data);

        let logons = etc.join("logons");
        fs::write(&logons, "# people allowed to enroll\ncmartin\njdupont\n").unwrap();
        let audit_log = log_dir.join("audit.log");
        let server_toml = etc.join("server.toml");
        let mut s = String::new();
        writeln!(s, "backuppc_conf_dir = {:?}", conf_dir).unwrap();
        writeln!(s, "backuppc_user = {:?}", server.name).unwrap();
        writeln!(s, "url = \"https://backup.example.org/backuppc/index.cgi?host={{host}}\"").unwrap();
        writeln!(s, "logon_check = {:?}", opts.logon_check).unwrap();
        writeln!(s, "logon_file = {:?}", logons).unwrap();
        writeln!(s, "registry = {:?}", registry_dir.join("registry.json")).unwrap();
        writeln!(s, "audit_log = {:?}", audit_log).unwrap();
        writeln!(s, "reload_command = []").unwrap();
        writeln!(s, "hello_timeout = 3").unwrap();
        writeln!(s, "mode = {:?}", opts.mode).unwrap();
        writeln!(s, "tokens = {:?}", registry_dir.join("tokens.json")).unwrap();
        if let Some(n) = opts.networks {
            writeln!(s, "networks = {n}").unwrap();
        }
        // Last before the tables: it may open one ([ldap]).
        s.push_str(&opts.server_extra);
        writeln!(s, "[shares]\nlinux = [{:?}]\nmac = [{:?}]", data, data).unwrap();
        fs::write(&server_toml, s).unwrap();

        let register_key = etc.join("register-key");
        let register_pub = keygen(&register_key, "register key");
        chmod(&register_key, 0o600);
        let srv_ssh = server.home.join(".ssh");
        fs::create_dir_all(&srv_ssh).unwrap();
        chmod(&srv_ssh, 0o700);
        fs::write(
            srv_ssh.join("authorized_keys"),
            format!(
                "restrict,command=\"{} --config {}\" {register_pub}\n",
                bins.forced_command.display(),
                server_toml.display()
            ),
        )
        .unwrap();
        chmod(&srv_ssh.join("authorized_keys"), 0o600);
        server.chown(&srv_ssh);
        server.chown(&srv_ssh.join("authorized_keys"));

        let sshd = Sshd::start_with(
            &dir.join("sshd"),
            &[&server.name, &backup_user],
            SshdOptions { mounts: opts.sshd_mounts, host_key: opts.sshd_host_key, ..SshdOptions::default() },
        );
        fs::write(etc.join("server_host_keys"), sshd.known_hosts_line()).unwrap();
        let state_dir = dir.mkdir("state");
        let state_file = state_dir.join("client-state.json");
        let client_toml = etc.join("client.toml");
        let mut c = String::new();
        writeln!(c, "server = \"127.0.0.1\"\nport = {}", sshd.port).unwrap();
        writeln!(c, "server_user = {:?}", server.name).unwrap();
        writeln!(c, "server_host_keys = {:?}", etc.join("server_host_keys")).unwrap();
        writeln!(c, "register_key = {:?}", register_key).unwrap();
        writeln!(c, "backup_user = {:?}", backup_user).unwrap();
        writeln!(c, "backup_home = {:?}", dir.join("clienthome")).unwrap();
        writeln!(c, "rsyncsend = {:?}", bins.rsyncsend).unwrap();
        writeln!(c, "state_file = {:?}", state_file).unwrap();
        writeln!(c, "hostname = \"localhost\"\nsshd_port = {}", sshd.port).unwrap();
        writeln!(c, "host_keys = [{:?}]", sshd.host_pub_path).unwrap();
        writeln!(c, "restore = {}", opts.restore).unwrap();
        writeln!(c, "timeout = 20").unwrap();
        fs::write(&client_toml, c).unwrap();

        World {
            bins,
            server,
            backup_user,
            conf_dir,
            registry_dir,
            audit_log,
            data,
            etc,
            client_toml,
            server_toml,
            register_key,
            state_file,
            sshd,
            dir,
        }
    }

    pub fn enroll(&self, args: &[&str]) -> Output {
        Command::new(&self.bins.enroll)
            .arg("--config")
            .arg(&self.client_toml)
            .args(args)
            .stdin(Stdio::null())
            .env_remove("SUDO_USER")
            .output()
            .unwrap()
    }

    pub fn enroll_ok(&self, args: &[&str]) -> Output {
        let out = self.enroll(args);
        assert!(
            out.status.success(),
            "enroll {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\nsshd log: {}\naudit: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&self.sshd.log).unwrap_or_default(),
            fs::read_to_string(&self.audit_log).unwrap_or_default()
        );
        out
    }

    /// Run an admin subcommand of forced-command, as root.
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(&self.bins.forced_command).arg("--config").arg(&self.server_toml).args(args).output().unwrap()
    }

    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "forced-command {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything forced-command may write on the server.
    pub fn server_files(&self) -> Vec<(PathBuf, Vec<u8>, u32)> {
        snapshot(&[&self.conf_dir, &self.registry_dir, &self.server.home.join(".ssh")])
    }

    pub fn sudoers_file(&self) -> PathBuf {
        Path::new("/etc/sudoers.d").join(format!("backuppc-enroll-{}", self.backup_user))
    }

    pub fn client_home(&self) -> PathBuf {
        self.dir.join("clienthome")
    }

    /// Everything enroll may write on the workstation.
    pub fn client_files(&self) -> Vec<(PathBuf, Vec<u8>, u32)> {
        snapshot(&[&self.client_home().join(".ssh"), &self.sudoers_file(), &self.state_file])
    }

    /// `$Conf{RsyncSshArgs}[1]` of the per-host config, read by Perl.
    pub fn ssh_command(&self, host: &str) -> String {
        let pl = self.conf_dir.join("pc").join(format!("{host}.pl"));
        let out = run_ok(Command::new("perl").arg("-e").arg(format!(
            "our %Conf; do '{}' or die \"cannot parse: $@\"; print $Conf{{RsyncSshArgs}}[1]",
            pl.display()
        )));
        String::from_utf8(out.stdout).unwrap().replace("$sshPath", "/usr/bin/ssh")
    }

    /// Pull `src` into `dest` as the server account would: rsync over the
    /// ssh command of the per-host config, per-host key, pinned host key.
    pub fn pull(&self, host: &str, src: &str, dest: &Path, extra: &[&str]) -> Output {
        fs::create_dir_all(dest).unwrap();
        self.server.chown(dest);
        let ssh = self.ssh_command(host);
        self.server
            .command("/usr/bin/rsync")
            .args(["-aH", "--numeric-ids", "--rsync-path=/usr/bin/rsync", "-e", &ssh])
            .args(extra)
            .arg(format!("127.0.0.1:{src}"))
            .arg(format!("{}/", dest.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A Command running ssh as the server account with the per-host key.
    pub fn ssh_as_server(&self, host: &str, remote_command: &str) -> Output {
        let ssh = self.ssh_command(host);
        let mut words = ssh.split(' ');
        let program = words.next().unwrap();
        self.server
            .command(program)
            .args(words)
            .arg("127.0.0.1")
            .arg(remote_command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.sudoers_file());
        delete_user(&self.backup_user);
    }
}

/// A test tree: plain files, a name with spaces, a non-ASCII name, a
/// root-only file, a symlink, hard links, nested folders.
pub fn make_tree(root: &Path) {
    use std::os::unix::fs::symlink;
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("plain.txt"), "plain\n").unwrap();
    fs::write(root.join("name with spaces.txt"), "spaces\n").unwrap();
    fs::write(root.join("été–naïve.txt"), "non-ascii\n").unwrap();
    fs::write(root.join("sub/deeper/file"), vec![7u8; 100_000]).unwrap();
    fs::write(root.join("root-only"), "secret only root can read\n").unwrap();
    chmod(&root.join("root-only"), 0o600);
    symlink("plain.txt", root.join("link-to-plain")).unwrap();
    fs::hard_link(root.join("plain.txt"), root.join("sub/hardlink")).unwrap();
    chmod(&root.join("sub"), 0o750);
}

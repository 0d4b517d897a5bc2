//! The server's side effects shared by serving and the admin subcommands:
//! who owns BackupPC's files, where per-host keys live, removing a host's
//! files, the registry and token store, and telling BackupPC to reload.

use backuppc_enroll::backuppc::hosts::HostsFile;
use backuppc_enroll::config::{ReloadAction, ServerConfig, STOCK_RELOAD_COMMAND};
use backuppc_enroll::ssh::known_hosts;
use backuppc_enroll::store::atomic::{self, Ownership};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The account that owns what is written for BackupPC.
pub struct Server<'a> {
    pub cfg: &'a ServerConfig,
    pub uid: u32,
    pub gid: u32,
    pub ssh_dir: PathBuf,
}

impl<'a> Server<'a> {
    pub fn open(cfg: &'a ServerConfig) -> Result<Server<'a>, String> {
        let user = nix::unistd::User::from_name(&cfg.backuppc_user)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("backuppc_user {} does not exist", cfg.backuppc_user))?;
        let ssh_dir = cfg.ssh_dir.clone().unwrap_or_else(|| user.dir.join(".ssh"));
        if ssh_dir.to_string_lossy().contains(char::is_whitespace) {
            return Err(format!("ssh_dir {} has a space, which BackupPC's rsync splits", ssh_dir.display()));
        }
        Ok(Server { cfg, uid: user.uid.as_raw(), gid: user.gid.as_raw(), ssh_dir })
    }

    pub fn file(&self, mode: u32) -> Ownership {
        Ownership { uid: self.uid, gid: self.gid, mode }
    }

    /// Owned by backuppc, group of the folder (Debian: www-data).
    pub fn in_conf_dir(&self, mode: u32) -> Ownership {
        let gid = std::fs::metadata(&self.cfg.backuppc_conf_dir).map(|m| m.gid()).unwrap_or(self.gid);
        Ownership { uid: self.uid, gid, mode }
    }

    pub fn hosts(&self) -> HostsFile {
        HostsFile::new(&self.cfg.backuppc_conf_dir, self.file(0o644))
    }

    pub fn key_dir(&self) -> PathBuf {
        self.ssh_dir.join("backuppc-enroll")
    }

    /// `HOST.key` (private) and `HOST.pub`: distinct suffixes, so no host
    /// name can collide with another host's file.
    pub fn key_path(&self, host: &str) -> PathBuf {
        self.key_dir().join(format!("{host}.key"))
    }

    /// `HOST.key.prev`: the key before the last re-enrollment, kept until
    /// the workstation says it installed the new one.
    pub fn previous_key_path(&self, host: &str) -> PathBuf {
        self.key_dir().join(format!("{host}.key.prev"))
    }

    /// `HOST.key.next`: the new key of a key rotation under way
    /// (`fleet rotate-key`), until the workstation accepts no other.
    pub fn pending_key_path(&self, host: &str) -> PathBuf {
        self.key_dir().join(format!("{host}.key.next"))
    }

    pub fn pub_key_path(&self, host: &str) -> PathBuf {
        self.key_dir().join(format!("{host}.pub"))
    }

    /// Create the parent folder of a state file (registry, tokens) owned
    /// by the BackupPC account, even when an admin runs as root. It is
    /// 0755: the files in it carry their own modes (0640, 0600), and on a
    /// server that enrolls itself the client's state lives there too, read
    /// by rsyncsend as the backup account.
    pub fn ensure_parent(&self, file: &Path) -> io::Result<()> {
        match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                if let Some(up) = dir.parent() {
                    std::fs::create_dir_all(up)?;
                }
                self.ensure_dir(dir, self.file(0o755))
            }
            _ => Ok(()),
        }
    }

    pub fn per_host_config(&self, host: &str) -> PathBuf {
        self.cfg.backuppc_conf_dir.join("pc").join(format!("{host}.pl"))
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.ssh_dir.join("known_hosts")
    }

    /// `dir`, made with `own` if missing. Enrollments stage their files
    /// before the lock, so two may make it at once: the one that loses
    /// the race finds it made.
    pub fn ensure_dir(&self, dir: &Path, own: Ownership) -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if dir.is_dir() {
            return Ok(());
        }
        match std::fs::DirBuilder::new().mode(own.mode & 0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
            Err(e) => return Err(e),
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(own.mode))?;
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(dir, Some(own.uid), Some(own.gid))?;
        }
        Ok(())
    }

    /// What BackupPC already has for `host` besides the toolkit's own key
    /// files (`in_hosts`: whether its hosts file has a line for it): each
    /// thing named for the person asking.
    pub fn hand_made(&self, host: &str, in_hosts: bool) -> io::Result<Vec<String>> {
        let kh = String::from_utf8_lossy(&atomic::read_or_empty(&self.known_hosts())?).into_owned();
        Ok(self.hand_made_in(host, in_hosts, &kh))
    }

    /// [`Server::hand_made`] with known_hosts as `kh`.
    pub fn hand_made_in(&self, host: &str, in_hosts: bool, kh: &str) -> Vec<String> {
        let mut found = Vec::new();
        if in_hosts {
            found.push("a line in BackupPC's hosts file".to_string());
        }
        // symlink_metadata: a dangling symlink there is someone's too.
        if std::fs::symlink_metadata(self.per_host_config(host)).is_ok() {
            found.push(format!("pc/{host}.pl"));
        }
        if !known_hosts::keys_for(kh, host).is_empty() {
            found.push(format!("host keys in {}'s known_hosts", self.cfg.backuppc_user));
        }
        found
    }

    /// Remove everything that lets BackupPC back `host` up: its hosts line
    /// first (so BackupPC never schedules a host whose key or per-host
    /// config is gone), then its keys, per-host config and known_hosts
    /// lines. Its backups stay.
    pub fn remove_host_files(&self, host: &str) -> io::Result<Vec<String>> {
        let mut done = Vec::new();
        if self.hosts().unregister(host).map_err(|e| io::Error::other(e.to_string()))? {
            done.push(format!("removed {host} from {}", self.hosts().path().display()));
        }
        for p in [
            self.key_path(host),
            self.previous_key_path(host),
            self.pending_key_path(host),
            self.pub_key_path(host),
            self.per_host_config(host),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => done.push(format!("removed {}", p.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let kh = self.known_hosts();
        let existing = String::from_utf8_lossy(&atomic::read_or_empty(&kh)?).into_owned();
        let updated = known_hosts::replace(&existing, host, &[]);
        if updated != existing {
            atomic::write(&kh, updated.as_bytes(), Ownership::of_existing_or(&kh, self.file(0o644)))?;
            done.push(format!("removed {host}'s host keys from {}", kh.display()));
        }
        Ok(done)
    }

    /// Tell a running BackupPC to re-read its hosts file. By default the
    /// daemon gets `server reload` on its own socket, the message
    /// BackupPC_serverMesg sends, without the ~50 ms of a Perl start-up
    /// per enrollment. When the daemon is not running the files are right
    /// anyway: it reads them when it starts.
    ///
    /// Not SIGHUP, though the daemon reloads on it too: a second signal
    /// arriving before it has finished handling the first makes it quit
    /// ("Got new signal HUP... quitting"), which a burst of enrollments
    /// would do. Messages on its socket are read one after another.
    pub fn reload_backuppc(&self) -> String {
        match self.cfg.reload_action() {
            ReloadAction::Off => "disabled".into(),
            ReloadAction::Command(argv) => self.run_reload_command(&argv),
            ReloadAction::Daemon => self.tell_daemon(),
        }
    }

    /// Tell BackupPC to reload after a change that was complete at
    /// `changed_at`, once for a burst: under a lock beside the registry,
    /// a reload that began after `changed_at` (its start is the mtime of
    /// `reload.stamp`) already covers this change, and is not repeated.
    /// Called after the registry lock is released, so enrollments do not
    /// wait for BackupPC one after another.
    pub fn reload_coalesced(&self, changed_at: std::time::SystemTime) -> String {
        let dir = self.cfg.registry.parent().unwrap_or(Path::new("."));
        let Ok(_lock) = atomic::Lock::exclusive(&dir.join("reload.lock")) else {
            return self.reload_backuppc();
        };
        let stamp = dir.join("reload.stamp");
        if reload_covered(std::fs::metadata(&stamp).and_then(|m| m.modified()).ok(), changed_at) {
            return "ok (by a reload that began after this change)".into();
        }
        // BackupPC reads the hosts file, then its time: a file replaced in
        // between leaves the daemon with the old hosts under the new
        // file's time, so that the next reload skips it. Then the file's
        // time is moved on and the daemon told again.
        let hosts = self.hosts();
        let mut outcome = String::new();
        for _ in 0..RELOAD_ROUNDS {
            let began = std::time::SystemTime::now();
            let before = hosts.modified();
            outcome = self.reload_backuppc();
            if outcome != "ok" {
                break;
            }
            // Only a reload that was done covers the changes before it.
            let _ = std::fs::File::create(&stamp).and_then(|f| f.set_modified(began));
            if hosts.modified() == before || hosts.touch_past().is_err() {
                break;
            }
        }
        outcome
    }

    fn tell_daemon(&self) -> String {
        let config_pl = std::fs::read_to_string(self.cfg.backuppc_conf_dir.join("config.pl")).unwrap_or_default();
        let daemon = DaemonAddress::from_config_pl(&config_pl);
        let secret = setting(&config_pl, "ServerMesgSecret");
        let seen = daemon.socket.as_deref().map(RunDirState::read);
        let stock: Vec<String> = STOCK_RELOAD_COMMAND.iter().map(|s| s.to_string()).collect();
        match daemon_plan(&daemon, seen, &secret) {
            DaemonPlan::NotRunning => NOT_RUNNING.into(),
            DaemonPlan::Perl => self.run_reload_command(&stock),
            DaemonPlan::Socket { path, secret } => match server_mesg(&path, &secret, "server reload", MESG_TIMEOUT) {
                Ok(reply) if reply == "ok" => "ok".into(),
                Ok(reply) => format!("failed (the daemon answered {reply:?})"),
                // A socket nobody listens on: the daemon died without
                // removing it (its pid file may name a reused pid).
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound) => {
                    if daemon.tcp {
                        self.run_reload_command(&stock)
                    } else {
                        NOT_RUNNING.into()
                    }
                }
                Err(e) => format!("failed ({}: {e})", path.display()),
            },
        }
    }

    /// Run a reload command as the BackupPC user, which
    /// BackupPC_serverMesg insists on. For the stock BackupPC_serverMesg
    /// the run folder is looked at first, so a stopped daemon costs no
    /// Perl start-up and reads as "not running" rather than as a failure.
    fn run_reload_command(&self, argv: &[String]) -> String {
        let Some((prog, args)) = argv.split_first() else {
            return "disabled".into();
        };
        if !Path::new(prog).exists() {
            return "not installed".into();
        }
        if Path::new(prog).file_name().is_some_and(|n| n == "BackupPC_serverMesg") {
            let config_pl = std::fs::read_to_string(self.cfg.backuppc_conf_dir.join("config.pl")).unwrap_or_default();
            let daemon = DaemonAddress::from_config_pl(&config_pl);
            let seen = daemon.socket.as_deref().map(RunDirState::read);
            if !must_run_reload(seen, daemon.tcp) {
                return NOT_RUNNING.into();
            }
        }
        let mut cmd = Command::new(prog);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if nix::unistd::geteuid().is_root() {
            cmd.gid(self.gid).uid(self.uid);
        }
        let Ok(mut child) = cmd.spawn() else {
            return "could not start".into();
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(s)) if s.success() => return "ok".into(),
                Ok(Some(s)) => return format!("failed ({s})"),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return "timed out".into();
                }
            }
        }
    }
}

/// How long the daemon may take to answer. Generous on purpose: closing
/// the connection before its answer is written makes the daemon's write
/// fail with SIGPIPE, on which it shuts down.
const MESG_TIMEOUT: Duration = Duration::from_secs(20);

/// At most this many reloads in a row for one change (see
/// [`Server::reload_coalesced`]); a later enrollment's reload goes on.
const RELOAD_ROUNDS: usize = 5;

/// How to reach a daemon that may be running.
#[derive(Debug, PartialEq, Eq)]
pub enum DaemonPlan {
    NotRunning,
    /// Send the message on this unix socket, signed with this secret.
    Socket {
        path: PathBuf,
        secret: String,
    },
    /// Only Perl can tell (RunDir or the secret computed in config.pl, or
    /// only the TCP port left to try): run BackupPC_serverMesg.
    Perl,
}

/// Where to send `server reload`, from config.pl and the run folder.
pub fn daemon_plan(daemon: &DaemonAddress, seen: Option<RunDirState>, secret: &Setting) -> DaemonPlan {
    if !must_run_reload(seen, daemon.tcp) {
        return DaemonPlan::NotRunning;
    }
    match (&daemon.socket, seen, secret) {
        (_, _, Setting::Computed) | (None, _, _) => DaemonPlan::Perl,
        (Some(_), Some(RunDirState { socket: false, .. }), _) => DaemonPlan::Perl,
        (Some(path), _, Setting::Plain(s)) => DaemonPlan::Socket { path: path.clone(), secret: s.clone() },
        (Some(path), _, Setting::Unset) => DaemonPlan::Socket { path: path.clone(), secret: String::new() },
    }
}

/// The signature BackupPC's daemon checks on message number `count` of a
/// connection: base64 of MD5(seed, count, secret, message), without
/// padding (Perl's Digest::MD5 b64digest).
pub fn mesg_digest(seed: &[u8], count: u32, secret: &str, message: &str) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    let mut md5 = md5::Md5::new();
    md5.update(seed);
    md5.update(count.to_string());
    md5.update(secret);
    md5.update(message);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(md5.finalize())
}

/// One message to the daemon, as BackupPC_serverMesg sends it: read the
/// seed line the daemon greets with (always, before closing: a client
/// that closes first kills the daemon with SIGPIPE), send the signed
/// message, read the one-line answer.
fn server_mesg(socket: &Path, secret: &str, message: &str, timeout: Duration) -> io::Result<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(64 * 1024));
    let mut seed = Vec::new();
    reader.read_until(b'\n', &mut seed)?;
    if !seed.ends_with(b"\n") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the daemon sent no greeting"));
    }
    let line = format!("{} {message}\n", mesg_digest(&seed, 0, secret, message));
    (&stream).write_all(line.as_bytes())?;
    let mut reply = Vec::new();
    reader.read_until(b'\n', &mut reply)?;
    Ok(String::from_utf8_lossy(&reply).trim_end().to_string())
}

/// The reload result when BackupPC's daemon is not running.
pub const NOT_RUNNING: &str = "not running, nothing to reload";

/// How BackupPC_serverMesg reaches the daemon, as far as config.pl says
/// with plain values: the unix socket `$Conf{RunDir}/BackupPC.sock`
/// (`None` when RunDir is computed, so unknown here), and whether it falls
/// back to TCP (`$Conf{ServerPort}` above 0, or computed).
#[derive(Debug, PartialEq, Eq)]
pub struct DaemonAddress {
    pub socket: Option<PathBuf>,
    pub tcp: bool,
}

/// A `$Conf{NAME}` setting of config.pl, the last one winning as in Perl.
#[derive(Debug, PartialEq, Eq)]
pub enum Setting {
    Unset,
    Plain(String),
    /// Anything but a plain quoted string or number: only Perl knows.
    Computed,
}

fn setting(config_pl: &str, name: &str) -> Setting {
    let keys = [format!("{{{name}}}"), format!("{{'{name}'}}"), format!("{{\"{name}\"}}")];
    let mut found = Setting::Unset;
    for line in config_pl.lines().map(str::trim) {
        if line.starts_with('#') || !keys.iter().any(|k| line.contains(k.as_str())) {
            continue;
        }
        found = keys
            .iter()
            .find_map(|k| line.strip_prefix("$Conf")?.trim_start().strip_prefix(k.as_str()))
            .and_then(|rest| rest.trim_start().strip_prefix('='))
            .and_then(|rest| {
                let (value, after) = rest.split_once(';')?;
                let after = after.trim();
                (after.is_empty() || after.starts_with('#')).then(|| plain_value(value.trim()))?
            })
            .map_or(Setting::Computed, Setting::Plain);
    }
    found
}

/// A Perl value with nothing to compute: `'text'`, `"text"` without
/// interpolation or escapes, or an integer.
fn plain_value(v: &str) -> Option<String> {
    for (quote, special) in [('\'', &['\'', '\\'][..]), ('"', &['"', '\\', '$', '@'][..])] {
        if let Some(inner) = v.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return (!inner.contains(special)).then(|| inner.to_string());
        }
    }
    let digits = v.strip_prefix('-').unwrap_or(v);
    (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then(|| v.to_string())
}

impl DaemonAddress {
    pub fn from_config_pl(config_pl: &str) -> DaemonAddress {
        // BackupPC's default when config.pl leaves RunDir empty or unset.
        let socket = match setting(config_pl, "RunDir") {
            Setting::Plain(d) if !d.is_empty() => Some(Path::new(&d).join("BackupPC.sock")),
            Setting::Plain(_) | Setting::Unset => Some(PathBuf::from("/run/backuppc/BackupPC.sock")),
            Setting::Computed => None,
        };
        let tcp = match setting(config_pl, "ServerPort") {
            Setting::Plain(p) => p.parse::<i64>().map_or(true, |p| p > 0),
            Setting::Unset => false,
            Setting::Computed => true,
        };
        DaemonAddress { socket, tcp }
    }
}

/// What BackupPC's run folder shows of its daemon, read without touching
/// the daemon. (Connecting to its socket only to close again is no probe:
/// the daemon writes a greeting, gets SIGPIPE and exits.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunDirState {
    /// `BackupPC.sock` exists: BackupPC_serverMesg connects to it.
    pub socket: bool,
    pub pid: PidFile,
}

/// `BackupPC.pid`, written by the daemon when it starts and removed when
/// it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidFile {
    Missing,
    /// Unreadable, or not a process id.
    Unknown,
    /// Names a running process.
    Alive,
    /// Names no process: the daemon died without cleaning up.
    Gone,
}

impl RunDirState {
    /// `socket` is `RunDir/BackupPC.sock`; the pid file sits beside it.
    pub fn read(socket: &Path) -> RunDirState {
        let pid = match std::fs::read_to_string(socket.with_file_name("BackupPC.pid")) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => PidFile::Missing,
            Err(_) => PidFile::Unknown,
            Ok(text) => match text.trim().parse::<i32>() {
                Ok(pid) if pid > 0 => {
                    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
                        Err(nix::errno::Errno::ESRCH) => PidFile::Gone,
                        // Running (EPERM: running as another user).
                        _ => PidFile::Alive,
                    }
                }
                _ => PidFile::Unknown,
            },
        };
        RunDirState { socket: socket.symlink_metadata().is_ok(), pid }
    }
}

/// Whether to run the reload command. Not when BackupPC_serverMesg surely
/// finds no daemon: no socket to connect to, or a socket left by a daemon
/// whose pid file names no process, and no TCP port to try next. In every
/// doubt (RunDir unknown, no readable pid file beside a socket), yes: the
/// command then says what it found.
pub fn must_run_reload(seen: Option<RunDirState>, tcp: bool) -> bool {
    match seen {
        None => true,
        Some(RunDirState { socket: false, .. }) | Some(RunDirState { socket: true, pid: PidFile::Gone }) => tcp,
        Some(RunDirState { socket: true, pid: PidFile::Alive | PidFile::Missing | PidFile::Unknown }) => true,
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether a reload that began at `began` (none: never) already covers a
/// change complete at `changed_at`.
fn reload_covered(began: Option<std::time::SystemTime>, changed_at: std::time::SystemTime) -> bool {
    began.is_some_and(|b| b > changed_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_that_began_after_a_change_covers_it() {
        use std::time::{Duration, UNIX_EPOCH};
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let rows = [
            (None, false, "no reload yet"),
            (Some(t - Duration::from_millis(1)), false, "began before the change was complete"),
            (Some(t), false, "began at the same instant: not known to have seen it"),
            (Some(t + Duration::from_millis(1)), true, "began after: the daemon read the new files"),
        ];
        for (began, want, why) in rows {
            assert_eq!(reload_covered(began, t), want, "{why}");
        }
    }

    #[test]
    fn daemon_address_from_config_pl() {
        let sock = |d: &str| Some(PathBuf::from(d).join("BackupPC.sock"));
        let stock = "$Conf{ServerPort} = -1;\n$Conf{RunDir}     = '/run/backuppc';\n$Conf{SCGIServerPort} = 10268;\n";
        let cases: &[(&str, &str, Option<PathBuf>, bool)] = &[
            ("Debian's stock lines (SCGIServerPort is another setting)", stock, sock("/run/backuppc"), false),
            ("nothing set: BackupPC's default", "", sock("/run/backuppc"), false),
            ("empty RunDir: the default", "$Conf{RunDir} = '';", sock("/run/backuppc"), false),
            (
                "the last assignment wins",
                "$Conf{RunDir} = '/a';\n$Conf{RunDir} = \"/b\"; # test box",
                sock("/b"),
                false,
            ),
            ("commented out", "$Conf{RunDir} = '/a';\n# $Conf{RunDir} = '/b';", sock("/a"), false),
            ("quoted key", "$Conf{'RunDir'} = '/q';", sock("/q"), false),
            ("interpolated: only Perl knows", "$Conf{RunDir} = \"$ENV{HOME}/run\";", None, false),
            ("computed", "$Conf{RunDir} = $Conf{TopDir} . '/run';", None, false),
            ("more code after it", "$Conf{RunDir} = '/a'; $Conf{RunDir} .= '/b';", None, false),
            ("appended to", "$Conf{RunDir} = '/a';\n$Conf{RunDir} .= '/b';", None, false),
            ("escaped quote", "$Conf{RunDir} = '/a\\'b';", None, false),
            ("TCP port on", "$Conf{ServerPort} = 2359;", sock("/run/backuppc"), true),
            ("TCP port off", "$Conf{ServerPort} = 0;", sock("/run/backuppc"), false),
            ("TCP port computed", "$Conf{ServerPort} = 2000 + 359;", sock("/run/backuppc"), true),
            ("TCP port quoted", "$Conf{ServerPort} = '2359';", sock("/run/backuppc"), true),
        ];
        for (what, text, socket, tcp) in cases {
            assert_eq!(
                DaemonAddress::from_config_pl(text),
                DaemonAddress { socket: socket.clone(), tcp: *tcp },
                "{what}"
            );
        }
    }

    #[test]
    fn reload_runs_unless_the_daemon_is_surely_down() {
        use PidFile::*;
        let seen = |socket, pid| Some(RunDirState { socket, pid });
        let cases = [
            ("RunDir unknown", None, false, true),
            ("daemon running", seen(true, Alive), false, true),
            ("never started: nothing in RunDir", seen(false, Missing), false, false),
            ("stopped: pid file and socket removed", seen(false, Missing), false, false),
            ("no socket, whatever the pid file says", seen(false, Alive), false, false),
            ("died: stale socket and pid file", seen(true, Gone), false, false),
            ("socket without a pid file: unsure", seen(true, Missing), false, true),
            ("socket, unreadable pid file: unsure", seen(true, Unknown), false, true),
            ("no socket but a TCP port to try", seen(false, Missing), true, true),
            ("stale socket but a TCP port to try", seen(true, Gone), true, true),
        ];
        for (what, state, tcp, run) in cases {
            assert_eq!(must_run_reload(state, tcp), run, "{what}");
        }
    }

    #[test]
    fn reload_goes_to_the_socket_when_config_pl_says_where() {
        use PidFile::*;
        let sock = PathBuf::from("/run/backuppc/BackupPC.sock");
        let at = |tcp| DaemonAddress { socket: Some(sock.clone()), tcp };
        let unknown_dir = DaemonAddress { socket: None, tcp: false };
        let seen = |socket, pid| Some(RunDirState { socket, pid });
        let plain = |s: &str| Setting::Plain(s.into());
        let to_socket = |secret: &str| DaemonPlan::Socket { path: sock.clone(), secret: secret.into() };
        let cases = [
            ("running, Debian's empty secret", at(false), seen(true, Alive), plain(""), to_socket("")),
            ("running, a secret", at(false), seen(true, Alive), plain("s3cret"), to_socket("s3cret")),
            (
                "running, secret unset: Perl's undef is empty",
                at(false),
                seen(true, Alive),
                Setting::Unset,
                to_socket(""),
            ),
            ("socket but no pid file: try it", at(false), seen(true, Missing), plain(""), to_socket("")),
            ("secret computed: only Perl knows it", at(false), seen(true, Alive), Setting::Computed, DaemonPlan::Perl),
            ("RunDir computed: only Perl knows it", unknown_dir, None, plain(""), DaemonPlan::Perl),
            ("stopped", at(false), seen(false, Missing), plain(""), DaemonPlan::NotRunning),
            ("died, stale socket", at(false), seen(true, Gone), plain(""), DaemonPlan::NotRunning),
            (
                "no socket, a TCP port: BackupPC_serverMesg tries it",
                at(true),
                seen(false, Missing),
                plain(""),
                DaemonPlan::Perl,
            ),
            ("socket and TCP: the socket first, as serverMesg", at(true), seen(true, Alive), plain(""), to_socket("")),
        ];
        for (what, daemon, state, secret, want) in cases {
            assert_eq!(daemon_plan(&daemon, state, &secret), want, "{what}");
        }
    }

    #[test]
    fn message_digest_is_perls() {
        // perl -MDigest::MD5 -e '$m = Digest::MD5->new;
        //   $m->add("1795365000,3,4242,0\n" . "0" . SECRET . "server reload"); print $m->b64digest'
        let seed = b"1795365000,3,4242,0\n";
        assert_eq!(mesg_digest(seed, 0, "s3cret", "server reload"), "a42ZH4MHJ2uONulnhxYygw");
        assert_eq!(mesg_digest(seed, 0, "", "server reload"), "0nrw8POb5OWo7G+0hvs9Vw");
        assert_ne!(mesg_digest(seed, 1, "", "server reload"), "0nrw8POb5OWo7G+0hvs9Vw", "the count is signed");
    }

    #[test]
    fn a_daemon_that_misbehaves_is_a_failure_not_a_hang() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("BackupPC.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // (what the peer does, the answer server_mesg must return; None: none)
        type Peer = fn(std::os::unix::net::UnixStream);
        let cases: [(&str, Peer, Option<&str>); 4] = [
            ("silent: the read times out", |_s| std::thread::sleep(Duration::from_millis(500)), None),
            (
                "an endless greeting is cut at 64 KiB",
                |mut s| {
                    let _ = s.write_all(&[b'x'; 70_000]);
                },
                None,
            ),
            (
                "closes after the greeting",
                |mut s| {
                    let _ = s.write_all(b"1,1,1,0\n");
                },
                None,
            ),
            (
                "answers like the daemon",
                |mut s| {
                    s.write_all(b"1795365000,3,4242,0\n").unwrap();
                    let mut line = [0u8; 64];
                    let n = s.read(&mut line).unwrap();
                    let want =
                        format!("{} server reload\n", mesg_digest(b"1795365000,3,4242,0\n", 0, "k", "server reload"));
                    s.write_all(if line[..n] == *want.as_bytes() { b"ok\n" } else { b"bad digest\n" }).unwrap();
                },
                Some("ok"),
            ),
        ];
        for (what, peer, want) in cases {
            let l = listener.try_clone().unwrap();
            let t = std::thread::spawn(move || peer(l.accept().unwrap().0));
            let got = server_mesg(&sock, "k", "server reload", Duration::from_millis(200));
            // Anything but the daemon's "ok" reads as a failed reload.
            match want {
                None => assert!(got.as_deref().map_or(true, |r| r != "ok"), "{what}: {got:?}"),
                Some(w) => assert_eq!(got.unwrap(), w, "{what}"),
            }
            t.join().unwrap();
        }
    }

    #[test]
    fn run_folder_read_without_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("BackupPC.sock");
        let pid_file = dir.path().join("BackupPC.pid");
        let read = || RunDirState::read(&sock);
        assert_eq!(read(), RunDirState { socket: false, pid: PidFile::Missing });
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::write(&pid_file, format!("{}", std::process::id())).unwrap();
        assert_eq!(read(), RunDirState { socket: true, pid: PidFile::Alive });
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "reading the run folder never connects to the daemon");
        // A process that has exited: its pid names nothing.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        std::fs::write(&pid_file, format!("{gone}\n")).unwrap();
        assert_eq!(read().pid, PidFile::Gone);
        std::fs::write(&pid_file, "not a pid").unwrap();
        assert_eq!(read().pid, PidFile::Unknown);
    }
}

//! The server's side effects shared by serving and the admin subcommands:
//! who owns BackupPC's files, where per-host keys live, removing a host's
//! files, the registry and token store, and telling BackupPC to reload.

use backuppc_enroll::backuppc::hosts::HostsFile;
use backuppc_enroll::config::ServerConfig;
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

    pub fn ensure_dir(&self, dir: &Path, own: Ownership) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(own.mode))?;
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(dir, Some(own.uid), Some(own.gid))?;
        }
        Ok(())
    }

    /// Pin `keys` for `host` in known_hosts (replacing that host's lines).
    pub fn pin_host_keys(&self, host: &str, keys: &[String]) -> io::Result<()> {
        let kh = self.known_hosts();
        let existing = String::from_utf8_lossy(&atomic::read_or_empty(&kh)?).into_owned();
        let updated = known_hosts::replace(&existing, host, keys);
        if updated != existing {
            atomic::write(&kh, updated.as_bytes(), Ownership::of_existing_or(&kh, self.file(0o644)))?;
        }
        Ok(())
    }

    /// What BackupPC already has for `host` besides the toolkit's own key
    /// files (`in_hosts`: whether its hosts file has a line for it): each
    /// thing named for the person asking.
    pub fn hand_made(&self, host: &str, in_hosts: bool) -> io::Result<Vec<String>> {
        let mut found = Vec::new();
        if in_hosts {
            found.push("a line in BackupPC's hosts file".to_string());
        }
        // symlink_metadata: a dangling symlink there is someone's too.
        if std::fs::symlink_metadata(self.per_host_config(host)).is_ok() {
            found.push(format!("pc/{host}.pl"));
        }
        let kh = String::from_utf8_lossy(&atomic::read_or_empty(&self.known_hosts())?).into_owned();
        if !known_hosts::keys_for(&kh, host).is_empty() {
            found.push(format!("host keys in {}'s known_hosts", self.cfg.backuppc_user));
        }
        Ok(found)
    }

    /// Remove everything that lets BackupPC back `host` up: its key pair,
    /// hosts line, per-host config and known_hosts lines. Its backups stay.
    pub fn remove_host_files(&self, host: &str) -> io::Result<Vec<String>> {
        let mut done = Vec::new();
        for p in [self.key_path(host), self.pub_key_path(host), self.per_host_config(host)] {
            match std::fs::remove_file(&p) {
                Ok(()) => done.push(format!("removed {}", p.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if self.hosts().unregister(host).map_err(|e| io::Error::other(e.to_string()))? {
            done.push(format!("removed {host} from {}", self.hosts().path().display()));
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

    /// Tell a running BackupPC to re-read its hosts file (as the BackupPC
    /// user, which BackupPC_serverMesg insists on). When the daemon is not
    /// running, or the command is missing, the files are right anyway.
    pub fn reload_backuppc(&self) -> String {
        let Some((prog, args)) = self.cfg.reload_command.split_first() else {
            return "disabled".into();
        };
        if !Path::new(prog).exists() {
            return "not installed".into();
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

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

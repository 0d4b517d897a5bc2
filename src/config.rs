//! Configuration files (TOML, every key optional with a safe default).
//! Key names are the interface SPEC section 10 fixes; unknown keys are an
//! error so a typo never silently falls back to a default.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::paths::{CLIENT_CONFIG, SERVER_CONFIG};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.to_path_buf(), message: e.to_string() })
}

/// `/etc/backuppc-enroll/client.toml`, read by `enroll` and `rsyncsend`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    pub server: Option<String>,
    pub port: u16,
    pub server_user: String,
    pub server_host_keys: PathBuf,
    pub register_key: PathBuf,
    pub backup_user: String,
    /// Home of the backup user when `enroll` creates it.
    pub backup_home: Option<PathBuf>,
    pub rsync: String,
    pub sudo: String,
    /// Paths the server may read; when unset, the shares of the last
    /// enrollment (from the state file).
    pub shares: Option<Vec<String>>,
    pub restore: bool,
    pub delete: bool,
    /// Allow rsync's link-following options (`-L`, `-k`, `-K`, …).
    pub follow_links: bool,
    /// Allow `--iconv` (file-name charset conversion).
    pub iconv: bool,
    pub timeout: u64,
    /// Local address to connect to the server from (multi-homed machines).
    pub source_address: Option<std::net::IpAddr>,
    /// Where `rsyncsend` is installed (named by the key line).
    pub rsyncsend: PathBuf,
    /// Record of the last enrollment.
    pub state_file: PathBuf,
    /// Folder of sudoers drop-ins.
    pub sudoers_dir: PathBuf,
    /// Host name sent in the hello block; default: this machine's name.
    pub hostname: Option<String>,
    /// Port of this machine's sshd, sent in the hello block.
    pub sshd_port: u16,
    /// Public host keys of this machine's sshd, sent in the hello block.
    pub host_keys: Vec<PathBuf>,
    /// Folder of the root-owned dump declarations (`*.toml`) run before
    /// each backup.
    pub dumps_dir: PathBuf,
    /// Folder of the root-owned job declarations (`*.toml`) the backup
    /// server may run by name (`forced-command fleet job NAME`).
    pub jobs_dir: PathBuf,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: None,
            port: 22,
            server_user: "backuppc".into(),
            server_host_keys: "/etc/backuppc-enroll/server_host_keys".into(),
            register_key: "/etc/backuppc-enroll/register-key".into(),
            backup_user: "bckpciuem".into(),
            backup_home: None,
            rsync: "/usr/bin/rsync".into(),
            sudo: "/usr/bin/sudo".into(),
            shares: None,
            restore: false,
            delete: false,
            follow_links: false,
            iconv: false,
            timeout: 30,
            source_address: None,
            rsyncsend: "/usr/lib/backuppc-enroll/rsyncsend".into(),
            state_file: "/var/lib/backuppc-enroll/client-state.json".into(),
            sudoers_dir: "/etc/sudoers.d".into(),
            hostname: None,
            sshd_port: 22,
            host_keys: vec![
                "/etc/ssh/ssh_host_ed25519_key.pub".into(),
                "/etc/ssh/ssh_host_ecdsa_key.pub".into(),
                "/etc/ssh/ssh_host_rsa_key.pub".into(),
            ],
            dumps_dir: "/etc/backuppc-enroll/dumps.d".into(),
            jobs_dir: "/etc/backuppc-enroll/jobs.d".into(),
        }
    }
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<ClientConfig, ConfigError> {
        let c: ClientConfig = load(path)?;
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        crate::names::user_name(&c.backup_user).map_err(|e| invalid(format!("backup_user: {e}")))?;
        if let Some(shares) = &c.shares {
            for s in shares {
                crate::names::absolute_path(s).map_err(|e| invalid(format!("shares: {e}")))?;
            }
        }
        for (k, v) in [("rsync", &c.rsync), ("sudo", &c.sudo)] {
            crate::names::absolute_path(v).map_err(|e| invalid(format!("{k}: {e}")))?;
        }
        Ok(c)
    }

    pub fn backup_home(&self) -> PathBuf {
        self.backup_home.clone().unwrap_or_else(|| Path::new("/var/lib").join(&self.backup_user))
    }

    /// The sudoers drop-in for the backup user.
    pub fn sudoers_file(&self) -> PathBuf {
        self.sudoers_dir.join(format!("backuppc-enroll-{}", self.backup_user))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogonCheck {
    Nss,
    Ldap,
    File,
    Any,
}

/// `[ldap]`: a direct search for the logon.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    pub base: String,
    /// Filter with `{logon}` replaced by the escaped logon.
    pub filter: String,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub starttls: bool,
    /// CA certificate (PEM) for ldaps:// or StartTLS.
    pub ca_file: Option<PathBuf>,
    /// Seconds for connecting and for the search.
    pub timeout: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            base: String::new(),
            filter: "(&(objectClass=posixAccount)(uid={logon}))".into(),
            bind_dn: None,
            bind_password_file: None,
            starttls: false,
            ca_file: None,
            timeout: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostNaming {
    Confirmed,
    ReverseDns,
    Ip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The register key is enough (the seed's behaviour).
    Open,
    /// The hello block must carry a token an admin created.
    Token,
    /// Requests wait for an admin's `approve`.
    Approve,
}

/// The `reload` setting of server.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reload {
    /// Send `server reload` to the daemon's socket ourselves, as
    /// BackupPC_serverMesg does, without starting Perl.
    Daemon,
    /// Run `reload_command`.
    Command,
    /// Never tell BackupPC; it reads the files when it next starts.
    None,
}

/// What `forced-command` does to make BackupPC re-read its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadAction {
    Daemon,
    Command(Vec<String>),
    Off,
}

/// BackupPC's own client for its daemon, with the arguments that reload it.
pub const STOCK_RELOAD_COMMAND: [&str; 3] = ["/usr/share/backuppc/bin/BackupPC_serverMesg", "server", "reload"];

/// `/etc/backuppc-enroll/server.toml`, read by `forced-command`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub backuppc_conf_dir: PathBuf,
    pub backuppc_user: String,
    /// Default: `~backuppc_user/.ssh`.
    pub ssh_dir: Option<PathBuf>,
    pub url: Option<String>,
    pub allowed_os: Vec<String>,
    pub logon_pattern: String,
    pub logon_check: LogonCheck,
    /// Allow-list for `logon_check = "file"`, one logon per line.
    pub logon_file: Option<PathBuf>,
    pub networks: Vec<IpNet>,
    pub host_naming: HostNaming,
    pub mode: Mode,
    pub shares: BTreeMap<String, Vec<String>>,
    pub client_user: String,
    pub registry: PathBuf,
    /// Audit log file (JSON lines), besides syslog.
    pub audit_log: Option<PathBuf>,
    /// `from=` pattern sent to clients; default: the address they reached.
    pub from: Option<String>,
    /// rsync path on clients written into the per-host config.
    pub rsync_client_path: String,
    /// Allow a registered host to move to another logon.
    pub allow_reassign: bool,
    /// Seconds to wait for the hello block.
    pub hello_timeout: u64,
    /// Seconds one request may take in all (lookups, locks, writes).
    pub request_timeout: u64,
    /// How a running BackupPC is told to re-read its hosts file after a
    /// change; see [`ServerConfig::reload_action`].
    pub reload: Option<Reload>,
    /// The command `reload = "command"` runs; setting it without `reload`
    /// (as older configs did) means that command, and `[]` means no reload.
    pub reload_command: Option<Vec<String>>,
    /// Token store for `mode = "token"`.
    pub tokens: PathBuf,
    /// Directory search for `logon_check = "ldap"`.
    pub ldap: Option<LdapConfig>,
    /// Mattermost/Slack-compatible webhook told of each enrollment.
    pub notify_webhook: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let nets = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];
        ServerConfig {
            backuppc_conf_dir: "/etc/backuppc".into(),
            backuppc_user: "backuppc".into(),
            ssh_dir: None,
            url: None,
            allowed_os: vec!["linux".into(), "mac".into()],
            logon_pattern: "^[a-z_][a-z0-9_.-]{0,31}$".into(),
            logon_check: LogonCheck::Nss,
            logon_file: None,
            networks: nets.iter().map(|n| n.parse().expect("valid default network")).collect(),
            host_naming: HostNaming::Confirmed,
            mode: Mode::Open,
            shares: BTreeMap::from([
                ("linux".to_string(), vec!["/home".to_string(), "/etc".to_string()]),
                ("mac".to_string(), vec!["/Users".to_string()]),
            ]),
            client_user: "bckpciuem".into(),
            registry: "/var/lib/backuppc-enroll/registry.json".into(),
            audit_log: None,
            from: None,
            rsync_client_path: "/usr/bin/rsync".into(),
            allow_reassign: false,
            hello_timeout: 10,
            request_timeout: 60,
            reload: None,
            reload_command: None,
            tokens: "/var/lib/backuppc-enroll/tokens.json".into(),
            ldap: None,
            notify_webhook: None,
        }
    }
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let mut c: ServerConfig = load(path)?;
        // `[shares]` naming one OS keeps the defaults of the others.
        for (os, shares) in ServerConfig::default().shares {
            c.shares.entry(os).or_insert(shares);
        }
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let url = c.url.as_deref().ok_or_else(|| {
            invalid(
                "url is required (for example \"https://backup.example.org/backuppc/index.cgi?host={host}\")".into(),
            )
        })?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("url must start with http:// or https://".into()));
        }
        regex::Regex::new(&c.logon_pattern).map_err(|e| invalid(format!("logon_pattern: {e}")))?;
        if c.logon_check == LogonCheck::File && c.logon_file.is_none() {
            return Err(invalid("logon_check = \"file\" needs logon_file".into()));
        }
        if c.logon_check == LogonCheck::Ldap {
            let l = c.ldap.as_ref().ok_or_else(|| invalid("logon_check = \"ldap\" needs an [ldap] table".into()))?;
            if !(l.url.starts_with("ldap://") || l.url.starts_with("ldaps://")) || l.base.is_empty() {
                return Err(invalid("[ldap] needs url = \"ldap://…\" or \"ldaps://…\" and base".into()));
            }
            if !l.filter.contains("{logon}") {
                return Err(invalid("[ldap] filter must contain {logon}".into()));
            }
            if l.bind_dn.is_some() != l.bind_password_file.is_some() {
                return Err(invalid("[ldap] bind_dn and bind_password_file go together".into()));
            }
        }
        if let Some(hook) = &c.notify_webhook {
            if !(hook.starts_with("http://") || hook.starts_with("https://")) {
                return Err(invalid("notify_webhook must be an http:// or https:// URL".into()));
            }
        }
        crate::names::user_name(&c.client_user).map_err(|e| invalid(format!("client_user: {e}")))?;
        for os in &c.allowed_os {
            let Some(shares) = c.shares.get(os) else {
                return Err(invalid(format!("allowed OS {os:?} has no shares.{os} list")));
            };
            for s in shares {
                crate::names::absolute_path(s).map_err(|e| invalid(format!("shares.{os}: {e}")))?;
                if s.contains(' ') {
                    return Err(invalid(format!("shares.{os}: {s:?} has a space, which BackupPC's rsync splits")));
                }
            }
        }
        if c.reload == Some(Reload::Command) && c.reload_command.as_ref().is_some_and(|v| v.is_empty()) {
            return Err(invalid("reload = \"command\" needs a reload_command, or reload = \"none\"".into()));
        }
        if let Some(f) = &c.from {
            crate::protocol::answer::check_from(f).map_err(|e| invalid(format!("from: {e}")))?;
        }
        Ok(c)
    }

    /// `reload` wins; without it, a `reload_command` left by an older
    /// config keeps its meaning (`[]`: no reload); with neither, the daemon
    /// is told directly.
    pub fn reload_action(&self) -> ReloadAction {
        let stock = || STOCK_RELOAD_COMMAND.iter().map(|s| s.to_string()).collect();
        match (self.reload, &self.reload_command) {
            (Some(Reload::Daemon), _) => ReloadAction::Daemon,
            (Some(Reload::None), _) => ReloadAction::Off,
            (Some(Reload::Command), Some(c)) => ReloadAction::Command(c.clone()),
            (Some(Reload::Command), None) => ReloadAction::Command(stock()),
            (None, Some(c)) if c.is_empty() => ReloadAction::Off,
            (None, Some(c)) => ReloadAction::Command(c.clone()),
            (None, None) => ReloadAction::Daemon,
        }
    }

    pub fn url_for(&self, host: &str, logon: &str) -> String {
        self.url.clone().unwrap_or_default().replace("{host}", host).replace("{logon}", logon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_defaults_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.toml");
        std::fs::write(&p, "url = \"https://b/?host={host}\"\n").unwrap();
        let c = ServerConfig::load(&p).unwrap();
        assert_eq!(c.url_for("dormeur", "x"), "https://b/?host=dormeur");
        std::fs::write(&p, "url = \"https://b/\"\n[shares]\nlinux = [\"/srv\"]\n").unwrap();
        let c = ServerConfig::load(&p).unwrap();
        assert_eq!(c.shares["linux"], ["/srv"]);
        assert_eq!(c.shares["mac"], ["/Users"], "other OS keep their default");
        assert_eq!(c.logon_check, LogonCheck::Nss);
        for (text, why) in [
            ("", "url missing"),
            ("url = \"ftp://x\"", "url not http"),
            ("url = \"http://x\"\nlogon_chek = \"any\"", "typo in key"),
            ("url = \"http://x\"\nnetworks = [\"10.0.0.0/33\"]", "bad CIDR"),
            ("url = \"http://x\"\nlogon_check = \"file\"", "file without list"),
            ("url = \"http://x\"\nallowed_os = [\"bsd\"]", "OS without shares"),
            ("url = \"http://x\"\nlogon_pattern = \"(\"", "bad regex"),
            ("url = \"http://x\"\nreload = \"command\"\nreload_command = []", "command reload without a command"),
            ("url = \"http://x\"\nreload = \"sighup\"", "unknown reload"),
        ] {
            std::fs::write(&p, text).unwrap();
            assert!(ServerConfig::load(&p).is_err(), "{why}");
        }
    }

    /// The example configs in packaging/ parse, as shipped and with every
    /// commented key uncommented (so no documented key is misspelt).
    #[test]
    fn reload_action_keeps_older_configs_meaning() {
        let stock = ReloadAction::Command(STOCK_RELOAD_COMMAND.iter().map(|s| s.to_string()).collect());
        let mine = ReloadAction::Command(vec!["/usr/local/bin/reload-bpc".into()]);
        let cases = [
            ("nothing set: tell the daemon directly", "", ReloadAction::Daemon),
            ("reload_command = [] (older configs, tests): no reload", "reload_command = []", ReloadAction::Off),
            (
                "an explicit reload_command keeps being run",
                "reload_command = [\"/usr/local/bin/reload-bpc\"]",
                mine.clone(),
            ),
            ("reload = \"command\" alone: BackupPC_serverMesg", "reload = \"command\"", stock),
            (
                "reload = \"command\" with its command",
                "reload = \"command\"\nreload_command = [\"/usr/local/bin/reload-bpc\"]",
                mine,
            ),
            (
                "reload = \"daemon\" wins over a command",
                "reload = \"daemon\"\nreload_command = [\"/x\"]",
                ReloadAction::Daemon,
            ),
            ("reload = \"none\"", "reload = \"none\"\nreload_command = [\"/x\"]", ReloadAction::Off),
        ];
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.toml");
        for (why, lines, want) in cases {
            std::fs::write(&p, format!("url = \"https://b/\"\n{lines}\n")).unwrap();
            assert_eq!(ServerConfig::load(&p).unwrap().reload_action(), want, "{why}");
        }
    }

    #[test]
    fn packaged_examples_parse() {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("client.toml", include_str!("../packaging/client.toml")),
            ("server.toml", include_str!("../packaging/server.toml")),
        ] {
            let uncommented: String = text
                .lines()
                .map(|l| match l.strip_prefix('#') {
                    Some(rest) if rest.contains(" = ") || rest.starts_with('[') => rest.to_string(),
                    _ => l.to_string(),
                })
                .map(|l| l + "\n")
                .collect();
            for (variant, body) in [("as shipped", text.to_string()), ("uncommented", uncommented)] {
                let p = d.path().join(name);
                std::fs::write(&p, &body).unwrap();
                let ok = if name == "client.toml" {
                    ClientConfig::load(&p).map(|_| ())
                } else {
                    ServerConfig::load(&p).map(|_| ())
                };
                assert!(ok.is_ok(), "{name} {variant}: {ok:?}");
            }
        }
    }

    #[test]
    fn client_defaults_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "server = \"dugong\"\n").unwrap();
        let c = ClientConfig::load(&p).unwrap();
        assert_eq!(c.backup_user, "bckpciuem");
        assert_eq!(c.sudoers_file(), Path::new("/etc/sudoers.d/backuppc-enroll-bckpciuem"));
        assert_eq!(c.backup_home(), Path::new("/var/lib/bckpciuem"));
        for (text, why) in [
            ("backup_user = \"a.b\"", "dot in user"),
            ("shares = [\"home\"]", "relative share"),
            ("rsync = \"rsync\"", "relative rsync"),
            ("restore = \"yes\"", "wrong type"),
        ] {
            std::fs::write(&p, text).unwrap();
            assert!(ClientConfig::load(&p).is_err(), "{why}");
        }
    }
}

/// What `enroll` records after an enrollment; `rsyncsend` reads the shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClientState {
    pub server: String,
    pub host: Option<String>,
    pub logon: String,
    pub url: String,
    pub from: Option<String>,
    pub shares: Vec<String>,
    /// Bare public key the server backs up with (to repair the key line
    /// without asking the server again).
    pub key: String,
    pub key_fingerprint: String,
    pub enrolled_at: String,
    /// Whether `enroll` created the backup user (so `--remove-user` knows).
    pub created_user: bool,
    /// A re-enrollment under way: the fingerprint of the key installed when
    /// it started. Set before the server is asked, cleared once the server
    /// was told the new key is installed; a re-run that finds it set asks
    /// the server again to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_from: Option<String>,
}

impl ClientState {
    pub fn load(path: &Path) -> Option<ClientState> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

//! Serving one enrollment: parse, check, register, answer. Writes only the
//! answer to stdout; every decision goes to the audit log.

use backuppc_enroll::answer::Success;
use backuppc_enroll::atomic::{self, Ownership};
use backuppc_enroll::config::{LogonCheck, ServerConfig};
use backuppc_enroll::hello::{Hello, MAX_HELLO};
use backuppc_enroll::hosts::{HostsFile, HostsWriteError};
use backuppc_enroll::log::{timestamp, Audit};
use backuppc_enroll::perhost::PerHostConfig;
use backuppc_enroll::policy::{self, AllowList, Directory, Nss, SystemResolver};
use backuppc_enroll::registry::{self, Enrollment, Registry};
use backuppc_enroll::request::Request;
use backuppc_enroll::sshenv::SshEnv;
use backuppc_enroll::{known_hosts, names};
use serde_json::json;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Why an enrollment did not happen: refused (the client's fault) or
/// failed (the server's).
enum Outcome {
    Refused(String),
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for Outcome {
    fn from(e: E) -> Outcome {
        Outcome::Failed(e.to_string())
    }
}

fn refused(why: impl std::fmt::Display) -> Outcome {
    Outcome::Refused(why.to_string())
}

pub fn run(config: &Path) -> ExitCode {
    let env = SshEnv::from_process();
    let cfg = ServerConfig::load(config);
    let audit = Audit::new(c"forced-command", cfg.as_ref().ok().and_then(|c| c.audit_log.clone()));
    let client = env.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            audit.event("error", json!({ "client": client, "reason": e.to_string() }));
            println!("The backup server is not configured correctly; tell the backup administrator (the reason is in the server's log).");
            return ExitCode::from(2);
        }
    };
    match enroll(&cfg, &env, &audit) {
        Ok(answer) => {
            print!("{}", answer.render());
            ExitCode::SUCCESS
        }
        Err(Outcome::Refused(why)) => {
            audit.event("refused", json!({ "client": client, "request": env.original_command, "reason": why }));
            println!("Enrollment refused: {why}.");
            ExitCode::from(1)
        }
        Err(Outcome::Failed(why)) => {
            audit.event("error", json!({ "client": client, "request": env.original_command, "reason": why }));
            println!("The backup server could not complete the enrollment; nothing was changed on it. Try again later or tell the backup administrator (the reason is in the server's log).");
            ExitCode::from(2)
        }
    }
}

/// Read the hello block: at most `MAX_HELLO` bytes until EOF, within the
/// time bound. A client that sends nothing in time is a seed client.
fn read_hello(timeout: Duration) -> Result<Hello, Outcome> {
    let deadline = Instant::now() + timeout;
    let mut input = backuppc_enroll::rsync::StdinWithDeadline { deadline };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_HELLO {
                    return Err(refused(format!("the hello block is larger than {MAX_HELLO} bytes")));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && buf.is_empty() => return Ok(Hello::default()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(refused("the hello block did not end in time"))
            }
            // No usable stdin (closed, not a pipe): the seed protocol.
            Err(_) => break,
        }
    }
    Hello::parse(&buf).map_err(refused)
}

fn enroll(cfg: &ServerConfig, env: &SshEnv, audit: &Audit) -> Result<Success, Outcome> {
    let command = env.original_command.as_deref().unwrap_or("");
    let request = Request::parse(command).map_err(refused)?;
    let ip = policy::check_network(cfg, env.client).map_err(refused)?;
    policy::check_os(cfg, &request.os).map_err(refused)?;
    policy::check_logon_pattern(cfg, &request.logon).map_err(refused)?;
    let dir: Box<dyn Directory> = match cfg.logon_check {
        LogonCheck::File => {
            let path = cfg.logon_file.as_ref().expect("checked at load");
            Box::new(AllowList(std::fs::read_to_string(path)?))
        }
        _ => Box::new(Nss),
    };
    policy::check_logon(cfg.logon_check, dir.as_ref(), &request.logon).map_err(refused)?;
    let hello = read_hello(Duration::from_secs(cfg.hello_timeout))?;
    let host = policy::host_name(cfg.host_naming, hello.hostname.as_deref(), ip, &SystemResolver).map_err(refused)?;
    let from = match &cfg.from {
        Some(f) => f.clone(),
        None => env
            .server
            .map(|s| s.to_string())
            .ok_or_else(|| Outcome::Failed("no server address in SSH_CONNECTION and no `from` in the config".into()))?,
    };
    let shares = cfg.shares.get(&request.os).cloned().unwrap_or_default();
    let client_user = hello.user.clone().unwrap_or_else(|| cfg.client_user.clone());
    let client_port = hello.port.unwrap_or(22);

    let owner = BackupPcOwner::lookup(cfg)?;
    let ssh_dir = cfg.ssh_dir.clone().unwrap_or_else(|| owner.home.join(".ssh"));
    if ssh_dir.to_string_lossy().contains(char::is_whitespace) {
        return Err(Outcome::Failed(format!(
            "ssh_dir {} has a space, which BackupPC's rsync splits",
            ssh_dir.display()
        )));
    }

    // One enrollment at a time changes the server's files.
    let _lock = registry::lock(&cfg.registry)?;
    let mut reg = Registry::load(&cfg.registry)?;
    let hosts = HostsFile::new(&cfg.backuppc_conf_dir, owner.file(0o644));
    let current = backuppc_enroll::hosts::find(&hosts.read()?, &host);
    let held_by = current.map(|e| e.user).or_else(|| reg.hosts.get(&host).map(|e| e.logon.clone()));
    if let Some(other) = held_by.filter(|u| *u != request.logon) {
        if !cfg.allow_reassign {
            return Err(refused(format!(
                "host {host} is already registered for another logon ({other}); ask the backup administrator to move it"
            )));
        }
    }

    let key_dir = ssh_dir.join("backuppc-enroll");
    ensure_dir(&ssh_dir, owner.file(0o700))?;
    ensure_dir(&key_dir, owner.file(0o700))?;
    let key_path = key_dir.join(&host);
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)?;
    key.set_comment(format!("backuppc@{} for {host}", nix::unistd::gethostname()?.to_string_lossy()));
    let private = key.to_openssh(LineEnding::LF)?;
    let public = key.public_key().to_openssh()?;

    // Order: the key first (unused until the rest names it), then
    // BackupPC's files, the registry last. A crash leaves files that are
    // each whole; re-running the enrollment finishes the job.
    atomic::write(&key_path, private.as_bytes(), owner.file(0o600))?;
    atomic::write(&key_dir.join(format!("{host}.pub")), format!("{public}\n").as_bytes(), owner.file(0o644))?;
    match hosts.register(&host, &request.logon, cfg.allow_reassign) {
        Ok(_) => {}
        Err(HostsWriteError::Policy(e)) => return Err(refused(e)),
        Err(e) => return Err(e.into()),
    }
    let pc_dir = cfg.backuppc_conf_dir.join("pc");
    ensure_dir(&pc_dir, owner.dir_of(&cfg.backuppc_conf_dir, 0o750))?;
    let per_host = PerHostConfig {
        host: host.clone(),
        logon: request.logon.clone(),
        client_user,
        client_port,
        key_path: key_path.to_string_lossy().into_owned(),
        known_hosts: ssh_dir.join("known_hosts").to_string_lossy().into_owned(),
        rsync_client_path: cfg.rsync_client_path.clone(),
        shares: shares.clone(),
    };
    let pl = pc_dir.join(format!("{host}.pl"));
    atomic::write(
        &pl,
        per_host.render(&timestamp()).as_bytes(),
        Ownership::of_existing_or(&pl, owner.dir_of(&cfg.backuppc_conf_dir, 0o644)),
    )?;
    if !hello.hostkeys.is_empty() {
        let kh = ssh_dir.join("known_hosts");
        let existing = String::from_utf8_lossy(&atomic::read_or_empty(&kh)?).into_owned();
        let updated = known_hosts::replace(&existing, &host, &hello.hostkeys);
        if updated != existing {
            atomic::write(&kh, updated.as_bytes(), Ownership::of_existing_or(&kh, owner.file(0o644)))?;
        }
    }
    let host_key_fingerprints =
        hello.hostkeys.iter().filter_map(|k| names::public_key(k).ok()).map(|k| names::fingerprint(&k)).collect();
    reg.version = 1;
    reg.hosts.insert(
        host.clone(),
        Enrollment {
            host: host.clone(),
            logon: request.logon.clone(),
            os: request.os.clone(),
            address: ip.to_string(),
            key_fingerprint: names::fingerprint(key.public_key()),
            host_key_fingerprints,
            enrolled_at: timestamp(),
            state: "enrolled".into(),
        },
    );
    if let Some(dir) = cfg.registry.parent() {
        std::fs::create_dir_all(dir)?;
    }
    reg.save(&cfg.registry, owner.file(0o640))?;
    let reloaded = reload_backuppc(cfg);
    audit.event(
        "accepted",
        json!({
            "client": ip.to_string(), "request": request.to_string(), "host": host,
            "protocol": hello.protocol, "host_keys": hello.hostkeys.len(),
            "key": names::fingerprint(key.public_key()), "backuppc_reload": reloaded,
        }),
    );
    Ok(Success {
        key: public.trim_end().to_string(),
        url: cfg.url_for(&host, &request.logon),
        host: Some(host),
        from: Some(from),
        shares,
    })
}

/// The account that owns what is written for BackupPC.
struct BackupPcOwner {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl BackupPcOwner {
    fn lookup(cfg: &ServerConfig) -> Result<BackupPcOwner, Outcome> {
        let user = nix::unistd::User::from_name(&cfg.backuppc_user)?
            .ok_or_else(|| Outcome::Failed(format!("backuppc_user {} does not exist", cfg.backuppc_user)))?;
        Ok(BackupPcOwner { uid: user.uid.as_raw(), gid: user.gid.as_raw(), home: user.dir })
    }

    fn file(&self, mode: u32) -> Ownership {
        Ownership { uid: self.uid, gid: self.gid, mode }
    }

    /// Owned by backuppc, group of the folder (Debian: www-data, so the
    /// CGI can read it).
    fn dir_of(&self, dir: &Path, mode: u32) -> Ownership {
        let gid = std::fs::metadata(dir).map(|m| m.gid()).unwrap_or(self.gid);
        Ownership { uid: self.uid, gid, mode }
    }
}

fn ensure_dir(dir: &Path, own: Ownership) -> std::io::Result<()> {
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

/// Tell a running BackupPC to re-read its hosts file. When the daemon is
/// not running (or the command is missing) the files are right anyway.
fn reload_backuppc(cfg: &ServerConfig) -> String {
    let Some((prog, args)) = cfg.reload_command.split_first() else {
        return "disabled".into();
    };
    if !Path::new(prog).exists() {
        return "not installed".into();
    }
    let child = Command::new(prog).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let Ok(mut child) = child else {
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

//! The enrollment, step by step, with a progress line for each.

use crate::{local, logon, Cli};
use anyhow::{bail, Context, Result};
use backuppc_enroll::config::{ClientConfig, ClientState};
use backuppc_enroll::log::timestamp;
use backuppc_enroll::names;
use backuppc_enroll::protocol::answer::{Answer, AnswerError, Success};
use backuppc_enroll::protocol::hello::Hello;
use backuppc_enroll::protocol::request::Request;
use backuppc_enroll::ssh::authorized_keys::{self, KeyLine};
use backuppc_enroll::ssh::client::{Call, CallError};
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// The server failed on its side (exit status 2); its message says so.
#[derive(Debug, thiserror::Error)]
#[error("the backup server could not enroll this machine:\n{0}")]
pub struct ServerFailed(String);

/// The server queued the request for an admin's approval (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Pending(String);

/// The server said no; its message is for the person.
#[derive(Debug, thiserror::Error)]
#[error("the backup server refused the enrollment:\n{0}")]
pub struct Refused(String);

pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Pending>().is_some() {
        4
    } else if e.downcast_ref::<Refused>().is_some() {
        3
    } else if e.downcast_ref::<CallError>().is_some()
        || e.downcast_ref::<AnswerError>().is_some()
        || e.downcast_ref::<ServerFailed>().is_some()
    {
        2
    } else {
        1
    }
}

struct Progress {
    json: bool,
}

impl Progress {
    fn step(&self, what: &str) {
        eprintln!("==> {what}");
    }
    fn done(&self, lines: &[String]) {
        for l in lines {
            eprintln!("    {l}");
        }
        if lines.is_empty() {
            eprintln!("    already in place");
        }
    }
}

pub fn main(cli: &Cli) -> Result<()> {
    let cfg = ClientConfig::load(&cli.config)?;
    let server = cfg.server.clone().with_context(|| format!("`server` is not set in {}", cli.config.display()))?;
    names::server_address(&server).map_err(|e| anyhow::anyhow!("`server` in {}: {e}", cli.config.display()))?;
    if !cli.dry_run && !nix::unistd::geteuid().is_root() {
        bail!("enroll must run as root (it creates a user and a sudoers drop-in): try sudo enroll");
    }
    let p = Progress { json: cli.json };
    if cli.uninstall {
        return uninstall(cli, &cfg, &server, &p);
    }
    preflight(&cfg)?;
    let logon = choose_logon(cli)?;
    let state = ClientState::load(&cfg.state_file).filter(|s| s.server == server);
    let reuse = state.as_ref().filter(|s| s.logon == logon && !cli.rekey).cloned();

    if cli.dry_run {
        println!("enroll would, on this machine:");
        println!(
            "  - make sure user {} exists (system user, home {}, shell /bin/sh)",
            cfg.backup_user,
            cfg.backup_home().display()
        );
        println!(
            "  - install {} allowing only `{} exec-rsync` (which runs rsync confined) without a tty",
            cfg.sudoers_file().display(),
            cfg.rsyncsend.display()
        );
        match &reuse {
            Some(s) => println!(
                "  - keep the enrollment of {} as host {} (use --rekey to enroll again)",
                s.logon,
                s.host.as_deref().unwrap_or("?")
            ),
            None => println!(
                "  - ask {}@{} port {} to enroll {}:{} (host key pinned in {})",
                cfg.server_user,
                server,
                cfg.port,
                os(),
                logon,
                cfg.server_host_keys.display()
            ),
        }
        println!(
            "  - install the server's key in {} bound to {}",
            local::authorized_keys_path(&cfg)?.display(),
            cfg.rsyncsend.display()
        );
        println!("  - record the enrollment in {}", cfg.state_file.display());
        return Ok(());
    }

    // The server is asked first: when it cannot be reached or refuses,
    // nothing has been changed on this machine.
    let (success, enrolled_at, created_user) = match reuse {
        Some(s) => {
            p.step(&format!("Enrollment with {server}"));
            p.done(&[format!(
                "already enrolled as host {} for {} (use --rekey to enroll again)",
                s.host.as_deref().unwrap_or("?"),
                s.logon
            )]);
            let success = Success {
                key: s.key.clone(),
                url: s.url.clone(),
                host: s.host.clone(),
                from: s.from.clone(),
                shares: s.shares.clone(),
            };
            (success, s.enrolled_at.clone(), s.created_user)
        }
        None => {
            p.step(&format!("Asking {server} to enroll {}:{logon}", os()));
            let success = call_server(&cfg, &server, &logon, cli.token.as_deref())?;
            p.done(&[format!("registered as host {}", success.host.as_deref().unwrap_or("?"))]);
            let created = local::lookup_user(&cfg.backup_user)?.is_none();
            let created_user = created || state.as_ref().is_some_and(|s| s.created_user);
            (success, timestamp(), created_user)
        }
    };

    p.step(&format!("Backup user {}", cfg.backup_user));
    p.done(&local::ensure_backup_user(&cfg)?);
    p.step("Sudoers drop-in");
    p.done(&local::ensure_sudoers(&cfg, &std::path::absolute(&cli.config)?)?);
    p.step("Server key for backups");
    let line = KeyLine::new(
        success.from.clone(),
        &cfg.rsyncsend.to_string_lossy(),
        &std::path::absolute(&cli.config)?.to_string_lossy(),
        &success.key,
        &server,
    )?;
    p.done(&local::install_key_line(&cfg, &line)?);
    let key = names::public_key(&success.key).map_err(anyhow::Error::msg)?;
    let new_state = ClientState {
        server: server.clone(),
        host: success.host.clone(),
        logon: logon.clone(),
        url: success.url.clone(),
        from: success.from.clone(),
        shares: success.shares.clone(),
        key: success.key.clone(),
        key_fingerprint: names::fingerprint(&key),
        enrolled_at,
        created_user,
    };
    p.step("Enrollment record");
    let saved = local::save_state(&cfg, &new_state)?;
    p.done(&if saved { vec![format!("wrote {}", cfg.state_file.display())] } else { vec![] });

    if p.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "server": server, "host": success.host, "logon": logon, "url": success.url,
                "from": success.from, "shares": success.shares, "key_fingerprint": new_state.key_fingerprint,
                "backup_user": cfg.backup_user, "restore": cfg.restore,
            }))?
        );
    } else {
        println!(
            "This machine is enrolled for backups on {server} as {}.",
            success.host.as_deref().unwrap_or("(unnamed host)")
        );
        if !success.shares.is_empty() {
            println!("Backed up: {}", success.shares.join(", "));
        }
        println!("Choose what is backed up and when at: {}", success.url);
    }
    Ok(())
}

fn os() -> &'static str {
    if cfg!(target_os = "macos") {
        "mac"
    } else {
        "linux"
    }
}

/// The programs an enrollment needs, each with how to get it.
fn preflight(cfg: &ClientConfig) -> Result<()> {
    let need: [(&Path, &str); 5] = [
        (Path::new("/usr/sbin/sshd"), "the SSH server: apt-get install openssh-server"),
        (Path::new(&cfg.rsync), "rsync: apt-get install rsync"),
        (Path::new(&cfg.sudo), "sudo: apt-get install sudo"),
        (Path::new("/usr/sbin/visudo"), "visudo: apt-get install sudo"),
        (&cfg.rsyncsend, "rsyncsend: reinstall the backuppc-enroll client package"),
    ];
    for (path, hint) in need {
        if !path.exists() {
            bail!("{} is missing; install {hint}", path.display());
        }
    }
    for (path, what) in [(&cfg.register_key, "register key"), (&cfg.server_host_keys, "pinned server host keys")] {
        if !path.exists() {
            bail!("the {what} file {} is missing: it comes with the setup package", path.display());
        }
    }
    Ok(())
}

fn choose_logon(cli: &Cli) -> Result<String> {
    let proposed = match &cli.logon {
        Some(l) => Some(l.clone()),
        None => logon::propose(std::env::var("SUDO_USER").ok()),
    };
    let logon = if cli.logon.is_some() || cli.yes || cli.dry_run {
        proposed.context("could not tell who the main user is: pass --logon LOGON")?
    } else if std::io::stdin().is_terminal() {
        let mut input = dialoguer::Input::<String>::new().with_prompt("Logon of this machine's main user");
        if let Some(p) = proposed {
            input = input.default(p);
        }
        input.interact_text()?
    } else {
        bail!("no terminal to ask who the main user is: pass --logon LOGON --yes");
    };
    Request::parse(&format!("{}:{logon}", os()))
        .with_context(|| format!("logon {:?} is not valid", names::printable(&logon)))?;
    Ok(logon)
}

fn hello(cfg: &ClientConfig) -> Result<Hello> {
    let hostname = match &cfg.hostname {
        Some(h) => h.clone(),
        None => fqdn()?,
    };
    let mut hostkeys = Vec::new();
    for p in &cfg.host_keys {
        if let Ok(text) = std::fs::read_to_string(p) {
            if let Ok(k) = names::public_key(text.trim()) {
                hostkeys.push(names::key_without_comment(&k));
            }
        }
    }
    if hostkeys.is_empty() {
        bail!("no SSH host key found in {:?}: is openssh-server installed?", cfg.host_keys);
    }
    Ok(Hello {
        protocol: Some(2),
        hostname: Some(names::host_name(&hostname).map_err(anyhow::Error::msg)?),
        hostkeys,
        user: Some(cfg.backup_user.clone()),
        port: Some(cfg.sshd_port),
        version: Some(backuppc_enroll::VERSION.into()),
        token: None,
    })
}

/// This machine's fully qualified name, as `hostname -f` tells it.
fn fqdn() -> Result<String> {
    let out = std::process::Command::new("hostname").arg("-f").output();
    if let Ok(o) = out {
        let name = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !name.is_empty() {
            return Ok(name);
        }
    }
    Ok(nix::unistd::gethostname()?.to_string_lossy().into_owned())
}

fn call_server(cfg: &ClientConfig, server: &str, logon: &str, token: Option<&str>) -> Result<Success> {
    let mut hello = hello(cfg)?;
    hello.token = token.map(str::to_string);
    let call = Call {
        server,
        port: cfg.port,
        user: &cfg.server_user,
        register_key: &cfg.register_key,
        host_keys_file: &cfg.server_host_keys,
        timeout: Duration::from_secs(cfg.timeout.max(1)),
        source: cfg.source_address,
        nodelay: true,
    };
    let reply = call.run(&format!("{}:{logon}", os()), hello.render().as_bytes())?;
    match Answer::parse(&reply.stdout)? {
        Answer::Success(s) if reply.exit_status == 0 => Ok(s),
        Answer::Success(_) => Err(AnswerError::Invalid {
            field: "status",
            why: format!("success with exit status {}", reply.exit_status),
        }
        .into()),
        Answer::Failure(msg) if reply.exit_status == 2 => Err(ServerFailed(msg).into()),
        Answer::Failure(msg) if reply.exit_status == 3 => Err(Pending(msg).into()),
        Answer::Failure(msg) if msg.is_empty() => {
            Err(Refused(format!("(no message, exit status {})", reply.exit_status)).into())
        }
        Answer::Failure(msg) => Err(Refused(msg).into()),
    }
}

fn uninstall(cli: &Cli, cfg: &ClientConfig, server: &str, p: &Progress) -> Result<()> {
    if cli.dry_run {
        println!(
            "enroll --uninstall would remove: the key line of {server} in {}, {}, {}{}",
            local::authorized_keys_path(cfg)?.display(),
            cfg.sudoers_file().display(),
            cfg.state_file.display(),
            if cli.remove_user { format!(", user {} and its home", cfg.backup_user) } else { String::new() }
        );
        return Ok(());
    }
    p.step(&format!("Removing the enrollment with {server}"));
    let done = local::uninstall(cfg, server, cli.remove_user)?;
    if done.is_empty() {
        eprintln!("    nothing to remove: this machine is not enrolled with {server}");
    } else {
        p.done(&done);
    }
    let left = std::fs::read_to_string(local::authorized_keys_path(cfg)?).unwrap_or_default();
    if !authorized_keys::tagged_lines(&left, server).is_empty() {
        bail!("a key line of {server} is still present");
    }
    if p.json {
        println!("{}", json!({ "uninstalled": server, "changes": done }));
    }
    Ok(())
}

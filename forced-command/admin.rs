//! The admin subcommands of `forced-command`, run at a shell by root or
//! the BackupPC account: list, show, revoke, adopt, clear, pending, approve,
//! deny, tokens, check-config, install-register-key.

use crate::cli::{Admin, TokenCmd};
use crate::server::{now, Server};
use anyhow::{bail, Context, Result};
use backuppc_enroll::backuppc::hosts;
use backuppc_enroll::config::{LogonCheck, Mode, ServerConfig};
use backuppc_enroll::log::{rfc3339, timestamp, Audit};
use backuppc_enroll::names;
use backuppc_enroll::server::policy::Directory;
use backuppc_enroll::server::tokens::{parse_duration, TokenStore};
use backuppc_enroll::store::atomic::{self, Ownership};
use backuppc_enroll::store::registry::{self, Registry};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Run an admin subcommand for a person at a shell: output piped into
/// `head` or `grep -q` ends the process quietly when the reader leaves, as
/// other Unix tools do, rather than failing on the closed pipe.
pub fn run_at_a_shell(cmd: Admin, config: &Path) -> Result<()> {
    backuppc_enroll::restore_sigpipe();
    run(cmd, config)
}

fn run(cmd: Admin, config: &Path) -> Result<()> {
    let cfg = ServerConfig::load(config)?;
    if let Admin::CheckConfig { register_key } = &cmd {
        return check_config(&cfg, config, register_key.as_deref());
    }
    let srv = Server::open(&cfg).map_err(anyhow::Error::msg)?;
    if let Some(log) = cfg.audit_log.as_ref().filter(|l| !l.exists()) {
        // Created here by root, the log must stay appendable by the
        // BackupPC account that serves enrollments.
        atomic::write(log, b"", srv.file(0o640))?;
    }
    let audit = Audit::new(c"forced-command", cfg.audit_log.clone());
    let admin = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "admin".into());
    match cmd {
        // main.rs runs it, for its own exit statuses.
        Admin::Fleet(_) => unreachable!("fleet is dispatched by main"),
        Admin::List { json } => {
            let reg = Registry::load(&cfg.registry)?;
            let all: Vec<_> = reg.hosts.values().chain(reg.requests.values()).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{:<32} {:<16} {:<6} {:<16} {:<9} SINCE", "HOST", "LOGON", "OS", "ADDRESS", "STATE");
                for e in all {
                    println!(
                        "{:<32} {:<16} {:<6} {:<16} {:<9} {}",
                        e.host, e.logon, e.os, e.address, e.state, e.enrolled_at
                    );
                }
            }
        }
        Admin::Show { host } => {
            let reg = Registry::load(&cfg.registry)?;
            let entries: Vec<_> = reg.hosts.get(&host).into_iter().chain(reg.requests.get(&host)).collect();
            if entries.is_empty() {
                bail!("no host {host} in the registry");
            }
            for e in entries {
                println!("{}", serde_json::to_string_pretty(e)?);
            }
            let line = hosts::find(&srv.hosts().read()?, &host);
            println!(
                "hosts line: {}",
                line.map(|l| format!("{} {} {}", l.host, l.dhcp, l.user)).unwrap_or("none".into())
            );
            for p in [srv.key_path(&host), srv.per_host_config(&host)] {
                println!("{}: {}", p.display(), if p.exists() { "present" } else { "absent" });
            }
            if !reg.owns(&host) {
                println!("files: not this toolkit's (it neither wrote nor adopted them), never changed by it");
            }
        }
        Admin::Revoke { host } => {
            let host = names::host_name(&host).map_err(anyhow::Error::msg)?;
            // pc/config.pl may be BackupPC's main config: whatever the
            // registry says, such a name's files are BackupPC's own.
            backuppc_enroll::backuppc::names::check_host(&host).map_err(anyhow::Error::msg)?;
            let _lock = registry::lock(&cfg.registry)?;
            let mut reg = Registry::load(&cfg.registry)?;
            // Only hosts this toolkit enrolled (or was handed): a hand-made
            // BackupPC host and its files are the admin's, not ours to delete.
            let owned = reg.owns(&host);
            let Some(entry) = reg.hosts.get_mut(&host) else {
                if reg.requests.contains_key(&host) {
                    bail!("{host} was never enrolled, it only asked: `forced-command deny {host}` refuses its request");
                }
                bail!("no host {host} was enrolled here (forced-command list shows the hosts)");
            };
            if !owned {
                bail!("{host} is {} already: nothing of it is this toolkit's to remove", entry.state);
            }
            let done = srv.remove_host_files(&host)?;
            entry.state = "revoked".into();
            entry.enrolled_at = timestamp();
            reg.save(&cfg.registry, srv.file(0o640))?;
            let reloaded = srv.reload_backuppc();
            audit.event("revoked", json!({ "host": host, "by": admin, "backuppc_reload": reloaded }));
            for d in &done {
                println!("{d}");
            }
            println!("revoked {host} (its backups are kept; BackupPC reload: {reloaded}); `forced-command clear {host}` lets it enroll again");
        }
        Admin::Adopt { host } => adopt(&cfg, &srv, &audit, &host, &admin)?,
        Admin::Clear { host } => {
            let host = names::host_name(&host).map_err(anyhow::Error::msg)?;
            let _lock = registry::lock(&cfg.registry)?;
            let mut reg = Registry::load(&cfg.registry)?;
            let revoked = reg.hosts.get(&host).is_some_and(|e| e.state == "revoked");
            let denied = reg.requests.get(&host).is_some_and(|e| e.state == "denied");
            if !revoked && !denied {
                bail!("host {host} is neither revoked nor denied (forced-command show {host})");
            }
            if revoked {
                reg.hosts.remove(&host);
            }
            if denied {
                reg.requests.remove(&host);
            }
            reg.save(&cfg.registry, srv.file(0o640))?;
            audit.event("cleared", json!({ "host": host, "by": admin }));
        }
        Admin::Pending => {
            let reg = Registry::load(&cfg.registry)?;
            for e in reg.requests.values().filter(|e| e.state == "pending") {
                println!("{:<32} {:<16} {:<6} {:<16} {}", e.host, e.logon, e.os, e.address, e.enrolled_at);
                print_host_keys(e);
            }
        }
        Admin::Approve { host } => {
            let e = decide(&cfg, &srv, &audit, &host, "approved", &admin)?;
            println!("approved {} for {}:{} from {}, with these host keys only:", e.host, e.os, e.logon, e.address);
            print_host_keys(&e);
            println!("its user can now run enroll again (a request with other host keys waits anew)");
        }
        Admin::Deny { host } => {
            decide(&cfg, &srv, &audit, &host, "denied", &admin)?;
        }
        Admin::Token(t) => token(&cfg, &srv, &audit, t, &admin)?,
        Admin::InstallRegisterKey { pubkey, authorized_keys } => {
            install_register_key(&cfg, &srv, config, &pubkey, authorized_keys)?
        }
        Admin::InstallSshdDropin { user, dropin, sshd_config, sshd, remove } => {
            let user = user.unwrap_or_else(|| cfg.backuppc_user.clone());
            let d = crate::sshd_dropin::Dropin {
                user: &user,
                dropin: &dropin,
                sshd_config: &sshd_config,
                sshd: &sshd,
                config,
            };
            if remove {
                d.remove()?
            } else {
                d.install()?
            }
        }
        Admin::CheckConfig { .. } => unreachable!("handled above"),
        Admin::Verify { .. } => unreachable!("main.rs dispatches verify"),
    }
    Ok(())
}

/// Approve or deny the pending request for `host_arg`; returns it.
fn decide(
    cfg: &ServerConfig,
    srv: &Server,
    audit: &Audit,
    host_arg: &str,
    to: &str,
    admin: &str,
) -> Result<registry::Enrollment> {
    let host = &names::host_name(host_arg).map_err(anyhow::Error::msg)?;
    let _lock = registry::lock(&cfg.registry)?;
    let mut reg = Registry::load(&cfg.registry)?;
    let Some(e) = reg.requests.get_mut(host) else { bail!("no request for host {host} is waiting") };
    if e.state != "pending" {
        bail!("the request for host {host} is {}, not pending", e.state);
    }
    e.state = to.into();
    let decided = e.clone();
    reg.save(&cfg.registry, srv.file(0o640))?;
    audit.event(
        to,
        json!({ "host": host, "by": admin, "logon": decided.logon, "os": decided.os,
                "address": decided.address, "host_keys": decided.host_key_fingerprints }),
    );
    Ok(decided)
}

fn print_host_keys(e: &registry::Enrollment) {
    if e.host_key_fingerprints.is_empty() {
        println!("    (no host keys sent)");
    }
    for f in &e.host_key_fingerprints {
        println!("    host key {f}");
    }
}

/// `adopt HOST`: the admin hands a host set up by hand over to the toolkit.
fn adopt(cfg: &ServerConfig, srv: &Server, audit: &Audit, host_arg: &str, admin: &str) -> Result<()> {
    let host = names::host_name(host_arg).map_err(anyhow::Error::msg)?;
    backuppc_enroll::backuppc::names::check_host(&host).map_err(anyhow::Error::msg)?;
    let _lock = registry::lock(&cfg.registry)?;
    let mut reg = Registry::load(&cfg.registry)?;
    if let Some(e) = reg.hosts.get(&host) {
        bail!("host {host} is {} in the registry already: nothing to adopt", e.state);
    }
    let line = hosts::find(&srv.hosts().read()?, &host);
    let found = srv.hand_made(&host, line.is_some())?;
    reg.hosts.insert(
        host.clone(),
        registry::Enrollment {
            host: host.clone(),
            logon: line.map(|l| l.user).unwrap_or_default(),
            os: String::new(),
            address: String::new(),
            key_fingerprint: String::new(),
            host_key_fingerprints: Vec::new(),
            enrolled_at: timestamp(),
            state: "adopted".into(),
        },
    );
    reg.save(&cfg.registry, srv.file(0o640))?;
    audit.event("adopted", json!({ "host": host, "by": admin, "found": found }));
    let what = if found.is_empty() { "nothing yet".to_string() } else { found.join(", ") };
    println!("adopted {host} ({what}): its next enrollment, for any logon, rewrites its BackupPC files, and `forced-command revoke {host}` removes them");
    Ok(())
}

fn token(cfg: &ServerConfig, srv: &Server, audit: &Audit, cmd: TokenCmd, admin: &str) -> Result<()> {
    let _lock = registry::lock(&cfg.registry)?;
    let mut store = TokenStore::load(&cfg.tokens)?;
    match cmd {
        TokenCmd::Create { uses, expires, logon, host } => {
            let ttl = match &expires {
                Some(e) => Some(parse_duration(e).with_context(|| format!("--expires {e}: use 90m, 24h or 7d"))?),
                None => None,
            };
            if uses == Some(0) {
                bail!("--uses 0 would make a token that can never be used: give 1 or more, or leave --uses out for unlimited uses");
            }
            if ttl == Some(0) {
                bail!("--expires {} would make a token that is expired at once: give a positive time such as 90m, 24h or 7d, or leave --expires out", expires.as_deref().unwrap_or("0"));
            }
            let host = match host {
                Some(h) => Some(names::host_name(&h).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let (token, id) = store.create(uses, ttl, logon, host, now());
            srv.ensure_parent(&cfg.tokens)?;
            store.save(&cfg.tokens, srv.file(0o600))?;
            audit.event("token-created", json!({ "id": id, "by": admin, "uses": uses, "expires": expires }));
            println!("{token}");
            eprintln!("token {id} created; give it to the workstation: enroll --token {token}");
        }
        TokenCmd::List { json } => {
            if json {
                let list: Vec<_> = store
                    .tokens
                    .iter()
                    .map(|t| {
                        json!({ "id": t.id, "uses_left": t.uses_left, "expires_at": t.expires_at.map(rfc3339),
                        "logon": t.logon, "host": t.host, "created_at": rfc3339(t.created_at), "revoked": t.revoked })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<14} {:<10} {:<22} {:<16} {:<24} STATE", "ID", "USES LEFT", "EXPIRES", "LOGON", "HOST");
                for t in &store.tokens {
                    let state = if t.revoked {
                        "revoked"
                    } else if t.expires_at.is_some_and(|e| now() >= e) {
                        "expired"
                    } else if t.uses_left == Some(0) {
                        "used up"
                    } else {
                        "valid"
                    };
                    println!(
                        "{:<14} {:<10} {:<22} {:<16} {:<24} {state}",
                        t.id,
                        t.uses_left.map(|u| u.to_string()).unwrap_or("unlimited".into()),
                        t.expires_at.map(rfc3339).unwrap_or("never".into()),
                        t.logon.as_deref().unwrap_or("any"),
                        t.host.as_deref().unwrap_or("any")
                    );
                }
            }
        }
        TokenCmd::Revoke { id } => {
            if !store.revoke(&id) {
                bail!("no single token matches {id:?} (forced-command token list shows the ids)");
            }
            store.save(&cfg.tokens, srv.file(0o600))?;
            audit.event("token-revoked", json!({ "id": id, "by": admin }));
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// The register key's line: bound to this program and config.
fn register_line(config: &Path, pubkey: &str) -> Result<String> {
    let exe = std::env::current_exe()?;
    let config = std::path::absolute(config)?;
    for p in [&exe, &config] {
        if p.to_string_lossy().contains(['"', '\\', ' ']) {
            bail!("{} has a quote, backslash or space: install it elsewhere", p.display());
        }
    }
    Ok(format!("restrict,command=\"{} --config {}\" {pubkey} {REGISTER_TAG}", exe.display(), config.display()))
}

const REGISTER_TAG: &str = "backuppc-enroll-register-key";

fn install_register_key(
    cfg: &ServerConfig,
    srv: &Server,
    config: &Path,
    pubkey: &Path,
    target: Option<PathBuf>,
) -> Result<()> {
    let text = std::fs::read_to_string(pubkey).with_context(|| format!("cannot read {}", pubkey.display()))?;
    let key = names::public_key(text.trim()).map_err(anyhow::Error::msg)?;
    let line = register_line(config, &names::key_without_comment(&key))?;
    let target = target.unwrap_or_else(|| srv.ssh_dir.join("authorized_keys"));
    if let Some(dir) = target.parent() {
        srv.ensure_dir(dir, srv.file(0o700))?;
    }
    let existing = String::from_utf8_lossy(&atomic::read_or_empty(&target)?).into_owned();
    let mut out: String = existing.split_inclusive('\n').filter(|l| !l.trim_end().ends_with(REGISTER_TAG)).collect();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&line);
    out.push('\n');
    if out == existing {
        println!("{} already has this register key", target.display());
        return Ok(());
    }
    atomic::write(&target, out.as_bytes(), Ownership::of_existing_or(&target, srv.file(0o600)))?;
    println!("installed the register key in {} for {}", target.display(), cfg.backuppc_user);
    Ok(())
}

fn check_config(cfg: &ServerConfig, config: &Path, register_key: Option<&Path>) -> Result<()> {
    let mut errors = 0;
    let mut report = |ok: Result<String, String>, warn: bool| match ok {
        Ok(m) => println!("ok: {m}"),
        Err(m) if warn => println!("warning: {m}"),
        Err(m) => {
            errors += 1;
            println!("error: {m}")
        }
    };
    report(Ok(format!("{} parses", config.display())), false);
    if let Some(url) = cfg.url.as_deref().filter(|u| u.contains("://backup.example.org")) {
        report(Err(format!("url {url} is the shipped example: set it to this server's BackupPC address")), true);
    }
    let srv = Server::open(cfg);
    if let Ok(s) = &srv {
        use std::os::unix::fs::MetadataExt;
        // sshd runs forced-command as the BackupPC account: it must read the config.
        let readable = std::fs::metadata(config)
            .map(|m| m.uid() == s.uid || (m.gid() == s.gid && m.mode() & 0o040 != 0) || m.mode() & 0o004 != 0);
        report(
            match readable {
                Ok(true) => Ok(format!("{} is readable by {}", config.display(), cfg.backuppc_user)),
                _ => Err(format!(
                    "{} is not readable by {}, which sshd runs forced-command as: chgrp {} it and chmod 0640",
                    config.display(),
                    cfg.backuppc_user,
                    cfg.backuppc_user
                )),
            },
            false,
        );
    }
    report(
        srv.as_ref().map(|s| format!("BackupPC user {} (uid {})", cfg.backuppc_user, s.uid)).map_err(|e| e.clone()),
        false,
    );
    let conf = &cfg.backuppc_conf_dir;
    report(
        std::fs::read_to_string(conf.join("hosts"))
            .map(|h| format!("{} has {} hosts", conf.join("hosts").display(), hosts::entries(&h).len()))
            .map_err(|e| format!("cannot read {}: {e}", conf.join("hosts").display())),
        false,
    );
    if let Ok(s) = &srv {
        use std::os::unix::fs::MetadataExt;
        let writable = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.uid() == s.uid || (m.gid() == s.gid && m.mode() & 0o020 != 0))
                .unwrap_or(false)
        };
        for p in [conf.clone(), cfg.registry.parent().map(Path::to_path_buf).unwrap_or_default()] {
            report(
                if writable(&p) {
                    Ok(format!("{} is writable by {}", p.display(), cfg.backuppc_user))
                } else {
                    Err(format!("{} is missing or not writable by {}", p.display(), cfg.backuppc_user))
                },
                false,
            );
        }
        report(
            if s.ssh_dir.is_dir() {
                Ok(format!("per-host keys go to {}", s.key_dir().display()))
            } else {
                Err(format!("{} does not exist yet (created at the first enrollment)", s.ssh_dir.display()))
            },
            true,
        );
    }
    match cfg.logon_check {
        LogonCheck::Any => {
            report(Err("logon_check = \"any\": any logon is accepted, the directory is not asked".into()), true)
        }
        LogonCheck::Nss => report(Ok("logons are checked through NSS (getent passwd)".into()), false),
        LogonCheck::File => report(
            cfg.logon_file
                .as_ref()
                .map(|f| {
                    std::fs::read_to_string(f)
                        .map(|t| {
                            format!(
                                "{} lists {} logons",
                                f.display(),
                                t.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).count()
                            )
                        })
                        .map_err(|e| format!("cannot read {}: {e}", f.display()))
                })
                .unwrap_or(Err("logon_file is not set".into())),
            false,
        ),
        LogonCheck::Ldap => {
            let l = cfg.ldap.clone().expect("checked at load");
            let url = l.url.clone();
            report(
                backuppc_enroll::server::directory::Ldap(l)
                    .exists("backuppc-enroll-check")
                    .map(|_| format!("the LDAP directory {url} answers"))
                    .map_err(|e| format!("the LDAP directory does not answer: {e}")),
                false,
            );
        }
    }
    match cfg.mode {
        Mode::Open => report(Err("mode = \"open\": whoever holds the register key may enroll".into()), true),
        Mode::Token => report(
            TokenStore::load(&cfg.tokens)
                .map(|s| format!("mode = \"token\", {} tokens in {}", s.tokens.len(), cfg.tokens.display()))
                .map_err(|e| format!("{}: {e}", cfg.tokens.display())),
            false,
        ),
        Mode::Approve => report(Ok("mode = \"approve\": enrollments wait for forced-command approve".into()), false),
    }
    // A wave of enrollments meets sshd's MaxStartups (Debian: 10:30:100):
    // past it, connections are dropped at key exchange. enroll retries,
    // but a server that enrolls many machines at once should raise it.
    if let Ok(o) = std::process::Command::new("/usr/sbin/sshd").arg("-T").output() {
        let text = String::from_utf8_lossy(&o.stdout);
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix("maxstartups ")) {
            let start: u32 = v.split(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            report(
                if start >= 100 {
                    Ok(format!("sshd MaxStartups {v}"))
                } else {
                    Err(format!(
                        "sshd MaxStartups {v} drops connections beyond {start} unauthenticated ones: for enrollment waves set MaxStartups 200:30:400 in sshd_config (enroll retries, slower)"
                    ))
                },
                true,
            );
        }
    }
    // BackupPC's CGI reads the edit lock from the main config only.
    let main = conf.join("config.pl");
    if main.exists() {
        let out = std::process::Command::new("perl")
            .arg("-e")
            .arg("our %Conf; do $ARGV[0]; print join(' ', grep { ($Conf{CgiUserConfigEdit}{$_} // 0) } qw(RsyncSshArgs RsyncClientPath RsyncArgs RsyncArgsExtra RsyncFullArgsExtra RsyncIncrArgsExtra RsyncRestoreArgs RsyncRestoreArgsExtra ClientNameAlias XferMethod))")
            .arg(&main)
            .output();
        if let Ok(o) = out {
            let open = String::from_utf8_lossy(&o.stdout).trim().to_string();
            report(
                if open.is_empty() {
                    Ok("users cannot edit the per-host ssh settings in the web interface".into())
                } else {
                    Err(format!("users may edit {open} in the web interface, which lets a host's user redirect its key or run commands as backuppc: set $Conf{{CgiUserConfigEdit}}{{…}} = 0 for them in {}", main.display()))
                },
                false,
            );
        }
    }
    let key = match register_key {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            names::key_without_comment(&names::public_key(text.trim()).map_err(anyhow::Error::msg)?)
        }
        None => "ssh-ed25519 AAAA…(the register key's public key)".into(),
    };
    println!("\nauthorized_keys line for the register key (or run forced-command install-register-key KEY.pub):");
    println!("{}", register_line(config, &key)?);
    if errors > 0 {
        bail!("{errors} problem(s) found");
    }
    Ok(())
}

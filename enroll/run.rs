//! The enrollment, step by step, with a progress line for each.

use crate::{local, logon, shares, Cli};
use anyhow::{bail, Context, Result};
use backuppc_enroll::config::{ClientConfig, ClientState, ConfigError};
use backuppc_enroll::log::timestamp;
use backuppc_enroll::names;
use backuppc_enroll::protocol::answer::{matches_everything, Answer, AnswerError, Success};
use backuppc_enroll::protocol::hello::Hello;
use backuppc_enroll::protocol::request::Request;
use backuppc_enroll::protocol::status::{self, Status, StatusError, MAX_STATUS};
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

/// The server answered a status query: it no longer backs this host up
/// with the key installed here (exit 3, like a refusal).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotListed(String);

/// An error already given on stdout as JSON (by `--check --json`): `main`
/// does not print a second object.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReportedAsJson(String, u8);

/// The server's answer is well formed but cannot be installed here (a
/// share that is the whole disk, a key already used for something else);
/// exit status 2, like an answer that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(String);

pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(ReportedAsJson(_, code)) = e.downcast_ref() {
        *code
    } else if e.downcast_ref::<Pending>().is_some() {
        4
    } else if e.downcast_ref::<Refused>().is_some() || e.downcast_ref::<NotListed>().is_some() {
        3
    } else if e.downcast_ref::<CallError>().is_some()
        || e.downcast_ref::<AnswerError>().is_some()
        || e.downcast_ref::<ServerFailed>().is_some()
        || e.downcast_ref::<Unusable>().is_some()
    {
        2
    } else {
        1
    }
}

struct Progress;

impl Progress {
    fn step(&self, what: &str) {
        eprintln!("==> {}", names::display_text(what));
    }
    fn done(&self, lines: &[String]) {
        for l in lines {
            eprintln!("    {}", names::display_text(l));
        }
        if lines.is_empty() {
            eprintln!("    already in place");
        }
    }
}

/// While the server is being waited for: on a terminal, a line that counts
/// the seconds; elsewhere nothing (the line before it said what is awaited).
struct Waiting {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Waiting {
    fn start(timeout: u64) -> Waiting {
        if !std::io::stderr().is_terminal() {
            return Waiting { stop: None, thread: None };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let frames = ['|', '/', '-', '\\'];
            for i in 0.. {
                eprint!(
                    "\r    {} waiting for the server: {} s of {timeout} s",
                    frames[i % 4],
                    started.elapsed().as_secs()
                );
                if rx.recv_timeout(Duration::from_millis(200)).is_ok()
                    || matches!(rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Disconnected))
                {
                    break;
                }
            }
            eprint!("\r\x1b[K");
        });
        Waiting { stop: Some(tx), thread: Some(thread) }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The client config, or one message naming the file and the fix.
fn load_config(path: &Path) -> Result<ClientConfig> {
    ClientConfig::load(path).map_err(|e| match e {
        ConfigError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "the client config {} does not exist: unpack the site bundle from your backup administrator first \
             (as root: tar -xpzf site.tar.gz -C /), or name another file with --config FILE",
            path.display()
        ),
        // Its text already carries the cause: not once more as a source.
        other => anyhow::anyhow!("{other}"),
    })
}

/// What a status query found out, as the re-run and `--check` report it.
enum Remote {
    /// The server answered the query.
    Told(Status),
    /// The server's forced-command is older than the status query.
    Unsupported,
    /// Not asked (`--offline`), or the server could not be asked: why.
    NotAsked(String),
}

impl Remote {
    /// `(ok, line)` for the list of what was checked, or `None` when the
    /// question stayed open (then [`Remote::not_checked`] says why).
    fn checked(&self, server: &str) -> Option<(bool, String)> {
        match self {
            Remote::Told(s) => Some((s.healthy(), s.explain(server))),
            Remote::Unsupported | Remote::NotAsked(_) => None,
        }
    }

    fn not_checked(&self, server: &str) -> Option<String> {
        let why = match self {
            Remote::Told(_) => return None,
            Remote::Unsupported => {
                format!("{server}'s enrollment service is older and cannot answer status queries")
            }
            Remote::NotAsked(why) => why.clone(),
        };
        Some(format!(
            "whether {server} still lists this host ({why}); its administrator sees it with `forced-command show HOST`"
        ))
    }
}

/// A call of the server with the register key, as the client config says.
fn register_call<'a>(cfg: &'a ClientConfig, server: &'a str) -> Call<'a> {
    Call {
        server,
        port: cfg.port,
        user: &cfg.server_user,
        register_key: &cfg.register_key,
        host_keys_file: &cfg.server_host_keys,
        timeout: Duration::from_secs(cfg.timeout.max(1)),
        source: cfg.source_address,
        nodelay: true,
    }
}

/// Ask the server, with the register key, whether it still backs this
/// host up with the key installed here. Never enrolls: a server without
/// the query refuses `status` as a malformed request.
fn ask_status(cfg: &ClientConfig, server: &str, installed: &str) -> Remote {
    let mut hello = match hello(cfg) {
        Ok(h) => h,
        Err(e) => return Remote::NotAsked(format!("{e:#}")),
    };
    hello.installed_key = Some(installed.to_string());
    let call = register_call(cfg, server);
    let reply = match call.run(status::COMMAND, hello.render().as_bytes()) {
        Ok(r) => r,
        Err(e) => return Remote::NotAsked(format!("it could not be asked: {e}")),
    };
    match Status::parse(&reply.stdout) {
        Ok(s) if reply.exit_status == 0 => Remote::Told(s),
        Ok(_) => Remote::NotAsked(format!("its answer came with exit status {}", reply.exit_status)),
        Err(StatusError::NotStatus) => {
            let text = String::from_utf8_lossy(&reply.stdout[..reply.stdout.len().min(MAX_STATUS)]).into_owned();
            // An older forced-command reads `status` as a malformed OS:logon.
            if reply.exit_status == 1 && text.contains("OS:logon") {
                Remote::Unsupported
            } else {
                Remote::NotAsked(format!(
                    "it answered: {}",
                    names::display_text(text.trim()).lines().next().unwrap_or("(nothing)")
                ))
            }
        }
        Err(e) => Remote::NotAsked(e.to_string()),
    }
}

pub fn main(cli: &Cli) -> Result<()> {
    let cfg = load_config(&cli.config)?;
    let server = cfg.server.clone().with_context(|| format!("`server` is not set in {}", cli.config.display()))?;
    names::server_address(&server).map_err(|e| anyhow::anyhow!("`server` in {}: {e}", cli.config.display()))?;
    if !cli.dry_run && !nix::unistd::geteuid().is_root() {
        bail!("enroll must run as root (it creates a user and a sudoers drop-in): try sudo enroll");
    }
    let p = Progress;
    if cli.uninstall {
        return uninstall(cli, &cfg, &server, &p);
    }
    let state = ClientState::load(&cfg.state_file).filter(|s| s.server == server);
    if cli.check {
        return check(cli, &cfg, &server, state.as_ref());
    }
    preflight(&cfg)?;
    let logon = choose_logon(cli, state.as_ref())?;
    // An interrupted re-enrollment is finished by any re-run.
    let reuse = state.as_ref().filter(|s| s.logon == logon && !cli.rekey && s.rekey_from.is_none()).cloned();

    if cli.dry_run {
        return dry_run(cli, &cfg, &server, &logon, reuse.as_ref(), state.as_ref());
    }

    // The server is asked first: when it cannot be reached or refuses,
    // nothing has been changed on this machine.
    let reused = reuse.is_some();
    let mut remote = None;
    let (success, enrolled_at) = match reuse {
        Some(s) => {
            p.step(&format!("Enrollment with {server}"));
            p.done(&[format!(
                "already enrolled as host {} for {} (use --rekey to enroll again)",
                s.host.as_deref().unwrap_or("?"),
                s.logon
            )]);
            // Asked before anything changes here: a host the server no
            // longer backs up with this key is not reported "enrolled".
            p.step(&format!("Asking {server} whether it still lists this host"));
            let told = ask_status(&cfg, &server, &s.key_fingerprint);
            match told.checked(&server) {
                Some((true, line)) => p.done(&[line]),
                Some((false, line)) => {
                    return Err(NotListed(format!("{line}. Nothing was changed on this machine")).into())
                }
                None => p.done(&[format!("not checked: {}", told.not_checked(&server).unwrap_or_default())]),
            }
            remote = Some(told);
            let success = Success {
                key: s.key.clone(),
                url: s.url.clone(),
                host: s.host.clone(),
                from: s.from.clone(),
                shares: s.shares.clone(),
            };
            (success, s.enrolled_at.clone())
        }
        None => {
            if state.as_ref().is_some_and(|s| s.rekey_from.is_some()) {
                p.step(&format!("Finishing the re-enrollment with {server} that was interrupted"));
                p.done(&[format!("{} records it as under way", cfg.state_file.display())]);
            }
            p.step(&format!("Asking {server} to enroll {}:{logon}", os()));
            let installed = state.as_ref().map(|s| s.key_fingerprint.clone());
            // The new key was installed already; the server was not told.
            let finish = state.as_ref().is_some_and(|s| s.rekey_from.as_ref().is_some_and(|f| *f != s.key_fingerprint));
            // Recorded before the server changes anything: if this run is
            // cut off, the next one knows to ask the server again.
            if let Some(s) = state.as_ref().filter(|s| s.rekey_from.is_none()) {
                let marked = ClientState { rekey_from: Some(s.key_fingerprint.clone()), ..s.clone() };
                local::save_state(&cfg, &marked)?;
            }
            let answer = call_server(&cfg, &server, &logon, cli.token.as_deref(), installed.as_deref(), finish);
            // A server that said no changed nothing: no re-enrollment is
            // under way (a timeout or a lost connection leaves the mark).
            if let (Err(e), Some(s)) = (&answer, state.as_ref().filter(|s| s.rekey_from.is_none())) {
                if e.downcast_ref::<Refused>().is_some() || e.downcast_ref::<Pending>().is_some() {
                    local::save_state(&cfg, s)?;
                }
            }
            let success = answer?;
            p.done(&[format!("registered as host {}", success.host.as_deref().unwrap_or("?"))]);
            (success, timestamp())
        }
    };
    let registered = if reused {
        format!(
            "The recorded enrollment in {} has it: run enroll --rekey to ask {server} again",
            cfg.state_file.display()
        )
    } else {
        format!(
            "{server} has registered this machine as host {}: ask its administrator to fix this, then run enroll \
             --rekey (or have them remove the host with `forced-command revoke {}`). Nothing was changed on this machine",
            success.host.as_deref().unwrap_or("?"),
            success.host.as_deref().unwrap_or("HOST")
        )
    };
    if let Err(why) = shares::check(&success.shares) {
        return Err(Unusable(format!(
            "the server's answer has a share this machine will not back up: {why}.\n{registered}"
        ))
        .into());
    }
    refuse_known_key(&cfg, &server, &success.key).map_err(|why| Unusable(format!("{why}.\n{registered}")))?;
    let mut notes = Vec::new();
    let from = match &success.from {
        Some(f) if matches_everything(f) => {
            notes.push(format!(
                "the server's `from: {f}` lets every address in, so it is no restriction: the key line has no from= \
                 (the server's `from` setting should name where backups come from)"
            ));
            None
        }
        other => other.clone(),
    };

    p.step(&format!("Backup user {}", cfg.backup_user));
    p.done(&local::ensure_backup_user(&cfg)?);
    p.step("Sudoers drop-in");
    p.done(&local::ensure_sudoers(&cfg, &std::path::absolute(&cli.config)?)?);
    p.step("Server key for backups");
    let line = key_line(cli, &server, &cfg, from.clone(), &success.key)?;
    p.done(&local::install_key_line(&cfg, &line)?);
    for n in &notes {
        eprintln!("    note: {n}");
    }
    let key = names::public_key(&success.key).map_err(anyhow::Error::msg)?;
    let mut new_state = ClientState {
        server: server.clone(),
        host: success.host.clone(),
        logon: logon.clone(),
        url: success.url.clone(),
        from: from.clone(),
        shares: success.shares.clone(),
        key: success.key.clone(),
        key_fingerprint: names::fingerprint(&key),
        enrolled_at,
        created_user: local::enroll_created_user(&cfg),
        rekey_from: None,
    };
    let before = state.as_ref().filter(|_| !reused);
    if let Some(before) = before {
        if before.key_fingerprint != new_state.key_fingerprint {
            // The server still accepts the key this machine had: tell it the
            // new one is installed, so it stops. Recorded first, so that a
            // run cut off here finishes on the next run.
            local::save_state(
                &cfg,
                &ClientState { rekey_from: Some(before.key_fingerprint.clone()), ..new_state.clone() },
            )?;
            p.step(&format!("Telling {server} the new key is installed"));
            let confirmed =
                call_server(&cfg, &server, &logon, cli.token.as_deref(), Some(&new_state.key_fingerprint), true)
                    .with_context(|| {
                        format!(
                    "the new key is installed, but {server} could not be told so and still accepts the previous one: \
                     backups work meanwhile; run enroll again to finish"
                )
                    })?;
            if confirmed.key != success.key {
                // A server that does not keep the previous key made yet
                // another one: that one is the key now.
                refuse_known_key(&cfg, &server, &confirmed.key)
                    .map_err(|why| Unusable(format!("{why}.\n{registered}")))?;
                let line = key_line(cli, &server, &cfg, from.clone(), &confirmed.key)?;
                local::install_key_line(&cfg, &line)?;
                let key = names::public_key(&confirmed.key).map_err(anyhow::Error::msg)?;
                new_state.key = confirmed.key.clone();
                new_state.key_fingerprint = names::fingerprint(&key);
            }
            p.done(&["the previous key is no longer accepted".to_string()]);
        }
    }
    p.step("Enrollment record");
    let saved = local::save_state(&cfg, &new_state)?;
    p.done(&if saved { vec![format!("wrote {}", cfg.state_file.display())] } else { vec![] });

    let checked =
        "the backup user, the sudoers drop-in and the key line on this machine (repaired where they differed)";
    let asked = remote.as_ref().and_then(|r| r.checked(&server)).map(|(_, line)| line);
    let checked = match &asked {
        Some(line) => format!("{checked}; and {line}"),
        None => checked.to_string(),
    };
    let not_checked = remote.as_ref().and_then(|r| r.not_checked(&server));
    if cli.json {
        let mut v = json!({
            "server": server, "host": success.host, "logon": logon, "url": success.url,
            "from": from, "shares": success.shares, "key_fingerprint": new_state.key_fingerprint,
            "backup_user": cfg.backup_user, "restore": cfg.restore, "notes": notes,
            "asked_server": !reused || asked.is_some(),
        });
        if reused {
            v["checked"] = json!(checked);
            v["not_checked"] = json!(not_checked);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let host = success.host.as_deref().unwrap_or("(unnamed host)");
        if reused {
            println!("This machine was already enrolled for backups on {server} as {host}.");
            println!("Checked: {checked}.");
            if let Some(n) = &not_checked {
                println!("Not checked: {n}.");
            }
        } else {
            println!("This machine is enrolled for backups on {server} as {host}.");
        }
        for n in &notes {
            println!("Note: {n}.");
        }
        if !success.shares.is_empty() {
            println!("Backed up: {}", success.shares.join(", "));
        }
        println!("Choose what is backed up and when at: {}", success.url);
    }
    Ok(())
}

fn key_line(cli: &Cli, server: &str, cfg: &ClientConfig, from: Option<String>, key: &str) -> Result<KeyLine> {
    Ok(KeyLine::new(
        from,
        &cfg.rsyncsend.to_string_lossy(),
        &std::path::absolute(&cli.config)?.to_string_lossy(),
        key,
        server,
    )?)
}

/// The per-host key must be a key for backups only: never the register key
/// (every holder of the site bundle has its private half), one of this
/// machine's own host keys, or a key the backup user already has for
/// something else.
fn refuse_known_key(cfg: &ClientConfig, server: &str, key: &str) -> std::result::Result<(), String> {
    let offered = names::public_key(key)?;
    let register = register_public_key(&cfg.register_key)?;
    if register.key_data() == offered.key_data() {
        return Err(format!(
            "the server answered the register key itself ({}) as this host's backup key: installing it would let \
             everyone who has the site bundle log in as {}",
            names::fingerprint(&offered),
            cfg.backup_user
        ));
    }
    for p in &cfg.host_keys {
        let own = std::fs::read_to_string(p).ok().and_then(|t| names::public_key(t.trim()).ok());
        if own.is_some_and(|k| k.key_data() == offered.key_data()) {
            return Err(format!(
                "the server answered this machine's own host key {} ({}) as its backup key",
                p.display(),
                names::fingerprint(&offered)
            ));
        }
    }
    let blob = key.split(' ').nth(1).unwrap_or_default();
    if local::other_keys(cfg, server).map_err(|e| format!("{e:#}"))?.iter().any(|k| k == blob) {
        return Err(format!(
            "the server answered a key ({}) that {} already has in {} for something else: one key, one use",
            names::fingerprint(&offered),
            cfg.backup_user,
            local::authorized_keys_path(cfg).map(|p| p.display().to_string()).unwrap_or_default()
        ));
    }
    Ok(())
}

/// The public half of the private register key, from the key file itself
/// (its `.pub` beside it only when the private file is in a format this
/// toolkit does not read, such as PEM).
fn register_public_key(path: &Path) -> std::result::Result<ssh_key::PublicKey, String> {
    let private =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the register key {}: {e}", path.display()));
    if let Ok(k) = private
        .as_deref()
        .map_err(Clone::clone)
        .and_then(|t| ssh_key::PrivateKey::from_openssh(t).map_err(|e| e.to_string()))
    {
        return Ok(k.public_key().clone());
    }
    let public = path.with_extension("pub");
    std::fs::read_to_string(&public).ok().and_then(|t| names::public_key(t.trim()).ok()).ok_or_else(|| {
        format!(
            "cannot tell the register key's public key from {} (not an OpenSSH private key) nor from {}: \
             needed to check that the server's key is not the register key; regenerate the bundle with an \
             OpenSSH-format register key",
            path.display(),
            public.display()
        )
    })
}

fn dry_run(
    cli: &Cli,
    cfg: &ClientConfig,
    server: &str,
    logon: &str,
    reuse: Option<&ClientState>,
    state: Option<&ClientState>,
) -> Result<()> {
    let mut plan = vec![
        format!(
            "make sure user {} exists (system user, home {}, shell /bin/sh)",
            cfg.backup_user,
            cfg.backup_home().display()
        ),
        format!(
            "install {} allowing only `{} exec-rsync` (which runs rsync confined) without a tty",
            cfg.sudoers_file().display(),
            cfg.rsyncsend.display()
        ),
    ];
    match reuse {
        Some(s) => plan.push(format!(
            "keep the enrollment of {} as host {} (use --rekey to enroll again)",
            s.logon,
            s.host.as_deref().unwrap_or("?")
        )),
        None => {
            if let Some(s) = state.filter(|s| s.logon != logon) {
                plan.push(format!("re-enroll this machine, enrolled for {}, for {logon}", s.logon));
            }
            plan.push(format!(
                "ask {}@{} port {} to enroll {}:{} (host key pinned in {})",
                cfg.server_user,
                server,
                cfg.port,
                os(),
                logon,
                cfg.server_host_keys.display()
            ))
        }
    }
    plan.push(format!(
        "install the server's key in {} bound to {}",
        local::authorized_keys_path(cfg)?.display(),
        cfg.rsyncsend.display()
    ));
    plan.push(format!("record the enrollment in {}", cfg.state_file.display()));
    if cli.json {
        let v = json!({ "dry_run": true, "server": server, "logon": logon, "plan": plan });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("enroll would, on this machine:");
        for step in &plan {
            println!("  - {step}");
        }
    }
    Ok(())
}

/// `--check`: the local enrollment as it is, then the server's status
/// query (unless `--offline`).
fn check(cli: &Cli, cfg: &ClientConfig, server: &str, state: Option<&ClientState>) -> Result<()> {
    let Some(state) = state else {
        bail!(
            "this machine is not enrolled with {server}: {} has no enrollment with it; run enroll to enroll it",
            cfg.state_file.display()
        );
    };
    let line = key_line(cli, server, cfg, state.from.clone(), &state.key)?;
    let mut rows = vec![(
        true,
        format!(
            "{} records host {} for {}",
            cfg.state_file.display(),
            state.host.as_deref().unwrap_or("?"),
            state.logon
        ),
    )];
    rows.extend(local::check(cfg, &std::path::absolute(&cli.config)?, state, &line)?);
    let problems = rows.iter().filter(|(ok, _)| !ok).count();
    let remote = if cli.offline {
        Remote::NotAsked("not asked: --offline".into())
    } else {
        ask_status(cfg, server, &state.key_fingerprint)
    };
    let told = remote.checked(server);
    let not_checked = remote.not_checked(server);
    // A broken local enrollment is repaired here first (exit 1); a host
    // the server no longer backs up needs the server (exit 3).
    let failed = if problems > 0 {
        Some((
            1,
            format!(
                "the local enrollment is incomplete ({problems} problem(s) above): run enroll as root to repair it"
            ),
        ))
    } else {
        match &told {
            Some((false, line)) => Some((3, line.clone())),
            _ => None,
        }
    };
    if cli.json {
        let mut v = json!({
            "server": server, "host": state.host, "logon": state.logon, "url": state.url,
            "checked": rows.iter().map(|(ok, what)| json!({ "ok": ok, "what": what })).collect::<Vec<_>>(),
            "server_status": match &remote {
                Remote::Told(s) => json!({
                    "ok": s.healthy(), "what": s.explain(server), "host": s.host, "state": s.state.as_str(),
                    "key": s.key.as_str(), "listed": s.listed,
                }),
                _ => serde_json::Value::Null,
            },
            "not_checked": not_checked,
            "ok": failed.is_none(),
        });
        if let Some((code, f)) = &failed {
            v["error"] = json!(f);
            v["exit_code"] = json!(code);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        if let Some((code, f)) = failed {
            return Err(ReportedAsJson(f, code).into());
        }
    } else {
        let mark = |ok: bool| if ok { "ok     " } else { "PROBLEM" };
        println!("Checked on this machine:");
        for (ok, what) in &rows {
            println!("  {} {what}", mark(*ok));
        }
        if let Some((ok, line)) = &told {
            println!("Checked with {server}:");
            println!("  {} {line}", mark(*ok));
        }
        if let Some(n) = &not_checked {
            println!("Not checked: {n}.");
        }
    }
    match failed {
        Some((3, f)) => Err(NotListed(f).into()),
        Some((_, f)) => Err(anyhow::anyhow!(f)),
        None => Ok(()),
    }
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

fn choose_logon(cli: &Cli, state: Option<&ClientState>) -> Result<String> {
    let enrolled = state.map(|s| s.logon.clone());
    let tty = std::io::stdin().is_terminal();
    let logon = match &cli.logon {
        Some(l) => {
            logon::check_logon(l).map_err(anyhow::Error::msg)?;
            l.clone()
        }
        None => {
            // The enrolled logon first: Enter (or --yes) keeps the machine
            // with the person it is enrolled for.
            let proposed = enrolled.clone().or_else(|| logon::propose(std::env::var("SUDO_USER").ok()));
            if cli.yes || cli.dry_run {
                let l = proposed.context("could not tell who the main user is: pass --logon LOGON")?;
                logon::check_logon(&l).map_err(|e| anyhow::anyhow!("the proposed {e}: pass --logon LOGON"))?;
                l
            } else if tty {
                let mut input = dialoguer::Input::<String>::new()
                    .with_prompt("Logon of this machine's main user")
                    .validate_with(|l: &String| logon::check_logon(l.trim()));
                if let Some(p) = proposed.filter(|p| logon::check_logon(p).is_ok()) {
                    input = input.default(p);
                }
                input.interact_text()?.trim().to_string()
            } else {
                bail!("no terminal to ask who the main user is: pass --logon LOGON --yes");
            }
        }
    };
    if let (Some(s), Some(e)) = (state, enrolled.as_deref().filter(|e| *e != logon)) {
        let host = s.host.as_deref().unwrap_or("?");
        if cli.reassign {
            eprintln!("==> Re-enrolling host {host}, enrolled for {e}, for {logon} (--reassign)");
        } else if cli.yes || cli.dry_run || !tty {
            bail!(
                "this machine is enrolled as host {host} for {e}; enrolling it for {logon} would hand its backups \
                 to another person: add --reassign if that is meant, or leave out --logon to keep {e}"
            );
        } else {
            let yes = dialoguer::Confirm::new()
                .with_prompt(format!("This machine is enrolled as host {host} for {e}. Enroll it for {logon} instead?"))
                .default(false)
                .interact()?;
            if !yes {
                bail!("kept the enrollment of host {host} for {e}: nothing was changed");
            }
        }
    }
    Request::parse(&format!("{}:{logon}", os()))
        .with_context(|| format!("logon {} is not valid", names::quoted(&logon)))?;
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
        // This machine's rsyncsend (installed with this enroll) serves the
        // dumps trigger; the server sets it up only when told so.
        accepts: vec![backuppc_enroll::dumps::TRIGGER.into()],
        ..Hello::default()
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

/// Ask the server to enroll this machine. `installed`: the fingerprint of
/// the server's key this machine has installed (on a re-enrollment);
/// `finish`: that key is the one the server answered last, so the one
/// before may go.
fn call_server(
    cfg: &ClientConfig,
    server: &str,
    logon: &str,
    token: Option<&str>,
    installed: Option<&str>,
    finish: bool,
) -> Result<Success> {
    let mut hello = hello(cfg)?;
    hello.token = token.map(str::to_string);
    hello.installed_key = installed.map(str::to_string);
    hello.finish_rekey = finish;
    let call = register_call(cfg, server);
    eprintln!(
        "    connecting to {server} port {} as {} … (timeout {} s)",
        cfg.port,
        cfg.server_user,
        call.timeout.as_secs()
    );
    let reply = {
        let _waiting = Waiting::start(call.timeout.as_secs());
        call.run(&format!("{}:{logon}", os()), hello.render().as_bytes())?
    };
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
    if cli.dry_run && cli.json {
        println!("{}", json!({ "dry_run": true, "uninstall": server, "remove_user": cli.remove_user }));
        return Ok(());
    }
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
    let host = ClientState::load(&cfg.state_file).filter(|s| s.server == server).and_then(|s| s.host);
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
    let still_listed = format!(
        "{server} still lists this machine{}: its backup administrator removes it there with `forced-command revoke {}`",
        host.as_deref().map(|h| format!(" as host {h}")).unwrap_or_default(),
        host.as_deref().unwrap_or("HOST")
    );
    if !done.is_empty() {
        eprintln!("    note: {still_listed}");
    }
    if cli.json {
        println!("{}", json!({ "uninstalled": server, "changes": done, "server_side": still_listed }));
    } else if !done.is_empty() {
        println!("Removed the enrollment with {server} from this machine. Note: {still_listed}.");
    }
    Ok(())
}

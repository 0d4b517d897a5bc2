//! `rotate-key add|retire ssh-ed25519 BASE64`: the backup server replacing
//! its own key on this workstation (`forced-command fleet rotate-key`).
//! As the backup account, the request is checked and handed to the root
//! helper on its stdin, through the one sudoers line that allows
//! `rsyncsend --config CONFIG rotate-key` without arguments; the helper
//! reads it again as root, checks it again and rewrites the root-owned
//! `authorized_keys` atomically: a new line carries exactly the options of
//! this server's present line (restrict, command=rsyncsend, from=), so no
//! key it adds can run a shell.

use backuppc_enroll::config::{ClientConfig, ClientState};
use backuppc_enroll::fleet::rotate::{self, Action, Request, MAX_REQUEST};
use backuppc_enroll::log::Audit;
use backuppc_enroll::store::atomic::{self, Ownership};
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// For a command of the `rotate-key` family: run the root helper with the
/// checked request on its stdin and return its exit status, or refuse
/// (`Err`: the reason). `None`: not a rotation command.
pub fn trigger(
    cmd: &str,
    cfg: &ClientConfig,
    config: &Path,
    audit: &Audit,
    client: &str,
) -> Option<Result<ExitCode, String>> {
    let request = match rotate::command(cmd)? {
        Ok(r) => r,
        Err(e) => return Some(Err(format!("{}: {e}", rotate::VERB))),
    };
    audit.event(
        "checked",
        json!({ "client": client, "rotate-key": request.action.as_str(), "key": request.key.fingerprint() }),
    );
    let argv = crate::root_helper(cfg, config, rotate::VERB);
    // A drop-in from before rotation (enroll not run since the upgrade)
    // lacks the helper's line: say so, rather than sudo's own words.
    let allowed = std::process::Command::new(&argv[0])
        .args(["-n", "-l", "--"])
        .args(&argv[3..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !allowed.is_ok_and(|s| s.success()) {
        return Some(Err(format!("{}: run enroll on this workstation to update it", rotate::NOT_ALLOWED)));
    }
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Some(Err(format!("cannot run {}: {e}", argv[0]))),
    };
    // The helper's stderr is this program's: its one line goes to the server.
    let written = child.stdin.take().map(|mut s| s.write_all(request.line().as_bytes()));
    let status = child.wait();
    Some(match (written, status) {
        (Some(Ok(())), Ok(s)) if s.success() => Ok(ExitCode::SUCCESS),
        (_, Ok(s)) => Ok(ExitCode::from(s.code().map_or(1, |c| c.clamp(1, 255) as u8))),
        (_, Err(e)) => Err(format!("cannot wait for {}: {e}", argv[0])),
    })
}

/// The root helper: read one request from stdin, check it, apply it.
pub fn helper(config: &Path) -> ExitCode {
    let audit = Audit::new(c"rsyncsend", None);
    match apply(config) {
        Ok((request, changed, server)) => {
            let what = match (request.action, changed) {
                (Action::Add, true) => "added",
                (Action::Add, false) => "already there",
                (Action::Retire, true) => "kept alone, the others retired",
                (Action::Retire, false) => "already the only one",
            };
            audit.event(
                "rotate-key",
                json!({ "helper": rotate::VERB, "action": request.action.as_str(), "key": request.key.fingerprint(), "server": server, "changed": changed }),
            );
            eprintln!(
                "rsyncsend: rotate-key {}: the key {} of {server}: {what}",
                request.action.as_str(),
                request.key.fingerprint()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            audit.event("refused", json!({ "helper": rotate::VERB, "reason": why }));
            eprintln!("rsyncsend: refused: rotate-key: {why}");
            ExitCode::from(1)
        }
    }
}

/// Read at most [`MAX_REQUEST`] bytes (and one more, to tell a longer
/// request), within a few seconds.
fn read_request() -> Result<Request, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut input = backuppc_enroll::rsync::StdinWithDeadline { deadline }.take(MAX_REQUEST as u64 + 1);
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| format!("cannot read the request on stdin: {e}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "the request is not text".to_string())?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    Request::parse(text).map_err(|e| e.0)
}

/// `dir` is a folder root alone may change: the backup account could
/// otherwise swap the file the helper writes.
fn root_folder(dir: &Path) -> Result<(), String> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be a folder owned by root and writable by root only (enroll makes it so): run enroll again",
            dir.display()
        ));
    }
    Ok(())
}

fn apply(config: &Path) -> Result<(Request, bool, String), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the rotate-key helper must run as root, through sudo".into());
    }
    if !config.is_absolute() || config.components().any(|c| c == Component::ParentDir) {
        return Err(format!("config path {} must be absolute, without '..'", config.display()));
    }
    backuppc_enroll::dumps::check_root_owned("the config", config).map_err(|e| e.0)?;
    let request = read_request()?;
    let cfg = ClientConfig::load(config).map_err(|e| e.to_string())?;
    // The enrollment's state only when root's alone (checked through the
    // descriptor it is read from), as exec-rsync reads it.
    let state = crate::helper::read_root_owned(&cfg.state_file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ClientState>(&bytes).ok());
    let server = cfg.server.clone().or_else(|| state.as_ref().map(|s| s.server.clone())).ok_or_else(|| {
        format!("{} names no server, and there is no enrollment: enroll this workstation first", config.display())
    })?;
    let home = nix::unistd::User::from_name(&cfg.backup_user)
        .map_err(|e| format!("cannot look up the backup user {}: {e}", cfg.backup_user))?
        .map(|u| u.dir)
        .unwrap_or_else(|| cfg.backup_home());
    let ssh = home.join(".ssh");
    root_folder(&ssh)?;
    // The folder is opened once, without following a symlink, and checked
    // through that descriptor; every later step goes through it
    // (`/proc/self/fd/N/…`), so a `.ssh` renamed or swapped for a symlink
    // in the backup account's home after the check changes nothing here.
    let dir = pinned_folder(&ssh)?;
    let path = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join("authorized_keys");
    // One rotation at a time on this file: under a lock on its folder,
    // waited for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.try_lock().is_err() {
        if Instant::now() > deadline {
            return Err(format!("{} stayed locked for 30 s: another rotation runs; try again", ssh.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let existing = read_authorized_keys(&path)?;
    let edit = match request.action {
        Action::Add => rotate::add(&existing, &server, &request.key),
        Action::Retire => rotate::retire(&existing, &server, &request.key),
    }
    .map_err(|e| e.0)?;
    let changed = edit.is_some();
    if let Some(text) = edit {
        let own = Ownership::of_existing_or(&path, Ownership { uid: 0, gid: 0, mode: 0o644 });
        atomic::write(&path, text.as_bytes(), own).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if request.action == Action::Retire {
        record_key(&cfg.state_file, state, &server, &request)?;
    }
    Ok((request, changed, server))
}

/// `dir`, opened without following a symlink, and root's alone as that
/// descriptor shows it.
fn pinned_folder(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|e| format!("cannot open the folder {} (not followed if a link): {e}", dir.display()))?;
    let m = f.metadata().map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be a folder owned by root and writable by root only (enroll makes it so): run enroll again",
            dir.display()
        ));
    }
    Ok(f)
}

/// The file as root reads it: a plain root-owned file with one name, not
/// a link (as exec-rsync reads its state).
fn read_authorized_keys(path: &Path) -> Result<String, String> {
    let bytes = crate::helper::read_root_owned(path)?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not text: fix it by hand", path.display()))
}

/// The enrollment record follows the key the server now uses, so that
/// `enroll` (its check, its repair of the key line) keeps the new key
/// rather than putting the retired one back.
fn record_key(state_file: &Path, state: Option<ClientState>, server: &str, request: &Request) -> Result<(), String> {
    let Some(state) = state.filter(|s| s.server == server) else { return Ok(()) };
    let key = request.key.openssh();
    if state.key == key {
        return Ok(());
    }
    let updated = ClientState { key, key_fingerprint: request.key.fingerprint(), ..state };
    let mut text = serde_json::to_string_pretty(&updated).map_err(|e| e.to_string())?;
    text.push('\n');
    let own = Ownership::of_existing_or(state_file, Ownership { uid: 0, gid: 0, mode: 0o644 });
    atomic::write(state_file, text.as_bytes(), own).map_err(|e| format!("cannot write {}: {e}", state_file.display()))
}

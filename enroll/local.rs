//! What `enroll` changes on the workstation: the backup user, its
//! root-owned `~/.ssh/authorized_keys`, the sudoers drop-in, the state
//! file. Each step checks first and changes only what differs, so a
//! re-run on an enrolled machine changes nothing.

use anyhow::{bail, Context, Result};
use backuppc_enroll::config::{ClientConfig, ClientState};
use backuppc_enroll::ssh::authorized_keys::{self, KeyLine};
use backuppc_enroll::store::atomic::{self, Ownership};
use nix::unistd::User;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT_FILE: Ownership = Ownership { uid: 0, gid: 0, mode: 0o644 };

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Beside the state file: which backup user `enroll` created, written the
/// moment it is created and kept until `--uninstall --remove-user` deletes
/// the user (the state file itself is written only at the end of a run,
/// and goes with a plain `--uninstall`).
pub fn created_user_record(cfg: &ClientConfig) -> PathBuf {
    cfg.state_file.with_extension("created-user.json")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CreatedUser {
    user: String,
    created_at: String,
}

fn record_created_user(cfg: &ClientConfig) -> Result<()> {
    let path = created_user_record(cfg);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let record = CreatedUser { user: cfg.backup_user.clone(), created_at: backuppc_enroll::log::timestamp() };
    let text = serde_json::to_string_pretty(&record)? + "\n";
    atomic::write(&path, text.as_bytes(), ROOT_FILE).with_context(|| format!("cannot write {}", path.display()))
}

/// Whether `enroll` created the backup user, by its record or (from
/// versions before the record) the state file's flag.
pub fn enroll_created_user(cfg: &ClientConfig) -> bool {
    let recorded = fs::read(created_user_record(cfg))
        .ok()
        .and_then(|b| serde_json::from_slice::<CreatedUser>(&b).ok())
        .is_some_and(|r| r.user == cfg.backup_user);
    recorded || ClientState::load(&cfg.state_file).is_some_and(|s| s.created_user)
}

pub fn lookup_user(name: &str) -> Result<Option<User>> {
    User::from_name(name).with_context(|| format!("cannot look up user {name}"))
}

/// Create the backup user if missing; repair a shell that would stop
/// sshd from running the forced command. Returns a line per change.
pub fn ensure_backup_user(cfg: &ClientConfig) -> Result<Vec<String>> {
    let name = &cfg.backup_user;
    let mut done = Vec::new();
    match lookup_user(name)? {
        None => {
            let home = cfg.backup_home();
            if let Some(parent) = home.parent() {
                fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            run(Command::new("useradd")
                .args(["--system", "--create-home", "--user-group", "--shell", "/bin/sh", "--password", "*"])
                .args(["--comment", "BackupPC backups (backuppc-enroll)", "--home-dir"])
                .arg(&home)
                .arg(name))
            .with_context(|| format!("cannot create the backup user {name}"))?;
            // At once, before anything else can fail or be interrupted: a
            // later --uninstall --remove-user must know the user is ours.
            record_created_user(cfg)?;
            done.push(format!("created system user {name} (home {})", home.display()));
        }
        Some(u) => {
            let shell = u.shell.to_string_lossy();
            if shell.ends_with("nologin") || shell.ends_with("false") {
                run(Command::new("usermod").args(["--shell", "/bin/sh", name]))?;
                done.push(format!("set the shell of {name} to /bin/sh (sshd runs forced commands through it)"));
            }
        }
    }
    Ok(done)
}

fn home_of(cfg: &ClientConfig) -> Result<PathBuf> {
    Ok(lookup_user(&cfg.backup_user)?.map(|u| u.dir).unwrap_or_else(|| cfg.backup_home()))
}

pub fn authorized_keys_path(cfg: &ClientConfig) -> Result<PathBuf> {
    Ok(home_of(cfg)?.join(".ssh/authorized_keys"))
}

/// `~/.ssh` owned by root, 0755: the backup user cannot change its keys.
fn ensure_ssh_dir(cfg: &ClientConfig) -> Result<Option<String>> {
    let dir = home_of(cfg)?.join(".ssh");
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0 => Ok(None),
        Ok(m) if m.is_dir() => {
            std::os::unix::fs::chown(&dir, Some(0), Some(0))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
            Ok(Some(format!("made {} root-owned", dir.display())))
        }
        Ok(_) => bail!("{} exists and is not a folder: move it away and re-run", dir.display()),
        Err(_) => {
            fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
            std::os::unix::fs::chown(&dir, Some(0), Some(0))?;
            Ok(Some(format!("created {}", dir.display())))
        }
    }
}

/// Install `line`, replacing this server's previous line, keeping others.
pub fn install_key_line(cfg: &ClientConfig, line: &KeyLine) -> Result<Vec<String>> {
    let mut done: Vec<String> = ensure_ssh_dir(cfg)?.into_iter().collect();
    let path = authorized_keys_path(cfg)?;
    let existing = String::from_utf8_lossy(&atomic::read_or_empty(&path)?).into_owned();
    let updated = authorized_keys::replace(&existing, &line.server, Some(line));
    let m = fs::metadata(&path).ok();
    let owner_ok = m.as_ref().is_some_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    if updated != existing || !owner_ok {
        atomic::write(&path, updated.as_bytes(), ROOT_FILE)
            .with_context(|| format!("cannot write {}", path.display()))?;
        done.push(format!("installed the server's key in {}", path.display()));
    }
    Ok(done)
}

/// The key blobs (base64) on this backup user's `authorized_keys` lines
/// other than `server`'s own: keys already given to someone else.
pub fn other_keys(cfg: &ClientConfig, server: &str) -> Result<Vec<String>> {
    let path = authorized_keys_path(cfg)?;
    let existing = String::from_utf8_lossy(&atomic::read_or_empty(&path)?).into_owned();
    let ours = authorized_keys::tagged_lines(&existing, server);
    Ok(existing
        .lines()
        .filter(|l| !ours.contains(l) && !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace().filter(|w| w.starts_with("AAAA")).map(str::to_string))
        .collect())
}

/// What `--check` finds on this machine: one line per thing checked, and
/// whether it is as the enrollment left it.
pub fn check(cfg: &ClientConfig, config: &Path, state: &ClientState, line: &KeyLine) -> Result<Vec<(bool, String)>> {
    let mut out = Vec::new();
    let name = &cfg.backup_user;
    match lookup_user(name)? {
        None => out.push((false, format!("the backup user {name} does not exist"))),
        Some(u) => {
            let shell = u.shell.to_string_lossy().into_owned();
            let ok = !(shell.ends_with("nologin") || shell.ends_with("false"));
            out.push((ok, format!("the backup user {name} exists (shell {shell})")));
        }
    }
    let sudoers = cfg.sudoers_file();
    let content = sudoers_content(cfg, config)?;
    let ok = fs::read(&sudoers).ok().as_deref() == Some(content.as_bytes())
        && fs::metadata(&sudoers).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o777 == 0o440);
    out.push((ok, format!("{} allows only rsyncsend's root helper (exec-rsync; root-owned, 0440)", sudoers.display())));
    let path = authorized_keys_path(cfg)?;
    let existing = fs::read_to_string(&path).unwrap_or_default();
    let lines = authorized_keys::tagged_lines(&existing, &state.server);
    let owner_ok = fs::metadata(&path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    let want = line.to_string();
    out.push((
        lines == [want.as_str()] && owner_ok,
        format!(
            "{} has the key of {} ({}) bound to {}, and only root can change it",
            path.display(),
            state.server,
            state.key_fingerprint,
            line.rsyncsend
        ),
    ));
    let rsyncsend = Path::new(&line.rsyncsend);
    out.push((rsyncsend.is_file(), format!("{} is installed", rsyncsend.display())));
    // Only when there is one: a finished enrollment has nothing to show.
    if state.rekey_from.is_some() {
        out.push((
            false,
            format!(
                "a re-enrollment with {} was cut off: the server still accepts the previous key; run enroll to finish it",
                state.server
            ),
        ));
    }
    Ok(out)
}

/// The drop-in: the backup account may run, as root, only rsyncsend's
/// root helper with the config path fixed here (so a shell as that
/// account cannot point the helper at a config of its own); everything
/// after `--` is rsync words the helper checks itself. Never rsync
/// directly: root rsync's options and paths would be unchecked.
pub fn sudoers_content(cfg: &ClientConfig, config: &Path) -> Result<String> {
    let config = config.to_string_lossy();
    let rsyncsend = cfg.rsyncsend.to_string_lossy();
    for (what, p) in [("rsyncsend path", &*rsyncsend), ("config path", &*config)] {
        if !p.starts_with('/') || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)) {
            bail!("{what} {p:?} is not absolute or has characters sudoers would interpret: use a plain path");
        }
    }
    let u = &cfg.backup_user;
    Ok(format!(
        "# Written by backuppc-enroll. The backup user may run only rsyncsend's\n\
         # root helper, which checks the rsync invocation again and runs rsync\n\
         # confined to the shares, without a password or a tty.\n\
         Defaults:{u} !requiretty\n\
         {u} ALL=(root) NOPASSWD: {rsyncsend} --config {config} exec-rsync -- *\n\
         {u} ALL=(root) NOPASSWD: {rsyncsend} --config {config} run-dumps\n\
         {u} ALL=(root) NOPASSWD: {rsyncsend} --config {config} run-job\n\
         {u} ALL=(root) NOPASSWD: {rsyncsend} --config {config} rotate-key\n"
    ))
}

/// Write the sudoers drop-in, checked with `visudo -cf` before it is
/// moved into place.
pub fn ensure_sudoers(cfg: &ClientConfig, config: &Path) -> Result<Vec<String>> {
    let content = sudoers_content(cfg, config)?;
    let path = cfg.sudoers_file();
    let current = fs::read(&path).ok();
    let mode_ok = fs::metadata(&path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o777 == 0o440);
    if current.as_deref() == Some(content.as_bytes()) && mode_ok {
        return Ok(vec![]);
    }
    // sudo ignores drop-ins whose name has a dot: the staging file is
    // never read by sudo, even if a crash leaves it behind.
    let staged = cfg.sudoers_dir.join(format!(".backuppc-enroll-{}.tmp", cfg.backup_user));
    let _ = fs::remove_file(&staged);
    atomic::write_new(&staged, content.as_bytes(), Ownership { uid: 0, gid: 0, mode: 0o440 })?;
    let check = Command::new("visudo").arg("-cf").arg(&staged).output().context("cannot run visudo (install sudo)")?;
    if !check.status.success() {
        let _ = fs::remove_file(&staged);
        bail!("visudo rejected the sudoers drop-in: {}", String::from_utf8_lossy(&check.stderr).trim());
    }
    fs::rename(&staged, &path)?;
    atomic::sync_dir(&cfg.sudoers_dir)?;
    Ok(vec![format!("installed {} (rsyncsend exec-rsync only)", path.display())])
}

pub fn save_state(cfg: &ClientConfig, state: &ClientState) -> Result<bool> {
    let mut text = serde_json::to_string_pretty(state)?;
    text.push('\n');
    if fs::read(&cfg.state_file).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(false);
    }
    if let Some(dir) = cfg.state_file.parent() {
        fs::create_dir_all(dir)?;
    }
    atomic::write(&cfg.state_file, text.as_bytes(), ROOT_FILE)?;
    Ok(true)
}

/// Undo what enroll did: this server's key line, the sudoers drop-in, the
/// state, and with `remove_user` the user and its home.
pub fn uninstall(cfg: &ClientConfig, server: &str, remove_user: bool) -> Result<Vec<String>> {
    let mut done = Vec::new();
    // Read before the state file goes: only a user enroll created is ours
    // to delete.
    let created_user = enroll_created_user(cfg);
    let path = authorized_keys_path(cfg)?;
    if let Ok(existing) = fs::read_to_string(&path) {
        let updated = authorized_keys::replace(&existing, server, None);
        if updated != existing {
            if updated.is_empty() {
                fs::remove_file(&path)?;
                if let Some(dir) = path.parent() {
                    let _ = fs::remove_dir(dir); // only if empty
                }
            } else {
                atomic::write(&path, updated.as_bytes(), Ownership::of_existing_or(&path, ROOT_FILE))?;
            }
            done.push(format!("removed the key line of {server} from {}", path.display()));
        }
    }
    for p in [cfg.sudoers_file(), cfg.state_file.clone()] {
        if remove_if_exists(&p)? {
            done.push(format!("removed {}", p.display()));
        }
    }
    if remove_user && lookup_user(&cfg.backup_user)?.is_some() {
        if created_user {
            run(Command::new("userdel").args(["--remove", &cfg.backup_user]))?;
            done.push(format!("deleted user {} and its home", cfg.backup_user));
        } else {
            done.push(format!(
                "kept user {}: enroll did not create it (it has no record of doing so in {}); delete it with userdel if you wish",
                cfg.backup_user,
                created_user_record(cfg).display()
            ));
        }
    }
    // The record goes with the user, and only then.
    if lookup_user(&cfg.backup_user)?.is_none() && remove_if_exists(&created_user_record(cfg))? {
        done.push(format!("removed {}", created_user_record(cfg).display()));
    }
    Ok(done)
}

fn remove_if_exists(p: &Path) -> Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudoers_allows_only_the_root_helper() {
        let cfg = ClientConfig::default();
        let text = sudoers_content(&cfg, Path::new("/etc/backuppc-enroll/client.toml")).unwrap();
        let rule = text.lines().find(|l| l.contains("NOPASSWD")).unwrap();
        assert_eq!(
            rule,
            "bckpciuem ALL=(root) NOPASSWD: /usr/lib/backuppc-enroll/rsyncsend \
             --config /etc/backuppc-enroll/client.toml exec-rsync -- *"
        );
        assert!(!text.contains("rsync --server"), "never rsync itself:\n{text}");
        for (rsyncsend, config, why) in [
            ("/usr/lib/rs", "/etc/a b.toml", "space in the config path"),
            ("/usr/lib/rs", "/etc/a,b.toml", "comma"),
            ("/usr/lib/rs", "etc/client.toml", "relative config path"),
            ("/usr/lib/r*s", "/etc/client.toml", "wildcard in the helper path"),
            ("rsyncsend", "/etc/client.toml", "relative helper path"),
        ] {
            let cfg = ClientConfig { rsyncsend: rsyncsend.into(), ..ClientConfig::default() };
            assert!(sudoers_content(&cfg, Path::new(config)).is_err(), "{why}");
        }
        // No wildcard: sudo then allows these arguments exactly, nothing
        // after them (the server cannot name a dump or add an option).
        assert_eq!(
            text.lines().filter(|l| l.contains("NOPASSWD")).nth(1).unwrap(),
            "bckpciuem ALL=(root) NOPASSWD: /usr/lib/backuppc-enroll/rsyncsend \
             --config /etc/backuppc-enroll/client.toml run-dumps"
        );
        // The job's name comes on stdin, so its line has no argument either.
        let job_lines: Vec<&str> = text.lines().filter(|l| l.contains(" run-job")).collect();
        assert_eq!(
            job_lines,
            ["bckpciuem ALL=(root) NOPASSWD: /usr/lib/backuppc-enroll/rsyncsend \
             --config /etc/backuppc-enroll/client.toml run-job"]
        );
        // The key rotation's helper likewise: the key comes on its stdin.
        assert_eq!(
            text.lines().filter(|l| l.contains("NOPASSWD")).nth(3).unwrap(),
            "bckpciuem ALL=(root) NOPASSWD: /usr/lib/backuppc-enroll/rsyncsend \
             --config /etc/backuppc-enroll/client.toml rotate-key"
        );
        assert_eq!(text.lines().filter(|l| l.contains("NOPASSWD")).count(), 4, "no other rule:\n{text}");
        if Path::new("/usr/sbin/visudo").exists() {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("dropin");
            fs::write(&p, &text).unwrap();
            let out = Command::new("/usr/sbin/visudo").arg("-cf").arg(&p).output().unwrap();
            assert!(out.status.success(), "visudo: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

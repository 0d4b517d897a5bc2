//! `dropbox setup` and `dropbox uninstall`, run by root. Setup checks each
//! part first and changes only what differs, so a second run changes
//! nothing; it records what it created, and uninstall removes exactly
//! that (the key line always; the account and its home only when setup
//! made them; the archives only when asked).
//!
//! The account is a system account with `/bin/sh` as its shell and `*` as
//! its password, as `enroll` makes its backup account: sshd runs a forced
//! command through the account's shell (`nologin` would refuse it) and
//! refuses a locked (`!`) account. The key line's `restrict` and
//! `command=` are what stop a shell, forwarding, a pty or an agent.

use anyhow::{bail, Context, Result};
use backuppc_enroll::dropbox::DropboxConfig;
use backuppc_enroll::names;
use backuppc_enroll::ssh::authorized_keys::{self, KeyLine};
use backuppc_enroll::store::atomic::{self, Ownership};
use nix::unistd::{Group, User};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const ROOT_FILE: Ownership = Ownership { uid: 0, gid: 0, mode: 0o644 };

/// What setup created, kept in the account's home.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    user: String,
    created_user: bool,
    created_home: bool,
    created_folder: bool,
}

/// The comment that marks this box's key line.
pub fn tag_of(cfg: &DropboxConfig) -> String {
    format!("dropbox-{}", cfg.user)
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn load_record(cfg: &DropboxConfig) -> Record {
    fs::read(cfg.setup_record())
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        .filter(|r| r.user == cfg.user)
        .unwrap_or(Record { user: cfg.user.clone(), ..Record::default() })
}

fn save_record(cfg: &DropboxConfig, r: &Record) -> Result<()> {
    let text = serde_json::to_string_pretty(r)? + "\n";
    atomic::write(&cfg.setup_record(), text.as_bytes(), ROOT_FILE)
        .with_context(|| format!("cannot write {}", cfg.setup_record().display()))
}

/// A folder with this owner and mode, created if missing.
fn ensure_dir(path: &Path, uid: u32, gid: u32, mode: u32, done: &mut Vec<String>) -> Result<bool> {
    let created = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => bail!("{} exists and is not a folder: move it away and run setup again", path.display()),
        Err(_) => {
            fs::create_dir(path).with_context(|| format!("cannot create {}", path.display()))?;
            done.push(format!("created {}", path.display()));
            true
        }
    };
    let m = fs::metadata(path)?;
    if m.uid() != uid || m.gid() != gid || m.mode() & 0o7777 != mode {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        if !created {
            done.push(format!("set the owner and mode of {} ({uid}:{gid}, {mode:o})", path.display()));
        }
    }
    Ok(created)
}

pub fn setup(config: &Path, key_file: &Path, from: Option<String>) -> Result<Vec<String>> {
    if !nix::unistd::geteuid().is_root() {
        bail!("setup creates an account and installs a key: run it as root");
    }
    let config = std::path::absolute(config)?;
    let cfg = DropboxConfig::load(&config)?;
    let text = fs::read_to_string(key_file).with_context(|| format!("cannot read {}", key_file.display()))?;
    let key = names::public_key(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?;
    let dropbox = cfg.dropbox.to_str().context("the dropbox path is not UTF-8")?;
    let line = KeyLine::new(
        from,
        dropbox,
        config.to_str().context("the config path is not UTF-8")?,
        &names::key_without_comment(&key),
        &tag_of(&cfg),
    )?;
    if !cfg.dropbox.is_file() {
        bail!(
            "{} is not installed (the key line runs it): set `dropbox` in {}",
            cfg.dropbox.display(),
            config.display()
        );
    }
    let mut done = Vec::new();
    let mut record = load_record(&cfg);
    // The account.
    let user = match User::from_name(&cfg.user)? {
        Some(u) => {
            let shell = u.shell.to_string_lossy();
            if shell.ends_with("nologin") || shell.ends_with("false") {
                run(Command::new("usermod").args(["--shell", "/bin/sh", &cfg.user]))?;
                done.push(format!("set the shell of {} to /bin/sh (sshd runs forced commands through it)", cfg.user));
            }
            if u.dir != cfg.home {
                bail!(
                    "the account {} exists with home {}, not {}: set `home` in {} to it, or choose another user",
                    cfg.user,
                    u.dir.display(),
                    cfg.home.display(),
                    config.display()
                );
            }
            u
        }
        None => {
            if let Some(parent) = cfg.home.parent() {
                fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            run(Command::new("useradd")
                .args(["--system", "--no-create-home", "--user-group", "--shell", "/bin/sh", "--password", "*"])
                .args(["--comment", "drop box (backuppc-enroll)", "--home-dir"])
                .arg(&cfg.home)
                .arg(&cfg.user))
            .with_context(|| format!("cannot create the account {}", cfg.user))?;
            record.created_user = true;
            done.push(format!("created the account {} (home {})", cfg.user, cfg.home.display()));
            User::from_name(&cfg.user)?.context("the account just created is not found")?
        }
    };
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    // Root-owned home and ~/.ssh: the account can change neither its key
    // nor anything else there.
    if ensure_dir(&cfg.home, 0, 0, 0o755, &mut done)? {
        record.created_home = true;
    }
    save_record(&cfg, &record)?;
    ensure_dir(&cfg.home.join(".ssh"), 0, 0, 0o755, &mut done)?;
    let keys_path = cfg.home.join(".ssh/authorized_keys");
    let existing = String::from_utf8_lossy(&atomic::read_or_empty(&keys_path)?).into_owned();
    let updated = authorized_keys::replace(&existing, &tag_of(&cfg), Some(&line));
    let owner_ok = fs::metadata(&keys_path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    if updated != existing || !owner_ok {
        atomic::write(&keys_path, updated.as_bytes(), ROOT_FILE)
            .with_context(|| format!("cannot write {}", keys_path.display()))?;
        done.push(format!("installed the vendor's key ({}) in {}", names::fingerprint(&key), keys_path.display()));
    }
    // The box: the account writes there, its group (the admin's to
    // join) reads.
    if let Some(parent) = cfg.folder.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if ensure_dir(&cfg.folder, uid, gid, 0o750, &mut done)? {
        record.created_folder = true;
    }
    for d in [cfg.incoming(), cfg.quarantine(), cfg.receipts()] {
        ensure_dir(&d, uid, gid, 0o750, &mut done)?;
    }
    save_record(&cfg, &record)?;
    if done.is_empty() {
        done.push(format!("the drop box {} is already set up: nothing changed", cfg.folder.display()));
    }
    Ok(done)
}

pub fn uninstall(config: &Path, remove_archives: bool) -> Result<Vec<String>> {
    if !nix::unistd::geteuid().is_root() {
        bail!("uninstall removes an account and a key: run it as root");
    }
    let cfg = DropboxConfig::load(config)?;
    let record = load_record(&cfg);
    let mut done = Vec::new();
    let keys_path = cfg.home.join(".ssh/authorized_keys");
    if let Ok(existing) = fs::read_to_string(&keys_path) {
        let updated = authorized_keys::replace(&existing, &tag_of(&cfg), None);
        if updated != existing {
            if updated.trim().is_empty() {
                fs::remove_file(&keys_path)?;
            } else {
                atomic::write(&keys_path, updated.as_bytes(), Ownership::of_existing_or(&keys_path, ROOT_FILE))?;
            }
            done.push(format!("removed the vendor's key from {}", keys_path.display()));
        }
    }
    if remove_archives {
        if cfg.folder.exists() {
            fs::remove_dir_all(&cfg.folder).with_context(|| format!("cannot remove {}", cfg.folder.display()))?;
            done.push(format!("removed {} and every archive in it", cfg.folder.display()));
        }
    } else {
        for d in [cfg.incoming(), cfg.quarantine(), cfg.receipts()] {
            if fs::remove_dir(&d).is_ok() {
                done.push(format!("removed the empty {}", d.display()));
            }
        }
        if record.created_folder && fs::remove_dir(&cfg.folder).is_ok() {
            done.push(format!("removed the empty {}", cfg.folder.display()));
        } else if cfg.folder.exists() {
            done.push(format!("kept {} and what it holds (--remove-archives deletes it)", cfg.folder.display()));
        }
    }
    if record.created_user && User::from_name(&cfg.user)?.is_some() {
        run(Command::new("userdel").arg(&cfg.user))?;
        done.push(format!("removed the account {}", cfg.user));
        if Group::from_name(&cfg.user)?.is_some() {
            let _ = Command::new("groupdel").arg(&cfg.user).output();
        }
    }
    if record.created_home {
        let _ = fs::remove_file(cfg.setup_record());
        let _ = fs::remove_dir(cfg.home.join(".ssh"));
        if fs::remove_dir(&cfg.home).is_ok() {
            done.push(format!("removed {}", cfg.home.display()));
        }
    } else {
        let _ = fs::remove_file(cfg.setup_record());
    }
    if done.is_empty() {
        done.push("nothing of this drop box was installed".into());
    }
    Ok(done)
}

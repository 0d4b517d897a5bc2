//! Where uploads are written, for both protocols. An upload goes to a new
//! temporary file (`O_EXCL`) in the box's own `.incoming` folder, is
//! checked against the file size limit, the quota and the space to keep
//! free before and while it is written, is flushed to disk and verified
//! when the client closes it, and is then moved into place with
//! `renameat2(RENAME_NOREPLACE)`, so an existing archive is never
//! replaced and of two uploads of one name exactly one wins. One that
//! fails verification goes to `.quarantine`; one never closed (a dropped
//! connection) is removed, and one whose writer was killed stays in
//! `.incoming` under its temporary name, never under the final one.

use super::config::DropboxConfig;
use super::verify::{self, Streaming};
use crate::log::Audit;
use crate::store::atomic::{self, Ownership};
use nix::fcntl::{renameat2, RenameFlags};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek};
use std::net::IpAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A sidecar is one `sha256sum` line; anything longer is refused.
pub const SIDECAR_MAX: u64 = 4096;
/// The longest name accepted: the temporary name in `.incoming` and the
/// quarantine name with its `.reason` add up to 40 bytes, and each must
/// stay within the file system's 255.
pub const NAME_LEN_MAX: usize = 200;
/// How much of an upload is written before its writeback to disk starts.
const WRITEBACK_EVERY: u64 = 16 << 20;
/// How much an upload may grow between two checks of the free space.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

/// Why the box refuses something, in the terms both protocols answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Not allowed here (read, remove, a name outside the pattern…).
    Denied,
    /// No such file (what `stat` of anything but the box and this
    /// session's own uploads answers).
    NoSuchFile,
    /// The request was allowed but failed (exists, verification, space).
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    pub fn denied(message: impl Into<String>) -> Refusal {
        Refusal { kind: RefusalKind::Denied, message: message.into() }
    }
    pub fn failure(message: impl Into<String>) -> Refusal {
        Refusal { kind: RefusalKind::Failure, message: message.into() }
    }
    pub fn no_such_file(message: impl Into<String>) -> Refusal {
        Refusal { kind: RefusalKind::NoSuchFile, message: message.into() }
    }
}

/// What an accepted name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Archive,
    /// `ARCHIVE.sha256`, the digest of `ARCHIVE`.
    Sidecar {
        archive: String,
    },
}

/// Is `name` (one path component, already split from the client's path)
/// a file the box accepts, and as what? Pure: no file system access.
pub fn classify(cfg: &DropboxConfig, name: &str) -> Result<Kind, Refusal> {
    if name.len() > NAME_LEN_MAX {
        return Err(Refusal::denied(format!(
            "a name of {} bytes is longer than this drop box accepts ({NAME_LEN_MAX} bytes at most): upload it under a shorter name",
            name.len()
        )));
    }
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.chars().any(|c| c.is_control() || crate::names::is_hidden(c));
    if bad {
        return Err(Refusal::denied(format!("{:?} is not a file name this drop box accepts", name)));
    }
    if cfg.name_pattern.is_match(name) {
        return Ok(Kind::Archive);
    }
    if cfg.sidecars {
        if let Some(archive) = name.strip_suffix(".sha256") {
            if cfg.name_pattern.is_match(archive) {
                return Ok(Kind::Sidecar { archive: archive.to_string() });
            }
        }
    }
    Err(Refusal::denied(format!(
        "{:?} does not match the names this drop box accepts ({})",
        name, cfg.name_pattern_text
    )))
}

/// Who is uploading: from the SSH environment.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub client: Option<IpAddr>,
    /// `SHA256:…` of the key the client logged in with, when known.
    pub key_fingerprint: Option<String>,
    /// How it was found (`SSH_USER_AUTH`, or the box's only key).
    pub key_source: Option<&'static str>,
}

/// The record kept beside each accepted archive (`.receipts/NAME.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// When the drop box received it (UTC): what retention orders by.
    pub received: String,
    pub received_unix: u64,
    pub client: Option<String>,
    pub key_fingerprint: Option<String>,
    pub protocol: String,
    pub members: u64,
    /// `matched` once a `NAME.sha256` sidecar agreed with the archive.
    #[serde(default)]
    pub sidecar: Option<String>,
}

/// How much the box still accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes held by archives, sidecars, uploads in progress and the
    /// quarantine.
    pub used: u64,
    /// Bytes the file system has free for this account.
    pub available: u64,
    /// What a new upload may still use: the smaller of the room under the
    /// quota and the free space above `keep_free`.
    pub accepts: u64,
}

/// Pure: the room left, from what is used, what is free and the limits.
pub fn room(used: u64, available: u64, keep_free: u64, quota: Option<u64>) -> u64 {
    let by_disk = available.saturating_sub(keep_free);
    match quota {
        Some(q) => by_disk.min(q.saturating_sub(used)),
        None => by_disk,
    }
}

/// One drop box, opened for a session.
pub struct DropBox {
    pub cfg: DropboxConfig,
    audit: Audit,
    folder: File,
    incoming: File,
    /// Receipts of this session's accepted archives, for notifications.
    pub accepted: RefCell<Vec<Receipt>>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn io_refusal(what: &str, e: &io::Error) -> Refusal {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        Refusal::failure(format!("{what}: the drop box's disk is full; nothing was kept: ask its admin for room"))
    } else {
        Refusal::failure(format!("{what}: {e}"))
    }
}

/// The size a directory entry adds to the space used: a file's length;
/// nothing for anything else, or for an entry gone since the folder was
/// read (another upload's temporary file, removed or placed meanwhile).
fn file_size(meta: io::Result<fs::Metadata>) -> io::Result<u64> {
    match meta {
        Ok(m) if m.is_file() => Ok(m.len()),
        Ok(_) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

impl DropBox {
    pub fn open(cfg: DropboxConfig, audit: Audit) -> io::Result<DropBox> {
        let folder = File::open(&cfg.folder)?;
        let incoming = File::open(cfg.incoming())?;
        for dir in [&folder, &incoming] {
            if !dir.metadata()?.is_dir() {
                return Err(io::Error::other("not a folder"));
            }
        }
        Ok(DropBox { cfg, audit, folder, incoming, accepted: RefCell::new(Vec::new()) })
    }

    pub fn audit(&self, event: &str, fields: serde_json::Value) {
        self.audit.event(event, fields);
    }

    /// Does a file of this name already exist in the box?
    pub fn exists(&self, name: &str) -> bool {
        fs::symlink_metadata(self.cfg.folder.join(name)).is_ok()
    }

    pub fn space(&self) -> io::Result<Space> {
        let mut used = 0u64;
        for dir in [self.cfg.folder.clone(), self.cfg.incoming(), self.cfg.quarantine()] {
            for e in fs::read_dir(&dir)? {
                used = used.saturating_add(file_size(e.and_then(|e| e.metadata()))?);
            }
        }
        let vfs = nix::sys::statvfs::fstatvfs(&self.folder).map_err(io::Error::from)?;
        let available = vfs.blocks_available().saturating_mul(vfs.fragment_size());
        Ok(Space { used, available, accepts: room(used, available, self.cfg.keep_free, self.cfg.quota) })
    }

    /// Start an upload of `name`: refused when the name is not accepted,
    /// already exists, or there is no room.
    pub fn begin(&self, name: &str) -> Result<Upload<'_>, Refusal> {
        let kind = classify(&self.cfg, name)?;
        if self.exists(name) {
            return Err(Refusal::failure(format!(
                "{name} is already in the drop box, which never replaces a file: upload it under a new name"
            )));
        }
        let space = self.space().map_err(|e| io_refusal("cannot measure the drop box's free space", &e))?;
        if space.accepts == 0 {
            return Err(Refusal::failure(format!(
                "the drop box is full ({} bytes used, {} free, {} to keep free{}): ask its admin for room",
                space.used,
                space.available,
                self.cfg.keep_free,
                self.cfg.quota.map(|q| format!(", quota {q}")).unwrap_or_default()
            )));
        }
        let cap = match kind {
            Kind::Archive => self.cfg.max_file_size,
            Kind::Sidecar { .. } => SIDECAR_MAX,
        };
        let temp_name = format!(".{name}.{}.{}.part", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.cfg.incoming().join(&temp_name))
            .map_err(|e| io_refusal(&format!("cannot start the upload of {name}"), &e))?;
        Ok(Upload {
            bx: self,
            name: name.to_string(),
            kind,
            file,
            temp_name,
            end: 0,
            cap,
            quota_left: self.cfg.quota.map(|q| q.saturating_sub(space.used)),
            grown: 0,
            stream: Streaming::start(),
            flushed: 0,
            failed: None,
            done: false,
        })
    }

    fn quarantine(&self, temp_name: &str, name: &str, reason: &str) -> String {
        let qname = format!("{}.{}.{}", name, now_unix(), std::process::id());
        let qdir = File::open(self.cfg.quarantine());
        let moved = match &qdir {
            Ok(q) => renameat2(&self.incoming, temp_name, q, qname.as_str(), RenameFlags::RENAME_NOREPLACE).is_ok(),
            Err(_) => false,
        };
        if moved {
            let _ = fs::write(self.cfg.quarantine().join(format!("{qname}.reason")), format!("{reason}\n"));
            if let Ok(q) = qdir {
                let _ = q.sync_all();
            }
        } else {
            let _ = fs::remove_file(self.cfg.incoming().join(temp_name));
        }
        qname
    }

    fn receipt_path(&self, name: &str) -> PathBuf {
        self.cfg.receipts().join(format!("{name}.json"))
    }

    pub fn read_receipt(&self, name: &str) -> Option<Receipt> {
        fs::read(self.receipt_path(name)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn write_receipt(&self, r: &Receipt) -> io::Result<()> {
        let own = Ownership { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw(), mode: 0o440 };
        let text = serde_json::to_string_pretty(r).map_err(io::Error::other)? + "\n";
        atomic::write(&self.receipt_path(&r.name), text.as_bytes(), own)
    }

    /// Put the flushed temporary file in place under `name`, never over
    /// an existing file, and flush the folder.
    fn place(&self, temp_name: &str, name: &str) -> Result<(), Refusal> {
        match renameat2(&self.incoming, temp_name, &self.folder, name, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => {
                let _ = fs::remove_file(self.cfg.incoming().join(temp_name));
                return Err(Refusal::failure(format!(
                    "{name} arrived in the drop box meanwhile (another upload won): yours was not kept"
                )));
            }
            Err(e) => {
                let _ = fs::remove_file(self.cfg.incoming().join(temp_name));
                return Err(Refusal::failure(format!("cannot put {name} in place: {e}")));
            }
        }
        self.folder.sync_all().map_err(|e| io_refusal("cannot flush the drop box folder", &e))
    }
}

/// An upload in progress: a temporary file the client writes at any
/// offset, until it is finished or dropped (then removed).
pub struct Upload<'b> {
    bx: &'b DropBox,
    pub name: String,
    pub kind: Kind,
    file: File,
    temp_name: String,
    /// One past the highest byte written: the file's size.
    end: u64,
    /// The most this file may hold (`max_file_size`, or a sidecar's).
    cap: u64,
    /// Room under the quota at the last measure (at the start, then at
    /// each periodic check while writing).
    quota_left: Option<u64>,
    /// Growth since the free space was last checked.
    grown: u64,
    /// The verifier fed as the bytes arrive in order, while they do.
    stream: Option<Streaming>,
    /// Bytes whose writeback to disk was started.
    flushed: u64,
    /// The first refusal; once set, the upload can only fail.
    failed: Option<Refusal>,
    done: bool,
}

impl Upload<'_> {
    pub fn size(&self) -> u64 {
        self.end
    }

    fn fail(&mut self, r: Refusal) -> Refusal {
        if self.failed.is_none() {
            self.failed = Some(r.clone());
        }
        r
    }

    /// Check that the file may grow to `new_end` bytes.
    fn may_grow_to(&mut self, new_end: u64) -> Result<(), Refusal> {
        if new_end > self.cap {
            return Err(self.fail(Refusal::failure(format!(
                "{} would be larger than this drop box accepts ({} bytes): nothing was kept",
                self.name, self.cap
            ))));
        }
        if new_end <= self.end {
            return Ok(());
        }
        if self.quota_left.is_some_and(|q| new_end > q) {
            return Err(self.fail(Refusal::failure(format!(
                "{} would exceed the drop box's quota: nothing was kept; ask its admin for room",
                self.name
            ))));
        }
        self.grown += new_end - self.end;
        if self.grown >= SPACE_CHECK_EVERY {
            self.grown = 0;
            self.remeasure(new_end)?;
        }
        Ok(())
    }

    /// Measure the box again (other uploads in progress and other
    /// sessions count) and refuse when this file at `new_end` bytes would
    /// not fit under the quota or above `keep_free`.
    fn remeasure(&mut self, new_end: u64) -> Result<(), Refusal> {
        let space = match self.bx.space() {
            Ok(s) => s,
            Err(e) => return Err(self.fail(io_refusal("cannot measure the drop box's free space", &e))),
        };
        if space.available < self.bx.cfg.keep_free {
            return Err(self.fail(Refusal::failure(format!(
                "the drop box's disk is nearly full ({} bytes must stay free): {} was not kept",
                self.bx.cfg.keep_free, self.name
            ))));
        }
        // `used` holds this file at its present size: count it once, at
        // the size it would have.
        let own = self.file.metadata().map(|m| m.len()).unwrap_or(self.end);
        let others = space.used.saturating_sub(own);
        if let Some(q) = self.bx.cfg.quota {
            self.quota_left = Some(q.saturating_sub(others));
            if others.saturating_add(new_end) > q {
                return Err(self.fail(Refusal::failure(format!(
                    "{} would exceed the drop box's quota ({q} bytes; {others} used by other files and uploads in progress): nothing was kept; ask its admin for room",
                    self.name
                ))));
            }
        }
        Ok(())
    }

    /// Refuse now a file declared to be `size` bytes that may not fit.
    pub fn check_size(&mut self, size: u64) -> Result<(), Refusal> {
        if size > self.cap || self.quota_left.is_some_and(|q| size > q) {
            let r = Refusal::failure(format!(
                "{} is {size} bytes, more than this drop box accepts now ({} at most): nothing was kept",
                self.name,
                self.quota_left.map_or(self.cap, |q| q.min(self.cap))
            ));
            return Err(self.fail(r));
        }
        Ok(())
    }

    /// Write `data` at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Refusal> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let new_end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Refusal::failure(format!("offset {offset} is past any file's end")))
            .map_err(|r| self.fail(r))?;
        self.may_grow_to(new_end)?;
        if let Err(e) = self.file.write_all_at(data, offset) {
            let r = io_refusal(&format!("cannot write {}", self.name), &e);
            return Err(self.fail(r));
        }
        self.end = self.end.max(new_end);
        if self.stream.as_mut().is_some_and(|s| !s.feed(offset, data)) {
            self.stream = None;
        }
        if self.end >= self.flushed + WRITEBACK_EVERY {
            crate::sys::start_writeback(&self.file, self.flushed, self.end - self.flushed);
            self.flushed = self.end;
        }
        Ok(())
    }

    /// Set the size (what OpenSSH's scp does after its writes, to trim a
    /// file it opened without truncating).
    pub fn set_size(&mut self, size: u64) -> Result<(), Refusal> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        self.may_grow_to(size)?;
        if let Err(e) = self.file.set_len(size) {
            let r = io_refusal(&format!("cannot set the size of {}", self.name), &e);
            return Err(self.fail(r));
        }
        self.end = size;
        if self.stream.as_ref().is_some_and(|s| s.next != size) {
            self.stream = None;
        }
        Ok(())
    }

    /// Flush, verify and put in place. The error is what the client sees
    /// as the status of its `close`.
    pub fn finish(mut self, session: &Session, protocol: &str) -> Result<Receipt, Refusal> {
        self.done = true;
        let bx = self.bx;
        let client = session.client.map(|c| c.to_string());
        let refuse = |r: Refusal, temp: &str| {
            let _ = fs::remove_file(bx.cfg.incoming().join(temp));
            bx.audit("refused", json!({ "client": client, "name": self.name, "reason": r.message }));
            Err(r)
        };
        if let Some(r) = self.failed.clone() {
            return refuse(r, &self.temp_name);
        }
        if let Err(e) = self.file.sync_all() {
            return refuse(io_refusal(&format!("cannot flush {}", self.name), &e), &self.temp_name);
        }
        if bx.exists(&self.name) {
            return refuse(
                Refusal::failure(format!("{} arrived in the drop box meanwhile: yours was not kept", self.name)),
                &self.temp_name,
            );
        }
        match self.kind.clone() {
            Kind::Archive => self.finish_archive(session, protocol),
            Kind::Sidecar { archive } => self.finish_sidecar(session, &archive),
        }
    }

    /// Refused at the end (no room): the temporary file is removed,
    /// nothing is quarantined.
    fn refuse_unplaced(&self, session: &Session, r: Refusal) -> Refusal {
        let _ = fs::remove_file(self.bx.cfg.incoming().join(&self.temp_name));
        self.bx.audit(
            "refused",
            json!({ "client": session.client.map(|c| c.to_string()), "name": self.name, "reason": r.message }),
        );
        r
    }

    fn verify_failed(&self, session: &Session, reason: &str) -> Refusal {
        let qname = self.bx.quarantine(&self.temp_name, &self.name, reason);
        self.bx.audit(
            "refused-quarantine",
            json!({ "client": session.client.map(|c| c.to_string()), "name": self.name, "reason": reason, "quarantine": qname }),
        );
        Refusal::failure(format!("{} failed verification ({reason}): it was not kept (quarantined)", self.name))
    }

    fn finish_archive(mut self, session: &Session, protocol: &str) -> Result<Receipt, Refusal> {
        let bx = self.bx;
        // Verified as it arrived when every byte came in order, else
        // read back from the flushed file.
        let verdict = match self.stream.take().filter(|s| s.next == self.end) {
            Some(s) => s.finish(),
            None => match self.file.try_clone() {
                Ok(mut f) => {
                    let _ = f.rewind();
                    verify::archive(&f)
                }
                Err(e) => return Err(io_refusal("cannot read the upload back", &e)),
            },
        };
        let v = match verdict {
            Ok(v) => v,
            Err(reason) => return Err(self.verify_failed(session, &reason)),
        };
        let mut sidecar = None;
        if let Ok(text) = fs::read(bx.cfg.folder.join(format!("{}.sha256", self.name))) {
            match verify::sidecar_digest(&text, &self.name) {
                Ok(d) if d == v.sha256 => sidecar = Some("matched".to_string()),
                Ok(d) => {
                    return Err(
                        self.verify_failed(session, &format!("its SHA-256 {} is not the sidecar's {d}", v.sha256))
                    )
                }
                Err(e) => return Err(self.verify_failed(session, &e)),
            }
        }
        if let Err(r) = self.remeasure(self.end) {
            return Err(self.refuse_unplaced(session, r));
        }
        let _ = self.file.set_permissions(fs::Permissions::from_mode(0o440));
        bx.place(&self.temp_name, &self.name)?;
        let received_unix = now_unix();
        let receipt = Receipt {
            name: self.name.clone(),
            size: v.size,
            sha256: v.sha256,
            received: crate::log::rfc3339(received_unix),
            received_unix,
            client: session.client.map(|c| c.to_string()),
            key_fingerprint: session.key_fingerprint.clone(),
            protocol: protocol.to_string(),
            members: v.members,
            sidecar,
        };
        if let Err(e) = bx.write_receipt(&receipt) {
            bx.audit("error", json!({ "name": self.name, "reason": format!("cannot write its receipt: {e}") }));
        }
        bx.audit(
            "accepted",
            json!({ "client": receipt.client, "name": receipt.name, "size": receipt.size, "sha256": receipt.sha256,
                    "key": receipt.key_fingerprint, "key_source": session.key_source, "protocol": protocol }),
        );
        bx.accepted.borrow_mut().push(receipt.clone());
        Ok(receipt)
    }

    /// A sidecar: its digest must parse; it is kept beside its archive,
    /// and checked against it when the archive is already there: one that
    /// disagrees is refused and alerted, the archive and its receipt stay.
    fn finish_sidecar(mut self, session: &Session, archive: &str) -> Result<Receipt, Refusal> {
        let bx = self.bx;
        let mut text = Vec::new();
        let read = self.file.try_clone().and_then(|mut f| {
            f.rewind()?;
            io::Read::read_to_end(&mut f, &mut text)
        });
        let digest = match read.map_err(|e| e.to_string()).and_then(|_| verify::sidecar_digest(&text, archive)) {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_file(bx.cfg.incoming().join(&self.temp_name));
                return Err(Refusal::failure(format!("{}: {e}", self.name)));
            }
        };
        let _ = self.file.set_permissions(fs::Permissions::from_mode(0o440));
        let existing = bx.read_receipt(archive);
        if let Some(r) = &existing {
            if r.sha256 != digest {
                // The archive was verified and accepted: a sidecar sent
                // after it never moves or removes it (that would free its
                // name for another upload). Refused and raised as an alert.
                let _ = fs::remove_file(bx.cfg.incoming().join(&self.temp_name));
                bx.audit(
                    "alert-sidecar-mismatch",
                    json!({ "client": session.client.map(|c| c.to_string()), "name": self.name, "archive": archive,
                            "archive_sha256": r.sha256, "sidecar_sha256": digest, "key": session.key_fingerprint,
                            "key_source": session.key_source }),
                );
                return Err(Refusal::failure(format!(
                    "{} states SHA-256 {digest}, but {archive} was accepted with SHA-256 {}: the sidecar was not kept and {archive} stays as received; upload {archive} again under a new name if it was damaged",
                    self.name, r.sha256
                )));
            }
        }
        if let Err(r) = self.remeasure(self.end) {
            return Err(self.refuse_unplaced(session, r));
        }
        bx.place(&self.temp_name, &self.name)?;
        if let Some(mut r) = existing {
            r.sidecar = Some("matched".into());
            let _ = bx.write_receipt(&r);
        }
        bx.audit(
            "accepted-sidecar",
            json!({ "client": session.client.map(|c| c.to_string()), "name": self.name, "sha256": digest }),
        );
        Ok(Receipt {
            name: self.name.clone(),
            size: text.len() as u64,
            sha256: verify::sha256_of(&text[..]).map(|d| d.0).unwrap_or_default(),
            received: crate::log::timestamp(),
            received_unix: now_unix(),
            client: session.client.map(|c| c.to_string()),
            key_fingerprint: session.key_fingerprint.clone(),
            protocol: "sidecar".into(),
            members: 0,
            sidecar: None,
        })
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(self.bx.cfg.incoming().join(&self.temp_name));
            self.bx.audit("abandoned", json!({ "name": self.name, "bytes": self.end }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(folder: &std::path::Path, extra: &str) -> DropboxConfig {
        DropboxConfig::parse(&format!("user = \"jpro\"\nfolder = {:?}\n{extra}", folder)).unwrap()
    }

    const NAME: &str = "jpro_instance-007-2026-03-01_02h-30-00.tar.gz";

    #[test]
    fn classifies_names() {
        let c = cfg(std::path::Path::new("/srv/x"), "");
        let rows: &[(&str, Option<Kind>, &str)] = &[
            (NAME, Some(Kind::Archive), "the vendor's pattern"),
            (
                "jpro_instance-007-2026-03-01_02h-30-00.tar.gz.sha256",
                Some(Kind::Sidecar { archive: NAME.into() }),
                "sidecar",
            ),
            ("jpro_instance-07-2026-03-01_02h-30-00.tar.gz", None, "two-digit instance"),
            ("../jpro_instance-007-2026-03-01_02h-30-00.tar.gz", None, "traversal"),
            ("/etc/passwd", None, "absolute"),
            (".jpro_instance-007-2026-03-01_02h-30-00.tar.gz", None, "hidden"),
            ("jpro_instance-007-2026-03-01_02h-30-00.tar.gz\n", None, "newline"),
            ("jpro_instance-007-2026-03-01_02h-30-00.tar.gz\0", None, "NUL"),
            ("jpro_instance-007-2026-03-01_02h-30-00.tar.gz.sha256.sha256", None, "sidecar of a sidecar"),
            ("", None, "empty"),
            ("..", None, "dot-dot"),
            ("authorized_keys", None, "other file"),
        ];
        for (name, want, why) in rows {
            assert_eq!(classify(&c, name).ok(), *want, "{why}: {name:?}");
        }
        let c = cfg(std::path::Path::new("/srv/x"), "sidecars = false\n");
        assert!(classify(&c, &format!("{NAME}.sha256")).is_err(), "sidecars off");
        // Long names: what is accepted must leave room for the temporary
        // and quarantine names.
        let c = cfg(std::path::Path::new("/srv/x"), "name_pattern = 'a+\\.tar\\.gz'\n");
        for (len, ok) in [(NAME_LEN_MAX, true), (NAME_LEN_MAX + 1, false), (250, false), (255, false)] {
            let name = format!("{}.tar.gz", "a".repeat(len - 7));
            let got = classify(&c, &name);
            assert_eq!(got.is_ok(), ok, "{len} bytes: {got:?}");
            if !ok {
                assert!(got.unwrap_err().message.contains("at most"), "{len} bytes: a clear refusal");
            }
        }
    }

    #[test]
    fn room_left() {
        type Row = (u64, u64, u64, Option<u64>, u64, &'static str);
        let rows: &[Row] = &[
            (0, 100, 10, None, 90, "disk only"),
            (0, 5, 10, None, 0, "below keep_free"),
            (50, 1000, 10, Some(80), 30, "quota smaller"),
            (90, 1000, 10, Some(80), 0, "over quota"),
            (0, 20, 10, Some(80), 10, "disk smaller"),
            (u64::MAX, u64::MAX, 0, Some(u64::MAX), 0, "no overflow"),
        ];
        for (used, avail, keep, quota, want, why) in rows {
            assert_eq!(room(*used, *avail, *keep, *quota), *want, "{why}");
        }
    }

    fn bx(dir: &std::path::Path, extra: &str) -> DropBox {
        for d in [".incoming", ".quarantine", ".receipts"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        DropBox::open(cfg(dir, &format!("keep_free = 0\n{extra}")), Audit::new(c"dropbox-test", None)).unwrap()
    }

    #[test]
    fn uploads() {
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), "max_file_size = 100000\n");
        let s = Session::default();
        let data = verify::tests::tar_gz(1000);
        // Written out of order, as pipelined clients may.
        let mut u = b.begin(NAME).unwrap();
        let half = data.len() / 2;
        u.write_at(half as u64, &data[half..]).unwrap();
        u.write_at(0, &data[..half]).unwrap();
        let r = u.finish(&s, "sftp").unwrap();
        assert_eq!(fs::read(t.path().join(NAME)).unwrap(), data);
        assert_eq!(b.read_receipt(NAME).unwrap(), r);
        assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 0, "no temporary file left");
        // The same name again: refused at once.
        assert_eq!(b.begin(NAME).err().unwrap().kind, RefusalKind::Failure);
        // Two concurrent uploads of one name: exactly one wins.
        let n2 = "jpro_instance-008-2026-03-01_02h-30-00.tar.gz";
        let mut a = b.begin(n2).unwrap();
        let mut c = b.begin(n2).unwrap();
        a.write_at(0, &data).unwrap();
        c.write_at(0, &data).unwrap();
        assert!(c.finish(&s, "sftp").is_ok());
        assert!(a.finish(&s, "sftp").is_err());
        // Dropped without close: nothing left.
        let n3 = "jpro_instance-009-2026-03-01_02h-30-00.tar.gz";
        let mut d = b.begin(n3).unwrap();
        d.write_at(0, &data[..10]).unwrap();
        drop(d);
        assert!(!b.exists(n3));
        assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 0);
        // Too large, overflowing offsets.
        let mut e = b.begin(n3).unwrap();
        assert!(e.write_at(100_000, b"x").is_err(), "past max_file_size");
        assert!(e.write_at(0, b"x").is_err(), "a failed upload stays failed");
        let mut e = b.begin(n3).unwrap();
        assert!(e.write_at(u64::MAX, b"xy").is_err(), "offset overflow");
        let mut e = b.begin(n3).unwrap();
        assert!(e.set_size(1 << 40).is_err(), "size past max");
        // Not an archive: quarantined, with its reason.
        let mut q = b.begin(n3).unwrap();
        q.write_at(0, b"hello").unwrap();
        assert!(q.finish(&s, "sftp").unwrap_err().message.contains("quarantine"));
        assert!(!b.exists(n3));
        assert_eq!(fs::read_dir(t.path().join(".quarantine")).unwrap().count(), 2, "file + reason");
    }

    #[test]
    fn longest_name_fits_its_temporary_and_quarantine_names() {
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), "name_pattern = 'a+\\.tar\\.gz'\n");
        let name = format!("{}.tar.gz", "a".repeat(NAME_LEN_MAX - 7));
        let mut u = b.begin(&name).unwrap();
        u.write_at(0, b"not an archive").unwrap();
        let e = u.finish(&Session::default(), "sftp").unwrap_err();
        assert!(e.message.contains("quarantined"), "{}", e.message);
        let names: Vec<String> = fs::read_dir(t.path().join(".quarantine"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "the file and its reason: {names:?}");
        assert!(names.iter().all(|n| n.len() <= 255));
    }

    #[test]
    fn quarantine_counts_in_the_quota() {
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), "quota = 1500\n");
        fs::write(t.path().join(".quarantine").join("x.1.2"), vec![0u8; 1500]).unwrap();
        assert_eq!(b.space().unwrap().used, 1500);
        assert!(b.begin(NAME).is_err(), "a full quarantine fills the quota");
    }

    #[test]
    fn space_ignores_files_that_vanish() {
        assert_eq!(file_size(Err(io::ErrorKind::NotFound.into())).unwrap(), 0, "gone meanwhile");
        assert!(file_size(Err(io::ErrorKind::PermissionDenied.into())).is_err(), "other errors stay errors");
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), "");
        let incoming = t.path().join(".incoming");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = incoming.join(format!(".t{}.part", i % 64));
                    let _ = fs::write(&p, b"x");
                    let _ = fs::remove_file(&p);
                    i += 1;
                }
            })
        };
        let result = (0..3000).try_for_each(|_| b.space().map(|_| ()));
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        result.expect("space() while other uploads come and go");
    }

    #[test]
    fn concurrent_uploads_share_the_quota() {
        let s = Session::default();
        let data = verify::tests::tar_gz(1000);
        let n2 = "jpro_instance-002-2026-03-01_02h-30-00.tar.gz";
        // Both open on an empty box; together they exceed the quota. The
        // check just before placing counts the other one in progress.
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), &format!("quota = {}\n", data.len() * 3 / 2));
        let mut a = b.begin(NAME).unwrap();
        let mut c = b.begin(n2).unwrap();
        a.write_at(0, &data).unwrap();
        c.write_at(0, &data).unwrap();
        let e = a.finish(&s, "sftp").unwrap_err();
        assert!(e.message.contains("quota"), "{}", e.message);
        assert!(!b.exists(NAME));
        assert_eq!(fs::read_dir(t.path().join(".quarantine")).unwrap().count(), 0, "nothing quarantined");
        c.finish(&s, "sftp").unwrap();
        assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 0, "no temporary file left");
        // While writing: the periodic check re-measures, so a second
        // upload cannot take the room the first is using.
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), "quota = \"12M\"\nmax_file_size = \"1G\"\n");
        let mut a = b.begin(NAME).unwrap();
        let mut c = b.begin(n2).unwrap();
        let mib = vec![0u8; 1 << 20];
        for i in 0..9u64 {
            a.write_at(i << 20, &mib).unwrap();
        }
        let refused = (0..9u64).map(|i| c.write_at(i << 20, &mib)).find_map(|r| r.err());
        assert!(refused.is_some_and(|r| r.message.contains("quota")), "the second upload is stopped");
    }

    #[test]
    fn late_wrong_sidecar_leaves_the_archive() {
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), "");
        let s = Session::default();
        let data = verify::tests::tar_gz(1000);
        let mut u = b.begin(NAME).unwrap();
        u.write_at(0, &data).unwrap();
        let r = u.finish(&s, "sftp").unwrap();
        let receipt = fs::read(b.receipt_path(NAME)).unwrap();
        let mut sc = b.begin(&format!("{NAME}.sha256")).unwrap();
        sc.write_at(0, format!("{}  {NAME}\n", "0".repeat(64)).as_bytes()).unwrap();
        let e = sc.finish(&s, "sftp").unwrap_err();
        assert!(e.message.contains("stays as received"), "{}", e.message);
        assert_eq!(fs::read(t.path().join(NAME)).unwrap(), data, "the archive is untouched");
        assert_eq!(fs::read(b.receipt_path(NAME)).unwrap(), receipt, "its receipt too");
        assert_eq!(b.read_receipt(NAME).unwrap(), r);
        assert!(!b.exists(&format!("{NAME}.sha256")), "the sidecar is not kept");
        assert_eq!(fs::read_dir(t.path().join(".quarantine")).unwrap().count(), 0, "nothing quarantined");
        assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 0, "no temporary file left");
        assert_eq!(b.begin(NAME).err().unwrap().kind, RefusalKind::Failure, "the name is still taken");
    }

    #[test]
    fn sidecars_and_quota() {
        let t = tempfile::tempdir().unwrap();
        let b = bx(t.path(), "");
        let s = Session::default();
        let data = verify::tests::tar_gz(1000);
        let (digest, _) = verify::sha256_of(&data[..]).unwrap();
        // Sidecar first, wrong: the archive is refused when it arrives.
        let mut sc = b.begin(&format!("{NAME}.sha256")).unwrap();
        sc.write_at(0, format!("{}  {NAME}\n", "0".repeat(64)).as_bytes()).unwrap();
        sc.finish(&s, "sftp").unwrap();
        let mut u = b.begin(NAME).unwrap();
        u.write_at(0, &data).unwrap();
        assert!(u.finish(&s, "sftp").is_err());
        assert!(!b.exists(NAME));
        // Archive first, then a matching sidecar: the receipt says so.
        let n2 = "jpro_instance-002-2026-03-01_02h-30-00.tar.gz";
        let mut u = b.begin(n2).unwrap();
        u.write_at(0, &data).unwrap();
        u.finish(&s, "sftp").unwrap();
        let mut sc = b.begin(&format!("{n2}.sha256")).unwrap();
        sc.write_at(0, format!("{digest}  {n2}\n").as_bytes()).unwrap();
        sc.finish(&s, "sftp").unwrap();
        assert_eq!(b.read_receipt(n2).unwrap().sidecar.as_deref(), Some("matched"));
        // Quota: full box refuses a new upload.
        let t2 = tempfile::tempdir().unwrap();
        let b2 = bx(t2.path(), "quota = 1500\n");
        let mut u = b2.begin(n2).unwrap();
        assert!(u.write_at(0, &vec![0u8; 2000]).is_err(), "over quota while writing");
        drop(u);
        fs::write(t2.path().join("x"), vec![0u8; 1500]).unwrap();
        assert!(b2.begin(n2).is_err(), "no room at open");
    }
}

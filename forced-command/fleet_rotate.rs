//! `forced-command fleet rotate-key`: replace one host's per-host key, in
//! an order that leaves a working key at every moment:
//!
//! 1. a new key pair is made and kept as `HOST.key.next` (the pending
//!    key, written atomically before anything else, so a re-run resumes
//!    with the same key);
//! 2. over the present key, the workstation adds a line for it
//!    (`rotate-key add`), with the options of its present line;
//! 3. a session with the new key alone proves it opens rsyncsend;
//! 4. under the registry lock, in one batch: the present key becomes
//!    `HOST.key.prev`, pc/HOST.pl offers both (`-i HOST.key -i
//!    HOST.key.prev`), the registry records the new fingerprint, the new
//!    key becomes `HOST.key` (and `HOST.pub`);
//! 5. over the new key alone, the workstation keeps only its line
//!    (`rotate-key retire`);
//! 6. under the lock, pc/HOST.pl offers the new key only, then
//!    `HOST.key.prev` and `HOST.key.next` go.
//!
//! Where a run stands is read from the files alone ([`rotate::phase`]:
//! the pending key, and whether `HOST.key` is it), and each step is
//! idempotent, so a run cut off anywhere is finished by the next.

// A failed step is the host's result itself, made once per host: boxing
// it would buy nothing.
#![allow(clippy::result_large_err)]

use crate::server::Server;
use anyhow::Context;
use backuppc_enroll::fleet::report::{HostResult, Outcome};
use backuppc_enroll::fleet::rotate::{self, Action, Ed25519Key, Phase, Request};
use backuppc_enroll::fleet::session::{self, Limits};
use backuppc_enroll::fleet::target::{self, Defaults, SshTarget};
use backuppc_enroll::fleet::trust::Pinned;
use backuppc_enroll::log::Audit;
use backuppc_enroll::names;
use backuppc_enroll::store::atomic::{self, Ownership};
use backuppc_enroll::store::registry::{self, Registry, OWNING_STATES};
use serde_json::json;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The operation's name, in place of a command for [`session::run`].
pub const OPERATION: &str = "rotate-key";

/// What a rotated host's report says (the same for every host, so the
/// report folds them; the fingerprints are in the audit log).
const ROTATED: &str =
    "rotated: the new per-host key works and is BackupPC's; the workstation accepts no other key of this server\n";

/// One rotation run at a time: held for the whole run (never through a
/// symlink planted in its place).
pub fn lock(srv: &Server) -> anyhow::Result<std::fs::File> {
    srv.ensure_parent(&srv.cfg.registry)?;
    let path = srv.cfg.registry.parent().unwrap_or(Path::new(".")).join("rotate-key.lock");
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot open the lock {}", path.display()))?;
    if file.try_lock().is_err() {
        anyhow::bail!("another fleet rotate-key run holds {}: wait for it to end, then run again", path.display());
    }
    Ok(file)
}

/// A private key file of the host, read whole.
struct KeyFile {
    bytes: Vec<u8>,
    /// `algorithm base64 comment`, for `HOST.pub`.
    public: String,
    fingerprint: String,
}

fn read_key(path: &Path) -> Result<Option<KeyFile>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let key = PrivateKey::from_openssh(&bytes).map_err(|e| format!("{} is not a private key: {e}", path.display()))?;
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    Ok(Some(KeyFile { fingerprint: names::fingerprint(key.public_key()), public, bytes }))
}

fn generate(host: &str) -> Result<KeyFile, String> {
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).map_err(|e| e.to_string())?;
    let me = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    key.set_comment(format!("backuppc@{me} for {host}"));
    let private = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
    Ok(KeyFile {
        bytes: private.as_bytes().to_vec(),
        public: key.public_key().to_openssh().map_err(|e| e.to_string())?,
        fingerprint: names::fingerprint(key.public_key()),
    })
}

/// The host's files on the server.
struct Files {
    current: PathBuf,
    previous: PathBuf,
    pending: PathBuf,
    public: PathBuf,
    pl: PathBuf,
}

struct Run<'a> {
    srv: &'a Server<'a>,
    t: &'a SshTarget,
    pinned: &'a Pinned,
    limits: Limits,
    start: Instant,
    files: Files,
}

impl Run<'_> {
    fn result(&self, outcome: Outcome, detail: impl Into<String>) -> HostResult {
        HostResult::new(&self.t.host, outcome, self.start.elapsed(), detail)
    }

    fn failed(&self, detail: impl Into<String>) -> HostResult {
        self.result(Outcome::Failed, detail)
    }

    /// One session with `keys`, within what is left of the host's time.
    fn session(&self, keys: &[PathBuf], command: &str, step: &str) -> Result<HostResult, HostResult> {
        let left = self.limits.total.saturating_sub(self.start.elapsed());
        if left.is_zero() {
            return Err(self.result(
                Outcome::Timeout,
                format!("the host's time ran out before {step}: run rotate-key again to finish"),
            ));
        }
        let t = SshTarget { keys: keys.to_vec(), ..self.t.clone() };
        let mut r = session::run(&t, self.pinned, command, Limits { connect: self.limits.connect, total: left });
        r.elapsed = self.start.elapsed();
        if r.outcome == Outcome::Ok {
            return Ok(r);
        }
        r.detail = format!("{step}: {}", r.detail);
        Err(r)
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            user: self.srv.cfg.client_user.clone(),
            key: self.files.current.clone(),
            known_hosts: self.srv.known_hosts(),
        }
    }

    /// pc/HOST.pl, read again under the lock, with the keys it offers
    /// set to `want`.
    fn per_host_with(&self, want: &[PathBuf]) -> Result<Option<String>, HostResult> {
        let text = std::fs::read_to_string(&self.files.pl)
            .map_err(|e| self.result(Outcome::NotSetUp, format!("cannot read {}: {e}", self.files.pl.display())))?;
        let now = target::from_per_host_config(&self.t.host, &text, &self.defaults())
            .map_err(|e| self.result(Outcome::NotSetUp, format!("{}: {e}", self.files.pl.display())))?;
        if now.keys == want {
            return Ok(None);
        }
        self.check_keys(&now.keys)?;
        let s = |k: &[PathBuf]| k.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
        rotate::set_identities(&text, &s(&now.keys), &s(want))
            .map(Some)
            .map_err(|e| self.result(Outcome::NotSetUp, format!("{}: {e}", self.files.pl.display())))
    }

    /// BackupPC must offer the toolkit's own key files and nothing else,
    /// or a rotation would write keys it does not use.
    fn check_keys(&self, keys: &[PathBuf]) -> Result<(), HostResult> {
        let ok = keys.first() == Some(&self.files.current) && keys[1..].iter().all(|k| *k == self.files.previous);
        if ok {
            return Ok(());
        }
        let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
        Err(self.result(
            Outcome::NotSetUp,
            format!(
                "{} offers the keys {}, not {} as the toolkit writes them: re-enroll the host",
                self.files.pl.display(),
                names.join(", "),
                self.files.current.display()
            ),
        ))
    }

    /// The registry under its lock, with the host's entry holding `fingerprint`.
    fn registry_with(&self, fingerprint: &str) -> Result<Option<Registry>, HostResult> {
        let mut reg = Registry::load(&self.srv.cfg.registry).map_err(|e| self.failed(e.to_string()))?;
        let Some(entry) = reg.hosts.get_mut(&self.t.host).filter(|e| OWNING_STATES.contains(&e.state.as_str())) else {
            return Err(self.failed("the host is no longer enrolled in the registry: nothing was switched"));
        };
        if entry.key_fingerprint == fingerprint {
            return Ok(None);
        }
        entry.key_fingerprint = fingerprint.to_string();
        Ok(Some(reg))
    }

    fn io(&self, what: &str) -> impl Fn(std::io::Error) -> HostResult + '_ {
        let what = what.to_string();
        move |e| self.failed(format!("{what}: {e}"))
    }

    /// Step 4: BackupPC's key becomes the pending one, the present one is
    /// still offered second.
    fn switch(&self, current: &KeyFile, pending: &KeyFile) -> Result<(), HostResult> {
        let srv = self.srv;
        let _lock = registry::lock(&srv.cfg.registry).map_err(self.io("cannot lock the registry"))?;
        // Under the lock: the key an enrollment may have changed since.
        match read_key(&self.files.current).map_err(|e| self.failed(e))? {
            Some(k) if k.fingerprint == current.fingerprint => {}
            _ => {
                return Err(
                    self.failed("the host's key changed during the rotation (re-enrolled?): run rotate-key again")
                )
            }
        }
        let pl = self.per_host_with(&[self.files.current.clone(), self.files.previous.clone()])?;
        let reg = self.registry_with(&pending.fingerprint)?;
        let mut batch = atomic::Batch::new();
        let stage = |batch: &mut atomic::Batch, path: &Path, bytes: &[u8], own: Ownership| {
            batch.add(path, bytes, own).map_err(self.io(&format!("cannot stage {}", path.display())))
        };
        // Renamed in this order: pc/HOST.pl names HOST.key.prev only once
        // it holds the present key.
        stage(&mut batch, &self.files.previous, &current.bytes, srv.file(0o600))?;
        if let Some(text) = pl {
            stage(
                &mut batch,
                &self.files.pl,
                text.as_bytes(),
                Ownership::of_existing_or(&self.files.pl, srv.in_conf_dir(0o644)),
            )?;
        }
        if let Some(reg) = reg {
            reg.stage(&mut batch, &srv.cfg.registry, srv.file(0o640)).map_err(self.io("cannot stage the registry"))?;
        }
        stage(&mut batch, &self.files.current, &pending.bytes, srv.file(0o600))?;
        stage(&mut batch, &self.files.public, format!("{}\n", pending.public.trim_end()).as_bytes(), srv.file(0o644))?;
        batch.commit().map_err(self.io("cannot switch the host's key files"))
    }

    /// Step 6: BackupPC offers the new key only; the previous and the
    /// pending files go, the pending one last (its absence ends the
    /// rotation).
    fn finish(&self, pending: &KeyFile) -> Result<(), HostResult> {
        let srv = self.srv;
        let _lock = registry::lock(&srv.cfg.registry).map_err(self.io("cannot lock the registry"))?;
        // A re-enrollment since the switch owns the key files now.
        match read_key(&self.files.current).map_err(|e| self.failed(e))? {
            Some(k) if k.fingerprint == pending.fingerprint => {}
            _ => {
                return Err(self.failed(format!(
                    "the host was re-enrolled during the rotation: its key is left as enroll made it; remove {} \
                     and run rotate-key again",
                    self.files.pending.display()
                )))
            }
        }
        let pl = self.per_host_with(std::slice::from_ref(&self.files.current))?;
        let reg = self.registry_with(&pending.fingerprint)?;
        let mut batch = atomic::Batch::new();
        if let Some(text) = pl {
            batch
                .add(&self.files.pl, text.as_bytes(), Ownership::of_existing_or(&self.files.pl, srv.in_conf_dir(0o644)))
                .map_err(self.io("cannot stage the per-host config"))?;
        }
        if let Some(reg) = reg {
            reg.stage(&mut batch, &srv.cfg.registry, srv.file(0o640)).map_err(self.io("cannot stage the registry"))?;
        }
        let public = format!("{}\n", pending.public.trim_end());
        if std::fs::read(&self.files.public).ok().as_deref() != Some(public.as_bytes()) {
            batch
                .add(&self.files.public, public.as_bytes(), srv.file(0o644))
                .map_err(self.io("cannot stage HOST.pub"))?;
        }
        batch.commit().map_err(self.io("cannot write the host's files"))?;
        for p in [&self.files.previous, &self.files.pending] {
            match std::fs::remove_file(p) {
                Ok(()) => atomic::sync_dir(&srv.key_dir()).map_err(self.io("cannot flush the key folder"))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.failed(format!("cannot remove {}: {e}", p.display()))),
            }
        }
        Ok(())
    }

    /// Whether a refused `rotate-key add` came from an rsyncsend older
    /// than rotation: its own words, or its `status` not listing it.
    fn unsupported(&self, refused: &HostResult, keys: &[PathBuf]) -> bool {
        if refused.stderr.contains(rotate::NOT_ALLOWED) {
            return true;
        }
        if refused.exit_status.is_none() {
            return false;
        }
        match self.session(keys, "status", "asking rsyncsend what it serves") {
            Ok(status) => !status
                .stdout
                .lines()
                .filter_map(|l| l.strip_prefix("accepts: "))
                .any(|l| l.split(' ').any(|w| w == rotate::VERB)),
            Err(_) => false,
        }
    }

    fn steps(&self) -> Result<(), HostResult> {
        let f = &self.files;
        self.check_keys(&self.t.keys)?;
        let not_set_up = |e: String| self.result(Outcome::NotSetUp, e);
        let current = read_key(&f.current).map_err(not_set_up)?.ok_or_else(|| {
            self.result(Outcome::NotSetUp, format!("no per-host key: {} missing", f.current.display()))
        })?;
        let pending = read_key(&f.pending).map_err(|e| {
            self.failed(format!("{e}: remove it to start the rotation anew (the workstation's key is unchanged)"))
        })?;
        let started = pending.is_none();
        let mut phase = rotate::phase(&current.fingerprint, pending.as_ref().map(|p| p.fingerprint.as_str()));
        let pending = match pending {
            Some(p) => p,
            None => {
                let p = generate(&self.t.host).map_err(|e| self.failed(format!("cannot make a key: {e}")))?;
                atomic::write(&f.pending, &p.bytes, self.srv.file(0o600))
                    .map_err(self.io(&format!("cannot write {}", f.pending.display())))?;
                p
            }
        };
        let key = Ed25519Key::from_openssh(&pending.public)
            .map_err(|e| self.failed(format!("{}: {e}", f.pending.display())))?;
        let audit = Audit::new(c"forced-command", self.srv.cfg.audit_log.clone());
        let event = |step: &str| {
            audit.event(
                "rotate-key",
                json!({ "host": self.t.host, "step": step, "from": current.fingerprint, "to": pending.fingerprint }),
            )
        };
        if phase == Phase::Start {
            event("pending key made");
            phase = Phase::Switch;
        }
        let new_key_only = std::slice::from_ref(&f.pending);
        if phase == Phase::Switch {
            let add = Request { action: Action::Add, key: key.clone() }.command();
            let mut added = self.session(&self.t.keys, &add, "adding the new key over the present one");
            // The workstation holds as many lines of this server as a
            // rotation may: strays (the lost key of an aborted rotation, or
            // keys added by whoever holds the present key). The present
            // key, which opens this session, keeps its own line alone, and
            // the add is asked again.
            if let (Err(r), Ok(present)) = (&added, Ed25519Key::from_openssh(&current.public)) {
                if r.stderr.contains(rotate::TOO_MANY_LINES) {
                    let keep = Request { action: Action::Retire, key: present }.command();
                    self.session(std::slice::from_ref(&f.current), &keep, "retiring stray keys over the present one")?;
                    event("stray keys retired on the workstation");
                    added = self.session(&self.t.keys, &add, "adding the new key over the present one");
                }
            }
            if let Err(r) = added {
                if self.unsupported(&r, &self.t.keys) {
                    if started {
                        let _ = std::fs::remove_file(&f.pending);
                    }
                    let mut u = self.result(
                        Outcome::Unsupported,
                        "its rsyncsend (or its sudoers drop-in) is older than key rotation: upgrade backuppc-enroll \
                         there and run enroll once; its key is unchanged",
                    );
                    // What the workstation said, as it said it.
                    u.stderr = r.stderr;
                    return Err(u);
                }
                return Err(r);
            }
            event("added on the workstation");
            let proof = self.session(new_key_only, "status", "proving the new key")?;
            if !proof.stdout.starts_with("rsyncsend ") {
                return Err(self.failed(
                    "the new key opened a session, but rsyncsend did not answer it: nothing was switched, \
                     BackupPC keeps the present key",
                ));
            }
            event("proved");
            self.switch(&current, &pending)?;
            event("switched on the server");
        }
        let retire = Request { action: Action::Retire, key }.command();
        self.session(new_key_only, &retire, "retiring the other keys over the new one")?;
        event("retired on the workstation");
        self.finish(&pending)?;
        event("done");
        Ok(())
    }
}

/// Rotate the key of the host `t` (a target as BackupPC reaches it).
pub fn rotate(srv: &Server, t: &SshTarget, pinned: &Pinned, limits: Limits) -> HostResult {
    let host = &t.host;
    let files = Files {
        current: srv.key_path(host),
        previous: srv.previous_key_path(host),
        pending: srv.pending_key_path(host),
        public: srv.pub_key_path(host),
        pl: srv.per_host_config(host),
    };
    let run = Run { srv, t, pinned, limits, start: Instant::now(), files };
    match run.steps() {
        Ok(()) => {
            let mut r = run.result(Outcome::Ok, "");
            r.exit_status = Some(0);
            r.stdout = ROTATED.into();
            r
        }
        Err(r) => r,
    }
}

//! Serving one enrollment: parse, check, register, answer. Writes only the
//! answer to stdout; every decision goes to the audit log (and, when
//! configured, to the notification webhook).

use crate::server::{now, Server};
use backuppc_enroll::backuppc::hosts::{self, HostsWriteError};
use backuppc_enroll::backuppc::perhost::PerHostConfig;
use backuppc_enroll::config::{LogonCheck, Mode, ServerConfig};
use backuppc_enroll::log::{timestamp, Audit};
use backuppc_enroll::names;
use backuppc_enroll::protocol::answer::Success;
use backuppc_enroll::protocol::hello::{Hello, MAX_HELLO};
use backuppc_enroll::protocol::request::Request;
use backuppc_enroll::protocol::status;
use backuppc_enroll::server::policy::{self, AllowList, Approval, Directory, Nss, SystemResolver};
use backuppc_enroll::server::tokens::{TokenStore, TokenUse};
use backuppc_enroll::ssh::env::SshEnv;
use backuppc_enroll::store::atomic::{self, Ownership};
use backuppc_enroll::store::registry::{self, Enrollment, Registry};
use serde_json::json;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Why an enrollment did not happen.
pub enum Outcome {
    /// The client's request is refused (exit 1).
    Refused(String),
    /// Something failed on the server (exit 2).
    Failed(String),
    /// The request for this host waits for an admin's approval (exit 3),
    /// with why an earlier decision does not cover it.
    Pending(String, Option<String>),
}

impl<E: std::fmt::Display> From<E> for Outcome {
    fn from(e: E) -> Outcome {
        Outcome::Failed(e.to_string())
    }
}

pub(crate) fn refused(why: impl std::fmt::Display) -> Outcome {
    Outcome::Refused(why.to_string())
}

/// Past the request's time limit the client gets a message, not silence.
extern "C" fn on_alarm(_: libc::c_int) {
    const MSG: &[u8] = b"The backup server took too long to answer; try again later.\n";
    // SAFETY: write and _exit are async-signal-safe.
    unsafe {
        libc::write(1, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(2);
    }
}

pub fn run(config: &Path) -> ExitCode {
    let env = SshEnv::from_process();
    let cfg = ServerConfig::load(config);
    let limit = cfg.as_ref().map(|c| c.request_timeout).unwrap_or(60);
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGALRM, on_alarm as *const () as libc::sighandler_t);
        libc::alarm(limit.clamp(1, u32::MAX as u64) as u32);
    }
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
    if env.original_command.as_deref() == Some(status::COMMAND) {
        return crate::status::run(&cfg, &env, &audit, &client);
    }
    let request = env.original_command.clone().unwrap_or_default();
    let (code, note) = match enroll(&cfg, &env, &audit) {
        Ok(answer) => {
            print!("{}", answer.render());
            let _ = std::io::stdout().flush();
            // After the registry lock is released, and once for a burst:
            // enrollments do not queue behind BackupPC's reloads.
            let changed = std::time::SystemTime::now();
            let reloaded = match crate::server::Server::open(&cfg) {
                Ok(srv) => srv.reload_coalesced(changed),
                Err(e) => format!("failed ({e})"),
            };
            let (lock_wait_ms, lock_held_ms) = LOCK_TIMES.lock().ok().and_then(|t| *t).unzip();
            audit.event(
                "reload",
                json!({
                    "client": client, "host": answer.host, "backuppc_reload": reloaded,
                    "lock_wait_ms": lock_wait_ms, "lock_held_ms": lock_held_ms,
                }),
            );
            (0, format!("enrolled {} for {request} from {client}", answer.host.as_deref().unwrap_or("?")))
        }
        Err(Outcome::Refused(why)) => {
            audit.event("refused", json!({ "client": client, "request": env.original_command, "reason": why }));
            println!("Enrollment refused: {why}.");
            (1, format!("refused {request:?} from {client}: {why}"))
        }
        Err(Outcome::Failed(why)) => {
            audit.event("error", json!({ "client": client, "request": env.original_command, "reason": why }));
            println!("The backup server could not complete the enrollment. Try again later or tell the backup administrator (the reason is in the server's log).");
            (2, format!("failed {request:?} from {client}: {why}"))
        }
        Err(Outcome::Pending(host, note)) => {
            audit.event(
                "pending",
                json!({ "client": client, "request": env.original_command, "host": host, "note": note }),
            );
            if let Some(note) = &note {
                println!("Note: {note}.");
            }
            println!("The enrollment of {host} waits for the backup administrator's approval. Run enroll again once it is approved.");
            (3, format!("pending {request:?} from {client} as {host}: run `forced-command approve {host}`"))
        }
    };
    let _ = std::io::stdout().flush();
    if let Some(url) = &cfg.notify_webhook {
        crate::notify::detached(url, &format!("backuppc-enroll: {note}"));
    }
    ExitCode::from(code)
}

/// The registry lock of this run, timed: when it is released, how long
/// it was waited for and held go to `LOCK_TIMES` (milliseconds), for the
/// audit log's `reload` event of the enrollment.
struct LockTimer {
    _lock: atomic::Lock,
    asked: Instant,
    acquired: Instant,
}

static LOCK_TIMES: std::sync::Mutex<Option<(f64, f64)>> = std::sync::Mutex::new(None);

impl Drop for LockTimer {
    fn drop(&mut self) {
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        let times = (ms(self.acquired - self.asked), ms(self.acquired.elapsed()));
        if let Ok(mut t) = LOCK_TIMES.lock() {
            *t = Some(times);
        }
    }
}

/// Read the hello block: at most `MAX_HELLO` bytes until EOF, within the
/// time bound. A client that sends nothing in time is a seed client.
pub(crate) fn read_hello(timeout: Duration) -> Result<Hello, Outcome> {
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

fn directory(cfg: &ServerConfig) -> Result<Box<dyn Directory>, Outcome> {
    Ok(match cfg.logon_check {
        LogonCheck::File => {
            let path = cfg.logon_file.as_ref().expect("checked at load");
            Box::new(AllowList(std::fs::read_to_string(path)?))
        }
        LogonCheck::Ldap => {
            Box::new(backuppc_enroll::server::directory::Ldap(cfg.ldap.clone().expect("checked at load")))
        }
        LogonCheck::Nss | LogonCheck::Any => Box::new(Nss),
    })
}

fn enroll(cfg: &ServerConfig, env: &SshEnv, audit: &Audit) -> Result<Success, Outcome> {
    let command = env.original_command.as_deref().unwrap_or("");
    let request = Request::parse(command).map_err(refused)?;
    let ip = policy::check_network(cfg, env.client).map_err(refused)?;
    policy::check_os(cfg, &request.os).map_err(refused)?;
    policy::check_logon_pattern(cfg, &request.logon).map_err(refused)?;
    if cfg.logon_check == LogonCheck::Any {
        audit.event(
            "warning",
            json!({ "reason": "logon_check = \"any\": the logon was not checked against any directory", "logon": request.logon }),
        );
    }
    // A directory that cannot be asked is the server's failure, not the
    // client's: the detail (URL, TLS error) stays in the server's log.
    policy::check_logon(cfg.logon_check, directory(cfg)?.as_ref(), &request.logon).map_err(|r| match r {
        policy::Refusal::DirectoryDown(detail) => {
            Outcome::Failed(format!("the logon directory could not be asked: {detail}"))
        }
        other => refused(other),
    })?;
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
    let srv = Server::open(cfg).map_err(Outcome::Failed)?;
    let token_use = TokenUse::new(&host, &request.logon, host_key_fingerprints(&hello));

    // A bad token is refused before anything is locked or written; the
    // check is repeated under the lock, where the use is counted.
    if cfg.mode == Mode::Token {
        TokenStore::load(&cfg.tokens)?.check(hello.token.as_deref(), &token_use, true, now()).map_err(refused)?;
    }
    // The expensive part of an answer is done before the lock, so that
    // enrollments waiting for it wait only for file writes.
    let fresh = FreshKey::generate(&host)?;

    // One enrollment at a time changes the server's files.
    srv.ensure_parent(&cfg.registry)?;
    let asked = Instant::now();
    let _lock = LockTimer { _lock: registry::lock(&cfg.registry)?, asked, acquired: Instant::now() };
    let mut reg = Registry::load(&cfg.registry)?;
    let hosts_text = srv.hosts().read()?;
    let current = hosts::find(&hosts_text, &host);
    let entry = reg.hosts.get(&host).cloned();
    let waiting = reg.requests.get(&host).cloned();
    if entry.as_ref().is_some_and(|e| e.state == "revoked") {
        return Err(refused(format!(
            "host {host} was revoked by the backup administrator; ask them to clear it (forced-command clear {host})"
        )));
    }
    if waiting.as_ref().is_some_and(|e| e.state == "denied") {
        return Err(refused(format!("the enrollment of {host} was denied by the backup administrator")));
    }
    // What the admin set up by hand is the admin's: the toolkit rewrites
    // only what it wrote, or what the admin handed over (`adopt`).
    let owned = reg.owns(&host);
    if !owned {
        let found = srv.hand_made(&host, current.is_some())?;
        if !found.is_empty() {
            return Err(refused(format!(
                "host {host} is already set up in BackupPC by hand ({}), not by this enrollment service; ask the backup administrator, who can hand it over with `forced-command adopt {host}`",
                found.join(", ")
            )));
        }
    }
    let adopted = entry.as_ref().is_some_and(|e| e.state == "adopted");
    // An adopted host's line is the admin's hand-over: its user field does
    // not hold the host for anyone.
    let held = holder(current.filter(|_| !adopted).map(|e| e.user), entry.as_ref(), waiting.as_ref());
    if !cfg.allow_reassign {
        if let Some(why) = held.refusal(&host, &request.logon) {
            return Err(refused(why));
        }
    }
    // The hosts line is written last; whether it may be is known now, so a
    // refusal comes before any file (or a token's use) changes.
    if let Err(e) = hosts::upsert(&hosts_text, &host, &request.logon, cfg.allow_reassign || adopted) {
        return Err(refused(e));
    }
    // Which key to answer: the host's keys as they are on disk decide,
    // so a crash at any point leaves a state the next call reads right.
    let keys = HostKeys {
        current: InstalledKey::read(&srv.key_path(&host)),
        previous: InstalledKey::read(&srv.previous_key_path(&host)),
    };
    let plan = key_plan(
        keys.current.as_ref().map(|k| k.fingerprint.as_str()),
        keys.previous.as_ref().map(|k| k.fingerprint.as_str()),
        hello.installed_key.as_deref(),
        hello.finish_rekey,
    );
    match cfg.mode {
        Mode::Open => {}
        Mode::Token => {
            // Counted now, before BackupPC's files change: a token is never
            // good for more enrollments than it allows, even after a crash.
            // The same request retried (its answer was lost) counts no
            // further use; a new key beside one the workstation installed
            // is a new use.
            let retry = plan != KeyPlan::New { keep_current: true };
            let mut store = TokenStore::load(&cfg.tokens)?;
            let accepted = store.check(hello.token.as_deref(), &token_use, retry, now()).map_err(refused)?;
            if !accepted.repeat {
                store.consume(accepted, token_use);
                store.save(&cfg.tokens, srv.file(0o600))?;
            }
        }
        Mode::Approve => {
            // A request never overwrites a live host's entry: it waits in
            // `requests`, tied to the host keys the admin is shown.
            let asking = record(&host, &request, ip, "", &hello, "pending");
            match policy::approval(entry.as_ref(), waiting.as_ref(), &asking) {
                Approval::Proceed => {}
                Approval::Refuse(why) => return Err(refused(why)),
                Approval::StillWaiting => return Err(Outcome::Pending(host, None)),
                Approval::Wait(note) => {
                    reg.requests.insert(host.clone(), asking);
                    reg.save(&cfg.registry, srv.file(0o640))?;
                    return Err(Outcome::Pending(host, note));
                }
            }
        }
    }
    // Recorded before the first BackupPC file is written, so that after a
    // crash midway the files are known to be the toolkit's and a re-run
    // finishes the job.
    let recorded = !owned || adopted;
    if recorded {
        reg.hosts.insert(host.clone(), record(&host, &request, ip, "", &hello, "enrolling"));
        reg.save(&cfg.registry, srv.file(0o640))?;
    }
    let pc_dir = cfg.backuppc_conf_dir.join("pc");
    let pc_dir_existed = pc_dir.is_dir();
    let target = Target { host: host.clone(), request: &request, ip, hello: &hello, from, shares, adopted };
    let result = write_host(&srv, &mut reg, &target, audit, plan, fresh, keys);
    if result.is_err() && recorded {
        // A failure before any BackupPC file was written leaves no trace
        // in the registry either; an adopted host stays adopted.
        let untouched = srv
            .hosts()
            .read()
            .and_then(|h| srv.hand_made(&host, hosts::find(&h, &host).is_some()))
            .is_ok_and(|found| found.is_empty());
        match entry {
            Some(previous) if adopted => {
                reg.hosts.insert(host.clone(), previous);
                let _ = reg.save(&cfg.registry, srv.file(0o640));
            }
            None if untouched => {
                reg.hosts.remove(&host);
                let _ = reg.save(&cfg.registry, srv.file(0o640));
            }
            _ => {}
        }
    }
    if result.is_err() && !pc_dir_existed {
        // Made for this host's pc/HOST.pl, which was never written (a
        // folder with anything in it stays).
        let _ = std::fs::remove_dir(&pc_dir);
    }
    result
}

/// Who holds a host for a logon already, as far as the enrollment checks.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    Nobody,
    /// Its hosts line, or the toolkit's record of it (enrolled or enrolling).
    Registered(String),
    /// An admin approved another logon's request, not enrolled yet.
    Approved(String),
}

fn holder(line_user: Option<String>, entry: Option<&Enrollment>, waiting: Option<&Enrollment>) -> Holder {
    if let Some(u) = line_user {
        return Holder::Registered(u);
    }
    if let Some(e) = entry.filter(|e| e.state == "enrolled" || e.state == "enrolling") {
        return Holder::Registered(e.logon.clone());
    }
    match waiting.filter(|e| e.state == "approved") {
        Some(e) => Holder::Approved(e.logon.clone()),
        None => Holder::Nobody,
    }
}

impl Holder {
    /// Why `logon` may not enroll `host` (without reassignment), if so.
    /// An approved request's logon is another person's pending business:
    /// not named to whoever asks.
    fn refusal(&self, host: &str, logon: &str) -> Option<String> {
        match self {
            Holder::Registered(other) if other != logon => Some(format!(
                "host {host} is already registered for another logon ({other}); ask the backup administrator to move it"
            )),
            Holder::Approved(other) if other != logon => Some(format!(
                "host {host} is approved for enrollment by another logon and not yet enrolled; ask the backup administrator"
            )),
            _ => None,
        }
    }
}

/// Which key a (re-)enrollment answers, from the host's keys on the server
/// and the key the workstation says it has installed (`installed-key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPlan {
    /// Generate a new key. `keep_current`: the current key becomes
    /// `HOST.key.prev` and stays accepted, as the workstation has it
    /// installed until it installs the new one.
    New { keep_current: bool },
    /// Answer the current key again. `keep_previous`: `HOST.key.prev`
    /// stays accepted (the workstation missed the answer and still has it).
    Same { keep_previous: bool },
}

fn key_plan(current: Option<&str>, previous: Option<&str>, installed: Option<&str>, finish: bool) -> KeyPlan {
    match (current, installed) {
        // The workstation installed the current key and says so: done.
        (Some(c), Some(i)) if c == i && finish => KeyPlan::Same { keep_previous: false },
        // It installed the current key and asks for another: rotate.
        (Some(c), Some(i)) if c == i => KeyPlan::New { keep_current: true },
        // It missed the last answer: the same answer again.
        (Some(_), Some(i)) if previous == Some(i) => KeyPlan::Same { keep_previous: true },
        // A first enrollment, an older client, or a key the server does
        // not know: nothing on the workstation to keep working.
        _ => KeyPlan::New { keep_current: false },
    }
}

/// A key pair made before the lock is taken; dropped unused when the
/// current key is answered again.
struct FreshKey {
    /// OpenSSH text of the private key (wiped from memory when dropped).
    private: Box<dyn std::ops::Deref<Target = String>>,
    public: String,
    fingerprint: String,
}

impl FreshKey {
    fn generate(host: &str) -> Result<FreshKey, Outcome> {
        let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)?;
        key.set_comment(format!("backuppc@{} for {host}", nix::unistd::gethostname()?.to_string_lossy()));
        Ok(FreshKey {
            private: Box::new(key.to_openssh(LineEnding::LF)?),
            public: key.public_key().to_openssh()?,
            fingerprint: names::fingerprint(key.public_key()),
        })
    }
}

/// A private key file of the host on the server, as read under the lock.
pub(crate) struct InstalledKey {
    bytes: Vec<u8>,
    public: String,
    pub(crate) fingerprint: String,
}

impl InstalledKey {
    /// `None` when missing or unreadable: a key that cannot be read cannot
    /// be answered again, so a new one is made.
    pub(crate) fn read(path: &Path) -> Option<InstalledKey> {
        let bytes = std::fs::read(path).ok()?;
        let key = PrivateKey::from_openssh(&bytes).ok()?;
        Some(InstalledKey {
            public: key.public_key().to_openssh().ok()?,
            fingerprint: names::fingerprint(key.public_key()),
            bytes,
        })
    }
}

struct HostKeys {
    current: Option<InstalledKey>,
    previous: Option<InstalledKey>,
}

/// What is enrolled, as the checks settled it.
struct Target<'a> {
    host: String,
    request: &'a Request,
    ip: std::net::IpAddr,
    hello: &'a Hello,
    from: String,
    shares: Vec<String>,
    /// The admin handed the host over, so its hosts line is rewritten
    /// whatever logon it names.
    adopted: bool,
}

/// Write the host's keys, BackupPC files and registry entry; under the
/// registry lock, after every check passed.
///
/// Order: the files are staged in one batch (see [`atomic::Batch`]: one
/// wait for the disk for all contents, one for all folders) and renamed
/// in this order: the current key kept as `HOST.key.prev` (when the
/// workstation still has it installed), pc/HOST.pl, known_hosts, the
/// registry, the new key and its `.pub`; the hosts line comes last, on
/// its own: BackupPC never schedules the host without its per-host
/// config, key and registry entry. A refusal or failure before the
/// renames removes what was staged and leaves the host's working key as
/// it was; a crash leaves files that are each whole, and re-running
/// finishes the job.
fn write_host(
    srv: &Server,
    reg: &mut Registry,
    t: &Target,
    audit: &Audit,
    plan: KeyPlan,
    fresh: FreshKey,
    keys: HostKeys,
) -> Result<Success, Outcome> {
    let cfg = srv.cfg;
    let (host, request, hello) = (&t.host, t.request, t.hello);
    let client_user = hello.user.clone().unwrap_or_else(|| cfg.client_user.clone());
    let client_port = hello.port.unwrap_or(22);
    srv.ensure_dir(&srv.ssh_dir, srv.file(0o700))?;
    srv.ensure_dir(&srv.key_dir(), srv.file(0o700))?;
    let key_path = srv.key_path(host);
    let previous_path = srv.previous_key_path(host);
    // Under the lock, what a killed run left of the host's key files is
    // stale: a run that answers the same key again writes none of them.
    // (`HOST.key.new`: where earlier builds staged a new key.)
    let legacy_staged = srv.key_dir().join(format!("{host}.key.new"));
    for p in [&key_path, &legacy_staged, &previous_path, &srv.pub_key_path(host)] {
        if let Some(name) = p.file_name() {
            atomic::remove_stale_temps(&srv.key_dir(), &name.to_string_lossy());
        }
    }
    let _ = std::fs::remove_file(&legacy_staged);

    let mut batch = atomic::Batch::new();
    let (public, fingerprint, new_key, keep_previous) = match (plan, keys.current) {
        (KeyPlan::Same { keep_previous }, Some(current)) => {
            (current.public, current.fingerprint, None, keep_previous && keys.previous.is_some())
        }
        (KeyPlan::New { keep_current }, current) => {
            let keep = match current.filter(|_| keep_current) {
                Some(current) => {
                    batch.add(&previous_path, &current.bytes, srv.file(0o600))?;
                    true
                }
                None => false,
            };
            (fresh.public, fresh.fingerprint, Some(fresh.private), keep)
        }
        (KeyPlan::Same { .. }, None) => unreachable!("key_plan answers the current key only when there is one"),
    };
    let pc_dir = cfg.backuppc_conf_dir.join("pc");
    srv.ensure_dir(&pc_dir, srv.in_conf_dir(0o750))?;
    let per_host = PerHostConfig {
        host: host.clone(),
        logon: request.logon.clone(),
        client_user,
        client_port,
        key_path: key_path.to_string_lossy().into_owned(),
        previous_key_path: keep_previous.then(|| previous_path.to_string_lossy().into_owned()),
        known_hosts: srv.known_hosts().to_string_lossy().into_owned(),
        rsync_client_path: cfg.rsync_client_path.clone(),
        shares: t.shares.clone(),
        dumps: hello.accepts.iter().any(|a| a == backuppc_enroll::dumps::TRIGGER),
    };
    let pl = srv.per_host_config(host);
    // A re-enrollment keeps what the host's user saved in the web
    // interface: only the toolkit's own settings are replaced.
    let per_host_text = match std::fs::read_to_string(&pl) {
        Ok(existing) => per_host.update(&existing).map_err(|e| anyhow::anyhow!("{}: {e}", pl.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => per_host.render(&timestamp()),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", pl.display()).into()),
    };
    batch.add(&pl, per_host_text.as_bytes(), Ownership::of_existing_or(&pl, srv.in_conf_dir(0o644)))?;
    if !hello.hostkeys.is_empty() {
        srv.pin_host_keys(&mut batch, host, &hello.hostkeys)?;
    }
    reg.version = 1;
    reg.hosts.insert(host.clone(), record(host, request, t.ip, &fingerprint, hello, "enrolled"));
    reg.requests.remove(host);
    reg.stage(&mut batch, &cfg.registry, srv.file(0o640))?;
    if let Some(private) = new_key {
        batch.add(&key_path, private.as_bytes(), srv.file(0o600))?;
        batch.add(&srv.pub_key_path(host), format!("{public}\n").as_bytes(), srv.file(0o644))?;
    }
    batch.commit()?;
    // pc/HOST.pl no longer names the previous key: it can go.
    if !keep_previous {
        match std::fs::remove_file(&previous_path) {
            Ok(()) => atomic::sync_dir(&srv.key_dir())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    match srv.hosts().register(host, &request.logon, cfg.allow_reassign || t.adopted) {
        Ok(_) => {}
        Err(HostsWriteError::Policy(e)) => return Err(refused(e)),
        Err(e) => return Err(e.into()),
    }
    audit.event(
        "accepted",
        json!({
            "client": t.ip.to_string(), "request": request.to_string(), "host": host,
            "protocol": hello.protocol, "host_keys": hello.hostkeys.len(),
            "key": fingerprint, "key_plan": format!("{plan:?}"), "previous_key_kept": keep_previous,
        }),
    );
    Ok(Success {
        key: public.trim_end().to_string(),
        url: cfg.url_for(host, &request.logon),
        host: Some(host.clone()),
        from: Some(t.from.clone()),
        shares: t.shares.clone(),
    })
}

pub(crate) fn host_key_fingerprints(hello: &Hello) -> Vec<String> {
    hello.hostkeys.iter().filter_map(|k| names::public_key(k).ok()).map(|k| names::fingerprint(&k)).collect()
}

fn record(host: &str, request: &Request, ip: std::net::IpAddr, key: &str, hello: &Hello, state: &str) -> Enrollment {
    Enrollment {
        host: host.to_string(),
        logon: request.logon.clone(),
        os: request.os.clone(),
        address: ip.to_string(),
        key_fingerprint: key.to_string(),
        host_key_fingerprints: host_key_fingerprints(hello),
        enrolled_at: timestamp(),
        state: state.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_plan_table() {
        let (k0, k1, other) = ("SHA256:k0", "SHA256:k1", "SHA256:x");
        #[allow(clippy::type_complexity)]
        let rows: &[(Option<&str>, Option<&str>, Option<&str>, bool, KeyPlan, &str)] = &[
            (None, None, None, false, KeyPlan::New { keep_current: false }, "first enrollment"),
            (None, None, Some(k0), false, KeyPlan::New { keep_current: false }, "server lost the key"),
            (Some(k0), None, None, false, KeyPlan::New { keep_current: false }, "older client: as before"),
            (Some(k0), None, Some(k0), false, KeyPlan::New { keep_current: true }, "rekey: old key kept"),
            (Some(k1), Some(k0), Some(k1), false, KeyPlan::New { keep_current: true }, "next rekey: k0 dropped"),
            (Some(k1), Some(k0), Some(k0), false, KeyPlan::Same { keep_previous: true }, "answer lost: same again"),
            (Some(k1), Some(k0), Some(k0), true, KeyPlan::Same { keep_previous: true }, "finish before install"),
            (Some(k1), Some(k0), Some(k1), true, KeyPlan::Same { keep_previous: false }, "finish: k0 dropped"),
            (Some(k1), None, Some(k1), true, KeyPlan::Same { keep_previous: false }, "finish repeated"),
            (Some(k1), Some(k0), Some(other), false, KeyPlan::New { keep_current: false }, "unknown installed key"),
            (Some(k1), Some(k0), Some(other), true, KeyPlan::New { keep_current: false }, "unknown key, finish"),
            (None, Some(k0), Some(k0), false, KeyPlan::New { keep_current: false }, "no current key to answer"),
        ];
        for (current, previous, installed, finish, want, why) in rows {
            assert_eq!(key_plan(*current, *previous, *installed, *finish), *want, "{why}");
        }
    }

    #[test]
    fn holder_table() {
        let e = |logon: &str, state: &str| Enrollment {
            host: "h".into(),
            logon: logon.into(),
            os: "linux".into(),
            address: "127.0.0.1".into(),
            key_fingerprint: String::new(),
            host_key_fingerprints: vec![],
            enrolled_at: String::new(),
            state: state.into(),
        };
        #[allow(clippy::type_complexity)]
        let rows: &[(Option<&str>, Option<Enrollment>, Option<Enrollment>, Option<&str>, &str)] = &[
            (None, None, None, None, "nobody holds it"),
            (Some("me"), None, None, None, "my own line"),
            (Some("bob"), None, None, Some("registered for another logon (bob)"), "another's line"),
            (None, Some(e("bob", "enrolling")), None, Some("(bob)"), "another's crashed enrollment"),
            (None, Some(e("bob", "revoked")), None, None, "revoked: nobody's"),
            (None, None, Some(e("me", "approved")), None, "my approved request"),
            (
                None,
                None,
                Some(e("bob", "approved")),
                Some("approved for enrollment by another logon and not yet enrolled"),
                "another's approval",
            ),
            (None, None, Some(e("bob", "pending")), None, "a pending request holds nothing"),
        ];
        for (line, entry, waiting, want, why) in rows {
            let got = holder(line.map(str::to_string), entry.as_ref(), waiting.as_ref()).refusal("h", "me");
            match want {
                None => assert_eq!(got, None, "{why}"),
                Some(w) => {
                    let got = got.unwrap_or_else(|| panic!("{why}: not refused"));
                    assert!(got.contains(w), "{why}: {got}");
                    if why.contains("approval") {
                        assert!(!got.contains("bob"), "{why}: names the other logon: {got}");
                    }
                }
            }
        }
    }
}

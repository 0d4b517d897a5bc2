//! Serving one enrollment: parse, check, register, answer. Writes only the
//! answer to stdout; every decision goes to the audit log (and, when
//! configured, to the notification webhook).

use crate::group::{Answer, Basis, HostFiles, Proposal, Queue, Ticket, MAX_GROUP};
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
use backuppc_enroll::server::tokens::{self, TokenStore, TokenUse};
use backuppc_enroll::ssh::env::SshEnv;
use backuppc_enroll::ssh::known_hosts;
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

/// The request's time limit, from now.
fn rearm_alarm(seconds: u64) {
    // SAFETY: alarm(2) only sets this process's timer.
    unsafe { libc::alarm(seconds.clamp(1, u32::MAX as u64) as u32) };
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
    let _ = STARTED.set(Instant::now());
    let _ = CONFIG_ID.set(config_id(config));
    let env = SshEnv::from_process();
    let cfg = ServerConfig::load(config);
    let limit = cfg.as_ref().map(|c| c.request_timeout).unwrap_or(60);
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGALRM, on_alarm as *const () as libc::sighandler_t);
    }
    rearm_alarm(limit);
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
    let result = enroll(&cfg, &env, &audit);
    // After the registry lock is released, once for a burst, and in the
    // background: the client's session ends as soon as it has its answer,
    // and BackupPC learns of the hosts a moment later (a daemon that is
    // down reads the files when it starts). The leader of a group that
    // wrote files does it for the whole group, whatever its own outcome.
    let changed = std::time::SystemTime::now();
    let times = LOCK_TIMES.lock().ok().and_then(|t| *t);
    let own_host = result.as_ref().ok().and_then(|a| a.host.clone());
    let event = |reloaded: String, took: Option<f64>| {
        audit.event(
            "reload",
            json!({
                "client": client, "host": own_host, "backuppc_reload": reloaded,
                "prepare_ms": times.map(|t| t.0), "lock_wait_ms": times.map(|t| t.1),
                "lock_held_ms": times.map(|t| t.2), "reload_ms": took,
            }),
        )
    };
    if LED.load(std::sync::atomic::Ordering::Relaxed) {
        crate::notify::in_background(|| {
            let began = Instant::now();
            let reloaded = match crate::server::Server::open(&cfg) {
                Ok(srv) => srv.reload_coalesced(changed),
                Err(e) => format!("failed ({e})"),
            };
            event(reloaded, Some(ms(began.elapsed())));
        });
    } else if result.is_ok() {
        event(FOLLOWER_RELOAD.into(), None);
    }
    let (code, note) = match result {
        Ok(answer) => {
            // A client gone already is no reason to stop here.
            let _ = std::io::stdout().write_all(answer.render().as_bytes());
            let _ = std::io::stdout().flush();
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
/// the enrollment took to ask for it, waited for it and held it go to
/// `LOCK_TIMES` (milliseconds), for the audit log's `reload` event of the
/// enrollment.
struct LockTimer {
    _lock: atomic::Lock,
    asked: Instant,
    acquired: Instant,
}

static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// Which server config this run read (see [`config_id`]).
static CONFIG_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The config file as it is now: its file, size and time. Another run
/// that read another version of it does not lead this one's proposal.
fn config_id(config: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(config) {
        Ok(m) => format!("{}:{}:{}:{}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()),
        Err(_) => "unreadable".into(),
    }
}
/// Whether this enrollment led a group that wrote files: then it tells
/// BackupPC, for the whole group.
static LED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static LOCK_TIMES: std::sync::Mutex<Option<(f64, f64, f64)>> = std::sync::Mutex::new(None);

/// The `backuppc_reload` of an enrollment written by another's group.
const FOLLOWER_RELOAD: &str = "by the leader of its group";

/// Milliseconds, to two decimals.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

impl Drop for LockTimer {
    fn drop(&mut self) {
        let prepare = STARTED.get().map(|s| ms(self.asked.saturating_duration_since(*s))).unwrap_or(0.0);
        let times = (prepare, ms(self.acquired - self.asked), ms(self.acquired.elapsed()));
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
    // The expensive part of an answer is done before the lock: the key
    // pair, and the host's own files written from the host's files as
    // they are now (the leader checks that they still are, or writes them
    // itself, and flushes them with the group's).
    let fresh = FreshKey::generate(&host)?;
    let pc_dir = cfg.backuppc_conf_dir.join("pc");
    // Folders staging may make, deepest first: a refused or failed
    // enrollment leaves none of those it made (if nothing else is in it).
    let made_for_it: Vec<std::path::PathBuf> =
        [pc_dir.clone(), srv.key_dir(), srv.ssh_dir.clone()].into_iter().filter(|d| !d.is_dir()).collect();
    let mut own = Settled {
        token_hash: hello.token.as_deref().map(tokens::hash),
        host,
        request,
        ip,
        hello,
        from,
        shares,
        fresh: Some(fresh),
        prestaged: None,
    };
    let held = prestage(&srv, &own);
    own.prestaged = held.as_ref().map(|(_, _, files)| files.clone());
    let proposal = own.proposal();

    // One leader at a time changes the server's files, for every
    // enrollment waiting then (see group.rs).
    srv.ensure_parent(&cfg.registry)?;
    let queue = Queue::of(&cfg.registry);
    let ticket = queue.as_ref().and_then(|q| q.enqueue(&proposal).ok());
    let asked = Instant::now();
    let lock = LockTimer { _lock: registry::lock(&cfg.registry)?, asked, acquired: Instant::now() };
    let result = match ticket.as_ref().and_then(Ticket::answer) {
        Some(answer) => answer.into_result(),
        None => {
            // Leading: the time this enrollment waited is no reason to
            // stop halfway through writing a group.
            rearm_alarm(cfg.request_timeout);
            let waiting = match (&queue, &ticket) {
                (Some(q), Some(t)) => q.waiting(t, MAX_GROUP - 1),
                _ => Vec::new(),
            };
            // Only proposals checked under the same config as this one.
            let (waiters, others): (Vec<_>, Vec<_>) =
                waiting.into_iter().filter(|(_, p)| p.config == proposal.config).unzip();
            let results = lead(&srv, audit, own, &others);
            if results.iter().any(|r| matches!(r, Some(Ok(_)))) {
                LED.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let mut results = results.into_iter();
            let own = results.next().flatten();
            for (waiter, result) in waiters.iter().zip(results) {
                // One left unanswered (a second proposal for the same
                // host) is led by its own writer, after this group.
                if let Some(result) = result {
                    waiter.answer(&Answer::of(&result));
                }
            }
            own.unwrap_or_else(|| Err(Outcome::Failed("the enrollment was not led".into())))
        }
    };
    // What was staged and not used goes; so do the folders made for it,
    // when nothing else is in them.
    drop(held);
    if result.is_err() {
        for dir in &made_for_it {
            let _ = std::fs::remove_dir(dir);
        }
    }
    drop(ticket);
    drop(lock);
    result
}

/// An enrollment as its leader handles it.
struct Settled {
    host: String,
    request: Request,
    ip: std::net::IpAddr,
    hello: Hello,
    token_hash: Option<String>,
    from: String,
    shares: Vec<String>,
    /// The key made before the lock; another enrollment's is made only
    /// when its prestaged files cannot be used.
    fresh: Option<FreshKey>,
    prestaged: Option<HostFiles>,
}

impl Settled {
    fn of(p: &Proposal) -> Result<Settled, Outcome> {
        let bad = |what: &str| Outcome::Failed(format!("a queued enrollment's {what} does not parse"));
        Ok(Settled {
            host: p.host.clone(),
            request: Request::parse(&p.command).map_err(|_| bad("request"))?,
            ip: p.ip,
            hello: Hello::parse(p.hello.as_bytes()).map_err(|_| bad("hello block"))?,
            token_hash: p.token_hash.clone(),
            from: p.from.clone(),
            shares: p.shares.clone(),
            fresh: None,
            prestaged: p.prestaged.clone(),
        })
    }

    fn proposal(&self) -> Proposal {
        Proposal {
            command: self.request.to_string(),
            ip: self.ip,
            hello: Hello { token: None, ..self.hello.clone() }.render(),
            token_hash: self.token_hash.clone(),
            host: self.host.clone(),
            from: self.from.clone(),
            shares: self.shares.clone(),
            config: CONFIG_ID.get().cloned().unwrap_or_default(),
            prestaged: self.prestaged.clone(),
        }
    }
}

/// The host's files staged before the lock, as the leader
/// would stage them under it from the host's files as they are now.
/// `None` when staging failed: then the leader stages them itself.
fn prestage(srv: &Server, s: &Settled) -> Option<(atomic::Prestaged, atomic::Prestaged, HostFiles)> {
    let keys = HostKeys::read(srv, &s.host);
    let plan = keys.plan(&s.hello);
    let fresh = s.fresh.as_ref()?;
    let staged = stage_host(srv, s, plan, &keys, fresh).ok()?;
    let early = staged.early.prestage().ok()?;
    let late = staged.late.prestage().ok()?;
    let files = HostFiles {
        // From the very bytes of pc/HOST.pl that the staged one was made
        // from: a save by the web interface in between makes it unusable.
        basis: keys.basis(staged.per_host.clone()),
        early: early.paths(),
        late: late.paths(),
        public: staged.public,
        fingerprint: staged.fingerprint,
        keep_previous: staged.keep_previous,
    };
    Some((early, late, files))
}

/// What a host's staged files were made from: its keys on the server and
/// its pc/HOST.pl, as read then.
fn basis(srv: &Server, host: &str, keys: &HostKeys) -> Basis {
    keys.basis(per_host_state(&std::fs::read(srv.per_host_config(host))))
}

/// pc/HOST.pl as read, for a [`Basis`]: `sha256:HEX`, `absent`, or why
/// it could not be read.
fn per_host_state(read: &std::io::Result<Vec<u8>>) -> String {
    use sha2::Digest;
    match read {
        Ok(bytes) => format!("sha256:{:x}", sha2::Sha256::digest(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent".into(),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// The files every enrollment of a group changes, as the leader read them
/// under the lock and as the group changes them in memory.
struct Shared {
    reg: Registry,
    reg_changed: bool,
    hosts_text: String,
    known_hosts: String,
    tokens: Option<TokenStore>,
    tokens_changed: bool,
}

/// An enrollment that passed every check, on its way to being written.
struct Going {
    index: usize,
    s: Settled,
    entry: Option<Enrollment>,
    adopted: bool,
    recorded: bool,
    plan: KeyPlan,
    keys: HostKeys,
}

/// A host's own files, staged: what goes before the files the group
/// shares, what goes after, the public key answered, its fingerprint
/// and whether the previous key stays offered.
struct HostBatch {
    early: atomic::Batch,
    late: atomic::Batch,
    public: String,
    fingerprint: String,
    keep_previous: bool,
    /// pc/HOST.pl as it was read to stage the new one (see [`Basis`]).
    per_host: String,
}

/// What an enrollment adds to the group's batch.
struct Staged {
    going: Going,
    files: HostBatch,
}

enum Decision {
    Go(Box<Going>),
    /// Refused or pending without a file changed.
    Done(Outcome),
    /// Pending, with its request added to the registry.
    Waits(Outcome),
}

type Led = Option<Result<Success, Outcome>>;

/// Under the registry lock: every enrollment of `group` checked against
/// the files one after another, as if each had the lock alone, then all
/// of their files written together. Each result is one enrollment's,
/// `None` for one not led now (another proposal of the group names the
/// same host).
///
/// The writes, for the whole group: one batch (see [`atomic::Batch`]: one
/// wait for the disk for all contents, one for all folders; the hosts'
/// own files were written before the lock) renamed in this order: the
/// tokens' uses; the registry with each new host `enrolling` (so that
/// after a crash its files are known to be the toolkit's) and each
/// request waiting for an admin; each current key kept as
/// `HOST.key.prev`, each pc/HOST.pl; known_hosts; the registry; each new
/// key and its `.pub`. Then, on its own, BackupPC's hosts file, written
/// once: BackupPC never schedules a host without its per-host config,
/// key and registry entry. A crash leaves files that are each whole, and
/// re-running finishes the job.
///
/// The first result is `own`'s, then one for each of `others`.
fn lead(srv: &Server, audit: &Audit, own: Settled, others: &[Proposal]) -> Vec<Led> {
    let mut phases = Phases::new();
    let group: Vec<Result<Settled, Outcome>> = std::iter::once(Ok(own)).chain(others.iter().map(Settled::of)).collect();
    let size = group.len();
    let results = lead_timed(srv, audit, group, &mut phases);
    let written = results.iter().filter(|r| matches!(r, Some(Ok(_)))).count();
    audit.event("group", json!({ "size": size, "written": written, "ms": phases.0 }));
    results
}

/// How long each step of leading a group took, for the audit log.
struct Phases(serde_json::Map<String, serde_json::Value>, Instant);

impl Phases {
    fn new() -> Phases {
        Phases(serde_json::Map::new(), Instant::now())
    }

    /// The time since the last step, as `name`'s.
    fn done(&mut self, name: &str) {
        self.0.insert(name.into(), json!(ms(self.1.elapsed())));
        self.1 = Instant::now();
    }
}

fn lead_timed(srv: &Server, audit: &Audit, group: Vec<Result<Settled, Outcome>>, phases: &mut Phases) -> Vec<Led> {
    let cfg = srv.cfg;
    let size = group.len();
    let mut results: Vec<Led> = group.iter().map(|_| None).collect();
    let fail_all = |results: &mut Vec<Led>, indices: &[usize], why: &str| {
        for &i in indices {
            results[i] = Some(Err(Outcome::Failed(why.to_string())));
        }
    };
    let mut shared = match Shared::load(srv) {
        Ok(s) => s,
        Err(e) => {
            let all: Vec<usize> = (0..size).collect();
            fail_all(&mut results, &all, &e.to_string());
            return results;
        }
    };
    let mut going = Vec::new();
    let mut waits = Vec::new();
    let mut hosts_seen = std::collections::BTreeSet::new();
    for (index, settled) in group.into_iter().enumerate() {
        if settled.as_ref().is_ok_and(|s| !hosts_seen.insert(s.host.clone())) {
            continue;
        }
        match settled.and_then(|s| decide(srv, &mut shared, index, s)) {
            Ok(Decision::Go(g)) => going.push(*g),
            Ok(Decision::Done(o)) => results[index] = Some(Err(o)),
            Ok(Decision::Waits(o)) => {
                results[index] = Some(Err(o));
                waits.push(index);
            }
            Err(o) => results[index] = Some(Err(o)),
        }
    }
    phases.done("check");
    let deciding: Vec<usize> = going.iter().map(|g| g.index).chain(waits.iter().copied()).collect();
    // First in the batch, renamed before any of BackupPC's files: the
    // tokens' uses (a token is never good for more enrollments than it
    // allows, even after a crash), and the registry with each new host
    // `enrolling` and each request waiting for an admin.
    let mut first = atomic::Batch::new();
    let staged_first = (|| -> std::io::Result<()> {
        if let Some(tokens) = shared.tokens.as_ref().filter(|_| shared.tokens_changed) {
            tokens.stage(&mut first, &cfg.tokens, srv.file(0o600))?;
        }
        if shared.reg_changed {
            shared.reg.version = 1;
            shared.reg.stage(&mut first, &cfg.registry, srv.file(0o640))?;
        }
        Ok(())
    })();
    if let Err(e) = staged_first {
        fail_all(&mut results, &deciding, &e.to_string());
        return results;
    }
    sweep(srv);
    let original_known_hosts = shared.known_hosts.clone();
    let mut staged = Vec::new();
    let mut failed: Vec<(Going, Outcome)> = Vec::new();
    for g in going {
        match host_files(srv, &g) {
            Ok(files) => {
                let host = g.s.host.clone();
                if !g.s.hello.hostkeys.is_empty() {
                    shared.known_hosts = known_hosts::replace(&shared.known_hosts, &host, &g.s.hello.hostkeys);
                }
                let entry = record(&host, &g.s.request, g.s.ip, &files.fingerprint, &g.s.hello, "enrolled");
                shared.reg.hosts.insert(host.clone(), entry);
                shared.reg.requests.remove(&host);
                staged.push(Staged { going: g, files });
            }
            Err(o) => failed.push((g, o)),
        }
    }
    phases.done("stage");
    let committed = if staged.is_empty() && first.is_empty() {
        Ok(())
    } else {
        commit_group(srv, &mut shared, &original_known_hosts, first, &mut staged)
    };
    let mut written = Vec::new();
    match committed {
        Ok(()) => written = staged,
        Err(e) => {
            fail_all(&mut results, &waits, &e.to_string());
            failed.extend(staged.into_iter().map(|st| (st.going, Outcome::Failed(e.to_string()))));
        }
    }

    // pc/HOST.pl no longer names a previous key: it can go.
    let mut removed_previous = false;
    let mut kept = Vec::new();
    for st in written {
        if st.files.keep_previous {
            kept.push(st);
            continue;
        }
        match std::fs::remove_file(srv.previous_key_path(&st.going.s.host)) {
            Ok(()) => removed_previous = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                failed.push((st.going, e.into()));
                continue;
            }
        }
        kept.push(st);
    }
    let mut written = kept;
    if removed_previous {
        if let Err(e) = atomic::sync_dir(&srv.key_dir()) {
            failed.extend(written.drain(..).map(|st| (st.going, Outcome::Failed(e.to_string()))));
        }
    }

    phases.done("commit");
    let entries: Vec<(&str, &str, bool)> = written
        .iter()
        .map(|st| (st.going.s.host.as_str(), st.going.s.request.logon.as_str(), cfg.allow_reassign || st.going.adopted))
        .collect();
    let registered =
        if entries.is_empty() { Ok(Vec::new()) } else { srv.hosts().register_all(&entries).map(|(_, each)| each) };
    drop(entries);
    match registered {
        Ok(outcomes) => {
            for (st, outcome) in written.into_iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        let index = st.going.index;
                        results[index] = Some(Ok(accepted(srv, audit, st, size)));
                    }
                    Err(e) => failed.push((st.going, refused(e))),
                }
            }
        }
        Err(HostsWriteError::Policy(e)) => {
            failed.extend(written.into_iter().map(|st| (st.going, refused(&e))));
        }
        Err(e) => failed.extend(written.into_iter().map(|st| (st.going, Outcome::Failed(e.to_string())))),
    }
    phases.done("hosts");
    undo_failed(srv, &failed);
    for (g, o) in failed {
        results[g.index] = Some(Err(o));
    }
    results
}

impl Shared {
    fn load(srv: &Server) -> anyhow::Result<Shared> {
        let cfg = srv.cfg;
        Ok(Shared {
            reg: Registry::load(&cfg.registry)?,
            reg_changed: false,
            hosts_text: srv.hosts().read()?,
            known_hosts: String::from_utf8_lossy(&atomic::read_or_empty(&srv.known_hosts())?).into_owned(),
            tokens: match cfg.mode {
                Mode::Token => Some(TokenStore::load(&cfg.tokens)?),
                _ => None,
            },
            tokens_changed: false,
        })
    }
}

/// The checks of one enrollment under the lock, against the group's
/// files as they stand; changes only `shared`, in memory.
fn decide(srv: &Server, shared: &mut Shared, index: usize, s: Settled) -> Result<Decision, Outcome> {
    let cfg = srv.cfg;
    let host = s.host.clone();
    let reg = &mut shared.reg;
    let current = hosts::find(&shared.hosts_text, &host);
    let entry = reg.hosts.get(&host).cloned();
    let waiting = reg.requests.get(&host).cloned();
    if entry.as_ref().is_some_and(|e| e.state == "revoked") {
        return Ok(Decision::Done(refused(format!(
            "host {host} was revoked by the backup administrator; ask them to clear it (forced-command clear {host})"
        ))));
    }
    if waiting.as_ref().is_some_and(|e| e.state == "denied") {
        return Ok(Decision::Done(refused(format!("the enrollment of {host} was denied by the backup administrator"))));
    }
    // What the admin set up by hand is the admin's: the toolkit rewrites
    // only what it wrote, or what the admin handed over (`adopt`).
    let owned = reg.owns(&host);
    if !owned {
        let found = srv.hand_made_in(&host, current.is_some(), &shared.known_hosts);
        if !found.is_empty() {
            return Ok(Decision::Done(refused(format!(
                "host {host} is already set up in BackupPC by hand ({}), not by this enrollment service; ask the backup administrator, who can hand it over with `forced-command adopt {host}`",
                found.join(", ")
            ))));
        }
    }
    let adopted = entry.as_ref().is_some_and(|e| e.state == "adopted");
    // An adopted host's line is the admin's hand-over: its user field does
    // not hold the host for anyone.
    let held = holder(current.filter(|_| !adopted).map(|e| e.user), entry.as_ref(), waiting.as_ref());
    if !cfg.allow_reassign {
        if let Some(why) = held.refusal(&host, &s.request.logon) {
            return Ok(Decision::Done(refused(why)));
        }
    }
    // The hosts line is written last; whether it may be is known now, so a
    // refusal comes before any file (or a token's use) changes.
    if let Err(e) = hosts::upsert(&shared.hosts_text, &host, &s.request.logon, cfg.allow_reassign || adopted) {
        return Ok(Decision::Done(refused(e)));
    }
    // Which key to answer: the host's keys as they are on disk decide,
    // so a crash at any point leaves a state the next call reads right.
    let keys = HostKeys::read(srv, &host);
    let plan = keys.plan(&s.hello);
    match cfg.mode {
        Mode::Open => {}
        Mode::Token => {
            // The same request retried (its answer was lost) counts no
            // further use; a new key beside one the workstation installed
            // is a new use.
            let retry = plan != KeyPlan::New { keep_current: true };
            let token_use = TokenUse::new(&host, &s.request.logon, host_key_fingerprints(&s.hello));
            let store = shared.tokens.as_mut().ok_or_else(|| Outcome::Failed("the tokens were not read".into()))?;
            let accepted = match store.check_hashed(s.token_hash.as_deref(), &token_use, retry, now()) {
                Ok(a) => a,
                Err(e) => return Ok(Decision::Done(refused(e))),
            };
            if !accepted.repeat {
                store.consume(accepted, token_use);
                shared.tokens_changed = true;
            }
        }
        Mode::Approve => {
            // A request never overwrites a live host's entry: it waits in
            // `requests`, tied to the host keys the admin is shown.
            let asking = record(&host, &s.request, s.ip, "", &s.hello, "pending");
            match policy::approval(entry.as_ref(), waiting.as_ref(), &asking) {
                Approval::Proceed => {}
                Approval::Refuse(why) => return Ok(Decision::Done(refused(why))),
                Approval::StillWaiting => return Ok(Decision::Done(Outcome::Pending(host, None))),
                Approval::Wait(note) => {
                    reg.requests.insert(host.clone(), asking);
                    shared.reg_changed = true;
                    return Ok(Decision::Waits(Outcome::Pending(host, note)));
                }
            }
        }
    }
    // Recorded before the first BackupPC file is written, so that after a
    // crash midway the files are known to be the toolkit's and a re-run
    // finishes the job.
    let recorded = !owned || adopted;
    if recorded {
        reg.hosts.insert(host.clone(), record(&host, &s.request, s.ip, "", &s.hello, "enrolling"));
        shared.reg_changed = true;
    }
    Ok(Decision::Go(Box::new(Going { index, s, entry, adopted, recorded, plan, keys })))
}

/// Under the lock: remove what killed enrollments left of the hosts' own
/// files (temporary files nobody holds), one pass over each folder: the
/// toolkit's key folder, and BackupPC's per-host configs.
fn sweep(srv: &Server) {
    atomic::remove_stale_temps_of(&srv.key_dir(), |_| true);
    atomic::remove_stale_temps_of(&srv.cfg.backuppc_conf_dir.join("pc"), |name| name.ends_with(".pl"));
}

/// One write of everything the group's enrollments staged, after `first`;
/// `shared`'s registry is staged with them, known_hosts when it changed.
fn commit_group(
    srv: &Server,
    shared: &mut Shared,
    original_known_hosts: &str,
    first: atomic::Batch,
    staged: &mut [Staged],
) -> std::io::Result<()> {
    let cfg = srv.cfg;
    let mut batch = first;
    if staged.is_empty() {
        return batch.commit();
    }
    for st in staged.iter_mut() {
        batch.append(std::mem::take(&mut st.files.early));
    }
    if shared.known_hosts != original_known_hosts {
        let kh = srv.known_hosts();
        batch.add(&kh, shared.known_hosts.as_bytes(), Ownership::of_existing_or(&kh, srv.file(0o644)))?;
    }
    shared.reg.version = 1;
    shared.reg.stage(&mut batch, &cfg.registry, srv.file(0o640))?;
    for st in staged.iter_mut() {
        batch.append(std::mem::take(&mut st.files.late));
    }
    batch.commit()
}

/// Under the lock: `g`'s own files as staged before the lock, when they
/// were made from the host's files as they are now; else staged now.
fn host_files(srv: &Server, g: &Going) -> Result<HostBatch, Outcome> {
    if let Some(pre) = g.s.prestaged.as_ref().filter(|p| p.basis == basis(srv, &g.s.host, &g.keys)) {
        // Only this host's own files, wherever the proposal says they go.
        let host = &g.s.host;
        let own = [srv.previous_key_path(host), srv.per_host_config(host), srv.key_path(host), srv.pub_key_path(host)];
        let adopt = |files: &[(std::path::PathBuf, std::path::PathBuf)]| -> std::io::Result<atomic::Batch> {
            let mut batch = atomic::Batch::new();
            for (tmp, path) in files {
                if !own.contains(path) {
                    return Err(std::io::Error::other(format!("{} is not one of {host}'s files", path.display())));
                }
                batch.add_prestaged(tmp, path)?;
            }
            Ok(batch)
        };
        // One that cannot be taken over (its writer's clean-up was
        // first) is staged again.
        if let (Ok(early), Ok(late)) = (adopt(&pre.early), adopt(&pre.late)) {
            return Ok(HostBatch {
                early,
                late,
                public: pre.public.clone(),
                fingerprint: pre.fingerprint.clone(),
                keep_previous: pre.keep_previous,
                per_host: pre.basis.per_host.clone(),
            });
        }
    }
    let made;
    let fresh = match &g.s.fresh {
        Some(k) => k,
        None => {
            made = FreshKey::generate(&g.s.host)?;
            &made
        }
    };
    stage_host(srv, &g.s, g.plan, &g.keys, fresh)
}

/// An enrollment's own files staged: its keys and pc/HOST.pl, from the
/// host's `keys` and the key `plan`, with `fresh` as the new key.
///
/// A refusal or failure here leaves the host's working key as it was.
fn stage_host(
    srv: &Server,
    s: &Settled,
    plan: KeyPlan,
    keys: &HostKeys,
    fresh: &FreshKey,
) -> Result<HostBatch, Outcome> {
    let cfg = srv.cfg;
    let (host, request, hello) = (&s.host, &s.request, &s.hello);
    let client_user = hello.user.clone().unwrap_or_else(|| cfg.client_user.clone());
    let client_port = hello.port.unwrap_or(22);
    srv.ensure_dir(&srv.ssh_dir, srv.file(0o700))?;
    srv.ensure_dir(&srv.key_dir(), srv.file(0o700))?;
    let key_path = srv.key_path(host);
    let previous_path = srv.previous_key_path(host);
    // What killed runs left in these folders is removed by each leader
    // (see `sweep`), in one pass. `HOST.key.new`: where earlier builds
    // staged a new key.
    let _ = std::fs::remove_file(srv.key_dir().join(format!("{host}.key.new")));

    let mut early = atomic::Batch::new();
    let mut late = atomic::Batch::new();
    let (public, fingerprint, new_key, keep_previous) = match (plan, keys.current.as_ref()) {
        (KeyPlan::Same { keep_previous }, Some(current)) => {
            (current.public.clone(), current.fingerprint.clone(), false, keep_previous && keys.previous.is_some())
        }
        (KeyPlan::New { keep_current }, current) => {
            let keep = match current.filter(|_| keep_current) {
                Some(current) => {
                    early.add_swept(&previous_path, &current.bytes, srv.file(0o600))?;
                    true
                }
                None => false,
            };
            (fresh.public.clone(), fresh.fingerprint.clone(), true, keep)
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
        shares: s.shares.clone(),
        dumps: hello.accepts.iter().any(|a| a == backuppc_enroll::dumps::TRIGGER),
    };
    let pl = srv.per_host_config(host);
    // A re-enrollment keeps what the host's user saved in the web
    // interface: only the toolkit's own settings are replaced.
    let read = std::fs::read(&pl);
    let per_host_read = per_host_state(&read);
    let per_host_text = match read {
        Ok(bytes) => {
            let existing = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("cannot read {}: it is not UTF-8 text", pl.display()))?;
            per_host.update(&existing).map_err(|e| anyhow::anyhow!("{}: {e}", pl.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => per_host.render(&timestamp()),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", pl.display()).into()),
    };
    early.add_swept(&pl, per_host_text.as_bytes(), Ownership::of_existing_or(&pl, srv.in_conf_dir(0o644)))?;
    if new_key {
        late.add_swept(&key_path, fresh.private.as_bytes(), srv.file(0o600))?;
        late.add_swept(&srv.pub_key_path(host), format!("{public}\n").as_bytes(), srv.file(0o644))?;
    }
    Ok(HostBatch { early, late, public, fingerprint, keep_previous, per_host: per_host_read })
}

/// The answer of an enrollment whose files are all written.
fn accepted(srv: &Server, audit: &Audit, st: Staged, group: usize) -> Success {
    let (g, cfg) = (&st.going, srv.cfg);
    audit.event(
        "accepted",
        json!({
            "client": g.s.ip.to_string(), "request": g.s.request.to_string(), "host": g.s.host,
            "protocol": g.s.hello.protocol, "host_keys": g.s.hello.hostkeys.len(),
            "key": st.files.fingerprint, "key_plan": format!("{:?}", g.plan), "previous_key_kept": st.files.keep_previous,
            "group": group,
        }),
    );
    Success {
        key: st.files.public.trim_end().to_string(),
        url: cfg.url_for(&g.s.host, &g.s.request.logon),
        host: Some(g.s.host.clone()),
        from: Some(g.s.from.clone()),
        shares: g.s.shares.clone(),
    }
}

/// After failures: a host none of whose BackupPC files was written leaves
/// no trace in the registry either; an adopted host stays adopted. (A
/// `pc` folder made for files never written is removed by the
/// enrollment that made it, once it has its answer.)
fn undo_failed(srv: &Server, failed: &[(Going, Outcome)]) {
    let cfg = srv.cfg;
    if !failed.iter().any(|(g, _)| g.recorded) {
        return;
    }
    // The registry as the failed write left it.
    let Ok(mut reg) = Registry::load(&cfg.registry) else { return };
    let mut changed = false;
    let hosts_text = srv.hosts().read();
    for (g, _) in failed.iter().filter(|(g, _)| g.recorded) {
        let host = &g.s.host;
        let untouched = hosts_text
            .as_ref()
            .ok()
            .and_then(|h| srv.hand_made(host, hosts::find(h, host).is_some()).ok())
            .is_some_and(|found| found.is_empty());
        match &g.entry {
            Some(previous) if g.adopted => {
                reg.hosts.insert(host.clone(), previous.clone());
                changed = true;
            }
            None if untouched => {
                changed |= reg.hosts.remove(host).is_some();
            }
            _ => {}
        }
    }
    if changed {
        let _ = reg.save(&cfg.registry, srv.file(0o640));
    }
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

impl HostKeys {
    fn read(srv: &Server, host: &str) -> HostKeys {
        HostKeys {
            current: InstalledKey::read(&srv.key_path(host)),
            previous: InstalledKey::read(&srv.previous_key_path(host)),
        }
    }

    /// These keys with pc/HOST.pl's state (see [`per_host_state`]).
    fn basis(&self, per_host: String) -> Basis {
        Basis {
            current: self.current.as_ref().map(|k| k.fingerprint.clone()),
            previous: self.previous.as_ref().map(|k| k.fingerprint.clone()),
            per_host,
        }
    }

    /// Which key to answer: the host's keys as they are on disk decide,
    /// so a crash at any point leaves a state the next call reads right.
    fn plan(&self, hello: &Hello) -> KeyPlan {
        key_plan(
            self.current.as_ref().map(|k| k.fingerprint.as_str()),
            self.previous.as_ref().map(|k| k.fingerprint.as_str()),
            hello.installed_key.as_deref(),
            hello.finish_rekey,
        )
    }
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

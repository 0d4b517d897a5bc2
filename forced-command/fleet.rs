//! `forced-command fleet`: the command-line side of fleet operations. It
//! finds the targets (registry, `--hosts`), reads how BackupPC reaches
//! each one, runs the sessions on a bounded pool of threads, shows each
//! host as it finishes (a progress bar on a terminal, plain lines
//! otherwise), then the folded report, the counts and the retry file.

use crate::cli::{FleetArgs, FleetCmd};
use crate::fleet_job::JobRun;
use crate::server::Server;
use anyhow::{bail, Context, Result};
use backuppc_enroll::backuppc::backups;
use backuppc_enroll::config::ServerConfig;
use backuppc_enroll::fleet::health::{self, HostHealth};
use backuppc_enroll::fleet::report::{self, HostResult, Outcome, EXIT_ERROR};
use backuppc_enroll::fleet::selection::{self, Selected};
use backuppc_enroll::fleet::session::{self, Limits};
use backuppc_enroll::fleet::target::{self, Defaults, SshTarget};
use backuppc_enroll::fleet::trust::{self, Pinned};
use backuppc_enroll::log::{timestamp, Audit};
use backuppc_enroll::store::atomic::{self, Ownership};
use backuppc_enroll::store::registry::Registry;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub fn run(op: FleetCmd, config: &Path) -> ExitCode {
    backuppc_enroll::restore_sigpipe();
    match run_op(op, config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("forced-command: fleet: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// A host's work: a session to run, or a result known without one.
enum Work {
    Session(SshTarget, Arc<Pinned>),
    Known(HostResult),
}

fn run_op(op: FleetCmd, config: &Path) -> Result<u8> {
    let mut job = None;
    let (name, command, args, report) = match op {
        FleetCmd::Check(a) => ("check", "true", a, None),
        FleetCmd::Status(a) => ("status", "status", a, None),
        FleetCmd::Report(r) => {
            let outputs = crate::fleet_html::Outputs::new(r.html, &r.mail_to)?;
            ("report", "status", r.fleet, Some((r.max_age, r.top_dir, outputs)))
        }
        FleetCmd::Job(j) => {
            job = Some((j.name, j.out, j.max_answer));
            ("job", "", j.fleet, None)
        }
        FleetCmd::RotateKey(a) => ("rotate-key", crate::fleet_rotate::OPERATION, a, None),
    };
    let cfg = ServerConfig::load(config)?;
    let srv = Server::open(&cfg).map_err(anyhow::Error::msg)?;
    let euid = nix::unistd::geteuid();
    if !euid.is_root() && euid.as_raw() != srv.uid {
        bail!("run fleet as root or as {} (uid {}): it reads the per-host private keys", cfg.backuppc_user, srv.uid);
    }
    let reg = Registry::load(&cfg.registry)?;
    let names = match args.hosts.as_deref() {
        None => None,
        Some(spec) => Some(match spec.strip_prefix('@') {
            Some(file) => selection::parse_file(
                &std::fs::read_to_string(file).with_context(|| format!("cannot read the host file {file}"))?,
            ),
            None => selection::parse_list(spec),
        }),
    };
    // A job's answers are the workstations' words, and a rotation writes
    // key files, pc/HOST.pl, the registry and their locks: all in folders
    // the BackupPC account can change, where root must not write (a
    // swapped folder or a planted symlink would lead root's writes
    // anywhere). Run as root, these go on as that account (before any
    // thread); nothing in them needs more.
    if (job.is_some() || name == "rotate-key") && euid.is_root() {
        become_account(srv.uid, srv.gid)
            .with_context(|| format!("cannot become the BackupPC account {} for fleet {name}", cfg.backuppc_user))?;
    }
    let job = job.map(|(n, out, max)| JobRun::start(&n, out.as_deref(), max, &cfg)).transpose()?;
    let selected = selection::select(names, reg.hosts.keys().map(String::as_str), |h| {
        reg.hosts.get(h).or_else(|| reg.requests.get(h)).map(|e| e.state.as_str())
    });
    let _one_rotation = (name == "rotate-key").then(|| crate::fleet_rotate::lock(&srv)).transpose()?;
    let work = plan(&srv, &selected);
    let limits =
        Limits { connect: Duration::from_secs_f64(args.connect_timeout), total: Duration::from_secs_f64(args.timeout) };
    let started = Instant::now();
    // The report's lines come after the join with BackupPC's view.
    let run_host = |t: &SshTarget, p: &Pinned| match (&job, command) {
        (Some(j), _) => j.host(t, p, limits),
        (None, crate::fleet_rotate::OPERATION) => crate::fleet_rotate::rotate(&srv, t, p, limits),
        (None, _) => session::run(t, p, command, limits),
    };
    let results = run_all(work, &run_host, &args, report.is_none());
    let collected = job.as_ref().map(|j| j.finish(&results)).transpose()?;
    let elapsed = started.elapsed();
    if let Some((max_age, top_dir, outputs)) = report {
        return write_report(&results, max_age, &top_dir, &outputs, &args, elapsed, &srv);
    }

    let retry_path = args.retry_file.clone().unwrap_or_else(|| default_retry_file(&cfg.registry));
    let retry_text = report::retry_file(name, &timestamp(), &results);
    let retry_written =
        atomic::write(&retry_path, retry_text.as_bytes(), Ownership::of_existing_or(&retry_path, srv.file(0o644)));
    let code = report::exit_status(&results);
    let mut out = std::io::stdout().lock();
    if args.json {
        let shown = retry_written.is_ok().then(|| retry_path.display().to_string());
        let mut summary = report::summary_json(name, &results, elapsed, shown.as_deref());
        if let Some(c) = &collected {
            summary["summary"]["run_dir"] = json!(c.run_dir);
            summary["summary"]["archive"] = json!(c.archive);
        }
        writeln!(out, "{summary}")?;
    } else {
        write!(out, "{}", report::render(&results))?;
        if let Some(c) = &collected {
            writeln!(out, "results: {} and {}", c.run_dir.display(), c.archive.display())?;
        }
        if retry_written.is_ok() {
            let n = report::retry_hosts(&results).len();
            writeln!(out, "retry file: {} ({n} host{})", retry_path.display(), if n == 1 { "" } else { "s" })?;
        }
    }
    out.flush()?;
    if let Err(e) = retry_written {
        eprintln!("forced-command: fleet: cannot write the retry file {}: {e}", retry_path.display());
    }
    let audit = Audit::new(c"forced-command", cfg.audit_log.clone());
    let counts: serde_json::Map<String, serde_json::Value> =
        report::counts(&results).into_iter().map(|(o, n)| (o.as_str().to_string(), json!(n))).collect();
    audit.event(
        "fleet",
        json!({ "operation": name, "hosts": results.len(), "counts": counts, "elapsed_ms": elapsed.as_millis() as u64 }),
    );
    Ok(code)
}

/// Drop every privilege for good: no supplementary groups, then the
/// group, then the user; checked afterwards.
fn become_account(uid: u32, gid: u32) -> Result<()> {
    use nix::unistd::{getegid, geteuid, getgid, getuid, setgid, setgroups, setuid, Gid, Uid};
    setgroups(&[Gid::from_raw(gid)])?;
    setgid(Gid::from_raw(gid))?;
    setuid(Uid::from_raw(uid))?;
    if getuid().as_raw() != uid || geteuid().as_raw() != uid || getgid().as_raw() != gid || getegid().as_raw() != gid {
        bail!("the ids did not change");
    }
    if setuid(Uid::from_raw(0)).is_ok() {
        bail!("root could be taken back");
    }
    Ok(())
}

/// `fleet report`: each host's answer joined with its `backups` file,
/// worst first; the retry file names the hosts that are not healthy.
fn write_report(
    results: &[HostResult],
    max_age: u64,
    top_dir: &Path,
    outputs: &crate::fleet_html::Outputs,
    args: &FleetArgs,
    elapsed: Duration,
    srv: &Server,
) -> Result<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let pc = top_dir.join("pc");
    let mut hosts: Vec<HostHealth> = results
        .iter()
        .map(|r| {
            let rows = match r.outcome {
                Outcome::UnknownHost => Err("not a host of this server".to_string()),
                _ => backups::read(&pc, &r.host).map_err(|e| e.to_string()),
            };
            HostHealth::new(r.clone(), rows, now, max_age)
        })
        .collect();
    health::sort(&mut hosts);
    let unhealthy: Vec<HostResult> = hosts
        .iter()
        .filter(|h| !h.healthy())
        .map(|h| HostResult {
            outcome: if h.reach.outcome == Outcome::Ok { Outcome::Failed } else { h.reach.outcome },
            ..h.reach.clone()
        })
        .collect();
    let retry_path = args.retry_file.clone().unwrap_or_else(|| default_retry_file(&srv.cfg.registry));
    let retry_text = report::retry_file("report", &timestamp(), &unhealthy);
    let retry_written =
        atomic::write(&retry_path, retry_text.as_bytes(), Ownership::of_existing_or(&retry_path, srv.file(0o644)));
    let mut out = std::io::stdout().lock();
    let (healthy, stale) = health::counts(&hosts);
    if args.json {
        for h in &hosts {
            writeln!(out, "{}", h.json())?;
        }
        let mut summary = report::summary_json("report", results, elapsed, None);
        summary["summary"]["healthy"] = json!(healthy);
        summary["summary"]["backups_stale_or_failing"] = json!(stale);
        summary["summary"]["max_age_hours"] = json!(max_age);
        if retry_written.is_ok() {
            summary["summary"]["retry_file"] = json!(retry_path.display().to_string());
        }
        writeln!(out, "{summary}")?;
    } else {
        write!(out, "{}", health::render(&hosts, max_age))?;
        if retry_written.is_ok() {
            writeln!(out, "retry file: {} ({} host(s))", retry_path.display(), unhealthy.len())?;
        }
    }
    out.flush()?;
    if let Err(e) = retry_written {
        eprintln!("forced-command: fleet: cannot write the retry file {}: {e}", retry_path.display());
    }
    let run = backuppc_enroll::fleet::html::Run { max_age_hours: max_age, now, elapsed };
    if !outputs.deliver(&hosts, run, &health::render(&hosts, max_age)) {
        return Ok(EXIT_ERROR);
    }
    Ok(health::exit_status(&hosts))
}

fn default_retry_file(registry: &Path) -> PathBuf {
    registry.parent().unwrap_or(Path::new(".")).join("fleet.retry")
}

/// How each selected host is reached, read before any connection: each
/// per-host config once, each known_hosts file once.
fn plan(srv: &Server, selected: &[Selected]) -> Vec<Work> {
    let mut known_hosts: HashMap<PathBuf, String> = HashMap::new();
    selected
        .iter()
        .map(|s| {
            let host = match s {
                Selected::Host(h) => h,
                Selected::Unknown { name, why } => {
                    return Work::Known(HostResult::new(name, Outcome::UnknownHost, Duration::ZERO, why.clone()))
                }
            };
            let not_set_up = |why: String| Work::Known(HostResult::new(host, Outcome::NotSetUp, Duration::ZERO, why));
            let pl = srv.per_host_config(host);
            let text = match std::fs::read_to_string(&pl) {
                Ok(t) => t,
                Err(e) => return not_set_up(format!("cannot read its per-host config {}: {e}", pl.display())),
            };
            let defaults =
                Defaults { user: srv.cfg.client_user.clone(), key: srv.key_path(host), known_hosts: srv.known_hosts() };
            let t = match target::from_per_host_config(host, &text, &defaults) {
                Ok(t) => t,
                Err(e) => return not_set_up(format!("{}: {e}", pl.display())),
            };
            let kh = known_hosts
                .entry(t.known_hosts.clone())
                .or_insert_with(|| std::fs::read_to_string(&t.known_hosts).unwrap_or_default());
            let pinned = Arc::new(trust::pinned(kh, &t.alias));
            Work::Session(t, pinned)
        })
        .collect()
}

/// Run every host's work on `parallel` threads; show each result as it
/// comes; return them all, in the order of the selection.
/// `stream`: print each result as it comes (JSON or a plain line);
/// otherwise only the progress bar shows.
fn run_all(
    work: Vec<Work>,
    run_host: &(dyn Fn(&SshTarget, &Pinned) -> HostResult + Sync),
    args: &FleetArgs,
    stream: bool,
) -> Vec<HostResult> {
    let total = work.len();
    let threads = (args.parallel as usize).min(total.max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, HostResult)>();
    // A bar for a person at a terminal; plain lines (or JSON) for a pipe.
    let terminal = if args.json { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
    let bar = terminal.then(|| {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} hosts, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    let mut results: Vec<Option<HostResult>> = vec![None; total];
    let work = &work;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(w) = work.get(i) else { break };
                let r = match w {
                    Work::Known(r) => r.clone(),
                    Work::Session(t, pinned) => run_host(t, pinned),
                };
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut finished = 0;
        let mut problems = 0;
        let mut out = std::io::stdout();
        for (i, r) in rx {
            finished += 1;
            if r.outcome != Outcome::Ok {
                problems += 1;
            }
            if args.json && stream {
                let _ = writeln!(out, "{}", r.json());
            }
            match &bar {
                Some(b) => {
                    if r.outcome != Outcome::Ok && !args.json {
                        b.println(r.line(finished));
                    }
                    b.set_message(format!("{problems} not ok"));
                    b.inc(1);
                }
                None if !args.json && stream => {
                    let _ = writeln!(out, "{}", r.line(finished));
                }
                None => {}
            }
            results[i] = Some(r);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    results.into_iter().flatten().collect()
}

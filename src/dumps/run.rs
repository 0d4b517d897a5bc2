//! Taking the declared dumps, as root: each tool runs as its configured
//! account (supplementary groups dropped, then the group, then the user),
//! with a cleared environment, stdin from /dev/null, in a session of its
//! own (no terminal; the whole process group is killed on a timeout or
//! when the output grows past its limit). Its stdout goes to a temporary
//! file created exclusively in the output folder, which is fsynced and
//! renamed into place only when the tool succeeded; the folder is fsynced
//! and a status file written beside it atomically. A failed run leaves the
//! previous dump in place and says so in the status file. The output
//! folder is opened once and locked (flock) for the whole run, so two runs
//! at once take turns; everything goes through its descriptor.

use super::{check_root_owned, Dump, FileStatus, Kind, OnFailure, Status};
use nix::fcntl::{open, openat, renameat, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::sys::stat::{fstat, Mode};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{unlinkat, Pid, UnlinkatFlags, User};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// What one run of a dump gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub on_failure: OnFailure,
    pub status: Status,
}

impl Outcome {
    /// One line for a person or BackupPC's log.
    pub fn line(&self) -> String {
        let s = &self.status;
        if s.ok {
            format!(
                "dump {}: ok, {} bytes, sha256 {}",
                self.name,
                s.size.unwrap_or(0),
                s.sha256.as_deref().unwrap_or("-")
            )
        } else {
            let kept = if s.files.is_empty() { "no previous dump" } else { "the previous dump is kept" };
            format!("dump {} failed: {} ({kept})", self.name, s.error.as_deref().unwrap_or("unknown error"))
        }
    }

    /// Whether this outcome fails the backup.
    pub fn fails_backup(&self) -> bool {
        !self.status.ok && self.on_failure == OnFailure::Fail
    }
}

/// Run `dumps` one after the other (their order in the folder), each
/// whatever became of the ones before.
pub fn run_all(dumps: &[Dump]) -> Vec<Outcome> {
    dumps.iter().map(run_one).collect()
}

/// Run one dump and write its status file. The output folder is opened
/// once, checked through its descriptor, and everything (the previous
/// status, the dump, the new status) goes through that descriptor: the
/// folder's parent may be the application's, whose account could rename
/// the folder and put a symlink in its place while the dump runs.
pub fn run_one(d: &Dump) -> Outcome {
    let start = crate::log::timestamp();
    let dir = match open_output(&d.output) {
        Ok(dir) => dir,
        Err(reason) => {
            let end = crate::log::timestamp();
            let status = Status {
                name: d.name.clone(),
                kind: d.kind.name().into(),
                ok: false,
                start,
                end,
                exit_status: None,
                size: None,
                sha256: None,
                tool_version: None,
                files: vec![],
                error: Some(format!("{reason}; no status file written")),
                last_success: None,
            };
            return Outcome { name: d.name.clone(), on_failure: d.on_failure, status };
        }
    };
    if let Err(reason) = lock_output(&dir, Duration::from_secs(d.timeout), &d.output) {
        let end = crate::log::timestamp();
        let mut status = read_status_at(&dir, &d.name).ok().flatten().unwrap_or_else(|| Status {
            name: d.name.clone(),
            kind: d.kind.name().into(),
            ok: false,
            start: start.clone(),
            end: end.clone(),
            exit_status: None,
            size: None,
            sha256: None,
            tool_version: None,
            files: vec![],
            error: None,
            last_success: None,
        });
        // What this run reports; the status file is the other run's.
        (status.ok, status.start, status.end, status.exit_status) = (false, start, end, None);
        status.error = Some(reason);
        return Outcome { name: d.name.clone(), on_failure: d.on_failure, status };
    }
    remove_stale_temps(&dir, d);
    let previous = read_status_at(&dir, &d.name).ok().flatten();
    let result = take(d, &dir);
    let end = crate::log::timestamp();
    let mut status = match result {
        Ok(t) => Status {
            name: d.name.clone(),
            kind: d.kind.name().into(),
            ok: true,
            start,
            exit_status: Some(0),
            size: t.files.first().map(|f| f.size),
            sha256: t.files.first().map(|f| f.sha256.clone()),
            tool_version: t.tool_version,
            files: t.files,
            error: None,
            last_success: Some(end.clone()),
            end,
        },
        Err(f) => {
            let prev = previous.filter(|p| !p.files.is_empty());
            Status {
                name: d.name.clone(),
                kind: d.kind.name().into(),
                ok: false,
                start,
                end,
                exit_status: f.exit_status,
                size: prev.as_ref().and_then(|p| p.size),
                sha256: prev.as_ref().and_then(|p| p.sha256.clone()),
                tool_version: f.tool_version,
                files: prev.as_ref().map(|p| p.files.clone()).unwrap_or_default(),
                error: Some(f.reason),
                last_success: prev.and_then(|p| p.last_success),
            }
        }
    };
    let json = serde_json::to_vec_pretty(&status).unwrap_or_default();
    if let Err(e) = write_status_at(&dir, &d.name, &json, &d.output) {
        let why = format!("cannot write the status file {}: {e}", d.status_file().display());
        status.ok = false;
        status.error = Some(match status.error.take() {
            Some(first) => format!("{first}; {why}"),
            None => why,
        });
    }
    Outcome { name: d.name.clone(), on_failure: d.on_failure, status }
}

struct Taken {
    files: Vec<FileStatus>,
    tool_version: Option<String>,
}

#[derive(Debug)]
struct Failure {
    reason: String,
    exit_status: Option<i32>,
    tool_version: Option<String>,
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure { reason, exit_status: None, tool_version: None }
    }
}

/// One output of a dump: the program and its final file name.
struct Step {
    argv: Vec<String>,
    file: String,
}

fn take(d: &Dump, dir: &OwnedFd) -> Result<Taken, Failure> {
    let (user, steps, version_argv) = match &d.kind {
        Kind::Postgresql { os_user, database, host, port, bin_dir, globals } => {
            let pg_dump = check_root_owned("the program", &bin_dir.join("pg_dump")).map_err(|e| e.0)?;
            let mut conn = vec!["--no-password".to_string()];
            conn.extend(host.iter().map(|h| format!("--host={h}")));
            conn.extend(port.iter().map(|p| format!("--port={p}")));
            let mut main = vec![pg_dump.display().to_string(), "--format=custom".into()];
            main.extend(conn.iter().cloned());
            main.push(format!("--dbname={database}"));
            let mut steps = vec![Step { argv: main, file: file_name(&d.file()) }];
            if *globals {
                let all = check_root_owned("the program", &bin_dir.join("pg_dumpall")).map_err(|e| e.0)?;
                let mut argv = vec![all.display().to_string(), "--globals-only".into()];
                argv.extend(conn);
                steps.push(Step { argv, file: file_name(&d.globals_file().unwrap_or_default()) });
            }
            (os_user, steps, Some(vec![pg_dump.display().to_string(), "--version".into()]))
        }
        Kind::Command { argv, user } => {
            let program = check_root_owned("the program", Path::new(&argv[0])).map_err(|e| e.0)?;
            let mut run = vec![program.display().to_string()];
            run.extend(argv[1..].iter().cloned());
            (user, vec![Step { argv: run, file: file_name(&d.file()) }], None)
        }
    };
    let account = User::from_name(user)
        .map_err(|e| format!("cannot look up the account {user}: {e}"))?
        .ok_or_else(|| format!("the account {user} does not exist: create it or fix the dump's user"))?;
    let tool_version = match version_argv {
        Some(argv) => {
            let ran = run_bounded(&argv, &account, None, Duration::from_secs(30), 1 << 16)?;
            Some(String::from_utf8_lossy(&ran.stdout).lines().next().unwrap_or("").trim().to_string())
        }
        None => None,
    };
    let fail =
        |reason: String, exit_status: Option<i32>| Failure { reason, exit_status, tool_version: tool_version.clone() };
    let mut done: Vec<(String, String, FileStatus)> = Vec::new();
    let mut result = Ok(());
    for step in &steps {
        let tmp = temp_name(&step.file);
        let file = match create_exclusive(dir, &tmp, &d.output) {
            Ok(f) => f,
            Err(r) => {
                result = Err(fail(r, None));
                break;
            }
        };
        let timeout = Duration::from_secs(d.timeout);
        match run_bounded(&step.argv, &account, Some(file), timeout, d.max_size) {
            Ok(ran) if ran.exit == Some(0) => {
                done.push((
                    tmp,
                    step.file.clone(),
                    FileStatus { file: step.file.clone(), size: ran.size, sha256: ran.sha256 },
                ));
            }
            Ok(ran) => {
                result = Err(fail(ran.reason(&step.argv[0]), ran.exit));
                let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
                break;
            }
            Err(r) => {
                result = Err(fail(r, None));
                let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
                break;
            }
        }
    }
    if let Err(f) = result {
        for (tmp, _, _) in &done {
            let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        return Err(f);
    }
    for (tmp, name, _) in &done {
        renameat(dir, tmp.as_str(), dir, name.as_str())
            .map_err(|e| fail(format!("cannot rename {tmp} to {name} in {}: {e}", d.output.display()), None))?;
    }
    nix::unistd::fsync(dir).map_err(|e| fail(format!("cannot sync {}: {e}", d.output.display()), None))?;
    Ok(Taken { files: done.into_iter().map(|(_, _, f)| f).collect(), tool_version })
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The largest status file read back (a real one is a few hundred bytes).
pub const STATUS_MAX: u64 = 1 << 20;

fn status_name(name: &str) -> String {
    format!("{name}.status.json")
}

/// The status of dump `name` as its folder `dir` holds it: None when there
/// is none yet or it is not a status file. Opened without following a
/// symlink and without blocking (a FIFO), a regular file only, at most
/// [`STATUS_MAX`] bytes: anything else is an error, never a wait.
pub fn read_status_at(dir: &OwnedFd, name: &str) -> Result<Option<Status>, String> {
    let file = status_name(name);
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let fd = match openat(dir, file.as_str(), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(nix::errno::Errno::ELOOP) => return Err(format!("{file} is a symlink, not a status file")),
        Err(e) => return Err(format!("cannot open {file}: {e}")),
    };
    let st = fstat(&fd).map_err(|e| format!("cannot check {file}: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(format!("{file} is not a regular file"));
    }
    if st.st_size as u64 > STATUS_MAX {
        return Err(format!("{file} is larger than {STATUS_MAX} bytes"));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(STATUS_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {file}: {e}"))?;
    if bytes.len() as u64 > STATUS_MAX {
        return Err(format!("{file} is larger than {STATUS_MAX} bytes"));
    }
    Ok(Status::parse(&bytes).ok())
}

/// The status of dump `d`, read through its checked output folder (for
/// `enroll dumps`): None when there is none or it cannot be read safely.
pub fn read_status(d: &Dump) -> Option<Status> {
    let dir = open_output(&d.output).ok()?;
    read_status_at(&dir, &d.name).ok().flatten()
}

/// Replace dump `name`'s status in `dir` with `json`: a temporary file
/// created exclusively in the folder, synced, renamed into place, and the
/// folder synced.
fn write_status_at(dir: &OwnedFd, name: &str, json: &[u8], shown: &Path) -> Result<(), String> {
    let file = status_name(name);
    let tmp = temp_name(&file);
    let mut f = create_exclusive(dir, &tmp, shown)?;
    let written = f.write_all(json).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(format!("cannot write {}: {e}", shown.join(&tmp).display()));
    }
    if let Err(e) = renameat(dir, tmp.as_str(), dir, file.as_str()) {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(format!("cannot rename {tmp} to {file} in {}: {e}", shown.display()));
    }
    nix::unistd::fsync(dir).map_err(|e| format!("cannot sync {}: {e}", shown.display()))
}

/// The output folder, opened without following a symlink and checked
/// through the descriptor: still the canonical folder that was checked,
/// root's alone, so nobody else can plant or swap a name in it.
fn open_output(output: &Path) -> Result<OwnedFd, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = open(output, flags, Mode::empty())
        .map_err(|e| format!("cannot open the output folder {}: {e}", output.display()))?;
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot check the opened {}: {e}", output.display()))?;
    if opened != output {
        return Err(format!("the output folder {} changed while it was being checked", output.display()));
    }
    let st = fstat(&fd).map_err(|e| format!("cannot check {}: {e}", output.display()))?;
    super::root_only("the output folder", output, super::Owner { uid: st.st_uid, mode: st.st_mode })
        .map_err(|e| e.0)?;
    Ok(fd)
}

/// A temporary name for `file` that no other run uses:
/// `.FILE.PID.N.tmp`.
fn temp_name(file: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!(".{file}.{}.{n}.tmp", std::process::id())
}

/// Whether `entry` is a temporary file of `file` as [`temp_name`] makes
/// them (or `.FILE.tmp`, as earlier versions did).
fn is_temp_of(entry: &str, file: &str) -> bool {
    let Some(rest) = entry.strip_prefix('.').and_then(|r| r.strip_prefix(file)) else { return false };
    if rest == ".tmp" {
        // The fixed name of earlier versions.
        return true;
    }
    let Some(mid) = rest.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) else { return false };
    let mut parts = mid.split('.');
    let digits = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// The output folder `dir` for this run alone: an exclusive flock on its
/// descriptor, held until the descriptor is closed (the end of
/// [`run_one`]). Another run of a dump in the same folder (run-dumps sent
/// twice, `enroll dump` during a backup) waits for it, up to `wait`.
fn lock_output(dir: &OwnedFd, wait: Duration, shown: &Path) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.raw_os_error() != Some(libc::EINTR) {
            return Err(format!("cannot lock the output folder {}: {e}", shown.display()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "another run of a dump in {} was still going after {} s: wait for it (see its status file) and run this one again",
                shown.display(),
                wait.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Remove what interrupted runs left of dump `d`'s files in `dir`; only
/// under [`lock_output`], so no running dump's file goes.
fn remove_stale_temps(dir: &OwnedFd, d: &Dump) {
    let mut files = vec![file_name(&d.file()), status_name(&d.name)];
    files.extend(d.globals_file().map(|g| file_name(&g)));
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if files.iter().any(|f| is_temp_of(&name, f)) {
            let _ = unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// A new file `name` in `dir`, created exclusively.
fn create_exclusive(dir: &OwnedFd, name: &str, shown: &Path) -> Result<std::fs::File, String> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("cannot create {}: {e}", shown.join(name).display()))?;
    Ok(std::fs::File::from(fd))
}

/// How a bounded run ended.
#[derive(Debug)]
pub struct Ran {
    /// Exit code; None when killed by a signal.
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub size: u64,
    pub sha256: String,
    /// stdout when it was kept in memory.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: Option<Duration>,
    pub too_big: Option<u64>,
    /// The output was still held open at the deadline (by a process the
    /// tool started outside its group); it was given up on.
    pub held_open: bool,
}

impl Ran {
    /// What went wrong, for a person: how the run ended and the last
    /// lines the tool wrote on stderr.
    pub fn reason(&self, program: &str) -> String {
        let tool = Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let said = String::from_utf8_lossy(&self.stderr);
        let said: Vec<&str> = said.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let tail = said.iter().rev().take(2).rev().cloned().collect::<Vec<_>>().join(" / ");
        let tail: String = crate::names::display_text(&tail).chars().take(400).collect();
        let what = if self.held_open {
            format!(
                "{tool} did not finish within {} s: a process it started in a session of its own kept its output open and was left running; find it with ps and stop it",
                self.timed_out.unwrap_or_default().as_secs()
            )
        } else if let Some(t) = self.timed_out {
            format!("{tool} did not finish within {} s and was killed", t.as_secs())
        } else if let Some(max) = self.too_big {
            format!("{tool}'s output grew past max_size ({max} bytes) and it was killed")
        } else if let Some(code) = self.exit {
            format!("{tool} exited with status {code}")
        } else {
            format!("{tool} was killed by signal {}", self.signal.unwrap_or(0))
        };
        if tail.is_empty() {
            what
        } else {
            format!("{what}: {tail}")
        }
    }
}

/// Run `argv` as `user` (see the module's paragraph), its stdout into
/// `out` (or memory), stopped after `timeout` or `max` bytes. Declared
/// jobs run the same way (`jobs::run`).
pub fn run_bounded(
    argv: &[String],
    user: &User,
    out: Option<std::fs::File>,
    timeout: Duration,
    max: u64,
) -> Result<Ran, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", PATH)
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .gid(user.gid.as_raw())
        .uid(user.uid.as_raw());
    crate::sys::new_session(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let pid = Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let too_big = Arc::new(AtomicBool::new(false));
    let flag = too_big.clone();
    // The readers hand back through channels, so that waiting for them
    // is bounded: a process the tool started in a session of its own
    // survives the group kill and may keep the pipes open forever.
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = read_tx.send(read_output(stdout, out, max, &flag));
    });
    std::thread::spawn(move || {
        let _ = err_tx.send(read_errors(stderr));
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = None;
    // Wait without reaping, so the process group id cannot be reused
    // before the group is killed.
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("cannot wait for {}: {e}", argv[0])),
        }
        if Instant::now() >= deadline {
            timed_out = Some(timeout);
            let _ = killpg(pid, Signal::SIGKILL);
        }
        if too_big.load(Ordering::SeqCst) {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Whatever the tool left behind in its group goes with it.
    let _ = killpg(pid, Signal::SIGKILL);
    let status = child.wait().map_err(|e| format!("cannot wait for {}: {e}", argv[0]))?;
    // The output ends when the last holder of the pipe is gone: wait for
    // that up to the deadline (a little longer after the kill), no more.
    let until = deadline.max(Instant::now() + Duration::from_secs(2));
    let left = || until.saturating_duration_since(Instant::now());
    let read = match read_rx.recv_timeout(left()) {
        Ok(r) => Some(r?),
        Err(_) => None,
    };
    let stderr = err_rx.recv_timeout(left().max(Duration::from_millis(200))).unwrap_or_default();
    let too_big = too_big.load(Ordering::SeqCst).then_some(max);
    let Some((size, sha256, stdout)) = read else {
        return Ok(Ran {
            exit: None,
            signal: status.signal(),
            size: 0,
            sha256: String::new(),
            stdout: Vec::new(),
            stderr,
            timed_out: Some(timeout),
            too_big,
            held_open: true,
        });
    };
    let exit = if timed_out.is_some() || too_big.is_some() { None } else { status.code() };
    Ok(Ran { exit, signal: status.signal(), size, sha256, stdout, stderr, timed_out, too_big, held_open: false })
}

/// Copy the tool's `stdout` into `out` (or memory), hashing it, until its
/// end or past `max` bytes (then `too_big` is set).
fn read_output(
    mut stdout: std::process::ChildStdout,
    out: Option<std::fs::File>,
    max: u64,
    flag: &AtomicBool,
) -> Result<(u64, String, Vec<u8>), String> {
    let mut out = out;
    let mut kept = Vec::new();
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read the dump's output: {e}")),
        };
        size += n as u64;
        if size > max {
            flag.store(true, Ordering::SeqCst);
            break;
        }
        hash.update(&buf[..n]);
        match out.as_mut() {
            Some(f) => f.write_all(&buf[..n]).map_err(|e| format!("cannot write the dump: {e}"))?,
            None => kept.extend_from_slice(&buf[..n]),
        }
    }
    if let Some(f) = out {
        f.sync_all().map_err(|e| format!("cannot sync the dump: {e}"))?;
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hex, kept))
}

/// The tool's stderr, its last few KiB kept.
fn read_errors(mut stderr: std::process::ChildStderr) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 16 << 10 {
            kept.drain(..kept.len() - (8 << 10));
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dumps::OnFailure;
    use std::path::PathBuf;
    use std::time::Instant;

    fn open_dir(p: &Path) -> OwnedFd {
        open(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    fn status(name: &str) -> Status {
        Status {
            name: name.into(),
            kind: "command".into(),
            ok: true,
            start: "s".into(),
            end: "e".into(),
            exit_status: Some(0),
            size: Some(1),
            sha256: Some("00".into()),
            tool_version: None,
            files: vec![FileStatus { file: format!("{name}.out"), size: 1, sha256: "00".into() }],
            error: None,
            last_success: Some("e".into()),
        }
    }

    #[test]
    fn the_previous_status_is_read_only_from_a_small_regular_file() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real.json");
        std::fs::write(&real, serde_json::to_vec(&status("ok")).unwrap()).unwrap();
        std::fs::write(t.path().join("ok.status.json"), serde_json::to_vec(&status("ok")).unwrap()).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("link.status.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", t.path().join("zero.status.json")).unwrap();
        nix::unistd::mkfifo(&t.path().join("fifo.status.json"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(t.path().join("big.status.json"), vec![b' '; (STATUS_MAX + 1) as usize]).unwrap();
        std::fs::create_dir(t.path().join("dir.status.json")).unwrap();
        std::fs::write(t.path().join("junk.status.json"), b"not json").unwrap();
        let dir = open_dir(t.path());
        // (dump name, Ok(has a status) or Err(part of the message), why)
        let rows: &[(&str, Result<bool, &str>, &str)] = &[
            ("ok", Ok(true), "a status file"),
            ("none", Ok(false), "no status yet"),
            ("junk", Ok(false), "not a status: treated as none"),
            ("link", Err("symlink"), "a symlink, even to a good file"),
            ("zero", Err("symlink"), "a symlink to an endless device"),
            ("fifo", Err("not a regular file"), "a FIFO nobody writes to"),
            ("big", Err("larger than"), "past the size cap"),
            ("dir", Err("not a regular file"), "a folder"),
        ];
        for (name, want, why) in rows {
            let started = Instant::now();
            let got = read_status_at(&dir, name);
            assert!(started.elapsed() < Duration::from_secs(5), "{why}: it blocked");
            match (got, want) {
                (Ok(s), Ok(has)) => assert_eq!(s.is_some(), *has, "{why}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{why}: {e}"),
                (got, _) => panic!("{why}: {got:?}"),
            }
        }
    }

    fn command_dump(output: &Path, script: &str) -> Dump {
        Dump {
            name: "x".into(),
            kind: Kind::Command { argv: vec!["/bin/sh".into(), "-c".into(), script.into()], user: "root".into() },
            output: output.to_path_buf(),
            timeout: 30,
            max_size: 1 << 20,
            on_failure: OnFailure::Fail,
            source: PathBuf::from("/d/x.toml"),
        }
    }

    /// The application's account renames the output folder during the
    /// dump and puts a symlink to another folder in its place: the dump
    /// and its status still land in the folder that was opened, nothing
    /// in the other one.
    #[test]
    fn a_folder_swapped_for_a_symlink_during_the_dump_gets_nothing() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: run_one needs root (the output folder must be root's)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        let out = base.join("out");
        let other = base.join("other");
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(&other).unwrap();
        let script = format!("mv {o} {o}.moved && ln -s {x} {o} && echo data", o = out.display(), x = other.display());
        let o = run_one(&command_dump(&out, &script));
        assert!(o.status.ok, "{}", o.line());
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0, "something was written through the symlink");
        let moved = base.join("out.moved");
        assert_eq!(std::fs::read(moved.join("x.out")).unwrap(), b"data\n");
        let s = Status::parse(&std::fs::read(moved.join("x.status.json")).unwrap()).unwrap();
        assert!(s.ok);
    }

    #[test]
    fn temp_names_are_unique_and_recognised_exactly() {
        let (a, b) = (temp_name("x.out"), temp_name("x.out"));
        assert_ne!(a, b, "two runs in one process share a temporary name");
        assert!(a.contains(&std::process::id().to_string()));
        // (entry, file, is its temporary file, why)
        let rows: &[(&str, &str, bool, &str)] = &[
            (&a, "x.out", true, "what temp_name makes"),
            (".x.out.12.0.tmp", "x.out", true, "another run's"),
            (".x.out.tmp", "x.out", true, "the old fixed name"),
            ("x.out", "x.out", false, "the dump itself"),
            (".x.out.12.0.tmp", "x.ou", false, "another file's prefix"),
            (".x.out.status.json.1.2.tmp", "x.out", false, "another file that starts the same"),
            (".x.out.a.0.tmp", "x.out", false, "not a pid"),
            (".x.out.1.2.3.tmp", "x.out", false, "one part too many"),
        ];
        for (entry, file, want, why) in rows {
            assert_eq!(is_temp_of(entry, file), *want, "{why}: {entry}");
        }
    }

    #[test]
    fn a_second_run_in_the_same_folder_waits_for_the_first() {
        let t = tempfile::tempdir().unwrap();
        let (first, second) = (open_dir(t.path()), open_dir(t.path()));
        lock_output(&first, Duration::from_secs(1), t.path()).unwrap();
        let started = Instant::now();
        let e = lock_output(&second, Duration::from_secs(1), t.path()).unwrap_err();
        assert!(e.contains("still going"), "{e}");
        assert!(started.elapsed() >= Duration::from_secs(1), "it did not wait");
        drop(first);
        lock_output(&second, Duration::from_secs(1), t.path()).unwrap();
    }

    /// Two runs of the same dump at once: each file in place is the one
    /// its status describes, and both runs succeed one after the other.
    #[test]
    fn two_runs_at_once_do_not_mix_their_files() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: run_one needs root (the output folder must be root's)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let out = std::fs::canonicalize(t.path()).unwrap();
        std::fs::write(out.join(".x.out.999999.0.tmp"), b"left by a killed run").unwrap();
        let slow = command_dump(&out, "echo one; sleep 1; echo one");
        let quick = command_dump(&out, "echo two");
        let first = std::thread::spawn(move || run_one(&slow));
        std::thread::sleep(Duration::from_millis(300));
        let second = run_one(&quick);
        let first = first.join().unwrap();
        assert!(first.status.ok, "{}", first.line());
        assert!(second.status.ok, "{}", second.line());
        let bytes = std::fs::read(out.join("x.out")).unwrap();
        let s = Status::parse(&std::fs::read(out.join("x.status.json")).unwrap()).unwrap();
        let hex: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(s.sha256.as_deref(), Some(hex.as_str()), "the status describes another file than the one in place");
        let names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "temporary files left: {names:?}");
    }

    /// A tool whose child leaves its group (setsid) and keeps stdout
    /// open: the run still ends at the deadline, as a failure.
    #[test]
    fn a_child_in_its_own_session_holding_the_output_does_not_hang_the_run() {
        let me = User::from_uid(nix::unistd::geteuid()).unwrap().unwrap();
        // The sleep leaves by itself after 8 s.
        let argv: Vec<String> =
            ["/bin/sh", "-c", "/usr/bin/setsid -f /bin/sleep 8; echo started"].iter().map(|s| s.to_string()).collect();
        let started = Instant::now();
        let ran = run_bounded(&argv, &me, None, Duration::from_secs(1), 1 << 16).unwrap();
        assert!(started.elapsed() < Duration::from_secs(6), "the run waited for the escaped child");
        assert_eq!(ran.exit, None, "{ran:?}");
        assert!(ran.timed_out.is_some(), "{ran:?}");
        let why = ran.reason(&argv[0]);
        assert!(why.contains("kept its output open"), "{why}");
    }
}

//! Running one declared job, as root: the program runs as the job's
//! account exactly as a dump's tool does (`dumps::run::run_bounded`: no
//! environment but a fixed PATH, stdin from /dev/null, a session of its
//! own, killed with its group at the timeout or past `max_output`). Then
//! its result files are read, as root, from places its account can
//! write: every path is walked from `/` one component at a time without
//! following a symlink (`O_NOFOLLOW` on each), only regular files owned
//! by the job's account and with no other hard link are taken (a link to
//! a root-only file, hard or symbolic, is skipped), and their count and
//! total size are bounded.

use super::answer::{self, JobStatus, ResultFile, Skipped};
use super::Job;
use crate::dumps::run::run_bounded;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::User;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path};
use std::time::Duration;

/// What one run gave: its status, output and result files.
#[derive(Debug, Clone)]
pub struct Ran {
    pub status: JobStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// (absolute path, bytes), as the status lists them.
    pub results: Vec<(String, Vec<u8>)>,
}

impl Ran {
    /// The answer for the backup server (see [`answer`]).
    pub fn write<W: std::io::Write>(&self, out: W) -> std::io::Result<W> {
        answer::write(out, &self.status, &self.stdout, &self.stderr, &self.results)
    }
}

/// Run `job` and collect its results.
pub fn run(job: &Job) -> Ran {
    let start = crate::log::timestamp();
    let mut status = JobStatus {
        name: job.name.clone(),
        ok: false,
        exit_status: None,
        signal: None,
        timed_out: false,
        start,
        end: String::new(),
        error: None,
        results: vec![],
        skipped: vec![],
    };
    let account = match User::from_name(&job.user) {
        Ok(Some(u)) => u,
        Ok(None) => {
            status.error = Some(format!("the account {} does not exist: create it or fix the job's user", job.user));
            status.end = crate::log::timestamp();
            return Ran { status, stdout: vec![], stderr: vec![], results: vec![] };
        }
        Err(e) => {
            status.error = Some(format!("cannot look up the account {}: {e}", job.user));
            status.end = crate::log::timestamp();
            return Ran { status, stdout: vec![], stderr: vec![], results: vec![] };
        }
    };
    let (stdout, stderr) =
        match run_bounded(&job.argv, &account, None, Duration::from_secs(job.timeout), job.max_output) {
            Ok(ran) => {
                status.exit_status = ran.exit;
                status.signal = ran.signal.filter(|_| ran.exit.is_none());
                status.timed_out = ran.timed_out.is_some();
                status.ok = ran.exit == Some(0);
                if !status.ok {
                    status.error = Some(ran.reason(&job.argv[0]));
                }
                (ran.stdout, ran.stderr)
            }
            Err(why) => {
                status.error = Some(why);
                (vec![], vec![])
            }
        };
    let mut results = Vec::new();
    let mut budget = Budget::new(job.max_result_files, job.max_result_size);
    budget.named = job.results.iter().cloned().collect();
    for p in &job.results {
        collect_file(p, account.uid.as_raw(), &mut budget, &mut results, &mut status.skipped);
    }
    if let Some(dir) = &job.result_dir {
        collect_dir(dir, account.uid.as_raw(), &mut budget, &mut results, &mut status.skipped);
    }
    // The status names the first skipped files only: a folder of many
    // files past the limits must not make it larger than the answer.
    if status.skipped.len() > MAX_SKIPPED {
        let more = status.skipped.len() - MAX_SKIPPED;
        status.skipped.truncate(MAX_SKIPPED);
        status.skipped.push(Skipped { path: "…".into(), why: format!("{more} more skipped, not listed") });
    }
    status.results = results
        .iter()
        .map(|(path, data): &(String, Vec<u8>)| ResultFile {
            path: path.clone(),
            size: data.len() as u64,
            sha256: Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect(),
        })
        .collect();
    status.end = crate::log::timestamp();
    Ran { status, stdout, stderr, results }
}

struct Budget {
    files: u64,
    bytes: u64,
    /// The files named in `results`, which a walk of `result_dir` leaves
    /// out (sent or skipped once already).
    named: std::collections::HashSet<std::path::PathBuf>,
    /// Folder entries a result folder's walk may still look at.
    visits: u64,
    /// The walk has stopped at a limit (said once, in `skipped`).
    stopped: bool,
}

impl Budget {
    fn new(files: u64, bytes: u64) -> Budget {
        Budget { files, bytes, named: Default::default(), visits: MAX_VISITS, stopped: false }
    }
}

/// The most folder entries a walk of `result_dir` looks at: it ends in
/// bounded time and memory whatever the job's account puts there.
const MAX_VISITS: u64 = 100_000;
/// The most skipped files the status names one by one.
const MAX_SKIPPED: usize = 100;

const DIR: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);
const FILE: OFlag =
    OFlag::O_RDONLY.union(OFlag::O_NOFOLLOW).union(OFlag::O_NONBLOCK).union(OFlag::O_NOCTTY).union(OFlag::O_CLOEXEC);

fn why_open(e: nix::errno::Errno) -> String {
    match e {
        nix::errno::Errno::ELOOP => "a symlink (not followed)".into(),
        nix::errno::Errno::ENOTDIR => "a folder on its path is a symlink or not a folder (not followed)".into(),
        nix::errno::Errno::ENOENT => "missing".into(),
        e => format!("cannot open it: {e}"),
    }
}

/// Open the folder `dir` from `/`, each component without following a
/// symlink.
fn open_dir_nofollow(dir: &Path) -> Result<OwnedFd, String> {
    let mut fd = nix::fcntl::open("/", DIR, Mode::empty()).map_err(|e| format!("cannot open /: {e}"))?;
    for c in dir.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(name) => fd = openat(&fd, name, DIR, Mode::empty()).map_err(why_open)?,
            _ => return Err("not a plain absolute path".into()),
        }
    }
    Ok(fd)
}

/// Read the regular file `name` of folder `dir` if the job's account
/// (`uid`) owns it and the budget allows; else say why not.
/// `entry`: its name in the answer, whose tar overhead counts in the
/// size budget as its bytes do, so that an answer within the declared
/// limits is one the server reads.
fn read_at(
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    entry: &str,
    uid: u32,
    budget: &mut Budget,
) -> Result<Vec<u8>, String> {
    let fd = openat(dir, name, FILE, Mode::empty()).map_err(why_open)?;
    let st = fstat(&fd).map_err(|e| format!("cannot check it: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("not a regular file".into());
    }
    if st.st_uid != uid {
        return Err(format!("owned by uid {}, not by the job's account (uid {uid})", st.st_uid));
    }
    // A second name of the same file elsewhere: a hard link the job (or
    // another account, without fs.protected_hardlinks) made to a file it
    // should not send.
    if st.st_nlink != 1 {
        return Err(format!("it has {} hard links (only a file with one name is sent)", st.st_nlink));
    }
    if budget.files == 0 {
        return Err("past max_result_files".into());
    }
    let size = st.st_size as u64;
    let cost = size.saturating_add(answer::entry_overhead(entry, size));
    if cost > budget.bytes {
        return Err(format!(
            "{size} bytes ({cost} in the answer), past what max_result_size leaves ({} bytes)",
            budget.bytes
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    std::fs::File::from(fd)
        .take(budget.bytes + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let cost = data.len() as u64 + answer::entry_overhead(entry, data.len() as u64);
    if cost > budget.bytes {
        return Err(format!("it grew past what max_result_size leaves ({} bytes)", budget.bytes));
    }
    budget.files -= 1;
    budget.bytes -= cost;
    Ok(data)
}

/// A name the answer can carry (see [`answer::plain_name`]).
fn carried(path: &Path) -> Result<String, String> {
    let s = path.to_str().ok_or("its name is not UTF-8")?.to_string();
    answer::plain_name(&answer::result_name(&s)[..]).map_err(|e| format!("{e}: not sent"))?;
    Ok(s)
}

fn collect_file(
    path: &Path,
    uid: u32,
    budget: &mut Budget,
    results: &mut Vec<(String, Vec<u8>)>,
    skipped: &mut Vec<Skipped>,
) {
    let skip =
        |why: String, skipped: &mut Vec<Skipped>| skipped.push(Skipped { path: path.display().to_string(), why });
    if results.iter().any(|(p, _)| Path::new(p) == path) {
        return;
    }
    let shown = match carried(path) {
        Ok(s) => s,
        Err(why) => return skip(why, skipped),
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return skip("not a file path".into(), skipped);
    };
    let dir = match open_dir_nofollow(parent) {
        Ok(d) => d,
        Err(why) => return skip(format!("its folder: {why}"), skipped),
    };
    match read_at(&dir, name, &answer::result_name(&shown), uid, budget) {
        Ok(data) => results.push((shown, data)),
        Err(why) => skip(why, skipped),
    }
}

/// Every regular file below `dir` (in name order, folders entered
/// without following symlinks, at most 16 deep).
fn collect_dir(
    dir: &Path,
    uid: u32,
    budget: &mut Budget,
    results: &mut Vec<(String, Vec<u8>)>,
    skipped: &mut Vec<Skipped>,
) {
    match open_dir_nofollow(dir) {
        Ok(fd) => match fstat(&fd) {
            Ok(st) => walk(&fd, dir, 0, st.st_dev, uid, budget, results, skipped),
            Err(e) => skipped.push(Skipped { path: dir.display().to_string(), why: format!("cannot check it: {e}") }),
        },
        Err(why) => skipped.push(Skipped { path: dir.display().to_string(), why }),
    }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    fd: &OwnedFd,
    at: &Path,
    depth: usize,
    dev: u64,
    uid: u32,
    budget: &mut Budget,
    results: &mut Vec<(String, Vec<u8>)>,
    skipped: &mut Vec<Skipped>,
) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
        skipped.push(Skipped { path: at.display().to_string(), why: "cannot list it".into() });
        return;
    };
    let mut names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        if budget.stopped {
            return;
        }
        let path = at.join(&name);
        let skip =
            |why: String, skipped: &mut Vec<Skipped>| skipped.push(Skipped { path: path.display().to_string(), why });
        let limit = if budget.visits == 0 {
            Some(format!("more than {MAX_VISITS} entries looked at"))
        } else if budget.files == 0 {
            Some("max_result_files reached".to_string())
        } else {
            None
        };
        if let Some(limit) = limit {
            budget.stopped = true;
            return skip(format!("{limit}: the walk stopped here, this and what follows are not sent"), skipped);
        }
        budget.visits -= 1;
        // A folder, entered without following a symlink, nor into another
        // file system; else a file.
        match openat(fd, name.as_os_str(), DIR, Mode::empty()) {
            Ok(sub) if fstat(&sub).map(|st| st.st_dev) != Ok(dev) => {
                skip("on another file system (not entered)".into(), skipped);
                continue;
            }
            Ok(sub) if depth < 16 => {
                walk(&sub, &path, depth + 1, dev, uid, budget, results, skipped);
                continue;
            }
            Ok(_) => {
                skip("more than 16 folders deep".into(), skipped);
                continue;
            }
            Err(nix::errno::Errno::ENOTDIR) | Err(nix::errno::Errno::ELOOP) => {}
            Err(e) => {
                skip(why_open(e), skipped);
                continue;
            }
        }
        // Also named in `results` (sent or skipped already): once.
        if budget.named.contains(&path) {
            continue;
        }
        let shown = match carried(&path) {
            Ok(s) => s,
            Err(why) => {
                skip(why, skipped);
                continue;
            }
        };
        match read_at(fd, name.as_os_str(), &answer::result_name(&shown), uid, budget) {
            Ok(data) => results.push((shown, data)),
            Err(why) => skip(why, skipped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn results_are_read_without_following_links_and_within_bounds() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        let out = base.join("out");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("a.txt"), b"alpha").unwrap();
        std::fs::write(out.join("sub/b.txt"), b"beta").unwrap();
        std::fs::write(base.join("secret"), b"not for the server").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), out.join("link")).unwrap();
        std::os::unix::fs::symlink(&base, out.join("dirlink")).unwrap();
        nix::unistd::mkfifo(&out.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink(&out, base.join("outlink")).unwrap();

        let mut budget = Budget::new(10, 1 << 20);
        let (mut results, mut skipped) = (Vec::new(), Vec::new());
        collect_dir(&out, me(), &mut budget, &mut results, &mut skipped);
        let names: Vec<&str> = results.iter().map(|(p, _)| p.as_str()).collect();
        let a = out.join("a.txt").display().to_string();
        let b = out.join("sub/b.txt").display().to_string();
        assert_eq!(names, [a.as_str(), b.as_str()], "{skipped:?}");
        let why = |n: &str| skipped.iter().find(|s| s.path.ends_with(n)).map(|s| s.why.clone()).unwrap_or_default();
        assert!(why("/link").contains("symlink"), "{skipped:?}");
        assert!(why("/dirlink").contains("symlink"), "{skipped:?}");
        assert!(why("/fifo").contains("not a regular file"), "{skipped:?}");

        // A declared file reached through a symlinked folder is not read.
        let (mut r2, mut s2) = (Vec::new(), Vec::new());
        collect_file(&base.join("outlink/a.txt"), me(), &mut budget, &mut r2, &mut s2);
        assert!(r2.is_empty() && s2[0].why.contains("symlink"), "{s2:?}");
        // A file with a second name is not taken.
        std::fs::write(base.join("twice"), b"two names").unwrap();
        std::fs::hard_link(base.join("twice"), base.join("twice2")).unwrap();
        let (mut r6, mut s6) = (Vec::new(), Vec::new());
        collect_file(&base.join("twice"), me(), &mut budget, &mut r6, &mut s6);
        assert!(r6.is_empty() && s6[0].why.contains("hard links"), "{s6:?}");
        // Someone else's file is not taken.
        let (mut r3, mut s3) = (Vec::new(), Vec::new());
        collect_file(&out.join("a.txt"), me() + 1, &mut budget, &mut r3, &mut s3);
        assert!(r3.is_empty() && s3[0].why.contains("owned by"), "{s3:?}");
        // Bounds: one file left in the count, few bytes left in size.
        let mut tight = Budget::new(1, 1100);
        let (mut r4, mut s4) = (Vec::new(), Vec::new());
        collect_dir(&out, me(), &mut tight, &mut r4, &mut s4);
        assert_eq!(r4.len(), 1, "{s4:?}");
        assert!(s4.iter().any(|s| s.why.contains("max_result")), "{s4:?}");
        let mut small = Budget::new(5, 3);
        let (mut r5, mut s5) = (Vec::new(), Vec::new());
        collect_file(&out.join("a.txt"), me(), &mut small, &mut r5, &mut s5);
        assert!(r5.is_empty() && s5[0].why.contains("max_result_size"), "{s5:?}");
    }

    #[test]
    fn a_result_folder_is_sent_once_and_its_walk_is_bounded() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        let out = base.join("out");
        std::fs::create_dir_all(&out).unwrap();
        for i in 0..300 {
            std::fs::write(out.join(format!("f{i:03}")), format!("{i}")).unwrap();
        }
        let me = User::from_uid(nix::unistd::geteuid()).unwrap().unwrap();
        let job = Job {
            name: "t".into(),
            argv: vec!["/bin/true".into()],
            user: me.name.clone(),
            timeout: 30,
            max_output: 1 << 16,
            // Named and inside the folder too: sent once, or the server
            // refuses the whole answer for a name given twice.
            results: vec![out.join("f007")],
            result_dir: Some(out.clone()),
            max_result_files: 1000,
            max_result_size: 1 << 20,
            source: "/j/t.toml".into(),
        };
        let ran = run(&job);
        let a = answer::read(&ran.write(Vec::new()).unwrap()).unwrap();
        assert_eq!(a.results.len(), 300, "{:?}", ran.status.skipped);

        // Past max_result_files the walk stops and says so once.
        let ran = run(&Job { max_result_files: 10, ..job.clone() });
        assert_eq!(ran.results.len(), 10);
        assert_eq!(ran.status.skipped.len(), 1, "{:?}", ran.status.skipped);
        assert!(ran.status.skipped[0].why.contains("max_result_files reached: the walk stopped"));

        // Many skipped files: the status names the first hundred.
        for i in 0..300 {
            nix::unistd::chown(&out.join(format!("f{i:03}")), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        }
        let ran = run(&job);
        assert!(ran.results.is_empty());
        assert_eq!(ran.status.skipped.len(), MAX_SKIPPED + 1);
        assert_eq!(ran.status.skipped[MAX_SKIPPED].why, "200 more skipped, not listed");
        answer::read(&ran.write(Vec::new()).unwrap()).unwrap();

        // The walk looks at a bounded number of entries.
        let mut few = Budget { visits: 5, ..Budget::new(1000, 1 << 20) };
        let (mut r, mut s) = (Vec::new(), Vec::new());
        collect_dir(&out, 65534, &mut few, &mut r, &mut s);
        assert_eq!((r.len(), s.len()), (5, 1), "{s:?}");
        assert!(s[0].why.contains("more than 100000 entries looked at"), "{s:?}");
    }

    #[test]
    fn a_job_runs_and_its_answer_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        let me = User::from_uid(nix::unistd::geteuid()).unwrap().unwrap();
        let file = base.join("r.txt");
        let job = Job {
            name: "t".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), format!("echo out; echo err >&2; id -un > {}", file.display())],
            user: me.name.clone(),
            timeout: 30,
            max_output: 1 << 16,
            results: vec![file.clone(), base.join("missing")],
            result_dir: None,
            max_result_files: 10,
            max_result_size: 1 << 20,
            source: "/j/t.toml".into(),
        };
        let ran = run(&job);
        assert!(ran.status.ok, "{:?}", ran.status);
        let a = answer::read(&ran.write(Vec::new()).unwrap()).unwrap();
        assert_eq!(a.stdout, b"out\n");
        assert_eq!(a.stderr, b"err\n");
        assert_eq!(a.results.len(), 1);
        assert_eq!(a.results[0].1, format!("{}\n", me.name).as_bytes());
        assert_eq!(a.status.skipped[0].why, "missing");

        let slow = Job { argv: vec!["/bin/sleep".into(), "30".into()], timeout: 1, results: vec![], ..job };
        let started = std::time::Instant::now();
        let ran = run(&slow);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!ran.status.ok && ran.status.timed_out, "{:?}", ran.status);
        assert!(ran.status.error.as_deref().unwrap_or("").contains("did not finish within 1 s"), "{:?}", ran.status);
    }
}

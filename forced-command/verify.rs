//! `forced-command verify`: did each host get backed up, recently and
//! without errors, with its dumps taken? Read from BackupPC's own files:
//! the host's `backups` file (backuppc::backups), and the dump status
//! files inside its last finished backup, found with BackupPC's own
//! library (BackupPC::View) and read out with `BackupPC_tarCreate`, run
//! as the BackupPC account.

use anyhow::{bail, Context, Result};
use backuppc_enroll::backuppc::backups::{self, Backup};
use backuppc_enroll::config::ServerConfig;
use backuppc_enroll::dumps::Status;
use backuppc_enroll::names::printable;
use backuppc_enroll::store::registry::Registry;
use serde::Serialize;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

pub struct Args<'a> {
    pub hosts: &'a [String],
    pub max_age_hours: u64,
    pub json: bool,
    pub top_dir: &'a Path,
    pub bin_dir: &'a Path,
}

/// A dump status found in a backup.
#[derive(Debug, Clone, Serialize)]
pub struct FoundStatus {
    pub share: String,
    pub path: String,
    /// None: the file is not a dump status.
    pub status: Option<Status>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub host: String,
    pub healthy: bool,
    pub last_backup: Option<Backup>,
    pub age_hours: Option<f64>,
    pub dumps: Vec<FoundStatus>,
    pub problems: Vec<String>,
}

/// What is wrong with a host whose `backups` are these and whose last
/// finished backup holds `dumps`, at `now` (Unix seconds).
pub fn assess(rows: &[Backup], dumps: &[FoundStatus], now: u64, max_age_hours: u64) -> Vec<String> {
    // BackupPC's view first, as `fleet report` shows it.
    let mut problems = backups::problems(rows, now, max_age_hours);
    if backups::last_complete(rows).is_none() {
        return problems;
    }
    // Everything of a status came from the workstation: shown escaped, so
    // no terminal control sequence reaches the admin's terminal and no
    // value forges a line of the report.
    use backuppc_enroll::names::display_text;
    for d in dumps {
        match &d.status {
            None => problems.push(format!(
                "{}{} in the last backup is not a dump status file",
                printable(&d.share),
                printable(&d.path)
            )),
            Some(s) if !s.ok => problems.push(format!(
                "dump {} failed at {}: {}",
                printable(&s.name),
                printable(&s.end),
                display_text(&s.error.as_deref().unwrap_or("no reason given").replace('\n', " / "))
            )),
            Some(_) => {}
        }
    }
    problems
}

pub fn run(config: &Path, args: &Args) -> ExitCode {
    match reports(config, args) {
        Ok(reports) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&reports).unwrap_or_default());
            } else {
                print_table(&reports);
            }
            if reports.iter().all(|r| r.healthy) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("forced-command: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn reports(config: &Path, args: &Args) -> Result<Vec<Report>> {
    backuppc_enroll::restore_sigpipe();
    let cfg = ServerConfig::load(config)?;
    let hosts: Vec<String> = if args.hosts.is_empty() {
        let reg = Registry::load(&cfg.registry).map_err(|e| anyhow::anyhow!("{e}"))?;
        reg.hosts.values().filter(|e| e.state == "enrolled" || e.state == "adopted").map(|e| e.host.clone()).collect()
    } else {
        args.hosts.to_vec()
    };
    if hosts.is_empty() {
        bail!("no hosts to verify: none is enrolled in {}; name them on the command line", cfg.registry.display());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let pc = args.top_dir.join("pc");
    let mut out = Vec::new();
    for host in hosts {
        let rows = match backups::read(&pc, &host) {
            Ok(r) => r,
            Err(e) => {
                out.push(Report {
                    host,
                    healthy: false,
                    last_backup: None,
                    age_hours: None,
                    dumps: vec![],
                    problems: vec![e.to_string()],
                });
                continue;
            }
        };
        let last = backups::last_complete(&rows).cloned();
        let (dumps, mut problems) = match &last {
            Some(b) => match dump_statuses(&cfg, args.bin_dir, &host, b.num) {
                Ok(d) => (d, vec![]),
                Err(e) => (vec![], vec![format!("cannot read the dump status files of backup #{}: {e:#}", b.num)]),
            },
            None => (vec![], vec![]),
        };
        problems.extend(assess(&rows, &dumps, now, args.max_age_hours));
        let age_hours = last.as_ref().map(|b| now.saturating_sub(b.end_time.unwrap_or(b.start_time)) as f64 / 3600.0);
        out.push(Report { host, healthy: problems.is_empty(), last_backup: last, age_hours, dumps, problems });
    }
    Ok(out)
}

fn print_table(reports: &[Report]) {
    println!("{:<30} {:<8} {:>5} {:>9} {:>6} {:>6}  STATE", "HOST", "TYPE", "NUM", "AGE (h)", "ERRORS", "DUMPS");
    for r in reports {
        let (kind, num, errors) = match &r.last_backup {
            Some(b) => (b.kind.as_str().to_string(), b.num.to_string(), b.errors().to_string()),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let age = r.age_hours.map(|a| format!("{a:.1}")).unwrap_or_else(|| "-".into());
        let state = if r.healthy { "ok" } else { "PROBLEM" };
        println!("{:<30} {:<8} {:>5} {:>9} {:>6} {:>6}  {state}", r.host, kind, num, age, errors, r.dumps.len());
        for p in &r.problems {
            println!("    {p}");
        }
    }
}

/// Lists `SHARE\0PATH\0` for every regular file named `*.status.json` in
/// backup NUM of HOST, with BackupPC's own view of the backup (merged
/// through the incrementals, as a restore sees it).
const FIND_STATUS_FILES: &str = r#"
use strict;
use BackupPC::Lib;
use BackupPC::View;
my ($host, $num) = @ARGV;
my $bpc = BackupPC::Lib->new or die "BackupPC::Lib->new failed\n";
my @backups = $bpc->BackupInfoRead($host);
my $view = BackupPC::View->new($bpc, $host, \@backups);
sub walk {
    my ($share, $dir, $depth) = @_;
    return if $depth > 64;
    my $attr = $view->dirAttrib($num, $share, $dir) or return;
    foreach my $name (sort keys %$attr) {
        my $type = $attr->{$name}{type};
        my $path = ($dir eq "/" ? "" : $dir) . "/" . $name;
        if ( $type == 5 ) {
            walk($share, $path, $depth + 1);
        } elsif ( $type == 0 && $name =~ /\.status\.json\z/ ) {
            print "$share\0$path\0";
        }
    }
}
my @shares = $view->shareList($num);
walk($_, "/", 0) foreach ( @shares );
"#;

/// A BackupPC tool run as the BackupPC account (when run by root), with
/// a clean environment.
fn as_backuppc(cfg: &ServerConfig, program: &Path) -> Result<Command> {
    let mut c = Command::new(program);
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").current_dir("/").stdin(Stdio::null());
    if nix::unistd::geteuid().is_root() {
        let u = nix::unistd::User::from_name(&cfg.backuppc_user)?
            .with_context(|| format!("the BackupPC account {} does not exist", cfg.backuppc_user))?;
        c.gid(u.gid.as_raw()).uid(u.uid.as_raw());
    }
    Ok(c)
}

/// The most `BackupPC_tarCreate` may write for one status file: the
/// status cap (1 MiB) and the tar's own headers and padding.
const TAR_MAX: u64 = 2 << 20;
/// The most the listing of a backup's status files may write.
const LIST_MAX: u64 = 16 << 20;

/// How long one BackupPC tool may take before verify stops it: a listing
/// or one status file out of a backup takes seconds on a large pool.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// Run `cmd` with its stdout read up to `cap` bytes only (past that the
/// program is killed and this is an error, before more is held in
/// memory), for at most `limit` (then its process group is killed and
/// this is an error); its stderr, the first 8 KiB, comes back escaped
/// for a terminal.
fn output_capped(mut cmd: Command, cap: u64, limit: Duration) -> Result<(std::process::ExitStatus, Vec<u8>, String)> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    // The watchdog signals the group only before the child is waited for
    // (it is joined first), so the pid cannot have been reused.
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let late = finished.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout);
        if late {
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        }
        late
    });
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let errors = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stderr).take(8 << 10).read_to_end(&mut kept);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        kept
    });
    let mut out = Vec::new();
    let read = stdout.take(cap + 1).read_to_end(&mut out);
    let over = read.is_err() || out.len() as u64 > cap;
    if over {
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    }
    drop(done);
    let late = watchdog.join().unwrap_or(true);
    if over || late {
        let _ = child.wait();
        let _ = errors.join();
        if late {
            bail!("{program} took longer than {limit:?}: it was stopped");
        }
        if let Err(e) = read {
            bail!("cannot read the output of {program}: {e}");
        }
        bail!("{program} wrote more than {cap} bytes: it was stopped");
    }
    let status = child.wait().with_context(|| format!("cannot wait for {program}"))?;
    let said = errors.join().unwrap_or_default();
    let said = backuppc_enroll::names::display_text(String::from_utf8_lossy(&said).trim());
    Ok((status, out, said))
}

fn dump_statuses(cfg: &ServerConfig, bin_dir: &Path, host: &str, num: u64) -> Result<Vec<FoundStatus>> {
    let lib = bin_dir.parent().unwrap_or(Path::new("/")).join("lib");
    let mut list = as_backuppc(cfg, Path::new("/usr/bin/perl"))?;
    list.arg(format!("-I{}", lib.display())).args(["-e", FIND_STATUS_FILES, "--", host, &num.to_string()]);
    let (status, stdout, stderr) = output_capped(list, LIST_MAX, TOOL_TIMEOUT)
        .context("cannot list the dump status files with BackupPC's library")?;
    if !status.success() {
        bail!("listing backup #{num} of {host} failed: {stderr}");
    }
    let words: Vec<String> =
        stdout.split(|&b| b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    let mut found = Vec::new();
    for pair in words.chunks(2) {
        let [share, path] = pair else { continue };
        let mut tar = as_backuppc(cfg, &bin_dir.join("BackupPC_tarCreate"))?;
        tar.args(["-h", host, "-n", &num.to_string(), "-s", share, path]);
        let shown = format!("{}{}", printable(share), printable(path));
        let (status, stdout, stderr) = output_capped(tar, TAR_MAX, TOOL_TIMEOUT)
            .with_context(|| format!("cannot read {shown} with BackupPC_tarCreate"))?;
        if !status.success() {
            bail!("BackupPC_tarCreate of {shown} failed: {stderr}");
        }
        let mut archive = tar::Archive::new(&stdout[..]);
        let mut status = None;
        for entry in archive.entries().context("BackupPC_tarCreate wrote no tar")? {
            let entry = entry.context("BackupPC_tarCreate wrote a broken tar")?;
            if entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                entry.take(1 << 20).read_to_end(&mut bytes)?;
                status = Status::parse(&bytes).ok();
                break;
            }
        }
        found.push(FoundStatus { share: share.clone(), path: path.clone(), status });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backuppc_enroll::backuppc::backups::BackupType;

    fn b(num: u64, kind: BackupType, end: u64, xfer_errs: u64) -> Backup {
        Backup {
            num,
            kind,
            start_time: end - 60,
            end_time: Some(end),
            n_files: 10,
            size: 100,
            xfer_errs,
            xfer_bad_file: 0,
            xfer_bad_share: 0,
            tar_errs: 0,
            level: Some(0),
        }
    }

    fn st(ok: bool) -> FoundStatus {
        let s = Status {
            name: "mm".into(),
            kind: "postgresql".into(),
            ok,
            start: "s".into(),
            end: "e".into(),
            exit_status: Some(if ok { 0 } else { 1 }),
            size: None,
            sha256: None,
            tool_version: None,
            files: vec![],
            error: (!ok).then(|| "pg_dump exited with status 1".into()),
            last_success: None,
        };
        FoundStatus { share: "/srv".into(), path: "/d/mm.status.json".into(), status: Some(s) }
    }

    #[test]
    fn assess_table() {
        use BackupType::*;
        let now = 1_000_000;
        let h = 3600;
        // (backups, dumps, problems expected (parts), why)
        type Row<'a> = (Vec<Backup>, Vec<FoundStatus>, Vec<&'a str>, &'a str);
        let rows: Vec<Row> = vec![
            (vec![b(0, Full, now - h, 0)], vec![st(true)], vec![], "fresh, clean, dump ok"),
            (vec![], vec![], vec!["no finished backup"], "never backed up"),
            (vec![b(0, Partial, now - h, 0)], vec![], vec!["no finished backup"], "only a partial"),
            (vec![b(0, Full, now - 30 * h, 0)], vec![], vec!["30.0 h old, more than 26 h"], "stale"),
            (vec![b(0, Full, now - h, 3)], vec![], vec!["xferErrs 3"], "transfer errors"),
            (vec![b(0, Full, now - h, 0)], vec![st(false)], vec!["dump mm failed at e: pg_dump exited"], "dump failed"),
            (
                vec![b(0, Full, now - 2 * h, 0), b(1, Partial, now - h, 0)],
                vec![],
                vec!["a later backup (#1) did not finish"],
                "last attempt failed",
            ),
            (
                vec![b(0, Partial, now - 3 * h, 0), b(1, Incr, now - h, 0)],
                vec![],
                vec![],
                "an old partial before a good backup is history",
            ),
            (
                vec![b(0, Full, now - h, 0)],
                vec![FoundStatus { share: "/s".into(), path: "/x.status.json".into(), status: None }],
                vec!["not a dump status file"],
                "garbage in a status file",
            ),
        ];
        for (backups, dumps, want, why) in rows {
            let got = assess(&backups, &dumps, now, 26);
            assert_eq!(got.len(), want.len(), "{why}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.contains(w), "{why}: {g:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn a_hostile_status_reaches_the_report_escaped() {
        let mut bad = st(false);
        let s = bad.status.as_mut().unwrap();
        s.name = "mm\x1b[2J".into();
        s.end = "e\u{202e}".into();
        s.error = Some("boom\x1b]0;owned\x07\nall good".into());
        let garbage =
            FoundStatus { share: "/s\x1b[31m".into(), path: "/x\r\nhost ok.status.json".into(), status: None };
        let got = assess(&[b(0, BackupType::Full, 1_000_000 - 3600, 0)], &[bad, garbage], 1_000_000, 26);
        assert_eq!(got.len(), 2, "{got:?}");
        for p in &got {
            assert!(!p.chars().any(|c| c.is_control() || c == '\u{202e}'), "raw control character in {p:?}");
        }
        assert!(got[0].contains("mm\\u{1b}[2J"), "{}", got[0]);
    }

    #[test]
    fn a_tool_output_is_capped_while_it_is_read() {
        let mut big = Command::new("/usr/bin/head");
        big.args(["-c", "3000000", "/dev/zero"]);
        let e = output_capped(big, TAR_MAX, TOOL_TIMEOUT).unwrap_err();
        assert!(format!("{e:#}").contains("more than"), "{e:#}");
        // An endless writer is stopped too, not read to the end.
        let e = output_capped(Command::new("/usr/bin/yes"), 1 << 10, TOOL_TIMEOUT).unwrap_err();
        assert!(format!("{e:#}").contains("more than 1024 bytes"), "{e:#}");
        let mut small = Command::new("/bin/sh");
        small.args(["-c", "printf ok; printf 'bad\\033[2J' >&2; exit 3"]);
        let (status, out, said) = output_capped(small, TAR_MAX, TOOL_TIMEOUT).unwrap();
        assert_eq!((status.code(), &out[..]), (Some(3), &b"ok"[..]));
        assert!(!said.contains('\x1b') && said.contains("bad"), "{said:?}");
    }

    #[test]
    fn a_tool_that_hangs_is_stopped_with_its_children() {
        // A grandchild holds the pipe open too: only killing the group
        // ends the read.
        let mut hung = Command::new("/bin/sh");
        hung.args(["-c", "sleep 60 & sleep 60"]);
        let start = std::time::Instant::now();
        let e = output_capped(hung, TAR_MAX, Duration::from_millis(300)).unwrap_err();
        assert!(format!("{e:#}").contains("took longer than 300ms: it was stopped"), "{e:#}");
        assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
    }
}

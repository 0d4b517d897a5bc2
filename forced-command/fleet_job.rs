//! `forced-command fleet job NAME`: ask every host for its declared job
//! `NAME` (`run-job NAME` over the per-host key) and collect what comes
//! back into one folder per run, `DIR/RUN-ID/HOST/` (outcome.json, and
//! for a host that answered its status.json, stdout, stderr and
//! results/), and `DIR/RUN-ID.tar.gz` of that folder.
//!
//! An answer is hostile input (a workstation may be compromised): it is
//! read whole, within `--max-answer`, and checked by `jobs::answer::read`
//! before anything of it is written; everything is then written into
//! folders this run just created, by names that are plain relative paths,
//! with files created exclusively, so nothing can land outside the
//! host's folder.

use anyhow::{bail, Context, Result};
use backuppc_enroll::config::ServerConfig;
use backuppc_enroll::fleet::report::{HostResult, Outcome};
use backuppc_enroll::fleet::session::{self, Kept, Limits, MAX_OUTPUT};
use backuppc_enroll::fleet::target::SshTarget;
use backuppc_enroll::fleet::trust::Pinned;
use backuppc_enroll::jobs::answer::{self, Answer};
use backuppc_enroll::log::Audit;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What the rsyncsend of releases before jobs says to `run-job NAME`.
const NOT_OFFERED: &str = "only 'rsync --server";

/// One run of a job over the fleet.
pub struct JobRun {
    pub name: String,
    command: String,
    out: PathBuf,
    pub run_id: String,
    pub run_dir: PathBuf,
    max_answer: usize,
    audit_log: Option<PathBuf>,
}

/// Where a run's results are, for the report.
pub struct Collected {
    pub run_dir: PathBuf,
    pub archive: PathBuf,
}

impl JobRun {
    /// Check the name and create the run's folder (a new one).
    pub fn start(name: &str, out: Option<&Path>, max_answer: u64, cfg: &ServerConfig) -> Result<JobRun> {
        backuppc_enroll::dumps::check_word("job", name).map_err(|e| anyhow::anyhow!("{e}"))?;
        if max_answer == 0 || max_answer > answer::MAX_ANSWER as u64 {
            bail!("--max-answer must be between 1 and {} bytes", answer::MAX_ANSWER);
        }
        let out = match out {
            Some(o) => o.to_path_buf(),
            None => cfg.registry.parent().unwrap_or(Path::new(".")).join("jobs"),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&out)
            .with_context(|| format!("cannot create the jobs folder {}", out.display()))?;
        let stamp = backuppc_enroll::log::timestamp().replace([':', '-'], "");
        let mut n = 1;
        let (run_id, run_dir) = loop {
            let id = if n == 1 { format!("{name}-{stamp}") } else { format!("{name}-{stamp}-{n}") };
            let dir = out.join(&id);
            match fs::DirBuilder::new().mode(0o750).create(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => bail!("cannot create the run's folder {}: {e}", dir.display()),
            }
        };
        Ok(JobRun {
            name: name.to_string(),
            command: format!("{} {name}", backuppc_enroll::jobs::VERB),
            out,
            run_id,
            run_dir,
            max_answer: max_answer as usize,
            audit_log: cfg.audit_log.clone(),
        })
    }

    /// The folder of `host` in this run, if its name can be one.
    fn host_dir(&self, host: &str) -> Option<PathBuf> {
        (answer::plain_name(host).is_ok() && !host.contains('/')).then(|| self.run_dir.join(host))
    }

    /// Run the job on one host, keep its answer, classify.
    pub fn host(&self, t: &SshTarget, pinned: &Pinned, limits: Limits) -> HostResult {
        let mut kept = Kept { max: self.max_answer, ..Kept::default() };
        let mut r = session::run_kept(t, pinned, &self.command, limits, &mut kept);
        if r.exit_status.is_none() {
            // Never ran: connection, trust, authentication, timeout.
            return r;
        }
        let failed = |mut r: HostResult, detail: String| {
            r.outcome = Outcome::Failed;
            r.detail = detail;
            r
        };
        if kept.cut {
            r.stdout.clear();
            return failed(
                r,
                format!("its answer is larger than --max-answer ({} bytes): nothing kept", self.max_answer),
            );
        }
        if r.exit_status != Some(0) || kept.bytes.is_empty() {
            r.stdout.clear();
            let said = r.stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            let detail = if said.contains(NOT_OFFERED) {
                "its rsyncsend does not offer jobs (backuppc-enroll from before run-job): upgrade it on the host".into()
            } else if said.starts_with("sudo:") {
                format!(
                    "its sudoers drop-in does not allow run-job (written before jobs?): run enroll on the host again; sudo said: {said}"
                )
            } else if said.is_empty() {
                format!("`{}` exited {} without an answer", self.command, r.exit_status.unwrap_or(-1))
            } else {
                said
            };
            r.stderr.clear();
            return failed(r, detail);
        }
        let a = match answer::read(&kept.bytes) {
            Ok(a) => a,
            Err(e) => {
                r.stdout.clear();
                return failed(r, format!("its answer is refused, nothing of it kept: {e}"));
            }
        };
        if let Err(e) = self.write_answer(&t.host, &a) {
            return failed(r, format!("cannot keep its answer: {e:#}"));
        }
        r.exit_status = a.status.exit_status;
        r.stdout = lossy(&a.stdout);
        r.stderr = lossy(&a.stderr);
        if a.status.ok {
            r.outcome = Outcome::Ok;
            r.detail = String::new();
        } else {
            r.outcome = Outcome::Failed;
            r.detail = format!("job {}: {}", self.name, a.status.error.as_deref().unwrap_or("failed"));
        }
        r
    }

    /// Write a checked answer into the host's new folder: all of it, in
    /// a `.HOST.partial` folder renamed into place at the end, or nothing
    /// (a name too long or a full disk halfway leaves no half answer).
    fn write_answer(&self, host: &str, a: &Answer) -> Result<()> {
        let dir = self.host_dir(host).context("the host's name cannot be a folder name")?;
        let partial = self.run_dir.join(format!(".{host}.partial"));
        fs::DirBuilder::new()
            .mode(0o750)
            .create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let written = Self::write_into(&partial, a)
            .and_then(|()| fs::rename(&partial, &dir).with_context(|| format!("cannot create {}", dir.display())));
        if written.is_err() {
            let _ = fs::remove_dir_all(&partial);
        }
        written
    }

    fn write_into(dir: &Path, a: &Answer) -> Result<()> {
        write_new(&dir.join("status.json"), &a.status_bytes)?;
        write_new(&dir.join("stdout"), &a.stdout)?;
        write_new(&dir.join("stderr"), &a.stderr)?;
        let results = dir.join("results");
        fs::DirBuilder::new().mode(0o750).create(&results)?;
        for (rel, data) in &a.results {
            // Checked plain and relative by the reader: no component can
            // leave `results` or be a link (every folder is made here).
            let path = results.join(rel);
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            write_new(&path, data)?;
        }
        Ok(())
    }

    /// Each host's outcome.json, then the run's .tar.gz.
    pub fn finish(&self, results: &[HostResult]) -> Result<Collected> {
        for r in results {
            let Some(dir) = self.host_dir(&r.host) else { continue };
            match fs::DirBuilder::new().mode(0o750).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => bail!("cannot create {}: {e}", dir.display()),
            }
            let json = serde_json::to_vec_pretty(&r.json())?;
            write_new(&dir.join("outcome.json"), &json)?;
        }
        let archive = self.out.join(format!("{}.tar.gz", self.run_id));
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", self.run_id))
            .suffix(".tmp")
            .tempfile_in(&self.out)
            .with_context(|| format!("cannot create a file in {}", self.out.display()))?;
        {
            let gz = flate2::write::GzEncoder::new(tmp.as_file_mut(), flate2::Compression::default());
            let mut b = tar::Builder::new(gz);
            b.follow_symlinks(false);
            b.append_dir_all(&self.run_id, &self.run_dir)
                .with_context(|| format!("cannot archive {}", self.run_dir.display()))?;
            b.into_inner()?.finish()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&archive).with_context(|| format!("cannot write {}", archive.display()))?;
        let outcomes: Vec<serde_json::Value> =
            results.iter().map(|r| serde_json::json!({ "host": r.host, "outcome": r.outcome.as_str() })).collect();
        Audit::new(c"forced-command", self.audit_log.clone()).event(
            "fleet-job",
            serde_json::json!({ "job": self.name, "run_dir": self.run_dir, "archive": archive, "hosts": outcomes }),
        );
        Ok(Collected { run_dir: self.run_dir.clone(), archive })
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]).into_owned()
}

/// A new file (never an existing one, never through a link), 0640.
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

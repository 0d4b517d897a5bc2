//! Declared jobs: scripts the workstation's root allows the backup server
//! to run by name (`forced-command fleet job NAME`), the bastion's "run it
//! on every server and collect the results" without a key that can open a
//! shell.
//!
//! The workstation's root declares them in drop-in files (`jobs.d/*.toml`):
//! an absolute argv, the account it runs as, a timeout, an output limit
//! and the result files or folder to send back. The server may send only
//! `run-job NAME` ([`request`]); it can choose which declared job runs,
//! never what it runs or how. This module parses and checks the
//! declarations (pure, table-tested); [`run`] runs one as root and
//! collects its results; [`answer`] is the bounded format they travel in,
//! and its reader, which trusts nothing a workstation sends back.

pub mod answer;
pub mod run;

use crate::dumps::{self, check_root_owned, plain_absolute, DumpError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default `timeout` of a job, in seconds.
pub const DEFAULT_TIMEOUT: u64 = 300;
/// Default `max_output`: the most bytes of stdout a job may write.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;
/// Default `max_result_files`.
pub const DEFAULT_MAX_RESULT_FILES: u64 = 100;
/// Default `max_result_size`: all result files together, in bytes.
pub const DEFAULT_MAX_RESULT_SIZE: u64 = 16 << 20;
/// The largest `max_output` + `max_result_size` a declaration may ask
/// for: what one answer may carry ([`answer::MAX_ANSWER`] leaves room for
/// the status and the tar headers).
pub const MAX_DECLARED: u64 = 256 << 20;

/// The verb the backup server sends, followed by one job name.
pub const VERB: &str = "run-job";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

impl From<DumpError> for JobError {
    fn from(e: DumpError) -> Self {
        JobError(e.0)
    }
}

fn err<T>(s: impl Into<String>) -> Result<T, JobError> {
    Err(JobError(s.into()))
}

/// One checked declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    /// Absolute program first.
    pub argv: Vec<String>,
    /// The account it runs as.
    pub user: String,
    pub timeout: u64,
    pub max_output: u64,
    /// Result files, absolute.
    pub results: Vec<PathBuf>,
    /// A result folder, absolute: its regular files, recursively.
    pub result_dir: Option<PathBuf>,
    pub max_result_files: u64,
    pub max_result_size: u64,
    /// The file that declared it.
    pub source: PathBuf,
}

/// A `[[job]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    argv: Vec<String>,
    user: String,
    timeout: Option<u64>,
    max_output: Option<u64>,
    results: Option<Vec<String>>,
    result_dir: Option<String>,
    max_result_files: Option<u64>,
    max_result_size: Option<u64>,
}

/// Parse one declaration file's text (`source` names it in messages).
pub fn parse(text: &str, source: &Path) -> Result<Vec<Job>, JobError> {
    let at = |m: String| JobError(format!("{}: {m}", source.display()));
    let raws: Vec<Raw> = dumps::tables(text, source, "job")?;
    raws.into_iter().map(|r| from_raw(r, source).map_err(|e| at(e.0))).collect()
}

fn from_raw(r: Raw, source: &Path) -> Result<Job, JobError> {
    dumps::check_word("job", &r.name)?;
    let n = &r.name;
    let Some(program) = r.argv.first() else {
        return err(format!("job {n}: argv must name a program: argv = [\"/absolute/program\", …]"));
    };
    plain_absolute(&format!("job {n}: argv[0]"), program)?;
    if r.argv.iter().any(|a| a.contains('\0')) {
        return err(format!("job {n}: argv has a NUL byte"));
    }
    crate::names::user_name(&r.user).map_err(|e| JobError(format!("job {n}: user: {e}")))?;
    let results = r.results.unwrap_or_default();
    for p in results.iter().chain(r.result_dir.iter()) {
        plain_absolute(&format!("job {n}: result path"), p)?;
        if p == "/" {
            return err(format!("job {n}: a result path cannot be / itself"));
        }
    }
    let timeout = r.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let max_output = r.max_output.unwrap_or(DEFAULT_MAX_OUTPUT);
    let max_result_files = r.max_result_files.unwrap_or(DEFAULT_MAX_RESULT_FILES);
    let max_result_size = r.max_result_size.unwrap_or(DEFAULT_MAX_RESULT_SIZE);
    if timeout == 0 || max_output == 0 {
        return err(format!("job {n}: timeout and max_output must be at least 1"));
    }
    if max_result_files > answer::MAX_ENTRIES as u64 - 3 {
        return err(format!("job {n}: max_result_files is at most {}", answer::MAX_ENTRIES - 3));
    }
    if max_output.saturating_add(max_result_size) > MAX_DECLARED {
        return err(format!("job {n}: max_output and max_result_size together are at most {MAX_DECLARED} bytes"));
    }
    Ok(Job {
        name: r.name,
        argv: r.argv,
        user: r.user,
        timeout,
        max_output,
        results: results.into_iter().map(PathBuf::from).collect(),
        result_dir: r.result_dir.map(PathBuf::from),
        max_result_files,
        max_result_size,
        source: source.to_path_buf(),
    })
}

/// The declarations of folder `dir`: every file, the folder and every
/// program checked to be root's alone, names unique. One bad declaration
/// refuses them all. A missing folder declares nothing.
pub fn load(dir: &Path) -> Result<Vec<Job>, JobError> {
    let mut jobs: Vec<Job> = Vec::new();
    for (f, text) in dumps::declaration_files(dir, "job")? {
        for j in parse(&text, &f)? {
            if let Some(other) = jobs.iter().find(|o| o.name == j.name) {
                return err(format!(
                    "job {} is declared twice ({} and {}): rename one",
                    j.name,
                    other.source.display(),
                    f.display()
                ));
            }
            check_root_owned(&format!("the program of job {}", j.name), Path::new(&j.argv[0]))?;
            jobs.push(j);
        }
    }
    Ok(jobs)
}

/// The job `name` of `jobs`, or why there is none (naming those declared).
pub fn find<'a>(jobs: &'a [Job], name: &str) -> Result<&'a Job, JobError> {
    jobs.iter().find(|j| j.name == name).ok_or_else(|| {
        JobError(format!(
            "no job named {} is declared on this workstation: declare it in the jobs folder (enroll jobs lists them)",
            crate::names::quoted(name)
        ))
    })
}

/// Whether the SSH command `cmd` asks for a job: None when it is no job
/// command at all, else the job's name, only for exactly `run-job NAME`
/// with a valid name; anything else of the family (no name, two names, an
/// option, shell syntax, other spacing or case) is refused.
pub fn request(cmd: &str) -> Option<Result<String, JobError>> {
    let first = cmd.trim_start().split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).next()?;
    if !(first.eq_ignore_ascii_case(VERB) || first.eq_ignore_ascii_case("run_job")) {
        return None;
    }
    let refuse = |why: &str| {
        Some(err(format!(
            "{VERB} takes exactly one job name, nothing else on its line ({why}; got {})",
            crate::names::quoted(cmd)
        )))
    };
    let Some(name) = cmd.strip_prefix(VERB).and_then(|r| r.strip_prefix(' ')) else {
        return refuse(if cmd.trim() == VERB { "no name" } else { "write it as `run-job NAME`" });
    };
    match dumps::check_word("job", name) {
        Ok(()) => Some(Ok(name.to_string())),
        Err(e) => Some(Err(JobError(format!("{VERB}: {}", e.0)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Job, JobError> {
        parse(text, Path::new("/j/x.toml")).map(|mut v| v.remove(0))
    }

    const MIN: &str = "[job]\nname = \"inventory\"\nargv = [\"/usr/bin/true\"]\nuser = \"nobody\"\n";

    #[test]
    fn declarations_table() {
        // (extra lines after a minimal job, Ok or Err(part of the message), why)
        let rows: &[(&str, Result<(), &str>, &str)] = &[
            ("", Ok(()), "the minimal job"),
            ("results = [\"/var/tmp/inv/out.txt\"]\nresult_dir = \"/var/tmp/inv\"\n", Ok(()), "files and a folder"),
            ("results = [\"out.txt\"]\n", Err("result path"), "a relative result path"),
            ("results = [\"/var/../etc/shadow\"]\n", Err("'..'"), "dot-dot in a result path"),
            ("result_dir = \"/\"\n", Err("/ itself"), "the whole filesystem"),
            ("timeout = 0\n", Err("at least 1"), "zero timeout"),
            ("max_output = 0\n", Err("at least 1"), "zero output"),
            ("max_result_files = 1000000\n", Err("at most"), "too many files for one answer"),
            ("max_result_size = 1099511627776\n", Err("together are at most"), "more than one answer carries"),
            ("shell = true\n", Err("unknown field"), "a typo is an error, not a default"),
        ];
        for (extra, want, why) in rows {
            match (one(&format!("{MIN}{extra}")), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.0.contains(part), "{why}: {e}"),
                (got, _) => panic!("{why}: {got:?}"),
            }
        }
        let bad: &[(&str, &str, &str)] = &[
            ("[job]\nname = \"X\"\nargv = [\"/bin/true\"]\nuser = \"nobody\"\n", "not valid", "uppercase name"),
            ("[job]\nname = \"a b\"\nargv = [\"/bin/true\"]\nuser = \"nobody\"\n", "not valid", "space in the name"),
            ("[job]\nname = \"x\"\nargv = [\"true\"]\nuser = \"nobody\"\n", "argv[0]", "PATH would choose it"),
            ("[job]\nname = \"x\"\nargv = []\nuser = \"nobody\"\n", "must name a program", "no program"),
            ("[job]\nname = \"x\"\nargv = [\"/bin/true\"]\n", "missing field", "who runs it is said"),
            ("[job]\nname = \"x\"\nargv = [\"/bin/true\"]\nuser = \"a;b\"\n", "user", "bad account"),
            ("[dump]\nname = \"x\"\n", "unknown key", "a dump declaration is not a job"),
            ("", "missing field", "empty file"),
        ];
        for (text, part, why) in bad {
            let e = one(text).unwrap_err();
            assert!(e.0.contains(part), "{why}: {e}");
        }
    }

    #[test]
    fn defaults() {
        let j = one(MIN).unwrap();
        assert_eq!((j.timeout, j.max_output), (DEFAULT_TIMEOUT, DEFAULT_MAX_OUTPUT));
        assert_eq!((j.max_result_files, j.max_result_size), (DEFAULT_MAX_RESULT_FILES, DEFAULT_MAX_RESULT_SIZE));
        assert!(j.results.is_empty() && j.result_dir.is_none());
    }

    #[test]
    fn request_table() {
        // (SSH command, None: not ours / Some(Some(name)): accepted / Some(None): refused, why)
        let rows: &[(&str, Option<Option<&str>>, &str)] = &[
            ("run-job inventory", Some(Some("inventory")), "one declared-looking name"),
            ("run-job a.b_c-1", Some(Some("a.b_c-1")), "every character a name may have"),
            ("run-job", Some(None), "no name"),
            ("run-job ", Some(None), "an empty name"),
            ("run-job x; id", Some(None), "a command after it"),
            ("run-job x;id", Some(None), "a command glued to it"),
            ("run-job $(id)", Some(None), "command substitution"),
            ("run-job `id`", Some(None), "backquotes"),
            ("run-job x\nid", Some(None), "a newline and a second command"),
            ("run-job x\n", Some(None), "a trailing newline"),
            ("run-job x y", Some(None), "an extra argument"),
            ("run-job --all", Some(None), "an option"),
            ("run-job ../x", Some(None), "a path"),
            ("run-job  x", Some(None), "two spaces"),
            ("run-job\tx", Some(None), "a tab"),
            (" run-job x", Some(None), "leading space"),
            ("RUN-JOB x", Some(None), "other case"),
            ("run_job x", Some(None), "underscore spelling"),
            ("run-job X", Some(None), "uppercase name"),
            ("run-job x|id", Some(None), "a pipe"),
            ("run-dumps", None, "the dumps trigger is not ours"),
            ("rsync --server --sender . /home", None, "rsync goes to the rsync checks"),
            ("run-jobs x", None, "another word: the rsync checks refuse it"),
            ("", None, "empty"),
        ];
        for (cmd, want, why) in rows {
            let got = request(cmd).map(|r| r.ok());
            let want = want.map(|w| w.map(str::to_string));
            assert_eq!(got, want, "{why}: {cmd:?}");
        }
        let e = request("run-job x; id").unwrap().unwrap_err();
        assert!(!e.0.contains('\n'), "one line: {e}");
    }
}

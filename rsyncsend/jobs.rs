//! `run-job NAME`: the backup server asks for one job the workstation's
//! root declared (`forced-command fleet job NAME`). As the backup account
//! rsyncsend only checks the line (exactly `run-job NAME`, a valid name,
//! declared where it can tell) and hands the name over on stdin to its
//! root helper, through the one sudoers line without arguments; the root
//! helper reads the name again, checks it against the declarations only
//! root can write, runs the job (`jobs::run`) and writes the answer on
//! stdout (`jobs::answer`).

use backuppc_enroll::config::ClientConfig;
use backuppc_enroll::jobs;
use backuppc_enroll::log::Audit;
use backuppc_enroll::rsync::StdinWithDeadline;
use serde_json::json;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// For a command of the `run-job` family: the helper's exit status once
/// it ran, or why the command is refused (nothing ran). None: not a job
/// command.
pub fn request(
    cmd: &str,
    cfg: &ClientConfig,
    config: &Path,
    audit: &Audit,
    client: &str,
) -> Option<Result<ExitCode, String>> {
    let name = match jobs::request(cmd)? {
        Ok(name) => name,
        Err(e) => return Some(Err(e.0)),
    };
    // Refused early when the declarations are readable here (they are
    // root's, usually 0644); the root helper checks again in any case.
    if let Ok(declared) = jobs::load(&cfg.jobs_dir) {
        if let Err(e) = jobs::find(&declared, &name) {
            return Some(Err(format!("{}: {}", jobs::VERB, e.0)));
        }
    }
    audit.event("job-requested", json!({ "client": client, "job": name }));
    Some(hand_over(&name, cfg, config))
}

/// Run the root helper with `name` on its stdin; its stdout (the answer)
/// and stderr go straight to the server.
fn hand_over(name: &str, cfg: &ClientConfig, config: &Path) -> Result<ExitCode, String> {
    let argv = crate::root_helper(cfg, config, "run-job");
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that refused before reading leaves a broken pipe: its
        // own line says why.
        let _ = stdin.write_all(format!("{name}\n").as_bytes());
    }
    let status = child.wait().map_err(|e| format!("cannot wait for {}: {e}", argv[0]))?;
    Ok(ExitCode::from(status.code().map(|c| c.clamp(0, 255) as u8).unwrap_or(1)))
}

/// The most a name line may be: a name of 64 bytes and its newline.
const NAME_LINE: u64 = 65;

/// The root helper: read the name, run the job, send the answer. Exit 0
/// once the answer is written (the job's outcome is in it), 1 when
/// refused (then nothing ran).
pub fn run_job(config: &Path) -> ExitCode {
    let audit = Audit::new(c"rsyncsend", None);
    let refuse = |why: &str| {
        audit.event("refused", json!({ "helper": "run-job", "reason": why }));
        eprintln!("rsyncsend: refused: {}: {why}", jobs::VERB);
        ExitCode::from(1)
    };
    let (job, name) = match prepare(config) {
        Ok(j) => j,
        Err(why) => return refuse(&why),
    };
    let ran = jobs::run::run(&job);
    audit.event(
        if ran.status.ok { "job" } else { "job-failed" },
        json!({ "helper": "run-job", "job": name, "status": ran.status }),
    );
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    match ran.write(out).and_then(|mut w| w.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            audit.event("job-answer-lost", json!({ "helper": "run-job", "job": name, "reason": e.to_string() }));
            ExitCode::from(1)
        }
    }
}

fn prepare(config: &Path) -> Result<(jobs::Job, String), String> {
    let cfg = crate::dumps::root_config(config, "run-job")?;
    let name = read_name()?;
    let declared = jobs::load(&cfg.jobs_dir).map_err(|e| format!("the declared jobs are refused: {}", e.0))?;
    let job = jobs::find(&declared, &name).map_err(|e| e.0)?.clone();
    Ok((job, name))
}

/// The job name, alone on the one line of stdin, checked again.
fn read_name() -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = Vec::new();
    StdinWithDeadline { deadline }
        .take(NAME_LINE + 1)
        .read_to_end(&mut line)
        .map_err(|e| format!("cannot read the job name on stdin: {e}"))?;
    let text = std::str::from_utf8(&line).map_err(|_| "the job name on stdin is not UTF-8".to_string())?;
    let Some(name) = text.strip_suffix('\n') else {
        return Err("stdin must hold the job name and one newline, nothing else".into());
    };
    backuppc_enroll::dumps::check_word("job", name).map_err(|e| e.0)?;
    Ok(name.to_string())
}

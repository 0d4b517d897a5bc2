//! `enroll jobs`: the jobs the backup server may run here by name, as the
//! root helper of `run-job` reads and checks them.

use anyhow::{bail, Context, Result};
use backuppc_enroll::config::ClientConfig;
use backuppc_enroll::jobs;
use backuppc_enroll::names::{display_text, printable};
use std::path::Path;

pub fn list(config: &Path, json: bool) -> Result<()> {
    backuppc_enroll::restore_sigpipe();
    if !nix::unistd::geteuid().is_root() {
        bail!("enroll jobs must run as root: the declarations are root's files, checked as root runs them");
    }
    let cfg = ClientConfig::load(config)?;
    let all = jobs::load(&cfg.jobs_dir)
        .with_context(|| format!("the jobs declared in {} are refused", cfg.jobs_dir.display()))?;
    if json {
        let items: Vec<serde_json::Value> = all
            .iter()
            .map(|j| {
                serde_json::json!({
                    "name": j.name,
                    "argv": j.argv,
                    "user": j.user,
                    "timeout": j.timeout,
                    "max_output": j.max_output,
                    "results": j.results,
                    "result_dir": j.result_dir,
                    "max_result_files": j.max_result_files,
                    "max_result_size": j.max_result_size,
                    "declared_in": j.source,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no jobs declared in {}", cfg.jobs_dir.display());
        return Ok(());
    }
    println!("{:<20} {:<12} {:>8}  COMMAND", "NAME", "USER", "TIMEOUT");
    for j in &all {
        println!(
            "{:<20} {:<12} {:>7}s  {}",
            j.name,
            j.user,
            j.timeout,
            j.argv.iter().map(|a| printable(a)).collect::<Vec<_>>().join(" ")
        );
        let mut results: Vec<String> = j.results.iter().map(|p| p.display().to_string()).collect();
        results.extend(j.result_dir.iter().map(|d| format!("{}/ (folder)", d.display())));
        if !results.is_empty() {
            println!("    results: {}", display_text(&results.join(", ")));
        }
    }
    Ok(())
}

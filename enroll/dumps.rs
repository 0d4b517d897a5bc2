//! `enroll dump` and `enroll dumps`: the declared dumps by hand, as root.
//! The same declarations, checks and runs as the server's `run-dumps`.

use anyhow::{bail, Context, Result};
use backuppc_enroll::config::ClientConfig;
use backuppc_enroll::dumps::{self, Dump, Status};
use std::path::Path;

fn declared(config: &Path) -> Result<Vec<Dump>> {
    if !nix::unistd::geteuid().is_root() {
        bail!("enroll dump and dumps must run as root: the dumps run as their own accounts and are root's files");
    }
    let cfg = ClientConfig::load(config)?;
    dumps::load(&cfg.dumps_dir, &dumps::shares(&cfg))
        .with_context(|| format!("the dumps declared in {} are refused", cfg.dumps_dir.display()))
}

pub fn dump(config: &Path, args: &crate::cli::DumpArgs) -> Result<()> {
    let all = declared(config)?;
    let chosen: Vec<Dump> = match &args.name {
        Some(name) => match all.iter().find(|d| &d.name == name) {
            Some(d) => vec![d.clone()],
            None => {
                let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
                bail!(
                    "no dump named {} is declared (declared: {}): see enroll dumps",
                    backuppc_enroll::names::quoted(name),
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                );
            }
        },
        None => all,
    };
    let mut failed = Vec::new();
    for d in &chosen {
        let o = dumps::run::run_one(d);
        println!("{}", o.line());
        if !o.status.ok {
            failed.push(o.name);
        }
    }
    if !failed.is_empty() {
        bail!("{} failed: see the lines above and the status files", failed.join(", "));
    }
    Ok(())
}

pub fn list(config: &Path, json: bool) -> Result<()> {
    backuppc_enroll::restore_sigpipe();
    let all = declared(config)?;
    let rows: Vec<(Dump, Option<Status>)> = all
        .into_iter()
        .map(|d| {
            let s = dumps::run::read_status(&d);
            (d, s)
        })
        .collect();
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(d, s)| {
                serde_json::json!({
                    "name": d.name,
                    "kind": d.kind.name(),
                    "output": d.output,
                    "on_failure": d.on_failure,
                    "declared_in": d.source,
                    "status": s,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no dumps declared");
        return Ok(());
    }
    println!("{:<20} {:<11} {:<21} {:<7} {:>12}  OUTPUT", "NAME", "KIND", "LAST RUN", "RESULT", "SIZE");
    for (d, s) in &rows {
        let (when, result, size) = match s {
            None => ("never".to_string(), "-".to_string(), "-".to_string()),
            Some(s) => (
                s.end.clone(),
                if s.ok { "ok".into() } else { "FAILED".into() },
                s.size.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            ),
        };
        println!(
            "{:<20} {:<11} {:<21} {:<7} {:>12}  {}",
            d.name,
            d.kind.name(),
            when,
            result,
            size,
            d.output.display()
        );
        if let Some(Status { ok: false, error: Some(e), .. }) = s {
            println!("    {}", backuppc_enroll::names::display_text(e));
        }
    }
    Ok(())
}

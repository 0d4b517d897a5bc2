//! `dropbox`: the forced command of a vendor's key that may only upload
//! archives into one drop box (serve.rs), and the admin's subcommands to
//! set it up, remove it and prune it (setup.rs), and the vendor's
//! `push` client (push.rs).

mod cli;
mod push;
mod serve;
mod setup;

use backuppc_enroll::dropbox::{prune, DropboxConfig};
use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return serve::serve(&cli.config);
    };
    backuppc_enroll::restore_sigpipe();
    let result = match command {
        Command::Setup { key, from } => setup::setup(&cli.config, &key, from),
        Command::Uninstall { remove_archives } => setup::uninstall(&cli.config, remove_archives),
        Command::Prune { dry_run } => prune_box(&cli.config, dry_run),
        Command::Push { to, port, key, known_hosts, timeout, no_sidecar, files } => {
            let p = push::Push {
                to,
                port,
                key,
                known_hosts,
                timeout: std::time::Duration::from_secs(timeout.max(1)),
                sidecar: !no_sidecar,
            };
            push::push(&p, &files)
        }
    };
    match result {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dropbox: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn prune_box(config: &std::path::Path, dry_run: bool) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let cfg = DropboxConfig::load(config)?;
    let p = prune::prune(&cfg, dry_run).with_context(|| format!("cannot prune {}", cfg.folder.display()))?;
    let audit = backuppc_enroll::log::Audit::new(c"dropbox", cfg.audit_log.clone());
    if !dry_run {
        audit.event(
            "pruned",
            serde_json::json!({ "deleted": p.deleted, "kept": p.kept.len(), "quarantine_deleted": p.quarantined }),
        );
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut out: Vec<String> = p.deleted.iter().map(|n| format!("{verb} {n}")).collect();
    out.extend(p.stale_temps.iter().map(|n| format!("{verb} the abandoned upload .incoming/{n}")));
    out.extend(p.quarantined.iter().map(|n| format!("{verb} the old quarantined file .quarantine/{n}")));
    out.push(format!("kept {} archive(s) in {}", p.kept.len(), cfg.folder.display()));
    Ok(out)
}

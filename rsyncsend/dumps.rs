//! `run-dumps`: the backup server's one way to have the workstation take
//! its declared dumps (BackupPC's DumpPreUserCmd sends exactly that word
//! over the restricted key). As the backup account it only hands over to
//! its root helper through the fixed sudoers line; the root helper reads
//! the declarations only root can write and takes them (`dumps::run`).

use backuppc_enroll::config::ClientConfig;
use backuppc_enroll::dumps;
use backuppc_enroll::log::Audit;
use serde_json::json;
use std::path::{Component, Path};
use std::process::ExitCode;

/// For a command of the `run-dumps` family: the argv that runs the root
/// helper, or why the command is refused. None: not a dump command.
pub fn trigger(cmd: &str, cfg: &ClientConfig, config: &Path) -> Option<Result<Vec<String>, String>> {
    match dumps::trigger(cmd)? {
        Ok(()) => Some(Ok(crate::root_helper(cfg, config, "run-dumps"))),
        Err(e) => Some(Err(e.0)),
    }
}

/// The root helper: take every declared dump; exit 1 when one whose
/// failure fails the backup failed, or when the declarations are refused
/// (then nothing runs).
pub fn run_dumps(config: &Path) -> ExitCode {
    let audit = Audit::new(c"rsyncsend", None);
    match load(config) {
        Ok(list) => {
            let outcomes = dumps::run::run_all(&list);
            let mut failed = false;
            for o in &outcomes {
                audit.event(
                    if o.status.ok { "dump" } else { "dump-failed" },
                    json!({ "helper": "run-dumps", "dump": o.name, "status": o.status }),
                );
                eprintln!("rsyncsend: {}", o.line());
                failed |= o.fails_backup();
            }
            if outcomes.is_empty() {
                eprintln!("rsyncsend: no dumps declared");
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(why) => {
            audit.event("refused", json!({ "helper": "run-dumps", "reason": why }));
            eprintln!("rsyncsend: refused: dumps not taken: {why}");
            ExitCode::from(1)
        }
    }
}

/// The checked declarations of the config at `config`, as root.
pub fn load(config: &Path) -> Result<Vec<dumps::Dump>, String> {
    let cfg = root_config(config, "run-dumps")?;
    dumps::load(&cfg.dumps_dir, &dumps::shares(&cfg)).map_err(|e| e.0)
}

/// The config a root helper (`verb`) reads: this process must be root,
/// the path absolute and plain, the file and its folder root's alone.
pub fn root_config(config: &Path, verb: &str) -> Result<ClientConfig, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{verb} must run as root, through sudo"));
    }
    if !config.is_absolute() || config.components().any(|c| c == Component::ParentDir) {
        return Err(format!("config path {} must be absolute, without '..'", config.display()));
    }
    dumps::check_root_owned("the config", config).map_err(|e| e.0)?;
    ClientConfig::load(config).map_err(|e| e.to_string())
}

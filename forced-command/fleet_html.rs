//! `fleet report --html FILE`: the report's page (`fleet::html`) written
//! atomically, owned by whoever runs the report, mode 0644 as narrowed by
//! the umask (or the owner and mode of the file it replaces).

use anyhow::{Context, Result};
use backuppc_enroll::fleet::health::HostHealth;
use backuppc_enroll::fleet::html::{self, Run};
use backuppc_enroll::store::atomic::{self, Ownership};
use std::path::Path;

pub fn write(path: &Path, hosts: &[HostHealth], run: Run) -> Result<()> {
    let mine = Ownership {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        mode: 0o644 & !umask(),
    };
    atomic::write(path, html::page(hosts, run).as_bytes(), Ownership::of_existing_or(path, mine)).with_context(|| {
        format!(
            "cannot write the report's page {}: check that its folder exists and that you may write there",
            path.display()
        )
    })
}

/// The process's umask, as the kernel reports it (reading it with
/// umask(2) would change it); 022 where /proc does not say.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Umask:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok()))
        })
        .unwrap_or(0o022)
}

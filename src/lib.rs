//! Shared code of the backuppc-enroll toolkit. The binaries are thin layers
//! over it. Its folders are its domains:
//!
//! - `protocol`: the wire protocol between `enroll` and `forced-command`
//!   (request, hello block, answer);
//! - `ssh`: the SSH environment, `authorized_keys` and `known_hosts` lines,
//!   `enroll`'s SSH client;
//! - `backuppc`: BackupPC's `hosts` file and per-host config;
//! - `rsync`: the allow-list of rsync invocations `rsyncsend` serves;
//! - `server`: the server's enrollment policy, directory, tokens;
//! - `store`: atomic writes, locks, the registry;
//! - `sandbox`: what the kernel (Landlock) confines root rsync to.
//!
//! Beside them: configuration (`config`, `paths`), validators for every
//! name that crosses a trust boundary (`names`), the audit log (`log`) and
//! the site bundle (`bundle`), and the raw system calls (`sys`).

pub mod backuppc;
pub mod bundle;
pub mod config;
pub mod dropbox;
pub mod dumps;
pub mod fleet;
pub mod jobs;
pub mod log;
pub mod names;
pub mod paths;
pub mod protocol;
pub mod rsync;
pub mod sandbox;
pub mod server;
pub mod ssh;
pub mod store;
pub mod sys;

/// Let SIGPIPE end the process, as it does other Unix tools (Rust ignores
/// it, so printing into a closed pipe fails or panics). For commands run by
/// a person that write nothing over the network after their output starts;
/// not for serving, where every write is checked.
pub fn restore_sigpipe() {
    // SAFETY: resetting a signal to its default disposition, before any
    // thread exists, has no memory-safety effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Version sent in the hello block and printed by `rsyncsend status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `--version` prints: the version and, when built from a git
/// checkout, the commit (set by `build.rs`).
pub const LONG_VERSION: &str = env!("BACKUPPC_ENROLL_LONG_VERSION");

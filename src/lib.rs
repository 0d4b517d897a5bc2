//! Shared code of the backuppc-enroll toolkit: the wire protocol between
//! `enroll` and `forced-command` (request, hello block, answer), the SSH
//! environment, `authorized_keys` and `known_hosts` lines, BackupPC's files,
//! atomic writes and locks, configuration, the rsync invocation policy of
//! `rsyncsend`, and the audit log. The binaries are thin layers over this.

pub mod answer;
pub mod atomic;
pub mod authorized_keys;
pub mod bundle;
pub mod client;
pub mod config;
pub mod hello;
pub mod hosts;
pub mod known_hosts;
pub mod ldap;
pub mod log;
pub mod names;
pub mod notify;
pub mod paths;
pub mod perhost;
pub mod policy;
pub mod registry;
pub mod request;
pub mod rsync;
pub mod sshenv;
pub mod tokens;

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

//! Where the toolkit's config files live by default. Kept apart from
//! `config` so that `build.rs`, which renders the man pages from the
//! command-line definitions, can include it as it is.

/// Read by `enroll` and `rsyncsend`.
pub const CLIENT_CONFIG: &str = "/etc/backuppc-enroll/client.toml";
/// Read by `forced-command`.
pub const SERVER_CONFIG: &str = "/etc/backuppc-enroll/server.toml";

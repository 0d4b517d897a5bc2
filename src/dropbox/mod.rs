//! The drop box: a restricted account that a vendor pushes backup archives
//! into with plain `scp` or `sftp`, and nothing else. sshd runs the
//! `dropbox` binary as the key's forced command; it serves an upload-only
//! subset of SFTP version 3 (`sftp`) and scp's legacy sink mode (`scp`),
//! writes each upload to an exclusive temporary file, verifies it (gzip and
//! tar read to the end, a `NAME.sha256` sidecar when sent), and moves it
//! into place without ever replacing a file.
//!
//! This module must never let a client read a file, list others, remove,
//! rename or overwrite anything, or name a path outside the box: every
//! client path is reduced to one checked file name before it touches the
//! file system.

pub mod command;
pub mod config;
pub mod prune;
pub mod scp;
pub mod sftp;
pub mod store;
pub mod verify;

pub use config::DropboxConfig;

//! OpenSSH's side of things: the environment sshd gives a forced command
//! (read once, then passed down), `authorized_keys` and `known_hosts`
//! lines, and `enroll`'s in-process SSH client (`ssh2`).
//!
//! Key lines are rendered from parsed keys and validated options only,
//! never from text received over the wire. The client never trusts a host
//! key on first use and never asks for an agent, a pty or a forwarding.

pub mod authorized_keys;
pub mod client;
pub mod env;
pub mod known_hosts;

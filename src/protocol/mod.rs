//! The wire protocol between `enroll` and `forced-command`: the request
//! (`OS:logon` in `SSH_ORIGINAL_COMMAND`), the hello block the client
//! writes on stdin, and the server's answer; and the status query
//! (`status`), which asks whether the host is still enrolled.
//!
//! Everything here is pure parsing and rendering of bytes that cross the
//! trust boundary: no I/O, no lookups. Every parser is bounded in size and
//! has a fuzz target; nothing parsed here reaches a file before `names`
//! has validated it.

pub mod answer;
pub mod hello;
pub mod request;
pub mod status;

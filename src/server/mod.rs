//! The backup server's enrollment policy: which OS, logon, network and host
//! name may enroll (`policy`), the logon directory behind it (NSS, LDAP,
//! allow-list), enrollment tokens, and the optional webhook.
//!
//! Decisions are plain functions over values; lookups that touch the
//! system or the network sit behind the `Directory` and `Resolver` traits
//! so each rule is tested without them. A lookup that fails is a refusal,
//! never an acceptance.

pub mod directory;
pub mod notify;
pub mod policy;
pub mod tokens;

//! Fleet operations from the backup server over enrolled hosts
//! (`forced-command fleet`): which hosts a run targets, how BackupPC
//! reaches and trusts each one (its per-host config, per-host key and the
//! host key pinned under its alias), one SSH session per host made
//! in-process, and the report that classifies, folds and counts what came
//! back.
//!
//! It never asks a host for more than its restricted key allows (what
//! `rsyncsend` serves), never accepts a host key other than the pinned
//! one, and never leaves a targeted host out of the report.

pub mod health;
pub mod html;
pub mod mail;
pub mod report;
pub mod rotate;
pub mod selection;
pub mod session;
pub mod target;
pub mod trust;

pub use report::{HostResult, Outcome};

//! Durable state: crash-safe file replacement and locks (`atomic`), and the
//! server's registry of enrollments built on it.
//!
//! Nothing here ever writes a file in place: readers see the old contents
//! or the new, never a torn file, even after `kill -9`.

pub mod atomic;
pub mod registry;

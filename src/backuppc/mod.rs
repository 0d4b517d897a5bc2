//! BackupPC's own files, in the formats BackupPC reads and writes: the
//! `hosts` file and the per-host config `pc/HOST.pl`, and the host names
//! BackupPC keeps for itself.
//!
//! Writers here keep every byte they do not own (other hosts' lines,
//! comments, settings the CGI saved) and go through `store::atomic` under
//! BackupPC's own lock. Nothing here decides who may enroll.

pub mod backups;
pub mod hosts;
pub mod names;
pub mod perhost;

//! Work done without holding up the client: a detached child posts the
//! webhook's message, or tells BackupPC to reload, after forced-command
//! has answered and exited, so a slow or dead webhook or daemon never
//! delays or fails an enrollment.

use std::time::Duration;

pub fn detached(url: &str, text: &str) {
    in_background(|| {
        let _ = backuppc_enroll::server::notify::post(url, text, Duration::from_secs(3));
    });
}

/// Run `work` in a detached child (its own session, its standard streams
/// on /dev/null, so that sshd ends the client's session as soon as this
/// process exits), or here when no child can be made.
pub fn in_background(work: impl FnOnce()) {
    // SAFETY: single-threaded here; the child only calls async-signal-safe
    // functions before doing its own independent work and exiting.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                use std::os::fd::AsRawFd;
                for fd in 0..3 {
                    // SAFETY: plain dup2 on descriptors this process owns.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            work();
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {}
        Err(_) => work(),
    }
}

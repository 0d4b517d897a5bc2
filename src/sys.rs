//! The toolkit's raw system calls, each behind a safe function with its
//! `SAFETY:` reason. The rest of the code is safe Rust (syslog is wrapped
//! in `log`, Landlock rulesets are built with the `landlock` crate).

/// The Landlock ABI version the running kernel offers, or why there is
/// none: `ENOSYS` (not built in) or `EOPNOTSUPP` (built in, not enabled
/// in the boot-time LSM list). Only for reporting and for choosing the
/// fallback; the ruleset itself is built by the `landlock` crate.
pub fn landlock_abi() -> Result<u32, nix::errno::Errno> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset with a null attribute pointer, size
    // 0 and the VERSION flag only returns a number (or an error); it reads
    // no memory and creates no file descriptor.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(v as u32)
    }
}

/// Start writing `len` bytes of `file` from `offset` back to disk, without
/// waiting (`SYNC_FILE_RANGE_WRITE`): a large upload reaches the disk as
/// it arrives, so the `fsync` at its end has little left to do. Advisory:
/// an error only means the later `fsync` does all the work.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: sync_file_range only reads its integer arguments; the
    // descriptor is open for as long as `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Have the child `cmd` spawns start a session of its own (`setsid`):
/// no controlling terminal, and a process group the parent can kill as a
/// whole (a dump tool's own children included).
pub fn new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only setsid(2), which is async-signal-safe and touches no memory of
    // the parent; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn abi_is_a_number_or_a_reason() {
        match super::landlock_abi() {
            Ok(v) => assert!(v >= 1, "ABI versions start at 1"),
            Err(e) => assert!(matches!(e, nix::errno::Errno::ENOSYS | nix::errno::Errno::EOPNOTSUPP), "{e}"),
        }
    }
}

//! rsync's protected argument list (`-s`), read from stdin byte by byte
//! with bounds on size, count and time, so the rsync protocol after it
//! stays unread for the rsync that is exec'd.

use super::{refuse, Refusal};
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Bounds on the protected argument list read from stdin.
pub const MAX_PROTECTED_BYTES: usize = 64 * 1024;
pub const MAX_PROTECTED_ARGS: usize = 1024;

/// Read rsync's protected argument list from `input` one byte at a time,
/// so nothing after its terminating empty string is consumed: those bytes
/// are the rsync protocol, left for the rsync that is exec'd.
pub fn read_protected_args(input: &mut dyn Read, deadline: Instant) -> Result<Vec<String>, Refusal> {
    let mut args = Vec::new();
    let mut cur = Vec::new();
    let mut total = 0usize;
    let mut byte = [0u8; 1];
    loop {
        if Instant::now() > deadline {
            return refuse("timed out reading the protected arguments");
        }
        match input.read(&mut byte) {
            Ok(0) => return refuse("stdin ended inside the protected arguments"),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                return refuse("timed out reading the protected arguments")
            }
            Err(e) => return refuse(format!("cannot read the protected arguments: {e}")),
        }
        total += 1;
        if total > MAX_PROTECTED_BYTES {
            return refuse(format!("protected arguments exceed {MAX_PROTECTED_BYTES} bytes"));
        }
        if byte[0] != 0 {
            cur.push(byte[0]);
            continue;
        }
        if cur.is_empty() {
            return Ok(args);
        }
        let s = String::from_utf8(std::mem::take(&mut cur))
            .map_err(|_| Refusal("protected argument is not UTF-8".into()))?;
        args.push(s);
        if args.len() > MAX_PROTECTED_ARGS {
            return refuse(format!("more than {MAX_PROTECTED_ARGS} protected arguments"));
        }
    }
}

/// Standard input with a read deadline (poll before each read).
pub struct StdinWithDeadline {
    pub deadline: Instant,
}

impl Read for StdinWithDeadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let ms = left.min(Duration::from_millis(i32::MAX as u64)).as_millis() as i32;
        let stdin = io::stdin();
        let fd = stdin.as_fd();
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO)).map_err(io::Error::from)?;
        if n == 0 {
            return Err(io::ErrorKind::TimedOut.into());
        }
        nix::unistd::read(fd, buf).map_err(io::Error::from)
    }
}

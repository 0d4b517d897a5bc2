//! Serving, as sshd's forced command: one service for the command the
//! client asked for, over stdin/stdout; logs go to syslog and the audit
//! log only (sshd hands stdout and stderr to the client), and a refusal is
//! one line on stderr.

use backuppc_enroll::dropbox::command::{self, Service};
use backuppc_enroll::dropbox::store::{DropBox, Session};
use backuppc_enroll::dropbox::{scp, sftp, DropboxConfig};
use backuppc_enroll::log::Audit;
use backuppc_enroll::names;
use backuppc_enroll::ssh::authorized_keys;
use backuppc_enroll::ssh::env::SshEnv;
use serde_json::json;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// stdin that gives up after `timeout` without a byte, or at `deadline`
/// however steadily bytes come: a client that never sends, or that
/// trickles a byte now and then, holds no upload open for ever.
struct IdleInput {
    fd: File,
    timeout: Duration,
    deadline: Instant,
}

impl Read for IdleInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the session lasted longer than session_timeout"));
            }
            let wait = self.timeout.min(left);
            let ms =
                PollTimeout::try_from(wait.as_millis().clamp(1, i32::MAX as u128) as i32).map_err(io::Error::other)?;
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) if wait == self.timeout => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent nothing for too long"))
                }
                Ok(0) => continue,
                Ok(_) => return self.fd.read(buf),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn dup(fd: impl AsFd) -> io::Result<File> {
    let owned: OwnedFd = fd.as_fd().try_clone_to_owned()?;
    Ok(File::from(owned))
}

/// The key the client logged in with: from `SSH_USER_AUTH` (sshd's
/// `ExposeAuthInfo yes`), else the box's only key line, if it has one.
fn key_of(cfg: &DropboxConfig) -> (Option<String>, Option<&'static str>) {
    if let Some(path) = std::env::var_os("SSH_USER_AUTH") {
        if let Ok(text) = std::fs::read_to_string(path) {
            let key = text.lines().find_map(|l| l.strip_prefix("publickey ")).and_then(|k| names::public_key(k).ok());
            if let Some(k) = key {
                return (Some(names::fingerprint(&k)), Some("SSH_USER_AUTH"));
            }
        }
    }
    let keys = std::fs::read_to_string(cfg.home.join(".ssh/authorized_keys")).unwrap_or_default();
    let lines = authorized_keys::tagged_lines(&keys, &crate::setup::tag_of(cfg));
    if let [line] = lines.as_slice() {
        let key = line.split_whitespace().skip_while(|w| !w.starts_with("ssh-") && !w.starts_with("ecdsa-"));
        let key: Vec<&str> = key.take(2).collect();
        if let Ok(k) = names::public_key(&key.join(" ")) {
            return (Some(names::fingerprint(&k)), Some("the drop box's only key"));
        }
    }
    (None, None)
}

pub fn serve(config: &Path) -> ExitCode {
    let env = SshEnv::from_process();
    let client = env.client.map(|c| c.to_string());
    let cfg = match DropboxConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            Audit::new(c"dropbox", None).event("refused", json!({ "client": client, "reason": e.to_string() }));
            eprintln!("dropbox: refused: this drop box is not configured right; its admin has been told");
            return ExitCode::from(1);
        }
    };
    let audit = Audit::new(c"dropbox", cfg.audit_log.clone());
    let refuse = |audit: &Audit, why: &str| {
        audit.event("refused", json!({ "client": client, "reason": why, "command": env.original_command }));
        eprintln!("dropbox: refused: {why}");
        ExitCode::from(1)
    };
    let service = match command::parse(env.original_command.as_deref()) {
        Ok(s) => s,
        Err(why) => return refuse(&audit, &why),
    };
    let (key_fingerprint, key_source) = key_of(&cfg);
    let session = Session { client: env.client, key_fingerprint, key_source };
    let webhook = cfg.webhook.clone();
    let idle = Duration::from_secs(cfg.idle_timeout);
    let deadline = Instant::now() + Duration::from_secs(cfg.session_timeout);
    let bx = match DropBox::open(cfg, audit) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                &Audit::new(c"dropbox", None),
                &format!("the drop box's folders cannot be opened ({e}): its admin must run dropbox setup"),
            )
        }
    };
    let (input, output) = match (dup(io::stdin()), dup(io::stdout())) {
        (Ok(i), Ok(o)) => (IdleInput { fd: i, timeout: idle, deadline }, o),
        _ => return ExitCode::from(1),
    };
    bx.audit("session", json!({ "client": client, "service": format!("{service:?}"), "key": session.key_fingerprint }));
    let result = match &service {
        Service::Sftp => sftp::serve(input, output, &bx, &session),
        Service::ScpSink { target, .. } => scp::serve(input, output, &bx, &session, target),
    };
    if let Some(url) = webhook {
        for r in bx.accepted.borrow().iter() {
            let text = format!("drop box {}: received {} ({} bytes, sha256 {})", bx.cfg.user, r.name, r.size, r.sha256);
            if let Err(e) = backuppc_enroll::server::notify::post(&url, &text, Duration::from_secs(5)) {
                bx.audit("error", json!({ "reason": format!("webhook {url}: {e}") }));
            }
        }
    }
    match result {
        Ok(()) => {
            bx.audit("ended", json!({ "client": client, "accepted": bx.accepted.borrow().len() }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            bx.audit("ended", json!({ "client": client, "accepted": bx.accepted.borrow().len(), "reason": e }));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A pipe whose write end a thread feeds one byte every `every`, for
    /// `bytes` bytes.
    fn trickle(every: Duration, bytes: usize) -> File {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = File::from(w);
        std::thread::spawn(move || {
            for _ in 0..bytes {
                std::thread::sleep(every);
                if w.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        File::from(r)
    }

    #[test]
    fn a_client_that_trickles_is_cut_at_the_session_deadline() {
        let start = Instant::now();
        let mut input = IdleInput {
            fd: trickle(Duration::from_millis(50), 1000),
            timeout: Duration::from_secs(5),
            deadline: start + Duration::from_millis(600),
        };
        let mut got = 0;
        let mut buf = [0u8; 16];
        let e = loop {
            match input.read(&mut buf) {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("session_timeout"), "{e}");
        assert!(got >= 3, "bytes came in the meantime: {got}");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_silent_client_is_cut_after_the_idle_timeout() {
        let mut input = IdleInput {
            fd: trickle(Duration::from_secs(30), 1),
            timeout: Duration::from_millis(300),
            deadline: Instant::now() + Duration::from_secs(60),
        };
        let e = input.read(&mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains("sent nothing for too long"), "{e}");
    }
}

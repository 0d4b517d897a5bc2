//! One host's session of a fleet run, in-process with `ssh2`: TCP with a
//! connect timeout and `TCP_NODELAY`, key exchanges dropped by a busy
//! sshd (`MaxStartups`) retried with jittered pauses, the host key checked
//! against the pinned ones before anything else is sent, the per-host
//! key(s), one command, its output read with a bound, the session closed.
//! Every wait is cut to what is left of the host's total timeout, so no
//! host takes longer than that, whatever it does.

use super::report::{HostResult, Outcome};
use super::target::SshTarget;
use super::trust::{self, Pinned, Verdict};
use crate::ssh::client::{jitter, timed_out};
use ssh2::{MethodType, Session};
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most output kept of each stream of one host.
pub const MAX_OUTPUT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the TCP connection and the SSH greeting and key exchange.
    pub connect: Duration,
    /// For the whole session of one host.
    pub total: Duration,
}

struct Clock {
    start: Instant,
    deadline: Instant,
}

impl Clock {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// libssh2's timeout for the next blocking call: what is left, at
    /// least a millisecond (0 would mean "wait forever").
    fn millis(&self, cap: Duration) -> u32 {
        self.left().min(cap).as_millis().clamp(1, u32::MAX as u128) as u32
    }
}

fn done(t: &SshTarget, clock: &Clock, outcome: Outcome, detail: String) -> HostResult {
    HostResult::new(&t.host, outcome, clock.start.elapsed(), detail)
}

/// Run `command` on the host and classify what happened.
pub fn run(t: &SshTarget, pinned: &Pinned, command: &str, limits: Limits) -> HostResult {
    run_kept(t, pinned, command, limits, &mut Kept { max: MAX_OUTPUT, ..Kept::default() })
}

/// A session's stdout as bytes, up to `max` (more is dropped and `cut`
/// set), for an operation that parses it (a job's answer).
#[derive(Debug, Default)]
pub struct Kept {
    pub max: usize,
    pub bytes: Vec<u8>,
    pub cut: bool,
}

/// [`run`], keeping stdout in `kept`; the result's `stdout` is its first
/// [`MAX_OUTPUT`] bytes.
pub fn run_kept(t: &SshTarget, pinned: &Pinned, command: &str, limits: Limits, kept: &mut Kept) -> HostResult {
    let start = Instant::now();
    let clock = Clock { start, deadline: start + limits.total };
    let port = t.port;
    let addrs: Vec<SocketAddr> = match (t.connect_to.as_str(), port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return done(t, &clock, Outcome::Unreachable, format!("cannot resolve {}: {e}", t.connect_to)),
    };
    let keys: Vec<_> = t.keys.iter().filter(|k| k.exists()).collect();
    if keys.is_empty() {
        let names: Vec<String> = t.keys.iter().map(|k| k.display().to_string()).collect();
        return done(t, &clock, Outcome::NotSetUp, format!("no per-host key: {} missing", names.join(", ")));
    }
    let algos = pinned.algorithms();
    let sess = match handshake(t, &addrs, &algos, limits, &clock) {
        Ok(s) => s,
        Err((outcome, detail)) => return done(t, &clock, outcome, detail),
    };
    let result = session(t, &sess, pinned, &keys, command, &clock, kept);
    let _ = sess.disconnect(None, "fleet operation done", None);
    result
}

/// Connect and exchange keys, retrying the drops of a busy sshd.
fn handshake(
    t: &SshTarget,
    addrs: &[SocketAddr],
    algos: &[String],
    limits: Limits,
    clock: &Clock,
) -> Result<Session, (Outcome, String)> {
    let mut pause = Duration::from_millis(50);
    let mut drops = 0u32;
    loop {
        let tcp = connect(t, addrs, limits, clock)?;
        let mut sess = Session::new().map_err(|e| (Outcome::Failed, e.to_string()))?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(clock.millis(limits.connect));
        if !algos.is_empty() {
            let _ = sess.method_pref(MethodType::HostKey, &algos.join(","));
        }
        match sess.handshake() {
            Ok(()) => return Ok(sess),
            Err(e) if timed_out(&e) => {
                return Err((
                    Outcome::Timeout,
                    format!("{}:{} took the connection but sent no SSH greeting in time", t.connect_to, t.port),
                ))
            }
            Err(e) => {
                drops += 1;
                let jittered = pause.mul_f64(0.5 + jitter());
                if jittered >= clock.left() {
                    return Err((
                        Outcome::Unreachable,
                        format!(
                            "the SSH key exchange with {}:{} failed {drops} time(s) (sshd busy, MaxStartups?): {e}",
                            t.connect_to, t.port
                        ),
                    ));
                }
                std::thread::sleep(jittered);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn connect(t: &SshTarget, addrs: &[SocketAddr], limits: Limits, clock: &Clock) -> Result<TcpStream, (Outcome, String)> {
    let mut last = (Outcome::Unreachable, format!("{} has no address", t.connect_to));
    for a in addrs {
        let wait = clock.left().min(limits.connect);
        if wait.is_zero() {
            return Err((Outcome::Timeout, format!("no connection to {a} in time")));
        }
        match TcpStream::connect_timeout(a, wait) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                last = match e.kind() {
                    ErrorKind::ConnectionRefused => {
                        (Outcome::Refused, format!("connection to {a} refused: is sshd running?"))
                    }
                    ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                        (Outcome::Timeout, format!("no connection to {a} within {:.1}s", wait.as_secs_f64()))
                    }
                    _ => (Outcome::Unreachable, format!("cannot connect to {a}: {e}")),
                }
            }
        }
    }
    Err(last)
}

fn session(
    t: &SshTarget,
    sess: &Session,
    pinned: &Pinned,
    keys: &[&std::path::PathBuf],
    command: &str,
    clock: &Clock,
    kept: &mut Kept,
) -> HostResult {
    let timeout = |what: &str| done(t, clock, Outcome::Timeout, format!("no answer in time ({what})"));
    let Some((offered, _)) = sess.host_key() else {
        return done(t, clock, Outcome::Failed, "the host sent no host key".into());
    };
    let offered_fp = trust::fingerprint(offered);
    match pinned.check(offered) {
        Verdict::Match => {}
        Verdict::Mismatch => {
            return done(
                t,
                clock,
                Outcome::HostKeyMismatch,
                format!(
                    "the host offered {offered_fp}, but {} pins {} for {}: a reinstall or an attack; check it, then re-enroll the host",
                    t.known_hosts.display(),
                    pinned.fingerprints().join(", "),
                    t.alias
                ),
            )
        }
        Verdict::Revoked => {
            return done(
                t,
                clock,
                Outcome::HostKeyMismatch,
                format!("the host offered {offered_fp}, which {} lists as @revoked", t.known_hosts.display()),
            )
        }
        Verdict::NotPinned => {
            return done(
                t,
                clock,
                Outcome::NoPinnedKey,
                format!(
                    "no host key is pinned for {} in {} (the host offered {offered_fp}); re-enroll the host",
                    t.alias,
                    t.known_hosts.display()
                ),
            )
        }
    }
    for key in keys {
        sess.set_timeout(clock.millis(Duration::MAX));
        match sess.userauth_pubkey_file(&t.user, None, key, None) {
            Err(e) if timed_out(&e) => return timeout("authentication"),
            _ if sess.authenticated() => break,
            _ => {}
        }
    }
    if !sess.authenticated() {
        let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
        return done(
            t,
            clock,
            Outcome::AuthFailed,
            format!("{}@{} refused the per-host key {}: re-enroll the host", t.user, t.host, names.join(", ")),
        );
    }
    let broke = |e: String| done(t, clock, Outcome::Failed, format!("the session broke: {e}"));
    sess.set_timeout(clock.millis(Duration::MAX));
    let mut channel = match sess.channel_session() {
        Ok(c) => c,
        Err(e) if timed_out(&e) => return timeout("opening a channel"),
        Err(e) => return broke(e.to_string()),
    };
    if let Err(e) = channel.exec(command).and_then(|_| channel.send_eof()) {
        return if timed_out(&e) { timeout("running the command") } else { broke(e.to_string()) };
    }
    let stdout = &mut kept.bytes;
    let mut stderr = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // stdout then stderr, each until its end, each wait cut to what is left.
    for into_stderr in [false, true] {
        loop {
            if clock.left().is_zero() {
                return timeout("reading the output");
            }
            sess.set_timeout(clock.millis(Duration::MAX));
            let read = if into_stderr { channel.stderr().read(&mut buf) } else { channel.read(&mut buf) };
            let (sink, max) = if into_stderr { (&mut stderr, MAX_OUTPUT) } else { (&mut *stdout, kept.max) };
            match read {
                Ok(0) => break,
                Ok(n) => {
                    let room = max.saturating_sub(sink.len());
                    sink.extend_from_slice(&buf[..n.min(room)]);
                    kept.cut |= !into_stderr && n > room;
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => return timeout("reading the output"),
                Err(e) => return broke(e.to_string()),
            }
        }
    }
    sess.set_timeout(clock.millis(Duration::MAX));
    if let Err(e) = channel.wait_close() {
        return if timed_out(&e) { timeout("closing the channel") } else { broke(e.to_string()) };
    }
    let status = channel.exit_status().unwrap_or(-1);
    let mut r = done(t, clock, Outcome::Ok, String::new());
    r.exit_status = Some(status);
    r.stdout = String::from_utf8_lossy(&stdout[..stdout.len().min(MAX_OUTPUT)]).into_owned();
    r.stderr = String::from_utf8_lossy(&stderr).into_owned();
    if status != 0 {
        r.outcome = Outcome::Failed;
        r.detail = format!("`{command}` exited {status}");
    }
    r
}

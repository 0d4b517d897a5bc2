//! `enroll`'s SSH call to the backup server, in-process with `ssh2`: TCP with a
//! connect timeout and `TCP_NODELAY`, the server's host key checked
//! against the pinned keys (never trust on first use), the register key,
//! no agent, no pty, no forwarding. Sends `OS:logon` and the hello block,
//! returns the answer and the exit status.

use crate::names;
use crate::protocol::answer::MAX_ANSWER;
use ssh2::{CheckResult, ErrorCode, KnownHostFileKind, MethodType, Session};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

/// A number in [0, 1) from the OS's randomness, for backoff jitter.
pub(crate) fn jitter() -> f64 {
    use ssh_key::rand_core::{OsRng, RngCore};
    (OsRng.next_u32() as f64) / (u32::MAX as f64 + 1.0)
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach the backup server {server} port {port}: {why}. Check the network, and `server`/`port` in the client config")]
    Unreachable { server: String, port: u16, why: String },
    #[error("no host key is pinned for {server} (port {port}) in {file}; the setup package must carry the server's host key. The server offered {offered}")]
    NotPinned { server: String, port: u16, file: String, offered: String },
    #[error("the backup server's host key does not match the pinned one: the server offered {offered}, {file} pins {pinned}. This may be an attack, or the server was reinstalled: ask the backup administrator")]
    Mismatch { offered: String, pinned: String, file: String },
    #[error("the backup server refused the register key {key} for user {user}: the setup package may be outdated, ask the backup administrator")]
    AuthRefused { key: String, user: String },
    #[error("the backup server {server} port {port} accepted the connection but did not answer within {secs} s: check that `port` in the client config is the server's SSH port, and that sshd runs there and is not overloaded (`timeout` in the client config waits longer)")]
    NoGreeting { server: String, port: u16, secs: u64 },
    #[error("the backup server {server} port {port} took the request but did not finish the enrollment within {secs} s: it may be waiting on its directory or on a lock; try again later, or ask the backup administrator to look at its audit log")]
    NoAnswer { server: String, port: u16, secs: u64 },
    #[error("the SSH exchange with the backup server failed: {0}")]
    Ssh(String),
    #[error("the backup server's answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
}

impl From<ssh2::Error> for CallError {
    fn from(e: ssh2::Error) -> Self {
        CallError::Ssh(e.to_string())
    }
}

pub struct Call<'a> {
    pub server: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub register_key: &'a Path,
    pub host_keys_file: &'a Path,
    pub timeout: Duration,
    /// Local address to connect from (default: the system's choice).
    pub source: Option<IpAddr>,
    /// `TCP_NODELAY` on the socket (on in enroll: the handshake's small
    /// packets otherwise wait on Nagle and delayed ACKs; the benchmark
    /// measures both).
    pub nodelay: bool,
}

/// libssh2's LIBSSH2_ERROR_TIMEOUT: a blocking call waited `set_timeout`.
pub(crate) fn timed_out(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(-9)
}

fn connect_from(source: Option<IpAddr>, to: &SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let Some(src) = source else { return TcpStream::connect_timeout(to, timeout) };
    let socket = socket2::Socket::new(socket2::Domain::for_address(*to), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(src, 0).into())?;
    socket.connect_timeout(&(*to).into(), timeout)?;
    Ok(socket.into())
}

pub struct Reply {
    pub stdout: Vec<u8>,
    pub exit_status: i32,
}

/// `algorithm base64` keys pinned for `server`:`port` in a known_hosts
/// file (plain host patterns; `[host]:port` when the port is not 22).
pub fn pinned_keys(known_hosts: &str, server: &str, port: u16) -> Vec<String> {
    let want = if port == 22 { server.to_string() } else { format!("[{server}]:{port}") };
    known_hosts
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('@'))
        .filter_map(|l| {
            let (hosts, key) = l.split_once(char::is_whitespace)?;
            hosts.split(',').any(|h| h == want).then(|| key.trim().to_string())
        })
        .collect()
}

fn fingerprints(keys: &[String]) -> String {
    let fps: Vec<String> = keys
        .iter()
        .filter_map(|k| names::public_key(k).ok())
        .map(|k| format!("{} {}", k.algorithm(), names::fingerprint(&k)))
        .collect();
    if fps.is_empty() {
        "nothing".into()
    } else {
        fps.join(", ")
    }
}

impl Call<'_> {
    fn no_greeting(&self) -> CallError {
        CallError::NoGreeting { server: self.server.into(), port: self.port, secs: self.timeout.as_secs() }
    }

    /// A wait past the timeout after the request was sent, or another failure.
    fn after_request(&self, e: ssh2::Error) -> CallError {
        if timed_out(&e) {
            CallError::NoAnswer { server: self.server.into(), port: self.port, secs: self.timeout.as_secs() }
        } else {
            e.into()
        }
    }

    fn io_after_request(&self, e: std::io::Error) -> CallError {
        if e.kind() == std::io::ErrorKind::TimedOut {
            CallError::NoAnswer { server: self.server.into(), port: self.port, secs: self.timeout.as_secs() }
        } else {
            CallError::Ssh(e.to_string())
        }
    }

    fn connect_tcp(&self) -> Result<TcpStream, CallError> {
        let unreachable = |why: String| CallError::Unreachable { server: self.server.into(), port: self.port, why };
        let addrs: Vec<SocketAddr> = (self.server, self.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("name lookup failed ({e})")))?
            .collect();
        let mut last = String::from("no address");
        for a in addrs {
            match connect_from(self.source, &a, self.timeout) {
                Ok(s) => {
                    // Small handshake packets: do not let Nagle delay them.
                    let _ = s.set_nodelay(self.nodelay);
                    return Ok(s);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }

    /// Connect and do the key exchange. sshd drops connections at key
    /// exchange when too many are unauthenticated (`MaxStartups`), which a
    /// wave of enrollments causes: such a drop is retried with jittered,
    /// growing pauses until the timeout.
    fn handshake_with_retries(&self, host_key_algos: &[&str]) -> Result<Session, CallError> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let tcp = self.connect_tcp()?;
            let mut sess = Session::new()?;
            sess.set_tcp_stream(tcp);
            sess.set_timeout(self.timeout.as_millis().min(u32::MAX as u128) as u32);
            // Offer the host key algorithms we have pinned, in file order,
            // so the server proves the key we can check.
            if !host_key_algos.is_empty() {
                let _ = sess.method_pref(MethodType::HostKey, &host_key_algos.join(","));
            }
            match sess.handshake() {
                Ok(()) => return Ok(sess),
                // The whole timeout went by without a word: a retry
                // would only wait as long again.
                Err(e) if timed_out(&e) => return Err(self.no_greeting()),
                Err(e) => {
                    let jittered = pause.mul_f64(0.5 + jitter());
                    if Instant::now() + jittered >= deadline {
                        return Err(e.into());
                    }
                    std::thread::sleep(jittered);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    pub fn run(&self, command: &str, stdin: &[u8]) -> Result<Reply, CallError> {
        let pinned_text = std::fs::read_to_string(self.host_keys_file).map_err(|e| CallError::NotPinned {
            server: self.server.into(),
            port: self.port,
            file: format!("{} ({e})", self.host_keys_file.display()),
            offered: "nothing yet (not contacted)".into(),
        })?;
        let pinned = pinned_keys(&pinned_text, self.server, self.port);
        let mut algos: Vec<&str> = pinned.iter().filter_map(|k| k.split(' ').next()).collect();
        algos.dedup();
        let sess = self.handshake_with_retries(&algos)?;
        let (offered_blob, _) = sess.host_key().ok_or_else(|| CallError::Ssh("the server sent no host key".into()))?;
        let offered = ssh_key::PublicKey::from_bytes(offered_blob)
            .map(|k| format!("{} {}", k.algorithm(), names::fingerprint(&k)))
            .unwrap_or_else(|_| "an unreadable key".into());
        let mut kh = sess.known_hosts()?;
        kh.read_file(self.host_keys_file, KnownHostFileKind::OpenSSH)?;
        match kh.check_port(self.server, self.port, offered_blob) {
            CheckResult::Match => {}
            CheckResult::Mismatch => {
                return Err(CallError::Mismatch {
                    offered,
                    pinned: fingerprints(&pinned),
                    file: self.host_keys_file.display().to_string(),
                })
            }
            CheckResult::NotFound | CheckResult::Failure => {
                return Err(if pinned.is_empty() {
                    CallError::NotPinned {
                        server: self.server.into(),
                        port: self.port,
                        file: self.host_keys_file.display().to_string(),
                        offered,
                    }
                } else {
                    CallError::Mismatch {
                        offered,
                        pinned: fingerprints(&pinned),
                        file: self.host_keys_file.display().to_string(),
                    }
                })
            }
        }
        let auth = sess.userauth_pubkey_file(self.user, None, self.register_key, None);
        if auth.as_ref().is_err_and(timed_out) {
            return Err(self.no_greeting());
        }
        if auth.is_err() || !sess.authenticated() {
            return Err(CallError::AuthRefused {
                key: self.register_key.display().to_string(),
                user: self.user.into(),
            });
        }
        let mut channel = sess.channel_session().map_err(|e| self.after_request(e))?;
        channel.exec(command).map_err(|e| self.after_request(e))?;
        channel.write_all(stdin).map_err(|e| self.io_after_request(e))?;
        channel.send_eof().map_err(|e| self.after_request(e))?;
        let mut stdout = Vec::new();
        Read::by_ref(&mut channel)
            .take(MAX_ANSWER as u64 + 1)
            .read_to_end(&mut stdout)
            .map_err(|e| self.io_after_request(e))?;
        if stdout.len() > MAX_ANSWER {
            return Err(CallError::TooLarge);
        }
        let mut sink = Vec::new();
        let _ = channel.stderr().take(MAX_ANSWER as u64).read_to_end(&mut sink);
        channel.wait_close().map_err(|e| self.after_request(e))?;
        let exit_status = channel.exit_status()?;
        let _ = sess.disconnect(None, "enrollment done", None);
        Ok(Reply { stdout, exit_status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_lookup() {
        let kh = "# comment\nbackup.example.org,10.0.0.1 ssh-ed25519 AAAA1\n[backup.example.org]:2222 ssh-ed25519 AAAA2\n@revoked backup.example.org ssh-rsa X\nother ssh-ed25519 AAAA3\n";
        assert_eq!(pinned_keys(kh, "backup.example.org", 22), ["ssh-ed25519 AAAA1"]);
        assert_eq!(pinned_keys(kh, "10.0.0.1", 22), ["ssh-ed25519 AAAA1"]);
        assert_eq!(pinned_keys(kh, "backup.example.org", 2222), ["ssh-ed25519 AAAA2"]);
        assert!(pinned_keys(kh, "backup", 22).is_empty(), "no partial match");
    }
}

//! `dropbox push`: the vendor's side, for a vendor who wants more than
//! plain scp. One in-process SSH connection (ssh2) with the drop box's
//! host key checked against a pinned known_hosts file (never trust on
//! first use), timeouts on connecting and on every exchange, then per
//! archive: its `NAME.sha256` sidecar, the archive opened as a new file
//! (exclusive), written, closed (the drop box's verification answers the
//! close), and its size checked.

use anyhow::{bail, Context, Result};
use backuppc_enroll::dropbox::verify;
use backuppc_enroll::names;
use ssh2::{CheckResult, ErrorCode, KnownHostFileKind, OpenFlags, OpenType, Session};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Push {
    pub to: String,
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub timeout: Duration,
    pub sidecar: bool,
}

/// What an SFTP status means for the vendor.
fn status_text(e: &ssh2::Error) -> &'static str {
    match e.code() {
        ErrorCode::SFTP(2) => "no such file",
        ErrorCode::SFTP(3) => {
            "not allowed (the name does not match the drop box's pattern, or the request is not an upload)"
        }
        ErrorCode::SFTP(4) => {
            "failure (already there, no room, or the drop box's checks failed: its admin's log says which)"
        }
        _ => "error",
    }
}

fn connect(p: &Push) -> Result<(Session, String)> {
    let (user, host) = p.to.rsplit_once('@').context("--to must be USER@HOST")?;
    names::user_name(user).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let addr = (host, p.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, p.timeout)
        .with_context(|| format!("cannot reach the drop box {host} port {}", p.port))?;
    let mut sess = Session::new()?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(p.timeout.as_millis().min(u32::MAX as u128) as u32);
    sess.handshake().with_context(|| format!("no SSH handshake with {host} port {}", p.port))?;
    let (blob, _) = sess.host_key().context("the drop box sent no host key")?;
    let offered = ssh_key::PublicKey::from_bytes(blob)
        .map(|k| format!("{} {}", k.algorithm(), names::fingerprint(&k)))
        .unwrap_or_else(|_| "an unreadable key".into());
    let mut kh = sess.known_hosts()?;
    kh.read_file(&p.known_hosts, KnownHostFileKind::OpenSSH)
        .with_context(|| format!("cannot read the pinned host keys {}", p.known_hosts.display()))?;
    match kh.check_port(host, p.port, blob) {
        CheckResult::Match => {}
        CheckResult::Mismatch => bail!(
            "the drop box's host key ({offered}) is not the one pinned in {}: this may be an attack, or the server was reinstalled; ask its admin",
            p.known_hosts.display()
        ),
        CheckResult::NotFound | CheckResult::Failure => bail!(
            "no host key is pinned for {host} port {} in {} (the drop box offered {offered}): add the one its admin gives you",
            p.port,
            p.known_hosts.display()
        ),
    }
    if sess.userauth_pubkey_file(user, None, &p.key, None).is_err() || !sess.authenticated() {
        bail!("the drop box refused the key {} for {user}: ask its admin to install it", p.key.display());
    }
    Ok((sess, host.to_string()))
}

fn send(sftp: &ssh2::Sftp, name: &str, mut body: impl Read, size: u64) -> Result<()> {
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE;
    let mut remote = sftp
        .open_mode(Path::new(name), flags, 0o640, OpenType::File)
        .map_err(|e| anyhow::anyhow!("the drop box refused {name}: {}", status_text(&e)))?;
    let mut buf = vec![0u8; 255 << 10];
    loop {
        let n = body.read(&mut buf).with_context(|| format!("cannot read {name}"))?;
        if n == 0 {
            break;
        }
        remote.write_all(&buf[..n]).with_context(|| format!("the drop box stopped taking {name}"))?;
    }
    remote.close().map_err(|e| anyhow::anyhow!("the drop box did not keep {name}: {}", status_text(&e)))?;
    let st = sftp.stat(Path::new(name)).with_context(|| format!("cannot check {name} in the drop box"))?;
    if st.size != Some(size) {
        bail!("the drop box holds {:?} bytes of {name}, not {size}", st.size);
    }
    Ok(())
}

pub fn push(p: &Push, files: &[PathBuf]) -> Result<Vec<String>> {
    if files.is_empty() {
        bail!("name at least one archive to push");
    }
    let (sess, host) = connect(p)?;
    let sftp = sess.sftp().context("the drop box did not start SFTP")?;
    let mut done = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name in UTF-8", f.display()))?;
        let size = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?.len();
        let (digest, _) = verify::sha256_of(File::open(f)?).with_context(|| format!("cannot read {}", f.display()))?;
        if p.sidecar {
            let line = format!("{digest}  {name}\n");
            send(&sftp, &format!("{name}.sha256"), line.as_bytes(), line.len() as u64)?;
        }
        send(&sftp, name, File::open(f)?, size)?;
        done.push(format!("sent {name} to {host} ({size} bytes, sha256 {digest})"));
    }
    let _ = sess.disconnect(None, "done", None);
    Ok(done)
}

//! The drop box against real clients, as a vendor and an attacker would
//! use it: an account made by `dropbox setup`, a private sshd on loopback
//! with Debian's stock `Subsystem sftp` line, and OpenSSH's `scp` (SFTP
//! mode and `-O`), `sftp -b` and Python's paramiko uploading into it.
//! Every client must land a valid archive with a receipt, and must fail,
//! leaving the box as it was, on a second upload of a name, a bad name, a
//! damaged archive (quarantined), a download, a listing, a shell, a
//! command or a port forwarding; a dropped connection or a killed
//! `dropbox` leaves nothing under the final name.
//!
//! Needs root, OpenSSH's client and server, and python3-paramiko (the
//! README's test command installs them).

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const A: &str = "jpro_instance-001-2026-03-01_02h-30-00.tar.gz";
const B: &str = "jpro_instance-002-2026-03-01_02h-30-00.tar.gz";
const C: &str = "jpro_instance-003-2026-03-01_02h-30-00.tar.gz";
const D: &str = "jpro_instance-004-2026-03-01_02h-30-00.tar.gz";

/// A `.tar.gz` of one member of `len` bytes, its content from `seed`
/// (incompressible enough that its size is about `len`).
fn tar_gz(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "export/data.bin", &data[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// One drop box: account, folders, key, sshd; removed on drop.
struct DropBoxWorld {
    dir: TestDir,
    sshd: Sshd,
    user: String,
    bin: PathBuf,
    config: PathBuf,
    folder: PathBuf,
    home: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl DropBoxWorld {
    fn new(extra_config: &str) -> DropBoxWorld {
        require_root();
        let dir = TestDir::new("dbx");
        let bin = dir.mkdir("bin").join("dropbox");
        install_executable(Path::new(env!("CARGO_BIN_EXE_dropbox")), &bin);
        let user = unique("dbx");
        let folder = dir.join("box");
        let home = dir.join("home");
        let config = dir.join("dropbox.toml");
        fs::write(
            &config,
            format!(
                "user = {user:?}\nfolder = {folder:?}\nhome = {home:?}\ndropbox = {bin:?}\n\
                 max_file_size = \"64M\"\nkeep_free = 0\nidle_timeout = 5\naudit_log = {:?}\n{extra_config}",
                dir.join("audit.log")
            ),
        )
        .unwrap();
        let key = dir.join("vendor_key");
        keygen(&key, "vendor");
        let out = run_ok(
            Command::new(&bin).arg("--config").arg(&config).arg("setup").arg("--key").arg(key.with_extension("pub")),
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("created the account"), "{said}");
        // The audit log, writable by the account (for a failing test's reader).
        let log = dir.join("audit.log");
        fs::write(&log, "").unwrap();
        let u = nix::unistd::User::from_name(&user).unwrap().unwrap();
        std::os::unix::fs::chown(&log, Some(u.uid.as_raw()), None).unwrap();
        let sshd = Sshd::start_with(
            &dir.join("sshd"),
            &[&user],
            SshdOptions {
                // Debian's stock line; forwarding allowed by sshd for this
                // account, so only the key's `restrict` can stop it.
                extra_config: format!(
                    "Subsystem sftp /usr/lib/openssh/sftp-server\nMatch User {user}\n    AllowTcpForwarding yes\n"
                ),
                ..Default::default()
            },
        );
        let known_hosts = dir.join("known_hosts");
        fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
        let w = DropBoxWorld { dir, sshd, user, bin, config, folder, home, key, known_hosts };
        fs::create_dir_all(w.local("")).unwrap();
        w
    }

    fn local(&self, sub: &str) -> PathBuf {
        self.dir.join("local").join(sub)
    }

    /// Write `data` as `local/SUB/NAME`.
    fn put_local(&self, sub: &str, name: &str, data: &[u8]) -> PathBuf {
        let d = self.local(sub);
        fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    fn ssh_opts(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ]
    }

    fn remote(&self, path: &str) -> String {
        format!("{}@127.0.0.1:{path}", self.user)
    }

    fn scp(&self, args: &[&str]) -> Command {
        let mut c = Command::new("scp");
        c.args(self.ssh_opts()).args(["-P", &self.sshd.port.to_string()]).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn ssh(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_opts()).args(["-p", &self.sshd.port.to_string(), "-l", &self.user, "127.0.0.1"]).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn sftp_batch(&self, batch: &str) -> Output {
        let file = self.dir.join("batch");
        fs::write(&file, batch).unwrap();
        Command::new("sftp")
            .args(self.ssh_opts())
            .args(["-P", &self.sshd.port.to_string(), "-b"])
            .arg(&file)
            .arg(format!("{}@127.0.0.1", self.user))
            .current_dir(self.local(""))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn paramiko(&self, local: &Path, remote: &str, op: &str) -> Output {
        const SCRIPT: &str = r#"
import sys, paramiko
host, port, user, key, kh, local, remote, op = sys.argv[1:]
c = paramiko.SSHClient()
c.load_host_keys(kh)
c.set_missing_host_key_policy(paramiko.RejectPolicy())
c.connect(host, port=int(port), username=user, key_filename=key, look_for_keys=False, allow_agent=False, timeout=10)
s = c.open_sftp()
try:
    if op == "put":
        s.put(local, remote)
    elif op == "get":
        s.get(remote, local)
    else:
        print(s.listdir(remote))
except Exception as e:
    print("paramiko: %r" % (e,), file=sys.stderr)
    sys.exit(1)
"#;
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(SCRIPT)
            .args(["127.0.0.1", &self.sshd.port.to_string(), &self.user])
            .arg(&self.key)
            .arg(&self.known_hosts)
            .arg(local)
            .arg(remote)
            .arg(op)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn stored(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.folder.join(name)).ok()
    }

    fn receipt(&self, name: &str) -> Option<serde_json::Value> {
        fs::read(self.folder.join(".receipts").join(format!("{name}.json")))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn quarantined(&self, name: &str) -> bool {
        fs::read_dir(self.folder.join(".quarantine"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(&format!("{name}.")))
    }

    fn incoming(&self) -> Vec<String> {
        fs::read_dir(self.folder.join(".incoming"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn audit(&self) -> String {
        fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default()
    }

    /// The pids of this box's account's `dropbox` processes.
    fn dropbox_pids(&self) -> Vec<i32> {
        let Some(u) = nix::unistd::User::from_name(&self.user).unwrap() else {
            return Vec::new();
        };
        let uid = u.uid.as_raw();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim() == "dropbox" && e.metadata().is_ok_and(|m| m.uid() == uid) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for DropBoxWorld {
    fn drop(&mut self) {
        for pid in self.dropbox_pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ =
            Command::new(&self.bin).arg("--config").arg(&self.config).args(["uninstall", "--remove-archives"]).output();
        delete_user(&self.user);
    }
}

fn failed(out: &Output, why: &str) {
    assert!(
        !out.status.success(),
        "{why} must fail: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn succeeded(w: &DropBoxWorld, out: &Output, why: &str) {
    assert!(
        out.status.success(),
        "{why} must succeed: {}\n{}\naudit:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        w.audit()
    );
}

/// How one client uploads `local` (its file name is the name in the box).
type Upload = fn(&DropBoxWorld, &Path) -> Output;

fn scp_sftp(w: &DropBoxWorld, local: &Path) -> Output {
    w.scp(&[local.to_str().unwrap(), &w.remote("")]).output().unwrap()
}
fn scp_legacy(w: &DropBoxWorld, local: &Path) -> Output {
    w.scp(&["-O", local.to_str().unwrap(), &w.remote("")]).output().unwrap()
}
fn scp_legacy_p(w: &DropBoxWorld, local: &Path) -> Output {
    w.scp(&["-O", "-p", local.to_str().unwrap(), &w.remote("")]).output().unwrap()
}
fn sftp_put(w: &DropBoxWorld, local: &Path) -> Output {
    w.sftp_batch(&format!("put {}\n", local.display()))
}
fn paramiko_put(w: &DropBoxWorld, local: &Path) -> Output {
    let name = local.file_name().unwrap().to_str().unwrap();
    w.paramiko(local, name, "put")
}

/// The whole table of uploads for one client.
fn client_suite(upload: Upload, protocol: &str) {
    let w = DropBoxWorld::new("");
    // A valid archive lands, whole, with its receipt.
    let a = tar_gz(3 << 20, 1);
    let out = upload(&w, &w.put_local("a", A, &a));
    succeeded(&w, &out, "a valid archive");
    assert_eq!(w.stored(A).as_deref(), Some(&a[..]), "stored whole");
    let r = w.receipt(A).expect("a receipt");
    assert_eq!(r["sha256"], sha256(&a));
    assert_eq!(r["size"], a.len() as u64);
    assert_eq!(r["client"], "127.0.0.1");
    assert_eq!(r["protocol"], protocol);
    assert!(r["key_fingerprint"].as_str().is_some_and(|f| f.starts_with("SHA256:")), "{r}");
    assert!(w.audit().contains("\"accepted\""), "logged");
    // The same name again, other content: refused, the stored file unchanged.
    let out = upload(&w, &w.put_local("again", A, &tar_gz(1000, 2)));
    failed(&out, "a second upload of the same name");
    assert_eq!(sha256(&w.stored(A).unwrap()), sha256(&a), "unchanged");
    // Long, then short, of one name: never a corrupted file.
    let long = tar_gz(2 << 20, 3);
    succeeded(&w, &upload(&w, &w.put_local("long", B, &long)), "the long one");
    failed(&upload(&w, &w.put_local("short", B, &tar_gz(1000, 4))), "the short one over it");
    assert_eq!(w.stored(B).as_deref(), Some(&long[..]), "the long file, whole");
    // A name outside the pattern.
    failed(&upload(&w, &w.put_local("bad", "evil.tar.gz", &tar_gz(1000, 5))), "a bad name");
    assert!(w.stored("evil.tar.gz").is_none());
    // Not gzip, and a truncated archive: quarantined, the client told.
    let out = upload(&w, &w.put_local("notgz", C, b"this is not an archive\n"));
    failed(&out, "a body that is not gzip");
    assert!(w.stored(C).is_none() && w.quarantined(C), "quarantined");
    let cut = tar_gz(1 << 20, 6);
    let out = upload(&w, &w.put_local("cut", D, &cut[..cut.len() / 2]));
    failed(&out, "a truncated archive");
    assert!(w.stored(D).is_none() && w.quarantined(D), "quarantined");
    assert!(w.incoming().is_empty(), "no temporary file left: {:?}", w.incoming());
    assert!(w.audit().contains("refused-quarantine"));
}

#[test]
fn scp_in_sftp_mode() {
    client_suite(scp_sftp, "sftp");
}

#[test]
fn scp_legacy_mode() {
    client_suite(scp_legacy, "scp");
}

#[test]
fn scp_legacy_mode_preserving_times() {
    client_suite(scp_legacy_p, "scp");
}

#[test]
fn sftp_batch() {
    client_suite(sftp_put, "sftp");
}

#[test]
fn paramiko() {
    assert!(
        Command::new("/usr/bin/python3").args(["-c", "import paramiko"]).status().unwrap().success(),
        "python3-paramiko is missing: run the README's test command, which installs it"
    );
    client_suite(paramiko_put, "sftp");
}

#[test]
fn everything_but_uploads_is_refused() {
    let w = DropBoxWorld::new("");
    let a = tar_gz(1000, 1);
    succeeded(&w, &scp_sftp(&w, &w.put_local("a", A, &a)), "an upload");
    fs::write(w.folder.join("other-customer.tar.gz"), b"secret").unwrap();
    let dl = w.local("dl");
    fs::create_dir_all(&dl).unwrap();
    // Downloads, with every client.
    failed(&w.scp(&[&w.remote(A), dl.to_str().unwrap()]).output().unwrap(), "scp download (SFTP mode)");
    failed(&w.scp(&["-O", &w.remote(A), dl.to_str().unwrap()]).output().unwrap(), "scp -O download (scp -f)");
    failed(&w.sftp_batch(&format!("get {A} {}\n", dl.display())), "sftp get");
    failed(&w.paramiko(&dl.join("x"), A, "get"), "paramiko get");
    // (paramiko creates its local file before asking: it stays empty.)
    let got: u64 = fs::read_dir(&dl).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(got, 0, "nothing downloaded");
    // A listing shows nothing of what the box holds.
    let out = w.sftp_batch("ls -la\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("jpro_") && !text.contains("other-customer"), "{text}");
    let out = w.paramiko(&dl, ".", "list");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "[]", "{out:?}");
    // Remove, rename, mkdir, symlink, chmod through sftp.
    for cmd in [
        format!("rm {A}"),
        format!("rename {A} x.tar.gz"),
        "mkdir d".into(),
        format!("ln -s /etc/passwd {B}"),
        format!("chmod 777 {A}"),
        "get other-customer.tar.gz".into(),
    ] {
        failed(&w.sftp_batch(&format!("{cmd}\n")), &cmd);
    }
    assert_eq!(w.stored(A).as_deref(), Some(&a[..]));
    assert!(w.stored("x.tar.gz").is_none() && !w.folder.join("d").exists() && w.stored(B).is_none());
    // A shell, a command, an interactive login.
    for args in [&["sh"][..], &["id"], &["cat", "/etc/passwd"], &["scp", "-f", A], &["scp", "-r", "-t", "."]] {
        let out = w.ssh(args).output().unwrap();
        failed(&out, &format!("ssh {args:?}"));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("uid="), "id did not run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().filter(|l| l.starts_with("dropbox: refused:")).count(), 1, "one line: {err}");
    }
    let out = w.ssh(&["-tt"]).output().unwrap();
    failed(&out, "an interactive login");
    // A port forwarding to the sshd itself: `restrict` stops it.
    let local_port = TcpListenerPort::free();
    let mut fwd = w
        .ssh(&["-N", "-o", "ExitOnForwardFailure=no", "-L", &format!("{local_port}:127.0.0.1:{}", w.sshd.port)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner = read_banner(local_port, Duration::from_secs(5));
    let _ = fwd.kill();
    let _ = fwd.wait();
    assert!(!banner.contains("SSH-2.0"), "the forwarding reached sshd: {banner:?}");
    let log = fs::read_to_string(&w.sshd.log).unwrap_or_default();
    assert!(log.contains("refused local port forward"), "sshd refused it (the key's restrict):\n{log}");
}

struct TcpListenerPort;
impl TcpListenerPort {
    fn free() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

/// What a connection to `port` reads within `within` (empty when the
/// forwarding is refused and the connection closed).
fn read_banner(port: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = vec![0u8; 256];
            let n = s.read(&mut buf).unwrap_or(0);
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    String::new()
}

/// Start a slowed upload (`scp -l` in Kbit/s) of a large archive.
fn slow_upload(w: &DropBoxWorld, name: &str, legacy: bool, sub: &str) -> (Child, Vec<u8>) {
    let data = tar_gz(8 << 20, 9);
    let local = w.put_local(sub, name, &data);
    let mut args = vec!["-l", "8000"];
    if legacy {
        args.push("-O");
    }
    let local = local.to_str().unwrap().to_string();
    let remote = w.remote("");
    args.push(&local);
    args.push(&remote);
    let child = w.scp(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    (child, data)
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dropped_connection_and_sigkill_leave_nothing_under_the_final_name() {
    let w = DropBoxWorld::new("");
    for legacy in [false, true] {
        // The client dies mid-upload: the box sees its input end.
        let (mut child, _) = slow_upload(&w, A, legacy, "drop");
        wait_until("the upload to start", Duration::from_secs(20), || !w.incoming().is_empty());
        std::thread::sleep(Duration::from_millis(500));
        child.kill().unwrap();
        child.wait().unwrap();
        wait_until("the temporary file to go", Duration::from_secs(20), || w.incoming().is_empty());
        assert!(w.stored(A).is_none(), "nothing under the final name (legacy {legacy})");
        assert!(w.audit().contains("\"abandoned\""));
        // dropbox itself killed mid-write.
        let (mut child, _) = slow_upload(&w, B, legacy, "kill");
        wait_until("the upload to start", Duration::from_secs(20), || !w.incoming().is_empty());
        std::thread::sleep(Duration::from_millis(500));
        let pids = w.dropbox_pids();
        assert!(!pids.is_empty());
        for pid in pids {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "the client is told");
        assert!(w.stored(B).is_none(), "nothing under the final name after SIGKILL (legacy {legacy})");
        // What the killed writer left is only in .incoming, under a
        // temporary name; clear it for the next round.
        for t in w.incoming() {
            assert!(t.starts_with('.') && t.ends_with(".part"), "{t}");
            fs::remove_file(w.folder.join(".incoming").join(t)).unwrap();
        }
    }
}

#[test]
fn two_concurrent_uploads_of_one_name_exactly_one_wins() {
    let w = DropBoxWorld::new("");
    let (mut one, d1) = slow_upload(&w, A, false, "one");
    let (mut two, _) = {
        let data = tar_gz(8 << 20, 10);
        let local = w.put_local("two", A, &data);
        let c = w
            .scp(&["-O", "-l", "8000", local.to_str().unwrap(), &w.remote("")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (c, data)
    };
    let (s1, s2) = (one.wait().unwrap(), two.wait().unwrap());
    assert!(s1.success() != s2.success(), "exactly one wins: {s1:?} {s2:?}\n{}", w.audit());
    let stored = w.stored(A).unwrap();
    let d2 = fs::read(w.local("two").join(A)).unwrap();
    assert!(stored == d1 || stored == d2, "the winner's file, whole");
    assert_eq!(stored == d1, s1.success());
    assert!(w.incoming().is_empty());
}

#[test]
fn sidecar_statvfs_and_idle_client() {
    let w = DropBoxWorld::new("quota = \"20M\"\n");
    let a = tar_gz(1 << 20, 1);
    let sidecar = format!("{}  {A}\n", sha256(&a));
    let sc = w.put_local("sc", &format!("{A}.sha256"), sidecar.as_bytes());
    succeeded(&w, &scp_sftp(&w, &sc), "the sidecar first");
    succeeded(&w, &scp_sftp(&w, &w.put_local("sc", A, &a)), "then the archive");
    assert_eq!(w.receipt(A).unwrap()["sidecar"], "matched");
    // A wrong sidecar: the archive is refused and quarantined.
    let b = tar_gz(1000, 2);
    let bad = w.put_local("sc", &format!("{B}.sha256"), format!("{}  {B}\n", sha256(b"other")).as_bytes());
    succeeded(&w, &scp_sftp(&w, &bad), "a sidecar is only checked against its archive");
    failed(&scp_sftp(&w, &w.put_local("sc", B, &b)), "an archive its sidecar disowns");
    assert!(w.stored(B).is_none() && w.quarantined(B));
    // `df` shows what the box still accepts (under the 20 MiB quota).
    let out = w.sftp_batch("df\n");
    succeeded(&w, &out, "sftp df");
    let text = String::from_utf8_lossy(&out.stdout);
    let avail_kib: u64 = text
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("df output: {text}"));
    assert!(avail_kib < 20 * 1024 && avail_kib > 15 * 1024, "{text}");
    // Over the quota: refused, nothing kept.
    failed(&scp_sftp(&w, &w.put_local("q", C, &tar_gz(24 << 20, 3))), "an archive over the quota");
    assert!(w.stored(C).is_none());
    wait_until("the refused upload's temporary file to go", Duration::from_secs(10), || w.incoming().is_empty());
    // A client that opens a session and never sends: dropbox gives up
    // after idle_timeout (5 s), leaving nothing.
    let mut idle =
        w.ssh(&["-s", "sftp"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until("dropbox to start", Duration::from_secs(10), || !w.dropbox_pids().is_empty());
    wait_until("dropbox to give up on the idle client", Duration::from_secs(15), || w.dropbox_pids().is_empty());
    drop(idle.stdin.take());
    let _ = idle.wait();
}

#[test]
fn setup_is_idempotent_and_uninstall_removes_it() {
    let w = DropBoxWorld::new("");
    let setup = || {
        run_ok(
            Command::new(&w.bin)
                .arg("--config")
                .arg(&w.config)
                .arg("setup")
                .arg("--key")
                .arg(w.key.with_extension("pub")),
        )
    };
    let out = setup();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"), "{out:?}");
    let u = nix::unistd::User::from_name(&w.user).unwrap().unwrap();
    assert_eq!(u.shell, PathBuf::from("/bin/sh"), "a shell sshd runs the forced command through");
    for p in [&w.home, &w.home.join(".ssh"), &w.home.join(".ssh/authorized_keys")] {
        let m = fs::metadata(p).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o022), (0, 0), "{} root-owned, not writable by others", p.display());
    }
    let keys = fs::read_to_string(w.home.join(".ssh/authorized_keys")).unwrap();
    assert_eq!(keys.lines().count(), 1);
    assert!(
        keys.starts_with(&format!(
            "restrict,command=\"{} --config {}\" ssh-ed25519 ",
            w.bin.display(),
            w.config.display()
        )),
        "{keys}"
    );
    let shadow = fs::read_to_string("/etc/shadow").unwrap();
    let pw = shadow.lines().find(|l| l.starts_with(&format!("{}:", w.user))).unwrap();
    assert_eq!(pw.split(':').nth(1), Some("*"), "no password, not locked");
    // With from=: the line is replaced, not added.
    run_ok(
        Command::new(&w.bin)
            .arg("--config")
            .arg(&w.config)
            .arg("setup")
            .arg("--key")
            .arg(w.key.with_extension("pub"))
            .args(["--from", "127.0.0.1"]),
    );
    let keys = fs::read_to_string(w.home.join(".ssh/authorized_keys")).unwrap();
    assert_eq!(keys.lines().count(), 1);
    assert!(keys.starts_with("restrict,from=\"127.0.0.1\",command="), "{keys}");
    succeeded(&w, &scp_sftp(&w, &w.put_local("a", A, &tar_gz(1000, 1))), "an upload from an allowed address");
    // Not root: refused.
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&w.bin)
        .arg("--config")
        .arg(&w.config)
        .arg("setup")
        .arg("--key")
        .arg(w.key.with_extension("pub"))
        .output()
        .unwrap();
    failed(&out, "setup as a user");
    // Uninstall keeps the archives unless asked.
    let out = run_ok(Command::new(&w.bin).arg("--config").arg(&w.config).arg("uninstall"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("removed the account") && said.contains("kept"), "{said}");
    assert!(nix::unistd::User::from_name(&w.user).unwrap().is_none());
    assert!(!w.home.exists(), "the home setup made is gone");
    assert!(w.stored(A).is_some(), "archives kept");
}

#[test]
fn prune_keeps_by_receive_time_not_by_the_names_date() {
    let w = DropBoxWorld::new("[retention]\nkeep_last = 2\ndaily = 0\nweekly = 0\nmonthly = 0\n");
    let names = [
        "jpro_instance-001-2026-03-01_02h-30-00.tar.gz",
        "jpro_instance-001-2099-12-31_23h-59-59.tar.gz",
        "jpro_instance-001-1999-01-01_00h-00-00.tar.gz",
        "jpro_instance-001-2000-06-15_12h-00-00.tar.gz",
    ];
    for (i, n) in names.iter().enumerate() {
        succeeded(&w, &scp_legacy(&w, &w.put_local(&format!("p{i}"), n, &tar_gz(1000, i as u64))), n);
        // Receive times are seconds: one apart, so their order is known.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let prune = |dry: bool| {
        let mut c = Command::new(&w.bin);
        c.arg("--config").arg(&w.config).arg("prune");
        if dry {
            c.arg("--dry-run");
        }
        String::from_utf8_lossy(&run_ok(&mut c).stdout).into_owned()
    };
    let said = prune(true);
    assert!(said.contains(&format!("would delete {}", names[1])), "{said}");
    assert_eq!(names.iter().filter(|n| w.stored(n).is_some()).count(), 4, "a dry run deletes nothing");
    prune(false);
    // The two received last are kept, whatever their names say: the one
    // dated 2099 (received second) goes, the one dated 1999 stays.
    let kept: Vec<&str> = names.iter().copied().filter(|n| w.stored(n).is_some()).collect();
    assert_eq!(kept, vec![names[2], names[3]]);
    assert!(w.receipt(names[1]).is_none() && w.receipt(names[0]).is_none(), "their receipts go with them");
    // Again: nothing more to delete; the newest is never deleted.
    let said = prune(false);
    assert!(!said.contains("deleted"), "{said}");
}

#[test]
fn disk_full_refuses_cleanly() {
    require_root();
    let dir = TestDir::new("dbxfull");
    let bin = dir.mkdir("bin").join("dropbox");
    install_executable(Path::new(env!("CARGO_BIN_EXE_dropbox")), &bin);
    let folder = dir.mkdir("box");
    let config = dir.join("dropbox.toml");
    fs::write(
        &config,
        format!("user = \"nobody\"\nfolder = {folder:?}\nhome = {:?}\nkeep_free = 0\n", dir.join("home")),
    )
    .unwrap();
    let data = tar_gz(8 << 20, 1);
    let mut input = format!("C0644 {} {A}\n", data.len()).into_bytes();
    input.extend(&data);
    input.push(0);
    // A 4 MiB tmpfs over the box, seen only by this dropbox.
    let script =
        "mount -t tmpfs -o size=4m dbxfull \"$0\" && mkdir \"$0/.incoming\" \"$0/.quarantine\" \"$0/.receipts\" \
                  && \"$1\" --config \"$2\"; rc=$?; ls -A \"$0\" \"$0/.incoming\" >&2; exit $rc";
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script])
        .arg(&folder)
        .arg(&bin)
        .arg(&config)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SSH_ORIGINAL_COMMAND", "scp -t .")
        .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a full disk is a failed upload");
    assert!(said.starts_with("\0\0\x01scp: ") && said.contains("disk is full"), "the client is told: {said:?}");
    // What the tmpfs held at the end: the folders only, .incoming empty.
    let listing = String::from_utf8_lossy(&out.stderr);
    assert!(!listing.contains(A) && !listing.contains(".part"), "nothing kept, no temporary left:\n{listing}");
    assert!(listing.contains(".incoming"), "{listing}");
}

#[test]
fn push_client() {
    let w = DropBoxWorld::new("");
    let push = |known_hosts: &Path, file: &Path| {
        Command::new(&w.bin)
            .arg("push")
            .args(["--to", &format!("{}@127.0.0.1", w.user), "--port", &w.sshd.port.to_string(), "--timeout", "20"])
            .arg("--key")
            .arg(&w.key)
            .arg("--known-hosts")
            .arg(known_hosts)
            .arg(file)
            .output()
            .unwrap()
    };
    let a = tar_gz(2 << 20, 1);
    let local = w.put_local("a", A, &a);
    let out = push(&w.known_hosts, &local);
    succeeded(&w, &out, "dropbox push");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sha256(&a)));
    assert_eq!(w.stored(A).as_deref(), Some(&a[..]));
    let r = w.receipt(A).unwrap();
    assert_eq!((r["sidecar"].as_str(), r["sha256"].as_str()), (Some("matched"), Some(sha256(&a).as_str())));
    // Again: refused, with a sentence.
    let out = push(&w.known_hosts, &w.put_local("again", A, &tar_gz(1000, 2)));
    failed(&out, "a second push of one name");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"), "{out:?}");
    assert_eq!(w.stored(A).as_deref(), Some(&a[..]));
    // A damaged archive: the close carries the verdict.
    let out = push(&w.known_hosts, &w.put_local("bad", B, b"not gzip"));
    failed(&out, "a damaged archive");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not keep"), "{out:?}");
    assert!(w.quarantined(B));
    // Another host key pinned: nothing is sent.
    let other = w.dir.join("other_host_key");
    keygen(&other, "other");
    let pinned = w.dir.join("wrong_known_hosts");
    fs::write(
        &pinned,
        format!("[127.0.0.1]:{} {}\n", w.sshd.port, fs::read_to_string(other.with_extension("pub")).unwrap().trim()),
    )
    .unwrap();
    let out = push(&pinned, &w.put_local("c", C, &tar_gz(1000, 3)));
    failed(&out, "a push to an unpinned host key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("host key"), "{out:?}");
    assert!(w.stored(C).is_none() && w.stored(&format!("{C}.sha256")).is_none());
}

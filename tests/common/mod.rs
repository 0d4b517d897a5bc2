//! Shared harness for the integration tests: a root-owned test folder, the
//! toolkit's binaries installed into it, system users created and removed
//! by the test, and a real OpenSSH `sshd` on a free loopback port with its
//! own config and host key. Everything is stopped and removed on drop.
//!
//! These tests need root, `sshd`, `ssh`, `ssh-keygen`, `rsync`, `sudo`
//! and `runuser` (the README's test command installs them); they fail with
//! a clear message when something is missing.

#![allow(dead_code)]

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where test folders live: root-owned and 0755 all the way up, as sshd's
/// StrictModes and non-root users running the installed binaries need.
pub const BASE: &str = "/var/lib/backuppc-enroll-tests";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these integration tests must run as root (they create users and start sshd): run the README's test command as root"
    );
    for tool in [
        "/usr/sbin/sshd",
        "/usr/bin/ssh",
        "/usr/bin/ssh-keygen",
        "/usr/bin/rsync",
        "/usr/bin/sudo",
        "/usr/sbin/runuser",
    ] {
        assert!(Path::new(tool).exists(), "{tool} is missing: run the README's test command, which installs it");
    }
}

/// A unique short tag for names of this test (users, folders).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::SeqCst))
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A test folder under [`BASE`], removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let path = Path::new(BASE).join(unique(name));
        let _ = fs::remove_dir_all(&path);
        // Another test's drop may remove the empty base folder between
        // the two calls: then make it again.
        loop {
            fs::create_dir_all(BASE).unwrap();
            match fs::create_dir(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
        chmod(Path::new(BASE), 0o755);
        chmod(&path, 0o755);
        TestDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    /// A root-owned 0755 subfolder.
    pub fn mkdir(&self, p: &str) -> PathBuf {
        let d = self.path.join(p);
        fs::create_dir_all(&d).unwrap();
        chmod(&d, 0o755);
        d
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        // The last test out removes the base folder too; while another
        // test's folder is in it, rmdir fails, harmlessly.
        let _ = fs::remove_dir(BASE);
    }
}

/// The three binaries copied where any user can run them.
pub struct Bins {
    pub enroll: PathBuf,
    pub forced_command: PathBuf,
    pub rsyncsend: PathBuf,
}

/// Put an executable file in place without this process ever holding it
/// open for writing: `cp` (a child) writes it. Tests run in threads, and a
/// fork in another thread would inherit a write descriptor of ours until
/// it execs, making the file "text file busy" when it is run.
pub fn install_executable(src: &Path, dst: &Path) {
    run_ok(Command::new("install").args(["-m", "755"]).arg(src).arg(dst));
}

/// Write a script and make it executable, the same safe way.
pub fn write_script(path: &Path, contents: &str) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), contents).unwrap();
    install_executable(tmp.path(), path);
}

pub fn install_bins(dir: &TestDir) -> Bins {
    let bin = dir.mkdir("bin");
    let copy = |src: &str, name: &str| {
        let dst = bin.join(name);
        install_executable(Path::new(src), &dst);
        dst
    };
    Bins {
        enroll: copy(env!("CARGO_BIN_EXE_enroll"), "enroll"),
        forced_command: copy(env!("CARGO_BIN_EXE_forced-command"), "forced-command"),
        rsyncsend: copy(env!("CARGO_BIN_EXE_rsyncsend"), "rsyncsend"),
    }
}

/// Serialises useradd/userdel between tests (they lock /etc/passwd). The
/// lock file lives in /run (root-only, emptied at boot), not in [`BASE`],
/// which the last test removes: a lock file removed while held would let
/// the next test lock a new one.
pub const USERS_LOCK: &str = "/run/backuppc-enroll-tests.users.lock";

fn user_db_lock() -> File {
    let f = File::create(USERS_LOCK).unwrap();
    f.lock().unwrap();
    f
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A system user made for one test (shell /bin/sh, password `*`, as sshd
/// needs for forced commands); deleted with its home on drop.
pub struct SystemUser {
    pub name: String,
    pub home: PathBuf,
}

impl SystemUser {
    pub fn create(name: &str, home: &Path) -> SystemUser {
        let _l = user_db_lock();
        run_ok(
            Command::new("useradd")
                .args([
                    "--system",
                    "--create-home",
                    "--user-group",
                    "--shell",
                    "/bin/sh",
                    "--password",
                    "*",
                    "--home-dir",
                ])
                .arg(home)
                .arg(name),
        );
        SystemUser { name: name.into(), home: home.into() }
    }

    pub fn ids(&self) -> (u32, u32) {
        let u = nix::unistd::User::from_name(&self.name).unwrap().unwrap();
        (u.uid.as_raw(), u.gid.as_raw())
    }

    pub fn chown(&self, p: &Path) {
        let (u, g) = self.ids();
        std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
    }

    /// Run a command as this user.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.name, "--", program]);
        c
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        delete_user(&self.name);
    }
}

/// Remove a user (and its home) if it exists; used for users `enroll` made.
pub fn delete_user(name: &str) {
    let _l = user_db_lock();
    if nix::unistd::User::from_name(name).ok().flatten().is_some() {
        let _ = Command::new("pkill").args(["-KILL", "-u", name]).status();
        let _ = Command::new("userdel").args(["--remove", name]).output();
    }
}

/// `program --config CONFIG` as sshd runs a forced command: an empty
/// environment but for SSH_ORIGINAL_COMMAND and SSH_CONNECTION (from
/// `client`), its standard streams piped.
pub fn as_sshd_runs(program: &Path, config: &Path, command: &str, client: &str) -> Command {
    let mut c = Command::new(program);
    c.arg("--config")
        .arg(config)
        .env_clear()
        .env("SSH_ORIGINAL_COMMAND", command)
        .env("SSH_CONNECTION", format!("{client} 40000 127.0.0.1 22"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Start `cmd`, write `stdin`, wait `stall`, then close its stdin.
pub fn feed(cmd: &mut Command, stdin: &[u8], stall: Option<Duration>) -> Child {
    use std::io::Write;
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    if let Some(d) = stall {
        std::thread::sleep(d);
    }
    drop(input);
    child
}

/// `ssh-keygen -t ed25519` into `path` (and `path.pub`); returns the public line.
pub fn keygen(path: &Path, comment: &str) -> String {
    keygen_type(path, "ed25519", comment)
}

/// `ssh-keygen -t KIND` (`ed25519`, `ecdsa`, `rsa`…) into `path`.
pub fn keygen_type(path: &Path, kind: &str, comment: &str) -> String {
    run_ok(Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-C", comment, "-f"]).arg(path));
    fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string()
}

/// A private sshd on 127.0.0.1.
pub struct Sshd {
    pub port: u16,
    pub host_pub: String,
    pub host_pub_path: PathBuf,
    pub log: PathBuf,
    child: Child,
}

/// How to start an [`Sshd`] beyond the defaults.
#[derive(Default)]
pub struct SshdOptions {
    /// Lines appended to the generated sshd_config.
    pub extra_config: String,
    /// Shell commands run before `exec sshd` (inside `unshare --mount` when
    /// set): bind mounts that only this sshd and its children see.
    pub mounts: Vec<(PathBuf, PathBuf)>,
    /// Use this host key file instead of generating one.
    pub host_key: Option<PathBuf>,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
}

impl Sshd {
    /// Start sshd allowing only `users`, with its own host key in `dir`.
    pub fn start(dir: &Path, users: &[&str]) -> Sshd {
        Sshd::start_with(dir, users, SshdOptions::default())
    }

    pub fn start_with(dir: &Path, users: &[&str], opts: SshdOptions) -> Sshd {
        fs::create_dir_all("/run/sshd").unwrap();
        fs::create_dir_all(dir).unwrap();
        let key = opts.host_key.clone().unwrap_or_else(|| dir.join("ssh_host_ed25519_key"));
        if !key.exists() {
            keygen(&key, "test-sshd");
        }
        let host_pub_path = key.with_extension("pub");
        let host_pub = fs::read_to_string(&host_pub_path).unwrap().trim().to_string();
        let log = dir.join("sshd.log");
        for _attempt in 0..5 {
            let port = opts.port.unwrap_or_else(free_port);
            let config = dir.join("sshd_config");
            let use_pam = if opts.extra_config.contains("UsePAM") { "" } else { "UsePAM no\n" };
            let max_startups = if opts.extra_config.contains("MaxStartups") { "" } else { "MaxStartups 100:30:200\n" };
            fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile none\n\
                     AuthorizedKeysFile .ssh/authorized_keys\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n{use_pam}\
                     StrictModes yes\nPermitRootLogin no\nAllowUsers {users}\n\
                     X11Forwarding no\nAllowAgentForwarding no\nAllowTcpForwarding no\n\
                     {max_startups}LogLevel VERBOSE\n{extra}",
                    key = key.display(),
                    users = users.join(" "),
                    extra = opts.extra_config
                ),
            )
            .unwrap();
            let mut cmd = if opts.mounts.is_empty() {
                let mut c = Command::new("/usr/sbin/sshd");
                c.args(["-D", "-e", "-f"]).arg(&config);
                c
            } else {
                let binds: Vec<String> = opts
                    .mounts
                    .iter()
                    .map(|(from, to)| format!("mount --bind '{}' '{}'", from.display(), to.display()))
                    .collect();
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(format!("{} && exec /usr/sbin/sshd -D -e -f \"$0\"", binds.join(" && ")))
                    .arg(&config);
                c
            };
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).unwrap())
                .spawn()
                .expect("start sshd");
            let mut sshd = Sshd {
                port,
                host_pub: host_pub.clone(),
                host_pub_path: host_pub_path.clone(),
                log: log.clone(),
                child,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = sshd.child.try_wait() {
                    break; // exited: port taken or config error; try again
                }
                // sshd's own word that it listens, not a connect: on loopback a
                // connect to a free ephemeral port can reach another test's
                // listener, or connect to itself, and pass for sshd.
                let listening = format!("Server listening on 127.0.0.1 port {port}.");
                if fs::read_to_string(&log).is_ok_and(|l| l.contains(&listening)) {
                    return sshd;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = sshd.child.kill();
            let _ = sshd.child.wait();
        }
        panic!("sshd did not start; its log: {}", fs::read_to_string(&log).unwrap_or_default());
    }

    /// The pid of sshd (inside its mount namespace when it has one).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A known_hosts line pinning this sshd for `127.0.0.1` on its port.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_pub)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every regular file under `dir` with its bytes, for "nothing changed".
pub fn snapshot(dirs: &[&Path]) -> Vec<(PathBuf, Vec<u8>, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for d in dirs {
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                out.push((p.clone(), Vec::new(), m.mode()));
                for e in fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default(), m.mode()));
            }
        }
    }
    out.sort();
    out
}

/// Compare two trees: names, types, contents, permissions and mtimes of
/// files, symlink targets, and which files are hard links of each other.
pub fn assert_same_tree(a: &Path, b: &Path) {
    compare_trees(a, b, false)
}

/// [`assert_same_tree`], and numeric owners and groups too.
pub fn assert_same_tree_with_owners(a: &Path, b: &Path) {
    compare_trees(a, b, true)
}

fn compare_trees(a: &Path, b: &Path, owners: bool) {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;
    type Entry = (String, u32, i64, Vec<u8>, u64, (u32, u32));
    fn walk(root: &Path) -> BTreeMap<PathBuf, Entry> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let (kind, data) = if m.file_type().is_symlink() {
                ("link".to_string(), fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes())
            } else if m.is_dir() {
                for e in fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
                ("dir".to_string(), Vec::new())
            } else {
                ("file".to_string(), fs::read(&p).unwrap())
            };
            let mtime = if kind == "file" { m.mtime() } else { 0 };
            let nlink = if kind == "file" { m.nlink() } else { 0 };
            out.insert(rel, (kind, m.mode() & 0o7777, mtime, data, nlink, (m.uid(), m.gid())));
        }
        out
    }
    let (wa, wb) = (walk(a), walk(b));
    let names_a: Vec<_> = wa.keys().collect();
    let names_b: Vec<_> = wb.keys().collect();
    assert_eq!(names_a, names_b, "the trees have different names");
    for (k, va) in &wa {
        let vb = &wb[k];
        assert_eq!(va.0, vb.0, "{k:?}: type differs");
        assert_eq!(va.3, vb.3, "{k:?}: contents differ");
        if va.0 != "link" {
            assert_eq!(va.1, vb.1, "{k:?}: mode differs");
        }
        assert_eq!(va.2, vb.2, "{k:?}: mtime differs");
        assert_eq!(va.4, vb.4, "{k:?}: hard link count differs");
        if owners {
            assert_eq!(va.5, vb.5, "{k:?}: owner differs");
        }
    }
}
pub mod backuppc;
pub mod fleet;
pub mod forced;
pub mod world;

//! Crash safety: forced-command killed with SIGKILL at random points of
//! enrollments leaves every file it writes either old or new, never torn;
//! BackupPC's hosts file still parses; a re-run of the same enrollment
//! succeeds and leaves exactly one entry.

mod common;

use backuppc_enroll::backuppc::hosts;
use backuppc_enroll::store::registry::Registry;
use common::forced::ForcedBench;
use std::fs;
use std::time::{Duration, Instant};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";

/// A deterministic spread of kill delays (no randomness needed to cover
/// the window: an enrollment takes a few milliseconds).
fn delays(n: u64) -> impl Iterator<Item = Duration> {
    (0..n).map(move |i| Duration::from_micros((i * 7919) % 12_000))
}

#[test]
fn sigkill_at_any_point_leaves_whole_files() {
    let f = ForcedBench::new();
    let hello = format!("protocol: 2\nhostname: localhost\nhostkey: {KEY}\nuser: bckpciuem\nport: 22\n");
    let conf = f.dir.join("backuppc");
    let ssh = f.dir.join("ssh");
    let registry = f.dir.join("registry/registry.json");
    let mut killed_midway = 0;
    for delay in delays(60) {
        let mut child = f.spawn("linux:cmartin", "127.0.0.1", hello.as_bytes());
        let start = Instant::now();
        while start.elapsed() < delay {
            std::hint::spin_loop();
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed_midway += 1;
        }
        // Every file is whole: parses, and holds at most one entry.
        let hosts_text = fs::read_to_string(conf.join("hosts")).unwrap();
        let rows: Vec<_> = hosts::entries(&hosts_text).into_iter().filter(|(_, e)| e.host == "localhost").collect();
        assert!(rows.len() <= 1, "one hosts line at most:\n{hosts_text}");
        assert!(hosts_text.starts_with(common::world::STOCK_HOSTS), "the other lines are intact");
        if registry.exists() {
            let reg = Registry::load(&registry).expect("registry is whole JSON");
            assert!(reg.hosts.len() <= 1);
        }
        let pl = conf.join("pc/localhost.pl");
        if pl.exists() {
            let text = fs::read_to_string(&pl).unwrap();
            assert!(text.ends_with("'--stats'];\n"), "per-host config is whole:\n{text}");
        }
        let key = ssh.join("backuppc-enroll/localhost.key");
        if key.exists() {
            let text = fs::read_to_string(&key).unwrap();
            assert!(text.ends_with("-----END OPENSSH PRIVATE KEY-----\n"), "private key is whole");
        }
        if let Ok(kh) = fs::read_to_string(ssh.join("known_hosts")) {
            assert!(kh.is_empty() || kh == format!("localhost {KEY}\n"), "known_hosts is whole: {kh:?}");
        }
        assert_listed_host_is_complete(&f, &format!("killed after {delay:?}"));
    }
    assert!(killed_midway > 0, "some runs were killed before they finished");
    // A re-run finishes the job, with exactly one entry everywhere.
    let out = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let hosts_text = fs::read_to_string(conf.join("hosts")).unwrap();
    assert_eq!(hosts_text, format!("{}localhost\t0\tcmartin\n", common::world::STOCK_HOSTS));
    assert_eq!(Registry::load(&registry).unwrap().hosts.len(), 1);
    assert_eq!(fs::read_to_string(ssh.join("known_hosts")).unwrap(), format!("localhost {KEY}\n"));
    // Nothing an interrupted run left behind outlives the re-run.
    let mut left = Vec::new();
    for dir in
        [conf.clone(), conf.join("pc"), ssh.clone(), ssh.join("backuppc-enroll"), registry.parent().unwrap().into()]
    {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.ends_with(".new") {
                left.push(dir.join(name));
            }
        }
    }
    assert!(left.is_empty(), "temporary files left after the re-run: {left:?}");
}

/// The system calls by which an enrollment changes files.
const FILE_CHANGING: &[&str] = &[
    "openat",
    "write",
    "fsync",
    "fchown",
    "fchmod",
    "rename",
    "renameat2",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "mkdir",
];

/// An enrollment as sshd runs it, under `strace -f -qq ARGS`.
fn under_strace(f: &ForcedBench, strace_args: &[&str], hello: &str) -> std::process::Output {
    let cmd = common::as_sshd_runs(&f.bins.forced_command, &f.config, "linux:cmartin", "127.0.0.1");
    let mut traced = std::process::Command::new("strace");
    traced.args(["-f", "-qq"]).args(strace_args).arg(cmd.get_program()).args(cmd.get_args()).env_clear();
    for (k, v) in cmd.get_envs() {
        traced.env(k, v.unwrap());
    }
    traced.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    common::feed(&mut traced, hello.as_bytes(), None).wait_with_output().unwrap()
}

/// How many times a whole enrollment from a fresh state makes each of
/// [`FILE_CHANGING`] (strace's own count).
fn syscall_counts(f: &ForcedBench, hello: &str) -> Vec<(&'static str, usize)> {
    let log = f.dir.join("strace.log");
    let trace = format!("trace={}", FILE_CHANGING.join(","));
    let out = under_strace(f, &["-o", log.to_str().unwrap(), "-e", &trace], hello);
    assert!(out.status.success(), "traced enrollment: {}", String::from_utf8_lossy(&out.stdout));
    let text = fs::read_to_string(&log).unwrap();
    FILE_CHANGING
        .iter()
        .map(|s| {
            (
                *s,
                text.lines()
                    .filter(|l| l.split_whitespace().nth(1).is_some_and(|c| c.starts_with(&format!("{s}("))))
                    .count(),
            )
        })
        .collect()
}

/// What BackupPC sees is never half an enrollment: once the hosts file
/// lists the host, its per-host config, key and registry entry exist.
fn assert_listed_host_is_complete(f: &ForcedBench, when: &str) {
    let hosts_text = fs::read_to_string(f.dir.join("backuppc/hosts")).unwrap();
    if hosts::find(&hosts_text, "localhost").is_none() {
        return;
    }
    assert!(f.dir.join("backuppc/pc/localhost.pl").exists(), "{when}: hosts line without pc/localhost.pl");
    assert!(f.dir.join("ssh/backuppc-enroll/localhost.key").exists(), "{when}: hosts line without the key");
    let reg = Registry::load(&f.dir.join("registry/registry.json")).unwrap();
    assert!(
        reg.hosts.get("localhost").is_some_and(|e| e.state == "enrolled"),
        "{when}: hosts line without an enrolled registry entry: {:?}",
        reg.hosts.get("localhost")
    );
}

/// Back to the state before any enrollment.
fn reset(f: &ForcedBench) {
    for d in ["backuppc", "registry", "ssh"] {
        let _ = fs::remove_dir_all(f.dir.join(d));
        f.dir.mkdir(d);
    }
    fs::write(f.dir.join("backuppc/hosts"), common::world::STOCK_HOSTS).unwrap();
}

/// Temporary and staging files under the folders forced-command writes.
fn leftovers(f: &ForcedBench) -> Vec<std::path::PathBuf> {
    let mut left = Vec::new();
    for (path, _, _) in f.files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name.ends_with(".new") {
            left.push(path);
        }
    }
    left
}

/// SIGKILL (strace's fault injection) at every file-changing system call
/// of an enrollment, one at a time: each time, every file is old or new,
/// and a re-run ends in the same state as an uninterrupted enrollment, with
/// nothing the killed run staged left behind.
#[test]
fn sigkill_at_every_file_changing_call_then_rerun() {
    let f = ForcedBench::new();
    let hello = format!("protocol: 2\nhostname: localhost\nhostkey: {KEY}\nuser: bckpciuem\nport: 22\n");
    let counts = syscall_counts(&f, &hello);
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    assert!(total > 10, "an enrollment changes files: {counts:?}");
    let conf = f.dir.join("backuppc");
    let mut killed = 0;
    for (call, n) in counts {
        for when in 1..=n {
            reset(&f);
            let inject = format!("inject={call}:signal=KILL:when={when}");
            let out = under_strace(&f, &["-o", "/dev/null", "-e", &inject], &hello);
            if !out.status.success() {
                killed += 1;
            }
            let hosts_text = fs::read_to_string(conf.join("hosts")).unwrap();
            assert!(hosts_text.starts_with(common::world::STOCK_HOSTS), "{call} #{when}: other lines intact");
            if let Ok(text) = fs::read_to_string(conf.join("pc/localhost.pl")) {
                assert!(text.ends_with("'--stats'];\n"), "{call} #{when}: per-host config whole:\n{text}");
            }
            let registry = f.dir.join("registry/registry.json");
            if registry.exists() {
                Registry::load(&registry).unwrap_or_else(|e| panic!("{call} #{when}: registry whole: {e}"));
            }
            assert_listed_host_is_complete(&f, &format!("{call} #{when}"));
            let rerun = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
            assert!(rerun.status.success(), "{call} #{when}: re-run: {}", String::from_utf8_lossy(&rerun.stdout));
            assert_eq!(
                fs::read_to_string(conf.join("hosts")).unwrap(),
                format!("{}localhost\t0\tcmartin\n", common::world::STOCK_HOSTS),
                "{call} #{when}"
            );
            assert_eq!(Registry::load(&registry).unwrap().hosts.len(), 1, "{call} #{when}");
            assert!(f.dir.join("ssh/backuppc-enroll/localhost.key").exists(), "{call} #{when}: key in place");
            let left = leftovers(&f);
            assert!(left.is_empty(), "{call} #{when}: left behind after the re-run: {left:?}");
        }
    }
    assert!(killed > 10, "the injected kills did stop enrollments ({killed})");
}

/// The fingerprints of the keys `pc/localhost.pl` has ssh offer, in order.
fn offered_keys(f: &ForcedBench) -> Vec<String> {
    let text = fs::read_to_string(f.dir.join("backuppc/pc/localhost.pl")).unwrap();
    // The rsync command's keys (DumpPreUserCmd names the same ones).
    let text = text.lines().find(|l| l.starts_with("$Conf{RsyncSshArgs}")).unwrap();
    let words: Vec<&str> = text.split([' ', '\'']).collect();
    words
        .windows(2)
        .filter(|w| w[0] == "-i")
        .map(|w| {
            let key = ssh_key::PrivateKey::from_openssh(fs::read(w[1]).unwrap()).unwrap();
            backuppc_enroll::names::fingerprint(key.public_key())
        })
        .collect()
}

/// The fingerprint of the key in a success answer.
fn answered_key(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap();
    backuppc_enroll::names::fingerprint(&backuppc_enroll::names::public_key(line).unwrap())
}

/// SIGKILL at every file-changing call of a re-enrollment: whatever was
/// written, the key the workstation has installed still gets in, and the
/// same request again then the finishing one end with only the new key.
#[test]
fn sigkill_during_rekey_keeps_the_installed_key_working() {
    let f = ForcedBench::new();
    let hello = format!("protocol: 2\nhostname: localhost\nhostkey: {KEY}\nuser: bckpciuem\nport: 22\n");
    let enrolled = |f: &ForcedBench| {
        reset(f);
        answered_key(&f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None))
    };
    let rekey = |installed: &str| format!("{hello}installed-key: {installed}\n");
    let installed = enrolled(&f);
    let counts = syscall_counts(&f, &rekey(&installed));
    let mut killed = 0;
    for (call, n) in counts {
        for when in 1..=n {
            let at = format!("{call} #{when}");
            let installed = enrolled(&f);
            let inject = format!("inject={call}:signal=KILL:when={when}");
            if !under_strace(&f, &["-o", "/dev/null", "-e", &inject], &rekey(&installed)).status.success() {
                killed += 1;
            }
            assert_listed_host_is_complete(&f, &at);
            assert!(offered_keys(&f).contains(&installed), "{at}: the installed key is no longer offered");
            let new = answered_key(&f.run("linux:cmartin", "127.0.0.1", rekey(&installed).as_bytes(), None));
            assert_ne!(new, installed, "{at}");
            assert_eq!(offered_keys(&f), [new.as_str(), installed.as_str()], "{at}: new key first, old one second");
            let finish = format!("{hello}installed-key: {new}\nrekey: finish\n");
            let done = answered_key(&f.run("linux:cmartin", "127.0.0.1", finish.as_bytes(), None));
            assert_eq!(done, new, "{at}: finishing answers the same key");
            assert_eq!(offered_keys(&f), [new.as_str()], "{at}: only the new key after finishing");
            assert!(!f.dir.join("ssh/backuppc-enroll/localhost.key.prev").exists(), "{at}");
            let left = leftovers(&f);
            assert!(left.is_empty(), "{at}: left behind: {left:?}");
        }
    }
    assert!(killed > 10, "the injected kills did stop re-enrollments ({killed})");
}

/// A tmpfs mounted over a folder for the test's duration.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        common::run_ok(
            std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir),
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_refused_cleanly() {
    let f = ForcedBench::new();
    let conf = f.dir.join("backuppc");
    let hosts_before = fs::read(conf.join("hosts")).unwrap();
    let _fs = Tmpfs::mount(&conf, "16k");
    fs::write(conf.join("hosts"), &hosts_before).unwrap();
    // Fill the filesystem to the last block.
    {
        use std::io::Write;
        let mut filler = fs::File::create(conf.join("filler")).unwrap();
        while filler.write_all(&[0u8; 512]).is_ok() {}
    }
    let hello = format!("protocol: 2\nhostname: localhost\nhostkey: {KEY}\n");
    let out = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
    let answer = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{answer}");
    assert!(answer.contains("could not complete the enrollment"), "{answer}");
    assert_eq!(fs::read(conf.join("hosts")).unwrap(), hosts_before, "hosts untouched");
    let left: Vec<_> = fs::read_dir(&conf).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["LOCK", "filler", "hosts"], "no half-written file");
    assert!(!f.dir.join("ssh/backuppc-enroll/localhost.key").exists(), "no key for a failed enrollment");
    assert!(!f.dir.join("ssh/backuppc-enroll/localhost.key.new").exists());
    let audit = fs::read_to_string(f.dir.join("registry/registry.json")).unwrap_or_default();
    assert!(!audit.contains("localhost"), "not registered");
    // Room again: the same enrollment succeeds.
    fs::remove_file(conf.join("filler")).unwrap();
    let out = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

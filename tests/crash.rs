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
    }
    assert!(killed_midway > 0, "some runs were killed before they finished");
    // A re-run finishes the job, with exactly one entry everywhere.
    let out = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let hosts_text = fs::read_to_string(conf.join("hosts")).unwrap();
    assert_eq!(hosts_text, format!("{}localhost\t0\tcmartin\n", common::world::STOCK_HOSTS));
    assert_eq!(Registry::load(&registry).unwrap().hosts.len(), 1);
    assert_eq!(fs::read_to_string(ssh.join("known_hosts")).unwrap(), format!("localhost {KEY}\n"));
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

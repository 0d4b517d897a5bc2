//! Group commit: enrollments waiting for the registry lock are written
//! together by whichever of them gets it. forced-command runs here as an
//! unprivileged service account of the test's own (root's enrollments are
//! never grouped), against a BackupPC folder that account owns.
//!
//! - A burst held back behind the lock is led by one enrollment: every
//!   one is answered, with its own key, and every file names every host.
//! - Tokens are counted across the group as if one after another.
//! - Every leader killed at its Nth rename, for every N: the others are
//!   still done by the next leader, every listed host is whole, and a
//!   re-run of each killed one finishes it with nothing left behind.

mod common;

use backuppc_enroll::backuppc::hosts;
use backuppc_enroll::protocol::answer::Answer;
use backuppc_enroll::store::registry::Registry;
use common::world::STOCK_HOSTS;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";

struct Service {
    dir: TestDir,
    user: SystemUser,
    bins: Bins,
    config: PathBuf,
}

impl Service {
    fn new(extra: &str) -> Service {
        require_root();
        // No reload unless the test asks for one.
        let reload = if extra.contains("reload_command") { "" } else { "reload_command = []\n" };
        let dir = TestDir::new("gc");
        let name = unique("bpegc");
        let user = SystemUser::create(&name, &dir.join("home"));
        let bins = install_bins(&dir);
        fs::write(dir.join("logons"), "cmartin\n").unwrap();
        let config = dir.join("server.toml");
        fs::write(
            &config,
            format!(
                "backuppc_conf_dir = {:?}\nbackuppc_user = {name:?}\nssh_dir = {:?}\nurl = \"https://b/?host={{host}}\"\n\
                 logon_check = \"file\"\nlogon_file = {:?}\nregistry = {:?}\ntokens = {:?}\n{reload}\
                 hello_timeout = 5\nrequest_timeout = 120\nhost_naming = \"ip\"\nnetworks = [\"127.0.0.0/8\"]\naudit_log = {:?}\n{extra}",
                dir.join("backuppc"),
                dir.join("ssh"),
                dir.join("logons"),
                dir.join("registry/registry.json"),
                dir.join("registry/tokens.json"),
                dir.join("audit.log"),
            ),
        )
        .unwrap();
        let s = Service { dir, user, bins, config };
        s.reset();
        s
    }

    /// Back to no enrollment at all, every folder the account's.
    fn reset(&self) {
        for d in ["backuppc", "registry", "ssh"] {
            let _ = fs::remove_dir_all(self.dir.join(d));
            let p = self.dir.mkdir(d);
            self.user.chown(&p);
        }
        let hosts = self.dir.join("backuppc/hosts");
        fs::write(&hosts, STOCK_HOSTS).unwrap();
        self.user.chown(&hosts);
        let audit = self.dir.join("audit.log");
        fs::write(&audit, "").unwrap();
        self.user.chown(&audit);
        // The lock file, made now so that the test can hold it.
        let lock = self.lock_path();
        fs::write(&lock, "").unwrap();
        self.user.chown(&lock);
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("registry/registry.json.lock")
    }

    /// An enrollment from `ip`, as sshd runs it for the service account.
    fn spawn(&self, ip: &str, hello: &str) -> Child {
        let (uid, gid) = self.user.ids();
        let mut cmd = as_sshd_runs(&self.bins.forced_command, &self.config, "linux:cmartin", ip);
        cmd.uid(uid).gid(gid);
        feed(&mut cmd, hello.as_bytes(), None)
    }

    /// Proposals waiting beside the registry.
    fn proposals(&self) -> Vec<PathBuf> {
        self.queue_files().into_iter().filter(|p| p.to_string_lossy().ends_with(".req")).collect()
    }

    fn queue_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for e in fs::read_dir(self.dir.join("registry")).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".registry.json.") {
                found.push(e.path());
            }
        }
        found
    }

    /// Hold the registry lock, start `ips`' enrollments, wait until each
    /// has left its proposal, and release the lock: one of them leads.
    fn burst(&self, ips: &[String], hello: &str) -> Vec<Child> {
        let held = fs::File::open(self.lock_path()).unwrap();
        held.lock().unwrap();
        let children: Vec<Child> = ips.iter().map(|ip| self.spawn(ip, hello)).collect();
        let start = Instant::now();
        while self.proposals().len() < ips.len() {
            assert!(start.elapsed() < Duration::from_secs(60), "only {} proposals appeared", self.proposals().len());
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        children
    }

    fn hosts_text(&self) -> String {
        fs::read_to_string(self.dir.join("backuppc/hosts")).unwrap()
    }

    fn registry(&self) -> Registry {
        Registry::load(&self.dir.join("registry/registry.json")).unwrap()
    }

    /// Every host in the hosts file has its per-host config (whole), its
    /// key and an enrolled registry entry.
    fn assert_listed_hosts_complete(&self, when: &str) {
        let text = self.hosts_text();
        assert!(text.starts_with(STOCK_HOSTS), "{when}: other lines intact");
        let reg = self.registry_or_empty();
        for (_, e) in hosts::entries(&text) {
            if e.host == "farside" {
                continue;
            }
            let h = &e.host;
            let pl = fs::read_to_string(self.dir.join(&format!("backuppc/pc/{h}.pl")))
                .unwrap_or_else(|_| panic!("{when}: {h} listed without its per-host config"));
            assert!(pl.ends_with("'--stats'];\n"), "{when}: {h}'s per-host config is whole");
            assert!(
                self.dir.join(&format!("ssh/backuppc-enroll/{h}.key")).exists(),
                "{when}: {h} listed without its key"
            );
            assert!(
                reg.hosts.get(h).is_some_and(|r| r.state == "enrolled"),
                "{when}: {h} listed without an enrolled entry"
            );
        }
    }

    fn registry_or_empty(&self) -> Registry {
        let p = self.dir.join("registry/registry.json");
        if p.exists() {
            Registry::load(&p).unwrap()
        } else {
            Registry::default()
        }
    }

    /// The largest group an `accepted` audit event reports.
    fn largest_group(&self) -> u64 {
        fs::read_to_string(self.dir.join("audit.log"))
            .unwrap()
            .lines()
            .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str::<serde_json::Value>(&l[i..]).ok()))
            .filter(|v| v["event"] == "accepted")
            .filter_map(|v| v["group"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// Temporary, staging and queue files left in the folders written.
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut left = self.queue_files();
        for d in ["backuppc", "backuppc/pc", "ssh", "ssh/backuppc-enroll"] {
            let Ok(entries) = fs::read_dir(self.dir.join(d)) else { continue };
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".tmp") || n.ends_with(".new") {
                    left.push(e.path());
                }
            }
        }
        left
    }
}

fn hello(keys: &str) -> String {
    format!("protocol: 2\nhostkey: {keys}\nuser: bckpciuem\nport: 22\n")
}

fn answered_key(out: &Output) -> Option<String> {
    match Answer::parse(&out.stdout) {
        Ok(Answer::Success(s)) => Some(s.key),
        _ => None,
    }
}

fn ips(n: usize, base: u8) -> Vec<String> {
    (0..n).map(|i| format!("127.0.{base}.{}", i + 1)).collect()
}

fn pub_key(dir: &Path, host: &str) -> String {
    let line = fs::read_to_string(dir.join(format!("ssh/backuppc-enroll/{host}.pub"))).unwrap();
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_burst_behind_the_lock_is_written_by_one_leader() {
    let s = Service::new("");
    let n: usize = std::env::var("GC_N").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let mut addresses: Vec<String> = (0..n).map(|i| format!("127.1.{}.{}", i / 250, 1 + i % 250)).collect();
    // The same host twice: the second waits for the next leader.
    addresses.push(addresses[0].clone());
    let outs: Vec<Output> =
        s.burst(&addresses, &hello(KEY)).into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let keys: Vec<String> = outs
        .iter()
        .zip(&addresses)
        .map(|(o, ip)| answered_key(o).unwrap_or_else(|| panic!("{ip}: {}", String::from_utf8_lossy(&o.stdout))))
        .collect();
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), keys.len(), "each enrollment its own key");
    if std::env::var("GC_N").is_ok() {
        println!(
            "{}",
            fs::read_to_string(s.dir.join("audit.log"))
                .unwrap()
                .lines()
                .filter(|l| l.contains("\"group\"") && l.contains("size"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(s.largest_group() >= 24, "one leader wrote the whole burst (largest group {})", s.largest_group());

    let text = s.hosts_text();
    let reg = s.registry();
    let kh = fs::read_to_string(s.dir.join("ssh/known_hosts")).unwrap();
    for (i, ip) in addresses.iter().enumerate().take(n) {
        assert!(hosts::find(&text, ip).is_some_and(|e| e.user == "cmartin"), "{ip} in hosts");
        assert!(reg.hosts.get(ip).is_some_and(|e| e.state == "enrolled"), "{ip} enrolled");
        assert!(kh.contains(&format!("{ip} {KEY}")), "{ip}'s host key pinned");
        if i > 0 {
            assert_eq!(pub_key(&s.dir.path, ip), keys[i], "{ip}: the key answered is the key in place");
        }
    }
    // The host asked for twice ends with one of the two keys answered.
    let twice = pub_key(&s.dir.path, &addresses[0]);
    assert!(twice == keys[0] || twice == keys[n], "{twice} is one of the keys answered");
    assert_eq!(hosts::entries(&text).len(), n + 1, "farside and the hosts, each once:\n{text}");
    assert_eq!(reg.hosts.len(), n);
    s.assert_listed_hosts_complete("after the burst");
    assert!(s.leftovers().is_empty(), "left behind: {:?}", s.leftovers());
    // Written as the service account, as a single enrollment would.
    let (uid, _) = s.user.ids();
    assert_eq!(fs::metadata(s.dir.join("backuppc/hosts")).unwrap().uid(), uid);
}

#[test]
fn tokens_are_counted_across_a_group() {
    let s = Service::new("mode = \"token\"\n");
    let out = std::process::Command::new(&s.bins.forced_command)
        .arg("--config")
        .arg(&s.config)
        .args(["token", "create", "--uses", "3", "--expires", "1h"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let tokens = s.dir.join("registry/tokens.json");
    s.user.chown(&tokens);
    let hello = format!("{}token: {token}\n", hello(KEY));
    let outs: Vec<Output> = s.burst(&ips(5, 9), &hello).into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let accepted = outs.iter().filter(|o| answered_key(o).is_some()).count();
    let used_up = outs.iter().filter(|o| String::from_utf8_lossy(&o.stdout).contains("used")).count();
    assert_eq!(
        (accepted, used_up),
        (3, 2),
        "{:?}",
        outs.iter().map(|o| String::from_utf8_lossy(&o.stdout)).collect::<Vec<_>>()
    );
    assert!(!fs::read_to_string(s.dir.join("registry/tokens.json")).unwrap().contains(&token), "stored hashed");
    assert!(s.leftovers().is_empty(), "left behind: {:?}", s.leftovers());
    assert_eq!(s.registry().hosts.len(), 3);
}

/// Each enrollment under its own strace, which kills it at its `when`th
/// rename(2). Each renames its proposal into the queue first; after that
/// only a leader renames (files are renamed into place by the leader
/// alone), so each leader in turn dies at that point of its work, until
/// the group left is too small to reach it.
#[test]
fn leaders_killed_at_every_rename_leave_the_rest_to_the_next() {
    let s = Service::new("");
    let (uid, gid) = s.user.ids();
    let g = 5;
    let mut killed = 0;
    // An enrollment renames its proposal into the queue (1); a leader of
    // g proposals then renames the registry (`enrolling`), per host
    // pc/HOST.pl, key and .pub, known_hosts and the registry, then
    // hosts.old and hosts: 1 + 3g + 5 in all.
    for when in 1..=(3 * g + 7) {
        s.reset();
        let addresses = ips(g, 40 + when as u8);
        let held = fs::File::open(s.lock_path()).unwrap();
        held.lock().unwrap();
        let children: Vec<Child> = addresses
            .iter()
            .map(|ip| {
                let cmd = as_sshd_runs(&s.bins.forced_command, &s.config, "linux:cmartin", ip);
                let mut traced = std::process::Command::new("strace");
                traced
                    .args(["-f", "-qq", "-o", "/dev/null", "-e", &format!("inject=rename:signal=KILL:when={when}")])
                    .arg(cmd.get_program())
                    .args(cmd.get_args())
                    .env_clear()
                    .uid(uid)
                    .gid(gid);
                for (k, v) in cmd.get_envs() {
                    traced.env(k, v.unwrap());
                }
                traced.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
                feed(&mut traced, hello(KEY).as_bytes(), None)
            })
            .collect();
        // Each is either in the queue or dead (killed at its first rename).
        let mut children = children;
        let start = Instant::now();
        while s.proposals().len() + children.iter_mut().filter_map(|c| c.try_wait().ok().flatten()).count() < g {
            assert!(start.elapsed() < Duration::from_secs(60), "only {} proposals appeared", s.proposals().len());
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        let outs: Vec<(String, Output)> =
            addresses.iter().cloned().zip(children.into_iter().map(|c| c.wait_with_output().unwrap())).collect();
        let at = format!("killed at each leader's rename #{when}");
        s.assert_listed_hosts_complete(&at);
        for (ip, out) in &outs {
            match answered_key(out) {
                // Answered: its files are in place, with the key answered.
                Some(key) => assert_eq!(pub_key(&s.dir.path, ip), key, "{at}: {ip}"),
                None => {
                    killed += 1;
                    let again = s.spawn(ip, &hello(KEY)).wait_with_output().unwrap();
                    assert!(
                        answered_key(&again).is_some(),
                        "{at}: re-run of {ip}: {}",
                        String::from_utf8_lossy(&again.stdout)
                    );
                }
            }
        }
        let text = s.hosts_text();
        for ip in &addresses {
            assert!(hosts::find(&text, ip).is_some(), "{at}: {ip} enrolled in the end");
        }
        assert_eq!(s.registry().hosts.len(), g, "{at}");
        s.assert_listed_hosts_complete(&at);
        assert!(s.leftovers().is_empty(), "{at}: left behind: {:?}", s.leftovers());
    }
    assert!(killed > 3 * g, "the injected kills did stop leaders ({killed})");
}

/// The group's leader tells BackupPC to reload whatever its own outcome:
/// here most of a group is refused (hosts set up by hand), one host is
/// written, and whichever of them leads, the reload command runs after
/// the write. Three rounds, so that a refused leader is all but certain.
#[test]
fn a_group_led_by_a_refused_enrollment_still_tells_backuppc() {
    let dir = TestDir::new("gcr");
    let log = dir.join("reloads");
    let script = dir.join("reload.sh");
    write_script(&script, &format!("#!/bin/sh\necho reloaded >> {log:?}\n"));
    let s = Service::new(&format!("reload_command = [{script:?}]\n"));
    fs::write(&log, "").unwrap();
    s.user.chown(&log);
    for round in 0..3u8 {
        let addresses = ips(6, 60 + round);
        // All but the last set up by hand: refused, whoever leads.
        let pc = s.dir.join("backuppc/pc");
        fs::create_dir_all(&pc).unwrap();
        s.user.chown(&pc);
        for ip in &addresses[..5] {
            fs::write(pc.join(format!("{ip}.pl")), "$Conf{XferMethod} = 'tar';\n").unwrap();
        }
        let before = fs::read_to_string(&log).unwrap().lines().count();
        let outs: Vec<Output> =
            s.burst(&addresses, &hello(KEY)).into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        for o in &outs[..5] {
            assert!(String::from_utf8_lossy(&o.stdout).contains("set up in BackupPC by hand"), "{o:?}");
        }
        assert!(answered_key(&outs[5]).is_some(), "{}", String::from_utf8_lossy(&outs[5].stdout));
        let start = Instant::now();
        while fs::read_to_string(&log).unwrap().lines().count() <= before {
            assert!(start.elapsed() < Duration::from_secs(20), "round {round}: no reload after the group's write");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

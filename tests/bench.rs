//! Benchmarks (ignored by `cargo test`; run by bench/run.sh in release
//! mode). Each figure is a ratio measured side by side in the same run,
//! alternating the two variants, medians of several runs: absolute times
//! on a shared machine are noise.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

/// Alternate `a` and `b` `n` times; medians and the ratio b/a.
fn compare(name: &str, n: usize, mut a: impl FnMut() -> Duration, mut b: impl FnMut() -> Duration) -> f64 {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..n {
        ta.push(a());
        tb.push(b());
    }
    let (ma, mb) = (median(ta), median(tb));
    let ratio = mb.as_secs_f64() / ma.as_secs_f64();
    println!("{name:<58} {:>9.1} ms {:>9.1} ms {ratio:>7.3}x", ma.as_secs_f64() * 1e3, mb.as_secs_f64() * 1e3);
    ratio
}

#[test]
#[ignore = "benchmark: run bench/run.sh"]
fn bench() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);

    // A second key for the backup user: /bin/true as forced command, and
    // a third with no forced command (plain rsync through sudo).
    let ak = w.client_home().join(".ssh/authorized_keys");
    let k_true = w.dir.join("k_true");
    let k_plain = w.dir.join("k_plain");
    let pub_true = keygen(&k_true, "bench true");
    let pub_plain = keygen(&k_plain, "bench plain");
    for k in [&k_true, &k_plain] {
        w.server.chown(k);
    }
    let mut text = fs::read_to_string(&ak).unwrap();
    text.push_str(&format!("restrict,command=\"/bin/true\" {pub_true}\nrestrict {pub_plain}\n"));
    fs::write(&ak, text).unwrap();
    let ssh_cmd = w.ssh_command("localhost");
    let with_key = |key: &Path| {
        ssh_cmd.split(' ').collect::<Vec<_>>().windows(2).fold(ssh_cmd.clone(), |acc, p| {
            if p[0] == "-i" {
                acc.replace(p[1], key.to_str().unwrap())
            } else {
                acc
            }
        })
    };
    let ssh_true = with_key(&k_true);
    let ssh_plain = with_key(&k_plain);
    let ssh = |cmdline: &str, remote: &str| {
        let mut words = cmdline.split(' ');
        let mut c = w.server.command(words.next().unwrap());
        c.args(words).arg("127.0.0.1").arg(remote);
        c
    };
    println!("\n{:<58} {:>12} {:>12} {:>8}", "measure (A vs B)", "A median", "B median", "B/A");

    // 1. Session cost of rsyncsend.
    compare(
        "1. session: /bin/true vs rsyncsend `true`",
        rounds * 2,
        || time(ssh(&ssh_true, "true")),
        || time(ssh(&ssh_cmd, "true")),
    );

    // 2. rsync through rsyncsend vs plain rsync over the same sshd.
    let small = w.data.join("small");
    fs::create_dir_all(&small).unwrap();
    for i in 0..10_000 {
        let d = small.join(format!("d{}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&d).unwrap();
        }
        fs::write(d.join(format!("f{i}")), vec![(i % 251) as u8; 10_000]).unwrap();
    }
    let big = w.data.join("big");
    fs::create_dir_all(&big).unwrap();
    run_ok(
        Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "count=1024", "status=none"])
            .arg(format!("of={}/1g", big.display())),
    );
    let pull = |cmdline: &str, rsync_path: &str, src: &Path, protect: bool| {
        let dest = w.dir.join("dest");
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).unwrap();
        w.server.chown(&dest);
        let mut c = w.server.command("/usr/bin/rsync");
        c.args(["-aH", "--numeric-ids", &format!("--rsync-path={rsync_path}"), "-e", cmdline]);
        if protect {
            c.arg("--protect-args");
        }
        c.arg(format!("127.0.0.1:{}/", src.display())).arg(format!("{}/", dest.display()));
        time(c)
    };
    let heavy = (rounds / 3).max(3);
    for (name, src) in [("10,000 files, 100 MB", &small), ("one 1 GiB file", &big)] {
        for protect in [false, true] {
            compare(
                &format!("2. {name}{}: plain rsync vs rsyncsend", if protect { ", -s" } else { "" }),
                heavy,
                || pull(&ssh_plain, "sudo -n /usr/bin/rsync", src, protect),
                || pull(&ssh_cmd, "/usr/bin/rsync", src, protect),
            );
        }
    }
    compare(
        "2. ceiling: ssh cat 1 GiB vs rsync via rsyncsend",
        heavy,
        || {
            let mut c =
                ssh(&ssh_plain, &format!("sudo -n /usr/bin/rsync --version >/dev/null; cat {}/1g", big.display()));
            c.stdout(Stdio::null());
            time(c)
        },
        || pull(&ssh_cmd, "/usr/bin/rsync", &big, true),
    );

    // 3. One enrollment against a trivial session of the register key.
    let reg_true = w.dir.join("reg_true");
    let reg_true_pub = keygen(&reg_true, "bench register true");
    let srv_ak = w.server.home.join(".ssh/authorized_keys");
    let mut t = fs::read_to_string(&srv_ak).unwrap();
    t.push_str(&format!("restrict,command=\"/bin/true\" {reg_true_pub}\n"));
    fs::write(&srv_ak, t).unwrap();
    let hello = w.dir.join("hello");
    fs::write(
        &hello,
        format!("protocol: 2\nhostname: localhost\nhostkey: {}\nuser: bckpciuem\nport: 22\n", w.sshd.host_pub),
    )
    .unwrap();
    let register = |key: &Path| {
        let mut c = Command::new("ssh");
        c.args(["-x", "-a", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", w.etc.join("server_host_keys").display()))
            .arg("-i")
            .arg(key)
            .args(["-p", &w.sshd.port.to_string(), "-l", &w.server.name, "127.0.0.1", "linux:cmartin"])
            .stdin(fs::File::open(&hello).unwrap());
        let start = Instant::now();
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        start.elapsed()
    };
    compare(
        "3. register key: /bin/true vs a whole enrollment",
        rounds * 2,
        || register(&reg_true),
        || register(&w.register_key),
    );
}

//! Benchmark of `forced-command fleet check` (ignored by `cargo test`; run
//! by bench/run.sh or bench/fleet.sh in release mode): BENCH_FLEET_HOSTS
//! (default 200) registry hosts on loopback addresses 127.0.x.y, served
//! by as few sshds as OpenSSH allows (15 addresses each, plus 127.0.0.1),
//! with Debian's default `MaxStartups 10:30:100`, against the seed's loop
//! shape over the same hosts in the same run: host after host, five
//! sequential OpenSSH `ssh` sessions each. Rounds alternate which side
//! goes first; min / median / max of both and the ratio of medians are
//! printed, with the hosts lost and the key exchanges sshd dropped.

mod common;

use common::fleet::{write_authorized_keys, FleetServer, HostSpec};
use common::*;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn spread(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let s = |d: Duration| d.as_secs_f64();
    (s(v[0]), s(v[v.len() / 2]), s(v[v.len() - 1]))
}

/// Lines of the sshds' logs saying a connection was dropped at key
/// exchange (`MaxStartups`).
fn drops(sshds: &[Sshd]) -> usize {
    sshds.iter().map(|s| fs::read_to_string(&s.log).unwrap_or_default().matches("past MaxStartups").count()).sum()
}

#[test]
#[ignore = "benchmark: run bench/run.sh"]
fn fleet_check_against_the_sequential_ssh_loop() {
    let n = env_or("BENCH_FLEET_HOSTS", 200);
    let rounds = env_or("BENCH_FLEET_ROUNDS", 3);
    let parallel = env_or("BENCH_FLEET_PARALLEL", 32).to_string();
    let srv = FleetServer::new();
    let hosts: Vec<String> = (0..n).map(|i| format!("127.0.{}.{}", 61 + i / 250, 1 + i % 250)).collect();
    let ak = srv.dir.join("authorized_keys");
    write_authorized_keys(&ak, &[]);
    let mut sshds = Vec::new();
    let mut specs = Vec::new();
    for (j, group) in hosts.chunks(15).enumerate() {
        let addrs: Vec<&str> = group.iter().map(String::as_str).collect();
        let sshd = srv.workstation(&srv.dir.join(&format!("sshd{j}")), &addrs, &ak, "MaxStartups 10:30:100\n");
        for h in group {
            specs.push(HostSpec { host: h.clone(), port: sshd.port, pin: Some(sshd.host_pub.clone()) });
        }
        sshds.push(sshd);
    }
    let keys = srv.register(&specs);
    let lines: Vec<String> = keys.iter().map(|k| srv.key_line(k)).collect();
    write_authorized_keys(&ak, &lines);
    let retry = srv.dir.join("retry").display().to_string();

    let fleet = || {
        let start = Instant::now();
        let out = srv.fleet(&["check", "--json", "--parallel", &parallel, "--retry-file", &retry]);
        let took = start.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let ok = summary["summary"]["counts"]["ok"].as_u64().unwrap_or(0) as usize;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            text.lines().filter(|l| !l.contains("\"ok\"")).collect::<Vec<_>>().join("\n")
        );
        (took, n - ok)
    };
    let ssh_loop = || {
        let start = Instant::now();
        for spec in &specs {
            for _ in 0..5 {
                let status = Command::new("/usr/bin/ssh")
                    .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
                    .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
                    .arg("-o")
                    .arg(format!("UserKnownHostsFile={}", srv.known_hosts().display()))
                    .arg("-o")
                    .arg(format!("HostKeyAlias={}", spec.host))
                    .arg("-i")
                    .arg(srv.key_path(&spec.host))
                    .args(["-p", &spec.port.to_string(), "-l", &srv.backup.name, &spec.host, "true"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success(), "ssh to {} failed: {status}", spec.host);
            }
        }
        start.elapsed()
    };

    fleet(); // warm-up: page cache, sshd's first forks
    let drops_before = drops(&sshds);
    let (mut tf, mut tl, mut lost) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        if round % 2 == 0 {
            let (t, l) = fleet();
            tf.push(t);
            lost += l;
            tl.push(ssh_loop());
        } else {
            tl.push(ssh_loop());
            let (t, l) = fleet();
            tf.push(t);
            lost += l;
        }
    }
    let dropped = drops(&sshds) - drops_before;
    let (f0, fm, f1) = spread(tf);
    let (l0, lm, l1) = spread(tl);
    println!(
        "\nfleet check, {n} hosts on {} sshds (MaxStartups 10:30:100), --parallel {parallel}, {rounds} rounds",
        sshds.len()
    );
    println!("  fleet check          min / median / max  {f0:.2} / {fm:.2} / {f1:.2} s");
    println!("  loop, 5 ssh per host min / median / max  {l0:.2} / {lm:.2} / {l1:.2} s");
    println!(
        "  ratio of medians {:.1}x (worst fleet against best loop {:.1}x); hosts lost {lost}; key exchanges sshd dropped and fleet retried {dropped}",
        lm / fm,
        l0 / f1
    );
    assert_eq!(lost, 0, "no host may be lost");
}

//! Benchmarks (ignored by `cargo test`; run by bench/run.sh in release
//! mode). Each figure is a ratio measured side by side in the same run,
//! alternating the two variants, medians of several runs: absolute times
//! on a shared machine are noise.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
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

/// Run `a` and `b` under hyperfine (through sh, whose start-up it
/// subtracts); the ratio of medians.
fn hyperfine(name: &str, runs: usize, a: &str, b: &str, prepare: Option<&str>) -> f64 {
    let json = tempfile::NamedTempFile::new().unwrap();
    let mut c = Command::new("hyperfine");
    c.args(["--warmup", "2", "--runs", &runs.to_string(), "--style", "none", "--export-json"]).arg(json.path());
    if let Some(p) = prepare {
        c.arg("--prepare").arg(p);
    }
    c.args(["-n", "A", a, "-n", "B", b]);
    let out = c.output().expect("hyperfine (apt-get install hyperfine)");
    assert!(out.status.success(), "hyperfine: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&fs::read(json.path()).unwrap()).unwrap();
    let (ma, mb) = (v["results"][0]["median"].as_f64().unwrap(), v["results"][1]["median"].as_f64().unwrap());
    let ratio = mb / ma;
    println!("{name:<58} {:>9.1} ms {:>9.1} ms {ratio:>7.3}x", ma * 1e3, mb * 1e3);
    ratio
}

/// A command line as one shell word.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A second register key whose forced command is `/bin/true`: the trivial
/// session enrollments are compared with.
fn trivial_register_key(w: &World) -> std::path::PathBuf {
    let key = w.dir.join("reg_true");
    let public = keygen(&key, "bench register true");
    let ak = w.server.home.join(".ssh/authorized_keys");
    let mut text = fs::read_to_string(&ak).unwrap();
    text.push_str(&format!("restrict,command=\"/bin/true\" {public}\n"));
    fs::write(&ak, text).unwrap();
    key
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
    println!("\n{:<58} {:>12} {:>12} {:>8}", "measure (A vs B)", "A median", "B median", "B/A");

    let as_server = |cmd: &str| format!("runuser -u {} -- {cmd}", w.server.name);

    // 1. Session cost of rsyncsend.
    hyperfine(
        "1. session: /bin/true vs rsyncsend `true`",
        rounds * 2,
        &as_server(&format!("{ssh_true} 127.0.0.1 true")),
        &as_server(&format!("{ssh_cmd} 127.0.0.1 true")),
        None,
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
    let dest = w.dir.join("dest");
    let prepare = format!("rm -rf {d} && mkdir {d} && chown {u} {d}", d = dest.display(), u = w.server.name);
    let pull = |cmdline: &str, rsync_path: &str, src: &Path, protect: bool| {
        as_server(&format!(
            "/usr/bin/rsync -aH --numeric-ids --rsync-path={} -e {}{} 127.0.0.1:{}/ {}/",
            sq(rsync_path),
            sq(cmdline),
            if protect { " --protect-args" } else { "" },
            src.display(),
            dest.display()
        ))
    };
    let heavy = (rounds / 3).max(3);
    for (name, src) in [("10,000 files, 100 MB", &small), ("one 1 GiB file", &big)] {
        for protect in [false, true] {
            hyperfine(
                &format!("2. {name}{}: plain rsync vs rsyncsend", if protect { ", -s" } else { "" }),
                heavy,
                &pull(&ssh_plain, "sudo -n /usr/bin/rsync", src, protect),
                &pull(&ssh_cmd, "/usr/bin/rsync", src, protect),
                Some(&prepare),
            );
        }
    }
    hyperfine(
        "2. ceiling: ssh cat 1 GiB vs rsync via rsyncsend",
        heavy,
        &as_server(&format!("{ssh_plain} 127.0.0.1 {} >/dev/null", sq(&format!("cat {}/1g", big.display())))),
        &pull(&ssh_cmd, "/usr/bin/rsync", &big, true),
        Some(&prepare),
    );

    // 3. One enrollment against a trivial session of the register key.
    let reg_true = trivial_register_key(&w);
    let hello = w.dir.join("hello");
    fs::write(
        &hello,
        format!("protocol: 2\nhostname: localhost\nhostkey: {}\nuser: bckpciuem\nport: 22\n", w.sshd.host_pub),
    )
    .unwrap();
    let register = |key: &Path| {
        format!(
            "ssh -x -a -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -i {} -p {} -l {} 127.0.0.1 linux:cmartin < {}",
            w.etc.join("server_host_keys").display(),
            key.display(),
            w.sshd.port,
            w.server.name,
            hello.display()
        )
    };
    hyperfine(
        "3. register key: /bin/true vs a whole enrollment",
        rounds * 2,
        &register(&reg_true),
        &register(&w.register_key),
        None,
    );

    // ssh2 (enroll's client), with and without TCP_NODELAY: a trivial
    // session of the register key, in-process.
    let call = |nodelay: bool| {
        let pins = w.etc.join("server_host_keys");
        let user = w.server.name.clone();
        let c = backuppc_enroll::ssh::client::Call {
            server: "127.0.0.1",
            port: w.sshd.port,
            user: &user,
            register_key: &reg_true,
            host_keys_file: &pins,
            timeout: Duration::from_secs(30),
            source: None,
            nodelay,
        };
        let start = Instant::now();
        let r = c.run("linux:cmartin", b"").unwrap();
        assert_eq!(r.exit_status, 0);
        start.elapsed()
    };
    compare("5. ssh2 session: TCP_NODELAY on vs off", rounds * 2, || call(true), || call(false));
}

/// Figure 4: a burst of 200 concurrent enrollments of distinct hosts (one
/// loopback source address each, host_naming = "ip"), through enroll's own
/// SSH client (with its retries), against a burst of trivial sessions of
/// the register key; once with Debian's default MaxStartups, once raised.
#[test]
#[ignore = "benchmark: run bench/run.sh"]
fn burst() {
    use backuppc_enroll::protocol::answer::Answer;
    use backuppc_enroll::ssh::client::Call;
    use std::net::IpAddr;
    let n: usize = std::env::var("BENCH_BURST").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let w = World::new(Options {
        server_extra: "host_naming = \"ip\"\nrequest_timeout = 300\n".into(),
        ..Options::default()
    });
    let reg_true = trivial_register_key(&w);
    let hello = format!("protocol: 2\nhostkey: {}\nuser: bckpciuem\nport: 22\n", w.sshd.host_pub);
    let key_for = |sshd: &Sshd, name: &str| {
        let f = w.dir.join(name);
        fs::write(&f, sshd.known_hosts_line()).unwrap();
        f
    };
    // One burst: n threads, each its own source address; successes, wall.
    let burst = |port: u16, pins: &Path, key: &Path, enroll: bool| -> (usize, Duration) {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (pins, key, hello) = (pins.to_path_buf(), key.to_path_buf(), hello.clone());
                let user = w.server.name.clone();
                std::thread::spawn(move || {
                    let source: IpAddr = format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250).parse().unwrap();
                    let call = Call {
                        server: "127.0.0.1",
                        port,
                        user: &user,
                        register_key: &key,
                        host_keys_file: &pins,
                        timeout: Duration::from_secs(120),
                        source: Some(source),
                        nodelay: true,
                    };
                    match call.run("linux:cmartin", hello.as_bytes()) {
                        Ok(r) if !enroll => r.exit_status == 0,
                        Ok(r) => matches!(Answer::parse(&r.stdout), Ok(Answer::Success(_))),
                        Err(_) => false,
                    }
                })
            })
            .collect();
        let ok = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
        (ok, start.elapsed())
    };
    println!(
        "\n{:<58} {:>12} {:>12} {:>8}",
        format!("4. burst of {n} (A: trivial, B: enrollments)"),
        "A wall",
        "B wall",
        "B/A"
    );
    for (label, max_startups) in
        [("Debian default MaxStartups 10:30:100", "10:30:100"), ("MaxStartups 400:30:800", "400:30:800")]
    {
        let sshd = Sshd::start_with(
            &w.dir.join(&format!("sshd-{max_startups}").replace(":", "-")),
            &[&w.server.name],
            SshdOptions { extra_config: format!("MaxStartups {max_startups}\n"), ..Default::default() },
        );
        let pins = key_for(&sshd, &format!("pins-{}", sshd.port));
        let (ok_a, wall_a) = burst(sshd.port, &pins, &reg_true, false);
        let (ok_b, wall_b) = burst(sshd.port, &pins, &w.register_key, true);
        println!(
            "{:<58} {:>9.1} s  {:>9.1} s  {:>7.3}x   ({ok_a}/{n} and {ok_b}/{n} succeeded)",
            label,
            wall_a.as_secs_f64(),
            wall_b.as_secs_f64(),
            wall_b.as_secs_f64() / wall_a.as_secs_f64()
        );
        assert_eq!(ok_b, n, "every enrollment of the burst succeeds");
    }
    // Afterwards: exactly n intact entries everywhere.
    let hosts = fs::read_to_string(w.conf_dir.join("hosts")).unwrap();
    let rows = backuppc_enroll::backuppc::hosts::entries(&hosts)
        .into_iter()
        .filter(|(_, e)| e.host.starts_with("127.0."))
        .count();
    let kh = fs::read_to_string(w.server.home.join(".ssh/known_hosts")).unwrap();
    let reg = backuppc_enroll::store::registry::Registry::load(&w.registry_dir.join("registry.json")).unwrap();
    println!(
        "   afterwards: {rows} hosts lines, {} known_hosts lines, {} registry entries",
        kh.lines().count(),
        reg.hosts.len()
    );
    assert_eq!(rows, n);
    assert_eq!(kh.lines().count(), n);
    assert_eq!(reg.hosts.len(), n);
}

//! Benchmarks (ignored by `cargo test`; run by bench/run.sh in release
//! mode). Each figure is a ratio of two variants measured in the same run
//! by one runner: warm-up rounds discarded, then A and B alternated each
//! round (AB, BA, AB…), min / median / max printed for both beside the
//! ratio of medians, so that noise can be told from cost.

mod common;

use common::backuppc::*;
use common::world::{Options, World};
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// min / median / max.
fn spread(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn print_header() {
    println!(
        "\n{:<52} {:>24} {:>24} {:>7}",
        "measure (A vs B), ms", "A min / median / max", "B min / median / max", "B/A"
    );
}

/// `warmup` discarded rounds, then `n` rounds alternating which side goes
/// first; prints both spreads and returns the ratio of medians.
fn compare(
    name: &str,
    warmup: usize,
    n: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> f64 {
    for _ in 0..warmup {
        a();
        b();
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for round in 0..n {
        if round % 2 == 0 {
            ta.push(a());
            tb.push(b());
        } else {
            tb.push(b());
            ta.push(a());
        }
    }
    let (a0, am, a1) = spread(ta);
    let (b0, bm, b1) = spread(tb);
    let ratio = bm.as_secs_f64() / am.as_secs_f64();
    let side = |lo, mid, hi| format!("{:.1} / {:.1} / {:.1}", ms(lo), ms(mid), ms(hi));
    println!("{name:<52} {:>24} {:>24} {ratio:>6.3}x", side(a0, am, a1), side(b0, bm, b1));
    ratio
}

/// Run `cmd` to completion (stdout discarded), asserting success; its
/// wall time.
fn timed(cmd: &mut Command) -> Duration {
    // output(): stdin is null unless the caller set it.
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let took = start.elapsed();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

/// A tmpfs mounted on `dir` for one bench, unmounted on drop, so that
/// the disk cannot dominate a figure.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        run_ok(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"]).arg(dir));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The bench's own sudoers drop-in for the plain rsync key: it lets
/// `user` run `rsync --server` as root, as a classic root-pull setup
/// does, without relying on what enroll writes. Checked with visudo
/// before it is put in place; removed on drop.
struct BenchSudoers(PathBuf);

impl BenchSudoers {
    fn install(user: &str) -> BenchSudoers {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        fs::write(tmp.path(), format!("{user} ALL=(root) NOPASSWD: /usr/bin/rsync --server *\n")).unwrap();
        run_ok(Command::new("visudo").arg("-cf").arg(tmp.path()));
        let path = Path::new("/etc/sudoers.d").join(format!("bpe-bench-{user}"));
        run_ok(Command::new("install").args(["-m", "0440", "-o", "root", "-g", "root"]).arg(tmp.path()).arg(&path));
        BenchSudoers(path)
    }
}

impl Drop for BenchSudoers {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// An ssh command line (words split on spaces, as BackupPC's
/// RsyncSshArgs are) with another key file.
fn with_key(ssh_cmd: &str, key: &Path) -> String {
    let words: Vec<&str> = ssh_cmd.split(' ').collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        out.push(if i > 0 && words[i - 1] == "-i" { key.to_str().unwrap() } else { w });
    }
    out.join(" ")
}

/// Figures 1 and 2: what rsyncsend costs a session and a backup.
#[test]
#[ignore = "benchmark: run bench/run.sh"]
fn rsyncsend() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let rounds = rounds();

    // More keys for the backup user: /bin/true as forced command, and one
    // with no forced command (plain rsync through sudo, by the bench's own
    // sudoers line).
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
    let _sudoers = BenchSudoers::install(&w.backup_user);
    let ssh_cmd = w.ssh_command("localhost");
    let ssh_true = with_key(&ssh_cmd, &k_true);
    let ssh_plain = with_key(&ssh_cmd, &k_plain);
    let as_server = |line: &str, remote: &str| {
        let mut c = w.server.command("/usr/bin/ssh");
        c.args(line.split(' ').skip(1)).arg("127.0.0.1").arg(remote);
        c
    };
    print_header();

    // 1. Session cost of rsyncsend.
    compare(
        "1. session: /bin/true vs rsyncsend `true`",
        2,
        rounds * 2,
        || timed(&mut as_server(&ssh_true, "true")),
        || timed(&mut as_server(&ssh_cmd, "true")),
    );

    // 2. rsync through rsyncsend vs plain rsync over the same sshd, both
    // ends on tmpfs.
    let src = w.data.join("bench");
    let _src_fs = Tmpfs::mount(&src, "2g");
    let small = src.join("small");
    for i in 0..10_000 {
        let d = small.join(format!("d{}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&d).unwrap();
        }
        fs::write(d.join(format!("f{i}")), vec![(i % 251) as u8; 10_000]).unwrap();
    }
    let big = src.join("big");
    fs::create_dir_all(&big).unwrap();
    run_ok(
        Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "count=1024", "status=none"])
            .arg(format!("of={}/1g", big.display())),
    );
    let dest_fs = Tmpfs::mount(&w.dir.join("dest"), "2g");
    let dest = dest_fs.0.join("x");
    // A fresh destination before each pull, outside the timing.
    let pull = |cmdline: &str, rsync_path: &str, from: &Path, protect: bool| {
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir(&dest).unwrap();
        w.server.chown(&dest);
        let mut c = w.server.command("/usr/bin/rsync");
        c.args(["-aH", "--numeric-ids"]).arg(format!("--rsync-path={rsync_path}")).args(["-e", cmdline]);
        if protect {
            c.arg("--protect-args");
        }
        c.arg(format!("127.0.0.1:{}/", from.display())).arg(format!("{}/", dest.display()));
        timed(&mut c)
    };
    let heavy = (rounds / 3).max(3);
    for (name, from) in [("10,000 files, 100 MB", &small), ("one 1 GiB file", &big)] {
        for protect in [false, true] {
            compare(
                &format!("2. {name}{}: plain rsync vs rsyncsend", if protect { ", -s" } else { "" }),
                1,
                heavy,
                || pull(&ssh_plain, "sudo -n /usr/bin/rsync", from, protect),
                || pull(&ssh_cmd, "/usr/bin/rsync", from, protect),
            );
        }
    }
    let cat = format!("cat {}/1g", big.display());
    compare(
        "2. ceiling: ssh cat 1 GiB vs rsync via rsyncsend -s",
        1,
        heavy,
        || timed(&mut as_server(&ssh_plain, &cat)),
        || pull(&ssh_cmd, "/usr/bin/rsync", &big, true),
    );
}

/// Figures 3 to 5, against a real BackupPC whose daemon runs (in a private
/// mount namespace): forced-command tells it to reload on every
/// enrollment, as on a real server.
#[test]
#[ignore = "benchmark: run bench/run.sh"]
fn enrollment() {
    use backuppc_enroll::protocol::answer::Answer;
    use backuppc_enroll::ssh::client::Call;
    use std::net::IpAddr;
    require_backuppc();
    let rounds = rounds();
    let n: usize = std::env::var("BENCH_BURST").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = TestDir::new("bench");
    let bins = install_bins(&dir);
    // BENCH_RELOAD=none: the same figures without telling the daemon, to
    // see what the reload costs.
    let reload = std::env::var("BENCH_RELOAD").unwrap_or_else(|_| "daemon".into());
    let bpc = BackupPc::new(
        &dir,
        &bins.forced_command,
        &format!("host_naming = \"ip\"\nrequest_timeout = 300\nreload = {reload:?}\n"),
    );
    // The trivial session enrollments are compared with: a second
    // register key whose forced command is /bin/true.
    let reg_true = dir.join("reg_true");
    bpc.authorize(&format!("restrict,command=\"/bin/true\" {}", keygen(&reg_true, "bench register true")));
    let sshd = bpc.sshd(&dir.join("sshd"), &["backuppc"], "");
    let ns = sshd.pid();
    let daemon = bpc.start_daemon(&dir, ns);
    let pins = dir.join("pins");
    fs::write(&pins, sshd.known_hosts_line()).unwrap();
    let hello_text = format!("protocol: 2\nhostkey: {}\nuser: bckpciuem\nport: 22\n", sshd.host_pub);
    let hello = dir.join("hello");
    fs::write(&hello, &hello_text).unwrap();
    println!("\n(BackupPC's daemon running; forced-command's reload = {reload:?})");
    print_header();

    // 3. One enrollment (OpenSSH's client) against a trivial session.
    let register = |key: &Path| {
        let mut c = Command::new("/usr/bin/ssh");
        c.args(["-x", "-a", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", pins.display()))
            .arg("-i")
            .arg(key)
            .args(["-p", &sshd.port.to_string(), "-l", "backuppc", "127.0.0.1", "linux:cmartin"])
            .stdin(fs::File::open(&hello).unwrap());
        timed(&mut c)
    };
    compare(
        "3. register key: /bin/true vs a whole enrollment",
        2,
        rounds * 2,
        || register(&reg_true),
        || register(&bpc.register_key),
    );
    let told = reload == "daemon";
    if told {
        let audit = bpc.audit_after_reloads(1);
        assert!(audit.contains("\"backuppc_reload\":\"ok\""), "the running daemon was told to reload: {audit}");
        let listed = text(&bpc.mesg(ns, &["status", "hosts"]).stdout);
        assert!(listed.contains("\"127.0.0.1\""), "the daemon lists the enrolled host: {listed}");
    }

    // Handler CPU: forced-command alone, as sshd runs it, in the
    // namespace as backuppc; user+sys of the child, less the same chain
    // (nsenter, setpriv) exec'ing /bin/true.
    let cpu = |program: &Path| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={ns}"))
            .args(["--mount", "--", "setpriv", "--reuid=backuppc", "--regid=backuppc", "--init-groups", "--"])
            .arg(program)
            .arg("--config")
            .arg(&bpc.server_toml)
            .env_clear()
            .env("SSH_ORIGINAL_COMMAND", "linux:cmartin")
            .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")
            .stdin(fs::File::open(&hello).unwrap());
        let before = children_cpu();
        timed(&mut c);
        children_cpu() - before
    };
    let runs = rounds * 4;
    let (mut fc, mut base) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        fc.push(cpu(&bins.forced_command));
        base.push(cpu(Path::new("/bin/true")));
    }
    let (fc0, fcm, fc1) = spread(fc);
    let (_, bm, _) = spread(base);
    println!(
        "{:<52} {:>24} {:>24}",
        format!("   handler CPU (user+sys), {runs} runs"),
        format!("{:.2} / {:.2} / {:.2}", ms(fc0), ms(fcm), ms(fc1)),
        format!("median less exec chain {:.2}", ms(fcm.saturating_sub(bm)))
    );

    // 5. enroll's ssh2 client, with and without TCP_NODELAY: a trivial
    // session of the register key, in-process.
    let call = |nodelay: bool| {
        let c = Call {
            server: "127.0.0.1",
            port: sshd.port,
            user: "backuppc",
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
    compare("5. ssh2 session: TCP_NODELAY on vs off", 2, rounds * 2, || call(true), || call(false));

    // 4. A burst of n concurrent enrollments of distinct hosts (one
    // loopback source address each), through enroll's own SSH client
    // (with its retries), against a burst of trivial sessions.
    // Burst number `b` enrolls the hosts 127.(b*2).x.y and 127.(b*2+1).x.y
    // (b from 0), so that every burst enrolls hosts not seen before.
    let source_of =
        |b: usize, i: usize| -> String { format!("127.{}.{}.{}", b * 2 + i / 62500, 1 + i / 250 % 250, 1 + i % 250) };
    let burst = |b: usize, port: u16, pins: &Path, key: &Path, enroll: bool| -> (usize, Duration) {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (pins, key, hello) = (pins.to_path_buf(), key.to_path_buf(), hello_text.clone());
                std::thread::spawn(move || {
                    let source: IpAddr = source_of(b, i).parse().unwrap();
                    let call = Call {
                        server: "127.0.0.1",
                        port,
                        user: "backuppc",
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
        "\n{:<52} {:>12} {:>12} {:>8}",
        format!("4. burst of {n} (A: trivial, B: enrollments)"),
        "A wall",
        "B wall",
        "B/A"
    );
    // With MaxStartups raised, several bursts alternate (trivial, then
    // enrollments), so that the spread of the ratio shows what the load
    // of the machine does to one burst.
    let bursts: usize = std::env::var("BENCH_BURSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let mut sshds = Vec::new();
    let mut burst_no = 0;
    // The whole machine's busy CPU time during each burst (all cores,
    // from /proc/stat): what the enrollments cost beyond the sessions.
    let (mut cpu_a, mut cpu_b) = (Vec::new(), Vec::new());
    for (label, max_startups, times) in
        [("Debian default MaxStartups 10:30:100", "10:30:100", 1), ("MaxStartups 400:30:800", "400:30:800", bursts)]
    {
        let s = bpc.sshd(
            &dir.join(&format!("sshd-{}", max_startups.replace(':', "-"))),
            &["backuppc"],
            &format!("MaxStartups {max_startups}\n"),
        );
        let pins = dir.join(&format!("pins-{}", s.port));
        fs::write(&pins, s.known_hosts_line()).unwrap();
        let mut ratios = Vec::new();
        for t in 0..times {
            let cpu0 = machine_cpu();
            let (ok_a, wall_a) = burst(burst_no, s.port, &pins, &reg_true, false);
            let cpu1 = machine_cpu();
            let (ok_b, wall_b) = burst(burst_no, s.port, &pins, &bpc.register_key, true);
            let cpu2 = machine_cpu();
            cpu_a.push(cpu1 - cpu0);
            cpu_b.push(cpu2 - cpu1);
            burst_no += 1;
            let ratio = wall_b.as_secs_f64() / wall_a.as_secs_f64();
            ratios.push(ratio);
            println!(
                "{:<52} {:>10.2} s {:>10.2} s {:>7.3}x   ({ok_a}/{n} and {ok_b}/{n} succeeded)",
                if times > 1 { format!("{label}, burst {}", t + 1) } else { label.to_string() },
                wall_a.as_secs_f64(),
                wall_b.as_secs_f64(),
                ratio
            );
            assert_eq!(ok_b, n, "every enrollment of the burst succeeds: {}", fs::read_to_string(&s.log).unwrap());
        }
        if times > 1 {
            ratios.sort_by(f64::total_cmp);
            println!(
                "{:<52} {:>34}",
                format!("   B/A over {times} bursts (min / median / max)"),
                format!("{:.3} / {:.3} / {:.3}", ratios[0], ratios[times / 2], ratios[times - 1])
            );
        }
        sshds.push(s);
    }
    let spread = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("{:.2} / {:.2} / {:.2}", v[0], v[v.len() / 2], v[v.len() - 1])
    };
    println!(
        "{:<52} {:>34}\n{:<52} {:>34}",
        "   machine CPU busy per burst, s: A (min / median / max)",
        spread(&mut cpu_a),
        "   machine CPU busy per burst, s: B (min / median / max)",
        spread(&mut cpu_b)
    );
    // Afterwards: exactly n intact burst entries everywhere, and the
    // daemon, still running, lists them all.
    let burst_host = |h: &str| h.starts_with("127.") && h != "127.0.0.1";
    // What serialises a burst: the registry lock, as each enrollment's
    // audit line times it.
    // Each enrollment's reload (and its audit line) comes just after its
    // answer, in the background: wait for all of them.
    let wait_start = Instant::now();
    let audit = loop {
        let audit = fs::read_to_string(bpc.registry.join("audit.log")).unwrap();
        let reloads = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == "reload" && e["host"].as_str().is_some_and(burst_host))
            .count();
        if reloads >= burst_no * n || wait_start.elapsed() > Duration::from_secs(120) {
            break audit;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut prepare, mut held, mut waited, mut reload) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for e in audit.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        if e["event"] == "reload" && e["host"].as_str().is_some_and(burst_host) {
            *outcomes.entry(e["backuppc_reload"].as_str().unwrap_or("?").to_string()).or_default() += 1;
            prepare.extend(e["prepare_ms"].as_f64());
            held.extend(e["lock_held_ms"].as_f64());
            waited.extend(e["lock_wait_ms"].as_f64());
            reload.extend(e["reload_ms"].as_f64());
        }
    }
    for (what, v) in [
        ("start to asking for the registry lock", &mut prepare),
        ("registry lock waited for", &mut waited),
        ("registry lock held", &mut held),
        ("reload after the answer", &mut reload),
    ] {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            continue;
        }
        let mid = v[v.len() / 2];
        println!(
            "{:<52} {:>34}",
            format!("   {what}, ms (min / median / max)"),
            format!("{:.2} / {:.2} / {:.2}", v[0], mid, v[v.len() - 1])
        );
    }
    println!("   reloads: {outcomes:?}");
    println!(
        "   {n} x the median time held = {:.2} s of each burst spent one enrollment at a time",
        n as f64 * held[held.len() / 2] / 1000.0
    );
    // Enrollments are written in groups (group commit): how many, how
    // large, and where the slowest group's time went.
    let groups: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "group")
        .collect();
    let mut sizes: Vec<u64> = groups.iter().filter_map(|g| g["size"].as_u64()).collect();
    sizes.sort();
    let total_ms =
        |g: &serde_json::Value| g["ms"].as_object().map(|m| m.values().filter_map(|v| v.as_f64()).sum::<f64>());
    if let (Some(first), Some(last)) = (sizes.first(), sizes.last()) {
        println!(
            "   {} groups led, size min / median / max {first} / {} / {last}",
            sizes.len(),
            sizes[sizes.len() / 2]
        );
    }
    if let Some(slowest) =
        groups.iter().max_by(|a, b| total_ms(a).unwrap_or(0.0).total_cmp(&total_ms(b).unwrap_or(0.0)))
    {
        println!("   slowest group: {} enrollments, ms by step {}", slowest["size"], slowest["ms"]);
    }
    let hosts = fs::read_to_string(bpc.etc.join("hosts")).unwrap();
    let rows =
        backuppc_enroll::backuppc::hosts::entries(&hosts).into_iter().filter(|(_, e)| burst_host(&e.host)).count();
    let kh = fs::read_to_string(bpc.top.join(".ssh/known_hosts")).unwrap();
    let kh_rows = kh.lines().filter(|l| l.split(' ').next().is_some_and(burst_host)).count();
    let reg = backuppc_enroll::store::registry::Registry::load(&bpc.registry.join("registry.json")).unwrap();
    let reg_rows = reg.hosts.keys().filter(|h| burst_host(h)).count();
    let listed = text(&bpc.mesg(ns, &["status", "hosts"]).stdout);
    let all = burst_no * n;
    let daemon_rows = (0..burst_no)
        .flat_map(|b| (0..n).map(move |i| (b, i)))
        .filter(|&(b, i)| listed.contains(&format!("\"{}\"", source_of(b, i))))
        .count();
    println!("   afterwards: {rows} hosts lines, {kh_rows} known_hosts lines, {reg_rows} registry entries, {daemon_rows} hosts listed by the daemon");
    assert_eq!((rows, kh_rows, reg_rows), (all, all, all));
    assert_eq!(daemon_rows, if told { all } else { 0 }, "the daemon lists the hosts it was told of");
    assert!(daemon.0.id() > 0);
    drop(daemon);
}

/// Busy CPU seconds of the whole machine since boot, all cores: every
/// field of /proc/stat's `cpu` line but idle and iowait.
fn machine_cpu() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> =
        stat.lines().next().unwrap().split_whitespace().skip(1).map(|f| f.parse().unwrap()).collect();
    let busy: u64 = fields.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy as f64 / 100.0
}

/// user+sys CPU of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid
    // rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

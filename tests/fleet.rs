//! `forced-command fleet` against real workstations: several sshds on
//! loopback addresses, each with its own host key and the toolkit's
//! rsyncsend as the forced command of each per-host key, and the faults a
//! fleet meets: an sshd that was stopped (refused), a port that accepts
//! and never says a word (timeout), a per-host key taken out of
//! authorized_keys (auth), a host whose key changed (mismatch), a host
//! with nothing pinned, a host whose rsyncsend cannot serve, a misspelt
//! name. Each must be classified, reported, counted and retried right,
//! within the time bound.

mod common;

use common::fleet::{backups_line, write_authorized_keys, write_backups, FleetServer, HostSpec};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

/// The hosts of the test: name (an address on loopback) → expected outcome.
const HOSTS: &[(&str, &str)] = &[
    ("127.0.0.41", "ok"),
    ("127.0.0.42", "ok"),
    ("127.0.0.43", "refused"),
    ("127.0.0.44", "timeout"),
    ("127.0.0.45", "auth-failed"),
    ("127.0.0.46", "host-key-mismatch"),
    ("127.0.0.47", "no-pinned-key"),
    ("127.0.0.48", "failed"),
];

struct Fleet {
    _sshds: Vec<Sshd>,
    _silent: std::net::TcpListener,
    srv: FleetServer,
    /// The per-host key line of the host whose key was removed, to put back.
    auth_line: String,
    auth_keys_45: PathBuf,
}

fn lines_of(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn outcomes(json: &[Value]) -> BTreeMap<String, String> {
    json.iter()
        .filter(|v| v.get("host").is_some())
        .map(|v| (v["host"].as_str().unwrap().to_string(), v["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn setup() -> Fleet {
    let srv = FleetServer::new();
    let dir = srv.dir.mkdir("hosts");
    let mut sshds = Vec::new();
    let mut specs = Vec::new();
    // Healthy ones, and those whose fault is on the workstation's side:
    // each its own sshd and host key.
    let mut ports = BTreeMap::new();
    for host in ["127.0.0.41", "127.0.0.42", "127.0.0.45", "127.0.0.46", "127.0.0.47", "127.0.0.48"] {
        let d = dir.join(host);
        fs::create_dir_all(&d).unwrap();
        let ak = d.join("authorized_keys");
        write_authorized_keys(&ak, &[]);
        let sshd = srv.workstation(&d.join("sshd"), &[host], &ak, "");
        let pin = match host {
            "127.0.0.46" => Some(keygen(&d.join("old_host_key"), "the key before a reinstall")),
            "127.0.0.47" => None,
            _ => Some(sshd.host_pub.clone()),
        };
        ports.insert(host, (sshd.port, ak));
        specs.push(HostSpec { host: host.into(), port: sshd.port, pin });
        sshds.push(sshd);
    }
    // An sshd that ran and was stopped: its port refuses.
    let stopped = {
        let d = dir.join("127.0.0.43");
        fs::create_dir_all(&d).unwrap();
        let ak = d.join("authorized_keys");
        write_authorized_keys(&ak, &[]);
        let sshd = srv.workstation(&d.join("sshd"), &["127.0.0.43"], &ak, "");
        let spec = HostSpec { host: "127.0.0.43".into(), port: sshd.port, pin: Some(sshd.host_pub.clone()) };
        drop(sshd);
        spec
    };
    specs.push(stopped);
    // A port that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.44:0").unwrap();
    specs.push(HostSpec {
        host: "127.0.0.44".into(),
        port: silent.local_addr().unwrap().port(),
        pin: Some(sshds[0].host_pub.clone()),
    });
    let keys = srv.register(&specs);
    let mut auth_line = String::new();
    for (spec, key) in specs.iter().zip(&keys) {
        let Some((_, ak)) = ports.get(spec.host.as_str()) else { continue };
        let line = match spec.host.as_str() {
            // rsyncsend with a config it cannot read refuses everything.
            "127.0.0.48" => format!(
                "restrict,command=\"{} --config /nonexistent/client.toml\" {key}\n",
                srv.bins.rsyncsend.display()
            ),
            _ => srv.key_line(key),
        };
        if spec.host == "127.0.0.45" {
            // Removed: another key stays, as on a host re-enrolled elsewhere.
            auth_line = line;
            write_authorized_keys(ak, &[srv.key_line(&keys[0])]);
        } else {
            write_authorized_keys(ak, &[line]);
        }
    }
    let auth_keys_45 = ports["127.0.0.45"].1.clone();
    Fleet { _sshds: sshds, _silent: silent, srv, auth_line, auth_keys_45 }
}

#[test]
fn every_fault_is_classified_reported_counted_and_retried() {
    let f = setup();
    let retry = f.srv.dir.join("retry");
    let retry_s = retry.display().to_string();
    let (timeout, connect) = (3.0, 2.0);

    // All hosts of the registry, plus a misspelt name, 4 at a time.
    let mut all: Vec<&str> = HOSTS.iter().map(|(h, _)| *h).collect();
    all.push("nosuch.example.org");
    let list = all.join(",");
    let started = Instant::now();
    let out = f.srv.fleet(&[
        "check",
        "--hosts",
        &list,
        "--parallel",
        "4",
        "--connect-timeout",
        &connect.to_string(),
        "--timeout",
        &timeout.to_string(),
        "--json",
        "--retry-file",
        &retry_s,
    ]);
    let took = started.elapsed();
    let json = lines_of(&out);
    let got = outcomes(&json);
    let mut want: BTreeMap<String, String> = HOSTS.iter().map(|(h, o)| (h.to_string(), o.to_string())).collect();
    want.insert("nosuch.example.org".into(), "unknown-host".into());
    assert_eq!(
        got,
        want,
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json.len(), all.len() + 1, "one line per host, then the summary");
    // ⌈9 / 4⌉ × timeout plus slack.
    let bound = Duration::from_secs_f64(3.0 * timeout + 2.0);
    assert!(took < bound, "the run took {took:?}, over {bound:?}");
    assert_eq!(out.status.code(), Some(3), "failures outweigh unreachable hosts");
    let summary = &json.last().unwrap()["summary"];
    assert_eq!(summary["hosts"], 9);
    assert_eq!(summary["counts"]["ok"], 2);
    for o in ["refused", "timeout", "auth-failed", "host-key-mismatch", "no-pinned-key", "failed", "unknown-host"] {
        assert_eq!(summary["counts"][o], 1, "{o}: {summary}");
    }
    assert_eq!(summary["retry_file"], retry_s.as_str());
    let by_host = |h: &str| json.iter().find(|v| v["host"] == h).unwrap().clone();
    assert!(
        by_host("127.0.0.48")["stderr"].as_str().unwrap().contains("rsyncsend: refused"),
        "the command's own message comes back"
    );
    assert_eq!(by_host("127.0.0.48")["exit_status"], 1);
    assert!(by_host("127.0.0.46")["detail"].as_str().unwrap().contains("pins"), "{}", by_host("127.0.0.46"));
    // The host whose key changed was never sent a key to check: no
    // authentication reached its sshd.
    let log46 = fs::read_to_string(&f._sshds[3].log).unwrap();
    assert!(!log46.contains("publickey"), "an impostor was offered the per-host key:\n{log46}");

    // The retry file names exactly the hosts that did not succeed.
    let text = fs::read_to_string(&retry).unwrap();
    let named: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mut failed: Vec<&str> = want.iter().filter(|(_, o)| *o != "ok").map(|(h, _)| h.as_str()).collect();
    failed.sort();
    assert_eq!(named, failed);

    // Fix the authentication fault; re-run the retry file: the fixed host
    // succeeds, the healthy ones are not touched, the rest fail again.
    write_authorized_keys(&f.auth_keys_45, std::slice::from_ref(&f.auth_line));
    let at = format!("@{retry_s}");
    let out = f.srv.fleet(&[
        "check",
        "--hosts",
        &at,
        "--connect-timeout",
        "2",
        "--timeout",
        "3",
        "--json",
        "--retry-file",
        &retry_s,
    ]);
    let got = outcomes(&lines_of(&out));
    assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), failed, "exactly the retry file's hosts");
    assert_eq!(got["127.0.0.45"], "ok");
    let text = fs::read_to_string(&retry).unwrap();
    assert!(!text.contains("127.0.0.45\n") && text.contains("127.0.0.43\n"), "{text}");

    // Plain report: a line per host as it finishes, folded outputs, counts.
    let out = f.srv.fleet(&["check", "--connect-timeout", "2", "--timeout", "3", "--retry-file", &retry_s]);
    let text = String::from_utf8_lossy(&out.stdout);
    for (h, o) in HOSTS {
        let o = if *h == "127.0.0.45" { "ok" } else { o };
        assert!(
            text.lines().any(|l| l.starts_with('[') && l.contains(&format!("s {o} {h}"))),
            "no line for {h} ({o}):\n{text}"
        );
    }
    assert!(text.contains("---------------- 127.0.0.41,127.0.0.42,127.0.0.45 (3 hosts, ok)\n(no output)\n"), "{text}");
    assert!(
        text.contains("8 hosts: 3 ok, 1 refused, 1 timeout, 1 host-key-mismatch, 1 no-pinned-key, 1 failed\n"),
        "{text}"
    );
    assert!(text.contains(&format!("retry file: {retry_s} (5 hosts)")), "{text}");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn exit_status_by_class_status_folds_and_the_backuppc_account_may_run_it() {
    let f = setup();
    let retry = f.srv.dir.join("retry");
    let retry_s = retry.display().to_string();
    let run = |hosts: &str| {
        f.srv.fleet(&["check", "--hosts", hosts, "--connect-timeout", "2", "--timeout", "3", "--retry-file", &retry_s])
    };
    assert_eq!(run("127.0.0.41,127.0.0.42").status.code(), Some(0), "all fine");
    assert_eq!(fs::read_to_string(&retry).unwrap().lines().filter(|l| !l.starts_with('#')).count(), 0);
    assert_eq!(run("127.0.0.41,127.0.0.43,127.0.0.44").status.code(), Some(2), "some unreachable, none failed");
    assert_eq!(run("127.0.0.41,127.0.0.45").status.code(), Some(3), "a key refused");
    assert_eq!(run("127.0.0.41,127.0.0.46").status.code(), Some(3), "a host key changed");

    // status: rsyncsend's report gathered, identical ones folded.
    let out = f.srv.fleet(&["status", "--hosts", "127.0.0.41,127.0.0.42", "--retry-file", &retry_s]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let block =
        text.split("---------------- 127.0.0.41,127.0.0.42 (2 hosts, ok)\n").nth(1).unwrap_or_else(|| panic!("{text}"));
    assert!(block.starts_with("    rsyncsend "), "indented under its header: {block}");
    for want in [
        format!("shares: {}", f.srv.data.display()),
        "restore: false".into(),
        "confinement: ".into(),
        "rsync: rsync version ".into(),
    ] {
        assert!(block.contains(&want), "{want:?} in:\n{block}");
    }

    // Run by the BackupPC account itself (its keys, its files).
    let out = f
        .srv
        .server
        .command(f.srv.bins.forced_command.to_str().unwrap())
        .args(["--config", f.srv.server_toml.to_str().unwrap(), "fleet", "check", "--hosts", "127.0.0.41"])
        .args(["--retry-file", &f.srv.server.home.join("retry").display().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Anyone else is refused before anything is read.
    let other = SystemUser::create(&unique("bpfo"), &f.srv.dir.join("otherhome"));
    let out = other
        .command(f.srv.bins.forced_command.to_str().unwrap())
        .args(["--config", f.srv.server_toml.to_str().unwrap(), "fleet", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run fleet as root or as"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn report_joins_backuppcs_view_worst_first() {
    let f = setup();
    let top = f.srv.dir.mkdir("backuppc-top");
    write_backups(
        &top,
        &[
            ("127.0.0.41", backups_line(0, "full", 30, 0) + &backups_line(1, "incr", 2, 0)),
            ("127.0.0.42", backups_line(0, "full", 80, 0)),
            ("127.0.0.48", backups_line(0, "full", 3, 7)),
            ("127.0.0.43", backups_line(0, "full", 1, 0)),
        ],
    );
    let retry = f.srv.dir.join("report.retry");
    let hosts = "127.0.0.41,127.0.0.42,127.0.0.43,127.0.0.47,127.0.0.48";
    let args = |json: bool| {
        let mut a = vec!["report", "--hosts", hosts, "--connect-timeout", "2", "--timeout", "3", "--max-age", "26"];
        a.extend(["--top-dir", top.to_str().unwrap(), "--retry-file", retry.to_str().unwrap()]);
        if json {
            a.push("--json");
        }
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let argv = args(true);
    let out = f.srv.fleet(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        out.status.code(),
        Some(3),
        "stale and failing backups fail the run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = lines_of(&out);
    let rows: Vec<&Value> = json.iter().filter(|v| v.get("host").is_some()).collect();
    let order: Vec<&str> = rows.iter().map(|v| v["host"].as_str().unwrap()).collect();
    // 47 (no pinned key) and 48 (its rsyncsend refuses, errors in its
    // backup) neither answer ok nor have good backups; 47 never backed up,
    // so it is first. Then 42 (answers, stale), 43 (refused, fresh).
    assert_eq!(order, ["127.0.0.47", "127.0.0.48", "127.0.0.42", "127.0.0.43", "127.0.0.41"], "{json:?}");
    let by = |h: &str| rows.iter().find(|v| v["host"] == h).copied().unwrap();
    assert_eq!(by("127.0.0.41")["healthy"], true);
    assert_eq!(by("127.0.0.41")["last_backup"]["num"], 1, "the last finished backup is the incremental");
    assert_eq!(by("127.0.0.41")["last_backup"]["type"], "incr");
    let age = by("127.0.0.42")["age_hours"].as_f64().unwrap();
    assert!((79.9..80.2).contains(&age), "age of 42's backup: {age}");
    assert!(by("127.0.0.42")["backup_problems"][0].as_str().unwrap().contains("more than 26 h"));
    assert_eq!(by("127.0.0.42")["outcome"], "ok", "it answers; its backups are stale");
    assert!(by("127.0.0.48")["backup_problems"][0].as_str().unwrap().contains("xferErrs 7"));
    assert_eq!(by("127.0.0.43")["outcome"], "refused");
    assert_eq!(by("127.0.0.43")["backup_problems"].as_array().unwrap().len(), 0);
    assert_eq!(by("127.0.0.47")["backup_problems"][0], "no finished backup");
    let summary = &json.last().unwrap()["summary"];
    assert_eq!((summary["hosts"].as_u64(), summary["healthy"].as_u64()), (Some(5), Some(1)));
    assert_eq!(summary["backups_stale_or_failing"], 3);
    // The retry file names every host that is not healthy.
    let named: Vec<String> =
        fs::read_to_string(&retry).unwrap().lines().filter(|l| !l.starts_with('#')).map(String::from).collect();
    assert_eq!(named, ["127.0.0.42", "127.0.0.43", "127.0.0.47", "127.0.0.48"]);

    // The table: the same hosts, the same order, the counts.
    let argv = args(false);
    let out = f.srv.fleet(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&out.stdout);
    let table_order: Vec<&str> =
        text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).filter(|w| w.starts_with("127.")).collect();
    assert_eq!(table_order, order, "{text}");
    assert!(
        text.contains("5 host(s): 1 healthy, 3 with backups stale or failing (threshold 26 h), 3 not answering ok"),
        "{text}"
    );
}

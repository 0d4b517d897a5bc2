//! `forced-command fleet job NAME` against real workstations: sshds on
//! loopback addresses whose backup account runs the toolkit's rsyncsend
//! for each per-host key, real sudo into rsyncsend's root helper, jobs
//! declared in a root-owned jobs.d and run as their own account. What an
//! attacker would try is tried: names the workstation never declared,
//! extra arguments and shell syntax over the key, a result file turned
//! into a symlink (or hard link) to a root-only file, a job that never
//! ends.

mod common;

use common::fleet::{write_authorized_keys, FleetServer, HostSpec, RootHelperSudoers};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// Two current workstations, and one whose rsyncsend predates jobs.
const NEW: [&str; 2] = ["127.0.0.61", "127.0.0.62"];
const OLD: &str = "127.0.0.63";
/// A compromised workstation: its answer tries to write outside its folder.
const EVIL: &str = "127.0.0.64";

/// What rsyncsend before run-job answered to it (its refusal of anything
/// that is not rsync), as a forced command of its own.
const OLD_RSYNCSEND: &str =
    "#!/bin/sh\necho \"rsyncsend: refused: only 'rsync --server …' may be run with this key\" >&2\nexit 1\n";

struct Jobs {
    _sshds: Vec<Sshd>,
    _sudoers: RootHelperSudoers,
    ports: BTreeMap<&'static str, u16>,
    job_user: SystemUser,
    /// Written by the job "whoami".
    whoami_dir: PathBuf,
    /// The job "leak"'s result folder.
    leak_dir: PathBuf,
    /// A root-only file no job may send.
    secret: PathBuf,
    /// Appended to by the job "touch", once per run.
    counter: PathBuf,
    out: PathBuf,
    srv: FleetServer,
}

const SECRET: &str = "root-only-secret-5f2c9e";

fn setup() -> Jobs {
    let srv = FleetServer::new();
    let job_user = SystemUser::create(&unique("bpfj"), &srv.dir.join("jobhome"));
    let owned = |name: &str| {
        let d = srv.dir.mkdir(name);
        job_user.chown(&d);
        d
    };
    let (whoami_dir, leak_dir, touch_dir) = (owned("whoami"), owned("leak"), owned("touch"));
    let counter = touch_dir.join("runs");
    let secret = srv.dir.join("secret");
    fs::write(&secret, SECRET).unwrap();
    chmod(&secret, 0o600);
    let jobs_d = srv.dir.mkdir("jobs.d");
    let u = &job_user.name;
    fs::write(
        jobs_d.join("fleet.toml"),
        format!(
            "[[job]]\nname = \"whoami\"\nargv = [\"/bin/sh\", \"-c\", \"id -un > {w}/.u.$$ && mv {w}/.u.$$ {w}/user.txt && echo ran\"]\n\
             user = {u:?}\ntimeout = 20\nresults = [\"{w}/user.txt\"]\n\n\
             [[job]]\nname = \"leak\"\nargv = [\"/bin/sh\", \"-c\", \"ln -sfn {s} {l}/secret.txt; ln -sfn / {l}/root; ln -f {s} {l}/hard 2>/dev/null; echo fine > {l}/ok.txt\"]\n\
             user = {u:?}\ntimeout = 20\nresults = [\"{l}/secret.txt\"]\nresult_dir = \"{l}\"\n\n\
             [[job]]\nname = \"slow\"\nargv = [\"/bin/sleep\", \"60\"]\nuser = {u:?}\ntimeout = 1\n\n\
             [[job]]\nname = \"touch\"\nargv = [\"/bin/sh\", \"-c\", \"echo run >> {c}\"]\nuser = {u:?}\ntimeout = 20\n",
            w = whoami_dir.display(),
            l = leak_dir.display(),
            s = secret.display(),
            c = counter.display(),
        ),
    )
    .unwrap();
    chmod(&jobs_d.join("fleet.toml"), 0o644);
    let mut toml = fs::read_to_string(&srv.client_toml).unwrap();
    toml.push_str(&format!("jobs_dir = {jobs_d:?}\n"));
    fs::write(&srv.client_toml, toml).unwrap();
    let sudoers = srv.allow_root_helper(&["run-job"]);

    let hosts = srv.dir.mkdir("hosts");
    let mut sshds = Vec::new();
    let mut specs = Vec::new();
    let mut files = Vec::new();
    let mut ports = BTreeMap::new();
    // The first sshd also listens for the old workstation.
    for (i, host) in NEW.iter().enumerate() {
        let d = hosts.join(host);
        fs::create_dir_all(&d).unwrap();
        let ak = d.join("authorized_keys");
        write_authorized_keys(&ak, &[]);
        let addresses: &[&str] = if i == 0 { &[host, OLD, EVIL] } else { &[host] };
        let sshd = srv.workstation(&d.join("sshd"), addresses, &ak, "");
        specs.push(HostSpec { host: host.to_string(), port: sshd.port, pin: Some(sshd.host_pub.clone()) });
        if i == 0 {
            for other in [OLD, EVIL] {
                specs.push(HostSpec { host: other.into(), port: sshd.port, pin: Some(sshd.host_pub.clone()) });
                ports.insert(other, sshd.port);
            }
        }
        ports.insert(*host, sshd.port);
        files.push(ak);
        sshds.push(sshd);
    }
    let keys = srv.register(&specs);
    let old = srv.dir.join("old-rsyncsend");
    write_script(&old, OLD_RSYNCSEND);
    let old_line = format!("restrict,command=\"{}\" {}\n", old.display(), keys[1]);
    let evil_tar = srv.dir.join("evil.tar");
    fs::write(&evil_tar, evil_answer()).unwrap();
    let evil = srv.dir.join("evil-rsyncsend");
    write_script(&evil, &format!("#!/bin/sh\ncat {}\n", evil_tar.display()));
    let evil_line = format!("restrict,command=\"{}\" {}\n", evil.display(), keys[2]);
    write_authorized_keys(&files[0], &[srv.key_line(&keys[0]), old_line, evil_line]);
    write_authorized_keys(&files[1], &[srv.key_line(&keys[3])]);
    // Root runs the fleet here, and a job run goes on as the server's
    // account: the results folder is that account's, as the default
    // (jobs/ beside the registry) is.
    let out = srv.dir.mkdir("out");
    srv.server.chown(&out);
    Jobs { _sshds: sshds, _sudoers: sudoers, ports, job_user, whoami_dir, leak_dir, secret, counter, out, srv }
}

/// A tar answer with a valid status and a result named to climb out of
/// the host's folder, as a hostile workstation would write it.
fn evil_answer() -> Vec<u8> {
    let status = serde_json::json!({
        "name": "leak", "ok": true, "exit_status": 0, "signal": null, "timed_out": false,
        "start": "s", "end": "e", "error": null, "skipped": [],
        "results": [{ "path": "/../../../../escaped", "size": 4, "sha256": "" }],
    });
    let mut out = Vec::new();
    for (name, data) in
        [("status.json", serde_json::to_vec(&status).unwrap()), ("results/../../../../escaped", b"evil".to_vec())]
    {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn lines_of(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn by_host(json: &[Value]) -> BTreeMap<String, Value> {
    json.iter()
        .filter(|v| v.get("host").is_some())
        .map(|v| (v["host"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn explain(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Jobs {
    fn job(&self, name: &str, hosts: &[&str], extra: &[&str]) -> (Output, Vec<Value>) {
        let hosts = hosts.join(",");
        let out_dir = self.out.display().to_string();
        let mut args = vec!["job", name, "--out", &out_dir, "--json", "--hosts", &hosts, "--timeout", "20"];
        args.extend_from_slice(extra);
        let out = self.srv.fleet(&args);
        let json = lines_of(&out);
        (out, json)
    }
}

/// Every file of a .tar.gz: name → bytes.
fn archive(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(path).unwrap()));
    let mut files = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
    }
    files
}

/// Every file below `dir` and its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        assert!(!m.file_type().is_symlink(), "a symlink in the collected results: {}", p.display());
        if m.is_dir() {
            out.extend(tree(&p));
        } else {
            out.push((p.clone(), fs::read(&p).unwrap()));
        }
    }
    out
}

fn rel(p: &Path) -> String {
    p.display().to_string().trim_start_matches('/').to_string()
}

#[test]
fn a_declared_job_runs_as_its_user_on_every_host_and_its_results_are_collected() {
    let j = setup();
    let (out, json) = j.job("whoami", &NEW, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let hosts = by_host(&json);
    let summary = &json.last().unwrap()["summary"];
    let run_dir = PathBuf::from(summary["run_dir"].as_str().unwrap());
    let archive_path = PathBuf::from(summary["archive"].as_str().unwrap());
    assert!(run_dir.starts_with(&j.out) && archive_path.starts_with(&j.out), "{summary}");
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let packed = archive(&archive_path);
    let result = format!("results/{}/user.txt", rel(&j.whoami_dir));
    for host in NEW {
        assert_eq!(hosts[host]["outcome"], "ok", "{}", hosts[host]);
        assert_eq!(hosts[host]["stdout"], "ran\n");
        let dir = run_dir.join(host);
        let user = fs::read_to_string(dir.join(&result)).unwrap();
        assert_eq!(user, format!("{}\n", j.job_user.name), "the job ran as its own account");
        let status: Value = serde_json::from_slice(&fs::read(dir.join("status.json")).unwrap()).unwrap();
        assert_eq!((status["ok"].as_bool(), status["exit_status"].as_i64()), (Some(true), Some(0)), "{status}");
        assert_eq!(fs::read_to_string(dir.join("stdout")).unwrap(), "ran\n");
        let outcome: Value = serde_json::from_slice(&fs::read(dir.join("outcome.json")).unwrap()).unwrap();
        assert_eq!(outcome["outcome"], "ok");
        assert_eq!(packed[&format!("{run_id}/{host}/{result}")], user.as_bytes(), "the .tar.gz holds the results");
        assert!(packed.contains_key(&format!("{run_id}/{host}/status.json")));
    }

    // Root never wrote what the workstations sent: everything of the run
    // is the server account's (a swapped folder would have led root's
    // writes anywhere).
    let account = j.srv.server.ids();
    for (p, _) in tree(&run_dir) {
        let m = fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), account, "{} was written as the server's account", p.display());
    }
    let m = fs::metadata(&archive_path).unwrap();
    assert_eq!((m.uid(), m.gid()), account, "the archive too");
    // A results folder that account may not write is refused up front.
    let root_only = j.srv.dir.mkdir("root-only-out");
    let out = j.srv.fleet(&["job", "whoami", "--out", root_only.to_str().unwrap(), "--hosts", NEW[0]]);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{}", explain(&out));
    assert_eq!(fs::read_dir(&root_only).unwrap().count(), 0, "nothing written");

    let audit = fs::read_to_string(&j.srv.audit_log).unwrap();
    let event = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "fleet-job" && e["job"] == "whoami")
        .unwrap_or_else(|| panic!("no fleet-job event in the audit log:\n{audit}"));
    assert_eq!(event["run_dir"], summary["run_dir"], "{event}");

    // A result the job turned into a symlink (and a hard link) to a
    // root-only file, and a symlink to /: none of it is read, only the
    // plain result comes. The old workstation is reported as such.
    let all = [NEW[0], NEW[1], OLD, EVIL];
    let (out, json) = j.job("leak", &all, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", explain(&out));
    let hosts = by_host(&json);
    assert_eq!(hosts[OLD]["outcome"], "failed");
    assert!(hosts[OLD]["detail"].as_str().unwrap().contains("does not offer jobs"), "{}", hosts[OLD]);
    let summary = &json.last().unwrap()["summary"];
    let run_dir = PathBuf::from(summary["run_dir"].as_str().unwrap());
    for host in NEW {
        assert_eq!(hosts[host]["outcome"], "ok", "{}", hosts[host]);
        let dir = run_dir.join(host);
        let ok = dir.join(format!("results/{}/ok.txt", rel(&j.leak_dir)));
        assert_eq!(fs::read_to_string(&ok).unwrap(), "fine\n");
        let status: Value = serde_json::from_slice(&fs::read(dir.join("status.json")).unwrap()).unwrap();
        let skipped: Vec<(String, String)> = status["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["path"].as_str().unwrap().to_string(), s["why"].as_str().unwrap().to_string()))
            .collect();
        let why = |name: &str| skipped.iter().find(|(p, _)| p.ends_with(name)).map(|(_, w)| w.clone());
        assert!(why("/secret.txt").is_some_and(|w| w.contains("symlink")), "{skipped:?}");
        assert!(why("/root").is_some_and(|w| w.contains("symlink")), "{skipped:?}");
        if j.leak_dir.join("hard").exists() {
            assert!(why("/hard").is_some_and(|w| w.contains("owned by") || w.contains("hard links")), "{skipped:?}");
        }
    }
    assert_eq!(hosts[EVIL]["outcome"], "failed");
    assert!(hosts[EVIL]["detail"].as_str().unwrap().contains("answer is refused"), "{}", hosts[EVIL]);
    let evil_dir: Vec<String> = fs::read_dir(run_dir.join(EVIL))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(evil_dir, ["outcome.json"], "nothing of a refused answer is kept");
    for dir in [&run_dir, &j.out, &j.srv.dir.path] {
        assert!(!dir.join("escaped").exists() && !dir.parent().unwrap().join("escaped").exists(), "{}", dir.display());
    }
    assert!(run_dir.join(OLD).join("outcome.json").exists(), "every host has its folder");
    assert!(!run_dir.join(OLD).join("results").exists());
    let archive_path = PathBuf::from(summary["archive"].as_str().unwrap());
    let leaked =
        tree(&run_dir).into_iter().chain(archive(&archive_path).into_iter().map(|(n, d)| (PathBuf::from(n), d)));
    for (p, data) in leaked {
        assert!(!String::from_utf8_lossy(&data).contains(SECRET), "{} holds the root-only file", p.display());
    }
    let retry: Vec<String> = fs::read_to_string(j.srv.registry.with_file_name("fleet.retry"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(retry, [OLD, EVIL], "the retry file names the hosts that did not succeed");
    assert_eq!(fs::read_to_string(&j.secret).unwrap(), SECRET);

    // A job past its own timeout is killed, and the run does not wait.
    let started = Instant::now();
    let (out, json) = j.job("slow", &[NEW[0]], &[]);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(3), "{}", explain(&out));
    let detail = by_host(&json)[NEW[0]]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("did not finish within 1 s and was killed"), "{detail}");
    let status_path =
        PathBuf::from(json.last().unwrap()["summary"]["run_dir"].as_str().unwrap()).join(NEW[0]).join("status.json");
    let status: Value = serde_json::from_slice(&fs::read(status_path).unwrap()).unwrap();
    assert_eq!(status["timed_out"], true, "{status}");

    // `enroll jobs` lists what the server may name.
    let listed = run_ok(
        std::process::Command::new(&j.srv.bins.enroll).args(["jobs", "--json", "--config"]).arg(&j.srv.client_toml),
    );
    let names: Vec<String> = serde_json::from_slice::<Vec<Value>>(&listed.stdout)
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["whoami", "leak", "slow", "touch"]);
}

#[test]
fn the_server_can_only_name_a_declared_job_and_nothing_else_runs() {
    let j = setup();
    let host = NEW[0];
    let port = j.ports[host];
    let injected = j.srv.dir.join("injected");
    let i = injected.display();
    let attempts = [
        format!("run-job touch; touch {i}"),
        format!("run-job touch;touch {i}"),
        format!("run-job $(touch {i})"),
        format!("run-job `touch {i}`"),
        format!("run-job touch\ntouch {i}"),
        format!("run-job touch && touch {i}"),
        "run-job touch extra".to_string(),
        "run-job touch --all".to_string(),
        "run-job  touch".to_string(),
        "run-job nosuch".to_string(),
        "run-job ../touch".to_string(),
        "run-job".to_string(),
        "RUN-JOB touch".to_string(),
    ];
    for cmd in &attempts {
        let out = j.srv.ssh(host, port, cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {}", explain(&out));
        assert!(out.stdout.is_empty(), "{cmd:?}: an answer came");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{cmd:?}: one clear line: {err}");
        assert!(lines[0].starts_with("rsyncsend: refused: "), "{cmd:?}: {err}");
    }
    assert!(!injected.exists(), "an injected command ran");
    assert!(!j.counter.exists(), "a refused request ran the job");
    // The root helper, reached through sudo with a name it must check
    // again: a newline-separated second name, or none, runs nothing.
    for stdin in [&b"touch\nid\n"[..], b"", b"touch", b"../touch\n"] {
        let mut helper = j.srv.backup.command("/usr/bin/sudo");
        helper
            .args(["-n", "--"])
            .arg(&j.srv.bins.rsyncsend)
            .arg("--config")
            .arg(&j.srv.client_toml)
            .arg("run-job")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = feed(&mut helper, stdin, None);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{stdin:?}: {}", explain(&out));
        assert!(out.stdout.is_empty(), "{stdin:?}");
    }
    assert!(!j.counter.exists(), "the root helper ran a job it should have refused");
    // The control: the declared name runs it, once per request.
    let out = j.srv.ssh(host, port, "run-job touch");
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(fs::read_to_string(&j.counter).unwrap(), "run\n");
}

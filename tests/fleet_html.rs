//! `forced-command fleet report --html FILE` opened in a real headless
//! Chromium from Debian. One run of the report, over real workstations
//! (one sshd on several loopback addresses, the toolkit's rsyncsend), a
//! host whose sshd is gone, two hosts that answer with hostile output (a
//! malicious workstation's "status") and a hostile name that is not a
//! host, writes both `--json` and the page. Chromium's DOM of the page
//! must hold every host of the run, in the same order, with the same
//! outcomes, ages and counts as the JSON; only elements the page itself
//! makes; no link or load out of the page, and a listener named by the
//! hostile output never hears from it. The same run mails the report
//! (`--mail-to`) through Debian's exim to a local account's mailbox: the
//! counts in the subject, the table as text, the very same page attached.

mod common;

use common::fleet::{backups_line, write_authorized_keys, write_backups, FleetServer, HostSpec};
use common::*;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What a malicious workstation answers instead of rsyncsend's status:
/// each line tries another way out of the text it is shown in, and the
/// loads and scripts name `bait` (none calls `alert`, whose dialog
/// would hold headless Chromium up instead of showing on the bait).
fn hostile_script(bait: u16, exit: u8) -> String {
    format!(
        r#"#!/bin/sh
cat <<'EOF'
<script>fetch("http://127.0.0.1:{bait}/script")</script>
"><img src="x" onerror="fetch('http://127.0.0.1:{bait}/onerror')">
'><img src='//127.0.0.1:{bait}/img2'>
</pre></details></svg><iframe src="http://127.0.0.1:{bait}/iframe"></iframe>
<link rel="stylesheet" href="http://127.0.0.1:{bait}/css"><style>@import url(http://127.0.0.1:{bait}/import);</style>
</title></text><a href="file:///etc/passwd">x</a>
EOF
printf 'control: \033[2J \001 \342\200\256txt.exe\n' >&2
exit {exit}
"#
    )
}

/// A listener on loopback that the hostile output points every load at:
/// it notes what connects (the first bytes of each request) and closes
/// the connection at once, so that a load would not hold the page up.
struct Bait {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Bait {
    fn start() -> Bait {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
                        let mut first = [0u8; 200];
                        let n = conn.read(&mut first).unwrap_or(0);
                        seen.push(format!("{peer}: {}", String::from_utf8_lossy(&first[..n])));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => panic!("bait listener: {e}"),
                }
            }
            seen
        });
        Bait { port, stop, thread }
    }

    /// What connected, once it is stopped.
    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// The first message of `mailbox` (an mbox), once the MTA has delivered
/// it whole.
fn wait_for_mail(mailbox: &Path, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let text = read_lossy(mailbox);
        if text.contains("\n--=_backuppc-enroll_fleet_report--\n") {
            return text;
        }
        assert!(started.elapsed() < limit, "no mail in {} within {limit:?}: {text}", mailbox.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The decoded body of the part of `mail` whose headers name `file` (""
/// for the text part).
fn attachment(mail: &str, file: &str) -> Vec<u8> {
    use base64::Engine as _;
    for part in mail.split("\n--=_backuppc-enroll_fleet_report").skip(1) {
        let Some((headers, body)) = part.split_once("\n\n") else { continue };
        let wanted = if file.is_empty() {
            headers.contains("text/plain")
        } else {
            headers.contains(&format!("filename=\"{file}\""))
        };
        if wanted {
            let b64: String = body.lines().collect();
            return base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        }
    }
    panic!("no part {file:?} in {mail}");
}

/// Chromium's DOM of `page`, after it loaded; killed (its whole process
/// group, which only it is in) if it takes more than `limit`.
fn chromium_dom(dir: &Path, page: &Path, limit: Duration) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh --test does)"
    );
    let profile = dir.join("chromium-profile");
    fs::create_dir_all(&profile).unwrap();
    let dom_path = dir.join("dom.html");
    let err_path = dir.join("chromium.err");
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .args(["--disable-background-networking", "--disable-sync", "--disable-component-update"])
        // Containers often have a small /dev/shm.
        .arg("--disable-dev-shm-usage")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .env("HOME", &profile)
        .env("XDG_CONFIG_HOME", profile.join("config"))
        .env("XDG_CACHE_HOME", profile.join("cache"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&dom_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("chromium did not dump {} within {limit:?}: {}", page.display(), read_lossy(&err_path));
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // Helpers it started and left behind (its group is its own).
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    assert!(status.success(), "chromium failed ({status}): {}", read_lossy(&err_path));
    let dom = fs::read_to_string(&dom_path).unwrap();
    assert!(dom.contains("</html>"), "no DOM from chromium: {dom}\n{}", read_lossy(&err_path));
    dom
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned()
}

/// Attribute values as Chromium serializes them.
fn unescape(v: &str) -> String {
    v.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The DOM's elements: (name, attributes), in document order. Chromium
/// writes every `<` of text as `&lt;`, so each `<` opens a tag.
fn elements(dom: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let tag = Regex::new(r"<(/?[A-Za-z!][A-Za-z0-9-]*)([^<>]*)>").unwrap();
    let attr = Regex::new(r#"^\s+([A-Za-z][A-Za-z0-9:-]*)(?:="([^"<>]*)")?"#).unwrap();
    let mut out = Vec::new();
    let mut last = 0;
    for c in tag.captures_iter(dom) {
        let m = c.get(0).unwrap();
        assert!(!dom[last..m.start()].contains('<'), "a stray '<' in the DOM: {:?}", &dom[last..m.start()]);
        last = m.end();
        let name = c[1].to_lowercase();
        let mut rest = c[2].trim_end_matches('/');
        if name == "!doctype" {
            rest = "";
        }
        let mut attrs = BTreeMap::new();
        while !rest.trim().is_empty() {
            let a = attr.captures(rest).unwrap_or_else(|| panic!("not attributes in <{name}>: {rest:?}"));
            attrs.insert(a[1].to_string(), unescape(a.get(2).map(|v| v.as_str()).unwrap_or("")));
            rest = &rest[a.get(0).unwrap().end()..];
        }
        if !name.starts_with('/') {
            out.push((name, attrs));
        }
    }
    out
}

fn has_class(attrs: &BTreeMap<String, String>, class: &str) -> bool {
    attrs.get("class").is_some_and(|c| c.split(' ').any(|w| w == class))
}

#[test]
fn report_page_in_chromium_matches_the_json_loads_nothing_and_is_mailed() {
    let srv = FleetServer::new();
    let dir = srv.dir.mkdir("hosts");
    let bait = Bait::start();
    let bait_port = bait.port;
    for (name, exit) in [("hostile-ok", 0), ("hostile-failed", 1)] {
        write_script(&dir.join(name), &hostile_script(bait_port, exit));
    }
    // One workstation sshd answers for the hosts that are reached.
    let ak = dir.join("authorized_keys");
    write_authorized_keys(&ak, &[]);
    let reached = ["127.0.0.61", "127.0.0.62", "127.0.0.64", "127.0.0.65"];
    let sshd = srv.workstation(&dir.join("sshd"), &reached, &ak, "");
    let mut specs: Vec<HostSpec> = reached
        .iter()
        .map(|h| HostSpec { host: h.to_string(), port: sshd.port, pin: Some(sshd.host_pub.clone()) })
        .collect();
    // A host whose sshd is gone: its port refuses.
    let gone = std::net::TcpListener::bind("127.0.0.63:0").unwrap();
    specs.push(HostSpec {
        host: "127.0.0.63".into(),
        port: gone.local_addr().unwrap().port(),
        pin: Some(sshd.host_pub.clone()),
    });
    drop(gone);
    let keys = srv.register(&specs);
    let lines: Vec<String> = specs
        .iter()
        .zip(&keys)
        .map(|(spec, key)| match spec.host.as_str() {
            "127.0.0.64" => format!("restrict,command=\"{}\" {key}\n", dir.join("hostile-ok").display()),
            "127.0.0.65" => format!("restrict,command=\"{}\" {key}\n", dir.join("hostile-failed").display()),
            _ => srv.key_line(key),
        })
        .collect();
    write_authorized_keys(&ak, &lines);
    // BackupPC's view: fresh, stale, fresh but unreachable, with errors;
    // 64 never backed up.
    let top = srv.dir.mkdir("backuppc-top");
    write_backups(
        &top,
        &[
            ("127.0.0.61", backups_line(0, "full", 30, 0) + &backups_line(1, "incr", 2, 0)),
            ("127.0.0.62", backups_line(0, "full", 80, 0)),
            ("127.0.0.63", backups_line(0, "full", 1, 0)),
            ("127.0.0.65", backups_line(4, "full", 500, 3)),
        ],
    );

    // One run, both reports: the JSON on stdout, the page in a file,
    // written under the umask the administrator runs with.
    let unknown =
        format!("\"><svg/onload=fetch('http://127.0.0.1:{bait_port}/onload')><img/src=//127.0.0.1:{bait_port}/n>");
    let hosts = format!("127.0.0.61,127.0.0.62,127.0.0.63,127.0.0.64,127.0.0.65,{unknown}");
    // And mailed, through Debian's exim, to a local account's mailbox.
    let reader = SystemUser::create(&unique("bpfm"), &srv.dir.join("mailhome"));
    let mailbox = Path::new("/var/mail").join(&reader.name);
    let mail_to = format!("{}@localhost", reader.name);
    let out_dir = srv.dir.mkdir("out");
    let page = out_dir.join("fleet.html");
    let top_s = top.display().to_string();
    let page_s = page.display().to_string();
    let retry = srv.dir.join("report.retry").display().to_string();
    let report_args = |html: &str| -> Vec<String> {
        [
            "fleet",
            "report",
            "--hosts",
            &hosts,
            "--connect-timeout",
            "2",
            "--timeout",
            "3",
            "--max-age",
            "26",
            "--top-dir",
            &top_s,
            "--retry-file",
            &retry,
            "--json",
            "--html",
            html,
            "--mail-to",
            &mail_to,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let started = Instant::now();
    let out = Command::new("sh")
        .args(["-c", "umask 027 && exec \"$0\" \"$@\""])
        .arg(&srv.bins.forced_command)
        .arg("--config")
        .arg(&srv.server_toml)
        .args(report_args(&page_s))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "stale hosts fail the run: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rows: Vec<&Value> = json.iter().filter(|v| v.get("host").is_some()).collect();
    let summary = &json.last().unwrap()["summary"];
    assert_eq!(rows.len(), 6, "{json:?}");
    let mode = fs::metadata(&page).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640, "0644 as narrowed by the umask 027");
    let by = |h: &str| rows.iter().find(|v| v["host"] == h).copied().unwrap_or_else(|| panic!("{h} in {json:?}"));
    assert_eq!(by("127.0.0.64")["outcome"], "ok");
    assert!(by("127.0.0.64")["stdout"].as_str().unwrap().contains("<script>"), "the hostile output came back");
    assert_eq!(by("127.0.0.65")["outcome"], "failed");
    assert_eq!(by("127.0.0.63")["outcome"], "refused");
    assert_eq!(by(&unknown)["outcome"], "unknown-host");

    let dom = chromium_dom(&srv.dir.path, &page, Duration::from_secs(60));
    // Chromium fetched nothing: not for the page, not for a host.
    let fetched = bait.stop();
    assert!(fetched.is_empty(), "the page made Chromium fetch from the bait listener: {fetched:?}");
    let els = elements(&dom);

    // It rendered what the page makes, and nothing a host sent: no
    // element but the page's own, no link or load out of it.
    const OWN: &[&str] = &[
        "!doctype", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "code",
        "section", "div", "span", "table", "tbody", "caption", "tr", "th", "td", "svg", "line", "text", "a", "rect",
        "i", "details", "summary", "dl", "dt", "dd", "br", "pre",
    ];
    let own_anchor = Regex::new(r"^#host-[0-9]+$").unwrap();
    for (name, attrs) in &els {
        assert!(OWN.contains(&name.as_str()), "<{name} {attrs:?}> in the page");
        for (a, v) in attrs {
            assert!(!a.starts_with("on") && a != "src" && a != "srcset" && a != "style", "<{name} {a}={v:?}>");
            if a == "href" {
                assert!(own_anchor.is_match(v), "a link out of the page: {v}");
            }
        }
    }
    let count = |name: &str| els.iter().filter(|(n, _)| n == name).count();
    assert_eq!((count("svg"), count("style"), count("details"), count("a")), (1, 1, 6, 6), "{dom}");
    let style = &dom[dom.find("<style>").unwrap()..dom.find("</style>").unwrap()];
    assert!(!style.contains("url(") && !style.contains("@import"), "no load from the style sheet: {style}");
    // The hostile output is on the page, as text.
    assert!(dom.contains("&lt;script&gt;fetch(\"http://127.0.0.1:"), "{dom}");
    assert!(dom.contains("\\u{1b}[2J \\u{1} \\u{202e}txt.exe"), "{dom}");

    // Every host of the run, worst first as in the JSON, with its
    // outcome and age; the bars of the plot the same.
    let order: Vec<&str> = rows.iter().map(|v| v["host"].as_str().unwrap()).collect();
    for (element, class) in [("details", "host"), ("rect", "bar")] {
        let seen: Vec<&BTreeMap<String, String>> =
            els.iter().filter(|(n, a)| n == element && has_class(a, class)).map(|(_, a)| a).collect();
        let names: Vec<&str> = seen.iter().map(|a| a["data-host"].as_str()).collect();
        assert_eq!(names, order, "the {element}s");
        for (a, row) in seen.iter().zip(&rows) {
            let host = row["host"].as_str().unwrap();
            assert_eq!(a["data-outcome"], row["outcome"].as_str().unwrap(), "{host}");
            let age = a.get("data-age-hours").map(|v| v.parse::<f64>().unwrap());
            assert_eq!(age, row["age_hours"].as_f64(), "{host}: the age of its last backup");
            if element == "details" {
                assert_eq!(a["data-healthy"], row["healthy"].to_string(), "{host}");
            }
        }
    }
    // The counts.
    let find = |key: &str, value: &str| -> &BTreeMap<String, String> {
        &els.iter()
            .find(|(_, a)| a.get(key).map(String::as_str) == Some(value))
            .unwrap_or_else(|| panic!("{key}={value}"))
            .1
    };
    assert_eq!(find("id", "run")["data-hosts"], summary["hosts"].to_string());
    assert_eq!(find("id", "run")["data-max-age-hours"], "26");
    assert_eq!(find("data-count-of", "healthy")["data-count"], summary["healthy"].to_string());
    assert_eq!(
        find("data-count-of", "backups_stale_or_failing")["data-count"],
        summary["backups_stale_or_failing"].to_string()
    );
    let by_outcome: BTreeMap<String, String> = els
        .iter()
        .filter(|(n, a)| n == "tr" && a.contains_key("data-outcome"))
        .map(|(_, a)| (a["data-outcome"].clone(), a["data-count"].clone()))
        .collect();
    let want: BTreeMap<String, String> =
        summary["counts"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    assert_eq!(by_outcome, want);
    assert_eq!(want["ok"], "3", "{summary}");

    assert!(took < Duration::from_secs(10), "the report took {took:?}");

    // The mail: the counts in its subject, the very page attached.
    let mail = wait_for_mail(&mailbox, Duration::from_secs(20));
    let subject = mail.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap();
    assert_eq!(
        subject,
        format!(
            "Backup fleet: {} of 6 host(s) healthy, {} with backups stale or failing, 3 not answering ok",
            summary["healthy"], summary["backups_stale_or_failing"]
        )
    );
    assert_eq!(attachment(&mail, "fleet-report.html"), fs::read(&page).unwrap(), "the page of the same run");
    let table = String::from_utf8(attachment(&mail, "")).unwrap();
    assert!(table.contains("6 host(s): 1 healthy"), "{table}");
    assert!(!mail.contains("<script>") && !mail.contains("Bcc:"), "host output only in base64: {mail}");

    // A page that cannot be written: the report is still printed, the run
    // says so and exits 1.
    let out = srv.fleet(&report_args("/nonexistent/fleet.html").iter().map(String::as_str).collect::<Vec<_>>()[1..]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the report's page /nonexistent/fleet.html"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() == 7, "the JSON report is still printed");
    // An address that is an option to sendmail: refused before any host
    // is contacted.
    let out = srv.fleet(&["report", "--hosts", "127.0.0.61", "--mail-to=-oQ/tmp/x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), out.stdout.is_empty()), (Some(1), true), "{err}");
    assert!(err.contains("\"-oQ/tmp/x\" is not a mail address"), "{err}");
    drop(sshd);
}

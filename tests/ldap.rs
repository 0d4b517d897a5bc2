//! logon_check = "ldap" against a real OpenLDAP slapd from Debian, started
//! by the test on a free loopback port with its own config and a small
//! directory of posixAccount entries.

mod common;

use backuppc_enroll::config::LdapConfig;
use backuppc_enroll::server::directory::Ldap;
use backuppc_enroll::server::policy::Directory;
use common::world::{Options, World};
use common::*;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BASE_DN: &str = "dc=example,dc=org";

struct Slapd {
    child: Child,
    port: u16,
    _dir: TestDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn person(uid: &str, n: u32) -> String {
    format!(
        "dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {uid}\n\
         cn: {uid}\nsn: {uid}\nuidNumber: {n}\ngidNumber: {n}\nhomeDirectory: /home/{uid}\n\n"
    )
}

impl Slapd {
    fn start() -> Slapd {
        require_root();
        for p in ["/usr/sbin/slapd", "/usr/sbin/slapadd", "/etc/ldap/schema/nis.schema"] {
            assert!(Path::new(p).exists(), "{p} is missing: run the README's test command, which installs slapd");
        }
        let dir = TestDir::new("ldap");
        let db = dir.mkdir("db");
        let conf = dir.join("slapd.conf");
        fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/nis.schema\ninclude /etc/ldap/schema/inetorgperson.schema\n\
                 modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {pid}\n\
                 database mdb\nmaxsize 10485760\nsuffix \"{BASE_DN}\"\nrootdn \"cn=admin,{BASE_DN}\"\nrootpw secret\n\
                 directory {db}\naccess to * by * read\n",
                pid = dir.join("slapd.pid").display(),
                db = db.display()
            ),
        )
        .unwrap();
        let mut ldif = format!(
            "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
             dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n"
        );
        for (i, uid) in ["cmartin", "jdupont", "a.b-c"].iter().enumerate() {
            ldif.push_str(&person(uid, 2000 + i as u32));
        }
        fs::write(dir.join("data.ldif"), ldif).unwrap();
        run_ok(Command::new("slapadd").arg("-f").arg(&conf).arg("-l").arg(dir.join("data.ldif")));
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new("/usr/sbin/slapd")
                .args(["-d", "0", "-h", &format!("ldap://127.0.0.1:{port}/"), "-f"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join("slapd.log")).unwrap())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Slapd { child, port, _dir: dir };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("slapd did not start: {}", fs::read_to_string(dir.join("slapd.log")).unwrap_or_default());
    }

    fn config(&self) -> LdapConfig {
        LdapConfig {
            url: format!("ldap://127.0.0.1:{}", self.port),
            base: format!("ou=people,{BASE_DN}"),
            timeout: 2,
            ..LdapConfig::default()
        }
    }
}

#[test]
fn ldap_lookups_escape_and_time_out() {
    let slapd = Slapd::start();
    let ldap = Ldap(slapd.config());
    let rows: &[(&str, bool, &str)] = &[
        ("cmartin", true, "existing logon"),
        ("a.b-c", true, "punctuation in a real uid"),
        ("nosuchuser", false, "missing logon"),
        ("*", false, "wildcard matched literally"),
        ("cm*", false, "prefix wildcard matched literally"),
        ("x)(uid=*", false, "filter injection matched literally"),
        ("*)(|(uid=*", false, "or-injection matched literally"),
        ("cmartin\0", false, "NUL"),
        ("a\\b", false, "backslash"),
    ];
    for (logon, want, why) in rows {
        assert_eq!(ldap.exists(logon), Ok(*want), "{why}: {logon:?}");
    }
    // With a bind.
    let pw = slapd._dir.join("bindpw");
    fs::write(&pw, "secret\n").unwrap();
    let bound = Ldap(LdapConfig {
        bind_dn: Some(format!("cn=admin,{BASE_DN}")),
        bind_password_file: Some(pw.clone()),
        ..slapd.config()
    });
    assert_eq!(bound.exists("jdupont"), Ok(true));
    fs::write(&pw, "wrong\n").unwrap();
    assert!(bound.exists("jdupont").is_err(), "a failed bind is an error, not an acceptance");

    // A directory that accepts and never answers: refused within the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(20));
        drop(held);
    });
    let start = Instant::now();
    let down = Ldap(LdapConfig { url: format!("ldap://127.0.0.1:{port}"), ..slapd.config() });
    assert!(down.exists("cmartin").is_err(), "no answer is an error");
    assert!(start.elapsed() < Duration::from_secs(6), "bounded by the timeout: {:?}", start.elapsed());

    // A directory that is not there at all.
    let port = slapd.port;
    drop(slapd);
    let gone = Ldap(LdapConfig {
        url: format!("ldap://127.0.0.1:{port}"),
        timeout: 2,
        base: "dc=x".into(),
        ..LdapConfig::default()
    });
    assert!(gone.exists("cmartin").is_err());
}

#[test]
fn enrollment_checks_the_directory() {
    let slapd = Slapd::start();
    let cfg = slapd.config();
    let w = World::new(Options {
        logon_check: "ldap",
        server_extra: format!("[ldap]\nurl = {:?}\nbase = {:?}\ntimeout = 2\n", cfg.url, cfg.base),
        ..Options::default()
    });
    let before = w.server_files();
    let out = w.enroll(&["--logon", "nosuchuser", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not known to this server's directory"));
    assert_eq!(w.server_files(), before);
    w.enroll_ok(&["--logon", "jdupont", "--yes"]);

    // Directory down: the enrollment is refused, quickly and clearly.
    drop(slapd);
    let start = Instant::now();
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey", "--reassign"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("directory could not be asked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

//! logon_check = "ldap" against a real OpenLDAP slapd from Debian, started
//! by the test on a free loopback port with its own config and a small
//! directory of posixAccount entries.

mod common;

use backuppc_enroll::config::LdapConfig;
use backuppc_enroll::server::directory::Ldap;
use backuppc_enroll::server::policy::Directory;
use common::forced::ForcedBench;
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
        Slapd::start_with("", "ldap")
    }

    /// `global`: more lines for slapd.conf's global section (TLS files);
    /// `scheme`: `ldap` or `ldaps`.
    fn start_with(global: &str, scheme: &str) -> Slapd {
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
                 modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {pid}\n{global}\
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
                .args(["-d", "0", "-h", &format!("{scheme}://127.0.0.1:{port}/"), "-f"])
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

    // Directory down: a server-side failure (exit 2), quick and short; the
    // detail is in the server's audit log, not in the client's answer.
    drop(slapd);
    let start = Instant::now();
    let out = w.enroll(&["--logon", "cmartin", "--yes", "--rekey", "--reassign"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("could not complete the enrollment"), "{said}");
    assert!(!said.contains(&cfg.url), "{said}");
    let audit = fs::read_to_string(&w.audit_log).unwrap();
    assert!(audit.contains("directory could not be asked") && audit.contains(&cfg.url), "{audit}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// `openssl` run in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA (`NAME.pem`, `NAME.key`) made with openssl.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// Two CAs (`site-ca`, `other-ca`), the directory's certificate for
/// 127.0.0.1 signed by other-ca, and `both.pem` (the two CAs); returns
/// slapd.conf's TLS lines.
fn make_tls_files(d: &Path) -> String {
    make_ca(d, "site-ca");
    make_ca(d, "other-ca");
    // The directory's certificate, for 127.0.0.1, signed by other-ca.
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "slapd.key",
            "-out",
            "slapd.csr",
        ],
    );
    fs::write(d.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "slapd.csr",
            "-CA",
            "other-ca.pem",
            "-CAkey",
            "other-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "slapd.pem",
        ],
    );
    let both = [fs::read(d.join("site-ca.pem")).unwrap(), fs::read(d.join("other-ca.pem")).unwrap()].concat();
    fs::write(d.join("both.pem"), both).unwrap();
    format!(
        "TLSCACertificateFile {d}/other-ca.pem\nTLSCertificateFile {d}/slapd.pem\nTLSCertificateKeyFile {d}/slapd.key\n",
        d = d.display()
    )
}

#[test]
fn ca_file_is_the_whole_trusted_set() {
    require_root();
    let tls = TestDir::new("tls");
    let d = tls.path.as_path();
    let slapd = Slapd::start_with(&make_tls_files(d), "ldaps");
    let f = ForcedBench::new();
    let base = fs::read_to_string(&f.config).unwrap().replace("logon_check = \"file\"", "logon_check = \"ldap\"");
    let audit = f.dir.join("audit.log");
    let rows: &[(&str, Option<&str>, i32, &str)] = &[
        ("other-ca.pem", None, 1, "the directory's own CA: it answers (the logon is unknown)"),
        ("both.pem", None, 1, "every certificate of the file is trusted, not only the first"),
        ("site-ca.pem", None, 2, "a certificate from another CA is refused"),
        (
            "site-ca.pem",
            Some("other-ca.pem"),
            2,
            "the system's CAs (here OpenSSL's SSL_CERT_FILE) are not added to ca_file",
        ),
    ];
    for (ca, system, code, why) in rows {
        fs::write(
            &f.config,
            format!(
                "{base}audit_log = {audit:?}\n[ldap]\nurl = \"ldaps://127.0.0.1:{}\"\nbase = \"ou=people,{BASE_DN}\"\nca_file = {:?}\ntimeout = 2\n",
                slapd.port,
                d.join(ca)
            ),
        )
        .unwrap();
        let mut cmd = as_sshd_runs(&f.bins.forced_command, &f.config, "linux:nosuchuser", "127.0.0.1");
        if let Some(s) = system {
            cmd.env("SSL_CERT_FILE", d.join(s)).env("SSL_CERT_DIR", d);
        }
        let out = feed(&mut cmd, b"", None).wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(*code), "{why}: {said}\n{}", fs::read_to_string(&audit).unwrap_or_default());
        if *code == 1 {
            assert!(said.contains("not known to this server's directory"), "{why}: {said}");
        }
    }
}

/// forced-command's answer to `linux:nosuchuser` with this `[ldap]` table.
fn ask_directory(f: &ForcedBench, base: &str, ldap: &str) -> (i32, String) {
    let audit = f.dir.join("audit.log");
    fs::write(&f.config, format!("{base}audit_log = {audit:?}\n[ldap]\n{ldap}")).unwrap();
    let cmd = &mut as_sshd_runs(&f.bins.forced_command, &f.config, "linux:nosuchuser", "127.0.0.1");
    let out = feed(cmd, b"", None).wait_with_output().unwrap();
    let said = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), fs::read_to_string(&audit).unwrap_or_default());
    (out.status.code().unwrap_or(-1), said)
}

#[test]
fn starttls_trusts_the_ca_file_and_never_falls_back_to_plain_text() {
    require_root();
    let tls = TestDir::new("starttls");
    let d = tls.path.as_path();
    // One slapd on ldap:// that offers StartTLS, one that cannot.
    let with_tls = Slapd::start_with(&make_tls_files(d), "ldap");
    let plain = Slapd::start();
    let f = ForcedBench::new();
    let base = fs::read_to_string(&f.config).unwrap().replace("logon_check = \"file\"", "logon_check = \"ldap\"");
    let table = |port: u16, ca: &str| {
        format!(
            "url = \"ldap://127.0.0.1:{port}\"\nbase = \"ou=people,{BASE_DN}\"\nstarttls = true\nca_file = {:?}\ntimeout = 2\n",
            d.join(ca)
        )
    };
    let (code, said) = ask_directory(&f, &base, &table(with_tls.port, "other-ca.pem"));
    assert_eq!(code, 1, "the directory's own CA: it answers over StartTLS: {said}");
    assert!(said.contains("not known to this server's directory"), "{said}");
    let (code, said) = ask_directory(&f, &base, &table(with_tls.port, "site-ca.pem"));
    assert_eq!(code, 2, "a certificate from another CA is refused: {said}");
    let (code, said) = ask_directory(&f, &base, &table(plain.port, "other-ca.pem"));
    assert_eq!(code, 2, "no StartTLS offered: refused, never asked in plain text: {said}");
    assert!(said.contains("directory could not be asked"), "{said}");
    // The same plain directory without starttls answers: the refusal above
    // was StartTLS's.
    let plain_table =
        format!("url = \"ldap://127.0.0.1:{}\"\nbase = \"ou=people,{BASE_DN}\"\ntimeout = 2\n", plain.port);
    assert_eq!(ask_directory(&f, &base, &plain_table).0, 1);
}

//! The site bundle end to end: `enroll bundle` builds it from the server's
//! register key and host key; unpacked at `/` on a workstation, it lets a
//! bare `enroll --yes --logon …` (no --config, nothing on stdin) enroll
//! against the test server, and a backup then runs through rsyncsend.
//!
//! The workstation's `/etc/backuppc-enroll` is a folder of the test,
//! bind-mounted there in private mount namespaces (one for the install and
//! enroll, one for the test's sshd and what it runs), so the machine's own
//! `/etc/backuppc-enroll`, if any, is never touched.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SITE_DIR: &str = "/etc/backuppc-enroll";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The mount point `/etc/backuppc-enroll`, made if missing and then
/// removed again (only if this test made it and it is still empty).
struct MountPoint {
    made: bool,
}

impl MountPoint {
    fn new() -> MountPoint {
        let made = !Path::new(SITE_DIR).exists();
        if made {
            fs::create_dir(SITE_DIR).unwrap();
        }
        MountPoint { made }
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        if self.made {
            let _ = fs::remove_dir(SITE_DIR);
        }
    }
}

/// The workstation-specific part of the World's client config (its test
/// backup user, paths and sshd), without what the bundle sets.
fn site_base(w: &World) -> PathBuf {
    let own = ["server ", "port ", "server_user ", "server_host_keys ", "register_key "];
    let body: String = fs::read_to_string(&w.client_toml)
        .unwrap()
        .lines()
        .filter(|l| !own.iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    let base = w.dir.join("site-base.toml");
    fs::write(&base, format!("# what this organisation's workstations share\n{body}")).unwrap();
    base
}

fn bundle(w: &World, base: &Path, output: &Path) -> std::process::Output {
    Command::new(&w.bins.enroll)
        .args(["bundle", "--server", "127.0.0.1", "--port", &w.sshd.port.to_string()])
        .args(["--server-user", &w.server.name])
        .arg("--register-key")
        .arg(&w.register_key)
        .arg("--host-key")
        .arg(&w.sshd.host_pub_path)
        .arg("--client-config")
        .arg(base)
        .arg("-o")
        .arg(output)
        .output()
        .unwrap()
}

#[test]
fn installed_site_bundle_enrolls_with_no_other_input() {
    require_root();
    let _mount_point = MountPoint::new();
    let machine = TestDir::new("site");
    let site = machine.mkdir("etc-backuppc-enroll");
    let w = World::new(Options { sshd_mounts: vec![(site.clone(), SITE_DIR.into())], ..Options::default() });

    let archive = machine.join("site.tar.gz");
    let out = bundle(&w, &site_base(&w), &archive);
    assert!(out.status.success(), "enroll bundle: {}", text(&out.stderr));
    let meta = fs::metadata(&archive).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the archive holds a private key");
    let listing = text(&run_ok(Command::new("tar").arg("-tvzf").arg(&archive)).stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw------- root/root") && l.ends_with(" etc/backuppc-enroll/register-key")),
        "register key 0600 root in the archive: {listing}"
    );

    // Install it the documented way, then enroll with nothing but --yes and
    // --logon: the config is found at its default path.
    let script = format!(
        "mount --bind '{site}' {SITE_DIR} && tar -xpzf '{archive}' -C / && exec '{enroll}' --yes --logon cmartin",
        site = site.display(),
        archive = archive.display(),
        enroll = w.bins.enroll.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enroll from the installed bundle: {}\n{}\nsshd: {}",
        text(&out.stdout),
        text(&out.stderr),
        fs::read_to_string(&w.sshd.log).unwrap_or_default()
    );
    assert!(text(&out.stdout).contains("index.cgi?host=localhost"), "URL shown: {}", text(&out.stdout));

    let key = fs::metadata(site.join("register-key")).unwrap();
    assert_eq!((key.mode() & 0o7777, key.uid(), key.gid()), (0o600, 0, 0), "register key 0600 root once installed");
    let cfg = fs::read_to_string(site.join("client.toml")).unwrap();
    assert!(cfg.starts_with("# what this organisation's workstations share"), "base config kept: {cfg}");
    let ak = fs::read_to_string(w.client_home().join(".ssh/authorized_keys")).unwrap();
    assert!(ak.contains(&format!("--config {SITE_DIR}/client.toml\"")), "key line names the installed config: {ak}");
    assert!(fs::read_to_string(w.conf_dir.join("hosts")).unwrap().contains("localhost\t0\tcmartin\n"));

    // rsyncsend, run by the sshd that sees the installed config, lets the
    // server back the machine up.
    let dest = w.dir.join("backup");
    let out = w.pull("localhost", &format!("{}/", w.data.display()), &dest, &["--protect-args"]);
    assert!(out.status.success(), "backup: {}\nsshd: {}", text(&out.stderr), fs::read_to_string(&w.sshd.log).unwrap());
    assert_same_tree(&w.data, &dest);
}

#[test]
fn a_bundle_that_cannot_be_made_writes_nothing() {
    require_root();
    let w = World::new(Options::default());
    let base = site_base(&w);
    let output = w.dir.join("site.tar.gz");

    let encrypted = w.dir.join("locked-key");
    run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "secret", "-f"]).arg(&encrypted));
    let not_a_key = w.dir.join("not-a-key.pub");
    fs::write(&not_a_key, "backup.example.org ssh-ed25519 not-base64\n").unwrap();
    let missing = w.dir.join("missing");

    type Case<'a> = (&'a str, &'a Path, &'a Path, &'a str);
    let cases: [Case; 4] = [
        ("passphrase on the register key", &encrypted, &w.sshd.host_pub_path, "passphrase"),
        (
            "public key given as the register key",
            &w.sshd.host_pub_path,
            &w.sshd.host_pub_path,
            "not an OpenSSH private key",
        ),
        ("host key file without a key", &w.register_key, &not_a_key, "line 1"),
        ("missing host key file", &w.register_key, &missing, "reading the host key file"),
    ];
    for (why, register_key, host_key, says) in cases {
        let out = Command::new(&w.bins.enroll)
            .args(["bundle", "--server", "127.0.0.1", "--register-key"])
            .arg(register_key)
            .arg("--host-key")
            .arg(host_key)
            .arg("--client-config")
            .arg(&base)
            .arg("-o")
            .arg(&output)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{why}");
        assert!(text(&out.stderr).contains(says), "{why}: {}", text(&out.stderr));
        assert!(!output.exists(), "{why}: nothing written");
    }

    // An existing bundle is kept unless --force.
    fs::write(&output, "an older bundle").unwrap();
    let out = bundle(&w, &base, &output);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--force"), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&output).unwrap(), "an older bundle");
}

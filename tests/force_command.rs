//! The ForceCommand deployment: `forced-command install-sshd-dropin`
//! writes a `Match User` drop-in, checked by sshd, and a real sshd whose
//! config includes it runs only forced-command for that account, even for
//! a key line with no options at all: no command, no shell, no tty, no
//! forwarding of any kind; enrollments still work through it.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// ssh as root with `key` to `user` on `port`, the host key pinned.
fn ssh(pins: &Path, key: &Path, user: &str, port: u16, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new("ssh");
    c.args(["-x", "-a", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", pins.display()))
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string(), "-l", user, "127.0.0.1"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_key_of_the_account_reaches_only_forced_command() {
    let w = World::new(Options::default());
    let user = w.server.name.clone();
    // A key for the account with no options at all.
    let bare = w.dir.join("bare_key");
    let bare_pub = keygen(&bare, "no options");
    let ak = w.server.home.join(".ssh/authorized_keys");
    let mut lines = fs::read_to_string(&ak).unwrap();
    lines.push_str(&format!("{bare_pub}\n"));
    fs::write(&ak, lines).unwrap();

    // An sshd whose config includes the drop-in folder, as Debian's does.
    let conf_d = w.dir.join("sshd_config.d");
    fs::create_dir_all(&conf_d).unwrap();
    let dropin = conf_d.join("backuppc-enroll.conf");
    let sshd_dir = w.dir.join("sshd-force");
    let include = format!("Include {}/*.conf\n", conf_d.display());
    let opts = || SshdOptions { extra_config: include.clone(), ..Default::default() };
    let first = Sshd::start_with(&sshd_dir, &[&user], opts());
    let pins = w.dir.join("pins-force");
    fs::write(&pins, first.known_hosts_line()).unwrap();
    // Before: the bare key is a shell.
    let before = ssh(&pins, &bare, &user, first.port, &["id", "-un"], b"");
    assert_eq!(text(&before.stdout).trim(), user, "without the drop-in the bare key runs commands");
    drop(first);

    let install = |extra: &[&str]| {
        let mut args = vec!["install-sshd-dropin", "--user", &user, "--dropin", dropin.to_str().unwrap()];
        let cfg = sshd_dir.join("sshd_config");
        let cfg = cfg.to_str().unwrap().to_string();
        args.extend(["--sshd-config", &cfg]);
        args.extend(extra);
        w.admin(&args)
    };
    // A main config sshd rejects: nothing is written.
    let broken = w.dir.join("broken_sshd_config");
    fs::write(&broken, "NoSuchKeyword yes\n").unwrap();
    let out = w.admin(&[
        "install-sshd-dropin",
        "--user",
        &user,
        "--dropin",
        dropin.to_str().unwrap(),
        "--sshd-config",
        broken.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a config sshd -t rejects is refused");
    assert!(text(&out.stderr).contains("sshd -t rejected"), "{}", text(&out.stderr));
    assert_eq!(fs::read_dir(&conf_d).unwrap().count(), 0, "no drop-in, no staged file");

    let out = install(&[]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let written = fs::read_to_string(&dropin).unwrap();
    assert!(written.contains(&format!("Match User {user}\n")), "{written}");
    let again = install(&[]);
    assert!(text(&again.stdout).contains("already in place"), "idempotent: {}", text(&again.stdout));

    let sshd = Sshd::start_with(&sshd_dir, &[&user], opts());
    fs::write(&pins, sshd.known_hosts_line()).unwrap();
    let server_before = w.server_files();
    // Commands and shells: forced-command answers, nothing runs.
    for cmd in [&["id"][..], &["sh", "-c", "'echo pwned > /tmp/bpe-pwned'"], &["/bin/bash"], &[]] {
        let out = ssh(&pins, &bare, &user, sshd.port, cmd, b"");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{cmd:?} must not succeed: {all}");
        assert!(!all.contains("uid=") && !all.contains("pwned"), "{cmd:?} ran: {all}");
    }
    assert!(!Path::new("/tmp/bpe-pwned").exists());
    // A tty, a remote forwarding, a stdio forwarding: refused by sshd.
    let tty = ssh(&pins, &bare, &user, sshd.port, &["-tt", "true"], b"");
    assert!(text(&tty.stderr).contains("PTY allocation request failed"), "{}", text(&tty.stderr));
    let remote =
        ssh(&pins, &bare, &user, sshd.port, &["-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"], b"");
    assert!(!remote.status.success(), "remote forwarding: {}", text(&remote.stderr));
    let stdio = ssh(&pins, &bare, &user, sshd.port, &["-W", &format!("127.0.0.1:{}", sshd.port)], b"");
    assert!(!stdio.status.success(), "stdio forwarding: {}", text(&stdio.stderr));
    assert!(!text(&stdio.stdout).starts_with("SSH-"), "no byte of a forwarded connection");
    assert_eq!(w.server_files(), server_before, "nothing was written by the refused attempts");

    // What the account is for still works through the bare key.
    let hello = format!("protocol: 2\nhostname: localhost\nhostkey: {}\nuser: bckpciuem\nport: 22\n", sshd.host_pub);
    let enrolled = ssh(&pins, &bare, &user, sshd.port, &["linux:cmartin"], hello.as_bytes());
    assert!(enrolled.status.success(), "{}{}", text(&enrolled.stdout), text(&enrolled.stderr));
    assert!(text(&enrolled.stdout).starts_with("success\n"), "{}", text(&enrolled.stdout));

    // Removal: only the drop-in it wrote.
    let out = install(&["--remove"]);
    assert!(out.status.success() && !dropin.exists(), "{}", text(&out.stderr));
    fs::write(&dropin, "# the admin's own\n").unwrap();
    let out = install(&["--remove"]);
    assert!(!out.status.success(), "a foreign drop-in is refused");
    assert_eq!(fs::read_to_string(&dropin).unwrap(), "# the admin's own\n");
    let out = install(&[]);
    assert!(!out.status.success() && text(&out.stderr).contains("not written by backuppc-enroll"));
}

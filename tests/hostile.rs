//! Adversarial tables for the two forced commands, run as sshd would run
//! them (SSH_ORIGINAL_COMMAND, SSH_CONNECTION, stdin), without sshd so each
//! row is cheap. Every refused row must: exit non-zero, print one line (or
//! one paragraph for forced-command) and nothing on stderr for
//! forced-command, exec nothing (a recorder stands in for `sudo`), and
//! change no file.

mod common;

use common::forced::ForcedBench;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct RsyncSendBench {
    dir: TestDir,
    bins: Bins,
    share: PathBuf,
    config: PathBuf,
    recorded: PathBuf,
}

impl RsyncSendBench {
    fn new(restore: bool, delete: bool) -> RsyncSendBench {
        require_root();
        let dir = TestDir::new("rs");
        let bins = install_bins(&dir);
        let share = dir.mkdir("share with space");
        fs::write(share.join("file"), "data").unwrap();
        std::os::unix::fs::symlink("/etc", share.join("escape")).unwrap();
        dir.mkdir("outside");
        let recorded = dir.join("recorded");
        let recorder = dir.join("bin/recorder");
        write_script(
            &recorder,
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {r}.argv\nenv > {r}.env\npwd -P > {r}.cwd\ncat > {r}.stdin\n",
                r = recorded.display()
            ),
        );
        let config = dir.mkdir("etc").join("client.toml");
        fs::write(
            &config,
            format!(
                "shares = [{:?}]\nrestore = {restore}\ndelete = {delete}\nsudo = {:?}\nrsyncsend = {:?}\nbackup_home = {:?}\nstate_file = {:?}\ntimeout = 2\n",
                share,
                recorder,
                bins.rsyncsend,
                dir.join("home"),
                dir.join("state/state.json")
            ),
        )
        .unwrap();
        RsyncSendBench { dir, bins, share, config, recorded }
    }

    fn run(&self, command: &str, stdin: &[u8]) -> std::process::Output {
        let _ = fs::remove_file(self.recorded.with_extension("argv"));
        let mut cmd = as_sshd_runs(&self.bins.rsyncsend, &self.config, command, "127.0.0.9");
        // What a hostile environment would try; rsyncsend must not pass it on.
        cmd.env("LD_PRELOAD", "/lib/x86_64-linux-gnu/libm.so.6")
            .env("HOME", "/tmp/evil-home")
            .env("POPT_ALIAS", "evil");
        feed(&mut cmd, stdin, None).wait_with_output().unwrap()
    }

    fn executed(&self) -> Option<Vec<String>> {
        fs::read_to_string(self.recorded.with_extension("argv")).ok().map(|s| s.lines().map(String::from).collect())
    }
}

fn protected(args: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for a in args {
        v.extend_from_slice(a.as_bytes());
        v.push(0);
    }
    v.push(0);
    v
}

#[test]
fn rsyncsend_accepts_backuppc_strings_and_rebuilds_argv() {
    let b = RsyncSendBench::new(true, false);
    let share = b.share.display().to_string();
    let share_slash = format!("{share}/");
    let rows: Vec<(&str, Vec<&str>, &str, Vec<&str>)> = vec![
        (
            "rsync --server --sender -slHogDtprcxe.iLsfxC",
            vec!["rsync", "--numeric-ids", "--log-format=log: %o %i %B %8U,%8G %9l %f%L", ".", &share_slash],
            "full backup",
            vec![
                "--server",
                "--sender",
                "-lHogDtprcxe.iLsfxC",
                "--numeric-ids",
                "--log-format=log: %o %i %B %8U,%8G %9l %f%L",
                "--",
                ".",
                &share_slash,
            ],
        ),
        (
            "rsync --server --sender -slHogDtprxe.iLsfxC",
            vec!["rsync", "--numeric-ids", ".", &share_slash],
            "incremental backup",
            vec!["--server", "--sender", "-lHogDtprxe.iLsfxC", "--numeric-ids", "--", ".", &share_slash],
        ),
        (
            "rsync --server -slHogDtprRe.iLsfxC",
            vec!["rsync", "--super", "--numeric-ids", "--partial", ".", &share_slash],
            "restore",
            vec!["--server", "-lHogDtprRe.iLsfxC", "--super", "--numeric-ids", "--partial", "--", ".", &share_slash],
        ),
    ];
    for (cmd, args, why, want) in rows {
        let mut stdin = protected(&args);
        stdin.extend_from_slice(b"RSYNC-PROTOCOL-BYTES");
        let out = b.run(cmd, &stdin);
        assert!(out.status.success(), "{why}: {}", String::from_utf8_lossy(&out.stderr));
        let argv = b.executed().unwrap_or_else(|| panic!("{why}: nothing executed"));
        // Not rsync: the root helper, with the config path the sudoers
        // drop-in fixes, which checks the rsync words again.
        let mut expected: Vec<String> = vec!["-n".into(), "--".into(), b.bins.rsyncsend.display().to_string()];
        expected.extend(["--config".into(), b.config.display().to_string(), "exec-rsync".into(), "--".into()]);
        expected.push("/usr/bin/rsync".into());
        expected.extend(want.iter().map(|s| s.to_string()));
        assert_eq!(argv, expected, "{why}");
        let left = fs::read(b.recorded.with_extension("stdin")).unwrap();
        assert_eq!(left, b"RSYNC-PROTOCOL-BYTES", "{why}: protocol bytes left for rsync");
        let env = fs::read_to_string(b.recorded.with_extension("env")).unwrap();
        for bad in ["LD_PRELOAD", "POPT_ALIAS", "evil-home", "SSH_ORIGINAL_COMMAND"] {
            assert!(!env.contains(bad), "{why}: {bad} leaked into the exec'd environment:\n{env}");
        }
    }
    let out = b.run("true", b"");
    assert!(out.status.success() && b.executed().is_none(), "true is a check, nothing run");
    let out = b.run(
        &format!("rsync --server --sender -lHogDtprxe.iLsfxCIvu --numeric-ids . {}/", share.replace(' ', "\\ ")),
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(b.executed().unwrap().last().unwrap(), &share_slash, "escaped space in a plain command line");
    let out = b.run(&format!("rsync --server --sender -l . {}/file", share.replace(' ', "\\ ")), b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(b.executed().unwrap().last().unwrap(), &format!("{share}/file"), "a file by name");
}

#[test]
fn rsyncsend_refuses_hostile_invocations() {
    let b = RsyncSendBench::new(false, false);
    let s = b.share.display().to_string().replace(' ', "\\ ");
    let raw = b.share.display().to_string();
    let out_dir = b.dir.join("outside").display().to_string();
    let before = snapshot(&[&b.dir.path]);
    let p = |args: &[&str]| protected(args);
    let rows: Vec<(String, Vec<u8>, &str)> = vec![
        ("".into(), vec![], "empty command"),
        ("sh".into(), vec![], "a shell"),
        ("/bin/sh -c id".into(), vec![], "shell with command"),
        ("scp -t /tmp".into(), vec![], "scp (CVE-2019-1000018 class)"),
        ("rsync".into(), vec![], "no --server"),
        (format!("rsync --sender --server -l . {s}"), vec![], "--sender before --server"),
        (format!("rsync --server -l . {s}"), vec![], "receiver without restore = true"),
        (format!("rsync --server --sender -e sh . {s}"), vec![], "-e with a program (rssh CVE-2012-2251)"),
        (format!("rsync --server --sender -le.sh\\ -c\\ id . {s}"), vec![], "-e tail with a space"),
        (format!("rsync --server --sender --rsh=/bin/sh . {s}"), vec![], "--rsh"),
        (format!("rsync --server --sender --rsh /bin/sh . {s}"), vec![], "--rsh as separate word"),
        (format!("rsync --server --sender --rsync-path=id . {s}"), vec![], "--rsync-path"),
        (format!("rsync --server --daemon --config=/tmp/x . {s}"), vec![], "--daemon --config (CVE-2019-3463)"),
        (format!("rsync --server --sender --config=/tmp/x . {s}"), vec![], "--config"),
        (format!("rsync --server --sender --log-file=/etc/cron.d/x . {s}"), vec![], "--log-file"),
        (format!("rsync --server --sender --log-file-format=%f . {s}"), vec![], "--log-file-format"),
        (format!("rsync --server --sender --write-batch=/tmp/b . {s}"), vec![], "--write-batch"),
        (format!("rsync --server --sender --read-batch=/tmp/b . {s}"), vec![], "--read-batch"),
        (format!("rsync --server --sender --files-from=/etc/shadow . {s}"), vec![], "--files-from a file"),
        (format!("rsync --server --sender --copy-devices . {s}"), vec![], "--copy-devices"),
        (format!("rsync --server --sender --write-devices . {s}"), vec![], "--write-devices"),
        (format!("rsync --server --sender --remove-source-files . {s}"), vec![], "--remove-source-files"),
        (format!("rsync --server --sender --debug=ALL4 . {s}"), vec![], "--debug"),
        (format!("rsync --server --sender -L . {s}"), vec![], "-L copy links"),
        (format!("rsync --server --sender -k . {s}"), vec![], "-k copy dirlinks"),
        (format!("rsync --server --sender --copy-unsafe-links . {s}"), vec![], "--copy-unsafe-links"),
        (format!("rsync --server --sender --iconv=utf8,latin1 . {s}"), vec![], "--iconv not configured"),
        (format!("rsync --server --sender --no-such-thing . {s}"), vec![], "unknown long option"),
        (format!("rsync --server --sender -Q . {s}"), vec![], "unknown short option"),
        (format!("rsync --server --sender --delete . {s}"), vec![], "delete without delete = true"),
        (format!("rsync --server --sender -l . {out_dir}"), vec![], "path outside the shares"),
        (format!("rsync --server --sender -l . {s}/../outside"), vec![], "dot-dot"),
        (format!("rsync --server --sender -l . {s}/escape/"), vec![], "symlink leading out"),
        (format!("rsync --server --sender -l . {s}x"), vec![], "share name prefix, not a component"),
        (format!("rsync --server --sender -l . {s};id"), vec![], "semicolon"),
        (format!("rsync --server --sender -l . {s}$(id)"), vec![], "command substitution"),
        (format!("rsync --server --sender -l . {s}`id`"), vec![], "backticks"),
        (format!("rsync --server --sender -l . {s}|id"), vec![], "pipe"),
        (format!("rsync --server --sender -l . {s}&&id"), vec![], "and-list"),
        (format!("rsync --server --sender -l . {s}>/tmp/x"), vec![], "redirection"),
        (format!("rsync --server --sender -l . '{s}'"), vec![], "quotes"),
        (format!("rsync --server --sender -l . {s}\nid"), vec![], "newline"),
        (format!("rsync --server --sender -l . {s}\u{1b}"), vec![], "control character"),
        (format!("rsync --server --sender -l -- -- . {s}"), vec![], "-- twice"),
        (format!("rsync --server --sender -l . -- {s}"), vec![], "option-like path after ."),
        (
            format!("rsync --server --sender -l . {}", "a/".repeat(9000)),
            vec![],
            "over-long command (CVE-2022-39260 class)",
        ),
        ("rsync --server --sender -sl".into(), p(&["sh", ".", &raw]), "protected args not starting with rsync"),
        (
            "rsync --server --sender -sl".into(),
            p(&["rsync", "--rsh=sh", ".", &raw]),
            "--rsh in protected args (CVE-2012-2252)",
        ),
        ("rsync --server --sender -sl".into(), p(&["rsync", "-e", "sh", ".", &raw]), "-e in protected args"),
        ("rsync --server --sender -sl".into(), p(&["rsync", ".", "/etc"]), "protected path outside"),
        ("rsync --server --sender -sl".into(), p(&["rsync", ".", &format!("{raw}/../outside")]), "protected dot-dot"),
        ("rsync --server --sender -sl".into(), b"rsync\0.\0".to_vec(), "protected list never ends (EOF)"),
        ("rsync --server --sender -sl".into(), vec![b'a'; 70_000], "protected list too large"),
        ("rsync --server --sender -sl".into(), "x\0".repeat(1100).into_bytes(), "too many protected args"),
        ("rsync --server --sender -sl --numeric-ids".into(), p(&["rsync", ".", &raw]), "long option beside -s"),
        (format!("rsync --server --sender -l {s}"), vec![], "no dot argument"),
    ];
    assert!(rows.len() >= 40, "at least 40 rows");
    for (cmd, stdin, why) in &rows {
        let out = b.run(cmd, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: accepted {cmd:?}");
        assert!(b.executed().is_none(), "{why}: something was executed");
        assert_eq!(err.lines().count(), 1, "{why}: one line on stderr, got {err:?}");
        assert!(err.starts_with("rsyncsend: refused: "), "{why}: {err:?}");
        assert!(out.stdout.is_empty(), "{why}: nothing on stdout");
    }
    assert_eq!(snapshot(&[&b.dir.path]), before, "no file changed");
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";

#[test]
fn forced_command_refuses_hostile_requests() {
    let f = ForcedBench::new();
    let before = f.files();
    let ok_hello = format!("protocol: 2\nhostname: localhost\nhostkey: {KEY}\nuser: bckpciuem\nport: 22\n");
    let h = |extra: &str| format!("protocol: 2\nhostname: localhost\n{extra}").into_bytes();
    let rows: Vec<(String, &str, Vec<u8>, &str)> = vec![
        ("".into(), "127.0.0.1", vec![], "no command"),
        ("linux:cmartin ".into(), "127.0.0.1", vec![], "trailing space"),
        ("linux:cmartin\n".into(), "127.0.0.1", vec![], "trailing newline"),
        ("linux:cmartin;id".into(), "127.0.0.1", vec![], "semicolon"),
        ("linux:$(id)".into(), "127.0.0.1", vec![], "command substitution"),
        ("linux:`id`".into(), "127.0.0.1", vec![], "backticks"),
        ("linux:cmartin:x".into(), "127.0.0.1", vec![], "extra : field"),
        ("linux:cmärtin".into(), "127.0.0.1", vec![], "non-ASCII"),
        (format!("{}:cmartin", "l".repeat(17)), "127.0.0.1", vec![], "over-long OS"),
        (format!("linux:{}", "c".repeat(33)), "127.0.0.1", vec![], "over-long logon"),
        ("windows:cmartin".into(), "127.0.0.1", vec![], "OS not allowed"),
        ("Linux:cmartin".into(), "127.0.0.1", vec![], "upper-case OS"),
        ("linux:Cmartin".into(), "127.0.0.1", vec![], "logon pattern"),
        ("linux:jdupont".into(), "127.0.0.1", vec![], "logon not in the list"),
        ("linux:*".into(), "127.0.0.1", vec![], "wildcard logon"),
        ("linux:cmartin".into(), "8.8.8.8", vec![], "network not allowed"),
        ("linux:cmartin".into(), "127.0.0.1", b"hostname localhost\n".to_vec(), "hello line without ': '"),
        ("linux:cmartin".into(), "127.0.0.1", h("hostname: localhost\n"), "hello repeats a name"),
        ("linux:cmartin".into(), "127.0.0.1", vec![b'a'; 70 * 1024], "hello too large"),
        (
            "linux:cmartin".into(),
            "127.0.0.1",
            b"protocol: 2\nhostname: evil'host\n".to_vec(),
            "Perl quote in host name",
        ),
        (
            "linux:cmartin".into(),
            "127.0.0.1",
            b"protocol: 2\nhostname: -oProxyCommand=id\n".to_vec(),
            "option prefix in host name",
        ),
        ("linux:cmartin".into(), "127.0.0.1", b"protocol: 2\nhostname: local\rhost\n".to_vec(), "carriage return"),
        ("linux:cmartin".into(), "127.0.0.1", b"protocol: 2\nhostname: local\0host\n".to_vec(), "NUL"),
        ("linux:cmartin".into(), "127.0.0.1", h(&format!("hostkey: command=\"id\" {KEY}\n")), "host key with options"),
        ("linux:cmartin".into(), "127.0.0.1", h("hostkey: ssh-ed25519 AAAA\n"), "broken host key"),
        ("linux:cmartin".into(), "127.0.0.1", h("user: -oProxyCommand=id\n"), "option prefix in user"),
        ("linux:cmartin".into(), "127.0.0.1", h("user: root;id\n"), "shell in user"),
        ("linux:cmartin".into(), "127.0.0.1", h("port: 22 -oProxyCommand=id\n"), "option in port"),
        ("linux:cmartin".into(), "127.0.0.1", h("hostname: h\u{e9}\n"), "non-ASCII hello"),
        (
            "linux:cmartin".into(),
            "127.0.0.2",
            b"protocol: 2\nhostname: localhost\n".to_vec(),
            "host name resolves elsewhere, no reverse name",
        ),
    ];
    assert!(rows.len() >= 25);
    for (cmd, client, stdin, why) in &rows {
        let out = f.run(cmd, client, stdin, None);
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{why}: {answer}");
        assert!(answer.starts_with("Enrollment refused: "), "{why}: {answer:?}");
        assert_eq!(answer.trim_end().lines().count(), 1, "{why}: one paragraph");
        assert!(out.stderr.is_empty(), "{why}: nothing on stderr");
        assert_eq!(f.files(), before, "{why}: a file changed");
    }
    // A hello that starts and then stalls past the bound.
    let out = f.run("linux:cmartin", "127.0.0.1", b"protocol: 2\nhostn", Some(Duration::from_secs(4)));
    assert_eq!(out.status.code(), Some(1), "slow hello: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("did not end in time"));
    assert_eq!(f.files(), before);

    // The same request done right succeeds, so the rows above fail for
    // the reason they name.
    let out = f.run("linux:cmartin", "127.0.0.1", ok_hello.as_bytes(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let pl = fs::read_to_string(f.dir.join("backuppc/pc/localhost.pl")).unwrap();
    assert!(pl.contains("-l bckpciuem -p 22 -i "), "{pl}");
    assert!(Path::new(&f.dir.join("ssh/backuppc-enroll/localhost.key")).exists());
}

/// Runs `command` through rsyncsend with a stand-in for sudo that first
/// swaps `target` (checked by the forced command) for a symlink to /etc,
/// then runs the real sudo: the root helper checks again and refuses
/// before rsync (here a fake that records that it ran) starts.
fn run_with_swap(b: &RsyncSendBench, target: &Path, command: &str) -> std::process::Output {
    let moved = b.dir.join("moved-away");
    let fake_rsync = b.dir.join("bin/fake-rsync");
    let seen = b.dir.join("seen");
    write_script(&fake_rsync, &format!("#!/bin/sh\n{{ pwd -P; ls; }} > {}\n", seen.display()));
    let swapper = b.dir.join("bin/swap-then-sudo");
    write_script(
        &swapper,
        &format!(
            "#!/bin/sh\nmv '{t}' '{moved}' && ln -s /etc '{t}' && exec /usr/bin/sudo \"$@\"\n",
            t = target.display(),
            moved = moved.display()
        ),
    );
    let cfg = fs::read_to_string(&b.config).unwrap();
    let cfg = cfg.replace(
        &format!("sudo = {:?}", b.dir.join("bin/recorder")),
        &format!("sudo = {:?}\nrsync = {:?}", swapper, fake_rsync),
    );
    fs::write(&b.config, cfg).unwrap();
    let out = b.run(command, b"");
    assert!(fs::symlink_metadata(target).unwrap().file_type().is_symlink(), "the swap happened");
    assert!(!seen.exists(), "rsync never started: {}", fs::read_to_string(&seen).unwrap_or_default());
    out
}

/// rrsync's old race: the path is checked, then swapped for a symlink to
/// somewhere else before rsync opens it. The check that decides runs as
/// root after the swap and sees it.
#[test]
fn rsyncsend_root_helper_checks_again_after_a_swap() {
    let b = RsyncSendBench::new(false, false);
    let sub = b.share.join("sub");
    fs::create_dir(&sub).unwrap();
    let out = run_with_swap(
        &b,
        &sub,
        &format!("rsync --server --sender -l . {}/", sub.display().to_string().replace(' ', "\\ ")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("rsyncsend: refused: ") && err.contains("outside the shares"), "{err}");
}

/// The same race on a restore: the destination swapped for a symlink to
/// /etc after the forced command's check.
#[test]
fn rsyncsend_root_helper_checks_the_restore_destination_again_after_a_swap() {
    let b = RsyncSendBench::new(true, false);
    let dest = b.share.join("dest");
    fs::create_dir(&dest).unwrap();
    let cmd = format!("rsync --server -lr . {}/dest", b.share.display().to_string().replace(' ', "\\ "));
    let out = run_with_swap(&b, &dest, &cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside the shares"), "{err}");
}

#[test]
fn rsyncsend_passes_a_new_restore_folder_to_the_root_helper() {
    let b = RsyncSendBench::new(true, false);
    let share = b.share.display().to_string();
    let out = b.run(&format!("rsync --server -lr . {}/new", share.replace(' ', "\\ ")), b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(b.executed().unwrap().last().unwrap(), &format!("{share}/new"), "created by the root helper");
}

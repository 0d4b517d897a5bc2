//! The rsync invocations `rsyncsend` lets a backup server run, as one
//! allow-list. `SSH_ORIGINAL_COMMAND` (and, with `-s`, the protected
//! argument list read from stdin) is parsed into an [`RsyncInvocation`];
//! the argv that is exec'd is rebuilt from that value, never from the
//! client's string. Paths are confined to the shares by whole components
//! after symlinks are resolved.
//!
//! Split by concern: `options` (the option table), `command` (parsing the
//! command line and rebuilding argv), `protected` (the `-s` argument list
//! read from stdin), `confine` (paths against the shares). The allow-list
//! does no I/O of its own except through the [`Resolve`] trait and the
//! reader it is handed; what it decides is a plain value.

use std::path::PathBuf;

mod command;
mod confine;
mod options;
mod protected;

pub use command::{escape_word, is_protocol_tail, parse_command, parse_words, split_words, MAX_COMMAND};
pub use confine::{confine, Pin, RealFs, Resolve, UnprivilegedFs};
pub use protected::{read_protected_args, StdinWithDeadline, MAX_PROTECTED_ARGS, MAX_PROTECTED_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The server pulls: a backup.
    Sender,
    /// The server pushes: a restore.
    Receiver,
}

/// What the client's config allows.
#[derive(Debug, Clone)]
pub struct RsyncPolicy {
    /// Canonical share paths.
    pub shares: Vec<PathBuf>,
    pub restore: bool,
    pub delete: bool,
    /// The one literal rsync path accepted in place of `rsync`.
    pub rsync_path: String,
    /// Paths a restore may never write into (nor into a parent of).
    pub protected: Vec<PathBuf>,
    /// Allow link-following options (`-L -k -K --copy-links …`).
    pub follow_links: bool,
    /// Allow `--iconv=CHARSETS`.
    pub iconv: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// A value from the client, made printable for a message.
fn short(s: &str) -> String {
    crate::names::printable(s)
}

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncInvocation {
    pub direction: Direction,
    /// Short option letters, without `s` and without the `e` tail.
    pub short: String,
    /// The `e<ver>.<caps>` protocol tail, when given.
    pub caps: Option<String>,
    /// Long options, each `--name` or `--name=value`, as accepted.
    pub long: Vec<String>,
    /// Confined paths, canonical, as rsync will get them.
    pub paths: Vec<String>,
}

/// A parsed command line whose options continue on stdin (`-s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsProtectedArgs {
    direction: Direction,
    short: String,
    caps: Option<String>,
    long: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `true`: a connectivity check.
    Check,
    Ready(RsyncInvocation),
    NeedsProtectedArgs(NeedsProtectedArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// A filesystem of symlinks: anything not listed resolves to itself
    /// if it is under a listed existing root.
    struct FakeFs {
        links: HashMap<&'static str, &'static str>,
        exists: Vec<&'static str>,
    }

    impl Resolve for FakeFs {
        fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
            let s = p.to_string_lossy();
            for (from, to) in &self.links {
                if let Some(rest) = s.strip_prefix(from) {
                    if rest.is_empty() || rest.starts_with('/') {
                        return self.canonicalize(Path::new(&format!("{to}{rest}")));
                    }
                }
            }
            if self.exists.iter().any(|e| *e == s) {
                Ok(p.to_path_buf())
            } else {
                Err(io::ErrorKind::NotFound.into())
            }
        }
    }

    fn fs() -> FakeFs {
        FakeFs {
            links: HashMap::from([("/home/jd/escape", "/etc/shadow"), ("/home/jd/inner", "/home/jd/docs")]),
            exists: vec![
                "/",
                "/home",
                "/home/jd",
                "/home/jd/docs",
                "/home/a b",
                "/etc",
                "/etc/shadow",
                "/srv",
                "/var/lib/bk/.ssh",
                "/var/lib/bk",
                "/var/lib",
            ],
        }
    }

    fn policy(restore: bool, delete: bool) -> RsyncPolicy {
        RsyncPolicy {
            shares: vec!["/home".into(), "/srv".into()],
            restore,
            delete,
            rsync_path: "/usr/bin/rsync".into(),
            protected: vec!["/var/lib/bk/.ssh".into(), "/home/jd/docs".into()],
            follow_links: false,
            iconv: false,
        }
    }

    fn parse(cmd: &str, p: &RsyncPolicy) -> Result<Parsed, Refusal> {
        parse_command(cmd, p, &fs())
    }

    #[test]
    fn backuppc_strings_pass() {
        let p = policy(true, true);
        for (cmd, dir) in [
            ("rsync --server --sender -slHogDtprcxe.iLsfxC", Direction::Sender),
            ("rsync --server --sender -slHogDtprxe.iLsfxC", Direction::Sender),
            ("rsync --server -slHogDtprRe.iLsfxC", Direction::Receiver),
            ("/usr/bin/rsync --server --sender -slHogDtprcxe.iLsfxCIvu", Direction::Sender),
        ] {
            match parse(cmd, &p).unwrap() {
                Parsed::NeedsProtectedArgs(n) => assert_eq!(n.direction, dir, "{cmd}"),
                other => panic!("{cmd}: {other:?}"),
            }
        }
    }

    #[test]
    fn protected_args_complete() {
        let p = policy(false, false);
        let Parsed::NeedsProtectedArgs(n) = parse("rsync --server --sender -slHogDtprcxe.iLsfxC", &p).unwrap() else {
            panic!()
        };
        let args: Vec<String> = ["rsync", "--numeric-ids", "--log-format=log: %o %i", ".", "/home/a b/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let inv = n.complete(&args, &p, &fs()).unwrap();
        assert_eq!(
            inv.argv("/usr/bin/sudo", "/usr/bin/rsync"),
            [
                "/usr/bin/sudo",
                "-n",
                "--",
                "/usr/bin/rsync",
                "--server",
                "--sender",
                "-lHogDtprcxe.iLsfxC",
                "--numeric-ids",
                "--log-format=log: %o %i",
                "--",
                ".",
                "/home/a b/"
            ]
        );
    }

    #[test]
    fn plain_command_line() {
        let p = policy(false, false);
        let Parsed::Ready(inv) =
            parse("rsync --server --sender -lHogDtprxe.iLsfxCIvu --numeric-ids . /home/a\\ b /home/jd/inner", &p)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(inv.paths, ["/home/a b", "/home/jd/docs"], "escape removed, symlink resolved");
        assert_eq!(parse("true", &p).unwrap(), Parsed::Check);
    }

    #[test]
    fn refusals() {
        let no = policy(false, false);
        let yes = policy(true, true);
        let rows: &[(&str, &RsyncPolicy, &str)] = &[
            ("", &no, "empty"),
            ("sh -c id", &no, "not rsync"),
            ("rsync --sender --server -l . /home", &no, "--sender before --server"),
            ("rsync --server -l . /home", &no, "receiver without restore"),
            ("rsync --server --sender -le./bin/sh . /home", &no, "-e tail with a path"),
            ("rsync --server --sender -le sh . /home", &no, "-e with a command"),
            ("rsync --server --sender --rsh=sh . /home", &no, "--rsh"),
            ("rsync --server --sender --daemon --config=/tmp/x . /home", &no, "daemon"),
            ("rsync --server --sender --log-file=/etc/x . /home", &no, "log file"),
            ("rsync --server --sender -L . /home", &no, "copy links"),
            ("rsync --server --sender --copy-links . /home", &no, "copy links long"),
            ("rsync --server --sender --debug=ALL . /home", &no, "debug"),
            ("rsync --server --sender --iconv=utf8 . /home", &no, "iconv"),
            ("rsync --server --sender --remove-source-files . /home", &no, "remove source"),
            ("rsync --server --sender --copy-devices . /home", &no, "copy devices"),
            ("rsync --server --sender --no-such-option . /home", &no, "unknown long option"),
            ("rsync --server --sender -Z . /home", &no, "unknown short option"),
            ("rsync --server --sender -l . /etc", &no, "outside shares"),
            ("rsync --server --sender -l . /", &no, "root"),
            ("rsync --server --sender -l . /home/../etc", &no, "dot-dot"),
            ("rsync --server --sender -l . /home/jd/escape", &no, "symlink out"),
            ("rsync --server --sender -l . /homeother", &no, "prefix but not a component"),
            ("rsync --server --sender -l . home", &no, "relative"),
            ("rsync --server --sender -l .", &no, "no path"),
            ("rsync --server --sender -l /home", &no, "no dot"),
            ("rsync --server --sender -l . /home;id", &no, "semicolon"),
            ("rsync --server --sender -l . /home$(id)", &no, "command substitution"),
            ("rsync --server --sender -l . /home`id`", &no, "backticks"),
            ("rsync --server --sender -l . '/home'", &no, "quotes"),
            ("rsync --server --sender -l . /home\n", &no, "newline"),
            ("rsync --server --sender -l . /home|id", &no, "pipe"),
            ("rsync --server --sender -l . /home>x", &no, "redirection"),
            ("rsync --server --sender -l . /home/*", &no, "unescaped glob"),
            ("rsync --server --sender -l -- -- . /home", &no, "-- twice"),
            ("rsync --server --sender -- -l . /home", &no, "-- followed by options"),
            ("rsync --server --sender --sender -l . /home", &no, "--sender twice"),
            ("rsync --server --sender -l -s . /home", &no, "-s not first"),
            ("rsync --server --sender -sl . /home", &no, "-s with paths on the line"),
            ("rsync --server --sender -sl --numeric-ids", &no, "-s with long options on the line"),
            ("rsync --server --sender --delete . /home", &no, "delete without delete = true"),
            ("rsync --server --sender --delay-updates . /home", &yes, "receiver-only option on sender"),
            ("rsync --server -l . /home /srv", &yes, "two restore targets"),
            ("rsync --server -l . /var/lib/bk/.ssh", &yes, "restore into .ssh"),
            ("rsync --server -l . /home/jd", &yes, "restore above a protected path"),
            ("rsync --server -l --partial-dir=/etc . /srv", &yes, "absolute partial dir"),
            ("rsync --server --sender --files-from=/etc/shadow . /home", &no, "files-from a file"),
            ("rsync --server --sender --timeout=abc . /home", &no, "non-numeric number"),
            ("rsync --server --sender -l . /home\\", &no, "trailing backslash"),
            ("/bin/rsync --server --sender -l . /home", &no, "other rsync path"),
            // Options whose value is the next word.
            ("rsync --server -l --partial-dir /etc . /srv", &yes, "separate value: absolute partial dir"),
            ("rsync --server -l --partial-dir . /srv", &yes, "separate value is the '.' marker"),
            ("rsync --server -l --partial-dir . . /srv", &yes, "'.' as value, then the marker"),
            ("rsync --server -l . /home --partial-dir", &yes, "option after the marker is a path"),
            ("rsync --server -l --partial-dir", &yes, "--partial-dir is the last word"),
            ("rsync --server -l --partial-dir=.. . /srv", &yes, "partial dir .."),
            ("rsync --server -l --partial-dir .. . /srv", &yes, "separate partial dir .."),
            ("rsync --server -l --partial-dir a/b . /srv", &yes, "partial dir with a slash"),
            ("rsync --server -l --partial-dir ../../etc . /srv", &yes, "partial dir climbing out"),
            ("rsync --server -l --partial-dir --delete . /srv", &yes, "value word is an option"),
            ("rsync --server -l --partial-dir -- . /srv", &yes, "value word is --"),
            ("rsync --server -l --partial-dir=/abs . /srv", &yes, "partial dir absolute with ="),
            ("rsync --server -l --partial-dir= . /srv", &yes, "partial dir empty"),
            ("rsync --server --sender -l --partial-dir pd . /srv", &yes, "partial dir on a backup"),
            ("rsync --server --sender -l --timeout /etc/shadow . /home", &no, "value word is a path, not a number"),
            ("rsync --server --sender -l --log-format /etc . /etc", &no, "path as value, path outside the shares"),
            ("rsync --server --sender -l --numeric-ids /etc . /home", &no, "option without value takes no word"),
            ("rsync --server --sender -l --backup-dir /tmp . /home", &no, "denied option in two words"),
            ("rsync --server --sender -l --temp-dir /tmp . /home", &no, "temp dir in two words"),
            ("rsync --server --sender -l --files-from /etc/shadow . /home", &no, "files-from in two words"),
            ("rsync --server --sender -l --compare-dest /etc . /home", &no, "reference folder in two words"),
            ("rsync --server --sender -l --rsh sh . /home", &no, "rsh in two words"),
            ("rsync --server --sender -l --iconv utf8 . /home", &no, "iconv in two words, not configured"),
            // -B / --block-size.
            ("rsync --server --sender -l -Bx . /home", &no, "block size not a number"),
            ("rsync --server --sender -l -B-1 . /home", &no, "negative block size"),
            ("rsync --server --sender -l -B . /home", &no, "-B followed by the marker"),
            ("rsync --server --sender -l -B", &no, "-B last word"),
            ("rsync --server --sender -lB2048 . /home", &no, "-B inside a cluster"),
            ("rsync --server --sender -B2048e.iLsfxC . /home", &no, "-B glued to the protocol tail"),
            ("rsync --server --sender --block-size=1k . /home", &no, "block size with a suffix"),
            ("rsync --server --sender -sB2048", &no, "-B with -s on the line"),
            // Devices.
            ("rsync --server --sender --copy-devices . /home", &no, "copy devices"),
            ("rsync --server --write-devices . /srv", &yes, "write devices"),
            ("rsync --server --sender --specials=x . /home", &no, "specials takes no value"),
            ("rsync --server --sender --max-delete=-1 . /home", &no, "max-delete without delete = true"),
            ("rsync --server --max-delete=--1 . /srv", &yes, "max-delete double minus"),
            ("rsync --server --sender --fsync . /home", &yes, "fsync on a backup"),
            ("rsync --server --sender --max-alloc=2G;id . /home", &no, "max-alloc not a word"),
            ("rsync --server --sender --no-r=1 . /home", &no, "no-r takes no value"),
        ];
        for (cmd, p, why) in rows {
            let got = parse(cmd, p);
            assert!(got.is_err(), "{why}: {cmd:?} was accepted: {got:?}");
        }
        assert!(
            parse(&format!("rsync --server --sender -l . /home/{}", "a".repeat(MAX_COMMAND)), &no).is_err(),
            "over-long"
        );
    }

    /// What rsync 3.x's client sends to the server for options that take a
    /// value or that a backup may use, as seen on its remote-shell argv.
    #[test]
    fn rsync_client_option_forms_pass() {
        let yes = policy(true, true);
        let rows: &[(&str, &[&str], &str)] = &[
            ("rsync --server -logDtpre.iLsfxCIvu --partial-dir pd . /srv", &["--partial-dir=pd"], "partial dir"),
            (
                "rsync --server -logDtpre.iLsfxCIvu --partial-dir pd --delay-updates . /srv",
                &["--partial-dir=pd", "--delay-updates"],
                "partial dir and delay updates",
            ),
            ("rsync --server -l --partial-dir=.rsync-partial . /srv", &["--partial-dir=.rsync-partial"], "with ="),
            ("rsync --server -l --partial-dir a\\ b . /srv", &["--partial-dir=a b"], "escaped space"),
            ("rsync --server --sender -logDtpre.iLsfxCIvu --inplace . /srv", &["--inplace"], "inplace backup"),
            ("rsync --server --sender -logDtpre.iLsfxCIvu --append . /srv", &["--append"], "append backup"),
            (
                "rsync --server --sender -logDtpre.iLsfxCIvu --append --append . /srv",
                &["--append", "--append"],
                "append-verify backup",
            ),
            ("rsync --server --sender --append-verify . /srv", &["--append-verify"], "append-verify spelled out"),
            ("rsync --server -logDtprSe.iLsfxCIvu --inplace --no-W . /srv", &["--inplace", "--no-W"], "restore"),
            ("rsync --server --sender -logDtpre.iLsfxCIvu -B2048 . /srv", &["--block-size=2048"], "-B<size>"),
            ("rsync --server --sender -l -B 4096 . /srv", &["--block-size=4096"], "-B <size>"),
            ("rsync --server --sender --block-size=512 . /srv", &["--block-size=512"], "--block-size="),
            ("rsync --server --sender --block-size 512 . /srv", &["--block-size=512"], "--block-size <size>"),
            ("rsync --server --sender -logDtpre.iLsfxCIvu --no-specials . /srv", &["--no-specials"], "devices only"),
            ("rsync --server --sender -logtpre.iLsfxCIvu --specials . /srv", &["--specials"], "specials only"),
            (
                "rsync --server --sender --devices --no-devices --no-D . /srv",
                &["--devices", "--no-devices", "--no-D"],
                "D",
            ),
            ("rsync --server -l --max-delete=-1 . /srv", &["--max-delete=-1"], "--max-delete=0 as the client sends it"),
            ("rsync --server --sender --timeout 600 . /srv", &["--timeout=600"], "number in two words"),
            ("rsync --server --sender -l --new-compress . /srv", &["--new-compress"], "-zz"),
            ("rsync --server --sender -lz --old-compress . /srv", &["--old-compress"], "--compress-choice=zlib"),
            ("rsync --server --sender --msgs2stderr . /srv", &["--msgs2stderr"], "--msgs2stderr"),
            ("rsync --server --sender --no-msgs2stderr . /srv", &["--no-msgs2stderr"], "--no-msgs2stderr"),
            ("rsync --server --sender --max-alloc=2G . /srv", &["--max-alloc=2G"], "--max-alloc"),
            ("rsync --server -ld --no-r --delete . /srv", &["--no-r", "--delete"], "-d --delete"),
            ("rsync --server -l --fsync . /srv", &["--fsync"], "--fsync on a restore"),
            ("rsync --server --sender --log-format %i . /srv", &["--log-format=%i"], "text in two words"),
            ("rsync --server --sender --log-format /etc . /srv", &["--log-format=/etc"], "a value, not a path"),
        ];
        for (cmd, want, why) in rows {
            match parse(cmd, &yes) {
                Ok(Parsed::Ready(inv)) => {
                    assert_eq!(inv.long, *want, "{why}: {cmd}");
                    assert_eq!(inv.paths, ["/srv"], "{why}: {cmd}");
                    let line = inv.to_command_line();
                    assert_eq!(parse(&line, &yes), Ok(Parsed::Ready(inv)), "{why}: rebuilt {line}");
                }
                other => panic!("{why}: {cmd}: {other:?}"),
            }
        }
        let Parsed::NeedsProtectedArgs(n) = parse("rsync --server -slogDtpre.iLsfxCIvu", &yes).unwrap() else {
            panic!()
        };
        let prows: &[(&[&str], &[&str], &str)] = &[
            (
                &["rsync", "--partial-dir", "pd", "--delay-updates", ".", "/srv"],
                &["--partial-dir=pd", "--delay-updates"],
                "partial dir on stdin",
            ),
            (&["rsync", "--partial-dir", "a b", ".", "/srv"], &["--partial-dir=a b"], "space, unescaped on stdin"),
            (&["rsync", "--append", "--append", ".", "/srv"], &["--append", "--append"], "append-verify"),
            (&["rsync", "-B2048", ".", "/srv"], &["--block-size=2048"], "block size"),
            (&["rsync", "--specials", ".", "/srv"], &["--specials"], "specials"),
        ];
        for (args, want, why) in prows {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let inv = n.clone().complete(&args, &yes, &fs()).unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(inv.long, *want, "{why}");
            assert_eq!(inv.paths, ["/srv"], "{why}");
        }
    }

    #[test]
    fn links_and_iconv_only_when_configured() {
        let off = policy(false, false);
        let mut on = off.clone();
        on.follow_links = true;
        on.iconv = true;
        for cmd in [
            "rsync --server --sender -lL . /home",
            "rsync --server --sender --copy-links . /home",
            "rsync --server --sender --iconv=utf8,latin1 . /home",
        ] {
            assert!(parse(cmd, &off).is_err(), "off: {cmd}");
            assert!(matches!(parse(cmd, &on), Ok(Parsed::Ready(_))), "on: {cmd}");
        }
        assert!(parse("rsync --server --sender --iconv=a;b . /home", &on).is_err(), "iconv charset is a word");
        assert!(parse("rsync --server --sender --iconv . /home", &on).is_err(), "iconv needs a value");
        let Ok(Parsed::Ready(inv)) = parse("rsync --server --sender --iconv utf8 . /home", &on) else {
            panic!("iconv value in the next word")
        };
        assert_eq!(inv.long, ["--iconv=utf8"]);
        assert!(parse("rsync --server --sender --iconv a/b . /home", &on).is_err(), "iconv word checked");
        assert!(parse("rsync --server --sender --copy-links=x . /home", &on).is_err(), "no value");
    }

    #[test]
    fn protected_args_refusals() {
        let p = policy(false, false);
        let Parsed::NeedsProtectedArgs(n) = parse("rsync --server --sender -slre.iLsfxC", &p).unwrap() else {
            panic!()
        };
        let rows: &[(&[&str], &str)] = &[
            (&["sh", ".", "/home"], "first element not rsync"),
            (&["rsync", "--rsh=sh", ".", "/home"], "rsh in protected args"),
            (&["rsync", "-e", "sh", ".", "/home"], "-e in protected args"),
            (&["rsync", "."], "no path"),
            (&["rsync", "/home"], "no dot"),
            (&["rsync", ".", "/etc/shadow"], "outside shares"),
            (&["rsync", "--server", ".", "/home"], "--server again"),
            (&["rsync", "-s", ".", "/home"], "-s again"),
            (&["rsync", "--log-format=a\nb", ".", "/home"], "control character"),
            (&["rsync", "--log-format", "a\nb", ".", "/home"], "control character in a value word"),
            (&["rsync", "--log-format", "\u{1b}[2J", ".", "/home"], "escape sequence in a value word"),
            (&["rsync", "--timeout", ".", "/home"], "value word is the marker"),
            (&["rsync", "--partial-dir", ".", ".", "/home"], "'.' as value then the marker"),
            (&["rsync", "--partial-dir"], "value missing at the end"),
            (&["rsync", "--partial-dir", "/etc", ".", "/home"], "absolute partial dir"),
            (&["rsync", "--partial-dir", "..", ".", "/home"], "partial dir .."),
            (&["rsync", "--partial-dir", "pd\n", ".", "/home"], "partial dir with a newline"),
            (&["rsync", "--timeout", "/etc/shadow", ".", "/home"], "path as a number"),
            (&["rsync", "--backup-dir", "/tmp", ".", "/home"], "backup dir"),
            (&["rsync", "-B", ".", "/home"], "-B then the marker"),
        ];
        for (args, why) in rows {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            assert!(n.clone().complete(&args, &p, &fs()).is_err(), "{why}");
        }
    }

    #[test]
    fn reads_protected_args_without_overreading() {
        let mut data: &[u8] = b"rsync\0--numeric-ids\0.\0/home/a b\0\0PROTOCOL";
        let args = read_protected_args(&mut data, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(args, ["rsync", "--numeric-ids", ".", "/home/a b"]);
        assert_eq!(data, b"PROTOCOL", "protocol bytes left unread");
        let mut short: &[u8] = b"rsync\0.";
        assert!(read_protected_args(&mut short, Instant::now() + Duration::from_secs(5)).is_err(), "EOF inside");
        let big = vec![b'a'; MAX_PROTECTED_BYTES + 1];
        assert!(read_protected_args(&mut big.as_slice(), Instant::now() + Duration::from_secs(5)).is_err(), "too big");
        let many = "a\0".repeat(MAX_PROTECTED_ARGS + 2);
        assert!(
            read_protected_args(&mut many.as_bytes(), Instant::now() + Duration::from_secs(5)).is_err(),
            "too many"
        );
    }

    #[test]
    fn pin_plans() {
        let inv = |p: &str| RsyncInvocation {
            direction: Direction::Sender,
            short: "l".into(),
            caps: None,
            long: vec![],
            paths: vec![p.into()],
        };
        let rows: &[(&str, &str, &str, &str)] = &[
            ("/home/jd/", "/home/jd", "./", "contents of a folder: pin it"),
            ("/home/jd", "/home", "jd", "a folder by name: pin its parent"),
            ("/home/jd/./docs/a b", "/home/jd", "./docs/a b", "rsync's /./ marker"),
            ("/home/./jd/", "/home", "./jd/", "marker with trailing slash"),
            ("/home", "/", "home", "a share by name"),
            ("/", "/", "./", "root"),
        ];
        for (path, dir, arg, why) in rows {
            let pin = inv(path).pin().unwrap();
            assert_eq!((pin.dir.to_str().unwrap(), pin.arg.as_str()), (*dir, *arg), "{why}");
        }
        let mut two = inv("/home/a");
        two.paths.push("/home/b".into());
        assert_eq!(two.pin(), None, "several paths stay absolute");
    }

    #[test]
    fn words_as_the_root_helper_gets_them() {
        let p = policy(true, false);
        let w = |ws: &[&str]| ws.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let inv = parse_words(
            &w(&[
                "/usr/bin/rsync",
                "--server",
                "--sender",
                "-lHogDtprcxe.iLsfxC",
                "--numeric-ids",
                "--",
                ".",
                "/home/a b/",
            ]),
            &p,
            &fs(),
        )
        .unwrap();
        assert_eq!(inv.paths, ["/home/a b/"], "a space is a plain character in a word");
        assert_eq!(parse_words(&inv.words("/usr/bin/rsync"), &p, &fs()), Ok(inv.clone()), "words round trip");
        let rows: &[(&[&str], &str)] = &[
            (&["rsync", "--server", "--sender", "-sl"], "-s: protected arguments come as words"),
            (&["true"], "a check is not an invocation"),
            (&[], "nothing"),
            (&["sh", "-c", "id"], "not rsync"),
            (&["rsync", "--server", "--sender", "-l", "--", ".", "/etc/"], "outside the shares"),
            (&["rsync", "--server", "--sender", "-l", "--", ".", "/home/jd/escape"], "symlink out"),
            (&["rsync", "--server", "--sender", "-l", "--", ".", "/home/x\ny"], "newline"),
            (&["rsync", "--server", "--sender", "-l", "--", ".", "/home/jd", "/home/\u{1b}"], "control character"),
            (&["rsync", "--server", "--sender", "--rsh=sh", "--", ".", "/home/"], "rsh"),
            (&["rsync", "--server", "-l", "--", ".", "/var/lib/bk/.ssh"], "restore into .ssh"),
        ];
        for (words, why) in rows {
            let words = w(words);
            assert!(parse_words(&words, &p, &fs()).is_err(), "{why}: {words:?}");
        }
        let many = vec!["-l".to_string(); 20_000];
        assert!(parse_words(&many, &p, &fs()).is_err(), "too many words");
    }

    #[test]
    fn only_a_missing_path_is_not_there_yet() {
        /// /home/locked cannot be entered (EACCES), as a 0700 home is
        /// for another account.
        struct Locked;
        impl Resolve for Locked {
            fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
                match p.to_str().unwrap() {
                    "/" | "/home" => Ok(p.to_path_buf()),
                    s if s.starts_with("/home/locked") && s != "/home/locked" => {
                        Err(io::ErrorKind::PermissionDenied.into())
                    }
                    _ => Err(io::ErrorKind::NotFound.into()),
                }
            }
        }
        let p = policy(false, false);
        assert!(
            parse_command("rsync --server --sender -l . /home/./locked/x/", &p, &Locked).is_err(),
            "EACCES is a refusal, not 'not created yet'"
        );
        assert!(
            matches!(parse_command("rsync --server --sender -l . /home/new/", &p, &Locked), Ok(Parsed::Ready(_))),
            "ENOENT: not created yet"
        );
    }

    #[test]
    fn protocol_tail() {
        for (t, ok) in [
            ("e.iLsfxC", true),
            ("e31.2iLsfxCIvu", true),
            ("e.", true),
            ("e", false),
            ("e.i-", false),
            ("esh", false),
            ("e.1a2", false),
        ] {
            assert_eq!(is_protocol_tail(t), ok, "{t}");
        }
    }
}

/// A filesystem table shared by the property tests here and the fuzz
/// targets (cargo-fuzz builds with `--cfg fuzzing`): everything under
/// /home exists and resolves to itself, except /home/link, a symlink that
/// leads to /etc.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fixture {
    use super::{Resolve, RsyncPolicy};
    use std::io;
    use std::path::{Path, PathBuf};

    pub struct Table;

    impl Resolve for Table {
        fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
            let s = p.to_string_lossy();
            if let Some(rest) = s.strip_prefix("/home/link") {
                return Ok(PathBuf::from(format!("/etc{rest}")));
            }
            if s == "/" || s == "/home" || s.starts_with("/home/") || s == "/etc" || s.starts_with("/etc/") {
                Ok(p.to_path_buf())
            } else {
                Err(io::ErrorKind::NotFound.into())
            }
        }
    }

    /// The share /home, restores allowed, the backup user's .ssh protected.
    pub fn policy(delete: bool) -> RsyncPolicy {
        RsyncPolicy {
            shares: vec!["/home".into()],
            restore: true,
            delete,
            rsync_path: "/usr/bin/rsync".into(),
            protected: vec!["/home/bk/.ssh".into()],
            follow_links: false,
            iconv: false,
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;
    use std::time::Duration;

    use super::fixture::Table;

    fn policy() -> RsyncPolicy {
        super::fixture::policy(false)
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("rsync".to_string()),
            Just("--server".to_string()),
            Just("--sender".to_string()),
            Just("-slHogDtprcxe.iLsfxC".to_string()),
            Just("-lHogDtprxe.iLsfxC".to_string()),
            Just("-e".to_string()),
            Just("sh".to_string()),
            Just("-L".to_string()),
            Just("--delete".to_string()),
            Just("--numeric-ids".to_string()),
            Just("--log-format=%i".to_string()),
            Just("--timeout=72000".to_string()),
            Just("--rsh=sh".to_string()),
            Just("--partial-dir".to_string()),
            Just("pd".to_string()),
            Just("--timeout".to_string()),
            Just("-B".to_string()),
            Just("-B2048".to_string()),
            Just("--append".to_string()),
            Just("--no-specials".to_string()),
            Just("--".to_string()),
            Just(".".to_string()),
            Just("/home".to_string()),
            Just("/home/jd/".to_string()),
            Just("/home/./jd".to_string()),
            Just("/home/link/x".to_string()),
            Just("/etc".to_string()),
            Just("/home/../etc".to_string()),
            Just("/home/a\\ b".to_string()),
            Just(";".to_string()),
            Just("$(id)".to_string()),
            "[ -~]{0,12}",
        ]
    }

    fn command() -> impl Strategy<Value = String> {
        prop::collection::vec(word(), 0..10).prop_map(|w| w.join(" "))
    }

    #[test]
    fn round_trip_examples() {
        for cmd in [
            "rsync --server --sender -lHogDtprxe.iLsfxC --numeric-ids . /home/a\\ b",
            "rsync --server --sender --timeout=72000 -- . /home/./jd/",
            "rsync --server -lHogDtprRe.iLsfxC --log-format=%i . /home/jd",
            "rsync --server -lHogDtprRe.iLsfxC --partial-dir pd --delay-updates . /home/jd",
            "rsync --server --sender -lHogDtprxe.iLsfxC -B2048 --append --append . /home/jd",
        ] {
            let Ok(Parsed::Ready(inv)) = parse_command(cmd, &policy(), &Table) else { panic!("{cmd}") };
            let line = inv.to_command_line();
            assert_eq!(parse_command(&line, &policy(), &Table), Ok(Parsed::Ready(inv)), "{line}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_any_text(cmd in any::<String>()) {
            let _ = parse_command(&cmd, &policy(), &Table);
        }

        #[test]
        fn accepted_commands_stay_inside_and_round_trip(tail in command(), sender in any::<bool>()) {
            let head = if sender { "rsync --server --sender" } else { "rsync --server" };
            let cmd = format!("{head} {tail}");
            if let Ok(Parsed::Ready(inv)) = parse_command(&cmd, &policy(), &Table) {
                for p in &inv.paths {
                    prop_assert!(Path::new(p.split("/./").next().unwrap()).starts_with("/home"), "{p} escaped the share");
                    prop_assert!(!p.contains("/../"));
                }
                let again = parse_command(&inv.to_command_line(), &policy(), &Table);
                prop_assert_eq!(again, Ok(Parsed::Ready(inv.clone())), "rebuilt {:?}", inv.to_command_line());
            }
        }

        #[test]
        fn accepted_words_stay_inside_and_round_trip(tail in prop::collection::vec(word(), 0..10), sender in any::<bool>()) {
            let mut words: Vec<String> = vec!["rsync".into(), "--server".into()];
            if sender {
                words.push("--sender".into());
            }
            words.extend(tail);
            if let Ok(inv) = parse_words(&words, &policy(), &Table) {
                for p in &inv.paths {
                    prop_assert!(Path::new(p.split("/./").next().unwrap()).starts_with("/home"), "{p} escaped the share");
                }
                let again = parse_words(&inv.words("/usr/bin/rsync"), &policy(), &Table);
                prop_assert_eq!(again, Ok(inv.clone()), "rebuilt {:?}", inv.words("/usr/bin/rsync"));
            }
        }

        #[test]
        fn protected_args_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut input = bytes.as_slice();
            if let Ok(args) = read_protected_args(&mut input, std::time::Instant::now() + Duration::from_secs(5)) {
                let Ok(Parsed::NeedsProtectedArgs(n)) = parse_command("rsync --server --sender -slre.iLsfxC", &policy(), &Table) else {
                    unreachable!()
                };
                if let Ok(inv) = n.complete(&args, &policy(), &Table) {
                    for p in &inv.paths {
                        prop_assert!(Path::new(p.split("/./").next().unwrap()).starts_with("/home"));
                    }
                }
            }
        }
    }
}

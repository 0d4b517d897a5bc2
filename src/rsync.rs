//! The rsync invocations `rsyncsend` lets a backup server run, as one
//! allow-list. `SSH_ORIGINAL_COMMAND` (and, with `-s`, the protected
//! argument list read from stdin) is parsed into an [`RsyncInvocation`];
//! the argv that is exec'd is rebuilt from that value, never from the
//! client's string. Paths are confined to the shares by whole components
//! after symlinks are resolved.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest `SSH_ORIGINAL_COMMAND` accepted.
pub const MAX_COMMAND: usize = 16 * 1024;
/// Bounds on the protected argument list read from stdin.
pub const MAX_PROTECTED_BYTES: usize = 64 * 1024;
pub const MAX_PROTECTED_ARGS: usize = 1024;

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

/// Short options rsync's client puts in the server's cluster, and whether
/// they are allowed. Refused letters carry their reason.
fn short_rule(c: char) -> Result<(), &'static str> {
    match c {
        'l' | 'H' | 'o' | 'g' | 'D' | 't' | 'p' | 'r' | 'c' | 'x' | 'R' | 'v' | 'z' | 'n' | 'I' | 'u' | 'W' | 'S'
        | 'O' | 'J' | 'A' | 'X' | 'd' | 'U' | 'N' | 'm' | 'y' | 'C' | 'E' | 'q' | 'h' | '8' | 'i' => Ok(()),
        'L' | 'k' | 'K' => Err("link-following options are not enabled on this client (follow_links = false)"),
        'e' => Err("-e is only allowed as the protocol tail e<ver>.<caps>"),
        'b' => Err("--backup is not allowed"),
        _ => Err("option is not on the allow-list"),
    }
}

#[derive(Clone, Copy)]
enum Arg {
    None,
    Number,
    /// Printable text without control characters.
    Text,
    /// A name like `xxh128,md5`.
    Word,
    /// A relative folder name without `/` or `..`.
    RelDir,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Receiver,
    Delete,
}

/// The long-option allow-list: name, argument, and what it needs.
const LONG: &[(&str, Arg, Needs)] = &[
    ("numeric-ids", Arg::None, Needs::Nothing),
    ("super", Arg::None, Needs::Nothing),
    ("fake-super", Arg::None, Needs::Nothing),
    ("partial", Arg::None, Needs::Nothing),
    ("partial-dir", Arg::RelDir, Needs::Receiver),
    ("log-format", Arg::Text, Needs::Nothing),
    ("out-format", Arg::Text, Needs::Nothing),
    ("stats", Arg::None, Needs::Nothing),
    ("timeout", Arg::Number, Needs::Nothing),
    ("bwlimit", Arg::Word, Needs::Nothing),
    ("max-size", Arg::Word, Needs::Nothing),
    ("min-size", Arg::Word, Needs::Nothing),
    ("modify-window", Arg::Number, Needs::Nothing),
    ("checksum-seed", Arg::Number, Needs::Nothing),
    ("compress-level", Arg::Number, Needs::Nothing),
    ("checksum-choice", Arg::Word, Needs::Nothing),
    ("compress-choice", Arg::Word, Needs::Nothing),
    ("protocol", Arg::Number, Needs::Nothing),
    ("inplace", Arg::None, Needs::Receiver),
    ("append", Arg::None, Needs::Receiver),
    ("append-verify", Arg::None, Needs::Receiver),
    ("delay-updates", Arg::None, Needs::Receiver),
    ("existing", Arg::None, Needs::Nothing),
    ("ignore-existing", Arg::None, Needs::Nothing),
    ("size-only", Arg::None, Needs::Nothing),
    ("ignore-times", Arg::None, Needs::Nothing),
    ("safe-links", Arg::None, Needs::Nothing),
    ("munge-links", Arg::None, Needs::Nothing),
    ("sparse", Arg::None, Needs::Nothing),
    ("preallocate", Arg::None, Needs::Receiver),
    ("no-implied-dirs", Arg::None, Needs::Nothing),
    ("omit-dir-times", Arg::None, Needs::Nothing),
    ("omit-link-times", Arg::None, Needs::Nothing),
    ("one-file-system", Arg::None, Needs::Nothing),
    ("open-noatime", Arg::None, Needs::Nothing),
    ("from0", Arg::None, Needs::Nothing),
    ("ignore-missing-args", Arg::None, Needs::Nothing),
    ("ignore-errors", Arg::None, Needs::Nothing),
    ("force", Arg::None, Needs::Receiver),
    ("delete", Arg::None, Needs::Delete),
    ("delete-before", Arg::None, Needs::Delete),
    ("delete-during", Arg::None, Needs::Delete),
    ("delete-delay", Arg::None, Needs::Delete),
    ("delete-after", Arg::None, Needs::Delete),
    ("delete-excluded", Arg::None, Needs::Delete),
    ("delete-missing-args", Arg::None, Needs::Delete),
    ("max-delete", Arg::Number, Needs::Delete),
];

/// Options refused with a specific reason (the rest of the unknown ones
/// get the generic "not on the allow-list").
const DENIED: &[(&str, &str)] = &[
    ("rsh", "a remote shell option would run a command"),
    ("rsync-path", "a program path would run a command"),
    ("daemon", "daemon mode is not allowed"),
    ("config", "daemon config files are not allowed"),
    ("dparam", "daemon parameters are not allowed"),
    ("log-file", "log files would write outside the shares"),
    ("log-file-format", "log files would write outside the shares"),
    ("write-batch", "batch files would write outside the shares"),
    ("only-write-batch", "batch files would write outside the shares"),
    ("read-batch", "batch files would read outside the shares"),
    ("copy-devices", "reading devices is not allowed"),
    ("write-devices", "writing devices is not allowed"),
    ("remove-source-files", "removing source files is not allowed"),
    ("remove-sent-files", "removing source files is not allowed"),
    ("debug", "debug output is not allowed"),
    ("files-from", "file lists are not allowed: their entries would be opened past the share check"),
    ("iconv", "--iconv is not enabled on this client (iconv = false)"),
    ("copy-links", "link-following options are not enabled on this client (follow_links = false)"),
    ("copy-dirlinks", "link-following options are not enabled on this client (follow_links = false)"),
    ("keep-dirlinks", "link-following options are not enabled on this client (follow_links = false)"),
    ("copy-unsafe-links", "link-following options are not enabled on this client (follow_links = false)"),
    ("backup", "--backup is not allowed"),
    ("backup-dir", "--backup-dir is not allowed"),
    ("temp-dir", "--temp-dir is not allowed"),
    ("compare-dest", "reference folders are not allowed"),
    ("copy-dest", "reference folders are not allowed"),
    ("link-dest", "reference folders are not allowed"),
];

/// Split a command line the way a POSIX shell would for the words rsync's
/// client sends: spaces separate, a backslash makes the next character
/// literal. Anything a shell would interpret (quotes, `$`, `;`, `|`,
/// redirections, globs, newlines) unescaped is refused.
pub fn split_words(cmd: &str) -> Result<Vec<String>, Refusal> {
    if cmd.len() > MAX_COMMAND {
        return refuse(format!("command is longer than {MAX_COMMAND} bytes"));
    }
    if cmd.chars().any(|c| c.is_control()) {
        return refuse("command has control characters");
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => return refuse("command ends with a backslash"),
            },
            c if c.is_ascii_alphanumeric() || "_./,:=+%@^-".contains(c) || !c.is_ascii() => {
                cur.push(c);
                in_word = true;
            }
            c => return refuse(format!("shell metacharacter {c:?} in command")),
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A word as a shell would need it: safe characters as they are, anything
/// else behind a backslash.
pub fn escape_word(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        if !(c.is_ascii_alphanumeric() || "_./,:=+%@^-".contains(c) || !c.is_ascii()) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parse `SSH_ORIGINAL_COMMAND`.
pub fn parse_command(cmd: &str, policy: &RsyncPolicy, fs: &dyn Resolve) -> Result<Parsed, Refusal> {
    let words = split_words(cmd)?;
    if words == ["true"] {
        return Ok(Parsed::Check);
    }
    let mut it = words.iter().map(String::as_str).peekable();
    match it.next() {
        Some("rsync") => {}
        Some(p) if p == policy.rsync_path => {}
        Some(_) | None => return refuse("only 'rsync --server …' may be run with this key"),
    }
    if it.next() != Some("--server") {
        return refuse("the second word must be --server");
    }
    let direction = if it.peek() == Some(&"--sender") {
        it.next();
        Direction::Sender
    } else {
        Direction::Receiver
    };
    if direction == Direction::Receiver && !policy.restore {
        return refuse("restores are not enabled on this client (restore = false)");
    }
    let mut st = State { direction, short: String::new(), caps: None, long: Vec::new(), protect: false };
    let rest: Vec<&str> = it.collect();
    let (opts, paths) = split_at_dot(&rest);
    for (i, w) in opts.iter().enumerate() {
        st.option(w, i == 0, paths.is_some() && i + 1 == opts.len(), policy)?;
    }
    if st.protect {
        if paths.is_some() {
            return refuse("with -s, paths must come on stdin");
        }
        if st.long.iter().any(|l| !l.starts_with("--iconv")) {
            // rsync's client puts only the cluster (and --iconv) before
            // the protected list; anything else here is not rsync.
            return refuse("with -s, only the short option cluster may be on the command line");
        }
        return Ok(Parsed::NeedsProtectedArgs(NeedsProtectedArgs {
            direction: st.direction,
            short: st.short,
            caps: st.caps,
            long: st.long,
        }));
    }
    let Some(paths) = paths else {
        return refuse("no '.' argument: not an rsync server command line");
    };
    Ok(Parsed::Ready(st.finish(paths, policy, fs)?))
}

impl NeedsProtectedArgs {
    /// Complete the invocation with the protected list (its first element
    /// `rsync` included).
    pub fn complete(self, args: &[String], policy: &RsyncPolicy, fs: &dyn Resolve) -> Result<RsyncInvocation, Refusal> {
        let mut it = args.iter().map(String::as_str);
        if it.next() != Some("rsync") {
            return refuse("protected arguments must start with 'rsync'");
        }
        let rest: Vec<&str> = it.collect();
        let (opts, paths) = split_at_dot(&rest);
        let mut st =
            State { direction: self.direction, short: self.short, caps: self.caps, long: self.long, protect: true };
        for (i, w) in opts.iter().enumerate() {
            if w.chars().any(|c| c.is_control()) {
                return refuse("protected argument has control characters");
            }
            st.option(w, false, paths.is_some() && i + 1 == opts.len(), policy)?;
        }
        let Some(paths) = paths else {
            return refuse("no '.' in the protected arguments");
        };
        st.finish(paths, policy, fs)
    }
}

fn split_at_dot<'a>(words: &'a [&'a str]) -> (&'a [&'a str], Option<&'a [&'a str]>) {
    match words.iter().position(|w| *w == ".") {
        Some(i) => (&words[..i], Some(&words[i + 1..])),
        None => (words, None),
    }
}

struct State {
    direction: Direction,
    short: String,
    caps: Option<String>,
    long: Vec<String>,
    protect: bool,
}

impl State {
    fn option(&mut self, w: &str, first: bool, last: bool, policy: &RsyncPolicy) -> Result<(), Refusal> {
        if w == "--sender" {
            return refuse("--sender is only allowed right after --server");
        }
        if w == "--server" {
            return refuse("--server may only appear once");
        }
        if w == "--" {
            // Only as the very last word before '.', where the rebuilt
            // argv puts it; rsync's own client never sends it.
            if !last {
                return refuse("'--' is only allowed right before '.'");
            }
            return Ok(());
        }
        if let Some(body) = w.strip_prefix("--") {
            return self.long_option(body, policy);
        }
        let Some(cluster) = w.strip_prefix('-') else {
            return refuse(format!("unexpected argument {:?} before '.'", short(w)));
        };
        if cluster.is_empty() {
            return refuse("empty option '-'");
        }
        let (letters, tail) = match cluster.find('e') {
            Some(i) => (&cluster[..i], Some(&cluster[i..])),
            None => (cluster, None),
        };
        if let Some(tail) = tail {
            if !is_protocol_tail(tail) {
                return refuse("-e is only allowed as the protocol tail e<ver>.<caps>");
            }
            if self.caps.is_some() {
                return refuse("the protocol tail may only be given once");
            }
            self.caps = Some(tail.to_string());
        }
        for c in letters.chars() {
            if c == 's' {
                if !first || self.protect {
                    return refuse("-s is only allowed in the first option cluster");
                }
                self.protect = true;
                continue;
            }
            let links_allowed = policy.follow_links && matches!(c, 'L' | 'k' | 'K');
            if !links_allowed {
                short_rule(c).map_err(|why| Refusal(format!("-{c}: {why}")))?;
            }
            if !self.short.contains(c) {
                self.short.push(c);
            }
        }
        Ok(())
    }

    fn long_option(&mut self, body: &str, policy: &RsyncPolicy) -> Result<(), Refusal> {
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let configured = match name {
            "copy-links" | "copy-dirlinks" | "keep-dirlinks" | "copy-unsafe-links" => policy.follow_links,
            "iconv" => policy.iconv,
            _ => false,
        };
        if configured {
            let ok = match (name, value) {
                ("iconv", Some(v)) => {
                    !v.is_empty()
                        && v.len() <= 64
                        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,:".contains(&b))
                }
                (_, None) => name != "iconv",
                _ => false,
            };
            if !ok {
                return refuse(format!("--{name}: argument is missing or not allowed"));
            }
            self.long.push(body.to_string());
            return Ok(());
        }
        if let Some((_, why)) = DENIED.iter().find(|(n, _)| *n == name) {
            return refuse(format!("--{name}: {why}"));
        }
        let Some(&(_, arg, needs)) = LONG.iter().find(|(n, _, _)| *n == name) else {
            return refuse(format!("--{}: option is not on the allow-list", short(name)));
        };
        match needs {
            Needs::Receiver if self.direction != Direction::Receiver => {
                return refuse(format!("--{name} is only allowed for restores"))
            }
            Needs::Delete if !policy.delete => {
                return refuse(format!("--{name}: delete options are not enabled on this client (delete = false)"))
            }
            _ => {}
        }
        let ok = match (arg, value) {
            (Arg::None, None) => true,
            (Arg::None, Some(_)) | (_, None) => false,
            (Arg::Number, Some(v)) => !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()),
            (Arg::Word, Some(v)) => {
                !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,+".contains(&b))
            }
            (Arg::Text, Some(v)) => v.len() <= 256 && !v.chars().any(|c| c.is_control()),
            (Arg::RelDir, Some(v)) => {
                !v.is_empty()
                    && v.len() <= 255
                    && !v.contains('/')
                    && v != ".."
                    && v != "."
                    && !v.chars().any(|c| c.is_control())
            }
        };
        if !ok {
            return refuse(format!("--{name}: argument is missing or not allowed"));
        }
        self.long.push(match value {
            Some(v) => format!("--{name}={v}"),
            None => format!("--{name}"),
        });
        Ok(())
    }

    fn finish(self, paths: &[&str], policy: &RsyncPolicy, fs: &dyn Resolve) -> Result<RsyncInvocation, Refusal> {
        if paths.is_empty() {
            return refuse("no path given");
        }
        if self.direction == Direction::Receiver && paths.len() != 1 {
            return refuse("a restore takes exactly one destination path");
        }
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let confined = confine(p, policy, fs)?;
            if self.direction == Direction::Receiver {
                if confined.contains("/./") {
                    return refuse("a restore destination may not use rsync's /./ marker");
                }
                let base = Path::new(&confined);
                if let Some(bad) = policy.protected.iter().find(|pr| pr.starts_with(base) || base.starts_with(pr)) {
                    return refuse(format!("a restore may not write into or above {}", bad.display()));
                }
            }
            out.push(confined);
        }
        Ok(RsyncInvocation {
            direction: self.direction,
            short: self.short,
            caps: self.caps,
            long: self.long,
            paths: out,
        })
    }
}

fn short(s: &str) -> String {
    crate::names::printable(s)
}

/// `e<digits>.<digits><letters>`: rsync's protocol capability tail.
pub fn is_protocol_tail(t: &str) -> bool {
    let Some(rest) = t.strip_prefix('e') else {
        return false;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix('.') else {
        return false;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.chars().all(|c| c.is_ascii_alphabetic())
}

/// How paths are resolved (the real filesystem, or a table in tests).
pub trait Resolve {
    /// `realpath(3)` of an existing path.
    fn canonicalize(&self, p: &Path) -> io::Result<PathBuf>;
}

pub struct RealFs;

impl Resolve for RealFs {
    fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(p)
    }
}

/// Resolve the longest existing ancestor, then append the rest (which,
/// not existing, has no symlink to follow).
fn resolve_loose(p: &Path, fs: &dyn Resolve) -> Option<PathBuf> {
    let mut existing = p.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = fs.canonicalize(&existing) {
            let mut out = real;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return Some(out);
        }
        let name = existing.file_name()?.to_os_string();
        tail.push(name);
        if !existing.pop() {
            return None;
        }
    }
}

/// Check that `raw` lies inside a share and return the path rsync gets:
/// symlinks of the existing part resolved, rsync's `/./` marker and a
/// trailing slash kept.
pub fn confine(raw: &str, policy: &RsyncPolicy, fs: &dyn Resolve) -> Result<String, Refusal> {
    if raw.is_empty() || raw.chars().any(|c| c.is_control()) {
        return refuse("empty path or control characters in a path");
    }
    if !raw.starts_with('/') {
        return refuse(format!("path {:?} is not absolute", short(raw)));
    }
    if Path::new(raw).components().any(|c| c == Component::ParentDir) {
        return refuse(format!("path {:?} has '..'", short(raw)));
    }
    let trailing = raw.len() > 1 && raw.ends_with('/');
    let (base, rel) = match raw.split_once("/./") {
        Some((b, r)) => (if b.is_empty() { "/" } else { b }, Some(r)),
        None => (raw, None),
    };
    let inside = |p: &Path| policy.shares.iter().any(|s| p.starts_with(s));
    let base_real = resolve_loose(Path::new(base), fs).ok_or_else(|| Refusal("path cannot be resolved".into()))?;
    if !inside(&base_real) {
        return refuse(format!("path {:?} is outside the shares", short(raw)));
    }
    let mut out = base_real.to_string_lossy().into_owned();
    if let Some(rel) = rel {
        let rel = rel.trim_matches('/');
        let full = resolve_loose(&base_real.join(rel), fs).ok_or_else(|| Refusal("path cannot be resolved".into()))?;
        if !inside(&full) {
            return refuse(format!("path {:?} leads outside the shares", short(raw)));
        }
        out = format!("{}/./{}", out.trim_end_matches('/'), rel);
    }
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

/// Where `rsyncsend` pins an invocation before exec: it opens `dir`,
/// checks that what it opened is still that canonical folder, makes it
/// the working directory, and gives rsync `arg`, relative to it. A folder
/// swapped for a symlink between the check and the exec cannot redirect
/// rsync: its working directory is the folder that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub dir: PathBuf,
    pub arg: String,
}

impl RsyncInvocation {
    /// The pin for a single-path invocation (BackupPC sends one share per
    /// rsync run); `None` for several paths, which keep absolute paths.
    pub fn pin(&self) -> Option<Pin> {
        let [path] = self.paths.as_slice() else {
            return None;
        };
        if self.direction == Direction::Receiver {
            // The receiver changes into its destination (following a
            // symlink there): pin the destination folder itself.
            let dir = if path == "/" { "/" } else { path.trim_end_matches('/') };
            return Some(Pin { dir: PathBuf::from(dir), arg: ".".into() });
        }
        if let Some((base, rel)) = path.split_once("/./") {
            return Some(Pin { dir: PathBuf::from(if base.is_empty() { "/" } else { base }), arg: format!("./{rel}") });
        }
        if path == "/" {
            return Some(Pin { dir: PathBuf::from("/"), arg: "./".into() });
        }
        let trailing = path.ends_with('/');
        let p = Path::new(path.trim_end_matches('/'));
        if trailing {
            return Some(Pin { dir: p.to_path_buf(), arg: "./".into() });
        }
        let parent = p.parent()?;
        let name = p.file_name()?.to_string_lossy().into_owned();
        Some(Pin { dir: parent.to_path_buf(), arg: name })
    }

    /// The invocation as an `SSH_ORIGINAL_COMMAND` that [`parse_command`]
    /// reads back into the same value: words escaped the way rsync's
    /// client escapes them (a backslash before anything a shell would
    /// interpret).
    pub fn to_command_line(&self) -> String {
        let argv = self.argv("sudo", "rsync");
        argv[3..].iter().map(|w| escape_word(w)).collect::<Vec<_>>().join(" ")
    }

    /// The invocation with its one path replaced by the pinned argument.
    pub fn pinned(&self, pin: &Pin) -> RsyncInvocation {
        RsyncInvocation { paths: vec![pin.arg.clone()], ..self.clone() }
    }

    /// The argv run through sudo: `sudo -n -- RSYNC --server … -- . PATHS`.
    pub fn argv(&self, sudo: &str, rsync: &str) -> Vec<String> {
        let mut v = vec![sudo.to_string(), "-n".into(), "--".into(), rsync.to_string(), "--server".into()];
        if self.direction == Direction::Sender {
            v.push("--sender".into());
        }
        let cluster = format!("{}{}", self.short, self.caps.as_deref().unwrap_or(""));
        if !cluster.is_empty() {
            v.push(format!("-{cluster}"));
        }
        v.extend(self.long.iter().cloned());
        v.push("--".into());
        v.push(".".into());
        v.extend(self.paths.iter().cloned());
        v
    }
}

/// Read rsync's protected argument list from `input` one byte at a time,
/// so nothing after its terminating empty string is consumed: those bytes
/// are the rsync protocol, left for the rsync that is exec'd.
pub fn read_protected_args(input: &mut dyn Read, deadline: Instant) -> Result<Vec<String>, Refusal> {
    let mut args = Vec::new();
    let mut cur = Vec::new();
    let mut total = 0usize;
    let mut byte = [0u8; 1];
    loop {
        if Instant::now() > deadline {
            return refuse("timed out reading the protected arguments");
        }
        match input.read(&mut byte) {
            Ok(0) => return refuse("stdin ended inside the protected arguments"),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                return refuse("timed out reading the protected arguments")
            }
            Err(e) => return refuse(format!("cannot read the protected arguments: {e}")),
        }
        total += 1;
        if total > MAX_PROTECTED_BYTES {
            return refuse(format!("protected arguments exceed {MAX_PROTECTED_BYTES} bytes"));
        }
        if byte[0] != 0 {
            cur.push(byte[0]);
            continue;
        }
        if cur.is_empty() {
            return Ok(args);
        }
        let s = String::from_utf8(std::mem::take(&mut cur))
            .map_err(|_| Refusal("protected argument is not UTF-8".into()))?;
        args.push(s);
        if args.len() > MAX_PROTECTED_ARGS {
            return refuse(format!("more than {MAX_PROTECTED_ARGS} protected arguments"));
        }
    }
}

/// Standard input with a read deadline (poll before each read).
pub struct StdinWithDeadline {
    pub deadline: Instant,
}

impl Read for StdinWithDeadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let ms = left.min(Duration::from_millis(i32::MAX as u64)).as_millis() as i32;
        let stdin = io::stdin();
        let fd = stdin.as_fd();
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO)).map_err(io::Error::from)?;
        if n == 0 {
            return Err(io::ErrorKind::TimedOut.into());
        }
        nix::unistd::read(fd, buf).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
            ("rsync --server --sender --inplace . /home", &yes, "receiver-only option on sender"),
            ("rsync --server -l . /home /srv", &yes, "two restore targets"),
            ("rsync --server -l . /var/lib/bk/.ssh", &yes, "restore into .ssh"),
            ("rsync --server -l . /home/jd", &yes, "restore above a protected path"),
            ("rsync --server -l --partial-dir=/etc . /home", &yes, "absolute partial dir"),
            ("rsync --server --sender --files-from=/etc/shadow . /home", &no, "files-from a file"),
            ("rsync --server --sender --timeout=abc . /home", &no, "non-numeric number"),
            ("rsync --server --sender -l . /home\\", &no, "trailing backslash"),
            ("/bin/rsync --server --sender -l . /home", &no, "other rsync path"),
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

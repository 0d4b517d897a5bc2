//! Parsing `SSH_ORIGINAL_COMMAND` (and the protected list that completes
//! it) into an [`RsyncInvocation`], and rebuilding the argv to exec from
//! that value.

use super::options::{short_rule, Arg, Needs, DENIED, LONG};
use super::protected::{MAX_PROTECTED_ARGS, MAX_PROTECTED_BYTES};
use super::{
    confine, refuse, short, Direction, NeedsProtectedArgs, Parsed, Refusal, Resolve, RsyncInvocation, RsyncPolicy,
};
use std::path::Path;

/// Longest `SSH_ORIGINAL_COMMAND` accepted.
pub const MAX_COMMAND: usize = 16 * 1024;

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
    parse_split(&words, policy, fs)
}

/// Parse an rsync server invocation given as separate words, as the root
/// helper gets them on its command line (`rsync --server … -- . PATHS`,
/// what [`RsyncInvocation::words`] rebuilds): the same rules as
/// [`parse_command`], with no shell splitting, and complete, since the
/// protected arguments of `-s` were already read and come as words.
pub fn parse_words(words: &[String], policy: &RsyncPolicy, fs: &dyn Resolve) -> Result<RsyncInvocation, Refusal> {
    if words.len() > MAX_WORDS || words.iter().map(|w| w.len() + 1).sum::<usize>() > MAX_COMMAND + MAX_PROTECTED_BYTES {
        return refuse("the rsync invocation is too long");
    }
    if words.iter().any(|w| w.chars().any(|c| c.is_control())) {
        return refuse("an rsync argument has control characters");
    }
    match parse_split(words, policy, fs)? {
        Parsed::Ready(inv) => Ok(inv),
        Parsed::NeedsProtectedArgs(_) => refuse("-s is not allowed here: the protected arguments come as words"),
        Parsed::Check => refuse("not an rsync server invocation"),
    }
}

/// Most words [`parse_words`] accepts: a command line's worth and the
/// protected list's.
const MAX_WORDS: usize = MAX_COMMAND / 2 + MAX_PROTECTED_ARGS + 1;

fn parse_split(words: &[String], policy: &RsyncPolicy, fs: &dyn Resolve) -> Result<Parsed, Refusal> {
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
    let paths = st.options(&rest, true, policy)?;
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
        let mut st =
            State { direction: self.direction, short: self.short, caps: self.caps, long: self.long, protect: true };
        let paths = st.options(&rest, false, policy)?;
        let Some(paths) = paths else {
            return refuse("no '.' in the protected arguments");
        };
        st.finish(paths, policy, fs)
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
    /// Walk the option words in order up to the standalone `.` and return
    /// the words after it (`None` when there is no `.`). An option that
    /// takes a value and has no `=` takes the next word, the way rsync's
    /// client sends `--partial-dir DIR` and popt reads it; that word is
    /// never the `.` that ends the options.
    fn options<'w>(
        &mut self,
        words: &'w [&'w str],
        first_is_cluster: bool,
        policy: &RsyncPolicy,
    ) -> Result<Option<&'w [&'w str]>, Refusal> {
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            if w == "." {
                return Ok(Some(&words[i + 1..]));
            }
            let next = words.get(i + 1).copied();
            if next.is_some_and(|n| n.chars().any(|c| c.is_control())) || w.chars().any(|c| c.is_control()) {
                return refuse("an option has control characters");
            }
            let took_next = self.option(w, next, first_is_cluster && i == 0, policy)?;
            i += if took_next { 2 } else { 1 };
        }
        Ok(None)
    }

    /// One option word; `next` is the word after it. Returns whether
    /// `next` was taken as this option's value.
    fn option(&mut self, w: &str, next: Option<&str>, first: bool, policy: &RsyncPolicy) -> Result<bool, Refusal> {
        if w == "--sender" {
            return refuse("--sender is only allowed right after --server");
        }
        if w == "--server" {
            return refuse("--server may only appear once");
        }
        if w == "--" {
            // Only as the very last word before '.', where the rebuilt
            // argv puts it; rsync's own client never sends it.
            if next != Some(".") {
                return refuse("'--' is only allowed right before '.'");
            }
            return Ok(false);
        }
        if let Some(body) = w.strip_prefix("--") {
            return match body.split_once('=') {
                Some((name, value)) => self.long_option(name, Some(value), policy).map(|()| false),
                None if takes_value(body, policy) => {
                    self.long_option(body, Some(separate_value(body, next)?), policy).map(|()| true)
                }
                None => self.long_option(body, None, policy).map(|()| false),
            };
        }
        let Some(cluster) = w.strip_prefix('-') else {
            return refuse(format!("unexpected argument {:?} before '.'", short(w)));
        };
        if cluster.is_empty() {
            return refuse("empty option '-'");
        }
        if let Some(size) = cluster.strip_prefix('B') {
            // rsync's client sends --block-size as its own word `-B<size>`.
            return if size.is_empty() {
                self.long_option("block-size", Some(separate_value("block-size", next)?), policy).map(|()| true)
            } else {
                self.long_option("block-size", Some(size), policy).map(|()| false)
            };
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
        Ok(false)
    }

    /// A long option `name` with its value (from `=` or the next word).
    fn long_option(&mut self, name: &str, value: Option<&str>, policy: &RsyncPolicy) -> Result<(), Refusal> {
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
            self.long.push(match value {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            });
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
        let number = |v: &str| !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
        let ok = match (arg, value) {
            (Arg::None, None) => true,
            (Arg::None, Some(_)) | (_, None) => false,
            (Arg::Number, Some(v)) => number(v),
            (Arg::Signed, Some(v)) => number(v.strip_prefix('-').unwrap_or(v)),
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

/// Whether `--name` without `=` takes the next word as its value.
fn takes_value(name: &str, policy: &RsyncPolicy) -> bool {
    if name == "iconv" {
        return policy.iconv;
    }
    LONG.iter().any(|(n, arg, _)| *n == name && !matches!(arg, Arg::None))
}

/// The word after an option that takes a value: there must be one, and it
/// may be neither the `.` that ends the options nor another option.
fn separate_value<'a>(name: &str, next: Option<&'a str>) -> Result<&'a str, Refusal> {
    match next {
        None => refuse(format!("--{name} needs a value and is the last word")),
        Some(".") => refuse(format!("--{name} is followed by '.': give its value as --{name}=VALUE")),
        Some(v) if v.starts_with('-') => {
            refuse(format!("--{name} is followed by the option {:?}: give its value as --{name}=VALUE", short(v)))
        }
        Some(v) => Ok(v),
    }
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

impl RsyncInvocation {
    /// The invocation as an `SSH_ORIGINAL_COMMAND` that [`parse_command`]
    /// reads back into the same value: words escaped the way rsync's
    /// client escapes them (a backslash before anything a shell would
    /// interpret).
    pub fn to_command_line(&self) -> String {
        let argv = self.argv("sudo", "rsync");
        argv[3..].iter().map(|w| escape_word(w)).collect::<Vec<_>>().join(" ")
    }

    /// The argv run through sudo: `sudo -n -- RSYNC --server … -- . PATHS`.
    pub fn argv(&self, sudo: &str, rsync: &str) -> Vec<String> {
        let mut v = vec![sudo.to_string(), "-n".into(), "--".into()];
        v.extend(self.words(rsync));
        v
    }

    /// The rsync words, `RSYNC --server … -- . PATHS`, that
    /// [`parse_words`] reads back into the same value.
    pub fn words(&self, rsync: &str) -> Vec<String> {
        let mut v = vec![rsync.to_string(), "--server".into()];
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

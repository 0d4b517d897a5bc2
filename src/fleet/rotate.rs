//! Key rotation (`forced-command fleet rotate-key`): the decisions both
//! sides make, without I/O.
//!
//! On the workstation, the server's restricted key may send
//! `rotate-key add ssh-ed25519 BASE64` (add a line for a new key, with the
//! options of this server's present line) and `rotate-key retire
//! ssh-ed25519 BASE64` (keep only that key's line among this server's
//! lines). [`command`] reads them from `SSH_ORIGINAL_COMMAND`, [`Request::parse`]
//! reads the same request again from the root helper's stdin; both accept
//! exactly one ed25519 public key in canonical base64 and nothing else.
//! [`add`] and [`retire`] compute the new `authorized_keys`: every other
//! line stays byte for byte, and no line they write can run a shell (the
//! options copied must hold `restrict` and `command=`).
//!
//! On the server, [`set_identities`] edits the `-i` keys of a per-host
//! config, and [`phase`] says where an interrupted rotation resumes.

use crate::ssh::authorized_keys::tag;
use base64::Engine;

/// The first word of every rotation command.
pub const VERB: &str = "rotate-key";

/// What rsyncsend says when its sudoers drop-in is older than rotation:
/// the server reports such a host as not offering it.
pub const NOT_ALLOWED: &str = "the sudoers drop-in does not allow the rotate-key helper yet";

/// The longest command or helper request read (a request is ~100 bytes).
pub const MAX_REQUEST: usize = 256;

/// At most this many lines of one server: the present key and one being
/// added (plus one left by a rotation whose pending key was lost). More
/// must be retired first, so a stolen key cannot grow the file.
pub const MAX_LINES: usize = 3;
/// What `add` says when this server has `MAX_LINES` lines already (the
/// server then retires the strays over its present key and asks again).
pub const TOO_MANY_LINES: &str = "key lines here, the most a rotation needs";

const ALGORITHM: &str = "ssh-ed25519";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RotateError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, RotateError> {
    Err(RotateError(why.into()))
}

/// An ed25519 public key: its wire blob is exactly the algorithm name and
/// 32 key bytes, its base64 the canonical (padded, no stray bits) one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519Key {
    base64: String,
}

impl Ed25519Key {
    pub fn parse(algorithm: &str, base64: &str) -> Result<Ed25519Key, RotateError> {
        if algorithm != ALGORITHM {
            return err(format!(
                "only an {ALGORITHM} key is accepted, not {}",
                crate::names::quoted(&algorithm.chars().take(40).collect::<String>())
            ));
        }
        if base64.len() != 68 {
            return err(format!("an {ALGORITHM} key is 68 base64 characters, this one {}", base64.len()));
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let blob = engine.decode(base64).map_err(|e| RotateError(format!("the key is not base64: {e}")))?;
        if engine.encode(&blob) != base64 {
            return err("the key's base64 is not in canonical form");
        }
        let mut want = Vec::with_capacity(51);
        want.extend_from_slice(&(ALGORITHM.len() as u32).to_be_bytes());
        want.extend_from_slice(ALGORITHM.as_bytes());
        want.extend_from_slice(&32u32.to_be_bytes());
        if blob.len() != want.len() + 32 || blob[..want.len()] != want[..] {
            return err(format!("the key data is not one {ALGORITHM} key of 32 bytes"));
        }
        Ok(Ed25519Key { base64: base64.to_string() })
    }

    /// From a key line of OpenSSH (`ssh-ed25519 BASE64 [comment]`).
    pub fn from_openssh(line: &str) -> Result<Ed25519Key, RotateError> {
        let mut words = line.split_whitespace();
        Ed25519Key::parse(words.next().unwrap_or_default(), words.next().unwrap_or_default())
    }

    pub fn base64(&self) -> &str {
        &self.base64
    }

    /// `ssh-ed25519 BASE64`.
    pub fn openssh(&self) -> String {
        format!("{ALGORITHM} {}", self.base64)
    }

    /// `SHA256:…`, as ssh prints it.
    pub fn fingerprint(&self) -> String {
        ssh_key::PublicKey::from_openssh(&self.openssh())
            .map(|k| crate::names::fingerprint(&k))
            .unwrap_or_else(|_| "an unreadable key".into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Add a line for the key (nothing when it has one).
    Add,
    /// Keep only the key's line among this server's lines.
    Retire,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Retire => "retire",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    pub key: Ed25519Key,
}

impl Request {
    /// `add ssh-ed25519 BASE64` or `retire ssh-ed25519 BASE64`: single
    /// spaces, nothing before or after (the helper's stdin may end with
    /// one newline).
    pub fn parse(text: &str) -> Result<Request, RotateError> {
        if text.len() > MAX_REQUEST {
            return err(format!("the request is {} bytes, more than the {MAX_REQUEST} a key needs", text.len()));
        }
        if let Some(b) = text.bytes().find(|b| !(0x21..0x7f).contains(b) && *b != b' ') {
            return err(format!("the request has the character {:?}, which no key has", b as char));
        }
        let words: Vec<&str> = text.split(' ').collect();
        let action = match words.first() {
            Some(&"add") => Action::Add,
            Some(&"retire") => Action::Retire,
            _ => return err(format!("{VERB} takes `add` or `retire`, then one {ALGORITHM} key")),
        };
        let [_, algorithm, base64] = words[..] else {
            return err(format!(
                "{VERB} {} takes exactly one {ALGORITHM} key (`{ALGORITHM} BASE64`, no options, no comment)",
                action.as_str()
            ));
        };
        Ok(Request { action, key: Ed25519Key::parse(algorithm, base64)? })
    }

    /// What the front end writes on the helper's stdin.
    pub fn line(&self) -> String {
        format!("{} {}\n", self.action.as_str(), self.key.openssh())
    }

    /// The SSH command the server sends.
    pub fn command(&self) -> String {
        format!("{VERB} {} {}", self.action.as_str(), self.key.openssh())
    }
}

/// For an SSH command of the `rotate-key` family: the request, or why it
/// is refused. `None`: not a rotation command.
pub fn command(cmd: &str) -> Option<Result<Request, RotateError>> {
    let first = cmd.trim_start().split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).next()?;
    if !first.eq_ignore_ascii_case(VERB) && !first.eq_ignore_ascii_case("rotate_key") {
        return None;
    }
    Some(match cmd.strip_prefix("rotate-key ") {
        Some(rest) => Request::parse(rest),
        None => err(format!("`{VERB} add|retire {ALGORITHM} BASE64`, exactly, is accepted")),
    })
}

/// The new `authorized_keys`, or `None` when it stays as it is.
pub type Edit = Option<String>;

/// A line's options (before the key) and the rest, or `None` when it has
/// no options. Quotes are honoured as sshd reads them.
fn split_options(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    if line.starts_with(ALGORITHM) || line.starts_with("ssh-") || line.starts_with("ecdsa-") || line.starts_with("sk-")
    {
        return None;
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Some((&line[..i], line[i..].trim_start())),
            _ => {}
        }
    }
    None
}

/// The option names of an options field (`restrict`, `command`, …).
fn option_names(options: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut current = String::new();
    let mut in_value = false;
    for c in options.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                names.push(std::mem::take(&mut current).to_ascii_lowercase());
                in_value = false;
            }
            '=' if !quoted => in_value = true,
            _ if !in_value => current.push(c),
            _ => {}
        }
    }
    names.push(current.to_ascii_lowercase());
    names
}

/// Whether a line with these options can only run its forced command:
/// `restrict` and `command=`, and nothing that lifts a restriction again.
fn only_forced_command(options: &str) -> Result<(), RotateError> {
    let names = option_names(options);
    if names.first().map(String::as_str) != Some("restrict") || !names.iter().any(|n| n == "command") {
        return err("this server's line does not start with `restrict` and name a `command=`: it is not the toolkit's; run enroll again");
    }
    if let Some(n) =
        names.iter().find(|n| !matches!(n.as_str(), "restrict" | "command" | "from") && !n.starts_with("no-"))
    {
        return err(format!(
            "this server's line has the option {}, which the toolkit never writes: it is not copied; run enroll again",
            crate::names::quoted(n)
        ));
    }
    Ok(())
}

/// The key of a line (after its options), if it is an ed25519 one.
fn key_of(rest: &str) -> Option<&str> {
    let mut words = rest.split_whitespace();
    (words.next() == Some(ALGORITHM)).then(|| words.next()).flatten()
}

fn is_servers(line: &str, suffix: &str) -> bool {
    line.trim_end().ends_with(suffix)
}

/// `existing` with a line for `key` added after this server's lines, with
/// the options of its first line (restrict, command=, from=). Nothing when
/// this server already has a line for the key.
pub fn add(existing: &str, server: &str, key: &Ed25519Key) -> Result<Edit, RotateError> {
    let suffix = format!(" {}", tag(server));
    let ours: Vec<&str> = existing.lines().filter(|l| is_servers(l, &suffix)).collect();
    let Some(first) = ours.first() else {
        return err(format!(
            "there is no key line of {server} to take its options from: enroll this workstation first"
        ));
    };
    if ours.iter().any(|l| split_options(l).and_then(|(_, rest)| key_of(rest)) == Some(key.base64())) {
        return Ok(None);
    }
    for l in existing.lines().filter(|l| !is_servers(l, &suffix) && !l.trim_start().starts_with('#')) {
        if l.split_whitespace().any(|w| w == key.base64()) {
            return err("the new key is already on another line of authorized_keys (given to someone else): nothing was changed");
        }
    }
    if ours.len() >= MAX_LINES {
        return err(format!("{server} already has {} {TOO_MANY_LINES}: retire the old ones first", ours.len()));
    }
    let (options, _) = split_options(first).ok_or_else(|| {
        RotateError(format!("the key line of {server} has no options: it is not the toolkit's; run enroll again"))
    })?;
    only_forced_command(options)?;
    let new_line = format!("{options} {} {}\n", key.openssh(), tag(server));
    // After this server's last line, so the order of other lines is kept.
    let mut out = String::with_capacity(existing.len() + new_line.len() + 1);
    let last =
        existing.split_inclusive('\n').enumerate().filter(|(_, l)| is_servers(l, &suffix)).map(|(i, _)| i).last();
    for (i, l) in existing.split_inclusive('\n').enumerate() {
        out.push_str(l);
        if Some(i) == last {
            if !l.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&new_line);
        }
    }
    Ok(Some(out))
}

/// `existing` with only the first line of `key` left among this server's
/// lines. Refused when the key has no line: that would leave the server
/// without a key.
pub fn retire(existing: &str, server: &str, key: &Ed25519Key) -> Result<Edit, RotateError> {
    let suffix = format!(" {}", tag(server));
    let mut kept = false;
    let mut out = String::with_capacity(existing.len());
    for l in existing.split_inclusive('\n') {
        if !is_servers(l, &suffix) {
            out.push_str(l);
            continue;
        }
        let mine = split_options(l).filter(|(o, _)| only_forced_command(o).is_ok()).and_then(|(_, rest)| key_of(rest))
            == Some(key.base64());
        if mine && !kept {
            kept = true;
            out.push_str(l);
        }
    }
    if !kept {
        return err(format!(
            "{server} has no line for the key {} here: nothing was retired (add it first)",
            key.fingerprint()
        ));
    }
    Ok((out != existing).then_some(out))
}

/// Where a rotation of a host stands on the server, from its current key
/// and the pending one (`HOST.key.next`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No rotation under way: make a pending key.
    Start,
    /// A pending key not in use yet: add it, prove it, switch to it.
    Switch,
    /// The server uses the pending key: retire the other lines, then drop
    /// the previous key.
    Retire,
}

pub fn phase(current: &str, pending: Option<&str>) -> Phase {
    match pending {
        None => Phase::Start,
        Some(p) if p == current => Phase::Retire,
        Some(_) => Phase::Switch,
    }
}

/// `pl` with the `-i` keys of its ssh commands (`RsyncSshArgs`, and
/// `DumpPreUserCmd` when set) changed from `from` to `to`, every other
/// byte kept (ClientNameAlias, schedules, what the web interface saved).
/// Refused unless each command names `from` exactly as the toolkit writes
/// it (` -i KEY` after one another).
pub fn set_identities(pl: &str, from: &[String], to: &[String]) -> Result<String, String> {
    // With the space after the last key: `-i /k/h.key` is not a prefix of
    // `-i /k/h.key.prev`.
    let words = |keys: &[String]| keys.iter().map(|k| format!(" -i {k}")).collect::<String>() + " ";
    let (old, new) = (words(from), words(to));
    let mut out = pl.to_string();
    for name in ["RsyncSshArgs", "DumpPreUserCmd"] {
        let Some(stmt) = crate::backuppc::perhost::setting_text(&out, name).map_err(|e| e.to_string())? else {
            if name == "RsyncSshArgs" {
                return Err("it has no $Conf{RsyncSshArgs}".into());
            }
            continue;
        };
        let start = stmt.as_ptr() as usize - out.as_ptr() as usize;
        let end = start + stmt.len();
        // Every key it names, none left out.
        if from.is_empty() || stmt.matches(&old).count() != 1 || stmt.matches(" -i ").count() != from.len() {
            return Err(format!("its $Conf{{{name}}} does not name the keys{}once, as the toolkit writes it", old));
        }
        let replaced = stmt.replacen(&old, &new, 1);
        out.replace_range(start..end, &replaced);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";
    const B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJCa2C8gerPWjNJTOEsSFkgItNQmRNPf/GDPKR0Hl2rX";
    const C: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICsy9S7c4zyPvysN1kOmdL5H8V5jZkrKyCUA2VAZ5fpu";
    const RSA: &str = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7";
    const OPTS: &str = "restrict,from=\"10.0.0.1\",command=\"/usr/lib/backuppc-enroll/rsyncsend --config /etc/backuppc-enroll/client.toml\"";

    fn key(b64: &str) -> Ed25519Key {
        Ed25519Key::parse("ssh-ed25519", b64).unwrap()
    }

    fn line(b64: &str, server: &str) -> String {
        format!("{OPTS} ssh-ed25519 {b64} backuppc-enroll@{server}\n")
    }

    #[test]
    fn requests_table() {
        let rows: Vec<(String, bool, &str)> = vec![
            (format!("add ssh-ed25519 {A}"), true, "the request"),
            (format!("retire ssh-ed25519 {A}"), true, "the finishing verb"),
            (format!("add ssh-ed25519 {A}\n"), false, "a newline (the helper strips one first)"),
            (format!("add ssh-ed25519 {A} comment"), false, "a comment"),
            (format!("add ssh-ed25519 {A} ssh-ed25519 {B}"), false, "a second key"),
            (format!("add ssh-ed25519 {A}\nssh-ed25519 {B}"), false, "a second key on a second line"),
            (format!("add  ssh-ed25519 {A}"), false, "two spaces"),
            (format!(" add ssh-ed25519 {A}"), false, "a leading space"),
            (format!("add\tssh-ed25519 {A}"), false, "a tab"),
            (format!("add ssh-rsa {RSA}"), false, "an RSA key"),
            (format!("add ecdsa-sha2-nistp256 {A}"), false, "another algorithm name"),
            (format!("add SSH-ED25519 {A}"), false, "upper case"),
            (format!("add command=\"sh\" ssh-ed25519 {A}"), false, "options smuggled before the key"),
            (format!("add restrict,command=\"/bin/sh\",ssh-ed25519 {A}"), false, "options glued to the key"),
            (format!("add ssh-ed25519 {A},command=\"sh\""), false, "options after the key"),
            (format!("add ssh-ed25519 {}", &A[..64]), false, "a short key"),
            (format!("add ssh-ed25519 {A}AAAA"), false, "a long key"),
            (format!("add ssh-ed25519 {}==", &A[..66]), false, "padded: a blob one byte short"),
            (format!("add ssh-ed25519 {}=", &A[..67]), false, "padding where none belongs"),
            (format!("add ssh-ed25519 {}", A.replace('C', "*")), false, "not base64"),
            (format!("add ssh-ed25519 {}", "A".repeat(68)), false, "a blob that is no ed25519 key"),
            ("add ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIQ".into(), false, "a truncated blob"),
            (format!("add ssh-ed25519 {}", "A".repeat(4096)), false, "a huge line"),
            (format!("add ssh-ed25519 {}é", &A[..67]), false, "non-ASCII"),
            (format!("add ssh-ed25519 {}\0", &A[..67]), false, "a NUL"),
            (format!("delete ssh-ed25519 {A}"), false, "an unknown verb"),
            ("add".into(), false, "no key"),
            ("".into(), false, "nothing"),
        ];
        for (text, ok, why) in rows {
            assert_eq!(Request::parse(&text).is_ok(), ok, "{why}: {text:?} → {:?}", Request::parse(&text));
        }
        let r = Request::parse(&format!("add ssh-ed25519 {A}")).unwrap();
        assert_eq!(Request::parse(r.line().trim_end_matches('\n')).unwrap(), r, "the helper's line reads back");
    }

    #[test]
    fn commands_table() {
        let rows: Vec<(String, Option<bool>, &str)> = vec![
            (format!("rotate-key add ssh-ed25519 {A}"), Some(true), "the command"),
            (format!("rotate-key retire ssh-ed25519 {B}"), Some(true), "the finishing verb"),
            (format!("rotate-key add ssh-ed25519 {A}; sh"), Some(false), "shell syntax"),
            (format!("rotate-key  add ssh-ed25519 {A}"), Some(false), "two spaces"),
            ("rotate-key".into(), Some(false), "no arguments"),
            (format!("ROTATE-KEY add ssh-ed25519 {A}"), Some(false), "a spelling that is refused, not run as rsync"),
            (format!("rotate_key add ssh-ed25519 {A}"), Some(false), "underscore"),
            ("rsync --server --sender . /home".into(), None, "not ours"),
            ("rotate-keys".into(), None, "another word"),
            ("true".into(), None, "the check"),
        ];
        for (cmd, want, why) in rows {
            assert_eq!(command(&cmd).map(|r| r.is_ok()), want, "{why}: {cmd:?}");
        }
    }

    #[test]
    fn add_copies_the_options_and_keeps_every_other_line() {
        let other = "ssh-ed25519 AAAAother admin@laptop\n# a comment\n";
        let walrus = line(C, "walrus");
        let existing = format!("{other}{}{walrus}", line(A, "dugong"));
        let out = add(&existing, "dugong", &key(B)).unwrap().unwrap();
        assert_eq!(out, format!("{other}{}{}{walrus}", line(A, "dugong"), line(B, "dugong")));
        assert_eq!(add(&out, "dugong", &key(B)).unwrap(), None, "idempotent");
        assert_eq!(add(&out, "dugong", &key(A)).unwrap(), None, "the present key");
        // Without a final newline, and without from=.
        let bare = format!("restrict,command=\"/x --config /c\" ssh-ed25519 {A} backuppc-enroll@dugong");
        assert_eq!(
            add(&bare, "dugong", &key(B)).unwrap().unwrap(),
            format!("{bare}\nrestrict,command=\"/x --config /c\" ssh-ed25519 {B} backuppc-enroll@dugong\n")
        );
    }

    #[test]
    fn add_refuses() {
        let rows: Vec<(String, &str, &str)> = vec![
            ("".into(), "no key line", "not enrolled"),
            (line(A, "walrus"), "no key line", "another server's line only"),
            (format!("ssh-ed25519 {A} backuppc-enroll@dugong\n"), "no options", "a line that could run a shell"),
            (
                format!("command=\"/x\" ssh-ed25519 {A} backuppc-enroll@dugong\n"),
                "restrict",
                "no restrict: a pty and forwarding would be allowed",
            ),
            (format!("restrict ssh-ed25519 {A} backuppc-enroll@dugong\n"), "restrict", "no forced command"),
            (
                format!("restrict,pty,command=\"/x\" ssh-ed25519 {A} backuppc-enroll@dugong\n"),
                "pty",
                "an option lifting a restriction",
            ),
            (
                format!("{}{}ssh-ed25519 {B} admin@laptop\n", line(A, "dugong"), line(C, "dugong")),
                "someone else",
                "the key is someone else's",
            ),
            (
                format!("{}{}{}", line(A, "dugong"), line(C, "dugong"), line(&A.replace('q', "a"), "dugong")),
                "retire",
                "too many lines",
            ),
        ];
        for (existing, part, why) in rows {
            match add(&existing, "dugong", &key(B)) {
                Err(e) => assert!(e.0.contains(part), "{why}: {e}"),
                Ok(got) => panic!("{why}: accepted: {got:?}"),
            }
        }
    }

    #[test]
    fn retire_keeps_one_line() {
        let other = "ssh-ed25519 AAAAother admin@laptop\n";
        let walrus = line(C, "walrus");
        let existing = format!("{}{other}{}{walrus}{}", line(A, "dugong"), line(B, "dugong"), line(B, "dugong"));
        let out = retire(&existing, "dugong", &key(B)).unwrap().unwrap();
        assert_eq!(out, format!("{other}{}{walrus}", line(B, "dugong")));
        assert_eq!(retire(&out, "dugong", &key(B)).unwrap(), None, "idempotent");
        assert!(retire(&out, "dugong", &key(A)).is_err(), "a key without a line: nothing removed");
        assert!(retire(&walrus, "dugong", &key(C)).is_err(), "another server's key is not this one's");
        let shell = format!("ssh-ed25519 {B} backuppc-enroll@dugong\n");
        assert!(retire(&shell, "dugong", &key(B)).is_err(), "a line without restrictions is not kept");
    }

    #[test]
    fn phases() {
        assert_eq!(phase("a", None), Phase::Start);
        assert_eq!(phase("a", Some("b")), Phase::Switch);
        assert_eq!(phase("b", Some("b")), Phase::Retire);
    }

    #[test]
    fn identities_change_in_both_commands_only() {
        let pl = "# head\n$Conf{RsyncSshArgs} = ['-e', '$sshPath -l u -p 22 -i /k/h.key -o HostKeyAlias=h'];\n\
                  $Conf{ClientNameAlias} = ['10.0.0.9'];\n\
                  $Conf{DumpPreUserCmd} = '$sshPath -l u -p 22 -i /k/h.key -o HostKeyAlias=h $hostIP run-dumps';\n";
        let k = |s: &str| vec![s.to_string()];
        let two = vec!["/k/h.key".to_string(), "/k/h.key.prev".to_string()];
        let out = set_identities(pl, &k("/k/h.key"), &two).unwrap();
        assert_eq!(out, pl.replace("-i /k/h.key ", "-i /k/h.key -i /k/h.key.prev "));
        assert_eq!(set_identities(&out, &two, &k("/k/h.key")).unwrap(), pl, "and back");
        assert!(set_identities(pl, &k("/other"), &two).is_err(), "keys it does not name");
        assert!(set_identities("$Conf{XferMethod} = 'rsync';\n", &k("/k"), &two).is_err(), "no ssh command");
        let without_dumps = "$Conf{RsyncSshArgs} = ['-e', '$sshPath -i /k/h.key -o X=y'];\n";
        assert!(set_identities(without_dumps, &k("/k/h.key"), &two)
            .unwrap()
            .contains("-i /k/h.key -i /k/h.key.prev -o"));
        assert!(set_identities(&out, &k("/k/h.key"), &two).is_err(), "not every key it names");
    }
}

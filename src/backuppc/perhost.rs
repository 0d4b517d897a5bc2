//! BackupPC's per-host config `$ConfDir/pc/HOST.pl`. Written as one
//! single-line, single-quoted `$Conf{X} = …;` statement per key and no
//! trailing comments, so BackupPC's CGI can re-read and rewrite it without
//! mangling it. Every value is validated before it gets here; Perl quoting
//! is still applied to each.
//!
//! The toolkit owns only the settings that say how the host is reached and
//! trusted ([`OWNED`]). Re-enrolling a host replaces those in place and
//! keeps every other byte of the file: what the host's user saved in the
//! web interface (excludes, schedules, …) survives a re-enrollment.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerHostConfig {
    pub host: String,
    pub logon: String,
    /// Account on the client the server logs into.
    pub client_user: String,
    pub client_port: u16,
    /// Private key of this host on the server.
    pub key_path: String,
    /// The host's key before a re-enrollment, still accepted until the
    /// workstation says it installed the new one (`-i` tried second).
    pub previous_key_path: Option<String>,
    /// known_hosts file holding this host's pinned keys.
    pub known_hosts: String,
    pub rsync_client_path: String,
    pub shares: Vec<String>,
    /// The workstation's rsyncsend serves `run-dumps` (it said so in its
    /// hello): only then is the dumps trigger set, since an older one
    /// would refuse it and fail every backup.
    pub dumps: bool,
}

/// A Perl single-quoted string literal: only `\` and `'` are special.
pub fn perl_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// BackupPC 4.4's default `RsyncRestoreArgs` without `--delete`: a
/// client's `rsyncsend` refuses delete options unless it allows them
/// (`delete = true`), and a restore that merges is the safe default.
pub const RESTORE_ARGS: &[&str] = &[
    "--recursive",
    "--super",
    "--protect-args",
    "--numeric-ids",
    "--perms",
    "--owner",
    "--group",
    "-D",
    "--times",
    "--links",
    "--hard-links",
    "--partial",
    "--log-format=log: %o %i %B %8U,%8G %9l %f%L",
    "--stats",
];

fn perl_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| perl_quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

impl PerHostConfig {
    /// The `-e` value of `RsyncSshArgs`. BackupPC substitutes `$sshPath`;
    /// rsync splits the rest on spaces, so no part may contain one (the
    /// key path and names are validated to have none). `ServerAliveInterval`
    /// ends a backup of a client that died within minutes instead of
    /// BackupPC's `ClientTimeout`. With a previous key, ssh offers the
    /// current key first and the previous one second (IdentitiesOnly keeps
    /// it to these two), so whichever the workstation has installed works.
    pub fn ssh_command(&self) -> String {
        let previous = self.previous_key_path.as_ref().map(|p| format!(" -i {p}")).unwrap_or_default();
        format!(
            "$sshPath -l {} -p {} -i {}{previous} -o HostKeyAlias={} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ServerAliveInterval=60",
            self.client_user, self.client_port, self.key_path, self.host, self.known_hosts
        )
    }

    /// The settings the toolkit owns, in the order a new file has them.
    fn owned(&self) -> Vec<(&'static str, String)> {
        let restore: Vec<String> = RESTORE_ARGS.iter().map(|s| s.to_string()).collect();
        let mut owned = vec![
            ("XferMethod", "'rsync'".into()),
            ("RsyncClientPath", perl_quote(&self.rsync_client_path)),
            ("RsyncSshArgs", perl_list(&["-e".into(), self.ssh_command()])),
        ];
        if self.dumps {
            owned.push(("DumpPreUserCmd", perl_quote(&self.dump_command())));
            owned.push(("UserCmdCheckStatus", "1".into()));
        }
        owned.push(("RsyncRestoreArgs", perl_list(&restore)));
        owned
    }

    /// `DumpPreUserCmd`: the host's restricted key sending the one fixed
    /// word `run-dumps`, so the workstation takes the dumps it declared
    /// before any file is copied. BackupPC splits it on spaces and
    /// substitutes `$sshPath` and `$hostIP` (the address rsync uses too);
    /// with `UserCmdCheckStatus` a failed dump fails the backup, and its
    /// output (the dump's name and reason) lands in the XferLOG.
    pub fn dump_command(&self) -> String {
        format!("{} $hostIP {}", self.ssh_command(), crate::dumps::TRIGGER)
    }

    /// Settings written when the file has none of their own: the host's
    /// user may narrow them in the web interface, and rsyncsend confines
    /// every path to the client's own shares whatever they say.
    fn defaults(&self) -> Vec<(&'static str, String)> {
        vec![("RsyncShareName", perl_list(&self.shares))]
    }

    /// A new per-host config file.
    pub fn render(&self, stamp: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Written by backuppc-enroll for host {} (logon {}), {stamp}.", self.host, self.logon);
        let _ = writeln!(
            out,
            "# Re-enrolling the host rewrites only {}; every other setting is kept.",
            OWNED.iter().map(|n| format!("$Conf{{{n}}}")).collect::<Vec<_>>().join(", ")
        );
        let mut settings = self.owned();
        settings.insert(3, self.defaults().remove(0));
        for (name, value) in settings {
            let _ = writeln!(out, "$Conf{{{name}}} = {value};");
        }
        out
    }

    /// `existing` (the host's current file, as BackupPC's CGI may have
    /// saved it) with the owned settings replaced in place, any second
    /// occurrence of one and any [`REMOVED`] setting dropped, missing ones
    /// appended, and every other byte kept.
    pub fn update(&self, existing: &str) -> Result<String, PerlError> {
        let owned = self.owned();
        let defaults = self.defaults();
        let pieces = pieces(existing)?;
        let mut seen: Vec<&str> = Vec::new();
        let mut out = String::with_capacity(existing.len() + 512);
        for piece in &pieces {
            match *piece {
                Piece::Other(text) => out.push_str(text),
                Piece::Setting { name, text } => {
                    if REMOVED.contains(&name) {
                        continue;
                    }
                    if let Some((_, value)) = owned.iter().find(|(n, _)| *n == name) {
                        if !seen.contains(&name) {
                            let _ = writeln!(out, "$Conf{{{name}}} = {value};");
                        }
                    } else if OWNED.contains(&name) {
                        // The toolkit's, not wanted now (the dumps trigger
                        // of a workstation that no longer serves it).
                    } else {
                        out.push_str(text);
                    }
                    seen.push(name);
                }
            }
        }
        for (name, value) in owned.iter().chain(defaults.iter()) {
            if !seen.contains(name) {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                let _ = writeln!(out, "$Conf{{{name}}} = {value};");
            }
        }
        Ok(out)
    }
}

/// The text of the `$Conf{NAME} = …;` statement of a per-host config
/// that Perl keeps (the last one), from `$Conf` to its `;`, if the file
/// has one. What reads how BackupPC reaches a host (`forced-command
/// fleet`) starts from this.
pub fn setting_text<'a>(text: &'a str, name: &str) -> Result<Option<&'a str>, PerlError> {
    let found = pieces(text)?.into_iter().rev().find_map(|p| match p {
        Piece::Setting { name: n, text } if n == name => Some(text),
        _ => None,
    });
    Ok(found.map(|t| {
        let start = t.find("$Conf{").unwrap_or(0);
        let end = setting_start(&t[start..]).and_then(|(_, at)| statement_end(t, start + at)).unwrap_or(t.len());
        &t[start..end]
    }))
}

/// The settings the toolkit owns in a per-host config.
pub const OWNED: &[&str] =
    &["XferMethod", "RsyncClientPath", "RsyncSshArgs", "DumpPreUserCmd", "UserCmdCheckStatus", "RsyncRestoreArgs"];

/// Settings a re-enrollment removes: each would send the host's backups
/// somewhere other than the enrolled host (the toolkit never writes them).
pub const REMOVED: &[&str] = &["ClientNameAlias"];

/// A per-host config the toolkit cannot take apart safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the per-host config: {0}; fix it by hand (or remove it to have it written anew)")]
pub struct PerlError(pub String);

/// A top-level piece of a per-host config: one `$Conf{NAME} = …;`
/// statement (through the end of its last line), or anything else
/// (comments, blank lines, other Perl) kept as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Setting { name: &'a str, text: &'a str },
    Other(&'a str),
}

/// The name of the setting a line starts, as BackupPC's own
/// `ConfigFileMerge` recognises it: `^\s*\$Conf\{NAME\}\s*=`.
fn setting_start(line: &str) -> Option<(&str, usize)> {
    let trimmed = line.trim_start();
    let rest = trimmed.strip_prefix("$Conf{")?;
    let close = rest.find('}')?;
    let name = &rest[..close];
    let after = rest[close + 1..].trim_start();
    let value = after.strip_prefix('=')?;
    if value.starts_with('=') || value.starts_with('~') {
        return None; // `==` or `=~` is not an assignment
    }
    Some((name, line.len() - value.len()))
}

/// Split a per-host config into pieces. A statement ends at the first `;`
/// outside strings, comments and brackets; its piece runs to the end of
/// that line. Here-documents and unbalanced text are refused rather than
/// guessed at (BackupPC's CGI writes neither).
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, PerlError> {
    let mut out = Vec::new();
    let mut other_start = 0;
    let mut pos = 0;
    while pos < text.len() {
        let line_end = text[pos..].find('\n').map(|i| pos + i + 1).unwrap_or(text.len());
        let line = &text[pos..line_end];
        let Some((name, value_at)) = setting_start(line) else {
            pos = line_end;
            continue;
        };
        if other_start < pos {
            out.push(Piece::Other(&text[other_start..pos]));
        }
        let end = statement_end(text, pos + value_at)
            .ok_or_else(|| PerlError(format!("the $Conf{{{name}}} statement does not end")))?;
        let end = text[end..].find('\n').map(|i| end + i + 1).unwrap_or(text.len());
        out.push(Piece::Setting { name, text: &text[pos..end] });
        pos = end;
        other_start = end;
    }
    if other_start < text.len() {
        out.push(Piece::Other(&text[other_start..]));
    }
    Ok(out)
}

/// The byte offset just past the `;` that ends the Perl expression
/// starting at `from`, or `None` if it never ends.
fn statement_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth: usize = 0;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    return None;
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'<' if bytes.get(i + 1) == Some(&b'<') => return None,
            b'[' | b'{' | b'(' => depth += 1,
            b']' | b'}' | b')' => depth = depth.checked_sub(1)?,
            b';' if depth == 0 => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let rows: &[(&str, &str)] = &[
            ("plain", "'plain'"),
            ("it's", "'it\\'s'"),
            ("back\\slash", "'back\\\\slash'"),
            ("$sshPath @x %y", "'$sshPath @x %y'"),
            ("\\'", "'\\\\\\''"),
        ];
        for (input, want) in rows {
            assert_eq!(perl_quote(input), *want, "{input:?}");
        }
    }

    #[test]
    fn snapshot() {
        let c = PerHostConfig {
            host: "dormeur".into(),
            logon: "cmartin".into(),
            client_user: "bckpciuem".into(),
            client_port: 22,
            key_path: "/var/lib/backuppc/.ssh/backuppc-enroll/dormeur".into(),
            previous_key_path: None,
            known_hosts: "/var/lib/backuppc/.ssh/known_hosts".into(),
            rsync_client_path: "/usr/bin/rsync".into(),
            shares: vec!["/home".into(), "/etc".into()],
            dumps: true,
        };
        assert_eq!(
            c.render("2026-01-01T00:00:00Z"),
            "# Written by backuppc-enroll for host dormeur (logon cmartin), 2026-01-01T00:00:00Z.\n\
             # Re-enrolling the host rewrites only $Conf{XferMethod}, $Conf{RsyncClientPath}, $Conf{RsyncSshArgs}, $Conf{DumpPreUserCmd}, $Conf{UserCmdCheckStatus}, $Conf{RsyncRestoreArgs}; every other setting is kept.\n\
             $Conf{XferMethod} = 'rsync';\n\
             $Conf{RsyncClientPath} = '/usr/bin/rsync';\n\
             $Conf{RsyncSshArgs} = ['-e', '$sshPath -l bckpciuem -p 22 -i /var/lib/backuppc/.ssh/backuppc-enroll/dormeur -o HostKeyAlias=dormeur -o UserKnownHostsFile=/var/lib/backuppc/.ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ServerAliveInterval=60'];\n\
             $Conf{RsyncShareName} = ['/home', '/etc'];\n\
             $Conf{DumpPreUserCmd} = '$sshPath -l bckpciuem -p 22 -i /var/lib/backuppc/.ssh/backuppc-enroll/dormeur -o HostKeyAlias=dormeur -o UserKnownHostsFile=/var/lib/backuppc/.ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ServerAliveInterval=60 $hostIP run-dumps';\n\
             $Conf{UserCmdCheckStatus} = 1;\n\
             $Conf{RsyncRestoreArgs} = ['--recursive', '--super', '--protect-args', '--numeric-ids', '--perms', '--owner', '--group', '-D', '--times', '--links', '--hard-links', '--partial', '--log-format=log: %o %i %B %8U,%8G %9l %f%L', '--stats'];\n"
        );
    }

    fn host() -> PerHostConfig {
        PerHostConfig {
            host: "dormeur".into(),
            logon: "cmartin".into(),
            client_user: "bckpciuem".into(),
            client_port: 22,
            key_path: "/k/dormeur.key".into(),
            previous_key_path: None,
            known_hosts: "/k/known_hosts".into(),
            rsync_client_path: "/usr/bin/rsync".into(),
            shares: vec!["/home".into()],
            dumps: true,
        }
    }

    #[test]
    fn the_dumps_trigger_only_for_a_workstation_that_serves_it() {
        let old = PerHostConfig { dumps: false, ..host() };
        let fresh = old.render("now");
        assert!(!fresh
            .lines()
            .any(|l| l.starts_with("$Conf{DumpPreUserCmd}") || l.starts_with("$Conf{UserCmdCheckStatus}")));
        // Re-enrolled from a workstation that no longer serves it: the
        // toolkit's trigger goes, the user's settings stay.
        let with = host().update("$Conf{BackupFilesExclude} = ['/tmp'];\n").unwrap();
        assert!(with.contains("$Conf{DumpPreUserCmd} = '") && with.contains("$Conf{UserCmdCheckStatus} = 1;"));
        let without = old.update(&with).unwrap();
        assert!(!without.contains("$Conf{DumpPreUserCmd}") && !without.contains("UserCmdCheckStatus"), "{without}");
        assert!(without.contains("$Conf{BackupFilesExclude} = ['/tmp'];"), "{without}");
        assert_eq!(old.update(&without).unwrap(), without, "stable");
    }

    /// What BackupPC's CGI saves (Data::Dumper, Indent 1, sorted keys)
    /// after the host's user added excludes and a schedule.
    const CGI_SAVED: &str =
        "$Conf{BackupFilesExclude} = {\n  '*' => [\n    '/home/jd/tmp;x',\n    '/home/jd/}{'\n  ]\n};\n\
$Conf{RsyncClientPath} = '/usr/bin/rsync';\n\
$Conf{RsyncRestoreArgs} = [\n  '--recursive'\n];\n\
$Conf{RsyncShareName} = [\n  '/home/jd'\n];\n\
$Conf{RsyncSshArgs} = [\n  '-e',\n  '$sshPath -l root -i /k/other.key'\n];\n\
$Conf{FullPeriod} = '6.97'; # weekly\n\
$Conf{XferMethod} = 'rsync';\n";

    #[test]
    fn update_replaces_owned_settings_and_keeps_every_other_byte() {
        let got = host().update(CGI_SAVED).unwrap();
        let pieces = pieces(&got).unwrap();
        let text_of = |name: &str| -> Vec<&str> {
            pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Setting { name: n, text } if *n == name => Some(*text),
                    _ => None,
                })
                .collect()
        };
        // The user's settings, byte for byte.
        assert_eq!(
            text_of("BackupFilesExclude"),
            ["$Conf{BackupFilesExclude} = {\n  '*' => [\n    '/home/jd/tmp;x',\n    '/home/jd/}{'\n  ]\n};\n"]
        );
        assert_eq!(text_of("FullPeriod"), ["$Conf{FullPeriod} = '6.97'; # weekly\n"]);
        assert_eq!(
            text_of("RsyncShareName"),
            ["$Conf{RsyncShareName} = [\n  '/home/jd'\n];\n"],
            "narrowed shares kept"
        );
        // The toolkit's, replaced in place, once each.
        let ssh = text_of("RsyncSshArgs");
        assert_eq!(ssh.len(), 1);
        assert!(ssh[0].contains("-i /k/dormeur.key") && !ssh[0].contains("other.key"), "{}", ssh[0]);
        assert_eq!(text_of("RsyncRestoreArgs").len(), 1);
        assert!(text_of("RsyncRestoreArgs")[0].contains("'--stats'"));
        assert_eq!(text_of("XferMethod"), ["$Conf{XferMethod} = 'rsync';\n"]);
        assert!(got.starts_with("$Conf{BackupFilesExclude}"), "order kept:\n{got}");
        assert_eq!(host().update(&got).unwrap(), got, "a second re-enrollment changes nothing");
    }

    #[test]
    fn update_table() {
        // (existing file, what must be in the result, what must not, why)
        let rows: &[(&str, &[&str], &[&str], &str)] = &[
            (
                "",
                &["$Conf{XferMethod} = 'rsync';", "$Conf{RsyncShareName} = ['/home'];"],
                &[],
                "empty file: all settings added",
            ),
            (
                "$Conf{XferMethod} = 'tar';\n",
                &["$Conf{XferMethod} = 'rsync';"],
                &["'tar'"],
                "XferMethod is the toolkit's: another method would bypass the pinned key",
            ),
            (
                "$Conf{ClientNameAlias} = ['other.example.org'];\n$Conf{XferMethod} = 'rsync';\n",
                &["XferMethod"],
                &["ClientNameAlias", "other.example"],
                "ClientNameAlias would send the backup elsewhere",
            ),
            (
                "$Conf{RsyncSshArgs} = ['-e', 'a'];\n$Conf{RsyncSshArgs} = ['-e', 'b'];\n",
                &["dormeur.key"],
                &["'a'", "'b'"],
                "a second occurrence would win in Perl: dropped",
            ),
            (
                "# a comment\n\n$Conf{X} = \"a;b\";\n",
                &["# a comment\n\n$Conf{X} = \"a;b\";\n"],
                &[],
                "comments, blanks and ; in strings kept",
            ),
            ("$Conf{ Y }= 1;\n", &["$Conf{ Y }= 1;\n"], &[], "spacing BackupPC accepts"),
            (
                "$Conf{XferMethod} = 'rsync'; $Conf{Z} = 1;\n",
                &["XferMethod"],
                &[],
                "two statements on one line: the line goes with the first",
            ),
        ];
        for (existing, want, not, why) in rows {
            let got = host().update(existing).unwrap_or_else(|e| panic!("{why}: {e}"));
            for w in *want {
                assert!(got.contains(w), "{why}: {w:?} missing in\n{got}");
            }
            for n in *not {
                assert!(!got.contains(n), "{why}: {n:?} present in\n{got}");
            }
        }
    }

    #[test]
    fn previous_key_is_offered_second_and_dropped_again() {
        let mut rotating = host();
        rotating.previous_key_path = Some("/k/dormeur.key.prev".into());
        let both = rotating.update(CGI_SAVED).unwrap();
        assert!(both.contains("-i /k/dormeur.key -i /k/dormeur.key.prev -o "), "new key first:\n{both}");
        let done = host().update(&both).unwrap();
        assert!(done.contains("-i /k/dormeur.key -o ") && !done.contains(".prev"), "previous key gone:\n{done}");
    }

    #[test]
    fn update_refuses_what_it_cannot_take_apart() {
        let rows = [
            ("$Conf{XferMethod} = 'rsync'\n", "no ;"),
            ("$Conf{A} = ['x';\n", "unbalanced"),
            ("$Conf{A} = 'x;\n", "unterminated string"),
            ("$Conf{A} = <<EOT;\nx\nEOT\n", "here-document"),
            ("$Conf{A} = ]];\n", "closing first"),
        ];
        for (existing, why) in rows {
            assert!(host().update(existing).is_err(), "{why}: {existing:?}");
        }
    }
}

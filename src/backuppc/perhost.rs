//! BackupPC's per-host config `$ConfDir/pc/HOST.pl`. Written as one
//! single-line, single-quoted `$Conf{X} = …;` statement per key and no
//! trailing comments, so BackupPC's CGI can re-read and rewrite it without
//! mangling it. Every value is validated before it gets here; Perl quoting
//! is still applied to each.

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
    /// known_hosts file holding this host's pinned keys.
    pub known_hosts: String,
    pub rsync_client_path: String,
    pub shares: Vec<String>,
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
    /// key path and names are validated to have none).
    pub fn ssh_command(&self) -> String {
        format!(
            "$sshPath -l {} -p {} -i {} -o HostKeyAlias={} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes",
            self.client_user, self.client_port, self.key_path, self.host, self.known_hosts
        )
    }

    pub fn render(&self, stamp: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Written by backuppc-enroll for host {} (logon {}), {stamp}.", self.host, self.logon);
        let _ = writeln!(out, "# Re-enrolling the host rewrites this file; edit backups in the web interface.");
        let _ = writeln!(out, "$Conf{{XferMethod}} = 'rsync';");
        let _ = writeln!(out, "$Conf{{RsyncClientPath}} = {};", perl_quote(&self.rsync_client_path));
        let _ = writeln!(out, "$Conf{{RsyncSshArgs}} = {};", perl_list(&["-e".into(), self.ssh_command()]));
        let _ = writeln!(out, "$Conf{{RsyncShareName}} = {};", perl_list(&self.shares));
        let restore: Vec<String> = RESTORE_ARGS.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(out, "$Conf{{RsyncRestoreArgs}} = {};", perl_list(&restore));
        out
    }
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
            known_hosts: "/var/lib/backuppc/.ssh/known_hosts".into(),
            rsync_client_path: "/usr/bin/rsync".into(),
            shares: vec!["/home".into(), "/etc".into()],
        };
        assert_eq!(
            c.render("2026-01-01T00:00:00Z"),
            "# Written by backuppc-enroll for host dormeur (logon cmartin), 2026-01-01T00:00:00Z.\n\
             # Re-enrolling the host rewrites this file; edit backups in the web interface.\n\
             $Conf{XferMethod} = 'rsync';\n\
             $Conf{RsyncClientPath} = '/usr/bin/rsync';\n\
             $Conf{RsyncSshArgs} = ['-e', '$sshPath -l bckpciuem -p 22 -i /var/lib/backuppc/.ssh/backuppc-enroll/dormeur -o HostKeyAlias=dormeur -o UserKnownHostsFile=/var/lib/backuppc/.ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes'];\n\
             $Conf{RsyncShareName} = ['/home', '/etc'];\n\
             $Conf{RsyncRestoreArgs} = ['--recursive', '--super', '--protect-args', '--numeric-ids', '--perms', '--owner', '--group', '-D', '--times', '--links', '--hard-links', '--partial', '--log-format=log: %o %i %B %8U,%8G %9l %f%L', '--stats'];\n"
        );
    }
}

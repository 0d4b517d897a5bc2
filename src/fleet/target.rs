//! How BackupPC reaches one host, read from the host's per-host config
//! `pc/HOST.pl`: the ssh command of `$Conf{RsyncSshArgs}` (user, port,
//! per-host keys, host key alias, known_hosts file) and
//! `$Conf{ClientNameAlias}` when the admin set one. The fleet connects
//! exactly where and as BackupPC does, with the same keys and trust.
//!
//! The file is written by the toolkit, but BackupPC's web interface and
//! its admin may rewrite it: it is parsed, never evaluated, and anything
//! that is not plain single-quoted Perl is refused.

use crate::backuppc::perhost::setting_text;
use std::path::PathBuf;

/// Where and as whom a host is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The BackupPC host name.
    pub host: String,
    /// The name or address connected to (`ClientNameAlias`, else the host).
    pub connect_to: String,
    pub port: u16,
    pub user: String,
    /// Private keys, tried in order (current, then the previous one).
    pub keys: Vec<PathBuf>,
    /// The name the host keys are pinned under (`HostKeyAlias`).
    pub alias: String,
    pub known_hosts: PathBuf,
}

/// What the target falls back to where the per-host config says nothing.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
}

/// The Perl strings of a setting's value: one single-quoted string or a
/// list of them (`['-e', '$sshPath …']`), as BackupPC's CGI writes them.
pub fn perl_strings(statement: &str) -> Result<Vec<String>, String> {
    let eq = statement.find('=').ok_or("no `=`")?;
    let value = statement[eq + 1..].trim();
    let value = value.strip_suffix(';').ok_or("no `;` at the end")?.trim();
    let (inner, list) = match value.strip_prefix('[') {
        Some(rest) => (rest.strip_suffix(']').ok_or("a list without its `]`")?, true),
        None => (value, false),
    };
    let mut out = Vec::new();
    let mut chars = inner.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('\'') => {}
            Some(c) => return Err(format!("{c:?} where a single-quoted string must be")),
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                None => return Err("a string that does not end".into()),
                Some('\\') => match chars.next() {
                    Some(c @ ('\\' | '\'')) => s.push(c),
                    Some(c) => {
                        s.push('\\');
                        s.push(c);
                    }
                    None => return Err("a string that does not end".into()),
                },
                Some('\'') => break,
                Some(c) => s.push(c),
            }
        }
        out.push(s);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') if list => {}
            Some(c) => return Err(format!("{c:?} after a string")),
        }
    }
    if !list && out.len() != 1 {
        return Err("not one string".into());
    }
    Ok(out)
}

/// Read the target of `host` from its per-host config text.
pub fn from_per_host_config(host: &str, text: &str, defaults: &Defaults) -> Result<SshTarget, String> {
    let ssh = setting_text(text, "RsyncSshArgs")
        .map_err(|e| e.to_string())?
        .ok_or("it has no $Conf{RsyncSshArgs}: the host was not set up by this toolkit")?;
    let args = perl_strings(ssh).map_err(|e| format!("cannot read its $Conf{{RsyncSshArgs}}: {e}"))?;
    let command = match args.as_slice() {
        [e, command] if e == "-e" => command,
        _ => return Err("its $Conf{RsyncSshArgs} is not ['-e', '$sshPath …']".into()),
    };
    let mut t = SshTarget {
        host: host.to_string(),
        connect_to: host.to_string(),
        port: 22,
        user: defaults.user.clone(),
        keys: Vec::new(),
        alias: host.to_string(),
        known_hosts: defaults.known_hosts.clone(),
    };
    let mut words = command.split_whitespace();
    if words.next() != Some("$sshPath") {
        return Err("its $Conf{RsyncSshArgs} does not start with $sshPath".into());
    }
    while let Some(w) = words.next() {
        let flagged = w.strip_prefix('-').and_then(|r| {
            let c = r.chars().next()?;
            "lpio".contains(c).then(|| (c, &r[c.len_utf8()..]))
        });
        let Some((flag, joined)) = flagged else { continue };
        let joined = Some(joined).filter(|v| !v.is_empty());
        let value = match joined.or_else(|| words.next()) {
            Some(v) => v,
            None => return Err(format!("-{flag} without a value in its $Conf{{RsyncSshArgs}}")),
        };
        match flag {
            'l' => t.user = value.to_string(),
            'p' => t.port = value.parse().map_err(|_| format!("port {value:?} in its $Conf{{RsyncSshArgs}}"))?,
            'i' => t.keys.push(PathBuf::from(value)),
            _ => match value.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("HostKeyAlias") => t.alias = v.to_string(),
                Some((k, v)) if k.eq_ignore_ascii_case("UserKnownHostsFile") => t.known_hosts = PathBuf::from(v),
                Some((k, v)) if k.eq_ignore_ascii_case("Port") => {
                    t.port = v.parse().map_err(|_| format!("port {v:?} in its $Conf{{RsyncSshArgs}}"))?
                }
                Some((k, v)) if k.eq_ignore_ascii_case("User") => t.user = v.to_string(),
                _ => {}
            },
        }
    }
    if t.keys.is_empty() {
        t.keys.push(defaults.key.clone());
    }
    if let Some(alias) = setting_text(text, "ClientNameAlias").map_err(|e| e.to_string())? {
        let names = perl_strings(alias).map_err(|e| format!("cannot read its $Conf{{ClientNameAlias}}: {e}"))?;
        if let Some(first) = names.into_iter().find(|n| !n.is_empty()) {
            t.connect_to = first;
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backuppc::perhost::PerHostConfig;

    fn defaults() -> Defaults {
        Defaults { user: "bckpciuem".into(), key: "/k/default.key".into(), known_hosts: "/k/known_hosts".into() }
    }

    #[test]
    fn reads_what_the_toolkit_writes() {
        let pl = PerHostConfig {
            host: "dormeur".into(),
            logon: "cmartin".into(),
            client_user: "bpc".into(),
            client_port: 2222,
            key_path: "/s/dormeur.key".into(),
            previous_key_path: Some("/s/dormeur.key.prev".into()),
            known_hosts: "/s/known_hosts".into(),
            rsync_client_path: "/usr/bin/rsync".into(),
            shares: vec!["/home".into()],
            dumps: true,
        }
        .render("2026-01-01T00:00:00Z");
        let t = from_per_host_config("dormeur", &pl, &defaults()).unwrap();
        assert_eq!(
            t,
            SshTarget {
                host: "dormeur".into(),
                connect_to: "dormeur".into(),
                port: 2222,
                user: "bpc".into(),
                keys: vec!["/s/dormeur.key".into(), "/s/dormeur.key.prev".into()],
                alias: "dormeur".into(),
                known_hosts: "/s/known_hosts".into(),
            }
        );
    }

    #[test]
    fn table() {
        // (per-host config, Ok(user, port, keys, alias, connect_to) or Err(part of message), why)
        type Want = Result<(&'static str, u16, &'static [&'static str], &'static str, &'static str), &'static str>;
        let rows: &[(&str, Want, &str)] = &[
            (
                "$Conf{RsyncSshArgs} = ['-e', '$sshPath -l u -p 2 -i /a -o HostKeyAlias=x'];\n",
                Ok(("u", 2, &["/a"], "x", "h")),
                "separate flags",
            ),
            (
                "$Conf{RsyncSshArgs} = [\n  '-e',\n  '$sshPath -lu -p2 -i/a -oHostKeyAlias=x'\n];\n",
                Ok(("u", 2, &["/a"], "x", "h")),
                "joined flags, as the CGI indents lists",
            ),
            (
                "$Conf{RsyncSshArgs} = ['-e', '$sshPath'];\n",
                Ok(("bckpciuem", 22, &["/k/default.key"], "h", "h")),
                "defaults",
            ),
            (
                "$Conf{RsyncSshArgs} = ['-e', '$sshPath -l a'];\n$Conf{RsyncSshArgs} = ['-e', '$sshPath -l b'];\n",
                Ok(("b", 22, &["/k/default.key"], "h", "h")),
                "the last statement is the one Perl keeps",
            ),
            (
                "$Conf{RsyncSshArgs} = ['-e', '$sshPath -i /a'];\n$Conf{ClientNameAlias} = ['10.0.0.9'];\n",
                Ok(("bckpciuem", 22, &["/a"], "h", "10.0.0.9")),
                "BackupPC connects to ClientNameAlias",
            ),
            (
                "$Conf{RsyncSshArgs} = ['-e', '$sshPath -o Port=7 -o User=w -i /it\\'s'];\n",
                Ok(("w", 7, &["/it's"], "h", "h")),
                "-o Port/User and an escaped quote",
            ),
            ("$Conf{XferMethod} = 'rsync';\n", Err("has no $Conf{RsyncSshArgs}"), "not the toolkit's"),
            ("$Conf{RsyncSshArgs} = [\"-e\", \"$sshPath\"];\n", Err("single-quoted"), "interpolating strings refused"),
            ("$Conf{RsyncSshArgs} = ['-e', '$sshPath -p x'];\n", Err("port"), "a port that is no number"),
            ("$Conf{RsyncSshArgs} = ['-e', '$sshPath -p 70000'];\n", Err("port"), "a port out of range"),
            ("$Conf{RsyncSshArgs} = ['-e', '$sshPath -i'];\n", Err("without a value"), "a flag without value"),
            ("$Conf{RsyncSshArgs} = ['-e', '/bin/sh -c x'];\n", Err("$sshPath"), "another program"),
            ("$Conf{RsyncSshArgs} = ['$sshPath'];\n", Err("is not ['-e'"), "no -e"),
            ("$Conf{RsyncSshArgs} = ['-e', 'x' . 'y'];\n", Err("after a string"), "an expression"),
            ("$Conf{RsyncSshArgs} = ['-e', '$sshPath];\n", Err("does not end"), "an unterminated string"),
        ];
        for (text, want, why) in rows {
            let got = from_per_host_config("h", text, &defaults());
            match (got, want) {
                (Ok(t), Ok((user, port, keys, alias, to))) => {
                    assert_eq!(t.user, *user, "{why}");
                    assert_eq!(t.port, *port, "{why}");
                    assert_eq!(t.keys, keys.iter().map(PathBuf::from).collect::<Vec<_>>(), "{why}");
                    assert_eq!(t.alias, *alias, "{why}");
                    assert_eq!(t.connect_to, *to, "{why}");
                }
                (Err(e), Err(part)) => assert!(e.contains(part), "{why}: {e}"),
                (got, _) => panic!("{why}: got {got:?}"),
            }
        }
    }

    #[test]
    fn perl_strings_table() {
        type Row = (&'static str, Result<&'static [&'static str], ()>, &'static str);
        let rows: &[Row] = &[
            ("$X = 'a';", Ok(&["a"]), "one string"),
            ("$X = ['a', 'b',];", Ok(&["a", "b"]), "a trailing comma"),
            ("$X = [];", Ok(&[]), "an empty list"),
            ("$X = 'a\\\\b\\nc';", Ok(&["a\\b\\nc"]), "only \\\\ and \\' are escapes"),
            ("$X = 'a', 'b';", Err(()), "two strings outside a list"),
            ("$X = ['a' 'b'];", Err(()), "no comma"),
            ("$X = ['a';", Err(()), "no ]"),
            ("$X = 'a'", Err(()), "no ;"),
            ("$X = `id`;", Err(()), "backticks"),
            ("$X = 'é\u{202e}';", Ok(&["é\u{202e}"]), "any text inside a string"),
        ];
        for (text, want, why) in rows {
            let got = perl_strings(text);
            match want {
                Ok(v) => assert_eq!(
                    got.as_deref().map_err(|_| ()),
                    Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>().as_slice()),
                    "{why}"
                ),
                Err(()) => assert!(got.is_err(), "{why}: {got:?}"),
            }
        }
    }
}

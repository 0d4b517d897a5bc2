//! What the client asked sshd to run (`SSH_ORIGINAL_COMMAND`), as the one
//! service the drop box gives for it: SFTP when it is the `Subsystem sftp`
//! command of sshd's config, scp's sink mode for `scp -t`, and a refusal
//! for anything else (a shell, `id`, `scp -f` to download, `scp -r`).

/// The service a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    Sftp,
    /// `scp -t TARGET`: the target folder or file name as the client gave it.
    ScpSink {
        target: String,
        preserve: bool,
    },
}

/// Parse `SSH_ORIGINAL_COMMAND`. The error is the one line the client sees.
pub fn parse(command: Option<&str>) -> Result<Service, String> {
    let Some(cmd) = command else {
        return Err("this account is a drop box: it only receives archives by scp or sftp (no shell)".into());
    };
    if cmd.len() > 4096 || cmd.contains(['\n', '\r', '\0']) {
        return Err("this drop box only receives archives by scp or sftp".into());
    }
    let words: Vec<&str> = cmd.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let Some((first, rest)) = words.split_first() else {
        return Err("an empty command: this drop box only receives archives by scp or sftp".into());
    };
    // The subsystem command is sshd's own configuration, not the
    // client's: its options (`-l INFO`, `-f AUTHPRIV`) are not ours.
    let program = first.rsplit('/').next().unwrap_or(first);
    if *first == "internal-sftp" || (program == "sftp-server" && (first.starts_with('/') || *first == "sftp-server")) {
        return Ok(Service::Sftp);
    }
    if program != "scp" || (first.contains('/') && !first.starts_with('/')) {
        return Err(format!(
            "{:?} is not allowed: this drop box only receives archives by scp or sftp",
            crate::names::printable(first)
        ));
    }
    let (mut to, mut preserve, mut target) = (false, false, None);
    let mut options_done = false;
    for w in rest {
        if !options_done && w.starts_with('-') && w.len() > 1 {
            if *w == "--" {
                options_done = true;
                continue;
            }
            for c in w[1..].chars() {
                match c {
                    't' => to = true,
                    'p' => preserve = true,
                    'v' | 'd' => {}
                    'f' => return Err("downloads are not allowed: this drop box only receives archives".into()),
                    'r' => return Err("folders are not allowed (scp -r): send one archive at a time".into()),
                    other => return Err(format!("scp option -{other} is not allowed here")),
                }
            }
        } else if target.replace(w.to_string()).is_some() {
            return Err("scp with more than one target: send one archive at a time".into());
        }
    }
    if !to {
        return Err("only uploads (scp -t) are allowed: this drop box only receives archives".into());
    }
    let target = target.ok_or("scp without a target")?;
    Ok(Service::ScpSink { target, preserve })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let sink = |t: &str, p: bool| Some(Service::ScpSink { target: t.into(), preserve: p });
        let rows: &[(Option<&str>, Option<Service>, &str)] = &[
            (Some("/usr/lib/openssh/sftp-server"), Some(Service::Sftp), "Debian's subsystem line"),
            (Some("/usr/lib/openssh/sftp-server -l INFO -f AUTHPRIV"), Some(Service::Sftp), "with sshd's options"),
            (Some("internal-sftp"), Some(Service::Sftp), "internal-sftp"),
            (Some("scp -t ."), sink(".", false), "scp -O host:"),
            (Some("scp -v -p -t -- ."), sink(".", true), "scp -O -p -v"),
            (Some("scp -d -t -- jpro_x.tar.gz"), sink("jpro_x.tar.gz", false), "file target"),
            (Some("scp -pt ."), sink(".", true), "clustered"),
            (Some("/usr/bin/scp -t ."), sink(".", false), "absolute scp"),
            (Some("scp -t -- -rf"), sink("-rf", false), "a target after -- is a name"),
            (Some("scp -f ."), None, "download"),
            (Some("scp -r -t ."), None, "recursive"),
            (Some("scp -t"), None, "no target"),
            (Some("scp ."), None, "neither -t nor -f"),
            (Some("scp -t a b"), None, "two targets"),
            (Some("scp -S /bin/sh -t ."), None, "unknown option"),
            (Some("./scp -t ."), None, "relative program"),
            (Some("sh"), None, "shell"),
            (Some("id"), None, "id"),
            (Some("sftp-server-evil"), None, "look-alike"),
            (Some("./sftp-server"), None, "relative sftp-server"),
            (Some("rsync --server . /"), None, "rsync"),
            (Some("scp -t .\nid"), None, "newline"),
            (Some("scp -t .\0"), None, "NUL"),
            (Some(""), None, "empty"),
            (None, None, "no command (a shell)"),
        ];
        for (cmd, want, why) in rows {
            assert_eq!(parse(*cmd).ok(), *want, "{why}: {cmd:?}");
        }
        let long = format!("scp -t {}", "a".repeat(5000));
        assert!(parse(Some(&long)).is_err(), "huge");
    }
}

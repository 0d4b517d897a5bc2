//! `known_hosts` editing on the server: the client's host keys pinned under
//! the host alias BackupPC's ssh uses (`HostKeyAlias`), replacing stale
//! lines of that host only.

/// Does this line name exactly `alias` (and nothing else) as its host?
fn is_for(line: &str, alias: &str) -> bool {
    let mut fields = line.split_whitespace();
    fields.next() == Some(alias)
}

/// `existing` without `alias`: lines naming only it are dropped, and it
/// is taken out of comma-separated host lists (which ssh would otherwise
/// still match under `HostKeyAlias`). Hashed lines, markers and other
/// hosts' lines are kept byte for byte. Then one line per key.
pub fn replace(existing: &str, alias: &str, keys: &[String]) -> String {
    let mut out = String::with_capacity(existing.len() + keys.len() * 120);
    for l in existing.split_inclusive('\n') {
        if is_for(l, alias) {
            continue;
        }
        let (hosts, rest) = l.split_once(' ').unwrap_or((l, ""));
        let names: Vec<&str> = hosts.split(',').collect();
        if names.len() > 1 && names.contains(&alias) && !l.starts_with(['#', '@', '|']) {
            let kept: Vec<&str> = names.into_iter().filter(|n| *n != alias).collect();
            out.push_str(&kept.join(","));
            out.push(' ');
            out.push_str(rest);
        } else {
            out.push_str(l);
        }
    }
    if !keys.is_empty() && !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for k in keys {
        out.push_str(alias);
        out.push(' ');
        out.push_str(k);
        out.push('\n');
    }
    out
}

/// Keys pinned for `alias`.
pub fn keys_for(existing: &str, alias: &str) -> Vec<String> {
    existing
        .lines()
        .filter(|l| is_for(l, alias))
        .filter_map(|l| l.split_once(char::is_whitespace).map(|(_, k)| k.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_that_host() {
        let existing = "dormeur ssh-ed25519 OLD\ndormeur.example.org ssh-ed25519 KEEP\n|1|hash|= ssh-ed25519 H\ndormeur,10.0.0.1 ssh-rsa MULTI\n";
        let out = replace(existing, "dormeur", &["ssh-ed25519 NEW".into(), "ssh-rsa NEW2".into()]);
        assert_eq!(
            out,
            "dormeur.example.org ssh-ed25519 KEEP\n|1|hash|= ssh-ed25519 H\n10.0.0.1 ssh-rsa MULTI\ndormeur ssh-ed25519 NEW\ndormeur ssh-rsa NEW2\n"
        );
        assert_eq!(keys_for(&out, "dormeur"), vec!["ssh-ed25519 NEW", "ssh-rsa NEW2"]);
        assert_eq!(
            replace(&out, "dormeur", &[]),
            "dormeur.example.org ssh-ed25519 KEEP\n|1|hash|= ssh-ed25519 H\n10.0.0.1 ssh-rsa MULTI\n"
        );
    }
}

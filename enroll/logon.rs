//! Finding the logon of the workstation's main user, to propose it, and
//! checking a logon before the server is asked about it.

use backuppc_enroll::names;
use std::process::Command;

/// Longest logon the protocol carries.
pub const MAX_LOGON: usize = 32;

/// The protocol's rules for a logon (1 to 32 characters of `[a-z0-9_.-]`,
/// starting with a letter or `_`), checked here so that a person reads
/// what is wrong with what they typed, not how the request is framed.
pub fn check_logon(logon: &str) -> Result<(), String> {
    let shown = names::quoted(logon);
    let length = logon.chars().count();
    if length == 0 {
        return Err("the logon is empty: type the main user's logon, for example jdupont".into());
    }
    if length > MAX_LOGON {
        return Err(format!("logon {shown} is {length} characters long; a logon has at most {MAX_LOGON}"));
    }
    let mut bad: Vec<char> = logon.chars().filter(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-')).collect();
    bad.dedup();
    if !bad.is_empty() {
        let list: Vec<String> = bad.iter().map(|c| names::quoted(&c.to_string())).collect();
        let hint = if bad.iter().all(|c| c.is_ascii_uppercase()) {
            "logons are lower-case".to_string()
        } else {
            "a logon has only lower-case letters a-z without accents, digits, '_', '.' and '-'".to_string()
        };
        return Err(format!(
            "logon {shown} has {} {}: {hint}",
            if bad.len() == 1 { "the character" } else { "the characters" },
            list.join(", ")
        ));
    }
    if !logon.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        return Err(format!("logon {shown} must start with a letter or '_'"));
    }
    Ok(())
}

/// The person most likely to own this machine: whoever ran sudo, else the
/// user on the console or a graphical seat, else the only human account.
pub fn propose(sudo_user: Option<String>) -> Option<String> {
    if let Some(u) = sudo_user.filter(|u| !u.is_empty() && u != "root") {
        return Some(u);
    }
    if let Some(u) = console_user() {
        return Some(u);
    }
    only_human_account()
}

fn console_user() -> Option<String> {
    let out = Command::new("who").output().ok()?;
    pick_console(&String::from_utf8_lossy(&out.stdout))
}

/// From `who` output: a non-root user on a console or graphical seat
/// first, else any non-root user.
pub fn pick_console(who: &str) -> Option<String> {
    let rows: Vec<(&str, &str)> = who
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        })
        .filter(|(u, _)| *u != "root")
        .collect();
    let console = |t: &str| t.starts_with(':') || t == "console" || t == "tty1" || t.starts_with("seat");
    rows.iter().find(|(_, t)| console(t)).or(rows.first()).map(|(u, _)| u.to_string())
}

fn only_human_account() -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    pick_human(&passwd)
}

/// The one account with uid ≥ 1000 and a login shell, if exactly one.
pub fn pick_human(passwd: &str) -> Option<String> {
    let humans: Vec<&str> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let uid: u32 = f.get(2)?.parse().ok()?;
            let shell = f.get(6)?;
            ((1000..60000).contains(&uid) && !shell.ends_with("nologin") && !shell.ends_with("false")).then_some(f[0])
        })
        .collect();
    (humans.len() == 1).then(|| humans[0].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logons_checked_before_the_server_is_asked() {
        let rows: &[(&str, Option<&str>, &str)] = &[
            ("jdupont", None, "plain"),
            ("j.dupont-2_", None, "all punctuation"),
            ("_svc", None, "leading underscore"),
            (&"a".repeat(32), None, "32 characters"),
            ("", Some("the logon is empty"), "empty"),
            (&"a".repeat(200), Some("is 200 characters long; a logon has at most 32"), "over-long"),
            (
                "j\u{e9}r\u{f4}me",
                Some("logon \"j\u{e9}r\u{f4}me\" has the characters \"\u{e9}\", \"\u{f4}\""),
                "accents shown readably",
            ),
            ("JDupont", Some("logons are lower-case"), "upper case"),
            ("jd upont", Some("the character \" \""), "space"),
            ("jd;id", Some("the character \";\""), "semicolon"),
            ("jd\u{202e}x", Some("\"\\u{202e}\""), "bidi override escaped"),
            ("1abc", Some("must start with a letter or '_'"), "leading digit"),
            ("-x", Some("must start with a letter or '_'"), "leading hyphen"),
            ("linux:x", Some("the character \":\""), "a colon cannot smuggle a field"),
        ];
        for (logon, want, why) in rows {
            match (check_logon(logon), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{why}: {e:?} should contain {w:?}"),
                (got, _) => panic!("{why}: {logon:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn proposals() {
        assert_eq!(propose(Some("jdupont".into())), Some("jdupont".into()), "sudo user wins");
        let who = "root     pts/0        2026-11-22 10:00\ncmartin  pts/1  2026-11-22 10:00\njdupont  :0           2026-11-22 09:00 (:0)\n";
        assert_eq!(pick_console(who), Some("jdupont".into()), "graphical seat first");
        assert_eq!(pick_console("root tty1 x\n"), None);
        assert_eq!(pick_console("cmartin pts/3 x\n"), Some("cmartin".into()));
        let passwd = "root:x:0:0::/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\njd:x:1000:1000::/home/jd:/bin/bash\nsvc:x:1001:1001::/:/usr/sbin/nologin\n";
        assert_eq!(pick_human(passwd), Some("jd".into()));
        assert_eq!(pick_human(&format!("{passwd}cm:x:1002:1002::/home/cm:/bin/zsh\n")), None, "two humans: ask");
    }
}

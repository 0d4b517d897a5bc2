//! The server's answer to an enrollment: `success` and `name: value`
//! lines, or a message for a person. `enroll` treats it as untrusted:
//! [`Answer::parse`] accepts exactly one bare public key, an http(s) URL,
//! an address pattern and absolute share paths, and nothing else.

use crate::names;
use ssh_key::PublicKey;

/// Largest answer `enroll` reads.
pub const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// Bare `algorithm base64` of the per-host key.
    pub key: String,
    pub url: String,
    pub host: Option<String>,
    pub from: Option<String>,
    pub shares: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Success(Success),
    /// Any other first line: the whole text is a message for a person.
    Failure(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the server's answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
    #[error("the server's answer is not printable ASCII text")]
    NotText,
    #[error("the server's answer line {0} is not 'name: value'")]
    Shape(usize),
    #[error("the server's answer has no {0} line")]
    Missing(&'static str),
    #[error("the server's answer has more than one {0} line")]
    Repeated(&'static str),
    #[error("the server's answer has an invalid {field} line: {why}")]
    Invalid { field: &'static str, why: String },
}

impl Success {
    pub fn render(&self) -> String {
        let mut out = String::from("success\n");
        out.push_str(&format!("key: {}\n", self.key));
        out.push_str(&format!("url: {}\n", self.url));
        if let Some(h) = &self.host {
            out.push_str(&format!("host: {h}\n"));
        }
        if let Some(f) = &self.from {
            out.push_str(&format!("from: {f}\n"));
        }
        for s in &self.shares {
            out.push_str(&format!("share: {s}\n"));
        }
        out
    }

    pub fn public_key(&self) -> PublicKey {
        // `key` was validated by `parse` or built from a generated key.
        PublicKey::from_openssh(&self.key).expect("validated key")
    }
}

impl Answer {
    pub fn parse(input: &[u8]) -> Result<Answer, AnswerError> {
        if input.len() > MAX_ANSWER {
            return Err(AnswerError::TooLarge);
        }
        let text = String::from_utf8_lossy(input);
        let mut lines = text.lines();
        if lines.next() != Some("success") {
            return Ok(Answer::Failure(sanitize_message(&text)));
        }
        if !input.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)) {
            return Err(AnswerError::NotText);
        }
        let (mut key, mut url, mut host, mut from) = (None, None, None, None);
        let mut shares = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once(": ") else {
                return Err(AnswerError::Shape(i + 2));
            };
            match name {
                "key" => set_once(&mut key, "key", check_key(value)?)?,
                "url" => set_once(&mut url, "url", check_url(value)?)?,
                "host" => set_once(
                    &mut host,
                    "host",
                    names::host_name(value).map_err(|why| AnswerError::Invalid { field: "host", why })?,
                )?,
                "from" => set_once(&mut from, "from", check_from(value)?)?,
                "share" => {
                    let share =
                        names::absolute_path(value).map_err(|why| AnswerError::Invalid { field: "share", why })?;
                    if share == "/" {
                        return Err(AnswerError::Invalid {
                            field: "share",
                            why: "the whole disk (/) is not a share".into(),
                        });
                    }
                    shares.push(share)
                }
                _ => {}
            }
        }
        Ok(Answer::Success(Success {
            key: key.ok_or(AnswerError::Missing("key"))?,
            url: url.ok_or(AnswerError::Missing("url"))?,
            host,
            from,
            shares,
        }))
    }
}

fn set_once(slot: &mut Option<String>, field: &'static str, value: String) -> Result<(), AnswerError> {
    if slot.is_some() {
        return Err(AnswerError::Repeated(field));
    }
    *slot = Some(value);
    Ok(())
}

fn check_key(value: &str) -> Result<String, AnswerError> {
    let key = names::public_key(value).map_err(|why| AnswerError::Invalid { field: "key", why })?;
    let comment = key.comment();
    if comment.len() > 200 || comment.contains('"') {
        return Err(AnswerError::Invalid { field: "key", why: "the key's comment is too long or has quotes".into() });
    }
    Ok(names::key_without_comment(&key))
}

fn check_url(value: &str) -> Result<String, AnswerError> {
    let invalid = |why: &str| AnswerError::Invalid { field: "url", why: why.into() };
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    if rest.is_empty() || value.len() > 2048 || value.contains(char::is_whitespace) {
        return Err(invalid("must be a URL of at most 2048 characters without spaces"));
    }
    if value.contains(['"', '\'', '<', '>', '`', '\\']) {
        return Err(invalid("has quotes, angle brackets or backslashes"));
    }
    Ok(value.to_string())
}

/// An OpenSSH `from=` pattern list: addresses, CIDR, host names, `*` `?`
/// wildcards and `!` negation, comma-separated. Nothing that could close
/// the quoted option.
pub fn check_from(value: &str) -> Result<String, AnswerError> {
    let ok = !value.is_empty()
        && value.len() <= 1024
        && value.split(',').all(|p| {
            let p = p.strip_prefix('!').unwrap_or(p);
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'*' | b'?' | b'/'))
        });
    if ok {
        Ok(value.to_string())
    } else {
        Err(AnswerError::Invalid { field: "from", why: "must be a comma-separated list of address patterns".into() })
    }
}

/// Whether a `from:` pattern list lets every client in, so that as a
/// `from=` it restricts nothing: a positive pattern made of wildcards and
/// separators only with at least one `*` (`*`, `*.*.*.*`, `?*`, `*:*`,
/// which every IPv4 or IPv6 address matches), or a network of prefix
/// length 0 (`0.0.0.0/0`, `::/0`). Negated patterns only take away, so a
/// list with one such pattern is as open as the pattern, near enough.
pub fn matches_everything(from: &str) -> bool {
    from.split(',').filter(|p| !p.starts_with('!')).any(|p| {
        let wildcards_only = p.contains('*') && p.bytes().all(|b| matches!(b, b'*' | b'?' | b'.' | b':'));
        let whole_internet = p.split_once('/').is_some_and(|(addr, len)| {
            len.trim_start_matches('0').is_empty() && addr.parse::<std::net::IpAddr>().is_ok()
        });
        wildcards_only || whole_internet
    })
}

/// A failure message shown to a person: control and format characters
/// escaped (see [`names::display_text`]), so a server can neither drive
/// the terminal nor reorder or hide words of its message.
fn sanitize_message(text: &str) -> String {
    let cut: String = text.chars().take(4096).collect();
    names::display_text(cut.trim()).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";

    #[test]
    fn seed_answer_parses() {
        let text = format!("success\nurl: http://dugong.example.org/backuppc/?host=dormeur\nkey: {KEY} backuppc server to client dormeur ssh key\n");
        let Answer::Success(s) = Answer::parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!(s.key, KEY, "comment dropped");
        assert_eq!(s.url, "http://dugong.example.org/backuppc/?host=dormeur");
        assert!(s.shares.is_empty());
    }

    #[test]
    fn round_trip() {
        let s = Success {
            key: KEY.into(),
            url: "https://b.example.org/?host=x".into(),
            host: Some("x".into()),
            from: Some("10.0.0.1".into()),
            shares: vec!["/home".into(), "/srv/a b".into()],
        };
        assert_eq!(Answer::parse(s.render().as_bytes()).unwrap(), Answer::Success(s));
    }

    #[test]
    fn failure_is_a_message() {
        let a = Answer::parse(b"logon \"x\" is unknown\nask the helpdesk\x1b[2J\n").unwrap();
        assert_eq!(a, Answer::Failure("logon \"x\" is unknown\nask the helpdesk\\u{1b}[2J".into()));
        let a = Answer::parse("refused: \u{202e}gnp.exe\u{202c} \u{200b}ok\u{feff}".as_bytes()).unwrap();
        assert_eq!(a, Answer::Failure("refused: \\u{202e}gnp.exe\\u{202c} \\u{200b}ok\\u{feff}".into()));
        let a = Answer::parse("le logon \"j\u{e9}r\u{f4}me\" est inconnu".as_bytes()).unwrap();
        assert_eq!(a, Answer::Failure("le logon \"j\u{e9}r\u{f4}me\" est inconnu".into()), "letters kept");
    }

    #[test]
    fn patterns_that_let_everyone_in() {
        let rows: &[(&str, bool, &str)] = &[
            ("*", true, "star"),
            ("**", true, "stars"),
            ("*,*", true, "two stars"),
            ("*.*.*.*", true, "every IPv4 address"),
            ("*.*", true, "every dotted name or address"),
            ("?*", true, "every non-empty name"),
            ("*:*", true, "every IPv6 address"),
            ("0.0.0.0/0", true, "whole IPv4 internet"),
            ("::/0", true, "whole IPv6 internet"),
            ("10.0.0.1,*", true, "one open pattern is enough"),
            ("*,!10.0.0.1", true, "negation takes away one address only"),
            ("10.0.0.1", false, "one address"),
            ("10.0.0.0/8", false, "a network"),
            ("10.*", false, "a prefix"),
            ("*.example.org", false, "a domain"),
            ("?.?.?.?", false, "one-digit octets only"),
            ("!*", false, "negated: lets no one in"),
            ("192.168.1.0/00", true, "prefix length zero however written"),
        ];
        for (from, open, why) in rows {
            assert_eq!(matches_everything(from), *open, "{why}: {from}");
        }
    }

    #[test]
    fn hostile_answers() {
        let ok_url = "url: https://b/x";
        let rows: Vec<(String, &str)> = vec![
            (format!("success\n{ok_url}\n"), "no key"),
            (format!("success\nkey: {KEY}\n"), "no url"),
            (format!("success\nkey: command=\"/bin/sh\" {KEY}\n{ok_url}\n"), "options before the key"),
            (format!("success\nkey: no-pty {KEY}\n{ok_url}\n"), "bare option"),
            (format!("success\nkey: {KEY}\nkey: {KEY}\n{ok_url}\n"), "two keys"),
            (format!("success\nkey: ssh-dss AAAAB3NzaC1kc3M\n{ok_url}\n"), "unknown algorithm"),
            (format!("success\nkey: {KEY} a\"b\n{ok_url}\n"), "quote in comment"),
            (format!("success\nkey: {KEY}\nurl: javascript:alert(1)\n"), "not http"),
            (format!("success\nkey: {KEY}\nurl: https://x/\"onload\n"), "quote in url"),
            (format!("success\nkey: {KEY}\n{ok_url}\nfrom: 10.0.0.1\",command=\"sh\n"), "from breaks out"),
            (format!("success\nkey: {KEY}\n{ok_url}\nfrom: \n"), "empty from"),
            (format!("success\nkey: {KEY}\n{ok_url}\nshare: home\n"), "relative share"),
            (format!("success\nkey: {KEY}\n{ok_url}\nshare: /home/../root\n"), "dot-dot share"),
            (format!("success\nkey: {KEY}\n{ok_url}\nhost: a;b\n"), "bad host"),
            (format!("success\nkey: {KEY}\r\n{ok_url}\n"), "carriage return"),
            (format!("success\nkey: {KEY}\n{ok_url}\nnonsense\n"), "line without a name"),
            (format!("success\nkey: {KEY}\n{ok_url}\nshare: /h\u{e9}\n"), "non-ASCII"),
        ];
        for (input, why) in rows {
            assert!(Answer::parse(input.as_bytes()).is_err(), "{why}: {input:?}");
        }
        assert_eq!(Answer::parse(&vec![b'x'; MAX_ANSWER + 1]), Err(AnswerError::TooLarge));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_and_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(Answer::Success(s)) = Answer::parse(&bytes) {
                prop_assert_eq!(Answer::parse(s.render().as_bytes()), Ok(Answer::Success(s.clone())));
                prop_assert!(!s.key.contains('\n') && !s.key.contains('"'));
            }
        }

        #[test]
        fn success_shaped_input(lines in prop::collection::vec("(key|url|from|share|host): [ -~]{0,30}", 0..6)) {
            let text = format!("success\n{}", lines.join("\n"));
            if let Ok(Answer::Success(s)) = Answer::parse(text.as_bytes()) {
                prop_assert!(s.url.starts_with("http"));
                for sh in &s.shares {
                    prop_assert!(sh.starts_with('/') && !sh.contains(".."));
                }
            }
        }
    }
}

//! The hello block: what `enroll` tells the server about the workstation on
//! the channel's stdin (protocol 2). ASCII lines `name: value`, at most
//! [`MAX_HELLO`] bytes, ended by EOF. An empty block is the seed's
//! protocol. Every value is validated here, so the server only ever handles
//! a canonical host name, bare public keys and a safe user name.

use crate::names;
use std::collections::BTreeSet;

pub const MAX_HELLO: usize = 64 * 1024;
pub const MAX_HOST_KEYS: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    pub protocol: Option<u32>,
    pub hostname: Option<String>,
    /// Bare `algorithm base64` lines, comments dropped.
    pub hostkeys: Vec<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub version: Option<String>,
    pub token: Option<String>,
    /// `installed-key`: fingerprint (`SHA256:…`) of the per-host key the
    /// workstation has installed now, so a re-enrollment can be retried
    /// (see docs/PROTOCOL.md).
    pub installed_key: Option<String>,
    /// `rekey: finish`: the workstation installed the key it was answered
    /// last; the server stops accepting the one before.
    pub finish_rekey: bool,
    /// `accepts: WORD …`: the fixed commands besides rsync that the
    /// workstation's rsyncsend serves (`run-dumps`), so the server sets up
    /// only what the workstation can answer. Words it does not know are
    /// kept and ignored.
    pub accepts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("the hello block is larger than {MAX_HELLO} bytes")]
    TooLarge,
    #[error("the hello block must be printable ASCII lines")]
    NotText,
    #[error("hello line {0} is not 'name: value'")]
    Shape(usize),
    #[error("hello field {0:?} is given more than once")]
    Repeated(String),
    #[error("hello field {field:?} is invalid: {why}")]
    Invalid { field: String, why: String },
    #[error("the hello block has more than {MAX_HOST_KEYS} host keys")]
    TooManyKeys,
}

impl Hello {
    pub fn is_empty(&self) -> bool {
        *self == Hello::default()
    }

    pub fn parse(input: &[u8]) -> Result<Hello, HelloError> {
        if input.len() > MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        if !input.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)) {
            return Err(HelloError::NotText);
        }
        let text = std::str::from_utf8(input).map_err(|_| HelloError::NotText)?;
        let mut hello = Hello::default();
        let mut seen = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once(": ") else {
                return Err(HelloError::Shape(i + 1));
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
                return Err(HelloError::Shape(i + 1));
            }
            if name != "hostkey" && !seen.insert(name.to_string()) {
                return Err(HelloError::Repeated(name.to_string()));
            }
            let invalid = |why: String| HelloError::Invalid { field: name.to_string(), why };
            match name {
                "protocol" => hello.protocol = Some(value.parse().map_err(|_| invalid("not a number".into()))?),
                "hostname" => hello.hostname = Some(names::host_name(value).map_err(invalid)?),
                "hostkey" => {
                    let key = names::public_key(value).map_err(invalid)?;
                    if hello.hostkeys.len() == MAX_HOST_KEYS {
                        return Err(HelloError::TooManyKeys);
                    }
                    let bare = names::key_without_comment(&key);
                    if !hello.hostkeys.contains(&bare) {
                        hello.hostkeys.push(bare);
                    }
                }
                "user" => hello.user = Some(names::user_name(value).map_err(invalid)?),
                "port" => match value.parse::<u16>() {
                    Ok(p) if p > 0 => hello.port = Some(p),
                    _ => return Err(invalid("not a port number 1-65535".into())),
                },
                "version" => {
                    if value.len() > 64 {
                        return Err(invalid("longer than 64 characters".into()));
                    }
                    hello.version = Some(value.to_string());
                }
                "token" => {
                    let ok = (1..=128).contains(&value.len())
                        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !ok {
                        return Err(invalid("must be 1 to 128 characters of [A-Za-z0-9_-]".into()));
                    }
                    hello.token = Some(value.to_string());
                }
                "installed-key" => hello.installed_key = Some(key_fingerprint(value).map_err(invalid)?),
                "rekey" => match value {
                    "finish" => hello.finish_rekey = true,
                    _ => return Err(invalid("the only value is \"finish\"".into())),
                },
                "accepts" => {
                    let words: Vec<&str> = value.split(' ').collect();
                    let word_ok = |w: &&str| {
                        (1..=32).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                    };
                    if words.len() > 16 || !words.iter().all(word_ok) {
                        return Err(invalid("must be at most 16 words of a-z and '-', one space apart".into()));
                    }
                    hello.accepts = words.into_iter().map(str::to_string).collect();
                }
                _ => {} // unknown names are ignored, for newer clients
            }
        }
        Ok(hello)
    }

    /// The block as `enroll` sends it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| out.push_str(&format!("{k}: {v}\n"));
        if let Some(p) = self.protocol {
            line("protocol", &p.to_string());
        }
        if let Some(h) = &self.hostname {
            line("hostname", h);
        }
        for k in &self.hostkeys {
            line("hostkey", k);
        }
        if let Some(u) = &self.user {
            line("user", u);
        }
        if let Some(p) = self.port {
            line("port", &p.to_string());
        }
        if let Some(v) = &self.version {
            line("version", v);
        }
        if let Some(t) = &self.token {
            line("token", t);
        }
        if let Some(k) = &self.installed_key {
            line("installed-key", k);
        }
        if self.finish_rekey {
            line("rekey", "finish");
        }
        if !self.accepts.is_empty() {
            line("accepts", &self.accepts.join(" "));
        }
        out
    }
}

/// An OpenSSH SHA-256 key fingerprint: `SHA256:` and 43 characters of
/// unpadded base64, as `ssh-keygen -l` prints it.
pub fn key_fingerprint(value: &str) -> Result<String, String> {
    let b64 = value.strip_prefix("SHA256:").ok_or("not a SHA256: key fingerprint")?;
    if b64.len() != 43 || !b64.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
        return Err("not a SHA256: key fingerprint (43 characters of base64)".into());
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";
    const FP: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

    #[test]
    fn round_trip() {
        let h = Hello {
            protocol: Some(2),
            hostname: Some("dormeur.example.org".into()),
            hostkeys: vec![KEY.into()],
            user: Some("bckpciuem".into()),
            port: Some(22),
            version: Some("0.1.0".into()),
            token: None,
            installed_key: Some(FP.into()),
            finish_rekey: true,
            accepts: vec!["run-dumps".into(), "rotate-key".into()],
        };
        assert_eq!(Hello::parse(h.render().as_bytes()).unwrap(), h);
        assert!(Hello::parse(b"").unwrap().is_empty(), "seed protocol sends nothing");
    }

    #[test]
    fn table() {
        let key_line = format!("hostkey: {KEY} root@x\n");
        let rows: Vec<(String, bool, &str)> = vec![
            ("protocol: 2\nhostname: a.b\n".into(), true, "minimal"),
            ("future: whatever\n".into(), true, "unknown name ignored"),
            (format!("{key_line}{key_line}"), true, "hostkey may repeat"),
            ("hostname: a\nhostname: b\n".into(), false, "repeated name"),
            ("hostname a\n".into(), false, "no colon-space"),
            ("Hostname: a\n".into(), false, "upper-case name"),
            ("hostname: a b\n".into(), false, "space in host name"),
            ("hostname: a\r\n".into(), false, "carriage return"),
            ("hostname: \u{e9}t\u{e9}\n".into(), false, "non-ASCII"),
            ("hostkey: command=\"sh\" ssh-ed25519 AAAA\n".into(), false, "key with options"),
            ("hostkey: ssh-ed25519 AAAA\n".into(), false, "broken key"),
            ("user: root;id\n".into(), false, "bad user"),
            ("port: 0\n".into(), false, "port zero"),
            ("port: 70000\n".into(), false, "port too big"),
            ("token: a b\n".into(), false, "bad token"),
            ("protocol: two\n".into(), false, "protocol not a number"),
            (format!("installed-key: {FP}\n"), true, "installed key fingerprint"),
            ("installed-key: MD5:aa:bb\n".into(), false, "not a SHA256 fingerprint"),
            (format!("installed-key: {FP}x\n"), false, "fingerprint too long"),
            (
                "installed-key: SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2\"\n".into(),
                false,
                "quote in fingerprint",
            ),
            (format!("installed-key: {FP}\ninstalled-key: {FP}\n"), false, "two installed keys"),
            ("rekey: finish\n".into(), true, "finishing a rekey"),
            ("rekey: start\n".into(), false, "unknown rekey step"),
            ("accepts: run-dumps\n".into(), true, "the dumps trigger"),
            ("accepts: run-dumps some-future-verb\n".into(), true, "words it does not know"),
            ("accepts: run-dumps;id\n".into(), false, "shell syntax"),
            ("accepts: run-dumps  x\n".into(), false, "two spaces"),
            ("accepts: \n".into(), false, "empty"),
            ("accepts: Run-Dumps\n".into(), false, "upper case"),
            (format!("accepts: {}\n", vec!["a"; 17].join(" ")), false, "too many words"),
        ];
        for (input, ok, why) in rows {
            assert_eq!(Hello::parse(input.as_bytes()).is_ok(), ok, "{why}: {input:?}");
        }
        assert_eq!(Hello::parse(&vec![b'a'; MAX_HELLO + 1]), Err(HelloError::TooLarge));
        // A workstation whose sshd has only ECDSA host keys.
        let ecdsa: String = names::tests::ECDSA_KEYS.iter().map(|k| format!("hostkey: {k} root@ws\n")).collect();
        let h = Hello::parse(ecdsa.as_bytes()).expect("ECDSA host keys accepted");
        assert_eq!(h.hostkeys, names::tests::ECDSA_KEYS, "kept bare, in order");
        let many = key_line.clone() + &(0..MAX_HOST_KEYS).map(|_| key_line.clone()).collect::<String>();
        assert!(Hello::parse(many.as_bytes()).is_ok(), "duplicates collapse, not counted twice");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_and_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(h) = Hello::parse(&bytes) {
                prop_assert_eq!(Hello::parse(h.render().as_bytes()), Ok(h));
            }
        }

        #[test]
        fn line_shaped_input(lines in prop::collection::vec("(protocol|hostname|user|port|version|token|installed-key|rekey|x): [ -~]{0,20}", 0..8)) {
            let text = lines.join("\n");
            if let Ok(h) = Hello::parse(text.as_bytes()) {
                prop_assert_eq!(Hello::parse(h.render().as_bytes()), Ok(h.clone()));
                if let Some(host) = &h.hostname {
                    prop_assert!(crate::names::host_name(host).is_ok());
                }
            }
        }
    }
}

//! The enrollment request: `SSH_ORIGINAL_COMMAND` of the register key,
//! exactly `OS:logon`. Parsed whole into a [`Request`]; anything that is
//! not a full match of the grammar is refused before any other work.

use std::fmt;

/// Longest command accepted: a 16-character OS, `:`, a 32-character logon.
pub const MAX_REQUEST_LEN: usize = 16 + 1 + 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub os: String,
    pub logon: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no command was given: expected OS:logon, for example linux:jdupont")]
    Missing,
    #[error("the command is longer than {MAX_REQUEST_LEN} characters: expected OS:logon")]
    TooLong,
    #[error("the command has a character that is not allowed ({0}): expected OS:logon with lower-case letters, digits, '_', '.', '-'")]
    BadCharacter(String),
    #[error("the command must be exactly OS:logon with one ':', for example linux:jdupont")]
    Shape,
    #[error("the OS part {0:?} must be a lower-case word of at most 16 letters or digits")]
    BadOs(String),
    #[error("the logon part must be 1 to 32 characters")]
    BadLogonLength,
}

impl Request {
    /// Parse the whole command. The logon is checked here only for the
    /// characters the protocol allows; the server's configured pattern and
    /// directory check come after.
    pub fn parse(command: &str) -> Result<Request, RequestError> {
        if command.is_empty() {
            return Err(RequestError::Missing);
        }
        if command.len() > MAX_REQUEST_LEN {
            return Err(RequestError::TooLong);
        }
        if let Some(c) = command.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))) {
            return Err(RequestError::BadCharacter(c.escape_default().to_string()));
        }
        let mut parts = command.split(':');
        let (Some(os), Some(logon), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(RequestError::Shape);
        };
        let os_ok = os.len() <= 16
            && os.starts_with(|c: char| c.is_ascii_lowercase())
            && os.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !os_ok {
            return Err(RequestError::BadOs(os.to_string()));
        }
        if logon.is_empty() || logon.len() > 32 {
            return Err(RequestError::BadLogonLength);
        }
        Ok(Request { os: os.to_string(), logon: logon.to_string() })
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.os, self.logon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)]
    fn table() {
        let rows: &[(&str, Option<(&str, &str)>, &str)] = &[
            ("linux:jdupont", Some(("linux", "jdupont")), "seed example"),
            ("mac:cmartin", Some(("mac", "cmartin")), "seed example"),
            ("linux:j.dupont-2_", Some(("linux", "j.dupont-2_")), "all logon punctuation"),
            ("linux:JDupont", Some(("linux", "JDupont")), "case left to the pattern"),
            ("", None, "empty"),
            ("linux", None, "no colon"),
            ("linux:", None, "empty logon"),
            (":jdupont", None, "empty OS"),
            ("linux:a:b", None, "third field"),
            ("linux:jdupont ", None, "trailing space"),
            ("linux:jdupont\n", None, "trailing newline"),
            ("linux:jd;id", None, "semicolon"),
            ("linux:$(id)", None, "command substitution"),
            ("linux:`id`", None, "backticks"),
            ("linux:jd'x", None, "quote"),
            ("Linux:jdupont", None, "upper-case OS"),
            ("1inux:jdupont", None, "OS starting with digit"),
            ("linux:jdupönt", None, "non-ASCII"),
            ("linux:jd\0", None, "NUL"),
            ("linux:../etc", None, "slash"),
            ("averyveryverylongos:x", None, "OS over 16"),
        ];
        for (input, want, why) in rows {
            let got = Request::parse(input).ok().map(|r| (r.os, r.logon));
            let want = want.map(|(o, l)| (o.to_string(), l.to_string()));
            assert_eq!(got, want, "{why}: {input:?}");
        }
        assert_eq!(Request::parse(&format!("linux:{}", "a".repeat(33))), Err(RequestError::BadLogonLength));
        assert_eq!(Request::parse(&"a".repeat(MAX_REQUEST_LEN + 1)), Err(RequestError::TooLong));
        assert!(Request::parse(&format!("linux:{}", "a".repeat(32))).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_and_accepted_prints_back(cmd in any::<String>()) {
            if let Ok(r) = Request::parse(&cmd) {
                prop_assert_eq!(r.to_string(), cmd);
            }
        }

        #[test]
        fn near_misses(os in "[a-z]{1,16}", logon in "[a-zA-Z0-9_.;$ -]{1,40}") {
            let cmd = format!("{os}:{logon}");
            let ok = Request::parse(&cmd).is_ok();
            let clean = logon.len() <= 32 && logon.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            prop_assert_eq!(ok, clean, "{}", cmd);
        }
    }
}

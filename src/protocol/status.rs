//! The status query: a workstation asks the server whether it is still
//! enrolled, without enrolling. The register key's command is exactly
//! [`COMMAND`] (`status`), which a server without this query refuses as a
//! malformed `OS:logon` request, so asking never enrolls anything; the
//! hello block on stdin names the host and proves which machine asks (its
//! host keys) and which key it has installed (`installed-key`).
//!
//! The answer is `status` and `name: value` lines ([`Status`]); `enroll`
//! treats it as untrusted: [`Status::parse`] accepts only the values below
//! and ignores names it does not know.

use crate::names;

/// The register key's command for a status query.
pub const COMMAND: &str = "status";

/// Largest status answer `enroll` reads.
pub const MAX_STATUS: usize = 16 * 1024;

/// What the server has for the host named by the asking connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Enrolled, and the asking machine's host keys are the pinned ones.
    Enrolled,
    /// An enrollment was interrupted on the server: enroll again to finish.
    Enrolling,
    /// Handed over by the admin (`forced-command adopt`), not enrolled yet.
    Adopted,
    /// Waiting for the admin's approval.
    Pending,
    /// Approved, not enrolled yet: enroll again.
    Approved,
    /// Revoked by the admin.
    Revoked,
    /// Denied by the admin.
    Denied,
    /// No enrollment under this name.
    Unknown,
    /// Enrolled, but with other host keys: another machine, or this one
    /// with new host keys. Nothing more is told.
    OtherMachine,
}

impl HostState {
    const ALL: [(HostState, &'static str); 9] = [
        (HostState::Enrolled, "enrolled"),
        (HostState::Enrolling, "enrolling"),
        (HostState::Adopted, "adopted"),
        (HostState::Pending, "pending"),
        (HostState::Approved, "approved"),
        (HostState::Revoked, "revoked"),
        (HostState::Denied, "denied"),
        (HostState::Unknown, "unknown"),
        (HostState::OtherMachine, "other-machine"),
    ];

    pub fn as_str(self) -> &'static str {
        HostState::ALL.iter().find(|(s, _)| *s == self).map(|(_, n)| *n).expect("every state is listed")
    }

    pub fn from_name(name: &str) -> Option<HostState> {
        HostState::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }
}

/// How the key the workstation says it installed compares with the
/// server's key files for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// The server's current key: backups use it.
    Current,
    /// The key before a re-enrollment that is not finished: backups still
    /// work; enroll again to finish.
    Previous,
    /// Neither: backups fail until the host enrolls again.
    Other,
    /// Not compared (no `installed-key` sent, or the host is not enrolled).
    Unknown,
}

impl KeyMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMatch::Current => "current",
            KeyMatch::Previous => "previous",
            KeyMatch::Other => "other",
            KeyMatch::Unknown => "unknown",
        }
    }

    fn from_name(name: &str) -> Option<KeyMatch> {
        [KeyMatch::Current, KeyMatch::Previous, KeyMatch::Other, KeyMatch::Unknown]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// The server's answer to a status query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The name the server gave the asking connection.
    pub host: String,
    pub state: HostState,
    pub key: KeyMatch,
    /// Whether BackupPC's hosts file lists the host.
    pub listed: bool,
    /// The logon the host is enrolled for; only told to the machine whose
    /// host keys and installed key match.
    pub logon: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("the server's status answer is larger than {MAX_STATUS} bytes")]
    TooLarge,
    #[error("the server's status answer is not printable ASCII text")]
    NotText,
    #[error("the server's answer is not a status answer")]
    NotStatus,
    #[error("the server's status answer line {0} is not 'name: value'")]
    Shape(usize),
    #[error("the server's status answer has no {0} line")]
    Missing(&'static str),
    #[error("the server's status answer has more than one {0} line")]
    Repeated(&'static str),
    #[error("the server's status answer has an invalid {field} line: {why}")]
    Invalid { field: &'static str, why: String },
}

impl Status {
    /// Whether backups through the installed key can work: enrolled, this
    /// machine, its key accepted, and the host in BackupPC's list.
    pub fn healthy(&self) -> bool {
        self.state == HostState::Enrolled && matches!(self.key, KeyMatch::Current | KeyMatch::Previous) && self.listed
    }

    /// One sentence for a person: what the server has, and what to do.
    pub fn explain(&self, server: &str) -> String {
        let host = &self.host;
        match (self.state, self.key) {
            (HostState::Enrolled, KeyMatch::Current) if self.listed => {
                format!("{server} lists this machine as host {host}, with the key installed here")
            }
            (HostState::Enrolled, KeyMatch::Previous) if self.listed => format!(
                "{server} lists this machine as host {host} and still accepts the key installed here, but a \
                 re-enrollment is not finished: run enroll to finish it"
            ),
            (HostState::Enrolled, KeyMatch::Current | KeyMatch::Previous) => format!(
                "{server} has host {host} enrolled but not in BackupPC's list of hosts, so it is never backed up: \
                 ask its administrator to check `forced-command show {host}`"
            ),
            (HostState::Enrolled, _) => format!(
                "{server} backs host {host} up with another key than the one installed here, so backups fail: run \
                 enroll --rekey"
            ),
            (HostState::Enrolling, _) => {
                format!("{server} has an unfinished enrollment of host {host}: run enroll --rekey to finish it")
            }
            (HostState::Adopted, _) => {
                format!("{server} has host {host} handed over to this toolkit but not enrolled: run enroll --rekey")
            }
            (HostState::Pending, _) => {
                format!("the enrollment of host {host} waits for the approval of {server}'s administrator")
            }
            (HostState::Approved, _) => {
                format!("{server}'s administrator approved host {host}: run enroll --rekey to finish the enrollment")
            }
            (HostState::Revoked, _) => format!(
                "{server}'s administrator revoked host {host}, so it is no longer backed up: ask them (they can \
                 clear it with `forced-command clear {host}`), then run enroll --rekey"
            ),
            (HostState::Denied, _) => format!("{server}'s administrator denied the enrollment of host {host}"),
            (HostState::Unknown, _) => format!(
                "{server} has no enrollment for host {host}, so it is not backed up: run enroll --rekey to enroll \
                 again"
            ),
            (HostState::OtherMachine, _) => format!(
                "{server} has host {host} enrolled with other SSH host keys than this machine's (another machine, \
                 or this one reinstalled): ask its administrator"
            ),
        }
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "status\nhost: {}\nstate: {}\nkey: {}\nlisted: {}\n",
            self.host,
            self.state.as_str(),
            self.key.as_str(),
            if self.listed { "yes" } else { "no" }
        );
        if let Some(l) = &self.logon {
            out.push_str(&format!("logon: {l}\n"));
        }
        out
    }

    /// Parse a status answer. `Err(NotStatus)` when the first line is not
    /// `status`: the whole text is then a message (or an older server's
    /// refusal).
    pub fn parse(input: &[u8]) -> Result<Status, StatusError> {
        if input.len() > MAX_STATUS {
            return Err(StatusError::TooLarge);
        }
        if !input.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)) {
            return Err(StatusError::NotText);
        }
        let text = std::str::from_utf8(input).map_err(|_| StatusError::NotText)?;
        let mut lines = text.lines();
        if lines.next() != Some("status") {
            return Err(StatusError::NotStatus);
        }
        let (mut host, mut state, mut key, mut listed, mut logon) = (None, None, None, None, None);
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once(": ") else {
                return Err(StatusError::Shape(i + 2));
            };
            let invalid = |field: &'static str, why: &str| StatusError::Invalid { field, why: why.to_string() };
            match name {
                "host" => once(
                    &mut host,
                    "host",
                    names::host_name(value).map_err(|why| StatusError::Invalid { field: "host", why })?,
                )?,
                "state" => {
                    once(&mut state, "state", HostState::from_name(value).ok_or(invalid("state", "unknown state"))?)?
                }
                "key" => once(&mut key, "key", KeyMatch::from_name(value).ok_or(invalid("key", "unknown value"))?)?,
                "listed" => once(
                    &mut listed,
                    "listed",
                    match value {
                        "yes" => true,
                        "no" => false,
                        _ => return Err(invalid("listed", "expected yes or no")),
                    },
                )?,
                "logon" => {
                    let ok = !value.is_empty()
                        && value.len() <= 32
                        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                    if !ok {
                        return Err(invalid("logon", "not 1 to 32 letters, digits, '_', '.', '-'"));
                    }
                    once(&mut logon, "logon", value.to_string())?
                }
                _ => {}
            }
        }
        Ok(Status {
            host: host.ok_or(StatusError::Missing("host"))?,
            state: state.ok_or(StatusError::Missing("state"))?,
            key: key.unwrap_or(KeyMatch::Unknown),
            listed: listed.unwrap_or(false),
            logon,
        })
    }
}

fn once<T>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), StatusError> {
    if slot.is_some() {
        return Err(StatusError::Repeated(field));
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Status {
        Status {
            host: "dormeur.example.org".into(),
            state: HostState::Enrolled,
            key: KeyMatch::Current,
            listed: true,
            logon: Some("jdupont".into()),
        }
    }

    #[test]
    fn round_trip_every_state() {
        for (state, _) in HostState::ALL {
            for key in [KeyMatch::Current, KeyMatch::Previous, KeyMatch::Other, KeyMatch::Unknown] {
                for listed in [true, false] {
                    let s = Status { state, key, listed, ..good() };
                    assert_eq!(Status::parse(s.render().as_bytes()), Ok(s));
                }
            }
        }
    }

    #[test]
    fn healthy_only_when_enrolled_listed_and_key_accepted() {
        assert!(good().healthy());
        assert!(Status { key: KeyMatch::Previous, ..good() }.healthy());
        assert!(!Status { key: KeyMatch::Other, ..good() }.healthy());
        assert!(!Status { key: KeyMatch::Unknown, ..good() }.healthy());
        assert!(!Status { listed: false, ..good() }.healthy());
        for (state, _) in HostState::ALL.into_iter().filter(|(s, _)| *s != HostState::Enrolled) {
            assert!(!Status { state, ..good() }.healthy(), "{state:?}");
        }
    }

    #[test]
    fn hostile_answers() {
        let rows: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"success\nkey: x\n", "an enrollment answer"),
            (b"Enrollment refused: the command must be exactly OS:logon\n", "an older server's refusal"),
            (b"status\nstate: enrolled\n", "no host"),
            (b"status\nhost: a.example\n", "no state"),
            (b"status\nhost: a.example\nstate: owned\n", "unknown state"),
            (b"status\nhost: a.example\nstate: enrolled\nstate: revoked\n", "state twice"),
            (b"status\nhost: a.example\nhost: b.example\nstate: enrolled\n", "host twice"),
            (b"status\nhost: ../../etc\nstate: enrolled\n", "host not a DNS name"),
            (b"status\nhost: a.example\nstate: enrolled\nlisted: maybe\n", "listed not yes/no"),
            (b"status\nhost: a.example\nstate: enrolled\nkey: mine\n", "unknown key match"),
            (b"status\nhost: a.example\nstate: enrolled\nlogon: a b\n", "logon with a space"),
            (b"status\nhost: a.example\nstate: enrolled\nlogon: \x1b[2J\n", "terminal escape"),
            (b"status\nhost: a.example\nstate: enrolled\nbroken\n", "line without ': '"),
            (b"status\r\nhost: a.example\r\nstate: enrolled\r\n", "carriage returns"),
            ("status\nhost: a.example\nstate: enrolled\nlogon: jérôme\n".as_bytes(), "non-ASCII"),
        ];
        for (input, why) in rows {
            assert!(Status::parse(input).is_err(), "{why}: accepted {:?}", String::from_utf8_lossy(input));
        }
        let big = format!("status\nhost: a.example\nstate: enrolled\n{}", "x: y\n".repeat(MAX_STATUS / 5));
        assert_eq!(Status::parse(big.as_bytes()), Err(StatusError::TooLarge));
        // Names it does not know are ignored (newer servers may send more).
        let s = Status::parse(b"status\nhost: a.example\nstate: revoked\nsince: 2026-12-01\n").unwrap();
        assert_eq!((s.state, s.key, s.listed, s.logon), (HostState::Revoked, KeyMatch::Unknown, false, None));
    }

    #[test]
    fn the_enrollment_grammar_refuses_the_query() {
        // What a server without the query does with it: a refusal that
        // names the expected `OS:logon` (enroll reads that as "too old"),
        // never an enrollment.
        let e = crate::protocol::request::Request::parse(COMMAND).unwrap_err();
        assert!(e.to_string().contains("OS:logon"), "{e}");
    }

    #[test]
    fn explanations_name_the_host_and_what_to_do() {
        for (state, _) in HostState::ALL {
            let text = Status { state, key: KeyMatch::Other, ..good() }.explain("backup.example.org");
            assert!(text.contains("dormeur.example.org"), "{state:?}: {text}");
        }
        assert!(Status { state: HostState::Revoked, ..good() }.explain("s").contains("forced-command clear"));
        assert!(Status { key: KeyMatch::Other, ..good() }.explain("s").contains("enroll --rekey"));
    }
}

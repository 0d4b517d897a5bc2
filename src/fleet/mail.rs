//! `fleet report --mail-to ADDRESS`: the report as a mail for the local
//! MTA (`sendmail`): the table as text, the page of [`super::html`]
//! attached. Both parts are base64, so nothing a host sent can end a part,
//! forge a header or make a line too long; the headers hold only the
//! checked addresses and the counts. Pure: the caller runs sendmail.

use thiserror::Error;

/// A recipient: `user` (a local account) or `local@domain`, in the plain
/// characters addresses use, so that it can stand in a header and on
/// sendmail's command line as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("{0:?} is not a mail address: write user@domain.example or a local user name (letters, digits and . _ % + - only)")]
    Invalid(String),
}

impl Address {
    pub fn parse(raw: &str) -> Result<Address, AddressError> {
        let bad = || AddressError::Invalid(crate::names::printable(raw));
        let (local, domain) = match raw.split_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (raw, None),
        };
        let local_ok = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
        if local.is_empty() || local.len() > 64 || !local.chars().all(local_ok) || local.starts_with(['-', '.']) {
            return Err(bad());
        }
        if let Some(d) = domain {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if d.len() > 253 || !d.split('.').all(label_ok) {
                return Err(bad());
            }
        }
        Ok(Address(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parts are separated by this line; base64 never holds `_`, so no part
/// can contain it.
const BOUNDARY: &str = "=_backuppc-enroll_fleet_report";

/// The file name of the attached page.
pub const PAGE_NAME: &str = "fleet-report.html";

/// The whole message, headers and body, lines ending in `\n` (sendmail
/// makes them CRLF on the wire).
pub fn message(to: &[Address], subject: &str, text: &str, page: &str) -> String {
    let to: Vec<&str> = to.iter().map(Address::as_str).collect();
    let mut m = String::with_capacity(1024 + (text.len() + page.len()) * 4 / 3);
    m.push_str(&format!("To: {}\n", to.join(", ")));
    m.push_str(&format!("Subject: {}\n", header_text(subject)));
    m.push_str("MIME-Version: 1.0\nAuto-Submitted: auto-generated\n");
    m.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n"));
    m.push_str("The fleet report: the table below, the page attached.\n");
    m.push_str(&format!(
        "\n--{BOUNDARY}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
    ));
    m.push_str(&base64_lines(text.as_bytes()));
    m.push_str(&format!(
        "\n--{BOUNDARY}\nContent-Type: text/html; charset=utf-8; name=\"{PAGE_NAME}\"\n\
         Content-Disposition: attachment; filename=\"{PAGE_NAME}\"\nContent-Transfer-Encoding: base64\n\n"
    ));
    m.push_str(&base64_lines(page.as_bytes()));
    m.push_str(&format!("\n--{BOUNDARY}--\n"));
    m
}

/// A header's text: printable ASCII only (anything else becomes `?`), on
/// one line, at most 200 characters.
fn header_text(raw: &str) -> String {
    raw.chars().take(200).map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect()
}

/// Base64 in lines of 76 characters, each ending in `\n`.
fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(b.len() + b.len() / 76 + 1);
    for chunk in b.as_bytes().chunks(76) {
        // base64's alphabet is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn addresses() {
        // (address, accepted, why)
        let rows: &[(&str, bool, &str)] = &[
            ("root", true, "a local account"),
            ("backup-admins@example.org", true, "an address"),
            ("a.b+fleet@mail.example.org", true, "tags and dots"),
            ("", false, "empty"),
            ("@example.org", false, "no local part"),
            ("a@", false, "no domain"),
            ("a@b@c", false, "two @"),
            ("a@-x.org", false, "a label starting with -"),
            ("a@x..org", false, "an empty label"),
            ("-oQ/tmp/x", false, "a sendmail option"),
            (".a@x.org", false, "a leading dot"),
            ("a@x.org\nBcc: evil@x.org", false, "a header smuggled in"),
            ("a@x.org\r", false, "a carriage return"),
            ("a b@x.org", false, "a space"),
            ("\"a\"@x.org", false, "quotes"),
            ("<a@x.org>", false, "angle brackets"),
            ("a,b@x.org", false, "a list in one"),
            ("é@x.org", false, "not ASCII"),
        ];
        for (raw, ok, why) in rows {
            assert_eq!(Address::parse(raw).is_ok(), *ok, "{why}: {raw:?}");
        }
    }

    fn decode(part: &str) -> String {
        let b64: String = part.lines().collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn hostile_text_cannot_forge_a_part_or_a_header() {
        let to = [Address::parse("root").unwrap(), Address::parse("ops@example.org").unwrap()];
        let hostile = format!("x\n--{BOUNDARY}\nContent-Type: text/html\n\n<script>\n\nBcc: evil@x.org\n.\n");
        let page = format!("<p>{}</p>", "y".repeat(5000));
        let m = message(&to, "Backup fleet: 1 of 2 hosts healthy\nBcc: evil@x.org", &hostile, &page);
        let (headers, body) = m.split_once("\n\n").unwrap();
        assert_eq!(
            headers,
            format!(
                "To: root, ops@example.org\nSubject: Backup fleet: 1 of 2 hosts healthy?Bcc: evil@x.org\n\
                 MIME-Version: 1.0\nAuto-Submitted: auto-generated\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\""
            )
        );
        let parts: Vec<&str> = body.split(&format!("\n--{BOUNDARY}")).collect();
        assert_eq!(parts.len(), 4, "preamble, text, page, end: {m}");
        assert_eq!(parts[3], "--\n");
        let (text_headers, text) = parts[1].split_once("\n\n").unwrap();
        assert!(text_headers.contains("text/plain; charset=utf-8"));
        assert_eq!(decode(text), hostile);
        let (page_headers, attached) = parts[2].split_once("\n\n").unwrap();
        assert!(page_headers.contains("filename=\"fleet-report.html\""));
        assert_eq!(decode(attached), page);
        // Every line short, none a lone dot, nothing but ASCII.
        assert!(m.lines().all(|l| l.len() <= 998 && l != "." && l.is_ascii()), "{m}");
    }
}

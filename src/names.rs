//! Validators for the names that cross a trust boundary: host names, user
//! names, paths and public keys. Each returns the value in its canonical
//! form, or says in plain words why it was refused. Everything that later
//! lands in a file another program parses (BackupPC's `hosts`, a Perl
//! config, `known_hosts`, `authorized_keys`) goes through one of these first.

use ssh_key::PublicKey;
use std::path::{Component, Path};

/// A DNS host name: labels of `[a-z0-9-]`, not starting or ending with `-`,
/// 1 to 63 characters each, 253 in all. Returned lower-cased.
pub fn host_name(raw: &str) -> Result<String, String> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("host name must be 1 to 253 characters, got {}", raw.len()));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("host name {:?} is not a valid DNS name", printable(raw)));
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// Whether `name` is an address in some spelling rather than a host name:
/// what `inet_aton` (and so `getaddrinfo`) turns into an IPv4 address —
/// one to four parts of decimal, octal (`0177`) or hex (`0x7f`) numbers,
/// so `2130706437`, `127.5`, `0x7f000005`, `0177.0.0.5` — and IPv6
/// literals. Any name whose last label is numeric counts too: no top-level
/// domain is all digits (RFC 3696 section 2), and such a name is read as
/// an address by some resolvers. A final root dot is ignored.
pub fn is_address_spelling(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.contains(':') || name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// A host name a client asked for or DNS gave: [`host_name`], and not an
/// address in any spelling ([`is_address_spelling`]), so one address can
/// never be enrolled under many spellings of itself.
pub fn client_host_name(raw: &str) -> Result<String, String> {
    let name = host_name(raw)?;
    if is_address_spelling(&name) {
        return Err(format!(
            "{:?} is an address, not a host name: give the machine a DNS name (or ask for host_naming = \"ip\")",
            printable(raw)
        ));
    }
    Ok(name)
}

/// Where a client reaches the server: a DNS host name or an IP address,
/// returned as given (a name lower-cased).
pub fn server_address(raw: &str) -> Result<String, String> {
    match raw.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(raw.to_string()),
        Err(_) => host_name(raw).map_err(|_| format!("{:?} is not a host name or an IP address", printable(raw))),
    }
}

/// A local account name usable in sudoers, sshd and a sudoers.d file name:
/// `[a-z_][a-z0-9_-]{0,31}` (no dot: sudo skips drop-ins whose name has one).
pub fn user_name(raw: &str) -> Result<String, String> {
    let mut bytes = raw.bytes();
    let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'_'));
    let rest_ok = bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if first_ok && rest_ok && raw.len() <= 32 {
        Ok(raw.to_string())
    } else {
        Err(format!(
            "user name {:?} must be 1 to 32 characters of [a-z0-9_-], starting with a letter or _",
            printable(raw)
        ))
    }
}

/// An absolute path with no `..`, no `.` component, no empty component
/// other than the leading `/`, and no control characters.
pub fn absolute_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("path {:?} is not absolute", printable(raw)));
    }
    if raw.len() > 4096 || raw.chars().any(|c| c.is_control()) {
        return Err(format!("path {:?} has control characters or is too long", printable(raw)));
    }
    for c in Path::new(raw).components() {
        match c {
            Component::RootDir | Component::Normal(_) => {}
            _ => return Err(format!("path {:?} has a '.' or '..' component", printable(raw))),
        }
    }
    if raw.contains("//") || raw.contains("/./") || raw.ends_with("/.") {
        return Err(format!("path {:?} is not in normal form", printable(raw)));
    }
    Ok(if raw.len() > 1 { raw.trim_end_matches('/').to_string() } else { raw.to_string() })
}

/// Algorithms accepted for public keys crossing the wire.
pub const KEY_ALGORITHMS: &[&str] =
    &["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"];

/// A bare OpenSSH public key: `algorithm base64 [comment]` with a known
/// algorithm, no options prefix, printable ASCII only. Returns the parsed
/// key; callers rebuild the line from it rather than copying the input.
pub fn public_key(raw: &str) -> Result<PublicKey, String> {
    if raw.len() > 16 * 1024 || !raw.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("public key has non-printable characters or is too long".into());
    }
    let algorithm = raw.split(' ').next().unwrap_or_default();
    if !KEY_ALGORITHMS.contains(&algorithm) {
        return Err(format!(
            "public key must start with one of {} (no options), got {:?}",
            KEY_ALGORITHMS.join(", "),
            truncate(algorithm, 40)
        ));
    }
    let key = PublicKey::from_openssh(raw).map_err(|e| format!("public key does not parse: {e}"))?;
    if key.algorithm().as_str() != algorithm {
        return Err("public key algorithm name does not match its data".into());
    }
    if let Some(ec) = key.key_data().ecdsa() {
        use ssh_key::public::EcdsaPublicKey as Ec;
        let on_curve = match ec {
            Ec::NistP256(_) => p256::ecdsa::VerifyingKey::try_from(ec).is_ok(),
            Ec::NistP384(_) => p384::ecdsa::VerifyingKey::try_from(ec).is_ok(),
            Ec::NistP521(_) => p521::ecdsa::VerifyingKey::try_from(ec).is_ok(),
        };
        if !on_curve {
            return Err(format!("public key {algorithm} is not a point on its curve"));
        }
    }
    Ok(key)
}

/// `algorithm base64` of a key, without its comment.
pub fn key_without_comment(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim_end().to_string()
}

/// `SHA256:…` fingerprint as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}

/// Escape a value for display in a one-line message: control and format
/// characters (newlines, escape sequences, bidi overrides, zero-width
/// characters) and backslashes become escapes, so a hostile value can
/// neither forge lines nor reorder or hide text; letters of any script are
/// kept as they are, so `jérôme` reads as `jérôme`.
pub fn printable(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else {
            push_shown(&mut out, c);
        }
    }
    truncate(&out, 80)
}

/// A value in double quotes for a one-line message, escaped as
/// [`printable`] does and with its own quotes escaped: `"j\u{202e}x"`.
/// Use it instead of `{:?}` on [`printable`], which escapes twice.
pub fn quoted(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 2);
    for c in raw.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => push_shown(&mut out, c),
        }
    }
    format!("\"{}\"", truncate(&out, 80))
}

/// A text of several lines for a person's terminal (a server's message, an
/// error): line breaks kept, tabs as spaces, every other control or format
/// character escaped as `\u{…}`, so the text cannot move the cursor,
/// recolour the terminal, reverse its letters or hide some of them.
pub fn display_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push_str("    "),
            _ => push_shown(&mut out, c),
        }
    }
    out
}

fn push_shown(out: &mut String, c: char) {
    if is_hidden(c) {
        out.push_str(&format!("\\u{{{:x}}}", c as u32));
    } else {
        out.push(c);
    }
}

/// Characters that do not show as themselves on a terminal: control
/// characters (Unicode category Cc), format characters (Cf: bidi embeddings,
/// overrides and isolates, zero-width spaces and joiners, the byte-order
/// mark, tags, …), line and paragraph separators, and the few letters and
/// marks that are drawn as nothing (Hangul fillers, the grapheme joiner,
/// variation selectors).
pub fn is_hidden(c: char) -> bool {
    const HIDDEN: &[(u32, u32)] = &[
        // Cf, as listed by Unicode 15.1's UnicodeData.txt.
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
        // Zl, Zp: a line break to the terminal's eye.
        (0x2028, 0x2029),
        // Drawn as nothing.
        (0x034f, 0x034f),
        (0x115f, 0x1160),
        (0x180b, 0x180d),
        (0x180f, 0x180f),
        (0x3164, 0x3164),
        (0xfe00, 0xfe0f),
        (0xffa0, 0xffa0),
        (0xe0100, 0xe01ef),
    ];
    let n = c as u32;
    c.is_control() || HIDDEN.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let table: &[(&str, Option<&str>, &str)] = &[
            ("dormeur", Some("dormeur"), "single label"),
            ("Dormeur.Example.ORG.", Some("dormeur.example.org"), "lower-cased, root dot dropped"),
            ("a-b.c", Some("a-b.c"), "hyphen inside"),
            ("", None, "empty"),
            ("-x", None, "leading hyphen"),
            ("x-", None, "trailing hyphen"),
            ("a..b", None, "empty label"),
            ("a b", None, "space"),
            ("a\nb", None, "newline"),
            ("a_b", None, "underscore is not DNS"),
            ("été", None, "non-ASCII"),
            ("x;rm", None, "shell metacharacter"),
        ];
        for (input, want, why) in table {
            assert_eq!(host_name(input).ok().as_deref(), *want, "{why}: {input:?}");
        }
        assert!(host_name(&"a".repeat(64)).is_err(), "label over 63");
        assert!(host_name(&format!("{}.x", "a.".repeat(130))).is_err(), "over 253");
    }

    #[test]
    fn address_spellings() {
        let table: &[(&str, bool, &str)] = &[
            ("127.0.0.5", true, "dotted quad"),
            ("127.0.0.5.", true, "dotted quad with root dot"),
            ("2130706437", true, "one 32-bit number"),
            ("127.5", true, "two parts: inet_aton fills the middle"),
            ("127.0.5", true, "three parts"),
            ("0x7f000005", true, "hex"),
            ("0X7F000005", true, "hex, upper-case prefix"),
            ("0x7f.0.0.5", true, "hex part"),
            ("0177.0.0.5", true, "octal part"),
            ("0", true, "zero"),
            ("0x", true, "bare hex prefix: a numeric-looking final label"),
            ("::1", true, "IPv6 literal"),
            ("::ffff:127.0.0.5", true, "IPv4-mapped IPv6"),
            ("fe80::1%lo", true, "scoped IPv6"),
            ("dormeur.123", true, "final label all digits"),
            ("dormeur.0x1f", true, "final label hex"),
            ("dormeur", false, "name"),
            ("dormeur.example.org", false, "FQDN"),
            ("127.0.0.5x", false, "letters after the number"),
            ("1e100.net", false, "numeric-looking first label, real TLD"),
            ("123.example.org", false, "numeric first label, named TLD"),
            ("0xg", false, "not hex"),
            ("x0", false, "digit after a letter"),
            ("localhost", false, "localhost is a name (its files are guarded elsewhere)"),
        ];
        for (input, want, why) in table {
            assert_eq!(is_address_spelling(input), *want, "{why}: {input:?}");
            if *want {
                assert!(client_host_name(input).is_err(), "{why}: {input:?} is refused as a host name");
            }
        }
        assert_eq!(client_host_name("Dormeur.Example.org.").as_deref(), Ok("dormeur.example.org"));
    }

    /// Differential: whatever the C library's own `inet_aton` reads as an
    /// address is never accepted as a client's host name.
    mod against_inet_aton {
        use proptest::prelude::*;

        extern "C" {
            // POSIX; the libc crate does not declare it.
            fn inet_aton(cp: *const libc::c_char, inp: *mut libc::in_addr) -> libc::c_int;
        }

        fn inet_aton_accepts(s: &str) -> bool {
            let c = std::ffi::CString::new(s).expect("no NUL in the generated strings");
            let mut out = libc::in_addr { s_addr: 0 };
            // SAFETY: `c` is a valid NUL-terminated string and `out` a valid
            // in_addr for inet_aton to write.
            unsafe { inet_aton(c.as_ptr(), &mut out) != 0 }
        }

        proptest! {
            #[test]
            fn numeric_shapes(s in "(0[xX])?[0-9a-fA-F]{0,10}(\\.(0[xX])?[0-9a-fA-F]{0,10}){0,4}\\.?") {
                if inet_aton_accepts(&s) {
                    prop_assert!(super::super::client_host_name(&s).is_err(), "{s:?} is an address");
                }
            }
        }
    }

    #[test]
    fn server_addresses() {
        let table: &[(&str, Option<&str>, &str)] = &[
            ("Backup.Example.org", Some("backup.example.org"), "name, lower-cased"),
            ("10.0.0.1", Some("10.0.0.1"), "IPv4"),
            ("fd00::1", Some("fd00::1"), "IPv6"),
            ("", None, "empty"),
            ("-oProxyCommand=x", None, "option-like"),
            ("backup\"\nrestore = true", None, "quote and newline"),
            ("[::1]", None, "bracketed"),
        ];
        for (raw, want, why) in table {
            assert_eq!(server_address(raw).ok().as_deref(), *want, "{why}");
        }
    }

    #[test]
    fn user_names() {
        let table: &[(&str, bool, &str)] = &[
            ("bckpciuem", true, "default"),
            ("_svc-1", true, "underscore and hyphen"),
            ("Root", false, "upper case"),
            ("a.b", false, "dot breaks sudoers.d"),
            ("1abc", false, "leading digit"),
            ("", false, "empty"),
            ("a b", false, "space"),
        ];
        for (input, ok, why) in table {
            assert_eq!(user_name(input).is_ok(), *ok, "{why}: {input:?}");
        }
        assert!(user_name(&"a".repeat(33)).is_err());
    }

    #[test]
    fn absolute_paths() {
        let table: &[(&str, Option<&str>, &str)] = &[
            ("/home", Some("/home"), "plain"),
            ("/home/", Some("/home"), "trailing slash dropped"),
            ("/", Some("/"), "root"),
            ("/home/a b", Some("/home/a b"), "space allowed"),
            ("home", None, "relative"),
            ("/home/../etc", None, "dot-dot"),
            ("/home/./x", None, "dot"),
            ("//home", None, "double slash"),
            ("/home\n/etc", None, "newline"),
        ];
        for (input, want, why) in table {
            assert_eq!(absolute_path(input).ok().as_deref(), *want, "{why}: {input:?}");
        }
    }

    #[test]
    fn shown_to_a_person() {
        let table: &[(&str, &str, &str)] = &[
            ("j\u{e9}r\u{f4}me", "\"j\u{e9}r\u{f4}me\"", "accented letters readable"),
            ("\u{5d0}\u{5d1}", "\"\u{5d0}\u{5d1}\"", "other scripts readable"),
            ("a\u{202e}b", "\"a\\u{202e}b\"", "right-to-left override"),
            ("a\u{200b}b\u{200d}c\u{200f}", "\"a\\u{200b}b\\u{200d}c\\u{200f}\"", "zero-width and marks"),
            ("\u{2066}x\u{2069}", "\"\\u{2066}x\\u{2069}\"", "isolates"),
            ("\u{feff}x", "\"\\u{feff}x\"", "byte-order mark"),
            ("x\u{e0041}", "\"x\\u{e0041}\"", "tag character"),
            ("a\nb\u{1b}[2J", "\"a\\u{a}b\\u{1b}[2J\"", "newline and escape"),
            ("a\u{2028}b", "\"a\\u{2028}b\"", "line separator"),
            ("a\"b\\", "\"a\\\"b\\\\\"", "own quote and backslash"),
            ("a\u{3164}b", "\"a\\u{3164}b\"", "invisible filler letter"),
        ];
        for (raw, want, why) in table {
            assert_eq!(quoted(raw), *want, "{why}");
            assert!(!printable(raw).chars().any(is_hidden), "{why}: printable hides nothing");
        }
        assert_eq!(printable("a\\u{202e}"), "a\\\\u{202e}", "a literal escape stays distinct from a real one");
        assert_eq!(
            display_text("line 1\nline\t2\u{202e}\u{1b}]0;x\u{7}"),
            "line 1\nline    2\\u{202e}\\u{1b}]0;x\\u{7}"
        );
        assert!(quoted(&"\u{e9}".repeat(100)).ends_with("\u{2026}\""), "truncated on a character boundary");
    }

    #[test]
    fn public_keys() {
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q c";
        assert!(public_key(good).is_ok());
        let bad: &[(&str, &str)] = &[
            (
                "command=\"sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q",
                "options prefix",
            ),
            ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "unknown algorithm"),
            ("ssh-ed25519 AAAA", "truncated data"),
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q c\nssh-ed25519 AAAA",
                "newline",
            ),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q",
                "algorithm does not match data",
            ),
        ];
        for (input, why) in bad {
            assert!(public_key(input).is_err(), "{why}");
        }
    }

    /// Host keys made by `ssh-keygen -t ecdsa -b 256|384|521`.
    pub(crate) const ECDSA_KEYS: [&str; 3] = [
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDJ+zlBkwS9jloU2X7xOXHNG7q4XFu+kuPg4wOH/cUyIzKsH7dnt613EQ0f0M1VWqNWpCMu2sIXKwvz0Vv2EjhI=",
        "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBOLlsyKCbMkmRBU8WEfUtzD2omj49Pm0t5INBrWkVWhoSUibe8hnEcgxTrsJGscjkWSuOKSWA7wT4SXRLBTbsjcNonTPbo04RrIKDiMD3BGXER4mzoxNYbI0WS+rJRLFdA==",
        "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAAYmOo0VFYUY0PL/18sb5s5LFsGCuJ65NuWAJuuFYsiyclJA/rspIR+UBRKKImygYLlVsNHBMLwOSqgDJoDhnPZygBA3HzFn6BQ6GyM2Acjpc9Rnaq0j+/ew8/jO16MPgPr89dbxUFA4g5WGtJgj2Uo9h8s4cc2GG+5AS4CF9SxYKMuqA==",
    ];

    #[test]
    fn ecdsa_public_keys() {
        for bare in ECDSA_KEYS {
            let key = public_key(&format!("{bare} root@host")).unwrap_or_else(|e| panic!("{bare}: {e}"));
            assert_eq!(key_without_comment(&key), bare, "re-serialised from the parsed key");
            assert!(fingerprint(&key).starts_with("SHA256:"));
        }
        // A well-formed encoding of a point that is not on P-256: (1, 1).
        let mut sec1 = vec![4u8];
        sec1.extend([0u8; 31]);
        sec1.push(1);
        sec1.extend([0u8; 31]);
        sec1.push(1);
        let off_curve = ssh_key::public::EcdsaPublicKey::from_sec1_bytes(&sec1).unwrap();
        let off_curve = PublicKey::new(ssh_key::public::KeyData::Ecdsa(off_curve), "").to_openssh().unwrap();
        let swapped = ECDSA_KEYS[0].replacen("nistp256", "nistp384", 1);
        let rows: &[(&str, &str)] = &[
            (&off_curve, "point not on the curve"),
            (&swapped, "algorithm name of another curve"),
            (&ECDSA_KEYS[1][..60], "truncated"),
            ("ecdsa-sha2-nistp192 AAAAE2VjZHNhLXNoYTItbmlzdHAxOTI=", "unsupported curve"),
            ("sk-ecdsa-sha2-nistp256@openssh.com AAAA", "security-key variant"),
        ];
        for (input, why) in rows {
            assert!(public_key(input).is_err(), "{why}: {input}");
        }
    }
}

//! The site bundle: what an organisation hands to its workstations so that
//! `enroll` needs no other input. It carries the client config naming the
//! server, the server's pinned host keys and the register key, as one
//! .tar.gz whose entries carry their own owner (root) and mode (0600 for
//! the key): unpacked as root with `tar -xpzf … -C /`, the files land right
//! whatever the umask or account of whoever built it.
//!
//! Everything here is pure: the files' contents are decided from the
//! administrator's inputs, checked, and packed into bytes in memory.

use crate::config::ClientConfig;
use crate::names;
use ssh_key::{PrivateKey, PublicKey};
use std::io::Write;

/// The commented client.toml the client package ships, the default base
/// of a bundle's config.
pub const CLIENT_TOML_TEMPLATE: &str = include_str!("../packaging/client.toml");

/// Where the bundle's files go, relative to `/`.
pub const DIR: &str = "etc/backuppc-enroll";
const HOST_KEYS: &str = "/etc/backuppc-enroll/server_host_keys";
const REGISTER_KEY: &str = "/etc/backuppc-enroll/register-key";

/// What a bundle says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub server: String,
    pub port: u16,
    pub server_user: Option<String>,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to `/`, for example `etc/backuppc-enroll/register-key`.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// The keys of a `.pub` file, or of ssh-keyscan or known_hosts text (the
/// host field is dropped: the bundle pins the keys for its own server).
pub fn host_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            return Err(format!(
                "line {}: known_hosts markers (@cert-authority, @revoked) cannot be pinned; give the plain host keys",
                n + 1
            ));
        }
        let key = names::public_key(line).or_else(|bare| match line.split_once(char::is_whitespace) {
            Some((_host, rest)) => names::public_key(rest.trim_start()).map_err(|_| bare),
            None => Err(bare),
        });
        keys.push(key.map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    if keys.is_empty() {
        return Err("no host key in it (expected a .pub file or ssh-keyscan output)".into());
    }
    Ok(keys)
}

/// The `server_host_keys` file: each key once, for the server's name as
/// `enroll` looks it up (`[host]:port` when the port is not 22).
pub fn known_hosts(site: &Site, keys: &[PublicKey]) -> String {
    let pattern = if site.port == 22 { site.server.clone() } else { format!("[{}]:{}", site.server, site.port) };
    let mut out = String::from("# The backup server's sshd host keys, pinned by `enroll bundle`.\n");
    let mut seen = Vec::new();
    for k in keys {
        let line = names::key_without_comment(k);
        if !seen.contains(&line) {
            out.push_str(&format!("{pattern} {line}\n"));
            seen.push(line);
        }
    }
    out
}

/// Check the private register key and return its public half: it must be
/// an OpenSSH private key without a passphrase (enroll runs unattended).
pub fn register_key(bytes: &[u8]) -> Result<PublicKey, String> {
    let key = PrivateKey::from_openssh(bytes)
        .map_err(|e| format!("not an OpenSSH private key ({e}); make one with ssh-keygen -t ed25519 -N ''"))?;
    if key.is_encrypted() {
        return Err("it has a passphrase, which enroll cannot type: make the register key with ssh-keygen -N ''".into());
    }
    Ok(key.public_key().clone())
}

/// `template` (a client.toml) with the server, port, server user and the
/// paths of the bundle's keys set: an existing line for the key, commented
/// out or not, is replaced, so the comments stay next to it. The result
/// must parse and say what was asked, or nothing is returned.
pub fn client_toml(template: &str, site: &Site) -> Result<String, String> {
    names::server_address(&site.server).map_err(|e| format!("server: {e}"))?;
    if let Some(u) = &site.server_user {
        names::user_name(u).map_err(|e| format!("server user: {e}"))?;
    }
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut settings = vec![("server", quoted(&site.server)), ("port", site.port.to_string())];
    if let Some(u) = &site.server_user {
        settings.push(("server_user", quoted(u)));
    }
    settings.push(("server_host_keys", quoted(HOST_KEYS)));
    settings.push(("register_key", quoted(REGISTER_KEY)));
    let mut text = template.to_string();
    for (key, value) in &settings {
        text = set_key(&text, key, value);
    }
    let parsed: ClientConfig =
        toml::from_str(&text).map_err(|e| format!("the client config does not parse once the server is set: {e}"))?;
    let expected_user = site.server_user.clone().unwrap_or_else(|| parsed.server_user.clone());
    if parsed.server.as_deref() != Some(site.server.as_str())
        || parsed.port != site.port
        || parsed.server_user != expected_user
        || parsed.server_host_keys.as_os_str() != HOST_KEYS
        || parsed.register_key.as_os_str() != REGISTER_KEY
    {
        return Err("the client config could not be rewritten line by line (a key spans several lines?)".into());
    }
    Ok(text)
}

/// Replace the top-level line setting `key` (preferring an active one to a
/// commented-out one), or add it before the first table.
fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let top_level = lines.iter().position(|l| l.trim_start().starts_with('[')).unwrap_or(lines.len());
    let sets = |line: &str, commented: bool| {
        let mut l = line.trim_start();
        if commented {
            match l.strip_prefix('#') {
                Some(rest) => l = rest.trim_start(),
                None => return false,
            }
        }
        l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let line = format!("{key} = {value}");
    let found =
        (0..top_level).find(|&i| sets(&lines[i], false)).or_else(|| (0..top_level).find(|&i| sets(&lines[i], true)));
    match found {
        Some(i) => lines[i] = line,
        None => lines.insert(top_level, line),
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The bundle's files.
pub fn entries(client_toml: String, known_hosts: String, register_key: Vec<u8>) -> Vec<Entry> {
    vec![
        Entry { path: format!("{DIR}/client.toml"), contents: client_toml.into_bytes(), mode: 0o644 },
        Entry { path: format!("{DIR}/server_host_keys"), contents: known_hosts.into_bytes(), mode: 0o644 },
        Entry { path: format!("{DIR}/register-key"), contents: register_key, mode: 0o600 },
    ]
}

/// A gzip'd tar of `entries` (and their folder, 0755), every entry owned
/// by root, dated `mtime`.
pub fn tar_gz(entries: &[Entry], mtime: u64) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root")?;
        h.set_groupname("root")?;
        h.set_mtime(mtime);
        h.set_size(size);
        Ok::<_, std::io::Error>(h)
    };
    let mut dir = header(tar::EntryType::Directory, 0o755, 0)?;
    tar.append_data(&mut dir, format!("{DIR}/"), std::io::empty())?;
    for e in entries {
        let mut h = header(tar::EntryType::Regular, e.mode, e.contents.len() as u64)?;
        tar.append_data(&mut h, &e.path, e.contents.as_slice())?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOAtGEPL38yR09qVtT1lfn2nMIKASLkXsPwaZ1BwlsLp";
    const ED2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA5XHwA1qXLcz0+k+nNbG/XBvRTT4JkVYYAViGLmeHFd";
    /// `ssh-keygen -t ed25519 -N secret`: a register key enroll could not use.
    const WITH_PASSPHRASE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABB6jdBCev
cDKEzdibeNlVATAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAINOa1kom324LR8hP
6Asnj5igKhYoMtYnozgVBDrf5f5MAAAAkJ5S67qFHu/GyW5IBFFNIP/ojplgontnGxwT0A
Pul9z0Y7U19kDiW0DcM6VAD4qnNdbFSDMwX1Ts/Cd9kK2XIAqpRrQjEjKS/0EgPlieXirP
Ymd698IDsLQDjxqLpzmYg+9/4d6BlOM0f7+03cdIk24O7GfXfD5pV6WaAqjjs3sDETglPE
749+6MTRfIXTxexQ==
-----END OPENSSH PRIVATE KEY-----
";

    fn site(port: u16) -> Site {
        Site { server: "backup.example.org".into(), port, server_user: None }
    }

    #[test]
    fn host_keys_from_every_format() {
        for (text, want, why) in [
            (format!("{ED} root@backup\n"), 1, ".pub file with a comment"),
            (format!("# backup.example.org:22 SSH-2.0-OpenSSH_9.2\nbackup.example.org {ED}\n"), 1, "ssh-keyscan"),
            (format!("[backup]:2222,10.0.0.1 {ED}\n|1|abc=|def= {ED2}\n"), 2, "known_hosts, hashed too"),
            (format!("\n{ED}\n\n{ED2}\n"), 2, "blank lines"),
        ] {
            assert_eq!(host_keys(&text).map(|k| k.len()), Ok(want), "{why}");
        }
        for (text, why) in [
            ("", "empty"),
            ("# only a comment\n", "comments only"),
            ("@cert-authority *.example.org ssh-ed25519 AAAA", "marker"),
            ("backup ssh-ed25519 AAAAnot-base64", "bad key data"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key by mistake"),
            ("backup ssh-dss AAAAB3NzaC1kc3MAAACBAP", "unknown algorithm"),
        ] {
            assert!(host_keys(text).is_err(), "{why}");
        }
    }

    #[test]
    fn known_hosts_uses_the_lookup_pattern_and_dedupes() {
        let keys = host_keys(&format!("{ED} a\n{ED} b\n{ED2}\n")).unwrap();
        let text = known_hosts(&site(22), &keys);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 2);
        assert_eq!(crate::ssh::client::pinned_keys(&text, "backup.example.org", 22), vec![ED.to_string(), ED2.into()]);
        let text = known_hosts(&site(2222), &keys);
        assert_eq!(crate::ssh::client::pinned_keys(&text, "backup.example.org", 2222).len(), 2);
        assert!(crate::ssh::client::pinned_keys(&text, "backup.example.org", 22).is_empty());
    }

    #[test]
    fn client_toml_sets_keys_in_place() {
        let s = Site { server_user: Some("bpc".into()), ..site(2222) };
        let text = client_toml(CLIENT_TOML_TEMPLATE, &s).unwrap();
        let c: ClientConfig = toml::from_str(&text).unwrap();
        assert_eq!((c.server.as_deref(), c.port, c.server_user.as_str()), (Some("backup.example.org"), 2222, "bpc"));
        assert_eq!(c.register_key, std::path::Path::new(REGISTER_KEY));
        // Replaced where the template documents them: the comments stay.
        assert_eq!(text.lines().count(), CLIENT_TOML_TEMPLATE.lines().count());
        let at = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap();
        assert_eq!(at("server = "), CLIENT_TOML_TEMPLATE.lines().position(|l| l.starts_with("#server = ")).unwrap());

        let base = "# site\nserver = \"old\"\nbackup_user = \"sauve\"\nshares = [\n  \"/home\",\n]\n[unknown]\n";
        let err = client_toml(base, &s).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
        let base = "# site\nserver = \"old\"\nbackup_user = \"sauve\"\nshares = [\n  \"/home\",\n]\n";
        let text = client_toml(base, &s).unwrap();
        let c: ClientConfig = toml::from_str(&text).unwrap();
        assert_eq!((c.server.as_deref(), c.backup_user.as_str()), (Some("backup.example.org"), "sauve"));
        assert_eq!(c.shares, Some(vec!["/home".to_string()]));
    }

    #[test]
    fn client_toml_refuses_hostile_values() {
        for (server, user, why) in [
            ("backup\"\nrestore = true\n#", None, "TOML injection in the server"),
            ("-oProxyCommand=x", None, "option-like server"),
            ("", None, "empty server"),
            ("backup.example.org", Some("root\nrestore = true"), "newline in the user"),
        ] {
            let s = Site { server: server.into(), port: 22, server_user: user.map(str::to_string) };
            assert!(client_toml(CLIENT_TOML_TEMPLATE, &s).is_err(), "{why}");
        }
        assert!(client_toml(CLIENT_TOML_TEMPLATE, &Site { server: "10.0.0.1".into(), ..site(22) }).is_ok());
        assert!(client_toml(CLIENT_TOML_TEMPLATE, &Site { server: "fd00::1".into(), ..site(22) }).is_ok());
    }

    #[test]
    fn register_key_must_be_a_bare_private_key() {
        let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let pem = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
        assert_eq!(register_key(pem.as_bytes()).unwrap(), key.public_key().clone());
        let err = register_key(WITH_PASSPHRASE.as_bytes()).unwrap_err();
        assert!(err.contains("passphrase"), "{err}");
        assert!(register_key(ED.as_bytes()).is_err(), "a public key");
        assert!(register_key(b"").is_err(), "empty");
    }

    #[test]
    fn tarball_entries_are_root_owned_with_their_modes() {
        let bytes = tar_gz(&entries("c".into(), "k".into(), b"secret".to_vec()), 1_700_000_000).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let got: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("etc/backuppc-enroll/".to_string(), 0o755, 0, 0),
                ("etc/backuppc-enroll/client.toml".into(), 0o644, 0, 0),
                ("etc/backuppc-enroll/server_host_keys".into(), 0o644, 0, 0),
                ("etc/backuppc-enroll/register-key".into(), 0o600, 0, 0),
            ]
        );
    }
}

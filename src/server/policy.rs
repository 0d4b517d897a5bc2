//! The server's enrollment decisions as plain functions: is this OS
//! allowed, does this logon match the pattern and exist, may this address
//! enroll, what is this host called. Lookups that touch the system (NSS,
//! DNS) are behind [`Directory`] and [`Resolver`] so every rule is tested
//! without them.

use crate::config::{HostNaming, LogonCheck, ServerConfig};
use crate::names;
use crate::store::registry::Enrollment;
use std::net::IpAddr;

/// A refusal, worded for the person at the workstation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("operating system {os:?} is not accepted by this server (accepted: {allowed})")]
    Os { os: String, allowed: String },
    #[error("logon {0:?} does not have the form this server accepts: check the spelling")]
    LogonPattern(String),
    #[error("logon {0:?} is not known to this server's directory: check the spelling or ask the helpdesk")]
    LogonUnknown(String),
    #[error("the logon directory could not be asked ({0}): try again later or tell the backup administrator")]
    DirectoryDown(String),
    #[error("address {0} is not in a network allowed to enroll: enroll from the organisation's network")]
    Network(IpAddr),
    #[error("the server could not tell the client's address")]
    NoAddress,
    #[error("{0}")]
    HostName(String),
}

pub fn check_os(cfg: &ServerConfig, os: &str) -> Result<(), Refusal> {
    if cfg.allowed_os.iter().any(|a| a == os) {
        Ok(())
    } else {
        Err(Refusal::Os { os: os.into(), allowed: cfg.allowed_os.join(", ") })
    }
}

pub fn check_logon_pattern(cfg: &ServerConfig, logon: &str) -> Result<(), Refusal> {
    // Anchor the whole pattern, whatever the admin wrote.
    let re =
        regex::Regex::new(&format!("^(?:{})$", cfg.logon_pattern)).map_err(|_| Refusal::LogonPattern(logon.into()))?;
    if re.is_match(logon) {
        Ok(())
    } else {
        Err(Refusal::LogonPattern(logon.into()))
    }
}

pub fn check_network(cfg: &ServerConfig, client: Option<IpAddr>) -> Result<IpAddr, Refusal> {
    let ip = client.ok_or(Refusal::NoAddress)?;
    if cfg.networks.iter().any(|n| n.contains(&ip)) {
        Ok(ip)
    } else {
        Err(Refusal::Network(ip))
    }
}

/// Where logons are looked up.
pub trait Directory {
    /// `Ok(true)` when the logon exists; `Err` when the directory cannot
    /// answer (which is a refusal, never an acceptance).
    fn exists(&self, logon: &str) -> Result<bool, String>;
}

/// The system's NSS (`getpwnam`): files, and LDAP through sssd or nslcd.
pub struct Nss;

impl Directory for Nss {
    fn exists(&self, logon: &str) -> Result<bool, String> {
        nix::unistd::User::from_name(logon).map(|u| u.is_some()).map_err(|e| format!("NSS: {e}"))
    }
}

/// An allow-list file, one logon per line, `#` comments.
pub struct AllowList(pub String);

impl Directory for AllowList {
    fn exists(&self, logon: &str) -> Result<bool, String> {
        Ok(self.0.lines().map(|l| l.split('#').next().unwrap_or("").trim()).any(|l| l == logon))
    }
}

pub fn check_logon(check: LogonCheck, dir: &dyn Directory, logon: &str) -> Result<(), Refusal> {
    if check == LogonCheck::Any {
        return Ok(());
    }
    match dir.exists(logon) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::LogonUnknown(logon.into())),
        Err(e) => Err(Refusal::DirectoryDown(e)),
    }
}

/// Name lookups for host naming.
pub trait Resolver {
    fn forward(&self, name: &str) -> Vec<IpAddr>;
    fn reverse(&self, ip: IpAddr) -> Option<String>;
}

/// The system resolver (`getaddrinfo`, `getnameinfo`).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn forward(&self, name: &str) -> Vec<IpAddr> {
        dns_lookup::lookup_host(name)
            .map(|v| v.into_iter().map(crate::ssh::env::canonical).collect())
            .unwrap_or_default()
    }
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        dns_lookup::lookup_addr(&ip).ok()
    }
}

/// A name from the hello block or DNS that may become a BackupPC host:
/// a DNS name, not an address in any spelling, not one BackupPC keeps.
fn acceptable(name: &str) -> Result<String, Refusal> {
    let name = names::client_host_name(name).map_err(Refusal::HostName)?;
    crate::backuppc::names::check_host(&name).map_err(Refusal::HostName)?;
    Ok(name)
}

/// The BackupPC host name for a client.
pub fn host_name(
    naming: HostNaming,
    hello_name: Option<&str>,
    ip: IpAddr,
    resolver: &dyn Resolver,
) -> Result<String, Refusal> {
    let confirmed = |name: &str| resolver.forward(name).contains(&ip);
    let reverse = || -> Result<String, Refusal> {
        let name = resolver.reverse(ip).ok_or_else(|| {
            Refusal::HostName(format!(
                "address {ip} has no reverse DNS name: ask the network administrator to register this machine"
            ))
        })?;
        let name = acceptable(&name)?;
        if confirmed(&name) {
            Ok(name)
        } else {
            Err(Refusal::HostName(format!("the reverse DNS name {name} of {ip} does not resolve back to it")))
        }
    };
    match naming {
        HostNaming::Ip => Ok(ip_host_name(ip)),
        HostNaming::ReverseDns => reverse(),
        HostNaming::Confirmed => match hello_name {
            // A name that is not acceptable is refused with its own
            // reason, unless the address has a good reverse name.
            Some(n) => match acceptable(n) {
                Err(why) => reverse().map_err(|_| why),
                Ok(n) if confirmed(&n) => Ok(n),
                Ok(n) => reverse().map_err(|_| {
                    Refusal::HostName(format!(
                        "host name {n} does not resolve to the address {ip} this machine connects from, and {ip} has no confirmed reverse DNS name: register the machine in DNS"
                    ))
                }),
            },
            None => reverse(),
        },
    }
}

/// A host name made from an address: `10.1.2.3` stays itself, IPv6
/// colons become dashes (BackupPC names folders after hosts).
pub fn ip_host_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("ip6-{}", v6.to_string().replace(':', "-")),
    }
}

/// What `mode = "approve"` does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Enroll now.
    Proceed,
    /// Record the request as pending (replacing any earlier one); the note
    /// tells the client why an earlier decision does not cover it.
    Wait(Option<String>),
    /// The very same request already waits: nothing to record.
    StillWaiting,
    Refuse(String),
}

/// Whether two lists of host-key fingerprints hold the same keys.
pub fn same_host_keys(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// The approval rule. An approval covers exactly the request the admin
/// saw (`forced-command pending` shows its logon, OS and host-key
/// fingerprints): a request with anything else waits anew, and nothing of
/// it is pinned. A live host (`live`, its `hosts` entry) re-enrolls
/// without approval only for the same logon, OS and host keys.
pub fn approval(live: Option<&Enrollment>, request: Option<&Enrollment>, asking: &Enrollment) -> Approval {
    let same = |e: &Enrollment| {
        e.logon == asking.logon
            && e.os == asking.os
            && same_host_keys(&e.host_key_fingerprints, &asking.host_key_fingerprints)
    };
    let host = &asking.host;
    if live.is_some_and(|e| e.state == "enrolled" && same(e)) {
        return Approval::Proceed;
    }
    match request {
        Some(r) if r.state == "denied" => {
            Approval::Refuse(format!("the enrollment of {host} was denied by the backup administrator"))
        }
        Some(r) if r.logon != asking.logon => Approval::Refuse(format!(
            "another logon's enrollment of {host} is already waiting for the backup administrator or approved"
        )),
        Some(r) if same(r) && r.state == "approved" => Approval::Proceed,
        Some(r) if same(r) => Approval::StillWaiting,
        Some(r) => Approval::Wait(Some(format!(
            "this request for {host} is not the one the backup administrator {} (its host keys or OS differ), so it waits for approval anew",
            if r.state == "approved" { "approved" } else { "was shown" }
        ))),
        None if live.is_some_and(|e| e.state == "enrolled" && e.logon == asking.logon) => Approval::Wait(Some(format!(
            "{host}'s host keys or OS differ from those it was enrolled with, so the change waits for approval"
        ))),
        None => Approval::Wait(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeDns {
        fwd: HashMap<&'static str, Vec<IpAddr>>,
        rev: HashMap<IpAddr, &'static str>,
    }
    impl Resolver for FakeDns {
        fn forward(&self, name: &str) -> Vec<IpAddr> {
            self.fwd.get(name).cloned().unwrap_or_default()
        }
        fn reverse(&self, ip: IpAddr) -> Option<String> {
            self.rev.get(&ip).map(|s| s.to_string())
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn naming_table() {
        let dns = FakeDns {
            fwd: HashMap::from([
                ("dormeur.example.org", vec![ip("10.0.0.5")]),
                ("liar.example.org", vec![ip("10.0.0.99")]),
                ("rev.example.org", vec![ip("10.0.0.7")]),
                // What getaddrinfo answers for these spellings.
                ("2130706437", vec![ip("127.0.0.5")]),
                ("127.5", vec![ip("127.0.0.5")]),
                ("0x7f000005", vec![ip("127.0.0.5")]),
                ("0177.0.0.5", vec![ip("127.0.0.5")]),
                ("127.0.0.5", vec![ip("127.0.0.5")]),
                ("host.5", vec![ip("127.0.0.5")]),
                ("config", vec![ip("127.0.0.5"), ip("10.0.0.6")]),
                ("localconfig", vec![ip("127.0.0.5")]),
                ("2130706439", vec![ip("10.0.0.7")]),
                ("10.0.0.4", vec![ip("10.0.0.4")]),
            ]),
            rev: HashMap::from([
                (ip("10.0.0.7"), "rev.example.org"),
                (ip("10.0.0.8"), "unconfirmed.example.org"),
                (ip("10.0.0.6"), "config"),
                (ip("10.0.0.4"), "10.0.0.4"),
            ]),
        };
        use HostNaming::*;
        let rows: &[(HostNaming, Option<&str>, &str, Option<&str>, &str)] = &[
            (Confirmed, Some("dormeur.example.org"), "10.0.0.5", Some("dormeur.example.org"), "hello name confirmed"),
            (Confirmed, Some("liar.example.org"), "10.0.0.5", None, "hello name points elsewhere, no reverse"),
            (
                Confirmed,
                Some("liar.example.org"),
                "10.0.0.7",
                Some("rev.example.org"),
                "falls back to confirmed reverse",
            ),
            (Confirmed, None, "10.0.0.7", Some("rev.example.org"), "seed client: reverse DNS"),
            (Confirmed, None, "10.0.0.8", None, "reverse not confirmed"),
            (ReverseDns, Some("dormeur.example.org"), "10.0.0.5", None, "hello name ignored"),
            (ReverseDns, None, "10.0.0.7", Some("rev.example.org"), "reverse confirmed"),
            (Ip, None, "10.0.0.9", Some("10.0.0.9"), "address as name"),
            (Ip, None, "fd00::1", Some("ip6-fd00--1"), "IPv6 address as name"),
            (Confirmed, Some("2130706437"), "127.0.0.5", None, "the address as one number"),
            (Confirmed, Some("127.5"), "127.0.0.5", None, "the address in two parts"),
            (Confirmed, Some("0x7f000005"), "127.0.0.5", None, "the address in hex"),
            (Confirmed, Some("0177.0.0.5"), "127.0.0.5", None, "the address with an octal part"),
            (Confirmed, Some("127.0.0.5"), "127.0.0.5", None, "the address itself"),
            (Confirmed, Some("host.5"), "127.0.0.5", None, "numeric final label"),
            (Confirmed, Some("config"), "127.0.0.5", None, "BackupPC's main config.pl"),
            (Confirmed, Some("localconfig"), "127.0.0.5", None, "Debian's site-wide localconfig.pl"),
            (Confirmed, Some("2130706439"), "10.0.0.7", Some("rev.example.org"), "address spelling, good reverse"),
            (Confirmed, None, "10.0.0.6", None, "reverse DNS says config"),
            (Confirmed, None, "10.0.0.4", None, "reverse DNS gives an address"),
        ];
        for (naming, hello, addr, want, why) in rows {
            let got = host_name(*naming, *hello, ip(addr), &dns).ok();
            assert_eq!(got.as_deref(), *want, "{why}");
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn approval_table() {
        let e = |logon: &str, os: &str, keys: &[&str], state: &str| Enrollment {
            host: "dormeur".into(),
            logon: logon.into(),
            os: os.into(),
            address: "10.0.0.5".into(),
            key_fingerprint: String::new(),
            host_key_fingerprints: keys.iter().map(|k| k.to_string()).collect(),
            enrolled_at: String::new(),
            state: state.into(),
        };
        let asking = e("cmartin", "linux", &["SHA256:a", "SHA256:b"], "pending");
        let rows: Vec<(Option<Enrollment>, Option<Enrollment>, fn(&Approval) -> bool, &str)> = vec![
            (None, None, |a| *a == Approval::Wait(None), "first request waits"),
            (
                None,
                Some(e("cmartin", "linux", &["SHA256:b", "SHA256:a"], "approved")),
                |a| *a == Approval::Proceed,
                "approved, same keys in another order",
            ),
            (
                None,
                Some(e("cmartin", "linux", &["SHA256:a", "SHA256:c"], "approved")),
                |a| matches!(a, Approval::Wait(Some(n)) if n.contains("approved")),
                "approved, other host keys: waits anew",
            ),
            (
                None,
                Some(e("cmartin", "linux", &["SHA256:a"], "approved")),
                |a| matches!(a, Approval::Wait(Some(_))),
                "approved with fewer keys: waits anew",
            ),
            (
                None,
                Some(e("cmartin", "linux", &[], "approved")),
                |a| matches!(a, Approval::Wait(Some(_))),
                "approved a seed client (no keys), now keys",
            ),
            (
                None,
                Some(e("cmartin", "mac", &["SHA256:a", "SHA256:b"], "approved")),
                |a| matches!(a, Approval::Wait(Some(_))),
                "approved for another OS",
            ),
            (
                None,
                Some(e("cmartin", "linux", &["SHA256:a", "SHA256:b"], "pending")),
                |a| *a == Approval::StillWaiting,
                "same request still waits",
            ),
            (
                None,
                Some(e("cmartin", "linux", &["SHA256:x"], "pending")),
                |a| matches!(a, Approval::Wait(Some(n)) if n.contains("was shown")),
                "pending with other keys: replaced",
            ),
            (
                None,
                Some(e("jdupont", "linux", &["SHA256:a", "SHA256:b"], "approved")),
                |a| matches!(a, Approval::Refuse(_)),
                "another logon's approval",
            ),
            (
                None,
                Some(e("jdupont", "linux", &[], "pending")),
                |a| matches!(a, Approval::Refuse(_)),
                "another logon waits",
            ),
            (
                None,
                Some(e("cmartin", "linux", &["SHA256:a", "SHA256:b"], "denied")),
                |a| matches!(a, Approval::Refuse(m) if m.contains("denied")),
                "denied",
            ),
            (
                Some(e("cmartin", "linux", &["SHA256:a", "SHA256:b"], "enrolled")),
                None,
                |a| *a == Approval::Proceed,
                "live host re-runs enroll",
            ),
            (
                Some(e("cmartin", "linux", &["SHA256:z"], "enrolled")),
                None,
                |a| matches!(a, Approval::Wait(Some(_))),
                "live host with new host keys waits",
            ),
            (
                Some(e("jdupont", "linux", &["SHA256:a", "SHA256:b"], "enrolled")),
                None,
                |a| *a == Approval::Wait(None),
                "live host of another logon: a request, never an overwrite",
            ),
            (
                Some(e("cmartin", "linux", &["SHA256:a", "SHA256:b"], "revoked")),
                None,
                |a| *a == Approval::Wait(None),
                "revoked is not live",
            ),
        ];
        for (live, request, ok, why) in rows {
            let got = approval(live.as_ref(), request.as_ref(), &asking);
            assert!(ok(&got), "{why}: {got:?}");
        }
    }

    #[test]
    fn checks() {
        let cfg = ServerConfig::default();
        assert!(check_os(&cfg, "linux").is_ok());
        assert!(check_os(&cfg, "windows").is_err());
        for (logon, ok) in [("jdupont", true), ("_x", true), ("Jdupont", false), ("9x", false), ("a b", false)] {
            assert_eq!(check_logon_pattern(&cfg, logon).is_ok(), ok, "{logon}");
        }
        let mut unanchored = cfg.clone();
        unanchored.logon_pattern = "[a-z]+".into();
        assert!(check_logon_pattern(&unanchored, "abc1").is_err(), "pattern is matched whole");
        assert!(check_network(&cfg, Some(ip("127.0.0.1"))).is_ok());
        assert!(check_network(&cfg, Some(ip("192.168.3.4"))).is_ok());
        assert_eq!(check_network(&cfg, Some(ip("8.8.8.8"))), Err(Refusal::Network(ip("8.8.8.8"))));
        assert_eq!(check_network(&cfg, None), Err(Refusal::NoAddress));
        let list = AllowList("# staff\njdupont\n  cmartin  # spaces\n".into());
        assert!(check_logon(LogonCheck::File, &list, "cmartin").is_ok());
        assert!(matches!(check_logon(LogonCheck::File, &list, "staff"), Err(Refusal::LogonUnknown(_))));
        struct Down;
        impl Directory for Down {
            fn exists(&self, _: &str) -> Result<bool, String> {
                Err("timeout".into())
            }
        }
        assert!(
            matches!(check_logon(LogonCheck::Nss, &Down, "x"), Err(Refusal::DirectoryDown(_))),
            "down is a refusal"
        );
        assert!(check_logon(LogonCheck::Any, &Down, "x").is_ok());
    }
}

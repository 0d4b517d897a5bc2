//! Answering a status query (`status` as the register key's command):
//! what the server has for the host the asking connection is named as.
//! Reads only; writes nothing but the answer and the audit log.
//!
//! The host is named by the same rules as an enrollment (the hello's
//! `hostname` only when it resolves back to the connecting address), and
//! the state of an enrollment is told only to the machine whose host keys
//! are the ones pinned for it: anyone else holding the register key learns
//! no more than "another machine". The logon is told only when the key the
//! workstation reports installed is one the server backs it up with.

use crate::serve::{host_key_fingerprints, read_hello, refused, InstalledKey, Outcome};
use crate::server::Server;
use backuppc_enroll::backuppc::hosts;
use backuppc_enroll::config::ServerConfig;
use backuppc_enroll::log::Audit;
use backuppc_enroll::protocol::status::{HostState, KeyMatch, Status};
use backuppc_enroll::server::policy::{self, SystemResolver};
use backuppc_enroll::ssh::env::SshEnv;
use backuppc_enroll::store::registry::{Enrollment, Registry};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(cfg: &ServerConfig, env: &SshEnv, audit: &Audit, client: &str) -> ExitCode {
    let code = match answer(cfg, env) {
        Ok(status) => {
            print!("{}", status.render());
            audit.event(
                "status",
                json!({ "client": client, "host": status.host, "state": status.state.as_str(), "key": status.key.as_str() }),
            );
            0
        }
        Err(Outcome::Refused(why)) => {
            audit.event("refused", json!({ "client": client, "request": "status", "reason": why }));
            println!("Status query refused: {why}.");
            1
        }
        Err(Outcome::Failed(why) | Outcome::Pending(_, Some(why))) => {
            audit.event("error", json!({ "client": client, "request": "status", "reason": why }));
            println!("The backup server could not answer the status query. Try again later or tell the backup administrator (the reason is in the server's log).");
            2
        }
        Err(Outcome::Pending(host, None)) => {
            audit.event("error", json!({ "client": client, "request": "status", "reason": host }));
            2
        }
    };
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}

fn answer(cfg: &ServerConfig, env: &SshEnv) -> Result<Status, Outcome> {
    let ip = policy::check_network(cfg, env.client).map_err(refused)?;
    let hello = read_hello(Duration::from_secs(cfg.hello_timeout))?;
    let asking = host_key_fingerprints(&hello);
    if asking.is_empty() {
        return Err(refused("a status query needs the hello block with this machine's SSH host keys"));
    }
    let host = policy::host_name(cfg.host_naming, hello.hostname.as_deref(), ip, &SystemResolver).map_err(refused)?;
    let srv = Server::open(cfg).map_err(Outcome::Failed)?;
    // Each file is replaced whole: read without the lock, nothing changes.
    let reg = Registry::load(&cfg.registry)?;
    let listed = hosts::find(&srv.hosts().read()?, &host).is_some();
    let fingerprint = |p: std::path::PathBuf| InstalledKey::read(&p).map(|k| k.fingerprint);
    let keys =
        ServerKeys { current: fingerprint(srv.key_path(&host)), previous: fingerprint(srv.previous_key_path(&host)) };
    let entry = reg.hosts.get(&host);
    let (state, key) = decide(entry, reg.requests.get(&host), &asking, &keys, hello.installed_key.as_deref());
    let logon = (state == HostState::Enrolled && matches!(key, KeyMatch::Current | KeyMatch::Previous))
        .then(|| entry.map(|e| e.logon.clone()))
        .flatten();
    Ok(Status { host, state, key, listed, logon })
}

/// The fingerprints of the host's key files on the server.
struct ServerKeys {
    current: Option<String>,
    previous: Option<String>,
}

/// The state told to a machine with host keys `asking` that reports
/// `installed` as its installed key. Pure: the table below is the rule.
fn decide(
    entry: Option<&Enrollment>,
    waiting: Option<&Enrollment>,
    asking: &[String],
    keys: &ServerKeys,
    installed: Option<&str>,
) -> (HostState, KeyMatch) {
    let same_machine = |e: &Enrollment| e.host_key_fingerprints.iter().any(|f| asking.contains(f));
    let key = match installed {
        Some(k) if keys.current.as_deref() == Some(k) => KeyMatch::Current,
        Some(k) if keys.previous.as_deref() == Some(k) => KeyMatch::Previous,
        Some(_) => KeyMatch::Other,
        None => KeyMatch::Unknown,
    };
    match (entry, waiting) {
        // The admin's decisions about a host name are told to whoever is
        // named so; they are no secret of the machine that held it.
        (Some(e), _) if e.state == "revoked" => (HostState::Revoked, KeyMatch::Unknown),
        (Some(e), _) if e.state == "adopted" => (HostState::Adopted, KeyMatch::Unknown),
        (Some(e), _) if !same_machine(e) => (HostState::OtherMachine, KeyMatch::Unknown),
        (Some(e), _) if e.state == "enrolled" => (HostState::Enrolled, key),
        (Some(_), _) => (HostState::Enrolling, KeyMatch::Unknown),
        (None, Some(w)) if w.state == "denied" => (HostState::Denied, KeyMatch::Unknown),
        (None, Some(w)) if !same_machine(w) => (HostState::OtherMachine, KeyMatch::Unknown),
        (None, Some(w)) if w.state == "approved" => (HostState::Approved, KeyMatch::Unknown),
        (None, Some(_)) => (HostState::Pending, KeyMatch::Unknown),
        (None, None) => (HostState::Unknown, KeyMatch::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: &str, fps: &[&str]) -> Enrollment {
        Enrollment {
            host: "h.example".into(),
            logon: "jdupont".into(),
            os: "linux".into(),
            address: "127.0.0.1".into(),
            key_fingerprint: "SHA256:cur".into(),
            host_key_fingerprints: fps.iter().map(|s| s.to_string()).collect(),
            enrolled_at: "2026-12-01T00:00:00Z".into(),
            state: state.into(),
        }
    }

    #[test]
    fn table() {
        use HostState::*;
        use KeyMatch::{Current, Other, Previous};
        const NONE: KeyMatch = KeyMatch::Unknown;
        let keys = ServerKeys { current: Some("SHA256:cur".into()), previous: Some("SHA256:prev".into()) };
        let me = ["SHA256:mine".to_string()];
        let mine = ["SHA256:mine"];
        let theirs = ["SHA256:theirs"];
        #[allow(clippy::type_complexity)]
        let rows: &[(Option<Enrollment>, Option<Enrollment>, Option<&str>, (HostState, KeyMatch), &str)] = &[
            (Some(entry("enrolled", &mine)), None, Some("SHA256:cur"), (Enrolled, Current), "healthy"),
            (Some(entry("enrolled", &mine)), None, Some("SHA256:prev"), (Enrolled, Previous), "re-enrollment open"),
            (Some(entry("enrolled", &mine)), None, Some("SHA256:gone"), (Enrolled, Other), "key replaced"),
            (Some(entry("enrolled", &mine)), None, None, (Enrolled, NONE), "no installed-key sent"),
            (Some(entry("enrolled", &theirs)), None, Some("SHA256:cur"), (OtherMachine, NONE), "other host keys"),
            (Some(entry("enrolled", &[])), None, Some("SHA256:cur"), (OtherMachine, NONE), "no pinned keys"),
            (Some(entry("revoked", &theirs)), None, None, (Revoked, NONE), "revoked"),
            (Some(entry("adopted", &[])), None, None, (Adopted, NONE), "adopted"),
            (Some(entry("enrolling", &mine)), None, Some("SHA256:cur"), (Enrolling, NONE), "crashed midway"),
            (None, Some(entry("pending", &mine)), None, (Pending, NONE), "waiting"),
            (None, Some(entry("pending", &theirs)), None, (OtherMachine, NONE), "someone else's request"),
            (None, Some(entry("approved", &mine)), None, (Approved, NONE), "approved"),
            (None, Some(entry("denied", &theirs)), None, (Denied, NONE), "denied"),
            (None, None, Some("SHA256:cur"), (Unknown, NONE), "forgotten"),
            (
                Some(entry("enrolled", &mine)),
                Some(entry("pending", &mine)),
                Some("SHA256:cur"),
                (Enrolled, Current),
                "entry first",
            ),
        ];
        for (e, w, installed, want, why) in rows {
            assert_eq!(decide(e.as_ref(), w.as_ref(), &me, &keys, *installed), *want, "{why}");
        }
    }
}

//! The environment sshd gives a forced command, read once into a value
//! that is passed down. Nothing else in the toolkit reads these variables.

use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshEnv {
    /// What the client asked to run, if anything (`SSH_ORIGINAL_COMMAND`).
    pub original_command: Option<String>,
    /// The client's address (`SSH_CONNECTION` field 1).
    pub client: Option<IpAddr>,
    /// The local address the client connected to (`SSH_CONNECTION` field 3).
    pub server: Option<IpAddr>,
}

impl SshEnv {
    /// Read from the process environment. A command that is not valid
    /// UTF-8 is kept as lossy text: every parser refuses it anyway.
    pub fn from_process() -> SshEnv {
        let get = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
        SshEnv::from_vars(get("SSH_ORIGINAL_COMMAND"), get("SSH_CONNECTION"), get("SSH_CLIENT"))
    }

    pub fn from_vars(command: Option<String>, connection: Option<String>, client: Option<String>) -> SshEnv {
        let (mut c, mut s) = (None, None);
        if let Some(conn) = connection {
            let f: Vec<&str> = conn.split(' ').collect();
            if f.len() == 4 {
                c = f[0].parse().ok();
                s = f[2].parse().ok();
            }
        }
        if c.is_none() {
            c = client.and_then(|v| v.split(' ').next().and_then(|a| a.parse().ok()));
        }
        SshEnv { original_command: command, client: c.map(canonical), server: s.map(canonical) }
    }
}

/// `::ffff:10.0.0.1` is the IPv4 client 10.0.0.1.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connection() {
        let e = SshEnv::from_vars(Some("linux:a".into()), Some("127.0.0.5 40000 127.0.0.1 2222".into()), None);
        assert_eq!(e.client, Some("127.0.0.5".parse().unwrap()));
        assert_eq!(e.server, Some("127.0.0.1".parse().unwrap()));
        let e = SshEnv::from_vars(None, Some("::ffff:10.1.2.3 1 ::1 22".into()), None);
        assert_eq!(e.client, Some("10.1.2.3".parse().unwrap()), "mapped IPv4");
        let e = SshEnv::from_vars(None, Some("garbage".into()), Some("192.168.1.2 5 22".into()));
        assert_eq!(e.client, Some("192.168.1.2".parse().unwrap()), "SSH_CLIENT fallback");
        assert_eq!(e.server, None);
    }
}

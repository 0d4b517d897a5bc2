//! Logging for the two forced commands, which may never write logs to
//! stdout or stderr while serving (sshd hands both to the client): each
//! event goes to syslog (the journal picks it up) and, when configured, as
//! one JSON line to an audit log file.

use serde_json::{json, Value};
use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Audit {
    program: &'static str,
    file: Option<PathBuf>,
}

impl Audit {
    /// `program` names the syslog ident; it must be a static string.
    pub fn new(program: &'static std::ffi::CStr, file: Option<PathBuf>) -> Audit {
        // SAFETY: the ident is 'static, as openlog requires.
        unsafe { libc::openlog(program.as_ptr(), libc::LOG_PID, libc::LOG_AUTH) };
        Audit { program: program.to_str().unwrap_or("backuppc-enroll"), file }
    }

    /// Log an event: `accepted`/`refused`/… with its fields.
    pub fn event(&self, event: &str, fields: Value) {
        let mut record = json!({ "time": timestamp(), "program": self.program, "event": event });
        if let (Some(obj), Value::Object(extra)) = (record.as_object_mut(), fields) {
            obj.extend(extra);
        }
        let line = record.to_string();
        let priority = if event.starts_with("alert") {
            libc::LOG_ALERT
        } else if event.starts_with("refused") || event == "error" {
            libc::LOG_WARNING
        } else {
            libc::LOG_INFO
        };
        if let Ok(msg) = CString::new(line.clone()) {
            // SAFETY: constant format string, NUL-terminated argument.
            unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) };
        }
        if let Some(path) = &self.file {
            // O_APPEND writes of one line are atomic between processes.
            let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path);
            if let Ok(mut f) = f {
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
        }
    }
}

/// Current UTC time as RFC 3339, second precision.
pub fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(secs)
}

pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from day count (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_359_599), "2026-11-22T14:59:59Z");
    }
}

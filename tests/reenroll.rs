//! A re-enrollment keeps what the host's user saved through BackupPC's web
//! interface. The edit is saved by BackupPC's own code (the storage module
//! its CGI calls, `ConfigDataRead` then `ConfigDataWrite`), then the host
//! enrolls again, then BackupPC's own code reads the result back.

mod common;

use common::forced::ForcedBench;
use std::process::Command;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";

/// Read `host`'s config with BackupPC's storage module (and, with `edit`,
/// save an edit as the CGI does: excludes, a schedule, another transfer
/// method); its settings as JSON.
fn backuppc_config(conf_dir: &std::path::Path, host: &str, edit: bool) -> serde_json::Value {
    let script = r#"
        use lib "/usr/share/backuppc/lib";
        use BackupPC::Storage::Text;
        use JSON::PP;
        my ($dir, $host, $edit) = @ARGV;
        my $s = BackupPC::Storage::Text->new({}, { ConfDir => $dir, TopDir => $dir, useFHS => 1 });
        my ($mesg, $conf) = $s->ConfigDataRead($host);
        die "read: $mesg\n" if defined $mesg;
        if ($edit) {
            $conf->{BackupFilesExclude} = { '*' => ['/home/cmartin/tmp', '/home/cmartin/.cache'] };
            $conf->{FullPeriod} = '13.97';
            $conf->{XferMethod} = 'tar';
            my $err = $s->ConfigDataWrite($host, $conf);
            die "write: $err\n" if $err;
        }
        print JSON::PP->new->canonical->encode($conf);
    "#;
    let out = Command::new("perl")
        .arg("-e")
        .arg(script)
        .arg(conf_dir)
        .arg(host)
        .arg(if edit { "1" } else { "" })
        .output()
        .expect("perl (the README's test command installs BackupPC)");
    assert!(out.status.success(), "BackupPC's storage module: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn reenrollment_keeps_what_the_cgi_saved() {
    assert!(
        std::path::Path::new("/usr/share/backuppc/lib/BackupPC/Storage/Text.pm").exists(),
        "BackupPC is not installed: run the README's test command"
    );
    let f = ForcedBench::new();
    let conf = f.dir.join("backuppc");
    let hello = format!("protocol: 2\nhostname: localhost\nhostkey: {KEY}\nuser: bckpciuem\nport: 22\n");
    let first = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stdout));
    let saved = backuppc_config(&conf, "localhost", true);
    assert_eq!(saved["XferMethod"], "tar", "the edit was saved");
    let pl = conf.join("pc/localhost.pl");
    let cgi_text = std::fs::read_to_string(&pl).unwrap();

    let again = f.run("linux:cmartin", "127.0.0.1", hello.as_bytes(), None);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stdout));
    let after = backuppc_config(&conf, "localhost", false);
    assert_eq!(after["BackupFilesExclude"], saved["BackupFilesExclude"], "excludes kept");
    assert_eq!(after["FullPeriod"], saved["FullPeriod"], "schedule kept");
    assert_eq!(after["RsyncShareName"], saved["RsyncShareName"], "shares kept");
    assert_eq!(after["XferMethod"], "rsync", "the transfer method is the toolkit's");
    let ssh = after["RsyncSshArgs"][1].as_str().unwrap();
    assert!(ssh.contains("backuppc-enroll/localhost.key") && ssh.contains("StrictHostKeyChecking=yes"), "{ssh}");
    // Byte for byte: the CGI's text of every setting the toolkit does not own.
    let text = std::fs::read_to_string(&pl).unwrap();
    for setting in ["BackupFilesExclude", "FullPeriod", "RsyncShareName"] {
        let block = |t: &str| {
            let start = t.find(&format!("$Conf{{{setting}}}")).unwrap();
            let end = start + t[start..].find(";\n").unwrap();
            t[start..end].to_string()
        };
        assert_eq!(block(&text), block(&cgi_text), "{setting} byte for byte");
    }
}

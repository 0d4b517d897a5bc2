//! forced-command run directly, as sshd runs it (SSH_ORIGINAL_COMMAND,
//! SSH_CONNECTION, stdin), against a BackupPC folder of the test's own,
//! with root as the BackupPC account: cheap enough for large tables.

use super::world::STOCK_HOSTS;
use super::*;

pub struct ForcedBench {
    pub dir: TestDir,
    pub bins: Bins,
    pub config: PathBuf,
}

impl ForcedBench {
    pub fn new() -> ForcedBench {
        require_root();
        let dir = TestDir::new("fc");
        let bins = install_bins(&dir);
        let conf = dir.mkdir("backuppc");
        fs::write(conf.join("hosts"), STOCK_HOSTS).unwrap();
        dir.mkdir("registry");
        dir.mkdir("ssh");
        fs::write(dir.join("logons"), "cmartin\n").unwrap();
        let config = dir.join("server.toml");
        fs::write(
            &config,
            format!(
                "backuppc_conf_dir = {:?}\nbackuppc_user = \"root\"\nssh_dir = {:?}\nurl = \"https://b/?host={{host}}\"\n\
                 logon_check = \"file\"\nlogon_file = {:?}\nregistry = {:?}\nreload_command = []\nhello_timeout = 2\n\
                 networks = [\"127.0.0.0/8\"]\n",
                conf,
                dir.join("ssh"),
                dir.join("logons"),
                dir.join("registry/registry.json")
            ),
        )
        .unwrap();
        ForcedBench { dir, bins, config }
    }

    /// Start an enrollment, write `stdin`, wait `stall`, then close stdin;
    /// not waited for.
    pub fn spawn_stalling(&self, command: &str, client: &str, stdin: &[u8], stall: Option<Duration>) -> Child {
        feed(&mut as_sshd_runs(&self.bins.forced_command, &self.config, command, client), stdin, stall)
    }

    pub fn spawn(&self, command: &str, client: &str, stdin: &[u8]) -> Child {
        self.spawn_stalling(command, client, stdin, None)
    }

    pub fn run(&self, command: &str, client: &str, stdin: &[u8], stall: Option<Duration>) -> std::process::Output {
        self.spawn_stalling(command, client, stdin, stall).wait_with_output().unwrap()
    }

    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>, u32)> {
        snapshot(&[&self.dir.join("backuppc"), &self.dir.join("registry"), &self.dir.join("ssh")])
    }
}

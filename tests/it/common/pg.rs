//! A PostgreSQL cluster of a test's own, for tests that stop and start the
//! server under a daemon (the suite's shared cluster must stay up for the
//! tests running beside them). As ../shared/STACK.md shows: a temp dir
//! owned by the `postgres` user, a free loopback port, trust auth.

use std::path::{Path, PathBuf};
use tokio::process::Command;

use crate::tools::ci;

pub struct Cluster {
    bin: PathBuf,
    root: tempfile::TempDir,
    pub port: u16,
}

/// PostgreSQL's programs: `CREWSHIP_TEST_PG_BIN`, else Debian's place.
/// None (a loud skip) outside CI when missing; a failure under CI.
fn bin_dir() -> Option<PathBuf> {
    let found = std::env::var_os("CREWSHIP_TEST_PG_BIN").map(PathBuf::from).or_else(|| {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path().join("bin")).collect();
        dirs.sort();
        dirs.into_iter().rev().find(|d| d.join("pg_ctl").is_file())
    });
    if found.is_none() {
        assert!(
            !ci(),
            "PostgreSQL is required under CI=true but is missing (apt-get install postgresql; scripts/test.sh does)"
        );
        eprintln!("!!! SKIPPING: PostgreSQL is missing; run scripts/test.sh to install it.");
    }
    found
}

fn root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Runs a PostgreSQL program as the cluster's owner (PostgreSQL refuses to
/// run as root).
fn as_owner(program: &Path) -> Command {
    if root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

async fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// A new cluster, started; None when PostgreSQL is missing outside CI.
    pub async fn start() -> Option<Cluster> {
        let bin = bin_dir()?;
        let root = tempfile::Builder::new().prefix("crewship-pg").tempdir().unwrap();
        if self::root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:").arg(root.path());
                    c
                },
                "chown the cluster's dir",
            )
            .await;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Cluster { bin, root, port };
        let mut initdb = as_owner(&cluster.bin.join("initdb"));
        initdb.arg("-D").arg(cluster.data()).args(["-A", "trust", "-U", "crewship"]);
        run(initdb, "initdb").await;
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            cluster.root.path().display()
        );
        let mut file = std::fs::OpenOptions::new().append(true).open(cluster.data().join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        cluster.pg_ctl(&["-w", "start"]).await;
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.data()).arg("-l").arg(self.root.path().join("log")).args(args);
        run(c, &format!("pg_ctl {}", args.join(" "))).await;
    }

    /// The admin database's URL.
    pub fn url(&self) -> String {
        format!("postgres://crewship@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: sessions are ended, the server comes back.
    pub async fn restart_fast(&self) {
        self.pg_ctl(&["-w", "-m", "fast", "restart"]).await;
    }

    /// `pg_ctl stop -m immediate`: the server dies as in a crash.
    pub async fn stop_immediate(&self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]).await;
    }

    /// Starts the server again (after crash recovery when it crashed).
    pub async fn start_again(&self) {
        self.pg_ctl(&["-w", "start"]).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let mut c = if root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        c.arg("-D").arg(self.data()).args(["-m", "immediate", "stop"]);
        let _ = c.output();
    }
}

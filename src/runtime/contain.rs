//! Containment: every process a run starts ends with the run, at its
//! completion (stragglers that daemonized), on cancel and timeout, and at
//! recovery after a crash. The run's first process also gets SIGKILL when
//! the daemon dies (a parent-death signal), so an agent never outlives a
//! daemon killed with -9.
//!
//! Where cgroup v2 is writable each run gets a cgroup of its own, joined by
//! the child before it execs; `cgroup.kill` then ends everything in it,
//! whatever it did (setsid, double forks, a cleared environment). Elsewhere
//! a run has a process group, which a process can leave with setsid: then
//! processes still carrying the run's id in their environment are found in
//! /proc as well.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::spawn::{Spawn, Spawned, spawn};

/// Directory, below the daemon's own cgroup, holding one cgroup per run.
const RUNS_DIR: &str = "crewship-runs";

/// The containment a daemon is asked for (`CREWSHIP_RUN_CONTAINMENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A cgroup per run where cgroup v2 is writable, else process groups.
    Auto,
    Cgroup,
    ProcessGroup,
}

#[derive(Debug, Clone)]
pub enum Containment {
    /// Run cgroups go below this directory.
    Cgroup(PathBuf),
    ProcessGroup,
}

/// The cgroup v2 directory this process is in: the `0::` line of
/// /proc/self/cgroup below the cgroup2 mount point.
fn own_cgroup() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent dev root mountpoint options … - fstype source super.
    let mount = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })?;
    Some(mount.join(own.trim_start_matches('/')))
}

/// Sets up `dir` and proves a child can join a cgroup below it.
fn probe(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let group = RunGroup { cgroup: Some(dir.join(format!("probe-{}", std::process::id()))) };
    group.create()?;
    let what = Spawn { program: "/bin/true", args: &[], env: Vec::new(), dir: Path::new("/"), cgroup: group.cgroup() };
    let status = spawn(&what).and_then(Spawned::wait_blocking);
    group.remove_blocking();
    status.and_then(|s| if s.success() { Ok(()) } else { Err(io::Error::other(format!("probe exited {s}"))) })
}

impl Containment {
    /// The mode the setting asks for: `auto` takes cgroups where a probe
    /// child could join one, process groups otherwise.
    pub fn detect(mode: Mode) -> Result<Containment, String> {
        if mode == Mode::ProcessGroup {
            return Ok(Containment::ProcessGroup);
        }
        let tried = own_cgroup().ok_or_else(|| "no cgroup v2 hierarchy is mounted".to_string()).and_then(|own| {
            let dir = own.join(RUNS_DIR);
            probe(&dir).map(|()| dir.clone()).map_err(|e| format!("{} is not usable: {e}", dir.display()))
        });
        match (tried, mode) {
            (Ok(dir), _) => Ok(Containment::Cgroup(dir)),
            (Err(why), Mode::Cgroup) => Err(format!("CREWSHIP_RUN_CONTAINMENT=cgroup, but {why}")),
            (Err(why), _) => {
                tracing::info!(reason = why, "no writable cgroup v2: runs are contained by process groups");
                Ok(Containment::ProcessGroup)
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Containment::Cgroup(dir) => format!("a cgroup per run, below {}", dir.display()),
            Containment::ProcessGroup => "a process group per run (processes that call setsid are found by the \
                                          run id in their environment)"
                .to_string(),
        }
    }

    /// The group a new run's processes will be in.
    pub fn group_for(&self, run_id: &str) -> io::Result<RunGroup> {
        let group = RunGroup { cgroup: self.cgroup_dir().map(|d| d.join(run_id)) };
        group.create()?;
        Ok(group)
    }

    fn cgroup_dir(&self) -> Option<&Path> {
        match self {
            Containment::Cgroup(dir) => Some(dir),
            Containment::ProcessGroup => None,
        }
    }
}

/// Where a run's processes are: their process group (the leader's pid is
/// the group id) and, in cgroup mode, their cgroup.
#[derive(Debug, Clone)]
pub struct RunGroup {
    cgroup: Option<PathBuf>,
}

fn write_file(path: &Path, what: &str) -> io::Result<()> {
    std::fs::write(path, what)
}

impl RunGroup {
    /// A recorded group (recovery), by its cgroup path if it had one.
    pub fn recorded(cgroup: Option<&str>) -> RunGroup {
        RunGroup { cgroup: cgroup.map(PathBuf::from) }
    }

    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    fn create(&self) -> io::Result<()> {
        match &self.cgroup {
            Some(dir) => std::fs::create_dir(dir),
            None => Ok(()),
        }
    }

    /// Sends `signal` to the run's process group (a polite stop).
    pub fn signal(&self, pgid: u32, signal: libc::c_int) {
        signal_group(pgid, signal);
    }

    /// Kills every process of the run: its group, its cgroup, and (without
    /// a cgroup) whatever still carries its id after leaving the group.
    pub fn kill(&self, pgid: Option<u32>, run_id: &str) {
        if let Some(pgid) = pgid {
            signal_group(pgid, libc::SIGKILL);
        }
        match &self.cgroup {
            Some(dir) => {
                if let Err(e) = write_file(&dir.join("cgroup.kill"), "1")
                    && e.kind() != io::ErrorKind::NotFound
                {
                    tracing::warn!(cgroup = %dir.display(), error = %e, "cannot kill a run's cgroup");
                }
            }
            None => kill_marked(run_id),
        }
    }

    /// Removes the run's (killed) cgroup once it is empty; waits a bounded
    /// time for the kernel to finish the kill.
    pub async fn remove(&self) {
        let Some(dir) = &self.cgroup else { return };
        let mut pause = Duration::from_millis(1);
        for _ in 0..12 {
            match std::fs::remove_dir(dir) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => tokio::time::sleep(pause).await,
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        tracing::warn!(cgroup = %dir.display(), "a run's cgroup is still busy; left for the next start");
    }

    fn remove_blocking(&self) {
        if let Some(dir) = &self.cgroup {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions; ESRCH (the group is
    // gone) is the expected result once everything has exited.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// The pids of processes whose environment carries `CREWSHIP_RUN_ID=<run>`.
fn marked(run_id: &str) -> Vec<libc::pid_t> {
    let marker = format!("CREWSHIP_RUN_ID={run_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()))
        })
        .collect()
}

fn kill_marked(run_id: &str) {
    for pid in marked(run_id) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Ends what a dead daemon left of a run: its cgroup if it had one, else
/// its process group (if the leader still carries the run's id, so a
/// reused pid is never signalled) and the processes that carry the id.
/// True if anything was found.
pub async fn kill_left_over(run_id: &str, pid: Option<i64>, cgroup: Option<&str>) -> bool {
    let group = RunGroup::recorded(cgroup);
    let found = match group.cgroup() {
        Some(dir) => std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()),
        None => {
            let left = marked(run_id);
            // The group is signalled only while a process of the run is
            // still in it: a process group id is free for reuse once its
            // last member is gone.
            // SAFETY: getpgid has no memory-safety preconditions.
            let in_group = |p: &libc::pid_t| pid.is_some_and(|g| unsafe { libc::getpgid(*p) } == g as libc::pid_t);
            if let Some(pgid) = pid.filter(|_| left.iter().any(in_group)) {
                signal_group(pgid as u32, libc::SIGKILL);
            }
            !left.is_empty()
        }
    };
    group.kill(None, run_id);
    group.remove().await;
    found
}

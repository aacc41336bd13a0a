//! Starting a run's first process without copying the daemon.
//!
//! A fork copies the daemon's page tables, and every later write on either
//! side faults and flushes TLBs on every core: at a few hundred runs a
//! second that was most of the daemon's CPU time. Here the child borrows
//! the daemon's memory until it execs (`clone` with `CLONE_VM |
//! CLONE_VFORK`, as `posix_spawn` does), and first does what containment
//! needs, which `posix_spawn` cannot: arm a parent-death signal and join
//! the run's cgroup. While it borrows the memory the child makes only raw
//! system calls on data prepared beforehand, on a stack of its own, with
//! every signal blocked until the daemon's handlers are reset.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// The child's stack: it runs one small function before it execs.
const CHILD_STACK: usize = 64 * 1024;

/// Linux's signal numbers run from 1 to 64.
const KERNEL_SIGNALS: libc::c_int = 64;

/// What to start.
pub struct Spawn<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// The whole environment of the child.
    pub env: Vec<(OsString, OsString)>,
    pub dir: &'a Path,
    /// The cgroup the child joins before it execs.
    pub cgroup: Option<&'a Path>,
}

/// A started process: the leader of a process group of its own (its pid is
/// the group id), with its stdin, stdout and stderr piped.
pub struct Spawned {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Everything the child reads, prepared before the clone; `failed` is how
/// it reports, through the shared memory, the call that failed.
struct ChildPlan {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    dir: CString,
    cgroup_procs: Option<CString>,
    daemon: libc::pid_t,
    stdio: [RawFd; 3],
    failed: AtomicI32,
}

/// What the child does before it execs, in order; a failed step and its
/// errno travel to the parent as one number.
#[derive(Debug, Clone, Copy)]
enum Step {
    DeathSignal,
    DaemonGone,
    Group,
    Cgroup,
    Dir,
    Stdio,
    Exec,
}

const STEPS: [Step; 7] =
    [Step::DeathSignal, Step::DaemonGone, Step::Group, Step::Cgroup, Step::Dir, Step::Stdio, Step::Exec];

impl Step {
    fn encode(self, errno: i32) -> i32 {
        (self as i32 + 1) * 4096 + errno
    }

    fn decode(failed: i32) -> io::Error {
        let err = io::Error::from_raw_os_error(failed % 4096);
        let what = match STEPS.get((failed / 4096 - 1) as usize) {
            Some(Step::DeathSignal) => "cannot arm the parent-death signal",
            Some(Step::DaemonGone) => return io::Error::other("crewshipd exited"),
            Some(Step::Group) => "cannot start a process group",
            Some(Step::Cgroup) => "cannot join the run's cgroup",
            Some(Step::Dir) => "cannot enter the working directory",
            Some(Step::Stdio) => "cannot connect stdin, stdout and stderr",
            Some(Step::Exec) | None => return err,
        };
        io::Error::new(err.kind(), format!("{what}: {err}"))
    }
}

/// Runs in the child, on its own stack and in the daemon's memory: raw
/// system calls only, no allocation, no locks.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildPlan`, alive and unchanged while
    // the parent is suspended (CLONE_VFORK).
    let plan = unsafe { &*(arg as *const ChildPlan) };
    let fail = |step: Step| -> libc::c_int {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        plan.failed.store(step.encode(errno), Ordering::SeqCst);
        // SAFETY: _exit ends the child without running the daemon's exit
        // handlers on the shared memory.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: each call is a system call on memory prepared by the parent.
    unsafe {
        // The daemon's handlers must never run here, and what it ignores
        // (SIGPIPE among them) an agent must not: every signal back to its
        // default. The raw call reaches the C library's own signals too; an
        // all-zero kernel sigaction is SIG_DFL with no flags and no mask.
        let default = [0u64; 4];
        for signal in 1..=KERNEL_SIGNALS {
            libc::syscall(libc::SYS_rt_sigaction, signal, default.as_ptr(), std::ptr::null_mut::<u64>(), 8);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return fail(Step::DeathSignal);
        }
        // The daemon died before the signal was armed.
        if libc::getppid() != plan.daemon {
            return fail(Step::DaemonGone);
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(Step::Group);
        }
        if let Some(procs) = &plan.cgroup_procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return fail(Step::Cgroup);
            }
            libc::close(fd);
        }
        if libc::chdir(plan.dir.as_ptr()) != 0 {
            return fail(Step::Dir);
        }
        // The pipes are never 0, 1 or 2 (std keeps those open), so dup2
        // always makes a copy, without close-on-exec.
        for (target, fd) in plan.stdio.iter().enumerate() {
            if libc::dup2(*fd, target as RawFd) < 0 {
                return fail(Step::Stdio);
            }
        }
        libc::execve(plan.path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(Step::Exec)
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
}

/// The file `execvp` would run: `program` itself when it names a path
/// (relative to the working directory), else the first executable of that
/// name on the child's PATH.
fn resolve(program: &str, env: &[(OsString, OsString)], dir: &Path) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_else(|| "/bin:/usr/bin".into());
    let executable = |p: &Path| {
        cstring(p.as_os_str().as_bytes())
            // SAFETY: access reads a NUL-terminated path.
            .is_ok_and(|c| p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
    };
    std::env::split_paths(&path)
        .map(|d| if d.as_os_str().is_empty() { dir.join(program) } else { d.join(program) })
        .find(|p| executable(p))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors, which are then owned here.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts the process; returns once it has exec'd (or failed to).
pub fn spawn(what: &Spawn<'_>) -> io::Result<Spawned> {
    let path = cstring(resolve(what.program, &what.env, what.dir)?.as_os_str().as_bytes())?;
    let argv_owned: Vec<CString> = std::iter::once(what.program)
        .chain(what.args.iter().map(String::as_str))
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let envp_owned: Vec<CString> = what
        .env
        .iter()
        .map(|(k, v)| {
            let mut var = k.clone().into_vec();
            var.push(b'=');
            var.extend_from_slice(v.as_bytes());
            cstring(&var)
        })
        .collect::<io::Result<_>>()?;
    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let nul_terminated =
        |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>();
    let plan = ChildPlan {
        path,
        argv: nul_terminated(&argv_owned),
        envp: nul_terminated(&envp_owned),
        dir: cstring(what.dir.as_os_str().as_bytes())?,
        cgroup_procs: what.cgroup.map(|d| cstring(d.join("cgroup.procs").as_os_str().as_bytes())).transpose()?,
        daemon: std::process::id() as libc::pid_t,
        stdio: [stdin_r.as_raw_fd(), stdout_w.as_raw_fd(), stderr_w.as_raw_fd()],
        failed: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down from its (16-byte aligned) end.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    let mut pidfd: libc::c_int = -1;
    // SAFETY: the child runs `child_main` on `stack` while this thread is
    // suspended, so `plan` and `stack` outlive it; with every signal
    // blocked around the clone, no handler of the daemon can run in the
    // child before it resets them.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            &plan as *const ChildPlan as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        );
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        if pid < 0 {
            return Err(err);
        }
        pid
    };
    // SAFETY: CLONE_PIDFD stored a new descriptor for the child here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let spawned = Spawned { pid, pidfd, stdin: stdin_w, stdout: stdout_r, stderr: stderr_r };
    match plan.failed.load(Ordering::SeqCst) {
        0 => Ok(spawned),
        failed => {
            let _ = spawned.wait_blocking();
            Err(Step::decode(failed))
        }
    }
}

fn reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    // SAFETY: waitpid on our own child; the pid cannot be reused before
    // this reaps it.
    match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
        0 => Ok(None),
        -1 => Err(io::Error::last_os_error()),
        _ => Ok(Some(ExitStatus::from_raw(status))),
    }
}

impl Spawned {
    /// Waits for the end by blocking this thread (start-up probes).
    pub fn wait_blocking(self) -> io::Result<ExitStatus> {
        let mut status = 0;
        // SAFETY: as in `reap`, without WNOHANG.
        if unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ExitStatus::from_raw(status))
    }

    /// The process, its exit and its pipes for the async runtime; a
    /// process that cannot be awaited there is killed.
    pub fn into_child(self) -> io::Result<Child> {
        let pid = self.pid;
        let made = (|| {
            // SAFETY: the AsyncFd owns the pidfd, which stays open until it is dropped.
            let exited = unsafe { AsyncFd::register_with_interest(self.pidfd, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
            Ok(Child {
                pid,
                exited,
                status: None,
                stdin: Some(pipe::Sender::from_owned_fd(self.stdin)?),
                stdout: Some(pipe::Receiver::from_owned_fd(self.stdout)?),
                stderr: Some(pipe::Receiver::from_owned_fd(self.stderr)?),
            })
        })();
        if made.is_err() {
            kill_and_reap(pid);
        }
        made
    }
}

/// Ends a child that nothing will await.
fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: the child is not reaped yet, so `pid` is still ours; waitpid
    // then reaps it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut 0, 0);
    }
}

/// A running process, awaited through its pidfd (readable once it exited).
pub struct Child {
    pid: libc::pid_t,
    exited: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// The exit status; cancel-safe, and again after the first answer.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            let mut ready = self.exited.readable().await?;
            match reap(self.pid)? {
                Some(status) => self.status = Some(status),
                None => ready.clear_ready(),
            }
        }
    }
}

impl Drop for Child {
    /// A child dropped before its end (the runner's task went away) is
    /// killed and reaped off the runtime, so it leaves no zombie.
    fn drop(&mut self) {
        if self.status.is_none() && !reap(self.pid).is_ok_and(|s| s.is_some()) {
            let pid = self.pid;
            std::thread::spawn(move || kill_and_reap(pid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Ran {
        status: ExitStatus,
        stdout: String,
        stderr: String,
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    async fn run(program: &str, args: &[&str], vars: &[(&str, &str)], input: &str) -> io::Result<Ran> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let what = Spawn { program, args: &args, env: env(vars), dir: Path::new("/tmp"), cgroup: None };
        let mut child = spawn(&what)?.into_child()?;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await?;
        drop(stdin);
        let (mut stdout, mut stderr) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut stdout).await?;
        child.stderr.take().unwrap().read_to_string(&mut stderr).await?;
        Ok(Ran { status: child.wait().await?, stdout, stderr })
    }

    #[tokio::test]
    async fn pipes_environment_directory_and_status() {
        let script = r#"read line; echo "$line $GREETING $(pwd)"; echo oops >&2; exit 3"#;
        let ran =
            run("sh", &["-c", script], &[("PATH", "/usr/bin:/bin"), ("GREETING", "hello")], "hi\n").await.unwrap();
        assert_eq!(ran.stdout, "hi hello /tmp\n");
        assert_eq!(ran.stderr, "oops\n");
        assert_eq!(ran.status.code(), Some(3));
    }

    #[tokio::test]
    async fn the_environment_is_exactly_the_one_given() {
        let ran = run("/usr/bin/env", &[], &[("ONLY", "this")], "").await.unwrap();
        assert_eq!(ran.stdout, "ONLY=this\n");
    }

    #[tokio::test]
    async fn a_signal_ends_it_with_that_signal() {
        let ran = run("/bin/sh", &["-c", "kill -TERM $$"], &[], "").await.unwrap();
        assert_eq!(ran.status.signal(), Some(libc::SIGTERM));
    }

    /// The test harness ignores SIGPIPE (as every Rust program does): the
    /// child starts with no signal ignored or blocked, leading a process
    /// group of its own.
    #[tokio::test]
    async fn signals_are_reset_and_the_child_leads_its_own_group() {
        let ran = run("/bin/cat", &["/proc/self/status", "/proc/self/stat"], &[], "").await.unwrap();
        let field = |name: &str| ran.stdout.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap();
        assert_eq!(field("SigIgn:"), "0000000000000000");
        assert_eq!(field("SigBlk:"), "0000000000000000");
        let pid = field("Pid:");
        let stat = ran.stdout.lines().last().unwrap();
        // pid (comm) state ppid pgrp …
        let after_comm: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        assert_eq!(after_comm[2], pid, "process group id");
    }

    #[tokio::test]
    async fn failures_say_what_failed() {
        let missing = run("no-such-program-here", &[], &[("PATH", "/usr/bin:/bin")], "").await.err().unwrap();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let denied = run("/etc/passwd", &[], &[], "").await.err().unwrap();
        assert_eq!(denied.kind(), io::ErrorKind::PermissionDenied);
        let what =
            Spawn { program: "/bin/true", args: &[], env: Vec::new(), dir: Path::new("/no/such/dir"), cgroup: None };
        let err = spawn(&what).err().unwrap().to_string();
        assert!(err.starts_with("cannot enter the working directory: "), "{err}");
        let what = Spawn { cgroup: Some(Path::new("/no/such/cgroup")), dir: Path::new("/"), ..what };
        let err = spawn(&what).err().unwrap().to_string();
        assert!(err.starts_with("cannot join the run's cgroup: "), "{err}");
    }
}

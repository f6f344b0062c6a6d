//! Child processes that never outlive the harness.
//!
//! Every child (redis-server, registry-svc, star-node, the baselines' relay and echo
//! nodes) runs under a small `sh` guard:
//!
//! ```text
//! loadtest ──stdin pipe──▶ sh guard (its own process group) ──fork──▶ child
//!                          "$0" "$@" & pid=$!; echo pid; exec >/dev/null
//!                          read _            ◀── a newline, or EOF when loadtest dies
//!                          kill $pid; (sleep 10; kill -KILL 0) &; wait $pid; kill -KILL 0
//! ```
//!
//! - The guard and its child form their own process group, so a Ctrl-C at the terminal
//!   reaches only the harness, which then stops the children in order.
//! - Stopping writes a newline to the guard: the child gets SIGTERM and shuts down
//!   cleanly (star-nodes drain and deregister). A child not gone by its deadline is
//!   killed with its whole group (SIGKILL).
//! - If the harness dies in any way (panic, SIGKILL, OOM), the pipe closes, `read`
//!   returns, and the guard sends SIGTERM (and SIGKILL to the group 10 s later if
//!   needed): nothing is left behind.
//! - The child alone holds its stdout pipe (the guard points its own at /dev/null), so
//!   the harness sees EOF as soon as a child that failed to start exits.
//!
//! This module owns the processes; what they are and how they are configured is
//! [`crate::cluster`]'s and [`crate::baseline`]'s.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// The guard: runs `$0 "$@"` in the background and stops it when stdin says so (or
/// closes): SIGTERM, then, if it is still there 10 s later, SIGKILL to the whole group. Once the child is gone the guard ends its group (the watchdog
/// included) with SIGKILL, so not even a `sleep` stays behind.
const GUARD: &str = "\"$0\" \"$@\" & pid=$!\n\
                     echo \"hv-loadtest-child pid=$pid\"\n\
                     exec >/dev/null\n\
                     read _\n\
                     kill $pid 2>/dev/null\n\
                     ( sleep 10; kill -KILL 0 ) &\n\
                     wait $pid\n\
                     kill -KILL 0";

/// The line the guard prints with its child's pid.
const PID_LINE: &str = "hv-loadtest-child pid=";

/// What a child is, which decides the order of stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A star-node: stopped first, so it drains and deregisters while the registry lives.
    StarNode,
    /// A relay or echo node of the baselines.
    Baseline,
    /// registry-svc (and a one-off `registry-svc check`).
    Registry,
    /// A Redis Sentinel (`--ha`): stopped before the servers it watches, so it never
    /// fails a shard over during the teardown.
    Sentinel,
    /// A Redis shard (primary or replica): stopped last.
    Redis,
}

impl Role {
    /// How long a clean stop may take before the child is killed.
    fn grace(self) -> Duration {
        match self {
            Role::StarNode => Duration::from_secs(10),
            _ => Duration::from_secs(5),
        }
    }
}

/// How to start a child.
#[derive(Debug, Clone)]
pub struct Spec {
    /// A name for messages and the report (`star-node-1`).
    pub name: String,
    /// What it is.
    pub role: Role,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables to set (every inherited `HV_*` variable is removed first,
    /// so the generated configuration is what counts).
    pub env: Vec<(String, String)>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// A child under its guard.
#[derive(Debug)]
pub struct Guarded {
    name: String,
    role: Role,
    guard: Option<Child>,
    stdin: Option<ChildStdin>,
    guard_pid: u32,
    pid: Option<u32>,
    lines: Option<mpsc::UnboundedReceiver<String>>,
    log: PathBuf,
}

/// One child as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// Its name.
    pub name: String,
    /// What it is.
    pub role: Role,
    /// The child's pid (absent if it never reported one).
    pub pid: Option<u32>,
    /// The pid of its `sh` guard (also its process group).
    pub guard_pid: u32,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It stopped when asked.
    Stopped,
    /// It had to be killed (SIGKILL to its group).
    Killed,
    /// It had exited before it was asked to stop.
    ExitedEarly,
    /// The chaos schedule killed it on purpose (SIGKILL to the child alone), mid-run.
    Faulted,
}

impl Guarded {
    /// Starts `spec` under a guard. Returns at once; see [`Guarded::ready`].
    pub fn spawn(spec: Spec) -> Result<Guarded> {
        let log = File::create(&spec.log)
            .map_err(|e| Error::io(format!("creating log {}", spec.log.display()), e))?;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(GUARD)
            .arg(&spec.program)
            .args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HV_") {
                command.env_remove(key);
            }
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        let mut guard = command.spawn().map_err(|e| {
            Error::Start(format!(
                "cannot start {} ({}) under sh: {e}",
                spec.name,
                spec.program.display()
            ))
        })?;
        let stdin = guard.stdin.take();
        let stdout = guard.stdout.take();
        let (tx, lines) = mpsc::unbounded_channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Guarded {
            name: spec.name,
            role: spec.role,
            guard_pid: guard.id(),
            guard: Some(guard),
            stdin,
            pid: None,
            lines: Some(lines),
            log: spec.log,
        })
    }

    /// Waits until the child reported its pid and, when `prefix` is given, printed a
    /// line starting with it (returned). Fails if it exits first or `limit` passes.
    pub async fn ready(&mut self, prefix: Option<&str>, limit: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        let Some(lines) = self.lines.as_mut() else {
            return Err(Error::Internal(format!(
                "{} was waited for twice",
                self.name
            )));
        };
        let mut ready = None;
        loop {
            if self.pid.is_some() && (prefix.is_none() || ready.is_some()) {
                self.lines = None;
                return Ok(ready.unwrap_or_default());
            }
            let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    return Err(Error::Start(format!(
                        "{} exited before it was ready{}",
                        self.name,
                        log_tail(&self.log)
                    )));
                }
                Err(_) => {
                    return Err(Error::Start(format!(
                        "{} was not ready within {limit:?}{}",
                        self.name,
                        log_tail(&self.log)
                    )));
                }
            };
            if let Some(pid) = line.strip_prefix(PID_LINE) {
                self.pid = pid.trim().parse().ok();
            } else if prefix.is_some_and(|p| line.starts_with(p)) {
                ready = Some(line);
            }
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the report says about it.
    pub fn info(&self) -> ProcessInfo {
        ProcessInfo {
            name: self.name.clone(),
            role: self.role,
            pid: self.pid,
            guard_pid: self.guard_pid,
        }
    }

    /// The last lines of its log, for error messages (`""` when empty).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Whether the child is still running.
    pub fn is_running(&self) -> bool {
        self.pid.is_some_and(is_running)
    }

    /// Asks the guard to stop its child (SIGTERM). Returns at once.
    fn ask_to_stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
    }

    /// Waits for the guard to exit until `deadline`, then kills the group.
    fn finish_stop(&mut self, deadline: Instant) -> Ended {
        self.ask_to_stop();
        let Some(mut guard) = self.guard.take() else {
            return Ended::Stopped;
        };
        loop {
            match guard.try_wait() {
                Ok(Some(_)) => return Ended::Stopped,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        kill_group(self.guard_pid);
        let _ = guard.kill();
        let _ = guard.wait();
        Ended::Killed
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.guard.is_some() {
            let deadline = Instant::now() + self.role.grace();
            self.finish_stop(deadline);
        }
    }
}

/// Every child of a run; stops them in order (star-nodes, baselines, registry, Redis)
/// when asked or dropped.
#[derive(Debug, Default)]
pub struct Processes {
    children: Vec<Guarded>,
    ended: Vec<(ProcessInfo, Ended)>,
}

impl Processes {
    /// No children yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `spec` and keeps it; returns its index for [`Processes::ready`].
    pub fn spawn(&mut self, spec: Spec) -> Result<usize> {
        let child = Guarded::spawn(spec)?;
        eprintln!(
            "loadtest: started {} (guard pid {})",
            child.name, child.guard_pid
        );
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// Waits for child `index` to be ready (see [`Guarded::ready`]).
    pub async fn ready(
        &mut self,
        index: usize,
        prefix: Option<&str>,
        limit: Duration,
    ) -> Result<String> {
        let child = self
            .children
            .get_mut(index)
            .ok_or_else(|| Error::Internal(format!("no child {index}")))?;
        let line = child.ready(prefix, limit).await?;
        if let Some(pid) = child.pid {
            eprintln!("loadtest: {} is up, pid {pid}", child.name);
        }
        Ok(line)
    }

    /// Whether child `index` is running.
    pub fn is_running(&self, index: usize) -> bool {
        self.children.get(index).is_some_and(Guarded::is_running)
    }

    /// The index of the running child called `name` (names are unique among running
    /// children: a restarted process takes the name of the one it replaces, which has
    /// ended by then).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.children.iter().position(|c| c.name == name)
    }

    /// The pid of the running child called `name`.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.pid)
    }

    /// Kills the child called `name` with SIGKILL, as `kill -9` would (the child alone:
    /// then the guard is told to finish, finds its child gone and ends its group), waits
    /// for the guard to go (within `limit`, then the group is killed), and keeps it as
    /// [`Ended::Faulted`]. Returns the pid killed. Waits without blocking the runtime,
    /// so the load that runs beside the chaos schedule is not held up.
    pub async fn kill(&mut self, name: &str, limit: Duration) -> Result<u32> {
        let index = self
            .index_of(name)
            .ok_or_else(|| Error::Internal(format!("no running process {name} to kill")))?;
        let pid = self.children[index]
            .pid
            .ok_or_else(|| Error::Internal(format!("{name} never reported its pid")))?;
        let sent = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::Start(format!("cannot run kill for {name} (pid {pid}): {e}")))?;
        if !sent.success() && is_running(pid) {
            return Err(Error::Start(format!(
                "kill -KILL {pid} ({name}) failed: {sent}"
            )));
        }
        let mut child = self.children.remove(index);
        // The guard waits on its pipe, not on its child: tell it to finish (its SIGTERM
        // finds nobody; it then ends its group).
        child.ask_to_stop();
        let deadline = tokio::time::Instant::now() + limit;
        if let Some(guard) = child.guard.as_mut() {
            while matches!(guard.try_wait(), Ok(None)) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Reaps the guard (or kills its group if it is still there).
        child.finish_stop(Instant::now());
        self.ended.push((child.info(), Ended::Faulted));
        Ok(pid)
    }

    /// Stops the child called `name` (SIGTERM, then SIGKILL after its grace), if it
    /// runs: a one-off command that has done its work.
    pub fn finish(&mut self, name: &str) {
        if let Some(index) = self.index_of(name) {
            self.discard(index);
        }
    }

    /// Stops child `index` now (a redis-server that took a port someone else had).
    pub fn discard(&mut self, index: usize) {
        if index < self.children.len() {
            let mut child = self.children.remove(index);
            let ended = child.finish_stop(Instant::now() + child.role.grace());
            self.ended.push((child.info(), ended));
        }
    }

    /// The running children: name and pid.
    pub fn running(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.pid?)))
            .collect()
    }

    /// Every child, running or ended, as the report lists them.
    pub fn infos(&self) -> Vec<ProcessInfo> {
        self.ended
            .iter()
            .map(|(info, _)| info.clone())
            .chain(self.children.iter().map(Guarded::info))
            .collect()
    }

    /// The children that have exited on their own, with their last log lines.
    pub fn exited(&self) -> Vec<(String, String)> {
        self.children
            .iter()
            .filter(|c| c.pid.is_some() && !c.is_running())
            .map(|c| (c.name.clone(), c.log_tail()))
            .collect()
    }

    /// Stops every child: star-nodes first (together), then the baselines' nodes, the
    /// registry, and Redis. Returns how each ended (those stopped earlier included).
    pub fn stop_all(&mut self) -> Vec<(ProcessInfo, Ended)> {
        self.stop_running();
        std::mem::take(&mut self.ended)
    }

    /// Stops every running child in the same order as [`Processes::stop_all`] and keeps
    /// how each ended for the report; children started afterwards are tracked as
    /// usual. So one cluster can be torn down before the next starts (the
    /// plain-transport baseline), and the two never share the cores.
    pub fn stop_running(&mut self) {
        let mut children = std::mem::take(&mut self.children);
        children.sort_by_key(|c| c.role);
        let ended = &mut self.ended;
        let mut rest = children.into_iter().peekable();
        while let Some(first) = rest.next() {
            // One role at a time; its members stop in parallel.
            let role = first.role;
            let mut group = vec![first];
            while let Some(next) = rest.next_if(|c| c.role == role) {
                group.push(next);
            }
            let early: Vec<bool> = group
                .iter()
                .map(|c| c.pid.is_some() && !c.is_running())
                .collect();
            for child in &mut group {
                child.ask_to_stop();
            }
            let deadline = Instant::now() + role.grace();
            for (mut child, early) in group.into_iter().zip(early) {
                let how = child.finish_stop(deadline);
                let how = if early { Ended::ExitedEarly } else { how };
                ended.push((child.info(), how));
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        if !self.children.is_empty() {
            self.stop_all();
        }
    }
}

/// SIGKILL to a whole process group (the guard's, which holds its child).
fn kill_group(pgid: u32) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg("kill -KILL -- -$0 2>/dev/null")
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// CPU time (user + system) process `pid` has used so far; `None` where /proc cannot
/// tell. (`/proc/PID/stat` counts in USER_HZ ticks, 100 per second on Linux.)
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the command: state (field 3), …, utime (14), stime (15).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let total = ticks(11)? + ticks(12)?;
    Some(Duration::from_millis(total * 10))
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) if Path::new("/proc/self/stat").exists() => false,
        // No /proc: ask the shell.
        Err(_) => Command::new("sh")
            .arg("-c")
            .arg("kill -0 $0 2>/dev/null")
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// The last lines of a log file, as `": last log lines: …"` (empty when none).
pub fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(5)..];
    format!("; last log lines:\n    {}", tail.join("\n    "))
}

/// Whether `program` is an executable file on PATH.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file this user may execute.
pub fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path, name: &str) -> Spec {
        Spec {
            name: name.into(),
            role: Role::Baseline,
            program: PathBuf::from("sh"),
            args: vec!["-c".into(), "echo ready-now; exec sleep 60".into()],
            env: Vec::new(),
            log: dir.join(format!("{name}.log")),
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hv-loadtest-unit-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn cpu_time_counts_up() {
        let me = std::process::id();
        let before = cpu_time(me).expect("our own /proc entry");
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(cpu_time(me).expect("still there") > before);
        assert_eq!(cpu_time(u32::MAX), None);
    }

    #[tokio::test]
    async fn a_stopped_child_is_gone_and_so_is_its_guard() {
        let dir = temp_dir("stop");
        let mut processes = Processes::new();
        let index = processes.spawn(sleeper(&dir, "sleeper")).unwrap();
        let line = processes
            .ready(index, Some("ready-now"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(line, "ready-now");
        let info = processes.infos().remove(0);
        let pid = info.pid.expect("the guard reports the child's pid");
        assert!(is_running(pid));
        assert!(is_running(info.guard_pid));

        let ended = processes.stop_all();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1, Ended::Stopped);
        assert!(!is_running(pid), "the child is gone");
        assert!(!is_running(info.guard_pid), "the guard is gone");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_killed_child_and_its_guard_are_gone_at_once_and_a_new_one_takes_its_name() {
        let dir = temp_dir("kill");
        let mut processes = Processes::new();
        let index = processes.spawn(sleeper(&dir, "victim")).unwrap();
        processes
            .ready(index, Some("ready-now"), Duration::from_secs(10))
            .await
            .unwrap();
        let info = processes.infos().remove(0);
        let started = Instant::now();
        let pid = processes
            .kill("victim", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(Some(pid), info.pid);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the guard goes with its child: {:?}",
            started.elapsed()
        );
        assert!(!is_running(pid));
        assert!(!is_running(info.guard_pid));
        assert_eq!(processes.pid_of("victim"), None);

        let again = processes.spawn(sleeper(&dir, "victim")).unwrap();
        processes
            .ready(again, Some("ready-now"), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(processes.pid_of("victim").is_some_and(|p| p != pid));
        let ended = processes.stop_all();
        let hows: Vec<Ended> = ended.iter().map(|(_, how)| *how).collect();
        assert_eq!(hows, [Ended::Faulted, Ended::Stopped]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn children_stopped_early_are_gone_and_still_reported() {
        let dir = temp_dir("running");
        let mut processes = Processes::new();
        let first = processes.spawn(sleeper(&dir, "first")).unwrap();
        processes
            .ready(first, Some("ready-now"), Duration::from_secs(10))
            .await
            .unwrap();
        let first_pid = processes.infos()[0].pid.expect("first pid");

        processes.stop_running();
        assert!(!is_running(first_pid), "stopped before the next one starts");
        assert!(processes.running().is_empty());

        let second = processes.spawn(sleeper(&dir, "second")).unwrap();
        processes
            .ready(second, Some("ready-now"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            processes
                .running()
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["second"]
        );
        let ended = processes.stop_all();
        let names: Vec<(&str, Ended)> = ended.iter().map(|(i, e)| (i.name.as_str(), *e)).collect();
        assert_eq!(
            names,
            [("first", Ended::Stopped), ("second", Ended::Stopped)]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_child_that_exits_at_once_is_reported_with_its_log() {
        let dir = temp_dir("early");
        let mut processes = Processes::new();
        let spec = Spec {
            args: vec![
                "-c".into(),
                "echo 'bad config: no such thing' >&2; exit 3".into(),
            ],
            ..sleeper(&dir, "failing")
        };
        let index = processes.spawn(spec).unwrap();
        let error = processes
            .ready(index, Some("ready-now"), Duration::from_secs(10))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("failing exited before it was ready"),
            "{text}"
        );
        assert!(text.contains("bad config"), "{text}");
        drop(processes);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn dropping_the_harness_side_of_the_pipe_stops_the_child() {
        let dir = temp_dir("drop");
        let mut child = Guarded::spawn(sleeper(&dir, "orphan")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(child.ready(Some("ready-now"), Duration::from_secs(10)))
            .unwrap();
        let pid = child.pid.unwrap();
        // What happens when the harness dies: the pipe closes without a word.
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_running(pid), "the guard killed its child at EOF");
        drop(child);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_child_deaf_to_sigterm_is_killed_all_the_same() {
        let dir = temp_dir("deaf");
        let spec = Spec {
            args: vec![
                "-c".into(),
                "trap '' TERM; echo ready-now; while :; do sleep 1; done".into(),
            ],
            ..sleeper(&dir, "deaf")
        };
        let mut child = Guarded::spawn(spec).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(child.ready(Some("ready-now"), Duration::from_secs(10)))
            .unwrap();
        let (pid, guard) = (child.pid.unwrap(), child.guard_pid);
        let started = Instant::now();
        drop(child.stdin.take());
        let deadline = started + Duration::from_secs(20);
        while (is_running(pid) || is_running(guard)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!is_running(pid), "the guard's watchdog killed the child");
        assert!(
            started.elapsed() >= Duration::from_secs(9),
            "SIGTERM was tried first"
        );
        drop(child);
        std::fs::remove_dir_all(dir).ok();
    }
}

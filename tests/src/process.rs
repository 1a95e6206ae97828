//! A process a test started (Envoy, the rate-limit service): killed and
//! reaped on drop, its log printed when the test failed, its scratch dir
//! removed when it passed (kept with `GATEHOUSE_KEEP_SCRATCH`).

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Waits for `child` until `deadline`, polling every `poll`; past the
/// deadline kills and reaps it and answers `None` (every wait is bounded).
pub fn wait_until(child: &mut Child, deadline: Instant, poll: Duration) -> Option<ExitStatus> {
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(poll);
    }
}

pub struct Process {
    name: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    log_path: PathBuf,
}

impl Process {
    pub fn new(name: &'static str, child: Child, dir: PathBuf, log_path: PathBuf) -> Process {
        Process {
            name,
            child: Some(child),
            dir,
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(exit code)` once it has exited (it is then forgotten).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status.code())
    }

    /// Kills it now (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!(
                "===== {} log ({}) =====\n{}\n===== end of {} log =====",
                self.name,
                self.log_path.display(),
                self.log(),
                self.name
            );
        }
        self.stop();
        // Keep the files of a failed test for inspection; tidy up otherwise.
        if !failed && std::env::var_os("GATEHOUSE_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

//! The profile phase of `make bench`: where a row's CPU goes, measured with
//! `perf record -e cpu-clock` on Envoy.
//!
//! After the measured rounds (perf never touches the measured numbers),
//! each row of [`ROWS`] that the run measured gets one more sample of the
//! same configuration with perf sampling Envoy's threads during the load.
//! Every sample is put in a [`Category`] by the object its instruction
//! belongs to (`perf report --sort dso`), and a category's cost is its
//! share of the samples × that sample's CPU µs/req.
//!
//! On by default when `perf` works; `BENCH_PROFILE=0` turns it off,
//! `BENCH_PROFILE_FREQ` sets the sampling frequency (Hz), `BENCH_PROFILE_ROUNDS`
//! the samples per row (the median one is shown). When perf is
//! missing or refuses, the section says why and the bench still succeeds.

use gatehouse_e2e::process::wait_until;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The rows profiled (those a target compares, and their references), in
/// the order of the section.
pub const ROWS: &[&str] = &[
    "baseline",
    "noop",
    "request-id",
    "host-router-50",
    "client-id-apikey",
    "client-id-jwt",
    "native-jwt-authn",
    "rate-limit",
    "https-redirect-http",
    "native-redirect-http",
    "baseline-tls",
    "noop-tls",
    "https-redirect-https",
    "five-separate",
    "five-shared",
    "fused",
];

/// Comparisons of the targets that are not "over the no-op filter": a row
/// and what it is held against.
pub const VERSUS: &[(&str, &str)] = &[
    ("client-id-jwt", "native-jwt-authn"),
    ("https-redirect-http", "native-redirect-http"),
    ("five-shared", "five-separate"),
];

/// Where a sampled instruction was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Code V8 generated at run time: the filters' compiled Wasm and V8's
    /// small per-call wrappers. Anonymous executable memory, which perf
    /// names `[JIT] tid <pid>` (its `/tmp/perf-<pid>.map`, which Envoy does
    /// not write).
    Wasm,
    /// The envoy binary: Envoy itself (with BoringSSL), the proxy-wasm host
    /// calls and V8's runtime and builtins (stripped, so not split further).
    Envoy,
    /// The kernel: syscalls, loopback TCP, interrupts.
    Kernel,
    /// libc, libm, the vDSO and anything else.
    Other,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Wasm,
        Category::Envoy,
        Category::Kernel,
        Category::Other,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Category::Wasm => "Wasm (V8-generated code)",
            Category::Envoy => "envoy binary",
            Category::Kernel => "kernel",
            Category::Other => "libc & other",
        }
    }

    /// The category of a `perf report --sort dso` name; `envoy` is the
    /// file name of the Envoy binary.
    pub fn of_dso(dso: &str, envoy: &str) -> Category {
        let base = dso.rsplit('/').next().unwrap_or(dso);
        if dso.starts_with("[JIT]")
            || dso.starts_with("//anon")
            || dso.starts_with("[anon")
            || (base.starts_with("perf-") && base.ends_with(".map"))
        {
            Category::Wasm
        } else if base == envoy {
            Category::Envoy
        } else if dso.starts_with("[kernel") || dso.starts_with("[guest.kernel") {
            Category::Kernel
        } else {
            Category::Other
        }
    }
}

/// Samples per category of one profiled sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Split {
    samples: [u64; 4],
}

impl Split {
    pub fn total(&self) -> u64 {
        self.samples.iter().sum()
    }

    pub fn samples(&self, c: Category) -> u64 {
        self.samples[c.index()]
    }

    /// Parses `perf report --stdio --sort dso -F sample,dso` (a sample count
    /// and an object name per line; `#` lines are headers).
    pub fn parse(report: &str, envoy: &str) -> Split {
        let mut s = Split::default();
        for line in report.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let Some((n, dso)) = t.split_once(char::is_whitespace) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else {
                continue;
            };
            s.samples[Category::of_dso(dso.trim(), envoy).index()] += n;
        }
        s
    }

    /// µs/req of each category, given the sample's CPU µs/req.
    fn us_per_req(&self, cpu_us_per_req: f64) -> [f64; 4] {
        let total = self.total().max(1) as f64;
        self.samples.map(|n| n as f64 / total * cpu_us_per_req)
    }
}

/// perf, checked to work on this machine.
pub struct Perf {
    freq: u32,
    rounds: usize,
    dir: PathBuf,
    envoy: String,
    n: std::cell::Cell<u32>,
}

impl Perf {
    /// perf when it can be used (`Err` says why not).
    pub fn from_env(envoy_bin: &Path) -> Result<Perf, String> {
        if std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "0") {
            return Err("turned off (`BENCH_PROFILE=0`)".into());
        }
        let freq = std::env::var("BENCH_PROFILE_FREQ")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1999);
        let rounds = std::env::var("BENCH_PROFILE_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3usize)
            .max(1);
        let dir = gatehouse_e2e::scratch_dir("bench-perf");
        let perf = Perf {
            freq,
            rounds,
            dir,
            envoy: envoy_bin
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_else(|| "envoy".into()),
            n: std::cell::Cell::new(0),
        };
        // A probe: record a trivial command with the flags used below.
        let probe = perf.dir.join("probe.data");
        let out = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F"])
            .arg(freq.to_string())
            .args(["--no-buildid", "--no-buildid-cache", "-q", "-o"])
            .arg(&probe)
            .args(["--", "true"])
            .output()
            .map_err(|e| format!("`perf` cannot be run ({e}); install perf"))?;
        let _ = std::fs::remove_file(&probe);
        if !out.status.success() {
            return Err(format!(
                "`perf record -e cpu-clock` failed here ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(perf)
    }

    /// Profiled samples per row (`BENCH_PROFILE_ROUNDS`, default 3).
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Starts sampling process `pid` (all its threads) until
    /// [`Recording::finish`].
    pub fn start(&self, pid: u32) -> Result<Recording, String> {
        let n = self.n.get();
        self.n.set(n + 1);
        let data = self.dir.join(format!("{n}.data"));
        let log = self.dir.join(format!("{n}.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F"])
            .arg(self.freq.to_string())
            .args(["--no-buildid", "--no-buildid-cache", "-q", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot run perf: {e}"))?;
        let mut rec = Recording {
            child,
            data,
            log,
            envoy: self.envoy.clone(),
        };
        // perf writes its header once the events are open; an idle Envoy
        // gives no samples, so waiting a little longer costs nothing.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&rec.data).map_or(0, |m| m.len()) == 0 {
            if let Some(s) = rec.child.try_wait().ok().flatten() {
                return Err(format!("perf record exited ({s}): {}", rec.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("perf record did not start: {}", rec.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(rec)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `perf record`.
pub struct Recording {
    child: Child,
    data: PathBuf,
    log: PathBuf,
    envoy: String,
}

impl Recording {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Stops perf (SIGINT, as Ctrl-C) and splits its samples.
    pub fn finish(mut self) -> Result<Split, String> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        if wait_until(&mut self.child, deadline, Duration::from_millis(20)).is_none() {
            return Err(format!("perf record did not stop: {}", self.log_text()));
        }
        let out = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "-q",
                "--sort",
                "dso",
                "-F",
                "sample,dso",
                "-i",
            ])
            .arg(&self.data)
            .output()
            .map_err(|e| format!("cannot run perf report: {e}"))?;
        let _ = std::fs::remove_file(&self.data);
        let _ = std::fs::remove_file(&self.log);
        let split = Split::parse(&String::from_utf8_lossy(&out.stdout), &self.envoy);
        if split.total() == 0 {
            return Err(format!(
                "perf recorded no samples: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(split)
    }
}

impl Drop for Recording {
    /// A recording never finished (the sample failed): perf is stopped.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One profiled sample: its CPU µs/req and its samples per category.
#[derive(Clone, Debug)]
pub struct Take {
    pub cpu_us_per_req: f64,
    pub split: Result<Split, String>,
}

impl Take {
    /// The take with the median CPU/req among those recorded (the lower
    /// one of an even count), so its categories add up to its total; the
    /// first failure when none was recorded.
    pub fn median(mut takes: Vec<Take>) -> Take {
        let failed = takes.iter().find(|t| t.split.is_err()).cloned();
        takes.retain(|t| t.split.is_ok());
        takes.sort_by(|a, b| a.cpu_us_per_req.total_cmp(&b.cpu_us_per_req));
        let n = takes.len();
        if n == 0 {
            return failed.unwrap_or(Take {
                cpu_us_per_req: 0.0,
                split: Err("not profiled".into()),
            });
        }
        takes.swap_remove((n - 1) / 2)
    }
}

/// One profiled row.
pub struct Row<'a> {
    pub name: &'a str,
    /// What its delta is taken over (the no-op filter of its transport; the
    /// baseline for the no-op filter and for Envoy's native filters).
    pub over: Option<&'a str>,
    /// The profiled sample shown.
    pub take: Take,
    /// The measured rounds' median CPU µs/req.
    pub median_cpu_us_per_req: f64,
}

const HEADING: &str = "## Where the remaining cost is (perf)\n\n";

/// The section when nothing was profiled.
pub fn unavailable(why: &str) -> String {
    format!("{HEADING}Not measured in this run: {why}.\n\n")
}

/// The section: µs/req by category per row, and the deltas.
pub fn section(rows: &[Row], perf: &Perf, seconds: u32, took: Duration) -> String {
    let mut out = String::from(HEADING);
    let freq = perf.freq;
    let which = match perf.rounds {
        1 => "one more sample of each row below".to_string(),
        n => format!(
            "{n} more samples of each row below, interleaved, the one with the median CPU/req shown"
        ),
    };
    out.push_str(&format!(
        "Measured after the rounds above, so perf never touches their numbers: {which}. Envoy is restarted and warmed up as above, and its threads are sampled during the {seconds} s load by `perf record -e cpu-clock -F {freq} -p <envoy pid>`. `perf report --sort dso` names the object each sampled instruction was in; a category's µs/req is its share of the samples × that sample's CPU µs/req. Categories: **Wasm** = code V8 generated at run time (the filters' compiled Wasm and V8's per-call wrappers; perf shows it as `[JIT] tid <pid>`, Envoy's anonymous executable memory); **envoy** = the envoy binary (Envoy itself with BoringSSL, the proxy-wasm host calls, V8's runtime and builtins; stripped, not split further); **kernel** = syscalls, loopback TCP, interrupts; **libc & other** = libc, libm, the vDSO. A category with n samples is known to about ±√n samples; the machine's noise between samples (the yardstick above) is larger. Profile phase took {:.0} s.\n\n",
        took.as_secs_f64()
    ));
    out.push_str(&perf_overhead(rows));
    out.push_str(&sanity(rows));
    let cats = Category::ALL;
    out.push_str("| configuration | perf samples | CPU µs/req (profiled) | (rounds' median) |");
    for c in cats {
        out.push_str(&format!(" {} µs/req (share) |", c.label()));
    }
    out.push_str("\n|---|---:|---:|---:|");
    out.push_str(&"---:|".repeat(cats.len()));
    out.push('\n');
    for r in rows {
        match &r.take.split {
            Ok(s) => {
                let us = s.us_per_req(r.take.cpu_us_per_req);
                out.push_str(&format!(
                    "| {} | {} | {:.1} | {:.1} |",
                    r.name,
                    s.total(),
                    r.take.cpu_us_per_req,
                    r.median_cpu_us_per_req
                ));
                for c in cats {
                    let share = 100.0 * s.samples(c) as f64 / s.total() as f64;
                    out.push_str(&format!(" {:.1} ({share:.0}%) |", us[c.index()]));
                }
                out.push('\n');
            }
            Err(e) => out.push_str(&format!(
                "| {} | not profiled: {} |\n",
                r.name,
                e.replace('|', "/").replace('\n', " ")
            )),
        }
    }
    out.push('\n');
    out.push_str(&deltas(rows));
    out
}

/// The profiled samples' CPU over the rounds' medians: what perf costs.
fn perf_overhead(rows: &[Row]) -> String {
    let ratios: Vec<f64> = rows
        .iter()
        .filter(|r| r.take.split.is_ok() && r.median_cpu_us_per_req > 0.0)
        .map(|r| r.take.cpu_us_per_req / r.median_cpu_us_per_req)
        .collect();
    if ratios.is_empty() {
        return String::new();
    }
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "- profiled sample's CPU/req over the rounds' median: median ×{:.2} (×{min:.2}–×{max:.2}) over the rows (perf's own cost plus the machine's noise)\n",
        crate::median(ratios),
    )
}

/// Rows without Wasm must show (almost) no Wasm samples.
fn sanity(rows: &[Row]) -> String {
    let native: Vec<String> = rows
        .iter()
        .filter(|r| r.name.starts_with("baseline") || r.name.starts_with("native-"))
        .filter_map(|r| {
            let s = r.take.split.as_ref().ok()?;
            Some(format!(
                "{} {} of {}",
                r.name,
                s.samples(Category::Wasm),
                s.total()
            ))
        })
        .collect();
    if native.is_empty() {
        return "\n".into();
    }
    format!(
        "- check: Wasm samples in rows without a Wasm module (0 expected): {}\n\n",
        native.join(", ")
    )
}

/// The CPU each row adds over its reference, per category.
fn deltas(rows: &[Row]) -> String {
    let get = |n: &str| {
        let r = rows.iter().find(|r| r.name == n)?;
        let s = r.take.split.as_ref().ok()?;
        Some((r.take.cpu_us_per_req, s.us_per_req(r.take.cpu_us_per_req)))
    };
    // (row, reference, whether "Wasm's part" means anything: not for the
    // comparisons with Envoy's native filters, whose Wasm is 0).
    let pairs = rows
        .iter()
        .filter_map(|r| Some((r.name, r.over?, true)))
        .chain(VERSUS.iter().map(|&(a, b)| (a, b, false)));
    let mut lines = String::new();
    for (row, over, part) in pairs {
        let (Some((a, ca)), Some((b, cb))) = (get(row), get(over)) else {
            continue;
        };
        let d = a - b;
        lines.push_str(&format!("| {row} | {over} | {d:+.1} |"));
        for c in Category::ALL {
            lines.push_str(&format!(" {:+.1} |", ca[c.index()] - cb[c.index()]));
        }
        let dw = ca[Category::Wasm.index()] - cb[Category::Wasm.index()];
        if part && d > 0.5 {
            lines.push_str(&format!(" {:.0}% |\n", 100.0 * dw / d));
        } else {
            lines.push_str(" – |\n");
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "What each row adds over its reference (the no-op filter of its transport; the baseline for the no-op filter and Envoy's native filters; and the targets' other comparisons), µs/req per category from the profiled samples:\n\n| configuration | over | Δ CPU |",
    );
    for c in Category::ALL {
        out.push_str(&format!(" Δ {} |", c.label()));
    }
    out.push_str(" Wasm's part of Δ CPU |\n|---|---|---:|");
    out.push_str(&"---:|".repeat(Category::ALL.len() + 1));
    out.push('\n');
    out.push_str(&lines);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `perf report --stdio -q --sort dso -F sample,dso` on this machine
    /// (Envoy with a Wasm filter).
    const REPORT: &str = "           194  [JIT] tid 11239  \n           381  [kernel.kallsyms]\n            16  [vdso]           \n           945  envoy            \n            39  libc.so.6        \n             1  libm.so.6        \n";

    #[test]
    fn a_real_report_splits_into_the_four_categories() {
        let s = Split::parse(REPORT, "envoy");
        assert_eq!(s.samples(Category::Wasm), 194);
        assert_eq!(s.samples(Category::Envoy), 945);
        assert_eq!(s.samples(Category::Kernel), 381);
        assert_eq!(s.samples(Category::Other), 56);
        assert_eq!(s.total(), 1576);
    }

    #[test]
    fn headers_and_full_paths_are_handled() {
        let r = "# Samples: 1K\n#\n  10  /tmp/perf-42.map\n  5  /x/y/envoy\n 2 [kernel.vmlinux]\n";
        let s = Split::parse(r, "envoy");
        assert_eq!(
            (
                s.samples(Category::Wasm),
                s.samples(Category::Envoy),
                s.samples(Category::Kernel)
            ),
            (10, 5, 2)
        );
    }

    #[test]
    fn the_median_take_is_a_whole_sample() {
        let take = |cpu: f64, ok: bool| Take {
            cpu_us_per_req: cpu,
            split: if ok {
                Ok(Split::parse(REPORT, "envoy"))
            } else {
                Err("failed".into())
            },
        };
        let m = Take::median(vec![
            take(30.0, true),
            take(10.0, false),
            take(20.0, true),
            take(25.0, true),
        ]);
        assert_eq!(m.cpu_us_per_req, 25.0);
        let m = Take::median(vec![take(30.0, true), take(20.0, true)]);
        assert_eq!(m.cpu_us_per_req, 20.0);
        assert!(Take::median(vec![take(1.0, false)]).split.is_err());
    }

    #[test]
    fn shares_scale_the_sample_cpu() {
        let s = Split::parse(REPORT, "envoy");
        let us = s.us_per_req(15.76);
        assert!((us[Category::Wasm.index()] - 1.94).abs() < 1e-9);
        assert!((us.iter().sum::<f64>() - 15.76).abs() < 1e-9);
    }
}

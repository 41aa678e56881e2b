//! Spreading one run over several generator processes.
//!
//! A process may hold 20,000 open files here, so a scenario whose connections do not fit in
//! one process runs as a parent and `W` workers: the parent re-executes its own binary with
//! the same arguments plus a disjoint `--first`/`--count` share, `--json` and the hidden
//! `--worker`. A worker writes `barrier NAME` lines on stdout where the parent must act (read
//! the server's memory, hold) and waits for a `go` line on stdin; its last stdout line is its
//! report with raw latency samples, which the parent merges into one report. Workers are
//! killed when the parent drops them, and exit by themselves when their stdin closes before
//! they finished (the parent died).

use crate::stats::{Json, Report};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::io::BufRead;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Connections one generator process keeps at most (the limit is 20,000 open files; the
/// rest is headroom for the runtime, HTTPS logins and stdio).
pub const CONNECTIONS_PER_PROCESS: usize = 18_000;

/// Ephemeral ports of one source address towards one server port (about 28k here).
pub const PORTS_PER_SOURCE: usize = 28_000;

/// `--workers` and the hidden `--worker`, for scenarios that can be spread.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Spread {
    /// Generator processes sharing the users (default: 1 when the connections fit in one
    /// process, i.e. under 18,000, otherwise one per 18,000).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Internal: this process is a worker of a parent `msgr-load`.
    #[arg(long, hide = true)]
    pub worker: bool,
}

impl Spread {
    /// How many processes a run with `connections` connections uses.
    pub fn processes(&self, connections: usize) -> usize {
        if self.worker {
            return 1;
        }
        match self.workers {
            Some(w) if w > 0 => w,
            _ => connections.div_ceil(CONNECTIONS_PER_PROCESS).max(1),
        }
    }
}

/// Fails early when `connections` need more ephemeral ports than `sources` addresses have.
pub fn check_ports(connections: usize, sources: u8) -> Result<()> {
    let have = PORTS_PER_SOURCE * usize::from(sources.max(1));
    if connections > have {
        bail!(
            "{connections} connections need more than {have} ephemeral ports: use --sources {}",
            connections.div_ceil(PORTS_PER_SOURCE)
        );
    }
    Ok(())
}

/// One worker's share: items `first` … `first + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub first: usize,
    pub count: usize,
}

/// Splits `total` items numbered from `first` into at most `workers` disjoint, contiguous,
/// non-empty shares whose sizes differ by at most one (one empty share if `total` is 0).
pub fn split(first: usize, total: usize, workers: usize) -> Vec<Share> {
    let w = workers.clamp(1, total.max(1));
    let (base, extra) = (total / w, total % w);
    let mut next = first;
    (0..w)
        .map(|i| {
            let count = base + usize::from(i < extra);
            let s = Share { first: next, count };
            next += count;
            s
        })
        .collect()
}

/// The arguments of `argv` (without the program name) minus every occurrence of the
/// options `valued` (`--x v` or `--x=v`) and the flags `flags`, followed by `extra`.
pub fn child_args(
    argv: &[OsString],
    valued: &[&str],
    flags: &[&str],
    extra: &[String],
) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        let text = a.to_string_lossy();
        let name = text.split('=').next().unwrap_or_default();
        if flags.contains(&text.as_ref()) {
            continue;
        }
        if valued.contains(&name) {
            if !text.contains('=') {
                args.next();
            }
            continue;
        }
        out.push(a.clone());
    }
    out.extend(extra.iter().map(OsString::from));
    out
}

/// What a worker reported, parsed back.
#[derive(Debug, Clone)]
pub struct ChildReport(pub Json);

impl ChildReport {
    pub fn parse(line: &str) -> Result<ChildReport> {
        let j = Json::parse(line).context("a worker's report is not JSON")?;
        anyhow::ensure!(
            matches!(j, Json::Object(_)),
            "a worker's report is not an object"
        );
        Ok(ChildReport(j))
    }

    pub fn number(&self, key: &str) -> f64 {
        self.0.get(key).and_then(Json::as_f64).unwrap_or(0.0)
    }

    pub fn int(&self, key: &str) -> u64 {
        self.number(key).max(0.0).round() as u64
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Json::as_str)
    }

    pub fn samples(&self, key: &str) -> Vec<Duration> {
        match self.0.get("samples").and_then(|s| s.get(key)) {
            Some(Json::Array(v)) => v
                .iter()
                .filter_map(Json::as_f64)
                .map(|ns| Duration::from_nanos(ns.max(0.0) as u64))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Sum of an integer figure over the workers.
pub fn sum(children: &[ChildReport], key: &str) -> u64 {
    children.iter().map(|c| c.int(key)).sum()
}

/// Largest value of a figure over the workers.
pub fn max(children: &[ChildReport], key: &str) -> f64 {
    children.iter().map(|c| c.number(key)).fold(0.0, f64::max)
}

/// All workers' samples of one latency.
pub fn samples(children: &[ChildReport], key: &str) -> Vec<Duration> {
    children.iter().flat_map(|c| c.samples(key)).collect()
}

/// The first worker's text figure `key`, if any has one.
pub fn first_text(children: &[ChildReport], key: &str) -> Option<String> {
    children.iter().find_map(|c| c.text(key)).map(str::to_owned)
}

/// Adds `names`' latencies to `report` from the workers' merged raw samples.
pub fn merge_latencies(report: &mut Report, children: &[ChildReport], names: &[&'static str]) {
    for name in names {
        report.latency(name, samples(children, name));
    }
}

// ---------------------------------------------------------------------------------------
// The worker's side.

static FINISHED: AtomicBool = AtomicBool::new(false);

/// Marks this process as done: its stdin closing from now on is the normal end.
pub fn finishing() {
    FINISHED.store(true, Ordering::SeqCst);
}

/// A worker's link to its parent: barriers on stdout/stdin.
pub struct Link {
    go: mpsc::UnboundedReceiver<()>,
}

impl Link {
    /// Starts watching stdin (on a plain thread, which never delays the exit): each `go`
    /// line releases one barrier; end of input before [`finishing`] ends the process.
    pub fn start() -> Link {
        let (tx, go) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(l) if l.trim() == "go" => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if !FINISHED.load(Ordering::SeqCst) {
                eprintln!("msgr-load worker: the parent went away");
                std::process::exit(3);
            }
        });
        Link { go }
    }

    /// Tells the parent this worker reached `name` and waits until the parent says `go`.
    pub async fn barrier(&mut self, name: &str) -> Result<()> {
        println!("barrier {name}");
        self.go
            .recv()
            .await
            .ok_or_else(|| anyhow!("the parent closed our stdin at barrier {name}"))
    }
}

// ---------------------------------------------------------------------------------------
// The parent's side.

enum Event {
    Line(usize, String),
    Exit(usize, std::io::Result<ExitStatus>, String),
}

/// Running workers. Dropping the pool kills them.
pub struct Pool {
    names: Vec<String>,
    stdins: Vec<Option<ChildStdin>>,
    events: mpsc::UnboundedReceiver<Event>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Each task owns its `Child` (kill_on_drop): aborting it kills the process.
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn exit_error(name: &str, status: std::io::Result<ExitStatus>, stderr: &str) -> anyhow::Error {
    let how = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("could not be waited for ({e})"),
    };
    let stderr = stderr.trim();
    if stderr.is_empty() {
        anyhow!("worker {name} failed: {how}, nothing on stderr")
    } else {
        anyhow!("worker {name} failed: {how}:\n{stderr}")
    }
}

impl Pool {
    /// Starts `program` once per argument list; `names[i]` names worker i in errors.
    pub fn spawn(
        program: &Path,
        arg_lists: Vec<Vec<OsString>>,
        names: Vec<String>,
    ) -> Result<Pool> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut pool = Pool {
            names,
            stdins: Vec::new(),
            events,
            tasks: Vec::new(),
        };
        for (i, args) in arg_lists.into_iter().enumerate() {
            let mut child = Command::new(program)
                .args(args.iter().map(OsString::as_os_str))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                // The worker's error is relayed as text; its backtrace would drown it.
                .env("RUST_LIB_BACKTRACE", "0")
                .spawn()
                .with_context(|| format!("starting worker {}", pool.name(i)))?;
            pool.stdins.push(child.stdin.take());
            let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
            let tx = tx.clone();
            pool.tasks.push(tokio::spawn(async move {
                let err_task = tokio::spawn(async move {
                    let mut text = String::new();
                    if let Some(mut e) = stderr {
                        let mut buf = Vec::new();
                        let _ = e.read_to_end(&mut buf).await;
                        text = String::from_utf8_lossy(&buf).into_owned();
                    }
                    text
                });
                if let Some(out) = stdout {
                    let mut lines = BufReader::new(out).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let _ = tx.send(Event::Line(i, line));
                    }
                }
                let status = child.wait().await;
                let stderr = err_task.await.unwrap_or_default();
                let _ = tx.send(Event::Exit(i, status, stderr));
            }));
        }
        Ok(pool)
    }

    fn name(&self, i: usize) -> String {
        self.names.get(i).cloned().unwrap_or_else(|| i.to_string())
    }

    fn len(&self) -> usize {
        self.stdins.len()
    }

    async fn next(&mut self) -> Result<Event> {
        self.events
            .recv()
            .await
            .ok_or_else(|| anyhow!("lost track of the workers"))
    }

    /// Waits until every worker wrote `barrier name`; any worker ending first fails the run.
    pub async fn barrier(&mut self, name: &str) -> Result<()> {
        let want = format!("barrier {name}");
        let mut reached = vec![false; self.len()];
        while reached.iter().any(|r| !r) {
            match self.next().await? {
                Event::Line(i, l) if l.trim() == want => reached[i] = true,
                Event::Line(i, l) => {
                    bail!(
                        "worker {} wrote {l:?} while the parent waited for {want:?}",
                        self.name(i)
                    )
                }
                Event::Exit(i, status, stderr) => {
                    return Err(exit_error(&self.name(i), status, &stderr)
                        .context(format!("before barrier {name}")))
                }
            }
        }
        Ok(())
    }

    /// Lets every worker go on past its barrier.
    pub async fn release(&mut self) -> Result<()> {
        for i in 0..self.len() {
            let name = self.name(i);
            if let Some(stdin) = &mut self.stdins[i] {
                stdin
                    .write_all(b"go\n")
                    .await
                    .with_context(|| format!("releasing worker {name}"))?;
                stdin.flush().await?;
            }
        }
        Ok(())
    }

    /// Every worker's final report; a worker exiting without one, or unsuccessfully, fails
    /// the run with its stderr.
    pub async fn reports(mut self) -> Result<Vec<ChildReport>> {
        let n = self.len();
        let mut lines: Vec<Option<String>> = vec![None; n];
        let mut exited = vec![false; n];
        while exited.iter().any(|e| !e) {
            match self.next().await? {
                Event::Line(i, l) => lines[i] = Some(l),
                Event::Exit(i, Ok(status), _) if status.success() => {
                    exited[i] = true;
                    self.stdins[i] = None;
                }
                Event::Exit(i, status, stderr) => {
                    return Err(exit_error(&self.name(i), status, &stderr))
                }
            }
        }
        lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let l = l.ok_or_else(|| anyhow!("worker {} printed no report", self.name(i)))?;
                ChildReport::parse(&l).with_context(|| format!("worker {}", self.name(i)))
            })
            .collect()
    }
}

/// This program, to run as workers.
pub fn own_program() -> Result<std::path::PathBuf> {
    std::env::current_exe().context("finding our own executable to start workers")
}

/// The command-line arguments of this process, without the program name.
pub fn own_args() -> Vec<OsString> {
    std::env::args_os().skip(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_disjoint_and_cover_everything() {
        assert_eq!(
            split(100, 10, 3),
            vec![
                Share {
                    first: 100,
                    count: 4
                },
                Share {
                    first: 104,
                    count: 3
                },
                Share {
                    first: 107,
                    count: 3
                },
            ]
        );
        for (total, w) in [(1, 1), (7, 7), (9000, 2), (19_001, 3), (5, 4), (1000, 13)] {
            let s = split(0, total, w);
            assert_eq!(s.len(), w.min(total));
            assert_eq!(s.iter().map(|s| s.count).sum::<usize>(), total);
            let mut next = 0;
            for share in &s {
                assert_eq!(share.first, next);
                assert!(share.count >= total / w && share.count <= total / w + 1);
                next += share.count;
            }
        }
    }

    #[test]
    fn no_more_workers_than_items() {
        assert_eq!(split(0, 2, 5).len(), 2);
        assert_eq!(split(3, 0, 4), vec![Share { first: 3, count: 0 }]);
        assert_eq!(split(0, 5, 0).len(), 1);
    }

    #[test]
    fn automatic_worker_count() {
        let auto = Spread::default();
        assert_eq!(auto.processes(0), 1);
        assert_eq!(auto.processes(17_999), 1);
        assert_eq!(auto.processes(18_000), 1);
        assert_eq!(auto.processes(18_001), 2);
        assert_eq!(auto.processes(40_000), 3);
        let two = Spread {
            workers: Some(2),
            worker: false,
        };
        assert_eq!(two.processes(10), 2);
        let child = Spread {
            workers: Some(4),
            worker: true,
        };
        assert_eq!(child.processes(100_000), 1);
        let zero = Spread {
            workers: Some(0),
            worker: false,
        };
        assert_eq!(zero.processes(100), 1);
    }

    #[test]
    fn ports_per_source_are_checked() {
        assert!(check_ports(27_000, 0).is_ok());
        assert!(check_ports(30_000, 1).is_err());
        assert!(check_ports(30_000, 2).is_ok());
        let e = check_ports(60_000, 2).expect_err("too many").to_string();
        assert!(e.contains("--sources 3"), "{e}");
    }

    #[test]
    fn child_arguments_replace_the_share() {
        let argv: Vec<OsString> = [
            "idle",
            "--count",
            "9000",
            "--first=10",
            "--json",
            "--workers",
            "2",
            "--sources",
            "4",
            "--server-pid",
            "77",
            "--password",
            "pw",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let got = child_args(
            &argv,
            &["--count", "--first", "--workers", "--server-pid"],
            &["--json", "--worker"],
            &["--first".into(), "4510".into(), "--json".into()],
        );
        let got: Vec<_> = got
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "idle",
                "--sources",
                "4",
                "--password",
                "pw",
                "--first",
                "4510",
                "--json"
            ]
        );
    }

    #[test]
    fn reports_merge_sums_maxima_and_samples() {
        let a = ChildReport::parse(
            "{\"scenario\":\"idle\",\"users\":3,\"seconds\":1.5,\"samples\":{\"login\":[1000000,3000000]}}",
        )
        .expect("a");
        let b = ChildReport::parse(
            "{\"scenario\":\"idle\",\"users\":4,\"seconds\":2.5,\"first_error\":\"x\",\"samples\":{\"login\":[2000000]}}",
        )
        .expect("b");
        let both = [a, b];
        assert_eq!(sum(&both, "users"), 7);
        assert_eq!(max(&both, "seconds"), 2.5);
        assert_eq!(sum(&both, "missing"), 0);
        assert_eq!(first_text(&both, "first_error").as_deref(), Some("x"));
        let mut r = Report::new("idle");
        merge_latencies(&mut r, &both, &["login"]);
        let s = r.latencies[0].1;
        assert_eq!(s.count, 3);
        assert_eq!(s.p50, Duration::from_millis(2));
        assert_eq!(s.max, Duration::from_millis(3));
        assert!(ChildReport::parse("[1]").is_err());
        assert!(ChildReport::parse("oops").is_err());
    }

    fn sh(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_failing_worker_fails_the_barrier_with_its_stderr() {
        let started = std::time::Instant::now();
        let mut pool = Pool::spawn(
            Path::new("/bin/sh"),
            vec![
                sh("echo 'barrier half'; read go; sleep 60"),
                sh("echo boom >&2; exit 4"),
            ],
            vec!["a".into(), "b".into()],
        )
        .expect("spawns");
        let e = format!("{:#}", pool.barrier("half").await.expect_err("fails"));
        assert!(e.contains("worker b failed"), "{e}");
        assert!(e.contains("boom"), "{e}");
        drop(pool);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn barriers_and_reports_of_healthy_workers() {
        let script =
            "echo 'barrier half'; read go; [ \"$go\" = go ] || exit 9; echo '{\"users\":2}'";
        let mut pool = Pool::spawn(
            Path::new("/bin/sh"),
            vec![sh(script), sh(script)],
            vec!["a".into(), "b".into()],
        )
        .expect("spawns");
        pool.barrier("half").await.expect("barrier");
        pool.release().await.expect("release");
        let reports = pool.reports().await.expect("reports");
        assert_eq!(sum(&reports, "users"), 4);
    }

    #[tokio::test]
    async fn a_worker_without_a_report_is_an_error() {
        let pool = Pool::spawn(Path::new("/bin/sh"), vec![sh("exit 0")], vec!["a".into()])
            .expect("spawns");
        let e = pool.reports().await.expect_err("fails").to_string();
        assert!(e.contains("printed no report"), "{e}");
    }
}

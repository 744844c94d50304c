//! The harness every benchmark runs on: repetitions, statistics, a progress
//! line, the table, the JSON.
//!
//! # Why it looks like this
//!
//! These machines are shared: a pass of the same loop can run at half speed
//! because another session is compiling, and a round trip takes 13 µs or
//! 54 µs depending on whether the scheduler put both ends on one core. A
//! single number means little. So every benchmark here
//!
//! 1. runs each **variant** it compares (ours, the raw std loop, a peer tool)
//!    in **passes**, **interleaved** — pass 1 of every variant, then pass 2,
//!    the order reversed every other pass — so that a slow minute hurts all
//!    variants alike ([`Bench::interleave`]);
//! 2. throws the **warm-up** passes away (page faults, connection caches,
//!    CPU frequency);
//! 3. keeps every pass's value as [`Samples`] and quotes the **median** with
//!    its **spread** (min and max, quartiles in the JSON);
//! 4. prints each figure beside its **baseline measured in the same run**, as
//!    a ratio ([`Measurement::vs`]), and says whether a [`Goal`] was met.
//!
//! # Writing a benchmark
//!
//! ```
//! use sockstep::bench::harness::{Bench, BenchOptions, Goal, Measurement, Samples, Unit, Variant};
//!
//! let options = BenchOptions { quick: true, quiet: true, ..BenchOptions::default() };
//! let mut bench = Bench::new("example", "sleeping, ours vs raw", &options);
//! bench.setup("3 passes of one sleep each, interleaved");
//! let nap = |ms| move || {
//!     let started = std::time::Instant::now();
//!     std::thread::sleep(std::time::Duration::from_millis(ms));
//!     Ok(started.elapsed().as_secs_f64())
//! };
//! let mut variants = [Variant::new("raw", nap(1)), Variant::new("ours", nap(1))];
//! let passes = bench.interleave("1 ms sleep", 1, 3, &mut variants, |s| Unit::Seconds.format(*s))?;
//! for (variant, values) in ["raw", "ours"].into_iter().zip(passes) {
//!     let m = Measurement::new("1 ms sleep", variant, Unit::Seconds, Samples::new(values));
//!     bench.record(if variant == "ours" { m.vs("raw").goal(Goal::AtMost(1.5)) } else { m });
//! }
//! let report = bench.finish();
//! assert!(report.table().contains("1 ms sleep"));
//! assert!(report.json().contains("\"benchmark\": \"example\""));
//! # Ok::<(), sockstep::Error>(())
//! ```
//!
//! A benchmark module exposes `run(&BenchOptions) -> Result<Report, Error>`;
//! [`crate::bench::run`] finds it by name, and the command line prints
//! [`Report::table`] or [`Report::json`].

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use crate::error::{Error, ErrorKind};
use crate::readable::grouped;
use crate::step::Step;

// --- options ---------------------------------------------------------------------

/// How a benchmark runs: what `sockstep bench NAME [--quick] [--json] [--svg DIR]` asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BenchOptions {
    /// Few, short passes: seconds in all, for a look or a test. Numbers from a
    /// quick run are for checking that things work, not for quoting.
    pub quick: bool,
    /// The caller will print JSON. The benchmark itself does not care; it is
    /// here so that one value carries the whole command line.
    pub json: bool,
    /// No progress line on standard error (tests).
    pub quiet: bool,
    /// Write the benchmark's plots (SVG) into this directory, if it draws any.
    pub svg_dir: Option<PathBuf>,
    /// The `sockstep` program, for benchmarks that start helper processes of
    /// it (`idle` runs its server in one). `None`: this process's own program,
    /// which is right for the `sockstep` binary; a test passes
    /// `env!("CARGO_BIN_EXE_sockstep")`.
    pub program: Option<PathBuf>,
}

impl BenchOptions {
    /// `full` normally, `quick` with [`BenchOptions::quick`].
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    /// The program to start for helper processes (see [`BenchOptions::program`]).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] when this process cannot find its own program.
    pub fn program(&self) -> Result<PathBuf, Error> {
        match &self.program {
            Some(path) => Ok(path.clone()),
            None => env::current_exe().map_err(|e| bench_error("find this program", e)),
        }
    }
}

// --- statistics ----------------------------------------------------------------

/// The values of several passes of one thing, with the statistics the
/// tables quote. Keeps the values both sorted and in the order they were
/// taken (pass order), so that two variants measured in interleaved passes
/// can be compared pass by pass ([`Report::ratio`]).
///
/// Percentiles interpolate linearly between the two nearest ranks (what
/// spreadsheets and numpy do by default), so the median of an even count is
/// the mean of the middle two, and `percentile(0.0)` and `percentile(100.0)`
/// are the minimum and maximum.
///
/// ```
/// use sockstep::bench::harness::Samples;
/// let s = Samples::new(vec![4.0, 1.0, 3.0, 2.0]);
/// assert_eq!((s.min(), s.median(), s.max()), (1.0, 2.5, 4.0));
/// assert_eq!(s.percentile(25.0), 1.75);
/// assert_eq!(s.in_order(), &[4.0, 1.0, 3.0, 2.0]);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Samples {
    sorted: Vec<f64>,
    in_order: Vec<f64>,
}

impl Samples {
    /// Samples of `values`, in the order they were taken; NaNs are dropped.
    pub fn new(mut values: Vec<f64>) -> Samples {
        values.retain(|v| !v.is_nan());
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        Samples {
            sorted,
            in_order: values,
        }
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// No values at all.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The values, smallest first.
    pub fn values(&self) -> &[f64] {
        &self.sorted
    }

    /// The values in the order they were taken.
    pub fn in_order(&self) -> &[f64] {
        &self.in_order
    }

    /// The `p`-th percentile, `p` in 0..=100 (clamped); 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.sorted.len();
        if n == 0 {
            return 0.0;
        }
        let rank = p.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
        let below = rank.floor() as usize;
        let above = (below + 1).min(n - 1);
        let fraction = rank - below as f64;
        self.sorted[below] + fraction * (self.sorted[above] - self.sorted[below])
    }

    /// The middle value (of an even count, the mean of the middle two).
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    /// The smallest value; 0 when empty.
    pub fn min(&self) -> f64 {
        self.sorted.first().copied().unwrap_or(0.0)
    }

    /// The largest value; 0 when empty.
    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(0.0)
    }

    /// The first quartile.
    pub fn p25(&self) -> f64 {
        self.percentile(25.0)
    }

    /// The third quartile.
    pub fn p75(&self) -> f64 {
        self.percentile(75.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> f64 {
        self.percentile(99.0)
    }

    /// The arithmetic mean; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.sorted.is_empty() {
            0.0
        } else {
            self.sorted.iter().sum::<f64>() / self.sorted.len() as f64
        }
    }
}

/// Runs `f` `warmup` times and throws the results away, then `reps` times
/// and keeps them. The simplest harness: one variant, nothing interleaved.
/// To compare variants use [`Bench::interleave`].
///
/// ```
/// use sockstep::bench::harness::run_repeated;
/// let mut n = 0.0;
/// let samples = run_repeated(2, 3, || { n += 1.0; Ok(n) })?;
/// assert_eq!(samples.values(), &[3.0, 4.0, 5.0]);
/// # Ok::<(), sockstep::Error>(())
/// ```
///
/// # Errors
/// The first error `f` returns.
pub fn run_repeated(
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<f64, Error>,
) -> Result<Samples, Error> {
    for _ in 0..warmup {
        f()?;
    }
    let mut values = Vec::with_capacity(reps);
    for _ in 0..reps {
        values.push(f()?);
    }
    Ok(Samples::new(values))
}

/// The p50 and p99 of one pass of timed operations (round trips), in
/// seconds: what a latency benchmark keeps of each pass. Across passes the
/// tables then quote the median p50 and the median p99
/// ([`Bench::record_latency`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// The pass's median.
    pub p50: f64,
    /// The pass's 99th percentile.
    pub p99: f64,
}

impl Latency {
    /// The p50 and p99 of `times` (seconds, any order).
    pub fn of(times: Vec<f64>) -> Latency {
        let s = Samples::new(times);
        Latency {
            p50: s.median(),
            p99: s.p99(),
        }
    }

    /// `p50 25.1 µs  p99 58.8 µs`, for the progress line.
    pub fn show(&self) -> String {
        format!(
            "p50 {}  p99 {}",
            Unit::Seconds.format(self.p50),
            Unit::Seconds.format(self.p99)
        )
    }
}

/// Round trips on two paths in turns, one by one — `a` first on even turns,
/// `b` first on odd ones, so that neither always follows the other — after
/// `warmup` untimed turns; then `count` timed ones. `a` and `b` each make one
/// round trip and say how long it took, in seconds. Each path's latencies.
///
/// # Errors
/// The first error either path returns.
pub fn alternate(
    warmup: usize,
    count: usize,
    mut a: impl FnMut() -> Result<f64, Error>,
    mut b: impl FnMut() -> Result<f64, Error>,
) -> Result<(Latency, Latency), Error> {
    let (mut a_times, mut b_times) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..warmup + count {
        let (ta, tb) = if i % 2 == 0 {
            let ta = a()?;
            (ta, b()?)
        } else {
            let tb = b()?;
            (a()?, tb)
        };
        if i >= warmup {
            a_times.push(ta);
            b_times.push(tb);
        }
    }
    Ok((Latency::of(a_times), Latency::of(b_times)))
}

// --- units ---------------------------------------------------------------------

/// What a measured number counts, and how to print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Payload bits per second (printed as Gbit/s, Mbit/s …). Higher is better.
    BitsPerSecond,
    /// Operations per second; the name says of what ("conn", "datagrams",
    /// "writes"). Higher is better.
    PerSecond(&'static str),
    /// A duration in seconds (printed as ns, µs, ms or s). Lower is better.
    Seconds,
    /// An amount of memory in bytes (printed as kB, MB, decimal). Lower is better.
    Bytes,
    /// A count of things, named: `threads`. Lower is better.
    Count(&'static str),
}

impl Unit {
    /// Whether a larger number is the better one.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::BitsPerSecond | Unit::PerSecond(_))
    }

    /// The unit's name in the JSON: `bit/s`, `conn/s`, `s`, `B`, `threads`.
    pub fn json_name(self) -> String {
        match self {
            Unit::BitsPerSecond => "bit/s".into(),
            Unit::PerSecond(what) => format!("{what}/s"),
            Unit::Seconds => "s".into(),
            Unit::Bytes => "B".into(),
            Unit::Count(what) => what.into(),
        }
    }

    /// `value` for people: `15.9 Gbit/s`, `12,345 conn/s`, `54.1 µs`, `46.2 kB`,
    /// `10,002 threads`.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::BitsPerSecond => scaled(
                value,
                &[
                    (1e9, "Gbit/s"),
                    (1e6, "Mbit/s"),
                    (1e3, "kbit/s"),
                    (1.0, "bit/s"),
                ],
            ),
            Unit::PerSecond(what) => {
                if value >= 1e6 {
                    format!("{:.2} M {what}/s", value / 1e6)
                } else {
                    format!("{} {what}/s", grouped(value.round().max(0.0) as u64))
                }
            }
            Unit::Seconds => scaled(
                value,
                &[(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")],
            ),
            Unit::Bytes => scaled(value, &[(1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B")]),
            Unit::Count(what) => format!("{} {what}", grouped(value.round().max(0.0) as u64)),
        }
    }
}

/// `value` in the first of `scales` (largest first) it reaches, with three
/// significant digits: 15.9, 154, 1.23.
fn scaled(value: f64, scales: &[(f64, &str)]) -> String {
    let (factor, name) = scales
        .iter()
        .find(|(factor, _)| value.abs() >= *factor)
        .or(scales.last())
        .copied()
        .unwrap_or((1.0, ""));
    let v = value / factor;
    let decimals = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$} {name}")
}

/// Bytes as people count write sizes: `65,536 B (64 KiB)`, `65,483 B`.
pub fn write_size(bytes: usize) -> String {
    let exact = format!("{} B", grouped(bytes as u64));
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{exact} ({} MiB)", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{exact} ({} KiB)", b >> 10),
        _ => exact,
    }
}

// --- measurements, goals and the report -------------------------------------------

/// A goal for a measurement's ratio to its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The ratio must be at least this (throughput: 0.95 = "95 % of raw").
    AtLeast(f64),
    /// The ratio must be at most this (latency: 1.05 = "within 5 % of raw").
    AtMost(f64),
}

impl Goal {
    /// Whether `ratio` meets the goal.
    pub fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtLeast(g) => ratio >= g,
            Goal::AtMost(g) => ratio <= g,
        }
    }

    fn describe(self) -> String {
        match self {
            Goal::AtLeast(g) => format!("≥{g:.2}×"),
            Goal::AtMost(g) => format!("≤{g:.2}×"),
        }
    }
}

/// One cell of a benchmark: a case (what was done), a variant (who did it),
/// the samples, and optionally the variant of the same case it is compared
/// with and a goal for that ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// What was measured: `65,536 B (64 KiB) writes`, `64 B round trip, p99`.
    pub case: String,
    /// Who did it: `ours`, `raw`, `iperf3`, `trace off`.
    pub variant: String,
    /// What the numbers count.
    pub unit: Unit,
    /// One value per pass.
    pub samples: Samples,
    /// The variant of the same case this one is compared with — or, with
    /// `baseline_samples`, the name of a baseline measured alongside that has
    /// no row of its own.
    pub baseline: Option<String>,
    /// The baseline's samples, when it has no row of its own
    /// ([`Measurement::vs_alongside`]).
    pub baseline_samples: Option<Samples>,
    /// What the ratio to the baseline should be.
    pub goal: Option<Goal>,
    /// A remark printed under the table (`*` marks the row).
    pub note: Option<String>,
}

impl Measurement {
    /// A measurement with no baseline.
    pub fn new(
        case: impl Into<String>,
        variant: impl Into<String>,
        unit: Unit,
        samples: Samples,
    ) -> Measurement {
        Measurement {
            case: case.into(),
            variant: variant.into(),
            unit,
            samples,
            baseline: None,
            baseline_samples: None,
            goal: None,
            note: None,
        }
    }

    /// Compared with `variant` of the same case: the table prints the
    /// ratio ([`Report::ratio`]).
    pub fn vs(mut self, variant: impl Into<String>) -> Measurement {
        self.baseline = Some(variant.into());
        self
    }

    /// Compared with `samples` of a baseline called `name` that was measured
    /// alongside, pass for pass, but gets no row of its own (the idle
    /// benchmark's reference server, measured at every level).
    pub fn vs_alongside(mut self, name: impl Into<String>, samples: Samples) -> Measurement {
        self.baseline = Some(name.into());
        self.baseline_samples = Some(samples);
        self
    }

    /// With a goal for that ratio.
    pub fn goal(mut self, goal: Goal) -> Measurement {
        self.goal = Some(goal);
        self
    }

    /// With a remark.
    pub fn note(mut self, note: impl Into<String>) -> Measurement {
        self.note = Some(note.into());
        self
    }
}

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The CPU's model name from /proc/cpuinfo.
    pub cpu: String,
    /// The kernel release.
    pub kernel: String,
    /// What `rustc --version` on `PATH` says (the compiler that built us, as a rule).
    pub rustc: String,
}

impl Machine {
    /// Looks at this machine. Whatever cannot be found reads "unknown".
    pub fn detect() -> Machine {
        let unknown = || "unknown".to_string();
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_string())
            })
            .unwrap_or_else(unknown);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_else(|_| unknown());
        let rustc = Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(unknown);
        Machine {
            cores: thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel,
            rustc,
        }
    }

    /// `2 cores, AMD EPYC, Linux 6.1.0, rustc 1.95.0 (…)`.
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {}, Linux {}, {}",
            self.cores, self.cpu, self.kernel, self.rustc
        )
    }
}

/// Everything one benchmark found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// The benchmark's name: `tcp-rr`.
    pub name: String,
    /// One line: what it compares.
    pub title: String,
    /// Whether it was a quick run.
    pub quick: bool,
    /// How it ran: passes, sizes, durations; one line each.
    pub setup: Vec<String>,
    /// Where it ran.
    pub machine: Machine,
    /// The cells, in table order.
    pub measurements: Vec<Measurement>,
    /// Remarks for under the table: a peer tool missing, a cap hit.
    pub notes: Vec<String>,
    /// The plots written, if any.
    pub plots: Vec<PathBuf>,
}

impl Report {
    /// The measurement of `variant` in `case`.
    pub fn find(&self, case: &str, variant: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.case == case && m.variant == variant)
    }

    /// How `m` compares with its baseline, if it has one in this report.
    ///
    /// When both have the same number of passes (more than one) — passes
    /// taken side by side by [`Bench::interleave`] — the ratio is the median
    /// of the pass-by-pass ratios: pass *i* of `m` ÷ pass *i* of the
    /// baseline. Passes taken seconds apart on a shared machine can differ
    /// by 2×; two passes taken one after the other mostly see the same
    /// machine, so their ratio is steadier than the ratio of two medians.
    /// Otherwise it is `m`'s median ÷ the baseline's median.
    pub fn ratio(&self, m: &Measurement) -> Option<f64> {
        let base = self.baseline_of(m)?;
        let (ours, theirs) = (m.samples.in_order(), base.in_order());
        if ours.len() == theirs.len() && ours.len() > 1 {
            let ratios: Vec<f64> = ours
                .iter()
                .zip(theirs)
                .filter(|(_, t)| **t != 0.0)
                .map(|(o, t)| o / t)
                .collect();
            return (!ratios.is_empty()).then(|| Samples::new(ratios).median());
        }
        self.ratio_of_medians(m)
    }

    /// `m`'s median ÷ its baseline's median, if it has a baseline in this
    /// report with a nonzero median.
    pub fn ratio_of_medians(&self, m: &Measurement) -> Option<f64> {
        let denominator = self.baseline_of(m)?.median();
        (denominator != 0.0).then(|| m.samples.median() / denominator)
    }

    /// The samples `m` is compared with: its own (measured alongside), or
    /// those of its baseline's row.
    fn baseline_of<'a>(&'a self, m: &'a Measurement) -> Option<&'a Samples> {
        match &m.baseline_samples {
            Some(samples) => Some(samples),
            None => Some(&self.find(&m.case, m.baseline.as_deref()?)?.samples),
        }
    }

    /// The report for people: a header, the table, the notes.
    ///
    /// Columns: case, variant, median, spread (the slowest and fastest pass
    /// relative to the median), the ratio to the baseline, and the goal
    /// (`met` or `MISSED`).
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "{} — {}", self.name, self.title);
        for line in &self.setup {
            let _ = writeln!(t, "  setup:   {line}");
        }
        let _ = writeln!(t, "  machine: {}", self.machine.describe());
        if self.quick {
            let _ = writeln!(t, "  (a quick run: a smoke test, not numbers to quote)");
        }
        let _ = writeln!(t);
        let mut table = Table::new(&["case", "variant", "median", "spread", "ratio", "goal"]);
        table.align_right(&[2, 3, 4]);
        let mut notes: Vec<String> = Vec::new();
        let mut previous_case = None;
        for m in &self.measurements {
            let case = if previous_case == Some(&m.case) {
                String::new()
            } else {
                m.case.clone()
            };
            previous_case = Some(&m.case);
            let mut variant = m.variant.clone();
            if let Some(note) = &m.note {
                let stars = match notes.iter().position(|n| n == note) {
                    Some(i) => i + 1,
                    None => {
                        notes.push(note.clone());
                        notes.len()
                    }
                };
                variant.push_str(&"*".repeat(stars));
            }
            let ratio = self.ratio(m);
            let ratio_text = match (&m.baseline, ratio) {
                (Some(base), Some(r)) => format!("{r:.2}× {base}"),
                (Some(_), None) => "—".into(),
                (None, _)
                    if self.measurements.iter().any(|o| {
                        o.case == m.case && o.baseline.as_deref() == Some(m.variant.as_str())
                    }) =>
                {
                    "(baseline)".into()
                }
                (None, _) => String::new(),
            };
            let goal = match (m.goal, ratio) {
                (Some(g), Some(r)) if g.met(r) => format!("{} met", g.describe()),
                (Some(g), Some(_)) => format!("{} MISSED", g.describe()),
                (Some(g), None) => format!("{} ?", g.describe()),
                (None, _) => String::new(),
            };
            table.row(vec![
                case,
                variant,
                m.unit.format(m.samples.median()),
                spread(&m.samples),
                ratio_text,
                goal,
            ]);
        }
        t.push_str(&table.render());
        let _ = writeln!(
            t,
            "\nmedian: of the passes; spread: the slowest and fastest pass against the median; \
             ratio: to the baseline measured in the same run, the median of pass-by-pass \
             ratios when the passes were interleaved."
        );
        for (i, note) in notes.iter().enumerate() {
            let _ = writeln!(t, "{} {note}", "*".repeat(i + 1));
        }
        for note in &self.notes {
            let _ = writeln!(t, "note: {note}");
        }
        for plot in &self.plots {
            let _ = writeln!(t, "plot: {}", plot.display());
        }
        t
    }

    /// The report as one JSON object (hand-written: the crate has no
    /// dependencies). Every measurement carries its statistics, its raw pass
    /// values, its baseline's name, its ratio and whether its goal was met.
    pub fn json(&self) -> String {
        let mut j = String::from("{\n");
        let _ = writeln!(j, "  \"benchmark\": {},", json_str(&self.name));
        let _ = writeln!(j, "  \"title\": {},", json_str(&self.title));
        let _ = writeln!(j, "  \"quick\": {},", self.quick);
        let _ = writeln!(j, "  \"setup\": {},", json_strs(&self.setup));
        let _ = writeln!(
            j,
            "  \"machine\": {{\"cores\": {}, \"cpu\": {}, \"kernel\": {}, \"rustc\": {}}},",
            self.machine.cores,
            json_str(&self.machine.cpu),
            json_str(&self.machine.kernel),
            json_str(&self.machine.rustc)
        );
        j.push_str("  \"measurements\": [\n");
        for (i, m) in self.measurements.iter().enumerate() {
            let s = &m.samples;
            let ratio = self.ratio(m);
            let values: Vec<String> = s.in_order().iter().map(|v| json_num(Some(*v))).collect();
            let _ = write!(
                j,
                "    {{\"case\": {}, \"variant\": {}, \"unit\": {}, \"higher_is_better\": {}, \
                 \"n\": {}, \"median\": {}, \"min\": {}, \"max\": {}, \"p25\": {}, \"p75\": {}, \
                 \"p99\": {}, \"mean\": {}, \"values_in_pass_order\": [{}], \"baseline\": {}, \
                 \"baseline_median\": {}, \"ratio\": {}, \"ratio_of_medians\": {}, \"goal\": {}, \"goal_met\": {}, \
                 \"note\": {}}}",
                json_str(&m.case),
                json_str(&m.variant),
                json_str(&m.unit.json_name()),
                m.unit.higher_is_better(),
                s.len(),
                json_num(Some(s.median())),
                json_num(Some(s.min())),
                json_num(Some(s.max())),
                json_num(Some(s.p25())),
                json_num(Some(s.p75())),
                json_num(Some(s.p99())),
                json_num(Some(s.mean())),
                values.join(", "),
                m.baseline.as_deref().map_or("null".into(), json_str),
                json_num(self.baseline_of(m).map(Samples::median)),
                json_num(ratio),
                json_num(self.ratio_of_medians(m)),
                m.goal.map_or("null".into(), |g| json_str(&g.describe())),
                match (m.goal, ratio) {
                    (Some(g), Some(r)) => g.met(r).to_string(),
                    _ => "null".into(),
                },
                m.note.as_deref().map_or("null".into(), json_str),
            );
            j.push_str(if i + 1 < self.measurements.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        j.push_str("  ],\n");
        let _ = writeln!(j, "  \"notes\": {},", json_strs(&self.notes));
        let plots: Vec<String> = self.plots.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(j, "  \"plots\": {}", json_strs(&plots));
        j.push_str("}\n");
        j
    }
}

/// The spread of `s` against its median: `−3% +5%`, or `—` for one value.
fn spread(s: &Samples) -> String {
    let median = s.median();
    if s.len() < 2 || median == 0.0 {
        return "—".into();
    }
    let low = (s.min() / median - 1.0) * 100.0;
    let high = (s.max() / median - 1.0) * 100.0;
    // min ≤ median ≤ max, so `low` ≤ 0 ≤ `high`.
    format!("−{:.0}% +{:.0}%", -low, high)
}

// --- the table printer -------------------------------------------------------------

/// A plain text table: a header, a rule, rows; columns as wide as their
/// widest cell (counted in characters, so `µs` and `×` line up).
///
/// ```
/// use sockstep::bench::harness::Table;
/// let mut t = Table::new(&["variant", "median"]);
/// t.align_right(&[1]);
/// t.row(vec!["raw".into(), "54.1 µs".into()]);
/// t.row(vec!["ours".into(), "55.0 µs".into()]);
/// assert_eq!(t.render(), "variant   median\n-------  -------\nraw      54.1 µs\nours     55.0 µs\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, every column left-aligned.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns at these indices (numbers).
    pub fn align_right(&mut self, columns: &[usize]) {
        for &c in columns {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, trailing spaces trimmed.
    pub fn render(&self) -> String {
        let width = |c: usize| {
            self.rows
                .iter()
                .map(|r| r[c].chars().count())
                .chain([self.headers[c].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c > 0 {
                    out.push_str("  ");
                }
                if self.right[c] {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.headers);
        let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rules));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

// --- running: progress, interleaved passes ------------------------------------------

/// The progress line on standard error while a benchmark runs.
///
/// On a terminal it is one line rewritten in place; elsewhere (a log, a CI
/// job) one line per update. Standard output stays free for the table or
/// the JSON.
#[derive(Debug)]
pub struct Progress {
    bench: String,
    quiet: bool,
    terminal: bool,
    drawn: bool,
}

impl Progress {
    /// Progress for benchmark `bench`; silent if `quiet`.
    pub fn new(bench: &str, quiet: bool) -> Progress {
        Progress {
            bench: bench.to_string(),
            quiet,
            terminal: io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// Shows `text` as the current state.
    pub fn update(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = io::stderr().lock();
        // Progress is a courtesy: a closed stderr must not stop a benchmark.
        let _ = if self.terminal {
            self.drawn = true;
            write!(err, "\r\x1b[2K[{}] {text}", self.bench)
        } else {
            writeln!(err, "[{}] {text}", self.bench)
        };
        let _ = err.flush();
    }

    /// Ends the line, if one is drawn in place.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One thing a benchmark compares: a name and a function that runs one pass
/// and returns what it measured.
pub struct Variant<'a, T> {
    /// `ours`, `raw`, `iperf3` …
    pub name: String,
    pass: Box<dyn FnMut() -> Result<T, Error> + 'a>,
}

impl<'a, T> Variant<'a, T> {
    /// A variant called `name` whose passes are `pass`.
    pub fn new(
        name: impl Into<String>,
        pass: impl FnMut() -> Result<T, Error> + 'a,
    ) -> Variant<'a, T> {
        Variant {
            name: name.into(),
            pass: Box::new(pass),
        }
    }
}

impl<T> std::fmt::Debug for Variant<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Variant({})", self.name)
    }
}

/// A benchmark being run: its options, its progress line, and the report it
/// fills in. [`Bench::finish`] hands the report over.
#[derive(Debug)]
pub struct Bench {
    report: Report,
    progress: Progress,
    options: BenchOptions,
}

impl Bench {
    /// Starts benchmark `name` ("what it compares" in `title`).
    pub fn new(name: &str, title: &str, options: &BenchOptions) -> Bench {
        Bench {
            report: Report {
                name: name.to_string(),
                title: title.to_string(),
                quick: options.quick,
                machine: Machine::detect(),
                ..Report::default()
            },
            progress: Progress::new(name, options.quiet),
            options: options.clone(),
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> &BenchOptions {
        &self.options
    }

    /// Adds a line to the report's setup (passes, sizes, durations).
    pub fn setup(&mut self, line: impl Into<String>) {
        self.report.setup.push(line.into());
    }

    /// Adds a remark under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.report.notes.push(note.into());
    }

    /// Shows `text` on the progress line.
    pub fn progress(&mut self, text: &str) {
        self.progress.update(text);
    }

    /// Adds a cell to the table.
    pub fn record(&mut self, measurement: Measurement) {
        self.report.measurements.push(measurement);
    }

    /// Records the rows of a latency case: `{case}, p50` and `{case}, p99`,
    /// each with a row per variant (`names[i]` with `passes[i]`, one
    /// [`Latency`] per pass). Every variant after the first is compared with
    /// the first, with `goal` if given.
    pub fn record_latency(
        &mut self,
        case: &str,
        names: &[&str],
        passes: &[Vec<Latency>],
        goal: Option<Goal>,
    ) {
        for (label, pick) in [
            ("p50", (|l: &Latency| l.p50) as fn(&Latency) -> f64),
            ("p99", |l| l.p99),
        ] {
            for (i, (name, values)) in names.iter().zip(passes).enumerate() {
                let samples = Samples::new(values.iter().map(pick).collect());
                let m = Measurement::new(format!("{case}, {label}"), *name, Unit::Seconds, samples);
                self.record(match (i, goal) {
                    (0, _) => m,
                    (_, Some(goal)) => m.vs(names[0]).goal(goal),
                    (_, None) => m.vs(names[0]),
                });
            }
        }
    }

    /// Notes a plot that was written.
    pub fn plot_written(&mut self, path: PathBuf) {
        self.report.plots.push(path);
    }

    /// The report so far (to draw plots from it before finishing).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Runs `warmup + reps` passes of every variant, interleaved: pass *i*
    /// of each variant before pass *i* + 1 of any, in the given order on even
    /// passes and reversed on odd ones (so neither variant always runs right
    /// after the other). Warm-up results are dropped. Returns each variant's
    /// kept results, in the order of `variants`. `show` turns a result into
    /// text for the progress line.
    ///
    /// # Errors
    /// The first error of any pass, which ends the run.
    pub fn interleave<T>(
        &mut self,
        case: &str,
        warmup: usize,
        reps: usize,
        variants: &mut [Variant<'_, T>],
        show: impl Fn(&T) -> String,
    ) -> Result<Vec<Vec<T>>, Error> {
        let mut kept: Vec<Vec<T>> = variants.iter().map(|_| Vec::with_capacity(reps)).collect();
        let total = warmup + reps;
        for pass in 0..total {
            let order: Vec<usize> = if pass % 2 == 0 {
                (0..variants.len()).collect()
            } else {
                (0..variants.len()).rev().collect()
            };
            for i in order {
                let variant = &mut variants[i];
                let label = if pass < warmup {
                    format!("{case}: warm-up {}/{warmup}, {}", pass + 1, variant.name)
                } else {
                    format!(
                        "{case}: pass {}/{reps}, {}",
                        pass - warmup + 1,
                        variant.name
                    )
                };
                self.progress.update(&format!("{label} …"));
                let result = (variant.pass)().inspect_err(|_| self.progress.finish())?;
                self.progress.update(&format!("{label}: {}", show(&result)));
                if pass >= warmup {
                    kept[i].push(result);
                }
            }
        }
        Ok(kept)
    }

    /// Ends the run: clears the progress line and returns the report.
    pub fn finish(mut self) -> Report {
        self.progress.finish();
        self.report
    }
}

// --- peer tools -----------------------------------------------------------------

/// The peer tools the benchmarks compare with, when installed.
pub const PEER_TOOLS: [&str; 3] = ["iperf3", "wrk", "nginx"];

/// Where a program is: on `PATH`, or in the sbin directories a non-root
/// `PATH` often lacks (nginx lives in /usr/sbin).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// One line: which of [`PEER_TOOLS`] are installed. `make bench` and
/// `sockstep bench all` print it; nothing is installed by either.
pub fn peers_found() -> String {
    let found: Vec<String> = PEER_TOOLS
        .iter()
        .map(|tool| match find_tool(tool) {
            Some(path) => format!("{tool} ({})", path.display()),
            None => format!("{tool}: not installed"),
        })
        .collect();
    format!("peer tools: {}", found.join(", "))
}

// --- CPU time ---------------------------------------------------------------------

/// How long the calling thread has run on a CPU, from the first field of
/// `/proc/thread-self/schedstat` (nanoseconds); `None` where that file is
/// missing.
///
/// Wall-clock rates on a shared machine measure the other tenants as much as
/// the code: a pass that lost a core for 50 ms runs at two thirds of the
/// speed. The CPU time a thread spent moving a megabyte is nearly immune to
/// that, so benchmarks quote it beside the rate as the steadier measure of
/// what the code costs. Precision: the kernel brings the figure up to date
/// when the thread stops running or at a scheduler tick, so read it right
/// after a blocking call (the end of a read, a connect), where it is exact
/// to within microseconds. (std has no getrusage or CLOCK_THREAD_CPUTIME_ID,
/// and sockstep uses no `unsafe`.)
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(nanos))
}

// --- files, errors, JSON ------------------------------------------------------------

/// Writes `text` to `dir/name`, making `dir` if needed; returns the path.
///
/// # Errors
/// [`ErrorKind::Os`] naming the file.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    fs::create_dir_all(dir)
        .and_then(|()| fs::write(&path, text))
        .map_err(|e| bench_error(&format!("write {}", path.display()), e))?;
    Ok(path)
}

/// An error of the benchmark's own machinery (a thread, a helper process, a
/// file), as opposed to a socket step: what it was doing and why it failed.
pub fn bench_error(doing: &str, e: io::Error) -> Error {
    Error::new(Step::Serve, ErrorKind::Os)
        .with_io(io::Error::new(e.kind(), format!("could not {doing}: {e}")))
}

/// A JSON string literal.
pub fn json_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of strings.
pub fn json_strs(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| json_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A JSON number, or `null` for none (and for NaN or infinity, which JSON lacks).
pub fn json_num(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

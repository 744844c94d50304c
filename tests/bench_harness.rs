//! The benchmark harness: its statistics on known inputs, its table, ratio
//! and JSON, its plots, and a quick run of every benchmark on it.
//!
//! Nothing here asserts a timing: the machine is shared and a pass can run
//! at half speed. The quick runs check structure — every case and variant
//! measured, ratios where there are baselines, JSON that parses — in a few
//! seconds.

use std::path::PathBuf;
use std::process::Command;

use sockstep::bench::harness::{
    Bench, BenchOptions, Goal, Latency, Measurement, Report, Samples, Table, Unit, Variant,
    json_str, run_repeated,
};
use sockstep::bench::plot::{Chart, Point, Scale, Series};
use sockstep::bench::{self, BENCHMARKS};

// --- statistics ------------------------------------------------------------------

#[test]
fn the_median_of_an_odd_count_is_the_middle_value_and_of_an_even_count_the_mean_of_two() {
    assert_eq!(Samples::new(vec![5.0, 1.0, 3.0]).median(), 3.0);
    assert_eq!(Samples::new(vec![4.0, 1.0, 3.0, 2.0]).median(), 2.5);
    assert_eq!(Samples::new(vec![7.0]).median(), 7.0);
    assert_eq!(Samples::new(vec![]).median(), 0.0);
}

#[test]
fn percentiles_interpolate_between_the_nearest_ranks() {
    // 1..=101: the p-th percentile is exactly p + 1.
    let s = Samples::new((1..=101).map(f64::from).rev().collect());
    assert_eq!(s.percentile(0.0), 1.0);
    assert_eq!(s.p25(), 26.0);
    assert_eq!(s.median(), 51.0);
    assert_eq!(s.p75(), 76.0);
    assert_eq!(s.p99(), 100.0);
    assert_eq!(s.percentile(100.0), 101.0);
    assert_eq!((s.min(), s.max()), (1.0, 101.0));
    assert_eq!(s.mean(), 51.0);
    // Between ranks: [10, 20, 30, 40], p25 is a quarter of the way from 10 to 40
    // in rank (rank 0.75): 10 + 0.75 × 10.
    let s = Samples::new(vec![40.0, 10.0, 30.0, 20.0]);
    assert_eq!(s.p25(), 17.5);
    assert!((s.p99() - 39.7).abs() < 1e-9, "{}", s.p99());
    // Out of range asks are clamped.
    assert_eq!(s.percentile(-5.0), 10.0);
    assert_eq!(s.percentile(250.0), 40.0);
}

#[test]
fn samples_drop_nan_and_keep_the_order_they_were_taken_in() {
    let s = Samples::new(vec![3.0, f64::NAN, 1.0, 2.0]);
    assert_eq!(s.len(), 3);
    assert_eq!(s.values(), &[1.0, 2.0, 3.0]);
    assert_eq!(s.in_order(), &[3.0, 1.0, 2.0]);
    assert!(Samples::new(vec![f64::NAN]).is_empty());
}

#[test]
fn run_repeated_throws_the_warm_up_away() {
    let mut calls = 0.0;
    let s = run_repeated(3, 4, || {
        calls += 1.0;
        Ok(calls)
    })
    .unwrap();
    assert_eq!(calls, 7.0);
    assert_eq!(s.in_order(), &[4.0, 5.0, 6.0, 7.0]);
}

#[test]
fn interleaved_passes_alternate_their_order_and_drop_the_warm_up() {
    let order = std::cell::RefCell::new(Vec::new());
    let options = quiet(true);
    let mut bench = Bench::new("order", "who runs when", &options);
    let pass = |name: &'static str| {
        let order = &order;
        move || {
            order.borrow_mut().push(name);
            Ok(order.borrow().len() as f64)
        }
    };
    let mut variants = [Variant::new("a", pass("a")), Variant::new("b", pass("b"))];
    let kept = bench
        .interleave("case", 1, 3, &mut variants, |v| v.to_string())
        .unwrap();
    // Warm-up a b, then b a, a b, b a.
    assert_eq!(*order.borrow(), ["a", "b", "b", "a", "a", "b", "b", "a"]);
    assert_eq!(kept, vec![vec![4.0, 5.0, 8.0], vec![3.0, 6.0, 7.0]]);
}

#[test]
fn latency_rows_give_p50_and_p99_per_variant_against_the_first() {
    let pass = |base: f64| Latency::of((1..=100).map(|i| base * f64::from(i)).collect());
    let l = pass(1.0);
    assert_eq!(l.p50, 50.5);
    assert!((l.p99 - 99.01).abs() < 1e-9, "{}", l.p99);
    let options = quiet(true);
    let mut bench = Bench::new("rr", "round trips", &options);
    let passes = [vec![pass(1.0), pass(1.0)], vec![pass(2.0), pass(2.0)]];
    bench.record_latency("64 B", &["raw", "ours"], &passes, Some(Goal::AtMost(1.05)));
    let report = bench.finish();
    let cases: Vec<(&str, &str)> = report
        .measurements
        .iter()
        .map(|m| (m.case.as_str(), m.variant.as_str()))
        .collect();
    assert_eq!(
        cases,
        [
            ("64 B, p50", "raw"),
            ("64 B, p50", "ours"),
            ("64 B, p99", "raw"),
            ("64 B, p99", "ours")
        ]
    );
    let ours = report.find("64 B, p99", "ours").unwrap();
    assert_eq!(report.ratio(ours), Some(2.0));
    assert_eq!(ours.goal, Some(Goal::AtMost(1.05)));
}

// --- units, the table, ratios, JSON ----------------------------------------------

#[test]
fn units_print_the_way_people_read_them() {
    assert_eq!(Unit::BitsPerSecond.format(15.93e9), "15.9 Gbit/s");
    assert_eq!(Unit::BitsPerSecond.format(850e6), "850 Mbit/s");
    assert_eq!(Unit::Seconds.format(54.12e-6), "54.1 µs");
    assert_eq!(Unit::Seconds.format(0.6e-9), "0.60 ns");
    assert_eq!(Unit::Seconds.format(1.5e-3), "1.50 ms");
    assert_eq!(Unit::PerSecond("conn").format(12_345.4), "12,345 conn/s");
    assert_eq!(
        Unit::PerSecond("datagrams").format(2.5e6),
        "2.50 M datagrams/s"
    );
    assert_eq!(Unit::Bytes.format(46_200.0), "46.2 kB");
    assert_eq!(Unit::Count("threads").format(10_002.0), "10,002 threads");
    assert!(Unit::BitsPerSecond.higher_is_better());
    assert!(!Unit::Seconds.higher_is_better());
}

#[test]
fn a_table_pads_columns_by_characters_and_aligns_numbers_right() {
    let mut t = Table::new(&["case", "median"]);
    t.align_right(&[1]);
    t.row(vec!["µs".into(), "1.0 µs".into()]);
    t.row(vec!["longer case".into(), "10 µs".into(), "dropped".into()]);
    t.row(vec!["short".into()]);
    assert_eq!(
        t.render(),
        "case         median\n\
         -----------  ------\n\
         µs           1.0 µs\n\
         longer case   10 µs\n\
         short\n"
    );
}

/// A report with interleaved passes whose pass-by-pass ratios differ from
/// the ratio of their medians.
fn report() -> Report {
    let raw = Samples::new(vec![10.0, 20.0, 40.0]);
    let ours = Samples::new(vec![9.0, 19.0, 20.0]);
    Report {
        name: "example".into(),
        title: "ours against raw".into(),
        setup: vec!["3 passes".into()],
        measurements: vec![
            Measurement::new("64 B", "raw", Unit::BitsPerSecond, raw),
            Measurement::new("64 B", "ours", Unit::BitsPerSecond, ours)
                .vs("raw")
                .goal(Goal::AtLeast(0.95)),
            Measurement::new("64 B, p99", "ours", Unit::Seconds, Samples::new(vec![2e-6]))
                .vs_alongside("twin", Samples::new(vec![1e-6]))
                .goal(Goal::AtMost(1.05))
                .note("a remark \"quoted\""),
        ],
        notes: vec!["iperf3 is not installed".into()],
        ..Report::default()
    }
}

#[test]
fn ratios_are_pass_by_pass_when_passes_pair_up_and_of_medians_otherwise() {
    let r = report();
    let ours = r.find("64 B", "ours").unwrap();
    // Pass ratios 0.9, 0.95, 0.5 → median 0.9; medians 19 / 20 = 0.95.
    assert!((r.ratio(ours).unwrap() - 0.9).abs() < 1e-12);
    assert!((r.ratio_of_medians(ours).unwrap() - 0.95).abs() < 1e-12);
    assert_eq!(r.ratio(r.find("64 B", "raw").unwrap()), None);
    // A baseline measured alongside, with no row of its own.
    let p99 = r.find("64 B, p99", "ours").unwrap();
    assert_eq!(r.ratio(p99), Some(2.0));
}

#[test]
fn the_table_shows_ratio_goal_notes_and_the_machine() {
    let table = report().table();
    assert!(table.starts_with("example — ours against raw\n"), "{table}");
    assert!(table.contains("setup:   3 passes"), "{table}");
    assert!(table.contains("machine: "), "{table}");
    let line = |needle: &str| {
        table
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{table}"))
    };
    assert!(line("(baseline)").contains("20.0 bit/s"), "{table}");
    assert!(line("0.90× raw").contains("≥0.95× MISSED"), "{table}");
    assert!(line("2.00× twin").contains("≤1.05× MISSED"), "{table}");
    assert!(line("ours*").contains("2.00 µs"), "{table}");
    assert!(table.contains("* a remark \"quoted\""), "{table}");
    assert!(table.contains("note: iperf3 is not installed"), "{table}");
}

#[test]
fn the_json_parses_and_carries_every_statistic() {
    let r = report();
    let json = r.json();
    json::check(&json).unwrap_or_else(|e| panic!("{e} in\n{json}"));
    for key in [
        "\"benchmark\": \"example\"",
        "\"median\": 19",
        "\"values_in_pass_order\": [9, 19, 20]",
        "\"baseline\": \"raw\"",
        "\"baseline_median\": 20",
        "\"ratio\": 0.9",
        "\"ratio_of_medians\": 0.95",
        "\"goal_met\": false",
        "\"note\": \"a remark \\\"quoted\\\"\"",
        "\"unit\": \"bit/s\"",
    ] {
        assert!(json.contains(key), "{key} missing from\n{json}");
    }
    assert_eq!(json.matches("\"case\"").count(), r.measurements.len());
    assert_eq!(json_str("a\tb\u{1}"), "\"a\\tb\\u0001\"");
}

// --- plots ---------------------------------------------------------------------------

#[test]
fn a_chart_is_well_formed_svg_with_every_series_and_escaped_text() {
    let chart = Chart {
        title: "Throughput <by> size & \"kind\"".into(),
        x_label: "bytes".into(),
        y_label: "Gbit/s".into(),
        x_scale: Scale::Log2,
        x_ticks: vec![(1024.0, "1 KiB".into()), (1_048_576.0, "1 MiB".into())],
        series: vec![
            Series::new(
                "raw",
                vec![
                    Point::with_range(1024.0, 3.0, 2.5, 3.5),
                    Point::new(1_048_576.0, 30.0),
                ],
            ),
            Series::new("ours & co", vec![Point::new(65_536.0, 20.0)])
                .dashed()
                .colour(3),
            Series::new("empty", vec![]),
        ],
    };
    let svg = chart.svg();
    xml::check(&svg).unwrap_or_else(|e| panic!("{e} in\n{svg}"));
    assert!(svg.contains("Throughput &lt;by&gt; size &amp; &quot;kind&quot;"));
    assert!(svg.contains(">ours &amp; co</text>"));
    assert!(svg.contains("stroke-dasharray"));
    assert_eq!(
        svg.matches("<polyline").count(),
        1,
        "one series has two points"
    );
    assert_eq!(svg.matches("<circle").count(), 3);
    let linear = Chart {
        x_scale: Scale::Linear,
        x_ticks: vec![],
        ..chart
    };
    xml::check(&linear.svg()).unwrap();
}

// --- every benchmark, quick ----------------------------------------------------------

fn quiet(quick: bool) -> BenchOptions {
    BenchOptions {
        quick,
        quiet: true,
        program: Some(PathBuf::from(env!("CARGO_BIN_EXE_sockstep"))),
        ..BenchOptions::default()
    }
}

/// Runs benchmark `name` quick and checks what every report must have.
fn quick_run(name: &str, svg_dir: Option<PathBuf>) -> Report {
    let options = BenchOptions {
        svg_dir,
        ..quiet(true)
    };
    let report = bench::run(name, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(report.name, name);
    assert!(report.quick);
    assert!(!report.setup.is_empty());
    assert!(report.machine.cores > 0);
    for m in &report.measurements {
        assert!(!m.samples.is_empty(), "{name}: {m:?} has no samples");
        assert!(m.samples.min() >= 0.0, "{name}: {m:?}");
        if m.baseline.is_some() {
            assert!(report.ratio(m).is_some(), "{name}: no ratio for {m:?}");
        }
    }
    json::check(&report.json()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(report.table().contains(name));
    report
}

/// The variants measured for `case`.
fn variants(report: &Report, case: &str) -> Vec<String> {
    report
        .measurements
        .iter()
        .filter(|m| m.case == case)
        .map(|m| m.variant.clone())
        .collect()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sockstep-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn tcp_throughput_measures_every_write_size_ours_against_raw_and_draws_its_plot() {
    let dir = scratch_dir("throughput");
    let report = quick_run("tcp-throughput", Some(dir.clone()));
    for case in [
        "1,024 B (1 KiB) writes",
        "65,483 B writes",
        "65,536 B (64 KiB) writes",
        "1,048,576 B (1 MiB) writes",
    ] {
        assert_eq!(variants(&report, case), ["raw", "ours"], "{case}");
    }
    let ours = report.find("65,536 B (64 KiB) writes", "ours").unwrap();
    assert_eq!(ours.goal, Some(Goal::AtLeast(0.95)));
    assert!(ours.samples.median() > 0.0);
    assert!(
        report
            .find("65,536 B (64 KiB) writes, CPU per MiB (both ends)", "ours")
            .is_some()
    );
    let plot = dir.join("bench-tcp-throughput.svg");
    assert_eq!(report.plots.len(), 1);
    assert_eq!(report.plots[0], plot);
    xml::check(&std::fs::read_to_string(&plot).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_rr_gives_p50_and_p99_of_ours_against_raw() {
    let report = quick_run("tcp-rr", None);
    for case in ["64 B round trip, p50", "64 B round trip, p99"] {
        assert_eq!(variants(&report, case), ["raw", "ours"]);
        assert_eq!(
            report.find(case, "ours").unwrap().baseline.as_deref(),
            Some("raw")
        );
    }
}

#[test]
fn connect_compares_ours_with_raw_threads_and_no_threads() {
    let report = quick_run("connect", None);
    assert_eq!(
        variants(&report, "connect, first byte, close"),
        ["raw", "ours", "ours, warm threads", "raw, no thread"]
    );
}

#[test]
fn udp_measures_one_way_rates_and_round_trips() {
    let report = quick_run("udp", None);
    for case in [
        "64 B datagrams, one way",
        "1,472 B datagrams, one way",
        "64 B round trip, p50",
        "64 B round trip, p99",
    ] {
        assert_eq!(variants(&report, case), ["raw", "ours"], "{case}");
    }
}

#[test]
fn trace_compares_off_and_a_no_op_tracer_with_raw_writes() {
    let report = quick_run("trace", None);
    assert_eq!(
        variants(&report, "64 B writes"),
        ["raw", "trace off", "no-op tracer"]
    );
    let off = report.find("one emit() call, no I/O", "trace off").unwrap();
    let on = report
        .find("one emit() call, no I/O", "no-op tracer")
        .unwrap();
    assert!(off.samples.median() > 0.0 && on.samples.median() > 0.0);
}

#[test]
fn idle_holds_connections_in_a_server_process_and_reports_memory_per_connection() {
    let dir = scratch_dir("idle");
    let report = quick_run("idle", Some(dir.clone()));
    for stack in ["default stack", "64 KiB stack"] {
        assert_eq!(
            variants(&report, &format!("{stack}, round trip p50")),
            ["1 held", "20 held", "100 held"]
        );
        let rss = report
            .find(
                &format!("{stack}, server resident memory (VmRSS) per connection"),
                "100 held",
            )
            .unwrap();
        assert!(rss.samples.median() > 0.0, "{rss:?}");
    }
    // Every held connection had its thread: no note says otherwise.
    assert!(
        !report.notes.iter().any(|n| n.contains("was serving")),
        "{:?}",
        report.notes
    );
    assert_eq!(report.plots.len(), 2, "{:?}", report.plots);
    for plot in ["bench-idle.svg", "bench-idle-64k.svg"] {
        xml::check(&std::fs::read_to_string(dir.join(plot)).unwrap()).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_tcp_and_udp_benchmarks_tested_here_are_all_on_the_harness() {
    let names: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
    for tested in [
        "tcp-throughput",
        "tcp-rr",
        "connect",
        "udp",
        "trace",
        "idle",
    ] {
        assert!(names.contains(&tested), "{tested} is not in {names:?}");
    }
}

#[test]
fn the_command_line_prints_json_on_stdout_and_progress_on_stderr() {
    let output = Command::new(env!("CARGO_BIN_EXE_sockstep"))
        .args(["bench", "tcp-rr", "--quick", "--json"])
        .output()
        .expect("run sockstep");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    json::check(&stdout).unwrap_or_else(|e| panic!("{e} in\n{stdout}"));
    assert!(stdout.contains("\"benchmark\": \"tcp-rr\""));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("[tcp-rr]"), "{stderr}");
}

// --- small checkers: JSON syntax, XML well-formedness ----------------------------------

/// A JSON syntax checker (the crate has no JSON dependency to lean on).
mod json {
    pub fn check(text: &str) -> Result<(), String> {
        let mut p = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        p.value()?;
        p.space();
        if p.at == p.bytes.len() {
            Ok(())
        } else {
            Err(format!("trailing text at byte {}", p.at))
        }
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn space(&mut self) {
            while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
                self.at += 1;
            }
        }

        fn eat(&mut self, b: u8) -> Result<(), String> {
            self.space();
            if self.bytes.get(self.at) == Some(&b) {
                self.at += 1;
                Ok(())
            } else {
                Err(format!("expected '{}' at byte {}", b as char, self.at))
            }
        }

        fn value(&mut self) -> Result<(), String> {
            self.space();
            match self.bytes.get(self.at) {
                Some(b'{') => self.sequence(b'{', b'}', true),
                Some(b'[') => self.sequence(b'[', b']', false),
                Some(b'"') => self.string(),
                Some(b't') => self.word("true"),
                Some(b'f') => self.word("false"),
                Some(b'n') => self.word("null"),
                Some(_) => self.number(),
                None => Err("unexpected end".into()),
            }
        }

        fn sequence(&mut self, open: u8, close: u8, keyed: bool) -> Result<(), String> {
            self.eat(open)?;
            self.space();
            if self.bytes.get(self.at) == Some(&close) {
                self.at += 1;
                return Ok(());
            }
            loop {
                if keyed {
                    self.space();
                    self.string()?;
                    self.eat(b':')?;
                }
                self.value()?;
                self.space();
                match self.bytes.get(self.at) {
                    Some(b',') => self.at += 1,
                    Some(&b) if b == close => {
                        self.at += 1;
                        return Ok(());
                    }
                    _ => {
                        return Err(format!(
                            "expected ',' or '{}' at byte {}",
                            close as char, self.at
                        ));
                    }
                }
            }
        }

        fn string(&mut self) -> Result<(), String> {
            self.eat(b'"')?;
            while let Some(&b) = self.bytes.get(self.at) {
                self.at += 1;
                match b {
                    b'"' => return Ok(()),
                    b'\\' => self.at += 1,
                    b if b < 0x20 => return Err(format!("raw control byte at {}", self.at)),
                    _ => {}
                }
            }
            Err("unterminated string".into())
        }

        fn word(&mut self, word: &str) -> Result<(), String> {
            if self.bytes[self.at..].starts_with(word.as_bytes()) {
                self.at += word.len();
                Ok(())
            } else {
                Err(format!("bad literal at byte {}", self.at))
            }
        }

        fn number(&mut self) -> Result<(), String> {
            let start = self.at;
            while self
                .bytes
                .get(self.at)
                .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
            {
                self.at += 1;
            }
            let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(()),
                _ => Err(format!("bad number {text:?} at byte {start}")),
            }
        }
    }
}

/// An XML well-formedness checker, enough for our SVG: every tag closed in
/// order, attributes quoted, no stray `<` or `&` in text.
mod xml {
    pub fn check(text: &str) -> Result<(), String> {
        let mut open: Vec<String> = Vec::new();
        let mut rest = text;
        let mut seen_root = false;
        while let Some(lt) = rest.find('<') {
            check_text(&rest[..lt])?;
            let gt = rest[lt..].find('>').ok_or("a tag never closes")? + lt;
            let tag = &rest[lt + 1..gt];
            rest = &rest[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(o) if o == name.trim() => {}
                    o => return Err(format!("</{name}> closes {o:?}")),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().ok_or("an empty tag")?;
            check_attributes(&body[name.len()..])?;
            if open.is_empty() {
                if seen_root {
                    return Err("a second root element".into());
                }
                seen_root = true;
            }
            if !self_closing {
                open.push(name.to_string());
            }
        }
        check_text(rest)?;
        if !open.is_empty() {
            return Err(format!("never closed: {open:?}"));
        }
        if !seen_root {
            return Err("no element".into());
        }
        Ok(())
    }

    fn check_attributes(mut attrs: &str) -> Result<(), String> {
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                return Ok(());
            }
            let eq = attrs
                .find('=')
                .ok_or(format!("attribute without value: {attrs}"))?;
            let value = &attrs[eq + 1..];
            let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'');
            let quote = quote.ok_or(format!("unquoted attribute: {attrs}"))?;
            let end = value[1..].find(quote).ok_or("unterminated attribute")? + 1;
            check_text(&value[1..end])?;
            attrs = &value[end + 1..];
        }
    }

    fn check_text(text: &str) -> Result<(), String> {
        let mut rest = text;
        while let Some(amp) = rest.find('&') {
            let entity = &rest[amp..];
            let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
            if !known.iter().any(|k| entity.starts_with(k)) {
                return Err(format!("a bare & in {text:?}"));
            }
            rest = &rest[amp + 1..];
        }
        if text.contains('<') {
            return Err(format!("a bare < in {text:?}"));
        }
        Ok(())
    }
}

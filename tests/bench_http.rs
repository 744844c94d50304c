//! `sockstep bench http --quick`: every case has its rows and every ratio is a
//! number. Timings are never asserted — a quick run on a shared machine is a
//! smoke test, not a measurement.

use sockstep::bench::harness::{BenchOptions, find_tool};
use sockstep::bench::http::{self, CONNECTIONS, Mode};

#[test]
fn a_quick_run_has_every_row_and_every_ratio_is_finite() {
    let options = BenchOptions {
        quick: true,
        quiet: true,
        ..BenchOptions::default()
    };
    let report = http::requests(&options).expect("the quick run finishes");
    let table = report.table();
    eprintln!("{table}");

    assert_eq!(report.name, "http");
    assert!(report.quick);
    let mut variants = vec!["raw", "ours, from memory", "ours"];
    let nginx_note = report.notes.iter().find(|n| n.starts_with("nginx is"));
    match (find_tool("nginx"), nginx_note) {
        (None, note) => assert!(
            note.is_some_and(|n| n.contains("not installed")),
            "a missing nginx is said: {:?}",
            report.notes
        ),
        (Some(_), None) => variants.push("nginx"),
        // Installed, but it would not start here: the note says why.
        (Some(_), Some(note)) => eprintln!("no nginx rows: {note}"),
    }
    for mode in Mode::ALL {
        for connections in CONNECTIONS {
            let case = http::case(mode, connections);
            for suffix in ["", ", p50", ", p99"] {
                let case = format!("{case}{suffix}");
                for variant in &variants {
                    let m = report
                        .find(&case, variant)
                        .unwrap_or_else(|| panic!("no row for {variant} in {case}"));
                    assert!(m.samples.len() >= 2, "{case}, {variant}: {:?}", m.samples);
                    assert!(
                        m.samples.values().iter().all(|v| v.is_finite() && *v > 0.0),
                        "{case}, {variant}: {:?}",
                        m.samples
                    );
                    if *variant != "raw" {
                        let ratio = report.ratio(m);
                        assert!(
                            ratio.is_some_and(f64::is_finite),
                            "{case}, {variant}: ratio {ratio:?}"
                        );
                    }
                }
            }
        }
    }
    // The load came from our own client, and the rows say so; without wrk
    // there is no server CPU per request to quote.
    assert!(table.contains("load from our own http::client, not wrk"));
    assert!(!table.contains("server CPU per request"));
    assert!(report.json().contains("\"benchmark\": \"http\""));
}

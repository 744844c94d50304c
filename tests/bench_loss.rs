//! `sockstep bench loss`, quick: every rate and transport gets a row, and
//! the numbers make sense.
//!
//! As root with `ip` and `nft` (CI), the loss is the kernel's, in a network
//! namespace, and `run` starts this test binary again inside it with the same
//! arguments (see `sockstep::bench::loss`). That copy runs this file's tests
//! until it reaches `run`, which measures and ends the process — so this file
//! holds **one test only**: any other would run a second time, inside the
//! namespace, for nothing. Without root the relay makes the loss and TCP's
//! rows say why they are empty.

use std::time::{Duration, Instant};

use sockstep::bench::loss::{self, LOSS_RATES, LossOptions, Mechanism, Transport};

#[test]
fn a_quick_run_measures_every_rate_and_transport_and_the_numbers_make_sense() {
    let started = Instant::now();
    let mut out = Vec::new();
    let options = LossOptions {
        quick: true,
        ..LossOptions::default()
    };
    let report = loss::run(&options, &mut out).expect("the benchmark runs");
    let printed = String::from_utf8(out).expect("the table is text");
    eprintln!("{printed}");

    assert!(report.quick);
    assert_eq!(report.rows.len(), LOSS_RATES.len() * Transport::ALL.len());
    for (i, row) in report.rows.iter().enumerate() {
        assert_eq!(
            row.loss,
            LOSS_RATES[i / Transport::ALL.len()],
            "rows in rate order"
        );
        assert_eq!(row.transport, Transport::ALL[i % Transport::ALL.len()]);
        assert!(
            printed.contains(row.transport.name()),
            "the table names {}",
            row.transport.name()
        );

        let tcp_without_kernel =
            row.transport == Transport::Tcp && report.mechanism == Mechanism::Relay;
        let Some(m) = &row.measured else {
            assert!(tcp_without_kernel, "{row:?} was not measured");
            assert!(
                row.note
                    .as_deref()
                    .is_some_and(|n| n.contains("needs root"))
            );
            continue;
        };
        assert!(!tcp_without_kernel, "TCP cannot lose packets in user space");
        assert!(m.overhead >= 1.0, "overhead below 1: {row:?}");
        assert!(m.goodput > 0.0, "{row:?}");
        assert!((0.0..=1.0).contains(&m.delivered), "{row:?}");
        match row.transport {
            // With no loss on the link, every datagram arrived or was counted
            // as lost to a full receive buffer — exactly — and the receiver
            // kept up with all but a few (a stall of the receiving thread on a
            // loaded machine costs a few dozen, and is reported, not hidden).
            Transport::Udp if row.loss == 0.0 => {
                let overflow = m.overflow.expect("udp counts overflow") as f64;
                let sent = report.udp_datagrams as f64;
                let accounted = m.delivered * sent + overflow;
                assert!((accounted - sent).abs() < 1e-6, "udp with no loss: {row:?}");
                assert!(m.delivered >= 0.95, "udp with no loss: {row:?}");
            }
            // (At 1 %, a quick run's 300 datagrams lose none 5 % of the time; at 5 %, almost never.)
            Transport::Udp if row.loss >= 0.05 => {
                assert!(m.delivered < 1.0, "udp repairs nothing: {row:?}");
            }
            Transport::Udp => {}
            // The whole point: everything, at every rate.
            Transport::Reliable | Transport::Tcp => {
                assert_eq!(m.delivered, 1.0, "{row:?}");
                let resent = m.resent.expect("retransmissions are counted");
                if row.loss >= 0.10 {
                    assert!(resent > 0.0, "loss repaired by resending: {row:?}");
                }
            }
        }
    }
    // Reliability costs bytes: more on the wire than raw UDP once packets are lost.
    let overhead = |t| {
        report
            .row(0.10, t)
            .unwrap()
            .measured
            .as_ref()
            .unwrap()
            .overhead
    };
    assert!(overhead(Transport::Reliable) > overhead(Transport::Udp));

    let json = report.json();
    assert!(json.starts_with('{') && json.trim_end().ends_with('}'));
    assert_eq!(json.matches("\"transport\"").count(), report.rows.len());
    assert!(!json.contains("NaN") && !json.contains("inf"));

    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "a quick run took {elapsed:?}"
    );
}

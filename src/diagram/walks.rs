//! The pictures of the walkthroughs: each report's trace as a [`Sequence`],
//! with a title, the names the walkthrough gave its sockets, and what the
//! trace alone cannot show (the UDP walkthrough's untraced part 2).

use super::sequence::{LossSample, Sequence};
use crate::readable::grouped;
use crate::walk::hosts::HostsWalkReport;
use crate::walk::http::HttpWalkReport;
use crate::walk::push::PushWalkReport;
use crate::walk::tcp::WalkReport;
use crate::walk::udp::{LossReport, UdpWalkReport};

/// How many of part 2's datagrams the UDP picture draws: enough to show a
/// loss, a duplicate and an overtaking with the walkthrough's seed (numbers
/// 5, 19 and 12), few enough to read.
pub const LOSS_SAMPLE: u32 = 20;

/// `sockstep walk tcp`: a listening socket, the connection it accepts, the
/// client, and the wake-up connection that stops the accept loop.
pub fn tcp(report: &WalkReport) -> Sequence {
    Sequence::from_events(
        "sockstep walk tcp — a TCP server and client on loopback",
        &report.events,
    )
    .note("The client writes three lines; the server echoes each. Arrows join each write to the read that took its bytes.")
    .note("The last accepted socket is the server's own wake-up connection: shutdown() connects to unblock accept().")
}

/// `sockstep walk udp`: part 1's two sockets, every datagram drawn; then
/// part 2 as a sample of [`LOSS_SAMPLE`] datagrams through the lossy relay.
pub fn udp(report: &UdpWalkReport) -> Sequence {
    Sequence::from_events(
        "sockstep walk udp — the datagram socket, then a link that loses",
        &report.events,
    )
    .note("Part 1: no listen(), no accept(), no connection: every datagram names its destination. The 65,508-byte send was refused before the kernel was asked, so it has no row.")
    .with_loss(loss_sample(&report.loss))
}

/// Part 2 of the UDP walkthrough: the first [`LOSS_SAMPLE`] numbers, and the
/// whole run's counts.
pub fn loss_sample(loss: &LossReport) -> LossSample {
    let sample = LOSS_SAMPLE.min(loss.sends);
    let sent: Vec<u32> = (1..=sample).collect();
    let arrivals = loss
        .arrivals
        .iter()
        .copied()
        .filter(|n| (1..=sample).contains(n))
        .collect();
    let f = &loss.faults;
    LossSample {
        title: format!(
            "Part 2 — {} numbered datagrams through udp::relay; the first {sample} drawn (this part is not traced)",
            grouped(u64::from(loss.sends))
        ),
        columns: [
            "client\nsend_to() each number".into(),
            format!(
                "relay\nloses {:.0}%, duplicates {:.0}%\nreorders {:.0}%, seed {}",
                f.loss * 100.0,
                f.duplicate * 100.0,
                f.reorder * 100.0,
                f.seed
            ),
            "server\nrecords what arrives".into(),
        ],
        sent,
        arrivals,
        summary: vec![
            "Left: the order sent. Right: the order arrived (ranks, not times); a crossing arrow was overtaken.".into(),
            format!(
                "All {}: {} send_to() calls, {} errors; {} never arrived, {} came twice, {} came out of order.",
                grouped(u64::from(loss.sends)),
                grouped(u64::from(loss.sends)),
                loss.send_errors,
                loss.lost.len(),
                loss.duplicated.len(),
                loss.out_of_order.len()
            ),
            format!(
                "The relay's seed ({}) decides each datagram's fate, so every run loses the same numbers.",
                f.seed
            ),
        ],
    }
}

/// `sockstep walk http`: part 1's connection per request, then part 2's one
/// kept-alive connection.
pub fn http(report: &HttpWalkReport) -> Sequence {
    Sequence::from_events(
        "sockstep walk http — a connection per request, then keep-alive",
        &report.events,
    )
    .note(format!(
        "Part 1: {} requests on {} connections, each opened, used once and closed. Part 2: {} requests on {} kept-alive connection.",
        report.requests[0], report.connections[0], report.requests[1], report.connections[1]
    ))
    .note("Either way the server writes only after a request: HTTP is ask, then answer.")
}

/// `sockstep walk push`: alice's and bob's one connection each, and the
/// server writing to them unasked.
pub fn push(report: &PushWalkReport) -> Sequence {
    let mut sequence = Sequence::from_events(
        "sockstep walk push — the kept socket: connect once, both sides write",
        &report.events,
    );
    for client in [&report.alice, &report.bob] {
        for &socket in &client.sockets {
            sequence = sequence.name(socket, client.name);
        }
    }
    sequence
        .note(format!(
            "alice and bob connect once each. The server wrote {} lines nobody asked for (the other's message, a TICK, bob's BYE).",
            report.unasked()
        ))
        .note("A connection closes twice: its reading and its writing thread each hold a descriptor of the one socket.")
}

/// `sockstep walk hosts`: the children's traces on two hosts, each socket
/// named by the host it is on.
pub fn hosts(report: &HostsWalkReport) -> Sequence {
    let mut sequence = Sequence::from_events(
        "sockstep walk hosts — two computers on one machine: the address names the host",
        &report.events,
    );
    for &(socket, host) in &report.hosts {
        sequence = sequence.name(socket, host);
    }
    sequence
        .note(format!(
            "Host B's server at {} accepted host A's client, which its kernel gave {}: accept() reported {}.",
            report.server, report.client_local, report.accept_peer
        ))
        .note(format!(
            "Not traced, so not drawn: host A's own server on {} (the same port, another host) and host B's second bind of {} (refused: {}).",
            report.same_port_on_a, report.server, report.second_bind
        ))
        .note("Each host's processes number their sockets from #1; here they are numbered anew, in order of appearance.")
}

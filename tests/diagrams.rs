//! The sequence diagrams: properties of the model over any trace (proptest),
//! and a picture of every walkthrough, checked as XML and as a diagram.
//!
//! Any trace — made up, contradictory, full of hostile text — must give a
//! diagram in which every event appears exactly once, each connection's two
//! ends stand side by side, arrows join only the two ends of one connection
//! (or a datagram's sender and receiver) and always point down, bytes are
//! neither lost nor invented, and the SVG is well-formed XML whatever the
//! events said.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sockstep::diagram::{self, Link, Mark, Role, Sequence, sequence};
use sockstep::trace::{Event, SocketId};
use sockstep::walk::{self, WalkOptions};
use sockstep::{Protocol, Side, Step};

// --- A small XML checker ---------------------------------------------------------

/// Checks that `text` is one well-formed XML element (after an optional
/// prolog): every tag closed in order, attribute values quoted, and no raw
/// `<` or stray `&` in text or attributes. Returns the root element's name.
fn well_formed(text: &str) -> Result<String, String> {
    let mut rest = text;
    if let Some(after) = rest.strip_prefix("<?xml") {
        let end = after.find("?>").ok_or("unclosed prolog")?;
        rest = &after[end + 2..];
    }
    let mut open: Vec<String> = Vec::new();
    let mut root = None;
    loop {
        let Some(lt) = rest.find('<') else {
            check_text(rest)?;
            break;
        };
        check_text(&rest[..lt])?;
        if open.is_empty() && root.is_some() && !rest[..lt].trim().is_empty() {
            return Err("text after the root element".into());
        }
        let gt = rest[lt..].find('>').ok_or("unclosed tag")? + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(top) if top == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, attributes) = tag.split_once(' ').unwrap_or((tag, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("bad element name {name:?}"));
        }
        check_attributes(attributes)?;
        if open.is_empty() {
            if root.is_some() {
                return Err(format!("a second root element <{name}>"));
            }
            root = Some(name.to_string());
        }
        if !self_closing {
            open.push(name.to_string());
        }
    }
    if !open.is_empty() {
        return Err(format!("unclosed elements {open:?}"));
    }
    root.ok_or_else(|| "no root element".into())
}

fn check_text(text: &str) -> Result<(), String> {
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!("control character {c:?} in {text:?}"));
    }
    let mut pieces = text.split('&');
    pieces.next();
    for piece in pieces {
        let entity = piece.split(';').next().unwrap_or_default();
        if !matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos") || !piece.contains(';') {
            return Err(format!("a raw & in {text:?}"));
        }
    }
    Ok(())
}

fn check_attributes(mut attributes: &str) -> Result<(), String> {
    loop {
        attributes = attributes.trim_start();
        if attributes.is_empty() {
            return Ok(());
        }
        let (name, after) = attributes
            .split_once("=\"")
            .ok_or_else(|| format!("attribute without a quoted value: {attributes:?}"))?;
        if name.contains(char::is_whitespace) || name.is_empty() {
            return Err(format!("bad attribute name {name:?}"));
        }
        let end = after.find('"').ok_or("unclosed attribute value")?;
        let value = &after[..end];
        if value.contains('<') {
            return Err(format!("a raw < in attribute {name}={value:?}"));
        }
        check_text(value)?;
        attributes = &after[end + 1..];
    }
}

#[test]
fn the_xml_checker_rejects_what_is_not_well_formed() {
    assert_eq!(well_formed("<a x=\"1\"><b/>t &amp; u</a>"), Ok("a".into()));
    for bad in [
        "<a><b></a></b>",
        "<a>",
        "<a>x < y</a>",
        "<a>Tom & Jerry</a>",
        "<a x=1/>",
        "<a/><b/>",
        "<a>\u{1}</a>",
    ] {
        assert!(well_formed(bad).is_err(), "accepted {bad:?}");
    }
}

// --- Made-up traces ----------------------------------------------------------------

/// A few addresses, so that made-up sockets often mirror each other.
fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000 + u16::from(i)))
}

const STEPS: [Step; 14] = [
    Step::Socket,
    Step::Bind,
    Step::Listen,
    Step::Accept,
    Step::Connect,
    Step::Established,
    Step::Read,
    Step::Write,
    Step::SendTo,
    Step::RecvFrom,
    Step::Shutdown,
    Step::Close,
    Step::Refuse,
    Step::Message,
];

/// Text a trace's detail might carry, hostile included.
fn detail() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        "[a-z ]{0,20}",
        Just("<script>alert('x')</script> & \"more\"".to_string()),
        Just("line\nbreak\tand\u{1}control\u{7f}".to_string()),
        Just("안녕하세요; #1 %% end".to_string()),
        any::<String>(),
    ])
}

prop_compose! {
    fn event(start: Instant)(
        socket in 1u64..6,
        server in any::<bool>(),
        step in 0..STEPS.len(),
        udp in any::<bool>(),
        local in prop::option::of(0u8..4),
        peer in prop::option::of(0u8..4),
        bytes in prop::option::of(0usize..100),
        detail in detail(),
        micros in 0u64..2_000,
    ) -> Event {
        Event {
            at: start + Duration::from_micros(micros),
            socket: SocketId(socket),
            side: if server { Side::Server } else { Side::Client },
            step: STEPS[step],
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
            local: local.map(addr),
            peer: peer.map(addr),
            bytes,
            detail,
        }
    }
}

fn trace() -> impl Strategy<Value = Vec<Event>> {
    let start = Instant::now();
    prop::collection::vec(event(start), 0..40)
}

/// A real-shaped TCP conversation: a listening socket, a client that connects,
/// the accepted socket, writes each way and reads that take the bytes in
/// random pieces — stamped in a random order, as threads do.
fn conversation() -> impl Strategy<Value = Vec<Event>> {
    let start = Instant::now();
    (
        prop::collection::vec(1usize..50, 1..6),
        prop::collection::vec(1usize..50, 0..6),
        prop::collection::vec(0u64..5_000, 64),
        prop::collection::vec(1usize..40, 64),
    )
        .prop_map(move |(up, down, stamps, cuts)| {
            let (server, client) = (addr(0), addr(1));
            let mut stamp = stamps.into_iter().cycle();
            let mut at = || start + Duration::from_micros(stamp.next().unwrap_or(0));
            let mut cut = cuts.into_iter().cycle();
            let (listener, accepted, connecting) = (SocketId(1), SocketId(2), SocketId(3));
            let tcp = Protocol::Tcp;
            let mut events = vec![
                Event::new(listener, Side::Server, Step::Bind, tcp).local(server),
                Event::new(listener, Side::Server, Step::Listen, tcp).local(server),
                Event::new(connecting, Side::Client, Step::Connect, tcp).peer(server),
                Event::new(connecting, Side::Client, Step::Established, tcp)
                    .local(client)
                    .peer(server),
                Event::new(listener, Side::Server, Step::Accept, tcp)
                    .local(server)
                    .peer(client),
            ];
            for (i, event) in events.iter_mut().enumerate() {
                event.at = start + Duration::from_micros(i as u64);
            }
            for (sizes, from, to, from_addr, to_addr) in [
                (&up, connecting, accepted, client, server),
                (&down, accepted, connecting, server, client),
            ] {
                for &n in sizes {
                    events.push(Event {
                        at: at() + Duration::from_micros(10),
                        ..Event::new(from, Side::Client, Step::Write, tcp)
                            .local(from_addr)
                            .peer(to_addr)
                            .bytes(n)
                    });
                }
                let mut left: usize = sizes.iter().sum();
                while left > 0 {
                    let n = cut.next().unwrap_or(1).min(left);
                    left -= n;
                    events.push(Event {
                        at: at() + Duration::from_micros(10),
                        ..Event::new(to, Side::Server, Step::Read, tcp)
                            .local(to_addr)
                            .peer(from_addr)
                            .bytes(n)
                    });
                }
            }
            // The accepted socket's events are the server's.
            for event in &mut events {
                if event.socket == accepted {
                    event.side = Side::Server;
                } else if event.socket == connecting {
                    event.side = Side::Client;
                }
            }
            events
        })
}

/// Both known, and the same UDP endpoint (the wildcard address matching any).
fn same(a: Option<SocketAddr>, b: Option<SocketAddr>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if sequence::same(a, b))
}

/// The properties every diagram has, whatever the trace.
fn check(events: &[Event], sequence: &Sequence) -> Result<(), TestCaseError> {
    // Every event appears exactly once, on its own socket's lifeline.
    prop_assert_eq!(sequence.rows.len(), events.len());
    let mut seen = vec![false; events.len()];
    for row in &sequence.rows {
        prop_assert!(!seen[row.event], "event {} drawn twice", row.event);
        seen[row.event] = true;
        prop_assert_eq!(row.socket, events[row.event].socket);
        prop_assert_eq!(sequence.lifelines[row.lifeline].socket, row.socket);
    }
    // One lifeline per socket.
    let mut sockets: Vec<SocketId> = events.iter().map(|e| e.socket).collect();
    sockets.sort_unstable();
    sockets.dedup();
    prop_assert_eq!(sequence.lifelines.len(), sockets.len());
    // Lifelines in order of first appearance; a connection's ends side by side, server first.
    let first_row = |socket: SocketId| {
        sequence
            .rows
            .iter()
            .position(|r| r.socket == socket)
            .unwrap_or(usize::MAX)
    };
    let column: HashMap<SocketId, usize> = sequence
        .lifelines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.socket, i))
        .collect();
    let mut groups: Vec<usize> = Vec::new();
    for (i, lifeline) in sequence.lifelines.iter().enumerate() {
        match lifeline.partner {
            Some(partner) => {
                let j = column[&partner];
                prop_assert_eq!(i.abs_diff(j), 1, "partners not side by side");
                prop_assert_eq!(sequence.lifelines[j].partner, Some(lifeline.socket));
                let (left, right) = (&sequence.lifelines[i.min(j)], &sequence.lifelines[i.max(j)]);
                prop_assert!(
                    !(left.side == Side::Client && right.side == Side::Server),
                    "a connection's client end drawn left of its server end"
                );
                if j > i {
                    groups.push(first_row(lifeline.socket).min(first_row(partner)));
                }
            }
            None => groups.push(first_row(lifeline.socket)),
        }
        prop_assert!(lifeline.first_row <= lifeline.last_row);
    }
    prop_assert!(
        groups.windows(2).all(|w| w[0] <= w[1]),
        "lifelines out of order: {:?}",
        groups
    );
    // Arrows: down, and only between the ends of one connection or a datagram's two sockets.
    for arrow in &sequence.arrows {
        let from = &sequence.rows[arrow.from];
        let from_line = &sequence.lifelines[from.lifeline];
        let toward = &sequence.lifelines[arrow.toward];
        if let Some(to) = arrow.to {
            prop_assert!(to > arrow.from, "an arrow points up: {:?}", arrow);
            prop_assert_eq!(sequence.rows[to].lifeline, arrow.toward);
        }
        match arrow.link {
            Link::Bytes | Link::EndOfStream | Link::Unread => {
                prop_assert_eq!(from_line.partner, Some(toward.socket));
            }
            Link::Datagram => {
                let to = &sequence.rows[arrow.to.expect("a datagram arrow ends at a receive")];
                prop_assert!(same(from.local, to.peer) && same(from.peer, to.local));
                prop_assert_eq!(to.step, Step::RecvFrom);
            }
            Link::Lost => {
                prop_assert_eq!(from.step, Step::SendTo);
                prop_assert!(same(from.peer, toward.local));
            }
            Link::Accept => {
                prop_assert_eq!(from.step, Step::Accept);
                prop_assert_eq!(toward.role, Role::Accepted);
                prop_assert_eq!(toward.first_row, arrow.from);
            }
            Link::Handshake => {
                prop_assert_eq!(from.step, Step::Connect);
                prop_assert_eq!(toward.role, Role::Listening);
            }
        }
        if arrow.link == Link::Bytes {
            let to = &sequence.rows[arrow.to.expect("bytes end at a read")];
            prop_assert_eq!((from.step, to.step), (Step::Write, Step::Read));
            prop_assert_eq!((from.local, from.peer), (to.peer, to.local));
        }
    }
    // Bytes are neither lost nor invented: no write gives more than it wrote,
    // no read takes more than it read.
    let mut given: HashMap<usize, usize> = HashMap::new();
    let mut taken: HashMap<usize, usize> = HashMap::new();
    for arrow in &sequence.arrows {
        if matches!(arrow.link, Link::Bytes | Link::Unread) {
            *given.entry(arrow.from).or_default() += arrow.bytes.unwrap_or(0);
        }
        if let (Link::Bytes, Some(to)) = (arrow.link, arrow.to) {
            *taken.entry(to).or_default() += arrow.bytes.unwrap_or(0);
        }
    }
    for (row, n) in given.into_iter().chain(taken) {
        prop_assert!(n <= sequence.rows[row].bytes.unwrap_or(0));
    }
    // The pictures: well-formed SVG whatever the text; Mermaid one statement a line.
    let svg = diagram::svg(sequence);
    prop_assert_eq!(well_formed(&svg), Ok("svg".to_string()));
    prop_assert!(!svg.contains("<script"));
    let mermaid = diagram::mermaid(sequence);
    prop_assert!(mermaid.starts_with("sequenceDiagram\n"));
    for line in mermaid.lines().skip(1) {
        prop_assert!(line.starts_with("    "), "{:?}", line);
        prop_assert!(entities_only(line), "a raw # or ; in {:?}", line);
    }
    Ok(())
}

/// Whether every `#` and `;` in a Mermaid line belongs to an entity (`#59;`),
/// so none can be read as syntax. A `%%` comment line may say anything.
fn entities_only(line: &str) -> bool {
    if line.trim_start().starts_with("%%") {
        return true;
    }
    let mut rest = line;
    while let Some(i) = rest.find(['#', ';']) {
        if !rest[i..].starts_with('#') {
            return false;
        }
        let digits = rest[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        if digits == 0 || !rest[i + 1 + digits..].starts_with(';') {
            return false;
        }
        rest = &rest[i + 2 + digits..];
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_trace_gives_a_sound_diagram(events in trace()) {
        let sequence = Sequence::from_events("made up <&>", &events);
        check(&events, &sequence)?;
    }

    #[test]
    fn a_conversation_is_drawn_byte_for_byte_and_always_downward(events in conversation()) {
        let sequence = Sequence::from_events("conversation", &events);
        check(&events, &sequence)?;
        // Everything written was read, so every write's bytes reach reads in full.
        for (i, row) in sequence.rows.iter().enumerate() {
            let arrows = sequence.arrows.iter().filter(|a| a.link == Link::Bytes);
            let sum: usize = match row.step {
                Step::Write => arrows.filter(|a| a.from == i).filter_map(|a| a.bytes).sum(),
                Step::Read => arrows.filter(|a| a.to == Some(i)).filter_map(|a| a.bytes).sum(),
                _ => continue,
            };
            prop_assert_eq!(Some(sum), row.bytes, "row {}", i);
        }
        prop_assert!(sequence.arrows.iter().all(|a| a.link != Link::Unread));
        let handshakes = sequence.arrows.iter().filter(|a| a.link == Link::Handshake).count();
        prop_assert_eq!(handshakes, 1);
    }
}

// --- The walkthroughs' pictures -----------------------------------------------

fn quiet() -> Box<dyn std::io::Write + Send> {
    Box::new(std::io::sink())
}

fn count(sequence: &Sequence, link: Link) -> usize {
    sequence.arrows.iter().filter(|a| a.link == link).count()
}

/// What every walkthrough picture must be: well-formed, every event drawn,
/// every arrow down, every close marked.
fn sound(events: &[Event], sequence: &Sequence) {
    let svg = diagram::svg(sequence);
    assert_eq!(well_formed(&svg), Ok("svg".to_string()));
    assert_eq!(sequence.rows.len(), events.len());
    for arrow in &sequence.arrows {
        assert!(arrow.to.is_none_or(|to| to > arrow.from), "{arrow:?}");
    }
    let closes = events.iter().filter(|e| e.step == Step::Close).count();
    let marked = sequence
        .rows
        .iter()
        .filter(|r| r.mark == Mark::Close)
        .count();
    assert_eq!(closes, marked);
    assert_eq!(svg.matches("✕ close()").count(), closes);
}

#[test]
fn walk_tcp_draws_four_sockets_the_handshake_and_every_byte_each_way() {
    let report = walk::tcp::run(&WalkOptions::default(), quiet()).expect("walk tcp");
    let sequence = diagram::walks::tcp(&report);
    sound(&report.events, &sequence);
    let roles: Vec<Role> = sequence.lifelines.iter().map(|l| l.role).collect();
    assert_eq!(
        roles,
        [
            Role::Listening,
            Role::Accepted,
            Role::Client,
            Role::Accepted
        ],
        "listening, its connection's two ends, the wake-up connection"
    );
    assert_eq!(count(&sequence, Link::Handshake), 1);
    assert_eq!(count(&sequence, Link::Accept), 2);
    // Three lines and their echoes; loopback delivers each write to one read.
    let bytes: usize = sequence
        .arrows
        .iter()
        .filter(|a| a.link == Link::Bytes)
        .filter_map(|a| a.bytes)
        .sum();
    assert_eq!(bytes, 2 * (6 + 34 + 4));
    assert_eq!(count(&sequence, Link::Unread), 0);
    assert!(
        count(&sequence, Link::EndOfStream) >= 1,
        "the half-close is seen"
    );
    assert!(
        sequence
            .rows
            .iter()
            .any(|r| r.mark == Mark::Shutdown && r.side == Side::Client)
    );
}

#[test]
fn walk_udp_draws_every_datagram_of_part_1_and_crosses_out_part_2s_losses() {
    let report = walk::udp::run(&WalkOptions::default(), quiet()).expect("walk udp");
    let sequence = diagram::walks::udp(&report);
    sound(&report.events, &sequence);
    assert_eq!(sequence.lifelines.len(), 2);
    assert!(sequence.lifelines.iter().all(|l| l.role == Role::Datagram));
    // hello, its answer, again, its echo, the largest, the one cut to fit.
    assert_eq!(count(&sequence, Link::Datagram), 6);
    assert!(sequence.arrows.iter().any(|a| a.label == "65,507 B"));
    assert!(sequence.arrows.iter().any(|a| a.label.ends_with(", cut")));
    let sample = sequence.loss.as_ref().expect("part 2's sample");
    assert!(
        !sample.lost().is_empty(),
        "seed 7 loses one of the first 20"
    );
    let svg = diagram::svg(&sequence);
    assert_eq!(svg.matches(">never arrived<").count(), sample.lost().len());
}

#[test]
fn walk_http_draws_a_connection_per_request_then_one_kept_alive() {
    let report = walk::http::run(&WalkOptions::default(), quiet()).expect("walk http");
    let sequence = diagram::walks::http(&report);
    sound(&report.events, &sequence);
    let clients = sequence
        .lifelines
        .iter()
        .filter(|l| l.role == Role::Client)
        .count();
    assert_eq!(clients as u64, report.connections.iter().sum::<u64>());
    assert_eq!(count(&sequence, Link::Handshake), clients);
    // The kept-alive connection carries three requests and three responses.
    let kept = sequence
        .lifelines
        .iter()
        .rev()
        .find(|l| l.role == Role::Client);
    let kept = column(&sequence, kept.expect("a client").socket);
    let writes = sequence
        .arrows
        .iter()
        .filter(|a| a.link == Link::Bytes && sequence.rows[a.from].lifeline == kept)
        .count();
    assert_eq!(writes, 3);
}

fn column(sequence: &Sequence, socket: SocketId) -> usize {
    sequence
        .lifelines
        .iter()
        .position(|l| l.socket == socket)
        .expect("a lifeline")
}

#[test]
fn walk_push_names_alice_and_bob_and_draws_the_servers_unasked_writes() {
    let report = walk::push::run(&WalkOptions::default(), quiet()).expect("walk push");
    let sequence = diagram::walks::push(&report);
    sound(&report.events, &sequence);
    for client in [&report.alice, &report.bob] {
        let lifeline = &sequence.lifelines[column(&sequence, client.sockets[0])];
        assert_eq!(lifeline.name.as_deref(), Some(client.name));
        // The server writes to each more times than each wrote: pushes nobody asked for.
        let partner = column(&sequence, lifeline.partner.expect("its accepted socket"));
        let written = |from: usize| {
            sequence
                .arrows
                .iter()
                .filter(|a| a.link == Link::Bytes && sequence.rows[a.from].lifeline == from)
                .count()
        };
        assert!(written(partner) > written(column(&sequence, client.sockets[0])));
    }
    let svg = diagram::svg(&sequence);
    assert!(svg.contains("alice (client)") && svg.contains("bob (client)"));
}

/// Root only: two namespaces. Elsewhere it says SKIPPED, loudly, and passes.
#[test]
fn walk_hosts_draws_each_socket_named_by_the_host_it_is_on() {
    if let Err(why) = walk::hosts::can_run() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_sockstep"));
    let report = walk::hosts::run(&WalkOptions::default(), quiet(), program).expect("walk hosts");
    let sequence = diagram::walks::hosts(&report);
    sound(&report.events, &sequence);
    for lifeline in &sequence.lifelines {
        let host = lifeline.name.as_deref().expect("every socket is on a host");
        assert!(host == "host A" || host == "host B", "{host}");
    }
    // Host A's client and the socket host B's accept() made are one connection.
    let client = sequence
        .lifelines
        .iter()
        .find(|l| l.role == Role::Client && l.protocol == Protocol::Tcp)
        .expect("host A's TCP client");
    assert_eq!(client.name.as_deref(), Some("host A"));
    assert_eq!(client.local, Some(report.client_local));
    let accepted = &sequence.lifelines[column(&sequence, client.partner.expect("its other end"))];
    assert_eq!(accepted.name.as_deref(), Some("host B"));
    assert_eq!(accepted.peer, Some(report.accept_peer));
    assert_eq!(count(&sequence, Link::Handshake), 1);
    assert_eq!(
        count(&sequence, Link::Datagram),
        2,
        "the datagram and its echo"
    );
}

// --- The command line ---------------------------------------------------------------

/// `sockstep walk tcp --svg F --mermaid G`, twice: both pictures written, and
/// the two runs' diagrams alike in everything but ports and timing.
#[test]
fn the_command_line_draws_the_same_picture_run_after_run() {
    let dir = std::env::temp_dir().join(format!("sockstep-diagrams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let shape = |run: usize| {
        let svg: PathBuf = dir.join(format!("tcp-{run}.svg"));
        let mmd: PathBuf = dir.join(format!("tcp-{run}.mmd"));
        let out = Command::new(env!("CARGO_BIN_EXE_sockstep"))
            .args(["walk", "tcp", "--svg"])
            .arg(&svg)
            .arg("--mermaid")
            .arg(&mmd)
            .output()
            .expect("run sockstep");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = std::fs::read_to_string(&svg).expect("the SVG");
        let mmd = std::fs::read_to_string(&mmd).expect("the Mermaid text");
        assert_eq!(well_formed(&svg), Ok("svg".to_string()));
        assert!(mmd.starts_with("sequenceDiagram\n"));
        // The shape: how many of each element and each kind of arrow.
        let mut shape: Vec<(String, usize)> = [
            "<rect",
            "<line",
            "<circle",
            "<text",
            "head-data",
            "head-syn",
            "head-fin",
        ]
        .iter()
        .map(|t| (t.to_string(), svg.matches(t).count()))
        .collect();
        shape.push(("mermaid lines".into(), mmd.lines().count()));
        shape
    };
    let first = shape(1);
    assert_eq!(first, shape(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_picture_into_a_missing_folder_fails_before_the_walkthrough_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_sockstep"))
        .args(["walk", "tcp", "--svg", "/nonexistent-folder/x.svg"])
        .output()
        .expect("run sockstep");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "the walkthrough did not run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent-folder/x.svg"), "{stderr}");
}

// --- The reader's path --------------------------------------------------------------

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped,
/// spaces to hyphens (letters of any script kept).
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every `[text](target)` of a Markdown page.
fn links(page: &str) -> Vec<String> {
    page.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|target| {
            target
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The reader's path, the glossary and the syscall map link only to files
/// that exist and to headings those files have: a renamed section or a moved
/// file breaks this test, not the reader's way.
#[test]
fn the_readers_path_and_the_glossary_link_only_to_what_exists() {
    let docs = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs"));
    for page in ["README.md", "glossary.md", "syscalls.md"] {
        let text = std::fs::read_to_string(docs.join(page)).expect("the page");
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                docs.join(page)
            } else {
                docs.join(file)
            };
            assert!(
                path.exists(),
                "{page} links to {target}, which does not exist"
            );
            if fragment.is_empty() {
                continue;
            }
            let linked = std::fs::read_to_string(&path).expect("a linked page");
            let anchors: Vec<String> = linked
                .lines()
                .filter(|l| l.starts_with('#'))
                .map(|l| anchor(l.trim_start_matches('#')))
                .collect();
            assert!(
                anchors.iter().any(|a| a == fragment),
                "{page} links to {target}: no such heading in {file} ({anchors:?})"
            );
        }
    }
    let path = std::fs::read_to_string(docs.join("README.md")).expect("docs/README.md");
    for walk in ["tcp", "udp", "http", "push"] {
        assert!(
            path.contains(&format!("img/walk-{walk}.svg")),
            "no picture of walk {walk}"
        );
        assert!(
            docs.join(format!("img/walk-{walk}.svg")).exists(),
            "make docs draws walk {walk}"
        );
    }
}

//! Lays a [`Sequence`] out and draws it with the [SVG writer](super::svg).
//!
//! The layout is a grid: a column per lifeline, [`COLUMN`] pixels apart, and a
//! row per event, taller for a step's box than for a dot. Heights are not
//! times; the order of the rows is what the diagram says. Beside the columns,
//! each row's words: the event's detail, as the walkthrough printed it.

use super::sequence::{Arrow, Lifeline, Link, LossSample, Mark, Row, Sequence};
use super::svg::{Anchor, Document};
use crate::endpoint::{Endpoint, Protocol};
use crate::readable::grouped;
use crate::step::Side;

/// Space around everything.
const MARGIN: f64 = 24.0;
/// Distance between two lifelines: room for a header's address and an arrow's label.
pub const COLUMN: f64 = 156.0;
/// A lifeline header's width and height (three lines: name, address, peer).
const HEAD_W: f64 = 146.0;
const HEAD_H: f64 = 50.0;
/// Where the headers start: below the title.
const HEAD_Y: f64 = MARGIN + 34.0;
/// A row with a box, and a row with a dot.
const BOX_ROW: f64 = 30.0;
const DOT_ROW: f64 = 22.0;
const BOX_H: f64 = 20.0;
/// Words beside a row longer than this are cut (with `…`): the SVG must stay readable.
const MAX_WORDS: usize = 92;
/// Width of one character of the monospace and the sans-serif fonts used, at
/// their sizes (DejaVu Sans Mono 11 px is 6.6 px; DejaVu Sans 12 px averages under 7).
const MONO_CHAR: f64 = 6.7;
const SANS_CHAR: f64 = 7.0;
/// A note's line under the diagram, and a legend's line.
const NOTE_LINE: f64 = 17.0;
const LEGEND_LINE: f64 = 20.0;
/// The loss sample's rows and column spacing.
const SAMPLE_ROW: f64 = 18.0;
const SAMPLE_COLUMN: f64 = 230.0;
const SAMPLE_HEAD_W: f64 = 190.0;

const STYLE: &str = "
text { font-family: 'DejaVu Sans', 'Noto Sans', 'Helvetica Neue', Arial, sans-serif; }
.mono, .addr, .words { font-family: 'DejaVu Sans Mono', 'Noto Sans Mono', Menlo, Consolas, monospace; }
.bg { fill: #ffffff; }
.title { font-size: 16px; font-weight: 600; fill: #111; }
.sub { font-size: 12px; fill: #555; }
.head-server { fill: #eaf0fc; stroke: #3b6fd4; stroke-width: 1.2; }
.head-client { fill: #e8f5ec; stroke: #2f8f55; stroke-width: 1.2; }
.name { font-size: 12px; font-weight: 600; fill: #111; }
.addr { font-size: 10.5px; fill: #333; }
.guide { stroke: #c4c9d2; stroke-width: 1; stroke-dasharray: 3 4; }
.life-server { stroke: #3b6fd4; stroke-width: 3; stroke-linecap: round; }
.life-client { stroke: #2f8f55; stroke-width: 3; stroke-linecap: round; }
.step-server { fill: #dbe5fb; stroke: #3b6fd4; }
.step-client { fill: #d5efdd; stroke: #2f8f55; }
.close { fill: #eceef1; stroke: #6b7280; }
.shut { fill: #fff0d6; stroke: #c98512; }
.refuse { fill: #fde0df; stroke: #c62f2a; }
.box { font-size: 11.5px; fill: #111; }
.dot-server { fill: #3b6fd4; }
.dot-client { fill: #2f8f55; }
.eof { fill: #ffffff; stroke: #555; stroke-width: 1.5; }
.note { fill: #ffffff; stroke: #8b8f98; stroke-width: 1.2; }
.words { font-size: 11px; fill: #4b5060; }
.words-server { font-size: 11px; fill: #2c58b0; font-weight: 600; }
.words-client { font-size: 11px; fill: #257245; font-weight: 600; }
.bytes { font-size: 11px; font-weight: 600; fill: #1b1b1b; paint-order: stroke; stroke: #ffffff; stroke-width: 4px; stroke-linejoin: round; }
.data { stroke: #1f1f1f; stroke-width: 1.4; fill: none; }
.datagram { stroke: #7b3fc4; stroke-width: 1.4; fill: none; }
.syn { stroke: #3b6fd4; stroke-width: 1.2; stroke-dasharray: 2 3; fill: none; }
.fin { stroke: #777; stroke-width: 1.2; stroke-dasharray: 6 3; fill: none; }
.lost { stroke: #c62f2a; stroke-width: 2.2; }
.unread { fill: #ffffff; stroke: #777; stroke-width: 1.4; }
.legend { font-size: 11.5px; fill: #333; }
.rule { stroke: #d5d9e0; stroke-width: 1; }
";

/// The SVG picture of `sequence`, as a complete document.
pub fn svg(sequence: &Sequence) -> String {
    let layout = Layout::of(sequence);
    let mut doc = Document::new(layout.width, layout.height);
    doc.title(&sequence.title);
    doc.style(STYLE);
    doc.arrowhead("head-data", "#1f1f1f");
    doc.arrowhead("head-datagram", "#7b3fc4");
    doc.arrowhead("head-syn", "#3b6fd4");
    doc.arrowhead("head-fin", "#777777");
    doc.rect(0.0, 0.0, layout.width, layout.height, 0.0, "bg");
    doc.text(
        MARGIN,
        MARGIN + 8.0,
        Anchor::Start,
        "title",
        &sequence.title,
    );
    doc.text(
        MARGIN,
        MARGIN + 24.0,
        Anchor::Start,
        "sub",
        "One column per socket; one row per event, top to bottom in the order they happened. Heights are not times.",
    );
    doc.group("lifelines", |doc| {
        for (i, lifeline) in sequence.lifelines.iter().enumerate() {
            draw_lifeline(doc, &layout, i, lifeline);
        }
    });
    doc.group("arrows", |doc| {
        for arrow in &sequence.arrows {
            draw_arrow(doc, &layout, sequence, arrow);
        }
    });
    doc.group("rows", |doc| {
        for (i, row) in sequence.rows.iter().enumerate() {
            draw_row(doc, &layout, i, row);
        }
    });
    let mut y = layout.rows_bottom + 14.0;
    for note in &sequence.notes {
        doc.text(MARGIN, y + 4.0, Anchor::Start, "sub", note);
        y += NOTE_LINE;
    }
    if let Some(sample) = &sequence.loss {
        y += 10.0;
        doc.line(MARGIN, y, layout.width - MARGIN, y, "rule", None);
        y = draw_sample(&mut doc, sample, y + 24.0) + 12.0;
    }
    draw_legend(&mut doc, sequence, y);
    doc.finish()
}

/// Where everything goes.
struct Layout {
    /// Each row's centre line.
    row_y: Vec<f64>,
    /// Each lifeline's x.
    column_x: Vec<f64>,
    /// Where the rows' words start.
    words_x: f64,
    /// Below the last row.
    rows_bottom: f64,
    width: f64,
    height: f64,
}

impl Layout {
    fn of(sequence: &Sequence) -> Layout {
        let columns = sequence.lifelines.len().max(1);
        let column_x: Vec<f64> = (0..columns)
            .map(|i| MARGIN + COLUMN / 2.0 + i as f64 * COLUMN)
            .collect();
        let mut row_y = Vec::with_capacity(sequence.rows.len());
        let mut y = HEAD_Y + HEAD_H + 18.0;
        for row in &sequence.rows {
            let h = row_height(row);
            row_y.push(y + h / 2.0);
            y += h;
        }
        let rows_bottom = y + 8.0;
        let words_x = MARGIN + columns as f64 * COLUMN + 8.0;
        let words = sequence
            .rows
            .iter()
            .map(|r| text_width(&words(r), MONO_CHAR))
            .fold(0.0, f64::max);
        let legend = legend_lines(sequence);
        let legend_width = legend
            .iter()
            .map(|l| 60.0 + text_width(l, SANS_CHAR))
            .chain(sequence.notes.iter().map(|n| text_width(n, SANS_CHAR)))
            .fold(0.0, f64::max);
        let mut width = (words_x + words + MARGIN).max(MARGIN * 2.0 + legend_width);
        let mut height = rows_bottom + 14.0 + sequence.notes.len() as f64 * NOTE_LINE;
        if let Some(sample) = &sequence.loss {
            let (w, h) = sample_size(sample);
            width = width.max(MARGIN * 2.0 + w);
            height += 10.0 + 24.0 + h + 12.0;
        }
        height += legend_height(sequence);
        Layout {
            row_y,
            column_x,
            words_x,
            rows_bottom,
            width: width.ceil(),
            height: height.ceil(),
        }
    }

    fn x(&self, lifeline: usize) -> f64 {
        self.column_x[lifeline]
    }
}

fn row_height(row: &Row) -> f64 {
    match row.mark {
        Mark::Step | Mark::Shutdown | Mark::Close | Mark::Refuse => BOX_ROW,
        Mark::Send | Mark::Receive | Mark::EndOfStream | Mark::Note => DOT_ROW,
    }
}

/// Roughly how wide `text` is: a wide (CJK) character counts twice.
fn text_width(text: &str, per_char: f64) -> f64 {
    text.chars()
        .map(|c| if is_wide(c) { 2.0 } else { 1.0 })
        .sum::<f64>()
        * per_char
}

fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6)
}

/// `text`, cut to `max` characters with an ellipsis.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// A step box's width: its label and some air, never narrower than a short step's.
fn box_width(label: &str) -> f64 {
    (text_width(label, SANS_CHAR) + 16.0).max(64.0)
}

fn side_class(prefix: &str, side: Side) -> String {
    match side {
        Side::Server => format!("{prefix}-server"),
        Side::Client => format!("{prefix}-client"),
    }
}

fn address(protocol: Protocol, addr: std::net::SocketAddr) -> String {
    Endpoint::from_addr(protocol, addr).to_string()
}

/// A lifeline's header, its dashed guide and its solid life.
fn draw_lifeline(doc: &mut Document, layout: &Layout, i: usize, lifeline: &Lifeline) {
    let x = layout.x(i);
    doc.line(x, HEAD_Y + HEAD_H, x, layout.rows_bottom, "guide", None);
    doc.rect(
        x - HEAD_W / 2.0,
        HEAD_Y,
        HEAD_W,
        HEAD_H,
        5.0,
        &side_class("head", lifeline.side),
    );
    let name = header_name(lifeline);
    doc.text(x, HEAD_Y + 15.0, Anchor::Middle, "name", &cut(&name, 22));
    let local = lifeline.local.map_or_else(
        || format!("{}://(no address)", protocol_name(lifeline.protocol)),
        |a| address(lifeline.protocol, a),
    );
    doc.text(x, HEAD_Y + 30.0, Anchor::Middle, "addr", &cut(&local, 24));
    if let Some(peer) = lifeline.peer {
        doc.text(
            x,
            HEAD_Y + 43.0,
            Anchor::Middle,
            "addr",
            &cut(&format!("↔ {peer}"), 24),
        );
    }
    if let (Some(&top), Some(&bottom)) = (
        layout.row_y.get(lifeline.first_row),
        layout.row_y.get(lifeline.last_row),
    ) {
        doc.line(x, top, x, bottom, &side_class("life", lifeline.side), None);
    }
}

/// `#1 listening socket`, or with a name, `#2 alice (client)`.
fn header_name(lifeline: &Lifeline) -> String {
    match &lifeline.name {
        Some(name) => format!("{} {name} ({})", lifeline.socket, lifeline.side),
        None => format!(
            "{} {}",
            lifeline.socket,
            lifeline.role.describe(lifeline.side)
        ),
    }
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// A row's mark on its lifeline, and its words beside the columns.
fn draw_row(doc: &mut Document, layout: &Layout, i: usize, row: &Row) {
    let x = layout.x(row.lifeline);
    let y = layout.row_y[i];
    match row.mark {
        Mark::Step | Mark::Shutdown | Mark::Close | Mark::Refuse => {
            let class = match row.mark {
                Mark::Shutdown => "shut".to_string(),
                Mark::Close => "close".to_string(),
                Mark::Refuse => "refuse".to_string(),
                _ => side_class("step", row.side),
            };
            let label = match row.mark {
                Mark::Close => format!("✕ {}", row.label),
                _ => row.label.clone(),
            };
            let w = box_width(&label);
            doc.rect(x - w / 2.0, y - BOX_H / 2.0, w, BOX_H, 4.0, &class);
            doc.text(x, y + 4.0, Anchor::Middle, "box", &label);
        }
        Mark::Send | Mark::Receive => doc.circle(x, y, 3.5, &side_class("dot", row.side)),
        Mark::EndOfStream => doc.circle(x, y, 4.5, "eof"),
        Mark::Note => doc.rect(x - 4.0, y - 4.0, 8.0, 8.0, 1.5, "note"),
    }
    let words = words(row);
    if !words.is_empty() {
        let tag = format!("{} ", row.socket);
        doc.text(
            layout.words_x,
            y + 4.0,
            Anchor::Start,
            &side_class("words", row.side),
            &tag,
        );
        doc.text(
            layout.words_x + text_width(&tag, MONO_CHAR) + 4.0,
            y + 4.0,
            Anchor::Start,
            "words",
            &words,
        );
    }
}

/// What a row says beside the columns: the step and its bytes, then the
/// event's detail, as the walkthrough printed them.
fn words(row: &Row) -> String {
    let mut words = match (row.mark, row.bytes) {
        (Mark::EndOfStream, _) => format!("{} → 0 bytes", row.step.name()),
        (Mark::Send | Mark::Receive, Some(n)) => {
            format!("{} {} bytes", row.step.name(), grouped(n as u64))
        }
        (Mark::Send | Mark::Receive, None) => row.step.name().to_string(),
        (Mark::Note, _) => String::new(),
        _ => row.label.clone(),
    };
    if let Some(detail) = &row.detail {
        if !words.is_empty() {
            words.push_str(": ");
        }
        words.push_str(detail);
    }
    // The words stay on one line: a detail with a newline would spill over the next row.
    let one_line: String = words
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cut(&one_line, MAX_WORDS)
}

/// One arrow: its line, its head (or cross, or open end), its label.
fn draw_arrow(doc: &mut Document, layout: &Layout, sequence: &Sequence, arrow: &Arrow) {
    let from_row = &sequence.rows[arrow.from];
    let x1 = layout.x(from_row.lifeline);
    let y1 = layout.row_y[arrow.from];
    let x_toward = layout.x(arrow.toward);
    let (x2, y2) = match arrow.to {
        Some(to) => (layout.x(sequence.rows[to].lifeline), layout.row_y[to]),
        None => (x_toward, y1),
    };
    let direction = if x2 >= x1 { 1.0 } else { -1.0 };
    let (class, head) = match arrow.link {
        Link::Bytes | Link::Unread => ("data", "head-data"),
        Link::Datagram | Link::Lost => ("datagram", "head-datagram"),
        Link::Handshake | Link::Accept => ("syn", "head-syn"),
        Link::EndOfStream => ("fin", "head-fin"),
    };
    match arrow.link {
        Link::Lost | Link::Unread => {
            // Most of the way there, and then nothing.
            let reach = if (x2 - x1).abs() < 1.0 {
                40.0
            } else {
                (x2 - x1).abs() * 0.6
            };
            let end_x = x1 + direction * reach;
            let end_y = y1 + 6.0;
            if arrow.link == Link::Lost {
                doc.line(x1, y1, end_x, end_y, class, None);
                doc.cross(end_x, end_y, 5.0, "lost");
            } else {
                doc.line(x1, y1, end_x - direction * 4.0, end_y, class, None);
                doc.circle(end_x, end_y, 4.0, "unread");
            }
            label(doc, arrow, x1, y1, end_x, end_y);
        }
        Link::Accept => {
            // Level, from the accept() box to the new socket's lifeline; the
            // label starts past the box, which would hide its first letters.
            doc.line(x1, y1, x2 - direction * 5.0, y2, class, Some(head));
            let edge = box_width(&from_row.label) / 2.0 + 6.0;
            doc.text(
                x1 + direction * edge,
                y1 - 5.0,
                if direction > 0.0 {
                    Anchor::Start
                } else {
                    Anchor::End
                },
                "bytes",
                &arrow.label,
            );
        }
        _ if (x2 - x1).abs() < 1.0 => {
            // Both ends on one lifeline: a loop out to the right and back.
            doc.line(x1, y1, x1 + 30.0, y1, class, None);
            doc.line(x1 + 30.0, y1, x1 + 30.0, y2, class, None);
            doc.line(x1 + 30.0, y2, x2 + 5.0, y2, class, Some(head));
            label(doc, arrow, x1, y1, x1 + 60.0, y1);
        }
        _ => {
            // Stop short of the receiving dot, so the head is not hidden under it.
            let (dx, dy) = (x2 - x1, y2 - y1);
            let length = (dx * dx + dy * dy).sqrt().max(1.0);
            let short = 5.0 / length;
            doc.line(x1, y1, x2 - dx * short, y2 - dy * short, class, Some(head));
            label(doc, arrow, x1, y1, x2, y2);
        }
    }
}

/// An arrow's label, in the gap next to where the arrow starts, just above the line.
fn label(doc: &mut Document, arrow: &Arrow, x1: f64, y1: f64, x2: f64, y2: f64) {
    let dx = x2 - x1;
    let along = if dx.abs() < 1.0 {
        0.5
    } else {
        ((COLUMN / 2.0) / dx.abs()).min(0.5)
    };
    let x = x1 + dx * along;
    let y = y1 + (y2 - y1) * along - 5.0;
    doc.text(x, y, Anchor::Middle, "bytes", &cut(&arrow.label, 24));
}

/// The loss sample's size: (width, height).
fn sample_size(sample: &LossSample) -> (f64, f64) {
    let rows = sample.sent.len().max(sample.arrivals.len()) as f64;
    let summary = sample
        .summary
        .iter()
        .map(|l| text_width(l, SANS_CHAR))
        .fold(0.0, f64::max);
    let width = (60.0 + SAMPLE_HEAD_W + 2.0 * SAMPLE_COLUMN + 160.0).max(summary);
    let height =
        30.0 + HEAD_H + 16.0 + rows * SAMPLE_ROW + 16.0 + sample.summary.len() as f64 * 17.0;
    (width, height)
}

/// The loss sample: sender, link and receiver; each datagram sent, in sending
/// order on the left, and each arrival, in arrival order on the right; a
/// datagram that never arrived ends in a cross at the link. Returns the y
/// below it.
fn draw_sample(doc: &mut Document, sample: &LossSample, top: f64) -> f64 {
    doc.text(MARGIN, top, Anchor::Start, "title", &sample.title);
    let head_y = top + 14.0;
    let xs: Vec<f64> = (0..3)
        .map(|i| MARGIN + 60.0 + SAMPLE_HEAD_W / 2.0 + i as f64 * SAMPLE_COLUMN)
        .collect();
    let rows = sample.sent.len().max(sample.arrivals.len()) as f64;
    let first = head_y + HEAD_H + 20.0;
    let bottom = first + rows * SAMPLE_ROW;
    let sides = [Side::Client, Side::Server, Side::Server];
    for ((&x, column), side) in xs.iter().zip(&sample.columns).zip(sides) {
        doc.line(x, head_y + HEAD_H, x, bottom, "guide", None);
        doc.rect(
            x - SAMPLE_HEAD_W / 2.0,
            head_y,
            SAMPLE_HEAD_W,
            HEAD_H,
            5.0,
            &side_class("head", side),
        );
        let mut lines = column.lines();
        if let Some(first) = lines.next() {
            doc.text(x, head_y + 18.0, Anchor::Middle, "name", &cut(first, 28));
        }
        for (k, line) in lines.take(2).enumerate() {
            doc.text(
                x,
                head_y + 32.0 + k as f64 * 12.0,
                Anchor::Middle,
                "addr",
                &cut(line, 30),
            );
        }
    }
    let (client, link, server) = (xs[0], xs[1], xs[2]);
    let sent_y = |i: usize| first + i as f64 * SAMPLE_ROW;
    // Arrivals sit a little lower than sends of the same rank, so every arrow slopes down.
    let arrival_y = |k: usize| first + k as f64 * SAMPLE_ROW + SAMPLE_ROW / 2.0;
    let mut highest = 0;
    let mut seen = Vec::new();
    for (k, &n) in sample.arrivals.iter().enumerate() {
        let Some(i) = sample.sent.iter().position(|&s| s == n) else {
            continue;
        };
        let (y1, y2) = (sent_y(i), arrival_y(k));
        let length = ((server - client).powi(2) + (y2 - y1).powi(2)).sqrt();
        let short = 5.0 / length;
        doc.line(
            client,
            y1,
            server - (server - client) * short,
            y2 - (y2 - y1) * short,
            "datagram",
            Some("head-datagram"),
        );
        doc.circle(server, y2, 3.0, "dot-server");
        let note = if seen.contains(&n) {
            " again: duplicated"
        } else if n < highest {
            " late: overtaken"
        } else {
            ""
        };
        seen.push(n);
        highest = highest.max(n);
        doc.text(
            server + 10.0,
            y2 + 4.0,
            Anchor::Start,
            "words",
            &format!("#{n}{note}"),
        );
    }
    let lost = sample.lost();
    for (i, &n) in sample.sent.iter().enumerate() {
        let y = sent_y(i);
        doc.circle(client, y, 3.0, "dot-client");
        doc.text(
            client - 10.0,
            y + 4.0,
            Anchor::End,
            "words",
            &format!("#{n}"),
        );
        if lost.contains(&n) {
            doc.line(client, y, link - 6.0, y + 4.0, "datagram", None);
            doc.cross(link, y + 4.0, 5.0, "lost");
            doc.text(
                link + 10.0,
                y + 8.0,
                Anchor::Start,
                "bytes",
                "never arrived",
            );
        }
    }
    let mut y = bottom + 20.0;
    for line in &sample.summary {
        doc.text(MARGIN, y, Anchor::Start, "legend", line);
        y += 17.0;
    }
    y
}

/// The legend's lines: a glyph's meaning each, for the glyphs this picture uses.
fn legend_lines(sequence: &Sequence) -> Vec<String> {
    let has = |link: Link| sequence.arrows.iter().any(|a| a.link == link);
    let mut lines = vec![
        "a step of the socket's life, numbered as in the seed (server 1-4, client 1-4)".to_string(),
    ];
    if has(Link::Bytes) {
        lines.push(
            "bytes, from the write() that sent them to the read() that took them (\"4 of 6 B\": part of a write)"
                .into(),
        );
    }
    if has(Link::Datagram) || sequence.loss.is_some() {
        lines.push("one datagram, from send_to() to the recv_from() that received it".into());
    }
    if has(Link::Lost) || sequence.loss.is_some() {
        lines.push("a datagram that never arrived; nobody was told".into());
    }
    if has(Link::Unread) {
        lines.push("bytes written that the other end never read".into());
    }
    if has(Link::Handshake) || has(Link::Accept) {
        lines.push(
            "connect()'s handshake (SYN), queued until accept() takes it and makes a new socket"
                .into(),
        );
    }
    if has(Link::EndOfStream) {
        lines.push(
            "FIN: the other end's shutdown() or close(), seen by a read() that returns 0".into(),
        );
    }
    lines
}

fn legend_height(sequence: &Sequence) -> f64 {
    10.0 + legend_lines(sequence).len() as f64 * LEGEND_LINE + MARGIN
}

/// The legend, then the notes, from `top`.
fn draw_legend(doc: &mut Document, sequence: &Sequence, top: f64) {
    let has = |link: Link| sequence.arrows.iter().any(|a| a.link == link);
    let mut y = top + 10.0;
    let glyph_x = MARGIN;
    let text_x = MARGIN + 60.0;
    let mut line = |doc: &mut Document, text: &str, draw: &dyn Fn(&mut Document, f64)| {
        draw(doc, y);
        doc.text(text_x, y + 4.0, Anchor::Start, "legend", text);
        y += LEGEND_LINE;
    };
    let lines = legend_lines(sequence);
    let mut texts = lines.iter();
    let mut next = || texts.next().map(String::as_str).unwrap_or_default();
    line(doc, next(), &|doc, y| {
        doc.rect(glyph_x - 4.0, y - 9.0, 56.0, 18.0, 4.0, "step-server");
        doc.text(glyph_x + 24.0, y + 4.0, Anchor::Middle, "box", "2 bind()");
    });
    if has(Link::Bytes) {
        line(doc, next(), &|doc, y| {
            doc.line(glyph_x, y, glyph_x + 46.0, y, "data", Some("head-data"));
        });
    }
    if has(Link::Datagram) || sequence.loss.is_some() {
        line(doc, next(), &|doc, y| {
            doc.line(
                glyph_x,
                y,
                glyph_x + 46.0,
                y,
                "datagram",
                Some("head-datagram"),
            );
        });
    }
    if has(Link::Lost) || sequence.loss.is_some() {
        line(doc, next(), &|doc, y| {
            doc.line(glyph_x, y, glyph_x + 34.0, y, "datagram", None);
            doc.cross(glyph_x + 40.0, y, 5.0, "lost");
        });
    }
    if has(Link::Unread) {
        line(doc, next(), &|doc, y| {
            doc.line(glyph_x, y, glyph_x + 36.0, y, "data", None);
            doc.circle(glyph_x + 40.0, y, 4.0, "unread");
        });
    }
    if has(Link::Handshake) || has(Link::Accept) {
        line(doc, next(), &|doc, y| {
            doc.line(glyph_x, y, glyph_x + 46.0, y, "syn", Some("head-syn"));
        });
    }
    if has(Link::EndOfStream) {
        line(doc, next(), &|doc, y| {
            doc.line(glyph_x, y, glyph_x + 46.0, y, "fin", Some("head-fin"));
        });
    }
}

//! The same diagram as Mermaid text (`sequenceDiagram`), for pages that render
//! Mermaid (GitHub, GitLab, many wikis) and for readers who prefer text.
//!
//! Mermaid draws every message level, so it cannot slant an arrow from a write
//! down to a later read as the SVG does. Each arrow is therefore written at the
//! row where it ends — where the bytes were taken — and each step is a note
//! over its socket. Text is encoded with Mermaid's `#code;` entities wherever
//! Mermaid would otherwise read it as syntax.

use std::fmt::Write as _;

use super::sequence::{Arrow, Link, LossSample, Mark, Row, Sequence};
use crate::readable::grouped;

/// Longest note or message text: Mermaid does not wrap, so long texts make wide pictures.
const MAX_TEXT: usize = 72;

/// The Mermaid `sequenceDiagram` of `sequence`.
///
/// ```
/// use sockstep::diagram::{mermaid, Sequence};
/// let text = mermaid(&Sequence::from_events("empty", &[]));
/// assert!(text.starts_with("sequenceDiagram\n"));
/// ```
pub fn mermaid(sequence: &Sequence) -> String {
    let mut out = String::from("sequenceDiagram\n");
    let _ = writeln!(out, "    %% {}", one_line(&sequence.title));
    for lifeline in &sequence.lifelines {
        let role = lifeline.role.describe(lifeline.side);
        let name = match &lifeline.name {
            Some(name) => format!("{} {name}: {role}", lifeline.socket),
            None => format!("{} {role}", lifeline.socket),
        };
        let address = lifeline
            .local
            .map(|a| format!("<br/>{}", text(&a.to_string())))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    participant {} as {}{address}",
            id(sequence, lifeline_index(sequence, lifeline.socket)),
            text(&name)
        );
    }
    if let Some(sample) = &sequence.loss {
        for (k, column) in sample.columns.iter().enumerate() {
            let _ = writeln!(
                out,
                "    participant L{k} as {}",
                text(column.lines().next().unwrap_or_default())
            );
        }
    }
    for (i, row) in sequence.rows.iter().enumerate() {
        write_row(&mut out, sequence, i, row);
    }
    if let Some(sample) = &sequence.loss {
        write_sample(&mut out, sample);
    }
    for note in &sequence.notes {
        let _ = writeln!(out, "    %% {}", one_line(note));
    }
    out
}

fn lifeline_index(sequence: &Sequence, socket: crate::trace::SocketId) -> usize {
    sequence
        .lifelines
        .iter()
        .position(|l| l.socket == socket)
        .unwrap_or(0)
}

/// A participant's id: `S` and its socket number, which Mermaid never misreads.
fn id(sequence: &Sequence, lifeline: usize) -> String {
    match sequence.lifelines.get(lifeline) {
        Some(l) => format!("S{}", l.socket.0),
        None => "S0".into(),
    }
}

fn write_row(out: &mut String, sequence: &Sequence, i: usize, row: &Row) {
    let me = id(sequence, row.lifeline);
    let arrows_in: Vec<&Arrow> = sequence.arrows_into(i).collect();
    let open_ended = sequence
        .arrows
        .iter()
        .filter(|a| a.from == i && a.to.is_none());
    for arrow in &arrows_in {
        let from = id(sequence, sequence.rows[arrow.from].lifeline);
        let shaft = match arrow.link {
            Link::Bytes | Link::Datagram => "->>",
            Link::Handshake => "--)",
            _ => "-->>",
        };
        let what = match arrow.link {
            Link::Handshake => "connect(): SYN".to_string(),
            _ => arrow.label.clone(),
        };
        let _ = writeln!(out, "    {from}{shaft}{me}: {}", text(&what));
    }
    match row.mark {
        Mark::Step | Mark::Shutdown | Mark::Close | Mark::Refuse => {
            let words = match &row.detail {
                Some(detail) => format!("{}: {detail}", row.label),
                None => row.label.clone(),
            };
            let _ = writeln!(out, "    Note over {me}: {}", text(&words));
        }
        Mark::Note => {
            let words = row.detail.clone().unwrap_or_else(|| row.label.clone());
            let _ = writeln!(out, "    Note right of {me}: {}", text(&words));
        }
        Mark::Receive | Mark::EndOfStream if arrows_in.is_empty() => {
            let words = match row.bytes {
                Some(0) => format!("{} → 0 bytes: end of stream", row.step.name()),
                Some(n) => format!("{} {} bytes", row.step.name(), grouped(n as u64)),
                None => row.step.name().to_string(),
            };
            let _ = writeln!(out, "    Note over {me}: {}", text(&words));
        }
        Mark::Send if !sequence.arrows.iter().any(|a| a.from == i) && row.bytes.is_some() => {
            let words = format!(
                "{} {} bytes",
                row.step.name(),
                grouped(row.bytes.unwrap_or(0) as u64)
            );
            let _ = writeln!(out, "    Note over {me}: {}", text(&words));
        }
        _ => {}
    }
    for arrow in open_ended {
        let toward = id(sequence, arrow.toward);
        let shaft = match arrow.link {
            Link::Accept => "-->>",
            _ => "-x",
        };
        let _ = writeln!(out, "    {me}{shaft}{toward}: {}", text(&arrow.label));
    }
}

/// The loss sample in arrival order, each lost datagram where it was sent.
fn write_sample(out: &mut String, sample: &LossSample) {
    let _ = writeln!(out, "    Note over L0,L2: {}", text(&sample.title));
    let lost = sample.lost();
    let mut told = Vec::new();
    let mut highest = 0;
    for &n in &sample.arrivals {
        // Datagrams sent before this one that never arrived: they were lost about now.
        for &m in sample.sent.iter().take_while(|&&m| m != n) {
            if lost.contains(&m) && !told.contains(&m) {
                told.push(m);
                let _ = writeln!(out, "    L0-xL1: {}", text(&format!("#{m} never arrived")));
            }
        }
        let note = if told.contains(&n) {
            " again: duplicated"
        } else if n < highest {
            " late: overtaken"
        } else {
            ""
        };
        told.push(n);
        highest = highest.max(n);
        let _ = writeln!(out, "    L0->>L2: {}", text(&format!("#{n}{note}")));
    }
    for &m in &lost {
        if !told.contains(&m) {
            let _ = writeln!(out, "    L0-xL1: {}", text(&format!("#{m} never arrived")));
        }
    }
    for line in &sample.summary {
        let _ = writeln!(out, "    Note over L0,L2: {}", text(line));
    }
}

/// `words` on one line, cut to [`MAX_TEXT`], with what Mermaid would read as
/// syntax written as entities: `#` (entities themselves), `;` (ends a
/// statement), `<`, `>` and `&` (HTML), and `%` (a `%%` starts a comment).
fn text(words: &str) -> String {
    let line = one_line(words);
    let cut: String = if line.chars().count() > MAX_TEXT {
        line.chars()
            .take(MAX_TEXT - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        line
    };
    let mut out = String::with_capacity(cut.len());
    for c in cut.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '<' => out.push_str("#60;"),
            '>' => out.push_str("#62;"),
            '&' => out.push_str("#38;"),
            '%' => out.push_str("#37;"),
            c => out.push(c),
        }
    }
    out
}

/// Control characters (newlines above all) become spaces: one statement per line.
fn one_line(words: &str) -> String {
    words
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_characters_become_entities_and_lines_stay_one() {
        assert_eq!(text("a;b#c<d>\ne%%"), "a#59;b#35;c#60;d#62; e#37;#37;");
    }
}

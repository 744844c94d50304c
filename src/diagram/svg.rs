//! A small SVG writer: just the shapes a sequence diagram needs, and text that
//! is always escaped.
//!
//! SVG is XML, so the one thing a writer must get right is that nothing a trace
//! says can break the document: an HTTP request line with `<`, a detail with
//! `&`, a control character from a peer's bytes. Every piece of text and every
//! attribute value goes through [`escape`], and elements are opened and closed
//! by the same call ([`Document::group`] takes a closure), so a document is
//! well-formed by construction: callers cannot forget an end tag.

use std::fmt::Write as _;

/// How text lines up with its `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `x` is where the text starts.
    Start,
    /// `x` is the text's middle.
    Middle,
    /// `x` is where the text ends.
    End,
}

impl Anchor {
    fn attribute(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// An SVG document being written, element by element.
///
/// ```
/// use sockstep::diagram::svg::{Anchor, Document};
///
/// let mut doc = Document::new(200.0, 40.0);
/// doc.text(10.0, 20.0, Anchor::Start, "label", "GET /a?b=<1>&c");
/// let svg = doc.finish();
/// assert!(svg.contains("GET /a?b=&lt;1&gt;&amp;c"));
/// assert!(svg.ends_with("</svg>\n"));
/// ```
#[derive(Debug)]
pub struct Document {
    width: f64,
    height: f64,
    head: String,
    body: String,
}

impl Document {
    /// An empty document of this size, in pixels.
    pub fn new(width: f64, height: f64) -> Document {
        Document {
            width,
            height,
            head: String::new(),
            body: String::new(),
        }
    }

    /// The document's title: browsers show it as the tab's name, screen readers read it.
    pub fn title(&mut self, text: &str) {
        let _ = writeln!(self.head, "<title>{}</title>", escape(text));
    }

    /// A style sheet: class names to looks, so shapes carry only a class.
    pub fn style(&mut self, css: &str) {
        let _ = writeln!(self.head, "<style>{}</style>", escape(css));
    }

    /// An arrowhead marker named `id`, filled with `color`, for
    /// [`Document::line`]'s `marker_end`.
    pub fn arrowhead(&mut self, id: &str, color: &str) {
        let _ = writeln!(
            self.head,
            "<marker id=\"{}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{}\"/></marker>",
            escape(id),
            escape(color)
        );
    }

    /// A group of elements sharing `class`; everything `draw` writes goes inside it.
    pub fn group(&mut self, class: &str, draw: impl FnOnce(&mut Document)) {
        let _ = writeln!(self.body, "<g class=\"{}\">", escape(class));
        draw(self);
        self.body.push_str("</g>\n");
    }

    /// A rectangle with corners rounded by `radius`.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, radius: f64, class: &str) {
        let _ = writeln!(
            self.body,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{}\" class=\"{}\"/>",
            num(x),
            num(y),
            num(w),
            num(h),
            num(radius),
            escape(class)
        );
    }

    /// A straight line, with an arrowhead at its end if `marker_end` names one.
    pub fn line(
        &mut self,
        x1: f64,
        y1: f64,
        x2: f64,
        y2: f64,
        class: &str,
        marker_end: Option<&str>,
    ) {
        let _ = write!(
            self.body,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"{}\"",
            num(x1),
            num(y1),
            num(x2),
            num(y2),
            escape(class)
        );
        if let Some(marker) = marker_end {
            let _ = write!(self.body, " marker-end=\"url(#{})\"", escape(marker));
        }
        self.body.push_str("/>\n");
    }

    /// A circle.
    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, class: &str) {
        let _ = writeln!(
            self.body,
            "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" class=\"{}\"/>",
            num(cx),
            num(cy),
            num(r),
            escape(class)
        );
    }

    /// One line of text at (`x`, `y`), `y` being its baseline.
    pub fn text(&mut self, x: f64, y: f64, anchor: Anchor, class: &str, text: &str) {
        let _ = writeln!(
            self.body,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"{}\" class=\"{}\">{}</text>",
            num(x),
            num(y),
            anchor.attribute(),
            escape(class),
            escape(text)
        );
    }

    /// A cross (✕) of half-size `r` centred on (`x`, `y`): where a datagram vanished.
    pub fn cross(&mut self, x: f64, y: f64, r: f64, class: &str) {
        self.line(x - r, y - r, x + r, y + r, class, None);
        self.line(x - r, y + r, x + r, y - r, class, None);
    }

    /// The finished document.
    pub fn finish(self) -> String {
        let mut out = String::new();
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">",
            w = num(self.width),
            h = num(self.height)
        );
        out.push_str(&self.head);
        out.push_str(&self.body);
        out.push_str("</svg>\n");
        out
    }
}

/// `text` made safe for XML text and attribute values: `&`, `<`, `>`, `"`
/// and `'` become entities, and characters XML 1.0 forbids outright (control
/// characters other than tab, newline and carriage return) become `�`.
///
/// ```
/// use sockstep::diagram::svg::escape;
/// assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;\u{fffd}");
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            // XML 1.0 §2.2: no other C0 control, no surrogates (a Rust char
            // cannot be one), and not U+FFFE/U+FFFF.
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate as SVG wants it: one decimal at most, and no `-0`.
fn num(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    if rounded == rounded.trunc() {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_never_negative_zero() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(-0.01), "0");
        assert_eq!(num(12.345), "12.3");
    }

    #[test]
    fn a_group_closes_what_it_opens() {
        let mut doc = Document::new(10.0, 10.0);
        doc.group("g", |doc| doc.circle(1.0, 1.0, 1.0, "c"));
        let svg = doc.finish();
        assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
    }
}

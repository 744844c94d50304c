//! Plots for the benchmark pages, drawn by our own code as SVG.
//!
//! A [`Chart`] is a line chart: one or more [`Series`] of points, each
//! point a median with an error bar from the slowest to the fastest pass, on
//! a linear or a base-2 logarithmic x axis (write sizes double, so a log
//! axis spaces 4 KiB, 64 KiB and 1 MiB evenly). The y axis starts at zero,
//! so a ratio of heights is a ratio of values.
//!
//! The SVG is plain: no scripts, no external fonts or styles, text escaped,
//! so it renders the same in a browser, an image viewer and GitHub's
//! Markdown. `tests/bench_harness.rs` checks that it is well-formed XML.
//!
//! ```
//! use sockstep::bench::plot::{Chart, Point, Scale, Series};
//! let chart = Chart {
//!     title: "Loopback TCP throughput".into(),
//!     x_label: "write size".into(),
//!     y_label: "Gbit/s".into(),
//!     x_scale: Scale::Log2,
//!     x_ticks: vec![(4096.0, "4 KiB".into()), (65536.0, "64 KiB".into())],
//!     series: vec![Series::new("ours", vec![Point::new(4096.0, 5.0), Point::new(65536.0, 16.0)])],
//! };
//! let svg = chart.svg();
//! assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
//! ```

use std::fmt::Write as _;

/// How the x axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Equal distances for equal differences, from 0.
    Linear,
    /// Equal distances for equal ratios (each doubling the same width).
    Log2,
}

/// One point: a median, and the range of the passes around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Where on the x axis.
    pub x: f64,
    /// The median.
    pub y: f64,
    /// The lowest pass (the bottom of the error bar).
    pub low: f64,
    /// The highest pass (the top of the error bar).
    pub high: f64,
}

impl Point {
    /// A point without an error bar.
    pub fn new(x: f64, y: f64) -> Point {
        Point {
            x,
            y,
            low: y,
            high: y,
        }
    }

    /// A point with an error bar from `low` to `high`.
    pub fn with_range(x: f64, y: f64, low: f64, high: f64) -> Point {
        Point { x, y, low, high }
    }
}

/// A named line of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its points, drawn joined in x order.
    pub points: Vec<Point>,
    /// Drawn dashed (to tell apart two series of one colour).
    pub dashed: bool,
    /// Which of the palette's colours; `None`: the series' place in the chart.
    pub colour: Option<usize>,
}

impl Series {
    /// A series called `name`, drawn solid.
    pub fn new(name: impl Into<String>, points: Vec<Point>) -> Series {
        Series {
            name: name.into(),
            points,
            dashed: false,
            colour: None,
        }
    }

    /// The same series, in palette colour `index` (0 blue, 1 orange, 2 green,
    /// 3 red, 4 purple, 5 brown).
    pub fn colour(mut self, index: usize) -> Series {
        self.colour = Some(index);
        self
    }

    /// The same series, drawn dashed.
    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }
}

/// A line chart; [`Chart::svg`] draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis (say the unit here: the tick labels are bare numbers).
    pub y_label: String,
    /// Linear or logarithmic x.
    pub x_scale: Scale,
    /// Where to put x ticks and what to call them; empty for automatic
    /// ticks (linear) or powers of two (log).
    pub x_ticks: Vec<(f64, String)>,
    /// The lines.
    pub series: Vec<Series>,
}

/// The drawing's size, in SVG user units (pixels).
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
/// The plot area inside it: room for the title and legend above, tick labels
/// and the axis label below and to the left.
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 74.0;
const BOTTOM: f64 = 58.0;

/// One colour per series, distinguishable in print and for most colour-blind
/// readers (the first four of the Tableau 10 palette, in an order that puts
/// blue and orange first).
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let (x_min, x_max) = self.x_range();
        let y_max = nice_ceiling(self.points().map(|p| p.high.max(p.y)).fold(0.0, f64::max) * 1.08);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x_pos = |x: f64| -> f64 {
            let f = match self.x_scale {
                Scale::Linear => (x - x_min) / (x_max - x_min),
                Scale::Log2 => (x.log2() - x_min.log2()) / (x_max.log2() - x_min.log2()),
            };
            LEFT + f * plot_w
        };
        let y_pos = |y: f64| TOP + plot_h - (y / y_max) * plot_h;

        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(s, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(
            s,
            "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>"
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>",
            WIDTH / 2.0,
            escape(&self.title)
        );

        // Grid and y ticks.
        let step = y_max / 5.0;
        for i in 0..=5 {
            let v = step * f64::from(i);
            let y = y_pos(v);
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>",
                LEFT + plot_w
            );
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 8.0,
                y + 4.0,
                escape(&tick_label(v))
            );
        }
        // X ticks.
        for (x, label) in self.ticks(x_min, x_max) {
            let px = x_pos(x);
            let _ = writeln!(
                s,
                "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/>",
                TOP,
                TOP + plot_h
            );
            let _ = writeln!(
                s,
                "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                TOP + plot_h + 18.0,
                escape(&label)
            );
        }
        // Axes.
        let _ = writeln!(
            s,
            "<path d=\"M{LEFT},{TOP} V{:.1} H{:.1}\" fill=\"none\" stroke=\"#333333\"/>",
            TOP + plot_h,
            LEFT + plot_w
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_w / 2.0,
            HEIGHT - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            "<text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">{}</text>",
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );

        // Series: error bars, the line, the points; the legend above the plot.
        let (mut legend_x, mut legend_y) = (LEFT, 44.0);
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[series.colour.unwrap_or(i) % COLOURS.len()];
            let mut points = series.points.clone();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            for p in &points {
                if p.high > p.low {
                    let px = x_pos(p.x);
                    let _ = writeln!(
                        s,
                        "<path d=\"M{:.1},{:.1} H{:.1} M{px:.1},{:.1} V{:.1} M{:.1},{:.1} H{:.1}\" \
                         stroke=\"{colour}\" stroke-width=\"1.2\" fill=\"none\"/>",
                        px - 4.0,
                        y_pos(p.low),
                        px + 4.0,
                        y_pos(p.low),
                        y_pos(p.high),
                        px - 4.0,
                        y_pos(p.high),
                        px + 4.0
                    );
                }
            }
            let path: Vec<String> = points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x_pos(p.x), y_pos(p.y)))
                .collect();
            let dash = if series.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            if path.len() > 1 {
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                    path.join(" ")
                );
            }
            for p in &points {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"/>",
                    x_pos(p.x),
                    y_pos(p.y)
                );
            }
            // The legend runs above the plot, wrapping to a second line.
            let legend_width = 34.0 + 7.0 * series.name.chars().count() as f64;
            if legend_x > LEFT && legend_x + legend_width > WIDTH - RIGHT {
                legend_x = LEFT;
                legend_y += 16.0;
            }
            let _ = writeln!(
                s,
                "<line x1=\"{legend_x:.1}\" y1=\"{legend_y:.1}\" x2=\"{:.1}\" y2=\"{legend_y:.1}\" \
                 stroke=\"{colour}\" stroke-width=\"3\"{dash}/>",
                legend_x + 16.0
            );
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                legend_x + 20.0,
                legend_y + 4.0,
                escape(&series.name)
            );
            legend_x += legend_width;
        }
        s.push_str("</svg>\n");
        s
    }

    fn points(&self) -> impl Iterator<Item = &Point> {
        self.series.iter().flat_map(|s| &s.points)
    }

    /// The x range drawn: the points' (and ticks') range, widened a little on
    /// a log axis so the end points are not on the frame; from 0 on a linear one.
    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .points()
            .map(|p| p.x)
            .chain(self.x_ticks.iter().map(|t| t.0));
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        match self.x_scale {
            Scale::Log2 if lo.is_finite() && lo > 0.0 && hi > lo => (lo / 1.25, hi * 1.25),
            Scale::Log2 if lo.is_finite() && lo > 0.0 => (lo / 2.0, lo * 2.0),
            Scale::Log2 => (1.0, 2.0),
            Scale::Linear if hi.is_finite() && hi > 0.0 => (0.0, hi * 1.04),
            Scale::Linear => (0.0, 1.0),
        }
    }

    fn ticks(&self, lo: f64, hi: f64) -> Vec<(f64, String)> {
        if !self.x_ticks.is_empty() {
            return self.x_ticks.clone();
        }
        match self.x_scale {
            Scale::Log2 => {
                let mut ticks = Vec::new();
                let mut x = 2f64.powi(lo.log2().ceil() as i32);
                while x <= hi {
                    ticks.push((x, tick_label(x)));
                    x *= 2.0;
                }
                ticks
            }
            Scale::Linear => {
                let step = nice_ceiling(hi) / 5.0;
                (0..=5)
                    .map(|i| step * f64::from(i))
                    .filter(|x| *x <= hi)
                    .map(|x| (x, tick_label(x)))
                    .collect()
            }
        }
    }
}

/// The smallest of 1, 2, 2.5, 5 or 10 × a power of ten at or above `v`, so the
/// axis divides into five round steps. 1 for nothing to draw.
fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|c| *c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// A tick value: `0`, `2.5`, `40`, `12,000`.
fn tick_label(v: f64) -> String {
    if v >= 1000.0 {
        crate::readable::grouped(v.round() as u64)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').to_string()
    }
}

/// Text made safe for SVG (XML) content and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(17.3), 20.0);
        assert_eq!(nice_ceiling(21.0), 25.0);
        assert_eq!(nice_ceiling(99.0), 100.0);
        assert_eq!(nice_ceiling(0.034), 0.05);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(65536.0), "65,536");
    }
}

//! Inline SVG charts for the HTML report: a column chart of a time series
//! and horizontal bars of a ranked list. Pure text; no script is needed to
//! show or print them.

use std::fmt::Write as _;

use crate::model::{Count, Point};

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The opening of a chart's SVG, titled `title`, `size` (width, height)
/// wide and high: its y axis from zero to `max` in quarters, each a grid
/// line with its value left of the plot (which starts `left` from the
/// edge and `top` from the top, and is `plot_h` high).
fn open_plot(title: &str, size: (f64, f64), left: f64, top: f64, plot_h: f64, max: f64) -> String {
    let (w, h) = size;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{}">"#,
        escape(title)
    );
    let _ = write!(s, "<title>{}</title>", escape(title));
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            w - 8.0,
            left - 4.0,
            y + 3.0,
            v.round()
        );
    }
    s
}

/// A column per point, the y axis from zero to the largest count.
pub(crate) fn columns(points: &[Point], title: &str) -> String {
    let (w, h, left, bottom, top) = (720.0, 220.0, 56.0, 36.0, 12.0);
    let max = points.iter().map(|p| p.count).max().unwrap_or(0).max(1) as f64;
    let plot_w = w - left - 8.0;
    let plot_h = h - bottom - top;
    let n = points.len().max(1) as f64;
    let step = plot_w / n;
    let bar = (step * 0.8).max(0.5);
    let mut s = open_plot(title, (w, h), left, top, plot_h, max);
    for (i, p) in points.iter().enumerate() {
        let bh = plot_h * p.count as f64 / max;
        let x = left + step * i as f64 + (step - bar) / 2.0;
        let _ = write!(
            s,
            r##"<rect x="{x:.2}" y="{:.2}" width="{bar:.2}" height="{bh:.2}" fill="#2f6db5"><title>{} {}</title></rect>"##,
            top + plot_h - bh,
            escape(&p.start),
            p.count
        );
    }
    let label = |i: usize| points.get(i).map(|p| short(&p.start)).unwrap_or_default();
    if !points.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{left}" y="{:.1}" font-size="10" fill="#555">{}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            h - 12.0,
            escape(&label(0)),
            w - 8.0,
            h - 12.0,
            escape(&label(points.len() - 1))
        );
    }
    s.push_str("</svg>");
    s
}

/// `2026-01-01T05:00:00Z` as `2026-01-01 05:00`.
fn short(t: &str) -> String {
    t.get(..16)
        .map(|x| x.replace('T', " "))
        .unwrap_or_else(|| t.to_string())
}

/// A horizontal bar per item, longest first as given.
pub(crate) fn bars(items: &[Count], title: &str) -> String {
    let row = 18.0;
    let (w, label_w) = (720.0, 240.0);
    let h = row * items.len().max(1) as f64 + 8.0;
    let max = items.iter().map(|c| c.count).max().unwrap_or(0).max(1) as f64;
    let plot_w = w - label_w - 80.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{}">"#,
        escape(title)
    );
    let _ = write!(s, "<title>{}</title>", escape(title));
    for (i, c) in items.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let bw = (plot_w * c.count as f64 / max).max(1.0);
        let name: String = if c.value.chars().count() > 38 {
            c.value.chars().take(37).chain(['…']).collect()
        } else {
            c.value.clone()
        };
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#222">{}</text><rect x="{label_w}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="#2f6db5"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#222">{}</text>"##,
            label_w - 6.0,
            y + 12.0,
            escape(&name),
            y + 2.0,
            row - 5.0,
            label_w + bw + 4.0,
            y + 12.0,
            c.count
        );
    }
    s.push_str("</svg>");
    s
}

/// Colours of the series of a line chart, in order.
const LINE_COLOURS: [&str; 5] = ["#2f6db5", "#2a9d5b", "#d1842b", "#a11", "#7b4fa8"];

/// A line per series over the same x positions, evenly spaced and labelled
/// by `labels` (times); a position without a value is skipped, its line
/// joining the values either side. The y axis runs from zero to the
/// largest value; a legend names each series.
pub(crate) fn lines(labels: &[String], series: &[(&str, Vec<Option<u64>>)], title: &str) -> String {
    let (w, h, left, bottom, top) = (720.0, 240.0, 56.0, 52.0, 12.0);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_w = w - left - 16.0;
    let plot_h = h - bottom - top;
    let n = labels.len();
    let x = |i: usize| {
        if n <= 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: u64| top + plot_h - plot_h * v as f64 / max;
    let mut s = open_plot(title, (w, h), left, top, plot_h, max);
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        if points.len() > 1 {
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.6"/>"#,
                points.join(" ")
            );
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.4" fill="{colour}"><title>{} {}: {v}</title></circle>"#,
                    x(i),
                    y(*v),
                    escape(labels.get(i).map(String::as_str).unwrap_or("")),
                    escape(name)
                );
            }
        }
        let lx = left + 110.0 * k as f64;
        let _ = write!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#222">{}</text>"##,
            h - 14.0,
            lx + 14.0,
            h - 5.0,
            escape(name)
        );
    }
    if let (Some(first), Some(last)) = (labels.first(), labels.last()) {
        let _ = write!(
            s,
            r##"<text x="{left}" y="{:.1}" font-size="10" fill="#555">{}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            h - 26.0,
            escape(&short(first)),
            w - 8.0,
            h - 26.0,
            escape(&short(last))
        );
    }
    s.push_str("</svg>");
    s
}

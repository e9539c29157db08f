//! A hand-written SVG chart: two panels (throughput and p99 latency against clients), both
//! axes logarithmic, one line per system and operation (SET solid, GET dashed), a legend.
//! No fonts are measured: text is placed by fixed offsets, so nothing from the system is needed.

use std::fmt::Write as _;

use crate::report::Report;

const PANEL_W: f64 = 480.0;
const PANEL_H: f64 = 400.0;
const LEGEND_H: f64 = 70.0;
/// Height of one note line below the legend.
const NOTE_H: f64 = 18.0;
const MARGIN_L: f64 = 75.0;
const MARGIN_R: f64 = 20.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 55.0;

/// One line on a panel.
#[derive(Clone, Debug)]
pub struct Series {
    pub system: String,
    pub dashed: bool,
    /// (clients, value); values that are not finite and positive are left out.
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// The colour of a system's lines (stable for the three systems, a palette for others).
fn color(system: &str, index: usize) -> &'static str {
    match system {
        "Flotilla" => "#1f77b4",
        "Redis" => "#d62728",
        "etcd" => "#2ca02c",
        "Flotilla 1 group" => "#17becf",
        "Flotilla 2 groups" => "#ff7f0e",
        "Flotilla 3 groups" => "#bcbd22",
        _ => ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f"][index % 4],
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The two panels for a report: throughput and p99 latency against clients.
pub fn panels(r: &Report) -> [Panel; 2] {
    let mut tput = Vec::new();
    let mut p99 = Vec::new();
    for sys in r.systems.iter().filter(|s| !s.points.is_empty()) {
        for dashed in [false, true] {
            let pick = |p: &crate::report::Point| if dashed { p.get.stats } else { p.set.stats };
            let mk = |f: &dyn Fn(&crate::report::Point) -> f64| Series {
                system: sys.name.clone(),
                dashed,
                points: sys
                    .points
                    .iter()
                    .map(|p| (f64::from(p.clients), f(p)))
                    .collect(),
            };
            tput.push(mk(&|p| pick(p).ops_per_sec));
            p99.push(mk(&|p| pick(p).p99_ms));
        }
    }
    [
        Panel {
            title: "Throughput".into(),
            y_label: "operations per second".into(),
            series: tput,
        },
        Panel {
            title: "p99 latency".into(),
            y_label: "p99 latency (ms)".into(),
            series: p99,
        },
    ]
}

/// A logarithmic axis from `lo` to `hi` (both > 0) onto pixels `a` to `b`.
#[derive(Clone, Copy)]
struct LogAxis {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl LogAxis {
    fn new(values: impl Iterator<Item = f64>, a: f64, b: f64, snap_decades: bool) -> Self {
        let (mut lo, mut hi) = values
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        if lo > hi {
            (lo, hi) = (1.0, 10.0);
        }
        if snap_decades {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
        }
        if hi <= lo {
            (lo, hi) = (lo / 2.0, hi * 2.0);
        }
        Self { lo, hi, a, b }
    }

    fn at(&self, v: f64) -> f64 {
        let t = (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln());
        self.a + t * (self.b - self.a)
    }

    /// Powers of ten within the axis.
    fn decades(&self) -> Vec<f64> {
        let first = self.lo.log10().ceil() as i32;
        let last = self.hi.log10().floor() as i32;
        (first..=last).map(|e| 10f64.powi(e)).collect()
    }
}

fn tick_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// The whole chart as an SVG document.
pub fn render(panels: &[Panel]) -> String {
    render_with_notes(panels, &[])
}

/// The chart with lines of text below the legend (the shard-move times).
pub fn render_with_notes(panels: &[Panel], notes: &[String]) -> String {
    let width = PANEL_W * panels.len() as f64;
    let height = PANEL_H + LEGEND_H + NOTE_H * notes.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, p) in panels.iter().enumerate() {
        panel(&mut s, p, PANEL_W * i as f64);
    }
    if let Some(first) = panels.first() {
        legend(&mut s, &first.series, PANEL_H);
    }
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{MARGIN_L}\" y=\"{:.1}\">{}</text>",
            PANEL_H + LEGEND_H + NOTE_H * i as f64 + 4.0,
            escape(note)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, p: &Panel, x0: f64) {
    let (left, right) = (x0 + MARGIN_L, x0 + PANEL_W - MARGIN_R);
    let (top, bottom) = (MARGIN_T, PANEL_H - MARGIN_B);
    let all = || p.series.iter().flat_map(|se| se.points.iter());
    let xa = LogAxis::new(all().map(|pt| pt.0), left, right, false);
    let ya = LogAxis::new(all().map(|pt| pt.1), bottom, top, true);
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        (left + right) / 2.0,
        escape(&p.title)
    );
    axes(s, &xa, &ya, (left, right, top, bottom), &p.y_label);
    for (i, se) in p.series.iter().enumerate() {
        series(s, se, i, &xa, &ya);
    }
}

fn axes(s: &mut String, xa: &LogAxis, ya: &LogAxis, b: (f64, f64, f64, f64), y_label: &str) {
    let (left, right, top, bottom) = b;
    for v in ya.decades() {
        let y = ya.at(v);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 4.0,
            tick_label(v)
        );
    }
    let mut c = xa.lo;
    while c <= xa.hi * 1.0001 {
        let x = xa.at(c);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 16.0,
            tick_label(c)
        );
        c *= 2.0;
    }
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">clients (log scale)</text>\n\
         <text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{} (log scale)</text>",
        right - left,
        bottom - top,
        (left + right) / 2.0,
        bottom + 36.0,
        left - 55.0,
        (top + bottom) / 2.0,
        escape(y_label)
    );
}

fn series(s: &mut String, se: &Series, i: usize, xa: &LogAxis, ya: &LogAxis) {
    let pts: Vec<(f64, f64)> = se
        .points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0 && *y > 0.0)
        .map(|&(x, y)| (xa.at(x), ya.at(y)))
        .collect();
    let col = color(&se.system, i / 2);
    let dash = if se.dashed {
        " stroke-dasharray=\"6,4\""
    } else {
        ""
    };
    let list: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"{dash}/>",
        list.join(" ")
    );
    for (x, y) in pts {
        let _ = writeln!(
            s,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{col}\"/>"
        );
    }
}

fn legend(s: &mut String, series: &[Series], y0: f64) {
    let mut systems: Vec<&str> = Vec::new();
    for se in series {
        if !systems.contains(&se.system.as_str()) {
            systems.push(&se.system);
        }
    }
    let y = y0 + 20.0;
    let mut x = MARGIN_L;
    for (i, name) in systems.iter().enumerate() {
        let col = color(name, i);
        let _ = writeln!(
            s,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{col}\" stroke-width=\"4\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            x + 24.0,
            x + 30.0,
            y + 4.0,
            escape(name)
        );
        x += 130.0;
    }
    let y2 = y + 24.0;
    let _ = writeln!(
        s,
        "<line x1=\"{MARGIN_L}\" y1=\"{y2}\" x2=\"{}\" y2=\"{y2}\" stroke=\"#333\" stroke-width=\"2\"/>\
         <text x=\"{}\" y=\"{}\">SET (etcd: put)</text>\n\
         <line x1=\"{}\" y1=\"{y2}\" x2=\"{}\" y2=\"{y2}\" stroke=\"#333\" stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\
         <text x=\"{}\" y=\"{}\">GET (etcd: get)</text>",
        MARGIN_L + 24.0,
        MARGIN_L + 30.0,
        y2 + 4.0,
        MARGIN_L + 260.0,
        MARGIN_L + 284.0,
        MARGIN_L + 290.0,
        y2 + 4.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    fn numbers_in(svg: &str) -> Vec<f64> {
        let mut out = Vec::new();
        // Each with the space before it, so that `font-family="` is not taken for `y="`.
        for attr in [
            " points=\"",
            " cx=\"",
            " cy=\"",
            " x1=\"",
            " y1=\"",
            " x=\"",
            " y=\"",
        ] {
            for part in svg.split(attr).skip(1) {
                let value = part.split('"').next().unwrap();
                for n in value.split([',', ' ']).filter(|n| !n.is_empty()) {
                    out.push(n.parse::<f64>().unwrap_or(f64::NAN));
                }
            }
        }
        out
    }

    #[test]
    fn chart_is_well_formed_with_a_polyline_per_series() {
        let svg = render(&panels(&sample_report()));
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        // 3 systems × (SET, GET) × 2 panels.
        assert_eq!(svg.matches("<polyline").count(), 12);
        assert_eq!(svg.matches("stroke-dasharray").count(), 6 + 1);
        let nums = numbers_in(&svg);
        assert!(nums.len() > 100);
        assert!(
            nums.iter().all(|n| n.is_finite()),
            "non-finite number in the SVG"
        );
        for label in [
            "Flotilla",
            "Redis",
            "etcd",
            "Throughput",
            "p99 latency (ms)",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
    }

    #[test]
    fn sharded_systems_have_their_own_colours_and_the_move_note_is_drawn() {
        let r = crate::report::tests::sharded_report();
        let note = crate::report::move_line(r.shard_move.as_ref());
        let svg = render_with_notes(&panels(&r), std::slice::from_ref(&note));
        // 6 systems × (SET, GET) × 2 panels.
        assert_eq!(svg.matches("<polyline").count(), 24);
        for (name, col) in [
            ("Flotilla 1 group", "#17becf"),
            ("Flotilla 2 groups", "#ff7f0e"),
            ("Flotilla 3 groups", "#bcbd22"),
        ] {
            assert!(svg.contains(name), "{name} missing");
            assert!(svg.contains(&format!("stroke=\"{col}\"")), "{col} missing");
        }
        assert!(svg.contains("median 0.50 s"), "move note missing");
        assert!(svg.contains("height=\"488\""), "room for the note");
        assert!(numbers_in(&svg).iter().all(|n| n.is_finite()));
    }

    #[test]
    fn bad_values_are_left_out_and_labels_escaped() {
        let panel = Panel {
            title: "a<b & c".into(),
            y_label: "y".into(),
            series: vec![Series {
                system: "x".into(),
                dashed: false,
                points: vec![(1.0, f64::NAN), (16.0, 0.0), (64.0, 5.0)],
            }],
        };
        let svg = render(&[panel]);
        assert!(svg.contains("a&lt;b &amp; c"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(numbers_in(&svg).iter().all(|n| n.is_finite()));
    }

    #[test]
    fn log_axis_maps_ends_and_decades() {
        let ax = LogAxis::new([3.0, 700.0].into_iter(), 100.0, 0.0, true);
        assert_eq!((ax.lo, ax.hi), (1.0, 1000.0));
        assert_eq!(ax.at(1.0), 100.0);
        assert!((ax.at(1000.0) - 0.0).abs() < 1e-9);
        assert_eq!(ax.decades(), vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(tick_label(10000.0), "10k");
        assert_eq!(tick_label(0.1), "0.1");
    }
}

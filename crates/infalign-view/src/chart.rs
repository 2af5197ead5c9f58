//! SVG charts: lines (the theory engine's curves) and measured points with error bars, drawn
//! without a plotting library (the charts are simple and the files stay small and diffable).
//!
//! The same renderer draws the CLI's plot files and the browser lab's live charts, so both look
//! alike. Lines and markers carry `data-series` (a [`Series::key`]) and markers `data-x` /
//! `data-y` (their values), which the browser tests read.

use std::fmt::Write as _;

use infalign_core::theory;
use infalign_core::{Error, Result};
use infalign_core::{Procedure, Transform};

/// The x axis of every win-rate-against-KL plot.
pub const KL_AXIS: &str = "KL(π ‖ π_ref) (nats)";

/// The palette, in the order series usually take it.
pub const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// One line, or a set of measured points with vertical error bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` in data units; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// Stroke (and marker) colour.
    pub color: &'static str,
    /// Dashed line.
    pub dashed: bool,
    /// `Some((lower, upper))` per point: draw markers with error bars and no line.
    pub error_bars: Option<Vec<(f64, f64)>>,
    /// A stable name for the series, written as `data-series` (empty: none).
    pub key: String,
    /// Whether the series has a legend entry.
    pub legend: bool,
}

impl Series {
    /// A solid or dashed line through `points`.
    pub fn line(label: String, points: Vec<(f64, f64)>, color: &'static str, dashed: bool) -> Self {
        Self {
            label,
            points,
            color,
            dashed,
            error_bars: None,
            key: String::new(),
            legend: true,
        }
    }

    /// Measured points `(x, y)` with intervals `(lower, upper)` on y.
    pub fn measured(
        label: String,
        points: Vec<(f64, f64)>,
        intervals: Vec<(f64, f64)>,
        color: &'static str,
    ) -> Self {
        Self {
            label,
            points,
            color,
            dashed: false,
            error_bars: Some(intervals),
            key: String::new(),
            legend: true,
        }
    }

    /// Markers at `points` (no line, no error bars, no legend entry).
    pub fn markers(points: Vec<(f64, f64)>, color: &'static str) -> Self {
        let intervals = points.iter().map(|&(_, y)| (y, y)).collect();
        Self {
            legend: false,
            ..Self::measured(String::new(), points, intervals, color)
        }
    }

    /// Sets the `data-series` name.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }
}

/// One plot: axes, ticks, a title and its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// A name unique within the page or file (the clip path's id); also written as `data-chart`.
    pub id: String,
    /// Title above the plot.
    pub title: String,
    /// x axis label.
    pub x_label: String,
    /// y axis label.
    pub y_label: String,
    /// Shown x range (data outside is clipped).
    pub x_range: (f64, f64),
    /// Shown y range.
    pub y_range: (f64, f64),
    /// Lines and markers, drawn in order.
    pub series: Vec<Series>,
    /// Legend in a column right of the plot instead of inside its lower right corner.
    pub legend_outside: bool,
}

const PLOT_WIDTH: f64 = 560.0;
const LEGEND_WIDTH: f64 = 230.0;

impl Chart {
    fn width(&self) -> f64 {
        PLOT_WIDTH
            + if self.legend_outside {
                LEGEND_WIDTH
            } else {
                0.0
            }
    }
}

/// Win-rate-versus-KL curves of one transform under BoN_N and WoN_N, from one lambda sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct WinRateCurves {
    /// `(KL, BoN_N win rate)`, from `(0, 0.5)` in increasing KL.
    pub bon: Vec<(f64, f64)>,
    /// `(KL, WoN_N win rate)`, same KLs.
    pub won: Vec<(f64, f64)>,
}

impl WinRateCurves {
    /// The curve of `procedure`.
    pub fn for_procedure(&self, procedure: Procedure) -> &[(f64, f64)] {
        match procedure {
            Procedure::BestOfN => &self.bon,
            Procedure::WorstOfN => &self.won,
        }
    }
}

/// Win-rate-versus-KL curves of a transform: a sweep of `points` lambdas, log-spaced up to the
/// lambda of `max_kl`.
pub fn win_rate_curves(
    transform: &Transform,
    n: u32,
    max_kl: f64,
    points: usize,
) -> Result<WinRateCurves> {
    let lambda_max = match theory::lambda_for_kl(transform, max_kl) {
        Ok(lambda) => lambda,
        // A bounded transform with a large t (normnegexp:70, say) is nearly flat at the top, so
        // no lambda in the engine's range reaches the plot's largest KL: draw the curve as far as
        // it goes, up to the largest lambda the engine guarantees.
        Err(Error::KlBudgetUnreachable { .. }) => PLOT_LAMBDA_LIMIT,
        Err(error) => return Err(error),
    };
    let lambdas = theory::log_spaced(lambda_max * 1e-3, lambda_max, points)?;
    let mut curves = WinRateCurves {
        bon: vec![(0.0, 0.5)],
        won: vec![(0.0, 0.5)],
    };
    for evaluation in theory::win_rate_curve(transform, n, &lambdas)? {
        if evaluation.kl <= max_kl * (1.0 + 1e-9) {
            curves.bon.push((evaluation.kl, evaluation.win_rate.bon));
            curves.won.push((evaluation.kl, evaluation.win_rate.won));
        }
    }
    Ok(curves)
}

/// The win-rate-versus-KL curve of a transform under one procedure (60 lambdas).
pub fn transform_curve(
    transform: &Transform,
    procedure: Procedure,
    n: u32,
    max_kl: f64,
) -> Result<Vec<(f64, f64)>> {
    let curves = win_rate_curves(transform, n, max_kl, 60)?;
    Ok(match procedure {
        Procedure::BestOfN => curves.bon,
        Procedure::WorstOfN => curves.won,
    })
}

/// The largest lambda a plotted curve goes to when its transform cannot reach the plot's KL range
/// (the theory engine is documented stable up to lambda = 1e4).
const PLOT_LAMBDA_LIMIT: f64 = 1e4;

fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= target as f64 + 0.5)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders `charts` side by side as one SVG document.
pub fn render_svg(charts: &[Chart]) -> String {
    let height = 420.0;
    let total_width: f64 = charts.iter().map(Chart::width).sum();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{height}" viewBox="0 0 {total_width} {height}" font-family="sans-serif" font-size="14" role="img">"#
    );
    // What a screen reader says for the figure: the titles, then the axes and what is drawn.
    let titles: Vec<String> = charts.iter().map(|c| escape(&c.title)).collect();
    let _ = writeln!(svg, "<title>{}</title>", titles.join("; "));
    let described: Vec<String> = charts
        .iter()
        .map(|c| {
            let named: Vec<String> = c
                .series
                .iter()
                .filter(|s| s.legend && !s.label.is_empty())
                .map(|s| escape(&s.label))
                .collect();
            format!(
                "{} against {}: {}",
                escape(&c.y_label),
                escape(&c.x_label),
                named.join(", ")
            )
        })
        .collect();
    let _ = writeln!(svg, "<desc>{}</desc>", described.join("; "));
    let _ = writeln!(
        svg,
        r#"<rect width="{total_width}" height="{height}" fill="white"/>"#
    );
    let mut offset = 0.0;
    for chart in charts {
        let (left, right, top, bottom) = (
            offset + 60.0,
            offset + PLOT_WIDTH - 20.0,
            40.0,
            height - 50.0,
        );
        let (x0, x1) = chart.x_range;
        let (y0, y1) = chart.y_range;
        let sx = |x: f64| left + (x - x0) / (x1 - x0) * (right - left);
        let sy = |y: f64| bottom - (y - y0) / (y1 - y0) * (bottom - top);
        let id = escape(&chart.id);
        let _ = writeln!(svg, r#"<g data-chart="{id}">"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="16">{}</text>"#,
            (left + right) / 2.0,
            escape(&chart.title)
        );
        for tick in nice_ticks(x0, x1, 6) {
            let x = sx(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#e6e6e6"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                bottom + 16.0,
                trim_number(tick)
            );
        }
        for tick in nice_ticks(y0, y1, 6) {
            let y = sy(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e6e6e6"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                left - 6.0,
                y + 4.0,
                trim_number(tick)
            );
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="black"/>"#,
            right - left,
            bottom - top
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (left + right) / 2.0,
            height - 14.0,
            escape(&chart.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
            offset + 16.0,
            (top + bottom) / 2.0,
            offset + 16.0,
            (top + bottom) / 2.0,
            escape(&chart.y_label)
        );
        let _ = writeln!(
            svg,
            r#"<clipPath id="clip-{id}"><rect x="{left}" y="{top}" width="{}" height="{}"/></clipPath>"#,
            right - left,
            bottom - top
        );
        let mut legend_row = 0usize;
        let legend_rows = chart.series.iter().filter(|s| s.legend).count();
        for series in &chart.series {
            let key = if series.key.is_empty() {
                String::new()
            } else {
                format!(r#" data-series="{}""#, escape(&series.key))
            };
            let mut path = String::new();
            for &(x, y) in series
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
            {
                let _ = write!(path, "{:.1},{:.1} ", sx(x), sy(y));
            }
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            match &series.error_bars {
                None => {
                    let _ = writeln!(
                        svg,
                        r#"<polyline{key} points="{}" fill="none" stroke="{}" stroke-width="1.8"{dash} clip-path="url(#clip-{id})"/>"#,
                        path.trim_end(),
                        series.color
                    );
                }
                Some(intervals) => {
                    for (&(x, y), &(lower, upper)) in series.points.iter().zip(intervals) {
                        if !(x.is_finite() && y.is_finite()) {
                            continue;
                        }
                        let (cx, cy) = (sx(x), sy(y));
                        let _ = writeln!(
                            svg,
                            r#"<g{key} data-x="{x}" data-y="{y}" stroke="{color}" clip-path="url(#clip-{id})"><line x1="{cx:.2}" y1="{:.2}" x2="{cx:.2}" y2="{:.2}" stroke-width="1.4"/><circle cx="{cx:.2}" cy="{cy:.2}" r="3.5" fill="{color}"/></g>"#,
                            sy(lower),
                            sy(upper),
                            color = series.color
                        );
                    }
                }
            }
            if !series.legend {
                continue;
            }
            let i = legend_row;
            legend_row += 1;
            let (legend_x, legend_y) = if chart.legend_outside {
                (right + 200.0, top + 10.0 + 18.0 * i as f64)
            } else {
                (right, bottom - 12.0 - 16.0 * (legend_rows - 1 - i) as f64)
            };
            let dash_legend = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<line x1="{}" y1="{legend_y:.1}" x2="{}" y2="{legend_y:.1}" stroke="{}" stroke-width="1.8"{dash_legend}/><text x="{}" y="{:.1}">{}</text>"#,
                legend_x - 190.0,
                legend_x - 166.0,
                series.color,
                legend_x - 160.0,
                legend_y + 4.0,
                escape(&series.label)
            );
        }
        svg.push_str("</g>\n");
        offset += chart.width();
    }
    svg.push_str("</svg>\n");
    svg
}

fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

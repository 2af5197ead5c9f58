//! Composite Gauss-Legendre quadrature on adaptively refined panels of [0, 1].
//!
//! Every panel carries [`ORDER`] Gauss-Legendre nodes. On a panel a smooth function is represented
//! by its values at the nodes (equivalently, its degree-(ORDER-1) Legendre interpolant), which gives
//! three spectrally accurate operations used by the theory engine:
//!
//! - the integral over the panel (the Gauss-Legendre rule),
//! - cumulative integrals from the panel's left end to every node (a fixed ORDER x ORDER matrix),
//!   which is how CDFs and the optimal transform are built,
//! - an error indicator: the size of the two highest Legendre coefficients. When they are not
//!   negligible, the panel does not resolve the function and is split in two.
//!
//! Each node stores both u and w = 1 - u, each computed without cancellation, so densities that
//! are concentrated near u = 1 (large lambda) keep full relative precision in w.

// Node-wise loops over several parallel arrays read best with an index.
#![allow(clippy::needless_range_loop)]

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// x^n by binary exponentiation (inlined; `f64::powi` is a library call).
#[inline(always)]
pub(crate) fn power(mut x: f64, mut n: u32) -> f64 {
    let mut result = 1.0;
    while n > 0 {
        if n & 1 == 1 {
            result *= x;
        }
        x *= x;
        n >>= 1;
    }
    result
}

/// Gauss-Legendre nodes per panel.
pub(crate) const ORDER: usize = 16;

/// Panels deeper than this (width 2^-DEPTH of the starting panel) are never split.
const MAX_DEPTH: u32 = 60;

/// A refinement never grows the grid beyond this many panels.
pub(crate) const MAX_PANELS: usize = 3000;

/// A Gauss-Legendre rule on [-1, 1] with its derived matrices.
pub(crate) struct Rule {
    /// Nodes, ascending.
    pub x: [f64; ORDER],
    /// Weights (sum 2).
    pub w: [f64; ORDER],
    /// `cumulative[i][j]` = integral from -1 to x_i of the j-th Lagrange basis polynomial.
    pub cumulative: [[f64; ORDER]; ORDER],
    /// Rows mapping nodal values to the Legendre coefficients of degree ORDER-1 and ORDER-2.
    pub tail: [[f64; ORDER]; 2],
    /// Barycentric weights (second form) for interpolation at arbitrary points.
    pub bary: [f64; ORDER],
    /// `legendre[k][j]` = P_k(x_j), k = 0..ORDER-1.
    pub legendre: [[f64; ORDER]; ORDER],
}

/// P_0(x) .. P_{out.len()-1}(x) by the three-term recurrence.
fn legendre_values(x: f64, out: &mut [f64]) {
    if out.is_empty() {
        return;
    }
    out[0] = 1.0;
    if out.len() > 1 {
        out[1] = x;
    }
    for k in 2..out.len() {
        let kf = k as f64;
        out[k] = ((2.0 * kf - 1.0) * x * out[k - 1] - (kf - 1.0) * out[k - 2]) / kf;
    }
}

fn build_rule() -> Rule {
    let n = ORDER;
    let mut x = [0.0; ORDER];
    let mut w = [0.0; ORDER];
    let mut p = [0.0; ORDER + 2];
    for i in 0..n {
        // Descending initial guesses; Newton on P_n.
        let mut xi = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        for _ in 0..100 {
            legendre_values(xi, &mut p[..n + 1]);
            let derivative = n as f64 * (xi * p[n] - p[n - 1]) / (xi * xi - 1.0);
            let step = p[n] / derivative;
            xi -= step;
            if step.abs() < 1e-17 {
                break;
            }
        }
        legendre_values(xi, &mut p[..n + 1]);
        let derivative = n as f64 * (xi * p[n] - p[n - 1]) / (xi * xi - 1.0);
        // Store ascending.
        x[n - 1 - i] = xi;
        w[n - 1 - i] = 2.0 / ((1.0 - xi * xi) * derivative * derivative);
    }

    let mut legendre = [[0.0; ORDER]; ORDER];
    for (j, &xj) in x.iter().enumerate() {
        legendre_values(xj, &mut p[..n]);
        for k in 0..n {
            legendre[k][j] = p[k];
        }
    }

    let mut cumulative = [[0.0; ORDER]; ORDER];
    for (i, &xi) in x.iter().enumerate() {
        let row = cumulative_row_with(xi, &w, &legendre);
        cumulative[i] = row;
    }

    let mut tail = [[0.0; ORDER]; 2];
    for (slot, k) in [n - 1, n - 2].into_iter().enumerate() {
        for j in 0..n {
            tail[slot][j] = (2.0 * k as f64 + 1.0) / 2.0 * w[j] * legendre[k][j];
        }
    }

    let mut bary = [0.0; ORDER];
    for j in 0..n {
        let mut product = 1.0;
        for k in 0..n {
            if k != j {
                product *= x[j] - x[k];
            }
        }
        bary[j] = 1.0 / product;
    }
    let scale = bary.iter().fold(0.0f64, |m, b| m.max(b.abs()));
    for b in &mut bary {
        *b /= scale;
    }

    Rule {
        x,
        w,
        cumulative,
        tail,
        bary,
        legendre,
    }
}

/// Row r with r_j = integral from -1 to `x` of the j-th Lagrange basis polynomial.
fn cumulative_row_with(x: f64, w: &[f64; ORDER], legendre: &[[f64; ORDER]; ORDER]) -> [f64; ORDER] {
    // l_j = sum_k (2k+1)/2 w_j P_k(x_j) P_k, and (2k+1)/2 * int_{-1}^x P_k = (P_{k+1} - P_{k-1})/2.
    let mut p = [0.0; ORDER + 1];
    legendre_values(x, &mut p);
    let mut row = [0.0; ORDER];
    for j in 0..ORDER {
        let mut sum = 0.5 * (x + 1.0);
        for k in 1..ORDER {
            sum += 0.5 * legendre[k][j] * (p[k + 1] - p[k - 1]);
        }
        row[j] = w[j] * sum;
    }
    row
}

/// The shared rule (built once).
pub(crate) fn rule() -> &'static Rule {
    static RULE: OnceLock<Rule> = OnceLock::new();
    RULE.get_or_init(build_rule)
}

impl Rule {
    /// Integral over [-1, 1] of the interpolant of `f`.
    #[inline]
    pub fn integrate(&self, f: &[f64; ORDER]) -> f64 {
        let mut sum = 0.0;
        for j in 0..ORDER {
            sum += self.w[j] * f[j];
        }
        sum
    }

    /// Size of the two highest Legendre coefficients of the interpolant of `f`.
    #[inline]
    pub fn tail_size(&self, f: &[f64; ORDER]) -> f64 {
        let mut c0 = 0.0;
        let mut c1 = 0.0;
        for j in 0..ORDER {
            c0 += self.tail[0][j] * f[j];
            c1 += self.tail[1][j] * f[j];
        }
        c0.abs() + c1.abs()
    }

    /// Cumulative integrals from -1 to every node of the interpolant of `f`.
    #[inline]
    pub fn cumulate(&self, f: &[f64; ORDER], out: &mut [f64; ORDER]) {
        for (i, slot) in out.iter_mut().enumerate() {
            let row = &self.cumulative[i];
            let mut sum = 0.0;
            for j in 0..ORDER {
                sum += row[j] * f[j];
            }
            *slot = sum;
        }
    }

    /// Integral from -1 to `x` of the interpolant of `f`.
    pub fn cumulate_to(&self, x: f64, f: &[f64; ORDER]) -> f64 {
        let row = cumulative_row_with(x, &self.w, &self.legendre);
        row.iter().zip(f).map(|(r, v)| r * v).sum()
    }

    /// The interpolant of `f` at `x` in [-1, 1] (barycentric formula).
    pub fn interpolate(&self, x: f64, f: &[f64; ORDER]) -> f64 {
        let mut numerator = 0.0;
        let mut denominator = 0.0;
        for j in 0..ORDER {
            let difference = x - self.x[j];
            if difference == 0.0 {
                return f[j];
            }
            let weight = self.bary[j] / difference;
            numerator += weight * f[j];
            denominator += weight;
        }
        numerator / denominator
    }
}

/// One panel [a, b] of a grid with the log-density and density at its nodes.
///
/// Panels in the right half of [0, 1] are laid out in w = 1 - u (their `wa`, `wb` are exact and
/// `a`, `b` are rounded), panels in the left half in u, so both coordinates stay accurate.
#[derive(Clone, Debug)]
pub(crate) struct Panel {
    pub a: f64,
    pub b: f64,
    /// 1 - a.
    pub wa: f64,
    /// 1 - b.
    pub wb: f64,
    pub depth: u32,
    pub u: [f64; ORDER],
    /// 1 - u at the nodes, without cancellation.
    pub w: [f64; ORDER],
    /// Log of the unnormalised density at the nodes (<= 0 up to rounding).
    pub psi: [f64; ORDER],
    /// Unnormalised density exp(psi) at the nodes.
    pub g: [f64; ORDER],
}

impl Panel {
    /// The panel [1 - wa, 1 - wb] (laid out in w) with the density evaluated by `psi(u, w)`.
    pub fn from_w(wa: f64, wb: f64, depth: u32, psi: &mut dyn FnMut(f64, f64) -> f64) -> Panel {
        Panel::build(1.0 - wa, 1.0 - wb, wa, wb, depth, psi)
    }

    /// The panel [a, b] (laid out in u) with the density evaluated by `psi(u, w)`.
    pub fn from_u(a: f64, b: f64, depth: u32, psi: &mut dyn FnMut(f64, f64) -> f64) -> Panel {
        Panel::build(a, b, 1.0 - a, 1.0 - b, depth, psi)
    }

    /// Whether the panel is laid out in w (right half of [0, 1]).
    #[inline]
    fn in_w(a: f64) -> bool {
        a >= 0.5
    }

    fn build(
        a: f64,
        b: f64,
        wa: f64,
        wb: f64,
        depth: u32,
        psi: &mut dyn FnMut(f64, f64) -> f64,
    ) -> Panel {
        let mut panel = Panel {
            a,
            b,
            wa,
            wb,
            depth,
            u: [0.0; ORDER],
            w: [0.0; ORDER],
            psi: [0.0; ORDER],
            g: [0.0; ORDER],
        };
        panel.layout();
        panel.reevaluate(psi);
        panel
    }

    fn layout(&mut self) {
        let rule = rule();
        let half = self.half_width();
        for j in 0..ORDER {
            if Panel::in_w(self.a) {
                let w = self.wb + half * (1.0 - rule.x[j]);
                self.w[j] = w;
                self.u[j] = 1.0 - w;
            } else {
                let u = self.a + half * (1.0 + rule.x[j]);
                self.u[j] = u;
                self.w[j] = 1.0 - u;
            }
        }
    }

    /// Re-evaluates the density on the same nodes.
    pub fn reevaluate(&mut self, psi: &mut dyn FnMut(f64, f64) -> f64) {
        for j in 0..ORDER {
            let value = psi(self.u[j], self.w[j]);
            self.psi[j] = value;
            self.g[j] = value.exp();
        }
    }

    #[inline]
    pub fn half_width(&self) -> f64 {
        if Panel::in_w(self.a) {
            0.5 * (self.wa - self.wb)
        } else {
            0.5 * (self.b - self.a)
        }
    }

    /// Maps u in the panel to x in [-1, 1].
    pub fn local_x(&self, u: f64) -> f64 {
        let half = self.half_width();
        if half <= 0.0 {
            return 0.0;
        }
        let x = if Panel::in_w(self.a) {
            1.0 - ((1.0 - u) - self.wb) / half
        } else {
            (u - self.a) / half - 1.0
        };
        x.clamp(-1.0, 1.0)
    }

    /// Integral of the unnormalised density over the panel.
    #[inline]
    pub fn mass(&self) -> f64 {
        self.half_width() * rule().integrate(&self.g)
    }

    /// Whether halving is still meaningful in f64.
    pub fn can_split(&self) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        if Panel::in_w(self.a) {
            let mid = 0.5 * (self.wa + self.wb);
            mid > self.wb && mid < self.wa
        } else {
            let mid = 0.5 * (self.a + self.b);
            mid > self.a && mid < self.b
        }
    }

    /// The two halves, evaluated.
    pub fn split(&self, psi: &mut dyn FnMut(f64, f64) -> f64) -> (Panel, Panel) {
        if Panel::in_w(self.a) {
            let w_mid = 0.5 * (self.wa + self.wb);
            (
                Panel::from_w(self.wa, w_mid, self.depth + 1, psi),
                Panel::from_w(w_mid, self.wb, self.depth + 1, psi),
            )
        } else {
            let mid = 0.5 * (self.a + self.b);
            let left = Panel::from_u(self.a, mid, self.depth + 1, psi);
            // A right half that starts at or beyond 0.5 is laid out in w.
            let right = if Panel::in_w(mid) {
                Panel::from_w(1.0 - mid, self.wb, self.depth + 1, psi)
            } else {
                Panel::from_u(mid, self.b, self.depth + 1, psi)
            };
            (left, right)
        }
    }

    /// Error indicator for the density (and for psi times the density, which the KL integrates).
    fn density_error(&self) -> f64 {
        let rule = rule();
        let mut g_psi = [0.0; ORDER];
        for j in 0..ORDER {
            g_psi[j] = if self.g[j] == 0.0 {
                0.0
            } else {
                self.g[j] * self.psi[j]
            };
        }
        self.half_width() * rule.tail_size(&self.g).max(rule.tail_size(&g_psi))
    }

    /// CDF at the nodes, given the CDF at `a` and the total mass `z`.
    pub fn cdf_nodes(&self, cdf_at_a: f64, z: f64, out: &mut [f64; ORDER]) {
        rule().cumulate(&self.g, out);
        let scale = self.half_width() / z;
        for value in out.iter_mut() {
            *value = (cdf_at_a + scale * *value).clamp(0.0, 1.0);
        }
    }
}

/// `count` equal panels covering [1 - w_start, 1 - w_end] (w_start > w_end >= 0), with the
/// breakpoints computed in w so that they are exact next to u = 1.
pub(crate) fn panels_between(
    w_start: f64,
    w_end: f64,
    count: usize,
    psi: &mut dyn FnMut(f64, f64) -> f64,
) -> Vec<Panel> {
    let mut panels = Vec::with_capacity(count);
    let width = w_start - w_end;
    for i in 0..count {
        let wa = if i == 0 {
            w_start
        } else {
            w_start - width * (i as f64 / count as f64)
        };
        let wb = if i + 1 == count {
            w_end
        } else {
            w_start - width * ((i + 1) as f64 / count as f64)
        };
        let a = 1.0 - wa;
        if Panel::in_w(a) {
            panels.push(Panel::from_w(wa, wb, 0, psi));
        } else {
            panels.push(Panel::from_u(a, 1.0 - wb, 0, psi));
        }
    }
    panels
}

/// Splits panels until the density (and psi times it) is resolved to `tolerance` relative to the
/// total mass.
pub(crate) fn refine_density(
    mut panels: Vec<Panel>,
    tolerance: f64,
    psi: &mut dyn FnMut(f64, f64) -> f64,
) -> Vec<Panel> {
    loop {
        let total: f64 = panels.iter().map(Panel::mass).sum();
        let threshold = tolerance * total;
        let mut next = Vec::with_capacity(panels.len() + 8);
        let mut split_any = false;
        let mut budget = MAX_PANELS.saturating_sub(panels.len());
        for panel in panels {
            if budget > 0 && panel.can_split() && panel.density_error() > threshold {
                let (left, right) = panel.split(psi);
                next.push(left);
                next.push(right);
                split_any = true;
                budget -= 1;
            } else {
                next.push(panel);
            }
        }
        panels = next;
        if !split_any {
            return panels;
        }
    }
}

/// Which order-statistic integrands a grid must resolve.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrderStatistics {
    pub n: u32,
    pub best: bool,
    pub worst: bool,
}

/// Splits panels until F^N u^(N-1) (best) and (1-F)^N (1-u)^(N-1) (worst) are resolved to an
/// absolute `tolerance`, with F the CDF of the panels' density of total mass `z`.
pub(crate) fn refine_order_statistics(
    panels: Vec<Panel>,
    z: f64,
    stats: OrderStatistics,
    tolerance: f64,
    psi: &mut dyn FnMut(f64, f64) -> f64,
) -> Vec<Panel> {
    if stats.n <= 1 || !(stats.best || stats.worst) {
        return panels;
    }
    let mut out = Vec::with_capacity(panels.len() + 8);
    let mut cdf = 0.0;
    let mut budget = MAX_PANELS.saturating_sub(panels.len());
    for panel in panels {
        let mass = panel.mass();
        refine_panel_order(panel, cdf, z, stats, tolerance, psi, &mut budget, &mut out);
        cdf += mass / z;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn refine_panel_order(
    panel: Panel,
    cdf_at_a: f64,
    z: f64,
    stats: OrderStatistics,
    tolerance: f64,
    psi: &mut dyn FnMut(f64, f64) -> f64,
    budget: &mut usize,
    out: &mut Vec<Panel>,
) {
    let rule = rule();
    let mut cdf = [0.0; ORDER];
    panel.cdf_nodes(cdf_at_a, z, &mut cdf);
    let n = stats.n;
    let mut error = 0.0f64;
    if stats.best {
        let mut f = [0.0; ORDER];
        for j in 0..ORDER {
            f[j] = power(cdf[j], n) * power(panel.u[j], n - 1);
        }
        error = error.max(rule.tail_size(&f));
    }
    if stats.worst {
        let mut f = [0.0; ORDER];
        for j in 0..ORDER {
            f[j] = power(1.0 - cdf[j], n) * power(panel.w[j], n - 1);
        }
        error = error.max(rule.tail_size(&f));
    }
    error *= panel.half_width() * stats.n as f64;
    if error > tolerance && *budget > 0 && panel.can_split() {
        *budget -= 1;
        let (left, right) = panel.split(psi);
        let left_mass = left.mass();
        refine_panel_order(left, cdf_at_a, z, stats, tolerance, psi, budget, out);
        refine_panel_order(
            right,
            cdf_at_a + left_mass / z,
            z,
            stats,
            tolerance,
            psi,
            budget,
            out,
        );
    } else {
        out.push(panel);
    }
}

/// Integrals of a density given on panels: the normaliser and the CDF at every node.
pub(crate) struct Integrated {
    /// Total unnormalised mass.
    pub z: f64,
    /// CDF at the nodes, per panel.
    pub cdf: Vec<[f64; ORDER]>,
    /// CDF at each panel's left end.
    pub cdf_start: Vec<f64>,
}

pub(crate) fn integrate(panels: &[Panel]) -> Integrated {
    let z: f64 = panels.iter().map(Panel::mass).sum();
    let mut cdf = Vec::with_capacity(panels.len());
    let mut cdf_start = Vec::with_capacity(panels.len());
    let mut running = 0.0;
    for panel in panels {
        let mut nodes = [0.0; ORDER];
        panel.cdf_nodes(running, z, &mut nodes);
        cdf.push(nodes);
        cdf_start.push(running);
        running += panel.mass() / z;
    }
    Integrated { z, cdf, cdf_start }
}

/// Index of the panel containing `u` (clamped to the first or last panel).
pub(crate) fn locate(breaks_left: impl Fn(usize) -> f64, count: usize, u: f64) -> usize {
    // Largest i with left(i) <= u.
    let mut lo = 0usize;
    let mut hi = count;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if breaks_left(mid) <= u {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A function given by its values at the Gauss-Legendre nodes of contiguous panels, interpolated
/// by the panel's Legendre polynomial.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PiecewiseNodal {
    /// Panel boundaries, ascending, first 0 and last 1.
    pub breaks: Vec<f64>,
    /// ORDER values per panel.
    pub values: Vec<f64>,
}

impl PiecewiseNodal {
    pub fn panel_count(&self) -> usize {
        self.breaks.len().saturating_sub(1)
    }

    /// Checks a table read from outside (a bundle, a worker's message): panels covering [0, 1]
    /// with increasing breaks, [`ORDER`] finite values per panel. The error names `what`.
    pub fn check(&self, what: &'static str) -> Result<()> {
        let bad = |reason: String| Error::InvalidTable { what, reason };
        let panels = self.panel_count();
        if panels == 0 {
            return Err(bad("breaks needs at least two values".into()));
        }
        if self.values.len() != panels * ORDER {
            return Err(bad(format!(
                "values has {} entries, expected {} ({} panels x {ORDER})",
                self.values.len(),
                panels * ORDER,
                panels
            )));
        }
        if self.breaks[0] != 0.0 || self.breaks[panels] != 1.0 {
            return Err(bad("breaks must start at 0 and end at 1".into()));
        }
        if let Some(i) = self
            .breaks
            .windows(2)
            .position(|p| p[1].partial_cmp(&p[0]) != Some(std::cmp::Ordering::Greater))
        {
            return Err(bad(format!("breaks are not increasing at index {}", i + 1)));
        }
        if let Some(i) = self.values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("values[{i}] is not finite")));
        }
        Ok(())
    }

    /// The interpolant at `u` (clamped to [breaks[0], breaks[last]]).
    pub fn eval(&self, u: f64) -> f64 {
        let count = self.panel_count();
        let first = self.breaks[0];
        let last = self.breaks[count];
        let u = u.clamp(first, last);
        let index = locate(|i| self.breaks[i], count, u);
        let a = self.breaks[index];
        let b = self.breaks[index + 1];
        let x = if b > a {
            ((2.0 * u - a - b) / (b - a)).clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let mut f = [0.0; ORDER];
        f.copy_from_slice(&self.values[index * ORDER..(index + 1) * ORDER]);
        rule().interpolate(x, &f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_integrates_polynomials_exactly() {
        let rule = rule();
        assert!((rule.w.iter().sum::<f64>() - 2.0).abs() < 1e-14);
        for degree in 0..(2 * ORDER as i32) {
            let mut f = [0.0; ORDER];
            for j in 0..ORDER {
                f[j] = rule.x[j].powi(degree);
            }
            let exact = if degree % 2 == 1 {
                0.0
            } else {
                2.0 / (degree as f64 + 1.0)
            };
            assert!(
                (rule.integrate(&f) - exact).abs() < 1e-14,
                "degree {degree}"
            );
        }
    }

    #[test]
    fn cumulative_and_interpolation_are_exact_for_low_degree() {
        let rule = rule();
        let mut f = [0.0; ORDER];
        for j in 0..ORDER {
            f[j] = rule.x[j].powi(5) - 2.0 * rule.x[j];
        }
        let antiderivative = |x: f64| x.powi(6) / 6.0 - x * x - (1.0 / 6.0 - 1.0);
        let mut out = [0.0; ORDER];
        rule.cumulate(&f, &mut out);
        for i in 0..ORDER {
            assert!((out[i] - antiderivative(rule.x[i])).abs() < 1e-14);
        }
        for x in [-1.0, -0.37, 0.0, 0.81, 1.0] {
            assert!((rule.cumulate_to(x, &f) - antiderivative(x)).abs() < 1e-14);
            assert!((rule.interpolate(x, &f) - (x.powi(5) - 2.0 * x)).abs() < 1e-13);
        }
        assert!(rule.tail_size(&f) < 1e-14);
    }
}

//! The browser lab's sampling rounds as a model: which response Best-of-N and Worst-of-N serve,
//! the running tally of an aligned policy against the base policy under both procedures (with a
//! bootstrap interval), the theory's prediction for that tally, and the histogram of calibrated
//! rewards. Everything here is plain data in, plain data out, so it is tested natively and runs
//! unchanged in the page.

use std::fmt::Write as _;

use infalign_core::error::invalid;
use infalign_core::estimators::{bootstrap_mean, ConfidenceInterval};
use infalign_core::selection::{best_of_n, worst_of_n, Procedure};
use infalign_core::theory::{self, WinRates};
use infalign_core::{Result, Transform};

/// Messages the lab offers before the user types one: everyday small talk, the register the
/// default model was trained on.
pub const BUILT_IN_PROMPTS: [&str; 6] = [
    "Hi! Do you like hiking in the mountains?",
    "What did you do last weekend?",
    "Can you recommend a good book to read?",
    "I just adopted a puppy. Any advice?",
    "What is your favourite thing to cook?",
    "How do you relax after a long day?",
];

/// The confidence level of the tally's intervals.
pub const TALLY_LEVEL: f64 = 0.95;
/// Bootstrap resamples behind each tally interval.
pub const TALLY_RESAMPLES: usize = 1000;

/// The responses Best-of-N and Worst-of-N serve from one set of N: indices into the rewards
/// (lowest index on ties, as [`infalign_core::selection`] does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picks {
    /// The highest reward's index.
    pub best: usize,
    /// The lowest reward's index.
    pub worst: usize,
}

impl Picks {
    /// The picks of `rewards` (raw or calibrated: calibration keeps the order, so both give the
    /// same picks up to ties). Errors on an empty or non-finite list.
    pub fn of(rewards: &[f64]) -> Result<Picks> {
        Ok(Picks {
            best: best_of_n(rewards)?,
            worst: worst_of_n(rewards)?,
        })
    }

    /// The pick of `procedure`.
    pub fn get(&self, procedure: Procedure) -> usize {
        match procedure {
            Procedure::BestOfN => self.best,
            Procedure::WorstOfN => self.worst,
        }
    }
}

/// One comparison's outcome for the first side: 1 for a win, 1/2 for a tie, 0 for a loss.
pub fn outcome(first: f64, second: f64) -> f64 {
    if first > second {
        1.0
    } else if first == second {
        0.5
    } else {
        0.0
    }
}

/// What one round did: the answer each procedure served on each side (indices into that side's
/// N answers) and the aligned side's outcome under each (1 win, 1/2 tie, 0 loss).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    /// The aligned side's picks.
    pub aligned: Picks,
    /// The base side's picks.
    pub base: Picks,
    /// Best-of-N's outcome for the aligned side.
    pub bon: f64,
    /// Worst-of-N's outcome for the aligned side.
    pub won: f64,
}

impl Round {
    /// The outcome under `procedure`.
    pub fn outcome(&self, procedure: Procedure) -> f64 {
        match procedure {
            Procedure::BestOfN => self.bon,
            Procedure::WorstOfN => self.won,
        }
    }
}

/// The columns of [`rounds_csv`].
pub const ROUNDS_CSV_HEADER: &str = "round,procedure,n,aligned_calibrated,base_calibrated,outcome";

/// The rounds of a tally as CSV ([`ROUNDS_CSV_HEADER`]): for each round and procedure, the
/// calibrated rewards of the two served answers and the aligned side's outcome. `rounds` holds,
/// per round, (aligned, base) calibrated rewards of the N answers of each side.
pub fn rounds_csv(n: usize, rounds: &[(Vec<f64>, Vec<f64>, Round)]) -> String {
    let mut out = format!("{ROUNDS_CSV_HEADER}\n");
    for (index, (aligned, base, round)) in rounds.iter().enumerate() {
        for procedure in [Procedure::BestOfN, Procedure::WorstOfN] {
            out.push_str(&format!(
                "{},{},{n},{},{},{}\n",
                index + 1,
                procedure.as_str(),
                aligned[round.aligned.get(procedure)],
                base[round.base.get(procedure)],
                round.outcome(procedure)
            ));
        }
    }
    out
}

/// The aligned policy against the base policy, round after round: in each round both sides draw
/// N responses to the same prompt, each procedure serves one response per side, and the side
/// whose served response has the higher calibrated reward wins (ties count half).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    bon: Vec<f64>,
    won: Vec<f64>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one round from the calibrated rewards of the aligned side and of the base side
    /// (N each), and say what happened in it. Errors on empty or non-finite rewards; the tally
    /// is then unchanged.
    pub fn record(&mut self, aligned: &[f64], base: &[f64]) -> Result<Round> {
        if aligned.len() != base.len() {
            return Err(invalid(
                "round",
                format!(
                    "{} aligned and {} base responses",
                    aligned.len(),
                    base.len()
                ),
                "a round compares N responses with N",
            ));
        }
        let (a, b) = (Picks::of(aligned)?, Picks::of(base)?);
        let round = Round {
            aligned: a,
            base: b,
            bon: outcome(aligned[a.best], base[b.best]),
            won: outcome(aligned[a.worst], base[b.worst]),
        };
        self.bon.push(round.bon);
        self.won.push(round.won);
        Ok(round)
    }

    /// Rounds recorded.
    pub fn rounds(&self) -> usize {
        self.bon.len()
    }

    /// The outcomes of every round under `procedure` (1, 1/2 or 0).
    pub fn outcomes(&self, procedure: Procedure) -> &[f64] {
        match procedure {
            Procedure::BestOfN => &self.bon,
            Procedure::WorstOfN => &self.won,
        }
    }

    /// The aligned side's win rate under `procedure` with a 95% percentile-bootstrap interval
    /// over rounds; `None` before the first round.
    pub fn win_rate(&self, procedure: Procedure) -> Option<ConfidenceInterval> {
        let outcomes = self.outcomes(procedure);
        if outcomes.is_empty() {
            return None;
        }
        // Cannot fail: non-empty, finite values, a valid level and resample count.
        bootstrap_mean(outcomes, TALLY_LEVEL, TALLY_RESAMPLES, 0).ok()
    }
}

/// What the theory predicts for the tally of a policy aligned with `transform` at `kl` nats from
/// the base policy: the win rates of the exactly tilted policy at that KL, with N responses per
/// side.
pub fn predicted_win_rates(transform: &Transform, kl: f64, n: u32) -> Result<WinRates> {
    let lambda = theory::lambda_for_kl(transform, kl)?;
    Ok(theory::evaluate(transform, lambda, n)?.win_rate)
}

/// Counts of `values` in `bins` equal bins over [0, 1] (1 falls in the last bin); values outside
/// [0, 1] or not finite are not counted.
pub fn histogram(values: &[f64], bins: usize) -> Vec<usize> {
    let mut counts = vec![0; bins];
    if bins == 0 {
        return counts;
    }
    for &value in values {
        if (0.0..=1.0).contains(&value) {
            let bin = ((value * bins as f64) as usize).min(bins - 1);
            counts[bin] += 1;
        }
    }
    counts
}

/// The histogram of calibrated rewards as an SVG bar chart with the given `id`: one `rect` per
/// bin carrying `data-count`, and a dashed line at the count a uniform spread would give (the
/// base policy's own responses are uniform in calibrated space).
pub fn histogram_svg(id: &str, values: &[f64], bins: usize) -> String {
    const WIDTH: f64 = 320.0;
    const HEIGHT: f64 = 140.0;
    const LEFT: f64 = 28.0;
    const BOTTOM: f64 = 24.0;
    const TOP: f64 = 8.0;
    let counts = histogram(values, bins);
    let total: usize = counts.iter().sum();
    let uniform = total as f64 / bins.max(1) as f64;
    let top = counts
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(uniform.ceil() as usize)
        .max(1) as f64;
    let plot_width = WIDTH - LEFT - 8.0;
    let plot_height = HEIGHT - BOTTOM - TOP;
    let bar = plot_width / bins.max(1) as f64;
    let y = |count: f64| TOP + plot_height * (1.0 - count / top);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="histogram" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Histogram of calibrated rewards" data-total="{total}">"#
    );
    for (bin, &count) in counts.iter().enumerate() {
        let x = LEFT + bar * bin as f64;
        let top_y = y(count as f64);
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{top_y:.1}" width="{:.1}" height="{:.1}" data-bin="{bin}" data-count="{count}"><title>{:.2}-{:.2}: {count}</title></rect>"#,
            (bar - 2.0).max(1.0),
            TOP + plot_height - top_y,
            bin as f64 / bins as f64,
            (bin + 1) as f64 / bins as f64,
        );
    }
    if total > 0 {
        let line_y = y(uniform);
        let _ = write!(
            svg,
            r#"<line class="uniform" x1="{LEFT}" x2="{:.1}" y1="{line_y:.1}" y2="{line_y:.1}"><title>the base policy: uniform</title></line>"#,
            LEFT + plot_width
        );
    }
    let axis_y = TOP + plot_height;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" x2="{:.1}" y1="{axis_y}" y2="{axis_y}"/><text x="{LEFT}" y="{:.1}" class="tick">0</text><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">1</text><text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">calibrated reward</text><text x="2" y="{:.1}" class="tick">{}</text></svg>"#,
        LEFT + plot_width,
        axis_y + 14.0,
        LEFT + plot_width,
        axis_y + 14.0,
        LEFT + plot_width / 2.0,
        axis_y + 14.0,
        TOP + 8.0,
        top as usize,
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_rewards_with_the_lowest_index_on_ties() {
        let picks = Picks::of(&[0.2, 0.9, 0.1, 0.9, 0.1]).unwrap();
        assert_eq!(picks, Picks { best: 1, worst: 2 });
        assert_eq!(picks.get(Procedure::BestOfN), 1);
        assert_eq!(picks.get(Procedure::WorstOfN), 2);
        assert!(Picks::of(&[]).is_err());
        assert!(Picks::of(&[0.1, f64::NAN]).is_err());
    }

    #[test]
    fn a_round_compares_the_served_responses_of_each_side() {
        let mut tally = Tally::new();
        assert_eq!(tally.win_rate(Procedure::BestOfN), None);
        // Aligned best 0.9 beats base best 0.8; aligned worst 0.1 loses to base worst 0.3.
        let round = tally.record(&[0.1, 0.9, 0.5], &[0.3, 0.8, 0.4]).unwrap();
        // Which answers were served, and the outcome under each procedure.
        assert_eq!((round.aligned.best, round.aligned.worst), (1, 0));
        assert_eq!((round.base.best, round.base.worst), (1, 0));
        assert_eq!(round.outcome(Procedure::BestOfN), 1.0);
        assert_eq!(round.outcome(Procedure::WorstOfN), 0.0);
        let csv = rounds_csv(3, &[(vec![0.1, 0.9, 0.5], vec![0.3, 0.8, 0.4], round)]);
        assert_eq!(
            csv,
            format!("{ROUNDS_CSV_HEADER}\n1,bon,3,0.9,0.8,1\n1,won,3,0.1,0.3,0\n")
        );
        // Same best (tie, 1/2); aligned worst 0.4 beats base worst 0.2.
        tally.record(&[0.4, 0.7, 0.6], &[0.7, 0.2, 0.5]).unwrap();
        assert_eq!(tally.rounds(), 2);
        assert_eq!(tally.outcomes(Procedure::BestOfN), &[1.0, 0.5]);
        assert_eq!(tally.outcomes(Procedure::WorstOfN), &[0.0, 1.0]);
        let bon = tally.win_rate(Procedure::BestOfN).unwrap();
        assert!((bon.estimate - 0.75).abs() < 1e-12);
        assert!(bon.lower >= 0.5 && bon.upper <= 1.0 && bon.lower <= bon.upper);
        // A bad round is refused and leaves the tally as it was.
        let before = tally.clone();
        assert!(tally.record(&[0.1, 0.2], &[0.3]).is_err());
        assert!(tally.record(&[0.1, f64::INFINITY], &[0.3, 0.4]).is_err());
        assert_eq!(tally, before);
    }

    #[test]
    fn the_interval_narrows_as_rounds_accumulate() {
        let mut tally = Tally::new();
        let width = |tally: &Tally| {
            let ci = tally.win_rate(Procedure::BestOfN).unwrap();
            ci.upper - ci.lower
        };
        for round in 0..10 {
            let win = if round % 3 == 0 { 0.2 } else { 0.9 };
            tally.record(&[win, 0.0], &[0.5, 0.0]).unwrap();
        }
        let early = width(&tally);
        for round in 0..390 {
            let win = if round % 3 == 0 { 0.2 } else { 0.9 };
            tally.record(&[win, 0.0], &[0.5, 0.0]).unwrap();
        }
        assert!(width(&tally) < early / 3.0, "{} vs {early}", width(&tally));
        let ci = tally.win_rate(Procedure::BestOfN).unwrap();
        // 134 of the 400 rounds are losses.
        assert!(
            (ci.estimate - 266.0 / 400.0).abs() < 1e-12,
            "{}",
            ci.estimate
        );
        assert!(ci.lower < ci.estimate && ci.estimate < ci.upper);
    }

    #[test]
    fn the_prediction_is_the_theory_engine_at_the_measured_kl() {
        // log at lambda = M - 1 is BoN_M: its BoN_N win rate is M/(M+1) for every N.
        let kl = 3.0f64.ln() - 2.0 / 3.0; // M = 3
        let rates = predicted_win_rates(&Transform::Log, kl, 8).unwrap();
        assert!((rates.bon - 0.75).abs() < 1e-6, "{rates:?}");
        assert!((rates.standard - 0.75).abs() < 1e-6, "{rates:?}");
        // exp tilts toward the top: it gains more under BoN than under WoN; negexp the reverse.
        let exp = predicted_win_rates(&Transform::Exp { t: 10.0 }, 0.5, 4).unwrap();
        let negexp = predicted_win_rates(&Transform::NegExp { t: 10.0 }, 0.5, 4).unwrap();
        assert!(
            exp.bon > exp.won && negexp.won > negexp.bon,
            "{exp:?} {negexp:?}"
        );
        assert!(predicted_win_rates(&Transform::Exp { t: 10.0 }, -1.0, 4).is_err());
        // A KL beyond every tilt of a saturating transform (a training run that ran away to
        // 24 nats with negexp(16)) has no prediction, and the error says why.
        let beyond = predicted_win_rates(&Transform::NormNegExp { t: 15.96 }, 24.0, 4);
        assert!(
            beyond
                .as_ref()
                .is_err_and(|e| e.to_string().contains("not reachable")),
            "{beyond:?}"
        );
    }

    #[test]
    fn the_histogram_counts_calibrated_rewards_per_bin() {
        let values = [0.0, 0.05, 0.5, 0.99, 1.0, 1.5, f64::NAN];
        assert_eq!(histogram(&values, 4), vec![2, 0, 1, 2]);
        assert_eq!(histogram(&values, 0), Vec::<usize>::new());
        let svg = histogram_svg("h", &values, 4);
        assert!(svg.starts_with(r#"<svg id="h""#) && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"data-total="5""#));
        let counts: Vec<&str> = svg
            .split(r#"data-count=""#)
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        assert_eq!(counts, ["2", "0", "1", "2"]);
        assert!(svg.contains(r#"class="uniform""#));
        assert!(!histogram_svg("empty", &[], 4).contains(r#"class="uniform""#));
    }
}

//! "Train it yourself": candidate-set CTRL on one prompt, as the lab's panel shows it.
//!
//! The tab samples C answers of the base policy to a prompt (the candidates) and K more (the
//! reference table that calibrates them). Over those C answers the policy is a softmax, pi_ref is
//! uniform, and everything the paper compares is exact ([`infalign_core::candidates`]): the
//! optimum of each training score at a KL budget, its KL and its standard / BoN_N / WoN_N win
//! rates. Two scores are set side by side (identity against exp for Best-of-N, against negexp for
//! Worst-of-N, by default); "Train" then runs the trainer's RLOO steps on each and the student
//! watches the trained policy's point (KL, win rate) walk onto the exact frontier.
//!
//! Plain data in, plain data out: tested natively, run unchanged in the page.

use infalign_core::candidates::{
    beta_for_kl, exact_at_beta, exact_policy, CandidateEvaluation, CandidatePrompt, CandidateSet,
    CandidateTrainConfig, CandidateTrainer, Optimizer, Scoring,
};
use infalign_core::error::invalid;
use infalign_core::seed::{derive_seed, Stream};
use infalign_core::selection::Procedure;
use infalign_core::theory::{self, WinRates};
use infalign_core::{Result, Transform};

use serde::{Deserialize, Serialize};

use crate::chart::{Chart, Series, COLORS, KL_AXIS};
use crate::explorer::check_range;
use crate::procedure_label;

/// Candidates per prompt the panel offers.
pub const C_RANGE: (usize, usize) = (16, 256);
/// Reference answers per prompt the panel offers.
pub const K_RANGE: (usize, usize) = (8, 256);
/// Largest N of the panel's procedure.
pub const N_MAX: u32 = 16;
/// KL budgets (nats) the panel offers.
pub const KL_RANGE: (f64, f64) = (0.02, 2.0);
/// Steepness t of exp / negexp.
pub const T_RANGE: (f64, f64) = (0.5, 20.0);
/// RLOO group sizes.
pub const M_RANGE: (usize, usize) = (2, 64);
/// Learning rates of the tabular AdamW.
pub const LR_RANGE: (f64, f64) = (0.001, 1.0);
/// Training steps.
pub const STEPS_RANGE: (usize, usize) = (10, 5000);

/// The query keys the panel owns (all prefixed, so they never meet the explorer's or the
/// sampling lab's).
pub const QUERY_KEYS: [&str; 10] = [
    "tr_proc", "tr_n", "tr_a", "tr_b", "tr_t", "tr_kl", "tr_m", "tr_lr", "tr_steps", "tr_c",
];

/// A side's training score, as the panel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Score {
    /// The raw reward, uncalibrated.
    Raw,
    /// The calibrated reward u.
    Identity,
    /// log u.
    Log,
    /// (e^(t u) - 1) / (e^t - 1): Best-of-N's transform.
    Exp,
    /// Worst-of-N's transform, -e^(-t u) normalised to [0, 1].
    NegExp,
}

impl Score {
    /// Every score, in the order the selector lists them.
    pub const ALL: [Score; 5] = [
        Score::Raw,
        Score::Identity,
        Score::Log,
        Score::Exp,
        Score::NegExp,
    ];

    /// The key in URLs and `data-` attributes.
    pub fn key(self) -> &'static str {
        match self {
            Score::Raw => "raw",
            Score::Identity => "identity",
            Score::Log => "log",
            Score::Exp => "exp",
            Score::NegExp => "negexp",
        }
    }

    /// The score of `key`.
    pub fn from_key(key: &str) -> Option<Score> {
        Score::ALL.into_iter().find(|s| s.key() == key)
    }

    /// What the trainer trains on, with steepness `t` for exp and negexp (normalised forms,
    /// rewards in [0, 1]: the same policies as e^(t u) at a rescaled beta).
    pub fn scoring(self, t: f64) -> Scoring {
        match self {
            Score::Raw => Scoring::Raw,
            Score::Identity => Scoring::Calibrated(Transform::Identity),
            Score::Log => Scoring::Calibrated(Transform::Log),
            Score::Exp => Scoring::Calibrated(Transform::NormExp { t }),
            Score::NegExp => Scoring::Calibrated(Transform::NormNegExp { t }),
        }
    }

    /// A label: "identity", "exp (t = 6)", ...
    pub fn label(self, t: f64) -> String {
        match self {
            Score::Exp | Score::NegExp => {
                format!("{} (t = {})", self.key(), crate::explorer::short(t))
            }
            _ => self.key().to_string(),
        }
    }
}

/// Everything the panel's controls set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// The procedure the policy will be served with.
    pub procedure: Procedure,
    /// Its N.
    pub n: u32,
    /// The two scores compared.
    pub sides: [Score; 2],
    /// Steepness of exp / negexp.
    pub t: f64,
    /// The KL budget both sides' optima spend (nats).
    pub kl: f64,
    /// RLOO group size.
    pub m: usize,
    /// AdamW's learning rate on the logits.
    pub learning_rate: f64,
    /// Training steps per side.
    pub steps: u64,
    /// Candidates per prompt.
    pub c: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            procedure: Procedure::BestOfN,
            n: 4,
            sides: [Score::Identity, Score::Exp],
            t: 6.0,
            kl: 0.5,
            m: 16,
            learning_rate: 0.1,
            steps: 600,
            c: 64,
        }
    }
}

/// `value` if it is a whole number within `lo..=hi`, else an error naming `name`.
fn whole(name: &'static str, value: f64, (lo, hi): (usize, usize)) -> Result<usize> {
    let value = check_range(name, value, (lo as f64, hi as f64))?;
    if value.fract() == 0.0 {
        Ok(value as usize)
    } else {
        Err(invalid(name, value, "must be a whole number"))
    }
}

impl TrainSettings {
    /// Reads the panel's keys from a URL query (others are left to the rest of the page). A
    /// value that does not parse or is out of range keeps the default, with a message naming
    /// the key and the value.
    pub fn from_query(query: &str) -> (TrainSettings, Vec<String>) {
        let mut settings = TrainSettings::default();
        let mut problems = Vec::new();
        let query = query.strip_prefix('?').unwrap_or(query);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !QUERY_KEYS.contains(&key) {
                continue;
            }
            let number = || value.parse::<f64>().map_err(|_| "not a number".to_string());
            let real = |name, range| check_range(name, number()?, range).map_err(|e| e.to_string());
            let count = |name, range| whole(name, number()?, range).map_err(|e| e.to_string());
            let outcome: std::result::Result<(), String> = (|| {
                match key {
                    "tr_proc" => {
                        settings.procedure = match value {
                            "bon" => Procedure::BestOfN,
                            "won" => Procedure::WorstOfN,
                            _ => return Err("expected bon or won".into()),
                        }
                    }
                    "tr_a" | "tr_b" => {
                        let score = Score::from_key(value).ok_or_else(|| {
                            format!("expected one of {}", Score::ALL.map(Score::key).join(", "))
                        })?;
                        settings.sides[usize::from(key == "tr_b")] = score;
                    }
                    "tr_n" => settings.n = count("n", (1, N_MAX as usize))? as u32,
                    "tr_t" => settings.t = real("t", T_RANGE)?,
                    "tr_kl" => settings.kl = real("kl", KL_RANGE)?,
                    "tr_m" => settings.m = count("m", M_RANGE)?,
                    "tr_lr" => settings.learning_rate = real("lr", LR_RANGE)?,
                    "tr_steps" => settings.steps = count("steps", STEPS_RANGE)? as u64,
                    "tr_c" => settings.c = count("c", C_RANGE)?,
                    _ => {}
                }
                Ok(())
            })();
            if let Err(reason) = outcome {
                problems.push(format!("ignored {key}={value}: {reason}"));
            }
        }
        (settings, problems)
    }

    /// The URL query form (without `?`), read back by [`TrainSettings::from_query`].
    pub fn to_query(&self) -> String {
        format!(
            "tr_proc={}&tr_n={}&tr_a={}&tr_b={}&tr_t={}&tr_kl={}&tr_m={}&tr_lr={}&tr_steps={}&tr_c={}",
            self.procedure,
            self.n,
            self.sides[0].key(),
            self.sides[1].key(),
            self.t,
            self.kl,
            self.m,
            self.learning_rate,
            self.steps,
            self.c
        )
    }

    /// The training score of side `index` (0 or 1).
    pub fn scoring(&self, index: usize) -> Scoring {
        self.sides[index].scoring(self.t)
    }

    /// The win rate of the panel's procedure.
    pub fn win_rate(&self, rates: &WinRates) -> f64 {
        match self.procedure {
            Procedure::BestOfN => rates.bon,
            Procedure::WorstOfN => rates.won,
        }
    }
}

/// One side's exact optimum at the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactSide {
    /// The score.
    pub score: Score,
    /// The beta whose optimum spends the budget.
    pub beta: f64,
    /// The optimum's probabilities over the candidates (in the candidates' order).
    pub policy: Vec<f64>,
    /// Its exact evaluation.
    pub evaluation: CandidateEvaluation,
    /// The continuous theory's win rates for the same transform at the optimum's calibrated KL
    /// (C and K infinite, no ties); `None` for raw, which has no calibrated form, or where the
    /// theory cannot spend that KL.
    pub theory: Option<WinRates>,
}

/// The exact optimum of both sides at the settings' KL budget.
pub fn exact_sides(prompt: &CandidatePrompt, settings: &TrainSettings) -> Result<[ExactSide; 2]> {
    let set = CandidateSet::new(vec![prompt.clone()])?;
    let side = |index: usize| -> Result<ExactSide> {
        let scoring = settings.scoring(index);
        let beta = beta_for_kl(&set, &scoring, settings.kl)?;
        let evaluation = exact_at_beta(&set, &scoring, beta, settings.n)?;
        let policy = exact_policy(&set, &scoring, beta)?.swap_remove(0);
        let theory = match &scoring {
            Scoring::Calibrated(transform) => {
                theory::lambda_for_kl(transform, evaluation.calibrated_kl_mean)
                    .and_then(|lambda| theory::evaluate(transform, lambda, settings.n))
                    .ok()
                    .map(|point| point.win_rate)
            }
            Scoring::Raw => None,
        };
        Ok(ExactSide {
            score: settings.sides[index],
            beta,
            policy,
            evaluation,
            theory,
        })
    };
    Ok([side(0)?, side(1)?])
}

/// One point of a training run: after `step` steps, the trained policy's exact evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    /// Steps done.
    pub step: u64,
    /// KL(pi || pi_ref) over the candidates, exact.
    pub kl: f64,
    /// Exact win rates of the trained policy.
    pub win_rate: WinRates,
}

/// One side's training: the language-model trainer's RLOO recipe on the candidates' logits at
/// the exact optimum's beta, so the run heads for that optimum.
pub struct TrainRun {
    trainer: CandidateTrainer,
    n: u32,
    /// Every evaluated point, from the start.
    pub path: Vec<TrainPoint>,
}

impl TrainRun {
    /// A run of side `index` at `beta` (its exact optimum's), seeded by `seed`.
    pub fn new(
        prompt: &CandidatePrompt,
        settings: &TrainSettings,
        index: usize,
        beta: f64,
        seed: u64,
    ) -> Result<TrainRun> {
        let config = CandidateTrainConfig {
            scoring: settings.scoring(index),
            beta,
            target_kl: None,
            samples_per_prompt: settings.m,
            prompts_per_step: 1,
            samples_per_prompt_total: settings.steps * settings.m as u64,
            optimizer: Optimizer::AdamW {
                learning_rate: settings.learning_rate,
                weight_decay: 0.0,
            },
            seed,
            ..CandidateTrainConfig::default()
        };
        let trainer = CandidateTrainer::new(CandidateSet::new(vec![prompt.clone()])?, config)?;
        let mut run = TrainRun {
            trainer,
            n: settings.n,
            path: Vec::new(),
        };
        let start = run.point()?;
        run.path.push(start);
        Ok(run)
    }

    fn point(&self) -> Result<TrainPoint> {
        let evaluation = self.trainer.evaluate(self.n)?;
        Ok(TrainPoint {
            step: self.trainer.step_index(),
            kl: evaluation.kl,
            win_rate: evaluation.win_rate,
        })
    }

    /// Runs up to `steps` more steps (fewer at the end of the run) and records the point
    /// reached.
    pub fn advance(&mut self, steps: u64) -> Result<TrainPoint> {
        for _ in 0..steps {
            if self.trainer.finished() {
                break;
            }
            self.trainer.step()?;
        }
        let point = self.point()?;
        self.path.push(point);
        Ok(point)
    }

    /// Whether every step has run.
    pub fn finished(&self) -> bool {
        self.trainer.finished()
    }

    /// The trained policy's probabilities over the candidates.
    pub fn policy(&self) -> Vec<f64> {
        self.trainer.policy().swap_remove(0)
    }

    /// Steps in the whole run.
    pub fn total_steps(&self) -> u64 {
        self.trainer.total_steps()
    }
}

/// Frames a training run is drawn in: each advances both sides by a frame's share of the steps.
pub const FRAMES: u64 = 60;

/// Both sides of the panel trained together, frame by frame (how the page, or the worker that
/// trains for it, runs them): each side at its exact optimum's beta, seeded alike.
pub struct TrainPair {
    runs: [TrainRun; 2],
    chunk: u64,
}

impl TrainPair {
    /// Both sides of `settings` on `prompt`'s candidates at `betas`.
    pub fn new(
        prompt: &CandidatePrompt,
        settings: &TrainSettings,
        betas: [f64; 2],
    ) -> Result<Self> {
        let seed = derive_seed(0, Stream::CandidateTraining, 0);
        Ok(TrainPair {
            runs: [
                TrainRun::new(prompt, settings, 0, betas[0], seed)?,
                TrainRun::new(prompt, settings, 1, betas[1], seed)?,
            ],
            chunk: settings.steps.div_ceil(FRAMES).max(1),
        })
    }

    /// One frame: both sides a frame's share of the steps further. True once both are done.
    pub fn frame(&mut self) -> Result<bool> {
        for run in &mut self.runs {
            run.advance(self.chunk)?;
        }
        Ok(self.runs.iter().all(TrainRun::finished))
    }

    /// Each side's points so far, from the base policy on.
    pub fn paths(&self) -> [Vec<TrainPoint>; 2] {
        [self.runs[0].path.clone(), self.runs[1].path.clone()]
    }

    /// Each side's policy over the candidates now.
    pub fn policies(&self) -> [Vec<f64>; 2] {
        [self.runs[0].policy(), self.runs[1].policy()]
    }
}

/// `(KL, win rate)` of side `index`'s exact optimum over a range of betas, from pi_ref (0, 1/2)
/// up to `max_kl` nats.
pub fn exact_frontier(
    prompt: &CandidatePrompt,
    settings: &TrainSettings,
    index: usize,
    max_kl: f64,
) -> Result<Vec<(f64, f64)>> {
    let set = CandidateSet::new(vec![prompt.clone()])?;
    let scoring = settings.scoring(index);
    let mut points = vec![(0.0, 0.5)];
    for i in 1..=24 {
        let budget = max_kl * i as f64 / 24.0;
        let Ok(beta) = beta_for_kl(&set, &scoring, budget) else {
            break; // beyond what this score can spend on these candidates
        };
        let evaluation = exact_at_beta(&set, &scoring, beta, settings.n)?;
        points.push((evaluation.kl, settings.win_rate(&evaluation.win_rate)));
    }
    Ok(points)
}

/// The frontier chart: each side's exact optimum as a line of KL against the procedure's win
/// rate, its training path as markers, and the budget's optimum as a larger mark.
pub fn frontier_chart(
    prompt: &CandidatePrompt,
    settings: &TrainSettings,
    sides: &[ExactSide; 2],
    runs: [&[TrainPoint]; 2],
) -> Result<Chart> {
    let max_kl = (settings.kl * 2.0).max(0.2);
    let mut series = Vec::new();
    let mut ys = vec![0.5];
    for (index, side) in sides.iter().enumerate() {
        let color = COLORS[[1, 2][index]];
        let label = side.score.label(settings.t);
        let frontier = exact_frontier(prompt, settings, index, max_kl)?;
        ys.extend(frontier.iter().map(|p| p.1));
        series.push(
            Series::line(format!("{label}, exact"), frontier, color, false)
                .with_key(format!("exact-{index}")),
        );
        let path: Vec<(f64, f64)> = runs[index]
            .iter()
            .map(|p| (p.kl, settings.win_rate(&p.win_rate)))
            .collect();
        ys.extend(path.iter().map(|p| p.1));
        let mut trained = Series::markers(path, color).with_key(format!("trained-{index}"));
        trained.label = format!("{label}, trained");
        trained.legend = true;
        series.push(trained);
    }
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &y| {
            (lo.min(y), hi.max(y))
        });
    Ok(Chart {
        id: "train-frontier".into(),
        title: format!(
            "{} win rate against the base policy, over the candidates",
            procedure_label(settings.procedure, settings.n)
        ),
        x_label: format!("{KL_AXIS} over the candidates"),
        y_label: "win rate".into(),
        x_range: (0.0, max_kl),
        y_range: ((lo - 0.02).max(0.0), (hi + 0.02).min(1.0)),
        series,
        legend_outside: false,
    })
}

/// The probability chart: each candidate's probability relative to pi_ref's 1/C, candidates
/// sorted by calibrated reward; the exact optimum as a line and the trained policy as markers.
pub fn probability_chart(
    prompt: &CandidatePrompt,
    settings: &TrainSettings,
    sides: &[ExactSide; 2],
    trained: [Option<&[f64]>; 2],
) -> Chart {
    let c = prompt.len() as f64;
    let mut order: Vec<usize> = (0..prompt.len()).collect();
    order.sort_by(|&a, &b| prompt.calibrated()[a].total_cmp(&prompt.calibrated()[b]));
    let at = |probabilities: &[f64]| -> Vec<(f64, f64)> {
        order
            .iter()
            .map(|&i| (prompt.calibrated()[i], probabilities[i] * c))
            .collect()
    };
    let mut series = Vec::new();
    let mut top: f64 = 2.0;
    for (index, side) in sides.iter().enumerate() {
        let color = COLORS[[1, 2][index]];
        let label = side.score.label(settings.t);
        let exact = at(&side.policy);
        top = exact.iter().fold(top, |m, p| m.max(p.1));
        series.push(
            Series::line(format!("{label}, exact"), exact, color, false)
                .with_key(format!("exact-{index}")),
        );
        if let Some(policy) = trained[index] {
            let points = at(policy);
            top = points.iter().fold(top, |m, p| m.max(p.1));
            series.push(Series::markers(points, color).with_key(format!("trained-{index}")));
        }
    }
    Chart {
        id: "train-probability".into(),
        title: "Each candidate's probability over the base policy's".into(),
        x_label: "calibrated reward u of the candidate".into(),
        y_label: "π(y) / π_ref(y)".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, top * 1.05),
        series,
        legend_outside: false,
    }
}

/// The columns of [`runs_csv`].
pub const RUNS_CSV_HEADER: &str = "side,score,beta,step,kl,standard,bon,won,n";

/// Both sides' exact optima and training paths as CSV ([`RUNS_CSV_HEADER`]): per side one row
/// `step = exact` for the optimum, then one per recorded training point.
pub fn runs_csv(
    settings: &TrainSettings,
    sides: &[ExactSide; 2],
    paths: [&[TrainPoint]; 2],
) -> String {
    let mut out = format!("{RUNS_CSV_HEADER}\n");
    for (index, side) in sides.iter().enumerate() {
        let score = side.score.label(settings.t);
        let rates = side.evaluation.win_rate;
        out.push_str(&format!(
            "{index},{score},{},exact,{},{},{},{},{}\n",
            side.beta, side.evaluation.kl, rates.standard, rates.bon, rates.won, settings.n
        ));
        for point in paths[index] {
            let rates = point.win_rate;
            out.push_str(&format!(
                "{index},{score},{},{},{},{},{},{},{}\n",
                side.beta, point.step, point.kl, rates.standard, rates.bon, rates.won, settings.n
            ));
        }
    }
    out
}

/// The comparison's verdict in words: which side the exact optimum favours under the
/// procedure, and by how much.
pub fn verdict(settings: &TrainSettings, sides: &[ExactSide; 2]) -> String {
    let rate = |side: &ExactSide| settings.win_rate(&side.evaluation.win_rate);
    let (a, b) = (rate(&sides[0]), rate(&sides[1]));
    let name = procedure_label(settings.procedure, settings.n);
    let (winner, loser, gap) = if b >= a {
        (&sides[1], &sides[0], b - a)
    } else {
        (&sides[0], &sides[1], a - b)
    };
    format!(
        "At {} nats, {} wins {} against the base policy {:.3} of the time, {} {:.3}: a gap of \
         {:.3}.",
        crate::explorer::short(settings.kl),
        winner.score.label(settings.t),
        name,
        rate(winner),
        loser.score.label(settings.t),
        rate(loser),
        gap
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prompt like the tab's: C candidates and K references from the same smooth reward
    /// distribution (a deterministic quasi-random spread, no ties).
    fn prompt(c: usize, k: usize) -> CandidatePrompt {
        let spread =
            |i: usize, offset: f64| ((i as f64 * 0.618_033_988_749_894_9 + offset) % 1.0).powf(1.5);
        let raw: Vec<f64> = (0..c).map(|i| spread(i, 0.1)).collect();
        let reference: Vec<f64> = (0..k).map(|i| spread(i, 0.37)).collect();
        CandidatePrompt::from_rewards(raw, reference).unwrap()
    }

    #[test]
    fn settings_round_trip_through_the_url_and_name_bad_values() {
        let settings = TrainSettings {
            procedure: Procedure::WorstOfN,
            n: 8,
            sides: [Score::Raw, Score::NegExp],
            t: 4.5,
            kl: 0.25,
            m: 8,
            learning_rate: 0.1,
            steps: 300,
            c: 128,
        };
        let (back, problems) = TrainSettings::from_query(&format!("?{}", settings.to_query()));
        assert_eq!(back, settings);
        assert!(problems.is_empty(), "{problems:?}");
        let (back, problems) =
            TrainSettings::from_query("tr_n=99&tr_b=tpu&tr_kl=x&tr_c=16.5&n=3&tr_proc=won");
        assert_eq!(back.n, TrainSettings::default().n);
        assert_eq!(back.sides, TrainSettings::default().sides);
        assert_eq!(back.procedure, Procedure::WorstOfN);
        assert_eq!(problems.len(), 4, "{problems:?}");
        for key in ["tr_n=99", "tr_b=tpu", "tr_kl=x", "tr_c=16.5"] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key}: {problems:?}"
            );
        }
    }

    #[test]
    fn exact_optima_spend_the_budget_and_exp_beats_identity_under_best_of_n() {
        let prompt = prompt(128, 64);
        let settings = TrainSettings::default();
        let sides = exact_sides(&prompt, &settings).unwrap();
        for side in &sides {
            assert!(
                (side.evaluation.kl - settings.kl).abs() < 1e-6,
                "{:?}",
                side.evaluation
            );
            assert!((side.policy.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            // On 128 candidates and 64 references the continuous theory is close.
            let theory = side.theory.unwrap();
            assert!(
                (theory.bon - side.evaluation.win_rate.bon).abs() < 0.03,
                "{side:?}"
            );
        }
        let (identity, exp) = (
            sides[0].evaluation.win_rate.bon,
            sides[1].evaluation.win_rate.bon,
        );
        assert!(exp > identity + 0.01, "identity {identity}, exp {exp}");
        assert!(verdict(&settings, &sides).contains("exp (t = 6) wins BoN_4"));
    }

    #[test]
    fn training_lands_on_the_exact_optimum() {
        let prompt = prompt(64, 32);
        for (procedure, challenger) in [
            (Procedure::BestOfN, Score::Exp),
            (Procedure::WorstOfN, Score::NegExp),
        ] {
            let settings = TrainSettings {
                procedure,
                sides: [Score::Identity, challenger],
                ..TrainSettings::default()
            };
            let sides = exact_sides(&prompt, &settings).unwrap();
            let mut finals = Vec::new();
            for (index, side) in sides.iter().enumerate() {
                let mut run = TrainRun::new(&prompt, &settings, index, side.beta, 7).unwrap();
                assert_eq!(run.path[0].kl, 0.0);
                while !run.finished() {
                    run.advance(50).unwrap();
                }
                let end = *run.path.last().unwrap();
                assert_eq!(end.step, settings.steps);
                let exact = settings.win_rate(&side.evaluation.win_rate);
                let trained = settings.win_rate(&end.win_rate);
                assert!(
                    (trained - exact).abs() < 0.01 && (end.kl - settings.kl).abs() < 0.1,
                    "{procedure:?} {:?}: trained {trained} at {} nats, exact {exact}",
                    side.score,
                    end.kl
                );
                finals.push(trained);
            }
            assert!(finals[1] > finals[0], "{procedure:?}: {finals:?}");
        }
    }

    /// The pair the page (or its worker) trains frame by frame is the two runs of the panel's
    /// seed, advanced a frame's share of the steps at a time: one point per frame from the base.
    #[test]
    fn a_pair_trains_both_sides_in_frames() {
        let prompt = prompt(32, 16);
        let settings = TrainSettings::default();
        let sides = exact_sides(&prompt, &settings).unwrap();
        let betas = [sides[0].beta, sides[1].beta];
        let mut pair = TrainPair::new(&prompt, &settings, betas).unwrap();
        let mut frames = 0;
        while !pair.frame().unwrap() {
            frames += 1;
        }
        assert_eq!(frames + 1, FRAMES);
        let seed = derive_seed(0, Stream::CandidateTraining, 0);
        let chunk = settings.steps.div_ceil(FRAMES);
        for (index, path) in pair.paths().iter().enumerate() {
            assert_eq!(path.len() as u64, FRAMES + 1);
            let mut run = TrainRun::new(&prompt, &settings, index, betas[index], seed).unwrap();
            while !run.finished() {
                run.advance(chunk).unwrap();
            }
            assert_eq!(path, &run.path);
            assert_eq!(pair.policies()[index], run.policy());
        }
    }

    #[test]
    fn the_csv_has_the_optimum_and_every_point_of_both_runs() {
        let prompt = prompt(32, 16);
        let settings = TrainSettings::default();
        let sides = exact_sides(&prompt, &settings).unwrap();
        let mut run = TrainRun::new(&prompt, &settings, 1, sides[1].beta, 1).unwrap();
        run.advance(5).unwrap();
        let csv = runs_csv(&settings, &sides, [&[], &run.path]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], RUNS_CSV_HEADER);
        // Side 0: its optimum only; side 1: its optimum, the start and the point after 5 steps.
        assert_eq!(lines.len(), 1 + 1 + 3);
        assert!(lines[1].starts_with("0,identity,") && lines[1].contains(",exact,"));
        assert!(
            lines[3].starts_with("1,exp (t = 6),") && lines[3].contains(",0,0,0.5,"),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains(",5,"), "{}", lines[4]);
        for line in &lines[1..] {
            assert_eq!(
                line.split(',').count(),
                RUNS_CSV_HEADER.split(',').count(),
                "{line}"
            );
        }
    }

    #[test]
    fn charts_carry_both_sides() {
        let prompt = prompt(32, 16);
        let settings = TrainSettings::default();
        let sides = exact_sides(&prompt, &settings).unwrap();
        let run = TrainRun::new(&prompt, &settings, 0, sides[0].beta, 1).unwrap();
        let chart = frontier_chart(&prompt, &settings, &sides, [&run.path, &[]]).unwrap();
        assert_eq!(chart.series.len(), 4);
        assert!(chart.series[0].points.len() > 10);
        let policy = run.policy();
        let chart = probability_chart(&prompt, &settings, &sides, [Some(&policy), None]);
        assert_eq!(chart.series.len(), 3);
        // Sorted by calibrated reward; the untrained policy (pi_ref) sits at 1 everywhere.
        assert!(chart.series[1]
            .points
            .iter()
            .all(|p| (p.1 - 1.0).abs() < 1e-12));
        assert!(chart.series[0].points.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}

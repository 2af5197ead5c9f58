//! `infalign._core`: infalign-core for Python (PyO3, one abi3 wheel for CPython 3.9+).
//!
//! NumPy arrays (or anything NumPy turns into a float array) in, NumPy arrays out; every error of
//! the core is raised as `ValueError` with the core's own message. The Python package
//! (`python/infalign`) re-exports these functions and documents them in `__init__.pyi`.

use infalign_core::estimators;
use infalign_core::theory::{self, PolicyEvaluation};
use infalign_core::{ExpFamily, Procedure, ReferenceTable, Transform};
use numpy::{AllowTypeChange, IntoPyArray, PyArray1, PyArrayLike1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

type Floats<'py> = PyArrayLike1<'py, f64, AllowTypeChange>;

fn value_error(error: infalign_core::Error) -> PyErr {
    PyValueError::new_err(error.to_string())
}

fn to_vec(values: &Floats<'_>) -> Vec<f64> {
    values.as_array().iter().copied().collect()
}

fn parse_transform(spec: &str) -> PyResult<Transform> {
    spec.parse::<Transform>().map_err(value_error)
}

/// The calibrated rewards of `rewards` against the reference rewards: each one's mid-rank
/// quantile among them, `(below + ties / 2) / K`.
#[pyfunction]
fn calibrate<'py>(
    py: Python<'py>,
    reference: Floats<'py>,
    rewards: Floats<'py>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let table = ReferenceTable::new(to_vec(&reference)).map_err(value_error)?;
    let calibrated = table
        .calibrate_batch(&to_vec(&rewards))
        .map_err(value_error)?;
    Ok(calibrated.into_pyarray(py))
}

/// The transform named by `spec` (as the CLI spells it: `identity`, `log`, `exp:T`, ...) applied
/// to calibrated rewards.
#[pyfunction]
fn transform<'py>(
    py: Python<'py>,
    spec: &str,
    calibrated: Floats<'py>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let transform = parse_transform(spec)?;
    let values = to_vec(&calibrated);
    if let Some(bad) = values.iter().find(|u| !(0.0..=1.0).contains(*u)) {
        return Err(PyValueError::new_err(format!(
            "calibrated reward {bad} is outside [0, 1]"
        )));
    }
    Ok(transform.apply(&values).into_pyarray(py))
}

fn evaluation_dict<'py>(
    py: Python<'py>,
    evaluation: &PolicyEvaluation,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("lambda", evaluation.lambda)?;
    dict.set_item("n", evaluation.n)?;
    dict.set_item("kl", evaluation.kl)?;
    dict.set_item("expected_u", evaluation.expected_u)?;
    dict.set_item("standard", evaluation.win_rate.standard)?;
    dict.set_item("bon", evaluation.win_rate.bon)?;
    dict.set_item("won", evaluation.win_rate.won)?;
    Ok(dict)
}

/// The tilted policy `p(u) ∝ exp(lambda T(u))` of the transform `spec`: its KL from the base in
/// nats, E[U], and its standard, BoN_n and WoN_n win rates against the base.
#[pyfunction]
fn theory_point<'py>(
    py: Python<'py>,
    spec: &str,
    lam: f64,
    n: u32,
) -> PyResult<Bound<'py, PyDict>> {
    let evaluation = theory::evaluate(&parse_transform(spec)?, lam, n).map_err(value_error)?;
    evaluation_dict(py, &evaluation)
}

/// The lambda (1 / beta) at which the transform's tilted policy spends `budget` nats of KL.
#[pyfunction]
fn lambda_for_kl(spec: &str, budget: f64) -> PyResult<f64> {
    theory::lambda_for_kl(&parse_transform(spec)?, budget).map_err(value_error)
}

/// The tilted policy of the transform at a KL budget (as [`theory_point`]).
#[pyfunction]
fn theory_at_kl<'py>(
    py: Python<'py>,
    spec: &str,
    n: u32,
    budget: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let evaluation =
        theory::evaluate_at_kl(&parse_transform(spec)?, n, budget).map_err(value_error)?;
    evaluation_dict(py, &evaluation)
}

/// The best steepness t of the `exp` or `negexp` family for `procedure` (`bon` or `won`) at N
/// and a KL budget: `{"t", "lambda", "win_rate", ...}` with the evaluation at that t.
#[pyfunction]
fn best_t<'py>(
    py: Python<'py>,
    family: &str,
    procedure: &str,
    n: u32,
    budget: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let family = match family.trim().to_ascii_lowercase().as_str() {
        "exp" => ExpFamily::Exp,
        "negexp" => ExpFamily::NegExp,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown family `{other}`: expected `exp` or `negexp`"
            )))
        }
    };
    let procedure = procedure.parse::<Procedure>().map_err(value_error)?;
    let best = theory::best_t(family, procedure, n, budget).map_err(value_error)?;
    let dict = evaluation_dict(py, &best.evaluation)?;
    dict.set_item("t", best.t)?;
    dict.set_item("win_rate", best.win_rate)?;
    Ok(dict)
}

/// The win rate of the policy's rewards against the reference's by the exact U-statistic:
/// `standard` (one reply each), or `bon` / `won` (the best or worst of n on each side).
#[pyfunction]
#[pyo3(signature = (procedure, policy, reference, n=1))]
fn win_rate(procedure: &str, policy: Floats<'_>, reference: Floats<'_>, n: usize) -> PyResult<f64> {
    let (policy, reference) = (to_vec(&policy), to_vec(&reference));
    let (procedure, n) = match procedure.trim().to_ascii_lowercase().as_str() {
        // Best-of-1 is one reply each.
        "standard" => (Procedure::BestOfN, 1),
        other => (other.parse::<Procedure>().map_err(value_error)?, n),
    };
    estimators::procedure_win_rate(procedure, n, &policy, &reference).map_err(value_error)
}

fn interval_dict<'py>(
    py: Python<'py>,
    interval: &estimators::ConfidenceInterval,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("estimate", interval.estimate)?;
    dict.set_item("lower", interval.lower)?;
    dict.set_item("upper", interval.upper)?;
    dict.set_item("level", interval.level)?;
    dict.set_item("std_error", interval.std_error)?;
    Ok(dict)
}

/// The mean of per-prompt values with a bootstrap interval over prompts (seeded, so the same
/// call gives the same interval): `{"estimate", "lower", "upper", "level", "std_error"}`.
#[pyfunction]
#[pyo3(signature = (per_prompt, level=0.95, resamples=2000, seed=0))]
fn bootstrap_mean<'py>(
    py: Python<'py>,
    per_prompt: Floats<'py>,
    level: f64,
    resamples: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let interval = estimators::bootstrap_mean(&to_vec(&per_prompt), level, resamples, seed)
        .map_err(value_error)?;
    interval_dict(py, &interval)
}

/// The KL of the policy's calibrated rewards from uniform (what the theory's curves are drawn
/// against), bias-corrected, with its interval; `policy[i]` and `reference[i]` are prompt i's
/// rewards (every prompt with the same number K of reference rewards).
#[pyfunction]
#[pyo3(signature = (policy, reference, level=0.95, resamples=2000, seed=0))]
fn calibrated_kl<'py>(
    py: Python<'py>,
    policy: Vec<Vec<f64>>,
    reference: Vec<Vec<f64>>,
    level: f64,
    resamples: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    if policy.len() != reference.len() {
        return Err(PyValueError::new_err(format!(
            "{} prompts of policy rewards but {} of reference rewards",
            policy.len(),
            reference.len()
        )));
    }
    let prompts: Vec<(&[f64], &[f64])> = policy
        .iter()
        .zip(&reference)
        .map(|(p, r)| (p.as_slice(), r.as_slice()))
        .collect();
    let interval =
        estimators::calibrated_kl(&prompts, level, resamples, seed).map_err(value_error)?;
    interval_dict(py, &interval)
}

/// The optimal transform for `procedure` (`bon` or `won`) at N and lambda (the paper's fixed
/// point): `{"kl", "expected_u", "win_rate", "lambda", "n"}`.
#[pyfunction]
fn optimal_transform<'py>(
    py: Python<'py>,
    procedure: &str,
    n: u32,
    lam: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let procedure = procedure.parse::<Procedure>().map_err(value_error)?;
    let solution = theory::optimal_transform(procedure, n, lam).map_err(value_error)?;
    let dict = PyDict::new(py);
    dict.set_item("lambda", solution.lambda)?;
    dict.set_item("n", solution.n)?;
    dict.set_item("kl", solution.kl)?;
    dict.set_item("expected_u", solution.expected_u)?;
    dict.set_item("win_rate", solution.win_rate)?;
    Ok(dict)
}

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_function(wrap_pyfunction!(calibrate, module)?)?;
    module.add_function(wrap_pyfunction!(transform, module)?)?;
    module.add_function(wrap_pyfunction!(theory_point, module)?)?;
    module.add_function(wrap_pyfunction!(theory_at_kl, module)?)?;
    module.add_function(wrap_pyfunction!(lambda_for_kl, module)?)?;
    module.add_function(wrap_pyfunction!(best_t, module)?)?;
    module.add_function(wrap_pyfunction!(win_rate, module)?)?;
    module.add_function(wrap_pyfunction!(bootstrap_mean, module)?)?;
    module.add_function(wrap_pyfunction!(calibrated_kl, module)?)?;
    module.add_function(wrap_pyfunction!(optimal_transform, module)?)?;
    Ok(())
}

//! Theory-engine benchmarks (figures in BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion};
use infalign_core::theory;
use infalign_core::{Procedure, Transform};
use std::hint::black_box;

/// The benchmark curve: normexp:12 (the BoN_4-tuned exponential), N = 4, 200 lambdas
/// log-spaced over [1e-2, 1e3] (KL from ~1e-6 to ~7 nats). scripts/bench_theory_numpy.py
/// computes the same curve.
fn curve_lambdas() -> Vec<f64> {
    theory::log_spaced(1e-2, 1e3, 200).expect("valid range")
}

fn bench_curve(c: &mut Criterion) {
    let transform = Transform::NormExp { t: 12.0 };
    let lambdas = curve_lambdas();
    c.bench_function("winrate_curve_200_normexp12_n4", |b| {
        b.iter(|| theory::win_rate_curve(black_box(&transform), 4, black_box(&lambdas)).unwrap())
    });
    let identity = Transform::Identity;
    c.bench_function("winrate_curve_200_identity_n32", |b| {
        b.iter(|| theory::win_rate_curve(black_box(&identity), 32, black_box(&lambdas)).unwrap())
    });
    c.bench_function("evaluate_point_normexp12_n4_lambda10", |b| {
        b.iter(|| theory::evaluate(black_box(&transform), black_box(10.0), 4).unwrap())
    });
    c.bench_function("lambda_for_kl_normexp12_0.5", |b| {
        b.iter(|| theory::lambda_for_kl(black_box(&transform), black_box(0.5)).unwrap())
    });
}

fn bench_optimal(c: &mut Criterion) {
    // 50 KL budgets evenly spaced in [0.04, 2.0] nats.
    let budgets: Vec<f64> = (1..=50).map(|i| 0.04 * i as f64).collect();
    let mut group = c.benchmark_group("optimal");
    group.sample_size(10);
    group.bench_function("envelope_bon_n4_50_points", |b| {
        b.iter(|| theory::optimal_envelope(Procedure::BestOfN, 4, black_box(&budgets)).unwrap())
    });
    group.bench_function("envelope_won_n4_50_points", |b| {
        b.iter(|| theory::optimal_envelope(Procedure::WorstOfN, 4, black_box(&budgets)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_curve, bench_optimal);
criterion_main!(benches);

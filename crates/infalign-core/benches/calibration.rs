//! Calibration throughput against a K = 128 reference table (figures in BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use infalign_core::ReferenceTable;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn bench_calibration(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Rewards on a coarse grid so that ties occur, as with real reward models.
    let reference: Vec<f64> = (0..128)
        .map(|_| (uniform(&mut rng) * 64.0).floor())
        .collect();
    let table = ReferenceTable::new(reference).unwrap();
    let queries: Vec<f64> = (0..4096)
        .map(|_| (uniform(&mut rng) * 70.0 - 3.0).floor())
        .collect();
    let mut out = vec![0.0; queries.len()];

    let mut group = c.benchmark_group("calibration_k128");
    group.throughput(Throughput::Elements(queries.len() as u64));
    group.bench_function("batch_4096", |b| {
        b.iter(|| {
            table
                .calibrate_into(black_box(&queries), black_box(&mut out))
                .unwrap()
        })
    });
    group.bench_function("single_queries_4096", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for &q in black_box(&queries) {
                sum += table.calibrated_reward(q).unwrap();
            }
            sum
        })
    });
    group.finish();
}

criterion_group!(benches, bench_calibration);
criterion_main!(benches);

//! The smoke computation gives the same numbers on every backend this machine has.
//!
//! The wgpu test needs a Vulkan driver; `cargo xtask setup` installs Mesa's lavapipe (a CPU
//! implementation of Vulkan) so that it runs, slowly but for real, on machines without a GPU.

use infalign_model::backend::{cpu_device, gpu_device};
use infalign_model::smoke::{reference_smoke, run_smoke, SmokeResult, COLS, ROWS};

/// f32 kernels against an f64 reference: a handful of ulps of accumulated rounding.
const TOLERANCE: f32 = 1e-5;

fn assert_close(actual: &SmokeResult, expected: &SmokeResult, label: &str) {
    assert_eq!(
        actual.probabilities.len(),
        ROWS * COLS,
        "{label}: wrong size"
    );
    for (k, (a, e)) in actual
        .probabilities
        .iter()
        .zip(&expected.probabilities)
        .enumerate()
    {
        assert!(
            (a - e).abs() <= TOLERANCE,
            "{label}: element {k} is {a}, expected {e}"
        );
    }
    assert!(
        (actual.score - expected.score).abs() <= 4.0 * TOLERANCE,
        "{label}: score {} vs {}",
        actual.score,
        expected.score
    );
}

#[test]
fn reference_rows_are_probability_distributions() {
    let reference = reference_smoke();
    for row in reference.probabilities.chunks(COLS) {
        let total: f32 = row.iter().sum();
        assert!((total - 1.0).abs() < 1e-6, "row sums to {total}");
        assert!(row.iter().all(|p| *p > 0.0 && *p < 1.0));
    }
    // Not a degenerate constant output: the rows differ.
    assert_ne!(
        reference.probabilities[0..COLS],
        reference.probabilities[COLS..2 * COLS]
    );
}

#[test]
fn flex_matches_reference() {
    let result = pollster::block_on(run_smoke(&cpu_device(), "flex")).expect("flex runs");
    assert_close(&result, &reference_smoke(), "flex");
}

#[test]
fn wgpu_matches_flex() {
    let device = pollster::block_on(gpu_device()).expect(
        "wgpu needs a Vulkan driver: run `cargo xtask setup` (installs mesa-vulkan-drivers)",
    );
    let gpu = pollster::block_on(run_smoke(&device, "wgpu")).expect("wgpu runs");
    let cpu = pollster::block_on(run_smoke(&cpu_device(), "flex")).expect("flex runs");
    assert_close(&gpu, &cpu, "wgpu vs flex");
    assert_close(&gpu, &reference_smoke(), "wgpu vs reference");
}

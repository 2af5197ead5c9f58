#!/usr/bin/env python3
"""NumPy peer of the Rust benchmark `winrate_curve_200_normexp12_n4` (crates/infalign-core/benches).

Computes the same win-rate-versus-KL curve -- transform normexp:12, N = 4, 200 lambdas log-spaced
over [1e-2, 1e3] -- i.e. KL, E[U], and the BoN_4 / WoN_4 win rates of the tilted policy
p = exp(lambda Phi) / Z for every lambda, vectorised over all lambdas at once on a fixed grid
(uniform in u plus geometric clustering in w = 1 - u next to u = 1, about 4000 points,
trapezoid rule with cumulative sums for the CDF).

Prints the median wall time of --repeats runs, and with --compare FILE (JSON lines from
`cargo run -p infalign-core --release --example curve`) the largest absolute differences
against the Rust engine.

With --rust-example PATH (the built example, e.g.
target/release/examples/curve), it also times the Rust engine on the same curve in the same run,
alternating rounds of the two sides, and prints both medians and their ratio.

Usage: python scripts/bench_theory_numpy.py [--repeats 30] [--compare rust_curve.jsonl]
                                           [--rust-example PATH] [--rounds 5]
"""
import argparse
import json
import statistics
import subprocess
import time

import numpy as np

T = 12.0
N = 4


def grid(points_uniform=2001, points_geometric=2000):
    u_uniform = np.linspace(0.0, 1.0, points_uniform)
    w_geometric = np.geomspace(1e-12, 0.05, points_geometric)
    w = np.unique(np.concatenate([1.0 - u_uniform, w_geometric, [0.0]]))[::-1]  # w descending
    return 1.0 - w, w


def curve(lambdas, u, w, t=T, n=N):
    """Returns kl, expected_u, bon, won (arrays over lambdas)."""
    phi_minus_top = np.expm1(-t * w) / -np.expm1(-t)  # Phi(u) - 1 for normexp, accurate near 1
    psi = lambdas[:, None] * phi_minus_top[None, :]
    g = np.exp(psi)
    dx = -np.diff(w)  # u increments, exact near u = 1

    def cumulative(f):
        steps = 0.5 * (f[:, 1:] + f[:, :-1]) * dx
        return np.concatenate([np.zeros((f.shape[0], 1)), np.cumsum(steps, axis=1)], axis=1)

    def integral(f):
        return (0.5 * (f[:, 1:] + f[:, :-1]) * dx).sum(axis=1)

    cg = cumulative(g)
    z = cg[:, -1:]
    cdf = np.minimum(cg / z, 1.0)
    p = g / z
    kl = integral(p * (psi - np.log(z)))
    expected_u = integral(p * u[None, :])
    bon = 1.0 - n * integral(cdf ** n * u[None, :] ** (n - 1))
    won = n * integral((1.0 - cdf) ** n * w[None, :] ** (n - 1))
    return kl, expected_u, bon, won


def side_by_side(rust_example, rounds, repeats):
    """Alternate rounds of NumPy and Rust timings of the same curve; report medians and ratio."""
    lambdas = np.geomspace(1e-2, 1e3, 200)
    u, w = grid()
    curve(lambdas, u, w)  # warm-up
    numpy_ms, rust_ms = [], []
    for _ in range(rounds):
        for _ in range(repeats):
            start = time.perf_counter()
            curve(lambdas, u, w)
            numpy_ms.append(1e3 * (time.perf_counter() - start))
        run = subprocess.run(
            [rust_example, "--repeats", str(repeats)], check=True, capture_output=True, text=True
        )
        rust_ms.append(json.loads(run.stdout)["median_ms"])
    numpy_median = statistics.median(numpy_ms)
    rust_median = statistics.median(rust_ms)
    print(f"curve normexp:12, N = 4, 200 lambdas; {rounds} alternating rounds of {repeats} runs")
    print(f"  numpy {np.__version__} ({u.size}-point grid): median {numpy_median:.2f} ms"
          f" (spread {min(numpy_ms):.2f}-{max(numpy_ms):.2f})")
    print(f"  rust infalign-core: median of round medians {rust_median:.2f} ms"
          f" (spread {min(rust_ms):.2f}-{max(rust_ms):.2f})")
    print(f"  ratio numpy / rust = {numpy_median / rust_median:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--compare", help="JSON lines from the Rust example `curve`")
    parser.add_argument("--rust-example", help="path of the built Rust example `curve`, timed beside NumPy")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds with --rust-example")
    args = parser.parse_args()
    if args.rust_example:
        side_by_side(args.rust_example, args.rounds, args.repeats)
        return

    lambdas = np.geomspace(1e-2, 1e3, 200)
    u, w = grid()
    curve(lambdas, u, w)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = curve(lambdas, u, w)
        times.append(time.perf_counter() - start)
    median_ms = 1e3 * statistics.median(times)
    print(f"numpy {np.__version__}: grid of {u.size} points x 200 lambdas")
    print(f"median over {args.repeats} runs: {median_ms:.2f} ms (min {1e3 * min(times):.2f} ms)")

    # Accuracy of this grid against an 8x finer one.
    fine_u, fine_w = grid(16001, 16000)
    fine = curve(lambdas, fine_u, fine_w)
    for name, coarse_values, fine_values in zip(("kl", "expected_u", "bon", "won"), result, fine):
        print(f"  {name:10s} max |grid - 8x finer grid| = {np.max(np.abs(coarse_values - fine_values)):.2e}")

    if args.compare:
        with open(args.compare) as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        rust = {
            "kl": np.array([r["kl"] for r in rows]),
            "expected_u": np.array([r["expected_u"] for r in rows]),
            "bon": np.array([r["win_rate"]["bon"] for r in rows]),
            "won": np.array([r["win_rate"]["won"] for r in rows]),
        }
        for name, values in zip(("kl", "expected_u", "bon", "won"), result):
            print(f"  {name:10s} max |numpy - rust| = {np.max(np.abs(values - rust[name])):.2e}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent high-precision check of the InfAlign theory engine (mpmath).

Reads a JSON array of cases from stdin, each {"transform": SPEC, "lambda": L, "n": N} with SPEC one
of identity, log, exp:T, negexp:T, normexp:T, normnegexp:T, and prints a JSON array of
{"kl", "expected_u", "standard", "bon", "won"} (same order) to stdout.

Method (independent of the Rust code): the CDF of the tilted density p = exp(lambda Phi)/Z is taken
in closed form -- elementary for identity and log, through the exponential integrals Ei and E1 for
the exponential transforms -- in mpmath arbitrary precision, and the remaining one-dimensional
integrals are done by mpmath's tanh-sinh quadrature on a fixed set of breakpoints that cluster
geometrically at both ends of [0, 1].

Run by crates/infalign-core/tests/mpmath_cross_check.rs; needs mpmath (pip install mpmath).
"""
import json
import sys

try:
    import mpmath
    from mpmath import mp, mpf
except ImportError:  # the Rust test turns this into a failure with this message
    sys.stderr.write("theory_check.py: the Python module mpmath is not installed (pip install mpmath)\n")
    sys.exit(3)

mp.dps = 20


def parse(spec):
    kind, _, rest = spec.partition(":")
    t = mpf(rest) if rest else None
    return kind, t


def tilted(spec, lam):
    """Returns (phi, H) with phi(u) the transform and H(u) = int_0^u exp(lam phi(v)) dv."""
    kind, t = parse(spec)
    lam = mpf(lam)
    if kind == "identity":
        phi = lambda u: u
        H = (lambda u: mpmath.expm1(lam * u) / lam) if lam != 0 else (lambda u: u)
    elif kind == "log":
        phi = lambda u: mpmath.log(u) if u > 0 else mpf("-inf")
        H = lambda u: u ** (lam + 1) / (lam + 1)
    elif kind in ("exp", "normexp"):
        # lam phi = c e^{t u} + const; int exp(c e^{t v}) dv = Ei(c e^{t v}) / t.
        if kind == "exp":
            phi = lambda u: mpmath.exp(t * u)
            c, shift = lam, mpf(0)
        else:
            phi = lambda u: mpmath.expm1(t * u) / mpmath.expm1(t)
            c, shift = lam / mpmath.expm1(t), -lam / mpmath.expm1(t)
        H = lambda u: mpmath.exp(shift) * (mpmath.ei(c * mpmath.exp(t * u)) - mpmath.ei(c)) / t
    elif kind in ("negexp", "normnegexp"):
        # lam phi = -c e^{-t u} + const; int exp(-c e^{-t v}) dv = (E1(c e^{-t u}) - E1(c)) / t.
        if kind == "negexp":
            phi = lambda u: -mpmath.exp(-t * u)
            c, shift = lam, mpf(0)
        else:
            phi = lambda u: -mpmath.expm1(-t * u) / -mpmath.expm1(-t)
            c, shift = lam / -mpmath.expm1(-t), lam / -mpmath.expm1(-t)
        H = lambda u: mpmath.exp(shift) * (mpmath.e1(c * mpmath.exp(-t * u)) - mpmath.e1(c)) / t
    else:
        raise ValueError("unsupported transform " + spec)
    return phi, H


def breakpoints():
    points = {mpf(0), mpf(1)}
    for k in range(1, 21):
        points.add(mpf(10) ** (-mpf(k) / 2))
        points.add(1 - mpf(10) ** (-mpf(k) / 2))
    return sorted(points)


POINTS = breakpoints()


def evaluate(case):
    spec, lam, n = case["transform"], mpf(case["lambda"]), int(case["n"])
    phi, H = tilted(spec, lam)
    Z = H(mpf(1))
    cache = {}

    def F(u):
        key = u
        if key not in cache:
            cache[key] = min(max(H(u) / Z, mpf(0)), mpf(1))
        return cache[key]

    def density(u):
        if u <= 0 and spec == "log":
            return mpf(0)
        return mpmath.exp(lam * phi(u)) / Z

    quad = lambda f: mpmath.quad(f, POINTS)
    e_phi = quad(lambda u: density(u) * phi(u) if lam != 0 else mpf(0))
    kl = lam * e_phi - mpmath.log(Z) if lam != 0 else mpf(0)
    expected_u = 1 - quad(F)
    bon = 1 - n * quad(lambda u: F(u) ** n * u ** (n - 1))
    won = n * quad(lambda u: (1 - F(u)) ** n * (1 - u) ** (n - 1))
    return {
        "kl": float(kl),
        "expected_u": float(expected_u),
        "standard": float(expected_u),
        "bon": float(bon),
        "won": float(won),
    }


def main():
    cases = json.load(sys.stdin)
    json.dump([evaluate(case) for case in cases], sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

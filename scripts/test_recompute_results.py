"""Tests of scripts/recompute_results.py (standard library only).

Run from the repository root:  python3 -m unittest scripts/test_recompute_results.py
"""

import gzip
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest
from fractions import Fraction

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "recompute_results.py")
sys.path.insert(0, HERE)
import recompute_results as rr  # noqa: E402


def run_script(*args, cwd=None):
    process = subprocess.run([sys.executable, SCRIPT] + list(args), cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
    return process.returncode, process.stdout, process.stderr


def write_gzip(path, text):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2)


# ------------------------------------------------------------------------------------------
# Brute force, independent of the script's formulas


def brute_subset_win(policy, reference, n, pick):
    """Average over every n-subset of each side of 1{pick(a) > pick(b)} + 0.5 1{equal}."""
    total = Fraction(0)
    count = 0
    for a in itertools.combinations(policy, n):
        for b in itertools.combinations(reference, n):
            x, y = pick(a), pick(b)
            total += 1 if x > y else Fraction(1, 2) if x == y else 0
            count += 1
    return total / count


def brute_candidates(raw, reference, pi, n):
    """Exact figures of a policy pi over candidates `raw` against the uniform reference by
    enumerating every n-tuple of draws (with replacement) on both sides."""
    c = len(raw)
    uniform = [1.0 / c] * c

    def served(probabilities, draws, pick):
        out = {}
        for tuple_ in itertools.product(range(c), repeat=draws):
            p = 1.0
            for i in tuple_:
                p *= probabilities[i]
            value = pick(raw[i] for i in tuple_)
            out[value] = out.get(value, 0.0) + p
        return out

    def win(draws, pick):
        a = served(pi, draws, pick)
        b = served(uniform, draws, pick)
        return sum(pa * pb * (1.0 if x > y else 0.5 if x == y else 0.0)
                   for x, pa in a.items() for y, pb in b.items())

    k = len(reference)
    u = [(sum(1 for z in reference if z < r) + 0.5 * sum(1 for z in reference if z == r)) / k
         for r in raw]
    pu, qu = {}, {}
    for ui, p, q in zip(u, pi, uniform):
        pu[ui] = pu.get(ui, 0.0) + p
        qu[ui] = qu.get(ui, 0.0) + q
    return {
        "kl": sum(p * math.log(p * c) for p in pi if p > 0),
        "standard": win(1, max),
        "bon": win(n, max),
        "won": win(n, min),
        "calibrated_kl": sum(p * math.log(p / qu[x]) for x, p in pu.items() if p > 0),
        "pu": pu,
        "qu": qu,
    }


def brute_figures(collection_prompts, k, n, policies):
    """Mean over prompts of brute_candidates, and the pooled calibrated KL."""
    per = [brute_candidates(raw, reference[:k], pi, n)
           for (raw, reference), pi in zip(collection_prompts, policies)]
    count = len(per)
    pooled_p, pooled_q = {}, {}
    for figures in per:
        for x, p in figures["pu"].items():
            pooled_p[x] = pooled_p.get(x, 0.0) + p / count
        for x, q in figures["qu"].items():
            pooled_q[x] = pooled_q.get(x, 0.0) + q / count
    return {
        "kl": sum(f["kl"] for f in per) / count,
        "win_rate": {name: sum(f[name] for f in per) / count
                     for name in ("standard", "bon", "won")},
        "calibrated_kl_mean": sum(f["calibrated_kl"] for f in per) / count,
        "calibrated_kl_pooled": sum(p * math.log(p / pooled_q[x])
                                    for x, p in pooled_p.items() if p > 0),
    }


def tilt(scores, beta):
    top = max(scores)
    weights = [math.exp((s - top) / beta) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


# ------------------------------------------------------------------------------------------
# Fixtures

# Two prompts: C = 3 candidates (with a tie in the first prompt's raw rewards), K = 3
# references (the exact rows use the first k = 2).
PROMPTS = [
    ([1.0, 1.0, 2.5], [0.5, 1.0, 3.0]),
    ([-0.2, 0.7, 0.1], [0.1, 0.3, -1.0]),
]


def write_collection(path, prompts=PROMPTS, gz=False):
    lines = [json.dumps({"format": "infalign-candidates", "version": 1, "candidates": 3,
                         "references": 3, "reward": "test", "prompts": "test", "seed": 0})]
    for index, (raw, reference) in enumerate(prompts):
        lines.append(json.dumps({"index": index, "key": "%016x" % index, "candidates": raw,
                                 "reference": reference}))
    text = "\n".join(lines) + "\n"
    if gz:
        write_gzip(path, text)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def identity_grid(k):
    return [max(j / (2 * k), 0.25 / k) for j in range(2 * k + 1)]


def exact_row(method, scoring, beta, k, n, grid):
    """A row of exact.json with figures from the brute force."""
    policies = []
    for raw, reference in PROMPTS:
        if scoring == "raw":
            scores = raw
        else:
            scores = []
            for r in raw:
                j = 2 * sum(1 for z in reference[:k] if z < r) + sum(
                    1 for z in reference[:k] if z == r)
                scores.append(grid[j])
        policies.append(tilt(scores, beta))
    figures = brute_figures(PROMPTS, k, n, policies)
    row = {"method": method, "scoring": scoring, "budget": 0.1, "beta": beta,
           "theory": None, "score_grid": None if scoring == "raw" else grid}
    row.update(figures)
    return row


def write_exact(directory, data, k=2, n=2):
    grid = identity_grid(k)
    normexp = [(math.exp(3 * u) - 1) / (math.exp(3) - 1) for u in grid]
    rows = [exact_row("raw", "raw", 0.7, k, n, None),
            exact_row("identity", "identity", 0.3, k, n, grid)]
    curves = [exact_row("normexp:3", "normexp:3", 0.2, k, n, normexp),
              exact_row("optimal", "optimal:bon:2:5", 0.5, k, n, [u ** 3 for u in grid])]
    report = {"data": data, "prompts": len(PROMPTS), "candidates": 3, "k": k,
              "procedure": "bon", "n": n, "rows": rows, "curves": curves}
    path = os.path.join(directory, "exact.json")
    write_json(path, report)
    return path, report


# ------------------------------------------------------------------------------------------


class FormulaTests(unittest.TestCase):
    def test_hand_computed_win_rates(self):
        # Standard: pairs (1,1) 0.5, (1,3) 0, (2,1) 1, (2,3) 0 -> 1.5 / 4.
        self.assertEqual(rr.subset_win_rate([1, 2], [1, 3], 1, "bon"), Fraction(3, 8))
        # BoN_2: max 2 against max 3.
        self.assertEqual(rr.subset_win_rate([1, 2], [1, 3], 2, "bon"), 0)
        # WoN_2: min 1 against min 1, a tie.
        self.assertEqual(rr.subset_win_rate([1, 2], [1, 3], 2, "won"), Fraction(1, 2))

    def test_subset_statistic_against_enumeration(self):
        policy = [0.3, 1.0, 1.0, -2.0, 0.3, 5.0]
        reference = [1.0, 0.3, 0.0, 2.0, 1.0]
        for n in range(1, 6):
            for procedure, pick in (("bon", max), ("won", min)):
                self.assertEqual(rr.subset_win_rate(policy, reference, n, procedure),
                                 brute_subset_win(policy, reference, n, pick),
                                 (n, procedure))

    def test_large_m_is_exact_and_quick(self):
        a = [float(i % 37) for i in range(300)]
        b = [float(i % 41) for i in range(280)]
        value = rr.subset_win_rate(a, b, 16, "bon")
        self.assertTrue(0 <= value <= 1)
        # Identical sides win exactly half.
        self.assertEqual(rr.subset_win_rate(a, a, 16, "won"), Fraction(1, 2))

    def test_mid_rank(self):
        self.assertEqual(rr.mid_rank(1.0, [1.0, 3.0]), 0.25)
        self.assertEqual(rr.mid_rank(2.0, [1.0, 3.0]), 0.5)
        self.assertEqual(rr.mid_rank(3.0, [1.0, 3.0]), 0.75)
        self.assertEqual(rr.mid_rank(-0.0, [0.0]), 0.5)

    def test_per_prompt_calibrated_kl_by_hand(self):
        # A reward tied with both references spreads over all three ranks (one group each):
        # the uniform, so only the Miller-Madow term is left, -(3 - 1) / (2 * 10).
        self.assertAlmostEqual(rr.per_prompt_calibrated_kl([[0.5] * 10], [[0.5, 0.5]]), -0.1,
                               places=14)
        # Above every reference: one rank of five, ln 5, in both prompts.
        refs = [0.1, 0.4, 0.5, 0.9]
        self.assertAlmostEqual(rr.per_prompt_calibrated_kl([[2.0, 3.0], [1.0]], [refs, refs]),
                               math.log(5), places=14)
        # 15 references: 16 ranks in 8 groups of two. Two rewards in rank 0 and two in rank 15:
        # groups 0 and 7 at 1/2 each against 1/8, KL ln 4, less (2 - 1) / 8; a prompt without
        # policy rewards is left out.
        refs = [float(i) for i in range(15)]
        self.assertAlmostEqual(
            rr.per_prompt_calibrated_kl([[-1.0, -2.0, 20.0, 30.0], []], [refs, refs]),
            math.log(4) - 1 / 8, places=14)

    def test_served_pmf_against_enumeration_c3_n2(self):
        raw = [1.0, 1.0, 2.5]
        pi = [0.2, 0.5, 0.3]
        prompt = rr.PromptAtK(raw, [0.5, 1.0])
        p = [0.0] * len(prompt.levels)
        for probability, level in zip(pi, prompt.level):
            p[level] += probability
        expected = brute_candidates(raw, [0.5, 1.0], pi, 2)
        for name, n in (("standard", 1), ("bon", 2), ("won", 2)):
            procedure = "standard" if name == "standard" else name
            got = rr.level_win_rate(rr.served(p, n, procedure), rr.served(prompt.q, n, procedure))
            self.assertAlmostEqual(got, expected[name], places=14, msg=name)

    def test_uniform_policy_c4(self):
        raw = [0.1, 0.4, 0.4, 2.0]
        prompt = rr.PromptAtK(raw, [0.0, 0.4, 1.0])
        results = rr.evaluate_policy([prompt], 3, 4, [[0.25] * 4])
        for name in ("win_rate.standard", "win_rate.bon", "win_rate.won"):
            self.assertEqual(results[name], 0.5, name)
        for name in ("kl", "calibrated_kl_mean", "calibrated_kl_pooled"):
            self.assertEqual(results[name], 0.0, name)
        # The tilt at a huge beta is the uniform policy too.
        tilted = rr.evaluate_tilt([prompt], 3, 4, True, None, 1e300)
        for name, value in results.items():
            self.assertAlmostEqual(tilted[name], value, places=15)

    def test_transforms(self):
        self.assertEqual(rr.transform_function("identity")(0.3), 0.3)
        self.assertAlmostEqual(rr.transform_function("normexp:3")(0.4),
                               (math.exp(1.2) - 1) / (math.exp(3) - 1), places=15)
        self.assertAlmostEqual(rr.transform_function("normnegexp:2")(0.4),
                               (1 - math.exp(-0.8)) / (1 - math.exp(-2)), places=15)
        self.assertAlmostEqual(rr.transform_function("negexp:2")(0.4), -math.exp(-0.8))
        self.assertAlmostEqual(rr.transform_function("exp:2")(0.4), math.exp(0.8))
        self.assertTrue(0 < rr.transform_function("normexp:2000")(0.999) < 1)
        self.assertIsNone(rr.transform_function("optimal:bon:4:5"))


# ------------------------------------------------------------------------------------------


REPLIES_HEADER = "prompt_index,side,reply_index,raw_reward,calibrated_reward,log_ratio\n"


def replies_text(prompts):
    """prompts: [(policy rewards, reference rewards, log ratios)]."""
    lines = [REPLIES_HEADER]
    for index, (policy, reference, ratios) in enumerate(prompts):
        ordered = sorted(reference)
        for i, (r, lr) in enumerate(zip(policy, ratios)):
            lines.append("%d,policy,%d,%r,%r,%r\n" % (index, i, r, rr.mid_rank(r, ordered), lr))
        for i, r in enumerate(reference):
            lines.append("%d,reference,%d,%r,%r,\n" % (index, i, r, rr.mid_rank(r, ordered)))
    return "".join(lines)


EVAL_PROMPTS = [
    ([1.0, 2.0], [1.0, 3.0], [0.5, -0.1]),
    ([4.0, 0.0], [1.0, 2.0], [1.0, 2.0]),
]


def eval_doc(standard, bon, won, kl):
    def ci(value):
        return {"estimate": value, "lower": 0.0, "upper": 1.0, "std_error": 0.1,
                "level": 0.95, "resamples": 100}
    return {"policy": "ctrl", "settings": {"samples": 2, "ns": [2]},
            "report": {"prompts": 2, "samples": 2, "kl": ci(kl), "standard": ci(standard),
                       "procedures": [{"procedure": "bon", "n": 2, "win_rate": ci(bon)},
                                      {"procedure": "won", "n": 2, "win_rate": ci(won)}]}}


class EvalFileTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = os.path.join(self.tmp.name, "results", "run")
        os.makedirs(self.dir)
        # Prompt 0: standard 3/8, BoN_2 0, WoN_2 1/2, KL 0.2.
        # Prompt 1: policy [4, 0] vs [1, 2]: standard 2/4, BoN_2 4 > 2: 1, WoN_2 0 < 1: 0; KL 1.5.
        self.stated = dict(standard=(0.375 + 0.5) / 2, bon=0.5, won=0.25, kl=(0.2 + 1.5) / 2)
        write_json(os.path.join(self.dir, "eval.json"), eval_doc(**self.stated))
        self.replies = os.path.join(self.dir, "replies.csv.gz")
        write_gzip(self.replies, replies_text(EVAL_PROMPTS))

    def tearDown(self):
        self.tmp.cleanup()

    def test_ok(self):
        code, out, err = run_script(self.tmp.name)
        self.assertEqual(code, 0, out + err)
        self.assertIn("eval.json: ok (", out)

    def test_off_by_1e6_is_a_mismatch(self):
        stated = dict(self.stated)
        stated["bon"] += 1e-6
        write_json(os.path.join(self.dir, "eval.json"), eval_doc(**stated))
        code, out, _ = run_script(self.tmp.name)
        self.assertEqual(code, 1, out)
        self.assertIn("MISMATCH report.procedures[0] (bon_2).win_rate.estimate", out)
        self.assertIn("recomputed 0.5", out)
        # A looser tolerance accepts it.
        code, out, _ = run_script(self.tmp.name, "--tolerance", "1e-5")
        self.assertEqual(code, 0, out)

    def test_wrong_calibrated_reward_is_a_mismatch(self):
        text = replies_text(EVAL_PROMPTS).replace("0,policy,1,2.0,0.5,", "0,policy,1,2.0,0.55,")
        write_gzip(self.replies, text)
        code, out, _ = run_script(self.tmp.name)
        self.assertEqual(code, 1, out)
        self.assertIn("replies.csv.gz:3 calibrated_reward", out)

    def test_truncated_gzip(self):
        with open(self.replies, "rb") as handle:
            data = handle.read()
        with open(self.replies, "wb") as handle:
            handle.write(data[:len(data) - 12])
        code, out, err = run_script(self.tmp.name)
        self.assertEqual(code, 2, out + err)
        self.assertIn("replies.csv.gz:", err)
        self.assertIn("truncated or corrupt", err)

    def test_missing_column(self):
        text = replies_text(EVAL_PROMPTS).replace(",log_ratio\n", "\n", 1)
        write_gzip(self.replies, text)
        code, out, err = run_script(self.tmp.name)
        self.assertEqual(code, 2, out + err)
        self.assertIn("replies.csv.gz:1: header", err)
        self.assertIn("log_ratio", err)

    def test_non_numeric_field(self):
        text = replies_text(EVAL_PROMPTS).replace("1,policy,0,4.0,", "1,policy,0,four,")
        write_gzip(self.replies, text)
        code, out, err = run_script(self.tmp.name)
        self.assertEqual(code, 2, out + err)
        self.assertIn("replies.csv.gz:6: column raw_reward: 'four' is not a number", err)

    def test_bad_json(self):
        with open(os.path.join(self.dir, "eval.json"), "w") as handle:
            handle.write('{\n  "report": {\n  oops\n}')
        code, out, err = run_script(self.tmp.name)
        self.assertEqual(code, 2, out + err)
        self.assertIn("eval.json:3: not JSON", err)

    def test_not_recomputable_is_listed_and_strict_fails(self):
        old = os.path.join(self.tmp.name, "results", "old")
        os.makedirs(old)
        write_json(os.path.join(old, "eval.json"), eval_doc(0.5, 0.5, 0.5, 0.0))
        code, out, _ = run_script(self.tmp.name)
        self.assertEqual(code, 0, out)
        self.assertIn("old/eval.json: not recomputable (no replies.csv.gz)", out)
        code, out, _ = run_script("--list", self.tmp.name)
        self.assertEqual(code, 0, out)
        self.assertIn("old/eval.json: not recomputable (no replies.csv.gz)", out)
        self.assertNotIn("run/eval.json", out)
        code, out, _ = run_script("--list", "--strict", self.tmp.name)
        self.assertEqual(code, 1, out)
        code, out, _ = run_script("--strict", self.tmp.name)
        self.assertEqual(code, 1, out)

    def test_nan_log_ratio_cannot_match_a_number(self):
        text = replies_text(EVAL_PROMPTS).replace("1,policy,1,0.0,0.0,2.0",
                                                  "1,policy,1,0.0,0.0,NaN")
        write_gzip(self.replies, text)
        code, out, _ = run_script(self.tmp.name)
        self.assertEqual(code, 1, out)
        self.assertIn("report.kl.estimate", out)


# ------------------------------------------------------------------------------------------


class ExactFileTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        os.makedirs(os.path.join(self.root, "data"))
        os.makedirs(os.path.join(self.root, "results", "exact"))
        write_collection(os.path.join(self.root, "data", "c.jsonl"))
        self.out = os.path.join(self.root, "results", "exact")
        self.path, self.report = write_exact(self.out, "data/c.jsonl")

    def tearDown(self):
        self.tmp.cleanup()

    def test_ok_against_brute_force(self):
        code, out, err = run_script("results", cwd=self.root)
        self.assertEqual(code, 0, out + err)
        self.assertIn("exact.json: ok (", out)
        self.assertIn("4 rows", out)

    def test_off_by_1e6_is_a_mismatch(self):
        self.report["curves"][0]["win_rate"]["won"] += 1e-6
        write_json(self.path, self.report)
        code, out, _ = run_script("results", cwd=self.root)
        self.assertEqual(code, 1, out)
        self.assertIn("MISMATCH curves[0] (normexp:3 @ 0.1 nats).win_rate.won", out)

    def test_pooled_kl_mismatch(self):
        self.report["rows"][1]["calibrated_kl_pooled"] += 1e-6
        write_json(self.path, self.report)
        code, out, _ = run_script("results", cwd=self.root)
        self.assertEqual(code, 1, out)
        self.assertIn("rows[1] (identity @ 0.1 nats).calibrated_kl_pooled", out)

    def test_score_grid_checked(self):
        grid = self.report["rows"][1]["score_grid"]
        grid[2] *= 1 + 1e-9
        write_json(self.path, self.report)
        code, out, _ = run_script("results", cwd=self.root)
        self.assertEqual(code, 1, out)
        self.assertIn("score_grid[2] (identity", out)

    def test_data_relative_to_result_dir_and_gz(self):
        os.remove(os.path.join(self.root, "data", "c.jsonl"))
        write_collection(os.path.join(self.out, "c.jsonl.gz"), gz=True)
        self.report["data"] = "c.jsonl"
        write_json(self.path, self.report)
        code, out, err = run_script("results", cwd=self.root)
        self.assertEqual(code, 0, out + err)

    def test_missing_data_not_recomputable(self):
        self.report["data"] = "/nonexistent/c.jsonl"
        write_json(self.path, self.report)
        code, out, _ = run_script("results", cwd=self.root)
        self.assertEqual(code, 0, out)
        self.assertIn("not recomputable (data file /nonexistent/c.jsonl not found)", out)

    def test_truncated_collection_gzip(self):
        target = os.path.join(self.root, "data", "c.jsonl.gz")
        write_collection(target, gz=True)
        with open(target, "rb") as handle:
            data = handle.read()
        with open(target, "wb") as handle:
            handle.write(data[:-10])
        self.report["data"] = "data/c.jsonl.gz"
        write_json(self.path, self.report)
        code, out, err = run_script("results", cwd=self.root)
        self.assertEqual(code, 2, out + err)
        self.assertIn("c.jsonl.gz:", err)

    def test_bad_collection_line(self):
        target = os.path.join(self.root, "data", "c.jsonl")
        with open(target) as handle:
            lines = handle.readlines()
        lines[2] = lines[2].replace("0.7", '"x"')
        with open(target, "w") as handle:
            handle.writelines(lines)
        code, out, err = run_script("results", cwd=self.root)
        self.assertEqual(code, 2, out + err)
        self.assertIn("c.jsonl:3: prompt 1: candidates reward 1 is 'x'", err)


# ------------------------------------------------------------------------------------------


class TrainFileTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        self.run = os.path.join(self.root, "results", "train")
        os.makedirs(self.run)
        write_collection(os.path.join(self.run, "c.jsonl"))
        self.policies = [[0.2, 0.5, 0.3], [0.6, 0.0, 0.4]]
        self.write_policy(self.policies)
        self.k, self.n = 3, 2
        self.result = {"data": "c.jsonl", "k": self.k, "n": self.n, "steps": 10, "beta": 0.1,
                       "config": {}, "exact_at_same_kl": None}
        self.result.update(brute_figures(PROMPTS, self.k, self.n, self.policies))
        self.path = os.path.join(self.run, "result.json")
        write_json(self.path, self.result)

    def tearDown(self):
        self.tmp.cleanup()

    def write_policy(self, policies, mangle=None):
        lines = ["prompt_index,candidate_index,probability\n"]
        for p, probabilities in enumerate(policies):
            for c, value in enumerate(probabilities):
                lines.append("%d,%d,%r\n" % (p, c, value))
        text = "".join(lines)
        if mangle:
            text = mangle(text)
        write_gzip(os.path.join(self.run, "policy.csv.gz"), text)

    def test_ok_against_brute_force(self):
        code, out, err = run_script(self.root)
        self.assertEqual(code, 0, out + err)
        self.assertIn("result.json: ok (6 figures", out)

    def test_uniform_policy(self):
        self.write_policy([[1 / 3] * 3, [1 / 3] * 3])
        self.result.update({"kl": 0.0, "win_rate": {"standard": 0.5, "bon": 0.5, "won": 0.5},
                            "calibrated_kl_mean": 0.0, "calibrated_kl_pooled": 0.0})
        write_json(self.path, self.result)
        code, out, err = run_script(self.root)
        self.assertEqual(code, 0, out + err)

    def test_off_by_1e6_is_a_mismatch(self):
        self.result["calibrated_kl_mean"] += 1e-6
        write_json(self.path, self.result)
        code, out, _ = run_script(self.root)
        self.assertEqual(code, 1, out)
        self.assertIn("MISMATCH calibrated_kl_mean", out)

    def test_non_numeric_probability(self):
        self.write_policy(self.policies, lambda text: text.replace("1,2,0.4", "1,2,abc"))
        code, out, err = run_script(self.root)
        self.assertEqual(code, 2, out + err)
        self.assertIn("policy.csv.gz:7: column probability: 'abc' is not a number", err)

    def test_missing_column(self):
        self.write_policy(self.policies, lambda text: text.replace(",probability", "", 1))
        code, out, err = run_script(self.root)
        self.assertEqual(code, 2, out + err)
        self.assertIn("policy.csv.gz:1: header", err)

    def test_no_policy_file(self):
        os.remove(os.path.join(self.run, "policy.csv.gz"))
        code, out, _ = run_script(self.root)
        self.assertEqual(code, 0, out)
        self.assertIn("result.json: not recomputable (no policy.csv.gz)", out)


if __name__ == "__main__":
    unittest.main()

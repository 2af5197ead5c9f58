#!/usr/bin/env python3
"""Recompute the figures of InfAlign result files from their committed per-reply data.

Standalone: Python 3.9+ and the standard library only. Written from the definitions in
docs (theory notes, sections 1, 2, 3 and 7), not from the Rust implementation.

Usage (from the repository root):

    python3 scripts/recompute_results.py [PATH ...] [--tolerance 1e-9] [--list] [--strict]
                                         [--verbose]

PATH is a directory (walked for eval.json, exact.json and result.json; default: results/) or
one of those files. One line per result file is printed:

    PATH: ok (N figures, max |diff| D)
    PATH: MISMATCH FIGURE: stated S, recomputed R (|diff| D) [and M more]
    PATH: not recomputable (no replies.csv.gz)
    PATH: ERROR FILE:LINE: what is wrong

Exit status: 0 when every recomputable figure matches; 1 when any figure differs by more than
the tolerance (or, with --strict, when a result file cannot be recomputed); 2 when a file is
unreadable or malformed (the message names the file and, where there is one, the line).

--list only lists the result files that lack the raw data to be recomputed (nothing is
recomputed); --strict makes such files fail the run (exit 1).

What is recomputed:

* eval.json + replies.csv.gz beside it (policy against pi_ref): report.standard.estimate,
  report.procedures[*].win_rate.estimate (BoN_N / WoN_N by the exact U-statistic over all
  N-subsets), report.kl.estimate (k1), report.kl_k3.estimate (k3), report.policy_reward.estimate,
  report.reference_reward.estimate, report.prompts, report.samples, and every row's
  calibrated_reward (mid-rank among the prompt's reference rewards), and
  report.calibrated_kl_per_prompt.estimate where present. Not recomputable from the data alone:
  the bootstrap intervals and report.calibrated_kl (bootstrap bias-corrected).
* exact.json (`infalign candidates exact`) + its collection (`data`): for every row of `rows`
  and `curves`: kl, win_rate.standard / .bon / .won, calibrated_kl_mean, calibrated_kl_pooled
  of the tilt pi ∝ exp(score / beta) over the candidates, and score_grid against its
  transform (identity, log, exp:T, negexp:T, normexp:T, normnegexp:T; relative tolerance
  1e-12); plus the file's `prompts` and `candidates` counts. `theory` is not checked.
* result.json (`infalign candidates train`) + policy.csv.gz beside it + its collection: kl,
  win_rate.standard / .bon / .won, calibrated_kl_mean, calibrated_kl_pooled of the stored
  policy. `exact_at_same_kl` is not checked.

A data path recorded in a result file is resolved against the current directory first, then
against the result file's directory; a `.jsonl` collection that is missing is also looked for
as `.jsonl.gz`.
"""

import argparse
import bisect
import gzip
import json
import math
import os
import re
import sys
import zlib
from fractions import Fraction

RESULT_NAMES = ("eval.json", "exact.json", "result.json")
REPLIES_FILE = "replies.csv.gz"
POLICY_FILE = "policy.csv.gz"
REPLIES_COLUMNS = ("prompt_index", "side", "reply_index", "raw_reward", "calibrated_reward",
                   "log_ratio")
POLICY_COLUMNS = ("prompt_index", "candidate_index", "probability")
COLLECTION_FORMAT = "infalign-candidates"
GRID_RELATIVE_TOLERANCE = 1e-12
# A stored policy whose probabilities of one prompt do not sum to 1 within this is malformed.
POLICY_SUM_TOLERANCE = 1e-6

# Rust's `{:?}` of an f64: shortest round-trip decimal, possibly with an exponent, or NaN / inf.
_NUMBER = re.compile(r"^-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_NON_FINITE = {"NaN": math.nan, "inf": math.inf, "-inf": -math.inf}
_INTEGER = re.compile(r"^[0-9]+$")


# ------------------------------------------------------------------------------------------
# Errors


class BadInput(Exception):
    """An unreadable or malformed file: exit status 2."""

    def __init__(self, path, message, line=None):
        self.path = path
        self.line = line
        self.message = message
        where = path if line is None else "%s:%d" % (path, line)
        super().__init__("%s: %s" % (where, message))


class NotRecomputable(Exception):
    """The raw data a result file needs is not there."""


# ------------------------------------------------------------------------------------------
# Reading


def parse_float(text, path, line, column):
    """A float written by Rust's `{:?}` (NaN and +-inf allowed; the caller checks finiteness)."""
    if text in _NON_FINITE:
        return _NON_FINITE[text]
    if not _NUMBER.match(text):
        raise BadInput(path, "column %s: %r is not a number" % (column, text), line)
    return float(text)


def parse_index(text, path, line, column):
    if not _INTEGER.match(text):
        raise BadInput(path, "column %s: %r is not a non-negative integer" % (column, text), line)
    return int(text)


def open_text(path):
    """A text stream of `path`, gunzipped when it starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(2)
    except OSError as error:
        raise BadInput(path, "cannot read: %s" % (error.strerror or error))
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def read_lines(path):
    """Yields (line number, line without its end, whether it ended with a newline)."""
    stream = open_text(path)
    number = 0
    try:
        with stream:
            for raw in stream:
                number += 1
                complete = raw.endswith("\n")
                yield number, raw.rstrip("\r\n"), complete
    except (EOFError, OSError, zlib.error) as error:
        raise BadInput(path, "gzip data truncated or corrupt after line %d (%s)" % (number, error),
                       number + 1)
    except UnicodeDecodeError as error:
        raise BadInput(path, "not UTF-8 text (%s)" % error, number + 1)


def read_csv(path, columns):
    """Yields (line number, dict of the named columns) of a comma-separated file whose header
    names at least `columns` (in any order)."""
    lines = read_lines(path)
    header = None
    for number, text, _ in lines:
        if header is None:
            header = text.split(",")
            missing = [name for name in columns if name not in header]
            if missing:
                raise BadInput(path, "header %r lacks column%s %s" % (
                    text, "s" if len(missing) > 1 else "", ", ".join(missing)), number)
            positions = [header.index(name) for name in columns]
            continue
        if text == "":
            raise BadInput(path, "empty line", number)
        fields = text.split(",")
        if len(fields) != len(header):
            raise BadInput(path, "%d fields, the header has %d" % (len(fields), len(header)),
                           number)
        yield number, {name: fields[position] for name, position in zip(columns, positions)}
    if header is None:
        raise BadInput(path, "empty file; expected a header line", 1)


def read_json(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise BadInput(path, "cannot read: %s" % (error.strerror or error))
    except UnicodeDecodeError as error:
        raise BadInput(path, "not UTF-8 text (%s)" % error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(path, "not JSON: %s (column %d)" % (error.msg, error.colno), error.lineno)


def field(obj, dotted, path, kind="number"):
    """`obj[a][b]...` for `dotted` = "a.b...", checked: number (None stands for a non-finite
    value serialised as null), int, str, list or dict."""
    value = obj
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BadInput(path, "field %s is missing" % dotted)
        value = value[part]
    if kind == "number":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(path, "field %s is %r, not a number" % (dotted, value))
        return float(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadInput(path, "field %s is %r, not a non-negative integer" % (dotted, value))
        return value
    expected = {"str": str, "list": list, "dict": dict}[kind]
    if not isinstance(value, expected):
        raise BadInput(path, "field %s is %r, not a %s" % (dotted, value, kind))
    return value


def collection_prompts(recorded, path, k, collections):
    """The collection a result file records (read once per path) and its prompts calibrated
    with the first k reference rewards."""
    data = resolve_data(recorded, path)
    if data is None:
        raise NotRecomputable("data file %s not found" % recorded)
    collection = collections.get(data)
    if k < 1 or k > collection.references:
        raise BadInput(path, "field k is %d but %s has %d reference rewards per prompt"
                       % (k, data, collection.references))
    return collection, collection.at_k(k)


def resolve_data(recorded, result_path):
    """The collection `recorded` in `result_path`: relative to the cwd, then to the result
    file's directory; `.jsonl` also as `.jsonl.gz`. None when not found."""
    bases = [recorded]
    if not os.path.isabs(recorded):
        bases.append(os.path.join(os.path.dirname(result_path), recorded))
    for base in bases:
        if os.path.isfile(base):
            return base
    if recorded.endswith(".jsonl"):
        for base in bases:
            if os.path.isfile(base + ".gz"):
                return base + ".gz"
    return None


# ------------------------------------------------------------------------------------------
# Figures


class Figures:
    """Stated against recomputed values of one result file."""

    def __init__(self, tolerance):
        self.tolerance = tolerance
        self.count = 0
        self.largest = 0.0
        self.mismatches = []

    def check(self, name, stated, recomputed, tolerance=None):
        """`stated` None is a non-finite value serialised as JSON null."""
        tolerance = self.tolerance if tolerance is None else tolerance
        self.count += 1
        if stated is None or recomputed is None or math.isnan(stated) or math.isnan(recomputed):
            same = (stated is None or math.isnan(stated)) and (
                recomputed is None or math.isnan(recomputed))
            if not same:
                self.mismatches.append((name, stated, recomputed, math.inf))
            return
        if stated == recomputed:  # also equal infinities
            return
        diff = abs(stated - recomputed)
        if not diff <= tolerance:
            self.mismatches.append((name, stated, recomputed, diff))
        else:
            self.largest = max(self.largest, diff)

    def check_relative(self, name, stated, recomputed, relative):
        self.count += 1
        if stated is None or recomputed is None:
            if not (stated is None and recomputed is None):
                self.mismatches.append((name, stated, recomputed, math.inf))
            return
        if stated == recomputed:
            return
        diff = abs(stated - recomputed)
        if not diff <= relative * max(abs(stated), abs(recomputed)):
            self.mismatches.append((name, stated, recomputed, diff))


def fmt(value):
    if value is None:
        return "null"
    return repr(value)


# ------------------------------------------------------------------------------------------
# Kind 1: eval.json + replies.csv.gz


def subset_weights(m, n, procedure):
    """Integer numerators over C(m, n): the probability that the served reply (BoN: maximum,
    WoN: minimum) of a uniformly random n-subset of m sorted values is the i-th smallest."""
    if procedure == "bon":
        return [math.comb(i - 1, n - 1) for i in range(1, m + 1)]
    return [math.comb(m - i, n - 1) for i in range(1, m + 1)]


def subset_win_rate(policy, reference, n, procedure):
    """Exact W(T(pi) > T(pi_ref)) of one prompt, T = BoN_n or WoN_n over random n-subsets of
    each side, ties split: a Fraction."""
    a = sorted(policy)
    b = sorted(reference)
    wa = subset_weights(len(a), n, procedure)
    wb = subset_weights(len(b), n, procedure)
    # The reference side as distinct values with summed weights and prefix sums.
    values, weights = [], []
    for value, weight in zip(b, wb):
        if values and values[-1] == value:
            weights[-1] += weight
        else:
            values.append(value)
            weights.append(weight)
    below = [0]
    for weight in weights:
        below.append(below[-1] + weight)
    numerator = 0
    for value, weight in zip(a, wa):
        if weight == 0:
            continue
        index = bisect.bisect_left(values, value)
        tie = weights[index] if index < len(values) and values[index] == value else 0
        numerator += weight * (2 * below[index] + tie)
    return Fraction(numerator, 2 * math.comb(len(a), n) * math.comb(len(b), n))


def mid_rank(value, sorted_reference):
    """(#{b < r} + 0.5 #{b = r}) / len: a float, correctly rounded."""
    below = bisect.bisect_left(sorted_reference, value)
    ties = bisect.bisect_right(sorted_reference, value) - below
    return float(Fraction(2 * below + ties, 2 * len(sorted_reference)))


def read_replies(path):
    """{prompt: {"policy": [(line, raw, calibrated, log_ratio)], "reference": [...]}}."""
    prompts = {}
    seen = set()
    for line, row in read_csv(path, REPLIES_COLUMNS):
        prompt = parse_index(row["prompt_index"], path, line, "prompt_index")
        side = row["side"]
        if side not in ("policy", "reference"):
            raise BadInput(path, "column side: %r is neither policy nor reference" % side, line)
        reply = parse_index(row["reply_index"], path, line, "reply_index")
        if (prompt, side, reply) in seen:
            raise BadInput(path, "prompt %d has %s reply %d twice" % (prompt, side, reply), line)
        seen.add((prompt, side, reply))
        raw = parse_float(row["raw_reward"], path, line, "raw_reward")
        if not math.isfinite(raw):
            raise BadInput(path, "column raw_reward: %r is not finite" % row["raw_reward"], line)
        calibrated = parse_float(row["calibrated_reward"], path, line, "calibrated_reward")
        if not math.isfinite(calibrated):
            raise BadInput(path, "column calibrated_reward: %r is not finite"
                           % row["calibrated_reward"], line)
        if side == "policy":
            if row["log_ratio"] == "":
                raise BadInput(path, "column log_ratio is empty on a policy row", line)
            ratio = parse_float(row["log_ratio"], path, line, "log_ratio")
        else:
            if row["log_ratio"] != "":
                raise BadInput(path, "column log_ratio should be empty on a reference row", line)
            ratio = None
        prompts.setdefault(prompt, {"policy": [], "reference": []})[side].append(
            (line, raw, calibrated, ratio))
    count = len(prompts)
    for prompt in range(count):
        if prompt not in prompts:
            raise BadInput(path, "prompt indices are not 0..%d: prompt %d has no rows"
                           % (count - 1, prompt))
    for prompt in range(count):
        for side in ("policy", "reference"):
            if not prompts[prompt][side]:
                raise BadInput(path, "prompt %d has no %s rows" % (prompt, side))
    return [prompts[p] for p in range(count)]


def mean_of_means(per_prompt):
    return math.fsum(per_prompt) / len(per_prompt)


# Groups of consecutive ranks per prompt in the per-prompt calibrated KL (the README's
# "per prompt" calibrated KL; infalign's PER_PROMPT_KL_CELLS).
PER_PROMPT_KL_GROUPS = 8


def per_prompt_calibrated_kl(policy, reference):
    """Mean over prompts of KL(histogram of the policy rewards' ranks || pi_ref's), ranks
    0..K among the prompt's K reference rewards (a reward tied with t references shares 1/(t+1)
    with each of the ranks it spans) counted in G = min(8, K + 1) groups of consecutive ranks
    (rank r in group floor(r G / (K + 1))), minus the Miller-Madow term (occupied - 1) / (2 n).
    Prompts without policy rewards are left out."""
    values = []
    for rewards, refs in zip(policy, reference):
        if not rewards:
            continue
        ranks = len(refs) + 1
        groups = min(PER_PROMPT_KL_GROUPS, ranks)
        mass = [0.0] * groups
        for rank in range(ranks):
            mass[rank * groups // ranks] += 1.0 / ranks
        counts = [0.0] * groups
        ordered = sorted(refs)
        for reward in rewards:
            below = bisect.bisect_left(ordered, reward)
            ties = bisect.bisect_right(ordered, reward) - below
            for rank in range(below, below + ties + 1):
                counts[rank * groups // ranks] += 1.0 / (ties + 1)
        n = math.fsum(counts)
        occupied = sum(1 for c in counts if c > 0)
        kl = math.fsum(c / n * math.log(c / n / q) for c, q in zip(counts, mass) if c > 0)
        values.append(kl - (occupied - 1) / (2 * n))
    return mean_of_means(values) if values else math.nan


def check_eval(path, figures):
    replies_path = os.path.join(os.path.dirname(path), REPLIES_FILE)
    doc = read_json(path)
    if not isinstance(doc, dict) or "report" not in doc:
        raise BadInput(path, "not an evaluation (no field report)")
    report = field(doc, "report", path, "dict")
    if not os.path.isfile(replies_path):
        raise NotRecomputable("no %s" % REPLIES_FILE)
    prompts = read_replies(replies_path)

    figures.check("report.prompts", float(field(doc, "report.prompts", path, "int")),
                  float(len(prompts)))
    sizes = {len(p[side]) for p in prompts for side in ("policy", "reference")}
    if "samples" in report:
        figures.check("report.samples", float(field(doc, "report.samples", path, "int")),
                      float(sizes.pop()) if len(sizes) == 1 else math.nan)

    # Every row's calibrated reward.
    rows_checked = 0
    for index, prompt in enumerate(prompts):
        reference = sorted(raw for _, raw, _, _ in prompt["reference"])
        for side in ("policy", "reference"):
            for line, raw, calibrated, _ in prompt[side]:
                figures.check("%s:%d calibrated_reward (prompt %d, %s)"
                              % (replies_path, line, index, side),
                              calibrated, mid_rank(raw, reference))
                rows_checked += 1

    policy = [[raw for _, raw, _, _ in p["policy"]] for p in prompts]
    reference = [[raw for _, raw, _, _ in p["reference"]] for p in prompts]

    def win_rate(n, procedure):
        for index, (a, b) in enumerate(zip(policy, reference)):
            if n < 1 or n > min(len(a), len(b)):
                raise BadInput(path, "%s_%d needs 1 <= N <= the replies per side, but prompt %d "
                               "has %d policy and %d reference replies in %s"
                               % (procedure, n, index, len(a), len(b), replies_path))
        total = sum((subset_win_rate(a, b, n, procedure) for a, b in zip(policy, reference)),
                    Fraction(0))
        return float(total / len(policy))

    figures.check("report.standard.estimate",
                  field(doc, "report.standard.estimate", path), win_rate(1, "bon"))
    for index, entry in enumerate(field(doc, "report.procedures", path, "list")):
        if not isinstance(entry, dict):
            raise BadInput(path, "report.procedures[%d] is not an object" % index)
        procedure = entry.get("procedure")
        if procedure not in ("bon", "won"):
            raise BadInput(path, "report.procedures[%d].procedure is %r, not bon or won"
                           % (index, procedure))
        n = field(entry, "n", path, "int")
        figures.check("report.procedures[%d] (%s_%d).win_rate.estimate" % (index, procedure, n),
                      field(entry, "win_rate.estimate", path), win_rate(n, procedure))

    def log_ratio_mean(term):
        values = []
        for p in prompts:
            ratios = [ratio for _, _, _, ratio in p["policy"]]
            if not all(math.isfinite(r) for r in ratios):
                return math.nan  # a missing log ratio: the KL cannot be recomputed
            values.append(math.fsum(term(r) for r in ratios) / len(ratios))
        return mean_of_means(values)

    figures.check("report.kl.estimate", field(doc, "report.kl.estimate", path),
                  log_ratio_mean(lambda r: r))
    if "kl_k3" in report:
        # k3 = (q - 1) - log q, q = pi_ref / pi = exp(-log_ratio).
        figures.check("report.kl_k3.estimate", field(doc, "report.kl_k3.estimate", path),
                      log_ratio_mean(lambda r: math.expm1(-r) + r))
    if "calibrated_kl_per_prompt" in report:
        figures.check("report.calibrated_kl_per_prompt.estimate",
                      field(doc, "report.calibrated_kl_per_prompt.estimate", path),
                      per_prompt_calibrated_kl(policy, reference))
    if "policy_reward" in report:
        figures.check("report.policy_reward.estimate",
                      field(doc, "report.policy_reward.estimate", path),
                      mean_of_means([math.fsum(a) / len(a) for a in policy]))
    if "reference_reward" in report:
        figures.check("report.reference_reward.estimate",
                      field(doc, "report.reference_reward.estimate", path),
                      mean_of_means([math.fsum(b) / len(b) for b in reference]))
    return "%d calibrated rewards" % rows_checked


# ------------------------------------------------------------------------------------------
# Collections (kinds 2 and 3)


class Collection:
    def __init__(self, path, candidates, references, prompts):
        self.path = path
        self.candidates = candidates  # C from the header
        self.references = references  # K from the header
        self.prompts = prompts  # [(candidate raw rewards, reference raw rewards)], file order
        self._by_k = {}

    def at_k(self, k):
        """Per prompt, the structures every row needs, calibrated against the first k
        references (computed once per k)."""
        if k not in self._by_k:
            self._by_k[k] = [PromptAtK(candidates, reference[:k])
                             for candidates, reference in self.prompts]
        return self._by_k[k]


class PromptAtK:
    """One prompt's candidates calibrated against k references.

    levels: the distinct raw rewards in increasing order; count: candidates per level;
    level/grid: each candidate's level and grid index j (u = j / 2k, j = 2 #below + #ties);
    groups: (level, j, how many candidates) for the distinct (level, j) pairs."""

    def __init__(self, candidates, reference):
        reference = sorted(reference)
        k = len(reference)
        self.k = k
        self.size = len(candidates)
        distinct = sorted(set(candidates))  # -0.0 and 0.0 are one level
        position = {value: index for index, value in enumerate(distinct)}
        self.levels = distinct
        self.level = [position[value] for value in candidates]
        self.grid = []
        for value in candidates:
            below = bisect.bisect_left(reference, value)
            ties = bisect.bisect_right(reference, value) - below
            self.grid.append(2 * below + ties)
        self.count = [0] * len(distinct)
        for level in self.level:
            self.count[level] += 1
        pairs = {}
        for level, j in zip(self.level, self.grid):
            pairs[(level, j)] = pairs.get((level, j), 0) + 1
        self.groups = sorted((level, j, c) for (level, j), c in pairs.items())
        self.grid_count = {}
        for j in self.grid:
            self.grid_count[j] = self.grid_count.get(j, 0) + 1
        # The uniform reference policy's pmf over levels and its cumulative.
        self.q = [c / self.size for c in self.count]


def read_collection(path):
    header = None
    prompts = []
    indices = set()
    pending = None  # a line that did not parse: fatal unless it is an unterminated last line
    for number, text, complete in read_lines(path):
        if pending is not None:
            raise pending
        if header is None:
            try:
                header = json.loads(text)
            except json.JSONDecodeError as error:
                raise BadInput(path, "not a candidate collection header: %s" % error.msg, number)
            if not isinstance(header, dict) or header.get("format") != COLLECTION_FORMAT:
                raise BadInput(path, "format %r, expected %r" % (
                    header.get("format") if isinstance(header, dict) else header,
                    COLLECTION_FORMAT), number)
            sizes = []
            for name in ("candidates", "references"):
                value = header.get(name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise BadInput(path, "header field %s is %r, not a positive integer"
                                   % (name, value), number)
                sizes.append(value)
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as error:
            failure = BadInput(path, "not a prompt line: %s" % error.msg, number)
            if complete:
                raise failure
            pending = failure  # a collection killed while writing its last line: dropped
            continue
        if not isinstance(entry, dict):
            raise BadInput(path, "not a prompt object", number)
        index = entry.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise BadInput(path, "field index is %r, not an integer" % (index,), number)
        if index in indices:
            raise BadInput(path, "prompt %d appears twice" % index, number)
        indices.add(index)
        lists = []
        for name, expected in (("candidates", sizes[0]), ("reference", sizes[1])):
            values = entry.get(name)
            if not isinstance(values, list):
                raise BadInput(path, "prompt %d: field %s is missing or not a list"
                               % (index, name), number)
            if len(values) != expected:
                raise BadInput(path, "prompt %d has %d %s rewards, the header says %d"
                               % (index, len(values), name, expected), number)
            for position, value in enumerate(values):
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value):
                    raise BadInput(path, "prompt %d: %s reward %d is %r, not a finite number"
                                   % (index, name, position, value), number)
            lists.append([float(v) for v in values])
        prompts.append((lists[0], lists[1]))
    if header is None:
        raise BadInput(path, "empty file; expected a collection header", 1)
    if not prompts:
        raise BadInput(path, "no prompt lines")
    return Collection(path, sizes[0], sizes[1], prompts)


class Collections:
    """Each collection read once."""

    def __init__(self):
        self._cache = {}

    def get(self, path):
        key = os.path.realpath(path)
        if key not in self._cache:
            self._cache[key] = read_collection(path)
        return self._cache[key]


# ------------------------------------------------------------------------------------------
# Exact evaluation of a policy over a candidate set


def served(p, n, procedure):
    """The pmf over levels (ascending) of the reward served by `procedure`: the max (bon) or the
    min (won) of n iid draws from p; `standard` is p itself."""
    if procedure == "standard":
        return p
    out = []
    below = 0.0
    if procedure == "bon":
        previous = 0.0
        for mass in p:
            below += mass
            now = min(below, 1.0) ** n
            out.append(now - previous)
            previous = now
    else:
        previous = 1.0
        for mass in p:
            below += mass
            now = max(1.0 - below, 0.0) ** n
            out.append(previous - now)
            previous = now
    return out


def level_win_rate(a, b):
    """sum_j a_j (B_{j-1} + 0.5 b_j): W of the level pmf a over the level pmf b, ties split."""
    total = 0.0
    below = 0.0
    for mass_a, mass_b in zip(a, b):
        total += mass_a * (below + 0.5 * mass_b)
        below += mass_b
    return total


def kl_divergence(p, q):
    """sum p log(p / q) over p > 0 (p, q parallel sequences)."""
    return math.fsum(x * math.log(x / y) for x, y in zip(p, q) if x > 0)


class Evaluation:
    """Accumulates the exact evaluation of a policy, prompt by prompt."""

    def __init__(self, k, n):
        self.k = k
        self.n = n
        self.kl = []
        self.standard = []
        self.bon = []
        self.won = []
        self.calibrated = []
        self.pooled_p = [0.0] * (2 * k + 1)
        self.pooled_q = [0.0] * (2 * k + 1)

    def add(self, prompt, kl, level_mass, grid_mass):
        """One prompt's KL, its policy's pmf over levels, and its pmf over grid indices j
        (a dict)."""
        self.kl.append(kl)
        q = prompt.q
        for name, store in (("standard", self.standard), ("bon", self.bon), ("won", self.won)):
            n = 1 if name == "standard" else self.n
            procedure = name
            store.append(level_win_rate(served(level_mass, n, procedure),
                                        served(q, n, procedure)))
        size = prompt.size
        pairs = [(mass, prompt.grid_count[j] / size) for j, mass in grid_mass.items()]
        self.calibrated.append(math.fsum(x * math.log(x / y) for x, y in pairs if x > 0))
        for j, mass in grid_mass.items():
            self.pooled_p[j] += mass
        for j, count in prompt.grid_count.items():
            self.pooled_q[j] += count / size

    def results(self):
        count = len(self.kl)
        pooled_p = [x / count for x in self.pooled_p]
        pooled_q = [x / count for x in self.pooled_q]
        return {
            "kl": math.fsum(self.kl) / count,
            "win_rate.standard": math.fsum(self.standard) / count,
            "win_rate.bon": math.fsum(self.bon) / count,
            "win_rate.won": math.fsum(self.won) / count,
            "calibrated_kl_mean": math.fsum(self.calibrated) / count,
            "calibrated_kl_pooled": kl_divergence(pooled_p, pooled_q),
        }


FIGURE_NAMES = ("kl", "win_rate.standard", "win_rate.bon", "win_rate.won", "calibrated_kl_mean",
                "calibrated_kl_pooled")


def evaluate_tilt(prompts, k, n, scoring_raw, grid, beta):
    """The exact evaluation of pi ∝ exp(score / beta) over each prompt's candidates."""
    evaluation = Evaluation(k, n)
    exp = math.exp
    log = math.log
    for prompt in prompts:
        groups = prompt.groups
        if scoring_raw:
            levels = prompt.levels
            scores = [levels[level] for level, _, _ in groups]
        else:
            scores = [grid[j] for _, j, _ in groups]
        top = max(scores)
        weights = [exp((s - top) / beta) for s in scores]
        total = math.fsum(w * c for w, (_, _, c) in zip(weights, groups))
        size = prompt.size
        level_mass = [0.0] * len(prompt.levels)
        grid_mass = {}
        kl_terms = []
        for w, (level, j, c) in zip(weights, groups):
            pi = w / total
            if pi > 0:
                mass = c * pi
                level_mass[level] += mass
                grid_mass[j] = grid_mass.get(j, 0.0) + mass
                kl_terms.append(mass * log(pi * size))
        evaluation.add(prompt, math.fsum(kl_terms), level_mass, grid_mass)
    return evaluation.results()


def evaluate_policy(prompts, k, n, policy):
    """The exact evaluation of stored per-candidate probabilities."""
    evaluation = Evaluation(k, n)
    log = math.log
    for prompt, probabilities in zip(prompts, policy):
        size = prompt.size
        level_mass = [0.0] * len(prompt.levels)
        grid_mass = {}
        kl_terms = []
        for pi, level, j in zip(probabilities, prompt.level, prompt.grid):
            if pi > 0:
                level_mass[level] += pi
                grid_mass[j] = grid_mass.get(j, 0.0) + pi
                kl_terms.append(pi * log(pi * size))
        evaluation.add(prompt, math.fsum(kl_terms), level_mass, grid_mass)
    return evaluation.results()


# ------------------------------------------------------------------------------------------
# Transforms (for the score_grid check)


def transform_function(spec):
    """Phi for a spec we can compute from its definition; None for `optimal:...` (a solved
    table) or an unknown spec."""
    kind, _, parameter = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "identity" and not parameter:
        return lambda u: u
    if kind == "log" and not parameter:
        return math.log
    if kind in ("exp", "negexp", "normexp", "normnegexp") and parameter:
        try:
            t = float(parameter)
        except ValueError:
            return None
        if not (math.isfinite(t) and t > 0):
            return None
        if kind == "exp":
            return lambda u: _safe_exp(t * u)
        if kind == "negexp":
            return lambda u: -math.exp(-t * u)
        if kind == "normexp":
            # (e^(tu) - 1) / (e^t - 1) = e^(-t(1-u)) (1 - e^(-tu)) / (1 - e^(-t)): no overflow.
            return lambda u: math.exp(-t * (1.0 - u)) * -math.expm1(-t * u) / -math.expm1(-t)
        return lambda u: -math.expm1(-t * u) / -math.expm1(-t)
    return None


def _safe_exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


# ------------------------------------------------------------------------------------------
# Kind 2: exact.json


def exact_row_label(section, index, row):
    method = row.get("method")
    budget = row.get("budget")
    return "%s[%d] (%s @ %s nats)" % (section, index, method, fmt(budget))


def check_exact(path, figures, collections):
    doc = read_json(path)
    if not isinstance(doc, dict) or "rows" not in doc:
        raise BadInput(path, "not an exact.json (no field rows)")
    recorded = field(doc, "data", path, "str")
    k = field(doc, "k", path, "int")
    n = field(doc, "n", path, "int")
    if n < 1:
        raise BadInput(path, "field n is 0; N must be at least 1")
    rows = field(doc, "rows", path, "list")
    curves = field(doc, "curves", path, "list") if "curves" in doc else []
    collection, prompts = collection_prompts(recorded, path, k, collections)
    if "prompts" in doc:
        figures.check("prompts", float(field(doc, "prompts", path, "int")), float(len(prompts)))
    if "candidates" in doc:
        figures.check("candidates", float(field(doc, "candidates", path, "int")),
                      float(collection.candidates))
    floor = 0.25 / k
    grid_u = [j / (2 * k) for j in range(2 * k + 1)]
    checked_rows = 0
    for section, entries in (("rows", rows), ("curves", curves)):
        for index, row in enumerate(entries):
            if not isinstance(row, dict):
                raise BadInput(path, "%s[%d] is not an object" % (section, index))
            label = exact_row_label(section, index, row)
            where = "%s[%d]" % (section, index)
            scoring = field(row, "scoring", path, "str")
            beta = field(row, "beta", path)
            if beta is None or not (math.isfinite(beta) and beta > 0):
                raise BadInput(path, "%s.beta is %s, not a positive number" % (where, fmt(beta)))
            scoring_raw = scoring.strip().lower() == "raw"
            grid = None
            if not scoring_raw:
                grid = row.get("score_grid")
                if not isinstance(grid, list) or len(grid) != 2 * k + 1:
                    raise BadInput(path, "%s.score_grid should list 2k+1 = %d scores (scoring %s)"
                                   % (where, 2 * k + 1, scoring))
                for j, value in enumerate(grid):
                    if isinstance(value, bool) or not isinstance(value, (int, float)) \
                            or not math.isfinite(value):
                        raise BadInput(path, "%s.score_grid[%d] is %r, not a finite number"
                                       % (where, j, value))
                grid = [float(v) for v in grid]
                phi = transform_function(scoring)
                if phi is not None:
                    for j, u in enumerate(grid_u):
                        figures.check_relative(
                            "%s.score_grid[%d] (%s at u = %r)" % (label, j, scoring, u),
                            grid[j], phi(max(u, floor)), GRID_RELATIVE_TOLERANCE)
            results = evaluate_tilt(prompts, k, n, scoring_raw, grid, beta)
            for name in FIGURE_NAMES:
                figures.check("%s.%s" % (label, name), field(row, name, path), results[name])
            checked_rows += 1
    return "%d rows" % checked_rows


# ------------------------------------------------------------------------------------------
# Kind 3: result.json + policy.csv.gz


def read_policy(path, prompts):
    """Per prompt, the probabilities of its candidates in order."""
    policy = [[None] * prompt.size for prompt in prompts]
    first_line = [None] * len(prompts)
    for line, row in read_csv(path, POLICY_COLUMNS):
        prompt = parse_index(row["prompt_index"], path, line, "prompt_index")
        candidate = parse_index(row["candidate_index"], path, line, "candidate_index")
        if prompt >= len(prompts):
            raise BadInput(path, "prompt %d, but the collection has %d prompts"
                           % (prompt, len(prompts)), line)
        if candidate >= prompts[prompt].size:
            raise BadInput(path, "candidate %d, but prompt %d has %d candidates"
                           % (candidate, prompt, prompts[prompt].size), line)
        if policy[prompt][candidate] is not None:
            raise BadInput(path, "prompt %d, candidate %d appears twice" % (prompt, candidate),
                           line)
        p = parse_float(row["probability"], path, line, "probability")
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise BadInput(path, "column probability: %r is not in [0, 1]" % row["probability"],
                           line)
        policy[prompt][candidate] = p
        if first_line[prompt] is None:
            first_line[prompt] = line
    for index, probabilities in enumerate(policy):
        if any(p is None for p in probabilities):
            missing = probabilities.index(None)
            raise BadInput(path, "prompt %d, candidate %d has no row" % (index, missing))
        total = math.fsum(probabilities)
        if abs(total - 1.0) > POLICY_SUM_TOLERANCE:
            raise BadInput(path, "prompt %d's probabilities sum to %r, not 1" % (index, total),
                           first_line[index])
    return policy


def check_train(path, figures, collections):
    doc = read_json(path)
    if not isinstance(doc, dict) or "calibrated_kl_pooled" not in doc or "data" not in doc:
        raise BadInput(path, "not a candidates training result (no fields data and "
                       "calibrated_kl_pooled)")
    recorded = field(doc, "data", path, "str")
    k = field(doc, "k", path, "int")
    n = field(doc, "n", path, "int")
    if n < 1:
        raise BadInput(path, "field n is 0; N must be at least 1")
    policy_path = os.path.join(os.path.dirname(path), POLICY_FILE)
    if not os.path.isfile(policy_path):
        raise NotRecomputable("no %s" % POLICY_FILE)
    collection, prompts = collection_prompts(recorded, path, k, collections)
    policy = read_policy(policy_path, prompts)
    results = evaluate_policy(prompts, k, n, policy)
    for name in FIGURE_NAMES:
        figures.check(name, field(doc, name, path), results[name])
    return "%d prompts" % len(prompts)


# ------------------------------------------------------------------------------------------
# Driver


def kind_of(path):
    name = os.path.basename(path)
    if name == "eval.json":
        return "eval"
    if name == "exact.json":
        return "exact"
    if name == "result.json":
        return "train"
    return None


def find_results(paths):
    """(result files, problems): directories are walked for eval.json / exact.json /
    result.json; a file given by name is taken as it is."""
    found = []
    problems = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name in RESULT_NAMES:
                        found.append(os.path.join(root, name))
        elif os.path.isfile(path):
            found.append(path)
        else:
            problems.append(BadInput(path, "no such file or directory"))
    unique = []
    seen = set()
    for path in found:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique, problems


def guess_kind(path):
    """The kind of a file given by a name other than the three: by its fields."""
    doc = read_json(path)
    if isinstance(doc, dict):
        if "rows" in doc:
            return "exact"
        if "report" in doc:
            return "eval"
        if "calibrated_kl_pooled" in doc:
            return "train"
    raise BadInput(path, "not a result file this script knows (eval.json, exact.json or "
                   "result.json)")


def missing_data(path, kind):
    """Why `path` cannot be recomputed, or None when its raw data is there."""
    directory = os.path.dirname(path)
    if kind == "eval":
        if not os.path.isfile(os.path.join(directory, REPLIES_FILE)):
            return "no %s" % REPLIES_FILE
        return None
    if kind == "train" and not os.path.isfile(os.path.join(directory, POLICY_FILE)):
        return "no %s" % POLICY_FILE
    doc = read_json(path)
    recorded = field(doc, "data", path, "str") if isinstance(doc, dict) else None
    if recorded is None:
        raise BadInput(path, "field data is missing")
    if resolve_data(recorded, path) is None:
        return "data file %s not found" % recorded
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Recompute the figures of InfAlign result files (eval.json + replies.csv.gz, "
        "exact.json + its collection, result.json + policy.csv.gz) from their raw data.")
    parser.add_argument("paths", nargs="*", default=["results"],
                        help="directories to walk or result files (default: results)")
    parser.add_argument("--tolerance", type=float, default=1e-9,
                        help="absolute tolerance of every figure (default 1e-9)")
    parser.add_argument("--list", action="store_true",
                        help="only list the result files that lack the raw data to be recomputed")
    parser.add_argument("--strict", action="store_true",
                        help="a result file that cannot be recomputed fails the run (exit 1)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="print every mismatch, not only the first of each file")
    args = parser.parse_args(argv)
    if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
        parser.error("--tolerance must be a finite number >= 0")

    files, problems = find_results(args.paths)
    errors = len(problems)
    for problem in problems:
        print("%s: ERROR %s" % (problem.path, problem))
        sys.stderr.write("recompute_results: %s\n" % problem)
    mismatched = 0
    unrecomputable = 0
    matched = 0
    collections = Collections()
    for path in files:
        try:
            kind = kind_of(path) or guess_kind(path)
            if args.list:
                reason = missing_data(path, kind)
                if reason is not None:
                    unrecomputable += 1
                    print("%s: not recomputable (%s)" % (path, reason))
                continue
            figures = Figures(args.tolerance)
            checker = {"eval": check_eval, "exact": check_exact, "train": check_train}[kind]
            if kind == "eval":
                extra = checker(path, figures)
            else:
                extra = checker(path, figures, collections)
        except NotRecomputable as reason:
            unrecomputable += 1
            print("%s: not recomputable (%s)" % (path, reason))
            continue
        except BadInput as error:
            errors += 1
            print("%s: ERROR %s" % (path, error))
            sys.stderr.write("recompute_results: %s\n" % error)
            continue
        if figures.mismatches:
            mismatched += 1
            name, stated, recomputed, diff = figures.mismatches[0]
            more = len(figures.mismatches) - 1
            print("%s: MISMATCH %s: stated %s, recomputed %s (|diff| %.3g)%s" % (
                path, name, fmt(stated), fmt(recomputed), diff,
                " and %d more of %d figures" % (more, figures.count) if more else ""))
            if args.verbose:
                for name, stated, recomputed, diff in figures.mismatches[1:]:
                    print("    %s: stated %s, recomputed %s (|diff| %.3g)"
                          % (name, fmt(stated), fmt(recomputed), diff))
        else:
            matched += 1
            print("%s: ok (%d figures incl. %s, max |diff| %.3g)"
                  % (path, figures.count, extra, figures.largest))

    if args.list:
        print("%d of %d result files not recomputable" % (unrecomputable, len(files)))
    else:
        print("%d result files: %d ok, %d mismatched, %d not recomputable, %d unreadable"
              % (len(files) + len(problems), matched, mismatched, unrecomputable, errors))
    if errors:
        return 2
    if mismatched or (args.strict and unrecomputable):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

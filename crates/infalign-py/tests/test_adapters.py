"""The engine adapters: what TRL and verl would call, with the CTRL reward they should return."""

import logging
import math
from fractions import Fraction

import pytest

import infalign.trl
import infalign.verl


def length_reward(texts):
    """A stand-in base reward: the text's length."""
    return [float(len(t)) for t in texts]


def mid_rank(reference, reward):
    below = sum(1 for r in reference if r < reward)
    ties = sum(1 for r in reference if r == reward)
    return float(Fraction(2 * below + ties, 2 * len(reference)))


REFERENCES = [[1.0, 3.0, 5.0, 7.0], [2.0, 2.0, 4.0, 10.0]]


def test_trl_reward_is_the_transformed_calibrated_base_reward(caplog):
    f = infalign.trl.reward_function(length_reward, "exp:2")
    completions = ["abcd", "xy"]  # lengths 4 and 2
    with caplog.at_level(logging.INFO, logger="infalign"):
        scores = f(prompts=["p1", "p2"], completions=completions, reference_rewards=REFERENCES,
                   other_column=[0, 1])
    want = [math.exp(2 * mid_rank(REFERENCES[0], 4.0)), math.exp(2 * mid_rank(REFERENCES[1], 2.0))]
    assert scores == pytest.approx(want, rel=1e-12, abs=0)
    assert list(f.ctrl.last_raw) == [4.0, 2.0]
    assert list(f.ctrl.last_calibrated) == [mid_rank(REFERENCES[0], 4.0), mid_rank(REFERENCES[1], 2.0)]
    assert "raw 3.0000" in caplog.text and "exp:2" in caplog.text


def test_trl_reads_conversations_and_json_columns():
    f = infalign.trl.reward_function(length_reward, "identity", column="refs")
    completions = [[{"role": "assistant", "content": "abcdef"}]]
    scores = f(prompts=["p"], completions=completions, refs=["[1, 2, 3, 10]"])
    assert scores == [mid_rank([1, 2, 3, 10], 6.0)]


def test_verl_compute_score_is_one_sample_of_the_same():
    score = infalign.verl.compute_score_function(length_reward, "negexp:3")
    got = score("chat", "abc", None, {"reference_rewards": REFERENCES[1]})
    assert got == pytest.approx(-math.exp(-3 * mid_rank(REFERENCES[1], 3.0)), rel=1e-12)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: infalign.trl.reward_function(length_reward, "exp:x"), "exp:x"),
        (lambda: infalign.trl.reward_function(length_reward)(["p"], ["a"]), "reference_rewards"),
        (lambda: infalign.trl.reward_function(length_reward)(["p"], ["a"], reference_rewards=[[]]),
         "row 0"),
        (lambda: infalign.trl.reward_function(length_reward)(
            ["p"], ["a"], reference_rewards=[["high"]]), "row 0"),
        (lambda: infalign.verl.compute_score_function(length_reward)("d", "a", None, {}),
         "reference_rewards"),
    ],
)
def test_adapters_name_what_is_missing(call, message):
    with pytest.raises(ValueError) as raised:
        call()
    assert message in str(raised.value), str(raised.value)


import json
import urllib.error
import urllib.request

import infalign.openrlhf


def test_openrlhf_reward_func_strips_the_prompt_and_reads_the_labels():
    f = infalign.openrlhf.reward_function(length_reward, "exp:2")
    out = f(["Q: hi A: abcd", "xy"], ["Q: hi A: ", "other prompt"],
            [json.dumps(REFERENCES[0]), REFERENCES[1]])
    want_u = [mid_rank(REFERENCES[0], 4.0), mid_rank(REFERENCES[1], 2.0)]
    assert list(out["scores"]) == pytest.approx(want_u, abs=1e-7)
    assert list(out["rewards"]) == pytest.approx([math.exp(2 * u) for u in want_u], rel=1e-6)
    assert list(out["extra_logs"]["raw_reward"]) == [4.0, 2.0]


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_openrlhf_server_answers_the_remote_format():
    f = infalign.openrlhf.reward_function(length_reward, "identity")
    server = infalign.openrlhf.serve(f, port=0, block=False)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/get_reward"
        status, body = post(url, {"query": ["P abc"], "prompts": ["P "], "labels": [[1, 2, 3, 4]]})
        assert status == 200
        assert body["rewards"] == pytest.approx([mid_rank([1, 2, 3, 4], 3.0)])
        status, body = post(url, {"query": ["P abc"], "prompts": ["P "], "labels": [[]]})
        assert status == 400 and "label 0" in body["error"]
    finally:
        server.shutdown()

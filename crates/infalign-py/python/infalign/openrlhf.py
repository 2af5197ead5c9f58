"""The CTRL reward for OpenRLHF (`--remote_rm_url`: a `.py` file with `reward_func`, or an HTTP
endpoint).

OpenRLHF calls `reward_func(queries, prompts, labels)`: `queries` are prompt + response, and
`labels` the dataset's `--label_key` column; give that column each prompt's reference rewards (a
list, or its JSON). In the file OpenRLHF loads:

    import infalign.openrlhf
    reward_func = infalign.openrlhf.reward_function(my_base_reward, "exp:8")

The function returns OpenRLHF's dict: `rewards` (the transformed calibrated rewards),
`scores` (the calibrated rewards, in [0, 1], for its dynamic filtering) and `extra_logs` (mean
raw and calibrated reward). `serve(reward_func, port)` answers the same over HTTP: a POST of
`{"query": [...], "prompts": [...], "labels": [...]}` gets `{"rewards": [...], "scores": [...]}`.
Keep the objective KL-regularised: `rloo` with the k1 estimator in the reward, not `group_norm`
(which divides before the KL penalty is added).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict

from ._ctrl import BaseReward, CtrlReward, reference_list


def _as_tensor(values):
    try:
        import torch
    except ImportError:  # outside OpenRLHF (tests, tools): NumPy arrays
        return values
    return torch.tensor(values, dtype=torch.float32)


def reward_function(base: BaseReward, spec: str = "identity"):
    """OpenRLHF's `reward_func`: `base` scores each response (the query with its prompt removed);
    the score is calibrated against the sample's label (its prompt's reference rewards) and
    transformed by `spec`. Its `ctrl` attribute is the `CtrlReward`."""
    ctrl = CtrlReward(base, spec)

    def reward_func(queries, prompts, labels, **_) -> Dict[str, Any]:
        if not (len(queries) == len(prompts) == len(labels)):
            raise ValueError(
                f"{len(queries)} queries, {len(prompts)} prompts and {len(labels)} labels"
            )
        responses = [
            query[len(prompt):] if query.startswith(prompt) else query
            for query, prompt in zip(queries, prompts)
        ]
        references = [reference_list(label, f"label {i}") for i, label in enumerate(labels)]
        rewards = ctrl(responses, references)
        return {
            "rewards": _as_tensor(rewards),
            "scores": _as_tensor(ctrl.last_calibrated),
            "extra_logs": {
                "raw_reward": _as_tensor(ctrl.last_raw),
                "calibrated_reward": _as_tensor(ctrl.last_calibrated),
            },
        }

    reward_func.ctrl = ctrl
    return reward_func


def _to_list(values):
    return [float(v) for v in values]


def serve(reward_func, port: int = 5000, host: str = "127.0.0.1", block: bool = True):
    """Answer OpenRLHF's remote reward requests with `reward_func` (as `reward_function` makes).
    With `block=False` the server runs in a thread and is returned (call `shutdown()`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                queries = request["query"]
                prompts = request.get("prompts", [""] * len(queries))
                labels = request["labels"]
                result = reward_func(queries, prompts, labels)
                body = {"rewards": _to_list(result["rewards"]), "scores": _to_list(result["scores"])}
                status = 200
            except (KeyError, ValueError, TypeError) as error:
                body, status = {"error": f"bad request: {error}"}, 400
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # requests are logged by the reward, not per line here
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    if block:
        server.serve_forever()
        return server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

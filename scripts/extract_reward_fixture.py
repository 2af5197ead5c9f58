#!/usr/bin/env python3
"""Cut the test fixture for the linear harmlessness classifier out of the full export.

The classifier's score for a text depends only on the vocabulary tokens that occur in it (TF-IDF
is l2-normalised over the text's own tokens), so the rows for the tokens of the golden sentences
reproduce the full model's scores on those sentences exactly. The fixture keeps the test suite
independent of the data folder, which users and CI machines may not have.

    python3 scripts/extract_reward_fixture.py ../shared/data/rewards \
        crates/infalign-model/tests/fixtures/reward_golden
"""
import json
import re
import shutil
import sys
from pathlib import Path

TOKEN = re.compile(r"(?u)\b\w\w+\b")


def main(source: Path, out: Path) -> None:
    golden = json.loads((source / "reward_golden_examples.json").read_text(encoding="utf-8"))
    wanted = {t for example in golden for t in TOKEN.findall(example["text"].lower())}
    model = (source / "profanity_check_linear_model.tsv").read_text(encoding="utf-8").splitlines()
    kept, header_seen = [], False
    for line in model:
        if line.startswith("#") or not header_seen:
            kept.append(line)
            header_seen = header_seen or line.startswith("token\t")
        elif line.split("\t", 1)[0] in wanted:
            kept.append(line)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_subset.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    (out / "golden.json").write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    shutil.copy(source / "profanity_check_linear_model.LICENSE", out / "LICENSE")
    print(f"kept {len(kept)} lines for {len(wanted)} distinct tokens of {len(golden)} sentences")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))

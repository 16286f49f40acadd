"""Score one kept checkpoint of a local run on the run's test split and write it as an artifact.

    python bench/score_checkpoint.py runs/cpu-full-256/checkpoint_2026-11-26_04-16-55.487428 --out /tmp/step554

The job exports only its best checkpoint; this scores any other one it kept (up to --keep-checkpoints),
with the job's own export code (sentiray.export.export_checkpoint: the artifact's predictor, the same
test split). The run's config comes from its state file beside the checkpoints (sentiray_run.json), so
data, max_length and truncation are the run's own. Prints the test metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from ray_jobs.train import RUN_STATE_FILE  # noqa: E402
from sentiray.config import TrainJobConfig  # noqa: E402
from sentiray.data import load_splits  # noqa: E402
from sentiray.export import export_checkpoint  # noqa: E402
from sentiray.training import read_checkpoint_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="A checkpoint folder of a local run (runs/<name>/checkpoint_...)")
    parser.add_argument("--out", required=True, help="Where to write the artifact")
    args = parser.parse_args()
    checkpoint = Path(args.checkpoint)
    run_state = json.loads((checkpoint.parent / RUN_STATE_FILE).read_text())
    cfg = TrainJobConfig.model_validate(run_state["config"])
    splits = load_splits(cfg.data)
    state = read_checkpoint_state(checkpoint)
    history, step = state["history"], state["step"]
    [evaluation] = [h for h in history if "eval_accuracy" in h and h["step"] == step]
    _, test_metrics = export_checkpoint(
        str(checkpoint), cfg, args.out, test=splits.test, dataset_summary=splits.summary(), history=history,
        validation_metrics={k: v for k, v in evaluation.items() if k.startswith("eval_")},
        model_name=f"{run_state['name']}-step{step}", device="cpu",
    )
    print("BENCH_RESULT " + json.dumps({"checkpoint": str(checkpoint), "step": step, "test_metrics": test_metrics}))


if __name__ == "__main__":
    main()

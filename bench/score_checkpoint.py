"""Score one kept checkpoint of a local run on the run's test split and write it as an artifact.

    python bench/score_checkpoint.py runs/cpu-full-256/checkpoint_2026-11-26_04-16-55.487428 --out /tmp/step554

The job exports only its best checkpoint; this scores any other one it kept (up to --keep-checkpoints),
with the job's own export code (sentiray.export.export_checkpoint: the artifact's predictor, the same
test split). The run's config comes from its state file beside the checkpoints (sentiray_run.json), so
data, max_length and truncation are the run's own. Prints the test metrics as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from bench.common import bench_parser, write_result
from sentiray.config import TrainJobConfig
from sentiray.data import load_splits
from sentiray.export import export_checkpoint
from sentiray.runs import RUN_STATE_FILE
from sentiray.training import read_checkpoint_state


def main() -> None:
    parser = bench_parser(__doc__, out=None)
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
    write_result({"checkpoint": str(checkpoint), "step": step, "test_metrics": test_metrics}, None)


if __name__ == "__main__":
    main()

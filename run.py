#!/usr/bin/env python
"""Train a march T5 preset with DeepSpeed.

    python run.py                                   # no GPU: Tiny on the bundled sample, ~2 min
    deepspeed --num_gpus 2 run.py --experiment GELUGatedLinearUnit --steps 1000 --tokens-per-step 1048576
    python run.py --experiment Baseline --resume    # continue runs/Baseline from its last checkpoint
    deepspeed run.py --experiment Baseline --compile  # torch.compile the model (H200 e2e bench: ~1.4x per
                                                    # step after a one-time compile; march/train/loop.py)
    python run.py --experiment Baseline --estimate  # predicted time, GPU-hours, memory (march/train/estimate.py)

Every option: ``python run.py --help`` (march/train/config.py documents the defaults).
"""

import json
import sys

from march.train.config import parse_args
from march.train.loop import init_distributed, shutdown_distributed, train
from march.train.report import format_report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if "--estimate" in argv:  # a short measured probe instead of the run; no process group, no run folder
            from march.train.estimate import main as estimate_main

            return estimate_main([a for a in argv if a != "--estimate"])
        cfg, given = parse_args(argv)
    except (ValueError, TypeError) as e:  # an impossible option value or combination: say which, no traceback
        print(f"run.py: error: {e}", file=sys.stderr, flush=True)
        return 2
    rank, _, _ = init_distributed()
    try:
        report = train(cfg, given)
        if rank == 0:
            print(format_report(report), flush=True)
            print("report:", json.dumps({k: report[k] for k in ("run_dir", "tokens_per_s", "mfu", "final_loss")}),
                  flush=True)
    except (FileExistsError, FileNotFoundError, ValueError, ConnectionError) as e:
        # a usage problem (run folder exists, no network for a Hub dataset, bad option): no traceback
        print(f"run.py: error: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())

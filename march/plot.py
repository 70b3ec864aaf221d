"""``python -m march.plot RESULTS...``: loss curves and scaling fits from training logs
(see march/train/plots.py)."""

import sys

from march.train.plots import main

if __name__ == "__main__":
    sys.exit(main())

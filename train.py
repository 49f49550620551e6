"""Train CycleSR: `python train.py --config FILE [key.sub=value ...]` (also under `accelerate launch`/torchrun)."""

import sys

from cyclesr_dist.engine.trainer import main

if __name__ == "__main__":
    sys.exit(main())

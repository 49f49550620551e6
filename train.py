"""Train CycleSR: `python train.py --config FILE [key.sub=value ...]` (also under `accelerate launch`/torchrun)."""

import sys

from cyclesr_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

"""Run `vig` with the MLP projection op's block tables patched, for same-call A/B timings of a block from the sweep:
    python3 benchmarks/device/with_mlp_blocks.py FWD DH -- bench ...
FWD, DH: "BM,BN,BK,warps,stages" for the K <= SMALL_K forward / dh kernels, or "-" to keep the default."""
import sys

from vig.cli import main
from vig.layers.fused import linear_swiglu


def _block(text):
    return None if text == "-" else tuple(int(v) for v in text.split(","))


def patch(fwd, dh):
    """The K <= SMALL_K rows of the two tables (the larger-K rows stay)."""
    if fwd:
        linear_swiglu.FWD_BLOCKS = (fwd, linear_swiglu.FWD_BLOCKS[1])
    if dh:
        linear_swiglu.BWD_BLOCKS = (dh, linear_swiglu.BWD_BLOCKS[1])


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[3] != "--":
        raise SystemExit(__doc__)
    patch(_block(sys.argv[1]), _block(sys.argv[2]))
    print("FWD_BLOCKS", linear_swiglu.FWD_BLOCKS, "BWD_BLOCKS", linear_swiglu.BWD_BLOCKS, flush=True)
    sys.exit(main(sys.argv[4:]))

"""Training checkpoints: written atomically (temp file in the same folder, fsync, os.replace), so a crash or a
SIGKILL mid-write leaves the previous good file in place; read back with a clear error when damaged."""
import random
from pathlib import Path

import numpy as np
import torch

from vig.atomic import atomic_write
from vig.errors import UsageError

FORMAT = "vig-train-v1"
LAST, BEST_RAW, BEST_EMA = "last.pth", "best.safetensors", "best_ema.safetensors"


def atomic_write_text(path, text: str):
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f))


def save_weights_safetensors(state_dict, path, metadata=None):
    """Best weights as safetensors, through the models' helper (atomic; it moves tensors to the CPU and makes the
    metadata strings itself)."""
    from vig.models.checkpoint import save_safetensors_atomic
    save_safetensors_atomic(state_dict, path, metadata=metadata)


def rng_state():
    """RNG states as tensors and tuples only, so the checkpoint loads with torch.load(weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    gauss), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_checkpoint(path):
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path} (nothing to resume; drop --resume to start a new run)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, ...: all mean the file is damaged
        raise UsageError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                         f"delete it or restore a copy to resume") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UsageError(f"checkpoint {path} is not a vig training checkpoint (format {FORMAT}); "
                         f"to start from weights use --pretrained instead of --resume")
    return ckpt

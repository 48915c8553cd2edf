"""Environment knobs read once at import (A/B runs set them per process). Free of triton: layers read them too."""
import os


def switch(name: str, default: str) -> bool:
    """An on/off knob: the variable `name` set to 0 or 1 (unset or empty: `default`)."""
    knob = os.environ.get(name) or default
    if knob not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {knob!r}")
    return knob == "1"

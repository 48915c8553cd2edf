"""CI runs two pytest-xdist workers on two cores: one torch thread per worker avoids oversubscription,
which made multi-threaded CPU tests many times slower there."""
import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest
import torch

torch.set_num_threads(1)


def _major_minor(package):
    return tuple(int(part) for part in version(package).split(".")[:2])


# triton < 3.7's interpreter int()s a one-element array for a loop bound passed as a kernel argument, which
# numpy >= 2.4 rejects (triton-lang/triton#9171): every interpreted kernel with such a loop fails, not ours alone
INTERPRETER_BROKEN = _major_minor("triton") < (3, 7) and _major_minor("numpy") >= (2, 4)


@pytest.fixture(scope="module")
def interpreted(request):
    """The JSON that the requesting test file prints on its last line when run as a script under
    TRITON_INTERPRET=1: interpreter mode must be on before triton decorates the kernels, and other tests in
    the same worker may have imported them already, so those cases run in one child process. A module's
    INTERPRETER_UNSET_ENV names environment variables the child must not inherit (kernel knobs)."""
    if INTERPRETER_BROKEN:
        pytest.skip(f"triton {version('triton')}'s interpreter fails with numpy {version('numpy')} "
                    "(triton-lang/triton#9171); needs triton >= 3.7 or numpy < 2.4")
    env = dict(os.environ, TRITON_INTERPRET="1")
    # a child script has its own folder on sys.path, not this one: shared helpers (numerics.py) live here
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.abspath(__file__)),
                                                    os.environ.get("PYTHONPATH")) if p)
    for name in getattr(request.module, "INTERPRETER_UNSET_ENV", ()):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, request.module.__file__], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])

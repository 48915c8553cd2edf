"""CI runs two pytest-xdist workers on two cores: one torch thread per worker avoids oversubscription,
which made multi-threaded CPU tests many times slower there."""
import json
import os
import subprocess
import sys

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def interpreted(request):
    """The JSON that the requesting test file prints on its last line when run as a script under
    TRITON_INTERPRET=1: interpreter mode must be on before triton decorates the kernels, and other tests in
    the same worker may have imported them already, so those cases run in one child process. A module's
    INTERPRETER_UNSET_ENV names environment variables the child must not inherit (kernel knobs)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    for name in getattr(request.module, "INTERPRETER_UNSET_ENV", ()):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, request.module.__file__], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])

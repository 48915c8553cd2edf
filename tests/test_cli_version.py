"""`vig --version` prints the package version and exits 0, as CLI users expect."""
import subprocess
import sys

import vig


def test_version():
    r = subprocess.run([sys.executable, "-m", "vig", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"vig {vig.__version__}"

"""Which code produced a benchmark result (stdlib only: benchmarks/bench_bigla.py runs where timm is absent)."""
import hashlib
import os
import subprocess


def code_identity():
    """Which code produced a result: the git commit, whether the work tree differs from it (then the commit
    alone does not name the code: a copied tree can carry a stale .git), and a digest of the vig package's
    sources, which names the code whatever git says."""
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args):
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=here)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD") or None
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status),
            "vig_source_sha256": source_digest(os.path.dirname(here))}


def source_digest(package_dir):
    """sha256 over the relative paths and bytes of every .py file under package_dir, in sorted order."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, package_dir).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]

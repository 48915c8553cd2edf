#!/usr/bin/env bash
# Run HERE (the CPU machine), in the repo root, before the first device call of a session. It makes .whl/
# (git-excluded, so a device call must name it in `carry`) with:
#   - the wheels the device image lacks or has at another version (fla-core, the benchmark-only baseline, and its
#     einops; timm at this machine's version, so both machines build the same models);
#   - base/src: the package source of BASE_COMMIT, for same-call A/B timings of new code against old.
# A new session starts from a fresh checkout without .whl/, which is why this lives in the tree.
#   bash benchmarks/device/prepare.sh [BASE_COMMIT]
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
base=${1:-${BASE_COMMIT:-74bd573}}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
mkdir -p .whl
timm_version=$(python3 -c 'import timm; print(timm.__version__)')
for req in fla-core==0.6.0 einops==0.8.1 "timm==$timm_version"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$req" 2>&1 | grep -v "is ignored" || true
done
rm -rf .whl/base && mkdir -p .whl/base
git archive "$base" src | tar -x -C .whl/base
echo "$base $(git rev-parse "$base")" > .whl/base/COMMIT
ls .whl; du -sh .whl

"""ptxas and SASS counts of the BiGLA kernels as the models launch them, compiled for a GPU that need not be here:
triton's compiler for the target, then the ptxas and cuobjdump that ship with triton. No GPU and no timing, so it
runs on CPU machines too. It serves the sessions without a device, and it makes the counts in
benchmarks/NOTES_bigla.md reproducible.

Each preset is one kernel launch at a model's shape: bf16 tensors, gate logits, the packed op's strided rows. Its
settings come from the launcher's own rules (launch.py: precision, chunk length, warps, register caps), so a
change there shows here. The compile is specialized as a launch would be (vig.ops.bigla.triton.aot; ViG-T's
packed rows, 384 values for q, k, v and 192 for the gates, are multiples of 16 as it assumes).
Counts are per program, from cuobjdump's SASS:
- instructions, HMMA / HGMMA (tensor-core ops: warp mma / Hopper warpgroup mma), BAR (barriers), SHFL (shuffles);
- LDS / STS (shared-memory loads and stores), LDL / STL (spill traffic), MUFU (special functions);
- with ptxas' registers, spill bytes and the kernel's shared memory.

    python3 benchmarks/kernel_sass_stats.py --out benchmarks/results/kernel_sass_stats.json [--arch 90]
        [--presets "chunk_bwd ViG-T" ...]
"""
import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

# (module, kernel, K, V, pointer arguments that are not bf16 -> their dtype; the chunk backward's come with its
# launch, aot.chunk_bwd_launch)
PRESETS = {
    "chunk_bwd ViG-T": ("_chunk_bwd", "chunk_bwd_kernel", 32, 64, {}),
    "chunk_bwd ViG-H": ("_chunk_bwd", "chunk_bwd_kernel", 16, 32, {}),
    "chunk_states bwd ViG-T": ("_chunk_states", "chunk_states_kernel", 32, 64,
                               {"dec": torch.float32, "fin": torch.float32, "tot": torch.float32}),
    "seq_fwd ViG-T": ("_fwd", "bigla_fwd_kernel", 32, 64, {"flags": torch.int32}),
    # a training step's at ViG-T/S/B's head dims (SAVED_KEYS)
    "seq_fwd ViG-T saving keys": ("_fwd", "bigla_fwd_kernel", 32, 64, {"flags": torch.int32}),
    "chunk_states do-states ViG-T": ("_chunk_states", "chunk_states_kernel", 32, 64,
                                     {"dec": torch.float32, "fin": torch.int32, "tot": torch.float32}),
    "chunk_bwd ViG-T saved keys": ("_chunk_bwd", "chunk_bwd_kernel", 32, 64, {}),
    # the chunk forward of long sequences: ViG-H stage 1 (T = 3,136), ViG-T at 1024² and up
    "chunk_fwd ViG-H": ("_chunk_fwd", "chunk_fwd_kernel", 16, 32, {"segin": torch.float32, "dec": torch.float32}),
    "chunk_fwd ViG-T": ("_chunk_fwd", "chunk_fwd_kernel", 32, 64, {"segin": torch.float32, "dec": torch.float32}),
}
# config.save_key_states (a training step's default at ViG-T/S/B's head dims since session 29): the forward also
# stores its key states, the backward walks the two do states alone, the chunk backward reads both
SAVED_KEYS = {"seq_fwd ViG-T saving keys", "chunk_states do-states ViG-T", "chunk_bwd ViG-T saved keys"}
SASS_OPS = {"HMMA": r"\bHMMA\b", "HGMMA": r"\bHGMMA\b", "BAR": r"\bBAR\.SYNC", "SHFL": r"\bSHFL\b",
            "LDS": r"\bLDS\b", "STS": r"\bSTS\b",
            "LDL": r"\bLDL\b", "STL": r"\bSTL\b", "MUFU": r"\bMUFU\b"}


def launch_settings(module: str, K: int, V: int, saved_keys: bool = False) -> tuple[dict, dict, dict | None]:
    """The preset's constexprs, launch options and (for the chunk backward) pointer dtypes, from the launcher's rules
    for bf16 inputs and gate logits: the models' call (ViG-T 224's 768 sequences for the walk-count rules).
    saved_keys: the kernels of a step with the forward's key states saved (SAVED_KEYS)."""
    from vig.ops.bigla.triton import config
    from vig.ops.bigla.triton.aot import chunk_bwd_launch
    bf16 = torch.bfloat16
    if module == "_chunk_bwd":
        consts, options, pointers = chunk_bwd_launch(bf16, K, V, 1)
        return ({**consts, "SPLIT_STATES": True} if saved_keys else consts), options, pointers
    if module == "_fwd":
        prec = config.dot_precision(bf16)
        options = config.seq_fwd_launch("walk", K, V, 768, 132, prec)
        return (dict(K=K, V=V, BT=config.chunk_size(), HAS_INIT=False, PREC=prec, RAW=True, EXACT_MODE=0,
                     SAVE_KEYS=saved_keys), options, None)
    if module == "_chunk_fwd":
        prec = config.dot_precision(bf16)
        consts = dict(K=K, V=V, C=config.chunk_len(K, V, False, prec), PREC=prec, RAW=True, SEGMENTS=True)
        return consts, {"num_warps": config.chunk_warps(K, V, False), **config.chunk_fwd_register_cap(K, V, prec)}, None
    prec = config.dot_precision(bf16, backward=True)
    walks = 768 * (2 if saved_keys else 4)  # the walks a sequence takes in the backward
    consts = dict(K=K, V=V, C=config.chunk_len(K, V, True, prec), PREC=prec, RAW=True, GRAD=True, HAS_INIT=False,
                  LOCAL=False, GRAD_ONLY=saved_keys, CLEAR_COUNT=saved_keys)
    light = config.light_walks(K, V, True, saved_keys)
    options = {"num_warps": config.walk_warps(walks, 132, config.chunk_warps(K, V, True), light),
               **config.register_cap("states"), **config.walk_stages()}
    return consts, options, None


# an H100's / H200's SM (sm_90): what bounds how many programs of one kernel run on it at once
SM90_REGISTERS, SM90_SHARED, SM90_MAX_WARPS, SM90_MAX_BLOCKS = 65536, 233472, 64, 32
SM90_BLOCK_RESERVED_SHARED = 1024  # the runtime's own shared memory in every block


def programs_per_sm(registers: int, shared: int, warps: int) -> dict:
    """Resident programs an SM by each limit and overall (CUDA's occupancy rules: registers are allocated per warp in
    units of 256, shared memory in units of 128 B plus the block's reserved 1 KB)."""
    per_warp = -(-registers * 32 // 256) * 256
    block_shared = -(-(shared + SM90_BLOCK_RESERVED_SHARED) // 128) * 128
    limits = {"registers": SM90_REGISTERS // per_warp // warps, "shared": SM90_SHARED // block_shared,
              "warps": SM90_MAX_WARPS // warps, "blocks": SM90_MAX_BLOCKS}
    return {"by": limits, "programs": min(limits.values())}


def sass_counts(sass: str) -> dict:
    lines = [ln for ln in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4,}\*/", ln)]
    out = {"instructions": len(lines)}
    for op, pattern in SASS_OPS.items():
        out[op] = sum(1 for ln in lines if re.search(pattern, ln))
    return out


def kernel_stats(preset: str, arch: int = 90) -> dict:
    """Compile one preset for sm_<arch>a and count what ptxas and the SASS show."""
    from vig.ops.bigla.triton.aot import compile_for, tool
    module, kernel, K, V, pointer_types = PRESETS[preset]
    fn = getattr(importlib.import_module(f"vig.ops.bigla.triton.{module}"), kernel)
    consts, options, launch_pointers = launch_settings(module, K, V, preset in SAVED_KEYS)
    compiled, all_consts = compile_for(fn, consts, options, launch_pointers or pointer_types, arch)
    with tempfile.TemporaryDirectory() as tmp:
        ptx, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(ptx, "w") as f:
            f.write(compiled.asm["ptx"])
        cap = [f"--maxrregcount={options['maxnreg']}"] if "maxnreg" in options else []
        ptxas = subprocess.run([tool(arch, "ptxas"), "-v", f"--gpu-name=sm_{arch}a", ptx, "-o", cubin, *cap],
                               capture_output=True, text=True, check=True)
        sass = subprocess.run([tool(arch, "cuobjdump"), "-sass", cubin], capture_output=True, text=True,
                              check=True).stdout
    info = ptxas.stderr + ptxas.stdout

    def number(pattern):
        m = re.search(pattern, info)
        return int(m.group(1)) if m else None
    registers = number(r"Used (\d+) registers")
    return {
        "kernel": f"{module}.{kernel}", "constexprs": {k: all_consts[k] for k in consts}, "options": options,
        "registers": registers, "spill_store_bytes": number(r"(\d+) bytes spill stores"),
        "spill_load_bytes": number(r"(\d+) bytes spill loads"), "shared_bytes": compiled.metadata.shared,
        "per_sm_h100": programs_per_sm(registers, compiled.metadata.shared, options["num_warps"]),
        "sass": sass_counts(sass),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="JSON file to write (atomically); printed only if left out")
    ap.add_argument("--arch", type=int, default=90, help="compute capability without the dot (90: H100 / H200)")
    ap.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    args = ap.parse_args(argv)
    import triton
    from vig.bench.provenance import code_identity
    from vig.bench.runner import write_json
    from vig.ops.bigla.triton.aot import tool
    ptxas_version = subprocess.run([tool(args.arch, "ptxas"), "--version"], capture_output=True,
                                   text=True).stdout.strip().splitlines()[-1]
    report = {"triton": triton.__version__, "ptxas": ptxas_version, "arch": f"sm_{args.arch}a", **code_identity(),
              "results": {}}
    for preset in args.presets:
        report["results"][preset] = r = kernel_stats(preset, args.arch)
        s = r["sass"]
        print(f"{preset:24s} regs {r['registers']} spills {r['spill_store_bytes']} B  shared {r['shared_bytes']} B  "
              f"{r['per_sm_h100']['programs']}/SM  instr {s['instructions']} "
              f"HMMA {s['HMMA']} HGMMA {s['HGMMA']} BAR {s['BAR']} SHFL {s['SHFL']} LDS/STS {s['LDS']}/{s['STS']}",
              flush=True)
    if args.out:
        write_json(report, args.out)
    else:
        json.dump(report, sys.stdout, indent=1)
    return report


if __name__ == "__main__":
    main()

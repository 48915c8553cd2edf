"""The kernels compiled for a GPU that need not be present: triton's compiler for the target, with the ptxas and
cuobjdump that ship with triton. Used by benchmarks/kernel_sass_stats.py (counts) and by tests/ops/test_triton_aot.py
and tests/layers/test_fused_aot.py (the launches compile for sm_90a, in CI without a GPU); the package never
imports it.

The compile is specialized as a launch would be:
- the unit strides of the last dims become the constant 1;
- every pointer, other stride and packed row width (W*) is marked divisible by 16, as at the models' shapes;
- the kernel's do-not-specialize ints (T and the like) stay plain i32, the scales fp32.
"""
import os
import re

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

FLOAT_ARGS = ("dscale", "ginv", "scale")
STRIDE = r"s[a-z][bthd]"  # the kernels' stride arguments: s, the tensor's letter, the dim (b, t, h, d)
MAX_SHARED_SM90 = 227 * 1024  # the most dynamic shared memory one program may take on an H100 / H200
TRITON_TYPES = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32", torch.int32: "*i32"}


def _signature(fn, consts: dict, pointer_types: dict, arg_types: dict):
    """Triton's signature, constexprs and divisibility attributes. pointer_types: name -> torch dtype (bf16 if left
    out) for the op's kernels, whose other arguments follow their naming (strides s?b/t/h/d, row widths W*);
    arg_types: name -> a torch dtype (a pointer), "i32", "i32/16" (an int divisible by 16) or "fp32", for kernels
    named otherwise (the fused layers'), taking precedence."""
    sig, attrs = {}, {}
    consts = dict(consts)
    for i, name in enumerate(fn.arg_names):
        param = fn.params[i]
        given = arg_types.get(name)
        if given is not None and name not in consts:
            sig[name] = TRITON_TYPES[given] if isinstance(given, torch.dtype) else given.split("/")[0]
            if isinstance(given, torch.dtype) or given.endswith("/16"):
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in consts or param.is_constexpr:
            sig[name] = "constexpr"
            if name not in consts:
                consts[name] = param.default
        elif name in FLOAT_ARGS:
            sig[name] = "fp32"
        elif name in fn.do_not_specialize:
            sig[name] = "i32"
        elif re.fullmatch(STRIDE, name) and name.endswith("d"):  # the last dim's stride
            sig[name], consts[name] = "constexpr", 1
        elif re.fullmatch(STRIDE + r"|W[A-Z]{1,2}", name):
            sig[name] = "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = TRITON_TYPES[pointer_types.get(name, torch.bfloat16)]
            attrs[(i,)] = [["tt.divisibility", 16]]
    constexprs = {(fn.arg_names.index(k),): v for k, v in consts.items()}
    return sig, constexprs, attrs, consts


def compile_for(fn, consts: dict, options: dict, pointer_types: dict | None = None, arch: int = 90,
                arg_types: dict | None = None, source=ASTSource):
    """`fn` (a @triton.jit kernel; with source=GluonASTSource a @gluon.jit one) compiled for sm_<arch>a; returns
    (compiled kernel, every constexpr it took)."""
    sig, constexprs, attrs, all_consts = _signature(fn, consts, pointer_types or {}, arg_types or {})
    compiled = triton.compile(source(fn, sig, constexprs, attrs),
                              target=GPUTarget("cuda", arch, 32), options={"num_stages": 3, **options})
    return compiled, all_consts


def tool(arch: int, name: str) -> str:
    """The path of triton's bundled `name` (ptxas, cuobjdump) for sm_<arch>."""
    from triton.backends.nvidia.compiler import get_ptxas
    ptxas = get_ptxas(arch)
    path = getattr(ptxas, "path", ptxas)
    return path if name == "ptxas" else os.path.join(os.path.dirname(path), name)


def registers(cubin: bytes, arch: int = 90) -> int:
    """Registers per thread of a compiled kernel (cuobjdump's resource usage of its cubin)."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        usage = subprocess.run([tool(arch, "cuobjdump"), "-res-usage", path], capture_output=True, text=True,
                               check=True).stdout
    return int(re.search(r"REG:(\d+)", usage).group(1))


def missing_toolchain(arch: int = 90) -> str | None:
    """Why this machine cannot compile for sm_<arch>a (a triton without its NVIDIA backend, or one that ships no
    ptxas), or None; the tests skip on it, and only on it."""
    try:
        ptxas = tool(arch, "ptxas")
    except (ImportError, RuntimeError, AttributeError) as e:
        return f"cannot compile for sm_{arch}a here: {type(e).__name__}: {e}"
    if not os.path.exists(ptxas):
        return f"this triton ships no ptxas: {ptxas}"
    return None


def chunk_bwd_launch(dtype, K: int, V: int, exact_mode: int):
    """(constexprs, launch options, pointer dtypes) of the chunk backward as launch._chunk_bwd would launch it for
    `dtype` inputs, from the launcher's own rules: bf16 inputs as the models call it (gate logits, packed rows),
    fp16 / fp32 with fp32 log-space gates and contiguous gradients."""
    from vig.ops.bigla.triton import config
    prec = config.dot_precision(dtype, backward=True)
    states = config.state_dtype(dtype)
    bf16_ops = config.bf16_operands(prec, *(torch.empty(0, dtype=d) for d in (dtype, dtype, states)))
    logits = dtype == torch.bfloat16
    gates = dtype if logits else torch.float32
    consts = dict(K=K, V=V, C=config.chunk_len(K, V, True, prec), PREC=prec, RAW=logits, BF16_OPS=bf16_ops,
                  DV_BF16=config.dv_bf16() and bool(bf16_ops), EXACT_MODE=exact_mode, PACKED=logits)
    consts["P_MODE"] = config.bwd_scores_mode(consts["DV_BF16"])
    options = {"num_warps": config.chunk_bwd_warps(config.chunk_warps(K, V, True)),
               **config.chunk_bwd_register_cap(prec)}
    pointers = {**{n: dtype for n in ("q", "k", "v", "do", "dq", "dk", "dv")},
                **{n: gates for n in ("gf", "gb", "dgf", "dgb")}, "st": states, "flags": torch.int32}
    return consts, options, pointers

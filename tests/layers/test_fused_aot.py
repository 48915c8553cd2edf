"""The fused layers' Triton kernels compile for sm_90a (H100 / H200) without a GPU (vig.ops.bigla.triton.aot), at
the launches ViG-T and ViG-B make under bf16 autocast (an fp32 residual stream and weights, bf16 branches; D =
192 and 768), each within the 227 KB of shared memory one program may take. The interpreter tests check their
numbers but never compile them; the GPU tests (tests/layers/*, -k cuda) do, on a GPU only."""
import pytest
import torch

pytest.importorskip("triton")

BF16, F32 = torch.bfloat16, torch.float32
DIMS = (192, 768)  # ViG-T's and ViG-B's widths


def _aot_or_skip():
    from vig.ops.bigla.triton import aot  # an error in our module fails the test; only a missing toolchain skips
    reason = aot.missing_toolchain()
    if reason:
        pytest.skip(reason)
    return aot


def _rows(strides, **pointers):
    """arg_types for a rows kernel: the pointers as given, M a plain int, D and the row strides multiples of 16."""
    return {"M": "i32", "D": "i32/16", "eps": "fp32", **{s: "i32/16" for s in strides}, **pointers}


def _check(aot, fn, consts, warps, arg_types):
    compiled, _ = aot.compile_for(fn, consts, {"num_warps": warps}, arg_types=arg_types)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90, compiled.metadata.shared
    return compiled


@pytest.mark.parametrize("D", DIMS)
def test_add_rmsnorm_kernels_compile_for_sm90(D):
    aot = _aot_or_skip()
    from vig.layers.fused import add_rmsnorm as mod
    from vig.layers.fused.rmsnorm import _blocks
    block_m, block_d, warps = _blocks(D, mod._TILE)
    _check(aot, mod.add_rmsnorm_fwd_kernel, dict(BLOCK_M=block_m, BLOCK_D=block_d), warps,
           _rows(("s_x", "s_y", "s_s", "s_n"), X=F32, Y=BF16, W=F32, S=F32, N=BF16, RSTD=F32))
    block_m, block_d, warps = _blocks(D, mod.BWD_TILE)
    _check(aot, mod.add_rmsnorm_bwd_kernel, dict(HAS_DY=True, BLOCK_M=block_m, BLOCK_D=block_d), warps,
           _rows(("s_s", "s_dn", "s_ds", "s_dx", "s_dy"), S=F32, W=F32, DN=BF16, DS=F32, DX=F32, DY=BF16, RSTD=F32,
                 DW_PART=F32))


@pytest.mark.parametrize("persistent", (False, True))
@pytest.mark.parametrize("D", DIMS)
def test_gate_kernels_compile_for_sm90(D, persistent):
    """The default backward launch, and the opt-in persistent grid at the tile the micro-benchmark sweeps first."""
    aot = _aot_or_skip()
    from vig.layers.fused import gate as mod
    from vig.layers.fused.rmsnorm import _blocks
    pointers = dict(O=BF16, L=BF16, G=BF16, WG=F32, WL=F32, RSTD_O=F32, RSTD_L=F32)
    block_m, block_d, warps = _blocks(D, mod._TILE)
    _check(aot, mod.gate_fwd_kernel, dict(OUT_SILU=D == 192, HEADS=1, HAS_BG=False, BLOCK_M=block_m,
                                               BLOCK_D=block_d), warps,
           _rows(("s_o", "s_l", "s_g", "s_out"), OUT=BF16, BG=F32, **pointers))
    block_m, block_d, warps = _blocks(D, 1024 if persistent else mod.BWD_TILE)
    _check(aot, mod.gate_bwd_kernel, dict(OUT_SILU=D == 192, BLOCK_M=block_m, BLOCK_D=block_d, PERSISTENT=persistent),
           warps, _rows(("s_o", "s_l", "s_g", "s_dout"), DOUT=BF16, DO=BF16, DL=BF16, DG=BF16, DWG=F32, DWL=F32,
                        **pointers))


@pytest.mark.parametrize("heads", (3, 12))
def test_gate_forward_compiles_for_head_rows(heads):
    """The forward as merged inference launches it: rows of one 64-wide head, tokens at the weight stack's stride,
    g_proj's bias added in the kernel (ViG-T's 3 heads, ViG-B's 12)."""
    aot = _aot_or_skip()
    from vig.layers.fused import gate as mod
    from vig.layers.fused.rmsnorm import _blocks
    block_m, block_d, warps = _blocks(64, mod._TILE)
    _check(aot, mod.gate_fwd_kernel, dict(OUT_SILU=heads == 3, HEADS=heads, HAS_BG=True, BLOCK_M=block_m,
                                          BLOCK_D=block_d), warps,
           _rows(("s_o", "s_l", "s_g", "s_out"), O=BF16, L=BF16, G=BF16, BG=F32, WG=F32, WL=F32, RSTD_O=F32,
                 RSTD_L=F32, OUT=BF16))


def test_swiglu_kernels_compile_for_sm90():
    aot = _aot_or_skip()
    from vig.layers.fused import swiglu as mod
    ints = {"N": "i32", "INNER": "i32/16"}
    _check(aot, mod.swiglu_fwd_kernel, dict(BLOCK=mod._BLOCK), 4, dict(H=BF16, OUT=BF16, **ints))
    _check(aot, mod.swiglu_bwd_kernel, dict(BLOCK=mod._BLOCK), 4, dict(H=BF16, DOUT=BF16, DH=BF16, **ints))


@pytest.mark.parametrize("D", DIMS)
def test_linear_swiglu_kernels_compile_for_sm90(D):
    """The MLP's fused gate_proj + SwiGLU at its blocks for K = D, bf16: no register spills (a GEMM's accumulators
    that spill would run far below the split path's cuBLAS GEMM)."""
    aot = _aot_or_skip()
    from vig.layers.fused import linear_swiglu as mod
    ints = {"M": "i32", "N": "i32/16", "K": "i32/16", "s_xm": "i32/16", "s_wn": "i32/16"}
    for kernel, table, extra in ((mod.linear_swiglu_fwd_kernel, mod.FWD_BLOCKS, dict(Y=BF16, s_ym="i32/16")),
                                 (mod.linear_swiglu_dh_kernel, mod.BWD_BLOCKS, dict(DY=BF16, DH=BF16, s_dym="i32/16",
                                                                       s_dhm="i32/16"))):
        bm, bn, bk, warps, stages = table[0] if D <= mod.SMALL_K else table[1]
        compiled, _ = aot.compile_for(kernel, dict(BM=bm, BN=bn, BK=bk, IEEE=False),
                                      {"num_warps": warps, "num_stages": stages},
                                      arg_types=dict(X=BF16, W=BF16, **ints, **extra))
        assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90, compiled.metadata.shared
        assert " STL" not in _sass(aot, compiled.asm["cubin"]), (kernel.fn.__name__, "spills to local memory")


def test_linear_swiglu_tma_kernels_compile_for_sm90():
    """The MLP op's TMA kernels (persistent, warp-specialized), each at its own launch, bf16: they fit an SM's shared
    memory and do not spill."""
    aot = _aot_or_skip()
    from vig.layers.fused import linear_swiglu_tma as mod

    def desc(rows, cols):
        return f"tensordesc<bf16[{rows}, {cols}]>"
    for kernel, launch, outs in ((mod.linear_swiglu_tma_fwd_kernel, mod.FWD_LAUNCH, ("y_desc",)),
                                 (mod.linear_swiglu_tma_dh_kernel, mod.DH_LAUNCH, ("dy_desc", "dha_desc", "dhb_desc"))):
        bm, bn, bk, warps, stages, ws = launch
        types = {"M": "i32", "N2": "i32", "K": "i32", "x_desc": desc(bm, bk), "w_desc": desc(bn, bk),
                 **{name: desc(bm, bn // 2) for name in outs}}
        compiled, _ = aot.compile_for(kernel, dict(BM=bm, BN=bn, BK=bk, PROGRAMS=132, WS=ws),
                                      {"num_warps": warps, "num_stages": stages}, arg_types=types)
        assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90, compiled.metadata.shared
        assert " STL" not in _sass(aot, compiled.asm["cubin"]), (kernel.fn.__name__, "spills to local memory")


def _sass(aot, cubin):
    import os
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        return subprocess.run([aot.tool(90, "cuobjdump"), "-sass", path], capture_output=True, text=True,
                              check=True).stdout


@pytest.mark.parametrize("n,dtype", [(96, BF16), (384, BF16), (96, F32)])
def test_stem_kernel_compiles_for_sm90(n, dtype):
    """The V2 stem's fused first conv + norm + SiLU at patch 16 (k9 s8) into ViG-T's and ViG-B's 96 / 384 channels on
    an fp32 image, bf16 operands (autocast) and fp32 ones (an fp32 model's inference), at the launcher's block."""
    aot = _aot_or_skip()
    from vig.layers.fused import stem as mod
    from vig.ops.grid import next_pow2
    bp, launch = mod.stem_blocks(n)
    consts = dict(C=3, KH=9, SH=8, SW=8, N=n, BN=next_pow2(n), BP=bp, TW=16, RE=32, IEEE=dtype == F32, sxw=1)
    ints = {name: "i32" for name in ("H", "W", "Ho", "Wo", "n_pix", "sxb", "sxc", "sxh")}
    _check(aot, mod.stem_fwd_kernel, consts, launch["num_warps"], dict(X=F32, WM=dtype, WE=dtype, BIAS=F32, LN_W=F32,
                                                                       LN_B=F32, Y=dtype, eps="fp32", **ints))


@pytest.mark.parametrize("dtype", [BF16, F32])
def test_low_rank_linear_kernel_compiles_for_sm90(dtype):
    """gk_proj's second layer (vig::low_rank_linear) at rank 16 on the merged output's strided rows, at its
    launch: bf16 (autocast) without register spills, and fp32 (an fp32 model's direct call)."""
    aot = _aot_or_skip()
    from vig.layers.fused import low_rank as mod
    bm, bn, warps = mod.LAUNCH
    compiled = _check(aot, mod.low_rank_linear_kernel, dict(R=16, BM=bm, BN=bn, IEEE=dtype == F32), warps,
                      dict(A=dtype, W=dtype, B=F32, Y=dtype, M="i32", N="i32/16", s_am="i32/16", s_wn="i32/16"))
    if dtype == BF16:
        assert " STL" not in _sass(aot, compiled.asm["cubin"]), "spills to local memory"


@pytest.mark.parametrize("dtype", [BF16, F32])
@pytest.mark.parametrize("D", (192, 384))
def test_low_rank_gate_kernels_compile_for_sm90(D, dtype):
    """gk_proj in training (vig::low_rank_gate) at its default launch: under bf16 autocast (the conv output's rows and
    the gates' gradient bf16, the weights fp32) and in an fp32 model; both kernels fit shared memory (at the bf16
    tile size the fp32 backward did not), and at ViG-T's width in bf16 (the models' route) neither spills."""
    aot = _aot_or_skip()
    from vig.layers.fused import low_rank_gate as mod
    from vig.ops.grid import next_pow2
    rows = mod.tile_rows(next_pow2(D), dtype.itemsize)
    consts = dict(R=16, CP=next_pow2(D), NP=next_pow2(D), BM=rows, IEEE=dtype == F32)
    dims = dict(M="i32", C="i32/16", N="i32/16", s_xm="i32/16")
    fwd = _check(aot, mod.low_rank_gate_fwd_kernel, consts, mod.WARPS,
                 dict(X=dtype, W0=F32, W1=F32, B=F32, Y=dtype, TILES="i32", **dims))
    bwd = _check(aot, mod.low_rank_gate_bwd_kernel, consts, mod.WARPS,
                 dict(X=dtype, DY=dtype, W0=F32, W1=F32, DX=dtype, PART=F32, s_dym="i32/16", TILES="i32",
                      **dims))
    for compiled in (fwd, bwd) if D == 192 and dtype == BF16 else ():
        assert " STL" not in _sass(aot, compiled.asm["cubin"]), "spills to local memory"

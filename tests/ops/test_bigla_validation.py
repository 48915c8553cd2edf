"""Every input error of vig.ops.bigla.bigla: the right exception type, and a message naming the argument."""
import pytest
import torch

from vig.ops.bigla import bigla

B, T, H, K, V = 2, 5, 3, 4, 6
NAMES = ("q", "k", "v", "g_fwd", "g_bwd")


def good(dtype=torch.float32):
    q, k = torch.randn(2, B, T, H, K).to(dtype)
    v = torch.randn(B, T, H, V).to(dtype)
    gf, gb = -torch.rand(2, B, T, H, K).to(dtype)
    return dict(q=q, k=k, v=v, g_fwd=gf, g_bwd=gb)


def call(args, **kw):
    return bigla(args["q"], args["k"], args["v"], args["g_fwd"], args["g_bwd"], **kw)


def test_good_inputs_pass():
    assert call(good(), backend="torch", check_gates=True).shape == (B, T, H, V)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_rank(name):
    args = good()
    args[name] = args[name][0]
    with pytest.raises(ValueError, match=rf"{name} must have rank 4"):
        call(args)


@pytest.mark.parametrize("name", NAMES)
def test_not_a_tensor(name):
    args = good()
    args[name] = args[name].tolist()
    with pytest.raises(TypeError, match=rf"{name} must be a torch.Tensor, got list"):
        call(args)


@pytest.mark.parametrize("name", ("k", "g_fwd", "g_bwd"))
@pytest.mark.parametrize("dim", (0, 1, 2, 3))
def test_shape_mismatch_with_q(name, dim):
    args = good()
    args[name] = torch.cat([args[name], args[name].narrow(dim, 0, 1)], dim)
    with pytest.raises(ValueError, match=rf"{name} must have the shape of q"):
        call(args)


@pytest.mark.parametrize("dim", (0, 1, 2))
def test_v_shape_mismatch(dim):
    args = good()
    args["v"] = torch.cat([args["v"], args["v"].narrow(dim, 0, 1)], dim)
    with pytest.raises(ValueError, match=r"v must be \[B, T, H, V\]"):
        call(args)


def test_empty_sequence():
    args = {n: x[:, :0] for n, x in good().items()}
    with pytest.raises(ValueError, match=r"sequence length T \(dim 1 of q\) must be >= 1"):
        call(args)


@pytest.mark.parametrize("qk_dims", (True, False))
def test_empty_head_dims(qk_dims):
    """K = 0 (or V = 0) once reached the default scale K ** -0.5 as a ZeroDivisionError."""
    args = good()
    names = ("q", "k", "g_fwd", "g_bwd") if qk_dims else ("v",)
    for n in names:
        args[n] = args[n][..., :0]
    with pytest.raises(ValueError, match=r"head dims K \(dim 3 of q\) and V \(dim 3 of v\) must be >= 1"):
        call(args)


@pytest.mark.parametrize("name", NAMES[1:])
def test_device_mismatch(name):
    args = good()
    args[name] = args[name].to("meta")
    with pytest.raises(ValueError, match=rf"{name} is on meta but q is on cpu"):
        call(args)


@pytest.mark.parametrize("name", ("k", "v"))
@pytest.mark.parametrize("dtype", (torch.float64, torch.bfloat16))
def test_qkv_dtype_mismatch(name, dtype):
    args = good()
    args[name] = args[name].to(dtype)
    with pytest.raises(TypeError, match=rf"{name} has dtype {dtype} but q has torch.float32"):
        call(args)


@pytest.mark.parametrize("name", ("g_fwd", "g_bwd"))
def test_gate_dtype(name):
    args = good(torch.bfloat16)
    args[name] = args[name].to(torch.float16)
    with pytest.raises(TypeError, match=rf"{name} must be float32 or the input dtype torch.bfloat16"):
        call(args)
    args[name] = args[name].to(torch.float32)  # fp32 gates with bf16 inputs are allowed
    assert call(args, backend="torch").dtype == torch.bfloat16


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", (torch.int64, torch.int32, torch.bool))
def test_non_floating_dtype(name, dtype):
    args = good()
    args[name] = args[name].to(dtype)
    with pytest.raises(TypeError, match=rf"{name} must be a floating tensor"):
        call(args)


@pytest.mark.parametrize("backend", ("cuda", "Torch", "", None))
def test_unknown_backend(backend):
    with pytest.raises(ValueError, match=r"backend must be one of"):
        call(good(), backend=backend)


def test_scale_type():
    with pytest.raises(TypeError, match=r"scale must be a float or None, got str"):
        call(good(), scale="0.5")
    with pytest.raises(TypeError, match=r"scale must be a float or None, got Tensor"):
        call(good(), scale=torch.tensor(0.5))
    with pytest.raises(TypeError, match=r"scale must be a float or None, got bool"):
        call(good(), scale=True)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_scale_must_be_finite_positive(bad):
    with pytest.raises(ValueError, match=r"scale must be a finite positive float"):
        call(good(), scale=bad)


@pytest.mark.parametrize("name", ("g_fwd", "g_bwd"))
def test_nan_gate_fails_the_check(name):
    args = good()
    args[name][0, 1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"{name} must be <= 0 .*NaN"):
        call(args, check_gates=True)


@pytest.mark.parametrize("name", ("g_fwd", "g_bwd"))
def test_positive_gate_checked_only_when_asked(name):
    args = good()
    args[name][1, 2, 0, 3] = 0.01
    with pytest.raises(ValueError, match=rf"{name} must be <= 0"):
        call(args, check_gates=True)
    assert torch.isfinite(call(args, backend="torch")).all()  # unchecked: computed as given


def test_zero_gate_passes_check():
    args = good()
    args["g_fwd"].zero_()
    call(args, backend="torch", check_gates=True)


def test_triton_backend_needs_cuda():
    with pytest.raises(ValueError, match=r"backend='triton' needs CUDA tensors, got tensors on cpu") as e:
        call(good(), backend="triton")
    assert "backend='torch'" in str(e.value) and "TRITON_INTERPRET=1" in str(e.value)


@pytest.mark.parametrize("bad, exc, match", [
    (0.0, ValueError, "finite positive"), (-16.0, ValueError, "finite positive"),
    (float("nan"), ValueError, "finite positive"), (float("inf"), ValueError, "finite positive"),
    ("16", TypeError, "got str"), (True, TypeError, "got bool")])
def test_bad_gate_logit_normalizer(bad, exc, match):
    with pytest.raises(exc, match=rf"gate_logit_normalizer must be .*{match}"):
        call(good(), backend="torch", gate_logit_normalizer=bad)


def test_check_gates_with_gate_logits_is_refused():
    with pytest.raises(ValueError, match="check_gates applies to log-space gates"):
        call(good(), backend="torch", check_gates=True, gate_logit_normalizer=16.0)


def test_numpy_scales_are_floats():
    """np.float64 subclasses float, np.float32 does not: both are real numbers and both are taken."""
    np = pytest.importorskip("numpy")
    args = good()
    ref = call(args, scale=0.5, backend="torch")
    for scale in (np.float32(0.5), np.float64(0.5)):
        torch.testing.assert_close(call(args, scale=scale, backend="torch"), ref, rtol=0, atol=0)


def test_check_gates_under_fullgraph_compile_names_the_gate():
    """A host branch on the gates' values cannot be traced: fullgraph=True failed with dynamo's data-dependent
    guard error. Under compile the check is an asserting op, whose message names the gate."""
    f = torch.compile(lambda a: call(a, backend="torch", check_gates=True), fullgraph=True, backend="eager")
    args = good()
    torch.testing.assert_close(f(args), call(args, backend="torch"))
    args["g_bwd"][0, 1, 2, 0] = 0.5
    with pytest.raises(RuntimeError, match=r"g_bwd must be <= 0"):
        f(args)

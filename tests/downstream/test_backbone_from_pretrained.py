"""`vig seg / det train --pretrained RUN/best.safetensors` builds the backbone that run trained (model and
--model-kwargs, as `vig train` records them), so neither --backbone nor --model-kwargs has to be typed again; flags
still win, and files that record nothing keep the vig_tiny default."""
import json
import types

import timm
import torch

from conftest import TINY
from vig.cli import main
from vig.downstream.commands import DEFAULT_BACKBONE, _backbone_and_kwargs
from vig.models.checkpoint import save_safetensors_atomic

SEG_ARGS = ["--num-classes", "3", "--batch-size", "2", "--crop", "64", "--scale", "64", "64", "--head-channels", "16",
            "--device", "cpu", "--workers", "0", "--iters", "1"]


def _recorded(path, model="vig_tiny", kwargs=TINY):
    import vig.models  # noqa: F401
    torch.manual_seed(0)
    sd = timm.create_model(model, **kwargs).state_dict()
    save_safetensors_atomic(sd, path, metadata={"model": model, "model_kwargs": json.dumps(kwargs)})
    return str(path)


def test_seg_train_takes_the_backbone_a_run_recorded(segdata, tmp_path):
    img_dir, ann_dir = segdata
    pretrained = _recorded(tmp_path / "best.safetensors")  # vig_tiny at TINY: the default kwargs would not load it
    code = main(["seg", "train", "--train-images", img_dir, "--train-masks", ann_dir, "--out", str(tmp_path / "o"),
                 "--pretrained", pretrained] + SEG_ARGS)
    assert code == 0
    assert (tmp_path / "o" / "last.pth").is_file()


def test_flags_win_and_plain_files_keep_the_default(tmp_path):
    recorded = _recorded(tmp_path / "r.safetensors")
    bare = tmp_path / "bare.pth"
    torch.save({"model": {}}, bare)

    def ns(**kw):
        return types.SimpleNamespace(**{"backbone": None, "model_kwargs": None, "pretrained": None, **kw})
    assert _backbone_and_kwargs(ns(pretrained=recorded)) == ("vig_tiny", TINY)
    assert _backbone_and_kwargs(ns(pretrained=recorded, model_kwargs='{"depth": 3}')) == ("vig_tiny", {"depth": 3})
    assert _backbone_and_kwargs(ns(pretrained=recorded, backbone="vig_small")) == ("vig_small", {})
    assert _backbone_and_kwargs(ns(pretrained=str(bare))) == (DEFAULT_BACKBONE, {})
    assert _backbone_and_kwargs(ns()) == (DEFAULT_BACKBONE, {})
    assert _backbone_and_kwargs(ns(pretrained=str(tmp_path / "missing.pth"))) == (DEFAULT_BACKBONE, {})

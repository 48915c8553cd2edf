"""`vig eval`: top-1/top-5 of a checkpoint (official .pth, our .safetensors or training last.pth) on a dataset."""
import json
import sys
from pathlib import Path

from vig.atomic import check_output_file
from vig.errors import UsageError


def run_eval(model_name, checkpoint, data, data_dir=None, batch_size=256, img_size=None, crop_pct=None,
             interpolation=None, amp=None, device=None, limit=None, json_path=None, workers=0, model_kwargs=None,
             compile_mode=None, raw_weights=False):
    """model_name / model_kwargs: None takes those a `vig train` checkpoint records. compile_mode: None runs eagerly;
    a torch.compile mode compiles the model (after its weights are loaded)."""
    from torch.utils.data import DataLoader

    from vig.data.build import build_eval, check_data_folder, check_interpolation, is_fmnist, model_data_config
    from vig.models.checkpoint import (checkpoint_build_kwargs, load_checkpoint_file, load_pretrained,
                                       model_for_checkpoint, recorded_model_kwargs, require_head, saved_run_info)
    from vig.train import distributed, setup
    from vig.train.config import check_ranges
    from vig.train.loop import evaluate

    # options first: a typo should not cost a whole evaluation before it surfaces
    if json_path:
        check_output_file(json_path, "--json")
    if interpolation is not None:
        check_interpolation(interpolation, training=False)
    check_ranges({"crop_pct": crop_pct})  # vig train's range and message
    if limit is not None and limit < 1:  # 0 would silently mean "all images"
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if not is_fmnist(data):
        check_data_folder(data)
    raw = load_checkpoint_file(checkpoint, raw_weights)
    saved = saved_run_info(checkpoint)
    model_name = model_for_checkpoint(model_name, checkpoint, saved)
    if model_kwargs is None:
        model_kwargs = recorded_model_kwargs(saved, model_name)
    setup.check_model_name(model_name)
    dev = distributed.pick_device(device)
    amp = amp or ("bf16" if dev.type == "cuda" else "none")
    built_for = checkpoint_build_kwargs(raw, model_name)
    require_head(built_for, checkpoint, "there is nothing to score")
    num_classes = built_for.get("num_classes")
    if img_size is None and saved.get("img_size"):  # a run trained at 64 px should not be scored at 224
        img_size = int(saved["img_size"])
        print(f"eval at {img_size} px, the training size stored in {checkpoint} (--img-size to change)")
    crop_pct, interpolation = trained_transform(saved, crop_pct, interpolation, checkpoint)
    # the channels the checkpoint's stem reads (a Fashion-MNIST run scored on colour folders reads them as gray);
    # --model-kwargs in_chans=... wins
    in_chans = (model_kwargs or {}).get("in_chans") or built_for.get("in_chans") or (None if is_fmnist(data) else 3)
    model = setup.create_model(model_name, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                               model_kwargs=model_kwargs)
    load_pretrained(model, checkpoint, strict=True, model_name=model_name, raw=raw)
    model.to(dev)
    dc = model_data_config(model, img_size, interpolation, crop_pct)
    trained_classes = None if is_fmnist(data) else saved.get("classes")
    ds, classes = build_eval(data, data_dir, dc, limit, classes=trained_classes)
    if len(classes) > model.num_classes:
        raise UsageError(f"the data has {len(classes)} classes but the checkpoint's head has {model.num_classes}")
    if trained_classes is None and not is_fmnist(data) and len(classes) < model.num_classes:
        print(f"warning: {data} has {len(classes)} classes and the head {model.num_classes}; labels follow this "
              f"folder's sorted class names, which is right only if they are the first {len(classes)} training "
              f"classes (checkpoints from `vig train` store their class names and avoid this)", file=sys.stderr)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    if compile_mode is not None:
        setup.compile_in_place(model, compile_mode)
    res = evaluate(model, loader, dev, amp, distributed.Dist(device=dev), model.num_classes)
    result = {"model": model_name, "checkpoint": str(checkpoint), "data": str(data), "images": res["n"],
              "top1": res["top1"], "top5": res["top5"], "loss": res["loss"], "input_size": list(dc.input_size),
              "crop_pct": dc.crop_pct, "interpolation": dc.interpolation, "amp": amp, "device": str(dev)}
    print(table(result))
    if json_path:
        from vig.train.checkpointing import atomic_write_text
        atomic_write_text(json_path, json.dumps(result, indent=2))
        print(f"wrote {json_path}")
    return result


def trained_transform(saved, crop_pct, interpolation, checkpoint):
    """crop_pct and interpolation as training validated (stored with the checkpoint), unless the flags say
    otherwise: the model's defaults can differ (vig_fmnist: 1.0 / bilinear) and then the score does too."""
    used = []
    if crop_pct is None and saved.get("crop_pct") is not None:
        crop_pct = saved["crop_pct"]
        used.append(f"crop_pct {crop_pct:g}")
    if interpolation is None and saved.get("interpolation"):
        interpolation = saved["interpolation"]
        used.append(f"{interpolation} interpolation")
    if used:
        print(f"eval with {' and '.join(used)}, the validation transform stored in {checkpoint} "
              f"(--crop-pct / --interpolation to change)")
    return crop_pct, interpolation


def table(r):
    rows = [("model", r["model"]), ("checkpoint", Path(r["checkpoint"]).name), ("data", r["data"]),
            ("images", str(r["images"])), ("input", "x".join(map(str, r["input_size"]))),
            ("top-1 (%)", f"{r['top1']:.2f}"), ("top-5 (%)", f"{r['top5']:.2f}"), ("loss", f"{r['loss']:.4f}")]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 3 + max(len(v) for _, v in rows))
    return "\n".join([line] + [f"{k:<{w}} | {v}" for k, v in rows] + [line])

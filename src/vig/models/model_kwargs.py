"""--model-kwargs as every command reads it: KEY=VALUE items (values in YAML: 6, 0.1, true, [2, 2, 6, 2]) or JSON
objects, in any mix; train, det and seg once each took only one of the two forms."""
import json

from vig.errors import UsageError

METAVAR = "KEY=VALUE|JSON"
HELP = "extra timm.create_model arguments, e.g. --model-kwargs depth=6 embed_dim=96 (or '{\"depth\": 6}')"


def parse_model_kwargs(items):
    """items: argparse's list, or one string (a single item)."""
    import yaml
    out = {}
    if isinstance(items, str):
        items = [items]
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                obj = json.loads(item)
            except json.JSONDecodeError as e:
                raise UsageError(f"--model-kwargs: {item!r} is not a valid JSON object: {e}") from None
            out.update({str(k).replace("-", "_"): v for k, v in obj.items()})
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--model-kwargs expects KEY=VALUE or a JSON object, got {item!r}")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out

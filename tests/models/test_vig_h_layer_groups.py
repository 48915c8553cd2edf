"""ViG-H's layer-decay groups follow the order the layers run in: a stage's downsample runs after its blocks (the
official layout), so it shares the group of that stage's last block (timm's merge-with-previous ordinal), below
the next stage's."""
import timm
from timm.models import group_parameters

import vig  # noqa: F401  (registers the models)


def test_downsample_groups_sit_between_their_stage_and_the_next():
    model = timm.create_model("vig_h_tiny")
    groups = group_parameters(model, model.group_matcher(coarse=False))
    where = {name: i for i, names in groups.items() for name in names}
    for s in range(len(model.layers) - 1):
        down = [i for n, i in where.items() if n.startswith(f"layers.{s}.downsample")]
        last = max(i for n, i in where.items() if n.startswith(f"layers.{s}.blocks."))
        first_next = min(i for n, i in where.items() if n.startswith(f"layers.{s + 1}.blocks."))
        assert down and set(down) == {last} and last < first_next, (s, down, last, first_next)

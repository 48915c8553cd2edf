"""README's model table: every variant's parameter count and GMACs @224 with the BiGLA recurrence included
(torch's FlopCounterMode through the op's registered formula, on the meta device: shapes only)."""
import pytest
import torch

from vig.bench import flops, runner

# README.md, "## Models" table: (params, GMACs @224 incl. BiGLA)
TABLE = {
    "vig_tiny": (5_834_536, 1.197), "vig_small": (22_615_144, 4.539), "vig_base": (89_022_184, 17.662),
    "vig_h_tiny": (28_600_680, 4.538), "vig_h_small": (50_051_688, 8.823), "vig_h_base": (88_904_360, 15.653),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_params_and_gmacs_at_224_match_the_readme_table(name):
    params, gmacs = TABLE[name]
    model = runner.create_model(name, 224, device="meta")
    assert sum(p.numel() for p in model.parameters()) == params
    fwd = flops.model_flops(model, 224)
    assert fwd["bigla"] > 0  # the recurrence is counted, not skipped by the counter
    assert fwd["total"] / 2e9 == pytest.approx(gmacs, abs=1.5e-3)  # the table's 3 decimals

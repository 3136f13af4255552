"""The C sampler and its numpy mirror pick the same tokens for the same seed."""
import numpy as np
import pytest

from tinyslm.hostsim import HostModel
from tinyslm.pipeline import compile_model
from tinyslm.sampler import Sampler


@pytest.fixture(scope="module")
def host(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "b"
    compile_model(models["llama"], out, "host", 32, "int8", quiet=True)
    return HostModel(out)


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (1.0, 1.0), (0.7, 0.9), (1.3, 0.5), (0.5, 0.0)])
def test_sampler_matches_mirror(host, temperature, top_p):
    rng = np.random.default_rng(int(temperature * 10 + top_p * 100))
    c, py = host.sampler(42, temperature, top_p), Sampler(42, temperature, top_p)
    picks = []
    for i in range(200):
        logits = (rng.standard_normal(host.vocab) * 3).astype(np.float32)
        if i % 7 == 0:
            logits[rng.integers(0, host.vocab, 5)] = logits.max()   # ties
        a, b = host.sample(c, logits), py.sample(logits)
        assert a == b, (i, a, b)
        picks.append(a)
    if temperature > 0:
        assert len(set(picks)) > 10   # it really samples

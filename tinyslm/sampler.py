"""numpy mirror of firmware/tsl_sampler.c: same seed, same tokens."""
import numpy as np

from .numerics import exp_neg

f32 = np.float32
M64 = (1 << 64) - 1


class Sampler:
    def __init__(self, seed=0, temperature=0.0, top_p=1.0):
        self.state = (int(seed) ^ 0x9E3779B97F4A7C15) & M64 or 1
        self.temperature, self.top_p = f32(temperature), f32(top_p)

    def rng_u32(self):
        x = self.state
        x ^= x >> 12
        x = (x ^ (x << 25)) & M64
        x ^= x >> 27
        self.state = x
        return ((x * 0x2545F4914F6CDD1D) & M64) >> 32

    def sample(self, logits):
        logits = np.asarray(logits, f32)
        best = int(np.argmax(logits))  # first maximum, as the C loop
        if self.temperature <= 0:
            return best
        probs = exp_neg((logits - logits[best]) / self.temperature)
        total = np.add.accumulate(probs, dtype=f32)[-1]
        r = f32(self.rng_u32() >> 8) * f32(1.0 / 16777216.0)
        if f32(0) < self.top_p < f32(1):
            idx = np.nonzero(probs > 0)[0]
            idx = idx[np.lexsort((idx, -probs[idx]))]
            csum = np.add.accumulate(probs[idx], dtype=f32)
            k = int(np.argmax(csum >= self.top_p * total)) + 1 if (csum >= self.top_p * total).any() else len(idx)
            idx, total = idx[:k], csum[k - 1]
        else:
            idx = np.arange(len(probs))
        c = np.add.accumulate(probs[idx], dtype=f32)
        hit = np.nonzero(r * total < c)[0]
        return int(idx[hit[0]] if len(hit) else idx[-1])


def check_args(seed, temperature, top_p, max_tokens=None):
    """Raise TslError (naming the command-line option) unless the settings are ones the sampler
    takes, on the host build and on a device alike: seed in [0, 2^64) (tsl_sampler_init's u64),
    temperature a finite float32 >= 0 (0: greedy), top_p in [0, 1] (0 or 1: no nucleus),
    max_tokens >= 0."""
    import math
    from .errors import TslError
    if not 0 <= seed < 2**64:
        raise TslError(f"--seed {seed}: the sampler's seed is an unsigned 64-bit number, 0 to 2^64-1")
    if not (math.isfinite(temperature) and 0 <= temperature <= 3.4028234663852886e38):
        raise TslError(f"--temperature {temperature}: must be a finite number >= 0 (0 = greedy)")
    if not (math.isfinite(top_p) and 0 <= top_p <= 1):
        raise TslError(f"--top-p {top_p}: must be in [0, 1] (1 = no nucleus)")
    if max_tokens is not None and max_tokens < 0:
        raise TslError(f"--max-tokens {max_tokens}: must be >= 0")

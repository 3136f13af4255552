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

"""Generation on the host build (the prompt through tsl_prefill, then sampled tokens fed back) and
the text it streams to stdout, for `run` on the host and on a device."""


def generate(host, ids, max_tokens, temperature, top_p, seed, max_seq, on_token, eos=None):
    """Prompt ids, then up to max_tokens sampled ids; on_token(id) for each generated one."""
    host.reset()
    smp = host.sampler(seed, temperature, top_p)
    out, pos, nxt = [], 0, None
    lg = host.prefill(ids[:max_seq], 0)          # the prompt in tiles where the build has tsl_prefill
    nxt = host.sample(smp, lg)
    pos = len(ids[:max_seq])
    while len(out) < max_tokens:
        out.append(nxt)
        on_token(nxt)
        if nxt == eos or pos >= max_seq:
            break
        lg = host.step(nxt, pos)
        pos += 1
        nxt = host.sample(smp, lg)
    return out


class TokenPrinter:
    """Streams generated tokens: text as soon as it is valid UTF-8 (after the prompt; a character
    split across tokens waits for its last byte), or ids. With only a device's tokenizer (dev, no
    local one) the text is the bytes each ITEM carries; a token whose bytes did not fit one (and
    every one after it) is decoded by the device after the run, which reads nothing while it streams."""

    def __init__(self, tok, a, dev=None):
        self.tok, self.dev, self.pending, self.later = tok, dev, bytearray(), []
        self.ids_only = a.print_ids or (tok is None and dev is None)
        if not self.ids_only and a.prompt:
            print(a.prompt, end="", flush=True)

    def __call__(self, t, text=None):
        if self.ids_only:
            print(t, end=",", flush=True)
            return
        if self.tok is None:
            if text is None or self.later:
                self.later.append(t)
            else:
                self._put(text)
            return
        self._put(self.tok.token_bytes(t))

    def _put(self, data):
        self.pending.extend(data)
        try:
            print(self.pending.decode("utf-8"), end="", flush=True)
            self.pending.clear()
        except UnicodeDecodeError:
            pass                    # a multi-byte character continues in the next token

    def close(self):
        if self.later:
            self._put(self.dev.token_bytes(self.later))
        print(self.pending.decode("utf-8", "replace"))


class DeviceTokenizer:
    """The device's own tokenizer (IDENTITY's bos/eos, ENCODE) where the host has none."""

    def __init__(self, dev, info):
        self.dev, self.bos_id, self.eos_id = dev, info["bos_id"], info["eos_id"]

    def encode(self, text):
        return self.dev.encode(text)

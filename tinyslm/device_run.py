"""Generation on a device over the serial protocol, with the host build's semantics
(generation.generate): the prompt, then up to max_tokens sampled ids, ending after the end-of-sequence
token or when the positions reach max_seq. What the protocol and the device cannot carry is
refused here in one line, before anything is sent."""
from . import protocol as P
from .errors import TslError


def run_count(info, n_ids, max_tokens, start=0):
    """-> how many tokens the device is asked for: max_tokens, clipped at max_seq as on the host
    build (the prompt at positions start..start+n_ids-1). TslError when the prompt or the count
    does not fit the protocol or the device."""
    max_seq, most = info["max_seq"], P.MAX_CONT_IDS if start else P.MAX_IDS
    if n_ids > most:
        raise TslError(f"a prompt of {n_ids} token ids: the protocol carries at most {most} ids in one request "
                       f"(and the device's max_seq {max_seq} bounds it)")
    if start + n_ids > max_seq:
        raise TslError(f"a prompt of {start + n_ids} token ids is longer than the device's max_seq {max_seq}")
    if not 0 <= max_tokens <= P.MAX_ITEMS:
        raise TslError(f"--max-tokens {max_tokens}: a run on a device carries 0 to {P.MAX_ITEMS} tokens "
                       f"(and the device's max_seq {max_seq} bounds it)")
    count = min(max_tokens, max_seq + 1 - start - n_ids)
    if count > info["max_items"]:
        raise TslError(f"--max-tokens {max_tokens}: the firmware keeps at most {info['max_items']} tokens of a run")
    return count


def generate(dev, ids, max_tokens, temperature, top_p, seed, on_token, eos=None):
    """-> (tokens, cycles per token): on_token(id, text) for each as it arrives (text: its bytes
    from the device's tokenizer, None without). Never more than max_tokens, each checked
    against the device's vocabulary (serialio.Device)."""
    info = dev.info or dev.identify()
    count = run_count(info, len(ids), max_tokens)
    out, cycles = [], []
    it = dev.generate(ids, count, temperature, top_p, seed, text=True)
    try:
        for t, c, text in it:
            out.append(t)
            cycles.append(c)
            on_token(t, text)
            if t == eos:
                break
    finally:
        it.close()                   # stopped early: the host lets the run finish
    return out, cycles

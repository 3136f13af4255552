"""`tinyslm chat`: a multi-turn conversation with the host build or a device.

Each turn renders the whole conversation with the model's chat template (tokenizer_config.json's
`chat_template`, in jinja2's ImmutableSandboxedEnvironment as transformers does; no template:
plain continuation, the turns' texts joined) and encodes it with the build's tokenizer. Only the
ids past the longest prefix already in the KV cache are run, on the host build and on a device
(GEN_CONTINUE: the device checks that its cache holds that prefix, else the turn runs from
position 0): the same ids at the same positions give the same logits and tokens. When the
conversation passes the context the oldest turns are dropped and the kept ones run again from
position 0. A fresh sampler (the same seed) starts each answer, on the host and the device alike."""
import json
from pathlib import Path

from .errors import TslError

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def _token_text(v):
    """bos_token / eos_token in tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else ""


def load_template(path):
    """-> (template source or None, bos text, eos text) from a tokenizer_config.json; reading it
    runs nothing (json only; the template is compiled in a sandbox)."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TslError(f"{path}: not a readable tokenizer_config.json: {e}") from None
    if not isinstance(cfg, dict):
        raise TslError(f"{path}: not a JSON object")
    tpl = cfg.get("chat_template")
    if isinstance(tpl, list):                   # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
        tpl = named.get("default")
    if tpl is not None and not isinstance(tpl, str):
        raise TslError(f"{path}: chat_template is neither a string nor a list of named templates")
    return tpl, _token_text(cfg.get("bos_token")), _token_text(cfg.get("eos_token"))


class Template:
    """A chat template compiled in jinja2's ImmutableSandboxedEnvironment (no attribute access
    to Python internals, no mutation of the messages), as transformers renders it."""

    def __init__(self, source, bos="", eos="", where="chat_template"):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        self.where, self.bos, self.eos = where, bos, eos
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(msg):
            raise TslError(f"{where}: the template refused the conversation: {msg}")
        env.globals["raise_exception"] = raise_exception
        try:
            self.t = env.from_string(source)
        except TemplateError as e:
            raise TslError(f"{where}: not a valid template: {e}") from None

    def render(self, messages, add_generation_prompt=True):
        from jinja2 import TemplateError
        try:
            return self.t.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                 bos_token=self.bos, eos_token=self.eos)
        except TemplateError as e:
            raise TslError(f"{self.where}: rendering failed: {e}") from None
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as e:
            raise TslError(f"{self.where}: rendering failed: {type(e).__name__}: {e}") from None


class Conversation:
    """Turns -> the ids to run. tok: tinyslm.tokenizer.Tokenizer; template: Template or None.
    limit: the most ids a turn's prompt plus its answer may take (max_seq, or the device's)."""

    def __init__(self, tok, template, limit, max_tokens, system=None):
        self.tok, self.template, self.limit, self.max_tokens = tok, template, limit, max_tokens
        self.system = [{"role": "system", "content": system}] if system else []
        self.turns = []                # [user text, assistant text or None]
        self.stops = {i for i in (tok.eos_id,) if i is not None} | \
            {tok.added_ids[s] for s in END_OF_TURN if s in getattr(tok, "added_ids", {})}

    def _ids(self):
        if self.template is None:
            text = "".join(u + (a or "") for u, a in self.turns)
            lead = [self.tok.bos_id] if self.tok.bos_id is not None else []
            return lead + self.tok.encode(text)
        msgs = list(self.system)
        for u, a in self.turns:
            msgs.append({"role": "user", "content": u})
            if a is not None:
                msgs.append({"role": "assistant", "content": a})
        text = self.template.render(msgs, add_generation_prompt=True)
        lead = [self.tok.bos_id] if self.tok.bos_id is not None and not \
            (self.template.bos and text.startswith(self.template.bos)) else []
        return lead + self.tok.encode(text)

    def ask(self, text):
        """-> (ids of the whole conversation for this turn, turns dropped to fit), or TslError
        when the turn alone does not fit."""
        self.turns.append([text, None])
        dropped = 0
        while True:
            ids = self._ids()
            if len(ids) + min(self.max_tokens, 16) <= self.limit:
                return ids, dropped
            if len(self.turns) == 1:
                self.turns.clear()
                raise TslError(f"this message takes {len(ids)} tokens: with room for an answer it does not fit "
                               f"the context of {self.limit}")
            self.turns.pop(0)
            dropped += 1

    def answered(self, text):
        self.turns[-1][1] = text

    def reset(self):
        self.turns.clear()


def min_slots(man):
    """The smallest sliding-window ring of a build's KV cache (max_seq without one): TSL_KV_MIN_SLOTS."""
    m = man["model"]
    return min([kv["slots"] for kv in m.get("kv_layers", [])] or [m["max_seq"]])


def kv_keeps(ran, pos, slots):
    """True if, after positions 0..ran-1 ran, the KV cache still holds positions 0..pos-1 for a run
    from pos (tsl_kv_keeps in tsl_model.h): a ring of `slots` has overwritten them once positions
    past pos + 1 ran and it wrapped."""
    return pos == 0 or 0 < pos <= ran and (ran <= pos + 1 or ran <= slots)


def reusable(fed, ids, ran, slots):
    """-> how many leading ids of this turn's prompt the KV cache holds: the common prefix of `fed`
    (the ids the cache holds) and ids[:-1] (the last one always runs), if kv_keeps allows it, else 0."""
    k = 0
    while k < min(len(ids) - 1, len(fed)) and ids[k] == fed[k]:
        k += 1
    return k if kv_keeps(ran, k, slots) else 0


class HostSession:
    """The host build: keeps its KV cache across turns, runs only the ids past the common prefix."""

    def __init__(self, host, max_seq, slots=None):
        self.host, self.max_seq, self.fed = host, max_seq, []
        self.slots = max_seq if slots is None else slots
        self.reused = 0                # positions of the last turn's prompt taken from the KV cache

    def answer(self, ids, max_tokens, temperature, top_p, seed, stops, on_token):
        k = reusable(self.fed, ids, len(self.fed), self.slots)
        if k == 0:
            self.host.reset()
        self.fed, self.reused = list(ids[:k]), k
        lg = None
        for pos in range(k, len(ids)):
            lg = self.host.step(ids[pos], pos)
            self.fed.append(ids[pos])
        smp = self.host.sampler(seed, temperature, top_p)
        out = []
        try:
            while len(out) < max_tokens:
                t = self.host.sample(smp, lg)
                out.append(t)
                on_token(t)
                if t in stops or len(self.fed) >= self.max_seq:
                    break
                lg = self.host.step(t, len(self.fed))
                self.fed.append(t)
        except KeyboardInterrupt:
            on_token(None)
        return out


class DeviceSession:
    """A device over the serial protocol: as HostSession, the prompt past the common prefix runs
    at its position (GEN_CONTINUE) while the device's KV cache holds the rest; if the device says
    it does not (rebooted, used by another host or its console: E_CONTEXT), from position 0."""

    def __init__(self, dev, slots):
        self.dev, self.slots = dev, slots
        self.fed = []                  # ids the device's KV cache holds at positions 0.. (as far as we saw)
        self.ran = 0                   # positions the device ran (its last run's stream is not all read)
        self.reused = 0                # positions of the last turn's prompt the device kept

    def answer(self, ids, max_tokens, temperature, top_p, seed, stops, on_token):
        from . import protocol as P
        from .device_run import run_count
        from .serialio import Refused
        k = reusable(self.fed, ids, self.ran, self.slots)
        if len(ids) - k > P.MAX_CONT_IDS:
            k = 0
        count = run_count(self.dev.info, len(ids) - k, max_tokens, k)
        try:
            it = self.dev.generate(ids[k:], count, temperature, top_p, seed, start=k, prefix=ids[:k])
        except Refused as e:
            if e.code != P.E_CONTEXT:
                raise
            k = 0
            it = self.dev.generate(ids, count, temperature, top_p, seed)
        self.reused, self.fed, self.ran = k, [], 0
        out = []
        try:
            for t, _ in it:
                out.append(t)
                on_token(t)
                if t in stops:
                    break
        except KeyboardInterrupt:
            on_token(None)
        finally:
            it.close()                 # the device finishes its run; the host reads it to the end
        self.ran = len(ids) + count - 1 if count else k       # the last token is sampled, not run
        self.fed = (list(ids) + out)[:self.ran]
        return out


def chat(session, conv, lines, write, temperature, top_p, seed, note):
    """The conversation loop: each line of `lines` a user turn ('/reset' clears, '/quit' ends);
    write(text) streams the answer, note(text) says what happened (context full, stopped)."""
    for line in lines:
        text = line.rstrip("\r\n")
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            conv.reset()
            note("[conversation cleared]")
            continue
        if not text:
            continue
        try:
            ids, dropped = conv.ask(text)
        except TslError as e:
            note(f"[{e}]")
            continue
        if dropped:
            note(f"[context full: dropped the oldest {dropped} turn(s); the rest runs again]")
        pending, reply, stopped = bytearray(), bytearray(), []

        def on_token(t):
            if t is None:
                stopped.append(1)
                return
            b = conv.tok.token_bytes(t) if 0 <= t < conv.tok.vocab_size else b""
            pending.extend(b)
            reply.extend(b)
            try:
                write(pending.decode("utf-8"))
                pending.clear()
            except UnicodeDecodeError:
                pass
        room = conv.limit - len(ids)
        out = session.answer(ids, min(conv.max_tokens, room), temperature, top_p, seed, conv.stops, on_token)
        write(pending.decode("utf-8", "replace") + "\n")
        conv.answered(reply.decode("utf-8", "replace"))
        if stopped:
            note("[stopped]")
        elif out and out[-1] not in conv.stops and len(out) >= room:
            note("[context full: the answer was cut at the end of the context]")

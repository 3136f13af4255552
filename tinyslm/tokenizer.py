"""Hugging Face tokenizer.json without the `tokenizers` library.

Encode and decode match `tokenizers` exactly for BPE models: byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM) and
SentencePiece-style BPE (Llama-2, Mistral, Gemma: Metaspace / Prepend+Replace, <0xNN> byte fallback).
`encode(text)` is `tokenizers`' `encode(text, add_special_tokens=False).ids`: no post-processor, so no BOS/EOS
(callers prepend `bos_id` themselves); truncation and padding settings are ignored. `decode(ids)` is `decode(ids)`
(special tokens skipped). `c_tables()` / `c_source()` feed firmware/tsl_tokenizer.c.
"""
import heapq
import json
import re as _re
import unicodedata
from pathlib import Path


from .errors import TslError
from .tokenizer_split import BYTE_CHAR, CHAR_BYTE, _behavior, _compile, _pattern, _split

try:
    import regex as _regex  # \p{L}, \p{N} and Unicode \s as in the Oniguruma regexes tokenizers uses
except ImportError:  # pragma: no cover
    _regex = None

_WORD, _SPACE = ((_regex or _re).compile(p) for p in (r"\w", r"\s"))
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
BOS_NAMES = ("<|bos|>", "<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<BOS>", "[BOS]")
EOS_NAMES = ("<|eos|>", "</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<EOS>", "[EOS]")
SPLIT_DIGITS = 1  # tsl_tokenizer.flags: TSL_TOK_SPLIT_DIGITS


class Tokenizer:
    """A BPE tokenizer read from a Hugging Face tokenizer.json. Token ids are ints in [0, vocab_size)."""

    def __init__(self, spec, name="tokenizer.json"):
        self.name = str(name)
        self.source_path = None
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
            self._err("has no model")
        self.spec, self._cache, self._token_bytes = spec, {}, None
        try:
            self._load_model(spec["model"])
            self.normalizer = self._normalizer(spec.get("normalizer"))
            self._load_added(spec.get("added_tokens") or [])
            self.pre_tokenizer = self._pre_tokenizer(spec.get("pre_tokenizer"))
            self.decoder = None if spec.get("decoder") is None else self._decoders(spec["decoder"])
            bos, eos = self._post_processor(spec.get("post_processor"))
            self._splitters = self._added_splitter(False), self._added_splitter(True)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
            self._err(f"is malformed ({type(e).__name__}: {' '.join(str(e).split())})")
        self.bos_id = bos if bos is not None else self._by_name(BOS_NAMES)
        self.eos_id = eos if eos is not None else self._by_name(EOS_NAMES)
        self.vocab_size = max(self.id_to_token, default=-1) + 1
        if self.vocab_size > 1 << 24:
            self._err(f"has token id {self.vocab_size - 1}, more than the 2^24 tinyslm supports")

    # ---- loading ----

    @classmethod
    def from_file(cls, path):
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise TslError(f"{path}: tokenizer is not a readable JSON file ({' '.join(str(e).split())[:200]})") from None
        except RecursionError:
            raise TslError(f"{path}: tokenizer JSON is nested too deeply") from None
        if _depth(spec) > 32:
            raise TslError(f"{path}: tokenizer JSON is nested more than 32 levels deep; tokenizer.json files are flat")
        tok = cls(spec, path)
        tok.source_path = path
        return tok

    @classmethod
    def byte_level_fallback(cls, vocab_size=256):
        """Bytes as tokens (id b = byte b) for a model shipped without a tokenizer; ids >= 256 decode to nothing.
        `to_json()` is a tokenizer.json that `tokenizers` reads the same way."""
        if vocab_size < 256:
            raise TslError(f"a byte tokenizer needs a vocabulary of at least 256 tokens, the model has {vocab_size}")
        spec = {"version": "1.0", "added_tokens": [], "normalizer": None,
                "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                                  "use_regex": False},
                "post_processor": None,
                "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
                "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                          "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                          "ignore_merges": False, "vocab": {BYTE_CHAR[b]: b for b in range(256)}, "merges": []}}
        tok = cls(spec, "<bytes>")
        tok.vocab_size = vocab_size
        return tok

    def to_json(self):
        return self.spec

    def _err(self, what):
        raise TslError(f"{self.name}: tokenizer {what}")

    def _load_model(self, m):
        kind = m.get("type", "BPE" if "merges" in m else None)
        if kind != "BPE":
            self._err(f"model type {kind!r} is not supported (BPE only)")
        if m.get("dropout") not in (None, 0, 0.0):
            self._err("BPE dropout is not supported")
        vocab = m.get("vocab")
        if not isinstance(vocab, dict) or not all(isinstance(i, int) and i >= 0 for i in vocab.values()):
            self._err("model vocab is not a map of token -> id")
        self.vocab = vocab
        self.id_to_token = {i: t for t, i in vocab.items()}
        self.prefix = m.get("continuing_subword_prefix") or ""
        self.suffix = m.get("end_of_word_suffix") or ""
        self.byte_fallback = bool(m.get("byte_fallback"))
        self.ignore_merges = bool(m.get("ignore_merges"))
        self.fuse_unk = bool(m.get("fuse_unk"))
        self.unk_id = vocab.get(m["unk_token"]) if m.get("unk_token") is not None else None
        self.merges = {}  # (left id, right id) -> (rank, merged id); a repeated pair keeps its last rank
        for rank, mg in enumerate(m.get("merges") or []):
            pair = mg.split(" ") if isinstance(mg, str) else mg
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                self._err(f"merge {rank} {mg!r} is not a pair of tokens")
            a, b = pair
            merged = a + (b[len(self.prefix):] if self.prefix and b.startswith(self.prefix) else b)
            ids = [vocab.get(a), vocab.get(b), vocab.get(merged)]
            if None in ids:
                self._err(f"merge {rank} {mg!r} uses a token that is not in the vocab")
            self.merges[(ids[0], ids[1])] = (rank, ids[2])

    def _load_added(self, added):
        self.added = []
        for t in added:
            if not isinstance(t, dict) or not isinstance(t.get("content"), str) or not isinstance(t.get("id"), int):
                self._err(f"added token {t!r} has no content or id")
            # tokenizers decodes a normalized added token as its normalized content (and then never skips
            # it as special: the special set holds the raw contents)
            norm = t.get("normalized", not t.get("special")) and self.normalizer
            self.id_to_token[t["id"]] = self.normalizer(t["content"]) if norm else t["content"]
            self.added.append(t)
        self.special = {t["content"] for t in self.added if t.get("special")}
        self.added_ids = {t["content"]: t["id"] for t in self.added}

    def _by_name(self, names):
        for n in names:
            i = self.added_ids.get(n, self.vocab.get(n))
            if i is not None:
                return i
        return None

    def _post_processor(self, pp):
        """-> (bos, eos) that a TemplateProcessing adds around a single sequence."""
        if pp is None:
            return None, None
        procs = pp.get("processors", []) if pp.get("type") == "Sequence" else [pp]
        for p in procs:
            if p.get("type") == "TemplateProcessing":
                single = p.get("single") or []
                seq = [i for i, x in enumerate(single) if "Sequence" in x]
                if not seq:
                    continue
                spec = p.get("special_tokens") or {}

                def tid(x):
                    ids = spec.get(x["SpecialToken"]["id"], {}).get("ids") or []
                    return ids[0] if len(ids) == 1 else None
                pre = [tid(x) for x in single[:seq[0]] if "SpecialToken" in x]
                post = [tid(x) for x in single[seq[-1] + 1:] if "SpecialToken" in x]
                return (pre[0] if pre else None), (post[-1] if post else None)
            if p.get("type") in ("BertProcessing", "RobertaProcessing"):
                return p["cls"][1], p["sep"][1]
        return None, None

    # ---- normalizer: str -> str; pre-tokenizer: pieces -> pieces; decoder: a list of steps ----

    def _normalizer(self, n):
        if n is None:
            return None
        t = n.get("type")
        if t == "Sequence":
            fs = [self._normalizer(x) for x in n.get("normalizers", [])]
            fs = [f for f in fs if f is not None]

            def seq(s):
                for f in fs:
                    s = f(s)
                return s
            return seq
        if t in ("NFC", "NFD", "NFKC", "NFKD"):
            return lambda s: unicodedata.normalize(t, s)
        if t == "Lowercase":
            return str.lower
        if t == "Prepend":
            p = n["prepend"]
            return lambda s: p + s if s else s
        if t == "Replace":
            pat, content = _pattern(n.get("pattern"), self._err), n.get("content", "")
            return lambda s: pat.sub(lambda _: content, s)
        if t == "Strip":
            ends = [x for x, on in ((r"^\s+", n.get("strip_left", True)), (r"\s+\Z", n.get("strip_right", True))) if on]
            pat = _compile("|".join(ends) or "(?!)", False, self._err)
            return lambda s: pat.sub("", s)
        if t == "ByteLevel":
            return lambda s: "".join(BYTE_CHAR[b] for b in s.encode("utf-8"))
        self._err(f"normalizer {t!r} is not supported")

    def _pre_tokenizer(self, p):
        """-> function [(piece, starts at offset 0)] -> same, or None."""
        if p is None:
            return None
        t = p.get("type")
        if t == "Sequence":
            fs = [self._pre_tokenizer(x) for x in p.get("pretokenizers", [])]
            fs = [f for f in fs if f is not None]

            def seq(pieces):
                for f in fs:
                    pieces = f(pieces)
                return pieces
            return seq
        if t == "ByteLevel":
            prefix, pat = p.get("add_prefix_space", True), p.get("use_regex", True)
            pat = _compile(GPT2_PATTERN, False, self._err) if pat else None

            def byte_level(pieces):
                out = []
                for s, first in pieces:
                    if prefix and not s.startswith(" "):
                        s = " " + s
                    parts = [(s[a:b], first and a == 0) for a, b in _split(s, pat, "Isolated")] if pat else [(s, first)]
                    out += [("".join(BYTE_CHAR[c] for c in x.encode("utf-8")), f) for x, f in parts]
                return out
            return byte_level
        if t == "Metaspace":
            rep = p.get("replacement", "▁")
            scheme = p.get("prepend_scheme") or ("always" if p.get("add_prefix_space", True) else "never")
            if scheme not in ("always", "first", "never"):
                self._err(f"Metaspace prepend_scheme {scheme!r} is not supported")
            split = _compile(rep, True, self._err) if p.get("split", True) else None

            def metaspace(pieces):
                out = []
                for s, first in pieces:
                    s = s.replace(" ", rep)
                    if not s.startswith(rep) and (scheme == "always" or scheme == "first" and first):
                        s = rep + s
                    out += [(s[a:b], first and a == 0) for a, b in _split(s, split, "MergedWithNext")] if split \
                        else [(s, first)]
                return out
            return metaspace
        if t == "Split":
            return self._splitter(_pattern(p.get("pattern"), self._err), _behavior(p.get("behavior"), self._err),
                                  bool(p.get("invert")))
        if t == "Digits":
            return self._splitter(_compile(r"\p{N}", False, self._err),
                                  "Isolated" if p.get("individual_digits") else "Contiguous")
        if t == "WhitespaceSplit":
            return self._splitter(_compile(r"\s", False, self._err), "Removed")
        if t == "Whitespace":
            return self._splitter(_compile(r"\w+|[^\w\s]+", False, self._err), "Removed", invert=True)
        if t == "Punctuation":
            return self._splitter(_compile(r"[!-/:-@\[-`{-~]|\p{P}", False, self._err),
                                  _behavior(p.get("behavior", "Isolated"), self._err))
        self._err(f"pre_tokenizer {t!r} is not supported")

    @staticmethod
    def _splitter(pat, behavior, invert=False):
        def split(pieces):
            return [(s[a:b], first and a == 0) for s, first in pieces for a, b in _split(s, pat, behavior, invert)]
        return split

    def _decoders(self, d):
        """-> [(kind, arg)] steps, Sequence flattened."""
        t = d.get("type")
        if t == "Sequence":
            return [x for sub in d.get("decoders", []) for x in self._decoders(sub)]
        if t == "ByteLevel":
            return [("bytelevel", None)]
        if t == "ByteFallback":
            return [("bytefallback", None)]
        if t == "Fuse":
            return [("fuse", None)]
        if t == "Replace":
            pat = d.get("pattern")
            if not (isinstance(pat, dict) and list(pat) == ["String"]):
                self._err(f"decoder Replace pattern {pat!r} is not supported (String only)")
            return [("replace", (pat["String"], d.get("content", "")))]
        if t == "Strip":
            return [("strip", (d.get("content", " "), int(d.get("start", 0)), int(d.get("stop", 0))))]
        if t == "Metaspace":
            scheme = d.get("prepend_scheme") or ("always" if d.get("add_prefix_space", True) else "never")
            return [("metaspace", (d.get("replacement", "▁"), scheme != "never"))]
        if t == "BPEDecoder":
            return [("bpe", d.get("suffix", "</w>"))]
        self._err(f"decoder {t!r} is not supported")

    # ---- encode ----

    def _added_splitter(self, normalized):
        toks = [t for t in self.added if bool(t.get("normalized", not t.get("special"))) == normalized]
        if not toks:
            return None
        content = {}
        for t in toks:
            c = self.normalizer(t["content"]) if normalized and self.normalizer else t["content"]
            if c:
                content.setdefault(c, t)
        if not content:
            return None
        # longest first: Python's leftmost-first alternation then equals aho-corasick LeftmostLongest
        pat = _re.compile("|".join(_re.escape(c) for c in sorted(content, key=len, reverse=True)))
        return pat, content

    def _split_added(self, s, first, splitter):
        """-> [(piece, starts at offset 0, added id or None)], as tokenizers' AddedVocabulary::find_matches."""
        if splitter is None:
            return [(s, first, None)] if s else []
        pat, content = splitter
        out, start = [], 0
        for m in pat.finditer(s):
            a, b = m.span()
            t = content[m.group()]
            if t.get("single_word") and (a > 0 and _WORD.match(s[a - 1]) or b < len(s) and _WORD.match(s[b])):
                continue
            while t.get("lstrip") and a > start and _SPACE.match(s[a - 1]):
                a -= 1
            while t.get("rstrip") and b < len(s) and _SPACE.match(s[b]):
                b += 1
            if start < a:
                out.append((s[start:a], first and start == 0, None))
            out.append((s[a:b], first and a == 0, t["id"]))
            start = b
        if start < len(s):
            out.append((s[start:], first and start == 0, None))
        return out

    def encode(self, text):
        """Token ids of text, without BOS/EOS: tokenizers' encode(text, add_special_tokens=False).ids."""
        ids = []
        for s, first, tid in self._split_added(text, True, self._splitters[0]):
            if tid is not None:
                ids.append(tid)
                continue
            if self.normalizer:
                s = self.normalizer(s)
            words = []
            for s2, f2, tid2 in self._split_added(s, first, self._splitters[1]):
                if tid2 is not None:
                    ids += self._model(words)
                    words = []
                    ids.append(tid2)
                else:
                    words += self.pre_tokenizer([(s2, f2)]) if self.pre_tokenizer else [(s2, f2)]
            ids += self._model(words)
        return ids

    def _model(self, words):
        ids = []
        for w, _ in words:
            r = self._cache.get(w)
            if r is None:
                r = self._bpe(w)
                if len(w) <= 64 and len(self._cache) < 65536:
                    self._cache[w] = r
            ids += r
        return ids

    def _bpe(self, w):
        if not w:
            return []
        if self.ignore_merges and w in self.vocab:
            return [self.vocab[w]]
        syms, unk, n = [], None, len(w)
        for i, ch in enumerate(w):
            s = (self.prefix if i and self.prefix else "") + ch + (self.suffix if i == n - 1 else "")
            tid = self.vocab.get(s)
            if tid is not None:
                if unk is not None:
                    syms.append(unk)
                    unk = None
                syms.append(tid)
                continue
            if self.byte_fallback:
                bt = [self.vocab.get(f"<0x{b:02X}>") for b in s.encode("utf-8")]
                if None not in bt:
                    syms += bt  # a pending unk stays pending, as in tokenizers
                    continue
            if self.unk_id is not None:
                if unk is not None and not self.fuse_unk:
                    syms.append(unk)
                unk = self.unk_id
        if unk is not None:
            syms.append(unk)
        return self._merge(syms)

    def _merge(self, syms):
        """tokenizers' Word::merge_all: apply the lowest-rank pair (leftmost on ties) until none applies."""
        n, mg = len(syms), self.merges
        if n < 2:
            return syms
        nxt, prv, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
        heap = [(r[0], i, r[1]) for i in range(n - 1) if (r := mg.get((syms[i], syms[i + 1])))]
        heapq.heapify(heap)
        while heap:
            _, i, new = heapq.heappop(heap)
            if not alive[i] or nxt[i] >= n:
                continue
            j = nxt[i]
            m = mg.get((syms[i], syms[j]))
            if m is None or m[1] != new:
                continue  # a stale entry
            syms[i], alive[j], nxt[i] = new, False, nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0 and (m := mg.get((syms[prv[i]], new))):
                heapq.heappush(heap, (m[0], prv[i], m[1]))
            if nxt[i] < n and (m := mg.get((new, syms[nxt[i]]))):
                heapq.heappush(heap, (m[0], i, m[1]))
        return [s for s, a in zip(syms, alive) if a]

    # ---- decode ----

    def decode(self, ids, skip_special_tokens=True):
        """tokenizers' decode(ids, skip_special_tokens): ids out of range are dropped."""
        toks = [t for t in (self.id_to_token.get(int(i)) for i in ids)
                if t is not None and not (skip_special_tokens and t in self.special)]
        if self.decoder is None:
            return " ".join(toks)
        for kind, arg in self.decoder:
            if kind == "bytelevel":
                toks = [b"".join(_byte_level(t) for t in toks).decode("utf-8", "replace")]
            elif kind == "bytefallback":
                out, pend = [], bytearray()
                for t in toks + [None]:
                    b = _fallback_byte(t) if t is not None else None
                    if b is not None:
                        pend.append(b)
                        continue
                    if pend:
                        try:
                            out.append(pend.decode("utf-8"))
                        except UnicodeDecodeError:
                            out += ["\ufffd"] * len(pend)
                        pend = bytearray()
                    if t is not None:
                        out.append(t)
                toks = out
            elif kind == "fuse":
                toks = ["".join(toks)]
            elif kind == "replace":
                toks = [t.replace(*arg) for t in toks]
            elif kind == "strip":
                toks = [_strip(t, *arg) for t in toks]
            elif kind == "metaspace":
                rep, prepend = arg
                toks = [t.replace(rep, "" if i == 0 and prepend else " ") for i, t in enumerate(toks)]
            elif kind == "bpe":
                toks = [t.replace(arg, "" if i == len(toks) - 1 else " ") for i, t in enumerate(toks)]
        return "".join(toks)

    def token_bytes(self, id):
        """The bytes token `id` adds in the middle of a decoded stream (b"" for special tokens and unused ids).
        Only what decode does to the first token (Metaspace, a Strip after Fuse) is left out."""
        if self._token_bytes is None:
            self._token_bytes = [self._bytes_of(i) for i in range(self.vocab_size)]
        return self._token_bytes[id] if 0 <= id < self.vocab_size else b""

    def _bytes_of(self, i):
        t = self.id_to_token.get(i)
        if t is None or t in self.special:
            return b""
        if self.decoder is None:
            return t.encode("utf-8")
        fused = False
        for kind, arg in self.decoder:
            if kind == "bytelevel" and isinstance(t, str):
                t, fused = _byte_level(t), True
            elif kind == "bytefallback" and isinstance(t, str) and _fallback_byte(t) is not None:
                t = bytes([_fallback_byte(t)])
            elif kind == "fuse":
                fused = True
            elif kind == "replace":
                t = t.replace(*arg) if isinstance(t, str) else t.replace(*(x.encode("utf-8") for x in arg))
            elif kind == "strip" and not fused and isinstance(t, str):
                t = _strip(t, *arg)
            elif kind == "metaspace" and isinstance(t, str):
                t = t.replace(arg[0], " ")
            elif kind == "bpe" and isinstance(t, str):
                t = t.replace(arg, " ")
        return t if isinstance(t, bytes) else t.encode("utf-8")

    # ---- tables for firmware/tsl_tokenizer.c (tokenizer_c.py) ----

    def c_tables(self):
        from . import tokenizer_c
        return tokenizer_c.c_tables(self)

    def c_source(self, symbol="tsl_tok"):
        """C99 source defining `const tsl_tokenizer <symbol>` and its tables (needs tsl_tokenizer.h)."""
        from . import tokenizer_c
        return tokenizer_c.c_source(self, symbol)


def _byte_level(t):
    try:
        return bytes(CHAR_BYTE[c] for c in t)
    except KeyError:
        return t.encode("utf-8")


def _fallback_byte(t):
    if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
        try:
            return int(t[3:5], 16)
        except ValueError:
            return None
    return None


def _strip(t, content, start, stop):
    a, b = 0, len(t)
    while a < min(start, len(t)) and t[a] == content:
        a += 1
    while b > a and len(t) - b < stop and t[b - 1] == content:
        b -= 1
    return t[a:b]


def _depth(obj):
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(o, dict):
            stack += [(v, d + 1) for v in o.values()]
        elif isinstance(o, list):
            stack += [(v, d + 1) for v in o]
    return deepest

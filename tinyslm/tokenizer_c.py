"""The C tables of a Tokenizer for firmware/tsl_tokenizer.c: how the device encodes (or why it cannot),
decodes, and the Unicode classes and NFC-unsafe ranges its pre-tokenizer needs."""
import functools
import re as _re
import unicodedata
from pathlib import Path

import numpy as np

from .tokenizer import GPT2_PATTERN, SPLIT_DIGITS
from .tokenizer_split import BYTE_CHAR, CHAR_BYTE, _behavior, _compile

# tsl_tokenizer fields (firmware/tsl_tokenizer.h)
C_MODE_NONE, C_MODE_BYTE_LEVEL, C_MODE_SENTENCEPIECE = 0, 1, 2
C_SPLIT_NONE, C_SPLIT_GPT2, C_SPLIT_LLAMA3 = 0, 1, 2
C_FLAGS = dict(split_digits=SPLIT_DIGITS, add_prefix_space=2, ignore_merges=4, byte_fallback=8, fuse_unk=16, nfc=32,
               metaspace_split=64, prepend_always=128)
C_DECODE_UNSUPPORTED, C_DECODE_CONCAT, C_DECODE_JOIN_SPACE, C_DECODE_STRIP, C_DECODE_METASPACE_FIRST = -1, 0, 1, 2, 3
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


def _known_split(pattern):
    """A Split regex the C encoder implements -> (C_SPLIT_*, max digits), else None. Llama-3 splits numbers
    into runs of up to 3 digits (\\p{N}{1,3}), Qwen2 into single digits (\\p{N})."""
    if pattern == GPT2_PATTERN:
        return C_SPLIT_GPT2, 0
    for k in range(1, 10):
        for digits in ([r"\p{N}"] if k == 1 else []) + [rf"\p{{N}}{{1,{k}}}"]:
            if pattern == LLAMA3_PATTERN.replace(r"\p{N}{1,3}", digits):
                return C_SPLIT_LLAMA3, k
    return None


@functools.lru_cache(maxsize=None)
def _all_chars():
    return "".join(map(chr, range(0x110000)))


@functools.lru_cache(maxsize=None)
def _class_ranges(cls):
    """Sorted [start, end] code point ranges of \\p{L} ("L"), \\p{N} ("N") or \\s ("S"), exactly as the
    regexes of the Python encoder match them."""
    body = {"L": r"\p{L}", "N": r"\p{N}", "S": r"\s"}[cls]
    pat = _compile(body + "+", False, lambda e: None)
    return [(m.start(), m.end() - 1) for m in pat.finditer(_all_chars())]


@functools.lru_cache(maxsize=None)
def _nfc_unsafe_ranges():
    """Code points that may change under NFC: NFC_Quick_Check No or Maybe (second parts of primary composites,
    Hangul vowels and trailing consonants) and non-zero combining classes. Text without them is NFC."""
    bad = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    for cp in range(0x110000):
        c = chr(cp)
        if unicodedata.combining(c):
            bad.add(cp)
            continue
        d = unicodedata.decomposition(c)
        if d and not d.startswith("<"):
            if unicodedata.normalize("NFC", c) != c:
                bad.add(cp)
            elif len(d.split()) == 2:
                bad.add(int(d.split()[1], 16))
    out = []
    for cp in sorted(bad):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [tuple(r) for r in out]


def c_encoder(tok):
    """How firmware/tsl_tokenizer.c encodes with this tokenizer: a dict of settings, or a str saying why it
    cannot (the tables then have no encoder and tsl_tokenizer_encode returns TSL_TOK_ERR_NO_ENCODER)."""
    if tok.prefix or tok.suffix:
        return "continuing_subword_prefix / end_of_word_suffix"
    cfg = dict(mode=C_MODE_BYTE_LEVEL, split=C_SPLIT_NONE, max_digits=0, flags=0, space_cp=0, prepend_cp=0)
    for on, name in ((tok.ignore_merges, "ignore_merges"), (tok.fuse_unk, "fuse_unk"),
                     (tok.byte_fallback, "byte_fallback")):
        cfg["flags"] |= C_FLAGS[name] if on else 0

    def seq(x, key):
        return [] if x is None else list(x.get(key) or []) if x.get("type") == "Sequence" else [x]
    norms = seq(tok.spec.get("normalizer"), "normalizers")
    pres = seq(tok.spec.get("pre_tokenizer"), "pretokenizers")
    types = [p.get("type") for p in pres]
    if "ByteLevel" in types[:-1] or any(n.get("type") == "ByteLevel" for n in norms):
        return "a ByteLevel normalizer or a ByteLevel pre-tokenizer that is not the last one"
    if types and types[-1] == "ByteLevel":
        bl, rest = pres[-1], pres[:-1]
        if any(n.get("type") != "NFC" for n in norms):
            return "a normalizer other than NFC"
        if norms:
            cfg["flags"] |= C_FLAGS["nfc"]
        if bl.get("use_regex", True):
            cfg["split"] = C_SPLIT_GPT2
        if bl.get("add_prefix_space", True):
            if rest:
                return "ByteLevel add_prefix_space after another pre-tokenizer"
            cfg["flags"] |= C_FLAGS["add_prefix_space"]
        if len(rest) > 1:
            return f"pre-tokenizers {types}"
        for r in rest:
            if r.get("type") == "Digits" and r.get("individual_digits"):
                cfg["flags"] |= C_FLAGS["split_digits"]
            elif r.get("type") == "Split" and cfg["split"] == C_SPLIT_NONE and not r.get("invert") \
                    and _behavior(r.get("behavior"), tok._err) == "Isolated" \
                    and isinstance(r.get("pattern"), dict) and list(r["pattern"]) == ["Regex"]:
                known = _known_split(r["pattern"]["Regex"])
                if known is None:
                    return f"Split regex {r['pattern']['Regex']!r}"
                cfg["split"], cfg["max_digits"] = known
            else:
                return f"pre-tokenizer {r!r}"
        if tok.byte_fallback and any(BYTE_CHAR[b] not in tok.vocab for b in range(256)):
            return "byte_fallback in a byte-level model that lacks some byte tokens"
        cfg["byte_to_id"] = [tok.vocab.get(BYTE_CHAR[b], -1) for b in range(256)]
        return cfg
    # SentencePiece style: Metaspace, or a Prepend / Replace(" ") normalizer without pre-tokenizer
    cfg["mode"] = C_MODE_SENTENCEPIECE
    if len(pres) == 1 and types[0] == "Metaspace" and not norms:
        p = pres[0]
        rep = p.get("replacement", "▁")
        scheme = p.get("prepend_scheme") or ("always" if p.get("add_prefix_space", True) else "never")
        if len(rep) != 1 or rep == " ":
            return f"Metaspace replacement {rep!r}"
        cfg["space_cp"] = ord(rep)
        cfg["prepend_cp"] = ord(rep) if scheme != "never" else 0
        if p.get("split", True):
            cfg["flags"] |= C_FLAGS["metaspace_split"]
    elif not pres:
        for n in norms:
            if n.get("type") == "Prepend" and not cfg["prepend_cp"] and len(n.get("prepend", "")) == 1 \
                    and n["prepend"] != " ":
                cfg["prepend_cp"] = ord(n["prepend"])
                cfg["flags"] |= C_FLAGS["prepend_always"]
            elif n.get("type") == "Replace" and not cfg["space_cp"] and n.get("pattern") == {"String": " "} \
                    and len(n.get("content", "")) == 1:
                cfg["space_cp"] = ord(n["content"])
            else:
                return f"normalizer {n!r}"
    else:
        return f"pre-tokenizers {types}"
    cfg["byte_to_id"] = [tok.vocab.get(f"<0x{b:02X}>", -1) for b in range(256)] if tok.byte_fallback \
        else [-1] * 256
    cfg["chars"] = sorted((ord(s), i) for s, i in tok.vocab.items() if len(s) == 1)
    return cfg

def c_decoder(tok):
    """-> (rule, strip byte, strip start, strip stop) of tsl_tokenizer_decode: what decode does beyond
    concatenating token bytes."""
    if tok.decoder is None:
        return C_DECODE_JOIN_SPACE, 0, 0, 0
    steps, fused, rule = tok.decoder, False, (C_DECODE_CONCAT, 0, 0, 0)
    for n, (kind, arg) in enumerate(steps):
        if kind in ("bytelevel", "fuse"):
            fused = True
        elif kind == "strip" and fused:
            content, start, stop = arg
            if len(content.encode("utf-8")) != 1 or rule[0] != C_DECODE_CONCAT:
                return C_DECODE_UNSUPPORTED, 0, 0, 0
            rule = (C_DECODE_STRIP, ord(content), start, stop)
        elif kind == "metaspace" and arg[1]:
            # its first-token rule drops the first token's replacement characters: exact as "drop the
            # spaces of the first token" when it is the first step, only fuse follows, no token has a space
            if n or any(k != "fuse" for k, _ in steps[1:]) or \
                    any(" " in t for t in tok.id_to_token.values() if t not in tok.special):
                return C_DECODE_UNSUPPORTED, 0, 0, 0
            rule = (C_DECODE_METASPACE_FIRST, 0, 0, 0)
        elif kind == "bpe" or fused and kind != "strip":
            return C_DECODE_UNSUPPORTED, 0, 0, 0
    return rule

def c_needles(tok, cfg):
    """Byte strings whose presence in a text means an added token may match there (the C encoder then
    refuses the text): per added token, the longest run of its (raw and normalized) content without
    spaces or the SentencePiece space replacement."""
    seps = {" "} | ({chr(cfg["space_cp"])} if cfg["space_cp"] else set()) | \
        ({chr(cfg["prepend_cp"])} if cfg["prepend_cp"] else set())
    out = set()
    for t in tok.added:
        forms = [t["content"]]
        if t.get("normalized", not t.get("special")) and tok.normalizer:
            forms.append(tok.normalizer(t["content"]))
        for f in forms:
            runs = _re.split("|".join(map(_re.escape, sorted(seps))), f) if f else []
            best = max(runs, key=len, default="")
            if best:
                out.add(best.encode("utf-8"))
            elif f:
                out |= {s.encode("utf-8") for s in seps}
    return sorted(out)

def c_tables(tok):
    """Arrays and settings for tsl_tokenizer (layout: firmware/tsl_tokenizer.h). byte_to_id is None (no
    on-device encoder) when tsl_tokenizer_encode cannot match this tokenizer; `encoder` then says why."""
    parts = [tok.token_bytes(i) for i in range(tok.vocab_size)]
    offsets = np.zeros(tok.vocab_size + 1, np.uint32)
    offsets[1:] = np.cumsum([len(p) for p in parts], dtype=np.uint64)
    blob = np.frombuffer(b"".join(parts), np.uint8).copy()
    cfg = c_encoder(tok)
    rule, strip_byte, strip_start, strip_stop = c_decoder(tok)
    t = dict(vocab=tok.vocab_size, blob=blob, offsets=offsets, merges=np.zeros((0, 3), np.int32),
             merge_rank=np.zeros(0, np.int32), byte_to_id=None, flags=0, mode=C_MODE_NONE, split=C_SPLIT_NONE,
             max_digits=0, ranges=[[], [], [], []], chars=[], words=[], needles=[], unk_id=-1, space_cp=0,
             prepend_cp=0, decode_rule=rule, strip_byte=strip_byte, strip_start=strip_start,
             strip_stop=strip_stop, encoder=cfg if isinstance(cfg, str) else "supported")
    if isinstance(cfg, str):
        return t
    rows = sorted((a, b, m, r) for (a, b), (r, m) in tok.merges.items())
    t["merges"] = np.array([r[:3] for r in rows], np.int32).reshape(-1, 3)
    t["merge_rank"] = np.array([r[3] for r in rows], np.int32)
    t["byte_to_id"] = np.array(cfg["byte_to_id"], np.int32)
    for k in ("flags", "mode", "split", "max_digits", "space_cp", "prepend_cp"):
        t[k] = cfg[k]
    t["chars"] = cfg.get("chars", [])
    t["unk_id"] = -1 if tok.unk_id is None else tok.unk_id
    t["ranges"] = [_class_ranges(c) for c in ("L", "N", "S")] + \
        [_nfc_unsafe_ranges() if cfg["flags"] & C_FLAGS["nfc"] else []]
    if tok.ignore_merges:
        words = {}
        for s, i in tok.vocab.items():
            key = s.encode("utf-8") if cfg["mode"] == C_MODE_SENTENCEPIECE else \
                bytes(CHAR_BYTE[c] for c in s) if all(c in CHAR_BYTE for c in s) else None
            if key:
                words[key] = i
        t["words"] = sorted(words.items())
    t["needles"] = c_needles(tok, cfg)
    return t

def c_source(tok, symbol="tsl_tok"):
    """C99 source defining `const tsl_tokenizer <symbol>` and its tables (needs tsl_tokenizer.h)."""
    t = c_tables(tok)

    def arr(ctype, name, values):
        values = [int(v) for v in np.asarray(values, dtype=np.int64).ravel()] or [0]  # C has no empty arrays
        suffix = "u" if ctype.startswith("u") else ""
        rows = (",".join(f"{v}{suffix}" for v in values[i:i + 24]) for i in range(0, len(values), 24))
        return f"static const {ctype} {symbol}_{name}[{len(values)}] = {{\n" + ",\n".join(rows) + "\n};\n"

    def strings(name, items):
        offs = np.zeros(len(items) + 1, np.int64)
        offs[1:] = np.cumsum([len(s) for s in items])
        return [arr("uint8_t", f"{name}_blob", list(b"".join(items))), arr("uint32_t", f"{name}_offsets", offs)]

    n, enc = len(t["merge_rank"]), t["byte_to_id"] is not None
    ref = lambda name, cond: f"{symbol}_{name}" if cond else "0"  # noqa: E731
    ranges = [r for cls in t["ranges"] for r in cls]
    src = [f"/* Generated by tinyslm from {Path(tok.name).name}: token tables, layout in tsl_tokenizer.h */\n"
           f"/* on-device encoder: {t['encoder']} */\n"
           "#include \"tsl_tokenizer.h\"\n\n",
           arr("uint8_t", "blob", t["blob"]), arr("uint32_t", "offsets", t["offsets"])]
    if n:
        src += [arr("int32_t", "merges", t["merges"]), arr("int32_t", "merge_rank", t["merge_rank"])]
    if enc:
        src.append(arr("int32_t", "byte_to_id", t["byte_to_id"]))
    if ranges:
        src.append(arr("uint32_t", "ranges", ranges))
    if t["chars"]:
        src += [arr("uint32_t", "char_cp", [c for c, _ in t["chars"]]),
                arr("int32_t", "char_id", [i for _, i in t["chars"]])]
    if t["words"]:
        src += strings("word", [k for k, _ in t["words"]]) + [arr("int32_t", "word_id", [i for _, i in t["words"]])]
    if t["needles"]:
        src += strings("needle", t["needles"])
    nr = [len(c) for c in t["ranges"]]
    src.append(f"\nconst tsl_tokenizer {symbol} = {{\n"
               f"    {symbol}_blob, {symbol}_offsets, {t['vocab']},\n"
               f"    {ref('merges', n)}, {ref('merge_rank', n)}, {n},\n"
               f"    {ref('byte_to_id', enc)}, {t['flags']}, {t['mode']}, {t['split']}, {t['max_digits']},\n"
               f"    {ref('ranges', ranges)}, {{{', '.join(map(str, nr))}}},\n"
               f"    {ref('char_cp', t['chars'])}, {ref('char_id', t['chars'])}, {len(t['chars'])},\n"
               f"    {ref('word_blob', t['words'])}, {ref('word_offsets', t['words'])}, "
               f"{ref('word_id', t['words'])}, {len(t['words'])},\n"
               f"    {ref('needle_blob', t['needles'])}, {ref('needle_offsets', t['needles'])}, "
               f"{len(t['needles'])},\n"
               f"    {t['unk_id']}, {t['space_cp']}u, {t['prepend_cp']}u,\n"
               f"    {t['decode_rule']}, {t['strip_byte']}, {t['strip_start']}, {t['strip_stop']}\n}};\n")
    return "".join(src)

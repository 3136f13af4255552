"""Pre-tokenization for tokenizer.py: GPT-2's byte-to-unicode map, the Oniguruma-style Split regexes of
tokenizer.json translated to Python's `regex`, and how a Split behaves (Isolated, Removed, ...)."""
import functools
import re as _re
import unicodedata

try:
    import regex as _regex  # \p{L}, \p{N} and Unicode \s as in the Oniguruma regexes tokenizers uses
except ImportError:  # pragma: no cover
    _regex = None

def _byte_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHAR = _byte_chars()                       # GPT-2 bytes_to_unicode
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def _compile(pattern, literal, err):
    if literal:
        return _re.compile(_re.escape(pattern))
    try:
        return _regex.compile(pattern) if _regex is not None else _re.compile(_to_re(pattern))
    except (ValueError, _re.error, *((_regex.error,) if _regex else ())) as e:
        err(f"regex {pattern!r} is not supported ({e})")


@functools.lru_cache(maxsize=None)
def _category_class(cat):
    """Body of a character class matching Unicode general category `cat` (L, Nd, ...), for Python's re."""
    ranges, start = [], None
    for cp in range(0x110001):
        inside = cp < 0x110000 and unicodedata.category(chr(cp)).startswith(cat)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if not ranges:
        raise ValueError(f"\\p{{{cat}}} is not a general category")
    return "".join(_re.escape(chr(a)) + ("-" + _re.escape(chr(b)) if b > a else "") for a, b in ranges)


_PCLASS = _re.compile(r"\\([pP])\{(\w+)\}|\\([pP])(\w)")


def _to_re(pattern):
    """Without the `regex` package: \\p{..} / \\P{..} of general categories spelled out for Python's re."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        m = _PCLASS.match(pattern, i)
        if m:
            neg, body = (m.group(1) or m.group(3)) == "P", _category_class(m.group(2) or m.group(4))
            if neg and in_class:
                raise ValueError("\\P{..} inside a character class needs the `regex` package")
            out.append(body if in_class else f"[{'^' if neg else ''}{body}]")
            i = m.end()
            continue
        c = pattern[i:i + 2] if pattern[i] == "\\" else pattern[i]
        in_class = (in_class or c == "[") and not (in_class and c == "]")
        out.append(c)
        i += len(c)
    return "".join(out)


def _spans(pat, s):
    """[(start, end, is_match)] covering s, as tokenizers' Pattern::find_matches."""
    out, prev = [], 0
    for m in pat.finditer(s):
        if m.start() != prev:
            out.append((prev, m.start(), False))
        out.append((m.start(), m.end(), True))
        prev = m.end()
    if prev != len(s):
        out.append((prev, len(s), False))
    return out


def _split(s, pat, behavior, invert=False):
    """-> [(start, end)] non-empty pieces of s, as tokenizers' NormalizedString::split."""
    spans = [(a, b, m != invert) for a, b, m in _spans(pat, s)]
    if behavior == "Removed":
        out = [(a, b) for a, b, m in spans if not m]
    elif behavior == "Isolated":
        out = [(a, b) for a, b, _ in spans]
    elif behavior in ("MergedWithPrevious", "MergedWithNext"):
        nxt = behavior == "MergedWithNext"
        acc, prev_match = [], False
        for a, b, m in (reversed(spans) if nxt else spans):
            if m and not prev_match and acc:
                acc[-1] = (a, acc[-1][1]) if nxt else (acc[-1][0], b)
            else:
                acc.append((a, b))
            prev_match = m
        out = acc[::-1] if nxt else acc
    elif behavior == "Contiguous":
        acc, prev_match = [], False
        for a, b, m in spans:
            if m == prev_match and acc:
                acc[-1] = (acc[-1][0], b)
            else:
                acc.append((a, b))
            prev_match = m
        out = acc
    else:
        raise AssertionError(behavior)
    return [(a, b) for a, b in out if b > a]


def _pattern(p, err):
    """tokenizers' {"String": ...} / {"Regex": ...} pattern -> compiled regex."""
    if isinstance(p, dict) and len(p) == 1 and "String" in p:
        return _compile(p["String"], True, err)
    if isinstance(p, dict) and len(p) == 1 and "Regex" in p:
        return _compile(p["Regex"], False, err)
    err(f"pattern {p!r} is not supported")


BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")


def _behavior(b, err):
    found = [x for x in BEHAVIORS if x.lower() == str(b).replace("_", "").lower()]
    if not found:
        err(f"split behavior {b!r} is not supported")
    return found[0]

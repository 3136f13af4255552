"""tinyslm's tokenizer.json reader encodes and decodes like the `tokenizers` library; the C tables and the
C encoder agree with it."""
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyslm.errors import TslError
from tinyslm.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"

ENGLISH = """\
Once upon a time, in a small village by the sea, there lived an old fisherman and his wife. Every morning
he went out in his little boat, and every evening he came back with whatever the sea had given him. It wasn't
much, but they didn't complain; they'd learned that a quiet life can be a happy one.

The village had 312 houses, 4 bakeries and exactly 1 lighthouse. In 1987 a storm destroyed half of the
harbour, and it took the villagers 3 years (and $45,000!) to rebuild it. "We'll manage," said the mayor.
"We always do." Nobody argued: they're stubborn people, and they've never given up on anything.

Children played on the beach while their parents mended nets. The teacher, Mrs. O'Brien, taught them to
read, to count, and to ask questions -- lots of questions. Why is the sky blue? Where do the birds go in
winter? What's beyond the horizon? She'd smile & say: "Go and find out for yourselves."
"""
MULTILINGUAL = """\
Grüße aus München! Über die Brücke gehen Mädchen und Jungen, die Straße ist schön.
Les élèves français étudient à l'école : déjà, où est le garçon ? Ça va très bien, merci.
Καλημέρα κόσμε! Η ελληνική γλώσσα είναι πολύ όμορφη και παλιά.
你好，世界！我们今天学习中文。这是一个小测试。
Numbers 0 1 22 333 4444 and 3.14159, 2,718 or 1e-9.
"""
CORPUS = [line for line in (ENGLISH + MULTILINGUAL).splitlines() if line] * 3

TEXTS = [
    "Hello world! This is a test of the tokenizer.",
    "The quick brown fox jumps over the lazy dog. It's 2024, and we've got 3.14159 reasons; don't we?",
    "Grüße aus München! Über die Brücke gehen Mädchen und Jungen.",
    "Ça va? Les élèves français étudient à l'école: déjà, où, garçon. CAFÉ Noël",
    "Καλημέρα κόσμε! Η γλώσσα είναι ελληνική.",
    "你好，世界！我们正在测试分词器。",
    "Emoji: 🙂👍🏽🚀 and a flag 🇩🇪 — done… “quoted” ½",
    "Numbers: 0 1 12 123 1234 12345 3.5e-10 -42 +7 100,000 ٣٤",
    "Punctuation!!! ??? ... --- ((brackets)) [x] {y} <z> @#$%^&*_=+|\\/~`'s 'll 'RE",
    "   leading spaces and  double  spaces   trailing   ",
    "line one\nline two\n\nline four\r\n\ttabbed\n  \n",
    "",
    " ",
    "\n\n\n",
    "a",
    "mixed ÄÖÜ äöü ß ẞ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u00a0nbsp\u3000ideographic\u2028sep",
    ENGLISH,
    MULTILINGUAL,
]
SPECIAL_TEXTS = ["<|endoftext|>Hello<|endoftext|> world <|im_start|>user\nhi", "<s> Hello</s>world <s>",
                 "<|endoftext|>", "x<unk>y"]
VARIANTS = ["gpt2", "llama3", "smollm", "example", "sp_metaspace", "sp_first", "llama2", "gemma"]
BYTE_LEVEL = ["gpt2", "llama3", "smollm", "example"]
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def _train_byte_level(path, variant):
    tk = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers
    tok = tk.Tokenizer(models.BPE(ignore_merges=variant == "llama3"))
    if variant == "llama3":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(tk.Regex(LLAMA3_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif variant == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=420, special_tokens=["<|endoftext|>", "<|im_start|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))


def _train_sentencepiece(path, variant):
    """SentencePiece-style BPE: '▁' for spaces, <0xNN> byte fallback for characters outside the alphabet."""
    tk = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = tk.Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=70, show_progress=False))
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    n = max(vocab.values()) + 1
    vocab.update({f"<0x{b:02X}>": n + b for b in range(256)})
    rep = {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}
    strip = {"type": "Strip", "content": " ", "start": 1, "stop": 0}
    if variant == "sp_first":   # Mistral
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        spec["decoder"] = {"type": "Sequence", "decoders": [rep, {"type": "ByteFallback"}, {"type": "Fuse"}, strip]}
    elif variant == "llama2":
        spec["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        spec["pre_tokenizer"] = None
        spec["decoder"] = {"type": "Sequence", "decoders": [rep, {"type": "ByteFallback"}, {"type": "Fuse"}, strip]}
        spec["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}}}
    elif variant == "gemma":
        spec["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        spec["pre_tokenizer"] = None
        spec["decoder"] = {"type": "Sequence", "decoders": [rep, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    path.write_text(json.dumps(spec, ensure_ascii=False))


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    files = {"example": ROOT / "examples" / "tokenizer.json"}
    for v in VARIANTS:
        if v in ("gpt2", "llama3", "smollm"):
            _train_byte_level(d / f"{v}.json", v)
        elif v != "example":
            _train_sentencepiece(d / f"{v}.json", v)
        files.setdefault(v, d / f"{v}.json")
    return files


@pytest.fixture(scope="module")
def pair(tokenizer_files):
    """variant -> (tinyslm Tokenizer, tokenizers.Tokenizer)"""
    tk = pytest.importorskip("tokenizers")
    cache = {}

    def get(v):
        if v not in cache:
            cache[v] = Tokenizer.from_file(tokenizer_files[v]), tk.Tokenizer.from_file(str(tokenizer_files[v]))
        return cache[v]
    return get


@pytest.mark.parametrize("variant", VARIANTS)
def test_encode_decode_match_tokenizers(pair, variant):
    ours, hf = pair(variant)
    assert ours.vocab_size == hf.get_vocab_size(with_added_tokens=True)
    for text in TEXTS + SPECIAL_TEXTS:
        ids = hf.encode(text, add_special_tokens=False).ids
        assert ours.encode(text) == ids, text
        assert ours.decode(ids) == hf.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False), text
    if variant in ("sp_metaspace", "llama2"):
        assert ours.vocab["<0xF0>"] in ours.encode("🙂"), "the emoji goes through byte fallback"


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_text_and_added_token_options_match_tokenizers(tokenizer_files, variant, tmp_path):
    """Added tokens with lstrip / rstrip / single_word / normalized, between random pieces of text."""
    tk = pytest.importorskip("tokenizers")
    hf = tk.Tokenizer.from_file(str(tokenizer_files[variant]))
    hf.add_tokens([tk.AddedToken("hello", lstrip=True, single_word=True, normalized=True),
                   tk.AddedToken("ab", rstrip=True, normalized=False),
                   tk.AddedToken("Κλ", lstrip=True, rstrip=True, normalized=True)])
    hf.add_special_tokens([tk.AddedToken("<sp>", normalized=True, special=True),
                           tk.AddedToken(" <x>", lstrip=True, rstrip=True, special=True)])
    hf.save(str(tmp_path / "tokenizer.json"))
    ours = Tokenizer.from_file(tmp_path / "tokenizer.json")
    pieces = list("abcXYZ 012 \n\t\r'.,!?-äéßΚλ你好🙂\u00a0\u3000½—") + [
        "<s>", "</s>", "<|endoftext|>", "<unk>", "  ", "'s", "'LL", "hello", "ab", "Κλ", "<sp>", " <x>", "\r\n",
        "1234567", "DON'T"]
    rng = random.Random(variant)
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        ids = hf.encode(text, add_special_tokens=False).ids
        assert ours.encode(text) == ids, text
        assert ours.decode(ids) == hf.decode(ids), text
        assert ours.decode(ids, False) == hf.decode(ids, skip_special_tokens=False), text


@pytest.mark.parametrize("variant", ["gpt2", "llama3", "smollm"])
def test_without_regex_package(pair, variant, monkeypatch, tokenizer_files):
    """\\p{L} / \\p{N} are spelled out for Python's re when the `regex` package is missing."""
    import tinyslm.tokenizer as tokenizer
    _, hf = pair(variant)
    monkeypatch.setattr(tokenizer, "_regex", None)
    ours = Tokenizer.from_file(tokenizer_files[variant])
    for text in TEXTS:
        assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids, text


@pytest.mark.parametrize("variant", VARIANTS)
def test_decode_arbitrary_ids_matches_tokenizers(pair, variant):
    """Random ids: broken UTF-8 from byte tokens, special tokens, the first-token rules of the decoders."""
    ours, hf = pair(variant)
    rng = random.Random(variant)
    for _ in range(300):
        ids = [rng.randrange(ours.vocab_size) for _ in range(rng.randrange(1, 12))]
        assert ours.decode(ids) == hf.decode(ids), ids


@pytest.mark.parametrize("variant", BYTE_LEVEL)
def test_token_bytes_concatenate_to_decode(pair, variant):
    ours, _ = pair(variant)
    for text in TEXTS:
        ids = ours.encode(text)
        assert b"".join(ours.token_bytes(i) for i in ids) == text.encode("utf-8"), text


def test_token_bytes_sentencepiece(pair):
    ours, _ = pair("llama2")
    assert ours.token_bytes(ours.vocab["<0x0A>"]) == b"\n"
    assert ours.token_bytes(ours.bos_id) == b"" and ours.token_bytes(ours.eos_id) == b""
    ids = ours.encode("Grüße, 你好 🙂 world")
    assert b"".join(ours.token_bytes(i) for i in ids) == " Grüße, 你好 🙂 world".encode()


def test_bos_eos(pair):
    ex, _ = pair("example")
    assert (ex.bos_id, ex.eos_id) == (ex.vocab["<|bos|>"], ex.vocab["<|eos|>"])
    gpt2, _ = pair("gpt2")
    assert gpt2.bos_id is None and gpt2.eos_id == gpt2.vocab["<|endoftext|>"]
    llama2, hf = pair("llama2")
    assert llama2.bos_id == hf.encode("x").ids[0] == llama2.vocab["<s>"]
    assert llama2.eos_id == llama2.vocab["</s>"]


def test_byte_level_fallback():
    tok = Tokenizer.byte_level_fallback(300)
    text = "Grüße 🙂\n"
    assert tok.encode(text) == list(text.encode()) and tok.vocab_size == 300
    assert tok.decode(tok.encode(text)) == text and tok.token_bytes(299) == b"" and tok.token_bytes(65) == b"A"
    assert tok.bos_id is None and tok.eos_id is None
    t = tok.c_tables()
    assert bytes(t["blob"]) == bytes(range(256)) and list(t["byte_to_id"]) == list(range(256))
    tk = pytest.importorskip("tokenizers")
    hf = tk.Tokenizer.from_str(json.dumps(tok.to_json()))
    assert hf.encode(text).ids == tok.encode(text) and hf.decode(tok.encode(text)) == text
    with pytest.raises(TslError):
        Tokenizer.byte_level_fallback(100)


@pytest.mark.parametrize("content,what", [
    ("{not json", "not a readable JSON"),
    ('{"model": {"type": "Unigram", "vocab": []}}', "model type 'Unigram' is not supported"),
    ('{"model": {"type": "WordPiece", "vocab": {}}}', "model type 'WordPiece'"),
    ('[1, 2]', "has no model"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "BertPreTokenizer"}}',
     "pre_tokenizer 'BertPreTokenizer' is not supported"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "Precompiled"}}',
     "normalizer 'Precompiled' is not supported"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "WordPiece"}}',
     "decoder 'WordPiece' is not supported"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}}', "not in the vocab"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": "x"}', "is malformed"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", '
     '"pattern": {"Regex": "(a"}, "behavior": "Isolated"}}', "is not supported"),
])
def test_bad_tokenizer_json(tmp_path, content, what):
    p = tmp_path / "bad_tokenizer.json"
    p.write_text(content)
    with pytest.raises(TslError) as e:
        Tokenizer.from_file(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: tokenizer") and what in msg and "\n" not in msg, msg


# ---- C ----

# The text of issue 5: every script and the corners of both split regexes
DEVICE_TEXT = (
    "Hello, world! It's 2024 and we've got 12345 reasons; don't we? I'D SAY 'LL 'Re.\n"
    "Grüße aus München: Über die Brücke gehen Mädchen, die Straße ist schön. ÄÖÜ äöü ß\n"
    "Les élèves français étudient à l'école : déjà, où est le garçon ? Ça va très bien, Noël.\n"
    "Καλημέρα κόσμε! Η ελληνική γλώσσα είναι όμορφη.\n"
    "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.\n"
    "你好，世界！我们今天学习中文。\n"
    "こんにちは世界。日本語のテキスト、カタカナとひらがなです。\n"
    "Emoji 🙂👍🏽🚀 flag 🇩🇪 — “quoted” ½ … done\n"
    "Numbers: 0 1 22 333 4444 55555 3.14159 -42 +7 100,000 1e-9 ٣٤ Ⅻ\n"
    "Punctuation!!! ??? ... --- ((brackets)) [x] {y} <z> @#$%^&*_=+|\\/~`\n"
    "\ttab\t\tdouble tab   three spaces    four\n\n\nblank lines\r\nCRLF  \n  \u00a0nbsp\u3000ideo  end   ")

CDEF = """
typedef struct {
    const uint8_t *blob; const uint32_t *offsets; int32_t vocab;
    const int32_t *merges; const int32_t *merge_rank; int32_t n_merges;
    const int32_t *byte_to_id; int32_t flags; int32_t mode; int32_t split; int32_t max_digits;
    const uint32_t *ranges; int32_t n_ranges[4];
    const uint32_t *char_cp; const int32_t *char_id; int32_t n_chars;
    const uint8_t *word_blob; const uint32_t *word_offsets; const int32_t *word_id; int32_t n_words;
    const uint8_t *needle_blob; const uint32_t *needle_offsets; int32_t n_needles;
    int32_t unk_id; uint32_t space_cp; uint32_t prepend_cp;
    int32_t decode_rule, strip_byte, strip_start, strip_stop;
} tsl_tokenizer;
int32_t tsl_token_decode(const tsl_tokenizer *t, int32_t id, const uint8_t **bytes);
int32_t tsl_tokenizer_encode(const tsl_tokenizer *t, const uint8_t *text, int32_t len, int32_t *ids, int32_t max_ids,
                             uint32_t *work, int32_t work_words);
int32_t tsl_tokenizer_decode(const tsl_tokenizer *t, const int32_t *ids, int32_t n, uint8_t *out, int32_t cap);
extern tsl_tokenizer tsl_tok;  /* const in C; cffi reads a const as a constant */
"""
ERR_NO_ENCODER, ERR_IDS, ERR_WORK, ERR_UTF8, ERR_NOT_NFC, ERR_ADDED_TOKEN, ERR_NO_DECODER, ERR_OUT = range(-1, -9, -1)


def build_c(ours, d, name):
    """tsl_tokenizer.c + the tables of `ours` -> (ffi, lib, tsl_tok)"""
    cffi = pytest.importorskip("cffi")
    if not shutil.which("gcc"):
        pytest.skip("no gcc")
    (d / f"{name}_tables.c").write_text(ours.c_source("tsl_tok"))
    so = d / f"{name}.so"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-shared", "-fPIC",
                    f"-I{FIRMWARE}", str(FIRMWARE / "tsl_tokenizer.c"), str(d / f"{name}_tables.c"),
                    "-o", str(so)], check=True, capture_output=True, text=True)
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    lib = ffi.dlopen(str(so))
    return ffi, lib, ffi.addressof(lib, "tsl_tok")


@pytest.fixture(scope="module")
def c_tokenizer(pair, tmp_path_factory):
    d, cache = tmp_path_factory.mktemp("ctok"), {}

    def build(variant):
        if variant not in cache:
            ours, _ = pair(variant)
            cache[variant] = (ours, *build_c(ours, d, variant))
        return cache[variant]
    return build


def _c_encode(ffi, lib, t, text, max_ids=None, work=None):
    data = text.encode("utf-8") if isinstance(text, str) else text
    max_ids = 3 * len(data) + 4 if max_ids is None else max_ids
    work = len(data) + 1 if work is None else work
    ids, w = ffi.new("int32_t[]", max(1, max_ids)), ffi.new("uint32_t[]", max(1, work))
    n = lib.tsl_tokenizer_encode(t, data, len(data), ids, max_ids, w, work)
    return list(ids[0:n]) if n >= 0 else n


def _c_decode(ffi, lib, t, ids, cap=None):
    cap = 64 + 64 * len(ids) if cap is None else cap
    out = ffi.new("uint8_t[]", max(1, cap))
    n = lib.tsl_tokenizer_decode(t, ids, len(ids), out, cap)
    return bytes(ffi.buffer(out, n)) if n >= 0 else n


@pytest.mark.parametrize("variant", VARIANTS)
def test_c_decode_every_token(c_tokenizer, variant):
    ours, ffi, lib, t = c_tokenizer(variant)
    assert t.vocab == ours.vocab_size
    out = ffi.new("const uint8_t **")
    for i in range(ours.vocab_size):
        n = lib.tsl_token_decode(t, i, out)
        assert bytes(ffi.buffer(out[0], n)) == ours.token_bytes(i), i
    assert lib.tsl_token_decode(t, ours.vocab_size, out) == -1 and lib.tsl_token_decode(t, -1, out) == -1


@pytest.mark.parametrize("variant", VARIANTS)
def test_c_encode_decode_match_tokenizers(c_tokenizer, pair, variant):
    """Issue 5: ids and text of the C encoder and decoder equal the tokenizers library's, every script."""
    ours, ffi, lib, t = c_tokenizer(variant)
    _, hf = pair(variant)
    assert ours.c_tables()["encoder"] == "supported"
    for text in [DEVICE_TEXT] + TEXTS:
        ids = hf.encode(text, add_special_tokens=False).ids
        assert _c_encode(ffi, lib, t, text) == ids, text
        assert _c_decode(ffi, lib, t, ids) == hf.decode(ids).encode("utf-8"), text
        specials = [i for i in (ours.bos_id, ours.eos_id) if i is not None]  # skipped by both decoders
        with_specials = specials + ids[:5] + specials + ids[5:] + specials
        assert _c_decode(ffi, lib, t, with_specials) == hf.decode(with_specials).encode("utf-8"), text
    if variant in ("sp_metaspace", "llama2"):
        assert ours.vocab["<0xF0>"] in _c_encode(ffi, lib, t, "🙂"), "the emoji goes through byte fallback"


FUZZ_PIECES = list("abcXYZ 012 \n\t\r'.,!?-äéßΚλ你好こ🙂\u00a0\u3000½—Ⅻ٣ſ\u2028\x1c\x85") + [
    "  ", "'s", "'LL", "'Re", "'ſ", "DON'T", "\r\n", "1234567", " !", "!\n", "▁", "▁▁", " ▁x", "\u200b"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_c_encode_random_text_matches_tokenizers(c_tokenizer, pair, variant):
    ours, ffi, lib, t = c_tokenizer(variant)
    _, hf = pair(variant)
    rng = random.Random(variant)
    pieces = FUZZ_PIECES + ["e\u0301"]  # NFC (llama3) composes it: refused there
    for _ in range(600):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        ids = hf.encode(text, add_special_tokens=False).ids
        if variant == "llama3" and "\u0301" in text:
            assert _c_encode(ffi, lib, t, text) == ERR_NOT_NFC, repr(text)
            continue
        assert _c_encode(ffi, lib, t, text) == ids, repr(text)
        assert _c_decode(ffi, lib, t, ids) == hf.decode(ids).encode("utf-8"), repr(text)


@pytest.mark.parametrize("digits", [r"\p{N}", r"\p{N}{1,2}"])
def test_c_encode_qwen2_split(tokenizer_files, tmp_path, digits):
    """The Llama-3 regex with other number chunks (Qwen2: \\p{N}); an unknown regex has no encoder."""
    tk = pytest.importorskip("tokenizers")
    spec = json.loads(Path(tokenizer_files["llama3"]).read_text())
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_REGEX.replace(r"\p{N}{1,3}", digits)
    hf, ours = tk.Tokenizer.from_str(json.dumps(spec)), Tokenizer(spec)
    ffi, lib, t = build_c(ours, tmp_path, "qwen2")
    assert t.max_digits == (1 if digits == r"\p{N}" else 2)
    for text in [DEVICE_TEXT, "1234567 x12345y 3.14159"]:
        assert _c_encode(ffi, lib, t, text) == hf.encode(text, add_special_tokens=False).ids
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+|\s+"
    assert "Split regex" in Tokenizer(spec).c_tables()["encoder"]


def test_c_encode_refusals(c_tokenizer, pair):
    """What the C encoder cannot do exactly it refuses."""
    ours, ffi, lib, t = c_tokenizer("llama3")
    assert _c_encode(ffi, lib, t, "cafe\u0301") == ERR_NOT_NFC   # NFC composes é: refused, not wrong
    assert _c_encode(ffi, lib, t, "café") == pair("llama3")[1].encode("café", add_special_tokens=False).ids
    assert _c_encode(ffi, lib, t, "hi<|endoftext|>") == ERR_ADDED_TOKEN
    assert _c_encode(ffi, lib, t, b"a\xffb") == ERR_UTF8 and _c_encode(ffi, lib, t, b"\xc3") == ERR_UTF8
    assert _c_encode(ffi, lib, t, b"\xc0\x80") == ERR_UTF8 and _c_encode(ffi, lib, t, b"\xed\xa0\x80") == ERR_UTF8
    _, ffi, lib, t = c_tokenizer("llama2")
    assert _c_encode(ffi, lib, t, "x <s> y") == ERR_ADDED_TOKEN
    spec = json.loads(json.dumps(ours.spec))
    spec["normalizer"] = {"type": "Lowercase"}
    low = Tokenizer(spec).c_tables()
    assert low["byte_to_id"] is None and "normalizer other than NFC" in low["encoder"]


def test_c_encode_limits(c_tokenizer, tmp_path):
    ours, ffi, lib, t = c_tokenizer("gpt2")
    assert _c_encode(ffi, lib, t, "hello world", max_ids=1) == ERR_IDS
    n = len(ours.encode("hello world"))
    assert _c_encode(ffi, lib, t, "hello world", max_ids=11) == ours.encode("hello world") and n < 11
    assert _c_encode(ffi, lib, t, "hello world", work=11) == ERR_WORK
    assert _c_encode(ffi, lib, t, "hello world", work=12) == ours.encode("hello world")
    assert _c_encode(ffi, lib, t, "") == []
    ids = ours.encode(ENGLISH)
    assert _c_decode(ffi, lib, t, ids, cap=10) == ERR_OUT
    # worst case of TSL_TOK_MAX_IDS: spaces that become '▁' through byte fallback
    spec = json.loads(json.dumps(Tokenizer.from_file(ROOT / "examples" / "tokenizer.json").spec))
    spec["model"]["vocab"] = {f"<0x{b:02X}>": b for b in range(256)}
    spec["model"]["merges"], spec["model"]["byte_fallback"], spec["added_tokens"] = [], True, []
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    spec["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace"}]}
    bytes_tok = Tokenizer(spec)
    ffi, lib, t = build_c(bytes_tok, tmp_path, "bytes")
    for text in ("   ", "a  "):
        ids = bytes_tok.encode(text)
        assert len(ids) == {"   ": 9, "a  ": 10}[text] <= 3 * len(text) + 4
        assert _c_encode(ffi, lib, t, text, max_ids=len(ids)) == ids
        assert _c_encode(ffi, lib, t, text, max_ids=len(ids) - 1) == ERR_IDS
    assert t.decode_rule == -1  # TSL_TOK_DECODE_UNSUPPORTED: Metaspace after ByteFallback
    assert _c_decode(ffi, lib, t, bytes_tok.encode("x")) == ERR_NO_DECODER

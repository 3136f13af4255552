"""Issue 5 on a board: firmware/tsl_tokenizer.c, cross-compiled and run under qemu, encodes the multilingual
test text to the same ids as the `tokenizers` library and decodes them to the same text, for byte-level BPE
(GPT-2 regex, Llama-3 regex + NFC + ignore_merges, examples/tokenizer.json) and SentencePiece-style BPE with
byte fallback. Missing toolchains skip, or fail with TSL_REQUIRE_TOOLCHAINS=1 (tests/conftest_tools.py)."""
import re

import pytest

from conftest_tools import require_tool
from test_tokenizer import DEVICE_TEXT, ERR_ADDED_TOKEN, FIRMWARE, pair, tokenizer_files  # noqa: F401 (fixtures)
from tinyslm import targets
from tinyslm.boards import load_board

VARIANTS = ["gpt2", "llama3", "example", "llama2", "sp_metaspace"]
TEXTS = [DEVICE_TEXT, "", " Ça 'S 1234567 ", "x<|endoftext|>"]  # the last: an added token (gpt2, llama3: refused)


def _program(tokenizers, path):
    """One C program: every (variant, text) encoded and decoded, the results printed."""
    n = max(len(t.encode("utf-8")) for t in TEXTS)
    src = ["#include <stdio.h>\n#include \"tsl_tokenizer.h\"\n\n"]
    for v, ours in tokenizers.items():
        src.append(ours.c_source(f"tok_{v}").replace('#include "tsl_tokenizer.h"\n', ""))
    for k, text in enumerate(TEXTS):
        data = list(text.encode("utf-8")) or [0]
        src.append(f"static const uint8_t text{k}[{len(data)}] = {{{','.join(map(str, data))}}};\n")
    src.append(f"static int32_t ids[{3 * n + 4}];\nstatic uint32_t work[{n + 1}];\n"
               f"static uint8_t out[{16 * n + 64}];\n\n"
               "static void run(const char *name, int k, const tsl_tokenizer *t, const uint8_t *text, int32_t len)\n"
               "{\n"
               f"    int32_t i, n = tsl_tokenizer_encode(t, text, len, ids, {3 * n + 4}, work, {n + 1}), m;\n"
               "    printf(\"%s %d ids %ld:\", name, k, (long)n);\n"
               "    for (i = 0; i < n; i++) printf(\" %ld\", (long)ids[i]);\n"
               f"    m = n < 0 ? 0 : tsl_tokenizer_decode(t, ids, n, out, {16 * n + 64});\n"
               "    printf(\"\\n%s %d text %ld:\", name, k, (long)m);\n"
               "    for (i = 0; i < m; i++) printf(\"%02x\", (unsigned)out[i]);\n"
               "    printf(\"\\n\");\n}\n\nint main(void)\n{\n")
    for v in tokenizers:
        for k, text in enumerate(TEXTS):
            src.append(f'    run("{v}", {k}, &tok_{v}, text{k}, {len(text.encode("utf-8"))});\n')
    src.append('    printf("done\\n");\n    return 0;\n}\n')
    path.write_text("".join(src))
    return path


@pytest.fixture(scope="module")
def expected(pair):  # noqa: F811
    """variant -> [(ids or error code, decoded bytes)] from the tokenizers library"""
    out = {}
    for v in VARIANTS:
        ours, hf = pair(v)
        needles, rows = ours.c_tables()["needles"], []
        for text in TEXTS:
            if any(nd in text.encode("utf-8") for nd in needles):
                rows.append((ERR_ADDED_TOKEN, b""))
                continue
            ids = hf.encode(text, add_special_tokens=False).ids
            rows.append((ids, hf.decode(ids).encode("utf-8")))
        out[v] = rows
    return out


@pytest.mark.parametrize("board_name", ["mps2-an386", "esp32c3"])
def test_tokenizer_on_board(board_name, pair, expected, tmp_path):  # noqa: F811
    board = load_board(board_name)
    require_tool(board.toolchain["cc"], board.toolchain.get("install", ""))
    require_tool(board.emulator["cmd"][0], board.emulator.get("install", ""))
    prog = _program({v: pair(v)[0] for v in VARIANTS}, tmp_path / "tok_main.c")
    exe = targets.build(board, [prog, FIRMWARE / "tsl_tokenizer.c"], [FIRMWARE], tmp_path / "build",
                        name="tokenizer", extra_cflags=["-std=c99", "-Wall", "-Wextra", "-Werror"])
    rc, out = targets.run(board, exe, timeout=60)
    text = out.decode("utf-8", "replace")
    assert rc == 0 and "done" in text, f"{board_name}: exit {rc}: {text[-500:]}"
    got = {}
    for m in re.finditer(r"^(\w+) (\d+) (ids|text) (-?\d+):(.*)$", text, re.M):
        v, k, kind, n, rest = m.groups()
        if kind == "ids":
            ids = [int(x) for x in rest.split()]
            got.setdefault(v, {}).setdefault(int(k), [None, None])[0] = ids if int(n) >= 0 else int(n)
        else:
            got[v][int(k)][1] = bytes.fromhex(rest.strip())
    assert expected["gpt2"][3][0] == expected["llama3"][3][0] == ERR_ADDED_TOKEN
    for v in VARIANTS:
        for k, (ids, decoded) in enumerate(expected[v]):
            assert got[v][k][0] == ids, f"{board_name} {v}: text {k} encodes differently"
            assert got[v][k][1] == decoded, f"{board_name} {v}: text {k} decodes differently"

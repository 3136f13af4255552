"""Train the bundled example model, examples/tiny_llama.onnx (a ~0.8M-parameter Llama-style LM).

Data
----
The six completed novels of Jane Austen (Sense and Sensibility, Pride and Prejudice,
Mansfield Park, Emma, Northanger Abbey, Persuasion), as shipped by the Debian package
``r-cran-janeaustenr`` (the CRAN package "janeaustenr" by Julia Silge).  The novels are
in the public domain (published 1811-1818; the texts come from Project Gutenberg); the
package itself is MIT-licensed (see /usr/share/doc/r-cran-janeaustenr/copyright).
Nothing is downloaded from the web: the text is read from the Debian package's R
lazy-load database (a tiny reader for R's serialization format is below, no R needed).

A cleaned copy is kept in examples/data/ (train.txt, heldout.txt: one
paragraph per line), so only the ``data`` stage ever needs the Debian package.

Setup (only needed to rebuild examples/data/ from scratch)::

    apt-get update && apt-get download r-cran-janeaustenr
    dpkg-deb -x r-cran-janeaustenr_*_all.deb /tmp/janeaustenr
    # (or: apt-get install r-cran-janeaustenr, which also installs R)

    pip install torch==2.13.0 tokenizers onnx==1.22.0 onnxruntime onnxscript

Usage (from the repository root; deterministic, CPU, 2 threads)::

    python examples/train_tiny.py --janeaustenr /tmp/janeaustenr          # everything
    python examples/train_tiny.py --stages tokenizer,train,export          # data/ already there
    python examples/train_tiny.py --stages export                          # re-export the checkpoint

Stages: ``data`` (examples/data/*.txt), ``tokenizer`` (examples/tokenizer.json, byte-level
BPE, vocab 512, <|bos|>=0, <|eos|>=1), ``train`` (examples/tiny_llama.pt + .json),
``export`` (examples/tiny_llama.onnx, held-out perplexity and a greedy sample, both with
onnxruntime).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import struct
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DATA = HERE / "data"
TOKENIZER = HERE / "tokenizer.json"
CKPT = HERE / "tiny_llama.pt"
CONFIG = HERE / "tiny_llama.json"
ONNX = HERE / "tiny_llama.onnx"

BOS, EOS = "<|bos|>", "<|eos|>"
PROMPT = "Once upon a time"

MODEL_CONFIG = {
    "arch": "llama",
    "vocab_size": 512,
    "dim": 128,
    "n_layers": 4,
    "n_heads": 4,
    "n_kv_heads": 2,
    "hidden_dim": 352,
    "max_seq_len": 256,
    "norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_embeddings": True,
    "attn_impl": "sdpa",
}

NOVELS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
HELDOUT_FRACTION = 0.05  # the last 5% of each novel's paragraphs

# --------------------------------------------------------------------------------------
# data: read the novels from r-cran-janeaustenr without R
# --------------------------------------------------------------------------------------


def _r_unserialize_strings(raw: bytes) -> list:
    """Decode an R XDR-serialized character vector (the only kind of object janeaustenr holds)."""
    if raw[:2] != b"X\n":
        raise ValueError("not an R XDR serialization")
    pos = 2

    def i32():
        nonlocal pos
        (v,) = struct.unpack(">i", raw[pos:pos + 4])
        pos += 4
        return v

    version = i32()
    i32(), i32()  # writer / minimal reader R versions
    if version == 3:
        n = i32()
        pos += n  # native encoding name
    flags = i32()
    if flags & 0xFF != 16:  # STRSXP
        raise ValueError(f"expected a character vector, got SEXP type {flags & 0xFF}")
    length = i32()
    out = []
    for _ in range(length):
        cflags = i32()
        if cflags & 0xFF != 9:  # CHARSXP
            raise ValueError("malformed character vector")
        n = i32()
        if n == -1:
            out.append("")
            continue
        b = raw[pos:pos + n]
        pos += n
        out.append(b.decode("latin-1" if cflags & (1 << 14) else "utf-8"))
    return out


def read_janeaustenr(root: Path) -> dict:
    """{novel name: [lines]} from an installed or extracted r-cran-janeaustenr."""
    cands = [root / "usr/lib/R/site-library/janeaustenr/data", root / "janeaustenr/data", root / "data", root]
    d = next((c for c in cands if (c / "Rdata.rdx").exists()), None)
    if d is None:
        raise SystemExit(f"no janeaustenr data (Rdata.rdx) under {root}; see the setup in this file's docstring")
    rdb = (d / "Rdata.rdb").read_bytes()
    # Each record is a 4-byte length + a zlib stream holding one serialized character
    # vector; we walk the records in sequence and recognise each novel by its title line.
    titles = {"SENSE AND SENSIBILITY": "sensesensibility", "PRIDE AND PREJUDICE": "prideprejudice",
              "MANSFIELD PARK": "mansfieldpark", "EMMA": "emma", "NORTHANGER ABBEY": "northangerabbey",
              "PERSUASION": "persuasion"}
    books, pos = {}, 0
    while pos < len(rdb):
        dec = zlib.decompressobj()
        lines = _r_unserialize_strings(dec.decompress(rdb[pos + 4:]))
        pos = len(rdb) - len(dec.unused_data)
        title = next(l for l in lines if l.strip()).strip().upper()
        if title in titles:
            books[titles[title]] = lines
    missing = set(NOVELS) - set(books)
    if missing:
        raise SystemExit(f"novels not found in janeaustenr: {sorted(missing)}")
    return books


def clean_novel(lines: list) -> list:
    """Lines of a Gutenberg novel -> list of paragraphs (plain ASCII prose, headings dropped)."""
    paras, cur = [], []
    for line in lines + [""]:
        s = line.strip()
        if s:
            cur.append(s)
            continue
        if cur:
            paras.append(" ".join(cur))
            cur = []
    out = []
    for p in paras:
        if not re.search(r"[a-z]", p):  # titles, CHAPTER I, VOLUME II, THE END ...
            continue
        if re.fullmatch(r"(chapter|volume|by|finis|jane austen|persuasion)\b.*", p, flags=re.I) and len(p) < 40:
            continue
        p = p.replace("_", "")  # Gutenberg italics markers
        p = p.replace("\u00a3", "L")  # the pound sign (once)
        p = p.encode("ascii", "ignore").decode()
        p = re.sub(r"\s+", " ", p).strip()
        if p:
            out.append(p)
    return out


def stage_data(janeaustenr: Path) -> None:
    books = read_janeaustenr(janeaustenr)
    train, held = [], []
    for name in NOVELS:
        paras = clean_novel(books[name])
        k = int(len(paras) * (1 - HELDOUT_FRACTION))
        train += paras[:k]
        held += paras[k:]
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "train.txt").write_text("\n".join(train) + "\n")
    (DATA / "heldout.txt").write_text("\n".join(held) + "\n")
    for f in ("train.txt", "heldout.txt"):
        print(f"data: {DATA / f}: {(DATA / f).stat().st_size} bytes")


# --------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------


def stage_tokenizer() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=MODEL_CONFIG["vocab_size"],
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(DATA / "train.txt")], trainer)
    assert tok.token_to_id(BOS) == 0 and tok.token_to_id(EOS) == 1
    assert tok.get_vocab_size() == MODEL_CONFIG["vocab_size"], tok.get_vocab_size()
    tok.save(str(TOKENIZER))
    print(f"tokenizer: {TOKENIZER} (vocab {tok.get_vocab_size()})")


def load_tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TOKENIZER))


def encode_paragraphs(tok, path: Path):
    """-> (flat token list, start index of each paragraph). Paragraphs are joined by '\\n'."""
    paras = path.read_text().split("\n")
    paras = [p for p in paras if p]
    encs = tok.encode_batch([p + "\n" for p in paras])
    ids, starts = [], []
    for e in encs:
        starts.append(len(ids))
        ids.extend(e.ids)
    return ids, starts


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


def stage_train(args) -> None:
    import torch
    import torch.nn.functional as F

    from models import build_model, count_parameters

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = load_tokenizer()
    bos = tok.token_to_id(BOS)
    ids, starts = encode_paragraphs(tok, DATA / "train.txt")
    data = torch.tensor(ids, dtype=torch.long)
    T = MODEL_CONFIG["max_seq_len"]
    starts = torch.tensor([s for s in starts if s + T <= len(ids)], dtype=torch.long)
    print(f"train: {len(ids)} tokens, {len(starts)} paragraph starts, {len(Path(DATA / 'train.txt').read_bytes()) / len(ids):.2f} bytes/token")

    model = build_model(MODEL_CONFIG)
    n_params = count_parameters(model)
    print(f"model: {n_params} parameters")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    gen = torch.Generator().manual_seed(args.seed)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * t))

    # Each training window is <|bos|> + the T-1 tokens starting at a paragraph start, so a
    # prompt like "<|bos|>Once upon a time" looks like the start of a paragraph to the model.
    def batch():
        idx = starts[torch.randint(len(starts), (args.batch,), generator=gen)]
        rows = torch.stack([data[i:i + T] for i in idx.tolist()])
        x = torch.cat([torch.full((args.batch, 1), bos, dtype=torch.long), rows[:, :-1]], dim=1)
        return x, rows

    model.train()
    t0 = time.time()
    tokens = 0
    ema = None
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = batch()
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += x.numel()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % args.log_every == 0 or step == args.steps - 1:
            dt = time.time() - t0
            print(f"step {step:6d}/{args.steps}  loss {loss.item():.4f}  (ema {ema:.4f})  lr {lr_at(step):.2e}  "
                  f"{tokens / dt:7.0f} tok/s  {dt / 60:5.1f} min", flush=True)
        if (step + 1) % args.save_every == 0 or step == args.steps - 1:
            save_checkpoint(model, step + 1, n_params, ema)
    print(f"train: done in {(time.time() - t0) / 60:.1f} min")


def save_checkpoint(model, steps, n_params, loss):
    import torch

    tmp = CKPT.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)  # tied embedding / LM head stored once
    os.replace(tmp, CKPT)
    CONFIG.write_text(json.dumps({**MODEL_CONFIG, "parameters": n_params, "train_steps": steps,
                                  "train_loss_ema": round(loss, 4)}, indent=2) + "\n")


# --------------------------------------------------------------------------------------
# export + evaluation with onnxruntime
# --------------------------------------------------------------------------------------


def heldout_perplexity(sess, tok, path: Path, window: int, max_tokens=None) -> float:
    """Perplexity with onnxruntime: <|bos|> + consecutive (window-1)-token chunks of the text."""
    import numpy as np

    ids = tok.encode(path.read_text()).ids
    if max_tokens:
        ids = ids[:max_tokens]
    bos = tok.token_to_id(BOS)
    nll, n = 0.0, 0
    for i in range(0, len(ids), window - 1):
        chunk = ids[i:i + window - 1]
        x = np.array([[bos] + chunk[:-1]], dtype=np.int64)
        (logits,) = sess.run(["logits"], {"input_ids": x})
        lg = logits[0].astype(np.float64)
        lg -= lg.max(-1, keepdims=True)
        logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        nll -= logp[np.arange(len(chunk)), chunk].sum()
        n += len(chunk)
    return float(math.exp(nll / n))


def greedy(sess, tok, prompt: str, n_new: int):
    import numpy as np

    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    ids = [bos] + tok.encode(prompt).ids
    out = []
    for _ in range(n_new):
        (logits,) = sess.run(["logits"], {"input_ids": np.array([ids], dtype=np.int64)})
        nxt = int(logits[0, -1].argmax())
        if nxt == eos:
            break
        ids.append(nxt)
        out.append(nxt)
    return prompt + tok.decode(out)


def stage_export(args) -> None:
    import logging

    import onnxruntime as ort
    import torch

    from models import build_model, export_onnx

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    cfg = json.loads(CONFIG.read_text())
    model_cfg = {k: cfg[k] for k in MODEL_CONFIG}
    model = build_model(model_cfg)
    model.load_state_dict(torch.load(CKPT, map_location="cpu"))
    model.eval()
    used = export_onnx(model, str(ONNX), seq_len=16, dynamo=not args.torchscript)
    print(f"export: {ONNX} ({ONNX.stat().st_size} bytes, exporter: {used}); onnxruntime matches torch")
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(ONNX), so, providers=["CPUExecutionProvider"])
    tok = load_tokenizer()
    ppl = heldout_perplexity(sess, tok, DATA / "heldout.txt", model_cfg["max_seq_len"])
    print(f"held-out perplexity (onnxruntime, float32, {DATA / 'heldout.txt'}): {ppl:.3f} per token")
    print(f"sample (greedy, 80 tokens): {greedy(sess, tok, PROMPT, 80)!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stages", default="data,tokenizer,train,export")
    ap.add_argument("--janeaustenr", type=Path, default=Path("/"),
                    help="root of an installed (/) or extracted (dpkg-deb -x) r-cran-janeaustenr")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--torchscript", action="store_true", help="use the TorchScript ONNX exporter")
    args = ap.parse_args()
    stages = args.stages.split(",")
    if "data" in stages:
        stage_data(args.janeaustenr)
    if "tokenizer" in stages:
        stage_tokenizer()
    if "train" in stages:
        stage_train(args)
    if "export" in stages:
        stage_export(args)


if __name__ == "__main__":
    main()

"""Decoder LMs from transformers, built from small configs with random weights (nothing is
downloaded), exported with torch.onnx the way users export them, and quantized by onnxruntime."""
import warnings

import numpy as np

COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=256)
FAMILIES = {
    "llama": dict(num_key_value_heads=2, tie_word_embeddings=False),
    "qwen2": dict(num_key_value_heads=2),
    "phi3": dict(num_key_value_heads=4, pad_token_id=0),
    "gemma": dict(num_key_value_heads=1, head_dim=16),
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=256),
    "mistral": dict(num_key_value_heads=2, sliding_window=None),
    "stablelm": dict(num_key_value_heads=2, partial_rotary_factor=0.5),
    "gptj": dict(n_embd=64, n_layer=2, n_head=4, n_positions=256, rotary_dim=8),        # interleaved RoPE, parallel
    "gpt_neox": dict(num_key_value_heads=4, rotary_pct=0.5, use_parallel_residual=True),  # per-head fused QKV
}
# Issue 10: families whose features the frontend learned later. `model_type` names the transformers
# family when the key is a variant; `_scale` multiplies weights whose names contain a key (so that
# soft-caps and attention patterns really bite: random weights give logits of about 1).
FEATURES = {
    "qwen3": dict(num_key_value_heads=2, head_dim=16),                                   # QK-norm per head
    "gemma2": dict(num_key_value_heads=2, head_dim=16, sliding_window=8, final_logit_softcapping=3.0,
                   attn_logit_softcapping=4.0, query_pre_attn_scalar=16,
                   _scale={"q_proj": 4.0, "k_proj": 4.0, "lm_head": 6.0, "embed": 6.0}),  # caps, post-norms, local layers
    "gemma3_text": dict(num_key_value_heads=1, head_dim=32, sliding_window=8, rope_local_base_freq=100.0,
                        layer_types=["sliding_attention", "full_attention"]),           # + QK-norm, local RoPE base
    "smollm3": dict(num_key_value_heads=2, no_rope_layers=[1, 0], pad_token_id=0, bos_token_id=1,
                    eos_token_id=2, _scale={"q_proj": 3.0, "k_proj": 3.0}),              # NoPE layer
    "phi3_gqa": dict(model_type="phi3", num_key_value_heads=2, pad_token_id=0),          # fused QKV, grouped heads
    "phi4_mini": dict(model_type="phi3", num_key_value_heads=2, pad_token_id=0, partial_rotary_factor=0.75,
                      tie_word_embeddings=True),
    "gpt_bigcode": dict(n_embd=64, n_layer=2, n_head=4, n_positions=256),                # fused QKV, multi-query
    "granite": dict(num_key_value_heads=2, embedding_multiplier=12.0, residual_multiplier=0.22,
                    attention_multiplier=0.06, logits_scaling=8.0, _scale={"q_proj": 3.0, "k_proj": 3.0}),
    "llama3_rope": dict(model_type="llama", num_key_value_heads=2, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16)),
    "linear_rope": dict(model_type="llama", num_key_value_heads=2, rope_scaling=dict(rope_type="linear", factor=4.0)),
    "phi3_longrope": dict(model_type="phi3", num_key_value_heads=2, pad_token_id=0, original_max_position_embeddings=16,
                          rope_scaling=dict(rope_type="longrope", original_max_position_embeddings=16,
                                            short_factor=[1.0 + 0.1 * i for i in range(8)],
                                            long_factor=[2.0 + 0.5 * i for i in range(8)])),   # long factors past 16
    "opt": dict(ffn_dim=128, word_embed_proj_dim=64),                                    # positions at an offset, ReLU
    "cohere": dict(num_key_value_heads=2, logit_scale=0.25),                             # parallel, LayerNorm without bias
    "olmo2": dict(num_key_value_heads=2),                                                # post-norms only, QK-norm whole
    "mistral_window": dict(model_type="mistral", num_key_value_heads=2, sliding_window=8,
                           _scale={"q_proj": 3.0, "k_proj": 3.0}),
    "gpt_neo": dict(num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]], window_size=8,
                    _scale={"q_proj": 3.0, "k_proj": 3.0}),
    "bloom": dict(n_layer=2, n_head=4),                                                  # ALiBi, per-head fused QKV
    "falcon": dict(multi_query=True, new_decoder_architecture=False, bias=True),          # fused QKV, multi-query
    "falcon_gqa": dict(model_type="falcon", new_decoder_architecture=True, num_kv_heads=2),  # fused per kv group
}
ALL = {**FAMILIES, **FEATURES}


def _model(family, overrides=None, attn="eager"):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(0)
    kw = {**COMMON, **ALL[family], **(overrides or {})}
    scale = kw.pop("_scale", {})
    cfg = AutoConfig.for_model(kw.pop("model_type", family), **kw)
    cfg._attn_implementation = attn
    m = AutoModelForCausalLM.from_config(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln" in name):   # gains and biases away from 1 and 0
                p.add_(0.2 * torch.randn(p.shape, generator=g))
            for key, f in scale.items():
                if key in name:
                    p.mul_(f)
    return m, cfg


def export_full(family, path, overrides=None, max_t=256, dynamo=True, opset=None, static=False, external=False,
                attn="eager"):
    """Full-sequence graph: input_ids [1, T] -> logits [1, T, V], by the dynamo exporter (opset 18
    unless given; 23 brings RMSNormalization, RotaryEmbedding and Attention) or the TorchScript one
    (dynamo=False, opset 17 unless given). static: no dynamic_shapes, input_ids fixed at [1, 16];
    external: weights in PATH.data next to the graph, as torch writes them by default; attn: transformers'
    attention implementation (sdpa at opset 23 exports Attention nodes). -> path"""
    import torch
    m, _ = _model(family, overrides, attn)

    class Logits(torch.nn.Module):
        def __init__(self, m, mask):
            super().__init__()
            self.m, self.mask = m, mask

        def forward(self, ids):
            # transformers 5 derives packed-sequence masks with aten::diff, which the TorchScript
            # exporter lacks, unless an attention mask is given
            mask = torch.ones_like(ids) if self.mask else None
            return self.m(input_ids=ids, attention_mask=mask, use_cache=False).logits

    example = (torch.randint(0, 128, (1, 16 if static else 8)),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dyn = None if static else ({1: torch.export.Dim("T", min=2, max=max_t)},)
            torch.onnx.export(Logits(m, False), example, str(path), input_names=["input_ids"],
                              output_names=["logits"], dynamic_shapes=dyn, opset_version=opset or 18, dynamo=True,
                              external_data=external)
        else:
            torch.onnx.export(Logits(m, True), example, str(path), input_names=["input_ids"],
                              output_names=["logits"], dynamic_axes=None if static else
                              {"input_ids": {1: "T"}, "logits": {1: "T"}}, opset_version=opset or 17, dynamo=False)
    return path


def export_with_past(family, path, dynamo=True):
    """The optimum layout: input_ids, attention_mask, position_ids, past_key_values.N.key/value
    inputs; logits and present.N.key/value outputs. dynamo=False: by the TorchScript exporter with
    dynamic_axes, as optimum itself exports."""
    import torch
    from transformers import DynamicCache
    m, cfg = _model(family)
    L, Hk = cfg.num_hidden_layers, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    if getattr(cfg, "multi_query", False) and not getattr(cfg, "new_decoder_architecture", True):
        Hk = 1                                   # Falcon-7B's one k/v head (its config keeps num_kv_heads = heads)
    hs = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    class WithPast(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(config=cfg)
            for i in range(L):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
            return (out.logits, *[t for i in range(L) for t in (out.past_key_values.layers[i].keys,
                                                                 out.past_key_values.layers[i].values)])

    T, P = 5, 3
    args = (torch.randint(0, 128, (1, T)), torch.ones(1, P + T, dtype=torch.int64), torch.arange(P, P + T)[None],
            *[torch.randn(1, Hk, P, hs) for _ in range(2 * L)])
    names = ["input_ids", "attention_mask", "position_ids"] + [f"past_key_values.{i}.{k}" for i in range(L)
                                                               for k in ("key", "value")]
    outs = ["logits"] + [f"present.{i}.{k}" for i in range(L) for k in ("key", "value")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            Td, Pd, Sd = (torch.export.Dim(n, min=a, max=256) for n, a in (("T", 1), ("P", 1), ("S", 2)))
            torch.onnx.export(WithPast(m), args, str(path), input_names=names, output_names=outs,
                              dynamic_shapes=({1: Td}, {1: Sd}, {1: Td}, tuple({2: Pd} for _ in range(2 * L))),
                              opset_version=18, dynamo=True, external_data=False)
        else:
            axes = {"input_ids": {1: "T"}, "attention_mask": {1: "S"}, "position_ids": {1: "T"},
                    **{n: {2: "P"} for n in names[3:]}, "logits": {1: "T"}, **{n: {2: "S"} for n in outs[1:]}}
            torch.onnx.export(WithPast(m), args, str(path), input_names=names, output_names=outs,
                              dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def quantize(src, path, how, reduce_range=False):
    """onnxruntime's quantizers: dynamic / dynamic_pc (MatMulInteger, per tensor / per channel), qdq /
    qdq_mm (static QDQ, op_types_to_quantize MatMul and Gemm only) / qdq_pc (static, per tensor /
    per channel), nbits (MatMulNBits int4, blocks of 32), nbits128 (blocks of 128), nbits_asym
    (zero points), nbits8 (8-bit blocks). reduce_range (dynamic and QDQ): 7-bit weights, for tests
    whose oracle is onnxruntime's own run of the graph: its x86 MatMulInteger without VNNI (AVX2's
    VPMADDUBSW) sums pairs of u8 x s8 products in int16 with saturation, so with full-range weights
    that run is wrong on such CPUs (measured on an AVX2-only EPYC, llama dynamic: cosine 0.9977 to the
    float model, where tinyslm's exact build of the same graph reaches 0.99975)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    if how in ("dynamic", "dynamic_pc"):
        quantize_dynamic(str(src), str(path), weight_type=QuantType.QInt8, per_channel=how == "dynamic_pc",
                         reduce_range=reduce_range)
    elif how in ("qdq", "qdq_pc", "qdq_mm"):
        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{"input_ids": np.random.default_rng(i).integers(0, 128, (1, 16))} for i in range(4)])

            def get_next(self):
                return next(self.it, None)
        quantize_static(str(src), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=how == "qdq_pc",
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8, reduce_range=reduce_range,
                        op_types_to_quantize=["MatMul", "Gemm"] if how == "qdq_mm" else None)
    elif how.startswith("nbits"):
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        q = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=128 if how == "nbits128" else 32,
                                 is_symmetric=how != "nbits_asym", bits=8 if how == "nbits8" else 4)
        q.process()
        onnx.save(q.model.model, str(path))
    return path


def optimize(src, path, model_type):
    """onnxruntime's transformer optimizer with attention fusion off: fused norms (Simplified /
    Skip(Simplified)LayerNormalization), FastGelu with its bias, as onnxruntime-targeted exports
    come. -> path"""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions
    opts = FusionOptions(model_type)
    opts.enable_attention = False
    m = optimizer.optimize_model(str(src), model_type=model_type, num_heads=COMMON["num_attention_heads"],
                                 hidden_size=COMMON["hidden_size"], optimization_options=opts)
    m.save_model_to_file(str(path))
    return path

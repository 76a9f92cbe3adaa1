"""The README plot of the native CUDA backend's bf16 and FP8 steps (issue 13): one 1024² FLUX.1-dev-shaped
transformer step (batch 1, rank-64 slots active), CUDA-graph time, with the per-category breakdown of the eager
runs stacked (`cuda_bench`'s breakdown_eager, scaled to the graph time), against the issue's 80 ms target and the
library ceilings (`kern_probe.py` on the H200: FP8 GEMMs 45.5 ms + cuDNN bf16 SDPA 22.9 ms).
Reads only committed results: tools/bench/results/h100-2026-12-07/call2/bench-*.json
Usage: python3 tools/bench/fp8_plot.py [OUT.png]   (needs matplotlib)"""
import json, pathlib, sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = pathlib.Path("tools/bench/results/h100-2026-12-07")
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else D / "fp8_ms_per_step.png")
runs = [
    ("bf16", "bench-bf16.json"),
    ("FP8 per-tensor\nstatic scales", "bench-fp8t-static.json"),
    ("FP8 per-channel\nstatic scales", "bench-fp8-static.json"),
    ("FP8 per-channel\ndynamic scales", "bench-fp8-dynamic.json"),
]
cats = [("gemm_ms", "GEMM"), ("attention_ms", "attention (bf16 cuDNN SDPA)"), ("fp8_quantize_ms", "FP8 activation quantization"),
        ("fused_kernels_ms", "fused element-wise kernels"), ("lora_ms", "LoRA slots"), ("other_ms", "other")]
colors = ["#4c72b0", "#dd8452", "#c44e52", "#55a868", "#8172b3", "#bbbbbb"]
fig, ax = plt.subplots(figsize=(10, 4.8))
for i, (label, f) in enumerate(runs):
    r = json.load(open(D / "call2" / f))["results"][0]
    b, total = r["breakdown_eager"], r["ms_per_step_median_gpu"]
    parts = [max(b.get(k, 0.0), 0.0) for k, _ in cats]
    scale = total / sum(parts)
    bottom = 0.0
    for (k, name), v, c in zip(cats, parts, colors):
        ax.bar(i, v * scale, bottom=bottom, color=c, label=name if i == 0 else None, width=0.6)
        bottom += v * scale
    ax.text(i, total + 1.5, f"{total:.1f}", ha="center", fontsize=10, fontweight="bold")
ax.axhline(80, color="black", linestyle="--", linewidth=1)
ax.text(-0.45, 81.5, "issue 13 target 80 ms", ha="left", fontsize=8, bbox=dict(facecolor="white", edgecolor="none", pad=1))
ax.axhline(45.5 + 22.9, color="gray", linestyle=":", linewidth=1)
ax.text(-0.45, 45.5 + 22.9 + 1.5, "FP8 GEMM + bf16 SDPA ceilings (H200) 68.4 ms", ha="left", fontsize=8, color="dimgray", bbox=dict(facecolor="white", edgecolor="none", pad=1))
ax.set_xticks(range(len(runs)), [l for l, _ in runs])
ax.set_ylabel("ms per transformer step (CUDA graph)")
ax.set_title("flux-trt native CUDA, 1024², rank-64 slots, NVIDIA H100, 2026-12-07", fontsize=10)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
ax.set_ylim(0, 145)
ax.set_xlim(-0.5, len(runs) - 0.5)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(out)

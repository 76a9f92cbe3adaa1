"""The README plot of the native CUDA backend's step time on the H200 (issue 12 item 6/7): one
1024² FLUX.1-dev-shaped transformer step (batch 1, rank-64 slots active) for every path measured,
with the native backend's per-category breakdown stacked, against the library ceilings.
Reads only committed results:
  tools/bench/results/h200-cuda-2026-11-29-perf/cuda-bench.json   native CUDA bf16 (+ breakdown)
  tools/bench/results/h200-cuda-2026-11-29-perf/seed-bf16.log     seed recipe, same lease
  tools/bench/results/h200-ort-cuda-2026-11-28/summary.json       ORT CUDA, diffusers eager (another lease)
Usage: python3 tools/bench/cuda_plot.py [OUT.png]   (needs matplotlib)"""
import json, pathlib, re, sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

R = pathlib.Path("tools/bench/results")
perf = R / "h200-cuda-2026-11-29-perf"
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else perf / "ms_per_step.png")
bench = json.load(open(perf / "cuda-bench.json"))
step = next(r for r in bench["results"] if r["batch"] == 1 and r["width"] == 1024 and r["height"] == 1024)
b = step["breakdown_eager"]
seed = json.loads(re.search(r"RESULT (\{.*\})", (perf / "seed-bf16.log").read_text()).group(1))
ort = json.load(open(R / "h200-ort-cuda-2026-11-28" / "summary.json"))["ms_per_step_median"]

bars = [
    ("ORT CUDA fp16\n(2026-11-28)", {"total": ort["flux-trt ORT CUDA fp16 (+ rank-64 slots)"]}),
    ("diffusers eager\nbf16 + PEFT\n(2026-11-28)", {"total": ort["diffusers eager bf16 + LoRA (PEFT)"]}),
    ("seed recipe\ntorch.compile bf16\n+ LoRA hotswap", {"total": seed["compiled_lora_ms"]}),
    (
        "flux-trt native\nCUDA bf16",
        {
            "GEMM (cuBLASLt)": b["gemm_ms"],
            "attention (cuDNN SDPA)": b["attention_ms"],
            "fused kernels (NVRTC)": b["fused_kernels_ms"],
            "LoRA slots": b["lora_ms"],
            "other": max(b["other_ms"], 0.0),
            "total": step["ms_per_step_median_gpu"],
        },
    ),
]
colors = {"GEMM (cuBLASLt)": "#4c72b0", "attention (cuDNN SDPA)": "#dd8452", "fused kernels (NVRTC)": "#55a868", "LoRA slots": "#c44e52", "other": "#8c8c8c"}
fig, ax = plt.subplots(figsize=(9, 4.8))
for i, (name, parts) in enumerate(bars):
    if len(parts) == 1:
        ax.bar(i, parts["total"], color="#b0b0b0")
    else:
        bottom = 0.0
        for k, c in colors.items():
            ax.bar(i, parts[k], bottom=bottom, color=c, label=k)
            bottom += parts[k]
    ax.text(i, parts["total"] + 3, f"{parts['total']:.1f}", ha="center")
ax.axhline(115, color="k", ls="--", lw=1)
ax.text(2.5, 116.5, "target 115", ha="center", fontsize=8)
ax.axhline(77.5 + 22.9, color="#4c72b0", ls=":", lw=1)
ax.text(-0.45, 101.5, "library ceiling 100.4 (GEMM 77.5 burst + SDPA 22.9)", fontsize=8)
ax.set_xticks(range(len(bars)), [n for n, _ in bars], fontsize=8)
ax.set_ylabel("ms per transformer step (median)")
ax.set_title("FLUX.1-dev-shaped transformer, 1024², batch 1, rank-64 LoRA slots — NVIDIA H200", fontsize=10)
ax.legend(fontsize=8, loc="upper right")
ax.set_ylim(0, max(p["total"] for _, p in bars) * 1.12)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")

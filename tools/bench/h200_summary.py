"""Collects the H200 run of issue #6 (tools/device/ort_bench.sh prep/bench/extra/seed outputs in
tools/bench/results/h200-ort-cuda-2026-11-28/) into summary.json and the README plot ms_per_step.png.
Usage: python3 tools/bench/h200_summary.py [DIR]   (needs matplotlib for the plot)"""
import json, re, sys, pathlib

d = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tools/bench/results/h200-ort-cuda-2026-11-28")
ref = json.load(open(d / "diffusers-ref.json"))
fp16 = json.load(open(d / "ort-cuda-fp16.json"))
bf16 = json.load(open(d / "ort-cuda-bf16.json"))
acc = json.load(open(d / "accuracy.json"))
prof = json.load(open(d / "profile-fp16.json"))
seed = json.loads(re.search(r"RESULT (\{.*\})", (d / "seed-bf16.log").read_text()).group(1))
machine = (d / "machine.txt").read_text().split("\n")[0]
mb = lambda b: round(b / 2**20)
s = {
    "machine": machine, "date": "2026-11-28", "resolution": "1024x1024 (4096 image + 512 text tokens), batch 1",
    "model": "random FLUX.1-dev-shaped transformer, 11.9 B params (make-random-flux --layout diffusers --dtype bf16)",
    "adapters": "random PEFT, attention projections of all 57 blocks (266 modules): a16 (rank 16), a64 (rank 64), b16 (rank 16); engine slots rank 64",
    "commands": {"prep/bench/extra/seed": "tools/device/ort_bench.sh (see its header)", "seed": "tools/bench/seed_recipe.py bf16"},
    "ms_per_step_median": {
        "diffusers eager bf16": ref["eager_bf16_ms"]["median"],
        "diffusers eager bf16 + LoRA (PEFT)": ref["eager_bf16_lora_ms"]["median"],
        "seed recipe eager bf16 (its run)": seed["eager_base_ms"],
        "seed recipe compiled bf16 + LoRA": seed["compiled_lora_ms"],
        "seed recipe FP8 regional compile + LoRA (anchor, not re-run)": "110-120",
        "flux-trt ORT CUDA fp16 (+ rank-64 slots)": fp16["transformer_call_base"]["median_ms"],
        "flux-trt ORT CUDA bf16 (+ rank-64 slots)": bf16["transformer_call_base"]["median_ms"],
    },
    "peak_gpu_memory_MiB": {
        "diffusers eager bf16 + LoRA (torch max_memory_allocated)": mb(ref["peak_gpu_bytes_lora"]),
        "seed recipe compiled (its peak_mem_gb)": round(seed["peak_mem_gb"] * 1024),
        "flux-trt ORT CUDA fp16 (cuMemGetInfo, sampled, whole process)": mb(fp16["memory"]["device_used_bytes"]["peak_sampled"]),
    },
    "swap": {
        "flux-trt staged (pre-staged on device) install median ms": fp16["swap"]["staged_install"]["median_ms"],
        "flux-trt from loaded adapter: lay-out + convert + upload median ms": fp16["swap"]["from_loaded_adapter_layout_convert_upload"]["median_ms"],
        "flux-trt file read + parse median ms": fp16["swap"]["file_read_parse"]["median_ms"],
        "seed recipe hotswap s (+ first call after swap s)": [seed["hotswap_s"], seed["first_after_swap_s"]],
    },
    "stress_fp16": {k: fp16["stress"][k] for k in ["swaps", "runs", "from_host_swaps", "bit_mismatches"]} | {
        "device_used_before_after_MiB": [mb(fp16["memory"]["device_used_bytes"]["before_stress"]), mb(fp16["memory"]["device_used_bytes"]["after_stress"])],
        "host_rss_before_after_MiB": [mb(fp16["memory"]["host_before_stress"]["rss_bytes"]), mb(fp16["memory"]["host_after"]["rss_bytes"])],
        "threads_all_bit_equal": fp16["threads"]["all_bit_equal"]},
    "stress_bf16": {k: bf16["stress"][k] for k in ["swaps", "runs", "bit_mismatches"]} | {"threads_all_bit_equal": bf16["threads"]["all_bit_equal"]},
    "accuracy_vs_diffusers": acc,
    "session_create_s": {"fp16": fp16["session"]["create_ms"] / 1e3, "bf16": bf16["session"]["create_ms"] / 1e3},
    "export": {"bf16 wall s (page cache warm)": json.load(open(d / "export-time.json"))["wall_s"], "fp16 wall s": json.load(open(d / "export-fp16.json"))["export_fp16_wall_s"],
               "fp16 peak RSS MiB": round(json.load(open(d / "export-fp16.json"))["max_rss_kb"] / 1024)},
    "profile_fp16": {"model_run_ms": prof["model_run_ms"], "host_side_kernel_ms": prof["kernel_ms_per_run"], "top_ops_host_ms": dict(list(prof["by_op_ms"].items())[:8])},
}
json.dump(s, open(d / "summary.json", "w"), indent=1)
print(json.dumps(s["ms_per_step_median"], indent=1))
try:
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
except ImportError:
    sys.exit(0)
rows = [(k, v) for k, v in s["ms_per_step_median"].items() if isinstance(v, (int, float))] + [("seed recipe FP8 regional + LoRA (anchor)", 115.0)]
fig, ax = plt.subplots(figsize=(9, 3.6))
ax.barh([r[0] for r in rows], [r[1] for r in rows], color=["#999"] * 3 + ["#4a7"] + ["#4a7"] * 0 + ["#c54", "#c54", "#8b8"])
for i, (_, v) in enumerate(rows):
    ax.text(v + 2, i, f"{v:.0f}", va="center", fontsize=8)
ax.invert_yaxis(); ax.set_xlabel("ms per transformer call (median), 1024², batch 1, H200")
ax.set_title("Random FLUX.1-dev-shaped model, H200, 2026-11-28: flux-trt (ONNX Runtime CUDA) vs diffusers", fontsize=9)
fig.tight_layout(); fig.savefig(d / "ms_per_step.png", dpi=110)

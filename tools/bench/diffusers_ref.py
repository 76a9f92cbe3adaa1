"""diffusers eager reference for the H200 benchmark (issue #6): the same random FLUX.1-dev-shaped
checkpoint flux-trt exports (a diffusers folder from `make-random-flux --layout diffusers`), the
same inputs (`make-inputs`), the same PEFT adapter file.

  python3 diffusers_ref.py make-inputs --out in.safetensors [--width 1024 --height 1024 --txt 512]
  python3 diffusers_ref.py run --model DIR --inputs in.safetensors --lora a.safetensors \
      --out ref.safetensors --json ref.json [--steps 10 --warmup 3] [--fp32]
  python3 diffusers_ref.py compare --ref ref.safetensors --ours KEY=FILE ... --json cmp.json

`run` times eager bf16 transformer calls (CUDA events, median over --steps after --warmup) without and
with the LoRA (PEFT, diffusers `load_lora_adapter`), records peak GPU memory, and saves the outputs
`sample.base`, `sample.lora` (bf16 model, f32 tensors); with --fp32 also `sample.base.fp32` and
`sample.lora.fp32` from the same weights upcast to float32 (the accuracy yardstick for both).
Inputs follow flux-trt's contract: timestep = sigma in [0, 1], guidance = scale (both x1000 inside).
"""
import argparse, json, os, statistics, sys, time

import torch
from safetensors.torch import load_file, save_file


def make_inputs(a):
    g = torch.Generator("cpu").manual_seed(a.seed)
    lh, lw = a.height // 16, a.width // 16
    ids = torch.zeros(lh, lw, 3)
    ids[..., 1] += torch.arange(lh)[:, None]
    ids[..., 2] += torch.arange(lw)[None, :]
    t = {
        "hidden_states": torch.randn(1, lh * lw, 64, generator=g),
        "encoder_hidden_states": torch.randn(1, a.txt, a.context, generator=g),
        "pooled_projections": torch.randn(1, a.pooled, generator=g),
        "timestep": torch.tensor([0.75]),
        "guidance": torch.tensor([3.5]),
        "img_ids": ids.reshape(lh * lw, 3),
        "txt_ids": torch.zeros(a.txt, 3),
    }
    save_file({k: v.contiguous() for k, v in t.items()}, a.out)


def timed(m, inp, steps, warmup):
    cuda = torch.cuda.is_available() and next(m.parameters()).is_cuda
    with torch.inference_mode():
        for _ in range(warmup):
            m(**inp)
        ts = []
        for _ in range(steps):
            if cuda:
                torch.cuda.synchronize()
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                out = m(**inp)[0]
                e.record()
                torch.cuda.synchronize()
                ts.append(s.elapsed_time(e))
            else:
                t0 = time.perf_counter()
                out = m(**inp)[0]
                ts.append((time.perf_counter() - t0) * 1e3)
    return out.float().cpu(), ts


def run(a):
    from diffusers import FluxTransformer2DModel

    dev = a.device
    res = {"gpu": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    mem = (lambda: torch.cuda.max_memory_allocated()) if dev == "cuda" else (lambda: None)
    import diffusers, peft

    res["diffusers"], res["peft"] = diffusers.__version__, peft.__version__
    t0 = time.time()
    m = FluxTransformer2DModel.from_pretrained(a.model, torch_dtype=torch.bfloat16).to(dev).eval().requires_grad_(False)
    res["load_s"] = time.time() - t0
    x = load_file(a.inputs)

    def inputs(dt):
        d = {k: v.to(dev) for k, v in x.items()}
        for k in ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "guidance"]:
            d[k] = d[k].to(dt)
        return dict(d, return_dict=False)

    outs = {}
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    outs["sample.base"], ts = timed(m, inputs(torch.bfloat16), a.steps, a.warmup)
    res["eager_bf16_ms"] = {"median": statistics.median(ts), "min": min(ts), "all": ts}
    res["peak_gpu_bytes_base"] = mem()
    t0 = time.time()
    # By path, so diffusers reads the file's alpha metadata (a plain state dict would drop it).
    lp = os.path.abspath(a.lora)
    m.load_lora_adapter(os.path.dirname(lp), weight_name=os.path.basename(lp), adapter_name="bench", prefix="transformer")
    res["load_lora_s"] = time.time() - t0
    outs["sample.lora"], ts = timed(m, inputs(torch.bfloat16), a.steps, a.warmup)
    res["eager_bf16_lora_ms"] = {"median": statistics.median(ts), "min": min(ts), "all": ts}
    res["peak_gpu_bytes_lora"] = mem()
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}), flush=True)
    if a.fp32:
        m = m.float()
        outs["sample.lora.fp32"], _ = timed(m, inputs(torch.float32), 1, 0)
        m.disable_lora()
        outs["sample.base.fp32"], _ = timed(m, inputs(torch.float32), 1, 0)
    save_file({k: v.contiguous() for k, v in outs.items()}, a.out)
    json.dump(res, open(a.json, "w"), indent=1)
    print("RESULT " + json.dumps({k: (v["median"] if isinstance(v, dict) else v) for k, v in res.items()}), flush=True)


def compare(a):
    ref = load_file(a.ref)
    out = {}
    for spec in a.ours:
        key, path = spec.split("=", 1)
        ours = load_file(path)["sample"].float()
        for rk in [key, key + ".fp32"]:
            if rk in ref:
                r = ref[rk].float()
                out[f"{path}:{key} vs {rk}"] = {"max_abs": (ours - r).abs().max().item(), "rel_l2": ((ours - r).norm() / r.norm()).item(),
                                                "cos": torch.nn.functional.cosine_similarity(ours.flatten(), r.flatten(), dim=0).item()}
    for k in ["sample.base", "sample.lora"]:
        if k in ref and k + ".fp32" in ref:
            r, b = ref[k + ".fp32"], ref[k]
            out[f"diffusers bf16 {k} vs fp32"] = {"max_abs": (b - r).abs().max().item(), "rel_l2": ((b - r).norm() / r.norm()).item()}
    json.dump(out, open(a.json, "w"), indent=1)
    print(json.dumps(out, indent=1))


p = argparse.ArgumentParser()
sp = p.add_subparsers(dest="cmd", required=True)
q = sp.add_parser("make-inputs"); q.add_argument("--out", required=True); q.add_argument("--width", type=int, default=1024)
q.add_argument("--height", type=int, default=1024); q.add_argument("--txt", type=int, default=512); q.add_argument("--seed", type=int, default=0)
q.add_argument("--context", type=int, default=4096); q.add_argument("--pooled", type=int, default=768)
q = sp.add_parser("run"); q.add_argument("--model", required=True); q.add_argument("--inputs", required=True); q.add_argument("--lora", required=True)
q.add_argument("--out", required=True); q.add_argument("--json", required=True); q.add_argument("--steps", type=int, default=10)
q.add_argument("--warmup", type=int, default=3); q.add_argument("--fp32", action="store_true")
q.add_argument("--device", default="cuda", help="cpu: a smoke test on the tiny fixture (timings meaningless)")
q = sp.add_parser("compare"); q.add_argument("--ref", required=True); q.add_argument("--ours", nargs="+", required=True); q.add_argument("--json", required=True)
a = p.parse_args()
{"make-inputs": make_inputs, "run": run, "compare": compare}[a.cmd](a)

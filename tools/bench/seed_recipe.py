# Anchor benchmark: the seed's recipe (diffusers Flux transformer + PEFT LoRA hotswap + torch.compile [+ FP8 torchao])
# on a randomly initialised FLUX.1-dev-sized transformer at 1024x1024, batch 1. Times one denoising step (CUDA events).
# On the GPU machine, after staging `py` (tools/device/stage.sh py) and `source /opt/dev/env.sh`:
#   python3 seed_recipe.py bf16        # eager, eager+LoRA, compiled+LoRA, hotswap (about 3 min)
#   python3 seed_recipe.py fp8         # same with torchao FP8 dynamic quant (compile took > 7 min on 2026-11-28)
#   python3 seed_recipe.py fp8r        # FP8 with regional compilation (compile_repeated_blocks): compiled in 250 s
#   python3 seed_recipe.py bf16r       # bf16 with regional compilation
#   python3 seed_recipe.py nocompile   # eager only
# SDPA=cudnn (env) forces cuDNN attention, the fastest SDPA on Hopper. Prints one line 'RESULT {json}'. Measured 2026-11-28 on an H200 (bf16): eager 177.4 ms, eager+LoRA 194.3 ms,
# compiled+LoRA 137.9 ms, compile 148 s, hotswap 0.128 s without recompiling, peak 44.4 GB.
# fp8r: eager FP8 260.8 ms, compiled FP8+LoRA 119.7 ms, after hotswap to rank 64: 110.1 ms, hotswap 0.127 s.
# 2026-11-29 with SDPA=cudnn: bf16 compiled+LoRA 137.5 ms; fp8r 110.6 ms, 111.7 after hotswap (compile 205 s).
import os, sys, time, json, torch
import torch._dynamo
from diffusers import FluxTransformer2DModel
MODE = sys.argv[1] if len(sys.argv) > 1 else "bf16"
# SDPA=cudnn|flash|efficient forces torch's attention backend (default: torch's own choice).
SDPA = os.environ.get("SDPA", "")
if SDPA:
    for name in ("flash", "mem_efficient", "cudnn", "math"):
        getattr(torch.backends.cuda, f"enable_{name}_sdp")(name == {"efficient": "mem_efficient"}.get(SDPA, SDPA))
torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
t0 = time.time()
with torch.device(dev):
    m = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                               num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                               guidance_embeds=True, axes_dims_rope=(16, 56, 56)).to(dt)
m.eval().requires_grad_(False)
print(f"[{MODE}] init {time.time()-t0:.1f}s params {sum(p.numel() for p in m.parameters())/1e9:.2f}B", flush=True)
IMG, TXT = 4096, 512
inp = dict(hidden_states=torch.randn(1, IMG, 64, device=dev, dtype=dt), encoder_hidden_states=torch.randn(1, TXT, 4096, device=dev, dtype=dt),
           pooled_projections=torch.randn(1, 768, device=dev, dtype=dt), timestep=torch.tensor([0.5], device=dev, dtype=dt),
           guidance=torch.tensor([3.5], device=dev, dtype=dt), img_ids=torch.randn(IMG, 3, device=dev), txt_ids=torch.zeros(TXT, 3, device=dev), return_dict=False)
def step_ms(n=10, warm=3):
    with torch.inference_mode():
        for _ in range(warm): m(**inp)
        torch.cuda.synchronize(); s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(n): m(**inp)
        e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / n
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
def lora_sd(rank, seed):
    g = torch.Generator(device=dev).manual_seed(seed); sd = {}
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear) and any(name.endswith("." + t) for t in TARGETS) and "transformer_blocks" in name:
            sd[f"transformer.{name}.lora_A.weight"] = (torch.randn(rank, mod.in_features, generator=g, device=dev) * 0.01).to(dt)
            sd[f"transformer.{name}.lora_B.weight"] = (torch.randn(mod.out_features, rank, generator=g, device=dev) * 0.01).to(dt)
    return sd
res = {"mode": MODE, "sdpa": SDPA or "default", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
REGIONAL = MODE.endswith("r")
if REGIONAL: MODE = MODE[:-1]
res["eager_base_ms"] = step_ms(n=5, warm=2); print(res, flush=True)
if MODE == "fp8":
    from torchao.quantization import quantize_, Float8DynamicActivationFloat8WeightConfig
    quantize_(m, Float8DynamicActivationFloat8WeightConfig()); res["eager_fp8_ms"] = step_ms(n=5, warm=2); print(res, flush=True)
a, b = lora_sd(16, 1), lora_sd(64, 2)
m.enable_lora_hotswap(target_rank=64)
t = time.time(); m.load_lora_adapter(a, adapter_name="default_0", prefix="transformer"); res["load_lora_s"] = time.time() - t
res["eager_lora_ms"] = step_ms(n=5, warm=2); print(res, flush=True)
torch._dynamo.config.cache_size_limit = 8
if REGIONAL:
    m.compile_repeated_blocks(fullgraph=True); res["compile"] = "regional"
elif MODE != "nocompile":
    m = torch.compile(m, fullgraph=True); res["compile"] = "full"
t = time.time(); res["compiled_lora_ms"] = step_ms(n=10, warm=2); res["compile_s"] = time.time() - t; print(res, flush=True)
torch._dynamo.config.error_on_recompile = True
mm = m._orig_mod if hasattr(m, "_orig_mod") else m
t = time.time(); mm.load_lora_adapter(b, adapter_name="default_0", prefix="transformer", hotswap=True); torch.cuda.synchronize(); res["hotswap_s"] = time.time() - t
try:
    t = time.time(); res["compiled_after_swap_ms"] = step_ms(n=10, warm=1); res["first_after_swap_s"] = time.time() - t; res["recompiled"] = False
except Exception as ex:
    res["recompiled"] = f"{type(ex).__name__}: {str(ex)[:200]}"
res["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
print("RESULT", json.dumps(res), flush=True)

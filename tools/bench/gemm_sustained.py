# Are the native backend's GEMMs slower in a whole step than in isolation, and why? (issue 12)
# All bf16 GEMMs of one FLUX.1-dev step at 1024² (img 4096 / txt 512 rows split as the backend runs
# them, the modulation GEMVs, distinct weights per block: 23.8 GB), timed two ways with CUDA events:
#   burst:     each GEMM alone, 5 warm-ups + 20 repeats (how kern_probe measures its 77.5 ms ceiling);
#   sustained: the step's GEMM sequence in order, captured once as a CUDA graph and replayed 15 times
#              back to back (how a denoising loop runs),
# with nvidia-smi sampling SM clock, power and throttle reasons every 100 ms during each phase.
# Run on the GPU machine: python3 gemm_sustained.py  -> prints one 'RESULT {json}' line.
import json, subprocess, time, statistics, torch, torch.nn.functional as F
dev, dt = "cuda", torch.bfloat16
torch.backends.cuda.matmul.allow_tf32 = False
H, M, TXT, IMG = 3072, 12288, 512, 4096
ROWS = TXT + IMG
def w(n, k):
    t = torch.empty(n, k, device=dev, dtype=dt); t.normal_(0, 0.02); return t
def b(n):
    return torch.zeros(n, device=dev, dtype=dt).normal_(0, 0.02)
x_img = torch.randn(IMG, H, device=dev, dtype=dt); x_txt = torch.randn(TXT, H, device=dev, dtype=dt)
x_all = torch.randn(ROWS, H, device=dev, dtype=dt); x_mlp = torch.randn(ROWS, M, device=dev, dtype=dt)
x_mlp_img = x_mlp[:IMG]; x_mlp_txt = x_mlp[:TXT]; temb = torch.randn(1, H, device=dev, dtype=dt)
x_cat = torch.randn(ROWS, H + M, device=dev, dtype=dt)
ops = []  # (name, fn)
for i in range(19):
    p = {k: (w(n, kk), b(n)) for k, (n, kk) in dict(mod_i=(6 * H, H), mod_t=(6 * H, H), qkv_i=(3 * H, H), qkv_t=(3 * H, H), out_i=(H, H), out_t=(H, H),
                                                    up_i=(M, H), up_t=(M, H), down_i=(H, M), down_t=(H, M)).items()}
    for name, x in [("mod_i", temb), ("mod_t", temb), ("qkv_i", x_img), ("qkv_t", x_txt), ("out_i", x_img), ("out_t", x_txt),
                    ("up_i", x_img), ("up_t", x_txt), ("down_i", x_mlp_img), ("down_t", x_mlp_txt)]:
        ops.append((f"double.{name}", (lambda x=x, wb=p[name]: F.linear(x, *wb))))
for i in range(38):
    p = dict(mod=(w(3 * H, H), b(3 * H)), qkv=(w(3 * H, H), b(3 * H)), mlp=(w(M, H), b(M)), out=(w(H, H + M), b(H)))
    ops.append(("single.mod", (lambda wb=p["mod"]: F.linear(temb, *wb))))
    ops.append(("single.qkv", (lambda wb=p["qkv"]: F.linear(x_all, *wb))))
    ops.append(("single.mlp", (lambda wb=p["mlp"]: F.linear(x_all, *wb))))
    ops.append(("single.out", (lambda wb=p["out"], xc=x_cat: F.linear(xc, *wb))))
torch.cuda.synchronize()
print(f"weights {torch.cuda.memory_allocated() / 2**30:.1f} GiB, {len(ops)} GEMMs per step", flush=True)

FIELDS = ["clocks.sm,power.draw", "clocks_event_reasons.active"]
def sample():
    return [subprocess.Popen(["nvidia-smi", f"--query-gpu={f}", "--format=csv,noheader,nounits", "-lms", "100"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for f in FIELDS]
def summary(ps):
    outs = []
    for p in ps:
        p.terminate(); outs.append(p.communicate()[0])
    rows = [l.split(",") for l in outs[0].strip().splitlines() if l.count(",") == 1]
    clk = [float(r[0]) for r in rows if r[0].strip().replace(".", "").isdigit()]
    pw = [float(r[1]) for r in rows if r[1].strip().replace(".", "").isdigit()]
    reasons = sorted({l.strip() for l in outs[1].strip().splitlines()})[:8]
    return {"samples": len(rows), "sm_mhz_median": statistics.median(clk) if clk else None, "sm_mhz_min": min(clk) if clk else None,
            "power_w_median": statistics.median(pw) if pw else None, "power_w_max": max(pw) if pw else None, "event_reasons": reasons,
            "raw_head": outs[0][:200]}
ev = lambda: torch.cuda.Event(enable_timing=True)
res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
# burst: one representative of each distinct GEMM (first occurrence), times its count
time.sleep(2)
p = sample()
burst, seen = 0.0, {}
for name, fn in ops:
    if name not in seen:
        for _ in range(5): fn()
        e0, e1 = ev(), ev(); e0.record()
        for _ in range(20): fn()
        e1.record(); torch.cuda.synchronize()
        seen[name] = e0.elapsed_time(e1) / 20
    burst += seen[name]
res["burst"] = {"step_ms": burst, "per_gemm_ms": seen, "clocks": summary(p)}
# sustained: the whole sequence as one graph, replayed back to back
s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _, fn in ops: fn()
torch.cuda.current_stream().wait_stream(s); torch.cuda.synchronize()
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    for _, fn in ops: fn()
time.sleep(2)
p = sample()
steps = []
for _ in range(15):
    e0, e1 = ev(), ev(); e0.record(); g.replay(); e1.record(); torch.cuda.synchronize(); steps.append(e0.elapsed_time(e1))
res["sustained"] = {"step_ms": steps, "median_ms": statistics.median(steps), "first_ms": steps[0], "clocks": summary(p)}
print("RESULT " + json.dumps(res), flush=True)
print(f"burst sum {burst:.1f} ms/step at {res['burst']['clocks']['sm_mhz_median']} MHz; sustained median {res['sustained']['median_ms']:.1f} ms "
      f"(first {steps[0]:.1f}) at {res['sustained']['clocks']['sm_mhz_median']} MHz, power {res['sustained']['clocks']['power_w_median']} W, "
      f"reasons {res['sustained']['clocks']['event_reasons']}")

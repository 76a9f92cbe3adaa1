"""Summarize an ONNX Runtime profiling trace (FluxSessionBuilder::with_profiling, ort_bench --profile):
time per operator type and provider, averaged over the profiled runs, largest first.
Usage: python3 ort_profile_summary.py TRACE.json [--json OUT] [--skip N]   (skip the first N runs: warm-up)"""
import argparse, collections, json

p = argparse.ArgumentParser(); p.add_argument("trace"); p.add_argument("--json"); p.add_argument("--skip", type=int, default=0)
a = p.parse_args()
ev = json.load(open(a.trace))
runs = sorted([e for e in ev if e.get("cat") == "Session" and e.get("name") == "model_run"], key=lambda e: e["ts"])
keep = runs[a.skip:]
lo = keep[0]["ts"] if keep else 0
by_op, by_prov, total = collections.Counter(), collections.Counter(), 0
for e in ev:
    if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < lo:
        continue
    op = e.get("args", {}).get("op_name", "?"); prov = e.get("args", {}).get("provider", "?")
    by_op[op] += e["dur"]; by_prov[prov] += e["dur"]; total += e["dur"]
n = max(len(keep), 1)
run_ms = sum(r["dur"] for r in keep) / n / 1e3
res = {"runs": len(keep), "model_run_ms": run_ms, "kernel_ms_per_run": total / n / 1e3,
       "by_op_ms": {k: v / n / 1e3 for k, v in by_op.most_common()}, "by_provider_ms": {k: v / n / 1e3 for k, v in by_prov.most_common()}}
print(f"{len(keep)} runs, model_run {run_ms:.1f} ms, kernels {total / n / 1e3:.1f} ms per run")
for k, v in by_op.most_common(15):
    print(f"  {k:28s} {v / n / 1e3:8.2f} ms  {100 * v / max(total, 1):5.1f}%")
if a.json:
    json.dump(res, open(a.json, "w"), indent=1)

#!/usr/bin/env python3
"""Checks an exported flux-trt ONNX folder against the diffusers goldens.

    python3 tools/reference/check_onnx.py ENGINE_DIR [--fixtures tests/fixtures] [--tol 1e-4]
                                          [--slots FILE=OUTPUT_KEY ...]

1. `onnx.checker.check_model(model.onnx, full_check=True)` (external data resolved from the path).
2. ONNX Runtime (CPU) on the golden inputs of the manifest's variant; RoPE tables computed here
   the way diffusers' `FluxPosEmbed` does (independent of the Rust `rope_tables`; checked equal to
   diffusers when it is installed). Compares `out.base`.

Needs onnx, onnxruntime, numpy, safetensors (torch/diffusers optional).
3. For every fixture LoRA of that variant whose golden ΔW modules all have slots: lays the golden
   factors (down [r,in], up·scale [out,r], from diffusers) zero-padded into the slots, feeds them
   as overridable initializers and compares with that LoRA's golden output (and `out.attn@0.5` with
   the attn.peft factors at half strength).
4. `--slots FILE=KEY`: slot contents written by the Rust side (safetensors with the initializer
   names `lora.<module>.A/B`), compared with golden output KEY.
5. After LoRA runs, a run without slot feeds must give the base output again (defaults restored).

Error = max|out − golden| / max|golden|; fails (exit 1) above --tol. Prints one line per check.
"""
import argparse
import json
import os
import sys

import numpy as np


def rel_err(out, ref):
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def rope(ids_txt, ids_img, axes, theta):
    """RoPE tables [S, head_dim/2] as diffusers' FluxPosEmbed computes them (float64 frequencies,
    outer product with the float32 ids promoted to float64, cos/sin, then float32), written in NumPy
    so the check needs no torch; cross-checked against diffusers itself when it is installed."""
    ids = np.concatenate([ids_txt, ids_img], axis=0).astype(np.float32)
    cos, sin = [], []
    for i, dim in enumerate(axes):
        freqs = 1.0 / (float(theta) ** (np.arange(0, dim, 2, dtype=np.float64)[: dim // 2] / dim))
        ang = np.outer(ids[:, i].astype(np.float64), freqs)
        cos.append(np.cos(ang).astype(np.float32))
        sin.append(np.sin(ang).astype(np.float32))
    cos, sin = np.concatenate(cos, axis=1), np.concatenate(sin, axis=1)
    try:
        import torch
        from diffusers.models.transformers.transformer_flux import FluxPosEmbed
    except ImportError:
        return cos, sin
    c, s = FluxPosEmbed(theta=theta, axes_dim=list(axes))(torch.from_numpy(ids))
    assert np.array_equal(c[:, ::2].float().numpy(), cos) and np.array_equal(s[:, ::2].float().numpy(), sin), "RoPE tables differ from diffusers"
    return cos, sin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine_dir")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--slots", action="append", default=[], help="FILE=OUTPUT_KEY")
    ap.add_argument("--no-checker", action="store_true")
    ap.add_argument("--rust-rope", help="safetensors with rope_cos/rope_sin from flux_trt::flux::rope_tables, compared with ours")
    a = ap.parse_args()

    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file

    d = a.engine_dir
    man = json.load(open(os.path.join(d, "manifest.json")))
    model_path = os.path.join(d, man["onnx"]["file"])
    fx = json.load(open(os.path.join(a.fixtures, "fixtures.json")))
    variant = man["model"]["variant"]
    failures = []

    if not a.no_checker:
        onnx.checker.check_model(model_path, full_check=True)
        print("checker: ok (full_check, external data)")

    g = load_file(os.path.join(a.fixtures, fx["models"][variant]["outputs"]))
    cfg = man["model"]
    cos, sin = rope(g["txt_ids"], g["img_ids"], cfg["axes_dim"], cfg["rope_theta"])
    if a.rust_rope:
        rr = load_file(a.rust_rope)
        e = max(float(np.max(np.abs(rr["rope_cos"] - cos))), float(np.max(np.abs(rr["rope_sin"] - sin))))
        ok = rr["rope_cos"].shape == cos.shape and e <= 1e-6
        print(f"{'ok  ' if ok else 'FAIL'} rust rope_tables: max abs diff {e:.3e}")
        if not ok:
            failures.append("rust rope_tables")
    feeds = {
        "hidden_states": g["hidden_states"],
        "encoder_hidden_states": g["encoder_hidden_states"],
        "pooled_projections": g["pooled_projections"],
        "timestep": g["timestep"],
        "rope_cos": cos,
        "rope_sin": sin,
    }
    if "guidance" in g:
        feeds["guidance"] = g["guidance"]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in input_names}

    def check(label, out, key):
        e = rel_err(out, g[key])
        ok = e <= a.tol
        print(f"{'ok  ' if ok else 'FAIL'} {label}: rel err {e:.3e} vs {key}")
        if not ok:
            failures.append(label)

    base = sess.run(["sample"], feeds)[0]
    check("base", base, "out.base")

    slots = {s["module"]: s for s in man["lora"]["slots"]}
    r_max = man["lora"]["max_rank"]
    np_dt = {"f32": np.float32, "f16": np.float16}.get(man["lora"]["dtype"])

    def slot_feeds(delta, strength):
        f = {}
        for mod, s in slots.items():
            A = np.zeros((r_max, s["in_features"]), np.float32)
            B = np.zeros((s["out_features"], r_max), np.float32)
            if mod + ".down" in delta:
                down, up = delta[mod + ".down"], delta[mod + ".up"]
                r = down.shape[0]
                A[:r] = down
                B[:, :r] = up * strength
            f[s["a"]] = A.astype(np_dt)
            f[s["b"]] = B.astype(np_dt)
        return f

    ran_lora = False
    for l in fx["loras"]:
        if l["model"] != variant:
            continue
        delta = load_file(os.path.join(a.fixtures, l["golden_delta"]))
        mods = sorted({k.rsplit(".", 1)[0] for k in delta})
        missing = [m for m in mods if m not in slots and np.any(delta[m + ".up"] @ delta[m + ".down"])]
        too_big = [m for m in mods if m in slots and delta[m + ".down"].shape[0] > r_max]
        if missing or too_big:
            print(f"skip {l['path']}: {len(missing)} modules without a slot, {len(too_big)} above max_rank {r_max}")
            continue
        if np_dt is None:
            print(f"skip {l['path']}: slot dtype {man['lora']['dtype']} not fed from NumPy")
            continue
        out = sess.run(["sample"], {**feeds, **slot_feeds(delta, 1.0)})[0]
        check(f"lora {l['path']}", out, l["output_key"])
        ran_lora = True
        if "output_key_half_strength" in l:
            out = sess.run(["sample"], {**feeds, **slot_feeds(delta, 0.5)})[0]
            check(f"lora {l['path']} @0.5", out, l["output_key_half_strength"])

    for spec in a.slots:
        path, key = spec.rsplit("=", 1)
        sf = load_file(path)
        out = sess.run(["sample"], {**feeds, **sf})[0]
        check(f"rust slots {os.path.basename(path)}", out, key)
        ran_lora = True

    if ran_lora:
        again = sess.run(["sample"], feeds)[0]
        same = np.array_equal(again, base)
        print(f"{'ok  ' if same else 'FAIL'} defaults restored after slot feeds")
        if not same:
            failures.append("defaults restored")

    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden FP8 (E4M3FN) conversions for the Rust converter (`flux_trt::onnx::fp8::e4m3`).

    python3 tools/reference/fp8_golden.py --out tests/fixtures/golden/fp8/e4m3.safetensors

Every conversion is torch's own `Tensor.to(torch.float8_e4m3fn)` (round to nearest even) applied
after `clamp(-448, 448)`, which is the saturating conversion ONNX `QuantizeLinear(saturate=1)`
specifies (torch alone turns |x| >= 480 into NaN). Results are stored as the raw bytes (uint8).

Tensors:
- `bf16.in` (BF16, all 65536 bit patterns) / `bf16.e4m3` (U8)
- `f16.in` (F16, all 65536 bit patterns) / `f16.e4m3`
- `f32.in` (F32: every E4M3 value, every midpoint between neighbours and the midpoints nudged
  one f32 ulp either way, ±inf, nan, random values over 2^-14 .. 2^10) / `f32.e4m3`
- `w` (F32 [17, 33], row 3 all zeros, row 5 tiny), `w.scale.channel` (F32 [17]),
  `w.e4m3.channel` (U8 [17, 33]), `w.scale.tensor` (F32 []), `w.e4m3.tensor`:
  scale = max(amax / 448, 2^-24), q = e4m3(w / scale) (f32 division, then the conversion above).
"""
import argparse

import torch
from safetensors.torch import save_file

MAX = 448.0
FLOOR = 2.0 ** -24


def conv(x):
    return x.float().clamp(-MAX, MAX).to(torch.float8_e4m3fn).view(torch.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    bits = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    bf = bits.view(torch.bfloat16)
    f16 = bits.view(torch.float16)
    # every finite e4m3 value, midpoints and nudged midpoints
    allq = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).float()
    pos = torch.unique(allq[torch.isfinite(allq) & (allq >= 0)]).sort().values
    mids = (pos[1:] + pos[:-1]) / 2
    up = torch.nextafter(mids, torch.full_like(mids, float("inf")))
    dn = torch.nextafter(mids, torch.zeros_like(mids))
    beyond = torch.tensor([448.0, 449.0, 463.99, 464.0, 464.01, 479.0, 480.0, 500.0, 1e6, 3.4e38, 2.0 ** -10, 2.0 ** -11, 3 * 2.0 ** -11, 1e-30, 0.0])
    rnd = torch.exp2(torch.rand(4000, generator=g) * 24 - 14) * torch.randn(4000, generator=g).sign()
    special = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0])
    core = torch.cat([pos, mids, up, dn, beyond, rnd])
    f32 = torch.cat([core, -core, special]).float()
    w = torch.randn(17, 33, generator=g) * 0.05
    w[3] = 0
    w[5] *= 1e-9
    w[7, 4] = 2.5  # an outlier
    amax_c = w.abs().amax(dim=1)
    sc = torch.clamp(amax_c / MAX, min=FLOOR)
    st = torch.clamp(w.abs().amax() / MAX, min=FLOOR)
    out = {
        "bf16.in": bf.clone(),
        "bf16.e4m3": conv(bf),
        "f16.in": f16.clone(),
        "f16.e4m3": conv(f16),
        "f32.in": f32.contiguous(),
        "f32.e4m3": conv(f32),
        "w": w.contiguous(),
        "w.scale.channel": sc.contiguous(),
        "w.e4m3.channel": conv(w / sc[:, None]).contiguous(),
        "w.scale.tensor": st.reshape([]).contiguous(),
        "w.e4m3.tensor": conv(w / st).contiguous(),
    }
    save_file(out, a.out, metadata={"generator": "tools/reference/fp8_golden.py", "torch": torch.__version__})
    print(f"wrote {a.out}: {len(f32)} f32 values, 65536 bf16, 65536 f16")


if __name__ == "__main__":
    main()

# A placeholder FP8 calibration for a FLUX.1 transformer (default the full size: 19 double, 38 single blocks):
# amax 8 at every quantization point, GEMMs and attention, in build-engine's --calib-in format. For
# exports whose scales are measured afterwards on the GPU (flux-trt calibrate, cuda_fp8_check
# --scales-out): build-engine's own calibration runs an fp32 copy of the model on the CPU.
#   python3 tools/device/fp8-placeholder.py OUT.json [DOUBLE SINGLE]
import json, sys
nd, ns = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (19, 38)
pts = []
for i in range(nd):
    pts += [f"transformer_blocks.{i}.{n}" for n in ["attn.qkv", "attn.add_qkv", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"]]
for i in range(ns):
    pts += [f"single_transformer_blocks.{i}.linear1", f"single_transformer_blocks.{i}.proj_out"]
blocks = [f"transformer_blocks.{i}" for i in range(nd)] + [f"single_transformer_blocks.{i}" for i in range(ns)]
pts += [f"{b}.attn.{x}" for b in blocks for x in "qkv"]
json.dump({"amax": {p: 8.0 for p in pts}, "info": {"samples": 0, "seed": 0, "img_seq": 4096, "txt_seq": 512, "sigmas": []}}, open(sys.argv[1], "w"))

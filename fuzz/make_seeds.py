#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ from the repository's test fixtures (run from the
repository root; deterministic). LoRA seeds are the fixture adapters of every format cut down to a
few layers (one plain module, one fused projection, the final layer where present), with their
metadata, so each seed is a few KB; the other corpora are small real inputs of each kind.

The manifest seeds (fuzz/corpus/manifest/) are not written here: they are the manifests of the tiny
engine (`build-engine --pipeline tests/fixtures/pipeline/flux-tiny --model
tests/fixtures/models/dev-diffusers --lora tests/fixtures/loras/attn.peft.safetensors --lora
tests/fixtures/pipeline/loras/clip.peft.safetensors --precision fp32`: transformer.json and the
three component manifests) and of an FP8 export (`--model tests/fixtures/models/dev-bfl.safetensors
--precision fp8 --fp8-float fp32 --calib 2`), plus two edits of transformer.json: with a TensorRT
`engine` section and its file record (transformer-trt.json) and as format 1 (transformer-v1.json)."""
import json, os, re, struct, glob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_down.weight", ".lora_up.weight", ".alpha",
            ".down.weight", ".up.weight")


def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def write(path, header, data, keys):
    meta = header.get("__metadata__")
    out, blob = {}, b""
    if meta is not None:
        out["__metadata__"] = meta
    for k in keys:
        t = header[k]
        s, e = t["data_offsets"]
        out[k] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [len(blob), len(blob) + e - s]}
        blob += data[s:e]
    h = json.dumps(out, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)


def stem(k):
    for s in SUFFIXES:
        if k.endswith(s):
            return k[: -len(s)]
    return k


def cut(src, dst):
    header, data = read(src)
    keys = sorted(k for k in header if k != "__metadata__")
    size = {}
    for k in keys:
        s, e = header[k]["data_offsets"]
        size[stem(k)] = size.get(stem(k), 0) + e - s
    stems = sorted(s for s in size if size[s] <= 32 << 10)  # keep seeds small: no wide layers
    pick = stems[:1]
    for pat in ("qkv|to_q", "linear1|proj_mlp", "final_layer|norm_out", "text_encoder|lora_te|te1"):
        hit = [s for s in stems if re.search(pat, s) and s not in pick]
        pick += hit[:1]
    write(dst, header, data, [k for k in keys if stem(k) in pick])


def main():
    lora = os.path.join(OUT, "lora")
    os.makedirs(lora, exist_ok=True)
    srcs = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/loras/*.safetensors")))
    srcs += sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/pipeline/loras/*.safetensors")))
    for s in srcs:
        cut(s, os.path.join(lora, os.path.basename(s)))
    for s in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/bad/*.safetensors"))):
        if 0 < os.path.getsize(s) <= 4096:
            open(os.path.join(lora, "bad-" + os.path.basename(s)), "wb").write(open(s, "rb").read())


    # `flux-trt generate --prompts` batch files (README's line format).
    batch = {
        "one.jsonl": '{"prompt": "a cat"}\n',
        "full.jsonl": '{"prompt": "a cat on a mat", "prompt_2": "a photo of a cat", "lora": "tests/fixtures/loras/attn.peft.safetensors:0.8", '
        '"seed": 42, "steps": 4, "guidance": 3.5, "width": 64, "height": 48, "out": "cat.png"}\n',
        "mixed.jsonl": '{"prompt": "a", "lora": ["a.safetensors:0.5", "C:dir/b.safetensors", "c.safetensors:-1"]}\n\n'
        '{"prompt": "b", "lora": "", "width": 1024, "height": 1024}\n  \n{"prompt": "c", "steps": 28, "seed": 18446744073709551615}\n',
        "bad-key.jsonl": '{"prompt": "a", "colour": "red"}\n',
        "bad-size.jsonl": '{"prompt": "a", "width": 100, "height": 65536}\n',
    }
    # `POST /v1/images/generations` bodies (OpenAI Images API + flux-trt's fields).
    image = {
        "minimal.json": '{"prompt": "a cat"}',
        "full.json": '{"model": "flux", "prompt": "a cat", "prompt_2": "photo", "n": 2, "size": "512x256", "response_format": "b64_json", '
        '"seed": 7, "steps": 4, "guidance": 3.5, "loras": [{"name": "attn.peft", "strength": 0.8}, {"name": "mlp.peft"}], "user": "u"}',
        "bad-size.json": '{"prompt": "a", "size": "100x64"}',
        "bad-lora.json": '{"prompt": "a", "loras": [{"name": "x"}, {"name": "x", "strength": "hi"}]}',
        "bad-types.json": '{"prompt": 1, "n": -1, "steps": 1e400, "guidance": null, "seed": 1.5}',
    }
    # `POST /v1/adapters` bodies.
    adapter = {
        "ok.json": '{"name": "style-a_1.0", "file": "style-a.safetensors"}',
        "traversal.json": '{"name": "x", "file": "../x.safetensors"}',
        "bad-name.json": '{"name": "a b", "file": "a.bin"}',
        "missing.json": '{"name": "x"}',
    }
    for name, files in (("batch", batch), ("image_request", image), ("adapter_request", adapter)):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        for f, text in files.items():
            open(os.path.join(d, f), "w").write(text)


if __name__ == "__main__":
    main()

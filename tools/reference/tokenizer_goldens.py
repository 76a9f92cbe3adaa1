#!/usr/bin/env python3
"""Token-id and truncation goldens for flux-trt's prompt tokenizers (src/pipeline/tokenize.rs).

    python3 tools/reference/tokenizer_goldens.py tests/fixtures/pipeline/flux-tiny

Needs transformers 5 + tokenizers only (no torch). make_pipeline_fixtures.py calls it after training
the tiny tokenizers; run alone, it rewrites `tokenizers.json` and `t5-legacy/` beside the given
pipeline folder from the committed `tokenizer/` and `tokenizer_2/`, and the `tokenizers` entry of
`pipeline.json` there.

Each case holds the ids exactly as FluxPipeline computes them and, for over-long prompts, `removed`:
the text diffusers' warning names. CLIP: `tokenizer.batch_decode(untruncated_ids[:, 77 - 1 : -1])`
(`_get_clip_prompt_embeds`). T5: the same slice at `max_sequence_length - 1` (diffusers 0.42.1
slices T5 at the CLIP length, 76, which names text that was kept when `max_sequence_length` > 77;
flux-trt names what was actually removed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never touch the network

CORPUS_WORDS = ("a photo of cat dog astronaut riding horse on the moon painting oil canvas portrait woman man "
                "city night neon lights forest river mountain sunset golden hour cinematic lighting detailed "
                "illustration anime style watercolor sketch red blue green yellow purple orange black white bright "
                "dark colorful beautiful tiny huge old young smiling standing sitting running flying under over "
                "inside An The A Photo Cat Dog").split()
CORPUS_EXTRA = ["Café naïve résumé, 東京 タワー! ＦＵＬＬ width", "don't it's we're they've I'm you'll he'd",
                "1234 5678 90 3.14 #hashtag @user e-mail (parens) [brackets] \"quotes\"", "über straße ÅNGSTRÖM"]

LONG_PROMPT = " ".join(["a beautiful detailed oil painting of an old astronaut riding a huge horse under the neon moon,"] * 40)
PROMPTS = [
    "a photo of a cat",
    "An astronaut riding a horse on the moon, oil painting, 4k!",
    "Café naïve   résumé — 東京タワー ＦＵＬＬ width\ttabs\nnew line",
    "don't it's we're 3.14 #hashtag @user e-mail \"quoted\"",
    "",
    "  leading and trailing spaces  ",
    "<|startoftext|> specials <|endoftext|> inside <pad> </s> <unk> <extra_id_3>",
    "über STRASSE straße ÅNGSTRÖM ﬁ ligature ①②",
    " ".join(CORPUS_WORDS[:60]),
    LONG_PROMPT,
    # Over-long with the cut inside unicode, punctuation, contractions and literal special tokens.
    " ".join(CORPUS_WORDS[:70]) + " Café naïve résumé — 東京タワー, don't <|endoftext|> it's ①② ﬁ!  end.",
]


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def make_t5_legacy(pipe_dir: Path, out: Path, goldens: dict) -> dict:
    """`tokenizer_2/tokenizer.json` rewritten in the older serialization (transformers 4 SpmConverter:
    normalizer Sequence[Precompiled, Replace(" {2,}")], pre-tokenizer Metaspace(add_prefix_space=true),
    no WhitespaceSplit) — the shape of many Hub T5 files. transformers 5's T5Tokenizer rebuilds its
    pipeline in code and only takes vocab, charsmap and post-processor from the file, so it must give
    the same ids; checked here against every golden."""
    from tokenizers import Tokenizer
    from transformers import T5TokenizerFast
    d = out / "t5-legacy"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    tj = json.loads((pipe_dir / "tokenizer_2" / "tokenizer.json").read_text(encoding="utf-8"))
    assert tj["normalizer"]["type"] == "Precompiled"
    tj["normalizer"] = {"type": "Sequence", "normalizers": [tj["normalizer"], {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    tj["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    write_json(d / "tokenizer.json", tj)
    shutil.copy(pipe_dir / "tokenizer_2" / "tokenizer_config.json", d / "tokenizer_config.json")
    tok = T5TokenizerFast.from_pretrained(str(d))
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    raw_differs = []
    for c in goldens["t5"]["cases"]:
        ids = tok([c["prompt"]], padding="max_length", max_length=c["max_length"], truncation=True).input_ids[0]
        assert ids == c["ids"], f"transformers reads the legacy file differently for {c['prompt']!r}"
        raw.enable_truncation(c["max_length"])
        raw.enable_padding(length=c["max_length"], pad_id=0, pad_token="<pad>")
        if raw.encode(c["prompt"]).ids != c["ids"]:
            raw_differs.append(c["prompt"])
    return {"path": "t5-legacy", "same_ids_as": "tokenizers.json t5 cases",
            "raw_tokenizers_file_differs_for": sorted(set(raw_differs))}


def case(tok, prompt: str, max_len: int) -> dict:
    """FluxPipeline's call (`padding="max_length"`, `truncation=True`) and, when the untruncated ids
    are longer, the removed text as diffusers decodes it: `batch_decode(untruncated[:, max_len - 1 : -1])`."""
    ids = tok([prompt], padding="max_length", max_length=max_len, truncation=True,
              return_overflowing_tokens=False, return_length=False).input_ids[0]
    full = tok([prompt], padding="longest").input_ids[0]
    c = {"prompt": prompt, "ids": ids, "untruncated_len": len(full), "truncated": len(full) > max_len}
    if c["truncated"]:
        c["removed"] = tok.batch_decode([full[max_len - 1:-1]])[0]
    return c


def tokenizer_goldens(pipe_dir: Path) -> dict:
    """Token ids exactly as FluxPipeline computes them (its `tokenizer` / `tokenizer_2` loaded from the folder)."""
    from transformers import CLIPTokenizer, T5TokenizerFast
    clip = CLIPTokenizer.from_pretrained(str(pipe_dir / "tokenizer"))
    t5 = T5TokenizerFast.from_pretrained(str(pipe_dir / "tokenizer_2"))
    assert clip.model_max_length == 77
    out = {"clip": {"max_length": clip.model_max_length, "pad_id": clip.pad_token_id, "cases": []}, "t5": {"cases": []}}
    for p in PROMPTS:
        out["clip"]["cases"].append(case(clip, p, clip.model_max_length))
        for max_len in (512, 77, 16):
            out["t5"]["cases"].append({"max_length": max_len, **case(t5, p, max_len)})
    assert sum(c["truncated"] for c in out["clip"]["cases"]) >= 3
    assert any(c["truncated"] for c in out["t5"]["cases"] if c["max_length"] == 512)
    assert not any("</w>" in c.get("removed", "") for c in out["clip"]["cases"])
    write_json(pipe_dir.parent / "tokenizers.json", out)
    legacy = make_t5_legacy(pipe_dir, pipe_dir.parent, out)
    return {"t5_legacy": legacy, "path": "tokenizers.json", "clip_cases": len(out["clip"]["cases"]), "t5_cases": len(out["t5"]["cases"]),
            "removed": "CLIP: batch_decode(untruncated[77-1:-1]) as diffusers; T5: batch_decode(untruncated[max_length-1:-1])"}


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    pipe_dir = Path(sys.argv[1])
    summary = tokenizer_goldens(pipe_dir)
    index_path = pipe_dir.parent / "pipeline.json"
    if index_path.is_file():
        import tokenizers
        import transformers
        index = json.loads(index_path.read_text(encoding="utf-8"))
        for name, mod in (("transformers", transformers), ("tokenizers", tokenizers)):
            assert index["versions"].get(name) == mod.__version__, f"{index_path}: made with {name} {index['versions'].get(name)}, this is {mod.__version__}"
        index["tokenizers"] = summary
        write_json(index_path, index)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

//! The two FLUX.1 prompt tokenizers, as diffusers 0.42.1 `FluxPipeline` (transformers 5) runs them:
//!
//! - **CLIP** (`tokenizer/`): byte-level BPE, `padding="max_length"`, `max_length =
//!   model_max_length` (77), truncation → `<|startoftext|> … <|endoftext|>` then pad. transformers 5's
//!   `CLIPTokenizer` builds its normalizer / pre-tokenizer / post-processor in code and only takes the
//!   vocabulary and merges from the folder; [`FixedTokenizer::clip`] builds the same pipeline (the tokenizer
//!   JSON below is what `CLIPTokenizer.backend_tokenizer.to_str()` prints) from `vocab.json` +
//!   `merges.txt` (FLUX.1's Hub layout) or, without those, from `tokenizer.json`'s model.
//! - **T5** (`tokenizer_2/tokenizer.json`): sentencepiece Unigram as converted by `T5TokenizerFast`,
//!   `padding="max_length"`, `max_length = max_sequence_length` (default 512, at most 512), `</s>` appended.
//!   transformers 5's `T5Tokenizer` also rebuilds its normalizer (the file's `Precompiled` charsmap
//!   only) and pre-tokenizer (`WhitespaceSplit` + `Metaspace(▁, always, split)`) in code, whatever the
//!   file says; [`FixedTokenizer::t5`] does the same, so older `tokenizer.json` serializations (e.g.
//!   `Sequence[Precompiled, Replace]` + `Metaspace(add_prefix_space)`) tokenize as in diffusers.
//!
//! Both are one [`FixedTokenizer`] (a [`TokenizerKind`] each). Over-long prompts are truncated with a
//! `tracing` warning naming the removed text exactly as diffusers names it:
//! `batch_decode(untruncated_ids[max_length - 1 : -1])` (CLIP: byte-level decode, then `</w>` → space,
//! stripped, as transformers' `CLIPTokenizer` decodes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use serde_json::{json, Value};
use tokenizers::{PaddingDirection, PostProcessor, Tokenizer, TruncationDirection};

use super::PipelineError;

/// diffusers' limit on `max_sequence_length`.
pub const T5_MAX_SEQUENCE_LENGTH: usize = 512;

/// Token ids of one prompt, padded/truncated to the tokenizer's fixed length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// The decoded text that truncation removed (None when nothing was cut).
    pub removed: Option<String>,
}

/// A special-token entry of `tokenizer_config.json`: a string or an AddedToken object.
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenEntry {
    Plain(String),
    Added { content: String },
}

impl TokenEntry {
    fn content(self) -> String {
        match self {
            TokenEntry::Plain(s) | TokenEntry::Added { content: s } => s,
        }
    }
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    model_max_length: Option<f64>,
    bos_token: Option<TokenEntry>,
    eos_token: Option<TokenEntry>,
    unk_token: Option<TokenEntry>,
    pad_token: Option<TokenEntry>,
}

fn err(path: &Path, message: impl Into<String>) -> PipelineError {
    PipelineError::Tokenizer { path: path.to_path_buf(), message: message.into() }
}

fn read_text(path: &Path) -> Result<String, PipelineError> {
    std::fs::read_to_string(path).map_err(|e| PipelineError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e)))
}

fn read_config(dir: &Path) -> Result<(PathBuf, TokenizerConfig), PipelineError> {
    let path = dir.join("tokenizer_config.json");
    let cfg = serde_json::from_str(&read_text(&path)?).map_err(|source| PipelineError::Json {
        path: path.clone(),
        what: "a transformers tokenizer config",
        source,
    })?;
    Ok((path, cfg))
}

fn token_id(tok: &Tokenizer, path: &Path, token: &str, role: &str) -> Result<u32, PipelineError> {
    tok.token_to_id(token).ok_or_else(|| err(path, format!("{role} token `{token}` is not in the vocabulary")))
}

/// CLIPTokenizer's split pattern (transformers 5 `tokenization_clip.py`).
const CLIP_SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Which of FLUX.1's two prompt tokenizers a [`FixedTokenizer`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// CLIP-L (`tokenizer/`): byte-level BPE with `</w>` word ends, `model_max_length` (77) tokens.
    Clip,
    /// T5 (`tokenizer_2/`): sentencepiece Unigram, `max_sequence_length` tokens.
    T5,
}

/// One of FLUX.1's prompt tokenizers at its fixed length: `tokenizer(prompt, padding="max_length",
/// max_length=N, truncation=True).input_ids` as transformers computes it.
pub struct FixedTokenizer {
    kind: TokenizerKind,
    /// Without truncation or padding: [`FixedTokenizer::encode`] cuts and pads, keeping the cut ids.
    tok: Tokenizer,
    /// The file or folder errors name.
    path: PathBuf,
    max_length: usize,
    /// Prompt tokens that fit: `max_length` less what the post-processor adds (CLIP: bos + eos; T5: `</s>`).
    content_max: usize,
    pad_id: u32,
    pad_token: String,
}

impl FixedTokenizer {
    /// FLUX.1's CLIP-L tokenizer from `dir` (a pipeline's `tokenizer/`): `tokenizer_config.json` (model_max_length, special
    /// tokens) and `vocab.json` + `merges.txt`, or `tokenizer.json` when those two are absent.
    pub fn clip(dir: &Path) -> Result<Self, PipelineError> {
        let (cfg_path, cfg) = read_config(dir)?;
        let max_length = match cfg.model_max_length {
            Some(m) if (2.0..=1e6).contains(&m) && m.fract() == 0.0 => m as usize,
            Some(m) => return Err(err(&cfg_path, format!("model_max_length {m} is not a usable sequence length"))),
            None => return Err(err(&cfg_path, "no model_max_length (FLUX.1's CLIP tokenizer says 77)")),
        };
        // transformers 5 CLIPTokenizer defaults.
        let bos = cfg.bos_token.map_or("<|startoftext|>".into(), TokenEntry::content);
        let eos = cfg.eos_token.map_or("<|endoftext|>".into(), TokenEntry::content);
        let unk = cfg.unk_token.map_or("<|endoftext|>".into(), TokenEntry::content);
        let pad = cfg.pad_token.map_or("<|endoftext|>".into(), TokenEntry::content);
        let (vocab, merges, source) = clip_vocab_merges(dir)?;
        let id_of = |t: &str, role: &str| vocab.get(t).copied().ok_or_else(|| err(&source, format!("{role} token `{t}` is not in the vocabulary")));
        let (bos_id, eos_id) = (id_of(&bos, "bos")?, id_of(&eos, "eos")?);
        let mut specials: BTreeMap<u32, &str> = BTreeMap::new();
        for (t, role) in [(&bos, "bos"), (&eos, "eos"), (&unk, "unk"), (&pad, "pad")] {
            specials.insert(id_of(t, role)?, t);
        }
        let added: Vec<Value> = specials
            .iter()
            .map(|(id, t)| json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
                {"type": "Lowercase"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
            "post_processor": {"type": "RobertaProcessing", "sep": [eos, eos_id], "cls": [bos, bos_id],
                               "trim_offsets": false, "add_prefix_space": false},
            // transformers' decoder too; its `CLIPTokenizer` then maps `</w>` to spaces (`decode_removed`).
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let tok = Tokenizer::from_str(&spec.to_string()).map_err(|e| err(&source, format!("cannot build the CLIP BPE: {e}")))?;
        Self::new(TokenizerKind::Clip, tok, dir.into(), &cfg_path, max_length, pad)
    }

    /// FLUX.1's T5 tokenizer from `dir/tokenizer.json` (a pipeline's `tokenizer_2/`) for prompts of
    /// `max_sequence_length` tokens (1..=512, FluxPipeline's default 512). The pad token comes from
    /// `tokenizer_config.json` (`<pad>` when it names none).
    pub fn t5(dir: &Path, max_sequence_length: usize) -> Result<Self, PipelineError> {
        let path = dir.join("tokenizer.json");
        if max_sequence_length == 0 || max_sequence_length > T5_MAX_SEQUENCE_LENGTH {
            return Err(err(&path, format!("max_sequence_length must be 1..={T5_MAX_SEQUENCE_LENGTH}, got {max_sequence_length}")));
        }
        let (cfg_path, cfg) = read_config(dir)?;
        if !path.is_file() {
            return Err(err(&path, "missing (a sentencepiece spiece.model alone is not read; convert it with transformers)"));
        }
        let mut tok = Tokenizer::from_file(&path).map_err(|e| err(&path, format!("cannot load: {e}")))?;
        t5_pipeline_as_transformers(&mut tok, &path)?;
        let pad = cfg.pad_token.map_or("<pad>".into(), TokenEntry::content);
        Self::new(TokenizerKind::T5, tok, path, &cfg_path, max_sequence_length, pad)
    }

    fn new(kind: TokenizerKind, mut tok: Tokenizer, path: PathBuf, cfg_path: &Path, max_length: usize, pad_token: String) -> Result<Self, PipelineError> {
        let pad_id = token_id(&tok, cfg_path, &pad_token, "pad")?;
        tok.with_truncation(None).map_err(|e| err(&path, format!("truncation: {e}")))?;
        tok.with_padding(None);
        let added = tok.get_post_processor().map_or(0, |p| p.added_tokens(false));
        let content_max = max_length
            .checked_sub(added)
            .ok_or_else(|| err(&path, format!("a length of {max_length} tokens leaves no room for the {added} special tokens the tokenizer adds")))?;
        Ok(FixedTokenizer { kind, tok, path, max_length, content_max, pad_id, pad_token })
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Token ids this tokenizer can produce (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }

    /// The fixed sequence length (CLIP: `model_max_length`, 77 for FLUX.1; T5: `max_sequence_length`).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// `tokenizer(prompt, padding="max_length", max_length=max_length, truncation=True).input_ids`
    /// (right truncation, special tokens kept), with the text truncation removed. An over-long
    /// prompt logs diffusers' warning naming that text.
    pub fn encode(&self, prompt: &str) -> Result<Encoded, PipelineError> {
        let mut enc = self.tok.encode(prompt, false).map_err(|e| err(&self.path, format!("cannot encode the prompt: {e}")))?;
        let removed = match enc.get_ids().get(self.content_max..) {
            Some(cut) if !cut.is_empty() => {
                let text = self.decode_removed(cut)?;
                enc.truncate(self.content_max, 0, TruncationDirection::Right);
                Some(text)
            }
            _ => None,
        };
        let mut enc = self.tok.post_process(enc, None, true).map_err(|e| err(&self.path, format!("cannot add the special tokens: {e}")))?;
        enc.pad(self.max_length, self.pad_id, 0, &self.pad_token, PaddingDirection::Right);
        let ids = enc.get_ids().to_vec();
        if ids.len() != self.max_length {
            return Err(err(&self.path, format!("encoded to {} tokens instead of {}", ids.len(), self.max_length)));
        }
        if let Some(removed) = &removed {
            match self.kind {
                TokenizerKind::Clip => tracing::warn!(
                    "The following part of your input was truncated because CLIP can only handle sequences up to {} tokens: {removed:?}",
                    self.max_length
                ),
                TokenizerKind::T5 => tracing::warn!(
                    "The following part of your input was truncated because `max_sequence_length` is set to {} tokens: {removed:?}",
                    self.max_length
                ),
            }
        }
        Ok(Encoded { ids, removed })
    }

    /// The text of the ids truncation cut, as transformers' `batch_decode` gives it (special tokens
    /// kept). CLIP's decode is byte-level, then every `</w>` word end becomes a space and the text is
    /// stripped (`CLIPTokenizer`'s wrapped decode, Python's `str.strip`).
    fn decode_removed(&self, ids: &[u32]) -> Result<String, PipelineError> {
        let text = self.tok.decode(ids, false).map_err(|e| err(&self.path, format!("cannot decode the truncated tokens: {e}")))?;
        Ok(match self.kind {
            TokenizerKind::Clip => text.replace("</w>", " ").trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)).to_string(),
            TokenizerKind::T5 => text,
        })
    }
}

/// A BPE vocabulary, its merges, and the file they came from.
type VocabMerges = (BTreeMap<String, u32>, Vec<(String, String)>, PathBuf);

/// `(vocab, merges, file they came from)` from `vocab.json` + `merges.txt`, else `tokenizer.json`.
fn clip_vocab_merges(dir: &Path) -> Result<VocabMerges, PipelineError> {
    let (vocab_path, merges_path) = (dir.join("vocab.json"), dir.join("merges.txt"));
    if vocab_path.is_file() && merges_path.is_file() {
        let vocab: BTreeMap<String, u32> = serde_json::from_str(&read_text(&vocab_path)?).map_err(|source| PipelineError::Json {
            path: vocab_path.clone(),
            what: "a BPE vocabulary (token → id)",
            source,
        })?;
        let text = read_text(&merges_path)?;
        let mut merges = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if (n == 0 && line.starts_with("#version")) || line.is_empty() {
                continue;
            }
            match line.split(' ').collect::<Vec<_>>()[..] {
                [a, b] => merges.push((a.to_string(), b.to_string())),
                _ => return Err(err(&merges_path, format!("line {}: `{line}` is not one merge `a b`", n + 1))),
            }
        }
        return Ok((vocab, merges, vocab_path));
    }
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(err(dir, "neither vocab.json + merges.txt nor tokenizer.json found"));
    }
    #[derive(Deserialize)]
    struct Model {
        #[serde(rename = "type")]
        kind: String,
        vocab: BTreeMap<String, u32>,
        merges: Vec<Value>,
    }
    #[derive(Deserialize)]
    struct File {
        model: Model,
    }
    let f: File =
        serde_json::from_str(&read_text(&path)?).map_err(|source| PipelineError::Json { path: path.clone(), what: "a BPE tokenizer.json", source })?;
    if f.model.kind != "BPE" {
        return Err(err(&path, format!("model type is {}, CLIP needs BPE", f.model.kind)));
    }
    let mut merges = Vec::with_capacity(f.model.merges.len());
    for (i, m) in f.model.merges.iter().enumerate() {
        let pair = match m {
            Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
            Value::Array(v) => match &v[..] {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        };
        merges.push(pair.ok_or_else(|| err(&path, format!("model.merges[{i}] is not a merge pair")))?);
    }
    Ok((f.model.vocab, merges, path))
}

/// Replaces the file's normalizer and pre-tokenizer with what transformers 5 `T5Tokenizer.__init__`
/// builds: `Precompiled(charsmap from the file)` (none if the file has no charsmap), then
/// `Sequence[WhitespaceSplit, Metaspace("▁", prepend_scheme="always", split=true)]`.
fn t5_pipeline_as_transformers(tok: &mut Tokenizer, path: &Path) -> Result<(), PipelineError> {
    #[derive(Deserialize)]
    struct File {
        normalizer: Option<Value>,
    }
    let f: File = serde_json::from_str(&read_text(path)?).map_err(|source| PipelineError::Json { path: path.into(), what: "a tokenizer.json", source })?;
    let is_precompiled = |v: &&Value| v.get("type").and_then(Value::as_str) == Some("Precompiled");
    let precompiled = match &f.normalizer {
        Some(v) if is_precompiled(&v) => Some(v.clone()),
        Some(v) => v.get("normalizers").and_then(Value::as_array).and_then(|a| a.iter().find(is_precompiled)).cloned(),
        None => None,
    };
    let normalizer = precompiled
        .map(|v| serde_json::from_value::<tokenizers::NormalizerWrapper>(v).map_err(|e| err(path, format!("Precompiled normalizer: {e}"))))
        .transpose()?;
    tok.with_normalizer(normalizer).map_err(|e| err(path, format!("normalizer: {e}")))?;
    let pre = json!({"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"},
        {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true}]});
    let pre: tokenizers::PreTokenizerWrapper = serde_json::from_value(pre).map_err(|e| err(path, format!("pre-tokenizer: {e}")))?;
    tok.with_pre_tokenizer(Some(pre));
    Ok(())
}

/// Both tokenizers of a diffusers FLUX.1 pipeline folder (`tokenizer/`, `tokenizer_2/`).
pub struct PromptTokenizers {
    pub clip: FixedTokenizer,
    pub t5: FixedTokenizer,
}

/// Token ids of one prompt for both text encoders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptIds {
    /// CLIP ids `[model_max_length]` (pooled embedding).
    pub clip: Encoded,
    /// T5 ids `[max_sequence_length]` (prompt embeddings).
    pub t5: Encoded,
}

impl PromptTokenizers {
    pub fn from_pipeline_dir(dir: &Path, max_sequence_length: usize) -> Result<Self, PipelineError> {
        Ok(PromptTokenizers { clip: FixedTokenizer::clip(&dir.join("tokenizer"))?, t5: FixedTokenizer::t5(&dir.join("tokenizer_2"), max_sequence_length)? })
    }

    /// FluxPipeline `encode_prompt`'s tokenization: `prompt` → CLIP, `prompt_2` (default `prompt`) → T5.
    pub fn encode(&self, prompt: &str, prompt_2: Option<&str>) -> Result<PromptIds, PipelineError> {
        Ok(PromptIds { clip: self.clip.encode(prompt)?, t5: self.t5.encode(prompt_2.unwrap_or(prompt))? })
    }
}

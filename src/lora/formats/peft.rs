//! diffusers / PEFT files (also ai-toolkit): `transformer.<module>.lora_A.weight` /
//! `.lora_B.weight`, CLIP-L under `text_encoder.`, or bare diffusers module names (a model's
//! own `save_lora_adapter`).
//!
//! Scaling follows PEFT exactly (`LoraLayer.update_layer`): per module
//! `r = rank_pattern[match] or r`, `alpha = alpha_pattern[match] or lora_alpha`,
//! `scale = alpha/r` (`alpha/√r` with `use_rslora`), the config coming from the safetensors
//! metadata `lora_adapter_metadata` (LoraConfig fields, prefixed `transformer.` /
//! `text_encoder.` in pipeline-level files). Without metadata, `<module>.alpha` keys give each
//! module's alpha (diffusers' `network_alphas`); without either, alpha = r (scale 1).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::build::{factors, group, Collector, Layer, Target, LORA_AB_SUFFIXES};
use super::names::{dotted_clip, is_diffusers_module};
use super::source::Source;
use super::Loaded;
use crate::lora::{LoraError, LoraFormat};

/// The metadata key diffusers and PEFT write the LoraConfig under.
pub(crate) const METADATA_KEY: &str = "lora_adapter_metadata";

/// The LoraConfig fields that decide scaling (PEFT defaults: r 8, lora_alpha 8).
#[derive(Debug, Deserialize)]
struct PeftConfig {
    #[serde(default = "eight")]
    r: usize,
    #[serde(default = "eight_f")]
    lora_alpha: f64,
    #[serde(default)]
    rank_pattern: Option<Map<String, Value>>,
    #[serde(default)]
    alpha_pattern: Option<Map<String, Value>>,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    lora_bias: bool,
}

fn eight() -> usize {
    8
}
fn eight_f() -> f64 {
    8.0
}

/// Resolved scaling rules of one adapter group (transformer or text encoder).
struct Scaling {
    r: usize,
    lora_alpha: f64,
    rank_pattern: Vec<(String, usize)>,
    alpha_pattern: Vec<(String, f64)>,
    use_rslora: bool,
}

pub(crate) fn read(src: &Source) -> Result<Loaded, LoraError> {
    let prefixed = src.keys().iter().any(|k| k.starts_with("transformer.") || k.starts_with("text_encoder."));
    let mut transformer = Vec::new();
    let mut text = Vec::new();
    for key in src.keys() {
        if prefixed {
            if let Some(rest) = key.strip_prefix("transformer.") {
                transformer.push((key, rest.to_string()));
                continue;
            }
            if let Some(rest) = key.strip_prefix("text_encoder.") {
                text.push((key, rest.to_string()));
                continue;
            }
        } else if is_diffusers_module(key) {
            transformer.push((key, key.clone()));
            continue;
        }
        return Err(unknown(src, key));
    }
    let meta = metadata(src)?;
    let tmeta = group_config(src, meta.as_ref(), prefixed.then_some("transformer"))?;
    let emeta = group_config(src, meta.as_ref(), Some("text_encoder"))?;
    let modules = read_group(src, &transformer, tmeta, &|stem| is_diffusers_module(stem).then(|| stem.to_string()))?;
    let text_encoder = read_group(src, &text, emeta, &dotted_clip)?;
    Ok(Loaded { modules, text_encoder })
}

fn unknown(src: &Source, key: &str) -> LoraError {
    LoraError::UnknownKey { path: src.path_buf(), key: key.to_string(), format: LoraFormat::Peft.name() }
}

fn invalid_meta(src: &Source, message: String) -> LoraError {
    LoraError::Invalid { path: src.path_buf(), key: METADATA_KEY.into(), message }
}

fn metadata(src: &Source) -> Result<Option<Map<String, Value>>, LoraError> {
    let Some(raw) = src.metadata(METADATA_KEY) else { return Ok(None) };
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(other) => Err(invalid_meta(src, format!("expected a JSON object, found {other}"))),
        Err(e) => Err(invalid_meta(src, format!("not valid JSON: {e}"))),
    }
}

/// The LoraConfig of one group: the `prefix.`-keyed entries (diffusers pipeline files) or,
/// for a bare-named file, the unprefixed entries. `None` when the file has none for it.
fn group_config(src: &Source, meta: Option<&Map<String, Value>>, prefix: Option<&str>) -> Result<Option<Scaling>, LoraError> {
    let Some(meta) = meta else { return Ok(None) };
    let sub: Map<String, Value> = match prefix {
        Some(p) => meta.iter().filter_map(|(k, v)| k.strip_prefix(p).and_then(|k| k.strip_prefix('.')).map(|k| (k.to_string(), v.clone()))).collect(),
        None => {
            let scoped = meta.keys().any(|k| k.starts_with("transformer.") || k.starts_with("text_encoder."));
            if scoped {
                meta.iter().filter_map(|(k, v)| k.strip_prefix("transformer.").map(|k| (k.to_string(), v.clone()))).collect()
            } else {
                meta.clone()
            }
        }
    };
    if sub.is_empty() {
        return Ok(None);
    }
    let cfg: PeftConfig = serde_json::from_value(Value::Object(sub)).map_err(|e| invalid_meta(src, format!("bad LoraConfig: {e}")))?;
    if cfg.use_dora {
        return Err(LoraError::Unsupported { path: src.path_buf(), key: METADATA_KEY.into(), what: "a DoRA adapter (use_dora)" });
    }
    if cfg.lora_bias {
        return Err(LoraError::Unsupported { path: src.path_buf(), key: METADATA_KEY.into(), what: "a LoRA bias (lora_bias)" });
    }
    let num = |name: &str, m: Option<Map<String, Value>>| -> Result<Vec<(String, f64)>, LoraError> {
        m.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                check_pattern(src, &k)?;
                let x = v.as_f64().ok_or_else(|| invalid_meta(src, format!("{name} value for `{k}` is not a number: {v}")))?;
                Ok((k, x))
            })
            .collect()
    };
    let rank_pattern = num("rank_pattern", cfg.rank_pattern)?
        .into_iter()
        .map(|(k, v)| {
            if v >= 1.0 && v.fract() == 0.0 {
                Ok((k, v as usize))
            } else {
                Err(invalid_meta(src, format!("rank_pattern value for `{k}` is not a positive integer: {v}")))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Scaling {
        r: cfg.r,
        lora_alpha: cfg.lora_alpha,
        rank_pattern,
        alpha_pattern: num("alpha_pattern", cfg.alpha_pattern)?,
        use_rslora: cfg.use_rslora,
    }))
}

/// Pattern keys are regular expressions in PEFT; flux-trt matches them literally (PEFT's
/// `(.*\.)?(key)$`, with `.` read as a dot and a leading `^` as "whole name"), so any other
/// regex syntax is refused rather than guessed.
fn check_pattern(src: &Source, key: &str) -> Result<(), LoraError> {
    let body = key.strip_prefix('^').unwrap_or(key);
    if body.is_empty() || body.contains(|c: char| "*+?[](){}|\\$^".contains(c)) {
        return Err(invalid_meta(src, format!("pattern `{key}` uses regex syntax flux-trt does not interpret")));
    }
    Ok(())
}

/// PEFT's `get_pattern_key`: the first pattern (in order) that matches `module`.
fn pattern<T: Copy>(patterns: &[(String, T)], module: &str) -> Option<T> {
    patterns.iter().find_map(|(p, v)| {
        let hit = match p.strip_prefix('^') {
            Some(exact) => module == exact,
            None => module == p || module.strip_suffix(p.as_str()).is_some_and(|head| head.ends_with('.')),
        };
        hit.then_some(*v)
    })
}

fn read_group(
    src: &Source,
    keys: &[(&String, String)],
    config: Option<Scaling>,
    name_of: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, crate::lora::LoraModule>, LoraError> {
    // group by the unprefixed name; errors name the file's own (prefixed) key
    let keys: HashMap<&str, &String> = keys.iter().map(|(k, s)| (s.as_str(), *k)).collect();
    let original = |stripped: &str| keys.get(stripped).map(|k| (*k).clone()).unwrap_or_else(|| stripped.to_string());
    let mut stripped: Vec<&str> = keys.keys().copied().collect();
    stripped.sort_unstable();
    let layers = group(src, stripped, LORA_AB_SUFFIXES, LoraFormat::Peft).map_err(|e| match e {
        LoraError::UnknownKey { path, key, format } => LoraError::UnknownKey { path, key: original(&key), format },
        LoraError::Invalid { path, key, message } => LoraError::Invalid { path, key: original(&key), message },
        other => other,
    })?;
    let any_alpha = layers.values().any(|l| l.alpha.is_some());
    if any_alpha && config.is_some() {
        let key = original(layers.values().find_map(|l| l.alpha.as_deref()).unwrap_or_default());
        return Err(LoraError::Invalid {
            path: src.path_buf(),
            key,
            message: format!("the file has both `.alpha` keys and `{METADATA_KEY}`; diffusers refuses such files"),
        });
    }
    let mut out = Collector::new(src);
    for (stem, layer) in &layers {
        let orig = |k: &Option<String>| k.as_deref().map(original);
        let layer = Layer { down: orig(&layer.down), up: orig(&layer.up), alpha: orig(&layer.alpha) };
        let first = layer.down.clone().or_else(|| layer.up.clone()).or_else(|| layer.alpha.clone()).unwrap_or_default();
        let name = name_of(stem).ok_or_else(|| unknown(src, &first))?;
        let (a, b) = factors(src, &name, &layer, "lora_A", "lora_B")?;
        let rank = a.rows;
        let scale = match (&config, &layer.alpha) {
            (Some(cfg), _) => {
                let r = pattern(&cfg.rank_pattern, &name).unwrap_or(cfg.r);
                let alpha = pattern(&cfg.alpha_pattern, &name).unwrap_or(cfg.lora_alpha);
                if r != rank {
                    return Err(LoraError::Shape {
                        path: src.path_buf(),
                        tensor: layer.down.clone().unwrap_or_default(),
                        expected: format!("rank {r} (from {METADATA_KEY})"),
                        found: vec![a.rows, a.cols],
                    });
                }
                let denom = if cfg.use_rslora { (r as f64).sqrt() } else { r as f64 };
                (alpha / denom) as f32
            }
            (None, Some(alpha_key)) => super::build::alpha_scale(src.scalar(alpha_key)?, rank),
            (None, None) if any_alpha => {
                return Err(LoraError::Incomplete {
                    path: src.path_buf(),
                    module: name,
                    present: "lora_A and lora_B".into(),
                    missing: "alpha (other modules of this file have one)".into(),
                })
            }
            (None, None) => 1.0,
        };
        out.add(&first, Target::One(name), a, b, scale)?;
    }
    Ok(out.modules)
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn peft_pattern_matching() {
        let p = vec![("^transformer_blocks.0.attn.to_q".to_string(), 1), ("proj_out".to_string(), 2)];
        assert_eq!(pattern(&p, "transformer_blocks.0.attn.to_q"), Some(1));
        assert_eq!(pattern(&p, "single_transformer_blocks.0.attn.to_q"), None);
        assert_eq!(pattern(&p, "proj_out"), Some(2));
        // PEFT's `(.*\.)?(key)$` also matches a nested module of the same leaf name.
        assert_eq!(pattern(&p, "single_transformer_blocks.3.proj_out"), Some(2));
        assert_eq!(pattern(&p, "xproj_out"), None);
    }
}

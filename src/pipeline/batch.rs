//! The JSONL batch file of `flux-trt generate --prompts`: one JSON object per line,
//! `{"prompt": ..., "prompt_2"?, "lora"?: "FILE[:S]" | [..], "seed"?, "steps"?, "guidance"?,
//! "width"?, "height"?, "out"?}`; blank lines are skipped, unknown keys are errors, and keys a line
//! leaves out take the command's flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::PipelineError;

/// One line of a batch file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLine {
    pub prompt: String,
    #[serde(default)]
    pub prompt_2: Option<String>,
    #[serde(default)]
    pub lora: Option<LoraField>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub steps: Option<usize>,
    #[serde(default)]
    pub guidance: Option<f32>,
    #[serde(default)]
    pub width: Option<usize>,
    #[serde(default)]
    pub height: Option<usize>,
    /// Output file, relative to the batch's output folder.
    #[serde(default)]
    pub out: Option<PathBuf>,
}

/// A line's `lora`: one `FILE[:STRENGTH]` spec (`""` for none) or a list of them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LoraField {
    One(String),
    Many(Vec<String>),
}

impl LoraField {
    /// The adapter specs, each for [`crate::lora::parse_spec`].
    pub fn specs(&self) -> Vec<String> {
        match self {
            LoraField::One(s) if s.is_empty() => Vec::new(),
            LoraField::One(s) => vec![s.clone()],
            LoraField::Many(v) => v.clone(),
        }
    }
}

/// Whether `p` names a file inside the folder it is joined to: relative, without `..`, not empty.
fn stays_inside(p: &Path) -> bool {
    use std::path::Component;
    p.components().next().is_some() && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Parses the text of a batch file (`path` names it in errors, with the 1-based line number).
/// A file without any prompt is an error.
pub fn parse_batch(path: &Path, text: &str) -> Result<Vec<BatchLine>, PipelineError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let line: BatchLine = serde_json::from_str(l).map_err(|source| PipelineError::BatchLine { path: path.to_path_buf(), line: i + 1, source })?;
        if let Some(o) = &line.out {
            if !stays_inside(o) {
                return Err(PipelineError::BatchOut { path: path.to_path_buf(), line: i + 1, out: o.clone() });
            }
        }
        out.push(line);
    }
    if out.is_empty() {
        return Err(PipelineError::EmptyBatch { path: path.to_path_buf() });
    }
    Ok(out)
}

/// Reads and parses a batch file.
pub fn read_batch(path: &Path) -> Result<Vec<BatchLine>, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::util::FileError::new(crate::util::FileOp::Read, path, e))?;
    parse_batch(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_errors_name_the_line() {
        let p = Path::new("b.jsonl");
        let text = "{\"prompt\":\"a\",\"lora\":\"x.safetensors:0.5\",\"seed\":3}\n\n  \n{\"prompt\":\"b\",\"lora\":[\"y\",\"z:2\"],\"width\":64}\n";
        let lines = parse_batch(p, text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].seed, lines[0].lora.as_ref().unwrap().specs()), (Some(3), vec!["x.safetensors:0.5".to_string()]));
        assert_eq!((lines[1].width, lines[1].lora.as_ref().unwrap().specs().len()), (Some(64), 2));
        let e = parse_batch(p, "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"colour\":1}\n").unwrap_err();
        assert!(matches!(e, PipelineError::BatchLine { line: 2, .. }), "{e}");
        assert!(e.to_string().starts_with("b.jsonl:2: not a prompt object"), "{e}");
        assert!(matches!(parse_batch(p, "\n \n"), Err(PipelineError::EmptyBatch { .. })));
    }

    #[test]
    fn out_paths_stay_inside_the_output_folder() {
        let p = Path::new("b.jsonl");
        for ok in ["cat.png", "sub/cat.png", "./a/b.png"] {
            let text = format!("{{\"prompt\":\"a\",\"out\":\"{ok}\"}}");
            assert!(parse_batch(p, &text).is_ok(), "{ok}");
        }
        for bad in ["../cat.png", "/etc/cat.png", "a/../../cat.png", ""] {
            let text = format!("{{\"prompt\":\"a\"}}\n{{\"prompt\":\"b\",\"out\":\"{bad}\"}}");
            let e = parse_batch(p, &text).unwrap_err();
            assert!(matches!(e, PipelineError::BatchOut { line: 2, .. }), "{bad}: {e}");
            assert!(e.to_string().starts_with("b.jsonl:2: `out`"), "{e}");
        }
    }
}

//! What opening an engine pays for integrity checks, per [`VerifyPolicy`], on one large file:
//! `cargo run --example verify_cost -- FILE [OUT.json]` (FILE is hard-linked into a temporary
//! engine folder as `model.onnx.data`; e.g. a full-size FLUX.1 checkpoint from
//! `make-random-flux --layout bfl --dtype bf16`, 23.8 GB). Writes the timings as JSON.

use std::path::PathBuf;
use std::time::Instant;

use flux_trt::manifest::integrity::{check_files, FileRecord, FileRole, VerifyPolicy};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let file = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: verify_cost FILE [OUT.json]"))?);
    let out = args.next().map(PathBuf::from);
    let parent = file.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::tempdir_in(&parent)?;
    std::fs::hard_link(&file, dir.path().join("model.onnx.data"))?;
    let bytes = std::fs::metadata(&file)?.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let t = Instant::now();
    let record = FileRecord::hash(dir.path(), "model.onnx.data", FileRole::OnnxData)?;
    let first_hash = t.elapsed().as_secs_f64();
    std::fs::write(dir.path().join("manifest.json"), serde_json::to_vec(&serde_json::json!({"format_version": 2, "files": [&record]}))?)?;
    let records = [&record];
    let time = |policy| -> anyhow::Result<(f64, usize)> {
        let t = Instant::now();
        let r = check_files(dir.path(), &records, policy)?;
        Ok((t.elapsed().as_secs_f64(), r.hashed))
    };
    let (always, _) = time(VerifyPolicy::Always)?;
    let (first_cold, hashed_cold) = time(VerifyPolicy::First)?;
    let (first_stamped, hashed_stamped) = time(VerifyPolicy::First)?;
    let (never, _) = time(VerifyPolicy::Never)?;
    assert_eq!((hashed_cold, hashed_stamped), (1, 0));
    let gbps = |s: f64| bytes as f64 / 1e9 / s;
    let json = serde_json::json!({
        "file": file.display().to_string(),
        "bytes": bytes,
        "threads": threads,
        "seconds": {
            "record_hash": first_hash,
            "always": always,
            "first_first_open": first_cold,
            "first_later_opens": first_stamped,
            "never": never,
        },
        "gb_per_s": { "record_hash": gbps(first_hash), "always": gbps(always), "first_first_open": gbps(first_cold) },
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    if let Some(p) = out {
        flux_trt::util::write_atomic(&p, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

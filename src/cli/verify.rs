//! `flux-trt verify ENGINE_DIR`: checks every file recorded by every manifest of an engine folder
//! (size, then BLAKE3, each file hashed on all cores) and names each file that does not match.
//! Exit status 0 when everything matches, 1 otherwise.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct VerifyArgs {
    /// Engine folder (manifest.json, and the pipeline's component folders if present).
    #[arg(value_name = "ENGINE_DIR")]
    pub engine: PathBuf,
    /// Print the report as JSON on stdout (every file, its state, expected and found size/hash).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    use flux_trt::manifest::integrity::{verify_dir, FileState};
    use indicatif::{ProgressBar, ProgressStyle};

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("verify [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = verify_dir(&args.engine, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for m in report.manifests.iter().filter(|m| !m.verifiable) {
            println!("UNVERIFIABLE {} (format {}: no file records; rebuild the engine to record them)", m.path.display(), m.format_version);
        }
        for f in &report.files {
            let what = match f.state {
                FileState::Ok => continue,
                FileState::Missing => format!("missing ({} bytes recorded)", f.expected_bytes),
                FileState::Size => format!("{} bytes, {} recorded", f.found_bytes.unwrap_or(0), f.expected_bytes),
                FileState::Hash => format!("BLAKE3 {} differs from the recorded {}", f.found_blake3.as_deref().unwrap_or("?"), f.expected_blake3),
                FileState::Unreadable => format!("unreadable: {}", f.error.as_deref().unwrap_or("?")),
            };
            println!("MISMATCH {}: {what}", f.path.display());
        }
        let gb = report.bytes_hashed as f64 / 1e9;
        println!(
            "{}: {} of {} files match ({gb:.2} GB hashed in {:.2} s, {:.2} GB/s)",
            report.engine.display(),
            report.files.iter().filter(|f| f.state == FileState::Ok).count(),
            report.files.len(),
            report.seconds,
            gb / report.seconds.max(1e-9)
        );
    }
    if !report.ok {
        let bad: Vec<String> = report.mismatches().map(|f| f.path.display().to_string()).collect();
        let unverifiable = report.manifests.iter().filter(|m| !m.verifiable).count();
        if bad.is_empty() {
            bail!("{}: {unverifiable} manifest(s) record no files and cannot be verified", report.engine.display());
        }
        bail!("{}: {} file(s) do not match their manifest: {}", report.engine.display(), bad.len(), bad.join(", "));
    }
    Ok(())
}

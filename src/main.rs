//! `flux-trt`: run exported engines and hot-swap LoRA adapters. One file per command in `src/cli/`.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "flux-trt", version, about = "FLUX.1 + LoRA slots: ONNX / TensorRT engines with hot-swappable adapters")]
struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a checkpoint, a LoRA file or an engine folder (format, modules, ranks, variant).
    Inspect(cli::inspect::InspectArgs),
    /// Run an engine on inputs from a safetensors file, optionally with LoRA adapters.
    Run(cli::run::RunArgs),
    /// Text to PNG on a whole engine folder (text encoders, transformer, VAE), one prompt or a JSONL batch.
    Generate(cli::generate::GenerateArgs),
    /// Build a tiny engine from the bundled fixtures and hot-swap two adapters on it.
    Demo(cli::demo::DemoArgs),
    /// Check every engine file against the sizes and BLAKE3 hashes its manifests record.
    Verify(cli::verify::VerifyArgs),
    /// FP8 engines: measure the activation scales on the GPU (native CUDA backend) over real prompts and write them into the engine.
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Self-test a backend on this GPU (TensorRT or the native CUDA backend: run, swap A→B→A, compare with ONNX Runtime).
    Selftest(cli::selftest::SelftestArgs),
    /// Serve text-to-image with per-request LoRA adapters over HTTP (OpenAI-style API, Prometheus metrics).
    #[cfg(feature = "serve")]
    Serve(cli::serve::ServeArgs),
    /// Load-test a `flux-trt serve` binary on loopback: adapter mix, scheduling policies side by side (JSON results).
    #[cfg(feature = "serve")]
    ServeLoad(cli::serve_load::ServeLoadArgs),
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    cli::init_logging(args.verbose);
    let result = match args.command {
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Verify(a) => cli::verify::run(a),
        Command::Calibrate(a) => cli::calibrate::run(a),
        #[cfg(feature = "serve")]
        Command::Serve(a) => cli::serve::run(a),
        #[cfg(feature = "serve")]
        Command::ServeLoad(a) => cli::serve_load::run(a),
        Command::Selftest(a) => {
            cli::selftest::run(&a).and_then(|ok| if ok { Ok(()) } else { Err(anyhow::anyhow!("selftest did not pass (verdict above; JSON report written)")) })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

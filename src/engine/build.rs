//! `engine::build` / `engine::inspect_network` with TensorRT (feature `tensorrt`).

use std::path::Path;
use std::time::Instant;

use trtx::builder::BuilderConfig;
use trtx::{BuilderFlag, MemoryPoolType, OptProfileSelector};

use super::network::{parse_and_mark, parse_file, NetSpec};
use super::report::{EngineReport, NetworkReport};
use super::trt::{self, LogScope};
use super::{BuildOptions, EngineError, ProfileRecipe, Target, TrtLibrary};
use crate::manifest::integrity::upsert;
use crate::manifest::{ComponentManifest, EngineArtifact, FileRecord, FileRole, Manifest};

pub fn inspect_network_with(dir: &Path, manifest: &Manifest, lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    parse_and_mark(dir, &NetSpec::from_manifest(manifest), lib, true, |_, _, report| Ok(report))
}

pub fn inspect_component_network_with(dir: &Path, manifest: &ComponentManifest, lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    parse_and_mark(dir, &NetSpec::from_component(manifest), lib, true, |_, _, report| Ok(report))
}

pub fn inspect_onnx(model: &Path, lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    parse_file(model, lib)
}

pub fn build(dir: &Path, opts: &BuildOptions) -> Result<EngineReport, EngineError> {
    let mut manifest = Manifest::load(dir)?;
    super::options::check_fp8_targets(manifest.precision, &opts.targets)?;
    let dynamic: Vec<DynInput> = manifest.inputs.iter().map(|s| (s.name.clone(), s.shape.clone(), s.dim_names.clone())).collect();
    let report = build_net(dir, &NetSpec::from_manifest(&manifest), &manifest.onnx.file, &dynamic, opts)?;
    manifest.engine = Some(report.engine.clone());
    upsert(&mut manifest.files, plan_record(&report));
    manifest.save(dir)?;
    Ok(report)
}

/// [`build`] for a pipeline component folder (`text_encoder/`, `text_encoder_2/`,
/// `vae_decoder/`): the same builder (only CLIP's LoRA slots refittable), the plan recorded in
/// the component's manifest. The VAE's `latent_height`/`latent_width` come from
/// [`ProfileRecipe::latent_side`](super::ProfileRecipe).
pub fn build_component(dir: &Path, opts: &BuildOptions) -> Result<EngineReport, EngineError> {
    let mut manifest = ComponentManifest::load(dir)?;
    let dynamic: Vec<DynInput> = manifest.inputs.iter().map(|s| (s.name.clone(), s.shape.clone(), s.dim_names.clone())).collect();
    let report = build_net(dir, &NetSpec::from_component(&manifest), &manifest.onnx.file, &dynamic, opts)?;
    manifest.engine = Some(report.engine.clone());
    upsert(&mut manifest.files, plan_record(&report));
    manifest.save(dir)?;
    Ok(report)
}

/// The plan's size and BLAKE3 (hashed from the bytes written) for the manifest's `files`.
fn plan_record(report: &EngineReport) -> FileRecord {
    FileRecord { path: report.engine.file.clone(), role: FileRole::Plan, bytes: report.plan_bytes, blake3: report.engine.blake3.clone() }
}

/// An input's name, dims (`None` = dynamic) and dim names.
type DynInput = (String, Vec<Option<usize>>, Vec<Option<String>>);

/// Parses, marks the slots refittable and builds `dir`'s model into `opts.plan_file` (written
/// atomically); the caller records the returned engine in its manifest.
fn build_net(dir: &Path, spec: &NetSpec, model_file: &str, inputs: &[DynInput], opts: &BuildOptions) -> Result<EngineReport, EngineError> {
    opts.profile.validate()?;
    check_targets(&opts.targets)?;
    let loaded = trt::load(&opts.library)?;
    let plan_path = dir.join(&opts.plan_file);
    let t0 = Instant::now();
    let (network, blake3, plan_bytes, parse_seconds, build_seconds) = parse_and_mark(
        dir,
        spec,
        &opts.library,
        opts.decomposable_attention,
        |builder, net, report| {
            let parse_seconds = t0.elapsed().as_secs_f64();
            let scope = LogScope::begin();
            let mut config = builder.create_config().map_err(|e| scope.error("builder config creation", e))?;
            config.set_flag(BuilderFlag::kREFIT_INDIVIDUAL);
            if opts.strip_weights {
                config.set_flag(BuilderFlag::kSTRIP_PLAN);
            }
            if let Some(bytes) = opts.workspace_bytes {
                config.set_memory_pool_limit(MemoryPoolType::kWORKSPACE, bytes);
            }
            set_targets(&mut config, &opts.targets)?;
            let mut profile = builder.creata_optimization_profile().map_err(|e| scope.error("optimization profile creation", e))?;
            for (name, shape, dim_names) in inputs.iter().filter(|(_, shape, _)| shape.iter().any(Option::is_none)) {
                let [min, opt, max] = profile_dims(name, shape, dim_names, &opts.profile)?;
                for (sel, dims) in [(OptProfileSelector::kMIN, &min), (OptProfileSelector::kOPT, &opt), (OptProfileSelector::kMAX, &max)] {
                    let scope = LogScope::begin();
                    profile
                        .set_dimensions(name, sel, &trtx::trtx_sys::Dims64::from_slice(dims))
                        .map_err(|e| scope.error(format!("profile dimensions {sel:?} {dims:?} of `{name}`"), e))?;
                }
            }
            let scope = LogScope::begin();
            config.add_optimization_profile(&mut profile).map_err(|e| scope.error("addOptimizationProfile", e))?;
            tracing::info!(targets = ?opts.targets, strip = opts.strip_weights, slots = report.refittable.len(), model = %dir.join(model_file).display(), "building TensorRT engine");
            let t1 = Instant::now();
            let scope = LogScope::begin();
            let plan = builder.build_serialized_network(net, &mut config).map_err(|_| EngineError::Build { path: dir.join(model_file), log: scope.text() })?;
            let build_seconds = t1.elapsed().as_secs_f64();
            crate::util::write_atomic(&plan_path, &plan)?;
            Ok((report, crate::util::hash_bytes(&plan), plan.len() as u64, parse_seconds, build_seconds))
        },
    )?;
    let engine = EngineArtifact {
        file: opts.plan_file.clone(),
        tensorrt_variant: trt::VARIANT.into(),
        tensorrt_version: loaded.version.clone(),
        targets: opts.targets.iter().map(|t| t.name().to_string()).collect(),
        stripped_weights: opts.strip_weights,
        blake3,
    };
    tracing::info!(plan = %plan_path.display(), bytes = plan_bytes, seconds = build_seconds, "TensorRT engine written");
    Ok(EngineReport { plan_path, plan_bytes, engine, network, parse_seconds, build_seconds })
}

/// TensorRT-RTX builds ahead of time for named targets (at least one); TensorRT Enterprise
/// builds for the GPU it runs on and takes none.
fn check_targets(targets: &[Target]) -> Result<(), EngineError> {
    if cfg!(feature = "tensorrt-enterprise") && !targets.is_empty() {
        return Err(EngineError::Target {
            message: "TensorRT Enterprise builds for the GPU it runs on; compute-capability targets are TensorRT-RTX only".into(),
        });
    }
    if !cfg!(feature = "tensorrt-enterprise") && targets.is_empty() {
        return Err(EngineError::Target {
            message: format!("TensorRT-RTX needs at least one compute-capability target ({})", Target::ALL.map(Target::name).join(", ")),
        });
    }
    Ok(())
}

#[cfg(not(feature = "tensorrt-enterprise"))]
fn set_targets(config: &mut BuilderConfig<'_>, targets: &[Target]) -> Result<(), EngineError> {
    use trtx::ComputeCapability as CC;
    let scope = LogScope::begin();
    // The count first: setting index 0 before it is an API usage error.
    config.set_nb_compute_capabilities(targets.len() as i32).map_err(|e| scope.error(format!("setNbComputeCapabilities({})", targets.len()), e))?;
    for (i, t) in targets.iter().enumerate() {
        let cc = match t {
            Target::Sm75 => CC::kSM75,
            Target::Sm80 => CC::kSM80,
            Target::Sm86 => CC::kSM86,
            Target::Sm89 => CC::kSM89,
            Target::Sm120 => CC::kSM120,
            Target::Sm121 => CC::kSM121,
        };
        config.set_compute_capability(cc, i as i32).map_err(|e| scope.error(format!("setComputeCapability({t}, {i})"), e))?;
    }
    Ok(())
}

#[cfg(feature = "tensorrt-enterprise")]
fn set_targets(_config: &mut BuilderConfig<'_>, _targets: &[Target]) -> Result<(), EngineError> {
    Ok(())
}

/// `[min, opt, max]` dims of one input: fixed sizes as they are, named dynamic ones from the recipe.
fn profile_dims(input: &str, shape: &[Option<usize>], names: &[Option<String>], recipe: &ProfileRecipe) -> Result<[Vec<i64>; 3], EngineError> {
    let mut out: [Vec<i64>; 3] = Default::default();
    for (i, s) in shape.iter().enumerate() {
        let r = match s {
            Some(n) => super::DimRange::fixed(*n),
            None => {
                let name = names
                    .get(i)
                    .and_then(|n| n.as_deref())
                    .ok_or_else(|| EngineError::Profile { dim: format!("{input}[{i}]"), message: "is dynamic but has no name in manifest.json".into() })?;
                recipe
                    .dim(name)
                    .ok_or_else(|| EngineError::Profile { dim: name.into(), message: format!("of input `{input}` is not in the profile recipe") })?
            }
        };
        for (o, v) in out.iter_mut().zip([r.min, r.opt, r.max]) {
            o.push(v as i64);
        }
    }
    Ok(out)
}

//! Build options: compute-capability targets, optimization-profile recipe, library location.
//! Plain data, compiled with or without the `tensorrt` feature.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::EngineError;

/// A TensorRT-RTX ahead-of-time compute-capability target (`nvinfer1::ComputeCapability`).
///
/// There is deliberately no "current GPU" target: TRT-RTX 1.7 refuses sm_90 (H100/H200) with
/// "target_sm '90' does not have arch kind assigned", and after that failure every later build
/// in the same process fails too. Name the targets explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    Sm75,
    Sm80,
    Sm86,
    Sm89,
    Sm120,
    Sm121,
}

impl Target {
    pub const ALL: [Target; 6] = [Target::Sm75, Target::Sm80, Target::Sm86, Target::Sm89, Target::Sm120, Target::Sm121];

    /// `sm89` style name (the manifest's `engine.targets` entries).
    pub fn name(self) -> &'static str {
        match self {
            Target::Sm75 => "sm75",
            Target::Sm80 => "sm80",
            Target::Sm86 => "sm86",
            Target::Sm89 => "sm89",
            Target::Sm120 => "sm120",
            Target::Sm121 => "sm121",
        }
    }

    /// `major * 10 + minor`, e.g. 89, 120.
    pub fn sm(self) -> u32 {
        match self {
            Target::Sm75 => 75,
            Target::Sm80 => 80,
            Target::Sm86 => 86,
            Target::Sm89 => 89,
            Target::Sm120 => 120,
            Target::Sm121 => 121,
        }
    }

    /// FP8 (E4M3) tensor cores: Ada (sm89) and newer; TensorRT refuses FP8 Q/DQ below.
    pub fn supports_fp8(self) -> bool {
        self.sm() >= 89
    }

    /// Parses a comma-separated list (`sm89,sm120`; `89`, `sm_89` and `8.9` are accepted too).
    pub fn parse_list(s: &str) -> Result<Vec<Target>, EngineError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let t: Target = part.parse()?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }
}

/// True for GPUs with FP8 (E4M3) tensor cores: compute capability 8.9 (Ada) or newer.
pub fn fp8_capable(major: i32, minor: i32) -> bool {
    (major, minor) >= (8, 9)
}

/// An FP8 manifest can only be built for targets with FP8 tensor cores (sm89+).
pub fn check_fp8_targets(precision: crate::manifest::Precision, targets: &[Target]) -> Result<(), EngineError> {
    if precision != crate::manifest::Precision::Fp8 {
        return Ok(());
    }
    match targets.iter().find(|t| !t.supports_fp8()) {
        Some(t) => Err(EngineError::Target {
            message: format!("target {} cannot run this FP8 engine: FP8 (E4M3) needs compute capability 8.9 or newer (sm89, sm120, sm121)", t.name()),
        }),
        None => Ok(()),
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Target {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s.trim().to_ascii_lowercase().chars().filter(|c| !matches!(c, '_' | '.')).collect();
        let digits = norm.strip_prefix("sm").unwrap_or(&norm);
        Target::ALL.into_iter().find(|t| t.sm().to_string() == digits).ok_or_else(|| EngineError::Target {
            message: format!("unknown compute-capability target `{s}` (use {})", Target::ALL.map(Target::name).join(", ")),
        })
    }
}

/// `min ≤ opt ≤ max` of one dynamic dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimRange {
    pub min: usize,
    pub opt: usize,
    pub max: usize,
}

impl DimRange {
    pub const fn new(min: usize, opt: usize, max: usize) -> Self {
        DimRange { min, opt, max }
    }
    pub const fn fixed(n: usize) -> Self {
        DimRange { min: n, opt: n, max: n }
    }
    fn add(self, o: DimRange) -> DimRange {
        DimRange { min: self.min + o.min, opt: self.opt + o.opt, max: self.max + o.max }
    }
}

/// The optimization profile: ranges of the graph's named dynamic dimensions. `joint_seq`
/// (the RoPE tables' rows) is always `txt_seq + img_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRecipe {
    pub batch: DimRange,
    /// Packed image tokens: (H/16)·(W/16); 4096 for 1024×1024.
    pub img_seq: DimRange,
    /// T5 tokens (512 for FLUX.1-dev, 256 for schnell).
    pub txt_seq: DimRange,
    /// VAE decoder latent height and width (pixels / 8): 64…128 for 512²…1024².
    #[serde(default = "default_latent_side")]
    pub latent_side: DimRange,
}

fn default_latent_side() -> DimRange {
    DimRange::new(64, 128, 128)
}

impl ProfileRecipe {
    /// FLUX.1 at 512²…1024² (opt 1024²), 512 text tokens, batch 1.
    pub fn flux_1024() -> Self {
        ProfileRecipe {
            batch: DimRange::fixed(1),
            img_seq: DimRange::new(1024, 4096, 4096),
            txt_seq: DimRange::new(256, 512, 512),
            latent_side: default_latent_side(),
        }
    }

    /// Small shapes for the tiny test models (img 16…64 tokens, txt 8…16, batch 1…2).
    pub fn tiny() -> Self {
        ProfileRecipe {
            batch: DimRange::new(1, 1, 2),
            img_seq: DimRange::new(16, 64, 64),
            txt_seq: DimRange::new(8, 16, 16),
            latent_side: DimRange::new(8, 8, 16),
        }
    }

    /// The range of the named dynamic dimension; `None` for a name this recipe does not know.
    pub fn dim(&self, name: &str) -> Option<DimRange> {
        match name {
            "batch" => Some(self.batch),
            "img_seq" => Some(self.img_seq),
            "txt_seq" => Some(self.txt_seq),
            "joint_seq" => Some(self.txt_seq.add(self.img_seq)),
            "latent_height" | "latent_width" => Some(self.latent_side),
            _ => None,
        }
    }

    /// Every range must have `1 ≤ min ≤ opt ≤ max`.
    pub fn validate(&self) -> Result<(), EngineError> {
        for (name, r) in [("batch", self.batch), ("img_seq", self.img_seq), ("txt_seq", self.txt_seq), ("latent_side", self.latent_side)] {
            if r.min == 0 || r.min > r.opt || r.opt > r.max {
                return Err(EngineError::Profile { dim: name.into(), message: format!("needs 1 ≤ min ≤ opt ≤ max, got {}/{}/{}", r.min, r.opt, r.max) });
            }
        }
        Ok(())
    }
}

/// Where the TensorRT libraries are. `dir: None` lets the dynamic loader search
/// (`LD_LIBRARY_PATH`, system paths).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrtLibrary {
    pub dir: Option<PathBuf>,
}

/// Environment variable naming the folder of the TensorRT libraries.
#[cfg(not(feature = "tensorrt-enterprise"))]
pub const LIB_DIR_ENV: &str = "TRT_RTX_LIB_DIR";
#[cfg(feature = "tensorrt-enterprise")]
pub const LIB_DIR_ENV: &str = "TENSORRT_LIB_DIR";

#[cfg(not(feature = "tensorrt-enterprise"))]
const RUNTIME_LIB: &str = "libtensorrt_rtx.so.1";
#[cfg(not(feature = "tensorrt-enterprise"))]
const PARSER_LIB: &str = "libtensorrt_onnxparser_rtx.so.1";
#[cfg(feature = "tensorrt-enterprise")]
const RUNTIME_LIB: &str = "libnvinfer.so.11";
#[cfg(feature = "tensorrt-enterprise")]
const PARSER_LIB: &str = "libnvonnxparser.so.11";

impl TrtLibrary {
    /// `TRT_RTX_LIB_DIR` (`TENSORRT_LIB_DIR` with `tensorrt-enterprise`) when set and non-empty.
    pub fn from_env() -> Self {
        TrtLibrary { dir: std::env::var_os(LIB_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from) }
    }
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        TrtLibrary { dir: Some(dir.into()) }
    }
    fn path(&self, file: &str) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(file),
            None => PathBuf::from(file),
        }
    }
    /// The core library (`libtensorrt_rtx.so.1`, or `libnvinfer.so.11` for Enterprise).
    pub fn runtime_path(&self) -> PathBuf {
        self.path(RUNTIME_LIB)
    }
    /// The ONNX parser library.
    pub fn parser_path(&self) -> PathBuf {
        self.path(PARSER_LIB)
    }
}

/// Options of [`super::build`].
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Compute-capability targets (TensorRT-RTX: at least one; Enterprise builds for the GPU
    /// it runs on and takes none).
    pub targets: Vec<Target>,
    pub profile: ProfileRecipe,
    /// `kSTRIP_PLAN`: leave the refittable (LoRA slot) weights out of the plan; the runtime
    /// refits every slot when it opens the plan anyway.
    pub strip_weights: bool,
    /// Let every `IAttention` fall back to unfused kernels where TensorRT has no fused one
    /// (default true; without it fp32 graphs and small head sizes fail to build).
    pub decomposable_attention: bool,
    /// Builder workspace limit in bytes (`None`: TensorRT's default).
    pub workspace_bytes: Option<usize>,
    /// Plan file name inside the engine folder.
    pub plan_file: String,
    pub library: TrtLibrary,
}

impl BuildOptions {
    pub fn new(targets: Vec<Target>, profile: ProfileRecipe) -> Self {
        BuildOptions {
            targets,
            profile,
            strip_weights: false,
            decomposable_attention: true,
            workspace_bytes: None,
            plan_file: super::PLAN_FILE.into(),
            library: TrtLibrary::from_env(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        assert_eq!(Target::parse_list("sm89, SM_120,8.9").unwrap(), vec![Target::Sm89, Target::Sm120]);
        assert_eq!("121".parse::<Target>().unwrap(), Target::Sm121);
        assert!(Target::Sm89.supports_fp8() && Target::Sm120.supports_fp8() && !Target::Sm86.supports_fp8());
        assert!(fp8_capable(8, 9) && fp8_capable(9, 0) && fp8_capable(12, 0) && !fp8_capable(8, 6) && !fp8_capable(7, 5));
        let err = check_fp8_targets(crate::manifest::Precision::Fp8, &[Target::Sm89, Target::Sm80]).unwrap_err();
        assert!(err.to_string().contains("sm80") && err.to_string().contains("FP8"), "{err}");
        assert!(check_fp8_targets(crate::manifest::Precision::Fp8, &[Target::Sm89, Target::Sm120]).is_ok());
        assert!(check_fp8_targets(crate::manifest::Precision::Bf16, &[Target::Sm80]).is_ok());
        let err = "sm90".parse::<Target>().unwrap_err();
        assert!(err.to_string().contains("sm90"), "{err}");
    }

    #[test]
    fn profile_dims() {
        let p = ProfileRecipe::flux_1024();
        assert_eq!(p.dim("joint_seq"), Some(DimRange::new(1280, 4608, 4608)));
        assert_eq!(p.dim("height"), None);
        p.validate().unwrap();
        let bad = ProfileRecipe { batch: DimRange::new(2, 1, 4), ..ProfileRecipe::tiny() };
        assert!(matches!(bad.validate(), Err(EngineError::Profile { .. })));
    }
}

//! FlowMatchEulerDiscreteScheduler exactly as diffusers 0.42.1 `FluxPipeline` drives it.
//!
//! FluxPipeline passes `sigmas = np.linspace(1, 1/N, N)` (float64, cast to float32 by the
//! scheduler) and `mu = calculate_shift(image_seq_len, …)`. The scheduler then shifts the sigmas
//! (exponential time shift `e^mu / (e^mu + (1/σ − 1))` when `use_dynamic_shifting`, else the
//! static `s·σ / (1 + (s−1)·σ)`), optionally stretches them to `shift_terminal`, sets
//! `timesteps = σ·1000` and appends a final σ = 0. Each Euler step is `x + (σ_next − σ)·v` in
//! float32; the transformer receives `timestep / 1000`.
//!
//! Every shift is computed with the same float32 operations numpy does (the config's Python
//! floats act as float32 scalars), so sigmas and timesteps are bit-equal to diffusers'.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::PipelineError;

/// How the resolution-dependent shift is applied (`time_shift_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeShiftType {
    Exponential,
    Linear,
}

/// A diffusers `scheduler/scheduler_config.json`. Missing keys take the defaults of diffusers'
/// `FlowMatchEulerDiscreteScheduler.__init__` (as `from_pretrained` does), **not** FLUX.1's:
/// use [`SchedulerConfig::flux_dev`] / [`SchedulerConfig::flux_schnell`] for those.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: u32,
    pub shift: f64,
    pub use_dynamic_shifting: bool,
    pub base_shift: f64,
    pub max_shift: f64,
    pub base_image_seq_len: u32,
    pub max_image_seq_len: u32,
    pub invert_sigmas: bool,
    pub shift_terminal: Option<f64>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub time_shift_type: TimeShiftType,
    pub stochastic_sampling: bool,
    /// Keys diffusers does not define for this scheduler (logged, otherwise ignored as diffusers does).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            class_name: None,
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: 0.5,
            max_shift: 1.15,
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            time_shift_type: TimeShiftType::Exponential,
            stochastic_sampling: false,
            extra: BTreeMap::new(),
        }
    }
}

const CLASS_NAME: &str = "FlowMatchEulerDiscreteScheduler";

impl SchedulerConfig {
    /// FLUX.1-dev's scheduler: shift 3.0 (unused), dynamic exponential shift, 256/4096, 0.5/1.15.
    pub fn flux_dev() -> Self {
        SchedulerConfig { class_name: Some(CLASS_NAME.into()), shift: 3.0, use_dynamic_shifting: true, ..Self::default() }
    }

    /// FLUX.1-schnell's scheduler: static shift 1.0 (no shift at all).
    pub fn flux_schnell() -> Self {
        SchedulerConfig { class_name: Some(CLASS_NAME.into()), shift: 1.0, use_dynamic_shifting: false, ..Self::default() }
    }

    /// Reads and validates a diffusers `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e)))?;
        let cfg: SchedulerConfig =
            serde_json::from_str(&text).map_err(|source| PipelineError::Json { path: path.into(), what: "a diffusers scheduler config", source })?;
        cfg.validate().map_err(|message| PipelineError::SchedulerConfig { path: path.into(), message })?;
        for key in cfg.extra.keys().filter(|k| !k.starts_with('_')) {
            tracing::warn!(file = %path.display(), key = %key, "scheduler config key is not used by FlowMatchEulerDiscreteScheduler; ignored (as diffusers does)");
        }
        Ok(cfg)
    }

    /// Checks the options flux-trt implements; anything else is an error, never ignored.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(c) = &self.class_name {
            if c != CLASS_NAME {
                return Err(format!("`_class_name` is `{c}`, expected `{CLASS_NAME}`"));
            }
        }
        let unsupported = [
            ("invert_sigmas", self.invert_sigmas),
            ("use_karras_sigmas", self.use_karras_sigmas),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
            ("stochastic_sampling", self.stochastic_sampling),
        ];
        if let Some((key, _)) = unsupported.iter().find(|(_, on)| *on) {
            return Err(format!("`{key}: true` is not supported (FLUX.1 pipelines do not use it)"));
        }
        if let Some(v) = self.extra.get("use_flow_sigmas") {
            if v.as_bool() == Some(true) {
                return Err("`use_flow_sigmas: true` is not supported".into());
            }
        }
        if self.num_train_timesteps == 0 {
            return Err("`num_train_timesteps` must be at least 1".into());
        }
        if !(self.shift.is_finite() && self.shift > 0.0) {
            return Err(format!("`shift` must be a positive number, got {}", self.shift));
        }
        if self.use_dynamic_shifting {
            if self.max_image_seq_len == self.base_image_seq_len {
                return Err("`max_image_seq_len` equals `base_image_seq_len` (the shift line is undefined)".into());
            }
            if !(self.base_shift.is_finite() && self.max_shift.is_finite()) {
                return Err("`base_shift` / `max_shift` must be finite".into());
            }
        }
        if let Some(t) = self.shift_terminal {
            if !(t.is_finite() && t < 1.0) {
                return Err(format!("`shift_terminal` must be below 1, got {t}"));
            }
        }
        Ok(())
    }

    /// diffusers `calculate_shift` (pipeline_flux.py), in float64 like Python.
    pub fn mu(&self, image_seq_len: usize) -> f64 {
        let (base_len, max_len) = (self.base_image_seq_len as f64, self.max_image_seq_len as f64);
        let m = (self.max_shift - self.base_shift) / (max_len - base_len);
        let b = self.base_shift - m * base_len;
        image_seq_len as f64 * m + b
    }
}

/// A sigma / timestep schedule for one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// `N + 1` sigmas, the last one 0.
    pub sigmas: Vec<f32>,
    /// `N` timesteps, `σ · num_train_timesteps`.
    pub timesteps: Vec<f32>,
    /// The `mu` used (dynamic shifting only).
    pub mu: Option<f64>,
    num_train_timesteps: f32,
}

/// Most denoising steps of one generation. FLUX.1 runs 1–50; the bound keeps a mistyped or hostile
/// step count (a `--prompts` line with `"steps": 1e12`) an error instead of a multi-terabyte
/// allocation that aborts the process.
pub const MAX_STEPS: usize = 10_000;

impl Schedule {
    /// The schedule FluxPipeline builds for `steps` steps (1..=[`MAX_STEPS`]) and `image_seq_len`
    /// packed latent tokens (`(H/16)·(W/16)`): sigmas `linspace(1, 1/N, N)`,
    /// `mu = calculate_shift(image_seq_len)`.
    pub fn flux(cfg: &SchedulerConfig, steps: usize, image_seq_len: usize) -> Result<Self, PipelineError> {
        if steps == 0 {
            return Err(PipelineError::Schedule("the number of steps must be at least 1".into()));
        }
        if steps > MAX_STEPS {
            return Err(PipelineError::Schedule(format!("{steps} steps: the number of steps must be at most {MAX_STEPS}")));
        }
        Self::from_sigmas(cfg, &linspace(1.0, 1.0 / steps as f64, steps), Some(cfg.mu(image_seq_len)))
    }

    /// diffusers `set_timesteps(sigmas=…, mu=…)` for custom (unshifted) sigmas.
    pub fn from_sigmas(cfg: &SchedulerConfig, sigmas: &[f64], mu: Option<f64>) -> Result<Self, PipelineError> {
        cfg.validate().map_err(PipelineError::Schedule)?;
        if sigmas.is_empty() {
            return Err(PipelineError::Schedule("no sigmas".into()));
        }
        if let Some(bad) = sigmas.iter().find(|s| !s.is_finite()) {
            return Err(PipelineError::Schedule(format!("sigma {bad} is not finite")));
        }
        let mut s: Vec<f32> = sigmas.iter().map(|&v| v as f32).collect();
        let mu = if cfg.use_dynamic_shifting {
            let mu = mu.ok_or_else(|| PipelineError::Schedule("`mu` must be given when `use_dynamic_shifting` is set".into()))?;
            match cfg.time_shift_type {
                TimeShiftType::Exponential => {
                    let e = mu.exp() as f32;
                    s.iter_mut().for_each(|t| *t = e / (e + (1.0 / *t - 1.0)));
                }
                TimeShiftType::Linear => {
                    let m = mu as f32;
                    s.iter_mut().for_each(|t| *t = m / (m + (1.0 / *t - 1.0)));
                }
            }
            Some(mu)
        } else {
            let (k, k1) = (cfg.shift as f32, (cfg.shift - 1.0) as f32);
            s.iter_mut().for_each(|t| *t = k * *t / (1.0 + k1 * *t));
            None
        };
        if let Some(term) = cfg.shift_terminal {
            // stretch_shift_to_terminal: 1 − (1 − t) / ((1 − t_last) / (1 − terminal))
            let last = 1.0 - s[s.len() - 1];
            let scale = last / (1.0 - term) as f32;
            s.iter_mut().for_each(|t| *t = 1.0 - (1.0 - *t) / scale);
        }
        if let Some(bad) = s.iter().find(|t| !t.is_finite()) {
            return Err(PipelineError::Schedule(format!(
                "the shifted sigmas are not finite ({bad}); diffusers yields NaN here too (e.g. `shift_terminal` with one step)"
            )));
        }
        let n = cfg.num_train_timesteps as f32;
        let timesteps = s.iter().map(|t| t * n).collect();
        s.push(0.0);
        Ok(Schedule { sigmas: s, timesteps, mu, num_train_timesteps: n })
    }

    pub fn num_steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The `timestep` input of the transformer at step `i`: `timesteps[i] / 1000` in float32, as
    /// FluxPipeline passes it (the transformer multiplies it by 1000 again).
    pub fn transformer_timestep(&self, i: usize) -> f32 {
        self.timesteps[i] / self.num_train_timesteps
    }

    /// One Euler step in place: `x ← x + (σ[i+1] − σ[i])·v`, float32 as diffusers computes it.
    pub fn step(&self, i: usize, sample: &mut [f32], velocity: &[f32]) -> Result<(), PipelineError> {
        if i >= self.num_steps() {
            return Err(PipelineError::Schedule(format!("step {i} is past the last of {} steps", self.num_steps())));
        }
        if sample.len() != velocity.len() {
            return Err(PipelineError::Length { what: format!("velocity at step {i}"), expected: sample.len(), found: velocity.len() });
        }
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        sample.iter_mut().zip(velocity).for_each(|(x, v)| *x += dt * v);
        Ok(())
    }
}

/// `numpy.linspace(start, stop, num)` (endpoint included) in float64, element for element.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = stop;
            v
        }
    }
}

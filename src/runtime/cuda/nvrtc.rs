//! NVRTC: the fused kernels compiled at session creation for the GPU's architecture (a cubin,
//! so the driver never JIT-compiles PTX), cached on disk by source hash + architecture + NVRTC
//! version.

use std::ffi::{c_char, CString};
use std::path::PathBuf;

use cudarc::nvrtc::{result, sys};

use super::CudaError;

/// One kernel source file.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub name: &'static str,
    pub code: &'static str,
    /// Oldest compute capability it compiles for (`major · 10 + minor`; E4M3 needs 89).
    pub min_cc: u32,
}

/// Every kernel source of the backend.
pub const SOURCES: &[Source] = &[
    Source { name: "fused.cu", code: include_str!("kernels/fused.cu"), min_cc: 80 },
    Source { name: "attention.cu", code: include_str!("kernels/attention.cu"), min_cc: 80 },
    Source { name: "fp8.cu", code: concat!(include_str!("kernels/e4m3.cuh"), include_str!("kernels/fp8.cu")), min_cc: 89 },
    Source { name: "slots.cu", code: include_str!("kernels/slots.cu"), min_cc: 80 },
    Source { name: "attention_fp8.cu", code: concat!(include_str!("kernels/e4m3.cuh"), include_str!("kernels/attention_fp8.cu")), min_cc: 89 },
];

pub fn source(name: &str) -> Source {
    *SOURCES.iter().find(|s| s.name == name).expect("kernel source is compiled in")
}

/// Fails with a typed error when libnvrtc cannot be loaded.
pub fn require() -> Result<(), CudaError> {
    // SAFETY: only probes whether the library can be dlopened.
    super::device::require_library("nvrtc", unsafe { sys::is_culib_present() }, "libnvrtc.so.13")
}

/// NVRTC's `(major, minor)`.
pub fn version() -> Result<(i32, i32), CudaError> {
    require()?;
    let (mut a, mut b) = (0, 0);
    // SAFETY: two out-parameters.
    unsafe { sys::nvrtcVersion(&mut a, &mut b) }.result().map_err(|e| CudaError::Library { name: "nvrtc".into(), message: format!("nvrtcVersion: {e:?}") })?;
    Ok((a, b))
}

fn nv_err(kernel: &str, what: &str, e: impl std::fmt::Debug) -> CudaError {
    CudaError::Nvrtc { kernel: kernel.into(), log: format!("{what}: {e:?}") }
}

/// Compiles `src` to a cubin for `sm_<cc>` (e.g. 90). No GPU needed.
pub fn compile(src: Source, cc: u32) -> Result<Vec<u8>, CudaError> {
    require()?;
    let code = CString::new(src.code).map_err(|e| nv_err(src.name, "source", e))?;
    let name = CString::new(src.name).map_err(|e| nv_err(src.name, "name", e))?;
    let prog = result::create_program(&code, Some(&name)).map_err(|e| nv_err(src.name, "nvrtcCreateProgram", e))?;
    let opts = [format!("--gpu-architecture=sm_{cc}"), "--std=c++17".into(), "-default-device".into()];
    // SAFETY: prog is live until destroy_program below.
    let out = unsafe {
        let compiled = result::compile_program(prog, &opts);
        let r = match compiled {
            Ok(()) => {
                let mut n = 0usize;
                sys::nvrtcGetCUBINSize(prog, &mut n).result().map_err(|e| nv_err(src.name, "nvrtcGetCUBINSize", e)).and_then(|()| {
                    let mut buf = vec![0u8; n];
                    sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char).result().map_err(|e| nv_err(src.name, "nvrtcGetCUBIN", e))?;
                    Ok(buf)
                })
            }
            Err(_) => {
                let log = result::get_program_log(prog).map(|l| l.iter().map(|c| *c as u8 as char).collect::<String>()).unwrap_or_default();
                Err(CudaError::Nvrtc { kernel: src.name.into(), log: log.trim_end_matches('\0').to_string() })
            }
        };
        let _ = result::destroy_program(prog);
        r
    };
    out
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FLUX_TRT_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("flux-trt/kernels"))
}

/// Whether a cubin defines the kernel `name` (its symbol table holds the name).
pub fn defines(cubin: &[u8], name: &str) -> bool {
    cubin.windows(name.len() + 1).any(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
}

/// Tests (no GPU needed; needs libnvrtc): the kernel source `file` compiles for every compute
/// capability in `ccs` and each cubin defines every kernel in `names`.
#[cfg(test)]
pub(crate) fn assert_compiles(file: &str, ccs: &[u32], names: &[&str]) {
    // SAFETY: only tries to dlopen the candidate names.
    assert!(unsafe { sys::is_culib_present() }, "libnvrtc not found: `source tools/env.sh` (installs pip nvidia-cuda-nvrtc and links libnvrtc.so)");
    for &cc in ccs {
        let cubin = compile(source(file), cc).unwrap_or_else(|e| panic!("{file} sm_{cc}: {e}"));
        for name in names {
            assert!(defines(&cubin, name), "{file} sm_{cc}: {name} in the cubin");
        }
    }
}

/// Compiles (or takes from the disk cache) `src` for the stream's device and loads it as a module
/// of cudarc's safe API.
pub fn load_module(stream: &std::sync::Arc<cudarc::driver::CudaStream>, src: Source) -> Result<std::sync::Arc<cudarc::driver::CudaModule>, CudaError> {
    let ctx = stream.context();
    let (major, minor) = ctx.compute_capability().map_err(|e| CudaError::driver("cuDeviceGetAttribute(compute capability)", e))?;
    let (cubin, _) = compile_cached(src, (major * 10 + minor) as u32)?;
    ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)).map_err(|e| CudaError::driver(format!("cuModuleLoadData ({})", src.name), e))
}

/// [`compile`] through the disk cache (`$FLUX_TRT_KERNEL_CACHE`, else `~/.cache/flux-trt/kernels`).
/// Returns the cubin and whether it came from the cache.
pub fn compile_cached(src: Source, cc: u32) -> Result<(Vec<u8>, bool), CudaError> {
    let (ma, mi) = version()?;
    let key = blake3::hash(format!("{}\0sm_{cc}\0nvrtc {ma}.{mi}\0{}", src.name, src.code).as_bytes()).to_hex();
    let file = cache_dir().map(|d| d.join(format!("{}-sm{cc}-{}.cubin", src.name.trim_end_matches(".cu"), &key[..16])));
    if let Some(f) = &file {
        if let Ok(b) = std::fs::read(f) {
            if !b.is_empty() {
                return Ok((b, true));
            }
        }
    }
    let cubin = compile(src, cc)?;
    if let Some(f) = &file {
        if let Some(d) = f.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        if let Err(e) = crate::util::write_atomic(f, &cubin) {
            tracing::warn!(file = %f.display(), error = %e, "cannot cache compiled kernels");
        }
    }
    Ok((cubin, false))
}

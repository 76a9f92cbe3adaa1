//! One memory-mapped `.safetensors` file and its parsed header.
//!
//! The header is parsed and validated by the `safetensors` crate (`SafeTensors::read_metadata`:
//! offsets contiguous, sizes matching shape × dtype, data ending exactly at the end of the
//! file). When it rejects a file, we re-read the header JSON only to name the offending tensor
//! in the error message.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::tensor::{SafeTensorError, TensorInfo};
use safetensors::SafeTensors;

use super::CheckpointError;

/// Size of the little-endian u64 header-length prefix.
const N_LEN: usize = 8;

/// A tensor as stored in one file: raw dtype, shape, absolute byte range in the map.
#[derive(Clone, Debug)]
pub(crate) struct RawTensor {
    pub file: usize,
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

/// A mapped file with its tensors (name as stored → location).
pub(crate) struct MappedFile {
    pub path: PathBuf,
    pub map: Arc<Mmap>,
    pub tensors: BTreeMap<String, RawTensor>,
}

/// Maps `path` and parses its header; `file` is the index stored in each [`RawTensor`].
pub(crate) fn map_file(path: &Path, file: usize) -> Result<MappedFile, CheckpointError> {
    let io = |e| CheckpointError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e));
    let f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len == 0 {
        return Err(CheckpointError::Safetensors { path: path.to_path_buf(), message: "empty file (0 bytes)".into() });
    }
    // SAFETY: the map is read-only and lives in an `Arc` owned by the `Checkpoint`. As with every
    // mmap-based loader, the file must not be truncated or rewritten while it is open.
    let map = unsafe { Mmap::map(&f) }.map_err(io)?;
    let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| header_error(path, &map, e))?;
    let data_start = N_LEN + header_len;
    let mut tensors = BTreeMap::new();
    for (name, info) in metadata.tensors() {
        let (s, e) = info.data_offsets;
        // read_metadata validated s <= e and data end == file end; recheck without panicking.
        let (start, end) = match (data_start.checked_add(s), data_start.checked_add(e)) {
            (Some(a), Some(b)) if a <= b && b <= map.len() => (a, b),
            _ => {
                return Err(CheckpointError::Safetensors {
                    path: path.to_path_buf(),
                    message: format!("tensor `{name}`: data offsets [{s}, {e}) outside the file"),
                })
            }
        };
        tensors.insert(name, RawTensor { file, dtype: info.dtype, shape: info.shape.clone(), start, end });
    }
    Ok(MappedFile { path: path.to_path_buf(), map: Arc::new(map), tensors })
}

/// Turns a `safetensors` header error into one naming the file and, when we can tell, the tensor.
fn header_error(path: &Path, buf: &[u8], e: SafeTensorError) -> CheckpointError {
    let detail = match &e {
        SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::TensorInvalidInfo => diagnose(buf),
        SafeTensorError::InvalidOffset(name) => Some(format!("tensor `{name}`: data offsets are not contiguous")),
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            Some(format!("file is {} bytes, shorter than its header length prefix says (truncated?)", buf.len()))
        }
        _ => None,
    };
    let message = match detail {
        Some(d) => format!("{d} ({e})"),
        None => e.to_string(),
    };
    CheckpointError::Safetensors { path: path.to_path_buf(), message }
}

/// Finds the first tensor whose byte range is wrong (past the end of the file, or not the size
/// its shape and dtype need), or trailing bytes after the last tensor.
fn diagnose(buf: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(buf.get(..N_LEN)?.try_into().ok()?)).ok()?;
    let header = std::str::from_utf8(buf.get(N_LEN..N_LEN.checked_add(n)?)?).ok()?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(header).ok()?;
    let data_len = buf.len().checked_sub(N_LEN.checked_add(n)?)?;
    let mut infos: Vec<(String, TensorInfo)> =
        raw.into_iter().filter(|(k, _)| k != "__metadata__").filter_map(|(k, v)| serde_json::from_value::<TensorInfo>(v).ok().map(|i| (k, i))).collect();
    infos.sort_by_key(|(_, i)| i.data_offsets);
    let mut last_end = 0usize;
    for (name, info) in &infos {
        let (s, e) = info.data_offsets;
        if e > data_len {
            return Some(format!("tensor `{name}`: data offsets [{s}, {e}) end past the {data_len} data bytes present (truncated or bad header)"));
        }
        let numel = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let want = numel.and_then(|n| n.checked_mul(info.dtype.bitsize())).map(|b| b / 8);
        if want != Some(e.wrapping_sub(s)) {
            return Some(format!("tensor `{name}`: data offsets [{s}, {e}) do not match shape {:?} of {:?}", info.shape, info.dtype));
        }
        last_end = last_end.max(e);
    }
    (last_end < data_len).then(|| format!("{} unexpected bytes after the last tensor", data_len - last_end))
}

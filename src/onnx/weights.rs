//! The external-data file: layout (4096-aligned offsets) and the streaming writer.
//!
//! Each checkpoint tensor is copied from its borrowed, memory-mapped byte parts straight into a
//! buffered writer, converted chunk by chunk when the export dtype differs; at most one chunk
//! (4 MiB of source bytes) of converted data is held at a time. After a part is written its
//! pages are dropped from this process's mapping (`MADV_DONTNEED`; the file stays in the page
//! cache), so the resident set does not grow with the model size.

use std::io::Write;

use super::graph::ExternalWeight;
use crate::tensor::convert_into;

/// Alignment of every tensor's offset in the data file.
pub const ALIGN: u64 = 4096;
const CHUNK: usize = 4 << 20;

/// Offsets (aligned to [`ALIGN`]) of each weight, and the file's total length.
pub fn layout(ws: &[ExternalWeight<'_>]) -> (Vec<u64>, u64) {
    let mut off = 0u64;
    let mut v = Vec::with_capacity(ws.len());
    for w in ws {
        off = off.div_ceil(ALIGN) * ALIGN;
        v.push(off);
        off += w.nbytes();
    }
    (v, off)
}

/// Writes every weight at its offset; `progress(bytes_written_so_far)` after each chunk.
pub fn write_data(
    ws: &[ExternalWeight<'_>],
    offsets: &[u64],
    mapped: &MappedFiles,
    out: &mut impl Write,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    let zeros = [0u8; ALIGN as usize];
    let mut pos = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    for (w, &off) in ws.iter().zip(offsets) {
        let pad = (off - pos) as usize;
        out.write_all(&zeros[..pad])?;
        pos = off;
        let cols = w.shape.get(1).copied().unwrap_or(1);
        let mut elem = 0usize;
        for part in &w.source.parts {
            if let Some(scales) = &w.fp8_scales {
                let esz = w.source.dtype.size();
                for c in part.chunks(CHUNK - CHUNK % esz) {
                    buf.clear();
                    super::fp8::e4m3::quantize_into(w.source.dtype, c, elem, cols, scales, &mut buf);
                    elem += c.len() / esz;
                    out.write_all(&buf)?;
                    pos += buf.len() as u64;
                    progress(pos);
                }
            } else if w.source.dtype == w.dtype {
                for c in part.chunks(CHUNK) {
                    out.write_all(c)?;
                    pos += c.len() as u64;
                    progress(pos);
                }
            } else {
                let step = CHUNK - CHUNK % w.source.dtype.size();
                for c in part.chunks(step) {
                    buf.clear();
                    convert_into(w.source.dtype, w.dtype, c, &mut buf);
                    out.write_all(&buf)?;
                    pos += buf.len() as u64;
                    progress(pos);
                }
            }
            mapped.release(part);
        }
        debug_assert_eq!(pos, off + w.nbytes());
    }
    Ok(())
}

/// Address ranges of this process's read-only mappings of the given files (from
/// `/proc/self/maps`). Only slices inside these ranges are ever released, so a heap buffer can
/// never be touched by `MADV_DONTNEED`.
#[derive(Default)]
pub struct MappedFiles {
    ranges: Vec<(usize, usize, std::path::PathBuf)>,
}

impl MappedFiles {
    pub fn find(files: &[std::path::PathBuf]) -> Self {
        let canon: Vec<String> = files.iter().filter_map(|f| std::fs::canonicalize(f).ok()).map(|p| p.to_string_lossy().into_owned()).collect();
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return Self::default() };
        let mut ranges = Vec::new();
        for line in maps.lines() {
            let mut it = line.split_whitespace();
            let (Some(range), Some(perms)) = (it.next(), it.next()) else { continue };
            let path = it.nth(3).unwrap_or("");
            if !perms.starts_with("r-") || !canon.iter().any(|c| c == path) {
                continue;
            }
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    ranges.push((a, b, std::path::PathBuf::from(path)));
                }
            }
        }
        MappedFiles { ranges }
    }

    /// The mapped file `part` lies in (for error messages), if it lies in one.
    pub fn file_of(&self, part: &[u8]) -> Option<std::path::PathBuf> {
        let start = part.as_ptr() as usize;
        self.ranges.iter().find(|(a, b, _)| *a <= start && start < *b).map(|(_, _, p)| p.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Drops the pages of `part` from this process if it lies in one of the read-only file
    /// mappings (they are re-read from the page cache if touched again).
    pub fn release(&self, part: &[u8]) {
        let start = part.as_ptr() as usize;
        let end = start + part.len();
        let Some(&(lo_map, hi_map, _)) = self.ranges.iter().find(|(a, b, _)| *a <= start && end <= *b) else { return };
        #[cfg(unix)]
        {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = if page > 0 { page as usize } else { 4096 };
            let lo = (start / page * page).max(lo_map);
            let hi = end.div_ceil(page).saturating_mul(page).min(hi_map);
            if hi <= lo {
                return;
            }
            // SAFETY: [lo, hi) lies inside a read-only, file-backed mapping of a checkpoint file
            // (checked against /proc/self/maps above). MADV_DONTNEED on such a mapping never
            // loses data: a later access refaults the same file bytes. It is only a hint; errors
            // are ignored.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED);
            }
        }
        #[cfg(not(unix))]
        let _ = (lo_map, hi_map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TensorRef;
    use crate::tensor::DType;

    fn w<'a>(name: &str, n: usize, from: DType, to: DType, bytes: &'a [u8]) -> ExternalWeight<'a> {
        ExternalWeight {
            name: name.into(),
            shape: vec![n],
            dtype: to,
            source: TensorRef { name: name.into(), dtype: from, shape: vec![n], parts: vec![&bytes[..bytes.len() / 2], &bytes[bytes.len() / 2..]] },
            fp8_scales: None,
        }
    }

    #[test]
    fn fp8_weights_are_quantized_while_streaming() {
        // [4, 3] bf16 weight in two parts split mid-row, per-row scales
        let vals: Vec<f32> = (0..12).map(|i| i as f32 * 0.75 - 4.0).collect();
        let bf: Vec<u8> = vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let scales = vec![0.5f32, 0.25, 2.0, 0.01];
        let ws = vec![ExternalWeight {
            name: "q".into(),
            shape: vec![4, 3],
            dtype: DType::BF16,
            source: TensorRef { name: "q".into(), dtype: DType::BF16, shape: vec![4, 3], parts: vec![&bf[..10], &bf[10..]] },
            fp8_scales: Some(scales.clone()),
        }];
        assert_eq!(ws[0].nbytes(), 12);
        assert_eq!(ws[0].onnx_code(), 17);
        let (offs, total) = layout(&ws);
        let mut out = Vec::new();
        write_data(&ws, &offs, &MappedFiles::default(), &mut out, &mut |_| {}).unwrap();
        assert_eq!(out.len() as u64, total);
        let want: Vec<u8> = vals.iter().enumerate().map(|(i, v)| crate::onnx::fp8::e4m3::from_f32(v / scales[i / 3])).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn aligned_layout_and_streamed_conversion() {
        let vals: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bf: Vec<u8> = vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let ws = vec![w("a", 1000, DType::F32, DType::F32, &f32b), w("b", 1000, DType::F32, DType::BF16, &f32b), w("c", 1000, DType::BF16, DType::F32, &bf)];
        let (offs, total) = layout(&ws);
        assert_eq!(offs, vec![0, 4096, 8192]);
        assert_eq!(total, 8192 + 4000);
        let mut out = Vec::new();
        let mut last = 0;
        write_data(&ws, &offs, &MappedFiles::default(), &mut out, &mut |p| last = p).unwrap();
        assert_eq!(out.len() as u64, total);
        assert_eq!(last, total);
        assert_eq!(&out[..4000], f32b.as_slice());
        assert!(out[4000..4096].iter().all(|b| *b == 0), "padding is zeros");
        assert_eq!(&out[4096..6096], bf.as_slice());
        let back: Vec<f32> = out[8192..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let want: Vec<f32> = vals.iter().map(|v| half::bf16::from_f32(*v).to_f32()).collect();
        assert_eq!(back, want, "bf16 → f32 widening is exact");
    }
}

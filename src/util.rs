//! Small shared helpers: atomic writes and content hashing.
//!
//! Hashes are BLAKE3 (hex): a checkpoint is tens of GB and SHA-256 without SHA-NI runs at
//! ~200 MB/s on the machines here, which made hashing dominate the export; BLAKE3 over a memory
//! map, multi-threaded, keeps pace with the disk.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// BLAKE3 of a file (memory-mapped, hashed on all cores), hex encoded, and its length.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok((h.finalize().to_hex().to_string(), h.count()))
}

/// BLAKE3 of a byte slice, hex encoded (multi-threaded for large slices).
pub fn hash_bytes(bytes: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    if bytes.len() >= 1 << 20 {
        h.update_rayon(bytes);
    } else {
        h.update(bytes);
    }
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_and_bytes_agree_with_the_reference_vector() {
        // BLAKE3 of the empty input (reference test vector).
        assert_eq!(super::hash_bytes(b""), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let (h, n) = super::hash_file(&p).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(h, super::hash_bytes(&data));
    }
}

//! Small shared helpers: atomic writes, file errors that name the operation, and content hashing.
//!
//! Hashes are BLAKE3 (hex): a checkpoint is tens of GB and SHA-256 without SHA-NI runs at
//! ~200 MB/s on the machines here, which made hashing dominate the export; BLAKE3 over a memory
//! map, multi-threaded, keeps pace with the disk.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What was being done to a file when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    Read,
    Write,
    Create,
    Rename,
}

impl std::fmt::Display for FileOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileOp::Read => "read",
            FileOp::Write => "write",
            FileOp::Create => "create",
            FileOp::Rename => "rename into place",
        })
    }
}

/// An I/O failure on a file the caller named: the operation and the caller's path (never a
/// temporary name), with the operating system's error as the source.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", path.display())]
pub struct FileError {
    pub op: FileOp,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// `source` is stripped of any path a wrapper (e.g. `tempfile`) appended to it.
    pub fn new(op: FileOp, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FileError { op, path: path.into(), source: plain_io_error(source) }
    }
    pub fn kind(&self) -> std::io::ErrorKind {
        self.source.kind()
    }
}

/// `error: cause: cause…` in one line, for places that must keep an error as text.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The operating system's error without the temporary-file path `tempfile` wraps around it
/// (its errors read "… at path \"/dir/.tmpXXXX\"").
pub fn plain_io_error(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error().is_some() || e.get_ref().is_none() {
        return e;
    }
    let text = e.to_string();
    let Some((message, _)) = text.split_once(" at path ") else { return e };
    let code = message.rsplit_once("(os error ").and_then(|(_, r)| r.strip_suffix(')')).and_then(|n| n.parse::<i32>().ok());
    match code {
        Some(c) => std::io::Error::from_raw_os_error(c),
        None => std::io::Error::new(e.kind(), message.to_string()),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// Errors name `path` (not the temporary file) and the step: write, or rename into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let werr = |e| FileError::new(FileOp::Write, path, e);
    // created as a new file would be (0666 less the umask), not tempfile's private 0600
    let mut b = tempfile::Builder::new();
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = b.tempfile_in(dir).map_err(werr)?;
    tmp.write_all(bytes).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.persist(path).map_err(|e| FileError::new(FileOp::Rename, path, e.error))?;
    Ok(())
}

/// BLAKE3 of a file (memory-mapped, hashed on all cores), hex encoded, and its length.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    hash_file_with_progress(path, &mut |_| {})
}

/// [`hash_file`] reporting bytes hashed so far to `progress` (every 64 MiB).
pub fn hash_file_with_progress(path: &Path, progress: &mut dyn FnMut(u64)) -> std::io::Result<(String, u64)> {
    const CHUNK: usize = 64 << 20;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut h = blake3::Hasher::new();
    if len > 0 {
        // SAFETY: read-only map; a concurrent writer can change the bytes we hash (then the hash
        // differs from the record, which is the error we report), not memory safety of the slice
        // beyond what every mmap reader of this crate accepts.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        let mut done = 0u64;
        for chunk in map.chunks(CHUNK) {
            h.update_rayon(chunk);
            done += chunk.len() as u64;
            progress(done);
        }
    }
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

/// A writer that hashes (BLAKE3) and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: blake3::Hasher::new() }
    }
    /// The inner writer, the hex BLAKE3 and the byte count of what was written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, self.hasher.finalize().to_hex().to_string(), self.hasher.count())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    /// An atomically written file gets the mode a plain `File::create` would (0666 less the
    /// umask), not the temporary file's private 0600: engine manifests are read by other users.
    #[cfg(target_os = "linux")]
    #[test]
    fn atomic_writes_get_the_ordinary_file_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (atomic, plain) = (dir.path().join("a.json"), dir.path().join("b.json"));
        super::write_atomic(&atomic, b"{}").unwrap();
        std::fs::write(&plain, b"{}").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
        assert_eq!(std::fs::read(&atomic).unwrap(), b"{}");
    }

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
        let mut w = super::HashingWriter::new(Vec::new());
        w.write_all(&data[..1000]).unwrap();
        w.write_all(&data[1000..]).unwrap();
        let (out, wh, wn) = w.finish();
        assert_eq!((out, wh, wn), (data.clone(), h, data.len() as u64));
        std::fs::write(&p, b"").unwrap();
        assert_eq!(super::hash_file(&p).unwrap(), (super::hash_bytes(b""), 0));
    }

    #[test]
    fn atomic_write_errors_name_the_users_path_and_the_operation_not_the_temp_file() {
        let e = super::write_atomic(std::path::Path::new("/nonexistent-dir-flux-trt/x.png"), b"x").unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(msg.starts_with("cannot write /nonexistent-dir-flux-trt/x.png: "), "{msg}");
        assert!(!msg.contains(".tmp") && msg.matches("x.png").count() == 1, "{msg}");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}

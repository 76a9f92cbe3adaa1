//! Integrity of an engine folder's own files: the exporter and the TensorRT builder record the
//! size and BLAKE3 of every file they write (`files` in `manifest.json`, format 2); this module
//! is the one place that checks them — when an engine is opened ([`check_onnx`], [`check_plan`],
//! [`check_files`]) and by `flux-trt verify` ([`verify_dir`]).
//!
//! # Policy ([`VerifyPolicy`])
//! Opening always compares the **sizes** (a `stat` per file: catches truncation, a missing or
//! replaced file). The **hashes** are checked according to the policy:
//! - `always`: every open hashes every file it reads (≈ the time to read the files once);
//! - `first` (default): the first open hashes, then records a *verified stamp* per file
//!   (size, mtime, ctime, inode and the recorded hash) in `manifest.verified.json` next to the
//!   manifest (written atomically). Later opens whose files still match their stamp skip the
//!   hash, so a service pays it once per engine build. Rewriting, replacing or truncating a
//!   file changes its stamp key and brings the hash back; what `first` cannot see is silent
//!   media corruption after the first check (use `always` or run `flux-trt verify` for that).
//!   If the folder is read-only the stamp cannot be written and every open hashes (logged).
//! - `never`: sizes only.
//!
//! Manifests of format 1 have no records: they still load, with a warning that their files
//! cannot be verified (rebuild the engine to add them); the graph file's own BLAKE3 that format 1
//! kept is still checked.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{EngineArtifact, MANIFEST_FILE};
use crate::util::{FileError, FileOp};

/// The stamp file `first` writes next to `manifest.json`.
pub const STAMP_FILE: &str = "manifest.verified.json";

/// What a recorded file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileRole {
    /// The ONNX graph (`model.onnx`).
    Onnx,
    /// The ONNX external data (`model.onnx.data`).
    OnnxData,
    /// A TensorRT plan.
    Plan,
    /// A file copied from the diffusers pipeline (tokenizers, scheduler config).
    Copied,
}

impl FileRole {
    pub fn name(self) -> &'static str {
        match self {
            FileRole::Onnx => "onnx",
            FileRole::OnnxData => "onnx-data",
            FileRole::Plan => "plan",
            FileRole::Copied => "copied",
        }
    }
}

/// Size and BLAKE3 of one file of the engine folder, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the manifest's folder (`/`-separated, no `..`).
    pub path: String,
    pub role: FileRole,
    pub bytes: u64,
    pub blake3: String,
}

impl FileRecord {
    /// Hashes `dir/rel` now.
    pub fn hash(dir: &Path, rel: &str, role: FileRole) -> Result<Self, FileError> {
        let p = dir.join(rel);
        let (blake3, bytes) = crate::util::hash_file(&p).map_err(|e| FileError::new(FileOp::Read, &p, e))?;
        Ok(FileRecord { path: rel.to_string(), role, bytes, blake3 })
    }
}

/// Adds `record` to `records`, replacing a record of the same path.
pub fn upsert(records: &mut Vec<FileRecord>, record: FileRecord) {
    match records.iter_mut().find(|r| r.path == record.path) {
        Some(r) => *r = record,
        None => records.push(record),
    }
}

/// When opening an engine hashes its files (sizes are always checked); see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum VerifyPolicy {
    /// Hash every file on every open.
    Always,
    /// Hash once, then trust a verified stamp keyed by size, mtime, ctime and inode.
    #[default]
    First,
    /// Sizes only.
    Never,
}

impl std::fmt::Display for VerifyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerifyPolicy::Always => "always",
            VerifyPolicy::First => "first",
            VerifyPolicy::Never => "never",
        })
    }
}

/// An engine file that is not what its manifest recorded. Raised before the file is used.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("{}: missing; {} records it ({bytes} bytes)", path.display(), manifest.display())]
    Missing { path: PathBuf, manifest: PathBuf, bytes: u64 },
    #[error("{}: {found} bytes, {} records {expected} (truncated, extended or replaced)", path.display(), manifest.display())]
    Size { path: PathBuf, manifest: PathBuf, expected: u64, found: u64 },
    #[error("{}: BLAKE3 {found} differs from {expected} recorded in {} (the file is corrupted or was changed)", path.display(), manifest.display())]
    Hash { path: PathBuf, manifest: PathBuf, expected: String, found: String },
    #[error("{}: file record `{path}` is not a relative path inside the engine folder", manifest.display())]
    BadRecord { manifest: PathBuf, path: String },
    #[error(transparent)]
    File(#[from] FileError),
}

impl IntegrityError {
    /// The engine file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            IntegrityError::Missing { path, .. } | IntegrityError::Size { path, .. } | IntegrityError::Hash { path, .. } => path,
            IntegrityError::BadRecord { manifest, .. } => manifest,
            IntegrityError::File(f) => &f.path,
        }
    }
}

/// What a check did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Files whose size was checked.
    pub files: usize,
    /// Files hashed now.
    pub hashed: usize,
    pub bytes_hashed: u64,
    /// Files whose hash was skipped on a matching verified stamp (`first`).
    pub stamped: usize,
    /// The manifest has no records (format 1): nothing but the legacy graph hash was checked.
    pub unverifiable: bool,
}

/// The stamp key of a file: anything that changes when its bytes are rewritten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StampEntry {
    bytes: u64,
    mtime_ns: u64,
    ctime_ns: u64,
    inode: u64,
    blake3: String,
}

impl StampEntry {
    fn of(meta: &std::fs::Metadata, blake3: &str) -> Self {
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64);
        #[cfg(unix)]
        let (ctime_ns, inode) = {
            use std::os::unix::fs::MetadataExt;
            ((meta.ctime() as u64).wrapping_mul(1_000_000_000).wrapping_add(meta.ctime_nsec() as u64), meta.ino())
        };
        #[cfg(not(unix))]
        let (ctime_ns, inode) = (0, 0);
        StampEntry { bytes: meta.len(), mtime_ns, ctime_ns, inode, blake3: blake3.to_string() }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stamp {
    files: BTreeMap<String, StampEntry>,
}

fn read_stamp(dir: &Path) -> Stamp {
    std::fs::read(dir.join(STAMP_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write_stamp(dir: &Path, stamp: &Stamp) {
    let path = dir.join(STAMP_FILE);
    let result = serde_json::to_vec_pretty(stamp)
        .map_err(std::io::Error::other)
        .map_err(|e| FileError::new(FileOp::Write, &path, e))
        .and_then(|json| crate::util::write_atomic(&path, &json));
    if let Err(e) = result {
        tracing::warn!(stamp = %path.display(), error = %e, cause = %e.source, "cannot record the verified stamp; the next open hashes the engine files again");
    }
}

/// Whether a manifest's file name `rel` stays inside the engine folder: relative, only plain
/// components (no `..`, `.`, root or prefix), not empty.
pub(crate) fn inside_folder(rel: &str) -> bool {
    !rel.is_empty() && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)))
}

/// `dir/rel` for a record path that stays inside `dir`.
fn resolve(dir: &Path, rel: &str) -> Result<PathBuf, IntegrityError> {
    if !inside_folder(rel) {
        return Err(IntegrityError::BadRecord { manifest: dir.join(MANIFEST_FILE), path: rel.to_string() });
    }
    Ok(dir.join(rel))
}

/// Checks the sizes of `records` (files in `dir`, recorded in `dir/manifest.json`), then their
/// hashes per `policy`. The first mismatch is the error; sizes are all checked before any hash.
pub fn check_files(dir: &Path, records: &[&FileRecord], policy: VerifyPolicy) -> Result<CheckReport, IntegrityError> {
    let manifest = dir.join(MANIFEST_FILE);
    let mut metas = Vec::with_capacity(records.len());
    for r in records {
        let path = resolve(dir, &r.path)?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(IntegrityError::Missing { path, manifest, bytes: r.bytes }),
            Err(e) => return Err(FileError::new(FileOp::Read, path, e).into()),
        };
        if meta.len() != r.bytes {
            return Err(IntegrityError::Size { path, manifest, expected: r.bytes, found: meta.len() });
        }
        metas.push((path, meta));
    }
    let mut report = CheckReport { files: records.len(), ..Default::default() };
    if policy == VerifyPolicy::Never {
        return Ok(report);
    }
    let mut stamp = if policy == VerifyPolicy::First { read_stamp(dir) } else { Stamp::default() };
    let mut stamp_changed = false;
    let t0 = Instant::now();
    for (r, (path, meta)) in records.iter().zip(&metas) {
        let key = StampEntry::of(meta, &r.blake3);
        if policy == VerifyPolicy::First && stamp.files.get(&r.path) == Some(&key) {
            report.stamped += 1;
            continue;
        }
        let (found, _) = crate::util::hash_file(path).map_err(|e| FileError::new(FileOp::Read, path, e))?;
        report.hashed += 1;
        report.bytes_hashed += meta.len();
        if found != r.blake3 {
            stamp.files.remove(&r.path);
            return Err(IntegrityError::Hash { path: path.clone(), manifest, expected: r.blake3.clone(), found });
        }
        if policy == VerifyPolicy::First {
            stamp.files.insert(r.path.clone(), key);
            stamp_changed = true;
        }
    }
    if stamp_changed {
        write_stamp(dir, &stamp);
    }
    if report.hashed > 0 {
        tracing::info!(dir = %dir.display(), files = report.hashed, bytes = report.bytes_hashed, elapsed = ?t0.elapsed(), %policy, "engine files verified (BLAKE3)");
    }
    Ok(report)
}

/// Warns (once per call) that a format-1 manifest cannot be verified.
fn warn_unverifiable(dir: &Path) {
    tracing::warn!(
        manifest = %dir.join(MANIFEST_FILE).display(),
        "manifest format 1 records no sizes or hashes of the engine files: they cannot be verified (rebuild the engine with this flux-trt to record them)"
    );
}

/// The one check before ONNX Runtime reads an engine or component folder: every recorded file
/// except TensorRT plans (sizes, then hashes per `policy`). A format-1 manifest (no `files`)
/// gets the legacy check of the graph file `model_file` against its BLAKE3 `model_blake3`
/// (`onnx.file`, `onnx.blake3`) unless the policy is `never`.
pub fn check_onnx(dir: &Path, files: &[FileRecord], model_file: &str, model_blake3: &str, policy: VerifyPolicy) -> Result<CheckReport, IntegrityError> {
    if files.is_empty() {
        warn_unverifiable(dir);
        let mut report = CheckReport { unverifiable: true, ..Default::default() };
        if policy != VerifyPolicy::Never {
            let model = dir.join(model_file);
            let (found, bytes) = crate::util::hash_file(&model).map_err(|e| FileError::new(FileOp::Read, &model, e))?;
            if found != model_blake3 {
                return Err(IntegrityError::Hash { path: model, manifest: dir.join(MANIFEST_FILE), expected: model_blake3.to_string(), found });
            }
            (report.files, report.hashed, report.bytes_hashed) = (1, 1, bytes);
        }
        return Ok(report);
    }
    let selected: Vec<&FileRecord> = files.iter().filter(|r| r.role != FileRole::Plan).collect();
    check_files(dir, &selected, policy)
}

/// The one check before TensorRT reads a plan: the plan's record (or, for a format-1 manifest,
/// the plan's BLAKE3 in `engine.blake3` unless the policy is `never`).
pub fn check_plan(dir: &Path, files: &[FileRecord], engine: &EngineArtifact, policy: VerifyPolicy) -> Result<CheckReport, IntegrityError> {
    let selected: Vec<&FileRecord> = files.iter().filter(|r| r.role == FileRole::Plan && r.path == engine.file).collect();
    if selected.is_empty() {
        warn_unverifiable(dir);
        let mut report = CheckReport { unverifiable: true, ..Default::default() };
        if policy != VerifyPolicy::Never {
            let plan = dir.join(&engine.file);
            let (found, bytes) = crate::util::hash_file(&plan).map_err(|e| FileError::new(FileOp::Read, &plan, e))?;
            if found != engine.blake3 {
                return Err(IntegrityError::Hash { path: plan, manifest: dir.join(MANIFEST_FILE), expected: engine.blake3.clone(), found });
            }
            (report.files, report.hashed, report.bytes_hashed) = (1, 1, bytes);
        }
        return Ok(report);
    }
    check_files(dir, &selected, policy)
}

/// State of one file in a [`VerifyReport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    Ok,
    Missing,
    Size,
    Hash,
    Unreadable,
}

/// One recorded file, as `flux-trt verify` found it.
#[derive(Clone, Debug, Serialize)]
pub struct FileStatus {
    pub manifest: PathBuf,
    pub path: PathBuf,
    pub role: FileRole,
    pub state: FileState,
    pub expected_bytes: u64,
    pub found_bytes: Option<u64>,
    pub expected_blake3: String,
    pub found_blake3: Option<String>,
    /// The error text for `unreadable` (and bad records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One manifest found in the engine folder.
#[derive(Clone, Debug, Serialize)]
pub struct ManifestStatus {
    pub path: PathBuf,
    pub format_version: u32,
    pub records: usize,
    /// False for manifests without records (format 1): their files cannot be verified.
    pub verifiable: bool,
}

/// Result of [`verify_dir`].
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub engine: PathBuf,
    /// True when every recorded file matches and every manifest has records.
    pub ok: bool,
    pub manifests: Vec<ManifestStatus>,
    pub files: Vec<FileStatus>,
    pub bytes_hashed: u64,
    pub seconds: f64,
}

impl VerifyReport {
    /// The files that do not match their record.
    pub fn mismatches(&self) -> impl Iterator<Item = &FileStatus> {
        self.files.iter().filter(|f| f.state != FileState::Ok)
    }
}

/// The manifests of an engine folder: the top level and the pipeline component folders present.
fn manifest_dirs(dir: &Path) -> Vec<PathBuf> {
    use super::component::{TEXT_ENCODER_2_DIR, TEXT_ENCODER_DIR, VAE_DECODER_DIR};
    std::iter::once(dir.to_path_buf())
        .chain([TEXT_ENCODER_DIR, TEXT_ENCODER_2_DIR, VAE_DECODER_DIR].map(|d| dir.join(d)))
        .filter(|d| d.join(MANIFEST_FILE).is_file())
        .collect()
}

/// Checks every file recorded by every manifest of the engine folder `dir` (sizes, then a full
/// BLAKE3 of each, each file hashed on all cores), whatever the policy. `progress(done, total)`
/// reports bytes hashed. Folders whose files all match get a fresh verified stamp.
pub fn verify_dir(dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport, super::ManifestError> {
    #[derive(Deserialize)]
    struct Probe {
        format_version: u32,
        #[serde(default)]
        files: Vec<FileRecord>,
    }
    let t0 = Instant::now();
    let dirs = manifest_dirs(dir);
    if dirs.is_empty() {
        let path = dir.join(MANIFEST_FILE);
        return Err(super::ManifestError::File(FileError::new(FileOp::Read, path, std::io::Error::from(std::io::ErrorKind::NotFound))));
    }
    let mut manifests = Vec::new();
    // (folder, record, path, status)
    let mut todo: Vec<(PathBuf, FileRecord, FileStatus, Option<std::fs::Metadata>)> = Vec::new();
    for d in &dirs {
        let mpath = d.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&mpath).map_err(|e| super::ManifestError::File(FileError::new(FileOp::Read, &mpath, e)))?;
        let probe: Probe = serde_json::from_str(&text).map_err(|source| super::ManifestError::Parse { path: mpath.clone(), source })?;
        manifests.push(ManifestStatus {
            path: mpath.clone(),
            format_version: probe.format_version,
            records: probe.files.len(),
            verifiable: !probe.files.is_empty(),
        });
        for r in probe.files {
            let mut st = FileStatus {
                manifest: mpath.clone(),
                path: d.join(&r.path),
                role: r.role,
                state: FileState::Ok,
                expected_bytes: r.bytes,
                found_bytes: None,
                expected_blake3: r.blake3.clone(),
                found_blake3: None,
                error: None,
            };
            let meta = match resolve(d, &r.path) {
                Err(e) => {
                    st.state = FileState::Unreadable;
                    st.error = Some(e.to_string());
                    None
                }
                Ok(p) => match std::fs::metadata(&p) {
                    Ok(m) => {
                        st.found_bytes = Some(m.len());
                        if m.len() != r.bytes {
                            st.state = FileState::Size;
                        }
                        Some(m)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        st.state = FileState::Missing;
                        None
                    }
                    Err(e) => {
                        st.state = FileState::Unreadable;
                        st.error = Some(e.to_string());
                        None
                    }
                },
            };
            todo.push((d.clone(), r, st, meta));
        }
    }
    let total: u64 = todo.iter().filter(|t| t.2.state == FileState::Ok).map(|t| t.1.bytes).sum();
    let mut done = 0u64;
    progress(0, total);
    for (_, r, st, _) in todo.iter_mut().filter(|t| t.2.state == FileState::Ok) {
        let base = done;
        match crate::util::hash_file_with_progress(&st.path, &mut |n| progress(base + n, total)) {
            Ok((h, _)) => {
                if h != r.blake3 {
                    st.state = FileState::Hash;
                }
                st.found_blake3 = Some(h);
            }
            Err(e) => {
                st.state = FileState::Unreadable;
                st.error = Some(e.to_string());
            }
        }
        done += r.bytes;
        progress(done, total);
    }
    // Fresh stamps for folders whose files all match.
    for d in &dirs {
        let mine: Vec<_> = todo.iter().filter(|t| &t.0 == d).collect();
        if !mine.is_empty() && mine.iter().all(|t| t.2.state == FileState::Ok) {
            let mut stamp = read_stamp(d);
            for (_, r, _, meta) in &mine {
                if let Some(m) = meta {
                    stamp.files.insert(r.path.clone(), StampEntry::of(m, &r.blake3));
                }
            }
            write_stamp(d, &stamp);
        }
    }
    let files: Vec<FileStatus> = todo.into_iter().map(|t| t.2).collect();
    let ok = files.iter().all(|f| f.state == FileState::Ok) && manifests.iter().all(|m| m.verifiable);
    Ok(VerifyReport { engine: dir.to_path_buf(), ok, manifests, files, bytes_hashed: done, seconds: t0.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, Vec<FileRecord>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"graph bytes").unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("model.onnx.data"), &data).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), br#"{"format_version": 2}"#).unwrap();
        let recs = vec![
            FileRecord::hash(dir.path(), "model.onnx", FileRole::Onnx).unwrap(),
            FileRecord::hash(dir.path(), "model.onnx.data", FileRole::OnnxData).unwrap(),
        ];
        (dir, recs)
    }

    fn check(dir: &Path, recs: &[FileRecord], policy: VerifyPolicy) -> Result<CheckReport, IntegrityError> {
        check_files(dir, &recs.iter().collect::<Vec<_>>(), policy)
    }

    fn flip(path: &Path, at: usize) {
        let mut b = std::fs::read(path).unwrap();
        b[at] ^= 0x40;
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn bit_flip_truncation_missing_file_are_typed_errors_naming_the_file() {
        let (dir, recs) = folder();
        let data = dir.path().join("model.onnx.data");
        assert_eq!(check(dir.path(), &recs, VerifyPolicy::Always).unwrap().hashed, 2);
        flip(&data, 123_456);
        match check(dir.path(), &recs, VerifyPolicy::Always) {
            Err(IntegrityError::Hash { path, .. }) => assert_eq!(path, data),
            other => panic!("bit flip: {other:?}"),
        }
        // Sizes only: a same-size flip passes `never`.
        assert!(check(dir.path(), &recs, VerifyPolicy::Never).is_ok());
        let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
        f.set_len(1000).unwrap();
        match check(dir.path(), &recs, VerifyPolicy::Never) {
            Err(e @ IntegrityError::Size { expected: 200_000, found: 1000, .. }) => {
                assert_eq!(e.path(), data);
                assert!(e.to_string().contains("model.onnx.data: 1000 bytes"), "{e}");
            }
            other => panic!("truncation: {other:?}"),
        }
        std::fs::remove_file(&data).unwrap();
        match check(dir.path(), &recs, VerifyPolicy::Never) {
            Err(IntegrityError::Missing { path, .. }) => assert_eq!(path, data),
            other => panic!("missing: {other:?}"),
        }
        let bad = [FileRecord { path: "../escape".into(), role: FileRole::Copied, bytes: 1, blake3: String::new() }];
        assert!(matches!(check(dir.path(), &bad, VerifyPolicy::Never), Err(IntegrityError::BadRecord { .. })));
    }

    #[test]
    fn first_hashes_once_then_trusts_the_stamp_until_the_file_changes() {
        let (dir, recs) = folder();
        let r = check(dir.path(), &recs, VerifyPolicy::First).unwrap();
        assert_eq!((r.hashed, r.stamped), (2, 0));
        assert!(dir.path().join(STAMP_FILE).is_file());
        let r = check(dir.path(), &recs, VerifyPolicy::First).unwrap();
        assert_eq!((r.hashed, r.stamped), (0, 2));
        // Rewriting the file (same size, one bit) changes its mtime/ctime: hashed again, caught.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let data = dir.path().join("model.onnx.data");
        flip(&data, 7);
        match check(dir.path(), &recs, VerifyPolicy::First) {
            Err(IntegrityError::Hash { path, .. }) => assert_eq!(path, data),
            other => panic!("{other:?}"),
        }
        // A stamp recorded for another hash does not count.
        flip(&data, 7);
        let mut other = recs.clone();
        other[1].blake3 = "0".repeat(64);
        assert!(matches!(check(dir.path(), &other, VerifyPolicy::First), Err(IntegrityError::Hash { .. })));
    }

    #[test]
    fn verify_dir_names_every_mismatching_file() {
        let (dir, recs) = folder();
        let m = serde_json::json!({"format_version": 2, "files": recs});
        std::fs::write(dir.path().join(MANIFEST_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
        let r = verify_dir(dir.path(), &mut |_, _| {}).unwrap();
        assert!(r.ok && r.files.len() == 2 && r.bytes_hashed == 200_011, "{r:?}");
        flip(&dir.path().join("model.onnx"), 0);
        std::fs::write(dir.path().join("model.onnx.data"), b"short").unwrap();
        let r = verify_dir(dir.path(), &mut |_, _| {}).unwrap();
        let bad: Vec<_> = r.mismatches().map(|f| (f.path.file_name().unwrap().to_str().unwrap().to_string(), f.state)).collect();
        assert_eq!(bad, [("model.onnx".to_string(), FileState::Hash), ("model.onnx.data".to_string(), FileState::Size)]);
        assert!(!r.ok);
        std::fs::write(dir.path().join(MANIFEST_FILE), br#"{"format_version": 1}"#).unwrap();
        let r = verify_dir(dir.path(), &mut |_, _| {}).unwrap();
        assert!(!r.ok && !r.manifests[0].verifiable);
    }
}

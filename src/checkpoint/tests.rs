//! Unit tests on synthetic checkpoints written from the mapping tables (fixture-based tests
//! against diffusers-made files are in tests/checkpoint.rs).

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::bfl::{bfl_sources, diffusers_sources, Source};
use super::{Checkpoint, CheckpointError, Layout};
use crate::flux::{FluxConfig, Variant};

fn small(variant: Variant, head_dim: usize) -> FluxConfig {
    FluxConfig {
        hidden_size: 2 * head_dim,
        num_heads: 2,
        head_dim,
        num_double_blocks: 2,
        num_single_blocks: 1,
        context_dim: 24,
        pooled_dim: 20,
        mlp_hidden: 4 * 2 * head_dim,
        axes_dim: FluxConfig::default_axes_dim(head_dim).unwrap_or([0; 3]),
        ..FluxConfig::flux1(variant)
    }
}

/// Writes every source as an f32 tensor (element i of tensor k = k + i/1000) under `prefix`.
fn write(dir: &Path, name: &str, prefix: &str, sources: &[Source], skip: impl Fn(&str) -> bool) -> PathBuf {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| !skip(&s.key))
        .map(|(k, s)| {
            let n: usize = s.shape.iter().product();
            let bytes = (0..n).flat_map(|i| (k as f32 + i as f32 / 1000.0).to_le_bytes()).collect();
            (format!("{prefix}{}", s.key), s.shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    let p = dir.join(name);
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    p
}

#[test]
fn detects_every_variant_in_both_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    for variant in [Variant::Dev, Variant::Schnell, Variant::Fill, Variant::Control] {
        let c = small(variant, 32);
        let b = Checkpoint::open(&write(tmp.path(), "b.safetensors", "", &bfl_sources(&c), |_| false)).unwrap();
        let d = Checkpoint::open(&write(tmp.path(), "d.safetensors", "", &diffusers_sources(&c), |_| false)).unwrap();
        assert_eq!(b.config(), &c, "{variant}");
        assert_eq!(d.config(), &c, "{variant}");
        assert_eq!((b.layout(), d.layout()), (Layout::Bfl, Layout::Diffusers));
    }
}

#[test]
fn single_blocks_only() {
    let tmp = tempfile::tempdir().unwrap();
    let c = FluxConfig { num_double_blocks: 0, ..small(Variant::Dev, 32) };
    let ck = Checkpoint::open(&write(tmp.path(), "b.safetensors", "", &bfl_sources(&c), |_| false)).unwrap();
    assert_eq!(ck.config(), &c);
}

#[test]
fn head_dim_without_default_axes_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let c = small(Variant::Dev, 16); // 16 → (2, 7, 7): odd halves, no default split
    let p = write(tmp.path(), "b.safetensors", "", &bfl_sources(&c), |_| false);
    let e = Checkpoint::open_checked(&p).err().unwrap();
    assert!(matches!(&e, CheckpointError::Tensor { tensor, .. } if tensor == "double_blocks.0.img_attn.norm.query_norm.scale"), "{e:?}");
    assert!(e.to_string().contains("axes"), "{e}");
}

#[test]
fn partially_prefixed_keys_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let c = small(Variant::Schnell, 32);
    let p = write(tmp.path(), "b.safetensors", "model.diffusion_model.", &bfl_sources(&c), |_| false);
    assert_eq!(Checkpoint::open(&p).unwrap().key_prefix(), "model.diffusion_model.");
    // One key without the prefix that every other key carries.
    let data = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut views: Vec<(String, TensorView<'_>)> = st.tensors();
    let one = 1f32.to_le_bytes();
    views.push(("img_in.weight".into(), TensorView::new(Dtype::F32, vec![1], &one).unwrap()));
    let q = tmp.path().join("mixed-prefix.safetensors");
    std::fs::write(&q, safetensors::serialize(views, None).unwrap()).unwrap();
    let e = Checkpoint::open_checked(&q).err().unwrap();
    assert!(matches!(&e, CheckpointError::UnknownKey { key, .. } if key == "img_in.weight"), "{e:?}");
}

#[test]
fn missing_block_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let c = FluxConfig { num_double_blocks: 3, ..small(Variant::Dev, 32) };
    let p = write(tmp.path(), "b.safetensors", "", &bfl_sources(&c), |k| k.starts_with("double_blocks.1."));
    let e = Checkpoint::open_checked(&p).err().unwrap();
    assert!(matches!(&e, CheckpointError::MissingTensor { tensor, .. } if tensor == "double_blocks.1.img_attn.norm.query_norm.scale"), "{e:?}");
}

#[test]
fn trailing_bytes_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let c = small(Variant::Schnell, 32);
    let p = write(tmp.path(), "b.safetensors", "", &bfl_sources(&c), |_| false);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(&[0; 12]);
    std::fs::write(&p, bytes).unwrap();
    let e = Checkpoint::open_checked(&p).err().unwrap();
    assert!(matches!(e, CheckpointError::Safetensors { .. }), "{e:?}");
    assert!(e.to_string().contains("12 unexpected bytes"), "{e}");
}

//! RoPE tables for the graph's `rope_cos` / `rope_sin` inputs from FLUX position ids.

use crate::flux::FluxConfig;

use super::HostTensor;

/// Rows of an ids tensor: `[S, 3]`, or `[1, S, 3]` as older diffusers pipelines stored them.
fn id_rows(name: &str, t: &HostTensor) -> Result<Vec<[f32; 3]>, String> {
    if !matches!(t.shape(), [_, 3] | [1, _, 3]) {
        return Err(format!("tensor `{name}` has shape {:?}, expected [S, 3]", t.shape()));
    }
    Ok(t.data().chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
}

/// `(rope_cos, rope_sin)`, each `[S_txt + S_img, head_dim/2]`, from `txt_ids` and `img_ids`
/// with [`crate::flux::rope_tables`].
pub fn tables(config: &FluxConfig, txt_ids: &HostTensor, img_ids: &HostTensor) -> Result<(HostTensor, HostTensor), String> {
    let txt = id_rows("txt_ids", txt_ids)?;
    let img = id_rows("img_ids", img_ids)?;
    let (cos, sin) = crate::flux::rope_tables(config, &txt, &img);
    let shape = vec![txt.len() + img.len(), config.axes_dim.iter().sum::<usize>() / 2];
    let bad = || format!("RoPE tables do not have shape {shape:?}");
    let cos = HostTensor::new(shape.clone(), cos).ok_or_else(bad)?;
    let sin = HostTensor::new(shape.clone(), sin).ok_or_else(bad)?;
    Ok((cos, sin))
}

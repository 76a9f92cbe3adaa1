//! RoPE tables for the graph's `rope_cos` / `rope_sin` inputs from FLUX position ids.

use crate::flux::FluxConfig;

use super::HostTensor;

/// `(rope_cos, rope_sin)`, each `[S_txt + S_img, head_dim/2]`, from `txt_ids` [S_txt,3] and
/// `img_ids` [S_img,3] (a leading batch axis of 1 is accepted, as diffusers' older ids had).
pub fn tables(config: &FluxConfig, txt_ids: &HostTensor, img_ids: &HostTensor) -> Result<(HostTensor, HostTensor), String> {
    let _ = (config, txt_ids, img_ids);
    Err("computing RoPE tables from txt_ids/img_ids needs flux::rope_tables (exporter branch); give rope_cos/rope_sin".into())
}

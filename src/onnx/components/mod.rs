//! Pipeline components besides the transformer (placeholder until the shared component
//! manifest/writer lands): the VAE decoder.

pub mod vae;

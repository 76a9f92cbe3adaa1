//! LoRA slots in a graph (the transformer's and the text encoders'): the zero, overridable
//! `lora.<module>.A [max_rank, in]` / `lora.<module>.B [out, max_rank]` initializers of a
//! [`SlotPlan`], checked against the model's Linear layers, and the delta `(x·Aᵀ)·Bᵀ` a slotted
//! Linear adds.

use std::collections::{HashMap, HashSet};

use super::graph::Graph;
use super::proto::attr_int;
use super::OnnxError;
use crate::flux::LinearModule;
use crate::lora::SlotPlan;

/// A model's slot-capable Linear layers and which of them carry a slot.
#[derive(Default)]
pub(crate) struct LoraSlots {
    modules: HashMap<String, LinearModule>,
    slotted: HashSet<String>,
}

impl LoraSlots {
    /// Adds `plan`'s slots to `g` (zeros in the graph's float dtype, overridable), each checked to
    /// name one of `modules` with the same `[out × in]`.
    pub fn declare(g: &mut Graph<'_>, plan: &SlotPlan, modules: Vec<LinearModule>) -> Result<Self, OnnxError> {
        let modules: HashMap<String, LinearModule> = modules.into_iter().map(|m| (m.name.clone(), m)).collect();
        let mut slotted = HashSet::new();
        for s in &plan.slots {
            let m = modules.get(&s.module).ok_or_else(|| OnnxError::BadSlot { module: s.module.clone(), detail: "unknown module".into() })?;
            if m.in_features != s.in_features || m.out_features != s.out_features {
                return Err(OnnxError::BadSlot {
                    module: s.module.clone(),
                    detail: format!("slot is [{}×{}], the layer is [{}×{}]", s.out_features, s.in_features, m.out_features, m.in_features),
                });
            }
            let dt = g.dtype;
            g.overridable_zeros(&s.a_name(), &[plan.max_rank, s.in_features], dt);
            g.overridable_zeros(&s.b_name(), &[s.out_features, plan.max_rank], dt);
            slotted.insert(s.module.clone());
        }
        Ok(LoraSlots { modules, slotted })
    }

    /// The Linear layer `name` of the model.
    pub fn module(&self, name: &str) -> Result<&LinearModule, OnnxError> {
        self.modules.get(name).ok_or_else(|| OnnxError::BadSlot { module: name.into(), detail: "not in the model config".into() })
    }

    /// LoRA delta `(x·Aᵀ)·Bᵀ` of `module` on 2-D `x2` (nodes in scope `lora`), if it has a slot.
    pub fn delta(&self, g: &mut Graph<'_>, x2: &str, module: &str) -> Option<String> {
        if !self.slotted.contains(module) {
            return None;
        }
        let (a, b) = (format!("lora.{module}.A"), format!("lora.{module}.B"));
        let t = vec![attr_int("transB", 1)];
        Some(g.scoped("lora", |g| {
            let h = g.op("Gemm", &[x2, &a], t.clone());
            g.op("Gemm", &[&h, &b], t)
        }))
    }
}

//! Prometheus metrics (OpenMetrics text via `prometheus-client`), named after vLLM's where one
//! exists (`flux_trt_num_requests_waiting` ~ `vllm:num_requests_waiting`, `..._lora_requests_info`
//! with `running_lora_adapters` / `waiting_lora_adapters` / `max_lora` for LoRA-aware routers).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    pub(crate) status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LoraInfoLabels {
    pub(crate) running_lora_adapters: String,
    pub(crate) waiting_lora_adapters: String,
    pub(crate) max_lora: String,
}

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) waiting: Gauge,
    pub(crate) running: Gauge,
    pub(crate) requests: Family<StatusLabel, Counter>,
    pub(crate) queue_time: Histogram,
    pub(crate) e2e_latency: Histogram,
    pub(crate) image_latency: Histogram,
    pub(crate) step_latency: Histogram,
    pub(crate) swaps: Counter,
    pub(crate) swap_latency: Histogram,
    pub(crate) stage_latency: Histogram,
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    pub(crate) cache_bytes: Gauge,
    pub(crate) cache_sets: Gauge,
    pub(crate) lora_info: Family<LoraInfoLabels, Gauge>,
    /// GPU memory in use (native CUDA backend; not exported on ONNX Runtime).
    pub(crate) device_memory: Gauge,
}

fn seconds(start: f64, factor: f64, n: u16) -> Histogram {
    Histogram::new(exponential_buckets(start, factor, n))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("flux_trt");
        let m = Metrics {
            waiting: Gauge::default(),
            running: Gauge::default(),
            requests: Family::default(),
            queue_time: seconds(0.001, 2.0, 20),
            e2e_latency: seconds(0.01, 2.0, 16),
            image_latency: seconds(0.01, 2.0, 16),
            step_latency: seconds(0.0005, 2.0, 18),
            swaps: Counter::default(),
            swap_latency: seconds(0.0001, 2.0, 18),
            stage_latency: seconds(0.0001, 2.0, 18),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_sets: Gauge::default(),
            lora_info: Family::default(),
            device_memory: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("num_requests_waiting", "Requests in the queue", m.waiting.clone());
        registry.register("num_requests_running", "Requests generating now", m.running.clone());
        registry.register("requests", "Finished image requests by HTTP status (499: client went away)", m.requests.clone());
        registry.register("request_queue_time_seconds", "Time a request waited in the queue", m.queue_time.clone());
        registry.register("e2e_request_latency_seconds", "Time from acceptance to response", m.e2e_latency.clone());
        registry.register("image_latency_seconds", "Generation time of one image (encode, denoise, decode)", m.image_latency.clone());
        registry.register("step_latency_seconds", "Time of one denoising step", m.step_latency.clone());
        registry.register("adapter_swaps", "Adapter-set installs", m.swaps.clone());
        registry.register("adapter_swap_seconds", "Time of one adapter-set install", m.swap_latency.clone());
        registry.register("adapter_stage_seconds", "Time to read, validate and lay out one adapter set", m.stage_latency.clone());
        registry.register("staged_cache_hits", "Requests whose adapter set was installed or already staged", m.cache_hits.clone());
        registry.register("staged_cache_misses", "Requests that staged their adapter set on the request path", m.cache_misses.clone());
        registry.register("staged_cache_bytes", "Bytes of staged adapter sets held", m.cache_bytes.clone());
        registry.register("staged_cache_sets", "Staged adapter sets held", m.cache_sets.clone());
        registry.register("lora_requests_info", "Running and waiting adapter sets (as vllm:lora_requests_info)", m.lora_info.clone());
        Metrics { registry, ..m }
    }

    /// Exports the GPU memory gauge (only engines on a GPU backend have one).
    pub(crate) fn register_device_memory(&mut self) {
        self.registry.register("device_memory_used_bytes", "GPU memory in use on the transformer's device (total - free)", self.device_memory.clone());
    }

    pub(crate) fn count(&self, status: u16) {
        self.requests.get_or_create(&StatusLabel { status: status.to_string() }).inc();
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

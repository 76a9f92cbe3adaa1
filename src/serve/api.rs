//! The wire format: the OpenAI-style image request (parsed field by field so every error names
//! its field), the response, and the OpenAI error shape `{"error": {message, type, param, code}}`.

use serde::Serialize;
use serde_json::{Map, Value};

use super::Limits;

/// An error answer: HTTP status plus the OpenAI error body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `rate_limit_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field the error is about (`size`, `loras[1].name`, ...).
    pub param: Option<String>,
    /// A stable machine-readable code (`invalid_value`, `adapter_not_found`, `queue_full`, ...).
    pub code: &'static str,
    /// Seconds for a `Retry-After` header (429/503).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}
#[derive(Serialize)]
struct ErrorFields<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code, retry_after: None }
    }
    /// 400 about one field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { param: Some(param.into()), ..ApiError::new(400, "invalid_request_error", "invalid_value", message) }
    }
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "server_error", "internal_error", message)
    }
    /// The JSON body.
    pub fn body(&self) -> String {
        let b = ErrorBody { error: ErrorFields { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code } };
        serde_json::to_string(&b).unwrap_or_default()
    }
    /// The `status` label of the requests counter.
    pub fn status_label(&self) -> String {
        self.status.to_string()
    }
}

/// One adapter of a request, with its strength.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoraRef {
    pub name: String,
    pub strength: f32,
}

/// A validated image request.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRequest {
    pub prompt: String,
    pub prompt_2: Option<String>,
    pub n: usize,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance: f32,
    /// Image `i` uses `seed + i`.
    pub seed: u64,
    pub loras: Vec<LoraRef>,
}

fn get_u64(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| ApiError::invalid(field, format!("`{field}` must be a non-negative integer, got {v}"))),
    }
}

fn get_f32(v: &Value, field: &str) -> Result<f32, ApiError> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x.abs() <= f64::from(f32::MAX) => Ok(x as f32),
        _ => Err(ApiError::invalid(field, format!("`{field}` must be a finite number, got {v}"))),
    }
}

fn get_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::invalid(field, format!("`{field}` must be a string, got {v}"))),
    }
}

fn in_range(field: &str, v: u64, lo: u64, hi: u64) -> Result<usize, ApiError> {
    if v < lo || v > hi {
        return Err(ApiError::invalid(field, format!("`{field}` must be in {lo}..={hi}, got {v}")));
    }
    usize::try_from(v).map_err(|_| ApiError::invalid(field, format!("`{field}` is too large")))
}

/// `"WxH"` → (width, height), each a multiple of 16 and at most `max_side`.
pub fn parse_size(s: &str, max_side: usize) -> Result<(usize, usize), ApiError> {
    let bad = |m: String| ApiError::invalid("size", m);
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| bad(format!("`size` must be \"WIDTHxHEIGHT\", got {s:?}")))?;
    let parse = |t: &str| t.trim().parse::<usize>().map_err(|_| bad(format!("`size` must be \"WIDTHxHEIGHT\" with integer sides, got {s:?}")));
    let (w, h) = (parse(w)?, parse(h)?);
    for side in [w, h] {
        if side == 0 || side % 16 != 0 {
            return Err(bad(format!("`size` {s}: each side must be a positive multiple of 16")));
        }
        if side > max_side {
            return Err(bad(format!("`size` {s}: each side must be at most {max_side}")));
        }
    }
    Ok((w, h))
}

/// Parses and validates a request body against `limits`. Unknown OpenAI fields (`model`,
/// `quality`, `style`, `user`) are accepted and ignored.
pub fn parse_image_request(body: &[u8], limits: &Limits) -> Result<ImageRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")).with_code("invalid_json"))?;
    let Value::Object(obj) = v else {
        return Err(ApiError::invalid("body", "the body must be a JSON object"));
    };
    let prompt = get_str(&obj, "prompt")?.ok_or_else(|| ApiError::invalid("prompt", "`prompt` is required").with_code("missing_field"))?;
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid("prompt", "`prompt` must not be empty"));
    }
    if prompt.len() > limits.max_prompt_bytes {
        return Err(ApiError::invalid("prompt", format!("`prompt` is {} bytes, the limit is {}", prompt.len(), limits.max_prompt_bytes)));
    }
    let prompt_2 = get_str(&obj, "prompt_2")?.map(str::to_string);
    if prompt_2.as_ref().is_some_and(|p| p.len() > limits.max_prompt_bytes) {
        return Err(ApiError::invalid("prompt_2", format!("`prompt_2` is longer than {} bytes", limits.max_prompt_bytes)));
    }
    let n = in_range("n", get_u64(&obj, "n")?.unwrap_or(1), 1, limits.max_n as u64)?;
    let (width, height) = match get_str(&obj, "size")? {
        Some(s) => parse_size(s, limits.max_side)?,
        None => (limits.default_side, limits.default_side),
    };
    match get_str(&obj, "response_format")? {
        None | Some("b64_json") => {}
        Some(f) => return Err(ApiError::invalid("response_format", format!("`response_format` {f:?} is not supported; use \"b64_json\""))),
    }
    let steps = in_range("steps", get_u64(&obj, "steps")?.unwrap_or(limits.default_steps as u64), 1, limits.max_steps as u64)?;
    let guidance = match obj.get("guidance") {
        None | Some(Value::Null) => 3.5,
        Some(v) => get_f32(v, "guidance")?,
    };
    if !(0.0..=100.0).contains(&guidance) {
        return Err(ApiError::invalid("guidance", format!("`guidance` must be in 0..=100, got {guidance}")));
    }
    let seed =
        get_u64(&obj, "seed")?.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
    let loras = match obj.get("loras") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => parse_loras(items, limits.max_loras)?,
        Some(v) => return Err(ApiError::invalid("loras", format!("`loras` must be an array of {{\"name\", \"strength\"}}, got {v}"))),
    };
    Ok(ImageRequest { prompt: prompt.to_string(), prompt_2, n, width, height, steps, guidance, seed, loras })
}

fn parse_loras(items: &[Value], max: usize) -> Result<Vec<LoraRef>, ApiError> {
    if items.len() > max {
        return Err(ApiError::invalid("loras", format!("at most {max} adapters per request, got {}", items.len())));
    }
    let mut out: Vec<LoraRef> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |f: &str| format!("loras[{i}].{f}");
        let Value::Object(o) = item else {
            return Err(ApiError::invalid(format!("loras[{i}]"), format!("`loras[{i}]` must be an object {{\"name\", \"strength\"}}")));
        };
        let name = match o.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(ApiError::invalid(field("name"), format!("`{}` must be a non-empty string", field("name")))),
        };
        let strength = match o.get("strength") {
            None | Some(Value::Null) => 1.0,
            Some(v) => get_f32(v, &field("strength"))?,
        };
        if !(-4.0..=4.0).contains(&strength) {
            return Err(ApiError::invalid(field("strength"), format!("`{}` must be in -4..=4, got {strength}", field("strength"))));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(ApiError::invalid(field("name"), format!("adapter `{name}` is listed twice")));
        }
        out.push(LoraRef { name, strength });
    }
    Ok(out)
}

/// A validated `POST /v1/adapters` body: register the adapter folder's `file` as `name`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterRequest {
    pub name: String,
    pub file: String,
}

/// Parses a `POST /v1/adapters` body `{"name", "file"}` and checks both before anything is read:
/// the name's characters and length, and that the file is a plain `*.safetensors` name (no path).
pub fn parse_adapter_request(body: &[u8]) -> Result<AdapterRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")).with_code("invalid_json"))?;
    let field = |f: &str| match v.get(f) {
        Some(Value::String(x)) => Ok(x.clone()),
        _ => Err(ApiError::invalid(f, format!("`{f}` is required and must be a string"))),
    };
    let (name, file) = (field("name")?, field("file")?);
    super::registry::check_name(&name)?;
    super::registry::plain_file(&file)?;
    Ok(AdapterRequest { name, file })
}

impl ApiError {
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

/// Text cut by a tokenizer's length limit (as `flux-trt generate` reports it).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Truncation {
    pub encoder: &'static str,
    pub removed: String,
}

/// Per-request timings in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TimingsMs {
    /// Waiting in the queue.
    pub queue_ms: f64,
    /// Staging the adapter set on the request path (0 when it was staged in the background).
    pub stage_ms: f64,
    /// Installing the set (0 when it was already installed).
    pub swap_ms: f64,
    pub tokenize_ms: f64,
    pub encode_ms: f64,
    pub denoise_ms: f64,
    pub decode_ms: f64,
    /// From acceptance to the response.
    pub total_ms: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ImageData {
    pub b64_json: String,
    pub seed: u64,
}

/// The success body of `POST /v1/images/generations`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ImageResponse {
    pub created: u64,
    pub data: Vec<ImageData>,
    pub adapters: Vec<LoraRef>,
    /// Whether this request installed its adapter set (a swap).
    pub swapped: bool,
    pub truncated: Vec<Truncation>,
    pub timings: TimingsMs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ImageRequest, ApiError> {
        parse_image_request(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn errors_name_their_field() {
        let param = |s: &str| parse(s).unwrap_err().param.unwrap();
        assert_eq!(param("{"), "body");
        assert_eq!(param("{}"), "prompt");
        assert_eq!(param(r#"{"prompt":"a","size":"100x64"}"#), "size");
        assert_eq!(param(r#"{"prompt":"a","size":"4096x4096"}"#), "size");
        assert_eq!(param(r#"{"prompt":"a","n":0}"#), "n");
        assert_eq!(param(r#"{"prompt":"a","steps":1000}"#), "steps");
        assert_eq!(param(r#"{"prompt":"a","loras":[{"name":"x"},{"name":"y","strength":"hi"}]}"#), "loras[1].strength");
        assert_eq!(param(r#"{"prompt":"a","loras":[{"name":"x"},{"name":"x"}]}"#), "loras[1].name");
        assert_eq!(param(r#"{"prompt":"a","response_format":"url"}"#), "response_format");
        let ok = parse(r#"{"prompt":"a","size":"64x32","seed":7,"steps":2,"loras":[{"name":"x","strength":0.5}],"model":"flux"}"#).unwrap();
        assert_eq!((ok.width, ok.height, ok.seed, ok.steps, ok.loras[0].strength), (64, 32, 7, 2, 0.5));
    }

    #[test]
    fn error_body_is_openai_shaped() {
        let v: Value = serde_json::from_str(&ApiError::invalid("size", "bad").body()).unwrap();
        assert_eq!(v["error"]["param"], "size");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_value");
        assert_eq!(v["error"]["message"], "bad");
    }
}

//! The routes. Every error is the OpenAI error shape with its status (and `Retry-After` on
//! 429/503); handlers never block the async runtime (adapter registration runs on the blocking
//! pool, generations on the worker thread).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::json;
use tokio::sync::oneshot;

use super::api::{parse_adapter_request, parse_image_request, AdapterRequest, ApiError};
use super::scheduler::SetKey;
use super::worker::{CancelOnDrop, Job};
use super::AppState;

type St = State<Arc<AppState>>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/images/generations", post(generate))
        .route("/v1/adapters", get(list_adapters).post(register_adapter))
        .route("/v1/adapters/{name}", delete(delete_adapter))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(ApiError::new(404, "not_found_error", "unknown_route", "no such route")) })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], e.body()).into_response();
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status().as_u16();
        let code = if status == 413 { "body_too_large" } else { "invalid_body" };
        let msg = if status == 413 { format!("the body is larger than {limit} bytes") } else { r.body_text() };
        ApiError::new(status, "invalid_request_error", code, msg).with_param("body")
    })
}

async fn generate(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    match accept(&s, body).await {
        Ok(r) => r,
        Err(e) => {
            s.metrics.count(e.status);
            error(e)
        }
    }
}

/// Validates, queues and awaits one request. Errors before queueing are returned (and counted
/// by the caller); the worker counts and answers everything it accepted.
async fn accept(s: &Arc<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        return Err(ApiError { retry_after: Some(1), ..ApiError::new(503, "server_error", "shutting_down", "the server is shutting down") });
    }
    let body = body_bytes(body, s.max_body_bytes)?;
    let req = parse_image_request(&body, &s.limits)?;
    for (i, l) in req.loras.iter().enumerate() {
        if s.registry.get(&l.name).is_none() {
            return Err(ApiError::new(404, "not_found_error", "adapter_not_found", format!("adapter `{}` is not registered", l.name))
                .with_param(format!("loras[{i}].name")));
        }
    }
    let (tx, rx) = oneshot::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let now = Instant::now();
    let job = Job { key: SetKey::new(&req.loras), request: req, enqueued: now, deadline: now + s.timeout, cancel: Arc::clone(&cancel), reply: tx };
    s.worker.submit(job)?;
    // Dropped with this future when the client disconnects: the worker then stops the request.
    let _guard = CancelOnDrop { flag: cancel, shared: Arc::clone(&s.worker) };
    match rx.await {
        Ok(Ok(resp)) => Ok(json_response(StatusCode::OK, serde_json::to_vec(&resp).unwrap_or_default())),
        Ok(Err(e)) => Ok(error(e)),
        Err(_) => Ok(error(ApiError::internal("the worker stopped without answering"))),
    }
}

async fn list_adapters(State(s): St) -> Response {
    json_response(StatusCode::OK, serde_json::to_vec(&json!({ "object": "list", "data": s.registry.list() })).unwrap_or_default())
}

async fn register_adapter(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let body = body_bytes(body, s.max_body_bytes)?;
        let AdapterRequest { name, file } = parse_adapter_request(&body)?;
        let st = Arc::clone(&s);
        let info = tokio::task::spawn_blocking(move || st.registry.register(&st.engine, &name, &file))
            .await
            .map_err(|e| ApiError::internal(format!("registration task failed: {e}")))??;
        s.worker.invalidate(&info.name);
        tracing::info!(adapter = %info.name, file = %info.file, "registered");
        Ok::<_, ApiError>(json_response(StatusCode::CREATED, serde_json::to_vec(&info).unwrap_or_default()))
    };
    r.await.unwrap_or_else(error)
}

async fn delete_adapter(State(s): St, Path(name): Path<String>) -> Response {
    match s.registry.remove(&name) {
        Some(_) => {
            s.worker.invalidate(&name);
            tracing::info!(adapter = %name, "deleted");
            json_response(StatusCode::OK, serde_json::to_vec(&json!({ "id": name, "object": "adapter", "deleted": true })).unwrap_or_default())
        }
        None => error(ApiError::new(404, "not_found_error", "adapter_not_found", format!("adapter `{name}` is not registered")).with_param("name")),
    }
}

async fn readyz(State(s): St) -> Response {
    if s.draining.load(Ordering::SeqCst) {
        return error(ApiError::new(503, "server_error", "shutting_down", "the server is shutting down"));
    }
    (StatusCode::OK, "ready").into_response()
}

async fn metrics(State(s): St) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode()).into_response()
}

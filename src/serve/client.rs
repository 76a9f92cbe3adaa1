//! A minimal HTTP/1.1 client (hyper) for the tests and the load generator: one connection per
//! request, loopback addresses only.

use std::net::SocketAddr;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A response: status, headers (lower-case names), body.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
    }
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Sends `method path` with an optional JSON body to `addr` (a loopback address).
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<Vec<u8>>) -> std::io::Result<HttpResponse> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: this client only talks to loopback addresses")));
    }
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io)?;
    let mut b = hyper::Request::builder().method(method).uri(path).header(hyper::header::HOST, addr.to_string());
    if body.is_some() {
        b = b.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(io)?;
    // The connection is driven in this task, so dropping the returned future closes the socket
    // (how a client that goes away looks to the server).
    let exchange = async move {
        let resp = send.send_request(req).await.map_err(io)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
        let body = resp.into_body().collect().await.map_err(io)?.to_bytes().to_vec();
        drop(send);
        Ok::<_, std::io::Error>(HttpResponse { status, headers, body })
    };
    let (resp, _conn) = tokio::join!(exchange, conn);
    resp
}

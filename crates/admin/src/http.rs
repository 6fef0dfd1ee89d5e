//! The HTTP/1.x server: accept, read one request head, answer, close.

use std::sync::Arc;
use std::time::Duration;

use memha_server::shared::Stop;
use memha_server::Shared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::snapshot::Snapshot;
use crate::{metrics, page, status_json};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// Limits of the admin server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Time a client has to send its whole request head (then 408 and close).
    pub head_timeout: Duration,
    /// Time to write an answer to a client that does not read.
    pub write_timeout: Duration,
    /// Requests handled at once; more connections are answered 503.
    pub max_connections: usize,
    /// Time `/health` waits for the store before answering 503.
    pub health_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 32,
            health_timeout: Duration::from_secs(2),
        }
    }
}

/// Serve the admin endpoint on a std listener from [`crate::bind`] (call inside the
/// server's runtime, e.g. through `Bound::add_service`). Returns when the server stops.
pub async fn serve_std(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let _ = listener.set_nonblocking(true);
    match TcpListener::from_std(listener) {
        Ok(l) => serve(l, shared).await,
        Err(e) => tracing::error!("admin endpoint: cannot register the listener: {e}"),
    }
}

/// Serve the admin endpoint with the default [`Options`] until the server stops.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_with(listener, shared, Options::default()).await
}

/// Serve the admin endpoint until the server stops.
pub async fn serve_with(listener: TcpListener, shared: Arc<Shared>, opts: Options) {
    if let Ok(a) = listener.local_addr() {
        tracing::info!("admin endpoint on http://{a}/");
    }
    let opts = Arc::new(opts);
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let busy_slots = Arc::new(Semaphore::new(2 * opts.max_connections.max(1)));
    let mut stop = shared.stop_signal();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("admin endpoint: accept failed: {e}; retrying in 10 ms");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Busy: answer 503 without reading the request, from a short-lived task of a
            // second, larger pool; past that, close at once.
            if let Ok(slot) = busy_slots.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let busy = Response::text(503, "busy\n").to_bytes(false);
                    finish(stream, &busy, Duration::from_secs(1), slot).await;
                });
            }
            continue;
        };
        let (shared, opts) = (shared.clone(), opts.clone());
        tokio::spawn(async move { handle(stream, &shared, &opts, slot).await });
    }
}

async fn stopped(stop: &mut watch::Receiver<Stop>) {
    loop {
        if *stop.borrow_and_update() != Stop::Running {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Serve one connection; `slot` is its place among [`Options::max_connections`].
async fn handle(
    mut stream: TcpStream,
    shared: &Arc<Shared>,
    opts: &Options,
    slot: OwnedSemaphorePermit,
) {
    let mut buf = vec![0u8; MAX_HEAD];
    let read = tokio::time::timeout(opts.head_timeout, read_head(&mut stream, &mut buf)).await;
    let (response, head_only) = match read {
        Err(_elapsed) => (Response::text(408, "request timeout\n"), false),
        Ok(Head::Closed) => return,
        Ok(Head::TooLarge) => (Response::text(431, "request head too large\n"), false),
        Ok(Head::Incomplete) => (Response::text(400, "bad request\n"), false),
        Ok(Head::Complete(len)) => match parse(&buf[..len]) {
            Err(status) => (Response::text(status, "bad request\n"), false),
            Ok(req) => (route(&req, shared, opts).await, req.method == "HEAD"),
        },
    };
    let bytes = response.to_bytes(head_only);
    finish(stream, &bytes, opts.write_timeout, slot).await;
}

/// Write the answer, free the slot, close. Then read what the client may still send (a body
/// or request we ignored) until it closes, so that closing does not reset the connection
/// before the client has read the answer; bounded in time and size.
async fn finish(
    mut stream: TcpStream,
    answer: &[u8],
    write_timeout: Duration,
    slot: OwnedSemaphorePermit,
) {
    let written = tokio::time::timeout(write_timeout, stream.write_all(answer)).await;
    // Free the slot before the client can see the end of the answer, so that its next
    // request finds it free.
    drop(slot);
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

enum Head {
    /// The head ends at this length (its blank line included).
    Complete(usize),
    /// The peer closed before sending anything.
    Closed,
    /// The peer closed in the middle of a head.
    Incomplete,
    TooLarge,
}

async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Head {
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Head::TooLarge;
        }
        let n = match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) if len == 0 => return Head::Closed,
            Ok(0) | Err(_) => return Head::Incomplete,
            Ok(n) => n,
        };
        let from = len.saturating_sub(3);
        len += n;
        if let Some(end) = head_end(&buf[from..len]) {
            return Head::Complete(from + end);
        }
    }
}

/// Where the blank line ending a head ends (CRLF CRLF, or bare LF LF as many servers allow).
fn head_end(b: &[u8]) -> Option<usize> {
    for i in 0..b.len() {
        if b[i..].starts_with(b"\r\n\r\n") {
            return Some(i + 4);
        }
        if b[i..].starts_with(b"\n\n") {
            return Some(i + 2);
        }
        if b[i..].starts_with(b"\n\r\n") {
            return Some(i + 3);
        }
    }
    None
}

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// The path, without query or fragment.
    path: &'a str,
}

/// Parse a request head; `Err(status)` for a bad one.
fn parse(head: &[u8]) -> Result<Request<'_>, u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    // A few empty lines before the request line are allowed (RFC 9112 §2.2).
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let line = lines.next().ok_or(400u16)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(400);
    }
    match version {
        "HTTP/1.0" | "HTTP/1.1" => {}
        v if v.starts_with("HTTP/") && v.len() == 8 => return Err(505),
        _ => return Err(400),
    }
    for h in lines.take_while(|l| !l.is_empty()) {
        let Some((name, _)) = h.split_once(':') else {
            return Err(400);
        };
        if name.is_empty()
            || !name.bytes().all(is_tchar)
            || h.bytes().any(|b| b < 0x20 && b != b'\t')
        {
            return Err(400);
        }
    }
    // origin-form "/path?query", or absolute-form "http://host/path".
    let path = if target.starts_with('/') {
        target
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else if target == "*" {
        "*"
    } else {
        return Err(400);
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    if path.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(400);
    }
    Ok(Request { method, path })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

async fn route(req: &Request<'_>, shared: &Arc<Shared>, opts: &Options) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = Response::text(405, "method not allowed\n");
        r.allow = true;
        return r;
    }
    match req.path {
        "/metrics" => match snapshot(shared).await {
            Some(s) => Response::new(200, metrics::CONTENT_TYPE, metrics::render(&s)),
            None => Response::text(500, "cannot gather the figures\n"),
        },
        "/status.json" => match snapshot(shared).await {
            Some(s) => Response::new(200, status_json::CONTENT_TYPE, status_json::render(&s)),
            None => Response::text(500, "cannot gather the figures\n"),
        },
        "/" => match snapshot(shared).await {
            Some(s) => Response::new(200, page::CONTENT_TYPE, page::render(&s)),
            None => Response::text(500, "cannot gather the figures\n"),
        },
        "/health" => health(shared, opts).await,
        "/ready" => {
            let stopping = *shared.stop_signal().borrow() != Stop::Running;
            if !stopping && shared.ready.load(std::sync::atomic::Ordering::Relaxed) {
                Response::text(200, "ready\n")
            } else {
                Response::text(503, "not ready\n")
            }
        }
        _ => Response::text(404, "not found\n"),
    }
}

/// Gather the figures off the async workers (the per-class table walks every item).
async fn snapshot(shared: &Arc<Shared>) -> Option<Snapshot> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || Snapshot::take(&shared))
        .await
        .ok()
}

/// 200 while the process is not stopping and every shard of the store answers in time.
async fn health(shared: &Arc<Shared>, opts: &Options) -> Response {
    if *shared.stop_signal().borrow() != Stop::Running {
        return Response::text(503, "stopping\n");
    }
    let probe = {
        let shared = shared.clone();
        // `stats()` takes every shard's lock once: a stuck shard shows here.
        tokio::task::spawn_blocking(move || shared.store.stats())
    };
    match tokio::time::timeout(opts.health_timeout, probe).await {
        Ok(Ok(_)) => Response::text(200, "ok\n"),
        _ => Response::text(503, "store not answering\n"),
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// Add `Allow: GET, HEAD` (405).
    allow: bool,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
            allow: false,
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.to_string())
    }

    fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if self.allow {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        fn ok(h: &str) -> Result<Request<'_>, u16> {
            parse(h.as_bytes())
        }
        assert_eq!(
            ok("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Request {
                method: "GET",
                path: "/metrics"
            })
        );
        assert_eq!(ok("\r\nGET /?a=b HTTP/1.0\n\n").map(|r| r.path), Ok("/"));
        assert_eq!(
            ok("GET http://h:1/ready?x HTTP/1.1\r\n\r\n").map(|r| r.path),
            Ok("/ready")
        );
        assert_eq!(ok("POST / HTTP/1.1\r\n\r\n").map(|r| r.method), Ok("POST"));
        assert_eq!(ok("GET / HTTP/2.0\r\n\r\n"), Err(505));
        for bad in [
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 x\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET relative HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\n: empty\r\n\r\n",
            "GET / FTP/1.1\r\n\r\n",
            "\r\n\r\n",
            "",
        ] {
            assert_eq!(parse(bad.as_bytes()), Err(400), "{bad:?}");
        }
        assert_eq!(parse(b"GET /\xff HTTP/1.1\r\n\r\n"), Err(400));
    }

    #[test]
    fn finds_head_end() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn responses_are_framed() {
        let r = Response::text(404, "not found\n").to_bytes(false);
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Length: 10\r\n"));
        assert!(r.ends_with("\r\n\r\nnot found\n"));
        let h = String::from_utf8(Response::text(200, "ok\n").to_bytes(true)).unwrap();
        assert!(h.ends_with("Content-Length: 3\r\n\r\n") || h.ends_with("close\r\n\r\n"));
    }
}

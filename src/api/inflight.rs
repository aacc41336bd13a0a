//! The bound on memory held by request bodies in flight: a request
//! reserves its body's size (what `Content-Length` says, or the body limit
//! when it does not say) before the body is read, and gives it back with
//! its response. Past the bound the answer is 503 with `Retry-After`, so a
//! flood of large posts is turned away instead of growing the heap.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// KiB a request with these headers may read (the semaphore counts KiB).
fn reserve_kib(headers: &HeaderMap, body_limit: usize) -> u32 {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let bytes = match length {
        Some(n) => n.min(body_limit as u64),
        None if headers.contains_key(header::TRANSFER_ENCODING) => body_limit as u64,
        None => 0,
    };
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

pub async fn hold_body_bytes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let kib = reserve_kib(req.headers(), app.settings.limits.body_limit);
    let _held = if kib == 0 {
        None
    } else {
        match app.inflight_body.try_acquire_many(kib) {
            Ok(permit) => Some(permit),
            Err(_) => {
                return ApiError::busy(
                    "too many request bodies are in flight (CREWSHIP_MAX_INFLIGHT_BODY_BYTES); retry shortly",
                )
                .into_response();
            }
        }
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations() {
        let mut h = HeaderMap::new();
        assert_eq!(reserve_kib(&h, 1 << 20), 0);
        h.insert(header::CONTENT_LENGTH, "1025".parse().unwrap());
        assert_eq!(reserve_kib(&h, 1 << 20), 2);
        h.insert(header::CONTENT_LENGTH, "999999999".parse().unwrap());
        assert_eq!(reserve_kib(&h, 1 << 20), 1024);
        h.remove(header::CONTENT_LENGTH);
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert_eq!(reserve_kib(&h, 1 << 20), 1024);
    }
}

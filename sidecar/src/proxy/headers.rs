//! Header handling between client and upstream (RFC 9110 §7.6.1 hop-by-hop fields).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    OnceLock,
};

use http::{header, HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the hop-by-hop fields: `Connection` and every field it names, plus
/// `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, and `TE` except
/// `TE: trailers` (gRPC needs it end to end to receive trailers).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the few names first: each lookup or removal below hashes its name,
    // and most messages carry none of these fields, or only `Connection`.
    let (mut connection, mut fixed, mut te) = (false, false, false);
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection = true;
        } else if name == header::TE {
            te = true;
        } else if name == KEEP_ALIVE
            || name == PROXY_CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
        {
            fixed = true;
        }
    }
    if connection {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            // `Connection: te` must not strip the `te: trailers` we keep below.
            if name != header::TE {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    if fixed {
        headers.remove(&KEEP_ALIVE);
        headers.remove(&PROXY_CONNECTION);
        headers.remove(header::TRANSFER_ENCODING);
        headers.remove(header::UPGRADE);
    }
    if let Some(te) = headers.get(header::TE).filter(|_| te) {
        let trailers_only = te
            .to_str()
            .map(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
            .unwrap_or(false);
        if trailers_only {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(header::TE);
        }
    }
}

/// The request id: the client's `x-request-id`, or a new UUID-shaped id set on the
/// request.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        return id.clone();
    }
    let value = new_request_id();
    headers.insert(X_REQUEST_ID.clone(), value.clone());
    value
}

/// A random per-process prefix and a counter, formatted like a UUID: unique across
/// pods without a `getrandom` system call per request.
fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let raw = (u128::from(prefix) << 64) | u128::from(n);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut nibble = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
        } else {
            *slot = HEX[((raw >> (124 - 4 * nibble)) & 0xf) as usize];
            nibble += 1;
        }
    }
    HeaderValue::from_bytes(&out).expect("hex digits and hyphens are a valid header value")
}

/// A non-zero `grpc-status` in headers (trailers-only response) or trailers.
pub fn grpc_failed(headers: &HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() != b"0")
}

/// A health probe, not traffic: queue-proxy's (`K-Kubelet-Probe`, `K-Network-Probe`)
/// or the kubelet's (`User-Agent: kube-probe/<version>`). Probes pass through but are
/// never counted in the guardrail window or the request metrics: a pod probed every
/// 25 ms would otherwise be judged on its health endpoint.
pub fn is_probe(headers: &HeaderMap) -> bool {
    headers.contains_key("k-kubelet-probe")
        || headers.contains_key("k-network-probe")
        || headers
            .get(http::header::USER_AGENT)
            .is_some_and(|ua| ua.as_bytes().starts_with(b"kube-probe/"))
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), for logs; the
/// header itself passes through untouched. `None` when absent or malformed.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.trim().split('-');
    let (version, trace) = (parts.next()?, parts.next()?);
    let valid = version.len() == 2
        && trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_told_from_traffic() {
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            is_probe(&h)
        };
        assert!(with("k-kubelet-probe", "queue"));
        assert!(with("k-network-probe", "queue"));
        assert!(with("user-agent", "kube-probe/1.31"));
        assert!(!with("user-agent", "curl/8.5"));
        assert!(!with("user-agent", "my-kube-probe/1"));
        assert!(!is_probe(&HeaderMap::new()));
    }

    #[test]
    fn hop_by_hop_fields_go_end_to_end_fields_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().expect("value"));
        h.insert("x-secret", "1".parse().expect("value"));
        h.insert("keep-alive", "timeout=5".parse().expect("value"));
        h.insert("upgrade", "h2c".parse().expect("value"));
        h.insert("te", "trailers, deflate".parse().expect("value"));
        h.insert("x-forwarded-for", "10.0.0.1".parse().expect("value"));
        h.insert("forwarded", "for=10.0.0.1".parse().expect("value"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["te", "x-forwarded-for", "forwarded"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn hop_by_hop_edge_cases() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().expect("value"));
        h.insert("x-request-id", "abc".parse().expect("value"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before, "nothing hop-by-hop: untouched");

        let mut h = HeaderMap::new();
        h.insert("connection", "Keep-Alive".parse().expect("value"));
        h.insert("keep-alive", "timeout=5".parse().expect("value"));
        h.insert("transfer-encoding", "chunked".parse().expect("value"));
        h.insert("content-length", "3".parse().expect("value"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length"]);

        let mut h = HeaderMap::new();
        h.append("connection", "te".parse().expect("value"));
        h.append("connection", "close, x-a".parse().expect("value"));
        h.insert("te", "trailers".parse().expect("value"));
        h.insert("x-a", "1".parse().expect("value"));
        h.insert("x-b", "2".parse().expect("value"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-b", "te"]);

        let mut h = HeaderMap::new();
        h.insert("te", "gzip".parse().expect("value"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "TE without trailers is dropped");
    }

    #[test]
    fn request_id_is_kept_or_made() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc".parse().expect("value"));
        assert_eq!(ensure_request_id(&mut h), "abc");
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        assert_eq!(h["x-request-id"], id);
        let other = ensure_request_id(&mut HeaderMap::new());
        assert_ne!(id, other, "ids must differ");
        assert_eq!(other.as_bytes()[8], b'-');
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let mut h = HeaderMap::new();
        assert_eq!(trace_id(&h), None);
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            trace_id(&h).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
            "garbage",
        ] {
            h.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(trace_id(&h), None, "{bad}");
        }
    }
}

//! The small JSON error body every gatehouse local reply carries.

/// `{"error":"<code>","message":"<message>","request_id":"<id>"}`.
///
/// `code` is a short machine-readable reason (`unauthorized`,
/// `rate_limited`, ...). Strings are JSON-escaped; the request id is included
/// only when known (it comes from the request-id header, already sanitized
/// by the request-id filter when it runs first, and escaped here anyway).
pub fn error_body(code: &str, message: &str, request_id: Option<&str>) -> String {
    let mut out = String::with_capacity(64 + message.len());
    out.push_str("{\"error\":");
    push_json_string(&mut out, code);
    out.push_str(",\"message\":");
    push_json_string(&mut out, message);
    if let Some(id) = request_id {
        out.push_str(",\"request_id\":");
        push_json_string(&mut out, id);
    }
    out.push('}');
    out
}

/// Longest request id an error body quotes.
pub const MAX_BODY_REQUEST_ID: usize = 128;

/// A request id made of safe characters only (`A-Z a-z 0-9 - _ . : + / =`),
/// 1 to `max_len` bytes: what the request-id filter keeps, and what error
/// bodies quote.
pub fn is_safe_request_id(v: &[u8], max_len: usize) -> bool {
    !v.is_empty()
        && v.len() <= max_len
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

/// The request's `x-request-id` for a JSON error body, when it is a safe id
/// (see [`is_safe_request_id`]); `None` otherwise, so a hostile value never
/// reaches a body.
pub fn request_id_for_body(headers: &crate::HeaderSnapshot) -> Option<&str> {
    let v = headers.first("x-request-id")?;
    if !is_safe_request_id(v, MAX_BODY_REQUEST_ID) {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn body_is_valid_json() {
        let b = error_body("rate_limited", "too \"many\"\n", Some("id-1"));
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"], "rate_limited");
        assert_eq!(v["message"], "too \"many\"\n");
        assert_eq!(v["request_id"], "id-1");
        let v: serde_json::Value = serde_json::from_str(&error_body("x", "y", None)).unwrap();
        assert!(v.get("request_id").is_none());
    }

    #[test]
    fn request_ids_in_error_bodies_are_safe_ids_only() {
        let h = |v: &[u8]| crate::HeaderSnapshot::new(vec![("x-request-id".into(), v.to_vec())]);
        assert_eq!(
            request_id_for_body(&h(b"abc-123_x.y:z+/=")),
            Some("abc-123_x.y:z+/=")
        );
        for bad in [&b""[..], b"a b", b"a\"b", b"\xff", b"a<b"] {
            assert_eq!(request_id_for_body(&h(bad)), None, "{bad:?}");
        }
        assert_eq!(request_id_for_body(&h("a".repeat(129).as_bytes())), None);
        assert!(request_id_for_body(&h("a".repeat(128).as_bytes())).is_some());
        assert_eq!(request_id_for_body(&crate::HeaderSnapshot::default()), None);
    }
}

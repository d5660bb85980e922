//! Writing answers: the status line and headers, a whole body, or a body
//! streamed in chunks (`Transfer-Encoding: chunked`) as the queue drains.

use std::io::Write as _;

use super::request::HeadError;

pub const OK: (u16, &str) = (200, "OK");
pub const NOT_FOUND: (u16, &str) = (404, "Not Found");

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";
pub const JSON: &str = "application/json";
/// The Prometheus text exposition format, version 0.0.4.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

const CSP: &[u8] = b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'\r\n";

/// Appends the status line and headers; `len` is the body's length, or
/// `None` for a chunked body.
pub fn head(out: &mut Vec<u8>, status: (u16, &str), content_type: &str, len: Option<usize>, keep_alive: bool) {
    let _ = write!(out, "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\n", status.0, status.1);
    match len {
        Some(len) => {
            let _ = write!(out, "Content-Length: {len}\r\n");
        }
        None => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if content_type == HTML {
        // Defence in depth behind the escaping: no images, frames or other
        // origins; only the page's own style and script.
        out.extend_from_slice(CSP);
    }
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: ");
    out.extend_from_slice(connection);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a whole answer.
pub fn whole(out: &mut Vec<u8>, status: (u16, &str), content_type: &str, body: &[u8], keep_alive: bool) {
    head(out, status, content_type, Some(body.len()), keep_alive);
    out.extend_from_slice(body);
}

/// Appends the answer to a refused head; the connection closes after it.
pub fn refusal(out: &mut Vec<u8>, error: HeadError) {
    let status = error.status();
    whole(out, status, TEXT, format!("{} {}\n", status.0, status.1).as_bytes(), false);
}

/// Appends one chunk of a chunked body (nothing for an empty piece: an
/// empty chunk would end the body).
pub fn chunk(out: &mut Vec<u8>, piece: &[u8]) {
    if !piece.is_empty() {
        let _ = write!(out, "{:x}\r\n", piece.len());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the end of a chunked body.
pub fn last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_answers() {
        let mut out = Vec::new();
        whole(&mut out, OK, TEXT, b"hi", true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\nhi"
        );
        out.clear();
        head(&mut out, OK, JSON, None, false);
        chunk(&mut out, b"0123456789abcdefX");
        chunk(&mut out, b"");
        last_chunk(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n11\r\n0123456789abcdefX\r\n0\r\n\r\n"
        );
        out.clear();
        refusal(&mut out, HeadError::TooLarge);
        assert!(out.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(out.ends_with(b"Connection: close\r\n\r\n431 Request Header Fields Too Large\n"));
        out.clear();
        head(&mut out, OK, HTML, Some(0), true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nContent-Security-Policy: default-src 'none'; "), "{text}");
    }
}

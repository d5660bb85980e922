//! A request head, parsed by `httparse` (the hyper project's sans-IO
//! parser) within the bounds the tracker keeps: at most `MAX_HEAD` bytes and
//! `MAX_HEADERS` headers, GET only, no body.

/// Bytes of a request line and its headers, at most.
pub const MAX_HEAD: usize = 8 * 1024;
/// Headers of one request, at most.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head, borrowing the connection's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub path: &'a str,
    /// What follows `?` in the target, still percent-encoded ("" without one).
    pub query: &'a str,
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// Bytes the head occupied.
    pub len: usize,
}

/// Why a request is refused; each is answered with its status, then the
/// connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than `MAX_HEAD`, or more than `MAX_HEADERS` headers.
    TooLarge,
    /// Not HTTP/1.x as httparse reads it.
    Malformed,
    /// A method other than GET.
    Method,
    /// A request with a body: nothing here takes one.
    Body,
}

impl HeadError {
    /// The status line's code and reason.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HeadError::TooLarge => (431, "Request Header Fields Too Large"),
            HeadError::Malformed => (400, "Bad Request"),
            HeadError::Method => (405, "Method Not Allowed"),
            HeadError::Body => (413, "Content Too Large"),
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete
/// and within bounds.
pub fn parse(buf: &[u8]) -> Result<Option<Head<'_>>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HeadError::Malformed),
    };
    if req.method != Some("GET") {
        return Err(HeadError::Method);
    }
    let target = req.path.filter(|t| t.starts_with('/')).ok_or(HeadError::Malformed)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut close = req.version != Some(1);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close") || (close && !value.eq_ignore_ascii_case("keep-alive"));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            return Err(HeadError::Body);
        }
    }
    Ok(Some(Head { path, query, keep_alive: !close, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_with_a_query() {
        let buf = b"GET /announce?info_hash=x&port=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /next";
        let head = parse(buf).unwrap().unwrap();
        assert_eq!(head, Head { path: "/announce", query: "info_hash=x&port=1", keep_alive: true, len: 54 });
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap(), None);
    }

    #[test]
    fn keep_alive_by_version_and_header() {
        let ka = |req: &[u8]| parse(req).unwrap().unwrap().keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n"), Err(HeadError::Method));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), Err(HeadError::Body));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Err(HeadError::Body));
        assert!(parse(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").is_ok());
        assert_eq!(parse(b"GET x HTTP/1.1\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(parse(b"\x00\x00\x00\x05\x01"), Err(HeadError::Malformed));
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Malformed));
    }

    #[test]
    fn bounds() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Ok(None), "8 KiB unfinished is still waited for");
        long.push(b'a');
        assert_eq!(parse(&long), Err(HeadError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        let mut ok = many.clone();
        ok.extend_from_slice(b"\r\n");
        assert!(parse(&ok).unwrap().is_some(), "64 headers are fine");
        many.extend_from_slice(b"One: more\r\n\r\n");
        assert_eq!(parse(&many), Err(HeadError::TooLarge));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::common::rng::Rng::new(7);
        let mut buf = vec![0u8; 512];
        for _ in 0..5000 {
            rng.fill(&mut buf);
            let n = (rng.next_u64() % 512) as usize;
            let _ = parse(&buf[..n]);
        }
    }
}

//! Bencode (BEP 3), the encoding of HTTP tracker answers: written by hand,
//! appended to a buffer. Only what the tracker sends is here: integers, byte
//! strings and dictionaries whose keys the caller writes in sorted order.

/// Appends `i<n>e`.
pub fn put_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

/// Appends `<len>:<bytes>`.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Appends a dictionary: `d`, what `body` writes (keys in sorted byte order,
/// each followed by its value), `e`.
pub fn put_dict(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'd');
    body(out);
    out.push(b'e');
}

/// Appends a key and an integer value.
pub fn put_int_entry(out: &mut Vec<u8>, key: &str, n: i64) {
    put_bytes(out, key.as_bytes());
    put_int(out, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        put_int(&mut out, 0);
        put_int(&mut out, -42);
        put_int(&mut out, i64::MAX);
        put_bytes(&mut out, b"");
        put_bytes(&mut out, b"spam");
        put_bytes(&mut out, &[0, 0xff]);
        assert_eq!(out, b"i0ei-42ei9223372036854775807e0:4:spam2:\x00\xff");
    }

    #[test]
    fn dictionary_golden_bytes() {
        // BEP 3's own example: {"cow": "moo", "spam": "eggs"}.
        let mut out = Vec::new();
        put_dict(&mut out, |out| {
            put_bytes(out, b"cow");
            put_bytes(out, b"moo");
            put_bytes(out, b"spam");
            put_bytes(out, b"eggs");
        });
        assert_eq!(out, b"d3:cow3:moo4:spam4:eggse");
        out.clear();
        put_dict(&mut out, |out| put_int_entry(out, "interval", 1800));
        assert_eq!(out, b"d8:intervali1800ee");
    }
}

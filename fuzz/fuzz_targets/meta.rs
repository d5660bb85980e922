//! File metadata from the network (the canonical encoding whose SHA-1 is the
//! content id), the name check every disk path goes through, and content-id
//! hex as typed by a user: never panic; metadata round-trips byte for byte;
//! the chunks tile the file exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmk::hash::Hash20;
use lmk::meta::check_name;
use lmk::wire::catalog::{decode_meta, encode_meta};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(hash) = text.parse::<Hash20>() {
            assert_eq!(hash.to_hex(), text.to_ascii_lowercase());
        }
        if check_name(text).is_ok() {
            assert!(!text.contains('/') && text != ".." && !text.is_empty());
        }
    }
    let mut input = data;
    let Ok(meta) = decode_meta(&mut input) else { return };
    let used = data.len() - input.len();
    let mut out = Vec::new();
    encode_meta(&meta, &mut out);
    assert_eq!(out, data[..used], "canonical encoding");
    assert_eq!(meta.content_id(), Hash20::of(&out));
    let _ = check_name(meta.name());
    let count = meta.chunk_count();
    let mut total = 0u64;
    for i in 0..count {
        let len = meta.chunk_len(i).expect("every index below the count has a length");
        assert!(len > 0 && len <= meta.chunk_size());
        assert_eq!(meta.chunk_offset(i), total);
        total += u64::from(len);
    }
    assert_eq!(total, meta.size());
    assert_eq!(meta.chunk_len(count), None);
});

//! The tracker's catalog: metadata of every published file, kept while the
//! file has live seeders and for one expiry time after its last one left.

use std::collections::HashMap;
use std::time::Instant;

use crate::hash::ContentId;
use crate::meta::{check_name, FileMeta};
use crate::wire::catalog::{ErrorCode, ListEntry, Response, Selector};

/// Most files the catalog holds.
pub const MAX_FILES: usize = 100_000;
/// Most chunk-hash bytes the catalog holds over all files.
pub const MAX_HASH_BYTES: usize = 512 * 1024 * 1024;

struct Entry {
    meta: FileMeta,
    /// Last instant the file was published or had a live seeder.
    last_seeded: Instant,
}

#[derive(Default)]
pub struct Catalog {
    files: HashMap<ContentId, Entry>,
    hash_bytes: usize,
}

impl Catalog {
    /// Stores `meta` (idempotent: a re-publish refreshes it). The tracker
    /// computes the id itself, so a publisher cannot lie about it.
    pub fn publish(&mut self, now: Instant, meta: FileMeta) -> Result<ContentId, Response> {
        if let Err(e) = check_name(meta.name()) {
            return Err(Response::Error { code: ErrorCode::Refused, message: e.to_string() });
        }
        let id = meta.content_id();
        if let Some(entry) = self.files.get_mut(&id) {
            entry.last_seeded = now;
            return Ok(id);
        }
        let bytes = meta.hashes().len() * 20;
        if self.files.len() >= MAX_FILES || self.hash_bytes + bytes > MAX_HASH_BYTES {
            return Err(Response::Error { code: ErrorCode::Full, message: "catalog full".into() });
        }
        self.hash_bytes += bytes;
        self.files.insert(id, Entry { meta, last_seeded: now });
        Ok(id)
    }

    /// Every file, by name, with its live seeder count.
    pub fn list(&self, seeders: impl Fn(&ContentId) -> usize) -> Vec<ListEntry> {
        let mut entries: Vec<ListEntry> = self
            .files
            .iter()
            .map(|(id, e)| ListEntry {
                id: *id,
                name: e.meta.name().to_string(),
                size: e.meta.size(),
                chunk_size: e.meta.chunk_size(),
                seeders: seeders(id).try_into().unwrap_or(u32::MAX),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        entries
    }

    /// One file's metadata by id, or by name when exactly one file has it.
    pub fn get(&self, selector: &Selector) -> Response {
        let found: Vec<&FileMeta> = match selector {
            Selector::Id(id) => self.files.get(id).map(|e| &e.meta).into_iter().collect(),
            Selector::Name(name) => self.files.values().map(|e| &e.meta).filter(|m| m.name() == name).collect(),
        };
        match found.as_slice() {
            [meta] => Response::Meta((*meta).clone()),
            [] => Response::Error { code: ErrorCode::NotFound, message: "no such file in the catalog".into() },
            many => Response::Error {
                code: ErrorCode::Ambiguous,
                message: format!("{} files have that name; ask by content id", many.len()),
            },
        }
    }

    pub fn meta(&self, id: &ContentId) -> Option<&FileMeta> {
        self.files.get(id).map(|e| &e.meta)
    }

    /// Refreshes files that have seeders and drops those without since `cutoff`.
    /// Returns the names dropped.
    pub fn expire(&mut self, now: Instant, cutoff: Instant, has_seeders: impl Fn(&ContentId) -> bool) -> Vec<String> {
        let mut dropped = Vec::new();
        let mut freed = 0;
        self.files.retain(|id, e| {
            if has_seeders(id) {
                e.last_seeded = now;
            }
            let keep = e.last_seeded >= cutoff;
            if !keep {
                freed += e.meta.hashes().len() * 20;
                dropped.push(e.meta.name().to_string());
            }
            keep
        });
        self.hash_bytes -= freed;
        dropped
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20;
    use crate::meta::MIN_CHUNK;
    use std::time::Duration;

    fn meta(name: &str, salt: u8) -> FileMeta {
        FileMeta::new(name.into(), 10, MIN_CHUNK, vec![Hash20([salt; 20])]).unwrap()
    }

    #[test]
    fn publish_get_list() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        let id = c.publish(t0, meta("a", 1)).unwrap();
        assert_eq!(c.publish(t0, meta("a", 1)), Ok(id), "re-publish is idempotent");
        assert_eq!(c.get(&Selector::Id(id)), Response::Meta(meta("a", 1)));
        assert_eq!(c.get(&Selector::Name("a".into())), Response::Meta(meta("a", 1)));
        c.publish(t0, meta("a", 2)).unwrap();
        assert!(matches!(c.get(&Selector::Name("a".into())), Response::Error { code: ErrorCode::Ambiguous, .. }));
        assert!(matches!(c.get(&Selector::Name("b".into())), Response::Error { code: ErrorCode::NotFound, .. }));
        let list = c.list(|i| usize::from(*i == id) * 3);
        assert_eq!(list.len(), 2);
        assert_eq!(list.iter().find(|e| e.id == id).unwrap().seeders, 3);
    }

    #[test]
    fn unsafe_names_refused() {
        let mut c = Catalog::default();
        for bad in ["../x", "a/b", "a\0b", ".."] {
            let got = c.publish(Instant::now(), meta(bad, 1));
            assert!(matches!(got, Err(Response::Error { code: ErrorCode::Refused, .. })), "{bad:?}");
        }
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn expiry_only_without_seeders() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        let a = c.publish(t0, meta("a", 1)).unwrap();
        c.publish(t0, meta("b", 2)).unwrap();
        let t1 = t0 + Duration::from_secs(30);
        let dropped = c.expire(t1, t0 + Duration::from_secs(1), |id| *id == a);
        assert_eq!(dropped, vec!["b".to_string()]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.hash_bytes, 20);
    }
}

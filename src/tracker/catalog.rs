//! The tracker's catalog: metadata of every published file, kept while the
//! file has live seeders and for one expiry time after its last one left.
//! Each address may hold only so many files, so one client cannot fill it.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use crate::common::publish_key::PublishKey;
use crate::hash::{ContentId, Hash20};
use crate::meta::{check_name, FileMeta};
use crate::wire::catalog::{ErrorCode, ListEntry, Mac, Nonce, Response, Selector};

/// Most files the catalog holds.
pub const MAX_FILES: usize = 100_000;
/// Most chunk-hash bytes the catalog holds over all files.
pub const MAX_HASH_BYTES: usize = 512 * 1024 * 1024;
/// Chunk-hash bytes one address may hold: an eighth of the whole, so one
/// client cannot take more than that of the tracker's memory (64 MiB is
/// about 3.3 million chunks, 3 TiB of files at the default chunk size).
pub const MAX_HASH_BYTES_PER_IP: usize = MAX_HASH_BYTES / 8;
/// Files one address may hold in the catalog, by default.
pub const DEFAULT_FILES_PER_IP: usize = 1000;
/// Content ids named in an ambiguity error: what fits its message.
const MAX_IDS_NAMED: usize = 8;
/// A publish challenge is good in the window it was made in and the next:
/// a captured signed publish can be replayed at most this long, twice over.
pub const CHALLENGE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Who may publish what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Files first published from one address (an IPv6 /64) held at once.
    pub files_per_ip: usize,
    /// When set, only publishes signed with this key are taken.
    pub publish_key: Option<PublishKey>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { files_per_ip: DEFAULT_FILES_PER_IP, publish_key: None }
    }
}

/// Who may publish: with a key, only the holders of a MAC over a fresh
/// challenge of their own address. Stateless, like BEP 15 connection ids:
/// a challenge is a keyed hash of the address and a time window.
pub struct Gate {
    policy: Policy,
    secret: [u8; 16],
    start: Instant,
}

impl Gate {
    /// `secret` keys the challenges; it is drawn when the tracker starts.
    pub fn new(policy: Policy, secret: [u8; 16], start: Instant) -> Gate {
        Gate { policy, secret, start }
    }

    pub fn files_per_ip(&self) -> usize {
        self.policy.files_per_ip
    }

    /// The nonce a client at `from` signs its publishes over now.
    pub fn challenge(&self, now: Instant, from: IpAddr) -> Nonce {
        self.nonce(from, self.window(now))
    }

    /// Whether a publish from `from`, signed or not, may go on; the reason if not.
    pub fn admit(
        &self,
        now: Instant,
        from: IpAddr,
        signature: Option<&(Nonce, Mac)>,
        meta: &FileMeta,
    ) -> Result<(), &'static str> {
        let Some(key) = &self.policy.publish_key else { return Ok(()) };
        let Some((nonce, mac)) = signature else {
            return Err("this tracker takes only publishes signed with its publish key");
        };
        let window = self.window(now);
        if *nonce != self.nonce(from, window) && (window == 0 || *nonce != self.nonce(from, window - 1)) {
            return Err("stale or foreign challenge; ask for a new one");
        }
        if !key.verify(nonce, meta, mac) {
            return Err("wrong publish key");
        }
        Ok(())
    }

    fn window(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / CHALLENGE_WINDOW.as_secs()
    }

    fn nonce(&self, from: IpAddr, window: u64) -> Nonce {
        let ip = match from {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let h = Hash20::of_parts(&[&self.secret, b"challenge", &ip, &window.to_be_bytes()]);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&h.0[..16]);
        nonce
    }
}

fn not_found() -> Response {
    Response::Error { code: ErrorCode::NotFound, message: "no such file in the catalog".into() }
}

/// Where a publish came from, as the quota counts it: an IPv4 address, or
/// the /64 of an IPv6 one (one host commonly holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        Source(crate::common::ip_block(ip))
    }
}

struct Entry {
    meta: FileMeta,
    /// Last instant the file was published or had a live seeder.
    last_seeded: Instant,
    /// The address that first published it, charged for it until it expires.
    owner: Source,
}

/// Files and chunk-hash bytes charged to one address.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    files: usize,
    hash_bytes: usize,
}

#[derive(Default)]
pub struct Catalog {
    files: HashMap<ContentId, Entry>,
    hash_bytes: usize,
    /// What each owner holds; no entry for an owner holding nothing.
    owned: HashMap<Source, Held>,
    /// Every file by (name, content id): listings in name order, and the
    /// status page's pages continued after their last row.
    order: BTreeSet<(String, ContentId)>,
    /// Sum of the files' sizes.
    bytes: u64,
}

impl Catalog {
    /// Stores `meta` (idempotent: a re-publish, from any address, refreshes
    /// it). The tracker computes the id itself, so a publisher cannot lie
    /// about it. A new file counts against `from`'s quota of `files_per_ip`.
    pub fn publish(
        &mut self,
        now: Instant,
        from: Source,
        files_per_ip: usize,
        meta: FileMeta,
    ) -> Result<ContentId, Response> {
        if let Err(e) = check_name(meta.name()) {
            return Err(Response::Error { code: ErrorCode::Refused, message: e.to_string() });
        }
        let id = meta.content_id();
        if let Some(entry) = self.files.get_mut(&id) {
            entry.last_seeded = now;
            return Ok(id);
        }
        let held = self.owned.get(&from).copied().unwrap_or_default();
        let bytes = meta.hashes().len() * 20;
        if held.files >= files_per_ip {
            let message =
                format!("publish quota: {} files from {} already, at most {files_per_ip}", held.files, from.0);
            return Err(Response::Error { code: ErrorCode::Full, message });
        }
        if held.hash_bytes + bytes > MAX_HASH_BYTES_PER_IP {
            let message = format!(
                "publish quota: {} bytes of chunk hashes from {} already, at most {MAX_HASH_BYTES_PER_IP}",
                held.hash_bytes, from.0
            );
            return Err(Response::Error { code: ErrorCode::Full, message });
        }
        if self.files.len() >= MAX_FILES || self.hash_bytes + bytes > MAX_HASH_BYTES {
            return Err(Response::Error { code: ErrorCode::Full, message: "catalog full".into() });
        }
        self.hash_bytes += bytes;
        let owner = self.owned.entry(from).or_default();
        owner.files += 1;
        owner.hash_bytes += bytes;
        self.order.insert((meta.name().to_string(), id));
        self.bytes += meta.size();
        self.files.insert(id, Entry { meta, last_seeded: now, owner: from });
        Ok(id)
    }

    /// Every file, by name, with its live seeder count.
    pub fn list(&self, seeders: impl Fn(&ContentId) -> usize) -> Vec<ListEntry> {
        self.sorted(None)
            .filter_map(|(_, id)| self.files.get_key_value(id).map(|(id, e)| (id, &e.meta)))
            .map(|(id, meta)| ListEntry {
                id: *id,
                name: meta.name().to_string(),
                size: meta.size(),
                chunk_size: meta.chunk_size(),
                seeders: seeders(id).try_into().unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// Names and ids of the files in (name, content id) order, after
    /// `after` when given: a filter by name reads no metadata.
    pub fn sorted<'a>(&'a self, after: Option<(&str, &ContentId)>) -> impl Iterator<Item = (&'a str, &'a ContentId)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, |(name, id)| Excluded((name.to_string(), *id)));
        self.order.range((start, Unbounded)).map(|(name, id)| (name.as_str(), id))
    }

    /// Bytes of all files (the sum of their sizes).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// One file's metadata by id, or by name when exactly one file has it.
    /// Files of one name are refused together, naming their content ids: a
    /// second publisher of a name can block it but never take it over.
    pub fn get(&self, selector: &Selector) -> Response {
        match self.find(selector) {
            Ok(id) => self.meta(&id).map_or_else(not_found, |meta| Response::Meta(meta.clone())),
            Err(refusal) => refusal,
        }
    }

    /// The content id a selector names (as `get`), or the error answer.
    pub fn find(&self, selector: &Selector) -> Result<ContentId, Response> {
        let mut found: Vec<(&ContentId, &FileMeta)> = match selector {
            Selector::Id(id) => self.files.get_key_value(id).map(|(id, e)| (id, &e.meta)).into_iter().collect(),
            Selector::Name(name) => {
                self.files.iter().filter(|(_, e)| e.meta.name() == name).map(|(id, e)| (id, &e.meta)).collect()
            }
        };
        match found.as_mut_slice() {
            [(id, _)] => Ok(**id),
            [] => Err(not_found()),
            many => {
                many.sort_by_key(|(id, _)| **id);
                let mut message = format!("{} files claim that name; get one by content id:", many.len());
                for (id, _) in many.iter().take(MAX_IDS_NAMED) {
                    let _ = write!(message, " {id}");
                }
                if many.len() > MAX_IDS_NAMED {
                    message.push_str(" ...");
                }
                Err(Response::Error { code: ErrorCode::Ambiguous, message })
            }
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
        let owned = &mut self.owned;
        let order = &mut self.order;
        let total = &mut self.bytes;
        self.files.retain(|id, e| {
            if has_seeders(id) {
                e.last_seeded = now;
            }
            let keep = e.last_seeded >= cutoff;
            if !keep {
                order.remove(&(e.meta.name().to_string(), *id));
                *total -= e.meta.size();
                let bytes = e.meta.hashes().len() * 20;
                freed += bytes;
                dropped.push(e.meta.name().to_string());
                if let Some(held) = owned.get_mut(&e.owner) {
                    held.files -= 1;
                    held.hash_bytes -= bytes;
                    if held.files == 0 {
                        owned.remove(&e.owner);
                    }
                }
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
    use std::net::Ipv6Addr;
    use std::time::Duration;

    fn meta(name: &str, salt: u8) -> FileMeta {
        FileMeta::new(name.into(), 10, MIN_CHUNK, vec![Hash20([salt; 20])]).unwrap()
    }

    fn src(last: u8) -> Source {
        Source::of(IpAddr::from([10, 0, 0, last]))
    }

    fn publish(c: &mut Catalog, now: Instant, m: FileMeta) -> Result<ContentId, Response> {
        c.publish(now, src(1), 100, m)
    }

    #[test]
    fn publish_get_list() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        let id = publish(&mut c, t0, meta("a", 1)).unwrap();
        assert_eq!(publish(&mut c, t0, meta("a", 1)), Ok(id), "re-publish is idempotent");
        assert_eq!(c.get(&Selector::Id(id)), Response::Meta(meta("a", 1)));
        assert_eq!(c.get(&Selector::Name("a".into())), Response::Meta(meta("a", 1)));
        assert!(matches!(c.get(&Selector::Name("b".into())), Response::Error { code: ErrorCode::NotFound, .. }));
        let list = c.list(|i| usize::from(*i == id) * 3);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].seeders, 3);
    }

    #[test]
    fn name_order_and_bytes_follow_publish_and_expiry() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        let b = publish(&mut c, t0, meta("b", 1)).unwrap();
        let a2 = publish(&mut c, t0 + Duration::from_secs(5), meta("a", 2)).unwrap();
        let a1 = publish(&mut c, t0, meta("a", 1)).unwrap();
        let (lo, hi) = if a1 < a2 { (a1, a2) } else { (a2, a1) };
        let names: Vec<(&str, ContentId)> = c.sorted(None).map(|(n, id)| (n, *id)).collect();
        assert_eq!(names, [("a", lo), ("a", hi), ("b", b)]);
        let after: Vec<ContentId> = c.sorted(Some(("a", &lo))).map(|(_, id)| *id).collect();
        assert_eq!(after, [hi, b], "continued after a row");
        assert_eq!(c.bytes(), 30);
        c.expire(t0 + Duration::from_secs(10), t0 + Duration::from_secs(1), |_| false);
        let names: Vec<(&str, ContentId)> = c.sorted(None).map(|(n, id)| (n, *id)).collect();
        assert_eq!((names, c.bytes()), (vec![("a", a2)], 10));
    }

    #[test]
    fn a_claimed_name_is_refused_naming_every_claimant() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        let real = publish(&mut c, t0, meta("a", 1)).unwrap();
        let squat = c.publish(t0, src(66), 100, meta("a", 2)).unwrap();
        match c.get(&Selector::Name("a".into())) {
            Response::Error { code: ErrorCode::Ambiguous, message } => {
                assert!(message.contains(&real.to_hex()) && message.contains(&squat.to_hex()), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.get(&Selector::Id(real)), Response::Meta(meta("a", 1)), "by content id it still works");
        assert_eq!(c.get(&Selector::Id(squat)), Response::Meta(meta("a", 2)));
        assert_eq!(c.list(|_| 0).len(), 2, "both listed, each with its id");
        // Many claimants: the message stays within what an error carries.
        for salt in 3..40 {
            c.publish(t0, src(salt), 100, meta("a", salt)).unwrap();
        }
        let Response::Error { message, .. } = c.get(&Selector::Name("a".into())) else { panic!() };
        assert!(message.len() <= crate::wire::MAX_NAME * 2 && message.ends_with("..."), "{message}");
    }

    #[test]
    fn quota_per_address_until_its_files_expire() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        for salt in 0..3 {
            c.publish(t0, src(1), 3, meta(&format!("f{salt}"), salt)).unwrap();
        }
        let over = c.publish(t0, src(1), 3, meta("f3", 3));
        assert!(matches!(&over, Err(Response::Error { code: ErrorCode::Full, message }) if message.contains("quota")));
        assert_eq!(c.publish(t0, src(1), 3, meta("f0", 0)), Ok(meta("f0", 0).content_id()), "refresh is free");
        assert!(c.publish(t0, src(2), 3, meta("f3", 3)).is_ok(), "another address has its own quota");
        assert!(c.publish(t0, src(2), 3, meta("f0", 0)).is_ok(), "a file another address holds costs nothing");
        assert_eq!(c.len(), 4);
        // The files of src(1) expire: its quota is free again.
        let t1 = t0 + Duration::from_secs(60);
        let f3 = meta("f3", 3).content_id();
        c.expire(t1, t0 + Duration::from_secs(1), |id| *id == f3);
        assert_eq!((c.len(), c.owned.len()), (1, 1));
        assert!(c.publish(t1, src(1), 3, meta("f4", 4)).is_ok());
    }

    #[test]
    fn quota_of_hash_bytes_per_address() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        // Files of the largest size: a few fill an address's share of hash bytes.
        let big = |salt: u8| {
            let chunks = crate::meta::MAX_CHUNKS;
            let size = u64::from(chunks) * u64::from(crate::meta::MAX_CHUNK);
            FileMeta::new(format!("big{salt}"), size, crate::meta::MAX_CHUNK, vec![Hash20([salt; 20]); chunks as usize])
                .unwrap()
        };
        let per_file = big(0).hashes().len() * 20;
        let fit = MAX_HASH_BYTES_PER_IP / per_file;
        for salt in 0..fit as u8 {
            c.publish(t0, src(1), 1000, big(salt)).unwrap();
        }
        let over = c.publish(t0, src(1), 1000, big(fit as u8));
        assert!(matches!(&over, Err(Response::Error { code: ErrorCode::Full, message }) if message.contains("bytes")));
        assert!(per_file * fit + 20 <= MAX_HASH_BYTES_PER_IP);
        assert!(c.publish(t0, src(1), 1000, meta("small", 1)).is_ok(), "what is left still takes a small file");
        assert!(c.publish(t0, src(2), 1000, big(fit as u8)).is_ok(), "another address has its own share");
    }

    #[test]
    fn gate_good_wrong_key_missing_and_replayed() {
        let t0 = Instant::now();
        let key = PublishKey::from_bytes(b"sixteen byte key").unwrap();
        let wrong = PublishKey::from_bytes(b"not the same key").unwrap();
        let policy = Policy { files_per_ip: 2, publish_key: Some(key.clone()) };
        let gate = Gate::new(policy.clone(), [1; 16], t0);
        let here = IpAddr::from([127, 0, 0, 1]);
        let m = meta("f", 1);
        let nonce = gate.challenge(t0, here);
        let signed = (nonce, key.sign(&nonce, &m));
        assert_eq!(gate.admit(t0, here, Some(&signed), &m), Ok(()));
        let forged = (nonce, wrong.sign(&nonce, &m));
        assert_eq!(gate.admit(t0, here, Some(&forged), &m), Err("wrong publish key"));
        assert!(gate.admit(t0, here, None, &m).is_err(), "no MAC");
        assert!(gate.admit(t0, here, Some(&signed), &meta("g", 1)).is_err(), "the MAC covers the metadata");
        assert!(gate.admit(t0, IpAddr::from([10, 9, 9, 9]), Some(&signed), &m).is_err(), "replayed from elsewhere");
        // Replayed later: good within the challenge's two windows, refused after.
        let within = t0 + CHALLENGE_WINDOW * 2 - Duration::from_secs(1);
        assert_eq!(gate.admit(within, here, Some(&signed), &m), Ok(()));
        let later = t0 + CHALLENGE_WINDOW * 2;
        assert!(gate.admit(later, here, Some(&signed), &m).is_err(), "replayed later");
        let fresh = gate.challenge(later, here);
        assert_ne!(fresh, nonce);
        assert_eq!(gate.admit(later, here, Some(&(fresh, key.sign(&fresh, &m))), &m), Ok(()));
        // A restarted tracker (another secret) does not take the old challenge.
        assert!(Gate::new(policy, [2; 16], t0).admit(t0, here, Some(&signed), &m).is_err());
        // Without a key nothing is checked.
        let open = Gate::new(Policy::default(), [1; 16], t0);
        assert_eq!(open.admit(t0, here, Some(&forged), &m), Ok(()));
        assert_eq!(open.admit(t0, here, None, &m), Ok(()));
    }

    #[test]
    fn ipv6_counts_by_64() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a.into()), Source::of(b.into()));
        assert_ne!(Source::of(a.into()), Source::of(other.into()));
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped.into()), src(1));
    }

    #[test]
    fn unsafe_names_refused() {
        let mut c = Catalog::default();
        for bad in ["../x", "a/b", "a\0b", "..", "a\u{1b}[2Jb", "gpj.\u{202e}exe", "a\u{200b}b", "a\u{2028}"] {
            let got = publish(&mut c, Instant::now(), meta(bad, 1));
            assert!(matches!(got, Err(Response::Error { code: ErrorCode::Refused, .. })), "{bad:?}");
        }
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn expiry_only_without_seeders() {
        let t0 = Instant::now();
        let mut c = Catalog::default();
        let a = publish(&mut c, t0, meta("a", 1)).unwrap();
        publish(&mut c, t0, meta("b", 2)).unwrap();
        let t1 = t0 + Duration::from_secs(30);
        let dropped = c.expire(t1, t0 + Duration::from_secs(1), |id| *id == a);
        assert_eq!(dropped, vec!["b".to_string()]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.hash_bytes, 20);
        assert_eq!(c.owned.get(&src(1)), Some(&Held { files: 1, hash_bytes: 20 }));
    }
}

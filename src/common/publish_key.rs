//! The shared secret of `--publish-key`: a tracker given one accepts a
//! publish only with an HMAC-SHA1 made with it over a fresh tracker challenge
//! and the published metadata, so a captured publish is worthless later.
//!
//! HMAC (RFC 2104) is written out over the `sha1` crate we already use: a dozen
//! lines checked against RFC 2202's vectors, where the `hmac` crate would add a
//! dependency (and a `digest` version to keep in step with `sha1`) for one function.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::common::small_file::{open_nonblocking, read_regular};
use crate::meta::FileMeta;
use crate::wire::catalog::{encode_meta, Mac, Nonce};

/// Shortest key accepted: 128 bits.
pub const MIN_KEY: usize = 16;
/// Longest key.
pub const MAX_KEY: usize = 1024;
/// Longest key file read: the longest key and a CR LF.
pub const MAX_KEY_FILE: usize = MAX_KEY + 2;
/// What the MAC covers first, so a MAC made for anything else never matches.
const DOMAIN: &[u8] = b"lmk publish v1";
const BLOCK: usize = 64;

/// The secret bytes; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishKey(Vec<u8>);

/// A key file that cannot be used.
#[derive(Debug)]
pub enum KeyError {
    Read(PathBuf, std::io::Error),
    Length(PathBuf, usize),
    /// The default key could not be made (see [`default_file`]).
    Create(PathBuf, std::io::Error),
    /// Neither `XDG_STATE_HOME` nor `HOME` says where the default key lives.
    NoStateDir,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Read(p, e) => write!(f, "publish key {}: {e}", p.display()),
            KeyError::Length(p, n) => {
                write!(f, "publish key {}: {n} bytes, must be {MIN_KEY} to {MAX_KEY}", p.display())
            }
            KeyError::Create(p, e) => write!(f, "cannot make the publish key {}: {e}", p.display()),
            KeyError::NoStateDir => write!(f, "no XDG_STATE_HOME or HOME to keep the publish key in"),
        }
    }
}

impl std::error::Error for KeyError {}

impl fmt::Debug for PublishKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublishKey({} bytes)", self.0.len())
    }
}

impl PublishKey {
    /// The file's bytes less trailing CR/LF (so `echo SECRET > FILE` and a
    /// file without the newline give one key), 16 to 1024 of them. Only a
    /// regular file is read (a FIFO would block, `/dev/zero` never end), and
    /// at most [`MAX_KEY_FILE`] bytes of it.
    pub fn load(path: &Path) -> Result<PublishKey, KeyError> {
        let read = |path| read_regular(open_nonblocking(path)?, MAX_KEY_FILE);
        let bytes = read(path).map_err(|e| KeyError::Read(path.to_path_buf(), e))?;
        PublishKey::from_bytes(&bytes).map_err(|n| KeyError::Length(path.to_path_buf(), n))
    }

    /// The key in `path`, made first if there is none (`true`: made now):
    /// 32 random bytes as 64 hex digits, mode 0600, in a directory made
    /// 0700. The file appears whole and once (a hard link of a finished
    /// file, which never replaces one), so processes starting together agree
    /// on one key.
    pub fn load_or_create(path: &Path) -> Result<(PublishKey, bool), KeyError> {
        match PublishKey::load(path) {
            Err(KeyError::Read(_, e)) if e.kind() == ErrorKind::NotFound => {}
            loaded => return loaded.map(|key| (key, false)),
        }
        let made = write_new_key(path).map_err(|e| KeyError::Create(path.to_path_buf(), e))?;
        PublishKey::load(path).map(|key| (key, made))
    }

    /// Trims trailing CR/LF; the length left when it is out of range.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublishKey, usize> {
        let end = bytes.iter().rposition(|b| !matches!(b, b'\n' | b'\r')).map_or(0, |i| i + 1);
        let key = bytes.get(..end).unwrap_or_default();
        match key.len() {
            MIN_KEY..=MAX_KEY => Ok(PublishKey(key.to_vec())),
            n => Err(n),
        }
    }

    /// HMAC-SHA1(key, "lmk publish v1" | nonce | canonical metadata encoding).
    pub fn sign(&self, nonce: &Nonce, meta: &FileMeta) -> Mac {
        let mut encoded = Vec::with_capacity(64 + meta.hashes().len() * 20);
        encode_meta(meta, &mut encoded);
        hmac_sha1(&self.0, &[DOMAIN, nonce, &encoded])
    }

    /// True when `mac` is ours for `nonce` and `meta`; compares in constant time.
    pub fn verify(&self, nonce: &Nonce, meta: &FileMeta, mac: &Mac) -> bool {
        let want = self.sign(nonce, meta);
        want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Where a tracker keeps the key it makes on first start, and where a seeder
/// on the same host finds it: `$XDG_STATE_HOME/lmktorrent/publish.key`, else
/// `$HOME/.local/state/lmktorrent/publish.key`.
pub fn default_file() -> Result<PathBuf, KeyError> {
    let var = |name| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = var("XDG_STATE_HOME").or_else(|| var("HOME").map(|home| home.join(".local/state")));
    Ok(state.ok_or(KeyError::NoStateDir)?.join("lmktorrent").join("publish.key"))
}

/// Writes a fresh key to `path` unless one is there first; true if ours is.
fn write_new_key(path: &Path) -> io::Result<bool> {
    let dir = path.parent().ok_or(ErrorKind::InvalidInput)?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    let mut text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    // Named by process and call: no two writers ever share one.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".publish.key.{}.{call}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let written = options.open(&tmp).and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// HMAC-SHA1 (RFC 2104) of the concatenated `parts`.
fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha1::new();
    inner.update(pad(0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha1::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20 as H;
    use crate::meta::MIN_CHUNK;
    use crate::wire::catalog::{ErrorCode, Request, Response};

    fn hex(b: [u8; 20]) -> String {
        H(b).to_hex()
    }

    #[test]
    fn rfc2202_vectors() {
        assert_eq!(hex(hmac_sha1(&[0x0b; 20], &[b"Hi There"])), "b617318655057264e28bc0b6fb378c8ef146be00");
        assert_eq!(
            hex(hmac_sha1(b"Jefe", &[b"what do ya ", b"want for nothing?"])),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(hmac_sha1(&[0xaa; 80], &[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    /// The worked example of docs/PROTOCOL.md 8.2, byte for byte.
    #[test]
    fn protocol_md_example() {
        let hashes = [
            "897256b6709e1a4da9daba92b6bde39ccfccd8c1",
            "19e5dc34eda79ca3ee73860b61b66185149b6fb4",
            "c4ea21bb365bbeeaf5f2c654883e56d11e43c44e",
        ];
        let hashes = hashes.iter().map(|h| h.parse().unwrap()).collect();
        let meta = FileMeta::new("a.bin".into(), 32769, MIN_CHUNK, hashes).unwrap();
        assert_eq!(meta.content_id().to_hex(), "144a20420a8d540d7c776093994b6d18b73a4054");
        let key = PublishKey::from_bytes(b"correct horse battery staple\n").unwrap();
        let nonce: Nonce = std::array::from_fn(|i| 0x10 + i as u8);
        assert_eq!(hex(key.sign(&nonce, &meta)), "ebfa1bef67474ec3153debdae3f20c6b1f5334fa");
        let mut frame = Vec::new();
        Request::SignedPublish { nonce, mac: key.sign(&nonce, &meta), meta }.encode(&mut frame);
        assert_eq!((frame.len(), &frame[..5]), (125, &[0, 0, 0, 0x79, 0x05][..]));
        let mut error = Vec::new();
        Response::Error { code: ErrorCode::Unauthorized, message: "wrong publish key".into() }.encode(&mut error);
        assert_eq!(&error[..8], &[0, 0, 0, 0x15, 0xff, 5, 0, 17]);
    }

    #[test]
    fn key_file_rules() {
        assert_eq!(PublishKey::from_bytes(b"0123456789abcdef\r\n"), Ok(PublishKey(b"0123456789abcdef".to_vec())));
        assert_eq!(PublishKey::from_bytes(b"0123456789abcde\n"), Err(15));
        assert_eq!(PublishKey::from_bytes(b"\n\n"), Err(0));
        assert_eq!(PublishKey::from_bytes(&[7; MAX_KEY + 1]), Err(MAX_KEY + 1));
        assert!(!format!("{:?}", PublishKey::from_bytes(b"secretsecretsecret").unwrap()).contains("secret"));
        let e = PublishKey::load(std::path::Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.to_string(), "publish key /dev/zero: not a regular file");
        let dir = crate::common::test_dir::fresh("key-file");
        let long = dir.join("long");
        std::fs::write(&long, [b'k'; MAX_KEY_FILE + 1]).unwrap();
        let e = PublishKey::load(&long).unwrap_err();
        assert!(e.to_string().ends_with("longer than 1026 bytes"), "{e}");
        std::fs::write(&long, [b'k'; MAX_KEY_FILE]).unwrap();
        assert!(matches!(PublishKey::load(&long), Err(KeyError::Length(_, 1026))));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_default_key_is_made_once_private_and_shared_by_racing_starts() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::common::test_dir::fresh("key-default");
        let path = dir.join("state/lmktorrent/publish.key");
        let made: Vec<(PublishKey, bool)> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8).map(|_| s.spawn(|| PublishKey::load_or_create(&path).unwrap())).collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(made.iter().filter(|(_, new)| *new).count(), 1, "made once");
        assert!(made.iter().all(|(key, _)| *key == made[0].0), "one key for all");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let parent = path.parent().unwrap();
        assert_eq!(std::fs::metadata(parent).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_dir(parent).unwrap().count(), 1, "no temporary file left");
        assert_eq!(PublishKey::load_or_create(&path).unwrap(), (made[0].0.clone(), false), "kept on restart");
        assert_eq!(std::fs::read(&path).unwrap().len(), 65, "64 hex digits and a newline");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mac_binds_key_nonce_and_metadata() {
        let key = PublishKey::from_bytes(b"a shared secret!").unwrap();
        let other = PublishKey::from_bytes(b"another secret!!").unwrap();
        let meta = FileMeta::new("f".into(), 5, MIN_CHUNK, vec![H::of(b"c")]).unwrap();
        let renamed = FileMeta::new("g".into(), 5, MIN_CHUNK, vec![H::of(b"c")]).unwrap();
        let mac = key.sign(&[1; 16], &meta);
        assert!(key.verify(&[1; 16], &meta, &mac));
        assert!(!other.verify(&[1; 16], &meta, &mac), "wrong key");
        assert!(!key.verify(&[2; 16], &meta, &mac), "another challenge");
        assert!(!key.verify(&[1; 16], &renamed, &mac), "other metadata");
    }
}

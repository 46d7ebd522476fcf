//! Signing keys: one ed25519 key per OS user, kept in the user's config folder.
//!
//! The key lives in `<config>/keys/ed25519.pem` (PKCS#8, file mode 0600, folder 0700), where
//! `<config>` is `$LOUPE_CONFIG_DIR` or the platform's config folder for Loupe. Public keys are
//! written `ed25519:<base64 of the 32 bytes>`, which is what `loupe team add --key` takes.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::SyncError;

/// The environment variable that overrides the config folder (tests use temporary folders).
pub const CONFIG_DIR_ENV: &str = "LOUPE_CONFIG_DIR";

const KEY_FILE: &str = "ed25519.pem";

/// The folder holding Loupe's per-user configuration: `$LOUPE_CONFIG_DIR`, else the platform's
/// config folder (`~/.config/loupe` on Linux).
pub fn config_dir() -> Result<PathBuf, SyncError> {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("org", "loupe", "loupe")
        .map(|d| d.config_dir().to_path_buf())
        .ok_or_else(|| {
            SyncError::Keys(format!(
                "no home folder to keep signing keys in: set {CONFIG_DIR_ENV}"
            ))
        })
}

/// Where the signing key of the config folder `config_dir` lives: `<config_dir>/keys/ed25519.pem`.
pub fn key_path(config_dir: &Path) -> PathBuf {
    keys_dir(config_dir).join(KEY_FILE)
}

/// The private (0700) folder the key file is in.
fn keys_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("keys")
}

/// A public key as stored in the roster and named in packs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub VerifyingKey);

impl PublicKey {
    /// Parses `ed25519:<base64>` (the prefix is optional).
    pub fn parse(text: &str) -> Result<Self, SyncError> {
        let text = text.trim();
        let b64 = text.strip_prefix("ed25519:").unwrap_or(text);
        let bad =
            |why: &str| SyncError::Keys(format!("{text:?} is not an ed25519 public key: {why}"));
        let bytes = B64.decode(b64).map_err(|e| bad(&e.to_string()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("expected 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|e| bad(&e.to_string()))
    }

    /// True when `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verify(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// This OS user's signing key.
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public())
    }
}

impl Identity {
    /// A fresh random key (not saved).
    pub fn generate() -> Self {
        // ed25519-dalek 2 wants rand_core 0.6; rand 0.9's OS-seeded generator gives the seed.
        let seed: [u8; 32] = rand::random();
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Loads the key from `<config_dir>/keys/`, creating it (0600) on first use.
    pub fn load_or_create(config_dir: &Path) -> Result<Self, SyncError> {
        let path = key_path(config_dir);
        if path.is_file() {
            return Self::load(&path);
        }
        create_private_dir(&keys_dir(config_dir))?;
        let identity = Self::generate();
        let pem = identity
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| SyncError::Keys(format!("cannot encode a new key: {e}")))?;
        match write_private_file(&path, pem.as_bytes()) {
            Ok(()) => Ok(identity),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(&path),
            Err(e) => Err(SyncError::Keys(format!("{}: {e}", path.display()))),
        }
    }

    /// Loads the key of the default config folder.
    pub fn load_default() -> Result<Self, SyncError> {
        Self::load_or_create(&config_dir()?)
    }

    fn load(path: &Path) -> Result<Self, SyncError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SyncError::Keys(format!("{}: {e}", path.display())))?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| {
            SyncError::Keys(format!(
                "{}: not an ed25519 private key: {e}",
                path.display()
            ))
        })?;
        Ok(Self { key })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The 64-byte signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

fn create_private_dir(dir: &Path) -> Result<(), SyncError> {
    let err = |e: std::io::Error| SyncError::Keys(format!("{}: {e}", dir.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(err)
    }
}

fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::load_or_create(dir.path()).expect("create");
        let b = Identity::load_or_create(dir.path()).expect("load");
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn public_keys_round_trip_and_verify() {
        let id = Identity::generate();
        let text = id.public().to_string();
        let back = PublicKey::parse(&text).expect("parse");
        assert_eq!(back, id.public());
        let sig = id.sign(b"hello");
        assert!(back.verifies(b"hello", &sig));
        assert!(!back.verifies(b"hellO", &sig));
        assert!(!Identity::generate().public().verifies(b"hello", &sig));
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
    }
}

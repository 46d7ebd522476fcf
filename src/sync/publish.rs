//! Publishing a version: its COCO and YOLO exports written to `exports/<version>/` in the shared
//! store with a signed manifest (file hashes, counts, the version's id and revision position), so
//! a training job reads a fixed dataset it can verify.
//!
//! Images are referenced, not copied (the manifest lists each with its content hash), unless
//! `images` is set: then the YOLO export carries them. Everything is written create-if-absent;
//! the manifest goes last, so a present manifest means a complete export, and a retried publish
//! after a crash finishes the job. A published version is never overwritten.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::{self, Identity, PublicKey};
use super::roster::Roster;
use super::store::{RemoteSpec, RemoteStore};
use super::{SyncError, SyncOptions};
use crate::formats::{self, Format};
use crate::store::{Project, now_ms};

/// How to publish.
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    pub remote: Option<String>,
    pub spec: Option<RemoteSpec>,
    pub config_dir: Option<PathBuf>,
    /// Copy the images into the YOLO export instead of referencing them.
    pub images: bool,
}

/// One file of a published export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to `exports/<version>/`.
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

/// An image the export refers to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestImage {
    pub file_name: String,
    pub blake3: Option<String>,
    pub width: u32,
    pub height: u32,
    pub boxes: u64,
}

/// `exports/<version>/manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    pub version_id: Uuid,
    pub message: String,
    /// The version's position in the publishing project's revision log.
    pub revisions: i64,
    pub version_created_ms: i64,
    pub published_ms: i64,
    pub publisher: PublicKey,
    pub project_client: Uuid,
    pub classes: Vec<String>,
    pub image_count: u64,
    pub box_count: u64,
    pub images_included: bool,
    pub files: Vec<ManifestFile>,
    pub images: Vec<ManifestImage>,
}

/// What a publish wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishReport {
    pub version: String,
    pub location: String,
    pub files: usize,
    pub bytes: u64,
    pub images: u64,
    pub boxes: u64,
    pub manifest_blake3: String,
}

fn prefix(version: &str) -> String {
    format!("exports/{version}")
}

/// Publishes version `version` of the project to the remote.
pub fn publish(
    project_path: &Path,
    version: &str,
    options: &PublishOptions,
) -> Result<PublishReport, SyncError> {
    if version.is_empty() || version.contains('/') || version == "current" {
        return Err(SyncError::Config(format!(
            "{version:?}: publish a frozen version (`loupe version create NAME`), not the live state"
        )));
    }
    let mut project = Project::open(project_path)?;
    let sync_options = SyncOptions {
        remote: options.remote.clone(),
        spec: options.spec.clone(),
        ..SyncOptions::default()
    };
    let info = super::engine::resolve_remote(&mut project, &sync_options)?;
    let identity = match &options.config_dir {
        Some(d) => Identity::load_or_create(d)?,
        None => Identity::load_or_create(&keys::config_dir()?)?,
    };
    let store = RemoteStore::open(&info.spec, None)?;
    let v = project.version(version)?;
    let dataset = project.dataset_at(Some(version))?;
    let manifest_key = format!("{}/manifest.json", prefix(version));
    if store.get(&manifest_key)?.is_some() {
        return Err(SyncError::Config(format!(
            "version {version} is already published at {}/{}; published versions are immutable",
            info.spec.url,
            prefix(version)
        )));
    }

    let work = std::env::temp_dir().join(format!("loupe-publish-{}", Uuid::now_v7()));
    let _cleanup = RemoveOnDrop(work.clone());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SyncError::Io { path, source }
    };
    std::fs::create_dir_all(work.join("coco")).map_err(io(&work))?;
    formats::export(Format::Coco, &dataset, &work.join("coco"), None)?;
    let images_root = options.images.then(|| project.root().to_path_buf());
    formats::export(
        Format::Yolo,
        &dataset,
        &work.join("yolo"),
        images_root.as_deref(),
    )?;
    // data.yaml names the temporary folder; without `path`, YOLO tools use the yaml's folder.
    let yaml_path = work.join("yolo").join("data.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).map_err(io(&yaml_path))?;
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.starts_with("path:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&yaml_path, yaml).map_err(io(&yaml_path))?;

    let mut files = Vec::new();
    let mut total_bytes = 0;
    for entry in walkdir::WalkDir::new(&work).sort_by_file_name() {
        let entry = entry.map_err(|e| SyncError::Config(format!("{}: {e}", work.display())))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(&work)
            .map_err(|e| SyncError::Config(e.to_string()))?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let bytes = std::fs::read(entry.path()).map_err(io(entry.path()))?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let key = format!("{}/{rel}", prefix(version));
        let len = bytes.len() as u64;
        if !store.put_new(&key, Bytes::from(bytes))? {
            // Written by an interrupted publish: fine if it is the same content.
            let existing = store.get(&key)?.unwrap_or_default();
            if blake3::hash(&existing).to_hex().as_str() != hash {
                return Err(SyncError::Config(format!(
                    "{}: {key} exists with other content; this version was published differently before",
                    info.spec.url
                )));
            }
        }
        total_bytes += len;
        files.push(ManifestFile {
            path: rel,
            bytes: len,
            blake3: hash,
        });
    }

    let mut images = Vec::with_capacity(dataset.images.len());
    let mut box_count = 0;
    for img in &dataset.images {
        let hash = project.image_by_path(&img.file_name)?.and_then(|r| r.hash);
        box_count += img.boxes.len() as u64;
        images.push(ManifestImage {
            file_name: img.file_name.clone(),
            blake3: hash,
            width: img.width,
            height: img.height,
            boxes: img.boxes.len() as u64,
        });
    }
    let manifest = Manifest {
        format: 1,
        version: v.name.clone(),
        version_id: v.id,
        message: v.message.clone(),
        revisions: v.revisions,
        version_created_ms: v.created_ms,
        published_ms: now_ms(),
        publisher: identity.public(),
        project_client: project.client_id(),
        classes: dataset.classes.clone(),
        image_count: dataset.images.len() as u64,
        box_count,
        images_included: options.images,
        files,
        images,
    };
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    let manifest_blake3 = blake3::hash(&manifest_bytes).to_hex().to_string();
    let signature = B64.encode(identity.sign(&signed_message(&manifest_bytes)));
    let sig_key = format!("{manifest_key}.sig");
    store.put_replace(
        &sig_key,
        Bytes::from(format!("{} {signature}\n", identity.public())),
    )?;
    if !store.put_new(&manifest_key, Bytes::from(manifest_bytes))? {
        return Err(SyncError::Config(format!(
            "version {version} was published by someone else at the same moment"
        )));
    }
    Ok(PublishReport {
        version: v.name,
        location: format!(
            "{}/{}",
            info.spec.url.trim_end_matches('/'),
            prefix(version)
        ),
        files: manifest.files.len(),
        bytes: total_bytes,
        images: manifest.image_count,
        boxes: manifest.box_count,
        manifest_blake3,
    })
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = b"loupe manifest v1\0".to_vec();
    m.extend_from_slice(blake3::hash(manifest).as_bytes());
    m
}

/// Checks a published version: the manifest's signature (by a member of `roster`, when given)
/// and every file's hash. Returns the manifest.
pub fn verify_published(
    store: &RemoteStore,
    version: &str,
    roster: Option<&Roster>,
) -> Result<Manifest, SyncError> {
    let manifest_key = format!("{}/manifest.json", prefix(version));
    let bad =
        |why: String| SyncError::Config(format!("{}/{}: {why}", store.url(), prefix(version)));
    let bytes = store
        .get(&manifest_key)?
        .ok_or_else(|| bad("not published (no manifest.json)".into()))?;
    let sig = store
        .get(&format!("{manifest_key}.sig"))?
        .ok_or_else(|| bad("manifest.json.sig is missing".into()))?;
    let sig = String::from_utf8_lossy(&sig);
    let (key, signature) = sig
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("manifest.json.sig is malformed".into()))?;
    let key = PublicKey::parse(key)?;
    let signature = B64
        .decode(signature)
        .map_err(|e| bad(format!("manifest signature: {e}")))?;
    if !key.verifies(&signed_message(&bytes), &signature) {
        return Err(bad("the manifest's signature does not verify".into()));
    }
    if let Some(roster) = roster
        && roster.member_by_key(&key).is_none()
    {
        return Err(bad(format!(
            "signed by {key}, who is not in the team roster"
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json: {e}")))?;
    if manifest.publisher != key {
        return Err(bad(
            "the manifest names another publisher than its signer".into()
        ));
    }
    for f in &manifest.files {
        let key = format!("{}/{}", prefix(version), f.path);
        let data = store
            .get(&key)?
            .ok_or_else(|| bad(format!("{} is missing", f.path)))?;
        if data.len() as u64 != f.bytes || blake3::hash(&data).to_hex().as_str() != f.blake3 {
            return Err(bad(format!(
                "{} does not match its hash in the manifest",
                f.path
            )));
        }
    }
    Ok(manifest)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

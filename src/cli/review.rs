//! `loupe batch | audit | triage | eval | meta | tag | review`: the data loop on the command line.
//!
//! Each command is a thin layer over `crate::review`: parse, call, print (text or `--json`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{Cli, FilterArgs, open, print_json};
use crate::model::{ReviewState, Role};
use crate::review::{self, EvalOptions, GroundTruth, Slice, eval::CocoEval};

// ------------------------------------------------------------------------------ eval

/// `loupe eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model run whose predictions are evaluated (name or id).
    #[arg(long)]
    pub run: String,
    /// The version whose labels are the ground truth (default: the current labels).
    #[arg(long)]
    pub version: Option<String>,
    /// Also evaluate a slice: KEY=VALUE (metadata), KEY (one slice per value) or tag:NAME.
    #[arg(long = "slice")]
    pub slices: Vec<String>,
    /// Compare with another run on the images both covered: per-class deltas.
    #[arg(long)]
    pub compare: Option<String>,
    /// Count every label as ground truth, not only approved boxes, on the images someone has
    /// labelled or reviewed (never on images nobody looked at).
    #[arg(long)]
    pub all_labels: bool,
    #[arg(long)]
    pub json: bool,
}

/// `loupe eval-files` (hidden): pycocotools-compatible evaluation of two COCO files.
#[derive(Args, Debug)]
pub struct EvalFilesArgs {
    /// COCO ground-truth file (images, categories, annotations).
    pub gt: PathBuf,
    /// COCO results list (image_id, category_id, bbox, score), or a COCO file with scores.
    pub results: PathBuf,
    #[arg(long)]
    pub json: bool,
}

fn metric(x: f64) -> String {
    if x < 0.0 {
        "    -".to_owned()
    } else {
        format!("{x:.3}")
    }
}

fn print_summary(e: &CocoEval) {
    let line = |keys: &[(&str, f64)]| {
        keys.iter()
            .map(|(k, v)| format!("{k} {}", metric(*v)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let entries = e.summary.entries();
    println!("  {}", line(&entries[..6]));
    println!("  {}", line(&entries[6..]));
}

fn print_eval(e: &review::RunEval) {
    println!(
        "run {} against {} of {}: {} images, {} labels, {} predictions",
        e.run,
        match e.ground_truth {
            GroundTruth::Approved => "the approved labels",
            GroundTruth::AllLabels => "every label",
        },
        e.version,
        e.overall.images,
        e.overall.gt_boxes,
        e.overall.dt_boxes
    );
    println!("  images: {}", e.coverage);
    print_summary(&e.overall);
    println!(
        "  {:<24} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7}",
        "class", "AP", "AP50", "AP75", "AR100", "labels", "preds"
    );
    for c in &e.overall.per_class {
        if c.gt == 0 && c.dt == 0 {
            continue;
        }
        println!(
            "  {:<24} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7}",
            c.name,
            metric(c.ap),
            metric(c.ap50),
            metric(c.ap75),
            metric(c.ar100),
            c.gt,
            c.dt
        );
    }
    for s in &e.slices {
        println!(
            "slice {} ({} images, {} labels, {} predictions):",
            s.slice, s.eval.images, s.eval.gt_boxes, s.eval.dt_boxes
        );
        print_summary(&s.eval);
    }
}

pub fn eval(cli: &Cli, args: &EvalArgs) -> Result<()> {
    let p = open(cli)?;
    let opts = EvalOptions {
        run: args.run.clone(),
        version: args.version.clone(),
        slices: args
            .slices
            .iter()
            .map(|s| Slice::parse(s))
            .collect::<Result<_, _>>()?,
        ground_truth: if args.all_labels {
            GroundTruth::AllLabels
        } else {
            GroundTruth::Approved
        },
    };
    match &args.compare {
        None => {
            let e = review::evaluate_run(&p, &opts)?;
            if e.overall.gt_boxes == 0 && opts.ground_truth == GroundTruth::Approved {
                anyhow::bail!(
                    "nothing to evaluate against: no approved label on the {} images run {} covered \
                     (approve labels, or pass --all-labels to use the labels of the images someone \
                     has labelled or reviewed)",
                    e.overall.images,
                    e.run
                );
            }
            if args.json {
                print_json(&e)?;
            } else {
                print_eval(&e);
            }
        }
        Some(other) => {
            let c = review::compare_runs(&p, &opts, other)?;
            if args.json {
                return print_json(&c);
            }
            println!(
                "{} vs {} on the {} images both covered (delta = {} - {}):",
                c.a.run, c.b.run, c.a.overall.images, c.a.run, c.b.run
            );
            for (k, a, b, d) in &c.summary {
                println!("  {k:<6} {} {} {:+.3}", metric(*a), metric(*b), d);
            }
            println!(
                "  {:<24} {:>6} {:>6} {:>7}  a is",
                "class", "AP a", "AP b", "delta"
            );
            for d in &c.per_class {
                if d.verdict == "n/a" && d.ap_a < 0.0 && d.ap_b < 0.0 {
                    continue;
                }
                println!(
                    "  {:<24} {:>6} {:>6} {:>7}  {}",
                    d.class,
                    metric(d.ap_a),
                    metric(d.ap_b),
                    d.ap_delta
                        .map_or_else(|| "-".to_owned(), |x| format!("{x:+.3}")),
                    d.verdict
                );
            }
        }
    }
    Ok(())
}

pub fn eval_files(args: &EvalFilesArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let e = review::eval::evaluate_files(&args.gt, &args.results).with_context(|| {
        format!(
            "cannot evaluate {} against {}",
            args.results.display(),
            args.gt.display()
        )
    })?;
    if args.json {
        print_json(&e)?;
    } else {
        println!(
            "{} images, {} GT boxes, {} detections, evaluated in {:.3}s",
            e.images,
            e.gt_boxes,
            e.dt_boxes,
            started.elapsed().as_secs_f64()
        );
        print_summary(&e);
    }
    Ok(())
}

// ------------------------------------------------------------------------------ triage

/// `loupe triage`.
#[derive(Args, Debug)]
pub struct TriageArgs {
    /// The model run whose predictions are compared with the labels (name or id).
    #[arg(long)]
    pub run: String,
    /// Show the best N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only images in this slice: KEY=VALUE, KEY (any value) or tag:NAME. Repeatable.
    #[arg(long = "slice")]
    pub slices: Vec<String>,
    /// Also rank images nobody has labelled or reviewed yet (their proposals are not missing
    /// labels, only unreviewed).
    #[arg(long)]
    pub include_unreviewed: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn triage(cli: &Cli, args: &TriageArgs) -> Result<()> {
    let p = open(cli)?;
    let mut opts = review::TriageOptions::new(&args.run);
    opts.limit = args.limit;
    opts.slices = args
        .slices
        .iter()
        .map(|s| Slice::parse(s))
        .collect::<Result<_, _>>()?;
    opts.include_unreviewed = args.include_unreviewed;
    let triage = review::triage_ranked(&p, &opts)?;
    // What was left out comes first.
    if triage.skipped_unreviewed > 0 {
        eprintln!(
            "note: {} image(s) the run covered have neither labels nor a review yet and are not ranked (--include-unreviewed ranks them)",
            triage.skipped_unreviewed
        );
    }
    let ranked = triage.images;
    if ranked.is_empty() && triage.skipped_unreviewed == 0 {
        anyhow::bail!(
            "run {:?} covers no image to rank (with the slices and filters given)",
            args.run
        );
    }
    if args.json {
        return print_json(&ranked);
    }
    for (i, img) in ranked.iter().enumerate() {
        if img.score <= 0.0 {
            println!("{} more image(s) with nothing to flag", ranked.len() - i);
            break;
        }
        let s = &img.issue_scores;
        println!(
            "{:>3}. {:<40} score {:.2}  (overlooked {:.2}, spurious {:.2}, badly located {:.2}, swapped class {:.2}; {} flagged)",
            i + 1,
            img.path,
            img.score,
            s.overlooked,
            s.spurious,
            s.badly_located,
            s.swapped_class,
            img.flagged
        );
        for issue in img.issues.iter().take(3) {
            println!(
                "       - {} {:.2}: {}",
                issue.kind.as_str(),
                issue.score,
                issue.reason
            );
        }
        let c = &img.counts;
        let more = img.issues.len().saturating_sub(3);
        println!(
            "       {}signals: missing {}, wrong class {}, unmatched {}, confusion {}, uncertain {} (use --json for every box)",
            if more > 0 {
                format!("… {more} more issue(s); ")
            } else {
                String::new()
            },
            c.missing_label,
            c.wrong_class,
            c.unmatched_label,
            c.class_confusion,
            c.uncertain
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------ batches

/// `loupe batch`.
#[derive(Subcommand, Debug)]
pub enum BatchCmd {
    /// Create a batch from the images matching the filter, or a seeded random sample of them.
    Create {
        name: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Keep N images drawn at random from those matching.
        #[arg(long)]
        sample: Option<usize>,
        /// Seed of the sample (recorded in the batch; random when not given).
        #[arg(long)]
        seed: Option<u64>,
        /// Also take images that are already in another batch.
        #[arg(long)]
        allow_overlap: bool,
        #[arg(long)]
        json: bool,
    },
    /// Assign a batch to a user.
    Assign {
        name: String,
        /// The user (name or id) who will work on it.
        #[arg(value_name = "USER")]
        assignee: String,
    },
    /// Hand a batch in for audit (by its assignee).
    Submit {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List batches.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The order of a batch's review queue: `batch` (as made) or `uncertainty` (the model's
    /// least certain images first: lowest top score, then most boxes scored near 0.5).
    Order {
        name: String,
        #[arg(value_parser = ["batch", "uncertainty"])]
        order: String,
    },
    /// Show a batch's images in review order (failed images first when it was returned) and
    /// its latest audit.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

fn print_batch_line(b: &review::BatchInfo) {
    println!(
        "{:<20} {:<10} round {:<2} {:>6} images  assignee {}  order {}",
        b.name,
        b.state.as_str(),
        b.round,
        b.images,
        b.assignee.as_deref().unwrap_or("-"),
        b.queue_order.as_str()
    );
}

pub fn batch(cli: &Cli, cmd: &BatchCmd) -> Result<()> {
    match cmd {
        BatchCmd::Create {
            name,
            filter,
            sample,
            seed,
            allow_overlap,
            json,
        } => {
            let mut p = open(cli)?;
            let b = review::create_batch(
                &mut p,
                &review::NewBatch {
                    name: name.clone(),
                    filter: filter.to_filter()?,
                    sample: *sample,
                    seed: *seed,
                    allow_overlap: *allow_overlap,
                },
            )?;
            if *json {
                return print_json(&b);
            }
            println!("batch {} created: {} images", b.name, b.images);
        }
        BatchCmd::Assign { name, assignee } => {
            let mut p = open(cli)?;
            let b = review::assign_batch(&mut p, name, assignee)?;
            println!(
                "batch {} assigned to {}",
                b.name,
                b.assignee.as_deref().unwrap_or(assignee)
            );
        }
        BatchCmd::Submit { name, json } => {
            let mut p = open(cli)?;
            let r = review::submit_batch(&mut p, name)?;
            if *json {
                return print_json(&r);
            }
            println!(
                "batch {} submitted for audit (round {})",
                r.batch.name, r.batch.round
            );
            if r.unreviewed_proposals > 0 || r.returned_boxes > 0 {
                eprintln!(
                    "warning: {} proposal(s) not decided and {} returned box(es) not fixed in this batch",
                    r.unreviewed_proposals, r.returned_boxes
                );
            }
        }
        BatchCmd::Order { name, order } => {
            let mut p = open(cli)?;
            let order = review::QueueOrder::parse(order)
                .with_context(|| format!("unknown order {order:?}: use batch or uncertainty"))?;
            let b = review::set_queue_order(&mut p, name, order)?;
            println!("batch {} is reviewed in {} order", b.name, order.as_str());
        }
        BatchCmd::List { json } => {
            let p = open(cli)?;
            let list = review::batches(&p)?;
            if *json {
                return print_json(&list);
            }
            for b in &list {
                print_batch_line(b);
            }
        }
        BatchCmd::Show { name, json } => {
            let p = open(cli)?;
            let d = review::batch_detail(&p, name)?;
            if *json {
                return print_json(&d);
            }
            print_batch_line(&d.batch);
            for img in &d.images {
                let mark = match img.verdict {
                    Some(review::Verdict::Fail) => "FAIL",
                    Some(review::Verdict::Pass) => "pass",
                    None => "    ",
                };
                let top = img
                    .top_score
                    .map_or_else(|| "    -".to_owned(), |s| format!("{s:>5.2}"));
                println!(
                    "  {mark} {:<40} {:>3} boxes {:>3} proposals {:>3} returned  top {top} {:>3} near{}",
                    img.path,
                    img.boxes,
                    img.proposals,
                    img.returned,
                    img.near_threshold,
                    img.comment
                        .as_deref()
                        .map(|c| format!("  \"{c}\""))
                        .unwrap_or_default()
                );
            }
            if let Some(a) = &d.audit {
                print_audit(a);
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ audits

/// `loupe audit`.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Sample a submitted batch for audit: K% of each annotator's images, at least N in all.
    Start {
        batch: String,
        #[arg(long, default_value_t = 10.0)]
        percent: f64,
        #[arg(long = "min", default_value_t = 10)]
        min: usize,
        /// Seed of the sample (recorded; random when not given).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Mark a sampled image (path or id) pass or fail.
    Mark {
        batch: String,
        image: String,
        /// pass or fail
        verdict: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Accept the batch (approves its boxes) or return it to its annotator.
    Decide {
        batch: String,
        /// accept or return
        decision: String,
        #[arg(long)]
        json: bool,
    },
    /// Show the latest audit of a batch.
    Show {
        batch: String,
        #[arg(long)]
        json: bool,
    },
}

fn print_audit(a: &review::AuditInfo) {
    println!(
        "audit of {} round {} by {} ({}% per annotator, min {}, seed {}): {} pass, {} fail, {} to mark{}",
        a.batch,
        a.round,
        a.auditor,
        a.percent,
        a.min_images,
        a.seed,
        a.passed,
        a.failed,
        a.pending,
        a.decision
            .map(|d| format!(", decided: {}", d.as_str()))
            .unwrap_or_default()
    );
    for s in &a.strata {
        println!(
            "  annotator {:<16} {:>5} images, {:>4} sampled, {:>3} failed",
            s.annotator.as_deref().unwrap_or("(nobody)"),
            s.images,
            s.sampled,
            s.failed
        );
    }
    for it in &a.items {
        println!(
            "  {:<4} {:<40} {}{}",
            it.verdict.map_or("-", review::Verdict::as_str),
            it.path,
            it.annotator.as_deref().unwrap_or("(nobody)"),
            it.comment
                .as_deref()
                .map(|c| format!("  \"{c}\""))
                .unwrap_or_default()
        );
    }
}

pub fn audit(cli: &Cli, cmd: &AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Start {
            batch,
            percent,
            min,
            seed,
            json,
        } => {
            let mut p = open(cli)?;
            let a = review::audit_start(
                &mut p,
                batch,
                &review::AuditOptions {
                    percent: *percent,
                    min_images: *min,
                    seed: *seed,
                },
            )?;
            if *json {
                return print_json(&a);
            }
            print_audit(&a);
        }
        AuditCmd::Mark {
            batch,
            image,
            verdict,
            comment,
        } => {
            let mut p = open(cli)?;
            let v = review::Verdict::parse(verdict)
                .with_context(|| format!("{verdict:?}: use pass or fail"))?;
            let it = review::audit_mark(&mut p, batch, image, v, comment.as_deref())?;
            println!("{}: {}", it.path, v.as_str());
        }
        AuditCmd::Decide {
            batch,
            decision,
            json,
        } => {
            let mut p = open(cli)?;
            let d = review::AuditDecision::parse(decision)
                .with_context(|| format!("{decision:?}: use accept or return"))?;
            let r = review::audit_decide(&mut p, batch, d)?;
            if *json {
                return print_json(&r);
            }
            match d {
                review::AuditDecision::Accept => {
                    println!(
                        "batch {} accepted: {} box(es) approved",
                        r.batch.name, r.boxes_changed
                    );
                }
                review::AuditDecision::Return => println!(
                    "batch {} returned to {}: {} failed image(s), {} box(es) returned",
                    r.batch.name,
                    r.batch.assignee.as_deref().unwrap_or("its annotator"),
                    r.failed_images,
                    r.boxes_changed
                ),
            }
        }
        AuditCmd::Show { batch, json } => {
            let p = open(cli)?;
            let Some(a) = review::batches::audit_of(&p, batch)? else {
                anyhow::bail!("batch {batch} has no audit yet");
            };
            if *json {
                return print_json(&a);
            }
            print_audit(&a);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ meta, tags

/// `loupe meta`.
#[derive(Subcommand, Debug)]
pub enum MetaCmd {
    /// Import metadata: CSV with a header `path,key1,key2,…` (or `file,…`), or JSON
    /// `{"path": {"key": "value"}}`, or a JSON list of objects with `path`/`file_name`.
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List metadata keys, their values and how many images have each (the slices).
    Keys {
        #[arg(long)]
        json: bool,
    },
}

/// `loupe tag`.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// The image: its path in the project (a unique suffix or file name works), or its id.
    pub image: String,
    pub tag: String,
    /// Remove the tag instead.
    #[arg(long)]
    pub remove: bool,
}

pub fn meta(cli: &Cli, cmd: &MetaCmd) -> Result<()> {
    match cmd {
        MetaCmd::Import { file, json } => {
            let mut p = open(cli)?;
            let r = review::import_meta(&mut p, file)
                .with_context(|| format!("{}: metadata import refused", file.display()))?;
            if *json {
                return print_json(&r);
            }
            println!(
                "{}: {} records, {} images, {} values set, {} removed, keys: {}",
                file.display(),
                r.records,
                r.images,
                r.values_set,
                r.values_removed,
                r.keys.join(", ")
            );
            for w in r.warnings.iter().take(20) {
                eprintln!("warning: {}: {}", w.location, w.message);
            }
            if r.warnings.len() > 20 {
                eprintln!(
                    "… {} more warnings (use --json for all)",
                    r.warnings.len() - 20
                );
            }
        }
        MetaCmd::Keys { json } => {
            let p = open(cli)?;
            let keys = review::meta_slices(&p)?;
            if *json {
                return print_json(&keys);
            }
            for k in &keys {
                let values: Vec<String> = k
                    .values
                    .iter()
                    .map(|v| format!("{} ({})", v.value, v.images))
                    .collect();
                println!("{:<20} {}", k.key, values.join(", "));
            }
        }
    }
    Ok(())
}

pub fn tag(cli: &Cli, args: &TagArgs) -> Result<()> {
    let mut p = open(cli)?;
    let tags = review::meta::tag_image(&mut p, &args.image, &args.tag, !args.remove)?;
    println!(
        "{}: {}",
        args.image,
        if tags.is_empty() {
            "(no tags)".to_owned()
        } else {
            tags.join(", ")
        }
    );
    Ok(())
}

// ------------------------------------------------------------------------------ review

/// `loupe review`.
#[derive(Subcommand, Debug)]
pub enum ReviewCmd {
    /// Move a box to another review state (checked against your role).
    Set {
        /// The box id.
        id: String,
        /// proposed, accepted, corrected, rejected, submitted, approved or returned.
        state: String,
        /// Why (required when returning a box; the annotator sees it).
        #[arg(long)]
        reason: Option<String>,
    },
    /// The legal state transitions and the least role for each.
    Transitions {
        #[arg(long)]
        json: bool,
    },
    /// Per-annotator statistics: images per hour, corrections, approval rate, audit failures,
    /// and the time measured in the app (seconds per image and per box, model-assisted share,
    /// actions and key presses).
    Stats {
        /// The measured time of each image instead: per image and annotator, the active
        /// seconds, visits, actions, key presses and labels by origin.
        #[arg(long)]
        images: bool,
        #[arg(long)]
        json: bool,
    },
    /// Agreement between people who labeled the same images, per pair and per class.
    Agreement {
        /// Boxes match at or above this IoU.
        #[arg(long, default_value_t = 0.5)]
        iou: f64,
        #[arg(long)]
        json: bool,
    },
}

pub fn review(cli: &Cli, cmd: &ReviewCmd) -> Result<()> {
    match cmd {
        ReviewCmd::Set { id, state, reason } => {
            let mut p = open(cli)?;
            let id =
                uuid::Uuid::parse_str(id).with_context(|| format!("{id:?} is not a box id"))?;
            let to = ReviewState::parse(state).with_context(|| {
                format!("unknown state {state:?}: use proposed, accepted, corrected, rejected, submitted, approved or returned")
            })?;
            let a = review::set_state(&mut p, id, to, reason.as_deref())?;
            let me = p.current_user()?;
            println!(
                "box {} is now {} (by {})",
                a.id,
                a.value.state.as_str(),
                me.name
            );
        }
        ReviewCmd::Transitions { json } => {
            let table = review::transition_table();
            if *json {
                print_json(&table)?;
            } else {
                for r in table {
                    println!(
                        "{:<10} -> {:<10} {} or above",
                        r.from.as_str(),
                        r.to.as_str(),
                        r.min_role.as_str()
                    );
                }
            }
        }
        ReviewCmd::Stats { images: true, json } => {
            let p = open(cli)?;
            let times = p.image_times()?;
            if *json {
                return print_json(&times);
            }
            println!(
                "{:<40} {:<16} {:>6} {:>9} {:>7} {:>6} {:>6} {:>6}",
                "image", "user", "visits", "active s", "actions", "keys", "drawn", "model"
            );
            for t in &times {
                #[allow(clippy::cast_precision_loss)]
                let seconds = t.active_ms as f64 / 1000.0;
                println!(
                    "{:<40} {:<16} {:>6} {:>9.1} {:>7} {:>6} {:>6} {:>6}",
                    t.path,
                    t.user,
                    t.visits,
                    seconds,
                    t.actions,
                    t.key_presses,
                    t.boxes_human,
                    t.boxes_model
                );
            }
        }
        ReviewCmd::Stats {
            images: false,
            json,
        } => {
            let p = open(cli)?;
            let stats = review::annotator_stats(&p)?;
            if *json {
                return print_json(&stats);
            }
            println!(
                "{:<16} {:<9} {:>6} {:>8} {:>7} {:>8} {:>9} {:>8} {:>9} {:>8} {:>7}",
                "user",
                "role",
                "images",
                "img/h",
                "drawn",
                "accepted",
                "corrected",
                "rejected",
                "approval",
                "reviews",
                "audit"
            );
            for s in &stats {
                println!(
                    "{:<16} {:<9} {:>6} {:>8} {:>7} {:>8} {:>9} {:>8} {:>9} {:>8} {:>7}",
                    s.user,
                    s.role.map_or("-", Role::as_str),
                    s.images,
                    s.images_per_hour
                        .map_or_else(|| "-".to_owned(), |x| format!("{x:.1}")),
                    s.boxes_drawn,
                    s.proposals_accepted,
                    s.boxes_corrected,
                    s.proposals_rejected,
                    s.approval_rate
                        .map_or_else(|| "-".to_owned(), |x| format!("{:.0}%", 100.0 * x)),
                    s.reviews_done,
                    format!("{}/{}", s.audit_failures, s.audited_images)
                );
            }
            let measured: Vec<_> = stats
                .iter()
                .filter_map(|s| s.measured.as_ref().map(|m| (s, m)))
                .collect();
            if !measured.is_empty() {
                println!();
                println!("measured in the app (active time, idle gaps over a minute left out):");
                println!(
                    "{:<16} {:>6} {:>9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>7} {:>6}",
                    "user",
                    "images",
                    "active s",
                    "s/image",
                    "s/box",
                    "boxes",
                    "model %",
                    "approval",
                    "actions",
                    "keys"
                );
                let opt =
                    |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or_else(|| "-".to_owned(), f);
                for (s, m) in measured {
                    println!(
                        "{:<16} {:>6} {:>9.1} {:>8} {:>8} {:>6} {:>8} {:>9} {:>7} {:>6}",
                        s.user,
                        m.images,
                        m.active_seconds,
                        opt(m.seconds_per_image, &|x| format!("{x:.1}")),
                        opt(m.seconds_per_box, &|x| format!("{x:.1}")),
                        m.boxes,
                        opt(m.model_assisted_share, &|x| format!("{:.0}%", 100.0 * x)),
                        opt(s.approval_rate, &|x| format!("{:.0}%", 100.0 * x)),
                        m.actions,
                        m.key_presses
                    );
                }
            }
        }
        ReviewCmd::Agreement { iou, json } => {
            let p = open(cli)?;
            let r = review::agreement(&p, *iou)?;
            if *json {
                return print_json(&r);
            }
            println!(
                "{} image(s) labeled by two or more people (matching at IoU {})",
                r.shared_images, r.iou_threshold
            );
            for pair in &r.pairs {
                println!(
                    "  {} & {}: {} images, {} / {} boxes, {} matched, F1 {:.3}, mean IoU {:.3}, {} class conflict(s)",
                    pair.a,
                    pair.b,
                    pair.images,
                    pair.a_boxes,
                    pair.b_boxes,
                    pair.matched,
                    pair.f1,
                    pair.mean_iou,
                    pair.class_conflicts
                );
                for c in &pair.per_class {
                    println!(
                        "      {:<20} {:>4} / {:<4} matched {:>4}  F1 {:.3}",
                        c.class, c.a_boxes, c.b_boxes, c.matched, c.f1
                    );
                }
                for (x, y, n) in &pair.confusions {
                    println!("      {} said {x}, {} said {y}: {n}", pair.a, pair.b);
                }
            }
        }
    }
    Ok(())
}

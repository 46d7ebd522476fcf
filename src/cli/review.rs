//! `loupe batch | audit | triage | eval | meta | tag | review`: the data loop on the command line.
//!
//! Each command is a thin layer over `crate::review`: parse, call, print (text or `--json`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{Cli, open, print_json};
use crate::model::ReviewState;
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
    /// Count every label as ground truth, not only approved boxes.
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
        "run {} against the {} labels of {}: {} images, {} labels, {} predictions",
        e.run,
        match e.ground_truth {
            GroundTruth::Approved => "approved",
            GroundTruth::AllLabels => "",
        },
        e.version,
        e.overall.images,
        e.overall.gt_boxes,
        e.overall.dt_boxes
    );
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
                "  {:<24} {:>6} {:>6} {:>7}  {}",
                "class", "AP a", "AP b", "delta", "a is"
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
    let ranked = review::triage(&p, &opts)?;
    if args.json {
        return print_json(&ranked);
    }
    for (i, img) in ranked.iter().enumerate() {
        if img.score <= 0.0 {
            println!("{} more image(s) with nothing to flag", ranked.len() - i);
            break;
        }
        let c = &img.counts;
        println!(
            "{:>3}. {:<40} score {:.2}  (missing {}, wrong class {}, unmatched {}, confusion {}, uncertain {})",
            i + 1,
            img.path,
            img.score,
            c.missing_label,
            c.wrong_class,
            c.unmatched_label,
            c.class_confusion,
            c.uncertain
        );
        for s in img.signals.iter().take(3) {
            println!("       - {}", s.reason);
        }
        if img.signals.len() > 3 {
            println!(
                "       … {} more signal(s) (use --json for all)",
                img.signals.len() - 3
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ pending

/// `loupe batch`.
#[derive(Subcommand, Debug)]
pub enum BatchCmd {
    /// List batches.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `loupe audit`.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Start an audit.
    Start { batch: String },
}

/// `loupe meta`.
#[derive(Subcommand, Debug)]
pub enum MetaCmd {
    /// Import metadata.
    Import { file: PathBuf },
}

/// `loupe tag`.
#[derive(Args, Debug)]
pub struct TagArgs {
    pub image: String,
    pub tag: String,
    #[arg(long)]
    pub remove: bool,
}

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
    /// Per-annotator statistics: images per hour, corrections, approval rate, audit failures.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

pub fn batch(_cli: &Cli, _cmd: &BatchCmd) -> Result<()> {
    anyhow::bail!("loupe batch is not available yet")
}

pub fn audit(_cli: &Cli, _cmd: &AuditCmd) -> Result<()> {
    anyhow::bail!("loupe audit is not available yet")
}

pub fn meta(_cli: &Cli, _cmd: &MetaCmd) -> Result<()> {
    anyhow::bail!("loupe meta is not available yet")
}

pub fn tag(_cli: &Cli, _args: &TagArgs) -> Result<()> {
    anyhow::bail!("loupe tag is not available yet")
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
        ReviewCmd::Stats { .. } => anyhow::bail!("loupe review stats is not available yet"),
    }
    Ok(())
}

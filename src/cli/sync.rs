//! `loupe remote | sync | team | publish`: the shared store from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::{Cli, TermProgress, print_json, resolve_project};
use crate::model::Role;
use crate::store::{Project, now_ms};
use crate::sync::{self, PublicKey, RemoteSpec, RosterChange, SyncOptions};

#[derive(Subcommand, Debug)]
pub enum RemoteCmd {
    /// Add (or change) a shared store: a folder (`file:///path` or a path; a network share works),
    /// an S3-compatible bucket (`s3://bucket/prefix`; credentials come from the environment
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP) or
    /// `--profile`), a Google Cloud Storage bucket (`gs://bucket/prefix`; GOOGLE_SERVICE_ACCOUNT
    /// or GOOGLE_APPLICATION_CREDENTIALS) or an Azure Blob container (`az://container/prefix`;
    /// AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or a SAS token).
    Add {
        name: String,
        url: String,
        /// S3 endpoint, e.g. http://127.0.0.1:9000.
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// A named profile of ~/.aws/credentials and ~/.aws/config.
        #[arg(long)]
        profile: Option<String>,
        /// Allow plain HTTP to the endpoint.
        #[arg(long)]
        allow_http: bool,
        /// The team owner's public key (`loupe team key` on the owner's machine): a roster
        /// signed by any other key is refused, now and later. Without it, the owner of the
        /// first roster seen is trusted from then on.
        #[arg(long, value_name = "KEY")]
        owner: Option<String>,
    },
    /// List the remotes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Forget a remote (the store itself is untouched).
    Remove { name: String },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    #[command(subcommand)]
    pub command: Option<SyncCmd>,
    /// The remote to sync with (default: the only one, or `origin`).
    pub remote: Option<String>,
    /// Also push image files and fetch missing ones (stored by content hash).
    #[arg(long)]
    pub images: bool,
    /// Put every image of this project in the store's image list: what `loupe worker`
    /// processes, and what teammates see (as missing files until fetched with --images).
    #[arg(long)]
    pub list_images: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SyncCmd {
    /// Pending revisions, last sync, conflicts and refused packs or decisions.
    Status {
        remote: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Boxes edited concurrently by different people, with their versions (heads).
    Conflicts {
        #[arg(long)]
        json: bool,
    },
    /// Resolve a conflict by taking one of its heads (needs a reviewer or lead key).
    Resolve {
        #[arg(value_name = "BOX")]
        annotation: String,
        /// The head to keep: A, B, … as `loupe sync conflicts` lists them.
        #[arg(long)]
        take: String,
        #[arg(long)]
        remote: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TeamCmd {
    /// Create the remote's team roster with you (this OS user's key) as owner and lead.
    Init {
        #[arg(long)]
        remote: Option<String>,
    },
    /// Add a member or change their role (owner only).
    Add {
        /// A name or a user id. (Its own argument id: clap would otherwise fill the global
        /// `--user` with it and make this person the project's current user.)
        #[arg(id = "member", value_name = "USER")]
        user: String,
        /// annotator, reviewer or lead; model for a batch worker's key (`loupe worker`), which
        /// may only create proposals for model runs.
        #[arg(long)]
        role: String,
        /// Their public key, as `loupe team key` prints it on their machine.
        #[arg(long)]
        key: String,
        #[arg(long)]
        remote: Option<String>,
    },
    /// Show the roster.
    Show {
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print this OS user's public key (created on first use).
    Key,
    /// Write the last roster this project verified back to the store, signed again (owner
    /// only): the way back when the store's roster was edited, deleted or replaced.
    Republish {
        #[arg(long)]
        remote: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The version to publish (see `loupe version list`).
    pub version: String,
    /// The remote (default: the only one, or `origin`).
    pub remote: Option<String>,
    /// Copy the images into the export instead of referencing them.
    #[arg(long)]
    pub images: bool,
    /// Check an already published version against its manifest instead.
    #[arg(long)]
    pub verify: bool,
    #[arg(long)]
    pub json: bool,
}

/// The project file, after applying `--user` (which is remembered in the project).
fn project_path(cli: &Cli) -> Result<PathBuf> {
    if cli.user.is_some() {
        drop(super::open(cli)?);
    }
    resolve_project(cli.project.as_deref())
}

fn ago(ms: i64) -> String {
    let s = (now_ms() - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

pub fn remote(cli: &Cli, cmd: &RemoteCmd) -> Result<()> {
    let mut p = super::open(cli)?;
    match cmd {
        RemoteCmd::Add {
            name,
            url,
            endpoint,
            region,
            profile,
            allow_http,
            owner,
        } => {
            let url = if url.contains("://") {
                url.clone()
            } else {
                let abs = std::path::absolute(url)
                    .with_context(|| format!("{url}: not a folder path"))?;
                format!("file://{}", abs.display())
            };
            let spec = RemoteSpec {
                url,
                endpoint: endpoint.clone(),
                region: region.clone(),
                profile: profile.clone(),
                allow_http: *allow_http,
                credentials: None,
            };
            let owner = owner.as_deref().map(PublicKey::parse).transpose()?;
            // Fails now, not at the first sync, on a URL we cannot use or a roster another key
            // signed.
            sync::remote_add(&mut p, name, &spec, owner.as_ref())?;
            match owner {
                Some(k) => println!("remote {name}: {} (roster owner {k})", spec.url),
                None => println!("remote {name}: {}", spec.url),
            }
        }
        RemoteCmd::List { json } => {
            let remotes = p.sync_remotes()?;
            if *json {
                print_json(&remotes)?;
            } else {
                for r in remotes {
                    let last = r.last_sync_ms.map_or_else(|| "never synced".into(), ago);
                    println!("{:<12} {}  ({last})", r.name, r.spec.url);
                }
            }
        }
        RemoteCmd::Remove { name } => {
            if !p.sync_remove_remote(name)? {
                bail!("no remote named {name:?}");
            }
            println!("removed remote {name}");
        }
    }
    Ok(())
}

pub fn sync(cli: &Cli, args: &SyncArgs) -> Result<ExitCode> {
    match &args.command {
        None => run_sync(cli, args),
        Some(SyncCmd::Status { remote, json }) => {
            status(cli, remote.as_deref(), *json).map(|()| ExitCode::SUCCESS)
        }
        Some(SyncCmd::Conflicts { json }) => conflicts(cli, *json).map(|()| ExitCode::SUCCESS),
        Some(SyncCmd::Resolve {
            annotation,
            take,
            remote,
        }) => {
            let path = project_path(cli)?;
            let id = uuid::Uuid::parse_str(annotation)
                .with_context(|| format!("{annotation:?} is not a box id"))?;
            let a = sync::resolve_conflict(&path, remote.as_deref(), None, id, take)?;
            println!(
                "resolved box {id}: took {take} ({} box=({:.1}, {:.1}, {:.1}, {:.1})); push it with `loupe sync`",
                a.value.state.as_str(),
                a.value.bbox.x,
                a.value.bbox.y,
                a.value.bbox.w,
                a.value.bbox.h
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_sync(cli: &Cli, args: &SyncArgs) -> Result<ExitCode> {
    let path = project_path(cli)?;
    let options = SyncOptions {
        remote: args.remote.clone(),
        images: args.images,
        list_images: args.list_images,
        ..SyncOptions::default()
    };
    let bar = TermProgress::new("sync");
    let report = sync::sync_with(&path, &options, &bar);
    bar.finish();
    let report = report?;
    // Anything refused or missing makes the exit status non-zero, after applying what was
    // valid: scripts and CI must not read a partial merge as a clean one.
    let status = if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.json {
        print_json(&report)?;
        return Ok(status);
    }
    // What was refused comes first, so it is not lost under the summary.
    if let Some(problem) = &report.roster_problem {
        eprintln!("roster: {problem}");
    }
    for r in &report.refused {
        eprintln!("refused: {}", refusal_line(r));
    }
    for h in &report.held_back {
        eprintln!("held back: {h}");
    }
    for w in &report.written_past {
        eprintln!("written past: {w}");
    }
    for l in &report.lost {
        eprintln!("lost: {l}");
    }
    for r in &report.restored {
        eprintln!("restored: {r}: the store had lost it; uploaded it again");
    }
    if report.refused_own > 0 {
        eprintln!(
            "refused: {} of your revisions need a role your key lacks in the roster: every client refuses them",
            report.refused_own
        );
    }
    if report.reattributed > 0 {
        eprintln!(
            "note: {} revisions attributed here to someone else were pushed as yours: a key signs only for its own member",
            report.reattributed
        );
    }
    println!(
        "{} ({}): pushed {} revisions in {} packs, pulled {} revisions in {} packs in {:.2}s",
        report.remote,
        report.url,
        report.pushed_revisions,
        report.pushed_packs,
        report.pulled_revisions,
        report.pulled_packs,
        report.elapsed_ms as f64 / 1000.0
    );
    if report.listed_images + report.pulled_listed > 0 {
        println!(
            "image list: {} images put in the store's list, {} read from it",
            report.listed_images, report.pulled_listed
        );
    }
    if report.covered_images + report.pulled_covered > 0 {
        println!(
            "model runs: {} images' coverage pushed, {} pulled (see `loupe runs`)",
            report.covered_images, report.pulled_covered
        );
    }
    if args.images {
        println!(
            "images: {} pushed, {} fetched",
            report.images_pushed, report.images_pulled
        );
    }
    if report.conflicts > 0 {
        println!(
            "{} boxes in conflict ({} new): see `loupe sync conflicts`",
            report.conflicts, report.new_conflicts
        );
    }
    println!("state {}", &report.state_hash[..16]);
    if !report.is_clean() {
        eprintln!(
            "sync applied what was valid but refused or missed something (see above); exit status 1"
        );
    }
    Ok(status)
}

fn refusal_line(r: &sync::Refusal) -> String {
    match (r.annotation, r.hlc) {
        (Some(a), Some(hlc)) => format!(
            "box {a} (revision {hlc} of client {}, pack {}): {} [signer {}]",
            r.client, r.seq, r.reason, r.signer
        ),
        _ => format!(
            "{} [signer {}]",
            r.reason,
            if r.signer.is_empty() { "?" } else { &r.signer }
        ),
    }
}

#[derive(serde::Serialize)]
struct Status {
    remote: sync::RemoteInfo,
    pending_revisions: u64,
    packs_pushed: u64,
    packs_pulled: u64,
    revisions_pulled: u64,
    conflicts: Vec<sync::Conflict>,
    refusals: Vec<sync::Refusal>,
    key: Option<String>,
    role: Option<String>,
}

fn status(cli: &Cli, remote: Option<&str>, json: bool) -> Result<()> {
    let p = super::open(cli)?;
    let info = p.sync_remote(remote)?;
    let (packs_pushed, packs_pulled, revisions_pulled) = p.sync_pack_counts(&info.name)?;
    let key = sync::Identity::load_default().ok().map(|i| i.public());
    let roster: Option<sync::Roster> = p
        .sync_state_get(&info.name, "roster")?
        .and_then(|j| serde_json::from_str(&j).ok());
    let role = key.as_ref().and_then(|k| {
        roster
            .as_ref()?
            .member_by_key(k)
            .map(|m| m.role.as_str().to_owned())
    });
    let s = Status {
        pending_revisions: p.sync_pending_count(&info)?,
        packs_pushed,
        packs_pulled,
        revisions_pulled,
        conflicts: p.sync_conflicts()?,
        refusals: p.sync_refusals(Some(&info.name))?,
        key: key.map(|k| k.to_string()),
        role,
        remote: info,
    };
    if json {
        return print_json(&s);
    }
    println!("remote     {} ({})", s.remote.name, s.remote.spec.url);
    println!(
        "last sync  {}",
        s.remote.last_sync_ms.map_or_else(|| "never".into(), ago)
    );
    println!("pending    {} revisions to push", s.pending_revisions);
    println!(
        "packs      {} pushed, {} pulled ({} revisions)",
        s.packs_pushed, s.packs_pulled, s.revisions_pulled
    );
    println!(
        "you        {} ({})",
        s.key.as_deref().unwrap_or("no key"),
        s.role.as_deref().unwrap_or("not in the roster")
    );
    println!("conflicts  {}", s.conflicts.len());
    for c in &s.conflicts {
        println!(
            "  box {} on {} ({} heads)",
            c.annotation,
            c.image,
            c.heads.len()
        );
    }
    println!("refused    {}", s.refusals.len());
    for r in &s.refusals {
        println!("  {}", refusal_line(r));
    }
    Ok(())
}

fn conflicts(cli: &Cli, json: bool) -> Result<()> {
    let p = super::open(cli)?;
    let list = p.sync_conflicts()?;
    if json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no conflicts");
    }
    for c in &list {
        println!("box {} on {}:", c.annotation, c.image);
        for h in &c.heads {
            println!(
                "  {}: by {:<12} {:<12} {:<10} box=({:.1}, {:.1}, {:.1}, {:.1}){}",
                h.label,
                h.author,
                h.class,
                h.state.as_str(),
                h.bbox.x,
                h.bbox.y,
                h.bbox.w,
                h.bbox.h,
                if h.deleted { " deleted" } else { "" }
            );
        }
        println!("  resolve: loupe sync resolve {} --take A", c.annotation);
    }
    Ok(())
}

pub fn team(cli: &Cli, cmd: &TeamCmd) -> Result<()> {
    match cmd {
        TeamCmd::Key => {
            println!("{}", sync::Identity::load_default()?.public());
        }
        TeamCmd::Init { remote } => {
            let path = project_path(cli)?;
            let r = sync::team_init(&path, remote.as_deref(), None, None)?;
            let owner = r.owner_member().context("the new roster has an owner")?;
            println!(
                "team roster created: owner {} (lead), key {}",
                owner.name, owner.key
            );
        }
        TeamCmd::Add {
            user,
            role,
            key,
            remote,
        } => {
            let path = project_path(cli)?;
            let role = Role::parse(role).with_context(|| {
                format!("unknown role {role:?}: use annotator, reviewer, lead or model")
            })?;
            let change = RosterChange {
                user: user.clone(),
                role,
                key: PublicKey::parse(key)?,
            };
            let r = sync::team_add(&path, remote.as_deref(), None, None, &change)?;
            println!(
                "{user} is now {} (roster version {})",
                role.as_str(),
                r.version
            );
        }
        TeamCmd::Republish { remote } => {
            let path = project_path(cli)?;
            let r = sync::team_republish(&path, remote.as_deref(), None, None)?;
            println!(
                "republished roster version {} ({} members)",
                r.version,
                r.members.len()
            );
        }
        TeamCmd::Show { remote, json } => {
            let path = project_path(cli)?;
            let (roster, me, problem) = sync::team_show(&path, remote.as_deref(), None, None)?;
            let Some(roster) = roster else {
                bail!("the remote has no team roster yet: run `loupe team init`");
            };
            if let Some(problem) = &problem {
                eprintln!("warning: {problem}");
            }
            if *json {
                return print_json(&roster);
            }
            println!("roster version {}", roster.version);
            for m in &roster.members {
                let mark = if m.key == me { "*" } else { " " };
                let owner = if m.user == roster.owner { " owner" } else { "" };
                println!(
                    "{mark} {:<16} {:<10} {}{owner}",
                    m.name,
                    m.role.as_str(),
                    m.key
                );
            }
        }
    }
    Ok(())
}

pub fn publish(cli: &Cli, args: &PublishArgs) -> Result<()> {
    let path = project_path(cli)?;
    if args.verify {
        let p = Project::open(&path)?;
        let info = p.sync_remote(args.remote.as_deref())?;
        let store = sync::RemoteStore::open(&info.spec, None)?;
        let roster: Option<sync::Roster> = p
            .sync_state_get(&info.name, "roster")?
            .and_then(|j| serde_json::from_str(&j).ok());
        let m = sync::verify_published(&store, &args.version, roster.as_ref())?;
        println!(
            "{}: verified {} files; {} images, {} boxes; version {} at revision {}",
            args.version,
            m.files.len(),
            m.image_count,
            m.box_count,
            m.version_id,
            m.revisions
        );
        return Ok(());
    }
    let options = sync::PublishOptions {
        remote: args.remote.clone(),
        images: args.images,
        ..sync::PublishOptions::default()
    };
    let r = sync::publish(&path, &args.version, &options)?;
    if args.json {
        return print_json(&r);
    }
    println!(
        "published {}: {} images, {} boxes, {} files ({:.1} MB) at {}",
        r.version,
        r.images,
        r.boxes,
        r.files,
        r.bytes as f64 / 1e6,
        r.location
    );
    println!("manifest blake3 {}", r.manifest_blake3);
    Ok(())
}

/// Benchmark helper: a shared run over `images` synthetic images, `boxes` proposals each.
pub fn debug_generate_run(cli: &Cli, images: usize, boxes: usize, run: &str) -> Result<()> {
    use crate::model::BBox;
    use crate::store::{ImageInput, NewRun, RunImageTiming};
    let mut p = super::open(cli)?;
    let started = std::time::Instant::now();
    let mut bulk = p.bulk()?;
    for i in 0..images {
        let path = format!("synthetic/{i:07}.jpg");
        bulk.upsert_image(&ImageInput {
            hash: Some(blake3::hash(path.as_bytes()).to_hex().to_string()),
            path,
            width: 1600,
            height: 1200,
            bytes: 0,
            external_id: None,
        })?;
    }
    bulk.commit()?;
    let id = crate::inference::team_run_id(run, "bench-model", "bench-settings");
    p.create_shared_run(
        id,
        &NewRun {
            name: run.to_owned(),
            kind: "onnx".into(),
            model_hash: Some("bench-model".into()),
            settings: "{}".into(),
            settings_hash: Some("bench-settings".into()),
            ..NewRun::default()
        },
    )?;
    let rows = p.list_images(&crate::store::ImageFilter::default())?;
    for (i, row) in rows.iter().enumerate() {
        let proposals: Vec<(String, BBox, f32)> = (0..boxes)
            .map(|k| {
                let x = ((i * 7 + k * 131) % 1500) as f64;
                (
                    format!("class{}", k % 5),
                    BBox::new(x, (k * 97 % 1100) as f64, 60.0, 40.0),
                    0.3 + (k % 7) as f32 / 10.0,
                )
            })
            .collect();
        p.add_proposals(id, row.id, &proposals, RunImageTiming::default())?;
    }
    println!(
        "{} images, {} proposals in run {run} in {:.2}s",
        rows.len(),
        rows.len() * boxes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Benchmark helper: N new boxes, one revision each, in one transaction.
pub fn debug_generate(cli: &Cli, count: usize) -> Result<()> {
    let mut p = super::open(cli)?;
    let started = std::time::Instant::now();
    let n = sync::debug_generate_revisions(&mut p, count)?;
    println!("{n} revisions in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}

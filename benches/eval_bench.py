"""Helper of benches/eval.sh: generates a COCO evaluation case, times `loupe eval-files` and
pycocotools on it, checks that the twelve numbers agree, and prints both times and the ratio.

Usage: python3 benches/eval_bench.py --loupe PATH [--images N] [--boxes N] [--seed S]
                                     [--workdir DIR] [--check]
"""
import argparse, contextlib, io, json, os, random, subprocess, sys, tempfile, time

KEYS = "AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl".split()


def generate(n_images, n_boxes, seed, n_cats=20):
    """GT boxes of all sizes (1% crowd), and detections: jittered GT (85%), duplicates,
    confusions and false positives, with scores that favour good boxes."""
    rng = random.Random(seed)
    W, H = 1280, 960
    images, anns, dets = [], [], []
    per_image = [0] * n_images
    for _ in range(n_boxes):
        per_image[rng.randrange(n_images)] += 1

    def rand_box():
        r = rng.random()
        if r < 0.4:
            w, h = rng.uniform(4, 31), rng.uniform(4, 31)
        elif r < 0.8:
            w, h = rng.uniform(33, 95), rng.uniform(33, 95)
        else:
            w, h = rng.uniform(100, 500), rng.uniform(100, 400)
        return [round(rng.uniform(0, W - w), 2), round(rng.uniform(0, H - h), 2), round(w, 2), round(h, 2)]

    def jitter(b):
        w = min(max(1.0, b[2] * rng.uniform(0.85, 1.15)), W)
        h = min(max(1.0, b[3] * rng.uniform(0.85, 1.15)), H)
        x = min(max(0.0, b[0] + b[2] * rng.uniform(-0.12, 0.12)), W - w)
        y = min(max(0.0, b[1] + b[3] * rng.uniform(-0.12, 0.12)), H - h)
        return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]

    ann_id = 1
    for i in range(n_images):
        image_id = i + 1
        images.append({"id": image_id, "file_name": f"img_{i:05d}.jpg", "width": W, "height": H})
        for _ in range(per_image[i]):
            cat = rng.randint(1, n_cats)
            b = rand_box()
            crowd = rng.random() < 0.01
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": b,
                         "area": round(b[2] * b[3], 4), "iscrowd": int(crowd)})
            ann_id += 1
            if crowd or rng.random() > 0.85:
                continue
            c = cat if rng.random() < 0.93 else rng.randint(1, n_cats)
            dets.append({"image_id": image_id, "category_id": c, "bbox": jitter(b),
                         "score": round(rng.uniform(0.35, 1.0), 5)})
            if rng.random() < 0.1:
                dets.append({"image_id": image_id, "category_id": c, "bbox": jitter(b),
                             "score": round(rng.uniform(0.05, 0.6), 5)})
        for _ in range(rng.randint(0, 3)):
            dets.append({"image_id": image_id, "category_id": rng.randint(1, n_cats), "bbox": rand_box(),
                         "score": round(rng.uniform(0.01, 0.7), 5)})
    cats = [{"id": c, "name": f"class{c}"} for c in range(1, n_cats + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def pycocotools_eval(gt_path, dt_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return time.perf_counter() - t0, dict(zip(KEYS, (float(x) for x in e.stats)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loupe", required=True)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--boxes", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()

    work = a.workdir or tempfile.mkdtemp(prefix="loupe-eval-bench-")
    os.makedirs(work, exist_ok=True)
    gt_path, dt_path = os.path.join(work, "gt.json"), os.path.join(work, "dt.json")
    gt, dets = generate(a.images, a.boxes, a.seed)
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dets, f)
    print(f"case: {len(gt['images'])} images, {len(gt['annotations'])} GT boxes, {len(dets)} detections, "
          f"{len(gt['categories'])} classes (seed {a.seed}, files in {work})")

    # Loupe: the whole command, reading both files included; best of three.
    loupe_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run([a.loupe, "eval-files", gt_path, dt_path, "--json"], capture_output=True, text=True)
        loupe_times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            sys.exit(f"loupe eval-files failed: {out.stderr}")
    ours = json.loads(out.stdout)
    loupe_s = min(loupe_times)

    # pycocotools: loading both files, evaluate, accumulate, summarize.
    ref_s, theirs = pycocotools_eval(gt_path, dt_path)

    worst = max(abs(ours[k] - theirs[k]) for k in KEYS)
    print(f"{'metric':<6} {'loupe':>9} {'pycocotools':>12}")
    for k in KEYS:
        print(f"{k:<6} {ours[k]:>9.6f} {theirs[k]:>12.6f}")
    ratio = ref_s / loupe_s
    print(f"loupe eval-files: {loupe_s:.3f} s (best of 3: {', '.join(f'{t:.3f}' for t in loupe_times)})")
    print(f"pycocotools:      {ref_s:.3f} s")
    print(f"ratio:            {ratio:.1f}x faster; largest difference {worst:.2e}")
    print(json.dumps({"loupe_s": loupe_s, "pycocotools_s": ref_s, "ratio": ratio, "max_abs_diff": worst}))
    if a.check and (worst > 1e-4 or ratio < 5.0):
        sys.exit(f"targets missed: ratio {ratio:.1f} (want >= 5), max difference {worst:.2e} (want <= 1e-4)")


if __name__ == "__main__":
    main()

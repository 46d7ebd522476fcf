#!/usr/bin/env bash
# Side by side: pycocotools loading a generated COCO file (100k images, 1M boxes) versus Loupe
# importing it (parse + persist to the project file), then Loupe exporting it back to COCO.
# Usage: benches/coco_import.sh [IMAGES] [BOXES]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-100000}
BOXES=${2:-1000000}
scripts/setup.sh
if [ -z "${LOUPE_BIN:-}" ]; then
    cargo build --release --quiet --bin loupe
    LOUPE=${CARGO_TARGET_DIR:-target}/release/loupe
else
    LOUPE=$LOUPE_BIN
fi
WORK=target/bench-coco
mkdir -p "$WORK"
DATA=$WORK/coco_${IMAGES}_${BOXES}.json
if [ ! -f "$DATA" ]; then
    python3 - "$DATA" "$IMAGES" "$BOXES" <<'PY'
import json, random, sys
path, n_img, n_box = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
cats = [{"id": i + 1, "name": f"class_{i}", "supercategory": "thing"} for i in range(80)]
images = [{"id": i + 1, "file_name": f"images/{i:06d}.jpg", "width": 640, "height": 480} for i in range(n_img)]
anns = []
for a in range(n_box):
    w, h = rng.uniform(4, 200), rng.uniform(4, 200)
    x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
    anns.append({"id": a + 1, "image_id": rng.randint(1, n_img), "category_id": rng.randint(1, 80),
                 "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": round(w * h, 2),
                 "iscrowd": 0, "segmentation": []})
with open(path, "w") as f:
    json.dump({"images": images, "annotations": anns, "categories": cats}, f)
PY
fi
echo "data: $DATA ($(du -h "$DATA" | cut -f1))"

now() { date +%s.%N; }
t0=$(now)
python3 -c "from pycocotools.coco import COCO; COCO('$DATA')" >/dev/null
t1=$(now)
PY_S=$(echo "$t1 - $t0" | bc -l)

rm -f "$WORK/bench.loupe" "$WORK/bench.loupe-wal" "$WORK/bench.loupe-shm"
$LOUPE init "$WORK/bench.loupe" >/dev/null
t0=$(now)
$LOUPE -p "$WORK/bench.loupe" import --format coco "$DATA" --allow-missing >/dev/null 2>&1
t1=$(now)
IMPORT_S=$(echo "$t1 - $t0" | bc -l)

rm -rf "$WORK/export.json"
t0=$(now)
$LOUPE -p "$WORK/bench.loupe" export --format coco "$WORK/export.json" >/dev/null
t1=$(now)
EXPORT_S=$(echo "$t1 - $t0" | bc -l)

printf 'pycocotools COCO() load      : %6.2f s\n' "$PY_S"
printf 'loupe import (parse+persist) : %6.2f s\n' "$IMPORT_S"
printf 'ratio (pycocotools / loupe)  : %6.2f x\n' "$(echo "$PY_S / $IMPORT_S" | bc -l)"
printf 'loupe export to COCO         : %6.2f s (whole command, including opening the project)\n' "$EXPORT_S"
$LOUPE -p "$WORK/bench.loupe" stats > "$WORK/stats.txt"; head -5 "$WORK/stats.txt"

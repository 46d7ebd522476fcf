"""Reads a Loupe export with a real client and prints what the client saw, as JSON.

Used by tests/clients.rs. Each reader prints
    {"client": ..., "version": ..., "items": [{"name", "subset", "width", "height",
      "image_exists", "boxes": [[class, x, y, w, h], ...]}]}
with boxes in pixels (x, y = top-left corner), `name` the image's file stem. A missing client is
an ImportError and a non-zero exit: the tests fail, they do not skip.

Usage:
    read_export.py pycocotools INSTANCES_JSON IMAGES_DIR
    read_export.py datumaro FORMAT PATH
    read_export.py ultralytics DATA_YAML
    read_export.py label-studio TASKS_JSON
"""

import contextlib
import glob
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def pycocotools(instances, images_dir):
    from pycocotools.coco import COCO

    coco = COCO(instances)
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    items = []
    for img in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]], iscrowd=None))
        items.append(
            {
                "name": stem(img["file_name"]),
                "subset": "",
                "width": img["width"],
                "height": img["height"],
                "image_exists": os.path.isfile(os.path.join(images_dir, img["file_name"])),
                "boxes": [[cats[a["category_id"]], *a["bbox"]] for a in anns],
            }
        )
    return {"client": "pycocotools", "version": version("pycocotools"), "items": items}


def datumaro(fmt, path):
    import datumaro as dm

    ds = dm.Dataset.import_from(path, fmt)
    labels = ds.categories()[dm.AnnotationType.label]
    items = []
    for item in ds:
        media = item.media
        size = media.size if media is not None and media.has_size else (None, None)
        boxes = []
        for ann in item.annotations:
            if ann.type == dm.AnnotationType.bbox:
                x, y, w, h = ann.get_bbox()
                boxes.append([labels[ann.label].name, x, y, w, h])
        items.append(
            {
                "name": stem(item.id),
                "subset": item.subset,
                "width": size[1],
                "height": size[0],
                "image_exists": bool(media is not None and media.path and os.path.isfile(media.path)),
                "boxes": boxes,
            }
        )
    return {"client": "datumaro " + fmt, "version": dm.__version__, "items": items}


# ultralytics.data.utils (8.3): the image suffixes and the label-path rule, as ultralytics has them.
IMG_FORMATS = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"}


def img2label_paths(img_paths):
    """Ultralytics' rule: the last /images/ of an image path becomes /labels/, the suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return [sb.join(x.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt" for x in img_paths]


def ultralytics(data_yaml):
    """Resolves data.yaml and lists images and labels as ultralytics' check_det_dataset and
    YOLODataset.get_img_files do, from another working directory."""
    import yaml
    from PIL import Image

    os.chdir("/")
    data = yaml.safe_load(Path(data_yaml).read_text())
    for k in ("train", "val"):
        assert k in data, f"'{k}:' key missing: 'train' and 'val' are required"
    path = Path(data.get("path") or Path(data_yaml).parent)
    if not path.exists() and not path.is_absolute():
        path = Path("~/datasets").expanduser() / path  # ultralytics' DATASETS_DIR
    names = data["names"]
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else names
    items = []
    splits = {}
    for k in ("train", "val", "test"):
        if not data.get(k):
            continue
        split_dir = (path / data[k]).resolve()
        assert split_dir.exists(), f"{k}: {split_dir} does not exist"
        files = glob.glob(str(split_dir / "**" / "*.*"), recursive=True)
        im_files = sorted(x for x in files if x.rpartition(".")[-1].lower() in IMG_FORMATS)
        label_files = img2label_paths(im_files)
        found = sum(os.path.isfile(f) for f in label_files)
        splits[k] = {"dir": str(split_dir), "images": len(im_files), "labels_found": found}
        for im, lb in zip(im_files, label_files):
            w, h = Image.open(im).size
            boxes = []
            if os.path.isfile(lb):
                for line in Path(lb).read_text().splitlines():
                    c, cx, cy, bw, bh = line.split()
                    cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
                    boxes.append([names[int(c)], cx - bw / 2, cy - bh / 2, bw, bh])
            items.append(
                {"name": stem(im), "subset": k, "width": w, "height": h, "image_exists": True, "boxes": boxes}
            )
    return {
        "client": "ultralytics rules",
        "version": "8.3",
        "root": str(path.resolve()),
        "splits": splits,
        "items": items,
    }


def label_studio(tasks_json):
    tasks = json.loads(Path(tasks_json).read_text())
    items = []
    for task in tasks:
        results = [r for a in task.get("annotations", []) for r in a["result"]]
        boxes = []
        width = height = None
        for r in results:
            if r["type"] != "rectanglelabels":
                continue
            width, height = r["original_width"], r["original_height"]
            v = r["value"]
            boxes.append(
                [
                    v["rectanglelabels"][0],
                    v["x"] * width / 100,
                    v["y"] * height / 100,
                    v["width"] * width / 100,
                    v["height"] * height / 100,
                ]
            )
        items.append(
            {
                "name": stem(task["data"]["image"]),
                "subset": "",
                "width": width,
                "height": height,
                "image_exists": True,
                "boxes": boxes,
            }
        )
    return {"client": "label-studio-converter", "version": version("label-studio-converter"), "items": items}


def main():
    client, *args = sys.argv[1:]
    readers = {
        "pycocotools": pycocotools,
        "datumaro": datumaro,
        "ultralytics": ultralytics,
        "label-studio": label_studio,
    }
    # Clients print progress to stdout (pycocotools' "loading annotations..."): keep stdout for
    # the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        result = readers[client](*args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

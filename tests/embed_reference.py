"""The image encoder's vectors computed by the model's own Python pipeline, for tests/embed.rs.

rapid_layout's preprocessing (what the layout model's reference detections were made with):
cv2.imread (BGR), cv2.resize to the input size with INTER_LINEAR (stretched), /255, minus the
ImageNet mean and over its std in that channel order, CHW; then onnxruntime on the encoder,
the [1, D, H, W] output averaged over H and W, L2-normalised.

usage: python embed_reference.py MODEL IMAGE... > vectors.json   ({path: [floats]})
"""

import json
import sys

import cv2
import numpy as np
import onnxruntime as ort

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def main() -> None:
    model, images = sys.argv[1], sys.argv[2:]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    _, _, height, width = inp.shape
    out = {}
    for path in images:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"{path}: cv2 cannot read it")
        img = cv2.resize(img, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
        x = (img.astype(np.float32) / 255.0 - MEAN) / STD
        x = x.transpose(2, 0, 1)[None].astype(np.float32)
        y = session.run(None, {inp.name: x})[0]
        v = y.reshape(y.shape[0], y.shape[1], -1).mean(axis=2)[0] if y.ndim == 4 else y[0]
        v = v / np.linalg.norm(v)
        out[path] = [float(f) for f in v]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

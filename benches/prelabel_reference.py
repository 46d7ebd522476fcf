"""The reference side of benches/prelabel.sh: rapid_layout's own Python pipeline, timed.

Runs `rapid_layout.RapidLayout` (the package's loader, preprocessing, ONNX Runtime session and
post-processing, exactly as a user of the package gets them) over the given images one after
another, with ONNX Runtime limited to --threads intra-op threads, and prints one JSON line:

    {"images": 90, "wall_s": 9.8, "images_per_s": 9.2, "session_run_s": 6.9, ...}

`session_run_s` is the time inside `InferenceSession.run`, measured by wrapping the package's
session object, so the reference's own overhead outside the model can be compared with Loupe's.
"""

import argparse
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="layout_cdla.onnx")
    parser.add_argument("--threads", type=int, required=True, help="intra-op threads")
    parser.add_argument("--list", required=True, help="file with one image path per line")
    args = parser.parse_args()

    import onnxruntime
    from rapid_layout import RapidLayout

    with open(args.list, encoding="utf-8") as f:
        paths = [line.strip() for line in f if line.strip()]

    engine = RapidLayout(
        model_type="pp_layout_cdla",
        model_dir_or_path=args.model,
        engine_cfg={"intra_op_num_threads": args.threads, "inter_op_num_threads": 1},
    )

    # Time session.run from outside the package, without changing what it does.
    handler = engine.model_handler.model_processors
    inner = handler.session.session
    run_s = 0.0

    class TimedSession:
        def __getattr__(self, name):
            return getattr(inner, name)

        def run(self, *a, **kw):
            nonlocal run_s
            started = time.perf_counter()
            try:
                return inner.run(*a, **kw)
            finally:
                run_s += time.perf_counter() - started

    handler.session.session = TimedSession()

    boxes = 0
    started = time.perf_counter()
    for path in paths:
        result = engine(path)
        boxes += len(result.boxes or [])
    wall_s = time.perf_counter() - started

    print(
        json.dumps(
            {
                "images": len(paths),
                "boxes": boxes,
                "wall_s": round(wall_s, 4),
                "images_per_s": round(len(paths) / wall_s, 3),
                "session_run_s": round(run_s, 4),
                "outside_run_fraction": round((wall_s - run_s) / wall_s, 4),
                "onnxruntime": onnxruntime.__version__,
                "threads": args.threads,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Static checks of the deployment examples in deploy/, for CI or by hand:
#
#   deploy/check.sh            shell syntax, YAML, the Job's shard settings, the Dockerfiles' pins
#   deploy/check.sh LOUPE      also: every `loupe` command and flag the examples use (the Job's
#                              args, the Slurm script's worker_args, the commands in
#                              deploy/README.md and README.md's "Batch workers") is one that
#                              LOUPE's --help lists, and `LOUPE worker --help` (the image's CMD) works
#
# LOUPE is a built binary, e.g. target/release/loupe (`cargo build --release --no-default-features`).
# Uses shellcheck, hadolint and kubernetes-validate when installed (each is skipped, saying so,
# when not); needs Python 3 with PyYAML ($PYTHON, the repository's .venv, or python3).
# Exit status 1 when any check fails; every failure is printed.
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$deploy/.." && pwd)"
loupe="${1:-}"
failed=0
say() { echo "check.sh: $*" >&2; }
fail() {
    say "FAIL: $*"
    failed=1
}

if [[ -n "$loupe" ]]; then
    [[ -x "$loupe" ]] || { say "FAIL: $loupe is not an executable"; exit 1; }
    loupe="$(realpath "$loupe")"
fi

# 1. Shell scripts: syntax, then shellcheck.
scripts=("$deploy"/*.sh "$deploy"/slurm/*.sh)
for s in "${scripts[@]}"; do
    bash -n "$s" || fail "bash -n $s"
done
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck "${scripts[@]}" || fail "shellcheck"
else
    say "shellcheck not installed: skipped"
fi

# 2. Dockerfiles: hadolint (DL3008, unpinned apt versions, is a choice: Debian's security updates
#    come with the rebuilt image).
if command -v hadolint >/dev/null 2>&1; then
    hadolint --ignore DL3008 "$deploy/Dockerfile" "$deploy/Dockerfile.cuda" || fail "hadolint"
else
    say "hadolint not installed: skipped"
fi

# 3. Kubernetes schema, when kubernetes-validate (PyPI) is installed.
if command -v kubernetes-validate >/dev/null 2>&1; then
    # The newest schema it knows, and 1.29, the oldest with backoffLimitPerIndex on by default.
    kubernetes-validate --strict "$deploy"/kubernetes/*.yaml || fail "kubernetes-validate"
    kubernetes-validate --strict -k 1.29.0 "$deploy"/kubernetes/*.yaml ||
        fail "kubernetes-validate -k 1.29.0"
else
    say "kubernetes-validate not installed: skipped (the YAML is still parsed below)"
fi

# 4. Everything else in Python: YAML, cross-file consistency, and the flags against --help.
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    for p in "$repo/.venv/bin/python3" python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then
            python="$p"
            break
        fi
    done
fi
if [[ -z "$python" ]] || ! "$python" -c 'import yaml' 2>/dev/null; then
    say "FAIL: no Python with PyYAML (set PYTHON, or pip install pyyaml)"
    exit 1
fi

"$python" - "$repo" "$loupe" <<'PY' || failed=1
import os
import re
import shlex
import subprocess
import sys

import yaml

repo, loupe = sys.argv[1], sys.argv[2]
deploy = os.path.join(repo, "deploy")
failures = []


def fail(msg):
    failures.append(msg)
    print(f"check.sh: FAIL: {msg}", file=sys.stderr)


def ok(msg):
    print(f"check.sh: ok: {msg}", file=sys.stderr)


def read(*parts):
    with open(os.path.join(repo, *parts), encoding="utf-8") as f:
        return f.read()


invocations = []  # (where, [tokens after `loupe`])

# --- the Kubernetes Job ---------------------------------------------------------------------
for name in sorted(os.listdir(os.path.join(deploy, "kubernetes"))):
    if not name.endswith((".yaml", ".yml")):
        continue
    where = f"deploy/kubernetes/{name}"
    try:
        docs = [d for d in yaml.safe_load_all(read("deploy", "kubernetes", name)) if d]
    except yaml.YAMLError as e:
        fail(f"{where}: not YAML: {e}")
        continue
    ok(f"{where}: parses ({len(docs)} document(s))")
    for doc in docs:
        if doc.get("kind") != "Job":
            continue
        spec = doc["spec"]
        pod = spec["template"]["spec"]
        if spec.get("completionMode") != "Indexed":
            fail(f"{where}: completionMode is not Indexed: pods get no JOB_COMPLETION_INDEX")
        if pod.get("restartPolicy") != "Never" and "podFailurePolicy" in spec:
            fail(f"{where}: podFailurePolicy needs restartPolicy: Never")
        for c in pod["containers"]:
            args = [str(a) for a in c.get("args", [])]
            if args[:1] == ["worker"]:
                invocations.append((f"{where} ({c['name']})", args))
                shard = args[args.index("--shard") + 1] if "--shard" in args else None
                if shard != "auto":
                    fail(f"{where}: the worker's --shard is {shard!r}, not auto")
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                count = env.get("LOUPE_SHARD_COUNT")
                if count is None or int(count) != spec.get("completions"):
                    fail(f"{where}: LOUPE_SHARD_COUNT={count} but completions={spec.get('completions')}")
                else:
                    ok(f"{where}: LOUPE_SHARD_COUNT={count} = completions")
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
            for v in pod.get("volumes", []):
                if "secret" in v and mounts.get(v["name"]) == "/config":
                    paths = [i["path"] for i in v["secret"].get("items", [])]
                    if "keys/ed25519.pem" in paths:
                        ok(f"{where}: the key Secret lands at /config/keys/ed25519.pem")
                    else:
                        fail(f"{where}: the Secret at /config has no item at keys/ed25519.pem "
                             f"(where loupe reads its key): {paths}")

# --- the Slurm script -------------------------------------------------------------------------
slurm = read("deploy", "slurm", "worker-array.sh")
arr = re.search(r"^#SBATCH --array=(\d+)-(\d+)", slurm, re.M)
if not arr:
    fail("deploy/slurm/worker-array.sh: no contiguous #SBATCH --array=A-B")
tokens = []
for m in re.finditer(r"worker_args\+?=\(([^)]*)\)", slurm):
    tokens += shlex.split(m.group(1), comments=True)
if tokens[:1] != ["worker"] or "--shard" not in tokens or tokens[tokens.index("--shard") + 1] != "auto":
    fail("deploy/slurm/worker-array.sh: worker_args is not `worker ... --shard auto`")
else:
    ok("deploy/slurm/worker-array.sh: worker_args runs `worker --shard auto`")
invocations.append(("deploy/slurm/worker-array.sh", tokens))

# --- the Dockerfiles ------------------------------------------------------------------------
fetch_ort = read("packaging", "fetch-ort.sh")
ort_version = re.search(r"^ORT_VERSION=(\S+)", fetch_ort, re.M).group(1)
# The CUDA build is a platform of packaging/fetch-ort.sh (same version by construction), which
# deploy/fetch-ort-gpu.sh runs; its wheel is the one check-cuda-fallback.sh tests.
cuda = re.search(r"^\s*linux-cuda\)\n(.*?);;", fetch_ort, re.M | re.S)
gpu_pin = cuda and re.search(r"^\s*sha256=(\w+)", cuda.group(1), re.M)
if not gpu_pin:
    fail("packaging/fetch-ort.sh: no linux-cuda platform with a sha256= pin")
elif gpu_pin.group(1) not in read("packaging", "check-cuda-fallback.sh"):
    fail("packaging/fetch-ort.sh linux-cuda: its SHA-256 is not the one packaging/check-cuda-fallback.sh pins")
if "packaging/fetch-ort.sh\" linux-cuda" not in read("deploy", "fetch-ort-gpu.sh"):
    fail("deploy/fetch-ort-gpu.sh does not run packaging/fetch-ort.sh linux-cuda")
for name in ("Dockerfile", "Dockerfile.cuda"):
    text = read("deploy", name)
    where = f"deploy/{name}"
    if f"ORT_DYLIB_PATH=/usr/lib/loupe/libonnxruntime.so.{ort_version}" not in text:
        fail(f"{where}: ORT_DYLIB_PATH does not name libonnxruntime.so.{ort_version}")
    if "--no-default-features" not in text or "--locked" not in text:
        fail(f"{where}: the build is not --no-default-features --locked")
    if 'ENTRYPOINT ["loupe"]' not in text:
        fail(f"{where}: ENTRYPOINT is not loupe")
    # Every file COPY takes from the context exists and is let through by its .dockerignore.
    allowed = [l[1:].rstrip("/") for l in read("deploy", f"{name}.dockerignore").splitlines()
               if l.startswith("!")]
    for m in re.finditer(r"^COPY (?!--from)(\S+) ", text, re.M):
        src = m.group(1)
        if src == ".":
            continue
        if not os.path.exists(os.path.join(repo, src)):
            fail(f"{where}: COPY {src}: no such file in the repository")
        elif not any(src == a or src.startswith(a + "/") for a in allowed):
            fail(f"{where}: COPY {src}: excluded by deploy/{name}.dockerignore")
    ok(f"{where}: ONNX Runtime {ort_version}, headless locked build, COPY sources present")
for manifest in ("Cargo.toml", "Cargo.lock", "build.rs", "src"):
    for name in ("Dockerfile", "Dockerfile.cuda"):
        if f"!{manifest}" not in read("deploy", f"{name}.dockerignore"):
            fail(f"deploy/{name}.dockerignore does not let {manifest} through")

# --- commands in the READMEs ---------------------------------------------------------------
def code_lines(text):
    """Logical lines of the fenced code blocks (backslash continuations joined)."""
    inside, buf = False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside, buf = not inside, ""
            continue
        if not inside:
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield buf + line
        buf = ""


def loupe_commands(line):
    """The tokens after `loupe` (or after a loupe container image in a `... run` line)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return []
    out = []
    for i, w in enumerate(words):
        is_bin = os.path.basename(w) == "loupe"
        is_image = (re.search(r"loupe-worker(:\S*)?$|\.sif$", w) and "run" in words[:i]
                    and "build" not in words[:i])
        if is_bin or is_image:
            rest = []
            for t in words[i + 1:]:
                if t in ("|", "&&", "||", ";") or t.startswith(">"):
                    break
                rest.append(t)
            if rest:
                out.append(rest)
    return out


readme_sections = [("deploy/README.md", read("deploy", "README.md"))]
top = read("README.md")
m = re.search(r"^## Batch workers\n(.*?)(?=^## )", top, re.M | re.S)
if m:
    readme_sections.append(("README.md#batch-workers", m.group(1)))
else:
    fail("README.md has no '## Batch workers' section")
for where, text in readme_sections:
    for line in code_lines(text):
        for cmd in loupe_commands(line):
            invocations.append((where, cmd))
ok(f"{len(invocations)} loupe command lines found in the examples")
if os.environ.get("CHECK_VERBOSE"):
    for where, cmd in invocations:
        print(f"check.sh:   {where}: loupe {' '.join(cmd)}", file=sys.stderr)

# --- flags against the binary's --help -------------------------------------------------------
if loupe:
    helps = {}

    def help_of(words):
        key = tuple(words)
        if key not in helps:
            p = subprocess.run([loupe, *words, "--help"], capture_output=True, text=True)
            helps[key] = (p.returncode, p.stdout + p.stderr)
        return helps[key]

    # (`loupe NAME --help` of an unknown NAME prints the top-level help and exits 0: loupe takes
    # a lone word for a project file to open, hence the Usage line is checked too.)
    code, text = help_of(["worker"])
    if code != 0 or "Usage: loupe worker" not in text:
        fail(f"`{loupe} worker --help` (the image's CMD) does not show the worker's help")
    checked = 0
    for where, cmd in invocations:
        cmd = [t.strip("[]") for t in cmd]  # `[--preset NAME]` in a synopsis
        words = []
        for t in cmd:
            if t.startswith("-"):
                break
            words.append(t)
        flags = sorted({t.split("=", 1)[0] for t in cmd if t.startswith("--")} - {"--help"})
        if not words:
            continue
        code, text = help_of(words)
        if code != 0 or f"Usage: loupe {words[0]}" not in text:
            fail(f"{where}: `loupe {words[0]}` is not a loupe command (`loupe {' '.join(words)} --help`)")
            continue
        for f in flags:
            checked += 1
            if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text):
                fail(f"{where}: `loupe {' '.join(words)}` has no {f} (not in its --help)")
    ok(f"{checked} flags checked against {loupe} --help")
else:
    print("check.sh: no LOUPE binary given: the flags were not checked against --help",
          file=sys.stderr)

sys.exit(1 if failures else 0)
PY

if ((failed)); then
    say "FAILED"
    exit 1
fi
say "all checks passed"

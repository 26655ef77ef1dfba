"""Engine-neutral ctxsync logic (contract v1).

Every operator here is a pure function over explicit, serializable state, so the PyFlink runner, the
Beam runner and the plain-Python reference all compute exactly the same thing. Nothing in this package
may import an engine.

The hot modules may also exist compiled by mypyc from these same sources (scripts/build_compiled.py, an
opt-in step: not run by `make`, it saved ~4-5% of the job) in build/mypyc/transforms/. That folder is searched before this one only when it
exists, every source it was built from is unchanged (SHA-256 in its manifest) and CTXSYNC_PURE_PYTHON is
unset or empty; otherwise every module is imported from here. `COMPILED` says which case holds.
"""
from __future__ import annotations


def _compiled_path() -> str | None:
    import hashlib
    import json
    import os
    import sys
    from pathlib import Path

    if os.environ.get("CTXSYNC_PURE_PYTHON"):
        return None
    here = Path(__file__).resolve().parent
    compiled = here.parent / "build" / "mypyc" / "transforms"
    try:
        manifest = json.loads((compiled / "manifest.json").read_bytes())
        if manifest["python"] != sys.implementation.cache_tag:
            return None
        for name, digest in manifest["sources"].items():
            if hashlib.sha256((here / f"{name}.py").read_bytes()).hexdigest() != digest:
                return None  # an edited source runs as written until the next build
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(compiled)


_path = _compiled_path()
if _path is not None:
    __path__.insert(0, _path)  # noqa: F821 (a package's search path)
COMPILED = _path is not None
del _path

"""The TypeScript types of the JS shell (web/*.d.ts): a typed program in OpenAI's shapes passes
`tsc --noEmit --strict`, wrong calls fail it line by line, and the types cover every runtime export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TS = REPO / "tests" / "ts"
TSC = REPO / "node_modules" / ".bin" / "tsc"
# the settings of a bundler-based app; --noUncheckedSideEffectImports also resolves `import "webrt/worker"`
TSC_FLAGS = ["--noEmit", "--strict", "--noUncheckedSideEffectImports", "--target", "es2022", "--module", "esnext",
             "--moduleResolution", "bundler", "--lib", "es2022,dom,dom.iterable", "--pretty", "false"]


def tsc(*files: Path) -> subprocess.CompletedProcess:
    if not TSC.exists():
        pytest.fail("node_modules/.bin/tsc is missing: run `npm ci` in the webrt folder (typescript is a devDependency)")
    return subprocess.run([str(TSC), *TSC_FLAGS, *map(str, files)], cwd=REPO, capture_output=True, text=True, timeout=300)


def error_lines(output: str, file: Path) -> set[int]:
    name = re.escape(str(file.relative_to(REPO)))
    return {int(m.group(1)) for m in re.finditer(rf"^{name}\((\d+),\d+\): error TS\d+", output, re.M)}


def test_typed_example_passes_strict_type_checking():
    # "webrt" and "webrt/errors" / "webrt/worker" resolve through package.json's exports (the package's own name)
    done = tsc(TS / "typed_example.ts", TS / "typed_worker.ts")
    assert done.returncode == 0, done.stdout + done.stderr
    code = (TS / "typed_example.ts").read_text()
    without_comments = re.sub(r"//.*", "", code)
    assert not re.search(r"\bany\b", without_comments), "the typed example must not use `any`"
    # it exercises the shapes it claims to
    for needle in ["stream: true", 'role: "tool"', "json_schema", "tool_calls", "usage.extra", "createWorkerEngine",
                   "forward(", "importTuningDB", "useFileCache", "embeddings.create", "interrupt()"]:
        assert needle in code, needle


def test_each_wrong_call_fails_type_checking():
    file = TS / "wrong_calls.ts"
    marked = {i for i, line in enumerate(file.read_text().splitlines(), 1) if line.rstrip().endswith("// wrong")}
    assert len(marked) >= 10
    done = tsc(file)
    assert done.returncode != 0
    assert error_lines(done.stdout, file) == marked, done.stdout


def test_types_declare_exactly_the_runtime_exports(tmp_path):
    """An object with one key per runtime export of web/index.js, typed as Record<keyof typeof webrt, ...>:
    tsc flags a runtime export the types lack (excess key) and a declared value the runtime lacks
    (missing key)."""
    listing = subprocess.run(
        ["node", "--input-type=module", "-e",
         "const m = await import(process.argv[1]); console.log(JSON.stringify(Object.keys(m)))",
         (REPO / "web" / "index.js").as_uri()],
        capture_output=True, text=True, timeout=60, check=True)
    names = json.loads(listing.stdout)
    assert "createEngine" in names and "InputError" in names
    check = tmp_path / "exports.ts"
    index = (REPO / "web" / "index.js").as_posix()
    check.write_text(f'import * as webrt from "{index}";\n'
                     f"export const names: Record<keyof typeof webrt, true> = {{ {', '.join(f'{n}: true' for n in names)} }};\n"
                     "console.log(names, webrt);\n")
    done = subprocess.run([str(TSC), *TSC_FLAGS, str(check)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

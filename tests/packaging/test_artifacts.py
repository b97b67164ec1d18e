"""What we ship works outside the checkout: the wheel, the sdist, and what each Dockerfile builds from.

Each artifact is installed with ``--no-deps`` into a fresh virtual environment outside the repository; the test
interpreter's site-packages are made visible to it through a ``.pth`` file (for torch and the other
dependencies, too heavy to install per test), after ours, so ``catalogue_tagger`` must come from the artifact.
Commands run with a temporary working directory and no ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
AUDIO = REPO / "tests" / "fixtures" / "audio"


# --- the checkout, artifacts and fresh environments -------------------------------------------------------------


def _source_files() -> list[str]:
    """The files a clean clone has (tracked, plus new ones not ignored), relative to the repository root."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    return sorted({name for name in listed if name and (REPO / name).is_file()})


def _copy(files: Iterable[str], source: Path, target: Path) -> None:
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name, follow_symlinks=False)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    return {**env, "PYTHONNOUSERSITE": "1", **extra}


def _build(hook: str, project: Path, out: Path) -> Path:
    """Run a PEP 517 hook of setuptools (``build_wheel``/``build_sdist``) in ``project``, as pip or ``build`` do."""
    out.mkdir(parents=True, exist_ok=True)
    code = f"import sys; from setuptools import build_meta; name = build_meta.{hook}({str(out)!r}); print('\\n' + name)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=_clean_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(arg) for arg in args], cwd=cwd, env=_clean_env(), capture_output=True, text=True, check=False,
            timeout=600,
        )  # fmt: skip


def _install(wheel: Path, root: Path) -> Venv:
    """A fresh venv holding only ``wheel`` (no dependencies), then the test interpreter's site-packages after it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    venv = Venv(root)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv.python), "install", "--no-deps", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", str(wheel)],
        env=_clean_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    purelib = venv.run(venv.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=root)
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
    (Path(purelib.stdout.strip()) / "zz_test_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return venv


def _assert_package_from(venv: Venv, cwd: Path) -> None:
    """``catalogue_tagger`` and its SQL are imported from the fresh venv, not from the checkout."""
    code = (
        "import json, catalogue_tagger, dagster_defs; from catalogue_tagger.store.queries import sql_dir, migrations;"
        "print(json.dumps({'package': catalogue_tagger.__file__, 'defs': dagster_defs.__file__,"
        " 'sql': str(sql_dir()), 'migrations': len(migrations())}))"
    )
    done = venv.run(venv.python, "-c", code, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    root = venv.root.resolve()
    for key in ("package", "defs", "sql"):
        assert Path(found[key]).resolve().is_relative_to(root), (key, found[key])
    assert found["migrations"] >= 1
    assert list((Path(found["package"]).parent / "sql").rglob("*.sql"))  # the SQL is a real copy in the package
    assert not any(path.is_symlink() for path in Path(found["package"]).parent.rglob("*"))


def _db_init(venv: Venv, database_url: str, cwd: Path) -> None:
    done = venv.run(venv.root / "bin" / "catalogue-tagger", "db", "init", "--database-url", database_url, cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "migration(s) applied" in done.stdout, done.stdout
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        views = {row[0] for row in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert {"tracks", "models", "track_tags", "schema_migrations"} <= tables, tables
    assert "tag_scores" in views, views


# --- the wheel and the sdist ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``wheel``: built from a copy of the checkout; ``sdist``: the wheel pip builds from the source distribution."""
    work = tmp_path_factory.mktemp("artifacts")
    checkout = work / "checkout"
    _copy(_source_files(), REPO, checkout)
    wheel = _build("build_wheel", checkout, work / "dist")
    sdist = _build("build_sdist", checkout, work / "dist")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    [unpacked] = (work / "unpacked").iterdir()
    from_sdist = _build("build_wheel", unpacked, work / "from-sdist")
    return {"wheel": wheel, "sdist": from_sdist}


@pytest.mark.parametrize("artifact", ["wheel", "sdist"])
def test_installed_artifact_initialises_a_database_and_predicts(
    artifact: str, artifacts: dict[str, Path], tmp_path: Path, database_factory: Callable[[], str]
) -> None:
    venv = _install(artifacts[artifact], tmp_path / "venv")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _assert_package_from(venv, cwd)
    _db_init(venv, database_factory(), cwd)

    clip = shutil.copy(AUDIO / "excerpt.ogg", cwd / "clip.ogg")
    done = venv.run(venv.root / "bin" / "catalogue-tagger", "predict", clip, "--model", "musicnn-mtt",
                    "--format", "json", cwd=cwd)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [record] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert record["model"] == "musicnn-mtt" and record["n_segments"] >= 1
    assert len(record["tags"]) == 50 and all(0.0 <= score <= 1.0 for score in record["tags"].values())


# --- the images' build contexts ---------------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """One .dockerignore pattern as Docker's pattern matcher reads it (``**`` any number of path segments,
    ``*`` and ``?`` within one segment), matched against a slash-separated relative path."""
    pattern = os.path.normpath(pattern.strip().lstrip("/")).replace(os.sep, "/")
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(.*/)?"
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        elif char == "\\":
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return re.compile(f"^{out}$")


def _admitted(files: Iterable[str], dockerignore: Path) -> list[str]:
    """The files of the context that survive ``dockerignore``: the last matching pattern decides, and a pattern
    that matches a parent directory matches everything under it."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in dockerignore.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        rules.append((exclude, _dockerignore_regex(line.lstrip("!"))))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for exclude, regex in rules:
            if any(regex.match(prefix) for prefix in prefixes):
                verdict = exclude
        return verdict

    return [path for path in files if not excluded(path)]


def _copy_instructions(dockerfile: Path) -> tuple[str, list[tuple[list[str], str]]]:
    """The final WORKDIR and every ``COPY`` (sources, destination) of the build stage."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    workdir, copies = "/", []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        instruction = words[0].upper()
        if instruction == "WORKDIR":
            workdir = os.path.join(workdir, words[1])
        elif instruction in {"COPY", "ADD"}:
            args = [word for word in words[1:] if not word.startswith("--")]
            assert not any(word.startswith("--from") for word in words), line
            *sources, dest = args
            copies.append((sources, dest if dest.startswith("/") else os.path.join(workdir, dest)))
    return workdir, copies


def _assemble(dockerfile: Path, dockerignore: Path, image_root: Path) -> Path:
    """Lay out what the Dockerfile's COPY lines put into the image, from the context its .dockerignore admits;
    return the WORKDIR where ``pip install .`` runs."""
    context = _admitted(_source_files(), dockerignore)
    workdir, copies = _copy_instructions(dockerfile)
    assert copies, f"{dockerfile.name} copies nothing"
    for sources, dest in copies:
        for source in sources:
            source = source.rstrip("/")
            below = [name for name in context if name.startswith(source + "/")]
            if source in context:  # a file: into the destination folder (or as the destination)
                target = dest + os.path.basename(source) if dest.endswith("/") or len(sources) > 1 else dest
                pairs = [(source, target)]
            else:  # a folder: its admitted contents into the destination
                assert below, f"{dockerfile.name}: COPY {source} — nothing of it is in the build context"
                pairs = [(name, os.path.join(dest, name[len(source) + 1 :])) for name in below]
            for name, target in pairs:
                path = image_root / target.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, path, follow_symlinks=False)
    return image_root / workdir.lstrip("/")


def test_dockerignore_matching_follows_docker() -> None:
    """The pattern reader on the cases our .dockerignore files use."""
    files = ["README.md", "sql/schema.sql", "catalogue_tagger/__init__.py", "catalogue_tagger/x/__pycache__/a.pyc",
             "tests/conftest.py", "deploy/values.yaml", "catalogue_tagger/y.pyc"]  # fmt: skip
    admitted = _admitted(files, DEPLOY / "Dockerfile.cpu.dockerignore")
    assert admitted == ["README.md", "sql/schema.sql", "catalogue_tagger/__init__.py"]


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_image_build_context_installs_and_initialises_a_database(
    name: str, tmp_path: Path, database_factory: Callable[[], str]
) -> None:
    """Exactly the files each Dockerfile copies (from what its .dockerignore admits) build a package that works."""
    workdir = _assemble(DEPLOY / name, DEPLOY / f"{name}.dockerignore", tmp_path / "image")
    assert not any(path.is_symlink() for path in workdir.rglob("*"))
    wheel = _build("build_wheel", workdir, tmp_path / "dist")  # what `pip install .` does in the image
    venv = _install(wheel, tmp_path / "venv")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _assert_package_from(venv, cwd)
    _db_init(venv, database_factory(), cwd)

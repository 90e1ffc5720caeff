"""What `pip install taskcli` gets: the sdist and the wheel built from it hold every module, sample and recipe, and
the installed package finds its recipes (recipes/ at the top of the repository, installed as taskcli.recipes)."""

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile

from conftest import REPO

# What the build reads from the working tree (pyproject.toml names README.md as the long description).
BUILD_INPUTS = ("pyproject.toml", "README.md", "taskcli", "recipes")


def _build(backend_call: str, source, out) -> str:
    """One PEP 517 hook of the installed setuptools, run in `source` (no build isolation: offline and fast)."""
    code = f"import sys; from setuptools import build_meta; print(build_meta.{backend_call}(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_wheel_built_from_the_sdist_ships_every_recipe_and_finds_them(tmp_path):
    recipes = sorted(p.relative_to(REPO / "recipes").as_posix() for p in (REPO / "recipes").rglob("*.yaml"))
    assert len(recipes) == 26, "the shipped recipes live in recipes/<task>/ at the top of the repository"
    # A copy, so the build's build/ and egg-info never land in the working tree others are using.
    source = tmp_path / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)

    # pip install from PyPI's sdist builds the wheel from the unpacked sdist: both must carry recipes/.
    sdist = tmp_path / "dist" / _build("build_sdist", source, tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = next((tmp_path / "unpacked").iterdir())
    wheel = tmp_path / "wheel" / _build("build_wheel", unpacked, tmp_path / "wheel")
    names = set(zipfile.ZipFile(wheel).namelist())

    installed = "taskcli.recipes".replace(".", "/")  # the package's folder in the wheel
    missing = [f"{installed}/{r}" for r in recipes if f"{installed}/{r}" not in names]
    assert not missing, f"recipes left out of the wheel: {missing}"
    # every module, in every subpackage pyproject.toml lists (a new subpackage must be listed there), and the samples
    for path in (REPO / "taskcli").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            assert path.relative_to(REPO).as_posix() in names, f"{path.relative_to(REPO)} is not in the wheel"

    # Installed (the wheel unpacked first on sys.path, ahead of this checkout's editable install): the recipes
    # are found inside the installed package, and every shipped name resolves.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import json, taskcli\n"
        "from taskcli import recipe, registry\n"
        "names = [recipe.shipped_name(p) for p in recipe.shipped()]\n"
        "found = [recipe.find(registry.get(n.split('/')[0]), n.split('/')[1]) for n in names]\n"
        "print(json.dumps({'package': taskcli.__file__, 'dir': str(recipe.RECIPES_DIR), 'names': names,\n"
        "                  'found': [str(p) for p in found]}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout)
    assert seen["package"] == str(site / "taskcli" / "__init__.py")
    assert seen["dir"] == str(site / "taskcli" / "recipes")
    assert seen["names"] == [r.removesuffix(".yaml") for r in recipes]
    assert seen["found"] == [str(site / "taskcli" / "recipes" / r) for r in recipes]

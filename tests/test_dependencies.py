"""The declared dependencies: every third-party module the bot imports is
declared in pyproject.toml, the floors are past the releases with known CVEs,
and the image installs exactly the lock file's releases, by hash."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.conftest import ROOT

FIRST_PARTY = {"bot", "commands", "models", "schedulers", "webhooks"}
# Optional SDKs not installed for the tests: module -> the distribution declaring it.
NOT_INSTALLED = {"tencentcloud": "tencentcloud-sdk-python-sms"}
# Minimum releases without the known CVEs (issue 13, item 11).
FLOORS = {"aiohttp": (3, 12, 14), "jinja2": (3, 1, 6), "cryptography": (44, 0, 1)}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared() -> dict[str, str]:
    """Normalized distribution name -> its requirement line, runtime and extras."""
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name != "test":
            lines += extra
    return {_normal(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]): line for line in lines}


def _imports() -> dict[str, str]:
    """Top-level module -> one file importing it, over the shipped packages."""
    found: dict[str, str] = {}
    for package in sorted(FIRST_PARTY):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_r11_every_imported_third_party_module_is_declared():
    distributions = packages_distributions()
    undeclared = []
    for module, where in _imports().items():
        if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
            continue
        names = distributions.get(module) or [NOT_INSTALLED.get(module, module)]
        if not any(_normal(name) in _declared() for name in names):
            undeclared.append(f"{module} (imported in {where}, distribution {names})")
    assert not undeclared, "declare in pyproject.toml: " + "; ".join(undeclared)


def test_r11_floors_exclude_releases_with_known_cves():
    declared = _declared()
    for name, floor in FLOORS.items():
        match = re.search(r">=\s*([\d.]+)", declared[name])
        assert match, f"{name} has no floor: {declared[name]}"
        version = tuple(int(part) for part in match[1].split("."))
        assert version + (0,) * (3 - len(version)) >= floor, declared[name]


def test_r11_the_image_installs_the_hashed_lock_file():
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {_normal(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock,
                                                        re.MULTILINE)}
    runtime = [_normal(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0])
               for line in _pyproject()["project"]["dependencies"]]
    assert set(runtime) <= set(pinned), set(runtime) - set(pinned)
    for name, floor in FLOORS.items():
        assert tuple(int(p) for p in pinned[name].split(".")[:3]) >= floor, (name, pinned[name])
    # Every pin carries hashes, so pip's --require-hashes accepts the file.
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n\n")[-1].strip())
    assert all("--hash=sha256:" in entry for entry in entries if "==" in entry)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r /tmp/requirements.lock" in dockerfile
    assert "fonts-wqy-microhei" in dockerfile

"""The core install works alone: the main paths run with the optional extras hidden.

Each test starts a Python process whose ``sitecustomize`` hides modules (a ``None`` entry in
``sys.modules``): ``import X`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec``
answers ``None``, as if X were not installed. The hidden modules are those that the optional
extras of ``pyproject.toml`` install, so that a dependency moved into an extra is hidden here
at once. In that process: reading (a CSV over the 1 MiB that sends a file to the block
reader, ML-100K's ``u.data``), a short fit, save, load, predict, recommend, the command line's
train, predict and recommend; and every command that needs a hidden extra (tune, serve,
``--plot``) must stop with exit status 2 and one line naming its
``pip install 'autorec[...]'``, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

#: Import name of each distribution listed in an optional extra (a new one must be added).
IMPORT_NAMES = {"optuna": "optuna", "fastapi": "fastapi", "uvicorn": "uvicorn",
                "matplotlib": "matplotlib", "scikit-learn": "sklearn",
                "scikit-surprise": "surprise", "pyarrow": "pyarrow", "numba": "numba"}
#: Tools of the ``test`` extra that the package itself never imports.
TEST_TOOLS = {"pytest", "ruff"}

#: Commands that need an extra: (modules, the extra, the arguments after ``autorec``).
NEEDS_EXTRA = [
    ({"optuna"}, "tune", ["tune", "--data", "{csv}", "--trials", "1", "--epochs", "1",
                          "--study", "{work}/study.db", "--out", "{work}/best.toml"]),
    ({"fastapi", "uvicorn"}, "serve", ["serve", "--model", "{model}"]),
    ({"matplotlib"}, "plot", ["train", "--data", "{csv}", "--epochs", "1", "--hidden", "8",
                              "--plot", "{work}/curves.png", "--out", "{work}/plot-run"]),
    ({"matplotlib"}, "plot", ["evaluate", "--data", "{csv}", "--protocol", "kfold",
                              "--folds", "2", "--epochs", "1", "--hidden", "8",
                              "--plot", "{work}/eval.png"]),
]

BLOCKER = '''\
import os
import sys

# A None entry makes `import X` raise ModuleNotFoundError and importlib.util.find_spec(X)
# answer None, as when X is not installed.
for _name in os.environ.get("AUTOREC_TEST_HIDE", "").split(","):
    if _name:
        sys.modules[_name] = None
'''

#: The library's main paths, run in the process with extras hidden; prints a JSON report.
DRIVER = '''\
import json, os, sys
from pathlib import Path

hidden = [n for n in os.environ["AUTOREC_TEST_HIDE"].split(",") if n]
for name in hidden:
    try:
        __import__(name)
    except ModuleNotFoundError:
        continue
    sys.exit(f"{name} is not hidden")

import numpy as np
from autorec import AutoRec, read_ratings
from autorec.cli.main import build_parser

build_parser()  # imports every command's module

work, csv = Path(sys.argv[1]), Path(sys.argv[2])
report = {}
ratings = read_ratings(csv)
report["n_ratings"] = len(ratings)
model = AutoRec(hidden=8, epochs=1, refit=False, random_state=0, device="cpu").fit(ratings)
loaded = AutoRec.load(model.save(work / "api-model"))
users, items = ratings.user_ids[:5], ratings.item_ids[:5]
report["predictions_agree"] = bool(np.allclose(loaded.predict(users, items),
                                               model.predict(users, items), rtol=1e-6))
report["n_recommended"] = len(loaded.recommend(users[:2], n=3))
report["repr"] = repr(loaded).startswith("AutoRec(")
report["html"] = loaded._repr_html_()

report["imported"] = sorted(n for n in hidden if sys.modules.get(n) is not None)
print(json.dumps(report))
'''


def optional_modules() -> set[str]:
    """Import names of everything the optional extras of ``pyproject.toml`` install."""
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]
    modules = set()
    for requirements in extras.values():
        for requirement in requirements:
            name = requirement.split(";")[0]
            for stop in "<>=!~[ ":
                name = name.split(stop)[0]
            if name in TEST_TOOLS:
                continue
            assert name in IMPORT_NAMES, f"add {name!r} (an optional extra) to IMPORT_NAMES"
            modules.add(IMPORT_NAMES[name])
    return modules


N_BIG = 48_000


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over 1 MiB of ratings (string users, integer items, half stars): the block reader."""
    rng = np.random.default_rng(0)
    n_users, n_items, n = 1000, 300, N_BIG
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    ratings = rng.integers(2, 11, size=n) / 2
    lines = [f"user-{p // n_items:06d},{100_000 + p % n_items},{r:.1f}"
             for p, r in zip(pairs, ratings, strict=True)]
    path = tmp_path_factory.mktemp("extras") / "ratings.csv"
    path.write_text("user_id,item_id,rating\n" + "\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size > 1 << 20
    return path


@pytest.fixture(scope="module")
def blocker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("blocker")
    (folder / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    (folder / "extras_driver.py").write_text(DRIVER, encoding="utf-8")
    return folder


def run_hidden(blocker: Path, hidden: list[str], *args: str) -> subprocess.CompletedProcess:
    """``python *args`` with ``hidden`` unimportable."""
    path = [str(blocker), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, AUTOREC_TEST_HIDE=",".join(hidden), PYTHONPATH=os.pathsep.join(path))
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def assert_needs_extra(code: int, stderr: str, extra: str, what: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, (what, stderr)
    assert "Traceback" not in stderr, (what, stderr)
    assert len(lines) == 1, (what, stderr)
    assert f"pip install 'autorec[{extra}]'" in lines[0], (what, lines[0])


def test_optional_modules_follow_pyproject() -> None:
    modules = optional_modules()
    assert {"optuna", "fastapi", "uvicorn", "matplotlib", "sklearn", "surprise"} <= modules
    assert "pyarrow" not in modules  # the reader of every large text file is core


def test_the_blocker_hides(blocker: Path) -> None:
    code = "import importlib.util; assert importlib.util.find_spec('optuna') is None; import optuna"
    result = run_hidden(blocker, ["optuna"], "-c", code)
    assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr, result.stderr
    assert run_hidden(blocker, [], "-c", "import numpy").returncode == 0


def test_library_without_any_extra(blocker: Path, big_csv: Path, tmp_path: Path) -> None:
    """Read, fit, save, load, predict, recommend, with every optional module hidden."""
    hidden = sorted(optional_modules())
    result = run_hidden(blocker, hidden, str(blocker / "extras_driver.py"), str(tmp_path),
                        str(big_csv))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n_ratings"] == N_BIG
    assert report["predictions_agree"] and report["n_recommended"] == 6 and report["repr"]
    assert report["html"] is None  # no scikit-learn: the notebook shows the plain repr
    assert report["imported"] == []


def test_command_line_without_any_extra(blocker: Path, big_csv: Path, tmp_path: Path) -> None:
    """The ``autorec`` command (train, predict, recommend) with every optional module hidden."""
    hidden = sorted(optional_modules())
    model, run = tmp_path / "model", tmp_path / "run"
    train = run_hidden(blocker, hidden, "-m", "autorec", "train", "--data", str(big_csv),
                       "--epochs", "1", "--hidden", "8", "--save", str(model),
                       "--out", str(run), "--quiet")
    assert train.returncode == 0, train.stderr
    assert "Traceback" not in train.stderr
    assert json.loads((run / "metrics.json").read_text())["n_train"] == N_BIG - N_BIG // 10
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\nuser-000000,100001\nnobody,100001\n", encoding="utf-8")
    predict = run_hidden(blocker, hidden, "-m", "autorec", "predict", "--model", str(model),
                         "--input", str(pairs), "--output", "-")
    assert predict.returncode == 0, predict.stderr
    lines = predict.stdout.splitlines()
    assert lines[0] == "user_id,item_id,prediction,fallback" and len(lines) == 3
    recommend = run_hidden(blocker, hidden, "-m", "autorec", "recommend", "--model",
                           str(model), "--user", "user-000000", "--n", "3")
    assert recommend.returncode == 0, recommend.stderr
    assert "user user-000000" in recommend.stdout


#: Runs each command of NEEDS_EXTRA in this one process with the module named hidden (a
#: ``None`` entry in ``sys.modules`` while it runs) and prints its exit status and stderr.
NEEDS_DRIVER = '''\
import contextlib, io, json, sys
from autorec.cli.main import main

report = []
for module, args in json.loads(sys.argv[1]):
    saved = sys.modules.get(module)
    sys.modules[module] = None
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    if saved is None:
        del sys.modules[module]
    else:
        sys.modules[module] = saved
    report.append([code, err.getvalue()])
print(json.dumps(report))
'''


def test_commands_that_need_a_missing_extra_say_how_to_install(
        blocker: Path, big_csv: Path, tmp_path: Path) -> None:
    """tune, serve and --plot stop at once: exit 2, one line naming the extra, no traceback."""
    model = tmp_path / "model"  # serve checks for FastAPI before it reads the model
    cases = [(module, extra, [a.format(csv=big_csv, work=tmp_path, model=model) for a in args])
             for modules, extra, args in NEEDS_EXTRA for module in sorted(modules)]
    result = run_hidden(blocker, [], "-c", NEEDS_DRIVER,
                        json.dumps([[module, args] for module, _, args in cases]))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report) == len(cases) == 5
    for (module, extra, args), (code, err) in zip(cases, report, strict=True):
        assert_needs_extra(code, err, extra, f"{args[0]} without {module}")
    assert list(tmp_path.iterdir()) == []  # stopped before writing anything


@pytest.mark.real_data
def test_movielens_without_any_extra(blocker: Path, ml100k_dir: Path, tmp_path: Path) -> None:
    """The README's main job (ML-100K's u.data is over 1 MiB), for one epoch."""
    hidden = sorted(optional_modules())
    run = tmp_path / "ml-100k"
    train = run_hidden(blocker, hidden, "-m", "autorec", "train", "--data-dir",
                       str(ml100k_dir), "--epochs", "1", "--hidden", "8", "--out", str(run),
                       "--quiet")
    assert train.returncode == 0, train.stderr
    assert json.loads((run / "metrics.json").read_text())["n_test"] == 10_000

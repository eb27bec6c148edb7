"""Benchmark our library against the reference ``eventsourcing`` 9.5.6.

    python benchmarks/bench.py            # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench.py --quick    # tiny sizes, 1 run, writes to a temp file
    python benchmarks/bench.py --quick --ours-only --output /tmp/r.md   # no network

Every measurement is a fresh subprocess running ``benchmarks/scenarios.py``:
ours with the current interpreter and the repository root on PYTHONPATH, the
reference with the python of ``.bench-venv/`` (created once) and without our
repository on the path. Runs alternate: ours, reference, reference with its
aggregate cache, ours, ... and the median of the runs is reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT / ".bench-venv"
REFERENCE = "eventsourcing==9.5.6"
REFERENCE_EXTRAS = ["psycopg[binary]", "psycopg-pool"]
RESULT_PREFIX = "BENCH-RESULT "
OURS_ROOT = ROOT  # --ours-root benchmarks another checkout of our library
RUN_TIMEOUT = 900  # seconds for one subprocess

STORES = ["popo", "sqlite", "postgres"]
SCENARIOS = [
    "save",
    "get",
    "replay",
    "log",
    "system-st",
    "system-mt",
    "latency",
    "catchup",
    "memory",
]
# N per scenario: in memory, on a durable store, and with --quick.
SIZES: dict[str, tuple[int, int, int]] = {
    "save": (2000, 200, 10),  # aggregates (5 commands each)
    "get": (20000, 10000, 100),  # gets
    "replay": (20, 10, 2),  # aggregates of 1,000 events
    "log": (200000, 50000, 500),  # notifications (enough to read for 0.1 s or more)
    "system-st": (1000, 300, 30),  # add_trick commands
    "system-mt": (1000, 300, 30),  # add_trick commands
    "latency": (300, 200, 20),  # commands (each measured twice: hook and poll)
    "catchup": (10000, 10000, 500),  # backlog events (the issue asks for 10,000)
    "memory": (100000, 5000, 2000),  # backlog events
}
DESCRIPTIONS = {
    "save": "create an aggregate, then get-modify-save it 4 times (5 events); N aggregates",
    "get": "`repository.get` of 5-event aggregates (100 of them, round robin); N gets",
    "replay": "N aggregates of 1,000 events, each read once by an application that never "
    "saw it (no cache helps)",
    "log": "read N notifications with `notification_log.select(start, 100)`",
    "system-st": "seed system (DogSchool -> Counters), 10 dogs, 10 tricks, N add_trick, "
    "SingleThreadedRunner (in memory: 5 fresh systems of N, one after the other, per run)",
    "system-mt": "same under MultiThreadedRunner, until Counters has processed all N",
    "latency": "MultiThreadedRunner: add_trick() returned -> Counters' write done; N commands",
    "catchup": "a fresh Counters catching up a backlog of N DogSchool events (MultiThreadedRunner)",
    "memory": "peak RSS of a fresh process catching up a backlog of N events",
}
# Memory is stable from run to run and slow to measure: one run per configuration.
SINGLE_RUN = {"memory"}
# In memory a run takes about a second and the machine's slow spells last several:
# more runs there, so that one spell does not make the median.
IN_MEMORY_RUNS = 5
# The raw store limits are measured in the rounds of this scenario, which they bound.
RAW_WITH = "save"
RAW_ONE_PER_TX = "rows/s, 1 row per transaction"  # the quicker of the two ways:
RAW_WAYS = ("BEGIN/INSERT/COMMIT", "autocommit INSERT")

CONFIGS = [
    ("ours", {}),
    ("reference", {}),
    ("reference+cache", {"AGGREGATE_CACHE_MAXSIZE": "1000"}),
    # Not durable against power loss or a server crash: reported apart, never as ours.
    ("ours-relaxed", {"SQLITE_SYNCHRONOUS": "NORMAL", "POSTGRES_SYNCHRONOUS_COMMIT": "off"}),
]
# Where the relaxed configuration is measured: the scenarios that wait for commits.
RELAXED_SCENARIOS = {"save", "system-st", "system-mt"}


# ---------------------------------------------------------------------------
# The reference library's virtual environment.


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_reference_venv() -> Path:
    python = venv_python()
    check = "import importlib.metadata as m; print(m.version('eventsourcing'))"
    if python.exists():
        found = subprocess.run([python, "-c", check], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == REFERENCE.split("==")[1]:
            return python
    print(f"Creating {VENV} with {REFERENCE} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", REFERENCE, *REFERENCE_EXTRAS], check=True
    )
    return python


# ---------------------------------------------------------------------------
# Running one measurement.


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "SQLITE_"))}
    for key in ("PYTHONPATH", "PERSISTENCE_MODULE", "AGGREGATE_CACHE_MAXSIZE"):
        env.pop(key, None)
    env.update(extra)
    return env


def run_script(
    python: Path | str, args: list[str], env: dict[str, str], script: str = "scenarios.py"
) -> dict[str, Any]:
    cmd = [str(python), str(HERE / script), *args]
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=str(HERE), capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {RUN_TIMEOUT}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def run_one(config: str, python: Path | str, scenario: str, store: str, n: int) -> dict[str, Any]:
    extra = dict(CONFIGS)[config]
    if config.startswith("ours"):
        env = clean_env({**extra, "PYTHONPATH": str(OURS_ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    else:
        env = clean_env(extra)
    result = run_script(python, ["--scenario", scenario, "--store", store, "--n", str(n)], env)
    library = result.get("library", "")
    expected_ours = config.startswith("ours")
    if library and (library == str(OURS_ROOT / "eventsourcing")) != expected_ours:
        result = {"error": f"wrong library imported: {library}"}
    return result


def measured(config: str, scenario: str, store: str) -> bool:
    if config == "ours-relaxed":
        return store != "popo" and scenario in RELAXED_SCENARIOS
    return True


def run_raw(pythons: dict[str, Path | str], store: str, quick: bool) -> dict[str, Any]:
    """One measurement of the store's raw limit (plain driver inserts)."""
    python = pythons.get("reference", sys.executable)
    n = 50 if quick else 1000
    result = run_script(python, ["--store", store, "--n", str(n)], clean_env({}), "raw_stores.py")
    print(f"[{store}] raw: {result.get('metrics') or result.get('error')}", flush=True)
    return result


# ---------------------------------------------------------------------------
# Aggregating and reporting.


def median_raw(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each rate over the raw runs that succeeded."""
    ok = [r["metrics"] for r in runs if "metrics" in r]
    if not ok:
        return {"error": runs[0].get("error", "no run") if runs else "no run"}
    rates = [k for k, v in ok[0].items() if k.startswith("rows/s")]
    metrics = {k: statistics.median(m[k] for m in ok) for k in rates}
    return {"metrics": {**ok[0], **metrics}, "runs": len(ok)}


def median_metrics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each metric over the runs that succeeded; notes for the others."""
    ok = [r for r in runs if "metrics" in r]
    out: dict[str, Any] = {"runs": len(ok)}
    if not ok:
        first = runs[0] if runs else {}
        if "skipped" in first:
            out["skipped"] = first["skipped"]
        else:
            out["error"] = first.get("error", "no run")
        return out
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        out["partial_error"] = errors[0]
    metrics: dict[str, Any] = {}
    for name, m in ok[0]["metrics"].items():
        if not isinstance(m, dict):
            continue
        values = [r["metrics"][name]["value"] for r in ok if name in r["metrics"]]
        metrics[name] = {**m, "value": statistics.median(values), "all": values}
    out["metrics"] = metrics
    return out


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def better_of(a: dict[str, Any] | None, b: dict[str, Any] | None, direction: str) -> Any:
    candidates = [x for x in (a, b) if x is not None]
    if not candidates:
        return None
    if direction == "lower":
        return min(candidates, key=lambda m: m["value"])
    return max(candidates, key=lambda m: m["value"])


def cell_note(summary: dict[str, Any]) -> str:
    if "skipped" in summary:
        return f"n/a ({summary['skipped']})"
    if "error" in summary:
        return f"error: {summary['error']}"
    return "n/a"


def scenario_table(results: dict[str, dict[str, Any]]) -> list[str]:
    ours = results.get("ours", {})
    ref = results.get("reference", {})
    ref_cache = results.get("reference+cache", {})
    names: list[str] = []
    for summary in (ours, ref, ref_cache):
        for name in summary.get("metrics", {}):
            if name not in names:
                names.append(name)
    lines = [
        "| metric | ours | reference | reference + cache | ours vs best reference |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        o = ours.get("metrics", {}).get(name)
        r = ref.get("metrics", {}).get(name)
        rc = ref_cache.get("metrics", {}).get(name)
        direction = (o or r or rc or {}).get("better", "higher")
        unit = (o or r or rc or {}).get("unit", "")
        best = better_of(r, rc, direction)
        ratio = ""
        if o is not None and best is not None and direction != "none":
            if direction == "higher" and best["value"] > 0:
                ratio = f"{o['value'] / best['value']:.2f}x"
            elif direction == "lower" and o["value"] > 0:
                ratio = f"{best['value'] / o['value']:.2f}x"
        if ratio and best is rc and rc is not r:
            ratio += " (vs cache)"
        cells = [
            fmt(x["value"]) if x is not None else cell_note(s)
            for x, s in ((o, ours), (r, ref), (rc, ref_cache))
        ]
        lines.append(f"| {name} ({unit}) | {cells[0]} | {cells[1]} | {cells[2]} | {ratio} |")
    for label, summary in (("ours", ours), ("reference", ref), ("reference + cache", ref_cache)):
        if "partial_error" in summary:
            lines.append(f"\n{label}: some runs failed: `{summary['partial_error']}`")
        if "metrics" not in summary and "error" in summary:
            lines.append(f"\n{label} failed: `{summary['error']}`")
    return lines


def write_report(
    path: Path,
    args: argparse.Namespace,
    results: dict[tuple[str, str], dict[str, dict[str, Any]]],
    raw: dict[str, dict[str, Any]],
    notes: list[str],
    repeats: int,
    started: datetime.datetime,
) -> None:
    lines = [
        "# Benchmarks: ours vs. the reference `eventsourcing` 9.5.6",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC (took {_elapsed(started)})",
        f"- machine: `{platform.platform()}`, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()})",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- command: `python benchmarks/bench.py{' --quick' if args.quick else ''}"
        f"{' --ours-only' if args.ours_only else ''}"
        f"{f' --ours-root {OURS_ROOT}' if OURS_ROOT != ROOT else ''}`; "
        f"median of {repeats} run(s) per figure "
        f"(1 for memory; {in_memory_runs(repeats, args)} for the in-memory store), "
        "each in a fresh subprocess, alternating ours / reference / "
        "reference with `AGGREGATE_CACHE_MAXSIZE=1000` (and, for a few scenarios on "
        "SQLite and PostgreSQL, ours with the less durable option, reported apart)",
        "- 'ours vs best reference' > 1 means ours is better (faster, lower latency, less "
        "memory); it compares with the better of the reference's two configurations.",
        "",
    ]
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    for store in args.stores:
        lines.append(f"## Store: {store}")
        lines.append("")
        for scenario in args.scenarios:
            key = (scenario, store)
            if key not in results:
                continue
            n = size_of(scenario, store, args.quick)
            lines.append(f"### {scenario} (N = {n:,})")
            lines.append("")
            lines.append(DESCRIPTIONS[scenario] + ".")
            lines.append("")
            lines.extend(scenario_table(results[key]))
            lines.append("")
            relaxed = relaxed_line(results[key])
            if relaxed:
                lines.extend([relaxed, ""])
            bound = raw_bound(scenario, results[key], raw.get(store, {}))
            if bound:
                lines.extend([bound, ""])
    if raw:
        lines.append("## Raw store limits (no library)")
        lines.append("")
        lines.append(
            "Event-sized rows (~200 bytes) into an events-shaped table; the median of the "
            f"runs made in the rounds of the `{RAW_WITH}` scenario, alternating with it. "
            "One row per transaction is measured two ways, row by row in turn: an explicit "
            "transaction (BEGIN, INSERT, COMMIT) and a lone INSERT in autocommit mode; "
            "the limit used above is the quicker."
        )
        lines.append("")
        lines.append(
            "| store | 1 row per transaction (rows/s) | BEGIN/INSERT/COMMIT | autocommit "
            "INSERT | 1,000 rows per transaction (rows/s) | settings |"
        )
        lines.append("|---|---:|---:|---:|---:|---|")
        for store, result in raw.items():
            if "metrics" in result:
                m = result["metrics"]
                ways = [m.get(f"{RAW_ONE_PER_TX}, {way}") for way in RAW_WAYS]
                lines.append(
                    f"| {store} | {fmt(m[RAW_ONE_PER_TX])} | "
                    + " | ".join(fmt(rate) if rate else "n/a" for rate in ways)
                    + f" | {fmt(m['rows/s, 1000 rows per transaction'])} | {m['settings']} |"
                )
            else:
                lines.append(f"| {store} | {result.get('error', 'n/a')} | | | | |")
        lines.append("")
    lines.extend(kept_sections(path))
    path.write_text("\n".join(lines))


def kept_sections(path: Path) -> list[str]:
    """The sections other benchmarks wrote in ``path`` (between ``<!-- name -->`` and
    ``<!-- /name -->``, e.g. concurrency.py's): a new report keeps them."""
    text = path.read_text() if path.exists() else ""
    kept = re.findall(r"(?ms)^<!-- ([\w-]+) -->$.*?^<!-- /\1 -->$", text)
    blocks = []
    for name in kept:
        begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        blocks.append(begin + text.split(begin, 1)[1].split(end, 1)[0] + end)
        blocks.append("")
    return blocks


def relaxed_line(results: dict[str, Any]) -> str:
    """The relaxed-durability figures, apart from the table (they are not durable)."""
    relaxed = results.get("ours-relaxed", {}).get("metrics")
    if not relaxed:
        return ""
    parts = []
    for name, metric in relaxed.items():
        best = better_of(
            results.get("reference", {}).get("metrics", {}).get(name),
            results.get("reference+cache", {}).get("metrics", {}).get(name),
            metric.get("better", "higher"),
        )
        ratio = ""
        if best is not None and best["value"] > 0 and metric["value"] > 0:
            lower = metric.get("better") == "lower"
            times = best["value"] / metric["value"] if lower else metric["value"] / best["value"]
            ratio = f" ({times:.2f}x the reference's best)"
        parts.append(f"{name} {fmt(metric['value'])}{ratio}")
    return (
        "Less durable option, not counted as ours above (`SQLITE_SYNCHRONOUS=NORMAL` / "
        "`POSTGRES_SYNCHRONOUS_COMMIT=off`: a power cut or a server crash may lose the last "
        "commits): " + "; ".join(parts) + "."
    )


# How many durable commits each command of a scenario needs, at the least.
COMMITS_PER_COMMAND = {
    "save": (1, "each command is one transaction"),
    "system-st": (
        2,
        "each command commits twice: DogSchool's event, then Counters' event "
        "with its tracking, before the command returns",
    ),
    "system-mt": (1, "each command commits DogSchool's event (Counters commits in batches)"),
}


def raw_bound(scenario: str, results: dict[str, Any], raw: dict[str, Any]) -> str:
    """A line setting the scenario's figure against the raw commit rate of the store."""
    rate = raw.get("metrics", {}).get(RAW_ONE_PER_TX)
    ours = results.get("ours", {}).get("metrics", {}).get("commands/s")
    if scenario not in COMMITS_PER_COMMAND or not rate or ours is None:
        return ""
    commits, why = COMMITS_PER_COMMAND[scenario]
    ceiling = rate / commits
    line = (
        f"Against the raw limit: {why}; at the raw rate of {fmt(rate)} one-row "
        f"transactions/s that allows at most {fmt(ceiling)} commands/s. Ours reaches "
        f"{ours['value'] / ceiling:.0%} of that"
    )
    best = better_of(
        results.get("reference", {}).get("metrics", {}).get("commands/s"),
        results.get("reference+cache", {}).get("metrics", {}).get("commands/s"),
        "higher",
    )
    if best is not None and best["value"] > 0:
        line += f"; the ceiling itself is {ceiling / best['value']:.2f}x the reference's best"
    return line + "."


def _elapsed(started: datetime.datetime) -> str:
    seconds = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    return f"{seconds / 60:.1f} min"


def size_of(scenario: str, store: str, quick: bool) -> int:
    memory_n, durable_n, quick_n = SIZES[scenario]
    if quick:
        return quick_n
    return memory_n if store == "popo" else durable_n


def postgres_reachable(python: Path | str) -> str | None:
    """None if the PostgreSQL server answers, else why not."""
    code = (
        "import psycopg; psycopg.connect(host='127.0.0.1', port=5432, user='postgres', "
        "password='postgres', dbname='postgres', connect_timeout=3).close()"
    )
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["unknown error"])[-1]


def in_memory_runs(repeats: int, args: argparse.Namespace) -> int:
    """Runs per in-memory figure: at least IN_MEMORY_RUNS unless asked otherwise."""
    return repeats if args.repeats or args.quick else max(repeats, IN_MEMORY_RUNS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny N and 1 run")
    parser.add_argument("--ours-only", action="store_true", help="skip the reference library")
    parser.add_argument("--output", type=Path, help="where to write the report")
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3; 1 if --quick)")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument(
        "--ours-root",
        type=Path,
        default=ROOT,
        help="checkout whose eventsourcing/ is 'ours' (default: this repository)",
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw store limits")
    parser.add_argument(
        "--concurrency",
        action="store_true",
        help="run only the concurrent and contended saves (benchmarks/concurrency.py)",
    )
    args = parser.parse_args()
    if args.concurrency:
        command = [sys.executable, str(HERE / "concurrency.py")]
        return subprocess.run([*command, "--write", str(HERE / "RESULTS.md")]).returncode
    args.stores = [s for s in args.stores.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for s in args.stores:
        if s not in STORES:
            parser.error(f"unknown store {s!r}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}")
    global OURS_ROOT
    OURS_ROOT = args.ours_root.resolve()
    repeats = args.repeats or (1 if args.quick else 3)
    if args.output is None:
        if args.quick:
            fd, name = tempfile.mkstemp(prefix="bench-results-", suffix=".md")
            os.close(fd)
            args.output = Path(name)
        else:
            args.output = HERE / "RESULTS.md"
    started = datetime.datetime.now(datetime.timezone.utc)

    configs = ["ours", "ours-relaxed"] if args.ours_only else [c for c, _ in CONFIGS]
    pythons: dict[str, Path | str] = {"ours": sys.executable, "ours-relaxed": sys.executable}
    if not args.ours_only:
        ref_python = ensure_reference_venv()
        pythons["reference"] = pythons["reference+cache"] = ref_python

    notes = [
        "the seed imports `AggregateNotFound` from `eventsourcing.application`; the reference "
        "9.5.6 only has `AggregateNotFoundError` there, so the scenarios fall back to it.",
    ]
    if args.ours_only:
        notes.append("run with --ours-only: no reference figures.")
    stores = list(args.stores)
    if "postgres" in stores:
        probe_python = pythons.get("reference", sys.executable)
        why = postgres_reachable(probe_python)
        if why is not None:
            notes.append(f"PostgreSQL skipped: no server at 127.0.0.1:5432 ({why}).")
            stores.remove("postgres")
            args.stores = stores

    results: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    measure_raw = not args.no_raw and RAW_WITH in args.scenarios
    raw_runs: dict[str, list[dict[str, Any]]] = {}
    for store in stores:
        for scenario in args.scenarios:
            n = size_of(scenario, store, args.quick)
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
            rounds = (
                1
                if scenario in SINGLE_RUN
                else in_memory_runs(repeats, args)
                if store == "popo"
                else repeats
            )
            skip: set[str] = set()
            for round_number in range(rounds):
                for config in configs:
                    if config in skip or not measured(config, scenario, store):
                        continue
                    result = run_one(config, pythons[config], scenario, store, n)
                    runs[config].append(result)
                    if "skipped" in result:
                        skip.add(config)  # the store is not in that library: no retries
                    status = (
                        "skipped"
                        if "skipped" in result
                        else "ERROR " + result["error"]
                        if "error" in result
                        else ", ".join(
                            f"{k}={fmt(v['value'])}"
                            for k, v in result["metrics"].items()
                            if isinstance(v, dict)
                        )
                    )
                    print(
                        f"[{store}] {scenario} n={n} {config} #{round_number + 1}: {status}",
                        flush=True,
                    )
                if measure_raw and scenario == RAW_WITH and store != "popo":
                    # In the same rounds as the saves: the disk's commit latency drifts.
                    raw_runs.setdefault(store, []).append(run_raw(pythons, store, args.quick))
            results[(scenario, store)] = {c: median_metrics(r) for c, r in runs.items() if r}

    raw = {store: median_raw(runs) for store, runs in raw_runs.items()}

    write_report(args.output, args, results, raw, notes, repeats, started)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

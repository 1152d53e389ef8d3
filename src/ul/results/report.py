"""docs/results from DVC's own record: `dvc exp show --json` (params and evaluation metrics of each
experiment) and, from each experiment's commit, the training stages' summaries and curves (cache:
false outputs, so git holds them). Writes one markdown table and one plot per study, and
results.json with every row; the hand-written reading lives beside them in README.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ul.common import bounded
from ul.results import fid_noise, paired, recipe, studies
from ul.results.run import DVC


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict  # flattened params.yaml
    metrics: dict  # eval/metrics.json (empty for a point that stops before evaluation)
    stage1: dict = field(default_factory=dict)  # metrics/train_stage1.json
    stage2: dict = field(default_factory=dict)  # metrics/train_stage2.json
    curve1: list = field(default_factory=list)  # metrics/stage1_train.tsv rows
    repo: Path | None = Path(".")  # where it lives (its outputs are in that repository's DVC cache)

    @property
    def pixels(self) -> int:
        """Pixels per example: H·W of an image, T·H·W of a clip."""
        return (self.params.get("data.frames") or 1) * self.params["data.resolution"] ** 2


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_show(show: list) -> dict[str, dict]:
    """{name: {rev, state, params, metrics}} for every named experiment in `dvc exp show --json`
    output (`state`: success, failed, or the queue's state of one not finished)."""
    found = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name")
                if not name:
                    continue
                data = rev.get("data") or {}
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                metrics = ((data.get("metrics") or {}).get("eval/metrics.json") or {}).get("data") or {}
                state = (exp.get("executor") or {}).get("state") or ("failed" if rev.get("error") else "success")
                found[name] = {"rev": data.get("rev"), "state": state, "params": _flatten(params), "metrics": metrics}
    return found


def _git_show(repo: Path, rev: str, path: str) -> str | None:
    r = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def load(repo: Path) -> dict[str, Experiment]:
    """Every finished experiment of the studies, by name."""
    raw = subprocess.run(
        [*DVC, "exp", "show", "--json", "--all-commits"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    wanted = {p.name for p in studies.POINTS}
    out = {}
    for name, e in parse_show(bounded.load_json(raw, "dvc exp show --json", max_depth=64)).items():
        if name not in wanted or e["state"] != "success" or not e["rev"]:
            continue
        lock = bounded.load_yaml(_git_show(repo, e["rev"], "dvc.lock") or "{}", f"{e['rev']}:dvc.lock") or {}
        x = Experiment(name, e["rev"], e["params"], own_metrics(e["metrics"], lock), repo=repo)
        for attr, path in (("stage1", "metrics/train_stage1.json"), ("stage2", "metrics/train_stage2.json")):
            text = _git_show(repo, x.rev, path)
            setattr(x, attr, bounded.load_json(text, f"{x.rev}:{path}") if text else {})
        tsv = _git_show(repo, x.rev, "metrics/stage1_train.tsv")
        x.curve1 = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(tsv or ""), delimiter="\t")]
        out[name] = x
    return out


def own_metrics(metrics: dict, lock: dict) -> dict:
    """`metrics` when the evaluate stage that wrote them read this commit's models, else {}: an
    experiment stopped before evaluate (a point's `stop_at`) commits the eval/metrics.json it
    started from, which describes another model. Told by dvc.lock: evaluate's deps must carry the
    hashes that the stages producing them recorded in the same lock."""
    stages = lock.get("stages") or {}
    outs = {o["path"]: o.get("md5") for st in stages.values() for o in st.get("outs") or []}
    deps = (stages.get("evaluate") or {}).get("deps") or []
    stale = [d["path"] for d in deps if d.get("path") in outs and d.get("md5") != outs[d["path"]]]
    return {} if stale or not deps else metrics


def load_rows(path: Path, exclude: set[str]) -> dict[str, Experiment]:
    """The rows of an earlier results.json (not in `exclude`) as experiments without a repository:
    their params, metrics and curves are kept, their cached outputs (grids) are not reachable."""
    rows = bounded.read_json(path, 64 << 20, "results file") if path.is_file() else {}
    return {
        n: Experiment(n, r["rev"], r["params"], r["metrics"], r["stage1"], r["stage2"], r.get("curve1", []), repo=None)
        for n, r in rows.items()
        if n not in exclude
    }


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def _pm(m: dict, key: str) -> str:
    v, se = m.get(key), m.get(f"{key}_stderr")
    return "—" if v is None else f"{v * 1e3:.1f} ± {se * 1e3:.1f}" if se is not None else f"{v * 1e3:.1f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


QUALITY = ["bits/pixel", "bits/image", "PSNR dB", "rFID", "gFID", "gKID ×10³", "FID floor", "latent use (nats)"]


def quality(x: Experiment) -> list:
    m = x.metrics
    return [
        m.get("latent_bits_per_pixel"),
        m.get("latent_bits_per_image"),
        m.get("psnr_db"),
        m.get("rfid"),
        m.get("gfid"),
        _pm(m, "gkid"),
        m.get("fid_floor"),
        m.get("latent_use_elbo_nats"),
    ]


def reached_bpp(x: Experiment, last: int = 2) -> float | None:
    """The rate a target run reached: the EMA model's rate on the training batches (what the rate
    controller steers, and what is exported), bits per pixel, over the last `last` logged rows."""
    rows = [r["ema_rate_bpp"] for r in x.curve1[-last:] if "ema_rate_bpp" in r]
    return sum(rows) / len(rows) if rows else None


def plot_panels(path: Path, panels: list, title: str, hlines: dict | None = None, logy: bool = False) -> Path:
    """panels: [(xlabel, ylabel, [(label, xs, ys, annotations[, y error bars])], logx)] side by side;
    `hlines`: {panel index: [(y, label)]} dashed reference lines in the series' colours; `logy` puts
    those panels on a log y axis (for lines spanning decades; a narrow range reads better linear)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), constrained_layout=True, squeeze=False)
    for i, (ax, (xlabel, ylabel, series, logx)) in enumerate(zip(axes[0], panels)):
        for k, (label, xs, ys, notes, *err) in enumerate(series):
            ax.errorbar(xs, ys, yerr=err[0] if err else None, fmt="o-", capsize=3, label=label, color=f"C{k}")
            for xv, yv, note in zip(xs, ys, notes or []):
                ax.annotate(note, (xv, yv), fontsize=7, textcoords="offset points", xytext=(4, 4))
        for k, (y, label) in enumerate((hlines or {}).get(i, [])):
            ax.axhline(y, ls="--", lw=1, color=f"C{k}", label=label)
            ax.set_yscale("log" if logy else "linear")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pairs(xs: list[Experiment], key_x, key_y):
    pts = sorted((key_x(x), key_y(x), x) for x in xs if key_x(x) is not None and key_y(x) is not None)
    return [p[0] for p in pts], [p[1] for p in pts], pts


def sampling_spread(out: Path) -> dict[int, float]:
    """gFID's relative sampling standard deviation by N, as `ul results fid-noise` measured it."""
    path = out / "fid-noise.json"
    rows = bounded.read_json(path, 1 << 20, "fid-noise") if path.is_file() else []
    return {r["n"]: r["rel_std"] for r in rows if r["what"] == "gfid"}


def spread_to_beat(exps: dict, xs: list[Experiment], out: Path) -> str:
    """The line under a study's table: the spread a difference in it must beat. FID's sampling
    spread at the largest measured N not above the table's (fid-noise.md), and the training seed's,
    from the headline arms that have run on several seeds."""
    ns = {x.metrics["fid_num_samples"] for x in xs if "fid_num_samples" in x.metrics}
    sampling = sampling_spread(out)
    below = [n for n in sampling if ns and n <= min(ns)]
    if not below:
        return ""
    n = max(below)
    seeds = [sd / mean for _, _, _, mean, sd, _ in _seed_spread(exps)]
    seed = f"{min(seeds):.1%}–{max(seeds):.1%}" if seeds else "not measured yet (the headline study measures it)"
    return (
        f"\nSpread to beat: gFID's sampling standard deviation is {sampling[n]:.1%} at N = {n} "
        f"([fid-noise.md](fid-noise.md)); the training seed's, over the headline arms: {seed}.\n"
    )


def rate_distortion(exps: dict, out: Path) -> str:
    xs = [exps[n] for n in studies.STUDIES["rate-distortion"] if n in exps]
    rows = [[_fmt(x.params.get("unified.loss_factor")), *quality(x)] for x in xs]
    bpp = lambda x: x.metrics.get("latent_bits_per_pixel")  # noqa: E731
    panels = []
    for key, label in (("psnr_db", "PSNR (dB) ↑"), ("gfid", "gFID ↓"), ("rfid", "rFID ↓")):
        a, b, pts = _pairs(xs, bpp, lambda x, k=key: x.metrics.get(k))
        panels.append(
            (
                "latent bits per pixel",
                label,
                [("UL", a, b, [f"c={p[2].params['unified.loss_factor']}" for p in pts])],
                False,
            )
        )
    plot_panels(out / "rate-distortion.png", panels, "Rate–distortion over the loss factor c_lf (λ(0) = 5)")
    return (
        "## Rate–distortion over the loss factor (the paper's Table 2)\n\n"
        + table(["loss factor", *QUALITY], rows)
        + spread_to_beat(exps, xs, out)
        + "\n![rate-distortion](rate-distortion.png)\n"
    )


def logsnr0(exps: dict, out: Path) -> str:
    xs = [exps[n] for n in studies.STUDIES["logsnr0"] if n in exps]
    rows = [[_fmt(x.params.get("noise.logsnr")), *quality(x)] for x in xs]
    text = "## λ(0) ablation at loss factor 2.1 (the paper's Table 6)\n\n" + table(["λ(0)", *QUALITY], rows)
    return text + spread_to_beat(exps, xs, out)


def ul_vs_klvae(exps: dict, out: Path) -> str:
    xs = [exps[n] for n in studies.STUDIES["ul-vs-klvae"] if n in exps]
    rows = [
        [
            x.params.get("latent"),
            _fmt(x.params.get("stage2.steps")),
            x.stage2.get("train_flops", math.nan) / 1e12,
            *quality(x),
        ]
        for x in xs
    ]
    series = []
    for latent, label in (("unified", "UL"), ("klvae", "KL-VAE")):
        a, b, pts = _pairs(
            [x for x in xs if x.params.get("latent") == latent],
            lambda x: x.stage2.get("train_flops"),
            lambda x: x.metrics.get("gfid"),
        )
        series.append((label, a, b, [f"{int(p[2].params['stage2.steps'])} steps" for p in pts]))
    plot_panels(
        out / "ul-vs-klvae.png",
        [("stage-2 training FLOPs (counted)", "gFID ↓", series, True)],
        "UL vs KL-VAE latents (8×8×4) at equal stage-2 compute",
    )
    header = ["latent", "stage-2 steps", "stage-2 TFLOPs", *QUALITY]
    return (
        "## UL vs KL-VAE at equal stage-2 compute (the headline claim)\n\n"
        + table(header, rows)
        + spread_to_beat(exps, xs, out)
        + "\nThe KL-VAE's bits are its KL to N(0, I) (an upper bound on its information), UL's the "
        "prior's ELBO.\n\n![ul-vs-klvae](ul-vs-klvae.png)\n"
    )


def targets(exps: dict, out: Path) -> str:
    xs = [exps[n] for n in studies.STUDIES["bitrate-targets"] if n in exps]
    rows = []
    for x in xs:
        t, reached = x.params.get("unified.target_bits_per_pixel"), reached_bpp(x)
        lf = x.curve1[-1].get("loss_factor") if x.curve1 else None
        err = (reached / t - 1) * 100 if reached and t else None
        rows.append(
            [
                _fmt(t),
                reached,
                f"{err:+.1f}%" if err is not None else "—",
                "yes" if err is not None and abs(err) <= 10 else "no",
                lf,
            ]
        )
    steps = lambda x: [r["step"] for r in x.curve1]  # noqa: E731
    plot_panels(
        out / "bitrate-targets.png",
        [
            (
                "stage-1 step",
                "loss factor c_lf",
                [(x.name, steps(x), [r.get("loss_factor") for r in x.curve1], None) for x in xs],
                False,
            ),
            (
                "stage-1 step",
                "EMA model's rate (bits/pixel, training batches)",
                [(x.name, steps(x), [r.get("ema_rate_bpp") for r in x.curve1], None) for x in xs],
                False,
            ),
        ],
        "Ask for a bitrate: the loss factor steered by the rate controller",
        hlines={1: [(x.params["unified.target_bits_per_pixel"], "target") for x in xs]},
        logy=True,
    )
    header = ["target bits/pixel", "reached (EMA model, last 2 logs)", "error", "within ±10%", "final loss factor"]
    return (
        "## Bitrate targets (`unified.target_bits_per_pixel`)\n\n"
        + table(header, rows)
        + "\n![bitrate-targets](bitrate-targets.png)\n"
    )


def cached_output(x: Experiment, path: str) -> Path | None:
    """The file `path` (a cached DVC output) of experiment `x`, found in its repository's DVC cache
    by the md5 that the experiment's dvc.lock records; None when it is not there."""

    if x.repo is None:  # a row kept from results.json
        return None
    lock = bounded.load_yaml(_git_show(x.repo, x.rev, "dvc.lock") or "{}", f"{x.rev}:dvc.lock") or {}
    md5 = next(
        (o.get("md5") for st in (lock.get("stages") or {}).values() for o in st.get("outs", []) if o["path"] == path),
        None,
    )
    if not md5:
        return None
    cache = subprocess.run([*DVC, "cache", "dir"], cwd=x.repo, capture_output=True, text=True).stdout.strip()
    found = Path(cache) / "files" / "md5" / md5[:2] / md5[2:]
    return found if found.is_file() else None


def video(exps: dict, out: Path) -> str:
    xs = [exps[n] for n in studies.STUDIES["video"] if n in exps]
    if not xs:
        return ""
    header = ["loss factor", "bits/clip", "bits/frame", "bits/pixel", "PSNR dB (per frame)", "rFID", "gFID"]
    header += ["rFVD", "gFVD", "N clips", "latent use (nats)"]
    rows = []
    for x in xs:
        m = x.metrics
        keys = ("latent_bits_per_image", "latent_bits_per_frame", "latent_bits_per_pixel", "psnr_db", "rfid", "gfid")
        keys += ("rfvd", "gfvd", "fvd_num_clips", "latent_use_elbo_nats")
        rows.append([_fmt(x.params.get("unified.loss_factor")), *(m.get(k) for k in keys)])
    grids = []
    for x in xs:
        for name in ("samples", "reconstructions"):
            if (src := cached_output(x, f"eval/{name}.png")) is not None:
                (out / f"{x.name}-{name}.png").write_bytes(src.read_bytes())
            if (out / f"{x.name}-{name}.png").is_file():  # copied now, or by an earlier report
                grids.append(f"![{x.name} {name}]({x.name}-{name}.png)")
    p = xs[0].params
    size = p.get("data.resolution")
    intro = (
        "## Video: Moving MNIST at two loss factors (the `video` preset)\n\n"
        f"Clips of {p.get('data.frames')} frames at {size}×{size}; FIDs are frame-level, FVD uses the "
        "Kinetics-400 I3D on whole clips (16 frames, 224×224).\n\n"
    )
    shown = "\nSamples and reconstructions (animated PNGs; each original left of its reconstruction):\n\n"
    return intro + table(header, rows) + (shown + "\n".join(grids) + "\n" if grids else "")


def calibration(exps: dict, out: Path) -> str:
    """The KL-VAE's KL weight against its stage-1 rate, and the weight that matches UL's at 3.0."""
    ul = exps.get("klcal-ul3.0")
    kls = sorted(
        (float(x.params["klvae.kl_weight"]), x.stage1.get("latent_bits_per_image"))
        for n, x in exps.items()
        if n.startswith("klcal-kl") and x.stage1.get("latent_bits_per_image")
    )
    if ul is None and not kls:
        return ""
    target = ul.stage1.get("latent_bits_per_image") if ul else None
    rows = [["UL, loss factor 3.0", "—", target]] + [["KL-VAE", w, r] for w, r in kls]
    text = "## KL-VAE rate calibration (stage 1 only)\n\n" + table(["arm", "KL weight", "bits/image (train)"], rows)
    matched = dict(kls).get(studies.MATCHED_KL_WEIGHT) if studies.MATCHED_KL_WEIGHT else None
    settled = bool(target and matched and abs(matched / target - 1) <= 0.10)
    if target and len(kls) >= 2 and not settled:
        w = matched_weight(kls, target)
        text += f"\nUL's rate at loss factor 3.0: {_fmt(target)} bits per image. " + (
            f"Log-log interpolation gives a KL weight of {w:.3g}: set `studies.MATCHED_KL_WEIGHT` to it, "
            "and the headline study's KL arm checks the rate it reaches (within 10% is matched).\n"
            if w
            else "No two weights bracket it: extend `CALIBRATION_KL_WEIGHTS`.\n"
        )
    if target and matched:
        off = matched / target - 1
        text += (
            f"\nThe matched weight's own run (`studies.MATCHED_KL_WEIGHT` = {studies.MATCHED_KL_WEIGHT:g}) reaches "
            + (
                f"{_fmt(matched)} bits per image, {100 * off:+.1f}% from UL's: "
                + ("**matched** (within 10%).\n" if abs(off) <= 0.10 else "**not matched**: interpolate again.\n")
            )
        )
    return text


def matched_weight(kls: list[tuple[float, float]], target: float) -> float | None:
    """The KL weight whose rate is `target`, interpolated in log–log between the two calibration
    points that bracket it (rate falls as the weight grows); None when none do."""
    for (w0, r0), (w1, r1) in zip(kls, kls[1:]):
        if min(r0, r1) <= target <= max(r0, r1) and r0 != r1:
            f = (math.log(target) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return math.exp(math.log(w0) + f * (math.log(w1) - math.log(w0)))
    return None


def headline(exps: dict, out: Path) -> str:
    """The pre-registered comparison (ul.results.paired): per pair and budget, the paired per-seed
    differences UL − KL of gFID, gKID and s2FID, their 95% intervals and the verdict; each arm's
    spread over seeds; gFID against stage-2 and total (stage 1 + 2) training FLOPs."""
    rows, spread = [], _seed_spread(exps)
    series: dict[str, dict[str, list]] = {"stage-2": {}, "total": {}}  # kind → arm → (TFLOPs, gFID, sd)
    for arm, _, _, mean, sd, xs in spread:
        s2 = statistics.mean(x.stage2.get("train_flops", 0) for x in xs)
        s1 = statistics.mean(x.stage1.get("train_flops", 0) for x in xs)
        series["stage-2"].setdefault(arm, []).append((s2 / 1e12, mean, sd))
        series["total"].setdefault(arm, []).append(((s1 + s2) / 1e12, mean, sd))
    for pair, (ul, kl, planned) in studies.PAIRS.items():
        if kl is None:
            rows.append([pair, "—", 0, "", "", "", "KL weight not calibrated yet", ""])
            continue
        for steps in studies.HEADLINE_BUDGETS:
            arms = {a.name: _by_seed(exps, a, steps) for a in (ul, kl)}
            metrics = {a: {seed: x.metrics for seed, x in xs.items()} for a, xs in arms.items()}
            d = {m: paired.differences(metrics[ul.name], metrics[kl.name], m) for m in paired.METRICS}
            if len(d["gfid"]) < 2:
                said = "not run" if not d["gfid"] else "one seed: no interval yet"
                rows.append([pair, steps, len(d["gfid"]), "", "", "", said, ""])
                continue
            target = paired.seeds_to_run(planned, d["gfid"], d["gkid"])
            d = {m: v[:target] for m, v in d.items()}  # a budget's verdict reads the seeds decided for it, no more
            iv = {m: paired.interval(v) for m, v in d.items() if len(v) >= 2}
            rows.append(
                [pair, steps, len(d["gfid"]), *(_iv(iv.get(m), 1e3 if m == "gkid" else 1) for m in paired.METRICS)]
                + [_final(paired.verdict(iv["gfid"], iv["gkid"]), len(d["gfid"]), target), target]
            )
    if not any(r[2] for r in rows):
        return ""
    header = ["pair", "stage-2 steps", "seeds", "ΔgFID [95%]", "ΔgKID ×10³ [95%]", "Δs2FID [95%]", "verdict"]
    text = (
        "## Headline: UL against the KL-VAE, paired over seeds (analysis fixed before the runs)\n\n"
        "Δ = UL − KL-VAE on the same seed (negative: UL better); verdicts as in `ul.results.paired`: the "
        "paper's headline (UL's latents easier to model at equal stage-2 compute) is reproduced where UL is "
        "ahead, refuted where it is behind.\n\n" + table([*header, "seeds to run"], rows)
    )
    if spread:
        text += "\nEach arm's gFID over seeds (mean, standard deviation):\n\n" + table(
            ["arm", "stage-2 steps", "seeds", "gFID mean", "gFID sd"], [r[:5] for r in spread]
        )
        panels = []
        for kind, by_arm in series.items():
            lines = []
            for arm, pts in by_arm.items():
                xs, ys, sds = zip(*sorted(pts))
                lines.append((arm, xs, ys, None, sds))
            panels.append((f"{kind} training TFLOPs", "gFID ↓", lines, True))
        plot_panels(out / "headline.png", panels, "UL vs KL-VAE: gFID (mean ± sd over seeds) against compute")
        text += "\n![headline](headline.png)\n"
    return text


def _final(verdict: str, n: int, target: int) -> str:
    """A verdict before every seed the pair runs (the planned ones, or the extension's once it is
    due) is marked interim, as the plan reads none early; a final one says what it makes of the
    paper's headline."""
    if n < target:
        return f"interim, {n} of {target} seeds: {verdict}"
    return f"{verdict}: **{paired.claim(verdict)}**"


def _seed_spread(exps: dict) -> list[tuple]:
    """(arm, stage-2 steps, seeds, gFID mean, gFID sd, the experiments) of every headline arm and
    budget with at least two evaluated seeds: the training seed's spread."""
    out = []
    for ul, kl, _ in studies.PAIRS.values():
        for arm in (a for a in (ul, kl) if a is not None):
            for steps in studies.HEADLINE_BUDGETS:
                xs = [x for x in _by_seed(exps, arm, steps).values() if "gfid" in x.metrics]
                if len(xs) >= 2:
                    g = [x.metrics["gfid"] for x in xs]
                    out.append((arm.name, steps, len(g), statistics.mean(g), statistics.stdev(g), xs))
    return out


def seed_section(exps: dict, out: Path) -> str:
    """fid-noise.md's second section: each headline arm's gFID spread over training seeds, beside
    the sampling spread at the same N (fid-noise.json). Each seed is also a fresh draw of samples,
    so the seed's spread holds the sampling spread within it."""
    spread, sampling = _seed_spread(exps), sampling_spread(out)
    rows = []
    for arm, steps, n, mean, sd, xs in spread:
        at = {x.metrics.get("fid_num_samples") for x in xs}
        n_fid = at.pop() if len(at) == 1 else None
        s = f"{sampling[n_fid]:.1%}" if n_fid in sampling else "not measured"
        rows.append([arm, steps, n, _fmt(mean), _fmt(sd), f"{sd / mean:.1%}", n_fid or "mixed", s])
    text = (
        f"{fid_noise.SEED_HEADING}\n\n"
        "Written by `ul results report` from the headline study ([headline.md](headline.md)): each arm's gFID "
        "over training seeds, each seed trained and evaluated afresh, so its spread holds the sampling "
        "spread above within it.\n\n"
    )
    if not rows:
        return text + "Not measured yet: no headline arm has run on two seeds.\n"
    header = "arm|stage-2 steps|seeds|gFID mean|sd over seeds|sd / mean|N|sampling sd / mean at N".split("|")
    return text + table(header, rows)


def _by_seed(exps: dict, arm, steps: int) -> dict[int, Experiment]:
    """The arm's evaluated experiments at a stage-2 budget, by seed."""
    found = {}
    for seed in range(1, studies.EXTENSION_SEEDS + 1):
        x = exps.get(studies.headline_point(arm, seed, steps).name)
        if x is not None and x.metrics:
            found[seed] = x
    return found


def _iv(iv, scale: float) -> str:
    return "" if iv is None else f"{iv.mean * scale:+.3g} [{iv.low * scale:+.3g}, {iv.high * scale:+.3g}]"


def prior_gap(exps: dict, out: Path) -> str:
    """The fresh priors' bounds against the joint ones (docs/results/prior-gap.md), from the JSON
    files that `ul results prior-gap` wrote under OUT/prior-gap/ after each run."""
    from ul.results.prior_gap import verdict

    found = {}
    for name, key in studies.PRIOR_GAP_RUNS.items():
        path = out / "prior-gap" / f"{name}.json"
        if path.is_file():
            found[key] = bounded.read_json(path, 1 << 20, "prior-gap result")
    if not found:
        return ""
    header = [
        "λ(0)",
        "seed",
        "joint bits/image",
        "fresh bits/image",
        "saved",
        "fresh prior's bound during its training",
    ]
    rows = [
        [v, s, r["joint_bits_per_image"], r["fresh_bits_per_image"], f"{100 * r['saved_fraction']:.1f}%"]
        + [", ".join(f"{b:.1f} @{k}" for k, b in r["fresh_curve"])]
        for (v, s), r in sorted(found.items())
    ]
    saved = {k: r["saved_fraction"] for k, r in found.items()}
    return (
        "## Is the rate bound loose at λ(0) = 10? (a fresh prior on the frozen latents)\n\n"
        + table(header, rows)
        + f"\nVerdict by the registered rule ([prior-gap.md](prior-gap.md)): **{verdict(saved)}**.\n"
    )


def _sd(v: recipe.Spread, digits: int = 3) -> str:
    return _fmt(v.mean, digits) + (f" ± {_fmt(v.sd, 2)}" if v.sd is not None else "")


def recipes(exps: dict, out: Path) -> str:
    """Issue 27's recipe study (docs/results/recipe.md): each recipe over its seeds against the
    reference run's quality, its training FLOPs, and the verdict of `ul.results.recipe`."""
    summaries, rows, series = {}, [], {"PSNR dB ↑": [], "gFID / FID floor ↓": []}
    for name in studies.RECIPES:
        xs = [exps.get(studies.recipe_point(name, s).name) for s in studies.RECIPE_SEEDS]
        xs = [x for x in xs if x is not None and x.metrics]
        if not xs:
            continue
        s = summaries[name] = recipe.summarise(
            [(x.metrics, x.stage1.get("train_flops", 0) + x.stage2.get("train_flops", 0)) for x in xs]
        )
        missing = recipe.shortfalls(s, len(studies.RECIPE_SEEDS))
        precisions = "/".join(sorted({str(x.stage1.get("precision", "?")) for x in xs}))
        rows.append([name, s.seeds, precisions, s.tflops, _sd(s.bits), _sd(s.psnr), _sd(s.ratio)])
        rows[-1].append("**reaches it**" if not missing else "; ".join(missing))
        for pts, v in zip(series.values(), (s.psnr, s.ratio)):
            pts.append((name, s.tflops, v))
    if not rows:
        return ""
    header = ["recipe", "seeds", "precision", "training TFLOPs", "bits/image", "PSNR dB", "gFID / floor"]
    answer = recipe.verdict(summaries, len(studies.RECIPE_SEEDS), tuple(studies.RECIPES))
    panels = []
    for label, pts in series.items():
        lines = [(n, [t], [v.mean], [n], [v.sd or 0]) for n, t, v in pts]
        panels.append(("training TFLOPs (stages 1 + 2)", label, lines, False))
    ref = {0: [(recipe.PSNR_DB, "reference")], 1: [(recipe.GFID_OVER_FLOOR, "reference")]}
    plot_panels(out / "recipe.png", panels, "Recipes against training compute (mean ± sd over seeds)", hlines=ref)
    return (
        "## Half the compute: recipes against the reference run (analysis fixed before the runs)\n\n"
        f"The reference: PSNR ≥ {recipe.PSNR_DB} dB, gFID ≤ {recipe.GFID_OVER_FLOOR}× the FID floor, "
        f"{recipe.BITS_PER_IMAGE} bits/image ± {recipe.RATE_TOLERANCE:.0%}, on at most {recipe.MAX_TFLOPS:.0f} "
        "TFLOPs; means ± sd over seeds ([recipe.md](recipe.md)).\n\n"
        + table([*header, "against the reference"], rows)
        + spread_to_beat(exps, [x for x in exps.values() if x.name.startswith("recipe-")], out)
        + f"\nThe new default by the registered rule: **{answer}**.\n\n![recipe](recipe.png)\n"
    )


def eval_cost(exps: dict, out: Path) -> str:
    """Evaluation's sampler steps on one model against 50 + 50 (docs/results/recipe.md)."""
    ref = exps.get(studies.recipe_point("default", studies.RECIPE_SEEDS[0]).name)
    xs = [x for p in studies.EVAL_COST if (x := exps.get(p.name)) is not None and x.metrics]
    if ref is None or not ref.metrics or not xs:
        return ""
    rows, flops0 = [], ref.metrics["sampling_flops"]
    for x in [ref, *xs]:
        m = x.metrics
        keeps = "reference" if x is ref else "yes" if recipe.keeps_the_numbers(m, ref.metrics) else "no"
        rows.append(
            [m["base_steps"], m["decoder_steps"], m.get("inception_precision", "fp32"), m["sampling_flops"] / 1e12]
        )
        rows[-1] += [f"{m['sampling_flops'] / flops0:.2f}", m["gfid"], m["psnr_db"], keeps]
    header = ["base steps", "decoder steps", "Inception", "sampling TFLOPs", "of 50 + 50", "gFID", "PSNR dB"]
    header.append("keeps the numbers")
    return "## Evaluation's cost: sampler steps on the default's models\n\n" + table(header, rows)


SECTIONS = (rate_distortion, logsnr0, ul_vs_klvae, targets, video, calibration, prior_gap, headline, recipes, eval_cost)


def write(exps: dict[str, Experiment], out: Path) -> Path:
    """docs/results/studies.md (+ PNGs) and results.json from the loaded experiments."""
    out.mkdir(parents=True, exist_ok=True)
    later = set(studies.STUDIES["headline-extension"])  # listed by the headline section when due
    missing = [p.name for p in studies.POINTS if p.name not in exps and p.name not in later]
    kept = ", ".join(sorted(n for n, x in exps.items() if x.repo is None))
    head = (
        "# Studies: generated tables\n\n"
        "Written by `ul results report` from `dvc exp show --json`; every row is a DVC experiment at the "
        "`sweep` preset (`conf/preset/sweep.yaml`; the video study's at `video`, the recipe study's at `cpu`) with the "
        "params shown, run by "
        "`ul results run`. "
        "Do not edit: the reading is in [README.md](README.md).\n\n"
        "Columns: bits are the latent rate on the evaluated test images; PSNR is the mean of per-image "
        "PSNRs on [0, 1]; FIDs and KID use the real Inception network at the N in results.json; the FID "
        "floor is the FID between two disjoint real sets of that N; latent use is the decoder's ELBO "
        "with another image's latent minus with its own (nats per image, 0 = collapsed).\n\n"
        + (f"Not yet run: {', '.join(missing)}\n\n" if missing else "")
        + (
            f"Kept from an earlier results.json (run elsewhere; `rev` there names each one's commit): {kept}\n\n"
            if kept
            else ""
        )
    )
    body = "\n".join(text for section in SECTIONS if (text := section(exps, out)))
    (out / "studies.md").write_text(head + body)
    noise = out / "fid-noise.md"
    if noise.is_file():
        noise.write_text(fid_noise.with_seed_section(noise.read_text(), seed_section(exps, out)))
    rows = {
        n: {"rev": x.rev, "params": x.params, "metrics": x.metrics, "stage1": x.stage1, "stage2": x.stage2}
        | ({"curve1": x.curve1} if x.curve1 else {})
        for n, x in sorted(exps.items())
    }
    (out / "results.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return out / "studies.md"

"""Reports in markdown: the model card of an export, the metrics table and the provenance lines
that the model cards, `ul release` and the Prefect summaries share (the provenance itself is
gathered by `ul.artifacts.bundle.provenance`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ul.common import bounded
from ul.common.config import Config, to_dict

# (key in eval/metrics.json, label) in the order of the tables
HEADLINE = (
    ("psnr_db", "PSNR (dB)"),
    ("rfid", "rFID"),
    ("gfid", "gFID"),
    ("s2fid", "stage-2 FID (samples vs reconstructions: the base model alone)"),
    ("fid_floor", "FID of two real sets at the same N (the floor)"),
    ("gkid", "gKID"),
    ("fid_num_samples", "FID samples (N)"),
    ("latent_bits_per_image", "latent bits / image"),
    ("latent_bits_per_dim", "latent bits / dim"),
    ("latent_bits_per_pixel", "latent bits / pixel"),
)
WHAT = {
    "UnifiedLatents": (
        "Unified Latents autoencoder (stage 1)",
        "A deterministic encoder whose latents are noised to a fixed log-SNR λ(0), a diffusion prior on\n"
        "those latents (its loss bounds their bitrate) and a diffusion decoder conditioned on the noisy\n"
        "latent, trained jointly with the Unified Latents objective (docs/method.md).",
    ),
    "KLVAE": (
        "KL-VAE baseline autoencoder (stage 1, latent: klvae)",
        "The Stable-Diffusion-style baseline: a VAE whose encoder predicts mean and log-variance, trained\n"
        "with an L1 pixel loss and a weighted KL to N(0, I) (no LPIPS or GAN), with UL's latent shape.",
    ),
    "BaseModel": (
        "Unified Latents base model (stage 2)",
        "A diffusion model over the frozen stage-1 latents; its samples at λ(0) go to the stage-1\n"
        "decoder (Algorithm 2 of the paper).",
    ),
}
USAGE = {
    "UnifiedLatents": (
        "from ul import Autoencoder\n"
        'ae = Autoencoder.load("{folder}")\n'
        "x_rec = ae.reconstruct(x)          # x: N×C×H×W in [-1, 1]; also ae.encode / ae.decode / ae.rate\n"
        "z0 = ae.noisy(ae.encode(x)) * ae.scale   # unit-variance latents for a diffusion model of your own\n"
    ),
    "KLVAE": (
        "from ul.artifacts import export\n"
        'vae, cfg = export.load("{folder}")\n'
        "x_rec = vae.decode(vae.encode(x))  # x: N×C×H×W in [-1, 1]\n"
    ),
    "BaseModel": (
        "from ul import LatentDiffusion\n"
        'ld = LatentDiffusion.load("{stage1}", "{folder}")\n'
        "x = ld.sample(16)                  # N×C×H×W in [-1, 1]\n"
    ),
}


def load_metrics(root: str | Path = ".") -> dict:
    path = Path(root) / "eval" / "metrics.json"
    return bounded.read_json(path, what="metrics file") if path.exists() else {}


def metrics_rows(metrics: dict) -> list:
    """[{"metric", "value"}] with the headline metrics first, then every other scalar."""
    labels = dict(HEADLINE)
    keys = [k for k, _ in HEADLINE if k in metrics] + sorted(k for k in metrics if k not in labels)
    return [{"metric": k, "value": metrics[k]} for k in keys if isinstance(metrics[k], (int, float, str, bool))]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def metrics_table(metrics: dict) -> str:
    """The metrics as a markdown table (headline metrics first)."""
    if not metrics:
        return "_no eval/metrics.json_\n"
    labels = dict(HEADLINE)
    rows = "".join(f"| {labels.get(r['metric'], r['metric'])} | {_fmt(r['value'])} |\n" for r in metrics_rows(metrics))
    return "| metric | value |\n|---|---|\n" + rows


def provenance_lines(prov: dict) -> str:
    dirty = {True: " (work tree modified)", False: "", None: ""}[prov.get("git_dirty")]
    if prov.get("data_commit"):
        data = f"`{prov['data_source']}` (lakeFS commit `{prov['data_commit']}`)"
    else:
        data = f"`{prov.get('data_source')}` (not a pinned lakeFS commit)"
    return (
        f"- git commit: `{prov.get('git_commit') or 'unknown'}`{dirty}\n"
        f"- dvc.lock sha256: `{prov.get('dvc_lock_sha256') or 'none'}`\n"
        f"- data: {data}\n"
        f"- preset: `{prov.get('preset')}`\n"
    )


# Hugging Face Hub model-card metadata (the front matter): what the Hub and its search read
HUB_DATASETS = {"builtin:fashion-mnist": "zalando-datasets/fashion_mnist", "builtin:mnist": "ylecun/mnist"}
HUB_METRICS = {
    "psnr_db": "psnr",
    "rfid": "fid",
    "gfid": "fid",
    "s2fid": "fid",
    "gkid": "kid",
    "rfvd": "fvd",
    "gfvd": "fvd",
}


def front_matter(kind: str, cfg: Config, metrics: dict | None) -> str:
    """The card's YAML header for the Hugging Face Hub: library, license, tags, datasets, metrics.
    A dataset is named only when it is a public one (a user's own path or URL stays out)."""
    source = cfg.data.source
    meta = {
        "library_name": "unified-latents",
        "license": "apache-2.0",
        "pipeline_tag": "unconditional-image-generation" if kind == "BaseModel" else "image-to-image",
        "tags": [
            "unified-latents",
            "diffusion",
            "latent-diffusion",
            "autoencoder" if kind != "BaseModel" else "base-model",
        ]
        + (["video"] if cfg.data.frames else []),
    }
    if source in HUB_DATASETS:
        meta["datasets"] = [HUB_DATASETS[source]]
    names = sorted({HUB_METRICS[k] for k in (metrics or {}) if k in HUB_METRICS})
    if names:
        meta["metrics"] = names
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n"


def latents_table(latents: dict | None) -> str:
    """What a user of the latents needs (ul.artifacts.latent_stats), as a markdown section."""
    if not latents:
        return ""
    body = "".join(f"| {k} | {v} |\n" for k, v in latents_rows(latents))
    return "## Latents\n\n| quantity | value |\n|---|---|\n" + body + "\n"


def latents_rows(latents: dict) -> list[tuple[str, str]]:
    """(quantity, value) rows of config.json's `latents`, for the model card and `ul info`."""
    z = latents["z_clean"]
    rows = [
        ("latent shape", "×".join(map(str, latents["shape"]))),
        (
            f"z_clean mean per channel ({latents['split']} split, {latents['count']:,} examples)",
            floats(z["mean_per_channel"]),
        ),
        ("z_clean std per channel", floats(z["std_per_channel"])),
        ("z_clean std, all channels (s)", f"{z['std']:.4g}"),
        ("what the decoder reads", latents["decoder_input"]),
    ]
    if "logsnr0" in latents:
        rows += [
            ("λ(0), α0, σ0", f"{latents['logsnr0']:g}, {latents['alpha0']:.4g}, {latents['sigma0']:.4g}"),
            ("scale: multiply z0 by this for unit variance", f"{latents['scale']:.4g}"),
            ("log-SNR of the scaled z0 (λ(0) + 2·ln s)", f"{latents['scaled_logsnr']:.3g}"),
        ]
    else:
        rows.append(("scale: multiply z_clean by this for unit variance (1/s)", f"{latents['scale']:.4g}"))
    r = latents["rate"]
    rate = f"{r['bits_per_image']:.4g} bits / image, {r['bits_per_pixel']:.4g} / pixel, {r['bits_per_dim']:.4g} / latent dim"
    rows.append((f"rate ({latents['split']} split, one noise draw per example)", rate))
    return rows


def floats(values: list) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def card(
    kind: str,
    cfg: Config,
    training: dict,
    metrics: dict | None = None,
    prov: dict | None = None,
    folder: str = "models/stage1",
    stage1: str = "models/stage1",
    latents: dict | None = None,
) -> str:
    """The README.md of an export folder: what it is, how to load it, its latents, how good it is,
    where it came from. Without `metrics`/`prov` (at training time) it says how to get the full card."""
    title, what = WHAT[kind]
    res, ch, frames = cfg.data.resolution, cfg.data.channels, cfg.data.frames
    shape = f"video clips: {ch}×{frames}×{res}×{res} (C×T×H×W)" if frames else f"images: {ch}×{res}×{res}"
    usage = USAGE[kind].format(folder=folder, stage1=stage1)
    train_rows = "".join(f"| {k} | {_fmt(v)} |\n" for k, v in training.items())
    if metrics:
        evaluation = "## Evaluation (held-out split)\n\n" + metrics_table(metrics)
    else:
        evaluation = (
            "## Evaluation\n\nNot evaluated yet: `ul export OUT` writes this card with the evaluation and provenance.\n"
        )
    origin = "\n## Provenance\n\n" + provenance_lines(prov) if prov else ""
    params = yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip()
    return (
        front_matter(kind, cfg, metrics) + f"# {title}\n\n{what}\n\n"
        f"- {shape}, values in [-1, 1]\n"
        f"- λ(0) = noise.logsnr = {cfg.noise.logsnr:g} (the log-SNR of the noisy latent z0)\n"
        f"- files: `model.safetensors` (weights, no pickle), `config.json` (class + config), this card\n\n"
        f"## Load it\n\n```python\n{usage}```\n\nor on files: `ul reconstruct IMAGES -o OUT`, `ul rate IMAGES`, "
        "`ul sample -n 16 -o grid.png` (`ul --help`).\n\n"
        + latents_table(latents)
        + "## Training\n\n| quantity | value |\n|---|---|\n"
        + train_rows
        + "\n"
        + evaluation
        + origin
        + f"\n## Config\n\n```yaml\n{params}\n```\n"
    )

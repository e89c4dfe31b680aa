"""Model cards: a Markdown page per registered version, generated from its lineage and metrics."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

MODEL_CARD_FILE = "model_card.md"
_SPLITS = ("train", "valid", "test")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def _train_columns(lineage: dict[str, Any]) -> dict[str, Any]:
    return ((lineage.get("data_statistics") or {}).get("train") or {}).get("columns") or {}


def _candidates_lines(model_meta: dict[str, Any]) -> list[str]:
    """For ``model.family: auto``: every candidate's validation score and fit time."""
    candidates = model_meta.get("candidates") or []
    if not candidates:
        return []
    if model_meta.get("task") == "clustering":
        return _cluster_candidate_lines(candidates)
    auto = model_meta.get("auto") or {}
    rows = [
        [
            (c.get("name") or c["family"]) + (" (kept)" if c.get("chosen") else ""),
            c.get("score") if c.get("score") is not None else c.get("error", "failed"),
            c.get("fit_seconds"),
        ]
        for c in candidates
    ]
    metric = auto.get("metric") or candidates[0].get("metric", "score")
    return [
        f"## Model choice (auto, by {auto.get('chosen_by', 'the valid split')})",
        "",
        *_table(["candidate", f"validation {metric}", "fit seconds"], rows),
        "",
    ]


def _cluster_candidate_lines(candidates: list[dict[str, Any]]) -> list[str]:
    """Every (family, k) tried: silhouette on train and valid, and the mixture's BIC."""
    rows = [
        [
            c["family"] + (" (kept)" if c.get("chosen") else ""),
            c.get("k"),
            c.get("silhouette"),
            c.get("bic"),
            c.get("seconds"),
        ]
        for c in candidates
    ]
    return [
        "## Model choice (k by silhouette for k-means, by BIC for the mixture)",
        "",
        *_table(["family", "k", "silhouette", "BIC", "fit seconds"], rows),
        "",
    ]


def _unsupervised_lines(model_meta: dict[str, Any], details: dict[str, Any]) -> list[str]:
    """Clusters (sizes, profile settings) or components (variance, top loadings)."""
    task = model_meta.get("task")
    lines: list[str] = []
    if task == "clustering":
        c = model_meta.get("clustering") or {}
        lines += ["## Clusters", ""]
        sizes = details.get("sizes") or []
        shares = details.get("proportions") or []
        train_sizes = c.get("train_sizes") or []
        rows = [
            [j, train_sizes[j] if j < len(train_sizes) else None, n, shares[j]]
            for j, n in enumerate(sizes)
        ]
        lines += _table(["cluster", "train size", "test size", "test share"], rows)
        profile = c.get("profile")
        if profile:
            lines += [
                "",
                f"Rows are profiles: one per `{profile.get('group_column') or 'series'}` and "
                f"{profile.get('period', 'day')} of `{profile.get('value')}` over "
                f"`{profile.get('time_column')}`, normalised `{profile.get('normalise', 'none')}`"
                f"; {c.get('profiles_dropped', 0)} train period(s) dropped for missing points.",
            ]
        crosstab = details.get("label_crosstab")
        if crosstab:
            lines += ["", f"Label `{model_meta.get('label')}` by cluster (test):", ""]
            lines += _table(
                ["label", *[f"cluster {j}" for j in range(len(sizes))]],
                [[k, *v] for k, v in crosstab.items()],
            )
        lines += ["", "Plots (projection scatter, profile curves): the evaluate step's HTML.", ""]
    elif task == "embedding":
        e = model_meta.get("embedding") or {}
        ratios = details.get("explained_variance_ratio") or e.get("explained_variance_ratio")
        lines += ["## Components", ""]
        if ratios:
            cum = 0.0
            rows = []
            for i, r in enumerate(ratios):
                cum += r
                top = (details.get("top_loadings") or [[]] * len(ratios))[i]
                loads = ", ".join(f"`{t['feature']}` {t['loading']:+.3f}" for t in top)
                rows.append([f"pc{i + 1}", r, cum, loads])
            lines += _table(["component", "variance share", "cumulative", "top loadings"], rows)
        else:
            lines.append(f"{e.get('n_components')} latent components (autoencoder).")
        lines.append("")
    return lines


def model_card_markdown(
    *,
    name: str,
    version: str,
    lineage: dict[str, Any],
    model_meta: dict[str, Any],
    evaluation: dict[str, Any],
    champion: bool,
) -> str:
    """The model card of one registered version.

    Args:
        lineage: the version's registry metadata (query, parameters, data statistics, ...).
        model_meta: ``voltpipe_model.json`` (features, classes, training settings).
        evaluation: the evaluate step's result (metrics, details, slices, decision).
        champion: whether the gate promoted this version (it becomes the champion when deploy's
            smoke test passes; the registry's ``champion`` alias is the authority).
    """
    from voltpipe.evaluation.slices import slices_markdown

    task, label = model_meta.get("task", lineage.get("task")), model_meta.get("label")
    features = model_meta.get("features") or {}
    numeric = features.get("numeric") or {}
    categorical = features.get("categorical") or {}
    classes = model_meta.get("classes")
    stats = lineage.get("data_statistics") or {}
    cols = _train_columns(lineage)
    lines = [
        f"# Model card: {name} version {version}",
        "",
        f"- **Task:** {task}",
        f"- **Label:** `{label}`"
        + (f" (classes: {', '.join(map(str, classes))})" if classes else ""),
        f"- **Model family:** {model_meta.get('family') or (model_meta.get('model_params') or {}).get('family', '–')}",
        f"- **Registered:** {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "- **Status:** "
        + (
            "promoted by the gate (champion once deploy's smoke test passes)"
            if champion
            else "registered, not champion"
        ),
        "",
        *_candidates_lines(model_meta),
        "## Features",
        "",
    ]
    if numeric:
        rows = []
        for f, st in numeric.items():
            c = cols.get(f, {})
            rows.append([f"`{f}`", st.get("mean"), c.get("min"), c.get("max")])
        lines += ["Numeric (normalised with the training mean and variance):", ""]
        lines += [*_table(["feature", "train mean", "train min", "train max"], rows), ""]
    if categorical:
        rows = [
            [
                f"`{f}`",
                len(vocab),
                ", ".join(map(str, vocab[:20])) + (" …" if len(vocab) > 20 else ""),
            ]
            for f, vocab in categorical.items()
        ]
        lines += ["Categorical (one vocabulary each; unseen values share one bucket):", ""]
        lines += [*_table(["feature", "categories", "seen in training"], rows), ""]
    skipped = features.get("skipped") or {}
    if skipped:
        lines += [
            "Not used: " + ", ".join(f"`{k}` ({v})" for k, v in skipped.items()),
            "",
        ]
    lines += [
        "## Data",
        "",
        "Query:",
        "",
        "```sql",
        str(lineage.get("query", "")).strip(),
        "```",
        "",
        "Parameters: "
        + (
            ", ".join(
                f"`@{k}` = {v.get('value')!r} ({v.get('type')})"
                for k, v in (lineage.get("query_parameters") or {}).items()
            )
            or "none"
        ),
        "",
    ]
    lines += _table(["split", "rows"], [[s, (stats.get(s) or {}).get("rows")] for s in _SPLITS])
    lines.append("")
    key = []
    if label in cols:
        c = cols[label]
        if c.get("kind") == "numeric":
            key.append(
                f"- Label `{label}` (train): mean {_fmt(c.get('mean'))}, std {_fmt(c.get('std'))}, "
                f"range [{_fmt(c.get('min'))}, {_fmt(c.get('max'))}]"
            )
        elif c.get("top_values"):
            dist = ", ".join(f"{t['value']}: {_fmt(t['count'])}" for t in c["top_values"][:10])
            key.append(f"- Label `{label}` (train) counts: {dist}")
    periods = [
        (n, c) for n, c in cols.items() if c.get("kind") in ("timestamp", "date") and c.get("min")
    ]
    for n, c in periods:
        key.append(f"- `{n}` (train) spans {c['min']} to {c['max']}")
    nulls = [n for n, c in cols.items() if c.get("nulls")]
    if nulls:
        key.append("- Columns with nulls in train: " + ", ".join(f"`{n}`" for n in nulls))
    if key:
        lines += ["Key statistics:", "", *key, ""]
    metrics = evaluation.get("metrics") or {}
    lines += ["## Test metrics", ""]
    lines += _table(["metric", "value"], [[k, v] for k, v in metrics.items()])
    details = evaluation.get("details") or {}
    if "precision" in details:
        lines += ["", f"Precision {_fmt(details['precision'])}, recall {_fmt(details['recall'])}."]
        cm = details.get("confusion_matrix")
        if cm:
            lines += ["", "Confusion matrix (rows: actual, columns: predicted):", ""]
            lines += _table(
                ["actual \\ predicted", *cm["categories"]],
                [[c, *row] for c, row in zip(cm["categories"], cm["matrix"], strict=True)],
            )
    lines.append("")
    lines += _unsupervised_lines(model_meta, details)
    slices = evaluation.get("slices") or {}
    if slices:
        lines += ["## Slice metrics", "", slices_markdown(slices).replace("### ", "#### ")]
    lines += _gate_section(evaluation.get("decision") or {})
    lines += [
        "## Intended use",
        "",
        (
            f"Predicts `{label}` ({task}) from "
            if task not in ("clustering", "embedding")
            else f"Assigns clusters (or components) to rows ({task}) from "
        )
        + ", ".join(f"`{f}`" for f in [*numeric, *categorical])
        + ", for rows drawn like the training query's (same table, filters and units). "
        "It is a statistical model of the training period: check its drift report before "
        "relying on it for new conditions.",
        "",
        "## Limitations",
        "",
    ]
    limits = []
    for n, c in periods:
        limits.append(f"- Trained on data from {c['min']} to {c['max']} (`{n}`).")
    ranges = [
        f"`{f}` [{_fmt(cols[f].get('min'))}, {_fmt(cols[f].get('max'))}]"
        for f in numeric
        if f in cols and cols[f].get("min") is not None
    ]
    if ranges:
        limits.append(
            "- Numeric inputs outside the training ranges are extrapolation: "
            + ", ".join(ranges)
            + "."
        )
    for f, vocab in categorical.items():
        limits.append(
            f"- `{f}`: only {len(vocab)} categories were seen; others are scored as one unknown value."
        )
    train_rows = (stats.get("train") or {}).get("rows")
    if train_rows is not None:
        limits.append(f"- Trained on {_fmt(train_rows)} rows.")
    if classes and label in cols and cols[label].get("top_values"):
        counts = [t["count"] for t in cols[label]["top_values"]]
        if counts and max(counts) > 3 * max(min(counts), 1):
            limits.append("- The classes are imbalanced in training; read precision and recall.")
    lines += limits or ["- None recorded."]
    lines += [
        "",
        "## How to serve it",
        "",
        "```bash",
        f"voltpipe serve --model {name}@{version}        # HTTP prediction server",
        f"voltpipe run prediction --set prediction.model={version}   # batch scoring into a table",
        "```",
        "",
        "Training settings: `"
        + json.dumps(model_meta.get("training_params") or {}, sort_keys=True, default=str)
        + "`",
        "",
    ]
    return "\n".join(lines)


def _gate_section(decision: dict[str, Any]) -> list[str]:
    """The gate's decision: verdict, the paired comparison and the per-slice table."""
    from voltpipe.reports import gate_slices_markdown

    verdict = decision.get("verdict") or ("promote" if decision.get("promote") else "hold")
    title = {"promote": "Promoted", "hold": "Held (not significant)", "reject": "Rejected"}
    lines = [
        "## Gate decision",
        "",
        f"**{title.get(verdict, verdict)}** on `{decision.get('metric')}`: "
        f"{decision.get('reason', '')}",
        "",
    ]
    interval = decision.get("interval")
    if interval:
        lines += _table(
            ["comparison", "value"],
            [
                ["method", decision.get("method")],
                ["champion version", decision.get("champion_version")],
                ["champion", decision.get("champion")],
                ["challenger", decision.get("challenger")],
                ["improvement", decision.get("improvement")],
                [
                    f"{decision.get('confidence', 0.95):.0%} interval",
                    f"{_fmt(interval[0])} to {_fmt(interval[1])}",
                ],
                ["test data", f"`{decision.get('test_data_hash')}`"],
            ],
        )
        lines.append("")
    if decision.get("slices"):
        slices = gate_slices_markdown(
            decision["slices"], str(decision.get("metric")), decision.get("max_slice_regression")
        )
        lines += [slices[0].replace("## ", "### "), *slices[1:], ""]
    return lines

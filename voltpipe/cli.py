"""The ``voltpipe`` command line: run, compile and inspect pipelines and components."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from voltpipe import __version__
from voltpipe.errors import VoltpipeError

T = TypeVar("T")
err_console = Console(stderr=True)
console = Console()

app = typer.Typer(
    name="voltpipe",
    help=(
        "Kubeflow Pipelines components and pipelines for energy ML, run locally or on Vertex AI.\n\n"
        "Examples:\n\n"
        "  voltpipe run training                      # the demo, on the embedded DuckDB warehouse\n\n"
        "  voltpipe run training --config my.yaml --set training.epochs=5\n\n"
        "  voltpipe compile training -o training.yaml\n\n"
        "  voltpipe components export build/components"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
components_app = typer.Typer(
    help="List and export voltpipe's reusable components.\n\nExamples:\n\n  voltpipe components list\n\n"
    "  voltpipe components export build/components",
    no_args_is_help=True,
)
app.add_typer(components_app, name="components")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config YAML. Default: the built-in demo config.", exists=False
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config key: KEY=VALUE (dotted key, YAML value). Repeatable."
    ),
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show every step's full output and tracebacks.")
]
TerraformOpt = Annotated[
    Path | None,
    typer.Option(
        "--terraform-output",
        help="A `terraform output -json` file whose values fill the config "
        "(vertex.project, vertex.pipeline_root, image, ...).",
    ),
]
TargetOpt = Annotated[str, typer.Option(help="Where to run: local (kfp.local), vertex or kfp.")]


def _guard(debug: bool, fn: Callable[[], T]) -> T:
    """Runs `fn`; a user error becomes one red line and exit code 1 (traceback with --debug)."""
    try:
        return fn()
    except VoltpipeError as exc:
        if debug:
            traceback.print_exc()
        from voltpipe.tracking.redact import redact

        err_console.print(
            f"[bold red]error:[/] {rich_escape(redact(str(exc)))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None


def _load(
    config: Path | None, overrides: list[str] | None, terraform_output: Path | None = None
) -> Any:
    from voltpipe.config import load_config

    return load_config(config, overrides or [], terraform_output=terraform_output)


def _fit_unit(summary: dict[str, Any]) -> str:
    """What the training row counts: boosting iterations (trees) for a GBDT (or a blend led by
    one), epochs otherwise."""
    family = summary.get("family")
    if family == "blend":
        chosen: dict[str, Any] = next(
            (c for c in summary.get("candidates") or [] if c.get("chosen")), {}
        )
        family = (chosen.get("members") or [None])[0]
    return "trees" if family == "gbdt" else "epochs"


def _print_summary(summary: dict[str, Any]) -> None:
    if summary.get("target", "local") != "local":
        table = Table(
            title=f"voltpipe {summary['pipeline']} on {summary['target']}", show_header=False
        )
        table.add_column("field", style="bold")
        table.add_column("value")
        for key in (
            "status",
            "state",
            "run_id",
            "job_name",
            "run_url",
            "console_url",
            "experiment",
            "template",
        ):
            if summary.get(key):
                table.add_row(key, str(summary[key]))
        console.print(table)
        return
    table = Table(
        title=f"voltpipe {summary['pipeline']} run {summary['run_id']}", show_header=False
    )
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("status", f"[green]{summary['status']}[/]")
    if "predictions" in summary:
        p = summary["predictions"]
        table.add_row("predictions", f"{p['rows']:,} rows -> {p['destination']}")
        table.add_row("model", f"{p['model']['name']} version {p['model']['version']}")
        table.add_row("wall time", f"{summary['seconds']:.1f} s")
        console.print(table)
        return
    if "drift_detected" in summary:
        drifted = ", ".join(summary["drifted_features"]) or "none"
        table.add_row(
            "drift", f"[yellow]detected[/] in {drifted}" if summary["drift_detected"] else "none"
        )
        table.add_row("retrained", "yes" if summary["retrained"] else "no")
        if summary.get("champion_problem"):
            table.add_row("champion", f"[red]cannot be served:[/] {summary['champion_problem']}")
    for name, value in summary["metrics"].get("test", {}).items():
        table.add_row(f"test {name}", f"{value:.4f}")
    if training := summary.get("training"):
        table.add_row(
            "training",
            f"{training.get('epochs_run')} {_fit_unit(summary)}, best {training.get('best_epoch')}, "
            f"stopped by {training.get('stopped_by')}",
        )
        for warning in training.get("warnings") or []:
            table.add_row("[yellow]warning[/]", warning)
    model = summary["model"]
    table.add_row("model", f"{model['name']} version {model['version']}")
    table.add_row("model uri", model["uri"])
    champ = summary["champion"]
    verdict = (
        "[green]promoted to champion[/]"
        if champ["promoted"]
        else f"champion stays version {champ['version']}"
    )
    table.add_row("champion", verdict)
    table.add_row("gate", champ["reason"])
    tracking = summary.get("tracking") or {}
    if tracking and not tracking.get("logged"):
        table.add_row(
            "tracking",
            f"[yellow]not logged[/] ({tracking.get('pending', 0)} pending, retried next run): "
            f"{tracking.get('error')}",
        )
    table.add_row("work dir", summary["workdir"])
    table.add_row("wall time", f"{summary['seconds']:.1f} s")
    console.print(table)


@app.command()
def run(
    pipeline: Annotated[
        str, typer.Argument(help="Pipeline to run: training, monitoring or prediction.")
    ],
    config: ConfigOpt = None,
    target: TargetOpt = "local",
    set_: SetOpt = None,
    summary_json: Annotated[
        Path | None,
        typer.Option("--summary-json", help="Also write the run summary as JSON to this file."),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Re-run every step instead of reusing cached outputs."),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="vertex/kfp: follow the run; exit non-zero if it fails.")
    ] = False,
    template_tag: Annotated[
        str | None,
        typer.Option(
            "--template-tag",
            help="vertex/kfp: run the template published under this tag "
            "(resolved to its immutable sha256 version) instead of compiling one.",
        ),
    ] = None,
    terraform_output: TerraformOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print each query's rows and bytes (BigQuery: a dry run) and each step's "
            "estimated peak memory, then exit without running.",
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Run a pipeline and print a summary of its results.

    Without --config, runs the built-in demo: a wind-power regression model trained on the
    embedded DuckDB warehouse (seeded with generated SCADA data on first use).

    Examples:

      voltpipe run training

      voltpipe run training --config configs/solar.yaml --summary-json run.json

      voltpipe run training --set training.epochs=3 --set split.seed=7 --no-cache

      voltpipe run training --target vertex --config prod.yaml --terraform-output tf.json --wait

      voltpipe run training --config prod.yaml --dry-run
    """
    if dry_run:
        plan = _guard(
            debug, lambda: _dry_run(pipeline, _load(config, set_, terraform_output), target)
        )
        if summary_json:
            _write_summary(summary_json, plan)
        _print_plan(plan)
        return

    def go() -> dict[str, Any]:
        from voltpipe.runners import run_pipeline
        from voltpipe.tracking.redact import redact

        cfg = _load(config, set_, terraform_output)
        try:
            summary = run_pipeline(
                pipeline,
                cfg,
                target=target,
                cache=not no_cache,
                debug=debug,
                wait=wait,
                template_tag=template_tag,
            )
        except VoltpipeError as exc:
            if summary_json:
                _write_summary(
                    summary_json,
                    {
                        "pipeline": pipeline,
                        "status": "failed",
                        "error": redact(str(exc)),
                        "workdir": str(cfg.workdir),
                    },
                )
            raise
        if summary_json:
            _write_summary(summary_json, summary)
        return summary

    summary = _guard(debug, go)
    _print_summary(summary)


def _dry_run(pipeline: str, cfg: Any, target: str) -> dict[str, Any]:
    from voltpipe.errors import ConfigError
    from voltpipe.pipelines import PIPELINES
    from voltpipe.runners.sizing import size_run

    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r}; available: {', '.join(PIPELINES)}")
    if target not in ("local", "vertex", "kfp"):
        raise ConfigError(f"--target {target!r}: expected local, vertex or kfp")
    from voltpipe.runners.preflight import ensure_embedded_warehouse

    ensure_embedded_warehouse(cfg)  # the demo's data, generated on first use, is what is sized
    return size_run(pipeline, cfg, target=target)


def _print_plan(plan: dict[str, Any]) -> None:
    """The dry run's plan: one table of queries, one of steps, then the warnings."""
    queries = Table(title=f"voltpipe {plan['pipeline']} dry run: queries")
    for column in ("query", "rows", "bytes", "row width", "how"):
        queries.add_column(column, justify="left" if column in ("query", "how") else "right")
    for label, q in plan["queries"].items():
        queries.add_row(
            label, f"{q['rows']:,}", f"{q['bytes']:,}", f"{q['row_bytes']} B", q["method"]
        )
    console.print(queries)
    steps = Table(title=f"estimated peak memory per step ({plan['target']})")
    for column in ("step", "rows held", "peak memory", "memory it has"):
        steps.add_column(column, justify="left" if column == "step" else "right")
    for s in plan["steps"]:
        limit = f"{s['limit_bytes'] / 1e9:.1f} GB" if s["limit_bytes"] else "unknown"
        steps.add_row(
            s["step"] + (" [bold red](too big)[/]" if s["too_big"] else ""),
            f"{s['rows']:,}",
            f"{s['peak_bytes'] / 1e9:.2f} GB",
            f"{limit} ({s['limit_source']})",
        )
    console.print(steps)
    for message in plan["warnings"]:
        err_console.print(f"[bold yellow]warning:[/] {rich_escape(message)}", soft_wrap=True)
    console.print("dry run: nothing was run")


def _write_summary(path: Path, summary: dict[str, Any]) -> None:
    from voltpipe.data.io import write_json_atomic

    write_json_atomic(path, summary)


@app.command("compile")
def compile_(
    pipeline: Annotated[
        str, typer.Argument(help="Pipeline to compile: training, monitoring or prediction.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the KFP IR YAML.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    terraform_output: TerraformOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Compile a pipeline to KFP IR YAML (for Vertex AI Pipelines or a Kubeflow cluster).

    The config's values become the pipeline's parameter defaults and its `image:` every
    component's image.

    Example:

      voltpipe compile training --config configs/prod.yaml -o training.yaml
    """

    def go() -> None:
        from voltpipe.runners.templates import compile_template

        compile_template(pipeline, _load(config, set_, terraform_output), output)
        console.print(f"wrote {output}")

    _guard(debug, go)


@app.command()
def publish(
    pipeline: Annotated[
        str,
        typer.Argument(help="Pipeline to compile and publish: training, monitoring or prediction."),
    ],
    tag: Annotated[
        list[str], typer.Option("--tag", "-t", help="Tag for the template version. Repeatable.")
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    host: Annotated[
        str | None,
        typer.Option(help="KFP template repository; default: vertex.template_repository."),
    ] = None,
    terraform_output: TerraformOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Compile a pipeline and publish it as a template to an Artifact Registry KFP repository.

    The template is stored as NAME-PIPELINE (e.g. wind-power-training) under an immutable
    sha256 version; the tags point at it. `voltpipe run --template-tag T` runs it.

    Example:

      voltpipe publish training --tag v1.2.0 --tag latest --config prod.yaml
    """

    def go() -> dict[str, Any]:
        from voltpipe.errors import ConfigError
        from voltpipe.runners.templates import compile_template, publish_template

        cfg = _load(config, set_, terraform_output)
        repo = host or cfg.vertex.template_repository
        if not repo:
            raise ConfigError(
                "no template repository: pass --host or set vertex.template_repository"
            )
        path = compile_template(pipeline, cfg, cfg.workdir / "templates" / f"{pipeline}.yaml")
        return publish_template(path, host=repo, tags=tag)

    result = _guard(debug, go)
    console.print(
        f"published {result['package']} {result['version']} tags {', '.join(result['tags'])}"
    )
    console.print(result["template_uri"])


@app.command()
def serve(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A model folder (a run summary's model.uri) or NAME[@ALIAS|@VERSION] "
            "from the registry; NAME alone means NAME@champion.",
        ),
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: serving.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serving.port, 8080).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Serve a model over HTTP with the Vertex AI custom-container contract.

    POST /predict {"instances": [...]} -> {"predictions": [...]}: rows {feature: value, ...}, or
    {"history": [...]} for a forecaster (GET / states the model's formats); GET /health.
    The same server runs in the container on Vertex AI (`python -m voltpipe.serving`).

    Examples:

      voltpipe serve --model wind-power@champion

      voltpipe serve --model .voltpipe/registry/wind-power/versions/3 --port 9000
    """

    def resolve() -> tuple[str, Any, Any]:
        from voltpipe.errors import ConfigError
        from voltpipe.registry import open_registry, parse_model_ref

        cfg = _load(config, set_)
        ref = parse_model_ref(model)
        if ref.path is not None:
            if not ref.path.is_dir():
                raise ConfigError(f"--model {model}: no such model folder")
            return str(ref.path), cfg, None
        found = open_registry(cfg.registry_uri).get(ref.name or "", ref.selector)
        if found is None:
            raise ConfigError(
                f"--model {model}: no version {ref.selector!r} of model {ref.name!r} "
                f"in the registry at {cfg.registry_uri}"
            )
        from voltpipe.deploy.local import registry_source

        # A server started from the registry follows its alias: a new champion is loaded,
        # warmed and swapped in without downtime (a broken one is refused, the old one stays).
        return found.uri, cfg, registry_source(cfg.registry_uri, ref.name or "", ref.selector)

    model_dir, cfg, source = _guard(debug, resolve)
    from voltpipe.serving import serve as run_server

    s = cfg.serving
    h, p = host or s.host, port or s.port
    err_console.print(f"serving {model_dir} on http://{h}:{p}/predict (health: /health)")
    _guard(
        debug,
        lambda: run_server(
            model_dir,
            host=h,
            port=p,
            max_instances=s.max_instances,
            max_body_bytes=s.max_body_bytes,
            source=source,
        ),
    )


class _DefaultToCreate(typer.core.TyperGroup):
    """`voltpipe schedule PIPELINE --cron ...` means `voltpipe schedule create PIPELINE ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


schedule_app = typer.Typer(
    cls=_DefaultToCreate,
    help="Schedule recurring pipeline runs on Vertex AI (PipelineJobSchedule) or Kubeflow (recurring runs).\n\n"
    "Examples:\n\n  voltpipe schedule training --cron '0 3 * * 1' --target vertex --config prod.yaml\n\n"
    "  voltpipe schedule list --target vertex --config prod.yaml\n\n"
    "  voltpipe schedule pause SCHEDULE_ID --target vertex --config prod.yaml",
    no_args_is_help=True,
)
app.add_typer(schedule_app, name="schedule")
CloudTargetOpt = Annotated[str, typer.Option(help="Scheduler: vertex or kfp.")]


@schedule_app.command("create")
def schedule_create(
    pipeline: Annotated[
        str, typer.Argument(help="Pipeline to schedule: training, monitoring or prediction.")
    ],
    cron: Annotated[
        str, typer.Option(help="Five-field cron, optionally 'TZ=Europe/Paris 0 3 * * *'.")
    ],
    target: CloudTargetOpt = "vertex",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    name: Annotated[str | None, typer.Option(help="Schedule display name.")] = None,
    template_tag: Annotated[
        str | None, typer.Option(help="Schedule a published template by tag.")
    ] = None,
    terraform_output: TerraformOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Create a schedule that runs PIPELINE on a cron."""

    def go() -> dict[str, Any]:
        from voltpipe.runners.schedules import create_schedule
        from voltpipe.runners.templates import compile_template, resolve_template

        cfg = _load(config, set_, terraform_output)
        path, uri = None, None
        if template_tag:
            if not cfg.vertex.template_repository:
                raise VoltpipeError(
                    "vertex.template_repository is not set: needed for --template-tag"
                )
            uri, _ = resolve_template(
                cfg.vertex.template_repository, f"{cfg.name}-{pipeline}", template_tag
            )
        else:
            path = compile_template(pipeline, cfg, cfg.workdir / "templates" / f"{pipeline}.yaml")
        return create_schedule(
            cfg, pipeline, path, cron=cron, target=target, display_name=name, template_uri=uri
        )

    _print_schedules([_guard(debug, go)])


def _print_schedules(rows: list[dict[str, Any]]) -> None:
    table = Table(title="schedules")
    for col in ("id", "display name", "cron", "state", "target"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.get("id", "")),
            str(r.get("display_name", "")),
            str(r.get("cron", "")),
            str(r.get("state", "")),
            str(r.get("target", "")),
        )
    console.print(table)


@schedule_app.command("list")
def schedule_list(
    target: CloudTargetOpt = "vertex",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    terraform_output: TerraformOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    debug: DebugOpt = False,
) -> None:
    """List schedules (Vertex) or recurring runs (Kubeflow)."""
    from voltpipe.runners.schedules import list_schedules

    rows = _guard(
        debug, lambda: list_schedules(_load(config, set_, terraform_output), target=target)
    )
    if json_:
        console.print_json(json.dumps(rows, default=str))
    else:
        _print_schedules(rows)


def _schedule_action(action: str) -> Callable[..., None]:
    def command(
        schedule_id: Annotated[
            str, typer.Argument(help="Schedule id or resource name (see `schedule list`).")
        ],
        target: CloudTargetOpt = "vertex",
        config: ConfigOpt = None,
        set_: SetOpt = None,
        terraform_output: TerraformOpt = None,
        debug: DebugOpt = False,
    ) -> None:
        from voltpipe.runners import schedules

        fn = getattr(schedules, f"{action}_schedule")
        _print_schedules(
            [
                _guard(
                    debug,
                    lambda: fn(_load(config, set_, terraform_output), schedule_id, target=target),
                )
            ]
        )

    command.__doc__ = f"{action.capitalize()} a schedule."
    return command


for _action in ("pause", "resume", "delete"):
    schedule_app.command(_action)(_schedule_action(_action))


@components_app.command("list")
def components_list() -> None:
    """List the components with their inputs and outputs."""
    from voltpipe.components import CATALOGUE

    table = Table(title="voltpipe components")
    for col in ("component", "inputs", "outputs", "description"):
        table.add_column(col)
    for name, comp in CATALOGUE.items():
        spec = comp.component_spec
        inputs = ", ".join(spec.inputs or {})
        outputs = ", ".join(spec.outputs or {})
        doc = (spec.description or "").strip().split("\n")[0]
        table.add_row(name, inputs, outputs, doc)
    console.print(table)


@components_app.command("export")
def components_export(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write one <component>.yaml into per component.")
    ],
    image: Annotated[
        str | None, typer.Option(help="Container image for the components (default: built-in).")
    ] = None,
) -> None:
    """Export every component as YAML, loadable with kfp.components.load_component_from_file.

    Example:

      voltpipe components export build/components --image europe-west1-docker.pkg.dev/P/voltpipe/voltpipe:1.0.0
    """
    from kfp import compiler

    from voltpipe.components import CATALOGUE, with_image

    directory.mkdir(parents=True, exist_ok=True)
    for name, comp in CATALOGUE.items():
        path = directory / f"{name}.yaml"
        compiler.Compiler().compile(with_image(comp, image) if image else comp, str(path))
        console.print(f"wrote {path}")


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"voltpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Kubeflow Pipelines components and pipelines for energy ML."""


def main() -> None:
    app(prog_name="voltpipe")


if __name__ == "__main__":
    main()

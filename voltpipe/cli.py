"""The ``voltpipe`` command line: run, compile and inspect pipelines and components."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
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


def _guard(debug: bool, fn: Callable[[], T]) -> T:
    """Runs `fn`; a user error becomes one red line and exit code 1 (traceback with --debug)."""
    try:
        return fn()
    except VoltpipeError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _load(config: Path | None, overrides: list[str] | None) -> Any:
    from voltpipe.config import load_config

    return load_config(config, overrides or [])


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(
        title=f"voltpipe {summary['pipeline']} run {summary['run_id']}", show_header=False
    )
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("status", f"[green]{summary['status']}[/]")
    for name, value in summary["metrics"]["test"].items():
        table.add_row(f"test {name}", f"{value:.4f}")
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
    table.add_row("work dir", summary["workdir"])
    table.add_row("wall time", f"{summary['seconds']:.1f} s")
    console.print(table)


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="Pipeline to run: training.")],
    config: ConfigOpt = None,
    target: Annotated[
        str, typer.Option(help="Where to run: local (kfp.local), vertex or kfp.")
    ] = "local",
    set_: SetOpt = None,
    summary_json: Annotated[
        Path | None,
        typer.Option("--summary-json", help="Also write the run summary as JSON to this file."),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Re-run every step instead of reusing cached outputs."),
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
    """

    def go() -> dict[str, Any]:
        from voltpipe.runners import run_pipeline

        cfg = _load(config, set_)
        try:
            summary = run_pipeline(pipeline, cfg, target=target, cache=not no_cache, debug=debug)
        except VoltpipeError as exc:
            if summary_json:
                _write_summary(
                    summary_json,
                    {
                        "pipeline": pipeline,
                        "status": "failed",
                        "error": str(exc),
                        "workdir": str(cfg.workdir),
                    },
                )
            raise
        if summary_json:
            _write_summary(summary_json, summary)
        return summary

    summary = _guard(debug, go)
    _print_summary(summary)


def _write_summary(path: Path, summary: dict[str, Any]) -> None:
    from voltpipe.data.io import write_json_atomic

    write_json_atomic(path, summary)


@app.command("compile")
def compile_(
    pipeline: Annotated[str, typer.Argument(help="Pipeline to compile: training.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the KFP IR YAML.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Compile a pipeline to KFP IR YAML (for Vertex AI Pipelines or a Kubeflow cluster).

    The config's values become the pipeline's parameter defaults and its `image:` every
    component's image.

    Example:

      voltpipe compile training --config configs/prod.yaml -o training.yaml
    """

    def go() -> None:
        from kfp import compiler

        from voltpipe.pipelines import build_pipeline

        cfg = _load(config, set_)
        try:
            func = build_pipeline(pipeline, cfg)
        except ValueError as exc:
            raise VoltpipeError(str(exc)) from None
        output.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(func, str(output))
        console.print(f"wrote {output}")

    _guard(debug, go)


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
    sys.exit(main())

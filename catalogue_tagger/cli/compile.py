"""``catalogue-tagger compile --model NAME``: build every artifact of a model into the engine cache: the ONNX
graph, its fp16/bf16 graph, and the TensorRT engine; with ``--precision int8 --calibration DIR``, the int8 QDQ
graph calibrated on that music."""

from __future__ import annotations

from pathlib import Path

import click

from catalogue_tagger.cli.options import settings_with
from catalogue_tagger.cli.output import user_errors
from catalogue_tagger.config import PRECISIONS, Settings


@click.command("compile")
@click.option("--model", "model", required=True, help="Model name.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Precision of the graph and engine (default: $CATALOGUE_TAGGER_PRECISION, else fp32).")
@click.option("--max-batch", "batch_size", type=click.IntRange(min=1), default=None,
              help="Largest batch of the engine: the batch size `tag` will run "
              "(default: $CATALOGUE_TAGGER_BATCH_SIZE, else 64).")
@click.option("--device", default=None,
              help="CUDA device the engine is built for, cuda[:N] (default: $CATALOGUE_TAGGER_DEVICE when it is a "
              "CUDA device, else cuda).")
@click.option("--onnx-only", is_flag=True, help="Build the ONNX graphs only (no TensorRT needed).")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="int8: a folder of real music to calibrate on (up to 24 tracks, evenly spread, are used).")
@click.pass_obj
def compile_command(settings: Settings, /, model: str, onnx_only: bool, calibration: Path | None,
                    **overrides: object) -> None:
    """Build the artifacts of MODEL for the ONNX Runtime and TensorRT backends, cached by everything that
    invalidates them; `tag` with the same precision, batch size and device opens the engine built here.
    int8 is a static QDQ graph for ONNX Runtime, calibrated on the music of --calibration (no TensorRT engine)."""
    from catalogue_tagger.inference.compile import compile_int8, compile_model, onnx_path_for
    from catalogue_tagger.models.specs import get_spec

    settings = settings_with(settings, **overrides)
    with user_errors():
        get_spec(model)
        click.echo(f"onnx: {onnx_path_for(model, settings.engine_dir)}")
        if settings.precision == "int8":
            if calibration is None:
                raise click.UsageError("--precision int8 needs --calibration DIR (real music to calibrate on)")
            click.echo(f"onnx int8: {compile_int8(model, settings.engine_dir, calibration)}")
            return
        if settings.precision != "fp32":
            click.echo(f"onnx {settings.precision}: {onnx_path_for(model, settings.engine_dir, settings.precision)}")
        if not onnx_only:
            device = settings.device if settings.device.startswith("cuda") else "cuda"
            engine = compile_model(model, settings.engine_dir, settings.precision, settings.batch_size, device)
            click.echo(f"tensorrt engine: {engine}")

"""``catalogue-tagger compile --model NAME``: export ONNX and build the TensorRT engine into the cache."""

from __future__ import annotations

import sys

import click


@click.command("compile")
@click.option("--model", "model", required=True, help="Model name.")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True)
@click.option("--max-batch", default=256, show_default=True, help="Largest batch of the optimization profile.")
@click.option("--onnx-only", is_flag=True, help="Export the ONNX graph only (no TensorRT needed).")
def compile_command(model: str, precision: str, max_batch: int, onnx_only: bool) -> None:
    """Build the artifacts of MODEL for the ONNX Runtime and TensorRT backends (cached by weights hash)."""
    from catalogue_tagger.errors import TaggerError
    from catalogue_tagger.inference.compile import compile_model, onnx_path_for

    try:
        click.echo(f"onnx: {onnx_path_for(model)}")
        if not onnx_only:
            click.echo(f"tensorrt engine: {compile_model(model, precision=precision, max_batch=max_batch)}")
    except TaggerError as exc:
        click.echo(f"error ({exc.kind}): {exc}", err=True)
        sys.exit(2)

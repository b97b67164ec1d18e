"""Reduced-precision ONNX graphs: the front end stays float32, the network runs in float16 or bfloat16.

TensorRT 11 builds only strongly typed networks (no ``BuilderFlag.FP16``, no per-layer precision), and ONNX
Runtime runs a graph in the types it declares, so the precision of an engine or session is the precision of
its ONNX graph. :func:`reduce_precision` rewrites an exported float32 graph:

- nodes named under the front end (``/frontend/…``: framing, DFT matmul, mel projection, log) are left as
  they are, float32, with their own float16 rounding of the mel power;
- every float32 tensor the rest of the network computes becomes float16 (or bfloat16): its weights,
  constants and ``Cast(to=FLOAT)`` targets are converted, and one ``Cast`` is inserted where a float32
  tensor (front-end output, waveform input) enters it;
- the first weighted layer on the front end's output (or on the waveform) keeps its weights to about twice
  the reduced precision: ``W = W_hi + W_lo``, both in the reduced type, run as two layers summed
  (:func:`_split_first_layers`);
- each float output is cast back to float32 under its original name, so callers see the same outputs.

Integer and shape tensors (``Shape``, ``Gather`` of indices, ``Concat`` of pads) are never touched.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REDUCED_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
FLOAT = TensorProto.FLOAT
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}  # weighted op -> index of its weights
BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


def reduce_precision(model: onnx.ModelProto, precision: str, front_end_prefix: str) -> onnx.ModelProto:
    """A copy of float32 ``model`` whose nodes outside ``front_end_prefix`` run in ``precision``.

    Raises ``ValueError`` for a precision other than fp16 or bf16 (or weights that overflow it), and
    ``onnx`` checker errors when the rewritten graph does not type-check (a bug here, not in the input).
    """
    if precision not in REDUCED_TYPES:
        raise ValueError(f"precision must be one of {', '.join(REDUCED_TYPES)}, not {precision!r}")
    target = REDUCED_TYPES[precision]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # a copy, with every tensor typed
    _split_first_layers(model.graph, _tensor_types(model.graph), front_end_prefix, target)
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = model.graph
    types = _tensor_types(graph)

    computing = [(i, n) for i, n in enumerate(graph.node) if n.op_type != "Constant"]
    body = {i for i, n in computing if not n.name.startswith(front_end_prefix)}
    consumers: dict[str, list[int]] = {}
    for index, node in computing:
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    body_produced = {out for index, node in computing if index in body for out in node.output}

    # float32 weights and constants read only by the network are converted where they are stored
    def body_only(name: str) -> bool:
        return types.get(name) == FLOAT and all(c in body for c in consumers.get(name, []))

    for index, init in enumerate(graph.initializer):
        if body_only(init.name):
            graph.initializer[index].CopyFrom(_converted(init, target))
    converted = {init.name for init in graph.initializer if init.data_type == target}
    for node in graph.node:
        if node.op_type == "Constant" and body_only(node.output[0]):
            _convert_value_attribute(node, target)
            converted.add(node.output[0])

    # float outputs computed by the network are renamed; a Cast right after restores the float32 name
    output_names = {o.name for o in graph.output if o.type.tensor_type.elem_type == FLOAT}
    renamed = {name: f"{name}_{precision}" for name in output_names & body_produced}

    nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}  # (tensor, element type) -> the Cast output that converts it

    def cast(name: str, to: int) -> str:
        if (name, to) not in casts:
            suffix = precision if to == target else "fp32"
            casts[name, to] = f"{name}_to_{suffix}"  # node named apart from the front end's prefix
            nodes.append(helper.make_node("Cast", [name], [casts[name, to]], to=to, name=f"Cast_to_{suffix}:{name}"))
        return casts[name, to]

    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            nodes.append(node)
        elif index not in body:  # a float32 node reads a reduced tensor of the network: cast it back first
            for i, name in enumerate(node.input):
                if name in body_produced and types.get(name) == FLOAT and name not in renamed:
                    node.input[i] = cast(name, FLOAT)
            nodes.append(node)
        else:
            for i, name in enumerate(node.input):
                if name in renamed:
                    node.input[i] = renamed[name]
                elif types.get(name) == FLOAT and name not in body_produced and name not in converted:
                    node.input[i] = cast(name, target)
            outputs = list(node.output)
            for i, name in enumerate(outputs):
                node.output[i] = renamed.get(name, name)
            _retarget(node, target)
            nodes.append(node)
            for name in outputs:
                if name in renamed:  # the float32 graph output, under its own name
                    nodes.append(helper.make_node("Cast", [renamed[name]], [name], to=FLOAT,
                                                  name=f"{name}_to_fp32/Cast"))

    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # types changed: infer them again
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def first_layers(graph: onnx.GraphProto, types: dict[str, int], front_end_prefix: str) -> list[int]:
    """Indices of the weighted layers (Conv, Gemm, MatMul) that first read the front end's output or the
    graph's float input, through any number of unweighted nodes (batch norm, padding, reshapes)."""
    initializers = {init.name for init in graph.initializer}
    leading = {i.name for i in graph.input if types.get(i.name) == FLOAT and i.name not in initializers}
    found: list[int] = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        if node.name.startswith(front_end_prefix):
            leading.update(out for out in node.output if types.get(out) == FLOAT)
        elif any(name in leading for name in node.input):
            if node.op_type in WEIGHT_INPUT:
                found.append(index)
            else:
                leading.update(out for out in node.output if types.get(out) == FLOAT)
    return found


def _split_first_layers(graph: onnx.GraphProto, types: dict[str, int], front_end_prefix: str, target: int) -> None:
    """``Y = layer(X, W, b)`` becomes ``layer(X, W_hi, b) + layer(X, W_lo)`` for each first layer whose
    weights are an initializer, with ``W_hi = round(W)`` and ``W_lo = W - W_hi`` (float32 here; converted
    with the rest of the network).

    The first layer sums many inputs that share a large offset (a log-mel, a waveform), so the rounding of
    its weights moves every output by up to that offset times the rounding: measured over the reference
    clips, vgg-msd's tag probabilities moved 2.3e-3 from float32 with plain float16 weights, 7e-4 with the
    split ones. It costs a second run of that one layer, still in the reduced precision.
    """
    weights = {init.name: init for init in graph.initializer}
    np_target = helper.tensor_dtype_to_np_dtype(target)
    nodes: list[onnx.NodeProto] = []
    split = set(first_layers(graph, types, front_end_prefix))
    for index, node in enumerate(graph.node):
        weight = node.input[WEIGHT_INPUT[node.op_type]] if index in split else ""
        if weight not in weights:
            nodes.append(node)
            continue
        values = numpy_helper.to_array(weights[weight])
        high = values.astype(np_target).astype(np.float32)
        graph.initializer.extend([numpy_helper.from_array(high, f"{weight}_hi"),
                                  numpy_helper.from_array(values - high, f"{weight}_lo")])
        output = node.output[0]
        residual = onnx.NodeProto()
        residual.CopyFrom(node)
        residual.name = f"{node.name}_lo"
        residual.input[WEIGHT_INPUT[node.op_type]] = f"{weight}_lo"
        bias = BIAS_INPUT.get(node.op_type)
        if bias is not None and len(residual.input) > bias:
            del residual.input[bias:]  # the bias is added once, by the high part
        residual.output[0] = f"{output}_lo"
        node.input[WEIGHT_INPUT[node.op_type]] = f"{weight}_hi"
        node.output[0] = f"{output}_hi"
        nodes += [node, residual, helper.make_node("Add", [f"{output}_hi", f"{output}_lo"], [output],
                                                   name=f"{node.name}_sum")]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _tensor_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Element type of every named tensor of a shape-inferred graph."""
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({init.name: init.data_type for init in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _converted(tensor: onnx.TensorProto, target: int) -> onnx.TensorProto:
    """``tensor`` (float32) rounded to ``target``, same name and shape."""
    values = numpy_helper.to_array(tensor)
    reduced = values.astype(helper.tensor_dtype_to_np_dtype(target))
    if np.isinf(reduced).any() and not np.isinf(values).any():
        raise ValueError(f"{tensor.name}: weights overflow {TensorProto.DataType.Name(target)}")
    return numpy_helper.from_array(reduced, tensor.name)


def _convert_value_attribute(node: onnx.NodeProto, target: int) -> None:
    for attr in node.attribute:
        if attr.name == "value" and attr.t.data_type == FLOAT:
            attr.t.CopyFrom(_converted(attr.t, target))


def _retarget(node: onnx.NodeProto, target: int) -> None:
    """A network node that makes float32 (``Cast``, ``ConstantOfShape``) makes ``target`` instead."""
    if node.op_type == "Cast":
        for attr in node.attribute:
            if attr.name == "to" and attr.i == FLOAT:
                attr.i = target
    elif node.op_type == "ConstantOfShape":
        _convert_value_attribute(node, target)

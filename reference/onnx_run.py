"""Check and run an exported ONNX model with ONNX Runtime (CPU); write a `trace-v1` dump.

    .venv/bin/python reference/onnx_run.py MODEL.onnx --inputs DUMP.safetensors --out RUN.safetensors

1. `onnx.checker.check_model(MODEL, full_check=True)` (by path, so external data works).
2. Every graph input is read by name from DUMP (an upstream or `voxtrace trace` dump, whose
   tensor names are capture names) and cast to the input's element type.
3. ONNX Runtime (CPUExecutionProvider) computes every graph output; exported with
   `voxtrace export --intermediates`, the outputs are all traced intermediates.
4. RUN is a safetensors file in voxtrace's `trace-v1` format: tensors named by the graph
   output (= capture) names, the inputs too, `voxtrace.order` in graph order, so
   `voxtrace compare REF RUN` compares it name by name.

Exit status: 0 on success; 2 with a one-line `error: FILE: cause` message on bad input.
"""

import argparse
import json
import os
import sys

import numpy as np


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="exported .onnx file")
    ap.add_argument("--inputs", required=True, help="safetensors dump holding the graph inputs by name")
    ap.add_argument("--out", required=True, help="output dump (safetensors, trace-v1)")
    ap.add_argument("--no-check", action="store_true", help="skip onnx.checker (not recommended)")
    ap.add_argument(
        "--disable-optimizations",
        action="store_true",
        help="run with ORT graph optimizations off (ORT_DISABLE_ALL)",
    )
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    from safetensors import safe_open
    from safetensors.numpy import save_file

    if not args.no_check:
        try:
            onnx.checker.check_model(args.model, full_check=True)
        except Exception as e:  # noqa: BLE001 - report any checker failure as bad input
            fail(f"{args.model}: onnx.checker: {e}")

    try:
        dump = safe_open(args.inputs, "np")
    except Exception as e:  # noqa: BLE001
        fail(f"{args.inputs}: cannot open as safetensors: {e}")
    names = set(dump.keys())

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    if args.disable_optimizations:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        fail(f"{args.model}: onnxruntime cannot load it: {e}")

    feeds = {}
    for i in sess.get_inputs():
        if i.name not in names:
            fail(f"{args.inputs}: no tensor {i.name} (graph input of {args.model})")
        x = dump.get_tensor(i.name)
        want = [d for d in i.shape]
        if list(x.shape) != want:
            fail(f"{args.inputs}: {i.name} has shape {list(x.shape)}, the graph wants {want}")
        dtype = ORT_TO_NUMPY.get(i.type)
        if dtype is None:
            fail(f"{args.model}: input {i.name} has unsupported type {i.type}")
        feeds[i.name] = np.ascontiguousarray(x.astype(dtype))

    out_names = [o.name for o in sess.get_outputs()]
    values = sess.run(out_names, feeds)

    tensors = {}
    order = []
    for name, x in feeds.items():
        tensors[name] = x
        order.append(name)
    for name, x in zip(out_names, values):
        if name in tensors:
            continue
        x = np.asarray(x)
        if x.dtype == np.bool_:
            x = x.astype(np.uint8)
        tensors[name] = np.ascontiguousarray(x)
        order.append(name)

    opset = next((o.version for o in onnx.load(args.model, load_external_data=False).opset_import if o.domain in ("", "ai.onnx")), "?")
    meta = {
        "voxtrace.format": "trace-v1",
        "voxtrace.order": json.dumps(order),
        "voxtrace.source": f"onnxruntime {ort.__version__} CPUExecutionProvider opset {opset} ({args.model})",
    }
    tmp = f"{args.out}.tmp{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, args.out)  # atomic: never a half-written dump
    except Exception as e:  # noqa: BLE001
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"{args.out}: cannot write: {e}")
    print(f"ran {args.model}: {len(out_names)} outputs -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

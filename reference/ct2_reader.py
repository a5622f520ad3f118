"""Minimal reader for CTranslate2 model.bin (binary versions 1..6).

Mirrors OpenNMT/CTranslate2 python/ctranslate2/specs/model_spec.py `_serialize`
and src/models/model.cc `Model::load`. Used by whisper_reference.py.
"""
import struct

import numpy as np

# ctranslate2 include/ctranslate2/types.h `DataType` order.
DTYPES = ["float32", "int8", "int16", "int32", "float16", "bfloat16"]


class Ct2FormatError(ValueError):
    pass


def read_ct2(path):
    """Return (version, spec, revision, {name: np.ndarray}, {alias: target})."""
    with open(path, "rb") as f:
        buf = f.read()
    off = 0

    def take(n, what):
        nonlocal off
        if off + n > len(buf):
            raise Ct2FormatError(f"{path}: truncated at offset {off} reading {what} ({n} bytes)")
        b = buf[off:off + n]
        off += n
        return b

    def u8(what):
        return take(1, what)[0]

    def u16(what):
        return struct.unpack("<H", take(2, what))[0]

    def u32(what):
        return struct.unpack("<I", take(4, what))[0]

    def string(what):
        n = u16(what + " length")
        s = take(n, what)
        return s.rstrip(b"\0").decode("utf-8")

    version = u32("binary version")
    if version < 1 or version > 6:
        raise Ct2FormatError(f"{path}: unsupported binary version {version}")
    spec, revision = "", 1
    if version >= 2:
        spec = string("spec name")
        revision = u32("spec revision")
    n = u32("variable count")
    variables = {}
    for _ in range(n):
        name = string("variable name")
        rank = u8("rank")
        shape = [u32("dim") for _ in range(rank)]
        if version >= 4:
            dt = DTYPES[u8("dtype")]
            nbytes = u32("byte count")
        else:
            item = u8("item size")
            dt = {4: "float32", 2: "int16", 1: "int8"}[item]
            nbytes = u32("element count") * item
        data = take(nbytes, f"data of {name}")
        if dt == "bfloat16":
            arr = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data, np.dtype(dt).newbyteorder("<"))
        variables[name] = arr.reshape(shape)
    aliases = {}
    if version >= 3:
        for _ in range(u32("alias count")):
            a = string("alias")
            aliases[a] = string("alias target")
    if off != len(buf):
        raise Ct2FormatError(f"{path}: {len(buf) - off} trailing bytes at offset {off}")
    return version, spec, revision, variables, aliases


if __name__ == "__main__":
    import sys
    v, s, r, var, al = read_ct2(sys.argv[1])
    print("version", v, "spec", s, "revision", r, "variables", len(var), "aliases", len(al))
    for k, a in var.items():
        print(k, list(a.shape), a.dtype, a.ravel()[:1] if a.size else "")
    for k, t in al.items():
        print("alias", k, "->", t)

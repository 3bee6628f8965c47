"""Writes the fuzz seed corpora with reference implementations.

Run from the repository root with the project venv: .venv/bin/python fuzz/make_corpus.py [TARGET...]
(default: every target). One writer per target:
- safetensors: the reference `safetensors` package. Small valid files, one per feature the reader
  handles (every dtype, empty and scalar tensors, several tensors, metadata), and readable copies
  of past findings (regress-*.safetensors, which the reference package refuses to write).
- tar: Python's tarfile. WebDataset-like shards in ustar, GNU (long names) and pax (long and
  non-ASCII paths, an explicit size record, a global header), links and directories, a
  truncated shard, and hand-patched headers tarfile will not write (pax size overriding the
  ustar field).
The fuzzers' own crash inputs (regress-*.input) are checked in as found and left untouched.
"""
import io
import json
import pathlib
import struct
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"


# ---- safetensors -------------------------------------------------------------------------------

# Findings of fuzz/safetensors_fuzz.cpp, fixed in src/io/safetensors.cpp (tests: FuzzRegressions).
SAFETENSORS_REGRESSIONS = {
    # (2^61 + 1) * 8 bytes wrapped to 8 in uint64: accepted with an 8-byte data section.
    "regress-bytes-wrap": ({"a": {"dtype": "F64", "shape": [2**61 + 1], "data_offsets": [0, 8]}}, 8),
    # After a zero size any size passed; 2^64 - 1 became the int64 size -1.
    "regress-size-after-zero": ({"a": {"dtype": "F32", "shape": [0, 2**64 - 1], "data_offsets": [0, 0]}}, 0),
}


def safetensors_image(header, data_bytes):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + bytes(data_bytes)


def safetensors_seeds():
    import torch  # only this target needs torch
    from safetensors.torch import save

    seeds = {
        "f32": ({"w": torch.arange(6, dtype=torch.float32).view(2, 3)}, None),
        "f16": ({"h": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16)}, None),
        "bf16": ({"b": torch.tensor([[1.0, 0.5], [-3.0, 2.0]], dtype=torch.bfloat16)}, None),
        "i64": ({"i": torch.tensor([7, -1], dtype=torch.int64)}, None),
        "empty": ({"e": torch.zeros(0, 3, dtype=torch.float32)}, None),
        "scalar": ({"s": torch.tensor(2.5, dtype=torch.float64)}, None),
        "multi": ({
            "a.weight": torch.ones(2, 2, dtype=torch.float32),
            "a.bias": torch.zeros(2, dtype=torch.float16),
            "mask": torch.tensor([True, False, True]),
            "idx": torch.tensor([1, 2], dtype=torch.int32),
            "q": torch.tensor([-1, 1], dtype=torch.int8),
            "u": torch.tensor([255], dtype=torch.uint8),
            "s16": torch.tensor([3], dtype=torch.int16),
        }, None),
        "metadata": ({"x": torch.tensor([1.0], dtype=torch.float32)}, {"format": "pt", "note": "seed"}),
        "only_metadata": ({}, {"format": "pt"}),
    }
    files = {f"{name}.safetensors": save(tensors, metadata=metadata) for name, (tensors, metadata) in seeds.items()}
    for name, (header, data_bytes) in SAFETENSORS_REGRESSIONS.items():
        files[f"{name}.safetensors"] = safetensors_image(header, data_bytes)
    return files


# ---- tar ---------------------------------------------------------------------------------------

def tar_image(members, fmt, pax_headers=None):
    """members: (name, bytes) for files, (name, "dir") / (name, "symlink:target") / (name, "link:target")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax_headers) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if data == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif isinstance(data, str):
                kind, target = data.split(":", 1)
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = target
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    # tarfile pads the archive to 10 KiB records; the seeds keep only the two end blocks.
    end = tf.offset
    return buf.getvalue()[:end]


def sample(key, n=1):
    """The members of one WebDataset sample, with small, distinct, non-zero-ending payloads."""
    return [
        (f"{key}.jpg", bytes([0xFF, 0xD8]) + bytes(i % 255 + 1 for i in range(40 * n)) + b"\xff\xd9"),
        (f"{key}.txt", f"caption of {key}".encode()),
        (f"{key}.json", json.dumps({"key": key, "n": n}).encode()),
    ]


def checksum(block):
    s = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return block[:148] + b"%06o\0 " % s + block[156:]


def pax_header(records, name=b"./PaxHeaders/x"):
    """A pax 'x' header block plus its data, built by hand (tarfile writes size records only when
    the ustar field overflows)."""
    body = b""
    for key, value in records:
        rec = b" " + key + b"=" + value + b"\n"
        n = len(rec) + 1
        while len(str(n)) + len(rec) != n:
            n += 1
        body += str(n).encode() + rec
    h = bytearray(512)
    h[: len(name)] = name
    h[100:108] = b"0000644\0"
    h[124:136] = b"%011o\0" % len(body)
    h[156:157] = b"x"
    h[257:265] = b"ustar\x0000"
    pad = (512 - len(body) % 512) % 512
    return checksum(bytes(h)) + body + b"\0" * pad


def ustar_member(name, data, size_field=None):
    h = bytearray(512)
    h[: len(name)] = name
    h[100:108] = b"0000644\0"
    h[124:136] = b"%011o\0" % (len(data) if size_field is None else size_field)
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    pad = (512 - len(data) % 512) % 512
    return checksum(bytes(h)) + data + b"\0" * pad


def tar_seeds():
    long_dir = "shard-" + "d" * 110
    files = {
        "ustar-samples.tar": tar_image(sample("000001") + sample("000002", 2), tarfile.USTAR_FORMAT),
        # A name over 100 bytes split into the ustar prefix and name fields.
        "ustar-prefix.tar": tar_image(sample(f"{long_dir}/000001"), tarfile.USTAR_FORMAT),
        "gnu-longname.tar": tar_image(sample(f"{long_dir}/{'k' * 120}"), tarfile.GNU_FORMAT),
        "pax-longpath.tar": tar_image(sample(f"{long_dir}/{'k' * 120}"), tarfile.PAX_FORMAT),
        "pax-unicode.tar": tar_image(sample("vidéo/çà-000001"), tarfile.PAX_FORMAT),
        "pax-global.tar": tar_image(sample("000001"), tarfile.PAX_FORMAT, pax_headers={"comment": "seed"}),
        "dirs-links.tar": tar_image(
            [("shard", "dir"), *sample("shard/000001"), ("shard/000001.lnk", "symlink:000001.jpg"),
             ("shard/000002.jpg", "link:shard/000001.jpg"), ("shard/README", b"no extension")],
            tarfile.GNU_FORMAT),
        "repeated-ext.tar": tar_image(sample("a") + [("a.txt", b"second caption")] + sample("b"), tarfile.USTAR_FORMAT),
        "empty.tar": tar_image([], tarfile.USTAR_FORMAT),
    }
    # Cut inside the second sample's jpg: the reader keeps the first sample and reports the cut.
    whole = tar_image(sample("000001") + sample("000002", 20), tarfile.USTAR_FORMAT)
    files["truncated.tar"] = whole[: 512 * 7 + 300]
    # pax records that change how the next member is read: an explicit size (the ustar field says
    # 0, as tarfile writes it for members of 8 GiB and more) and path.
    data = b"payload bytes that only the pax size record accounts for\n"
    files["pax-size-override.tar"] = (
        pax_header([(b"size", str(len(data)).encode()), (b"path", b"000001.txt")])
        + ustar_member(b"ignored-name.txt", data, size_field=0) + b"\0" * 1024)
    files["pax-empty-value.tar"] = (
        pax_header([(b"path", b""), (b"size", b"")]) + ustar_member(b"000001.txt", b"kept") + b"\0" * 1024)
    return files


TARGETS = {"safetensors": safetensors_seeds, "tar": tar_seeds}


def main(argv):
    for target in argv or sorted(TARGETS):
        out = ROOT / target
        out.mkdir(parents=True, exist_ok=True)
        files = TARGETS[target]()
        for name, data in files.items():
            (out / name).write_bytes(data)
        print(f"wrote {len(files)} {target} seeds to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])

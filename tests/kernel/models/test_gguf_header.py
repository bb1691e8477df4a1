"""The pure-Python GGUF header reader against real files written by the `gguf` package."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from app.kernel.errors import BadRequestError
from app.kernel.models.gguf_header import GGML_BLOCK_SIZES, QUANTIZATION_NAMES, GGUFError, read_gguf_header

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    endian: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
    chat_template: str | None = TEMPLATE,
    vocab: int = 300,
) -> Path:
    """A small but complete model file: typical metadata of every value type and three tensors."""
    w = gguf.GGUFWriter(path, arch=arch, endianess=endian)
    w.add_name("Tiny Test Llama")
    w.add_size_label("1.2M")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_head_count(8)
    w.add_head_count_kv(2)
    w.add_float32(f"{arch}.rope.freq_base", 10000.0)
    w.add_float64("test.f64", 2.5)
    w.add_int8("test.i8", -3)
    w.add_uint8("test.u8", 250)
    w.add_int16("test.i16", -30000)
    w.add_uint16("test.u16", 60000)
    w.add_int32("test.i32", -(2**31))
    w.add_int64("test.i64", -(2**40))
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_bool("test.flag", True)
    w.add_string("test.long", "x" * 10_000)  # longer than the reader keeps
    w.add_array("test.ints", [1, 2, 3])
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.add_tensor("token_embd.weight", np.zeros((vocab, 64), dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones((64,), dtype=np.float32))
    w.add_tensor("output.weight", np.ones((vocab, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny-1.2M-Q4_K_M.gguf")


def reference_values(path: Path) -> dict[str, object]:
    """What gguf.GGUFReader says each scalar/string key holds."""
    reader = gguf.GGUFReader(path)
    return {
        name: field.contents()
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.") and field.types and field.types[0] != gguf.GGUFValueType.ARRAY
    }


def test_agrees_with_gguf_reader(model_file: Path):
    header = read_gguf_header(model_file)
    reader = gguf.GGUFReader(model_file)

    assert header.version == 3 and not header.big_endian
    assert header.tensor_count == len(reader.tensors)
    assert header.keys == tuple(k for k in reader.fields if not k.startswith("GGUF."))
    assert header.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert header.tensor_data_offset == min(t.data_offset for t in reader.tensors)
    assert header.file_size == model_file.stat().st_size

    expected = reference_values(model_file)
    kept = {k: v for k, v in expected.items() if k != "test.long"}
    for key, value in kept.items():
        assert header.metadata[key] == pytest.approx(value), key
    assert "test.long" in header.keys and "test.long" not in header.metadata
    assert "tokenizer.ggml.tokens" in header.keys and "tokenizer.ggml.tokens" not in header.metadata


def test_derived_fields(model_file: Path):
    header = read_gguf_header(model_file)
    assert header.architecture == "llama"
    assert header.name == "Tiny Test Llama"
    assert header.context_length == 4096
    assert header.size_label == "1.2M"
    assert header.file_type == 15 and header.quantization == "Q4_K_M"
    assert header.has_chat_template is True
    assert (header.block_count, header.embedding_length, header.head_count, header.head_count_kv) == (
        2,
        64,
        8,
        2,
    )
    assert header.kind == "model"
    assert header.split_count is None


def test_file_without_chat_template(tmp_path: Path):
    header = read_gguf_header(write_gguf(tmp_path / "plain.gguf", chat_template=None))
    assert header.has_chat_template is False


def test_big_endian_file_reads_the_same_values(tmp_path: Path):
    path = write_gguf(tmp_path / "be.gguf", endian=gguf.GGUFEndian.BIG)
    header = read_gguf_header(path)
    assert header.big_endian
    assert header.context_length == 4096 and header.quantization == "Q4_K_M"
    assert header.metadata["test.i64"] == -(2**40)
    assert header.parameter_count == sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors)


def test_version_2_is_read_like_version_3(model_file: Path):
    data = bytearray(model_file.read_bytes())
    data[4:8] = struct.pack("<I", 2)  # v2 and v3 share the layout
    model_file.write_bytes(data)
    header = read_gguf_header(model_file)
    assert header.version == 2
    assert header.context_length == 4096 and header.has_chat_template


@pytest.mark.parametrize("version", [1, 4, 99])
def test_unsupported_versions_are_refused(model_file: Path, version: int):
    data = bytearray(model_file.read_bytes())
    data[4:8] = struct.pack("<I", version)
    model_file.write_bytes(data)
    with pytest.raises(GGUFError, match=f"version {version}"):
        read_gguf_header(model_file)


def test_quantisation_names_match_llama_cpp_file_types():
    for value, name in QUANTIZATION_NAMES.items():
        member = gguf.LlamaFileType(value).name
        assert member in (f"MOSTLY_{name}", f"ALL_{name}"), (value, name)


def test_block_sizes_match_ggml():
    for type_id, sizes in GGML_BLOCK_SIZES.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(type_id)] == sizes


def test_guessed_file_type_flag_is_ignored(tmp_path: Path):
    w = gguf.GGUFWriter(tmp_path / "g.gguf", arch="llama")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 | gguf.LlamaFileType.GUESSED)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    assert read_gguf_header(tmp_path / "g.gguf").quantization == "Q8_0"


def test_not_a_gguf_file_is_a_typed_error_naming_the_path(tmp_path: Path):
    path = tmp_path / "fake.gguf"
    path.write_text("<html>404 Not Found</html>" * 10)
    with pytest.raises(BadRequestError) as info:
        read_gguf_header(path)
    assert isinstance(info.value, GGUFError)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert info.value.reason == "not a GGUF file"


@pytest.mark.parametrize("content", [b"", b"GG", b"GGUF", b"GGUF\x03\x00\x00\x00\x01"])
def test_empty_and_tiny_files(tmp_path: Path, content: bytes):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError):
        read_gguf_header(path)


def test_missing_file_and_directory_are_typed_errors(tmp_path: Path):
    with pytest.raises(GGUFError, match="no such file"):
        read_gguf_header(tmp_path / "absent.gguf")
    with pytest.raises(GGUFError):
        read_gguf_header(tmp_path)


def _cut_points(path: Path) -> dict[str, int]:
    header = read_gguf_header(path)
    reader = gguf.GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    first_tensor_info = reader.fields["tokenizer.chat_template"].offset  # the last kv before the tensor table
    return {
        "in the fixed header": 20,
        "in the vocabulary": int(tokens.offset) + 200,
        "in the last key/value": int(first_tensor_info) + 10,
        "in the tensor table": header.tensor_data_offset - 20,
        "before the last tensor": max(t.data_offset for t in reader.tensors) - 8,
        "inside the last tensor": max(t.data_offset + t.n_bytes for t in reader.tensors) - 1,
    }


@pytest.mark.parametrize(
    "where",
    [
        "in the fixed header",
        "in the vocabulary",
        "in the last key/value",
        "in the tensor table",
        "before the last tensor",
        "inside the last tensor",
    ],
)
def test_truncated_files_are_reported_as_truncated(model_file: Path, where: str):
    cut = _cut_points(model_file)[where]
    with open(model_file, "r+b") as fh:
        fh.truncate(cut)
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_header(model_file)


def test_impossible_counts_fail_fast(model_file: Path):
    data = bytearray(model_file.read_bytes())
    data[16:24] = struct.pack("<Q", 2**62)  # metadata_kv_count
    model_file.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(GGUFError, match="corrupt"):
        read_gguf_header(model_file)
    assert time.perf_counter() - started < 1.0


def test_huge_string_array_length_is_not_trusted(model_file: Path):
    reader = gguf.GGUFReader(model_file)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    # parts: key length, key, value type, item type, count, ...
    count_offset = int(tokens.offset) + 8 + len("tokenizer.ggml.tokens") + 4 + 4
    data = bytearray(model_file.read_bytes())
    assert struct.unpack_from("<Q", data, count_offset)[0] == 300
    data[count_offset : count_offset + 8] = struct.pack("<Q", 2**60)
    model_file.write_bytes(data)
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_header(model_file)


def test_header_of_a_large_file_is_read_without_touching_the_weights(tmp_path: Path):
    """An 8 GiB model (sparse on disk) must read as fast as a tiny one: no tensor data is read."""
    path = tmp_path / "big.gguf"
    w = gguf.GGUFWriter(path, arch="qwen2")
    w.add_context_length(32768)
    w.add_token_list([f"t{i}" for i in range(20_000)])
    shape = (2**20, 2**10)  # 2**30 F32 elements: 4 GiB per tensor
    for name in ("a.weight", "b.weight"):
        w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * 2**30)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    header_end = path.stat().st_size
    os.truncate(path, header_end + 8 * 2**30 + 64)  # sparse: costs no disk, but reading it would take seconds
    started = time.perf_counter()
    header = read_gguf_header(path)
    elapsed = time.perf_counter() - started
    assert header.parameter_count == 2 * 2**30
    assert header.file_size > 8 * 2**30
    assert header.context_length == 32768
    assert elapsed < 0.5, f"took {elapsed:.2f} s"


def test_corrupt_string_length_inside_an_array_is_truncation_not_a_crash(tmp_path: Path):
    def gguf_string(b: bytes) -> bytes:
        return struct.pack("<Q", len(b)) + b

    # one key whose value is an array of 2 strings, the first claiming 2**64-1 bytes
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gguf_string(b"k") + struct.pack("<IIQ", 9, 8, 2)
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(body + struct.pack("<Q", 2**64 - 1) + b"x" * 100)
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_header(path)

"""sequences.zarr built from FASTA + BED: windows, identifiers, sampling and every input error."""

from __future__ import annotations

import gzip
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from zarr.core import sync as zarr_sync

from dmr_ray.alphabet import decode
from dmr_ray.errors import InputError
from dmr_ray.store import build_from_fasta_bed

rng = np.random.default_rng(7)
GENOME = {
    "chr1": "".join(rng.choice(list("ACGT"), 60)).lower()[:20] + "".join(rng.choice(list("ACGTN"), 40)),
    "chr2": "".join(rng.choice(list("ACGT"), 40)),
}


def write_fasta(path: Path, genome: dict[str, str], width: int = 10) -> Path:
    lines = []
    for name, seq in genome.items():
        lines.append(f">{name} description")
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    return write_fasta(tmp_path / "genome.fa", GENOME)


def write_bed(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "regions.bed"
    path.write_text(text)
    return path


def assert_no_store(folder: Path) -> None:
    assert [name for name in os.listdir(folder) if "seqs.zarr" in name] == []


def build(fasta: Path, bed: Path, **kwargs):
    return build_from_fasta_bed(fasta, bed, bed.parent / "seqs.zarr", **kwargs)


def test_intervals_as_they_are(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(
        tmp_path,
        "browser position chr1\ntrack name=peaks\n# comment\n\n"
        "chr1\t2\t10\tpeakA\t0\t+\nchr2 30 38 peakB 0 -\nchr1\t40\t48\tpeakC\n",
    )
    store = build(fasta, bed, chunk_size=2)
    assert store.seq_ids().tolist() == ["peakA", "peakB", "peakC"]
    assert [decode(row) for row in store.read()] == [
        GENOME["chr1"][2:10].upper(),
        GENOME["chr2"][30:38],
        GENOME["chr1"][40:48],
    ]
    coords = store.coordinates()
    assert coords is not None
    assert coords.chrom.tolist() == ["chr1", "chr2", "chr1"]
    assert coords.start.tolist() == [2, 30, 40] and coords.end.tolist() == [10, 38, 48]
    assert coords.strand.tolist() == ["+", "-", "."]
    assert store.length == 8 and store.n_chunks == 2
    assert "fasta+bed" in store.attrs["source"]


def test_centred_windows_and_minus_strand(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(tmp_path, "chr1\t10\t21\tx\t0\t+\nchr2\t5\t9\ty\t0\t-\n")
    store = build(fasta, bed, length=6)
    coords = store.coordinates()
    assert coords.start.tolist() == [12, 4] and coords.end.tolist() == [18, 10]
    forward = [decode(row) for row in store.read()]
    assert forward == [GENOME["chr1"][12:18].upper(), GENOME["chr2"][4:10]]
    flipped = build(fasta, bed, length=6, reverse_complement_minus=True, overwrite=True)
    expected = GENOME["chr2"][4:10][::-1].translate(str.maketrans("ACGT", "TGCA"))
    assert [decode(row) for row in flipped.read()] == [forward[0], expected]


def test_coordinate_ids_when_names_absent_or_repeated(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(tmp_path, "chr1 2 6 a\nchr1 2 6 a\nchr2 0 4 b\nchr1 2 6 .\n")
    store = build(fasta, bed)
    assert store.seq_ids().tolist() == ["chr1:2-6", "chr1:2-6#2", "chr2:0-4", "chr1:2-6#3"]


def test_ragged_lengths_need_length(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(tmp_path, "# header\nchr1 0 5\nchr1 10 15\nchr2 0 7\n")
    with pytest.raises(InputError, match=rf"{bed}: interval lengths are ragged.*line 4 is 7 bp.*--length"):
        build(fasta, bed)


def test_sampling_is_reproducible_and_inside_intervals(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(tmp_path, "chr1 0 12\nchr1 8 20\nchr2 30 40\nchr1 50 60\n")
    length = 8
    first = build(fasta, bed, length=length, sample=15, seed=3)
    tokens, ids, coords = first.read(), first.seq_ids().tolist(), first.coordinates()
    again = build(fasta, bed, length=length, sample=15, seed=3, overwrite=True)
    np.testing.assert_array_equal(again.read(), tokens)
    assert again.seq_ids().tolist() == ids and len(set(ids)) == 15
    union = {"chr1": [(0, 20), (50, 60)], "chr2": [(30, 40)]}
    for row, (chrom, start, end) in enumerate(zip(coords.chrom, coords.start, coords.end, strict=True)):
        assert any(lo <= start + length // 2 < hi for lo, hi in union[chrom])
        assert 0 <= start and end <= len(GENOME[chrom]) and end - start == length
        assert decode(tokens[row]) == GENOME[chrom][start:end].upper()
        assert ids[row] == f"{chrom}:{start}-{end}"
    other = build(fasta, bed, length=length, sample=15, seed=4, overwrite=True)
    assert other.seq_ids().tolist() != ids


def test_sampling_more_than_possible(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(tmp_path, "chr2 10 13\n")
    with pytest.raises(InputError, match="cannot sample 4 distinct 6 bp windows.*only 3"):
        build(fasta, bed, length=6, sample=4)


@pytest.mark.parametrize(
    "line, match",
    [
        ("chr1 5", r"line 2: expected at least 3 columns.*'chr1 5'"),
        ("chr1 5 x9", r"line 2: end is not an integer, got 'x9'"),
        ("chr1 -1 9", r"line 2: start must be >= 0, got -1"),
        ("chr1 9 9", r"line 2: start must be < end, got start=9 end=9"),
        ("chr1 1 9 n 0 ?", r"line 2: strand \(column 6\) must be .*got '\?'"),
        ("chrX 1 9", r"line 2: chromosome 'chrX' is not in FASTA .*genome.fa \(it has chr1, chr2\)"),
        ("chr2 35 43", r"line 2: interval chr2:35-43 runs past the end of chr2 \(length 40"),
    ],
)
def test_malformed_bed_lines(tmp_path: Path, fasta: Path, line: str, match: str) -> None:
    bed = write_bed(tmp_path, f"chr1 0 8\n{line}\n")
    with pytest.raises(InputError, match=rf"{bed}, {match}"):
        build(fasta, bed)
    assert_no_store(tmp_path)


def test_window_off_chromosome_end(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(tmp_path, "chr1 20 30\nchr2 36 38\n")
    with pytest.raises(InputError, match=rf"{bed}, line 2: the 10 bp window chr2:32-42 .* runs off chr2 \(length 40\)"):
        build(fasta, bed, length=10)


def test_empty_bed(tmp_path: Path, fasta: Path) -> None:
    bed = write_bed(tmp_path, "track name=x\n# nothing here\n")
    with pytest.raises(InputError, match=rf"{bed}: BED file has no intervals"):
        build(fasta, bed)


def test_missing_bed(tmp_path: Path, fasta: Path) -> None:
    with pytest.raises(InputError, match="cannot read BED file"):
        build(fasta, tmp_path / "absent.bed")


def test_empty_fasta(tmp_path: Path) -> None:
    fasta = tmp_path / "empty.fa"
    fasta.write_text("")
    bed = write_bed(tmp_path, "chr1 0 4\n")
    with pytest.raises(InputError, match=rf"{fasta}: cannot read FASTA"):
        build(fasta, bed)


def test_bad_symbol_in_last_record_leaves_no_store(tmp_path: Path) -> None:
    genome = dict(GENOME, chr3="ACGTACGTACRTACGT")
    fasta = write_fasta(tmp_path / "genome.fa", genome)
    bed = write_bed(tmp_path, "chr1 0 8\nchr2 0 8\nchr2 8 16\nchr3 4 12\n")
    with pytest.raises(InputError, match=r"'R' at record 'chr3' position 11 "):
        build(fasta, bed, chunk_size=1)
    assert_no_store(tmp_path)


def bgzip(data: bytes) -> bytes:
    """``data`` as a BGZF file (SAM spec 4.1): one gzip member per 60 kB with a ``BC`` extra subfield, then EOF."""

    def block(chunk: bytes) -> bytes:
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = deflate.compress(chunk) + deflate.flush()
        header = struct.pack("<4BI2BH", 31, 139, 8, 4, 0, 0, 255, 6) + struct.pack("<2BHH", 66, 67, 2, 25 + len(body))
        return header + body + struct.pack("<II", zlib.crc32(chunk), len(chunk))

    return b"".join(block(data[i : i + 60_000]) for i in range(0, len(data), 60_000)) + block(b"")


def test_bgzip_fasta(tmp_path: Path, fasta: Path) -> None:
    packed = tmp_path / "packed" / "genome.fa.gz"
    packed.parent.mkdir()
    packed.write_bytes(bgzip(fasta.read_bytes()))
    assert gzip.decompress(packed.read_bytes()) == fasta.read_bytes()  # a valid gzip file too
    bed = write_bed(tmp_path, "chr1\t2\t10\nchr2 30 38\n")
    plain = build_from_fasta_bed(fasta, bed, tmp_path / "plain.zarr")
    compressed = build_from_fasta_bed(packed, bed, tmp_path / "bgzip.zarr")
    np.testing.assert_array_equal(compressed.read(), plain.read())
    assert sorted(os.listdir(packed.parent)) == ["genome.fa.gz", "genome.fa.gz.fai", "genome.fa.gz.gzi"]


def test_bgzip_without_biopython_is_one_line(tmp_path: Path, fasta: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packed = tmp_path / "genome.fa.bgz"
    packed.write_bytes(bgzip(fasta.read_bytes()))
    monkeypatch.setitem(sys.modules, "Bio", None)
    with pytest.raises(InputError, match=rf"^{packed}: reading a bgzip-compressed FASTA needs Biopython \("):
        build(packed, write_bed(tmp_path, "chr1 0 4\n"))


def test_plain_gzip_fasta_is_one_line(tmp_path: Path, fasta: Path) -> None:
    packed = tmp_path / "genome.fa.gz"
    packed.write_bytes(gzip.compress(fasta.read_bytes()))
    bed = write_bed(tmp_path, "chr1 0 4\n")
    with pytest.raises(InputError) as info:
        build(packed, bed)
    message = str(info.value)
    assert message.startswith(f"{packed}: compressed with plain gzip") and "bgzip" in message
    assert "\n" not in message
    assert_no_store(tmp_path)


def test_bgzip_fasta_needs_a_gz_name(tmp_path: Path, fasta: Path) -> None:
    packed = tmp_path / "genome.fa"
    packed.write_bytes(bgzip(fasta.read_bytes()))
    with pytest.raises(InputError, match=rf"{packed}: bgzip-compressed, so its name must end in .gz or .bgz"):
        build(packed, write_bed(tmp_path, "chr1 0 4\n"))


def test_duplicate_record_names(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "genome.fa", GENOME)
    with fasta.open("a") as handle:
        handle.write(">chr2 again\nACGT\n")
    with pytest.raises(InputError) as info:
        build(fasta, write_bed(tmp_path, "chr1 0 4\n"))
    assert str(info.value) == (
        f"{fasta}: FASTA record name 'chr2' is used more than once; record names "
        "(the first word of each '>' line) must be unique"
    )
    assert_no_store(tmp_path)


def test_ctrl_c_removes_the_temporary_store(tmp_path: Path, fasta: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands in the main thread while Zarr writes a chunk on its IO thread; the write
    goes on there, and must not recreate the temporary store after the cleanup."""
    real_wait, calls = zarr_sync.wait, []

    def interrupted_wait(futures, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # without waiting: the write is still in flight
        return real_wait(futures, **kwargs)

    monkeypatch.setattr(zarr_sync, "wait", interrupted_wait)
    bed = write_bed(tmp_path, "".join(f"chr1 {i} {i + 8}\n" for i in range(40)))
    with pytest.raises(KeyboardInterrupt):
        build(fasta, bed, chunk_size=1)
    time.sleep(0.2)
    assert len(calls) == 6
    assert_no_store(tmp_path)
    assert not (tmp_path / "seqs.zarr").exists()

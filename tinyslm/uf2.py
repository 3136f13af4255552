"""UF2 images (github.com/microsoft/uf2), written and read in pure Python.

    loadable(elf bytes)                  -> [(address, bytes)]: the ELF's PT_LOAD contents at their
                                            load (physical) addresses, as a boot ROM sees them
    write(segments, family_id, ranges)   -> UF2 file bytes
    read(uf2 bytes)                      -> (family_id, {page address: 256 bytes}), every block checked

A UF2 file is a run of 512-byte blocks, each on its own: a 32-byte header (two magics, flags,
target address, payload size, block number, block count, family id), a 476-byte data field that
carries `payload` (256) bytes, and the end magic. Each block writes one 256-byte flash page. The
family id says which chip the file is for; the drive ignores blocks of other families. The ids are
board facts ([flash] uf2_family_id in boards/*.toml), never spelled here."""
import struct

from .errors import TslError

MAGIC0, MAGIC1, MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30     # "UF2\n", ..., at byte 508
FLAG_NOT_MAIN_FLASH, FLAG_FAMILY_ID = 0x00000001, 0x00002000
BLOCK, PAGE, DATA = 512, 256, 476
HEADER = struct.Struct("<8I")                                        # 32 bytes
PT_LOAD = 1


def loadable(elf, what="image"):
    """The bytes an ELF32 little-endian executable puts into memory: each PT_LOAD segment's file
    contents (filesz, not memsz: .bss is zeroed by the start-up code) at its physical address
    (.data's load image in flash, not its RAM address). Reads only the headers' own fields."""
    if len(elf) < 52 or elf[:4] != b"\x7fELF" or elf[4] != 1 or elf[5] != 1:
        raise TslError(f"{what}: not a 32-bit little-endian ELF file")
    phoff, = struct.unpack_from("<I", elf, 28)
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    if phentsize < 32 or phoff + phnum * phentsize > len(elf):
        raise TslError(f"{what}: program headers out of the file")
    segs = []
    for i in range(phnum):
        p_type, offset, _vaddr, paddr, filesz, _memsz = struct.unpack_from("<6I", elf, phoff + i * phentsize)
        if p_type != PT_LOAD or filesz == 0:
            continue
        if offset + filesz > len(elf):
            raise TslError(f"{what}: segment {i} ({filesz} bytes at file offset {offset}) runs past the file")
        segs.append((paddr, bytes(elf[offset:offset + filesz])))
    if not segs:
        raise TslError(f"{what}: no loadable segment")
    return sorted(segs)


def pages(segments, ranges):
    """{page address: 256 bytes} of `segments`, the gaps inside a page zero. Every byte must lie in
    one of `ranges` ([(start, end)], end exclusive: the chip's flash), and no two segments overlap."""
    out, owner = {}, {}
    for addr, data in segments:
        end = addr + len(data)
        if not any(lo <= addr and end <= hi for lo, hi in ranges):
            raise TslError(f"segment 0x{addr:08x}..0x{end:08x} is outside the flash "
                           + ", ".join(f"0x{lo:08x}..0x{hi:08x}" for lo, hi in ranges))
        a = addr
        while a < end:
            base, off = a & ~(PAGE - 1), a & (PAGE - 1)
            n = min(end - a, PAGE - off)
            page = out.setdefault(base, bytearray(PAGE))
            used = owner.setdefault(base, bytearray(PAGE))
            if any(used[off:off + n]):
                raise TslError(f"segments overlap at 0x{a:08x}")
            page[off:off + n] = data[a - addr:a - addr + n]
            used[off:off + n] = b"\x01" * n
            a += n
    return {k: bytes(v) for k, v in sorted(out.items())}


def write(segments, family_id, ranges):
    """-> the UF2 file that writes `segments` ([(address, bytes)]) into flash: one block per
    256-byte page, in address order, each flagged with `family_id`."""
    pg = pages(segments, ranges)
    blocks = []
    for i, (addr, data) in enumerate(pg.items()):
        hdr = HEADER.pack(MAGIC0, MAGIC1, FLAG_FAMILY_ID, addr, PAGE, i, len(pg), family_id)
        blocks.append(hdr + data + bytes(DATA - PAGE) + struct.pack("<I", MAGIC_END))
    return b"".join(blocks)


def read(data, what="UF2 file"):
    """-> (family_id, {page address: payload}) of a UF2 file written for one family, every block
    checked: magics, flags, payload size, numbering, one family, no page twice."""
    if not data or len(data) % BLOCK:
        raise TslError(f"{what}: {len(data)} bytes is not a whole number of {BLOCK}-byte blocks")
    n = len(data) // BLOCK
    fam, out = None, {}
    for i in range(n):
        b = data[i * BLOCK:(i + 1) * BLOCK]
        m0, m1, flags, addr, size, no, count, fid = HEADER.unpack_from(b)
        end, = struct.unpack_from("<I", b, BLOCK - 4)
        if (m0, m1, end) != (MAGIC0, MAGIC1, MAGIC_END):
            raise TslError(f"{what}: block {i}: bad magic")
        if flags & FLAG_NOT_MAIN_FLASH or not flags & FLAG_FAMILY_ID:
            raise TslError(f"{what}: block {i}: flags 0x{flags:08x} (want a family id, main flash)")
        if size != PAGE or addr % PAGE:
            raise TslError(f"{what}: block {i}: payload {size} bytes at 0x{addr:08x} (want {PAGE}, page-aligned)")
        if (no, count) != (i, n):
            raise TslError(f"{what}: block {i}: numbered {no} of {count}, expected {i} of {n}")
        if fam is not None and fid != fam:
            raise TslError(f"{what}: block {i}: family 0x{fid:08x}, earlier blocks 0x{fam:08x}")
        if addr in out:
            raise TslError(f"{what}: block {i}: page 0x{addr:08x} written twice")
        fam, out[addr] = fid, bytes(b[32:32 + PAGE])
    return fam, out


def copy_to_drive(image, drive):
    """Write a UF2 file onto a boot ROM's USB drive (a mounted folder): checked first, written in
    one go and flushed to the device; the chip flashes it and reboots, and the drive goes away."""
    import os
    from pathlib import Path
    image, drive = Path(image), Path(drive)
    data = image.read_bytes()
    read(data, str(image))
    dst = drive / image.name
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return dst


def main(argv=None):
    """python -m tinyslm.uf2 IMAGE DRIVE: what `tinyslm flash` runs for a UF2 drive."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tinyslm.uf2 IMAGE.uf2 DRIVE", file=sys.stderr)
        return 2
    try:
        dst = copy_to_drive(*args)
    except (TslError, OSError) as e:
        print(f"tinyslm.uf2: {e}", file=sys.stderr)
        return 2
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

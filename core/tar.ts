/**
 * A tar reader that seeks instead of streaming: it reads headers (and pax / GNU long-name
 * records) with positioned reads and skips over file data, so indexing a 1 GiB archive reads a
 * few KiB. Handles ustar (prefix + name), GNU (`ustar `), star, and v7 headers, pax `x` records
 * (`path`, `linkpath`, `size`), pax `g` global headers (skipped), GNU `L` / `K` long names,
 * base-256 sizes, and signed or unsigned header checksums, as GNU tar and Go's archive/tar do.
 */
import { ArchiveError } from "./errors.ts";

export interface TarEntry {
  /** Normalised with `normalizeEntryName`. */
  name: string;
  type: "file" | "directory" | "symlink" | "hardlink" | "other";
  /** Offset of the entry's data in the archive. */
  offset: number;
  /** Bytes of data in the archive (0 for folders, links, devices and fifos). */
  size: number;
  /** Target of a symlink (as written) or hardlink (normalised, an archive path). */
  linkName?: string;
}

export interface TarLimits {
  /** Default 100_000. */
  maxEntries?: number;
  /** Largest pax (`x`) or GNU long name (`L`, `K`) record. Default 1 MiB. */
  maxPaxSize?: number;
}

/** Up to `length` bytes from `offset`; fewer only at the end of the file. */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

const BLOCK = 512;
/** First read after a large skip: a header, its pax record and a little more. */
const MIN_READ = 4 * 1024;
/** Reads grow up to this while entries stay small, so many tiny entries cost few reads. */
const MAX_READ = 64 * 1024;

/**
 * Normalises an entry name: `//` collapsed, `.` segments dropped (so leading `./`, repeated
 * or not, goes), trailing `/` dropped. The archive root `./` becomes `""`.
 *
 * Names with `..` segments or a leading `/` are returned as they are (after normalisation),
 * with their real type: this reader is a faithful index, and the layout layer, which knows
 * which names it wants, rejects them. Nothing here ever resolves a name to a disk path.
 */
export function normalizeEntryName(name: string): string {
  const segments = name.split("/").filter((s) => s !== "" && s !== ".");
  return (name.startsWith("/") ? "/" : "") + segments.join("/");
}

export async function indexTar(readAt: ReadAt, size: number, limits: TarLimits = {}): Promise<TarEntry[]> {
  const maxEntries = limits.maxEntries ?? 100_000;
  const maxPaxSize = limits.maxPaxSize ?? 1024 * 1024;
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`bad archive size ${size}`);
  const reader = new BlockReader(readAt, size);
  const entries: TarEntry[] = [];
  let meta: Meta = {};
  let metaAt = -1;
  let offset = 0;

  for (;;) {
    const header = await reader.header(offset);
    if (!header) break;
    verifyChecksum(header, offset);
    const flag = String.fromCharCode(header[156]);
    const fieldSize = parseNumber(header, 124, 12, `bad size field in tar header at offset ${offset}`);
    let dataOffset = offset + BLOCK;
    if (flag === "S" && header[482] !== 0) dataOffset = await skipSparseExtensions(reader, dataOffset);
    const isMeta = flag === "x" || flag === "g" || flag === "L" || flag === "K";
    const dataSize = isMeta ? fieldSize : HEADER_ONLY.has(flag) ? 0 : (meta.size ?? fieldSize);

    if (flag === "x" || flag === "L" || flag === "K") {
      if (dataSize > maxPaxSize) throw new ArchiveError(`tar ${flag} record at offset ${offset} is larger than ${maxPaxSize} bytes`);
      const data = await reader.bytes(dataOffset, dataSize, `${flag} record at offset ${offset}`);
      if (flag === "x") parsePax(data, dataOffset, meta);
      else if (flag === "L") meta.longName = cString(data, 0, data.length);
      else meta.longLink = cString(data, 0, data.length);
      if (metaAt < 0) metaAt = offset;
    } else if (flag !== "g") {
      if (dataOffset + dataSize > size) {
        throw new ArchiveError(`truncated: entry ${normalizeEntryName(entryName(header, meta))} needs ${dataOffset + dataSize} bytes, archive has ${size}`);
      }
      if (entries.length >= maxEntries) throw new ArchiveError(`more than ${maxEntries} entries`);
      entries.push(makeEntry(header, flag, meta, dataOffset, dataSize));
      meta = {};
      metaAt = -1;
    }
    offset = dataOffset + Math.ceil(dataSize / BLOCK) * BLOCK;
  }
  if (metaAt >= 0) throw new ArchiveError(`truncated: tar header at offset ${metaAt} has no entry after it`);
  return entries;
}

/** Overrides for the next entry, from pax `x` records and GNU `L` / `K` records. */
interface Meta {
  path?: string;
  linkPath?: string;
  size?: number;
  longName?: string;
  longLink?: string;
  sparse?: boolean;
  sparseName?: string;
}

/** Types that never have data, whatever their size field says (as Go's archive/tar). */
const HEADER_ONLY = new Set(["1", "2", "3", "4", "5", "6"]);

function makeEntry(header: Uint8Array, flag: string, meta: Meta, offset: number, size: number): TarEntry {
  const fullName = entryName(header, meta);
  const name = normalizeEntryName(fullName);
  let type: TarEntry["type"] = "other";
  // Old tars marked folders with a trailing `/` on a regular-file header.
  if (flag === "0" || flag === "\0" || flag === "7") type = name !== "" && !fullName.endsWith("/") ? "file" : "directory";
  else if (flag === "5") type = "directory";
  else if (flag === "1") type = "hardlink";
  else if (flag === "2") type = "symlink";
  // A pax-format sparse file's data is a map followed by fragments, not the file's bytes.
  if (meta.sparse && type === "file") type = "other";
  const entry: TarEntry = { name, type, offset, size };
  if (type === "symlink" || type === "hardlink") {
    const link = meta.longLink ?? meta.linkPath ?? cString(header, 157, 100);
    entry.linkName = type === "hardlink" ? normalizeEntryName(link) : link;
  }
  return entry;
}

function entryName(header: Uint8Array, meta: Meta): string {
  return meta.longName ?? meta.sparseName ?? meta.path ?? rawName(header);
}

/** The name as the header spells it: POSIX and star headers prepend their prefix field. */
function rawName(header: Uint8Array): string {
  const name = cString(header, 0, 100);
  if (!matches(header, 257, "ustar\0")) return name; // GNU (`ustar  \0`) and v7 have no prefix
  const star = matches(header, 508, "tar\0");
  const prefix = cString(header, 345, star ? 131 : 155);
  return prefix ? `${prefix}/${name}` : name;
}

/** GNU sparse headers with the "extended" flag are followed by more headers of sparse map. */
async function skipSparseExtensions(reader: BlockReader, offset: number): Promise<number> {
  for (;;) {
    const block = await reader.bytes(offset, BLOCK, `sparse header at offset ${offset}`);
    offset += BLOCK;
    if (block[504] === 0) return offset;
  }
}

function verifyChecksum(header: Uint8Array, offset: number): void {
  const hint = offset === 0 && header[0] === 0x1f && header[1] === 0x8b ? " (the file is gzip-compressed)" : "";
  const error = `bad tar header checksum at offset ${offset}${hint}`;
  const stored = parseNumber(header, 148, 8, error);
  // The checksum field counts as eight spaces. Old tars summed signed chars; accept both, as tar does.
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += header[i];
    signed += header[i] < 0x80 ? header[i] : header[i] - 0x100;
  }
  if (stored !== unsigned && stored !== signed) throw new ArchiveError(error);
}

/** An octal field (padded with spaces or NULs), or big-endian base-256 when the high bit is set. */
function parseNumber(header: Uint8Array, start: number, length: number, error: string): number {
  if (header[start] & 0x80) {
    if (header[start] & 0x40) throw new ArchiveError(error); // negative
    let value = header[start] & 0x3f;
    for (let i = start + 1; i < start + length; i++) value = value * 256 + header[i];
    if (!Number.isSafeInteger(value)) throw new ArchiveError(error);
    return value;
  }
  let text = "";
  for (let i = start; i < start + length; i++) text += String.fromCharCode(header[i]);
  text = text.replace(/^[ \0]+|[ \0]+$/g, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new ArchiveError(error);
  const value = parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw new ArchiveError(error);
  return value;
}

/** Pax records `<length> <key>=<value>\n`; `length` counts bytes, the record included. */
function parsePax(data: Uint8Array, dataOffset: number, meta: Meta): void {
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break; // some writers pad with NULs
    const space = data.indexOf(0x20, i);
    const digits = space < 0 ? "" : utf8(data.subarray(i, space));
    const length = /^[0-9]{1,9}$/.test(digits) ? Number(digits) : 0;
    const end = i + length;
    const eq = data.indexOf(0x3d, space);
    if (length <= space - i + 1 || end > data.length || data[end - 1] !== 0x0a || eq < 0 || eq >= end) {
      throw new ArchiveError(`bad pax record at offset ${dataOffset + i}`);
    }
    const key = utf8(data.subarray(space + 1, eq));
    const value = utf8(data.subarray(eq + 1, end - 1));
    // An empty value removes the keyword: the header's own field applies again.
    if (key === "path") meta.path = value || undefined;
    else if (key === "linkpath") meta.linkPath = value || undefined;
    else if (key === "size") {
      if (value !== "" && !/^[0-9]+$/.test(value)) throw new ArchiveError(`bad pax size at offset ${dataOffset + i}`);
      meta.size = value === "" ? undefined : Number(value);
      if (meta.size !== undefined && !Number.isSafeInteger(meta.size)) throw new ArchiveError(`bad pax size at offset ${dataOffset + i}`);
    } else if (key.startsWith("GNU.sparse.")) {
      meta.sparse = true;
      if (key === "GNU.sparse.name") meta.sparseName = value || undefined; // the real name (PAX sparse 0.1, 1.0)
    }
    i = end;
  }
}

const decoder = new TextDecoder();
function utf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** A NUL-terminated string in a fixed-size field. */
function cString(bytes: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && end < bytes.length && bytes[end] !== 0) end++;
  return utf8(bytes.subarray(start, end));
}

function matches(bytes: Uint8Array, start: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (bytes[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Positioned reads through a window. A miss reads `readSize` bytes: it doubles (up to
 * MAX_READ) while the entries skipped over are smaller than the window, and falls back to
 * MIN_READ after a skip over a larger entry. So runs of tiny entries cost one read per
 * MAX_READ bytes, and a large entry costs at most one window of its data (MIN_READ unless it
 * follows a run of small entries), never a read of the rest.
 */
class BlockReader {
  private start = 0;
  private window: Uint8Array = new Uint8Array(0);
  private readSize = MIN_READ;

  constructor(
    private readonly readAt: ReadAt,
    private readonly size: number,
  ) {}

  /** The header block at `offset`, or `undefined` at the end of the archive. */
  async header(offset: number): Promise<Uint8Array | undefined> {
    if (offset >= this.size) return undefined; // no end blocks: EOF ends the archive
    if (this.size - offset < BLOCK) {
      // A short zero tail is padding; anything else is a cut header.
      const tail = await this.bytes(offset, this.size - offset, `header at offset ${offset}`);
      if (isZero(tail)) return undefined;
    }
    const block = await this.bytes(offset, BLOCK, `header at offset ${offset}`);
    return isZero(block) ? undefined : block; // one zero block ends it; a second is not needed
  }

  async bytes(offset: number, length: number, what: string): Promise<Uint8Array> {
    const end = this.start + this.window.length;
    if (offset >= this.start && offset + length <= end) {
      return this.window.subarray(offset - this.start, offset - this.start + length);
    }
    const gap = offset - end;
    this.readSize = this.window.length > 0 && gap >= 0 && gap < this.readSize ? Math.min(this.readSize * 2, MAX_READ) : MIN_READ;
    const want = Math.min(Math.max(length, this.readSize), this.size - offset);
    const data = want > 0 ? await this.readAt(offset, want) : new Uint8Array(0);
    if (data.length < length) {
      throw new ArchiveError(`truncated: ${what} needs ${offset + length} bytes, archive has ${offset + data.length}`);
    }
    this.start = offset;
    this.window = data;
    return data.subarray(0, length);
  }
}

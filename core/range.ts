/**
 * Single `Range: bytes=...` header parsing (RFC 9110 §14.1.2).
 * - `undefined`: no usable range; serve the whole body (a malformed header is ignored, as RFC 9110 allows).
 * - `"unsatisfiable"`: answer 416 with `Content-Range: bytes *\/size`.
 * - `{ start, end }`: end exclusive, clipped to the size.
 * Several ranges are answered as `{ ranges: [...] }` for multipart/byteranges.
 */
export interface ByteRange {
  start: number;
  /** Exclusive. */
  end: number;
}

export type RangeResult = undefined | "unsatisfiable" | ByteRange | { ranges: ByteRange[] };

/** At most this many ranges in one request; more is treated as malformed (ignored). */
const MAX_RANGES = 32;

export function parseRange(header: string | null, size: number): RangeResult {
  if (header === null) return undefined;
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!m) return undefined;
  const specs = m[1].split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (specs.length === 0 || specs.length > MAX_RANGES) return undefined;
  const ranges: ByteRange[] = [];
  for (const spec of specs) {
    const r = /^(\d*)-(\d*)$/.exec(spec);
    if (!r || (r[1] === "" && r[2] === "")) return undefined;
    if (r[1] === "") {
      // Suffix range: the last n bytes.
      const n = Number(r[2]);
      if (!Number.isSafeInteger(n)) return undefined;
      if (n === 0 || size === 0) continue;
      ranges.push({ start: Math.max(0, size - n), end: size });
      continue;
    }
    const start = Number(r[1]);
    const last = r[2] === "" ? size - 1 : Number(r[2]);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(last)) return undefined;
    // start > end, or a start at or past the size: this range cannot be served.
    if (last < start || start >= size) continue;
    ranges.push({ start, end: Math.min(last, size - 1) + 1 });
  }
  if (ranges.length === 0) return "unsatisfiable";
  if (ranges.length === 1) return ranges[0];
  return { ranges };
}

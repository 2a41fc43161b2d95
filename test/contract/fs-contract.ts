/**
 * One `FileSystem` contract, run against every implementation (memory, Node, later Deno), as
 * unstorage's `testDriver`. Everything here goes through the `WritableFileSystem` interface;
 * the setup hooks are the only place an implementation does its own thing (how a file is
 * replaced by rename, overwritten in place or truncated under a reader).
 *
 * Decisions pinned here:
 * - `list` of a file is `undefined` (it is not a folder), as is a path through a file.
 * - `read` and `stream` of a folder are `undefined`: there is no file there.
 * - `read` past the end answers an empty array; `stream` past the end errors the stream.
 * - Invalid paths (absolute, `..`, NUL) reject in every method, for every implementation.
 * - A stream opened before a replace-by-rename keeps serving the file it opened (POSIX).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FileInfo, WritableFileSystem } from "../../core/fs.ts";

export interface FileSystemFixture {
  fs: WritableFileSystem;
  /** Creates (or writes) a file, creating parent folders. */
  put(path: string, bytes: Uint8Array): Promise<void>;
  /** Replaces a file with a new one by rename: a new identity at the same path. */
  replaceByRename(path: string, bytes: Uint8Array): Promise<void>;
  /** Rewrites a file's content in place (same identity), truncating or extending it to `bytes`. */
  overwriteInPlace(path: string, bytes: Uint8Array): Promise<void>;
  /** Truncates a file in place. */
  truncate(path: string, size: number): Promise<void>;
  remove(path: string): Promise<void>;
  /** Creates an empty folder and its parents. */
  mkdir(path: string): Promise<void>;
  cleanup(): Promise<void>;
  /** `fs.statNow`, for a file system that lives in another process (Deno): its answer carried over. */
  statNow?(path: string): Promise<FileInfo | undefined | null>;
}

const MiB = 1024 * 1024;
const INVALID_PATHS = ["../x", "/etc/passwd", "a/../../x", "a/..", "..", "a\0b"];

/** Deterministic bytes whose value depends on the position, so an offset error shows. */
export function patterned(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export async function collect(stream: ReadableStream<Uint8Array>): Promise<{ bytes: Uint8Array; chunks: number[] }> {
  const parts: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, chunks: parts.map((p) => p.length) };
}

/**
 * Asserts equal bytes. vitest's deep equality walks typed arrays element by element (tens of
 * seconds for a few MiB), so compare here and report the first difference.
 */
export function expectBytes(actual: Uint8Array | undefined, expected: Uint8Array): void {
  expect(actual, "bytes").toBeInstanceOf(Uint8Array);
  expect(actual!.length, "length").toBe(expected.length);
  let first = -1;
  for (let i = 0; i < expected.length; i++) {
    if (actual![i] !== expected[i]) {
      first = i;
      break;
    }
  }
  expect(first, "index of the first differing byte").toBe(-1);
}

/** A source that emits `parts` then errors with `error` (or ends); records whether it was released. */
function sourceOf(parts: Uint8Array[], error?: Error): { stream: ReadableStream<Uint8Array>; released: () => boolean } {
  let i = 0;
  let released = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < parts.length) return controller.enqueue(parts[i++]);
      released = true;
      if (error) controller.error(error);
      else controller.close();
    },
    cancel() {
      released = true;
    },
  });
  return { stream, released: () => released };
}

const text = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function describeFileSystemContract(name: string, setup: () => Promise<FileSystemFixture>): void {
  describe(`FileSystem contract: ${name}`, () => {
    let t: FileSystemFixture;
    let fs: WritableFileSystem;
    beforeEach(async () => {
      t = await setup();
      fs = t.fs;
    });
    afterEach(async () => {
      await t?.cleanup();
    });

    describe("list", () => {
      it("names files and folders of a folder", async () => {
        await t.put("a/x.oci", text("x"));
        await t.put("a/y.oci", text("y"));
        await t.put("a/sub/z", text("z"));
        await t.mkdir("a/empty");
        expect((await fs.list("a"))?.sort()).toEqual(["empty", "sub", "x.oci", "y.oci"]);
        expect(await fs.list("a/empty")).toEqual([]);
        expect(await fs.list("a/sub")).toEqual(["z"]);
      });

      it("lists the root as the empty path", async () => {
        await t.put("top", text("t"));
        await t.mkdir("dir");
        expect((await fs.list(""))?.sort()).toEqual(["dir", "top"]);
      });

      it("is undefined for a missing folder, a file, and a path through a file", async () => {
        await t.put("f", text("f"));
        expect(await fs.list("missing")).toBeUndefined();
        expect(await fs.list("missing/deeper")).toBeUndefined();
        expect(await fs.list("f")).toBeUndefined();
        expect(await fs.list("f/x")).toBeUndefined();
      });
    });

    describe("stat", () => {
      it("describes a file", async () => {
        await t.put("d/f.bin", patterned(1000));
        const info = await fs.stat("d/f.bin");
        expect(info).toMatchObject({ kind: "file", size: 1000 });
        expect(Number.isFinite(info!.mtimeMs)).toBe(true);
        expect(info!.mtimeMs).toBeGreaterThan(0);
        expect(typeof info!.id).toBe("string");
        expect(info!.id).not.toBe("");
      });

      it("describes folders, including the root", async () => {
        await t.mkdir("d/e");
        expect(await fs.stat("d/e")).toMatchObject({ kind: "directory" });
        expect(await fs.stat("d")).toMatchObject({ kind: "directory" });
        expect(await fs.stat("")).toMatchObject({ kind: "directory" });
      });

      it("counts an empty file", async () => {
        await t.put("empty", new Uint8Array(0));
        expect(await fs.stat("empty")).toMatchObject({ kind: "file", size: 0 });
      });

      it("is undefined for a missing path and a path through a file", async () => {
        await t.put("f", text("f"));
        expect(await fs.stat("nope")).toBeUndefined();
        expect(await fs.stat("nope/deeper")).toBeUndefined();
        expect(await fs.stat("f/x")).toBeUndefined();
      });

      it("gives different files different ids", async () => {
        await t.put("a", text("same"));
        await t.put("b", text("same"));
        await t.mkdir("c");
        const ids = await Promise.all(["a", "b", "c"].map(async (p) => (await fs.stat(p))!.id));
        expect(new Set(ids).size).toBe(3);
      });

      it("changes the id when a file is replaced by rename", async () => {
        await t.put("r", text("old"));
        const before = (await fs.stat("r"))!;
        await t.replaceByRename("r", text("newer"));
        const after = (await fs.stat("r"))!;
        expect(after.id).not.toBe(before.id);
        expect(after.size).toBe(5);
      });

      it("keeps the id when a file is overwritten in place", async () => {
        await t.put("w", text("old"));
        const before = (await fs.stat("w"))!;
        await t.overwriteInPlace("w", text("longer"));
        const after = (await fs.stat("w"))!;
        expect(after.id).toBe(before.id);
        expect(after.size).toBe(6);
        expect(after.mtimeMs).toBeGreaterThanOrEqual(before.mtimeMs);
      });

      it("moves mtime forward on a same-size overwrite in place", async () => {
        await t.put("w", text("aaaa"));
        const before = (await fs.stat("w"))!;
        await sleep(30); // coarse file-system clocks tick every few ms
        await t.overwriteInPlace("w", text("bbbb"));
        const after = (await fs.stat("w"))!;
        expect(after.id).toBe(before.id);
        expect(after.size).toBe(before.size);
        expect(after.mtimeMs).toBeGreaterThan(before.mtimeMs);
      });
    });

    // Optional in the interface; every implementation here has it (the cached lookup needs it).
    describe("statNow", () => {
      const statNow = (path: string) => (t.statNow ? t.statNow(path) : Promise.resolve(fs.statNow!(path)));

      it("answers as stat does once stat has seen the path: file, folder, root", async () => {
        await t.put("d/f.bin", patterned(1000));
        for (const path of ["d/f.bin", "d", ""]) {
          const info = await fs.stat(path);
          expect(await statNow(path), path).toEqual(info);
        }
      });

      it("is undefined (or null: ask stat) for a missing path and a path through a file", async () => {
        await t.put("f", text("f"));
        for (const path of ["nope", "nope/deeper", "f/x"]) expect([undefined, null], path).toContain(await statNow(path));
      });

      it("never answers with a replaced file's old identity", async () => {
        await t.put("r", text("old"));
        const before = (await fs.stat("r"))!;
        expect(await statNow("r")).toEqual(before);
        await t.replaceByRename("r", text("newer"));
        const now = await statNow("r");
        if (now !== null) expect(now).toMatchObject({ id: (await fs.stat("r"))!.id, size: 5 });
        expect((await fs.stat("r"))!.id).not.toBe(before.id);
      });

      it("answers null, never throws, for paths the file system refuses", async () => {
        for (const path of INVALID_PATHS) expect(await statNow(path), JSON.stringify(path)).toBeNull();
      });
    });

    describe("read", () => {
      const data = patterned(10_000, 7);
      beforeEach(async () => {
        await t.put("r/data", data);
      });

      it.each([
        ["the whole file", 0, 10_000, 0, 10_000],
        ["a middle range", 1234, 500, 1234, 1734],
        ["the last byte", 9_999, 1, 9_999, 10_000],
        ["a range running past the end (shorter)", 9_990, 100, 9_990, 10_000],
        ["a huge length (the rest)", 5_000, Number.MAX_SAFE_INTEGER, 5_000, 10_000],
        ["zero length", 100, 0, 100, 100],
        ["at the end (empty)", 10_000, 10, 10_000, 10_000],
        ["past the end (empty)", 20_000, 10, 10_000, 10_000],
      ])("reads %s", async (_, offset, length, from, to) => {
        const got = await fs.read("r/data", offset, length);
        expectBytes(got, data.subarray(from, to));
      });

      it("reads an empty file", async () => {
        await t.put("r/empty", new Uint8Array(0));
        expect((await fs.read("r/empty", 0, 10))!.length).toBe(0);
      });

      it("is undefined for a missing file, a folder and a path through a file", async () => {
        expect(await fs.read("r/missing", 0, 10)).toBeUndefined();
        expect(await fs.read("r", 0, 10)).toBeUndefined();
        expect(await fs.read("r/data/x", 0, 10)).toBeUndefined();
      });

      it("rejects negative or fractional offsets and lengths", async () => {
        await expect(fs.read("r/data", -1, 10)).rejects.toThrow();
        await expect(fs.read("r/data", 0, -1)).rejects.toThrow();
        await expect(fs.read("r/data", 0.5, 10)).rejects.toThrow();
      });
    });

    describe("stream", () => {
      const data = patterned(100_000, 3);
      beforeEach(async () => {
        await t.put("s/data", data);
      });

      it.each([
        [0, 100_000],
        [1, 99_999],
        [65_535, 65_537],
        [99_999, 100_000],
        [0, 1],
        [500, 500],
        [100_000, 100_000],
      ])("streams exactly bytes %i-%i", async (start, end) => {
        const stream = await fs.stream("s/data", start, end);
        expect(stream).toBeDefined();
        const { bytes } = await collect(stream!);
        expect(bytes.length).toBe(end - start);
        expectBytes(bytes, data.subarray(start, end));
      });

      it("streams an empty file", async () => {
        await t.put("s/empty", new Uint8Array(0));
        const { bytes } = await collect((await fs.stream("s/empty", 0, 0))!);
        expect(bytes.length).toBe(0);
      });

      it("is undefined for a missing file, a folder and a path through a file", async () => {
        expect(await fs.stream("s/missing", 0, 10)).toBeUndefined();
        expect(await fs.stream("s", 0, 0)).toBeUndefined();
        expect(await fs.stream("s/data/x", 0, 10)).toBeUndefined();
      });

      it("rejects a range that ends before it starts, or negative bounds", async () => {
        await expect(fs.stream("s/data", 10, 5)).rejects.toThrow();
        await expect(fs.stream("s/data", -1, 5)).rejects.toThrow();
      });

      it("streams a multi-MiB file in several bounded chunks", async () => {
        const big = patterned(8 * MiB, 11);
        await t.put("s/big", big);
        const { bytes, chunks } = await collect((await fs.stream("s/big", 0, big.length))!);
        expect(chunks.length).toBeGreaterThan(1);
        expect(Math.min(...chunks)).toBeGreaterThan(0);
        expect(Math.max(...chunks)).toBeLessThanOrEqual(4 * MiB);
        expect(bytes.length).toBe(big.length);
        expectBytes(bytes, big);
      });

      it("serves interleaved streams of one file independently", async () => {
        const a = (await fs.stream("s/data", 0, 100_000))!;
        const b = (await fs.stream("s/data", 50_000, 100_000))!;
        const [ra, rb] = await Promise.all([collect(a), collect(b)]);
        expectBytes(ra.bytes, data);
        expectBytes(rb.bytes, data.subarray(50_000));
      });

      it("errors the stream when the range runs past the end of the file", async () => {
        const stream = await fs.stream("s/data", 99_000, 100_001);
        expect(stream).toBeDefined();
        await expect(collect(stream!)).rejects.toThrow();
      });

      describe("expect", () => {
        it("streams when the file is still the expected one", async () => {
          const info = (await fs.stat("s/data"))!;
          const { bytes } = await collect((await fs.stream("s/data", 10, 20, { expect: info }))!);
          expectBytes(bytes, data.subarray(10, 20));
        });

        it("is undefined after the file was replaced by rename", async () => {
          const info = (await fs.stat("s/data"))!;
          await t.replaceByRename("s/data", data); // same bytes, new file
          expect(await fs.stream("s/data", 0, 10, { expect: info })).toBeUndefined();
        });

        it("is undefined after the file changed size in place", async () => {
          const info = (await fs.stat("s/data"))!;
          await t.overwriteInPlace("s/data", data.subarray(0, 50_000));
          expect(await fs.stream("s/data", 0, 10, { expect: info })).toBeUndefined();
        });

        it("is undefined after a same-size overwrite in place", async () => {
          const info = (await fs.stat("s/data"))!;
          await sleep(30);
          await t.overwriteInPlace("s/data", patterned(100_000, 4));
          expect(await fs.stream("s/data", 0, 10, { expect: info })).toBeUndefined();
        });

        it.each<[string, (i: FileInfo) => FileInfo]>([
          ["id", (i) => ({ ...i, id: `${i.id}-other` })],
          ["size", (i) => ({ ...i, size: i.size + 1 })],
          ["mtime", (i) => ({ ...i, mtimeMs: i.mtimeMs - 1000 })],
        ])("is undefined when the %s differs", async (_, change) => {
          const info = (await fs.stat("s/data"))!;
          expect(await fs.stream("s/data", 0, 10, { expect: change(info) })).toBeUndefined();
        });

        it("checks an empty range too", async () => {
          const info = (await fs.stat("s/data"))!;
          expect(await fs.stream("s/data", 5, 5, { expect: { ...info, size: 1 } })).toBeUndefined();
        });
      });

      it("keeps serving the opened file after it is replaced by rename", async () => {
        const big = patterned(4 * MiB, 5);
        await t.put("s/big", big);
        const stream = (await fs.stream("s/big", 0, big.length))!;
        await t.replaceByRename("s/big", patterned(4 * MiB, 6));
        const { bytes } = await collect(stream);
        expectBytes(bytes, big);
      });

      it("errors when the file is truncated while streaming", async () => {
        const big = patterned(16 * MiB, 9);
        await t.put("s/big", big);
        const info = (await fs.stat("s/big"))!;
        const reader = (await fs.stream("s/big", 0, big.length, { expect: info }))!.getReader();
        const first = await reader.read();
        expect(first.done).toBe(false);
        let received = first.value!.length;
        await t.truncate("s/big", received);
        await expect(
          (async () => {
            for (;;) {
              const { done, value } = await reader.read();
              if (done) return;
              received += value.length;
            }
          })(),
        ).rejects.toThrow();
        expect(received).toBeLessThan(big.length);
      });

      it("can be cancelled before and after reading, and the file stays usable", async () => {
        const big = patterned(4 * MiB, 8);
        await t.put("s/big", big);
        const unread = (await fs.stream("s/big", 0, big.length))!;
        await unread.cancel();
        const reader = (await fs.stream("s/big", 0, big.length))!.getReader();
        await reader.read();
        await reader.cancel();
        await (await fs.stream("s/data", 3, 3))!.cancel();
        await fs.remove("s/big");
        expect(await fs.stream("s/big", 0, 1)).toBeUndefined();
        const { bytes } = await collect((await fs.stream("s/data", 0, 10))!);
        expectBytes(bytes, data.subarray(0, 10));
      });
    });

    describe("write", () => {
      it("writes a multi-chunk stream, creating parent folders", async () => {
        const parts = [patterned(70_000, 1), patterned(1, 2), patterned(300_000, 3)];
        await fs.write("w/deep/er/blob", sourceOf(parts).stream);
        const info = await fs.stat("w/deep/er/blob");
        expect(info).toMatchObject({ kind: "file", size: 370_001 });
        const all = await fs.read("w/deep/er/blob", 0, 370_001);
        expectBytes(all!.subarray(0, 70_000), parts[0]);
        expectBytes(all!.subarray(70_001), parts[2]);
      });

      it("writes an empty stream as an empty file", async () => {
        await fs.write("w/empty", sourceOf([]).stream);
        expect(await fs.stat("w/empty")).toMatchObject({ kind: "file", size: 0 });
      });

      it("leaves only the file in its folder", async () => {
        await fs.write("w/one", sourceOf([text("1")]).stream);
        expect(await fs.list("w")).toEqual(["one"]);
      });

      it("replaces an existing file with a new identity", async () => {
        await t.put("w/f", text("old"));
        const before = (await fs.stat("w/f"))!;
        await fs.write("w/f", sourceOf([text("brand new")]).stream);
        const after = (await fs.stat("w/f"))!;
        expect(after.id).not.toBe(before.id);
        expect(new TextDecoder().decode(await fs.read("w/f", 0, 100))).toBe("brand new");
      });

      it("leaves nothing behind when the source errors, and rethrows its error", async () => {
        await t.mkdir("w");
        const boom = new Error("source failed");
        await expect(fs.write("w/new", sourceOf([patterned(100_000), patterned(10)], boom).stream)).rejects.toBe(boom);
        expect(await fs.stat("w/new")).toBeUndefined();
        expect(await fs.list("w")).toEqual([]);
      });

      it("keeps the old file when replacing it fails", async () => {
        await t.put("w/keep", text("original"));
        const before = (await fs.stat("w/keep"))!;
        const boom = new Error("source failed");
        await expect(fs.write("w/keep", sourceOf([text("partial")], boom).stream)).rejects.toBe(boom);
        expect(await fs.stat("w/keep")).toEqual(before);
        expect(new TextDecoder().decode(await fs.read("w/keep", 0, 100))).toBe("original");
        expect(await fs.list("w")).toEqual(["keep"]);
      });

      it("rejects writing onto a folder, releases the source and leaves no temporary file", async () => {
        await t.mkdir("w/dir");
        const source = sourceOf([text("x"), text("y")]);
        await expect(fs.write("w/dir", source.stream)).rejects.toThrow();
        expect(source.released(), "source cancelled or read to its end").toBe(true);
        expect(await fs.list("w")).toEqual(["dir"]);
        expect(await fs.stat("w/dir")).toMatchObject({ kind: "directory" });
      });
    });

    describe("remove", () => {
      it("removes a file and is idempotent", async () => {
        await t.put("x/f", text("f"));
        await fs.remove("x/f");
        expect(await fs.stat("x/f")).toBeUndefined();
        await fs.remove("x/f");
        await fs.remove("nope/nothing");
        expect(await fs.list("x")).toEqual([]);
      });
    });

    describe("paths", () => {
      it.each(INVALID_PATHS)("rejects %j in every method", async (path) => {
        await t.put("inside", text("i"));
        await expect(fs.list(path)).rejects.toThrow();
        await expect(fs.stat(path)).rejects.toThrow();
        await expect(fs.read(path, 0, 1)).rejects.toThrow();
        await expect(fs.stream(path, 0, 1)).rejects.toThrow();
        await expect(fs.write(path, sourceOf([text("x")]).stream)).rejects.toThrow();
        await expect(fs.remove(path)).rejects.toThrow();
      });

      it("accepts `.` and empty segments as no-ops", async () => {
        await t.put("p/q", text("q"));
        expect(await fs.stat("p/./q")).toMatchObject({ kind: "file", size: 1 });
        expect(await fs.stat("p//q")).toMatchObject({ kind: "file", size: 1 });
        expect(await fs.list("p/")).toEqual(["q"]);
      });
    });
  });
}

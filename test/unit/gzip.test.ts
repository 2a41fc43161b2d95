import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { ArchiveError } from "../../core/errors.ts";
import { ingestGzipTar, isGzip, type GzipIngestOptions } from "../../core/gzip.ts";
import { defaultHasher } from "../../core/hash.ts";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { blob, bytesOf, gzip, image, imageIndex, layout, packTar, ref, sha256 } from "../fixtures/oci.ts";

/** A cache that counts the writes it is asked for. */
function cache() {
  const fs = new MemoryFileSystem();
  const counts = { write: 0 };
  fs.faults = (op) => {
    if (op === "write") counts.write++;
    return undefined;
  };
  return { fs, counts };
}

/** A stream of `bytes` in `chunk`-sized pieces, produced only when pulled. */
function source(bytes: Uint8Array, chunk = 16 * 1024) {
  let at = 0;
  const stats = { pulled: 0 };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (at >= bytes.length) return controller.close();
        const piece = bytes.slice(at, at + chunk);
        at += piece.length;
        stats.pulled = at;
        controller.enqueue(piece);
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, stats };
}

function ingest(archive: Uint8Array, fs: MemoryFileSystem, options: Partial<GzipIngestOptions> = {}) {
  return ingestGzipTar(source(archive).stream, { cache: fs, createHasher: defaultHasher, ...options });
}

async function rejects(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ArchiveError);
  expect((err as Error).message).toMatch(message);
}

/** Files in the cache (folders left out). */
async function cached(fs: MemoryFileSystem, dir = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await fs.list(dir)) ?? []) {
    const path = dir ? `${dir}/${name}` : name;
    if ((await fs.stat(path))?.kind === "directory") out.push(...(await cached(fs, path)));
    else out.push(path);
  }
  return out.sort();
}

const app = image({ layers: [{ "app.txt": "app" }] });
const multi = imageIndex([
  image({ platform: { architecture: "amd64", os: "linux" } }),
  image({ platform: { architecture: "arm64", os: "linux", variant: "v8" } }),
]);
const files = layout([{ image: app, annotations: ref("v1") }, { index: multi, annotations: ref("multi") }]);
const blobPaths = [...files.keys()].filter((n) => n.startsWith("blobs/")).sort();

describe("isGzip", () => {
  it("looks at the magic bytes", () => {
    expect(isGzip(gzip(bytesOf("x")))).toBe(true);
    expect(isGzip(bytesOf("ustar"))).toBe(false);
    expect(isGzip(new Uint8Array([0x1f]))).toBe(false);
  });
});

describe("ingestGzipTar", () => {
  it.each([
    ["no prefix, blobs first", { order: "blobs-first" as const }],
    ["./ prefix and folders", { prefix: "./" as const, folders: true }],
    ["pax headers", { pax: true, order: "index-first" as const }],
    ["GNU headers", { gnuLongNames: true }],
  ])("writes blobs to the cache and returns the other files (%s)", async (_, options) => {
    const { fs } = cache();
    const archive = await packTar(files, { ...options, gzip: true });
    const result = await ingest(archive, fs);

    expect([...result.files.keys()].sort()).toEqual(["index.json", "oci-layout"]);
    expect(result.files.get("index.json")).toEqual(files.get("index.json"));
    expect(await cached(fs)).toEqual(blobPaths);
    for (const path of blobPaths) {
      const digest = path.slice("blobs/".length).replace("/", ":");
      const bytes = files.get(path)!;
      expect(result.blobs.get(digest)).toEqual({ path, size: bytes.length });
      expect(await fs.read(path, 0, bytes.length + 1)).toEqual(bytes);
    }
  });

  it("writes nothing on a second ingest of the same blobs", async () => {
    const { fs, counts } = cache();
    const archive = await packTar(files, { gzip: true });
    const first = await ingest(archive, fs);
    expect(counts.write).toBe(blobPaths.length);
    counts.write = 0;
    const second = await ingest(archive, fs);
    expect(counts.write).toBe(0);
    expect(second).toEqual(first);
  });

  it("handles empty blobs and files", async () => {
    const { fs } = cache();
    const empty = blob("");
    const input = new Map([
      ["empty.json", new Uint8Array(0)],
      ["empty.txt", new Uint8Array(0)],
      [`blobs/sha256/${empty.digest.slice(7)}`, empty.bytes],
    ]);
    const result = await ingest(await packTar(input, { gzip: true }), fs);
    expect(result.files.get("empty.json")).toEqual(new Uint8Array(0));
    expect(result.others.get("empty.txt")).toEqual({ type: "file", ordinal: 1, size: 0, digest: empty.digest, head: new Uint8Array(0) });
    expect(result.blobs.get(empty.digest)).toEqual({ path: `blobs/sha256/${empty.digest.slice(7)}`, size: 0 });
    expect((await fs.stat(`blobs/sha256/${empty.digest.slice(7)}`))?.size).toBe(0);
  });

  it("rewrites a cached blob whose size is wrong", async () => {
    const { fs, counts } = cache();
    fs.set(blobPaths[0], bytesOf("stale"));
    await ingest(await packTar(files, { gzip: true }), fs);
    expect(counts.write).toBe(blobPaths.length);
    expect(await fs.read(blobPaths[0], 0, 1e6)).toEqual(files.get(blobPaths[0]));
  });

  it("rejects a blob that does not match its digest and leaves nothing in the cache", async () => {
    const { fs } = cache();
    const claimed = blob("what the name says");
    const broken = new Map([
      ["oci-layout", files.get("oci-layout")!],
      [`blobs/sha256/${claimed.digest.slice(7)}`, bytesOf("something else, and longer")],
    ]);
    await rejects(ingest(await packTar(broken, { gzip: true }), fs), new RegExp(`blob ${claimed.digest} does not match`));
    expect(await cached(fs)).toEqual([]);
  });

  it("rejects digest algorithms it cannot check", async () => {
    const { fs } = cache();
    const archive = await packTar(new Map([["blobs/md5/0cc175b9c0f1b6a831c399e269772661", bytesOf("a")]]), { gzip: true });
    await rejects(ingest(archive, fs), /unsupported digest algorithm in blobs\/md5\//);
  });

  it("ignores folders, links and files under blobs/ that are not blobs", async () => {
    const { fs } = cache();
    const extra = [
      { name: "blobs/sha256/README", type: "file" as const, data: "not a digest" },
      { name: "blobs/sha256/nested/x", type: "file" as const, data: "nested" },
      { name: "latest", type: "symlink" as const, linkname: "index.json" },
      { name: "copy", type: "link" as const, linkname: "index.json" },
    ];
    const archive = await packTar(files, { gzip: true, folders: true, prefix: "./", extra });
    const result = await ingest(archive, fs);
    expect(result.blobs.size).toBe(blobPaths.length);
    expect([...result.files.keys()].sort()).toEqual(["index.json", "oci-layout"]);
  });

  it("hashes files that are not metadata without keeping them, and notes links", async () => {
    const { fs } = cache();
    const big = randomBytes(3 * 1024 * 1024);
    const input = new Map<string, Uint8Array>([
      ["aaa/layer.tar", big],
      ["aaa/VERSION", bytesOf("1.0")],
      ["config.json", bytesOf("{}")],
      ["manifest.json", bytesOf("[]")],
    ]);
    const extra = [
      { name: "bbb/layer.tar", type: "symlink" as const, linkname: "../aaa/layer.tar" },
      { name: "ccc/layer.tar", type: "link" as const, linkname: "./aaa/layer.tar" },
    ];
    const result = await ingest(await packTar(input, { gzip: true, folders: true, extra }), fs, { maxFileSize: 1024 });
    expect([...result.files.keys()].sort()).toEqual(["config.json", "manifest.json"]);
    const layer = result.others.get("aaa/layer.tar")!;
    expect(layer).toMatchObject({ type: "file", size: big.length, digest: sha256(big), head: new Uint8Array(big.subarray(0, 4)) });
    expect(result.others.get("aaa/VERSION")?.digest).toBe(sha256(bytesOf("1.0")));
    expect(result.others.get("bbb/layer.tar")).toMatchObject({ type: "symlink", size: 0, linkName: "../aaa/layer.tar" });
    expect(result.others.get("ccc/layer.tar")).toMatchObject({ type: "hardlink", size: 0, linkName: "aaa/layer.tar" });
    expect(await cached(fs)).toEqual([]);

    // The second pass writes the wanted entries, and nothing else, checked against the digest.
    const again = await ingest(await packTar(input, { gzip: true, folders: true, extra }), fs, { extract: new Map([[layer.ordinal, layer.digest!]]) });
    const path = `blobs/sha256/${layer.digest!.slice(7)}`;
    expect(await cached(fs)).toEqual([path]);
    expect(again.blobs.get(layer.digest!)).toEqual({ path, size: big.length });
    expect(again.files.size + again.others.size).toBe(0);
    expect(Buffer.from((await fs.read(path, 0, big.length + 1))!).equals(big)).toBe(true);
  });

  it("a second pass finding other bytes at a position writes nothing", async () => {
    const { fs } = cache();
    const archive = await packTar(new Map([["a/layer.tar", bytesOf("changed")]]), { gzip: true });
    await rejects(ingest(archive, fs, { extract: new Map([[0, sha256(bytesOf("original"))]]) }), /does not match its content/);
    await rejects(ingest(archive, fs, { extract: new Map([[5, sha256(bytesOf("changed"))]]) }), /^archive changed between two reads$/);
    expect(await cached(fs)).toEqual([]);
  });

  it("rejects a truncated gzip stream", async () => {
    const { fs } = cache();
    const archive = await packTar(files, { gzip: true });
    for (const cut of [archive.length - 4, Math.floor(archive.length / 2), 10]) {
      await rejects(ingest(archive.slice(0, cut), fs), /^gzip: /);
    }
  });

  it("rejects a truncated tar inside a complete gzip stream", async () => {
    const { fs } = cache();
    const tar = await packTar(files);
    await rejects(ingest(gzip(tar.slice(0, tar.length - 2048 - 100)), fs), /^tar: /);
    expect((await cached(fs)).length).toBeLessThan(blobPaths.length);
  });

  it("rejects data that is not gzip", async () => {
    await rejects(ingest(await packTar(files), cache().fs), /^gzip: /);
  });

  it("enforces its limits", async () => {
    const archive = await packTar(files, { gzip: true });
    await rejects(ingest(archive, cache().fs, { maxFileSize: 10 }), /^index\.json is larger than 10 bytes$|^oci-layout is larger/);
    await rejects(ingest(archive, cache().fs, { maxEntries: 3 }), /^more than 3 entries$/);
    await rejects(ingest(archive, cache().fs, { maxDecompressedBytes: 4096 }), /^more than 4096 bytes once decompressed$/);
  });

  it("passes on the cache's own errors", async () => {
    const { fs } = cache();
    const failure = new Error("EIO: disk on fire");
    fs.failNext(blobPaths[0], "write", failure);
    const err = await ingest(await packTar(files, { gzip: true }), fs).catch((e: unknown) => e);
    expect(err).toBe(failure);
  });

  it("passes on the source's own errors", async () => {
    const archive = await packTar(files, { gzip: true });
    const failure = new Error("EIO: read failed");
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) return controller.error(failure);
        sent = true;
        controller.enqueue(archive.slice(0, archive.length / 2));
      },
    });
    const err = await ingestGzipTar(stream, { cache: cache().fs, createHasher: defaultHasher }).catch((e: unknown) => e);
    expect(err).toBe(failure);
  });

  it("streams large blobs through with backpressure", async () => {
    const big = new Uint8Array(randomBytes(8 * 1024 * 1024)); // incompressible
    const digest = sha256(big);
    const archive = await packTar(new Map([[`blobs/sha256/${digest.slice(7)}`, big]]), { gzip: true });
    const { stream, stats } = source(archive, 64 * 1024);
    // A cache that reads slowly and notes how far the source had been pulled when it was 1 MiB in.
    let pulledAtOneMiB = 0;
    const fs = new MemoryFileSystem();
    const write = fs.write.bind(fs);
    fs.write = async (path, data) => {
      let seen = 0;
      const slow = data.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          async transform(chunk, controller) {
            seen += chunk.length;
            if (!pulledAtOneMiB && seen >= 1024 * 1024) pulledAtOneMiB = stats.pulled;
            await new Promise((r) => setTimeout(r, 0));
            controller.enqueue(chunk);
          },
        }),
      );
      return write(path, slow);
    };
    const result = await ingestGzipTar(stream, { cache: fs, createHasher: defaultHasher });
    expect(result.blobs.get(digest)?.size).toBe(big.length);
    expect(pulledAtOneMiB).toBeGreaterThan(0);
    expect(pulledAtOneMiB).toBeLessThan(2 * 1024 * 1024);
  });
});

/**
 * Faults while serving: files replaced, rewritten, truncated or deleted under a download; I/O
 * errors and permissions; an unwritable or full cache. Downloads complete with the right bytes
 * or break; errors hit only the requests that touch the failing file; the process stays up.
 */
import { chmodSync, renameSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { concat, image, layer, layout, packTar, ref, sha256 } from "../fixtures/oci.ts";
import { memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";
import { get, MANIFEST_TYPES, rawRequest, type TempServer, tempServer } from "./helpers.ts";

// Larger than loopback socket buffers can hold, so a paused client leaves the server mid-blob.
const data = new Uint8Array(24 << 20).map((_, i) => (i * 13 + (i >> 9)) % 256);
const app = image({ layers: [layer({ "data.bin": data }, { gzip: false })] });
const other = image({ layers: [layer({ "data.bin": data.map((x) => x ^ 0x55) }, { gzip: false })] });
const small = image({ layers: [{ "s.txt": "small\n" }] });
const L = app.layers[0];

const archiveOf = (img = app, tag = "latest") => packTar(layout([{ image: img, annotations: ref(tag) }]));
/** Same length as archiveOf(app), other bytes in the layer (so an in-place rewrite keeps the size). */
async function sameSizeOtherBytes(): Promise<Uint8Array> {
  const files = layout([{ image: app, annotations: ref("latest") }]);
  const path = `blobs/${L.digest.replace(":", "/")}`;
  files.set(path, files.get(path)!.map((x) => x ^ 0xff));
  return packTar(files);
}

async function readSome(reader: ReadableStreamDefaultReader<Uint8Array>, n: number): Promise<Uint8Array[]> {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value);
  }
  return parts;
}
async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>, parts: Uint8Array[]): Promise<{ bytes: Uint8Array; error?: unknown }> {
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) parts.push(r.value);
  } catch (error) {
    return { bytes: concat(...parts), error };
  }
  return { bytes: concat(...parts) };
}

describe("faults under a download (fetch handler, in-memory file system)", () => {
  let r: MemoryRegistry;
  beforeAll(async () => {
    r = memoryRegistry();
    r.images.set("keep/latest.oci", await archiveOf(small));
  });

  const start = async (path: string) => {
    const res = await r.get(`/v2/${path}/blobs/${L.digest}`);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    return { reader, parts: await readSome(reader, 2) };
  };

  it("replaced by rename mid-download: completes with the old bytes; the next request sees the new file", async () => {
    r.images.set("ren/latest.oci", await archiveOf());
    const { reader, parts } = await start("ren");
    r.images.set("ren/.latest.oci.tmp", await archiveOf(other));
    r.images.rename("ren/.latest.oci.tmp", "ren/latest.oci");
    const { bytes, error } = await readRest(reader, parts);
    expect(error).toBeUndefined();
    expect(sha256(bytes)).toBe(L.digest);
    expect((await r.get(`/v2/ren/blobs/${L.digest}`)).status).toBe(404);
    expect((await r.get("/v2/ren/manifests/latest")).headers.get("docker-content-digest")).toBe(other.manifest.digest);
  });

  it("overwritten in place mid-download (first, hashed download): aborted", async () => {
    r.images.set("inplace/latest.oci", await archiveOf());
    const { reader, parts } = await start("inplace");
    r.images.set("inplace/latest.oci", await sameSizeOtherBytes()); // same file, new bytes
    const { bytes, error } = await readRest(reader, parts);
    expect(error).toBeDefined();
    expect(bytes.length).toBeLessThan(L.size);
  });

  it("overwritten in place mid-download of an already verified blob: aborted by the stat before the last chunk", async () => {
    r.images.set("inplace2/latest.oci", await archiveOf());
    const first = await r.get(`/v2/inplace2/blobs/${L.digest}`);
    expect(sha256(new Uint8Array(await first.arrayBuffer()))).toBe(L.digest); // verified now
    const { reader, parts } = await start("inplace2");
    r.images.set("inplace2/latest.oci", await sameSizeOtherBytes());
    const { bytes, error } = await readRest(reader, parts);
    expect(error).toBeDefined();
    expect(bytes.length).toBeLessThan(L.size);
    expect(r.logs.some((l) => l.msg === "download aborted" && l.fields?.file === "inplace2/latest.oci")).toBe(true);
  });

  it("truncated in place mid-download: aborted", async () => {
    const full = await archiveOf();
    r.images.set("trunc/latest.oci", full);
    const { reader, parts } = await start("trunc");
    r.images.set("trunc/latest.oci", full.subarray(0, 4096));
    const { bytes, error } = await readRest(reader, parts);
    expect(error).toBeDefined();
    expect(bytes.length).toBeLessThan(L.size);
  });

  it("deleted: the running download completes, later requests 404", async () => {
    r.images.set("del/latest.oci", await archiveOf());
    const { reader, parts } = await start("del");
    r.images.delete("del/latest.oci");
    const { bytes, error } = await readRest(reader, parts);
    expect(error).toBeUndefined();
    expect(sha256(bytes)).toBe(L.digest);
    for (const path of ["/v2/del/manifests/latest", `/v2/del/blobs/${L.digest}`]) {
      const res = await r.get(path);
      expect(res.status).toBe(404);
      expect((await res.json()).errors[0].code).toBe("NAME_UNKNOWN");
    }
  });

  it.each([
    ["stat", "EIO"],
    ["read", "EIO"],
    ["read", "EACCES"],
    ["stream", "EACCES"],
    ["stream", "ESTALE"],
  ] as const)("%s fails with %s: 500 UNKNOWN for that request only, then served again", async (op, code) => {
    const path = `io-${op}-${code.toLowerCase()}/latest.oci`;
    const name = path.split("/")[0];
    r.images.set(path, await archiveOf());
    if (op === "stream") expect((await r.get(`/v2/${name}/manifests/latest`)).status).toBe(200); // indexed first
    r.images.failNext(path, op, Object.assign(new Error(`${code}: injected`), { code }));
    const url = op === "stream" ? `/v2/${name}/blobs/${L.digest}` : `/v2/${name}/manifests/latest`;
    const failed = await r.get(url);
    expect(failed.status).toBe(500);
    expect((await failed.json()).errors[0].code).toBe("UNKNOWN");
    // Other images are not disturbed, even meanwhile.
    expect((await r.get("/v2/keep/manifests/latest")).status).toBe(200);
    const again = await r.get(url);
    expect(again.status).toBe(200);
    await again.arrayBuffer();
  });

  it("an I/O error in the middle of a blob breaks that download only", async () => {
    r.images.set("pull/latest.oci", await archiveOf());
    const res = await r.get(`/v2/pull/blobs/${L.digest}`);
    const reader = res.body!.getReader();
    const parts = await readSome(reader, 1);
    r.images.failNext("pull/latest.oci", "pull");
    const { error } = await readRest(reader, parts);
    expect(error).toBeDefined();
    const again = await r.get(`/v2/pull/blobs/${L.digest}`);
    expect(sha256(new Uint8Array(await again.arrayBuffer()))).toBe(L.digest);
    expect(r.images.openStreams).toBe(0);
  });

  it("a cache that cannot be written: gzipped archives get 500 and a clear log line, plain ones are served", async () => {
    const m = memoryRegistry();
    m.images.set("plain/latest.oci", await archiveOf(small));
    m.images.set("zipped/latest.oci", await packTar(layout([{ image: small, annotations: ref("latest") }]), { gzip: true }));
    m.cache.faults = (op) => (op === "write" ? Object.assign(new Error("EACCES: permission denied, open cache/blobs/x"), { code: "EACCES" }) : undefined);
    const res = await m.get("/v2/zipped/manifests/latest");
    expect(res.status).toBe(500);
    expect(m.logs.find((l) => l.msg === "archive unusable" && l.fields?.file === "zipped/latest.oci")?.fields?.problem).toMatch(/EACCES/);
    expect((await m.get("/v2/plain/manifests/latest")).status).toBe(200);
    // Writable again: served on the next request.
    m.cache.faults = undefined;
    expect((await m.get("/v2/zipped/manifests/latest")).status).toBe(200);
  });

  it("a full cache (--max-cache-size): gzipped archives that do not fit get 500 with 'cache full', others are served", async () => {
    const big = image({ layers: [layer({ "x.bin": data }, { gzip: false })] });
    const m = memoryRegistry({ limits: { maxCacheBytes: 1 << 20 } });
    m.images.set("small/latest.oci", await packTar(layout([{ image: small, annotations: ref("latest") }]), { gzip: true }));
    m.images.set("big/latest.oci", await packTar(layout([{ image: big, annotations: ref("latest") }]), { gzip: true }));
    m.images.set("plain/latest.oci", await archiveOf());
    expect((await m.get("/v2/small/manifests/latest")).status).toBe(200);
    const res = await m.get("/v2/big/manifests/latest");
    expect(res.status).toBe(500);
    expect(m.logs.find((l) => l.fields?.file === "big/latest.oci")?.fields?.problem).toMatch(/cache full/);
    expect((await m.get("/v2/plain/manifests/latest")).status).toBe(200);
    expect((await m.get("/v2/small/manifests/latest")).status).toBe(200);
    // No partial blob was left behind.
    for (const name of (await m.cache.list("blobs/sha256")) ?? []) expect(big.layers.map((l) => l.digest.slice(7))).not.toContain(name);
  });
});

describe("faults under a download (Node server, real files)", () => {
  let t: TempServer;
  beforeAll(async () => {
    t = await tempServer();
    t.write("keep/latest.oci", await archiveOf(small));
  });
  afterAll(() => t.close());

  /** Starts a download and reads its first bytes, pausing the socket. */
  async function startDownload(name: string) {
    const { connect } = await import("node:net");
    const socket = connect(t.port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let ended = false;
    let error: string | undefined;
    socket.on("data", (d) => chunks.push(d));
    socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code));
    socket.on("close", () => (ended = true));
    socket.write(get(`/v2/${name}/blobs/${L.digest}`));
    while (Buffer.concat(chunks).length < 64 * 1024) await new Promise((r) => setTimeout(r, 5));
    socket.pause();
    return {
      async finish(): Promise<{ body: Buffer; complete: boolean; error?: string }> {
        socket.resume();
        const deadline = Date.now() + 10_000;
        for (;;) {
          const all = Buffer.concat(chunks);
          const split = all.indexOf("\r\n\r\n");
          const length = Number(/content-length: (\d+)/i.exec(all.subarray(0, split).toString())?.[1]);
          const body = all.subarray(split + 4);
          if (body.length >= length) {
            socket.destroy();
            return { body, complete: true };
          }
          if (ended || Date.now() > deadline) {
            socket.destroy();
            return { body, complete: false, error };
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      },
    };
  }

  it("replaced by rename: the download completes with the old bytes", async () => {
    t.write("ren/latest.oci", await archiveOf());
    const d = await startDownload("ren");
    writeFileSync(join(t.dir, "ren/.tmp"), await archiveOf(other));
    renameSync(join(t.dir, "ren/.tmp"), join(t.dir, "ren/latest.oci"));
    const { body, complete } = await d.finish();
    expect(complete).toBe(true);
    expect(sha256(body)).toBe(L.digest);
  });

  it("overwritten in place: the client sees a broken transfer", async () => {
    t.write("inplace/latest.oci", await archiveOf());
    const d = await startDownload("inplace");
    writeFileSync(join(t.dir, "inplace/latest.oci"), await sameSizeOtherBytes());
    const { body, complete } = await d.finish();
    expect(complete).toBe(false);
    expect(body.length).toBeLessThan(L.size);
  });

  it("truncated in place: the client sees a broken transfer", async () => {
    t.write("trunc/latest.oci", await archiveOf());
    const d = await startDownload("trunc");
    truncateSync(join(t.dir, "trunc/latest.oci"), 8192);
    const { complete } = await d.finish();
    expect(complete).toBe(false);
  });

  it("deleted: the download completes, later requests 404", async () => {
    t.write("del/latest.oci", await archiveOf());
    const d = await startDownload("del");
    rmSync(join(t.dir, "del/latest.oci"));
    const { body, complete } = await d.finish();
    expect(complete).toBe(true);
    expect(sha256(body)).toBe(L.digest);
    expect((await rawRequest(t.port, get("/v2/del/manifests/latest", { Accept: MANIFEST_TYPES }))).status).toBe(404);
  });

  // An unreadable file (mode 000): test/hostile/unreadable.test.ts (the server runs as nobody when the tests run as root).

  it("an unwritable cache folder: gzipped archives fail clearly, plain ones are served", async () => {
    const u = await tempServer();
    try {
      // The cache path is a file: nothing can be created under it, even as root.
      rmSync(u.cacheDir, { recursive: true, force: true });
      writeFileSync(u.cacheDir, "not a folder");
      u.write("zipped/latest.oci", await packTar(layout([{ image: small, annotations: ref("latest") }]), { gzip: true }));
      u.write("plain/latest.oci", await archiveOf(small));
      const res = await rawRequest(u.port, get("/v2/zipped/manifests/latest", { Accept: MANIFEST_TYPES }));
      expect(res.status).toBe(500);
      expect(JSON.parse(res.body.toString()).errors[0].code).toBe("UNKNOWN");
      expect(u.logs.find((l) => l.msg === "archive unusable" && l.file === "zipped/latest.oci")?.problem).toMatch(/ENOTDIR|EEXIST|EACCES|not a directory/i);
      expect((await rawRequest(u.port, get("/v2/plain/manifests/latest", { Accept: MANIFEST_TYPES }))).status).toBe(200);
    } finally {
      rmSync(u.cacheDir, { force: true });
      await u.close();
    }
  });

  it("is still up and serving after all of it", async () => {
    expect((await rawRequest(t.port, get("/v2/keep/manifests/latest", { Accept: MANIFEST_TYPES }))).status).toBe(200);
    expect(t.logs.filter((l) => l.msg === "uncaught exception" || l.msg === "unhandled")).toEqual([]);
  });
});

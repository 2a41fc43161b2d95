/**
 * Resources: file handles are closed on every path (completed, disconnected, aborted, failed
 * downloads), blob streams open at once are capped (queue, then 429 TOOMANYREQUESTS), and a slow
 * client makes the server read no further ahead than it sends (backpressure, flat memory).
 */
import { connect, type Socket } from "node:net";
import { truncateSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { image, layer, layout, packTar, ref } from "../fixtures/oci.ts";
import { memoryRegistry } from "../helpers/memory-registry.ts";
import { eventually, get, MANIFEST_TYPES, openFilesUnder, rawRequest, sleep, type TempServer, tempServer } from "./helpers.ts";

const MiB = 1 << 20;
const pattern = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * seed + (i >> 10)) % 256);
const big = image({ layers: [layer({ "big.bin": pattern(16 * MiB, 7) }, { gzip: false })] });
const L = big.layers[0];

/** Opens a connection, sends a blob request and reads until `bytes` arrived, then pauses. */
async function openDownload(port: number, path: string, bytes = 1): Promise<{ socket: Socket; received: () => number; head: () => string }> {
  const socket = connect(port, "127.0.0.1");
  let received = 0;
  let head = "";
  socket.on("data", (d) => {
    if (!head) head = d.subarray(0, 200).toString("latin1");
    received += d.length;
  });
  socket.on("error", () => {});
  socket.write(get(path));
  const deadline = Date.now() + 5000;
  while (received < bytes && Date.now() < deadline) await sleep(5);
  socket.pause();
  return { socket, received: () => received, head: () => head };
}

describe("file handles are closed on every path (Node server, /proc/self/fd)", () => {
  let t: TempServer;
  beforeAll(async () => {
    t = await tempServer();
    t.write("big/latest.oci", await packTar(layout([{ image: big, annotations: ref("latest") }])));
    t.write("gz/latest.oci", await packTar(layout([{ image: big, annotations: ref("latest") }]), { gzip: true }));
    // Warm up: index both archives and verify the layer once.
    for (const name of ["big", "gz"]) {
      const res = await fetch(`http://127.0.0.1:${t.port}/v2/${name}/blobs/${L.digest}`);
      await res.arrayBuffer();
    }
  }, 60_000);
  afterAll(() => t.close());

  it("after completed, ranged, HEAD, disconnected, 404 and aborted downloads, no file under --dir or the cache stays open", async () => {
    const before = openFilesUnder(t.dir) + openFilesUnder(t.cacheDir);
    const requestsBefore = t.logs.filter((l) => l.msg === "request").length;
    const jobs: Array<Promise<unknown>> = [];
    for (let i = 0; i < 4; i++) {
      for (const name of ["big", "gz"]) {
        jobs.push(fetch(`http://127.0.0.1:${t.port}/v2/${name}/blobs/${L.digest}`).then((r) => r.arrayBuffer()));
        jobs.push(fetch(`http://127.0.0.1:${t.port}/v2/${name}/blobs/${L.digest}`, { headers: { Range: `bytes=${i * 1000}-${i * 1000 + 99_999}` } }).then((r) => r.arrayBuffer()));
        jobs.push(fetch(`http://127.0.0.1:${t.port}/v2/${name}/blobs/${L.digest}`, { method: "HEAD" }));
        jobs.push(fetch(`http://127.0.0.1:${t.port}/v2/${name}/blobs/sha256:${"e".repeat(64)}`).then((r) => r.arrayBuffer()));
        // Client goes away mid-blob.
        jobs.push(openDownload(t.port, `/v2/${name}/blobs/${L.digest}`, 100_000).then(({ socket }) => socket.destroy()));
        // fetch aborted mid-body.
        jobs.push(
          (async () => {
            const ac = new AbortController();
            const res = await fetch(`http://127.0.0.1:${t.port}/v2/${name}/blobs/${L.digest}`, { signal: ac.signal });
            const reader = res.body!.getReader();
            await reader.read();
            ac.abort();
            await reader.read().catch(() => {});
          })(),
        );
      }
    }
    await Promise.all(jobs);
    await eventually(() => openFilesUnder(t.dir) + openFilesUnder(t.cacheDir) <= before, 10_000, "file handles to close");
    // Every response closed (its access-log line is written on close): none hangs half-sent.
    await eventually(() => t.logs.filter((l) => l.msg === "request").length >= requestsBefore + jobs.length, 10_000, "every response to close");
  }, 60_000);

  it("a download broken by truncation closes its file", async () => {
    t.write("trunc/latest.oci", await packTar(layout([{ image: big, annotations: ref("latest") }])));
    const before = openFilesUnder(t.dir);
    const d = await openDownload(t.port, `/v2/trunc/blobs/${L.digest}`, 100_000);
    expect(openFilesUnder(t.dir)).toBeGreaterThan(before);
    truncateSync(join(t.dir, "trunc/latest.oci"), 4096);
    d.socket.resume();
    await eventually(() => d.socket.destroyed || d.socket.readableEnded, 10_000, "the broken transfer");
    await eventually(() => openFilesUnder(t.dir) <= before, 10_000, "the file to close");
    d.socket.destroy();
  });
});

describe("a cap on blob streams open at once", () => {
  let t: TempServer;
  beforeAll(async () => {
    t = await tempServer({ limits: { maxOpenBlobs: 2, maxQueuedBlobs: 1 } });
    t.write("big/latest.oci", await packTar(layout([{ image: big, annotations: ref("latest") }])));
    await (await fetch(`http://127.0.0.1:${t.port}/v2/big/manifests/latest`, { headers: { Accept: MANIFEST_TYPES } })).arrayBuffer();
  });
  afterAll(() => t.close());

  it("streams at most N at once, queues the next, answers 429 past the queue, and frees slots when clients leave", async () => {
    const blob = `/v2/big/blobs/${L.digest}`;
    const a = await openDownload(t.port, blob, 1000);
    const b = await openDownload(t.port, blob, 1000);
    expect(a.head()).toMatch(/^HTTP\/1.1 200/);
    expect(b.head()).toMatch(/^HTTP\/1.1 200/);
    const queued = await openDownload(t.port, blob, 0);
    await sleep(100);
    expect(queued.received()).toBe(0); // waiting for a slot
    const refused = await rawRequest(t.port, get(blob));
    expect(refused.status).toBe(429);
    expect(refused.headers["retry-after"]).toBe("1");
    expect(JSON.parse(refused.body.toString()).errors[0].code).toBe("TOOMANYREQUESTS");
    expect(openFilesUnder(t.dir)).toBeLessThanOrEqual(2);
    // Manifests and HEAD do not need a slot.
    expect((await rawRequest(t.port, get(blob, {}, "HEAD"))).status).toBe(200);
    expect((await rawRequest(t.port, get("/v2/big/manifests/latest", { Accept: MANIFEST_TYPES }))).status).toBe(200);
    // One client leaves: the queued one starts.
    queued.socket.resume();
    a.socket.destroy();
    await eventually(() => queued.received() > 0, 5000, "the queued download to start");
    expect(queued.head()).toMatch(/^HTTP\/1.1 200/);
    b.socket.destroy();
    queued.socket.destroy();
    await eventually(() => openFilesUnder(t.dir) === 0, 5000, "all files closed");
    const after = await fetch(`http://127.0.0.1:${t.port}${blob}`);
    expect(after.status).toBe(200);
    expect((await after.arrayBuffer()).byteLength).toBe(L.size);
  });
});

describe("backpressure: a slow client does not make the server read ahead", () => {
  it("fetch handler: the file is read one chunk ahead of the consumer", async () => {
    const r = memoryRegistry();
    r.images.set("big/latest.oci", await packTar(layout([{ image: big, annotations: ref("latest") }])));
    await (await r.get(`/v2/big/blobs/${L.digest}`)).arrayBuffer(); // indexed and verified
    r.images.resetStats();
    const res = await r.get(`/v2/big/blobs/${L.digest}`);
    const reader = res.body!.getReader();
    await reader.read();
    await sleep(100);
    // 64 KiB chunks: what was read is what was consumed plus at most a couple of chunks in flight.
    expect(r.images.stats.bytesRead).toBeLessThanOrEqual(3 * 64 * 1024);
    await reader.cancel();
    expect(r.images.openStreams).toBe(0);
  });

  it("Node server: slow readers of a large blob leave RSS flat", async () => {
    const huge = image({ layers: [layer({ "huge.bin": pattern(96 * MiB, 11) }, { gzip: false })] });
    const t = await tempServer();
    try {
      t.write("huge/latest.oci", await packTar(layout([{ image: huge, annotations: ref("latest") }])));
      const H = huge.layers[0];
      // Verify it once at full speed, so the slow readers below are plain streams.
      await (await fetch(`http://127.0.0.1:${t.port}/v2/huge/blobs/${H.digest}`)).arrayBuffer();
      globalThis.gc?.();
      await sleep(200);
      const rssBefore = process.memoryUsage().rss;
      const readers = await Promise.all(Array.from({ length: 8 }, () => openDownload(t.port, `/v2/huge/blobs/${H.digest}`, 1)));
      // Each reader takes one socket chunk (at most 64 KiB) every 20 ms (~3 MiB/s): far slower than the disk.
      for (const r of readers) {
        r.socket.on("data", () => {
          r.socket.pause();
          setTimeout(() => r.socket.resume(), 20);
        });
        r.socket.resume();
      }
      let peak = rssBefore;
      for (let step = 0; step < 60; step++) {
        await sleep(50);
        peak = Math.max(peak, process.memoryUsage().rss);
      }
      const got = readers.reduce((n, r) => n + r.received(), 0);
      for (const r of readers) r.socket.destroy();
      expect(got).toBeLessThan(8 * H.size); // they really were slow
      // Buffered, the blobs would add 8 x 96 MiB; with backpressure, socket buffers and chunks only.
      expect(peak - rssBefore).toBeLessThan(96 * MiB);
    } finally {
      await t.close();
    }
  }, 60_000);
});

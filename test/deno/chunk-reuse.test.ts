// The Deno adapter reuses a blob stream's chunk buffers once Deno.serve is known to be done with
// them (adapters/deno/chunks.ts). That rests on how far Deno's HTTP stack buffers ahead, which a
// Deno upgrade could change: a buffer written again too early would send another chunk's bytes.
// So the bytes are checked where that would show: many chunk-sized, non-repeating (random)
// chunks, concurrent fast and slow clients (a slow client keeps Deno's buffers full), downloads
// after the first (only the first is hashed by the server), and ranges.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { image, layer, layout, packTar } from "../fixtures/oci.ts";
import { run } from "../helpers/exec.ts";
import { REPO_ROOT, type RunningServer, startServer } from "../helpers/server.ts";
import { DENO, describeWithDeno, OFFLINE_ENV } from "./deno.ts";

const MiB = 1 << 20;
const random = randomBytes(24 * MiB + 4321);
const big = image({ layers: [layer({ "big.bin": new Uint8Array(random.buffer, random.byteOffset, random.byteLength) }, { gzip: false })] });
const L = big.layers[0];
const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/**
 * GET `path` on a raw socket and read the response, pausing `pauseMs` after every `step` bytes
 * (0: read as fast as possible). Answers the status line, headers and body.
 */
function download(port: number, path: string, { step = 0, pauseMs = 0, headers = "" } = {}): Promise<{ status: number; head: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const parts: Buffer[] = [];
    let sinceBreak = 0;
    const finish = () => {
      const all = Buffer.concat(parts);
      const split = all.indexOf("\r\n\r\n");
      const head = all.subarray(0, split).toString("latin1");
      resolve({ status: Number(head.split(" ")[1]), head, body: all.subarray(split + 4) });
    };
    socket.on("data", (d) => {
      parts.push(d);
      sinceBreak += d.length;
      if (step && sinceBreak >= step) {
        sinceBreak = 0;
        socket.pause();
        setTimeout(() => socket.resume(), pauseMs);
      }
    });
    socket.on("end", finish);
    socket.on("error", reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers}\r\n`);
  });
}

describeWithDeno("Deno adapter: reused chunk buffers", () => {
  it("chunks.ts and denoFileSystem's streams: release rules, reuse, and chunks nobody released stay intact", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sor-chunks-"));
    try {
      const result = await run(DENO, ["run", "--allow-read", "--allow-write", "test/deno/in-deno/chunk-reuse.ts", dir], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...OFFLINE_ENV },
        timeout: 55_000,
      });
      expect(result.stderr).toBe("");
      expect(JSON.parse(result.stdout.trim())).toEqual({ servedChunks: "ok", streams: { chunks: 6, buffersWithRelease: 1 } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("deno run adapters/deno/main.ts", () => {
    let dir: string;
    let server: RunningServer;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "sor-chunks-srv-"));
      mkdirSync(join(dir, "big"));
      writeFileSync(join(dir, "big/latest.oci"), await packTar(layout([{ image: big }])));
      server = await startServer({ dir, runtime: "deno", args: ["--rescan-interval", "0"], logLevel: "warn" });
    }, 120_000);
    afterAll(async () => {
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("fast and slow clients at once get every byte right, on the hashed first download and after it", { timeout: 120_000 }, async () => {
      const path = `/v2/big/blobs/${L.digest}`;
      for (let round = 0; round < 2; round++) {
        const results = await Promise.all([
          download(server.port, path),
          download(server.port, path),
          download(server.port, path, { step: 64 * 1024, pauseMs: 3 }),
          download(server.port, path, { step: 256 * 1024, pauseMs: 10 }),
          download(server.port, path, { step: 1024 * 1024, pauseMs: 30 }),
        ]);
        for (const r of results) {
          expect(r.status).toBe(200);
          expect(r.body.length).toBe(L.size);
          expect(sha256(r.body)).toBe(L.digest);
        }
      }
      expect(server.logLines().filter((l) => l.level === "error" || l.level === "warn")).toEqual([]);
    });

    it("ranges across chunk boundaries, next to a slow full download", { timeout: 60_000 }, async () => {
      const path = `/v2/big/blobs/${L.digest}`;
      const slow = download(server.port, path, { step: 128 * 1024, pauseMs: 5 });
      const ranges: [number, number][] = [
        [0, 0],
        [1000, 262_143],
        [262_143, 262_144 + 5],
        [3 * MiB - 7, 9 * MiB + 11],
        [L.size - 5000, L.size - 1],
      ];
      for (const [first, last] of ranges) {
        const r = await download(server.port, path, { headers: `Range: bytes=${first}-${last}\r\n`, step: 100_000, pauseMs: 1 });
        expect(r.status).toBe(206);
        expect(Buffer.compare(r.body, L.bytes.subarray(first, last + 1))).toBe(0);
      }
      const s = await slow;
      expect(sha256(s.body)).toBe(L.digest);
    });
  });
});

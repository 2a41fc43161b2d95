/**
 * Limits that keep one node's registry up under hostile load and hostile files:
 * - `StreamGate`: at most `maxOpenBlobs` blob bodies open at once (each holds a file handle);
 *   more wait in a bounded queue, and past it (or after waiting `queueTimeoutMs`) the answer is
 *   429 TOOMANYREQUESTS with `Retry-After`.
 * - `budgetedCache`: the blob cache for gzipped archives stays under `maxCacheBytes`; a write
 *   that would pass it fails with a clear "cache full" error (the archive is retried later).
 * - `ServingLimits`, with their defaults, for `createRegistry({ limits })`.
 */
import { OciError } from "./errors.ts";
import type { WritableFileSystem } from "./fs.ts";

export interface ServingLimits {
  /** Blob bodies streamed at once (each holds an open file). Default 256. */
  maxOpenBlobs: number;
  /** Blob requests waiting for a slot; past this they get 429. Default 1024; 0 answers 429 at once. */
  maxQueuedBlobs: number;
  /** How long a queued blob request waits before 429. Default 30 s. */
  queueTimeoutMs: number;
  /** Total bytes in --cache-dir (unpacked gzipped archives). Default 64 GiB; 0 = no limit. */
  maxCacheBytes: number;
}

export const defaultServingLimits: ServingLimits = {
  maxOpenBlobs: 256,
  maxQueuedBlobs: 1024,
  queueTimeoutMs: 30_000,
  maxCacheBytes: 64 * 2 ** 30,
};

/** Decompressed bytes allowed for a gzipped archive of `compressedSize` bytes (`maxGzipRatio` in ArchiveLimits). */
export function decompressedAllowance(compressedSize: number, maxDecompressedBytes: number, maxGzipRatio: number): number {
  if (!maxGzipRatio) return maxDecompressedBytes;
  return Math.min(maxDecompressedBytes, Math.max(2 ** 30, compressedSize * maxGzipRatio));
}

export class StreamGate {
  private open = 0;
  private readonly waiting: Array<{ grant: () => void }> = [];

  constructor(private readonly limits: Pick<ServingLimits, "maxOpenBlobs" | "maxQueuedBlobs" | "queueTimeoutMs">) {}

  /** Streams open now, and requests waiting for one (for tests and metrics). */
  get stats(): { open: number; queued: number } {
    return { open: this.open, queued: this.waiting.length };
  }

  /** A slot, released by calling the answer exactly once; throws TOOMANYREQUESTS when full. */
  async acquire(): Promise<() => void> {
    const { maxOpenBlobs, maxQueuedBlobs, queueTimeoutMs } = this.limits;
    if (this.open < maxOpenBlobs || maxOpenBlobs <= 0) {
      this.open++;
      return this.releaser();
    }
    const busy = () =>
      new OciError("TOOMANYREQUESTS", { reason: `more than ${maxOpenBlobs} blob downloads at once; retry shortly` }, { "Retry-After": "1" });
    if (this.waiting.length >= maxQueuedBlobs) throw busy();
    await new Promise<void>((resolve, reject) => {
      const entry = {
        grant: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(busy());
      }, queueTimeoutMs);
      this.waiting.push(entry);
    });
    // The slot was handed over by a release: `open` already counts it.
    return this.releaser();
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.grant();
      else this.open--;
    };
  }
}

/** A ReadableStream that calls `onEnd` once when it ends, errors or is cancelled. */
export function onStreamEnd(source: ReadableStream<Uint8Array>, onEnd: () => void): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let done = false;
  const finish = () => {
    if (!done) (done = true), onEnd();
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const r = await reader.read();
          if (r.done) {
            finish();
            controller.close();
          } else controller.enqueue(r.value);
        } catch (err) {
          finish();
          controller.error(err);
        }
      },
      cancel(reason) {
        finish();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The cache file system with a size budget. The bytes in use are counted by a walk of `blobs/`
 * (before a write, at most once a minute) and kept up to date on writes and removals between.
 */
export function budgetedCache(cache: WritableFileSystem, maxBytes: number): WritableFileSystem {
  if (!maxBytes) return cache;
  let used: Promise<number> | undefined;
  let walkedAt = 0;
  const walk = async () => {
    walkedAt = Date.now();
    let total = 0;
    for (const alg of (await cache.list("blobs").catch(() => undefined)) ?? []) {
      for (const name of (await cache.list(`blobs/${alg}`).catch(() => undefined)) ?? []) {
        const info = await cache.stat(`blobs/${alg}/${name}`).catch(() => undefined);
        if (info?.kind === "file") total += info.size;
      }
    }
    return total;
  };
  const adjust = (delta: number) => (used = (used ?? walk()).then((n) => Math.max(0, n + delta)));
  return {
    list: (p) => cache.list(p),
    stat: (p) => cache.stat(p),
    read: (p, o, l) => cache.read(p, o, l),
    stream: (p, s, e, o) => cache.stream(p, s, e, o),
    async write(path, data) {
      // Recounted at most once a minute, so removals by the rescan's garbage collection show up.
      if (Date.now() - walkedAt > 60_000) used = walk();
      const before = await (used ??= walk());
      const old = (await cache.stat(path).catch(() => undefined))?.size ?? 0;
      let written = 0;
      const reader = data.getReader();
      const counted = new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            const r = await reader.read();
            if (r.done) return controller.close();
            written += r.value.byteLength;
            if (before + written > maxBytes) {
              const err = Object.assign(new Error(`ENOSPC: cache full: --cache-dir would pass its limit of ${maxBytes} bytes (--max-cache-size)`), { code: "ENOSPC" });
              reader.cancel(err).catch(() => {});
              throw err;
            }
            controller.enqueue(r.value);
          },
          cancel: (reason) => reader.cancel(reason),
        },
        { highWaterMark: 0 },
      );
      await cache.write(path, counted);
      await adjust(written - old);
    },
    async remove(path) {
      const size = (await cache.stat(path).catch(() => undefined))?.size ?? 0;
      await cache.remove(path);
      await adjust(-size);
    },
  };
}

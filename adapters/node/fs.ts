/**
 * `FileSystem` on node:fs/promises, rooted at a folder. Paths must be relative and may not
 * contain `..` or NUL; symlinks inside the root are followed only when their target resolves
 * inside the root or an allowed root (confine.ts; the rule is in core/fs.ts).
 * ENOENT / ENOTDIR answer `undefined`; every other error propagates.
 */
import { randomBytes } from "node:crypto";
import { constants, statSync, type BigIntStats } from "node:fs";
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import type { FileInfo, StreamOptions, WritableFileSystem } from "../../core/fs.ts";
import { markReusable } from "../shared/chunks.ts";
import { confinement, type ConfinementOptions } from "./confine.ts";

export interface NodeFileSystemOptions {
  /** Allow `write` and `remove` (default false: they throw EROFS). */
  writable?: boolean;
  /** Bytes per positioned read when streaming (default 512 KiB). */
  chunkSize?: number;
  /** Where symlinks may lead besides the root (`--allow-symlink-root`), and who hears of refusals. */
  symlinks?: ConfinementOptions;
  /**
   * Share `stat` answers within one event-loop turn (read-only trees; what `serve` uses for
   * --dir): requests read in the same turn arrived together, so they may share one stat of
   * each path, and none is answered from a stat older than its own arrival. Default false:
   * every call stats.
   */
  statsPerTurn?: boolean;
}

// O_NONBLOCK so that opening a FIFO placed in the folder cannot hang; no effect on regular files.
const OPEN_READ = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

export function nodeFileSystem(root: string, options: NodeFileSystemOptions = {}): WritableFileSystem {
  const base = resolve(root);
  const chunkSize = options.chunkSize ?? 512 * 1024;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError("chunkSize must be a positive integer");
  // resolveUnder's checks take about 1.8 µs, 40% of a stat, and the registry asks for the same
  // few folders and archives on every request: remember the answers (a pure function of path).
  const resolved = new Map<string, string>();
  const at = (path: string) => {
    let full = resolved.get(path);
    if (full === undefined) {
      full = resolveUnder(base, path);
      if (resolved.size >= 10_000) resolved.clear();
      resolved.set(path, full);
    }
    return full;
  };
  // A path whose real location is outside the root (and the allowed roots) is "not there".
  const confine = confinement(base, options.symlinks);
  const openConfined = async (path: string) => {
    const full = at(path);
    const file = await openFile(full);
    if (file && !(await confine.allows(full, file.info.id))) {
      await file.handle.close();
      return undefined;
    }
    return file;
  };
  // `statsPerTurn`: requests read in the same event-loop turn (32 busy connections deliver
  // several per turn) share one stat of each path; the memo is dropped at the end of the turn.
  const shareStats = options.statsPerTurn === true && !options.writable;
  const sameTurn = new Map<string, FileInfo | undefined>();
  let dropping = false;
  const dropAtTurnEnd = () => {
    sameTurn.clear();
    dropping = false;
  };
  /**
   * Synchronous on purpose: a cached registry request costs two stats (a folder and the
   * archive). On a local disk statSync answers in a few µs; fs.promises.stat adds a thread-pool
   * round trip and a promise (7× the time in a micro-benchmark, and about a fifth of a manifest
   * GET's CPU in the bench's profile). The event loop waits only as long as the kernel takes
   * to answer, which on a network mount may be longer. `null`: an error, or a symlink whose
   * target is still to be checked (`stat` does both).
   */
  const statNow = (path: string): FileInfo | undefined | null => {
    if (shareStats && sameTurn.has(path)) return sameTurn.get(path);
    let info: FileInfo | undefined;
    try {
      const full = at(path);
      const s = statSync(full, { bigint: true, throwIfNoEntry: false });
      info = s && infoOf(s);
      if (info && !confine.known(full, info.id)) return null;
    } catch (err) {
      if (!isNotFound(err)) return null;
    }
    if (shareStats) {
      sameTurn.set(path, info);
      if (!dropping) {
        dropping = true;
        setImmediate(dropAtTurnEnd);
      }
    }
    return info;
  };
  const statChecked = async (path: string): Promise<FileInfo | undefined> => {
    try {
      const full = at(path);
      const s = statSync(full, { bigint: true, throwIfNoEntry: false });
      if (!s) return undefined;
      const info = infoOf(s);
      return (await confine.allows(full, info.id)) ? info : undefined;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };
  const checkWritable = () => {
    if (!options.writable) {
      throw Object.assign(new Error(`EROFS: ${base} is read-only (nodeFileSystem was created without { writable: true })`), { code: "EROFS" });
    }
  };

  return {
    async list(path) {
      try {
        const full = at(path);
        const names = await readdir(full);
        return (await confine.allows(full)) ? names : undefined;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    stat(path) {
      const info = statNow(path);
      return info === null ? statChecked(path) : Promise.resolve(info);
    },

    statNow,

    async read(path, offset, length) {
      checkCount("offset", offset);
      checkCount("length", length);
      const file = await openConfined(path);
      if (!file) return undefined;
      try {
        // Clamped to the size at open, so a huge `length` ("the rest") never allocates more than the file.
        const want = Math.max(0, Math.min(length, file.info.size - offset));
        const buf = new Uint8Array(want);
        const got = await readFully(file.handle, buf, offset);
        return got < want ? buf.subarray(0, got) : buf;
      } finally {
        await file.handle.close();
      }
    },

    async stream(path, start, end, streamOptions: StreamOptions = {}) {
      checkCount("start", start);
      checkCount("end", end);
      if (end < start) throw new RangeError(`stream range ${start}-${end} ends before it starts`);
      const file = await openConfined(path);
      if (!file) return undefined;
      const { handle, info } = file;
      const { expect } = streamOptions;
      if (expect && (expect.id !== info.id || expect.size !== info.size || expect.mtimeMs !== info.mtimeMs)) {
        await handle.close();
        return undefined;
      }

      let pos = start;
      let closing: Promise<void> | undefined;
      const close = () => (closing ??= handle.close().catch(() => {}));
      // Buffers the consumer gave back (chunks.ts): a download cycles through a few buffers
      // instead of allocating one per chunk.
      const spare: ArrayBuffer[] = [];
      const bufferSize = Math.min(chunkSize, end - start);
      const recycle = (buffer: ArrayBuffer) => {
        if (spare.length < 4) spare.push(buffer);
      };
      return new ReadableStream<Uint8Array>(
        {
          async start(controller) {
            if (pos >= end) {
              await close();
              controller.close();
            }
          },
          // Backpressure: one positioned read per pull, and no pull until the consumer reads.
          async pull(controller) {
            try {
              const buf = new Uint8Array(spare.pop() ?? new ArrayBuffer(bufferSize), 0, Math.min(chunkSize, end - pos));
              const got = await readFully(handle, buf, pos);
              if (closing) return; // cancelled while reading
              if (got < buf.length) {
                throw new Error(`${path}: file ended at byte ${pos + got} while streaming bytes ${start}-${end} (truncated while being read)`);
              }
              pos += got;
              controller.enqueue(markReusable(buf, () => recycle(buf.buffer as ArrayBuffer)));
              if (pos >= end) {
                await close();
                controller.close();
              }
            } catch (err) {
              const cancelled = closing !== undefined;
              await close();
              if (!cancelled) controller.error(err);
            }
          },
          cancel: () => close(),
        },
        { highWaterMark: 0 },
      );
    },

    async write(path, data) {
      let target: string;
      try {
        checkWritable();
        target = at(path);
        if (target === base) throw new Error("cannot write the root folder");
        // Fail before consuming (and maybe decompressing) the whole source, not at the rename.
        if ((await stat(target).catch(() => undefined))?.isDirectory()) {
          throw Object.assign(new Error(`EISDIR: ${path} is a folder`), { code: "EISDIR" });
        }
      } catch (err) {
        await data.cancel(err).catch(() => {});
        throw err;
      }
      const folder = dirname(target);
      // Hidden, unique and in the same folder, so the final rename is atomic. Visible to `list`
      // while the write runs.
      const temp = join(folder, `.${basename(target).slice(0, 64)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
      const reader = data.getReader();
      let handle: FileHandle | undefined;
      let sourceFailed = false;
      try {
        await mkdir(folder, { recursive: true });
        handle = await open(temp, "wx");
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (err) {
            sourceFailed = true;
            throw err;
          }
          if (chunk.done) break;
          await writeFully(handle, chunk.value);
        }
        await handle.sync();
        await handle.close();
        handle = undefined;
        await rename(temp, target);
      } catch (err) {
        if (!sourceFailed) await reader.cancel(err).catch(() => {});
        await handle?.close().catch(() => {});
        await unlink(temp).catch(() => {});
        throw err;
      }
    },

    async remove(path) {
      checkWritable();
      try {
        await unlink(at(path));
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    },
  };
}

/** Resolves a relative `/`-separated path under `base`, refusing anything that could leave it. */
function resolveUnder(base: string, path: string): string {
  if (typeof path !== "string") throw new TypeError(`path must be a string, got ${typeof path}`);
  const bad = (why: string) => new Error(`invalid path ${JSON.stringify(path)}: ${why}`);
  if (path.includes("\0")) throw bad("contains NUL");
  if (path.startsWith("/") || path.startsWith("\\") || isAbsolute(path)) throw bad("must be relative");
  if (path.split(/[\\/]/).includes("..")) throw bad("must not contain '..'");
  const full = resolve(base, path);
  const rel = relative(base, full);
  if (rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) throw bad("resolves outside the root");
  return full;
}

/** Opens a regular file for reading; `undefined` if missing or not a regular file. */
async function openFile(full: string): Promise<{ handle: FileHandle; info: FileInfo } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(full, OPEN_READ);
  } catch (err) {
    if (isNotFound(err) || code(err) === "EISDIR") return undefined;
    throw err;
  }
  try {
    const s = await handle.stat({ bigint: true });
    if (!s.isFile()) {
      await handle.close();
      return undefined;
    }
    return { handle, info: infoOf(s) };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

/** Positioned reads until `buf` is full or the file ends; answers the bytes read. */
async function readFully(handle: FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await handle.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

async function writeFully(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let done = 0; done < chunk.length; ) {
    const { bytesWritten } = await handle.write(chunk, done, chunk.length - done);
    done += bytesWritten;
  }
}

function infoOf(s: BigIntStats): FileInfo {
  return {
    kind: s.isFile() ? "file" : s.isDirectory() ? "directory" : "other",
    size: Number(s.size),
    // From nanoseconds, split so that the milliseconds part stays exact beyond 2^53 ns.
    mtimeMs: Number(s.mtimeNs / 1_000_000n) + Number(s.mtimeNs % 1_000_000n) / 1e6,
    // bigint: 64-bit inode numbers (XFS, btrfs, NFS) would lose precision as numbers.
    id: `${s.dev}:${s.ino}`,
  };
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
}

function code(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

function isNotFound(err: unknown): boolean {
  const c = code(err);
  return c === "ENOENT" || c === "ENOTDIR";
}

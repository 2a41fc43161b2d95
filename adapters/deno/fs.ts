/**
 * `FileSystem` on Deno's own file APIs (`Deno.open` + seek/read, `Deno.stat`, `Deno.readDir`),
 * rooted at a folder, with the same path rules as the Node adapter: paths must be relative and
 * may not contain `..` or NUL; symlinks are followed only when their target resolves inside the
 * root or an allowed root (confine.ts). NotFound / NotADirectory answer `undefined`; every other
 * error (permissions, I/O) propagates.
 */
import type { FileInfo, StreamOptions, WritableFileSystem } from "../../core/fs.ts";
import { markReusable } from "./chunks.ts";
import { confinement, type ConfinementOptions } from "./confine.ts";

export interface DenoFileSystemOptions {
  /** Allow `write` and `remove` (default false: they throw). */
  writable?: boolean;
  /**
   * Bytes per read when streaming (default 256 KiB: with 8 clients on a 1 GiB blob it cost no
   * more CPU than 512 KiB, and each download holds half as much memory, see chunks.ts).
   */
  chunkSize?: number;
  /** Where symlinks may lead besides the root (`--allow-symlink-root`), and who hears of refusals. */
  symlinks?: ConfinementOptions;
}

const WINDOWS = Deno.build.os === "windows";
/** Chunk buffers a file system keeps for its next reads. */
const MAX_POOLED_BUFFERS = 8;

export function denoFileSystem(root: string, options: DenoFileSystemOptions = {}): WritableFileSystem {
  const base = root.replace(/[\\/]+$/, "") || (root.startsWith("/") ? "/" : ".");
  const chunkSize = options.chunkSize ?? 256 * 1024;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError("chunkSize must be a positive integer");
  const at = (path: string) => resolveUnder(base, path);
  // Chunk buffers given back by consumers (chunks.ts), shared by this file system's streams: a
  // download cycles through a few buffers instead of allocating (and zero-filling) one per
  // chunk, and the next download starts with the ones the last gave back.
  const pool: ArrayBuffer[] = [];
  // Resizable (never resized): V8 maps these pages itself instead of taking them from malloc,
  // so a buffer the GC frees goes back to the system rather than staying in malloc's heap.
  const takeBuffer = () => pool.pop() ?? new ArrayBuffer(chunkSize, { maxByteLength: chunkSize });
  const giveBuffer = (buffer: ArrayBuffer) => {
    // A consumer that transferred the buffer (a byte stream's enqueue) left it detached.
    if (buffer.byteLength === chunkSize && pool.length < MAX_POOLED_BUFFERS) pool.push(buffer);
  };
  // A path whose real location is outside the root (and the allowed roots) is "not there".
  const confine = confinement(base, options.symlinks);
  const openConfined = async (path: string) => {
    const full = at(path);
    const file = await openFile(full);
    if (file && !(await confine.allows(full, file.info.id))) {
      file.handle.close();
      return undefined;
    }
    return file;
  };
  const checkWritable = () => {
    if (!options.writable) throw new Deno.errors.PermissionDenied(`${base} is read-only (denoFileSystem was created without { writable: true })`);
  };

  return {
    async list(path) {
      const full = at(path);
      try {
        const names: string[] = [];
        for await (const entry of Deno.readDir(full)) names.push(entry.name);
        return (await confine.allows(full)) ? names : undefined;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async stat(path) {
      const full = at(path);
      try {
        const info = infoOf(Deno.statSync(full));
        return confine.known(full, info.id) || (await confine.allows(full, info.id)) ? info : undefined;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    // Synchronous on purpose, as on Node (adapters/node/fs.ts): a cached manifest request costs
    // two stats, and Deno.stat's trip through the blocking thread pool cost more than the stat
    // itself. `null` (then `stat` answers) for an error or a symlink still to be checked.
    statNow(path) {
      try {
        const full = at(path);
        const info = infoOf(Deno.statSync(full));
        return confine.known(full, info.id) ? info : null;
      } catch (err) {
        return isNotFound(err) ? undefined : null;
      }
    },

    async read(path, offset, length) {
      checkCount("offset", offset);
      checkCount("length", length);
      const file = await openConfined(path);
      if (!file) return undefined;
      try {
        // Clamped to the size at open, so a huge `length` ("the rest") never allocates more than the file.
        const want = Math.max(0, Math.min(length, file.info.size - offset));
        const buf = new Uint8Array(want);
        if (want > 0) await file.handle.seek(offset, Deno.SeekMode.Start);
        const got = await readFully(file.handle, buf);
        return got < want ? buf.subarray(0, got) : buf;
      } finally {
        file.handle.close();
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
        handle.close();
        return undefined;
      }

      let pos = start;
      let closed = false;
      let cancelled = false;
      let reading = false;
      // A range shorter than a chunk gets a buffer of its own size, left to the GC; longer ones
      // read into chunk buffers from the pool and give them back through chunks.ts.
      const pooled = end - start >= chunkSize;
      const close = () => {
        if (closed) return;
        closed = true;
        try {
          handle.close();
        } catch {
          // already closed
        }
      };
      return new ReadableStream<Uint8Array>(
        {
          async start(controller) {
            if (pos >= end) {
              close();
              controller.close();
              return;
            }
            try {
              await handle.seek(start, Deno.SeekMode.Start);
            } catch (err) {
              close();
              throw err;
            }
          },
          // Backpressure: one read per pull, and no pull until the consumer reads. Reads are
          // sequential on this stream's own handle, so the file position needs no re-seeking.
          async pull(controller) {
            reading = true;
            try {
              const buf = pooled ? new Uint8Array(takeBuffer(), 0, Math.min(chunkSize, end - pos)) : new Uint8Array(end - pos);
              const got = await readFully(handle, buf);
              if (cancelled) return close();
              if (got < buf.length) {
                throw new Error(`${path}: file ended at byte ${pos + got} while streaming bytes ${start}-${end} (truncated while being read)`);
              }
              pos += got;
              controller.enqueue(pooled ? markReusable(buf, () => giveBuffer(buf.buffer as ArrayBuffer)) : buf);
              if (pos >= end) {
                close();
                controller.close();
              }
            } catch (err) {
              close();
              if (!cancelled) controller.error(err);
            } finally {
              reading = false;
            }
          },
          cancel() {
            cancelled = true;
            // A read in flight finishes first and closes the file then: never close under it.
            if (!reading) close();
          },
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
        if ((await statOrUndefined(target))?.isDirectory) throw new Deno.errors.IsADirectory(`cannot write ${path}: it is a folder`);
      } catch (err) {
        await data.cancel(err).catch(() => {});
        throw err;
      }
      const slash = target.lastIndexOf("/");
      const folder = slash < 0 ? "." : target.slice(0, slash) || "/";
      // Hidden, unique and in the same folder, so the final rename is atomic. Visible to `list`
      // while the write runs.
      const temp = `${folder}/.${target.slice(slash + 1, slash + 65)}.${Deno.pid}.${randomHex(6)}.tmp`;
      const reader = data.getReader();
      let file: Deno.FsFile | undefined;
      let sourceFailed = false;
      try {
        await Deno.mkdir(folder, { recursive: true });
        file = await Deno.open(temp, { write: true, createNew: true });
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (err) {
            sourceFailed = true;
            throw err;
          }
          if (chunk.done) break;
          await writeFully(file, chunk.value);
        }
        await file.sync();
        file.close();
        file = undefined;
        await Deno.rename(temp, target);
      } catch (err) {
        if (!sourceFailed) await reader.cancel(err).catch(() => {});
        try {
          file?.close();
        } catch {
          // already closed
        }
        await Deno.remove(temp).catch(() => {});
        throw err;
      }
    },

    async remove(path) {
      checkWritable();
      const full = at(path);
      try {
        // Deno.remove would also remove an empty folder; this removes files only, as unlink does.
        if ((await Deno.lstat(full)).isDirectory) throw new Deno.errors.IsADirectory(`cannot remove ${path}: it is a folder`);
        await Deno.remove(full);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    },
  };
}

/** Joins a relative `/`-separated path onto `base`, refusing anything that could leave it. */
function resolveUnder(base: string, path: string): string {
  if (typeof path !== "string") throw new TypeError(`path must be a string, got ${typeof path}`);
  const bad = (why: string) => new Error(`invalid path ${JSON.stringify(path)}: ${why}`);
  if (path.includes("\0")) throw bad("contains NUL");
  if (path.startsWith("/") || path.startsWith("\\") || (WINDOWS && /^[a-zA-Z]:/.test(path))) throw bad("must be relative");
  const segments = path.split(WINDOWS ? /[\\/]/ : "/");
  if (path.split(/[\\/]/).includes("..")) throw bad("must not contain '..'");
  const rest = segments.filter((s) => s !== "" && s !== ".").join("/");
  if (!rest) return base;
  return base.endsWith("/") ? base + rest : `${base}/${rest}`;
}

/** Opens a regular file for reading; `undefined` if missing or not a regular file. */
async function openFile(full: string): Promise<{ handle: Deno.FsFile; info: FileInfo } | undefined> {
  // Deno.open takes no O_NONBLOCK: look first so that a FIFO placed in the folder is never opened
  // (opening one for reading would wait for a writer), then check the opened file itself.
  const before = await statOrUndefined(full);
  if (!before?.isFile) return undefined;
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(full, { read: true });
  } catch (err) {
    if (isNotFound(err) || err instanceof Deno.errors.IsADirectory) return undefined;
    throw err;
  }
  try {
    const s = await handle.stat();
    if (!s.isFile) {
      handle.close();
      return undefined;
    }
    return { handle, info: infoOf(s) };
  } catch (err) {
    handle.close();
    throw err;
  }
}

async function statOrUndefined(full: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(full);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Reads from the current position until `buf` is full or the file ends; answers the bytes read. */
async function readFully(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null || n === 0) break;
    got += n;
  }
  return got;
}

async function writeFully(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  for (let done = 0; done < chunk.length; ) done += await file.write(chunk.subarray(done));
}

function infoOf(s: Deno.FileInfo): FileInfo {
  return {
    kind: s.isFile ? "file" : s.isDirectory ? "directory" : "other",
    size: s.size,
    mtimeMs: s.mtime?.getTime() ?? 0,
    id: `${s.dev}:${s.ino ?? s.birthtime?.getTime() ?? ""}`,
  };
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
}

function isNotFound(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory;
}

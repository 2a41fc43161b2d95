/**
 * An in-memory `WritableFileSystem` for tests. It behaves like a POSIX disk where the
 * registry can tell: a file keeps its identity when written in place and gets a new one when
 * replaced by rename; an open stream keeps reading the file it opened (even after a rename or
 * delete) and errors if that file is truncated under it. Counters (`stats`, `openStreams`)
 * and fault injection (`failNext`, `faults`) let tests check what the core asked for.
 */
import type { FileInfo, StreamOptions, WritableFileSystem } from "./fs.ts";

/** Operations that can be made to fail; `pull` is one chunk of an open stream. */
export type MemoryOp = "list" | "stat" | "read" | "stream" | "pull" | "write" | "remove";

export interface MemoryFileSystemOptions {
  /** Source of modification times (default `Date.now`); values are bumped to strictly increase. */
  clock?: () => number;
  /** Largest chunk a stream emits (default 64 KiB). */
  chunkSize?: number;
}

export interface MemoryStats {
  stat: number;
  list: number;
  read: number;
  stream: number;
  /** Bytes handed out by `read` and by stream chunks. */
  bytesRead: number;
}

interface FileEntry {
  kind: "file";
  id: string;
  bytes: Uint8Array;
  mtimeMs: number;
}

interface DirEntry {
  kind: "directory";
  id: string;
  mtimeMs: number;
}

type Entry = FileEntry | DirEntry;

export class MemoryFileSystem implements WritableFileSystem {
  stats: MemoryStats = { stat: 0, list: 0, read: 0, stream: 0, bytesRead: 0 };
  /** Called before every operation; return an error to make it throw. */
  faults?: (op: MemoryOp, path: string) => Error | undefined;
  /** Whether `statNow` answers (default true); false makes every caller take the async `stat`. */
  syncStat = true;

  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Error[]>();
  readonly #clock: () => number;
  readonly #chunkSize: number;
  #lastMtime = -Infinity;
  #nextId = 1;
  #openStreams = 0;

  constructor(options: MemoryFileSystemOptions = {}) {
    this.#clock = options.clock ?? Date.now;
    this.#chunkSize = options.chunkSize ?? 64 * 1024;
    if (!Number.isSafeInteger(this.#chunkSize) || this.#chunkSize <= 0) throw new RangeError("chunkSize must be a positive integer");
    this.#entries.set("", { kind: "directory", id: this.#newId(), mtimeMs: this.#now() });
  }

  /** Streams opened and not yet ended, errored or cancelled. */
  get openStreams(): number {
    return this.#openStreams;
  }

  resetStats(): void {
    this.stats = { stat: 0, list: 0, read: 0, stream: 0, bytesRead: 0 };
  }

  /** Makes the next `op` on `path` throw `error` (once per call; calls queue up). */
  failNext(path: string, op: MemoryOp, error?: Error): void {
    const key = `${op}\0${normalize(path)}`;
    const err = error ?? ioError("EIO", `injected I/O error, ${op} '${path}'`);
    this.#pending.set(key, [...(this.#pending.get(key) ?? []), err]);
  }

  // ---- Test setup: synchronous, not counted, no faults ----

  /**
   * Writes a file, creating parent folders. On an existing file this writes in place: same id,
   * new bytes and mtime. On a new path the file gets a new id. The bytes are copied.
   */
  set(path: string, bytes: Uint8Array, options: { mtimeMs?: number } = {}): void {
    const key = normalize(path);
    if (key === "") throw ioError("EISDIR", "cannot write the root folder");
    const mtimeMs = options.mtimeMs ?? this.#now();
    const existing = this.#entries.get(key);
    if (existing?.kind === "directory") throw ioError("EISDIR", `'${key}' is a folder`);
    if (existing) {
      existing.bytes = bytes.slice();
      existing.mtimeMs = mtimeMs;
      return;
    }
    this.#mkdirs(parentOf(key));
    this.#entries.set(key, { kind: "file", id: this.#newId(), bytes: bytes.slice(), mtimeMs });
    this.#touch(parentOf(key));
  }

  /** Creates a folder and its parents (like `mkdir -p`). */
  mkdir(path: string): void {
    this.#mkdirs(normalize(path));
  }

  /** Deletes a file, or a folder and everything under it. Answers whether something was there. */
  delete(path: string): boolean {
    const key = normalize(path);
    if (key === "") throw ioError("EBUSY", "cannot delete the root folder");
    const entry = this.#entries.get(key);
    if (!entry) return false;
    this.#entries.delete(key);
    if (entry.kind === "directory") {
      for (const k of [...this.#entries.keys()]) if (k.startsWith(`${key}/`)) this.#entries.delete(k);
    }
    this.#touch(parentOf(key));
    return true;
  }

  /** Moves a file, replacing any file at `to`. The id and mtime move with it, as with rename(2). */
  rename(from: string, to: string): void {
    const src = normalize(from);
    const dst = normalize(to);
    const entry = this.#entries.get(src);
    if (!entry) throw ioError("ENOENT", `no such file '${src}'`);
    if (entry.kind !== "file") throw ioError("EISDIR", `only files can be renamed, '${src}' is a folder`);
    if (this.#entries.get(dst)?.kind === "directory") throw ioError("EISDIR", `'${dst}' is a folder`);
    if (src === dst) return;
    this.#mkdirs(parentOf(dst));
    this.#entries.delete(src);
    this.#entries.set(dst, entry);
    this.#touch(parentOf(src));
    this.#touch(parentOf(dst));
  }

  // ---- FileSystem ----

  async list(path: string): Promise<string[] | undefined> {
    const key = this.#begin("list", path);
    this.stats.list++;
    if (this.#entries.get(key)?.kind !== "directory") return undefined;
    const prefix = key === "" ? "" : `${key}/`;
    const names: string[] = [];
    for (const k of this.#entries.keys()) {
      if (k !== "" && k.startsWith(prefix) && !k.includes("/", prefix.length)) names.push(k.slice(prefix.length));
    }
    return names;
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    const key = this.#begin("stat", path);
    this.stats.stat++;
    const entry = this.#entries.get(key);
    return entry && infoOf(entry);
  }

  /** `stat` without a promise; `null` while a fault is set for it (so that `stat` reports it). */
  statNow(path: string): FileInfo | undefined | null {
    if (!this.syncStat) return null;
    let key: string;
    try {
      key = normalize(path);
    } catch {
      return null;
    }
    if (this.faults || this.#pending.has(`stat\0${key}`)) return null;
    this.stats.stat++;
    const entry = this.#entries.get(key);
    return entry && infoOf(entry);
  }

  async read(path: string, offset: number, length: number): Promise<Uint8Array | undefined> {
    checkCount("offset", offset);
    checkCount("length", length);
    const key = this.#begin("read", path);
    this.stats.read++;
    const entry = this.#entries.get(key);
    if (entry?.kind !== "file") return undefined;
    const out = entry.bytes.slice(offset, offset + length);
    this.stats.bytesRead += out.length;
    return out;
  }

  async stream(path: string, start: number, end: number, options: StreamOptions = {}): Promise<ReadableStream<Uint8Array> | undefined> {
    checkCount("start", start);
    checkCount("end", end);
    if (end < start) throw new RangeError(`stream range ${start}-${end} ends before it starts`);
    const key = this.#begin("stream", path);
    this.stats.stream++;
    const entry = this.#entries.get(key);
    if (entry?.kind !== "file") return undefined;
    if (options.expect && !sameFile(infoOf(entry), options.expect)) return undefined;

    // The stream holds the entry, not the path: like an open file descriptor it keeps reading
    // the same file after a rename or delete, and sees in-place writes and truncation.
    let pos = start;
    let open = true;
    this.#openStreams++;
    const release = () => {
      if (open) {
        open = false;
        this.#openStreams--;
      }
    };
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          if (pos >= end) {
            release();
            controller.close();
          }
        },
        pull: (controller) => {
          try {
            this.#fault("pull", key);
            // As on disk: a chunk that runs into the end of the file before `end` errors the stream.
            const want = Math.min(this.#chunkSize, end - pos);
            if (entry.bytes.length < pos + want) {
              throw ioError("EIO", `'${key}' ended at byte ${entry.bytes.length} while streaming to byte ${end} (truncated in place)`);
            }
            const chunk = entry.bytes.slice(pos, pos + want);
            pos += chunk.length;
            this.stats.bytesRead += chunk.length;
            controller.enqueue(chunk);
            if (pos >= end) {
              release();
              controller.close();
            }
          } catch (err) {
            release();
            controller.error(err);
          }
        },
        cancel: () => release(),
      },
      { highWaterMark: 0 },
    );
  }

  // ---- WritableFileSystem ----

  async write(path: string, data: ReadableStream<Uint8Array>): Promise<void> {
    let key: string;
    try {
      key = this.#begin("write", path);
      this.#checkWritable(key);
    } catch (err) {
      await data.cancel(err).catch(() => {});
      throw err;
    }
    // Collect everything first: if the source errors, nothing has been touched.
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = data.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value.slice());
      size += value.length;
    }
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    // Like a temporary file renamed into place: always a new identity.
    this.#checkWritable(key);
    this.#mkdirs(parentOf(key));
    this.#entries.set(key, { kind: "file", id: this.#newId(), bytes, mtimeMs: this.#now() });
    this.#touch(parentOf(key));
  }

  async remove(path: string): Promise<void> {
    const key = this.#begin("remove", path);
    const entry = this.#entries.get(key);
    if (!entry) return;
    if (entry.kind === "directory") throw ioError("EISDIR", `'${key}' is a folder, remove deletes files`);
    this.#entries.delete(key);
    this.#touch(parentOf(key));
  }

  // ---- internals ----

  /** Validates the path and runs fault injection; answers the normalised key. */
  #begin(op: MemoryOp, path: string): string {
    const key = normalize(path);
    this.#fault(op, key);
    return key;
  }

  #fault(op: MemoryOp, key: string): void {
    const queue = this.#pending.get(`${op}\0${key}`);
    const queued = queue?.shift();
    if (queue && queue.length === 0) this.#pending.delete(`${op}\0${key}`);
    if (queued) throw queued;
    const hooked = this.faults?.(op, key);
    if (hooked) throw hooked;
  }

  #checkWritable(key: string): void {
    if (key === "") throw ioError("EISDIR", "cannot write the root folder");
    if (this.#entries.get(key)?.kind === "directory") throw ioError("EISDIR", `'${key}' is a folder`);
    for (let p = parentOf(key); p !== ""; p = parentOf(p)) {
      if (this.#entries.get(p)?.kind === "file") throw ioError("ENOTDIR", `'${p}' is a file`);
    }
  }

  #mkdirs(key: string): void {
    const missing: string[] = [];
    for (let p = key; ; p = parentOf(p)) {
      const entry = this.#entries.get(p);
      if (entry?.kind === "directory") break;
      if (entry) throw ioError("ENOTDIR", `'${p}' is a file`);
      missing.push(p);
    }
    for (const p of missing.reverse()) {
      this.#entries.set(p, { kind: "directory", id: this.#newId(), mtimeMs: this.#now() });
      this.#touch(parentOf(p));
    }
  }

  /** A folder's mtime changes when an entry is added or removed, as on disk. */
  #touch(dirKey: string): void {
    const dir = this.#entries.get(dirKey);
    if (dir) dir.mtimeMs = this.#now();
  }

  #now(): number {
    const t = Math.max(this.#clock(), this.#lastMtime + 1);
    this.#lastMtime = t;
    return t;
  }

  #newId(): string {
    return `mem:${this.#nextId++}`;
  }
}

function infoOf(entry: Entry): FileInfo {
  return {
    kind: entry.kind,
    size: entry.kind === "file" ? entry.bytes.length : 0,
    mtimeMs: entry.mtimeMs,
    id: entry.id,
  };
}

function sameFile(a: FileInfo, b: FileInfo): boolean {
  return a.id === b.id && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/**
 * The same path rules as the disk adapters: relative, `/`-separated, no `..` segment, no NUL.
 * Empty and `.` segments are dropped, so `""` is the root folder.
 */
function normalize(path: string): string {
  if (typeof path !== "string") throw new TypeError(`path must be a string, got ${typeof path}`);
  if (path.includes("\0")) throw new Error(`invalid path ${JSON.stringify(path)}: contains NUL`);
  if (path.startsWith("/")) throw new Error(`invalid path ${JSON.stringify(path)}: must be relative`);
  const segments = path.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) throw new Error(`invalid path ${JSON.stringify(path)}: must not contain '..'`);
  return segments.join("/");
}

function parentOf(key: string): string {
  const i = key.lastIndexOf("/");
  return i < 0 ? "" : key.slice(0, i);
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
}

function ioError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

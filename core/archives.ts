/**
 * Opens archives: reads a plain tar's headers (never its blobs) or streams a gzipped tar once
 * into the blob cache (twice for a gzipped legacy docker save, whose layer digests are only
 * known after the first read), then loads its layout. One index per archive version: concurrent
 * requests share one indexing (single-flight), and a file replaced or changed in place
 * (other id, size or mtime) is indexed afresh.
 */
import { ArchiveError } from "./errors.ts";
import { type FileInfo, type FileSystem, joinPath, type WritableFileSystem } from "./fs.ts";
import { gzipSave, loadDockerSave, tarSave } from "./docker-save.ts";
import { ingestGzipTar, isGzip } from "./gzip.ts";
import type { HasherFactory } from "./hash.ts";
import { type BlobLocation, defaultLayoutLimits, type Layout, type LayoutLimits, loadLayout } from "./layout.ts";
import { decompressedAllowance } from "./limits.ts";
import type { Logger } from "./log.ts";
import { indexTar, type TarEntry } from "./tar.ts";

export interface Archive extends Layout {
  path: string;
  info: FileInfo;
  format: "tar" | "tar+gzip" | "folder" | "docker-save" | "docker-save+gzip";
}

export interface BrokenArchive {
  path: string;
  info: FileInfo;
  error: string;
}

export type OpenedArchive = Archive | BrokenArchive;

export function isBroken(a: OpenedArchive): a is BrokenArchive {
  return "error" in a;
}

export function sameFile(a: FileInfo, b: FileInfo): boolean {
  return a.id === b.id && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** An unpacked layout folder's identity: the folder's and its index.json's together. */
function folderInfo(folder: FileInfo, index: FileInfo): FileInfo {
  return { kind: "directory", id: `${folder.id}+${index.id}`, size: index.size, mtimeMs: Math.max(folder.mtimeMs, index.mtimeMs) };
}

export interface ArchiveLimits extends LayoutLimits {
  maxEntries: number;
  maxDecompressedBytes: number;
  /**
   * A gzipped archive may unpack to at most this many times its own size (past the first GiB):
   * the mark of a gzip bomb. 0 = no limit.
   */
  maxGzipRatio: number;
}

export const defaultArchiveLimits: ArchiveLimits = {
  ...defaultLayoutLimits,
  maxEntries: 100_000,
  maxDecompressedBytes: 64 * 2 ** 30,
  maxGzipRatio: 100,
};

export interface ArchiveStoreOptions {
  fs: FileSystem;
  cache?: WritableFileSystem;
  createHasher: HasherFactory;
  logger: Logger;
  limits?: Partial<ArchiveLimits>;
}

const BLOB_PATH = /^blobs\/([a-z0-9]+(?:[+._-][a-z0-9]+)*)\/([a-zA-Z0-9=_-]+)$/;

/** `blobs/<alg>/<encoded>` -> `<alg>:<encoded>`. */
export function blobDigestOfPath(name: string): string | undefined {
  const m = BLOB_PATH.exec(name);
  return m ? `${m[1]}:${m[2]}` : undefined;
}

/** One indexing per version of a file; `settled` once its promise has (what `openNow` answers). */
interface StoreEntry {
  info: FileInfo;
  promise: Promise<OpenedArchive>;
  settled?: OpenedArchive;
}

export class ArchiveStore {
  private readonly entries = new Map<string, StoreEntry>();
  private readonly options: ArchiveStoreOptions;
  private readonly limits: ArchiveLimits;
  /** Number of archive indexings started (for tests and metrics). */
  indexed = 0;
  /** Indexings under way: the cache is not garbage-collected while one may be writing to it. */
  busy = 0;

  constructor(options: ArchiveStoreOptions) {
    this.options = options;
    this.limits = { ...defaultArchiveLimits, ...options.limits };
  }

  /**
   * The archive at `path` as it is now (one `stat`), or `undefined` when no file is there.
   * `known` skips the stat when the caller has just taken it.
   */
  async open(path: string, known?: FileInfo): Promise<OpenedArchive | undefined> {
    const info = await this.identify(path, known ?? (await this.options.fs.stat(path)));
    if (!info) {
      this.entries.delete(path);
      return undefined;
    }
    const cached = this.entries.get(path);
    if (cached && sameFile(cached.info, info)) return cached.promise;
    const entry: StoreEntry = { info, promise: this.index(path, info) };
    entry.promise.then((archive) => void (entry.settled = archive), () => {});
    this.entries.set(path, entry);
    return entry.promise;
  }

  /**
   * `open` without a promise, for an archive already indexed and unchanged (its file answers
   * `statNow` with the same identity). `null` whenever that is not so: the caller then awaits `open`.
   */
  openNow(path: string): OpenedArchive | null {
    const cached = this.entries.get(path);
    const statNow = this.options.fs.statNow;
    if (cached?.settled === undefined || !statNow) return null;
    let info = statNow.call(this.options.fs, path);
    if (info?.kind === "directory") {
      const index = statNow.call(this.options.fs, joinPath(path, "index.json"));
      info = index?.kind === "file" ? folderInfo(info, index) : null;
    }
    return info && sameFile(cached.info, info) ? cached.settled : null;
  }

  /**
   * What identifies the current version of a candidate: a regular file's own stat, or for an
   * unpacked layout folder, the folder's and its index.json's together (index.json may be
   * rewritten in place, which does not change the folder's mtime). `undefined`: not servable.
   */
  private async identify(path: string, info: FileInfo | undefined): Promise<FileInfo | undefined> {
    if (!info) return undefined;
    if (info.kind === "file") return info;
    if (info.kind !== "directory") return undefined;
    const index = await this.options.fs.stat(joinPath(path, "index.json"));
    if (!index || index.kind !== "file") return undefined;
    return folderInfo(info, index);
  }

  /** Forget archives whose files are gone or changed; returns the archives still current. */
  async revalidate(): Promise<Archive[]> {
    const current: Archive[] = [];
    for (const [path, entry] of [...this.entries]) {
      const info = await this.options.fs.stat(path).then((i) => this.identify(path, i)).catch(() => undefined);
      if (!info || !sameFile(info, entry.info)) {
        this.entries.delete(path);
        continue;
      }
      const archive = await entry.promise.catch(() => undefined);
      if (archive && !isBroken(archive)) current.push(archive);
    }
    return current;
  }

  /** Drop one archive's index (after its bytes were found not to match it). */
  forget(path: string): void {
    this.entries.delete(path);
  }

  private async index(path: string, info: FileInfo): Promise<OpenedArchive> {
    this.indexed++;
    this.busy++;
    const { logger } = this.options;
    const started = Date.now();
    try {
      const archive = await this.load(path, info);
      logger.info("archive indexed", {
        file: path,
        format: archive.format,
        manifests: archive.manifests.size,
        blobs: archive.blobs.size,
        ms: Date.now() - started,
      });
      return archive;
    } catch (e) {
      const message = (e as Error)?.message ?? String(e);
      const error = e instanceof ArchiveError || message.startsWith("cannot ") ? message : `cannot read: ${message}`;
      logger.error("archive unusable", { file: path, problem: error, ...(e instanceof ArchiveError ? {} : { retry: "next request" }) });
      if (e instanceof ArchiveError) return { path, info, error };
      // A transient failure (I/O error, permissions, a full cache) is not the archive's fault: it
      // fails the requests that touch this file with 500 UNKNOWN, and the next request retries.
      // (The entry was stored before the first await of indexing, so it is there to remove.)
      if (this.entries.get(path)?.info === info) this.entries.delete(path);
      throw e;
    } finally {
      this.busy--;
    }
  }

  private async load(path: string, info: FileInfo): Promise<Archive> {
    const { fs } = this.options;
    if (info.kind === "directory") return this.loadFolder(path, info);
    const head = await fs.read(path, 0, 512);
    if (!head) throw new ArchiveError("file vanished while being opened");
    if (isGzip(head)) return this.loadGzip(path, info);
    return this.loadTar(path, info);
  }

  private async loadTar(path: string, info: FileInfo): Promise<Archive> {
    const { fs, createHasher, logger } = this.options;
    const readAt = async (offset: number, length: number) => (await fs.read(path, offset, length)) ?? new Uint8Array(0);
    const entries = await indexTar(readAt, info.size, { maxEntries: this.limits.maxEntries });
    const files = new Map<string, TarEntry>();
    const blobs = new Map<string, BlobLocation>();
    if (!entries.some((e) => e.name === "index.json") && entries.some((e) => e.name === "manifest.json")) {
      const byName = new Map(entries.map((e) => [e.name, e]));
      const save = tarSave({ path, info, fs, cache: this.options.cache, entries: byName, createHasher, logger });
      const layout = await loadDockerSave(save, createHasher, this.limits.maxIndexJsonBytes);
      return { ...layout, path, info, format: "docker-save" };
    }
    for (const entry of entries) {
      if (entry.type !== "file") continue;
      const digest = blobDigestOfPath(entry.name);
      if (digest) blobs.set(digest, { fs, path, offset: entry.offset, size: entry.size, expect: info });
      else files.set(entry.name, entry);
    }
    const layout = await loadLayout(
      {
        blobs,
        async readFile(name, limit) {
          const entry = files.get(name);
          if (!entry) return undefined;
          if (entry.size > limit) throw new ArchiveError(`${name} is larger than ${limit} bytes`);
          const bytes = await readAt(entry.offset, entry.size);
          if (bytes.byteLength !== entry.size) throw new ArchiveError(`${name} is truncated`);
          return bytes;
        },
      },
      createHasher,
      logger,
      path,
      this.limits,
    );
    return { ...layout, path, info, format: "tar" };
  }

  /** An unpacked OCI layout folder (`skopeo copy ... oci:DIR`, umoci): blobs are its files. */
  private async loadFolder(path: string, info: FileInfo): Promise<Archive> {
    const { fs, createHasher, logger } = this.options;
    const blobs = new Map<string, BlobLocation>();
    for (const algorithm of (await fs.list(joinPath(path, "blobs"))) ?? []) {
      const names = (await fs.list(joinPath(path, "blobs", algorithm))) ?? [];
      if (blobs.size + names.length > this.limits.maxEntries) throw new ArchiveError(`more than ${this.limits.maxEntries} blobs`);
      const infos = await Promise.all(names.map((n) => fs.stat(joinPath(path, "blobs", algorithm, n))));
      names.forEach((n, i) => {
        const blobPath = joinPath(path, "blobs", algorithm, n);
        const digest = blobDigestOfPath(`blobs/${algorithm}/${n}`);
        const blobInfo = infos[i];
        if (digest && blobInfo?.kind === "file") blobs.set(digest, { fs, path: blobPath, offset: 0, size: blobInfo.size, expect: blobInfo });
      });
    }
    const layout = await loadLayout(
      {
        blobs,
        async readFile(name, limit) {
          const file = joinPath(path, name);
          const fileInfo = await fs.stat(file);
          if (!fileInfo || fileInfo.kind !== "file") return undefined;
          if (fileInfo.size > limit) throw new ArchiveError(`${name} is larger than ${limit} bytes`);
          return fs.read(file, 0, fileInfo.size);
        },
      },
      createHasher,
      logger,
      path,
      this.limits,
    );
    return { ...layout, path, info, format: "folder" };
  }

  private async loadGzip(path: string, info: FileInfo): Promise<Archive> {
    const { fs, cache, createHasher, logger } = this.options;
    if (!cache) throw new ArchiveError("gzip-compressed archive, but no writable --cache-dir to unpack it into");
    const ingest = async (extract?: Map<number, string>) => {
      const stream = await fs.stream(path, 0, info.size, { expect: info });
      if (!stream) throw new ArchiveError("file changed while being opened");
      return ingestGzipTar(stream, {
        cache,
        createHasher,
        extract,
        maxEntries: this.limits.maxEntries,
        maxFileSize: this.limits.maxIndexJsonBytes,
        maxDecompressedBytes: decompressedAllowance(info.size, this.limits.maxDecompressedBytes, this.limits.maxGzipRatio),
      });
    };
    const result = await ingest();
    const names = (name: string) => result.files.has(name) || result.others.has(name);
    if (!names("index.json") && names("manifest.json")) {
      // A legacy docker save, gzipped: its layers were hashed on the way; a second read of the
      // archive unpacks the ones the cache lacks.
      const save = gzipSave({ ingested: result, cache, createHasher, extract: async (wanted) => void (await ingest(wanted)) });
      const layout = await loadDockerSave(save, createHasher, this.limits.maxIndexJsonBytes);
      return { ...layout, path, info, format: "docker-save+gzip" };
    }
    const blobs = new Map<string, BlobLocation>();
    for (const [digest, blob] of result.blobs) blobs.set(digest, { fs: cache, path: blob.path, offset: 0, size: blob.size });
    const layout = await loadLayout(
      {
        blobs,
        async readFile(name, limit) {
          const bytes = result.files.get(name);
          if (bytes && bytes.byteLength > limit) throw new ArchiveError(`${name} is larger than ${limit} bytes`);
          return bytes;
        },
      },
      createHasher,
      logger,
      path,
      this.limits,
    );
    return { ...layout, path, info, format: "tar+gzip" };
  }
}

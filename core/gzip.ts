/**
 * Ingests a gzip-compressed OCI layout archive once: decompresses it as a stream, writes each
 * `blobs/<alg>/<encoded>` entry to a content-addressed cache (hashing as it writes, so a blob
 * that does not match its name never lands there) and keeps the small metadata files
 * (`index.json`, `oci-layout`, `manifest.json`, `<config>.json`...) in memory. Every other
 * file (a legacy `docker save`'s `<id>/layer.tar`) is hashed as it goes by and not kept: its
 * digest is only known at its end, so a second pass (`extract`) writes the ones needed to the
 * cache, checked against that digest. A gzip stream cannot seek, so unlike `tar.ts` this reads
 * the whole archive; data flows through with backpressure, never buffered whole.
 */
import { extract } from "tar-stream";
import { ArchiveError } from "./errors.ts";
import type { WritableFileSystem } from "./fs.ts";
import type { HasherFactory } from "./hash.ts";
import { normalizeEntryName } from "./tar.ts";

export interface GzipIngestResult {
  /** Normalised name -> bytes, for every regular file not under `blobs/`. */
  files: Map<string, Uint8Array>;
  /** `alg:encoded` -> where the blob is in the cache. */
  blobs: Map<string, { path: string; size: number }>;
  /**
   * Every other file and link by normalised name (the last entry of a name wins): files hashed
   * as they went by but not kept, links with their targets. Folders are left out.
   */
  others: Map<string, OtherEntry>;
}

export interface OtherEntry {
  type: "file" | "symlink" | "hardlink";
  /** Position in the archive (0 for the first entry): how `extract` finds the entry again. */
  ordinal: number;
  /** Bytes of data (0 for links). */
  size: number;
  /** Files: `sha256:<hex>` of the data. */
  digest?: string;
  /** Files: the first bytes of the data (up to 4), to tell a gzip-compressed layer. */
  head?: Uint8Array;
  /** Links: the target, as written for a symlink, normalised for a hard link. */
  linkName?: string;
}

export interface GzipIngestOptions {
  cache: WritableFileSystem;
  createHasher: HasherFactory;
  /** Largest non-blob file kept in memory. Default 16 MiB. */
  maxFileSize?: number;
  /** All non-blob files kept in memory together (a hostile archive could hold thousands). Default 4 x maxFileSize. */
  maxFilesTotal?: number;
  /** Default 100_000. */
  maxEntries?: number;
  /** Default 64 GiB. */
  maxDecompressedBytes?: number;
  /**
   * A second pass over the same archive: write only the files at these positions (`ordinal`) to
   * the cache, each as the sha256 blob given (checked as it is written, as blobs are), and skip
   * everything else. The result then holds just those blobs.
   */
  extract?: Map<number, string>;
}

export function isGzip(firstBytes: Uint8Array): boolean {
  return firstBytes.length >= 2 && firstBytes[0] === 0x1f && firstBytes[1] === 0x8b;
}

/** `blobs/<algorithm>/<encoded>` with the digest grammar of the image spec. */
const BLOB_PATH = /^blobs\/([a-z0-9]+(?:[+._-][a-z0-9]+)*)\/([a-zA-Z0-9=_-]+)$/;

/** Encoded forms of the registered algorithms (image-spec descriptor.md). */
const ENCODED: Record<string, RegExp | undefined> = { sha256: /^[a-f0-9]{64}$/, sha512: /^[a-f0-9]{128}$/ };

/** Files outside `blobs/` kept in memory: the ones a layout or a docker save reads as JSON. */
function isMetadata(name: string): boolean {
  return name === "oci-layout" || name.endsWith(".json");
}

type Entry = AsyncIterable<Uint8Array> & { header: { name: string; type: string | null; size: number; linkname?: string | null }; destroy(err?: Error): void };

export async function ingestGzipTar(compressed: ReadableStream<Uint8Array>, options: GzipIngestOptions): Promise<GzipIngestResult> {
  const maxFileSize = options.maxFileSize ?? 16 * 1024 * 1024;
  const maxFilesTotal = options.maxFilesTotal ?? 4 * maxFileSize;
  let filesTotal = 0;
  const maxEntries = options.maxEntries ?? 100_000;
  const maxBytes = options.maxDecompressedBytes ?? 64 * 1024 ** 3;
  const result: GzipIngestResult = { files: new Map(), blobs: new Map(), others: new Map() };
  const { extract: wanted } = options;
  let extracted = 0;

  const extractor = extract({ allowUnknownFormat: true } as Parameters<typeof extract>[0]);
  const input = gunzip(compressed);
  const pumped = pump(input, extractor, maxBytes);
  const entries = extractor[Symbol.asyncIterator]() as AsyncIterator<Entry>;
  let count = 0;
  try {
    for (;;) {
      const next = await entries.next().catch((err) => Promise.reject(asArchiveError(err, "tar")));
      if (next.done) break;
      const entry = next.value;
      const ordinal = count;
      if (++count > maxEntries) throw new ArchiveError(`more than ${maxEntries} entries`);
      const name = normalizeEntryName(entry.header.name);
      const { type } = entry.header;
      const isFile = type === "file" || type === "contiguous-file";
      if (wanted) {
        const digest = isFile ? wanted.get(ordinal) : undefined;
        if (digest) {
          const [algorithm, encoded] = digest.split(":");
          result.blobs.set(digest, await storeBlob(entry, algorithm, encoded, options));
          extracted++;
        } else await drain(entry);
      } else if (isFile && name.startsWith("blobs/")) await ingestBlob(entry, name, options, result);
      else if (isFile && isMetadata(name)) {
        filesTotal += entry.header.size - (result.files.get(name)?.byteLength ?? 0);
        if (filesTotal > maxFilesTotal) throw new ArchiveError(`files outside blobs/ add up to more than ${maxFilesTotal} bytes`);
        result.files.set(name, await readSmall(entry, name, maxFileSize));
      } else if (isFile) {
        result.others.set(name, { type: "file", ordinal, size: entry.header.size, ...(await hashEntry(entry, options)) });
      } else if ((type === "symlink" || type === "link") && entry.header.linkname) {
        const linkName = type === "link" ? normalizeEntryName(entry.header.linkname) : entry.header.linkname;
        result.others.set(name, { type: type === "link" ? "hardlink" : "symlink", ordinal, size: 0, linkName });
        await drain(entry);
      } else await drain(entry); // folders and the rest: ignored
    }
    await pumped;
    if (wanted && extracted !== wanted.size) throw new ArchiveError("archive changed between two reads");
    return result;
  } catch (err) {
    input.cancel(err);
    await entries.return?.().catch(() => {});
    // A failing source (an I/O error, not a broken archive) surfaces as itself, however it got here.
    throw input.sourceError ?? err;
  }
}

/** Feeds decompressed bytes to the tar parser, waiting whenever it asks to. */
async function pump(input: Gunzip, extractor: ReturnType<typeof extract>, maxBytes: number): Promise<void> {
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await input.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) throw new ArchiveError(`more than ${maxBytes} bytes once decompressed`);
      if (!extractor.write(value)) await drained(extractor);
      if (extractor.destroyed) return;
    }
    extractor.end(undefined);
  } catch (err) {
    extractor.destroy((input.sourceError as Error | undefined) ?? asArchiveError(err, "gzip"));
  }
}

function drained(stream: ReturnType<typeof extract>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

/** Compressed bytes fed to the decompressor at a time. */
const PIECE = 32 * 1024;
const FED = Symbol("fed");

interface Gunzip {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason: unknown): void;
  /** Set when reading the compressed stream itself failed. */
  sourceError?: unknown;
}

/**
 * Decompresses with `DecompressionStream`, feeding it one small piece at a time and only while
 * a read is waiting on it. Node 20's DecompressionStream ignores backpressure (its readable
 * side queues 16384 chunks, a count, not bytes), so a plain `pipeThrough` decompresses the
 * whole archive into memory ahead of a slow cache. This way memory stays at the output of a
 * piece or two on every runtime.
 */
function gunzip(compressed: ReadableStream<Uint8Array>): Gunzip {
  const source = compressed.getReader();
  const stream = new DecompressionStream("gzip");
  // TypeScript's DOM types want ArrayBuffer-backed chunks; any Uint8Array works at runtime.
  const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
  const output = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  let rest: Uint8Array = new Uint8Array(0);
  let inputDone = false;
  let feeding: Promise<typeof FED> | undefined;
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  const self: Gunzip = {
    async read() {
      pending ??= output.read();
      for (;;) {
        if (!feeding && !inputDone) {
          feeding = feed();
          feeding.catch(() => {}); // raced below; never an unhandled rejection
        }
        // A read that can be answered from the queue wins; input is fed only when it waits.
        const winner = await Promise.race(feeding ? [pending, feeding] : [pending]);
        if (winner === FED) {
          feeding = undefined;
          continue;
        }
        pending = undefined;
        return winner;
      }
    },
    cancel(reason) {
      for (const p of [source.cancel(reason), writer.abort(reason), output.cancel(reason)]) p.catch(() => {});
    },
  };
  async function feed(): Promise<typeof FED> {
    if (rest.length === 0) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await source.read();
      } catch (err) {
        self.sourceError = err;
        throw err;
      }
      if (next.done) {
        inputDone = true;
        await writer.close();
        return FED;
      }
      rest = next.value;
    }
    const piece = rest.subarray(0, PIECE);
    rest = rest.subarray(piece.length);
    await writer.write(piece);
    return FED;
  }
  return self;
}

async function ingestBlob(entry: Entry, name: string, options: GzipIngestOptions, result: GzipIngestResult): Promise<void> {
  const match = BLOB_PATH.exec(name);
  // Not a blob (`blobs/sha256/x/y`, `blobs/sha256/README`): nothing can refer to it. Ignored.
  if (!match || ENCODED[match[1]]?.test(match[2]) === false) return drain(entry);
  const [, algorithm, encoded] = match;
  result.blobs.set(`${algorithm}:${encoded}`, await storeBlob(entry, algorithm, encoded, options));
}

/**
 * Writes an entry to the cache as `blobs/<algorithm>/<encoded>`, hashing as it writes: bytes
 * that do not match the digest fail the write and leave nothing. A blob already cached with
 * the entry's size is kept (the cache only ever holds verified blobs).
 */
async function storeBlob(entry: Entry, algorithm: string, encoded: string, options: GzipIngestOptions): Promise<{ path: string; size: number }> {
  const path = `blobs/${algorithm}/${encoded}`;
  const digest = `${algorithm}:${encoded}`;
  const size = entry.header.size;
  const hasher = options.createHasher(algorithm);
  if (!hasher) throw new ArchiveError(`unsupported digest algorithm in ${path}`);

  const cached = await options.cache.stat(path);
  if (cached?.kind === "file" && cached.size === size) {
    await drain(entry);
    return { path, size };
  }

  let failure: unknown;
  const chunks = entry[Symbol.asyncIterator]();
  const data = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await chunks.next();
          if (!done) {
            const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
            hasher.update(bytes);
            controller.enqueue(bytes);
            return;
          }
          const actual = `${algorithm}:${hasher.digest()}`;
          if (actual !== digest) throw new ArchiveError(`blob ${digest} does not match its content (${actual})`);
          controller.close();
        } catch (err) {
          failure = asArchiveError(err, "tar");
          controller.error(failure);
        }
      },
      cancel(reason) {
        entry.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: 0 },
  );
  try {
    await options.cache.write(path, data);
  } catch (err) {
    // Our own error (bad digest, broken archive) rather than however the cache rethrew it.
    throw failure ?? err;
  }
  return { path, size };
}

/** Reads an entry through, keeping only its sha256 and first bytes. */
async function hashEntry(entry: Entry, options: GzipIngestOptions): Promise<{ digest: string; head: Uint8Array }> {
  const hasher = options.createHasher("sha256");
  if (!hasher) throw new Error("no sha256 hasher");
  const head = new Uint8Array(4);
  let at = 0;
  try {
    for await (const chunk of entry) {
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (at < head.length) {
        const part = bytes.subarray(0, head.length - at);
        head.set(part, at);
        at += part.length;
      }
      hasher.update(bytes);
    }
  } catch (err) {
    throw asArchiveError(err, "tar");
  }
  return { digest: `sha256:${hasher.digest()}`, head: head.slice(0, at) };
}

async function readSmall(entry: Entry, name: string, limit: number): Promise<Uint8Array> {
  if (entry.header.size > limit) throw new ArchiveError(`${name} is larger than ${limit} bytes`);
  const bytes = new Uint8Array(entry.header.size);
  let at = 0;
  try {
    for await (const chunk of entry) {
      if (at + chunk.byteLength > bytes.length) throw new ArchiveError(`${name} is longer than its header says`);
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
  } catch (err) {
    throw asArchiveError(err, "tar");
  }
  if (at !== bytes.length) throw new ArchiveError(`truncated: entry ${name} needs ${bytes.length} bytes, archive has ${at}`);
  return bytes;
}

async function drain(entry: Entry): Promise<void> {
  try {
    for await (const _ of entry);
  } catch (err) {
    throw asArchiveError(err, "tar");
  }
}

/** Errors from the decompressor or the tar parser mean a broken archive. */
function asArchiveError(err: unknown, layer: "gzip" | "tar"): Error {
  if (err instanceof ArchiveError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ArchiveError(`${layer}: ${message}`);
}

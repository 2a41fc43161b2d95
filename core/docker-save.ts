/**
 * Legacy `docker save` archives (before Docker 25): no index.json, but a `manifest.json` of
 * `[{ "Config": "<hex>.json", "RepoTags": ["app:1"], "Layers": ["<id>/layer.tar", ...] }]`.
 * Each entry is served as a Docker schema 2 image whose manifest is written here (once per
 * archive version, deterministically, so its digest is stable).
 *
 * In a plain tar the configs and layers are served in place: their digests are computed by
 * hashing them once per archive version and kept in the blob cache folder keyed by the
 * archive's identity, so neither a request nor a restart hashes them again. In a gzipped one
 * (`docker save | gzip`) they are unpacked into the blob cache, as a gzipped layout's blobs
 * are (gzip.ts hashed them on its first pass; a second pass writes the missing ones). Either
 * way the same archive content gives the same manifests, digests and configs.
 */
import { ArchiveError } from "./errors.ts";
import type { FileInfo, FileSystem, WritableFileSystem } from "./fs.ts";
import { type GzipIngestResult, isGzip } from "./gzip.ts";
import { digestOf, type HasherFactory } from "./hash.ts";
import type { BlobLocation, Layout, ManifestRecord } from "./layout.ts";
import { tagIndex } from "./layout.ts";
import type { Logger } from "./log.ts";
import { MediaType, REF_NAME_ANNOTATION } from "./media.ts";
import type { TarEntry } from "./tar.ts";

/** One item of manifest.json, as parsed (checked before use). */
interface ManifestJsonItem {
  Config?: unknown;
  RepoTags?: unknown;
  Layers?: unknown;
}

const LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar";
const LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const encoder = new TextEncoder();

/** A tar entry as the loader sees it: enough to follow links and ask the archive for its bytes. */
export interface SaveEntry {
  name: string;
  type: TarEntry["type"];
  linkName?: string;
}

/** A config or layer: its digest, where its bytes are served from, and whether it is gzip-compressed. */
export interface SavedBlob {
  digest: string;
  location: BlobLocation;
  gzipped: boolean;
}

/** What `loadDockerSave` needs of an archive, plain (read in place) or gzipped (unpacked). */
export interface SaveArchive<E extends SaveEntry = SaveEntry> {
  /** Entries (files and links) by normalised name; the last of a name wins. */
  entries: Map<string, E>;
  /** The bytes of manifest.json, at most `limit` of them. */
  readManifest(entry: E, limit: number): Promise<Uint8Array>;
  /** Digests and locations of these files (every config and layer, each once). */
  blobs(entries: E[]): Promise<Map<E, SavedBlob>>;
}

/** Follows symlink and hard-link entries (docker save links layers shared between images). */
function resolveEntry<E extends SaveEntry>(entries: Map<string, E>, name: string): E | undefined {
  let entry = entries.get(name);
  for (let hops = 0; entry && entry.type !== "file" && hops < 8; hops++) {
    if (!entry.linkName || (entry.type !== "symlink" && entry.type !== "hardlink")) return undefined;
    let target = entry.linkName;
    if (entry.type === "symlink" && !target.startsWith("/")) {
      const parts = [...entry.name.split("/").slice(0, -1), ...target.split("/")];
      const out: string[] = [];
      for (const p of parts) {
        if (p === "..") out.pop();
        else if (p !== "." && p !== "") out.push(p);
      }
      target = out.join("/");
    }
    entry = entries.get(target.replace(/^\.\//, ""));
  }
  return entry?.type === "file" ? entry : undefined;
}

export async function loadDockerSave<E extends SaveEntry>(archive: SaveArchive<E>, createHasher: HasherFactory, maxJsonBytes: number): Promise<Layout> {
  const { entries } = archive;
  const manifestEntry = resolveEntry(entries, "manifest.json");
  if (!manifestEntry) throw new ArchiveError("neither index.json nor manifest.json: not an OCI layout or docker save archive");
  let saved: unknown;
  try {
    saved = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await archive.readManifest(manifestEntry, maxJsonBytes)));
  } catch (e) {
    throw e instanceof ArchiveError ? e : new ArchiveError(`manifest.json is not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(saved)) throw new ArchiveError("manifest.json is not a list");

  const images = (saved as ManifestJsonItem[]).map((s) => {
    if (typeof s?.Config !== "string" || !Array.isArray(s.Layers) || !s.Layers.every((l) => typeof l === "string")) {
      throw new ArchiveError("manifest.json entry without Config or Layers");
    }
    const config = resolveEntry(entries, s.Config);
    if (!config) throw new ArchiveError(`config ${s.Config} is missing from the archive`);
    const layers = (s.Layers as string[]).map((l) => {
      const layer = resolveEntry(entries, l);
      if (!layer) throw new ArchiveError(`layer ${l} is missing from the archive`);
      return layer;
    });
    const tags = Array.isArray(s.RepoTags) ? s.RepoTags.filter((t): t is string => typeof t === "string") : [];
    return { config, layers, tags };
  });
  const located = await archive.blobs([...new Set(images.flatMap((i) => [i.config, ...i.layers]))]);

  const manifests = new Map<string, ManifestRecord>();
  const blobs = new Map<string, BlobLocation>();
  const layoutEntries: Layout["entries"] = [];
  for (const image of images) {
    const config = located.get(image.config)!;
    blobs.set(config.digest, config.location);
    const layers = [];
    for (const entry of image.layers) {
      const layer = located.get(entry)!;
      layers.push({ mediaType: layer.gzipped ? LAYER_TAR_GZIP : LAYER_TAR, size: layer.location.size, digest: layer.digest });
      blobs.set(layer.digest, layer.location);
    }
    const json = {
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config: { mediaType: MediaType.dockerConfig, size: config.location.size, digest: config.digest },
      layers,
    };
    const bytes = encoder.encode(JSON.stringify(json, null, 3));
    const digest = digestOf(createHasher, "sha256", bytes)!;
    manifests.set(digest, { digest, mediaType: MediaType.dockerManifest, bytes, json, children: [] });
    if (image.tags.length === 0) layoutEntries.push({ digest, annotations: {} });
    for (const tag of image.tags) layoutEntries.push({ digest, annotations: { [REF_NAME_ANNOTATION]: tag } });
  }
  return { entries: layoutEntries, manifests, blobs, problems: [], tagsFor: tagIndex(layoutEntries) };
}

// --- a plain tar: served in place ---------------------------------------------------------------

export interface TarSaveInput {
  path: string;
  info: FileInfo;
  fs: FileSystem;
  cache?: WritableFileSystem;
  /** Tar entries by normalised name. */
  entries: Map<string, TarEntry>;
  createHasher: HasherFactory;
  logger: Logger;
}

export function tarSave(input: TarSaveInput): SaveArchive<TarEntry> {
  const { fs, path, info } = input;
  return {
    entries: input.entries,
    async readManifest(entry, limit) {
      if (entry.size > limit) throw new ArchiveError(`manifest.json is larger than ${limit} bytes`);
      const bytes = await fs.read(path, entry.offset, entry.size);
      if (!bytes || bytes.byteLength !== entry.size) throw new ArchiveError(`${entry.name} is truncated`);
      return bytes;
    },
    async blobs(entries) {
      const digests = await rangeDigests(input, entries);
      const out = new Map<TarEntry, SavedBlob>();
      for (const entry of entries) {
        const head = await fs.read(path, entry.offset, 2);
        const location = { fs, path, offset: entry.offset, size: entry.size, expect: info };
        out.set(entry, { digest: digests.get(entry.offset)!, location, gzipped: head !== undefined && isGzip(head) });
      }
      return out;
    },
  };
}

async function hashRange(input: TarSaveInput, entry: TarEntry): Promise<string> {
  const hasher = input.createHasher("sha256")!;
  const stream = await input.fs.stream(input.path, entry.offset, entry.offset + entry.size, { expect: input.info });
  if (!stream) throw new Error("archive changed while its layers were hashed");
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) hasher.update(chunk);
  return `sha256:${hasher.digest()}`;
}

/** Where computed digests of one archive version are remembered. */
function memoPath(input: TarSaveInput): string {
  const key = digestOf(input.createHasher, "sha256", encoder.encode(`${input.path}\0${input.info.id}\0${input.info.size}\0${input.info.mtimeMs}`))!;
  return `docker-save/${key.slice(7)}.json`;
}

/** sha256 of each entry by its offset: remembered in the cache, else hashed (and remembered). */
async function rangeDigests(input: TarSaveInput, ranges: TarEntry[]): Promise<Map<number, string>> {
  const memo = new Map<number, string>();
  const file = input.cache && memoPath(input);
  if (input.cache && file) {
    const info = await input.cache.stat(file).catch(() => undefined);
    const bytes = info && (await input.cache.read(file, 0, info.size).catch(() => undefined));
    if (bytes) {
      try {
        for (const [offset, digest] of Object.entries(JSON.parse(new TextDecoder().decode(bytes)) as Record<string, string>)) memo.set(Number(offset), digest);
      } catch {
        // A damaged memo is recomputed.
      }
    }
  }
  let computed = false;
  for (const range of ranges) {
    if (memo.has(range.offset)) continue;
    memo.set(range.offset, await hashRange(input, range));
    computed = true;
  }
  if (computed && input.cache && file) {
    const body = encoder.encode(JSON.stringify(Object.fromEntries(memo)));
    await input.cache
      .write(file, bytesStream(body))
      .catch((e) => input.logger.warn("cannot remember layer digests", { file: input.path, error: (e as Error).message }));
  }
  return memo;
}

// --- a gzipped tar: unpacked into the blob cache ------------------------------------------------

/** An entry of a gzipped archive and where gzip.ts left its bytes. */
export interface GzipSaveEntry extends SaveEntry {
  /** Kept in memory (manifest.json, `<hex>.json` configs). */
  bytes?: Uint8Array;
  /** Written to the cache already (a `blobs/<alg>/<encoded>` entry). */
  cached?: { digest: string; path: string; size: number };
  /** Hashed on the first pass, not kept: written to the cache by a second one when needed. */
  hashed?: { digest: string; size: number; ordinal: number; head?: Uint8Array };
}

export interface GzipSaveInput {
  ingested: GzipIngestResult;
  cache: WritableFileSystem;
  createHasher: HasherFactory;
  /** Reads the archive again, writing the files at these positions to the cache as these sha256 blobs. */
  extract(wanted: Map<number, string>): Promise<void>;
}

export function gzipSave(input: GzipSaveInput): SaveArchive<GzipSaveEntry> {
  const { ingested, cache, createHasher } = input;
  const entries = new Map<string, GzipSaveEntry>();
  for (const [name, other] of ingested.others) {
    const { type, linkName, digest, size, ordinal, head } = other;
    entries.set(name, { name, type, linkName, ...(digest && { hashed: { digest, size, ordinal, head } }) });
  }
  for (const [digest, blob] of ingested.blobs) entries.set(blob.path, { name: blob.path, type: "file", cached: { digest, ...blob } });
  for (const [name, bytes] of ingested.files) entries.set(name, { name, type: "file", bytes });

  const present = async (path: string, size: number) => {
    const info = await cache.stat(path);
    return info?.kind === "file" && info.size === size;
  };
  return {
    entries,
    async readManifest(entry, limit) {
      if (!entry.bytes) throw new ArchiveError("manifest.json is not a JSON file of the archive");
      if (entry.bytes.byteLength > limit) throw new ArchiveError(`manifest.json is larger than ${limit} bytes`);
      return entry.bytes;
    },
    async blobs(list) {
      const out = new Map<GzipSaveEntry, SavedBlob>();
      const wanted = new Map<number, string>();
      const asked = new Set<string>();
      for (const entry of list) {
        let blob: SavedBlob;
        if (entry.bytes) {
          const digest = digestOf(createHasher, "sha256", entry.bytes)!;
          const path = `blobs/sha256/${digest.slice(7)}`;
          if (!(await present(path, entry.bytes.byteLength))) await cache.write(path, bytesStream(entry.bytes));
          blob = { digest, location: { fs: cache, path, offset: 0, size: entry.bytes.byteLength }, gzipped: isGzip(entry.bytes) };
        } else if (entry.cached) {
          const { digest, path, size } = entry.cached;
          const head = await cache.read(path, 0, 2);
          blob = { digest, location: { fs: cache, path, offset: 0, size }, gzipped: head !== undefined && isGzip(head) };
        } else {
          const { digest, size, ordinal, head } = entry.hashed!;
          const path = `blobs/sha256/${digest.slice(7)}`;
          if (!asked.has(digest) && !(await present(path, size))) wanted.set(ordinal, digest);
          asked.add(digest);
          blob = { digest, location: { fs: cache, path, offset: 0, size }, gzipped: head !== undefined && isGzip(head) };
        }
        out.set(entry, blob);
      }
      if (wanted.size > 0) await input.extract(wanted);
      return out;
    },
  };
}

function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (c) => (c.enqueue(bytes), c.close()) });
}

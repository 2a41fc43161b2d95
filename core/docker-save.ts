/**
 * Legacy `docker save` archives (before Docker 25): no index.json, but a `manifest.json` of
 * `[{ "Config": "<hex>.json", "RepoTags": ["app:1"], "Layers": ["<id>/layer.tar", ...] }]`.
 * Each entry is served as a Docker schema 2 image whose manifest is written here (once per
 * archive version, deterministically, so its digest is stable). Layer digests are computed
 * by hashing the layers once per archive version and kept in the blob cache folder keyed by the
 * archive's identity, so neither a request nor a restart hashes them again.
 */
import { ArchiveError } from "./errors.ts";
import type { FileInfo, FileSystem, WritableFileSystem } from "./fs.ts";
import { digestOf, type HasherFactory } from "./hash.ts";
import type { BlobLocation, Layout, ManifestRecord } from "./layout.ts";
import { tagIndex } from "./layout.ts";
import type { Logger } from "./log.ts";
import { MediaType, REF_NAME_ANNOTATION } from "./media.ts";
import type { TarEntry } from "./tar.ts";

interface SaveEntry {
  Config?: unknown;
  RepoTags?: unknown;
  Layers?: unknown;
}

const LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar";
const LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const encoder = new TextEncoder();

export interface DockerSaveInput {
  path: string;
  info: FileInfo;
  fs: FileSystem;
  cache?: WritableFileSystem;
  /** Tar entries by normalised name. */
  entries: Map<string, TarEntry>;
  createHasher: HasherFactory;
  logger: Logger;
  maxJsonBytes: number;
}

/** Follows symlink and hard-link entries (docker save links layers shared between images). */
function resolveEntry(entries: Map<string, TarEntry>, name: string): TarEntry | undefined {
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

async function readEntry(fs: FileSystem, path: string, entry: TarEntry): Promise<Uint8Array> {
  const bytes = await fs.read(path, entry.offset, entry.size);
  if (!bytes || bytes.byteLength !== entry.size) throw new ArchiveError(`${entry.name} is truncated`);
  return bytes;
}

async function hashRange(input: DockerSaveInput, entry: TarEntry): Promise<string> {
  const hasher = input.createHasher("sha256")!;
  const stream = await input.fs.stream(input.path, entry.offset, entry.offset + entry.size, { expect: input.info });
  if (!stream) throw new Error("archive changed while its layers were hashed");
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) hasher.update(chunk);
  return `sha256:${hasher.digest()}`;
}

/** Where computed layer digests of one archive version are remembered. */
function memoPath(input: DockerSaveInput): string {
  const key = digestOf(input.createHasher, "sha256", encoder.encode(`${input.path}\0${input.info.id}\0${input.info.size}\0${input.info.mtimeMs}`))!;
  return `docker-save/${key.slice(7)}.json`;
}

async function layerDigests(input: DockerSaveInput, layers: TarEntry[]): Promise<Map<number, string>> {
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
  for (const layer of layers) {
    if (memo.has(layer.offset)) continue;
    memo.set(layer.offset, await hashRange(input, layer));
    computed = true;
  }
  if (computed && input.cache && file) {
    const body = encoder.encode(JSON.stringify(Object.fromEntries(memo)));
    await input.cache
      .write(file, new ReadableStream({ start: (c) => (c.enqueue(body), c.close()) }))
      .catch((e) => input.logger.warn("cannot remember layer digests", { file: input.path, error: (e as Error).message }));
  }
  return memo;
}

export async function loadDockerSave(input: DockerSaveInput): Promise<Layout> {
  const { entries, fs, path, info } = input;
  const manifestEntry = resolveEntry(entries, "manifest.json");
  if (!manifestEntry) throw new ArchiveError("neither index.json nor manifest.json: not an OCI layout or docker save archive");
  if (manifestEntry.size > input.maxJsonBytes) throw new ArchiveError(`manifest.json is larger than ${input.maxJsonBytes} bytes`);
  let saved: SaveEntry[];
  try {
    saved = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await readEntry(fs, path, manifestEntry)));
  } catch (e) {
    throw e instanceof ArchiveError ? e : new ArchiveError(`manifest.json is not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(saved)) throw new ArchiveError("manifest.json is not a list");

  const images = saved.map((s) => {
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
  const digests = await layerDigests(input, images.flatMap((i) => i.layers));

  const manifests = new Map<string, ManifestRecord>();
  const blobs = new Map<string, BlobLocation>();
  const layoutEntries: Layout["entries"] = [];
  for (const image of images) {
    const configBytes = await readEntry(fs, path, image.config);
    const configDigest = digestOf(input.createHasher, "sha256", configBytes)!;
    blobs.set(configDigest, { fs, path, offset: image.config.offset, size: image.config.size, expect: info });
    const layers = [];
    for (const layer of image.layers) {
      const digest = digests.get(layer.offset)!;
      const head = await fs.read(path, layer.offset, 2);
      const gzipped = head !== undefined && head[0] === 0x1f && head[1] === 0x8b;
      layers.push({ mediaType: gzipped ? LAYER_TAR_GZIP : LAYER_TAR, size: layer.size, digest });
      blobs.set(digest, { fs, path, offset: layer.offset, size: layer.size, expect: info });
    }
    const json = {
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config: { mediaType: MediaType.dockerConfig, size: image.config.size, digest: configDigest },
      layers,
    };
    const bytes = encoder.encode(JSON.stringify(json, null, 3));
    const digest = digestOf(input.createHasher, "sha256", bytes)!;
    manifests.set(digest, { digest, mediaType: MediaType.dockerManifest, bytes, json, children: [] });
    if (image.tags.length === 0) layoutEntries.push({ digest, annotations: {} });
    for (const tag of image.tags) layoutEntries.push({ digest, annotations: { [REF_NAME_ANNOTATION]: tag } });
  }
  return { entries: layoutEntries, manifests, blobs, problems: [], tagsFor: tagIndex(layoutEntries) };
}

/**
 * An OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<encoded>`) read out of an
 * archive: which manifests it holds, which tags they carry, where each blob's bytes are.
 * Manifests and indexes are small JSON: read whole and checked against their digests here,
 * once per archive version. Layers are never read here.
 * https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
import { ArchiveError } from "./errors.ts";
import type { FileInfo, FileSystem } from "./fs.ts";
import { digestOf, type HasherFactory } from "./hash.ts";
import { parseDigest } from "./grammar.ts";
import type { Logger } from "./log.ts";
import { type Descriptor, isIndexMediaType, MediaType, CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION } from "./media.ts";
import { tagForName } from "./refname.ts";

/** Where a blob's bytes are: a byte range of a file (the archive itself, or the blob cache). */
export interface BlobLocation {
  fs: FileSystem;
  path: string;
  offset: number;
  size: number;
  /** The file must still be this one (an archive replaced by rename is not read under its old index). */
  expect?: FileInfo;
}

export interface ManifestRecord {
  digest: string;
  /** The media type served as Content-Type. */
  mediaType: string;
  /** The stored bytes, served unchanged. */
  bytes: Uint8Array;
  /** Parsed JSON (manifest or index). */
  json: ManifestJson;
  /** Child manifests (for an index). */
  children: string[];
}

export interface ManifestJson {
  schemaVersion?: number;
  mediaType?: string;
  artifactType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface LayoutLimits {
  /** Largest manifest or index accepted (distribution's limit is 4 MiB). */
  maxManifestBytes: number;
  /** Largest index.json accepted. */
  maxIndexJsonBytes: number;
}

export const defaultLayoutLimits: LayoutLimits = { maxManifestBytes: 4 << 20, maxIndexJsonBytes: 16 << 20 };

export interface Layout {
  /** index.json's manifests, in order, each with its annotations. Only servable ones. */
  entries: Array<{ digest: string; annotations: Record<string, string> }>;
  /** Every servable manifest and index, including the children of indexes. */
  manifests: Map<string, ManifestRecord>;
  /** Blobs referenced by a servable manifest (configs, layers, child manifests), with their location. */
  blobs: Map<string, BlobLocation>;
  /** Problems that made single images unservable (the rest of the archive is served). */
  problems: string[];
  /** Tags for `name` (memoised): tag -> manifest digest, first entry wins. */
  tagsFor(name: string): Map<string, string>;
}

export interface LayoutSource {
  /** A non-blob file of the layout (`index.json`, `oci-layout`), up to `limit` bytes. */
  readFile(name: string, limit: number): Promise<Uint8Array | undefined>;
  /** Every blob the archive holds. */
  blobs: Map<string, BlobLocation>;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Unservable images of one archive logged one by one; more are summed up in one line. */
const MAX_LOGGED_PROBLEMS = 20;

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(decoder.decode(bytes)) as T;
  } catch (e) {
    throw new ArchiveError(`${what} is not valid JSON (${(e as Error).message})`);
  }
}

function isDescriptor(d: unknown): d is Descriptor {
  const x = d as Descriptor;
  return typeof x === "object" && x !== null && typeof x.digest === "string" && Number.isSafeInteger(x.size) && x.size >= 0;
}

/** The media type a manifest is served with: its own field, else its descriptor's, else inferred. */
function mediaTypeOf(json: ManifestJson, descriptor: Descriptor): string {
  if (typeof json.mediaType === "string" && json.mediaType !== "") return json.mediaType;
  if (descriptor.mediaType) return descriptor.mediaType;
  return Array.isArray(json.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
}

export async function readBlobBytes(location: BlobLocation): Promise<Uint8Array> {
  const bytes = await location.fs.read(location.path, location.offset, location.size);
  if (!bytes || bytes.byteLength !== location.size) throw new ArchiveError(`blob at offset ${location.offset} is truncated`);
  return bytes;
}

export async function loadLayout(
  source: LayoutSource,
  createHasher: HasherFactory,
  logger: Logger,
  file: string,
  limits: LayoutLimits = defaultLayoutLimits,
): Promise<Layout> {
  const layoutBytes = await source.readFile("oci-layout", 64 << 10);
  if (!layoutBytes) throw new ArchiveError("no oci-layout file: not an OCI image layout");
  const layoutJson = parseJson<{ imageLayoutVersion?: unknown }>(layoutBytes, "oci-layout");
  if (typeof layoutJson?.imageLayoutVersion !== "string") throw new ArchiveError("oci-layout has no imageLayoutVersion");

  const indexBytes = await source.readFile("index.json", limits.maxIndexJsonBytes);
  if (!indexBytes) throw new ArchiveError("no index.json");
  const index = parseJson<ManifestJson>(indexBytes, "index.json");
  if (!index || !Array.isArray(index.manifests)) throw new ArchiveError("index.json has no manifests list");

  const manifests = new Map<string, ManifestRecord>();
  const blobs = new Map<string, BlobLocation>();
  const problems: string[] = [];
  const broken = new Set<string>();

  // An index.json listing thousands of broken images must not flood the log: the first few
  // are logged one by one, the rest counted in one line at the end.
  let unservable = 0;
  const report = (fields: Record<string, unknown>) => {
    if (++unservable <= MAX_LOGGED_PROBLEMS) logger.error("image unservable", { file, ...fields });
  };
  const problem = (digest: string, message: string) => {
    problems.push(`${digest}: ${message}`);
    broken.add(digest);
    report({ digest, problem: message });
  };

  /** Loads a manifest or index and what it references; false if it cannot be served. */
  const visit = async (descriptor: Descriptor, depth: number): Promise<boolean> => {
    const { digest } = descriptor;
    if (manifests.has(digest)) return true;
    if (broken.has(digest)) return false;
    const parsed = parseDigest(digest);
    if (!parsed) return problem(digest, "invalid or unsupported digest"), false;
    if (descriptor.size > limits.maxManifestBytes) return problem(digest, `manifest larger than ${limits.maxManifestBytes} bytes`), false;
    const location = source.blobs.get(digest);
    if (!location) return problem(digest, "manifest blob missing from the archive"), false;
    if (location.size !== descriptor.size) return problem(digest, `size ${location.size} in the archive, ${descriptor.size} in its descriptor`), false;
    const bytes = await readBlobBytes(location);
    if (digestOf(createHasher, parsed.algorithm, bytes) !== digest) return problem(digest, "manifest bytes do not match their digest"), false;
    let json: ManifestJson;
    try {
      json = parseJson<ManifestJson>(bytes, `manifest ${digest}`);
      if (typeof json !== "object" || json === null || Array.isArray(json)) throw new ArchiveError("not a JSON object");
    } catch (e) {
      return problem(digest, (e as Error).message), false;
    }
    const mediaType = mediaTypeOf(json, descriptor);
    const record: ManifestRecord = { digest, mediaType, bytes, json, children: [] };
    const referenced: Descriptor[] = [];
    if (isIndexMediaType(mediaType) || Array.isArray(json.manifests)) {
      if (depth > 4) return problem(digest, "image indexes nested too deeply"), false;
      for (const child of json.manifests ?? []) {
        if (!isDescriptor(child)) return problem(digest, "index has an invalid descriptor"), false;
        // A child absent from the archive (a single platform copied out of a multi-arch image)
        // leaves the index servable: clients pick the platform they need.
        if (!source.blobs.has(child.digest)) {
          logger.warn("index child not in archive", { file, digest, child: child.digest });
          continue;
        }
        if (await visit(child, depth + 1)) {
          record.children.push(child.digest);
          referenced.push(child);
        }
      }
    } else {
      const parts = [json.config, ...(json.layers ?? [])].filter((d) => d !== undefined);
      for (const d of parts) {
        if (!isDescriptor(d)) return problem(digest, "manifest has an invalid descriptor"), false;
        if (source.blobs.has(d.digest)) referenced.push(d);
        else if (!d.urls?.length) return problem(digest, `references blob ${d.digest}, which the archive does not hold`), false;
      }
    }
    for (const d of referenced) {
      const location = source.blobs.get(d.digest)!;
      if (location.size !== d.size) return problem(digest, `blob ${d.digest} is ${location.size} bytes, its descriptor says ${d.size}`), false;
    }
    for (const d of referenced) blobs.set(d.digest, source.blobs.get(d.digest)!);
    blobs.set(digest, location);
    manifests.set(digest, record);
    return true;
  };

  const entries: Layout["entries"] = [];
  for (const d of index.manifests) {
    if (!isDescriptor(d)) {
      problems.push("index.json has an invalid descriptor");
      report({ problem: "index.json has an invalid descriptor" });
      continue;
    }
    if (await visit(d, 0)) entries.push({ digest: d.digest, annotations: d.annotations ?? {} });
  }
  if (unservable > MAX_LOGGED_PROBLEMS) {
    logger.error("image unservable", { file, problem: `${unservable - MAX_LOGGED_PROBLEMS} more unservable images (not logged one by one)`, count: unservable });
  }

  return { entries, manifests, blobs, problems, tagsFor: tagIndex(entries) };
}

/** `tagsFor(name)` over index.json entries: tag -> manifest digest, first entry wins (memoised). */
export function tagIndex(entries: Layout["entries"]): Layout["tagsFor"] {
  const memo = new Map<string, Map<string, string>>();
  return (name: string): Map<string, string> => {
    let tags = memo.get(name);
    if (tags) return tags;
    tags = new Map();
    for (const entry of entries) {
      for (const key of [REF_NAME_ANNOTATION, CONTAINERD_NAME_ANNOTATION]) {
        const value = entry.annotations[key];
        const tag = typeof value === "string" ? tagForName(value, name) : undefined;
        if (tag !== undefined && !tags.has(tag)) tags.set(tag, entry.digest);
      }
    }
    if (memo.size > 64) memo.clear();
    memo.set(name, tags);
    return tags;
  };
}

/** True when an index.json entry carries any naming annotation. */
export function hasRefAnnotation(annotations: Record<string, string>): boolean {
  return typeof annotations[REF_NAME_ANNOTATION] === "string" || typeof annotations[CONTAINERD_NAME_ANNOTATION] === "string";
}

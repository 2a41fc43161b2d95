// Small, dependency-light OCI helpers for the end-to-end suites: write a source image layout
// (single- and multi-arch) that real tools then copy, and read any `.oci` archive (plain or
// gzip) back to know what the registry must serve.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { extract } from "tar-stream";

export const MT = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

export const MANIFEST_MEDIA_TYPES: readonly string[] = [MT.ociManifest, MT.ociIndex, MT.dockerManifest, MT.dockerList];
export const isIndexType = (mediaType: string) => mediaType === MT.ociIndex || mediaType === MT.dockerList;
/** An Accept header that admits every manifest type (CNCF distribution needs it for OCI). */
export const ACCEPT_MANIFESTS = MANIFEST_MEDIA_TYPES.join(", ");

export const sha256 = (data: Uint8Array | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

export interface IndexJson {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
}

// --- tar writing (ustar, names up to 100 bytes, fixed mtime) ---------------------------------

export interface TarFile {
  name: string;
  data?: Uint8Array | string;
  /** "0" file (default) or "5" folder. */
  type?: "0" | "5";
  mode?: number;
  mtime?: number;
}

function header(file: TarFile, size: number): Buffer {
  const block = Buffer.alloc(512);
  const name = Buffer.from(file.name);
  if (name.length > 100) throw new Error(`tar name too long: ${file.name}`);
  name.copy(block, 0);
  const octal = (value: number, length: number, offset: number) => block.write(value.toString(8).padStart(length - 1, "0") + "\0", offset, "ascii");
  octal(file.mode ?? (file.type === "5" ? 0o755 : 0o644), 8, 100);
  octal(0, 8, 108);
  octal(0, 8, 116);
  octal(size, 12, 124);
  octal(file.mtime ?? 0, 12, 136);
  block.fill(" ", 148, 156);
  block.write(file.type ?? "0", 156, "ascii");
  block.write("ustar\0", 257, "ascii");
  block.write("00", 263, "ascii");
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "ascii");
  return block;
}

/** A tar archive of the given entries, in order, ending with two zero blocks. */
export function tar(files: readonly TarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    const data = file.data === undefined ? Buffer.alloc(0) : Buffer.from(file.data);
    parts.push(header(file, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// --- a source layout for the real tools to copy ---------------------------------------------

export interface SourceImage {
  platform: { architecture: string; os: string; variant?: string };
  manifestDigest: string;
  manifest: Buffer;
  configDigest: string;
  layerDigest: string;
  diffId: string;
}

export interface SourceLayout {
  dir: string;
  /** Tags in the layout: `amd64`, `arm64` (single manifests) and `multi` (the index). */
  images: SourceImage[];
  indexDigest: string;
  index: Buffer;
}

/**
 * Writes an OCI image layout folder holding two small images (linux/amd64, linux/arm64/v8)
 * with one gzip layer each (`/hello.txt`), tagged `amd64` and `arm64`, and an image index of
 * both tagged `multi`. `label` goes into the file text so layouts from different suites differ.
 */
export function writeSourceLayout(dir: string, label = "e2e"): SourceLayout {
  const blobs = new Map<string, Buffer>();
  const put = (data: Buffer | string) => {
    const bytes = Buffer.from(data);
    const digest = sha256(bytes);
    blobs.set(digest, bytes);
    return { digest, size: bytes.length };
  };
  const platforms = [
    { architecture: "amd64", os: "linux" },
    { architecture: "arm64", os: "linux", variant: "v8" },
  ];
  const images: SourceImage[] = [];
  const refs: Descriptor[] = [];
  for (const platform of platforms) {
    const layerTar = tar([
      { name: "hello.txt", data: `Hello from simple-oci-registry (${label}, ${platform.architecture})\n`, mtime: 1_700_000_000 },
    ]);
    const diffId = sha256(layerTar);
    const layer = put(gzipSync(layerTar, { level: 9 }));
    const config = put(
      JSON.stringify({
        created: "2024-01-01T00:00:00Z",
        architecture: platform.architecture,
        ...(platform.variant ? { variant: platform.variant } : {}),
        os: platform.os,
        config: { Cmd: ["/hello.txt"] },
        rootfs: { type: "layers", diff_ids: [diffId] },
        history: [{ created: "2024-01-01T00:00:00Z", created_by: "test/helpers/oci-layout.ts" }],
      }),
    );
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MT.ociManifest,
        config: { mediaType: MT.ociConfig, ...config },
        layers: [{ mediaType: MT.ociLayerGzip, ...layer }],
      }),
    );
    const manifest = put(manifestBytes);
    images.push({ platform, manifestDigest: manifest.digest, manifest: manifestBytes, configDigest: config.digest, layerDigest: layer.digest, diffId });
    refs.push({ mediaType: MT.ociManifest, ...manifest, platform });
  }
  const indexBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: refs }));
  const index = put(indexBytes);
  const layoutIndex: IndexJson = {
    schemaVersion: 2,
    manifests: [
      { ...refs[0]!, annotations: { "org.opencontainers.image.ref.name": "amd64" } },
      { ...refs[1]!, annotations: { "org.opencontainers.image.ref.name": "arm64" } },
      { mediaType: MT.ociIndex, ...index, annotations: { "org.opencontainers.image.ref.name": "multi" } },
    ],
  };
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  for (const [digest, data] of blobs) writeFileSync(join(dir, "blobs/sha256", digest.slice(7)), data);
  writeFileSync(join(dir, "index.json"), JSON.stringify(layoutIndex));
  return { dir, images, indexDigest: index.digest, index: indexBytes };
}

// --- reading archives -----------------------------------------------------------------------

export interface ManifestInfo {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  /** Parsed JSON. */
  json: { mediaType?: string; manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
}

export interface ArchiveContents {
  /** Entry name (without a leading `./`) → bytes, for regular files. */
  files: Map<string, Buffer>;
  /** Entry names in archive order, as written (with `./` if the writer used it). */
  entryNames: string[];
  gzip: boolean;
  index: IndexJson;
  blob(digest: string): Buffer | undefined;
  /** The manifest or index a descriptor points at; mediaType from the JSON, else the descriptor. */
  manifest(digest: string, descriptorMediaType?: string): ManifestInfo;
  /** Every blob digest reachable from a manifest/index digest (itself, children, configs, layers). */
  closure(digest: string): string[];
}

/** Reads an `.oci` archive (tar, or gzip of tar detected by magic bytes) into memory. */
export async function readArchive(file: string): Promise<ArchiveContents> {
  let bytes: Buffer = readFileSync(file);
  const gzip = bytes[0] === 0x1f && bytes[1] === 0x8b;
  if (gzip) bytes = gunzipSync(bytes);
  const files = new Map<string, Buffer>();
  const entryNames: string[] = [];
  const ex = extract();
  Readable.from([bytes]).pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    entryNames.push(entry.header.name);
    if (entry.header.type === "file") files.set(entry.header.name.replace(/^\.\//, ""), Buffer.concat(chunks));
  }
  const indexBytes = files.get("index.json");
  if (!indexBytes) throw new Error(`${file}: no index.json`);
  const index = JSON.parse(indexBytes.toString("utf8")) as IndexJson;
  const blob = (digest: string) => files.get(`blobs/${digest.replace(":", "/")}`);
  const manifest = (digest: string, descriptorMediaType?: string): ManifestInfo => {
    const data = blob(digest);
    if (!data) throw new Error(`${file}: no blob ${digest}`);
    const json = JSON.parse(data.toString("utf8")) as ManifestInfo["json"];
    const mediaType = json.mediaType ?? descriptorMediaType ?? (json.manifests ? MT.ociIndex : MT.ociManifest);
    return { digest, mediaType, bytes: data, json };
  };
  const closure = (digest: string): string[] => {
    const seen = new Set<string>();
    const walk = (d: string, mediaType?: string) => {
      if (seen.has(d)) return;
      seen.add(d);
      const m = manifest(d, mediaType);
      for (const child of m.json.manifests ?? []) walk(child.digest, child.mediaType);
      if (m.json.config) seen.add(m.json.config.digest);
      for (const layer of m.json.layers ?? []) seen.add(layer.digest);
    };
    walk(digest);
    return [...seen];
  };
  return { files, entryNames, gzip, index, blob, manifest, closure };
}

// --- what a client pulls ----------------------------------------------------------------------

/** The OCI architecture name of this machine (what containerd pulls from an index by default). */
export function hostArchitecture(): string {
  const map: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
  return map[process.arch] ?? process.arch;
}

/**
 * Digests a single-platform pull fetches: the manifest (or the index and the child manifest for
 * `architecture`), its config and its layers.
 */
export function platformClosure(contents: ArchiveContents, digest: string, architecture = hostArchitecture(), mediaType?: string): string[] {
  const top = contents.manifest(digest, mediaType);
  if (!top.json.manifests) return contents.closure(digest);
  const child = top.json.manifests.find((d) => d.platform?.architecture === architecture && (d.platform.os ?? "linux") === "linux");
  if (!child) throw new Error(`no ${architecture} manifest in ${digest}`);
  return [digest, ...contents.closure(child.digest)];
}

/** Child manifest descriptors of an index (empty for an image manifest). */
export function childManifests(contents: ArchiveContents, digest: string, mediaType?: string): Descriptor[] {
  return contents.manifest(digest, mediaType).json.manifests ?? [];
}

/**
 * Writes an OCI layout folder holding the given manifests/indexes of an archive (all blobs they
 * reach), each tagged in index.json: `refs` maps tag → digest. For pushing with skopeo.
 */
export function writeLayoutFrom(contents: ArchiveContents, dir: string, refs: Record<string, string>): void {
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const manifests: Descriptor[] = [];
  for (const [tag, digest] of Object.entries(refs)) {
    const descriptor = contents.index.manifests.find((d) => d.digest === digest);
    const mediaType = contents.manifest(digest, descriptor?.mediaType).mediaType;
    for (const blobDigest of contents.closure(digest)) {
      const data = contents.blob(blobDigest);
      if (!data) throw new Error(`archive lacks blob ${blobDigest}`);
      writeFileSync(join(dir, "blobs/sha256", blobDigest.slice(7)), data);
    }
    manifests.push({ mediaType, digest, size: contents.blob(digest)!.length, annotations: { "org.opencontainers.image.ref.name": tag } });
  }
  writeFileSync(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests }));
}

/**
 * Writes a skopeo `dir:` folder for one manifest or index of an archive: `manifest.json` (the
 * top manifest's exact bytes), `<hex>.manifest.json` for each child manifest, `<hex>` for the
 * other blobs, and `version`. skopeo 1.9 reads any manifest type from it (its `oci:` reader skips
 * index.json entries with Docker media types), so this is how Docker lists are pushed.
 */
export function writeDirFrom(contents: ArchiveContents, dir: string, digest: string, mediaType?: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "version"), "Directory Transport Version: 1.1\n");
  const top = contents.manifest(digest, mediaType);
  writeFileSync(join(dir, "manifest.json"), top.bytes);
  const children = new Set((top.json.manifests ?? []).map((d) => d.digest));
  for (const blobDigest of contents.closure(digest)) {
    if (blobDigest === digest) continue;
    const data = contents.blob(blobDigest);
    if (!data) throw new Error(`archive lacks blob ${blobDigest}`);
    writeFileSync(join(dir, children.has(blobDigest) ? `${blobDigest.slice(7)}.manifest.json` : blobDigest.slice(7)), data);
  }
}

/** Reads back what `skopeo copy --all docker://... dir:DIR` wrote: digest → bytes (top manifest included). */
export function readDirCopy(dir: string): { manifest: Buffer; blob(digest: string): Buffer | undefined } {
  const manifest = readFileSync(join(dir, "manifest.json"));
  return {
    manifest,
    blob: (digest: string) => {
      if (sha256(manifest) === digest) return manifest;
      for (const name of [`${digest.slice(7)}.manifest.json`, digest.slice(7)]) {
        try {
          return readFileSync(join(dir, name));
        } catch {
          // try the next name
        }
      }
      return undefined;
    },
  };
}

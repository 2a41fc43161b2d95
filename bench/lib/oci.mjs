// Generates the benchmark's content: OCI image layouts (folders, for skopeo and nginx) and
// `.oci` archives (tar written here by hand, plain or gzip) holding the same bytes.
//
// Layer bytes come from AES-256-CTR keyed by a seed: deterministic, incompressible like real
// compressed layers, and produced at several GB/s, so a 1 GiB layer takes a second or two.
import { createCipheriv, createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { createReadStream, createWriteStream } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";

const BLOCK = 512;
const CHUNK = 8 << 20;
/** A fixed mtime so archives are byte-identical from run to run. */
const MTIME = 1_700_000_000;

export const MEDIA = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar",
};

/** Deterministic pseudo-random bytes: the AES-256-CTR key stream of `seed`. */
export function randomSource(seed) {
  const key = createHash("sha256").update(`simple-oci-registry-bench:${seed}`).digest();
  const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  return (n) => cipher.update(n <= CHUNK ? zeros.subarray(0, n) : Buffer.alloc(n));
}

const sha256 = (data) => `sha256:${createHash("sha256").update(data).digest("hex")}`;
const hexOf = (digest) => digest.slice("sha256:".length);

function writeOctal(buf, offset, length, value) {
  // `length - 1` digits and a NUL terminator.
  const text = value.toString(8).padStart(length - 1, "0");
  if (text.length > length - 1) throw new RangeError(`tar field too small for ${value}`);
  buf.write(`${text}\0`, offset, length, "ascii");
}

/** A ustar header for a regular file (name ≤ 100 bytes, size < 8 GiB). */
export function tarHeader(name, size) {
  if (Buffer.byteLength(name) > 100) throw new RangeError(`tar name too long: ${name}`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, "utf8");
  writeOctal(h, 100, 8, 0o644);
  writeOctal(h, 108, 8, 0);
  writeOctal(h, 116, 8, 0);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, MTIME);
  h.fill(0x20, 148, 156);
  h.write("0", 156, "ascii");
  h.write("ustar\0", 257, "ascii");
  h.write("00", 263, "ascii");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i];
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii");
  return h;
}

const padding = (size) => (BLOCK - (size % BLOCK)) % BLOCK;

/** A whole tar in memory, from `[name, bytes]` pairs (for small archives). */
export function tarBuffer(entries) {
  const parts = [];
  for (const [name, data] of entries) {
    parts.push(tarHeader(name, data.length), data, Buffer.alloc(padding(data.length)));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/**
 * Writes a tar to `out` from entries `{ name, size, data?: Buffer, file?: string }`; file
 * entries are copied in large chunks, never held in memory.
 */
export function writeTarFile(out, entries) {
  const fd = openSync(`${out}.tmp`, "w");
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (const entry of entries) {
      writeSync(fd, tarHeader(entry.name, entry.size));
      if (entry.data) writeSync(fd, entry.data);
      else {
        const src = openSync(entry.file, "r");
        try {
          for (let done = 0; done < entry.size; ) {
            const n = readSync(src, buf, 0, Math.min(CHUNK, entry.size - done), done);
            if (n === 0) throw new Error(`${entry.file} is shorter than ${entry.size} bytes`);
            writeSync(fd, buf, 0, n);
            done += n;
          }
        } finally {
          closeSync(src);
        }
      }
      writeSync(fd, Buffer.alloc(padding(entry.size)));
    }
    writeSync(fd, Buffer.alloc(2 * BLOCK));
  } finally {
    closeSync(fd);
  }
  renameSync(`${out}.tmp`, out);
}

export async function gzipFile(input, output) {
  await pipeline(createReadStream(input, { highWaterMark: 1 << 20 }), createGzip({ level: 1 }), createWriteStream(`${output}.tmp`));
  renameSync(`${output}.tmp`, output);
}

/** The small JSON documents of a one-layer image: config, manifest, index.json. */
function imageDocs({ name, layerDigest, layerSize, tags }) {
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Labels: { "bench.image": name } },
      rootfs: { type: "layers", diff_ids: [layerDigest] },
    }),
  );
  const configDigest = sha256(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: configDigest, size: config.length },
      layers: [{ mediaType: MEDIA.layer, digest: layerDigest, size: layerSize }],
    }),
  );
  const manifestDigest = sha256(manifest);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: tags.map((tag) => ({
        mediaType: MEDIA.manifest,
        digest: manifestDigest,
        size: manifest.length,
        annotations: { "org.opencontainers.image.ref.name": tag },
      })),
    }),
  );
  return { config, configDigest, manifest, manifestDigest, index };
}

const OCI_LAYOUT = Buffer.from('{"imageLayoutVersion":"1.0.0"}');

/**
 * A one-layer image of `layerSize` random bytes, written as an OCI layout folder at
 * `layoutDir` and as a plain `.oci` archive at `archive` (blobs first, then `index.json` and
 * `oci-layout`, the order skopeo writes). Returns the digests and sizes.
 */
export function writeImage({ name, seed, layerSize, tags = ["latest"], layoutDir, archive }) {
  const blobs = join(layoutDir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  const random = randomSource(seed);
  const hash = createHash("sha256");
  const tmp = join(blobs, ".layer.tmp");
  const fd = openSync(tmp, "w");
  try {
    for (let done = 0; done < layerSize; ) {
      const chunk = random(Math.min(CHUNK, layerSize - done));
      hash.update(chunk);
      writeSync(fd, chunk);
      done += chunk.length;
    }
  } finally {
    closeSync(fd);
  }
  const layerDigest = `sha256:${hash.digest("hex")}`;
  renameSync(tmp, join(blobs, hexOf(layerDigest)));
  const docs = imageDocs({ name, layerDigest, layerSize, tags });
  writeFileSync(join(blobs, hexOf(docs.configDigest)), docs.config);
  writeFileSync(join(blobs, hexOf(docs.manifestDigest)), docs.manifest);
  writeFileSync(join(layoutDir, "index.json"), docs.index);
  writeFileSync(join(layoutDir, "oci-layout"), OCI_LAYOUT);
  writeTarFile(archive, [
    { name: `blobs/sha256/${hexOf(layerDigest)}`, size: layerSize, file: join(blobs, hexOf(layerDigest)) },
    { name: `blobs/sha256/${hexOf(docs.configDigest)}`, size: docs.config.length, data: docs.config },
    { name: `blobs/sha256/${hexOf(docs.manifestDigest)}`, size: docs.manifest.length, data: docs.manifest },
    { name: "index.json", size: docs.index.length, data: docs.index },
    { name: "oci-layout", size: OCI_LAYOUT.length, data: OCI_LAYOUT },
  ]);
  return {
    name,
    tags,
    layerDigest,
    layerSize,
    layerFile: join(blobs, hexOf(layerDigest)),
    configDigest: docs.configDigest,
    manifestDigest: docs.manifestDigest,
    manifest: docs.manifest.toString("utf8"),
  };
}

/** A tiny archive (in memory) with a distinct image and `tags.length` tags on it. */
export function smallArchive(name, tags, seed) {
  const layer = randomSource(seed)(1024);
  const layerDigest = sha256(layer);
  const docs = imageDocs({ name, layerDigest, layerSize: layer.length, tags });
  return tarBuffer([
    [`blobs/sha256/${hexOf(layerDigest)}`, layer],
    [`blobs/sha256/${hexOf(docs.configDigest)}`, docs.config],
    [`blobs/sha256/${hexOf(docs.manifestDigest)}`, docs.manifest],
    ["index.json", docs.index],
    ["oci-layout", OCI_LAYOUT],
  ]);
}

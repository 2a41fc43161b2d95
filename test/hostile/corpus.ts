/**
 * The broken-archive corpus, generated in code: every way an `.oci` file in a shared folder can
 * be wrong. Each case names the file, what a log line must say about it, and which of its tags
 * must still be served (a broken image in an archive leaves the others alone).
 */
import { blob, bytesOf, concat, END_OF_ARCHIVE, gzip, image, type Image, layout, packTar, paxRecords, ref, tarEntry, tarHeader } from "../fixtures/oci.ts";

export interface BrokenCase {
  /** Short label. */
  label: string;
  /** Repository name; the file is `<name>.oci`. */
  name: string;
  bytes: Uint8Array;
  /** What the log line (`problem`) says. */
  problem: RegExp;
  /** Tags of this file that still work. */
  served?: string[];
  /** Tags of this file that must answer an OCI error. Default ["latest"]. */
  broken?: string[];
}

export const good = image({ layers: [{ "good.txt": "good\n" }] });
const a = image({ layers: [{ "a.txt": "a\n" }] });
const b = image({ layers: [{ "b.txt": "b\n" }] });

const json = (v: unknown) => bytesOf(JSON.stringify(v));
const blobPath = (digest: string) => `blobs/${digest.replace(":", "/")}`;
const files = (img: Image = a, tag = "latest") => layout([{ image: img, annotations: ref(tag) }]);
/** A plain tar of named entries, written by hand (no library second-guessing the names). */
const rawTar = (entries: Array<[string, Uint8Array | string]>) => concat(...entries.map(([n, d]) => tarEntry({ name: n }, d)), END_OF_ARCHIVE);
const fromMap = (m: Map<string, Uint8Array>) => rawTar([...m.entries()]);

/** Plain and gzipped tars of `count` tiny (empty) entries, cheap to build: one header repeated. */
function manyEntries(count: number): Uint8Array {
  const header = tarHeader({ name: "x", size: 0 });
  const out = new Uint8Array(count * 512 + 1024);
  for (let i = 0; i < count; i++) out.set(header, i * 512);
  return out;
}

export async function brokenCorpus(): Promise<BrokenCase[]> {
  const plain = fromMap(files());
  const cases: BrokenCase[] = [];
  const add = (c: BrokenCase) => cases.push(c);

  // ---- truncation ----
  const layerAt = plain.indexOf(a.layers[0].bytes[0], 2048);
  add({ label: "truncated tar (in a blob)", name: "trunc-blob", bytes: plain.subarray(0, plain.length - 1024 - 300), problem: /truncated/ });
  add({ label: "truncated tar (in a header)", name: "trunc-header", bytes: plain.subarray(0, 512 + 200), problem: /truncated|no oci-layout|no index\.json/ });
  add({ label: "truncated tar (after the first header)", name: "trunc-first", bytes: plain.subarray(0, 512), problem: /truncated/ });
  void layerAt;
  const gz = gzip(plain);
  add({ label: "truncated gzip", name: "trunc-gzip", bytes: gz.subarray(0, Math.floor(gz.length / 2)), problem: /gzip|truncated|unexpected end|premature/i });
  add({ label: "gzip with a corrupt body", name: "corrupt-gzip", bytes: (() => { const c = gz.slice(); for (let i = 20; i < 60; i++) c[i] ^= 0x5a; return c; })(), problem: /gzip|tar|invalid|incorrect/i });

  // ---- headers ----
  const badSum = plain.slice();
  badSum[0] ^= 0x01; // first header's name changes, its checksum no longer matches
  add({ label: "bad header checksum", name: "bad-checksum", bytes: badSum, problem: /bad tar header checksum at offset 0/ });
  add({
    label: "bad size field",
    name: "bad-size",
    bytes: concat(tarHeader({ name: "oci-layout", size: 0 }).map((x, i) => (i >= 124 && i < 136 ? 0x39 : x)), END_OF_ARCHIVE),
    problem: /bad (size field|tar header checksum)/,
  });
  add({
    label: "pax size beyond the file",
    name: "pax-size",
    bytes: concat(tarEntry({ name: "PaxHeader", type: "x" }, paxRecords({ size: "99999999999" })), tarEntry({ name: "oci-layout" }, "{}"), END_OF_ARCHIVE),
    problem: /truncated/,
  });
  add({ label: "pax record garbage", name: "pax-garbage", bytes: concat(tarEntry({ name: "P", type: "x" }, "garbage without structure\n"), END_OF_ARCHIVE), problem: /bad pax record/ });

  // ---- layout files ----
  const without = (name: string) => fromMap(new Map([...files()].filter(([n]) => n !== name)));
  const replaced = (name: string, data: Uint8Array | string) => fromMap(new Map([...files(), [name, bytesOf(data)]]));
  add({ label: "no index.json", name: "no-index", bytes: without("index.json"), problem: /no index\.json/ });
  add({ label: "index.json not JSON", name: "index-garbage", bytes: replaced("index.json", "{not json"), problem: /index\.json is not valid JSON/ });
  add({ label: "index.json not UTF-8", name: "index-binary", bytes: replaced("index.json", new Uint8Array([0xff, 0xfe, 0x00, 0x7b])), problem: /index\.json is not valid JSON/ });
  add({ label: "index.json without manifests", name: "index-empty", bytes: replaced("index.json", json({ schemaVersion: 2 })), problem: /index\.json has no manifests list/ });
  add({ label: "index.json is null", name: "index-null", bytes: replaced("index.json", "null"), problem: /index\.json has no manifests list/ });
  add({ label: "no oci-layout", name: "no-layout", bytes: without("oci-layout"), problem: /no oci-layout/ });
  add({ label: "oci-layout garbage", name: "layout-garbage", bytes: replaced("oci-layout", "]]"), problem: /oci-layout is not valid JSON/ });
  add({ label: "oci-layout without version", name: "layout-noversion", bytes: replaced("oci-layout", "{}"), problem: /oci-layout has no imageLayoutVersion/ });
  add({
    label: "index.json descriptors of the wrong shape",
    name: "index-shapes",
    bytes: replaced("index.json", json({ schemaVersion: 2, manifests: [null, 1, "x", { digest: 5 }, { digest: "sha256:zz", size: -1 }, { digest: "md5:00", size: 2 }] })),
    problem: /invalid descriptor|invalid or unsupported digest/,
  });

  {
    // 50,000 descriptors of manifests that are not there: one summary line, not 50,000.
    const manifests = Array.from({ length: 50_000 }, (_, i) => ({ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: `sha256:${i.toString(16).padStart(64, "0")}`, size: 100, annotations: ref("latest") }));
    add({ label: "50,000 images that are not there", name: "index-flood", bytes: replaced("index.json", json({ schemaVersion: 2, manifests })), problem: /49980 more unservable images/ });
  }

  // ---- manifests and blobs ----
  {
    // Two images in one archive; b's layer is missing: a still served, b not.
    const m = layout([
      { image: a, annotations: ref("a") },
      { image: b, annotations: ref("b") },
    ]);
    m.delete(blobPath(b.layers[0].digest));
    add({ label: "manifest references a missing blob", name: "missing-blob", bytes: fromMap(m), problem: /references blob .* which the archive does not hold/, served: ["a"], broken: ["b"] });
  }
  {
    const m = files();
    m.delete(blobPath(a.manifest.digest));
    add({ label: "index.json references a missing manifest", name: "missing-manifest", bytes: fromMap(m), problem: /manifest blob missing from the archive/ });
  }
  {
    const m = layout([
      { image: a, annotations: ref("a") },
      { image: b, annotations: ref("b") },
    ]);
    const bad = m.get(blobPath(b.manifest.digest))!.slice();
    bad[bad.length - 2] ^= 0x20;
    m.set(blobPath(b.manifest.digest), bad);
    add({ label: "manifest bytes do not match their digest", name: "manifest-digest", bytes: fromMap(m), problem: /manifest bytes do not match their digest/, served: ["a"], broken: ["b"] });
  }
  {
    const m = files();
    const bad = m.get(blobPath(a.config.digest))!;
    m.set(blobPath(a.config.digest), concat(bad, bytesOf(" ")));
    add({ label: "blob size differs from its descriptor", name: "blob-size", bytes: fromMap(m), problem: /is \d+ bytes, its descriptor says \d+/ });
  }
  {
    const notJson = blob("this is not a manifest");
    const m = new Map([
      ["oci-layout", json({ imageLayoutVersion: "1.0.0" })],
      ["index.json", json({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: notJson.digest, size: notJson.size, annotations: ref("latest") }] })],
      [blobPath(notJson.digest), notJson.bytes],
    ]);
    add({ label: "manifest is not JSON", name: "manifest-garbage", bytes: fromMap(m), problem: /not valid JSON/ });
  }
  {
    // An index that lists itself: bounded by the nesting limit.
    const selfRef = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [] as unknown[] };
    const first = blob(JSON.stringify(selfRef));
    // The digest cannot contain itself; a chain of indexes deeper than allowed does the same job.
    let child = { digest: first.digest, size: first.size, mediaType: selfRef.mediaType };
    const m = new Map<string, Uint8Array>([["oci-layout", json({ imageLayoutVersion: "1.0.0" })], [blobPath(first.digest), first.bytes]]);
    for (let i = 0; i < 8; i++) {
      const next = blob(JSON.stringify({ ...selfRef, manifests: [child] }));
      m.set(blobPath(next.digest), next.bytes);
      child = { digest: next.digest, size: next.size, mediaType: selfRef.mediaType };
    }
    m.set("index.json", json({ schemaVersion: 2, manifests: [{ ...child, annotations: ref("latest") }] }));
    // The top index stays servable without the children that are too deep (as with a platform missing).
    add({ label: "image indexes nested too deeply", name: "deep-index", bytes: fromMap(m), problem: /nested too deeply/, served: ["latest"], broken: [] });
  }

  // ---- hostile entry names and types ----
  {
    // `../x`, absolute and traversing names: never blobs or layout files; the image is served.
    const m = files();
    const extra: Array<[string, Uint8Array | string]> = [
      ["../x", "escape"],
      ["/etc/passwd", "root:x:0:0"],
      ["../../index.json", "{}"],
      [`../${blobPath(b.manifest.digest)}`, b.manifest.bytes],
      ["/oci-layout", "{}"],
      ["blobs/sha256/../../../../tmp/evil", "evil"],
    ];
    add({ label: "entries named ../x and /abs (ignored)", name: "dotdot-entries", bytes: rawTar([...m.entries(), ...extra]), problem: /^$/, served: ["latest"], broken: [] });
    add({
      label: "only traversing names for the layout files",
      name: "dotdot-only",
      bytes: rawTar([...[...m.entries()].map(([n, d]) => [`../${n}`, d] as [string, Uint8Array])]),
      problem: /no oci-layout/,
    });
  }
  {
    // index.json as a symlink to /etc/passwd; a layer as a hardlink to another entry.
    const m = files();
    const entries = [...m.entries()].filter(([n]) => n !== "index.json");
    const symlinkTar = concat(
      ...entries.map(([n, d]) => tarEntry({ name: n }, d)),
      tarEntry({ name: "index.json", type: "2", linkName: "/etc/passwd" }),
      END_OF_ARCHIVE,
    );
    add({ label: "index.json is a symlink", name: "symlink-index", bytes: symlinkTar, problem: /no index\.json/ });
    const layerName = blobPath(a.layers[0].digest);
    const hardTar = concat(
      ...[...m.entries()].filter(([n]) => n !== layerName).map(([n, d]) => tarEntry({ name: n }, d)),
      tarEntry({ name: layerName, type: "1", linkName: "oci-layout" }),
      END_OF_ARCHIVE,
    );
    add({ label: "a layer is a hardlink", name: "hardlink-blob", bytes: hardTar, problem: /which the archive does not hold/ });
    const devTar = concat(
      ...[...m.entries()].filter(([n]) => n !== layerName).map(([n, d]) => tarEntry({ name: n }, d)),
      tarEntry({ name: layerName, type: "3" }),
      tarEntry({ name: "fifo", type: "6" }),
      END_OF_ARCHIVE,
    );
    add({ label: "a layer is a device node", name: "device-blob", bytes: devTar, problem: /which the archive does not hold/ });
  }
  {
    // Duplicate entries: the last one wins, as when a tar is extracted. Here the last index.json
    // tags another image; the first is shadowed and the archive stays consistent.
    const m = layout([{ image: a, annotations: ref("latest") }, { image: b, annotations: ref("other") }]);
    const second = json({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: b.manifest.digest, size: b.manifest.size, annotations: ref("latest") }] });
    add({ label: "duplicate index.json (the last wins)", name: "dup-index", bytes: rawTar([...m.entries(), ["index.json", second]]), problem: /^$/, served: ["latest"], broken: ["other"] });
    // A duplicate layer entry whose second copy is corrupt: never served as complete wrong bytes
    // (the digest check aborts it); the manifest is still served.
    const layerName = blobPath(a.layers[0].digest);
    const corrupt = m.get(layerName)!.slice();
    corrupt[corrupt.length - 1] ^= 1;
    add({ label: "duplicate layer, the last corrupt", name: "dup-blob", bytes: rawTar([...m.entries(), [layerName, corrupt]]), problem: /^$/, served: ["latest"], broken: [] });
  }

  // ---- size limits ----
  add({ label: "250,000 tiny entries", name: "many-entries", bytes: manyEntries(250_000), problem: /more than 100000 entries/ });
  add({ label: "250,000 tiny entries, gzipped", name: "many-entries-gz", bytes: gzip(manyEntries(250_000)), problem: /more than 100000 entries/ });
  {
    const big = new Uint8Array(17 << 20).fill(0x20);
    big[0] = 0x7b;
    big[big.length - 1] = 0x7d;
    add({ label: "17 MiB index.json", name: "huge-index", bytes: replaced("index.json", big), problem: /index\.json is larger than \d+ bytes/ });
    add({ label: "17 MiB index.json, gzipped", name: "huge-index-gz", bytes: gzip(replaced("index.json", big)), problem: /index\.json is larger than \d+ bytes/ });
  }
  {
    // Many large JSON files outside blobs/ (kept in memory by the gzip ingest, as configs and
    // manifest.json are): bounded in total. Other files are only hashed, never kept.
    const filler = new Uint8Array(10 << 20);
    const entries: Array<[string, Uint8Array | string]> = [...files().entries()];
    for (let i = 0; i < 8; i++) entries.push([`notes/${i}.json`, filler]);
    add({ label: "gzipped, 80 MiB of JSON files outside blobs/", name: "many-files-gz", bytes: gzip(rawTar(entries)), problem: /files outside blobs\/ add up to more than \d+ bytes/ });
  }
  {
    // A gzip bomb: one "blob" entry that unpacks far beyond the file (limit lowered in the tests).
    const size = 200 << 20;
    const name = `blobs/sha256/${"0".repeat(64)}`;
    const bomb = gzip(concat(tarHeader({ name, size }), new Uint8Array(size), END_OF_ARCHIVE));
    add({ label: `gzip bomb (${bomb.length} bytes -> 200 MiB)`, name: "gzip-bomb", bytes: bomb, problem: /bytes once decompressed/ });
  }

  // ---- not archives at all ----
  const random = new Uint8Array(8192);
  for (let i = 0, x = 12345; i < random.length; i++) random[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  add({ label: "random bytes named .oci", name: "garbage", bytes: random, problem: /bad tar header checksum|bad size field|truncated/ });
  add({ label: "a text file named .oci", name: "text", bytes: bytesOf("just some notes\n".repeat(100)), problem: /bad tar header checksum|truncated/ });
  add({ label: "an empty file named .oci", name: "empty", bytes: new Uint8Array(0), problem: /no oci-layout/ });
  add({ label: "gzipped random bytes", name: "garbage-gz", bytes: gzip(random), problem: /tar|invalid|unexpected|oci-layout/i });
  add({ label: "a zip file named .oci", name: "zip", bytes: concat(bytesOf("PK\x03\x04"), random.subarray(0, 600)), problem: /bad tar header checksum|truncated/ });
  add({ label: "only the gzip magic", name: "gzip-magic", bytes: new Uint8Array([0x1f, 0x8b]), problem: /gzip|unexpected|truncated|oci-layout/i });
  return cases;
}

/** A good archive to keep next to the broken ones. */
export async function goodArchive(): Promise<Uint8Array> {
  return packTar(layout([{ image: good, annotations: ref("latest") }]));
}

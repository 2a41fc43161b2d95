/** Issue 7 over the fetch handler: layout folders, legacy docker save (plain and gzipped), referrers, catalog. */
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { createRegistry } from "../../core/registry.ts";
import { blob, descriptorOf, gzip, image, layer, layout, MEDIA, packTar, ref } from "../fixtures/oci.ts";
import { ACCEPT_ALL, memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";

const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const enc = new TextEncoder();

describe("unpacked OCI layout folders", () => {
  const one = image({ layers: [{ "f.txt": "folder one\n" }] });
  const two = image({ layers: [{ "f.txt": "folder two\n" }] });
  let r: MemoryRegistry;
  beforeAll(() => {
    r = memoryRegistry();
    for (const [path, bytes] of layout([{ image: one }])) r.images.set(`app/v1/${path}`, bytes);
    for (const [path, bytes] of layout([{ image: two, annotations: ref("stable") }])) r.images.set(`tool/${path}`, bytes);
    r.images.set("app/notes/readme.txt", enc.encode("not a layout"));
  });

  it("serves <name>/<reference> as <reference> when it holds one untagged manifest", async () => {
    const res = await r.get("/v2/app/manifests/v1");
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-content-digest")).toBe(one.manifest.digest);
    const blobRes = await r.get(`/v2/app/blobs/${one.layers[0].digest}`);
    expect(Buffer.from(await blobRes.arrayBuffer()).equals(Buffer.from(one.layers[0].bytes))).toBe(true);
  });

  it("serves <name> as a layout folder, by tag and in tags/list", async () => {
    expect((await r.get("/v2/tool/manifests/stable")).headers.get("docker-content-digest")).toBe(two.manifest.digest);
    expect(await (await r.get("/v2/tool/tags/list")).json()).toEqual({ name: "tool", tags: ["stable"] });
    expect(await (await r.get("/v2/app/tags/list")).json()).toEqual({ name: "app", tags: ["v1"] });
  });

  it("ignores folders that are not layouts", async () => {
    expect((await r.get("/v2/app/manifests/notes")).status).toBe(404);
  });

  it("re-reads index.json rewritten in place", async () => {
    for (const [path, bytes] of layout([{ image: one }, { image: two, annotations: ref("stable") }])) r.images.set(`tool/${path}`, bytes);
    await r.registry.rescan();
    expect((await r.get("/v2/tool/manifests/stable")).headers.get("docker-content-digest")).toBe(two.manifest.digest);
    expect((await r.get(`/v2/tool/manifests/${one.manifest.digest}`)).status).toBe(200);
  });
});

/** Two images as docker save wrote them before Docker 25; image 2's layer is a symlink to image 1's first. */
const layerA = layer({ "a.txt": "layer a\n" }, { gzip: false });
const layerB = layer({ "b.txt": "layer b\n" }, { gzip: false });
const config = enc.encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha(layerA), sha(layerB)] } }));
const config2 = enc.encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha(layerA)] } }));

function legacySave(): Promise<Uint8Array> {
  const files = new Map<string, Uint8Array>([
    [`${sha(config).slice(7)}.json`, config],
    [`${sha(config2).slice(7)}.json`, config2],
    ["aaa/layer.tar", layerA],
    ["aaa/VERSION", enc.encode("1.0")],
    ["bbb/layer.tar", layerB],
    [
      "manifest.json",
      enc.encode(
        JSON.stringify([
          { Config: `${sha(config).slice(7)}.json`, RepoTags: ["legacy:1.0", "legacy:latest"], Layers: ["aaa/layer.tar", "bbb/layer.tar"] },
          { Config: `${sha(config2).slice(7)}.json`, RepoTags: ["other/thing:2"], Layers: ["ccc/layer.tar"] },
        ]),
      ),
    ],
    ["repositories", enc.encode("{}")],
  ]);
  // docker save links a layer shared by two images instead of storing it twice.
  return packTar(files, { extra: [{ name: "ccc/layer.tar", type: "symlink", linkname: "../aaa/layer.tar" }] });
}

const bytesOf = async (res: Response) => Buffer.from(await res.arrayBuffer());

describe("legacy docker save archives", () => {
  let r: MemoryRegistry;
  beforeAll(async () => {
    r = memoryRegistry();
    const bytes = await legacySave();
    r.images.set("legacy.oci", bytes);
    r.images.set("other/thing.oci", bytes);
  });

  it("serves RepoTags as Docker schema 2 images with layer digests of the layer bytes", async () => {
    const res = await r.get("/v2/legacy/manifests/1.0");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(MEDIA.dockerManifest);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(res.headers.get("docker-content-digest")).toBe(sha(body));
    const manifest = JSON.parse(new TextDecoder().decode(body));
    expect(manifest.config).toEqual({ mediaType: MEDIA.dockerConfig, size: config.length, digest: sha(config) });
    expect(manifest.layers.map((l: { digest: string }) => l.digest)).toEqual([sha(layerA), sha(layerB)]);
    expect(manifest.layers[0].mediaType).toBe("application/vnd.docker.image.rootfs.diff.tar");
    const latest = await r.get("/v2/legacy/manifests/latest");
    expect(latest.headers.get("docker-content-digest")).toBe(sha(body));
    for (const [digest, bytes] of [[sha(layerB), layerB], [sha(config), config]] as const) {
      const b = await r.get(`/v2/legacy/blobs/${digest}`);
      expect(Buffer.from(await b.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true);
    }
    expect(await (await r.get("/v2/legacy/tags/list")).json()).toEqual({ name: "legacy", tags: ["1.0", "latest"] });
  });

  it("follows a symlinked layer and serves names with slashes", async () => {
    const res = await r.get("/v2/other/thing/manifests/2");
    expect(res.status).toBe(200);
    const manifest = await res.json();
    expect(manifest.layers[0].digest).toBe(sha(layerA));
    const b = await r.get(`/v2/other/thing/blobs/${sha(layerA)}`);
    expect(Buffer.from(await b.arrayBuffer()).equals(Buffer.from(layerA))).toBe(true);
  });

  it("remembers layer digests by archive identity in the cache folder", async () => {
    const memo = (await r.cache.list("docker-save")) ?? [];
    expect(memo.length).toBeGreaterThan(0);
  });
});

describe("gzipped legacy docker save archives (docker save | gzip)", () => {
  let plain: MemoryRegistry;
  let zipped: MemoryRegistry;
  let archive: Uint8Array;
  beforeAll(async () => {
    const bytes = await legacySave();
    archive = gzip(bytes);
    plain = memoryRegistry();
    zipped = memoryRegistry();
    for (const path of ["legacy.oci", "other/thing.oci"]) {
      plain.images.set(path, bytes);
      zipped.images.set(path, archive);
    }
  });

  it("answers every manifest, config and layer exactly as the plain archive does", async () => {
    for (const [name, tag] of [["legacy", "1.0"], ["legacy", "latest"], ["other/thing", "2"]]) {
      const [want, got] = await Promise.all([plain.get(`/v2/${name}/manifests/${tag}`), zipped.get(`/v2/${name}/manifests/${tag}`)]);
      expect(got.status, `${name}:${tag} ${JSON.stringify(zipped.logs.filter((l) => l.level === "error"))}`).toBe(200);
      for (const header of ["content-type", "docker-content-digest", "content-length"]) expect(got.headers.get(header), header).toBe(want.headers.get(header));
      const manifest = await bytesOf(got);
      expect(manifest.equals(await bytesOf(want))).toBe(true);
      const { config: c, layers } = JSON.parse(manifest.toString("utf8")) as { config: { digest: string }; layers: { digest: string }[] };
      for (const digest of [c.digest, ...layers.map((l) => l.digest)]) {
        const [a, b] = await Promise.all([plain.get(`/v2/${name}/blobs/${digest}`), zipped.get(`/v2/${name}/blobs/${digest}`)]);
        expect(b.status, digest).toBe(200);
        expect(b.headers.get("content-length")).toBe(a.headers.get("content-length"));
        const served = await bytesOf(b);
        expect(served.equals(await bytesOf(a)), digest).toBe(true);
        expect(sha(served)).toBe(digest);
      }
    }
    expect(await (await zipped.get("/v2/legacy/tags/list")).json()).toEqual({ name: "legacy", tags: ["1.0", "latest"] });
    const indexed = zipped.logs.find((l) => l.msg === "archive indexed" && l.fields?.file === "legacy.oci");
    expect(indexed?.fields).toMatchObject({ format: "docker-save+gzip", manifests: 2 });
  });

  it("unpacks configs and layers into the content-addressed cache, each once", async () => {
    const cached = ((await zipped.cache.list("blobs/sha256")) ?? []).sort();
    expect(cached).toEqual([sha(config), sha(config2), sha(layerA), sha(layerB)].map((d) => d.slice(7)).sort());
  });

  it("reads the archive twice when layers must be unpacked, once when the cache holds them; a rescan keeps them", async () => {
    const images = new MemoryFileSystem();
    const cache = new MemoryFileSystem();
    images.set("legacy.oci", archive);
    const start = () => createRegistry({ images, cache, rescanIntervalMs: 0 });
    const pull = async (registry: ReturnType<typeof start>) => {
      const res = await registry.fetch(new Request("http://registry.test/v2/legacy/manifests/1.0", { headers: { Accept: ACCEPT_ALL } }));
      expect(res.status).toBe(200);
      return res.headers.get("docker-content-digest");
    };
    const first = start();
    const digest = await pull(first);
    expect(images.stats.stream).toBe(2);
    await first.rescan();
    expect(((await cache.list("blobs/sha256")) ?? []).length).toBe(4);
    images.resetStats();
    // A restart over the same cache: the first read finds every layer already there.
    const writes: string[] = [];
    cache.faults = (op, path) => void (op === "write" && writes.push(path));
    const second = start();
    expect(await pull(second)).toBe(digest);
    expect(images.stats.stream).toBe(1);
    expect(writes).toEqual([]);
    // Gone from the folder: its blobs leave the cache at the next rescan.
    images.delete("legacy.oci");
    await second.rescan();
    expect((await cache.list("blobs/sha256")) ?? []).toEqual([]);
  });
});

describe("gzipped docker save archives of other shapes", () => {
  const gz = layer({ "z.txt": "a gzipped layer\n" }, { gzip: true });
  const cfg = enc.encode(JSON.stringify({ architecture: "arm64", os: "linux", rootfs: { type: "layers", diff_ids: [sha(layerA)] } }));

  /** Serves `files` plain and gzipped; both must answer alike. */
  async function both(files: Map<string, Uint8Array>, tag: string) {
    const out: Array<{ digest: string | null; manifest: Buffer; status: number }> = [];
    for (const compress of [false, true]) {
      const r = memoryRegistry();
      const tar = await packTar(files);
      r.images.set("shape.oci", compress ? gzip(tar) : tar);
      const res = await r.get(`/v2/shape/manifests/${tag}`);
      out.push({ status: res.status, digest: res.headers.get("docker-content-digest"), manifest: await bytesOf(res) });
      if (res.status !== 200) continue;
      const manifest = JSON.parse(out.at(-1)!.manifest.toString("utf8")) as { config: { digest: string }; layers: { digest: string }[] };
      for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
        expect(sha(await bytesOf(await r.get(`/v2/shape/blobs/${d}`))), `${d} (gzipped: ${compress})`).toBe(d);
      }
    }
    expect(out[1]!.status, out[1]!.manifest.toString()).toBe(200);
    expect(out[1]).toEqual(out[0]);
    return JSON.parse(out[1]!.manifest.toString("utf8")) as { config: { digest: string; size: number }; layers: { mediaType: string; digest: string }[] };
  }

  it("layers as blobs/sha256 files, no oci-layout or index.json", async () => {
    const files = new Map<string, Uint8Array>([
      [`blobs/sha256/${sha(cfg).slice(7)}`, cfg],
      [`blobs/sha256/${sha(layerA).slice(7)}`, layerA],
      ["manifest.json", enc.encode(JSON.stringify([{ Config: `blobs/sha256/${sha(cfg).slice(7)}`, RepoTags: ["shape:v1"], Layers: [`blobs/sha256/${sha(layerA).slice(7)}`] }]))],
    ]);
    const manifest = await both(files, "v1");
    expect(manifest.layers.map((l) => l.digest)).toEqual([sha(layerA)]);
  });

  it("a gzip-compressed layer and a config not named .json (go-containerregistry's tarball)", async () => {
    const files = new Map<string, Uint8Array>([
      [sha(cfg), cfg],
      [`${sha(gz).slice(7)}.tar.gz`, gz],
      ["manifest.json", enc.encode(JSON.stringify([{ Config: sha(cfg), RepoTags: ["shape:v2"], Layers: [`${sha(gz).slice(7)}.tar.gz`] }]))],
    ]);
    const manifest = await both(files, "v2");
    expect(manifest.config.digest).toBe(sha(cfg));
    expect(manifest.layers).toEqual([{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", size: gz.length, digest: sha(gz) }]);
  });

  it("a layer missing from the archive makes it unusable, with the same reason as the plain one", async () => {
    const files = new Map<string, Uint8Array>([
      ["c.json", cfg],
      ["manifest.json", enc.encode(JSON.stringify([{ Config: "c.json", RepoTags: ["shape:v3"], Layers: ["nowhere/layer.tar"] }]))],
    ]);
    const r = memoryRegistry();
    r.images.set("shape.oci", gzip(await packTar(files)));
    expect((await r.get("/v2/shape/manifests/v3")).status).toBe(404);
    expect(r.logs.find((l) => l.msg === "archive unusable")?.fields?.problem).toBe("layer nowhere/layer.tar is missing from the archive");
  });

  it("Docker 25+ (an OCI layout plus manifest.json), gzipped, is served as its OCI layout", async () => {
    const img = image({ layers: [layerA] });
    const files = layout([{ image: img, annotations: { "io.containerd.image.name": "docker.io/library/shape:v4", "org.opencontainers.image.ref.name": "v4" } }]);
    const blobPath = (d: string) => `blobs/sha256/${d.slice(7)}`;
    files.set("manifest.json", enc.encode(JSON.stringify([{ Config: blobPath(img.config.digest), RepoTags: ["shape:v4"], Layers: img.layers.map((l) => blobPath(l.digest)) }])));
    files.set("repositories", enc.encode(JSON.stringify({ shape: { v4: img.layers[0].digest.slice(7) } })));
    const r = memoryRegistry();
    r.images.set("shape.oci", gzip(await packTar(files)));
    const res = await r.get("/v2/shape/manifests/v4");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(MEDIA.ociManifest);
    expect(res.headers.get("docker-content-digest")).toBe(img.manifest.digest);
    expect(r.logs.find((l) => l.msg === "archive indexed")?.fields?.format).toBe("tar+gzip");
  });
});

describe("referrers", () => {
  const subject = image({ layers: [{ "app.txt": "app\n" }] });
  const emptyConfig = enc.encode("{}");
  const signature = image({
    artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
    config: emptyConfig,
    configMediaType: MEDIA.empty,
    layers: [layer({ "sig": "signature" }, { gzip: false })],
    subject: descriptorOf(subject.manifest),
    annotations: { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" },
  });
  const sbom = image({
    config: enc.encode('{"spdx":true}'),
    configMediaType: "application/spdx+json",
    layers: [layer({ "sbom.json": "{}" }, { gzip: false })],
    subject: descriptorOf(subject.manifest),
  });
  let r: MemoryRegistry;
  beforeAll(async () => {
    r = memoryRegistry();
    await r.put("app/latest.oci", [{ image: subject, annotations: ref("latest") }, { image: signature }]);
    await r.put("app/sbom.oci", [{ image: sbom }]);
  });

  it("lists manifests whose subject is the digest, with artifactType and annotations", async () => {
    const res = await r.get(`/v2/app/referrers/${subject.manifest.digest}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(MEDIA.ociIndex);
    const index = await res.json();
    expect(index.schemaVersion).toBe(2);
    expect(index.mediaType).toBe(MEDIA.ociIndex);
    const byDigest = Object.fromEntries(index.manifests.map((d: { digest: string }) => [d.digest, d]));
    expect(byDigest[signature.manifest.digest]).toEqual({
      mediaType: MEDIA.ociManifest,
      digest: signature.manifest.digest,
      size: signature.manifest.size,
      artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
      annotations: { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" },
    });
    expect(byDigest[sbom.manifest.digest].artifactType).toBe("application/spdx+json");
    expect(res.headers.get("oci-filters-applied")).toBeNull();
  });

  it("filters by artifactType", async () => {
    const res = await r.get(`/v2/app/referrers/${subject.manifest.digest}?artifactType=application/spdx%2Bjson`);
    expect(res.headers.get("oci-filters-applied")).toBe("artifactType");
    const index = await res.json();
    expect(index.manifests.map((d: { digest: string }) => d.digest)).toEqual([sbom.manifest.digest]);
  });

  it("an unknown subject gives an empty index; a bad digest 400", async () => {
    const res = await r.get(`/v2/app/referrers/${blob("nothing").digest}`);
    expect(res.status).toBe(200);
    expect((await res.json()).manifests).toEqual([]);
    const bad = await r.get("/v2/app/referrers/sha256:nope");
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors[0].code).toBe("DIGEST_INVALID");
  });
});

describe("catalog", () => {
  let r: MemoryRegistry;
  const img = image();
  beforeAll(async () => {
    r = memoryRegistry();
    await r.put("alpha.oci", [{ image: img, annotations: ref("1") }]);
    await r.put("team/web/latest.oci", [{ image: img }]);
    await r.put("team/api:2.oci", [{ image: img }]);
    await r.put("untagged/x.oci", [{ image: img }, { image: image({ layers: [{ y: "y" }] }) }]);
    r.images.set("broken.oci", enc.encode("garbage"));
    for (const [path, bytes] of layout([{ image: img, annotations: ref("v") }])) r.images.set(`folder/${path}`, bytes);
  });

  it("lists every name with a tag, sorted", async () => {
    const res = await r.get("/v2/_catalog");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ repositories: ["alpha", "folder", "team/api", "team/web"] });
  });

  it("paginates with n, last and Link", async () => {
    const first = await r.get("/v2/_catalog?n=2");
    expect(await first.json()).toEqual({ repositories: ["alpha", "folder"] });
    expect(first.headers.get("link")).toBe('</v2/_catalog?n=2&last=folder>; rel="next"');
    const next = await r.get("/v2/_catalog?n=2&last=folder");
    expect(await next.json()).toEqual({ repositories: ["team/api", "team/web"] });
  });

  it("refreshes when a folder changes", async () => {
    await r.put("zeta/1.oci", [{ image: img }]);
    expect((await (await r.get("/v2/_catalog")).json()).repositories).toContain("zeta");
  });
});

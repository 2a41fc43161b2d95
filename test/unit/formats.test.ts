/** Issue 7 over the fetch handler: layout folders, legacy docker save, referrers, catalog. */
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { blob, descriptorOf, image, layer, layout, MEDIA, packTar, ref } from "../fixtures/oci.ts";
import { memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";

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

describe("legacy docker save archives", () => {
  const layerA = layer({ "a.txt": "layer a\n" }, { gzip: false });
  const layerB = layer({ "b.txt": "layer b\n" }, { gzip: false });
  const config = enc.encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha(layerA), sha(layerB)] } }));
  const config2 = enc.encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha(layerA)] } }));
  let r: MemoryRegistry;
  beforeAll(async () => {
    r = memoryRegistry();
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
    const bytes = await packTar(files, { extra: [{ name: "ccc/layer.tar", type: "symlink", linkname: "../aaa/layer.tar" }] });
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

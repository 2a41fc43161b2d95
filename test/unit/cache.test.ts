/** Lookup cache: what a repeated request costs, and how changes on disk are picked up. */
import { describe, expect, it } from "vitest";
import { image, ref } from "../fixtures/oci.ts";
import { memoryRegistry } from "../helpers/memory-registry.ts";

const v1 = image({ layers: [{ "v.txt": "one\n" }] });
const v2 = image({ layers: [{ "v.txt": "two\n" }] });
const v3 = image({ layers: [{ "v.txt": "three\n" }] });

async function digestOf(res: Response): Promise<string | null> {
  await res.arrayBuffer();
  return res.status === 200 ? res.headers.get("docker-content-digest") : `status ${res.status}`;
}

describe("lookup cache", () => {
  it("a cached request costs a few stats: no listing, no archive read", async () => {
    const r = memoryRegistry();
    await r.put("app/v1.oci", [{ image: v1 }]);
    for (let i = 0; i < 20; i++) await r.put(`app/other-${i}.oci`, [{ image: v2, annotations: ref(`o${i}`) }]);
    expect(await digestOf(await r.get("/v2/app/manifests/v1"))).toBe(v1.manifest.digest);
    r.images.resetStats();
    expect(await digestOf(await r.get("/v2/app/manifests/v1"))).toBe(v1.manifest.digest);
    expect(await digestOf(await r.get("/v2/app/manifests/v1", { method: "HEAD" }))).toBe(v1.manifest.digest);
    expect(r.images.stats.list).toBe(0);
    expect(r.images.stats.read).toBe(0);
    expect(r.images.stats.stat).toBeLessThanOrEqual(6);
  });

  it("a cached hit on <name>.oci costs two stats (the parent folder and the archive)", async () => {
    const r = memoryRegistry();
    await r.put("app.oci", [{ image: v1, annotations: ref("t") }]);
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v1.manifest.digest);
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v1.manifest.digest);
    r.images.resetStats();
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v1.manifest.digest);
    expect(r.images.stats).toMatchObject({ stat: 2, list: 0, read: 0 });
  });

  it("a <name>/ folder created beside a cached <name>.oci is noticed on the next request", async () => {
    const r = memoryRegistry();
    await r.put("app.oci", [{ image: v1, annotations: ref("t") }]);
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v1.manifest.digest);
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v1.manifest.digest);
    await r.put("app/t.oci", [{ image: v2 }]);
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v2.manifest.digest);
  });

  it("a 404 is cached like a hit", async () => {
    const r = memoryRegistry();
    for (let i = 0; i < 20; i++) await r.put(`app/a${i}.oci`, [{ image: v1, annotations: ref(`t${i}`) }]);
    expect((await r.get("/v2/app/manifests/missing")).status).toBe(404);
    r.images.resetStats();
    expect((await r.get("/v2/app/manifests/missing")).status).toBe(404);
    expect(r.images.stats.list).toBe(0);
    expect(r.images.stats.read).toBe(0);
    expect(r.images.stats.stat).toBeLessThanOrEqual(6);
  });

  it("concurrent first requests index an archive once", async () => {
    const r = memoryRegistry();
    await r.put("app/v1.oci", [{ image: v1 }]);
    const all = await Promise.all(Array.from({ length: 20 }, () => r.get("/v2/app/manifests/v1")));
    expect(all.every((res) => res.status === 200)).toBe(true);
    expect(r.logs.filter((l) => l.msg === "archive indexed")).toHaveLength(1);
  });

  it("an archive changed in place is re-read", async () => {
    const r = memoryRegistry();
    await r.put("app/v1.oci", [{ image: v1 }]);
    expect(await digestOf(await r.get("/v2/app/manifests/v1"))).toBe(v1.manifest.digest);
    await r.put("app/v1.oci", [{ image: v2 }]);
    expect(await digestOf(await r.get("/v2/app/manifests/v1"))).toBe(v2.manifest.digest);
  });

  it("an archive replaced by rename is served from the new file", async () => {
    const r = memoryRegistry();
    await r.put("app/v1.oci", [{ image: v1 }]);
    expect(await digestOf(await r.get("/v2/app/manifests/v1"))).toBe(v1.manifest.digest);
    await r.put("app/.v1.oci.tmp", [{ image: v2 }]);
    r.images.rename("app/.v1.oci.tmp", "app/v1.oci");
    expect(await digestOf(await r.get("/v2/app/manifests/v1"))).toBe(v2.manifest.digest);
    expect(await digestOf(await r.get(`/v2/app/blobs/${v2.layers[0].digest}`))).toBe(v2.layers[0].digest);
    expect((await r.get(`/v2/app/blobs/${v1.layers[0].digest}`)).status).toBe(404);
  });

  it("a newer candidate that holds the reference replaces the cached one", async () => {
    const r = memoryRegistry();
    await r.put("app/a.oci", [{ image: v1, annotations: ref("stable") }]);
    expect(await digestOf(await r.get("/v2/app/manifests/stable"))).toBe(v1.manifest.digest);
    await r.put("app/b.oci", [{ image: v2, annotations: ref("stable") }]);
    expect(await digestOf(await r.get("/v2/app/manifests/stable"))).toBe(v2.manifest.digest);
    // An older-looking, earlier-named file added later is newer on disk: it wins too.
    await r.put("app/0.oci", [{ image: v3, annotations: ref("stable") }]);
    expect(await digestOf(await r.get("/v2/app/manifests/stable"))).toBe(v3.manifest.digest);
  });

  it("a deleted archive's entries disappear on the next request; another candidate takes over", async () => {
    const r = memoryRegistry();
    await r.put("app/a.oci", [{ image: v1, annotations: ref("t") }]);
    await r.put("app.oci", [{ image: v2, annotations: ref("t") }]);
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v1.manifest.digest);
    r.images.delete("app/a.oci");
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe(v2.manifest.digest);
    r.images.delete("app.oci");
    expect(await digestOf(await r.get("/v2/app/manifests/t"))).toBe("status 404");
    expect(await digestOf(await r.get(`/v2/app/blobs/${v1.layers[0].digest}`))).toBe("status 404");
  });

  it("an added archive is found after a cached miss", async () => {
    const r = memoryRegistry();
    await r.put("app/a.oci", [{ image: v1, annotations: ref("t") }]);
    expect((await r.get("/v2/app/manifests/new")).status).toBe(404);
    await r.put("app/b.oci", [{ image: v2, annotations: ref("new") }]);
    expect(await digestOf(await r.get("/v2/app/manifests/new"))).toBe(v2.manifest.digest);
    expect(await digestOf(await r.get("/v2/app/tags/list"))).toBe(null);
    const tags = await (await r.get("/v2/app/tags/list")).json();
    expect(tags).toEqual({ name: "app", tags: ["new", "t"] });
  });

  it("the periodic rescan picks up what stats alone cannot see", async () => {
    const r = memoryRegistry();
    await r.put("app/a.oci", [{ image: v1, annotations: ref("t") }]);
    await r.put("app/b.oci", [{ image: v2, annotations: ref("u") }]);
    expect((await r.get("/v2/app/manifests/later")).status).toBe(404);
    // Rewritten in place: the folder's mtime does not change, so the cached miss stands...
    const before = (await r.images.stat("app"))!.mtimeMs;
    await r.put("app/b.oci", [{ image: v2, annotations: ref("later") }]);
    if ((await r.images.stat("app"))!.mtimeMs === before) expect((await r.get("/v2/app/manifests/later")).status).toBe(404);
    // ...until the rescan.
    await r.registry.rescan();
    expect(await digestOf(await r.get("/v2/app/manifests/later"))).toBe(v2.manifest.digest);
  });

  it("the rescan timer runs on its own", async () => {
    const r = memoryRegistry({ rescanIntervalMs: 20 });
    await r.put("app/a.oci", [{ image: v1, annotations: ref("t") }]);
    await r.get("/v2/app/manifests/t");
    await new Promise((resolve) => setTimeout(resolve, 80));
    r.registry.close();
    expect(r.logs.some((l) => l.msg === "rescan done")).toBe(true);
  });

  it("unreferenced blobs leave the gzip cache at the rescan; shared ones are stored once", async () => {
    const r = memoryRegistry();
    await r.put("a/latest.oci", [{ image: v1 }], { gzip: true });
    await r.put("b/latest.oci", [{ image: v1 }], { gzip: true });
    await r.put("c/latest.oci", [{ image: v2 }], { gzip: true });
    for (const n of ["a", "b", "c"]) expect((await r.get(`/v2/${n}/blobs/${(n === "c" ? v2 : v1).layers[0].digest}`)).status).toBe(200);
    const cached = async () => ((await r.cache.list("blobs/sha256")) ?? []).sort();
    const shared = v1.layers[0].digest.slice(7);
    expect(await cached()).toContain(shared);
    r.images.delete("c/latest.oci");
    await r.registry.rescan();
    const after = await cached();
    expect(after).toContain(shared);
    expect(after).not.toContain(v2.layers[0].digest.slice(7));
  });
});

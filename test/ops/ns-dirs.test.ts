/**
 * `--ns-dirs`: containerd's `?ns=<registry>` looks under `<dir>/<registry>/` first, then as
 * usual. Over the in-memory file system, through the fetch handler.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { namespaceFolder } from "../../core/namespace.ts";
import { image, ref } from "../fixtures/oci.ts";
import { memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";

const usual = image({ layers: [{ "who.txt": "the usual one\n" }] });
const mirrored = image({ layers: [{ "who.txt": "docker.io's copy\n" }] });
const withPort = image({ layers: [{ "who.txt": "registry.example:5000's copy\n" }] });
const onlyInNs = image({ layers: [{ "who.txt": "only under ghcr.io\n" }] });

const json = async (res: Response) => JSON.parse(await res.text());

describe("namespaceFolder", () => {
  it.each([
    ["docker.io", "docker.io"],
    ["registry.example:5000", "registry.example:5000"],
    ["Registry.Example", "registry.example"],
    ["10.0.0.1:443", "10.0.0.1:443"],
    ["localhost", "localhost"],
  ])("takes %s as folder %s", (ns, folder) => expect(namespaceFolder(ns)).toBe(folder));

  it.each(["", "..", ".", "a/b", "../etc", "docker.io/..", "-bad.example", "bad-.example", "a..b", "[::1]:5000", "host:0", "host:70000", "host:", "a b", "%2e%2e", "x".repeat(64)])(
    "ignores %j",
    (ns) => expect(namespaceFolder(ns)).toBeUndefined(),
  );
});

describe("--ns-dirs", () => {
  let r: MemoryRegistry;
  let plain: MemoryRegistry;
  beforeAll(async () => {
    r = memoryRegistry({ nsDirs: true });
    plain = memoryRegistry();
    for (const reg of [r, plain]) {
      await reg.put("library/hello/latest.oci", [{ image: usual }]);
      await reg.put("docker.io/library/hello/latest.oci", [{ image: mirrored }]);
      await reg.put("registry.example:5000/library/hello.oci", [{ image: withPort, annotations: ref("registry.example:5000/library/hello:latest") }]);
      await reg.put("ghcr.io/team/app:v1.oci", [{ image: onlyInNs }]);
      await reg.put("team/app.oci", [{ image: usual, annotations: ref("v0") }]);
    }
  });

  it("serves the copy under <dir>/<ns>/ first", async () => {
    const res = await r.get("/v2/library/hello/manifests/latest?ns=docker.io");
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-content-digest")).toBe(mirrored.manifest.digest);
  });

  it("takes a URL-encoded host:port", async () => {
    const res = await r.get("/v2/library/hello/manifests/latest?ns=registry.example%3A5000");
    expect(res.headers.get("docker-content-digest")).toBe(withPort.manifest.digest);
  });

  it("falls back to the usual candidates when <dir>/<ns>/ has nothing", async () => {
    const res = await r.get("/v2/library/hello/manifests/latest?ns=quay.io");
    expect(res.headers.get("docker-content-digest")).toBe(usual.manifest.digest);
  });

  it("without ns, or without --ns-dirs, looks as usual", async () => {
    expect((await r.get("/v2/library/hello/manifests/latest")).headers.get("docker-content-digest")).toBe(usual.manifest.digest);
    expect((await plain.get("/v2/library/hello/manifests/latest?ns=docker.io")).headers.get("docker-content-digest")).toBe(usual.manifest.digest);
  });

  it("serves blobs of the namespaced image, with the ns parameter as containerd sends it", async () => {
    const res = await r.get(`/v2/library/hello/blobs/${mirrored.layers[0].digest}?ns=docker.io`);
    expect(res.status).toBe(200);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(mirrored.layers[0].bytes);
    // Not under the name without the namespace.
    expect((await r.get(`/v2/library/hello/blobs/${mirrored.layers[0].digest}`)).status).toBe(404);
  });

  it("finds <ns>/<name>:<tag>.oci, and names that exist only under the namespace", async () => {
    const res = await r.get("/v2/team/app/manifests/v1?ns=ghcr.io");
    expect(res.headers.get("docker-content-digest")).toBe(onlyInNs.manifest.digest);
    expect(await json(await r.get("/v2/team/app/tags/list?ns=ghcr.io"))).toEqual({ name: "team/app", tags: ["v0", "v1"] });
    expect(await json(await r.get("/v2/team/app/tags/list"))).toEqual({ name: "team/app", tags: ["v0"] });
  });

  it("answers NAME_UNKNOWN when neither place has the name", async () => {
    const res = await r.get("/v2/nothing/here/manifests/latest?ns=docker.io");
    expect(res.status).toBe(404);
    expect((await json(res)).errors[0].code).toBe("NAME_UNKNOWN");
  });

  it.each(["..", "..%2F..", "docker.io%2F..", "%2e%2e", "a/b"])("treats ns=%s as absent, never as a path", async (ns) => {
    const res = await r.get(`/v2/library/hello/manifests/latest?ns=${ns}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-content-digest")).toBe(usual.manifest.digest);
  });

  it("caches per namespace: a repeated request costs stats, no listing or archive read", async () => {
    await r.get("/v2/library/hello/manifests/latest?ns=docker.io");
    r.images.resetStats();
    const res = await r.get("/v2/library/hello/manifests/latest?ns=docker.io");
    expect(res.headers.get("docker-content-digest")).toBe(mirrored.manifest.digest);
    const stats = r.images.stats;
    expect(stats.list).toBe(0);
    expect(stats.read).toBe(0);
  });

  it("picks up a file added under the namespace later", async () => {
    const later = image({ layers: [{ "who.txt": "added later\n" }] });
    expect((await r.get("/v2/later/manifests/latest?ns=docker.io")).status).toBe(404);
    await r.put("docker.io/later/latest.oci", [{ image: later }]);
    const res = await r.get("/v2/later/manifests/latest?ns=docker.io");
    expect(res.headers.get("docker-content-digest")).toBe(later.manifest.digest);
  });
});

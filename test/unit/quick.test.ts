/**
 * `Registry.quick`: the manifest route as plain data (what the Node adapter writes without Web
 * objects) must answer exactly as `fetch` does — status, every header, body bytes, metrics —
 * and must decline (leave it to `fetch`) every target a URL parser would rewrite.
 */
import bcrypt from "bcryptjs";
import { beforeAll, describe, expect, it } from "vitest";
import type { Answer } from "../../core/answer.ts";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { image, imageIndex, layout, MEDIA, ref } from "../fixtures/oci.ts";
import { ACCEPT_ALL, memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";

const one = image({ layers: [{ "a.txt": "a\n" }] });
const two = image({ layers: [{ "b.txt": "b\n" }], platform: { os: "linux", architecture: "arm64" } });
const index = imageIndex([one, two]);
const docker = image({ layers: [{ "d.txt": "d\n" }], mediaTypes: "docker" });
const mirrored = image({ layers: [{ "m.txt": "docker.io's copy\n" }] });

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

async function fill(r: MemoryRegistry): Promise<void> {
  await r.put("app.oci", [{ image: one, annotations: ref("v1") }, { index, annotations: ref("multi") }]);
  await r.put("team/tool/1.0.oci", [{ image: docker }]);
  await r.put("docker.io/app.oci", [{ image: mirrored, annotations: ref("v1") }]);
  await r.put("broken.oci", []);
  r.images.set("junk.oci", new TextEncoder().encode("not a tar"));
}

/** What a client sees of a Response: status, headers (lowercase, sorted), body. */
async function seen(res: Response): Promise<{ status: number; headers: [string, string][]; body: string }> {
  return { status: res.status, headers: [...res.headers].sort(), body: Buffer.from(await res.arrayBuffer()).toString("latin1") };
}

function seenAnswer(a: Answer): { status: number; headers: [string, string][]; body: string } {
  const body = a.body === null ? "" : typeof a.body === "string" ? Buffer.from(a.body, "utf8").toString("latin1") : Buffer.from(a.body).toString("latin1");
  return { status: a.status, headers: Object.entries(a.headers).map(([k, v]) => [k.toLowerCase(), v] as [string, string]).sort(), body };
}

/** Through `fetch`, with exactly these headers (the helper's `get` would add an Accept). */
const viaFetch = (r: MemoryRegistry, method: string, target: string, headers: Record<string, string>) =>
  r.registry.fetch(new Request(`http://registry.test${target}`, { method, headers }));

function plain(method: string, target: string, headers: Record<string, string>) {
  const lower = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { method, target, header: (name: string) => lower.get(name) };
}

const targets = [
  "/v2/app/manifests/v1",
  "/v2/app/manifests/multi",
  `/v2/app/manifests/${one.manifest.digest}`,
  `/v2/app/manifests/${index.manifest.digest}`,
  "/v2/app/manifests/nope",
  `/v2/app/manifests/sha256:${"0".repeat(64)}`,
  "/v2/team/tool/manifests/1.0",
  "/v2/team/tool/manifests/latest",
  "/v2/unknown/manifests/v1",
  "/v2/broken/manifests/v1",
  "/v2/junk/manifests/v1",
  "/v2/app/manifests/v1?ns=docker.io",
  "/v2/app/manifests/v1?ns=quay.io&x=1",
  "/v2/app/manifests/v1?ns=..",
];

const headerSets: Record<string, string>[] = [
  { Accept: ACCEPT_ALL },
  {},
  { Accept: MEDIA.dockerManifest },
  { Accept: `${MEDIA.ociManifest};q=0.5, ${MEDIA.ociIndex}` },
  { Accept: ACCEPT_ALL, "If-None-Match": `"${one.manifest.digest}"` },
  { Accept: ACCEPT_ALL, "If-None-Match": `W/"x", ${index.manifest.digest}` },
];

describe.each([
  ["plain", {}],
  ["--ns-dirs", { nsDirs: true }],
])("quick answers as fetch does (%s)", (_label, options) => {
  let r: MemoryRegistry;
  beforeAll(async () => {
    r = memoryRegistry(options);
    await fill(r);
  });

  for (const method of ["GET", "HEAD"]) {
    for (const target of targets) {
      it(`${method} ${target}`, async () => {
        for (const headers of headerSets) {
          const quick = r.registry.quick(plain(method, target, headers));
          expect(quick, "quick takes every canonical manifest target").toBeDefined();
          const fetched = await seen(await viaFetch(r, method, target, headers));
          expect(seenAnswer(await quick!), JSON.stringify(headers)).toEqual(fetched);
        }
      });
    }
  }

  it("counts its requests in the same metrics series as fetch", async () => {
    const count = () => r.registry.metrics.requests.get({ route: "manifest", method: "GET", status: "200" });
    const before = count();
    await r.registry.quick(plain("GET", "/v2/app/manifests/v1", { Accept: ACCEPT_ALL }));
    await r.get("/v2/app/manifests/v1");
    expect(count()).toBe(before + 2);
  });
});

describe("quick declines what fetch must see as a URL", () => {
  const r = memoryRegistry();
  it.each([
    ["POST", "/v2/app/manifests/v1"],
    ["PUT", "/v2/app/manifests/v1"],
    ["GET", "/v2/"],
    ["GET", "/v2/app/blobs/sha256:" + "0".repeat(64)],
    ["GET", "/v2/app/tags/list"],
    ["GET", "/metrics"],
    ["GET", "/v2/x/../app/manifests/v1"],
    ["GET", "/v2/./app/manifests/v1"],
    ["GET", "/v2/app/manifests/./v1"],
    ["GET", "/v2//app/manifests/v1"],
    ["GET", "/v2/App/manifests/v1"],
    ["GET", "/v2/app%2fx/manifests/v1"],
    ["GET", "/v2/app/manifests/v%31"],
    ["GET", "/v2/app/manifests/v1#frag"],
    ["GET", "/v2/app/manifests/v1?ns=a#b"],
    ["GET", "/v2/app/manifests/..."],
    ["GET", "/v2/app/manifests/sha256:abc"],
    ["GET", "http://registry.test/v2/app/manifests/v1"],
    ["GET", "/v2/app\\x/manifests/v1"],
  ])("%s %s", (method, target) => {
    expect(r.registry.quick(plain(method, target, { Accept: ACCEPT_ALL }))).toBeUndefined();
  });
});

describe("quick with --htpasswd", () => {
  let r: MemoryRegistry;
  beforeAll(async () => {
    const secrets = new MemoryFileSystem();
    secrets.set("htpasswd", new TextEncoder().encode(`alice:${bcrypt.hashSync("wonderland", 4)}\n`));
    r = memoryRegistry({ htpasswd: { fs: secrets, path: "htpasswd", realm: "Registry Realm", checkIntervalMs: 0 } });
    await fill(r);
  });

  it.each([
    ["no credentials", {}],
    ["wrong password", { Authorization: basic("alice", "nope") }],
    ["unknown user", { Authorization: basic("mallory", "x") }],
    ["right password", { Authorization: basic("alice", "wonderland") }],
  ])("%s: the same answer as fetch", async (_label, auth) => {
    for (const method of ["GET", "HEAD"]) {
      const headers = { Accept: ACCEPT_ALL, ...auth };
      const fetched = await seen(await viaFetch(r, method, "/v2/app/manifests/v1", headers));
      const quick = await r.registry.quick(plain(method, "/v2/app/manifests/v1", headers))!;
      expect(seenAnswer(quick)).toEqual(fetched);
    }
  });
});

describe("quick answers a cached manifest without a promise", () => {
  const accept = { Accept: ACCEPT_ALL };
  const isPromise = (x: unknown) => x instanceof Promise;

  /** quick's answer, awaited if need be, must be fetch's; returns whether it came at once. */
  async function same(r: MemoryRegistry, method: string, target: string, headers: Record<string, string> = accept): Promise<{ now: boolean; answer: Answer }> {
    const quick = r.registry.quick(plain(method, target, headers))!;
    const now = !isPromise(quick);
    const answer = await quick;
    expect(seenAnswer(answer)).toEqual(await seen(await viaFetch(r, method, target, headers)));
    return { now, answer };
  }

  it("the second request of a tag, a digest, a 404 and an unpacked layout is answered at once", async () => {
    const r = memoryRegistry();
    await fill(r);
    for (const [path, bytes] of layout([{ image: two, annotations: ref("v2") }])) r.images.set(`unpacked/${path}`, bytes);
    for (const target of ["/v2/app/manifests/v1", `/v2/app/manifests/${index.manifest.digest}`, "/v2/app/manifests/nope", "/v2/unknown/manifests/v1", "/v2/unpacked/manifests/v2"]) {
      const first = r.registry.quick(plain("GET", target, accept));
      expect(isPromise(first), target).toBe(true);
      await first;
      for (const method of ["GET", "HEAD"]) expect((await same(r, method, target)).now, `${method} ${target}`).toBe(true);
    }
    expect((await same(r, "GET", "/v2/unpacked/manifests/v2")).answer.headers["Docker-Content-Digest"]).toBe(two.manifest.digest);
  });

  it("a replaced, deleted or shadowed archive is looked up again, then answered at once", async () => {
    const r = memoryRegistry();
    await fill(r);
    await r.registry.quick(plain("GET", "/v2/app/manifests/v1", accept));
    expect((await same(r, "GET", "/v2/app/manifests/v1")).answer.headers["Docker-Content-Digest"]).toBe(one.manifest.digest);

    await r.put("app.oci", [{ image: docker, annotations: ref("v1") }]);
    let seenNow = await same(r, "GET", "/v2/app/manifests/v1");
    expect(seenNow.now).toBe(false);
    expect(seenNow.answer.headers["Docker-Content-Digest"]).toBe(docker.manifest.digest);
    expect((await same(r, "GET", "/v2/app/manifests/v1")).now).toBe(true);

    // A newer candidate that comes first in lookup order: `<name>/<tag>.oci`.
    await r.put("app/v1.oci", [{ image: two }]);
    seenNow = await same(r, "GET", "/v2/app/manifests/v1");
    expect(seenNow.now).toBe(false);
    expect(seenNow.answer.headers["Docker-Content-Digest"]).toBe(two.manifest.digest);
    expect((await same(r, "GET", "/v2/app/manifests/v1")).now).toBe(true);

    r.images.remove("app/v1.oci");
    r.images.remove("app.oci");
    seenNow = await same(r, "GET", "/v2/app/manifests/v1");
    expect(seenNow.now).toBe(false);
    expect(seenNow.answer.status).toBe(404);
    expect(JSON.parse(seenNow.answer.body as string).errors[0].code).toBe("NAME_UNKNOWN");
    expect((await same(r, "GET", "/v2/app/manifests/v1")).now).toBe(true);
  });

  it("a cached 404 ends when the image arrives", async () => {
    const r = memoryRegistry();
    await fill(r);
    for (const target of ["/v2/later/manifests/v1", "/v2/app/manifests/v9"]) {
      await r.registry.quick(plain("GET", target, accept));
      const cached = await same(r, "GET", target);
      expect(cached.now).toBe(true);
      expect(cached.answer.status).toBe(404);
    }
    await r.put("later.oci", [{ image: two, annotations: ref("v1") }]);
    await r.put("app/v9.oci", [{ image: docker }]);
    for (const [target, digest] of [["/v2/later/manifests/v1", two.manifest.digest], ["/v2/app/manifests/v9", docker.manifest.digest]]) {
      const found = await same(r, "GET", target);
      expect(found.now, target).toBe(false);
      expect(found.answer.headers["Docker-Content-Digest"]).toBe(digest);
      expect((await same(r, "HEAD", target)).now).toBe(true);
    }
  });

  it("an I/O error on the way is reported as fetch reports it, never answered from the cache", async () => {
    const r = memoryRegistry();
    await fill(r);
    await r.registry.quick(plain("GET", "/v2/app/manifests/v1", accept));
    r.images.failNext("app.oci", "stat");
    const quick = r.registry.quick(plain("GET", "/v2/app/manifests/v1", accept))!;
    expect(isPromise(quick)).toBe(true);
    expect((await quick).status).toBe(500);
    expect((await same(r, "GET", "/v2/app/manifests/v1")).answer.status).toBe(200);
  });

  it("takes the awaited path when the file system has no statNow, and with --htpasswd", async () => {
    const r = memoryRegistry();
    await fill(r);
    r.images.syncStat = false;
    for (let i = 0; i < 3; i++) expect((await same(r, "GET", "/v2/app/manifests/v1")).now).toBe(false);

    const secrets = new MemoryFileSystem();
    secrets.set("htpasswd", new TextEncoder().encode(`alice:${bcrypt.hashSync("wonderland", 4)}\n`));
    const locked = memoryRegistry({ htpasswd: { fs: secrets, path: "htpasswd", realm: "Registry Realm", checkIntervalMs: 0 } });
    await fill(locked);
    for (let i = 0; i < 3; i++) expect((await same(locked, "GET", "/v2/app/manifests/v1", { ...accept, Authorization: basic("alice", "wonderland") })).now).toBe(false);
  });
});

describe("manifest bytes on the wire", () => {
  it("are the stored bytes, ASCII (sent as text) or not (sent as bytes)", async () => {
    const accented = image({ layers: [{ "e.txt": "e\n" }], annotations: { "org.opencontainers.image.title": "café – ünïcode ✓" } });
    const r = memoryRegistry();
    await r.put("app.oci", [{ image: one, annotations: ref("ascii") }, { image: accented, annotations: ref("utf8") }]);
    for (const [tag, img] of [["ascii", one], ["utf8", accented]] as const) {
      const target = `/v2/app/manifests/${tag}`;
      await r.registry.quick(plain("GET", target, { Accept: ACCEPT_ALL }));
      const answer = r.registry.quick(plain("GET", target, { Accept: ACCEPT_ALL })) as Answer;
      expect(answer, "cached: answered at once").not.toBeInstanceOf(Promise);
      expect(typeof answer.body, tag).toBe(tag === "ascii" ? "string" : "object");
      const wire = typeof answer.body === "string" ? new TextEncoder().encode(answer.body) : (answer.body as Uint8Array);
      expect(Buffer.from(wire).equals(Buffer.from(img.manifest.bytes)), tag).toBe(true);
      expect(answer.headers["Content-Length"]).toBe(String(img.manifest.bytes.byteLength));
      const fetched = new Uint8Array(await (await viaFetch(r, "GET", target, { Accept: ACCEPT_ALL })).arrayBuffer());
      expect(Buffer.from(fetched).equals(Buffer.from(img.manifest.bytes)), `${tag} through fetch`).toBe(true);
    }
  });
});

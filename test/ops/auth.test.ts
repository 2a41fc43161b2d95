/**
 * `--htpasswd`: Basic auth on every /v2 route, as distribution's htpasswd auth answers, over
 * the fetch handler and the in-memory file system.
 */
import bcrypt from "bcryptjs";
import { beforeAll, describe, expect, it } from "vitest";
import { basicCredentials, HtpasswdAuth, parseHtpasswd } from "../../core/auth.ts";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { image } from "../fixtures/oci.ts";
import { memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";

// htpasswd -B writes $2y$; bcryptjs writes $2b$: the same algorithm.
const hash = (password: string, cost = 4) => bcrypt.hashSync(password, cost).replace(/^\$2b\$/, "$2y$");
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const hello = image({ layers: [{ "hello.txt": "hello\n" }] });

describe("parseHtpasswd", () => {
  it("takes bcrypt entries and says why it skips other lines", () => {
    const alice = hash("a");
    const { users, problems } = parseHtpasswd(
      [`# comment`, "", `alice:${alice}`, `bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=`, `carol:$apr1$abc$def`, "no-colon", `alice:${hash("other")}`, "  "].join("\n"),
    );
    expect([...users.keys()]).toEqual(["alice"]);
    expect(users.get("alice")).toBe(alice);
    expect(problems).toEqual([
      "line 4 (bob): not a bcrypt hash (use htpasswd -B)",
      "line 5 (carol): not a bcrypt hash (use htpasswd -B)",
      'line 6: not "user:hash"',
      "line 7 (alice): user listed twice, the first entry counts",
    ]);
  });

  it("accepts CRLF line ends", () => {
    expect([...parseHtpasswd(`a:${hash("x")}\r\nb:${hash("y")}\r\n`).users.keys()]).toEqual(["a", "b"]);
  });
});

describe("basicCredentials", () => {
  it.each([
    [basic("alice", "pa:ss word"), { user: "alice", password: "pa:ss word" }],
    [`basic ${btoa("u:")}`, { user: "u", password: "" }],
    [`Basic ${Buffer.from("jörg:pässword").toString("base64")}`, { user: "jörg", password: "pässword" }],
  ])("reads %s", (header, want) => expect(basicCredentials(header)).toEqual(want));

  it.each([null, "", "Bearer abc", "Basic", "Basic !!!", `Basic ${btoa("nocolon")}`, `Basic ${btoa("\xff\xfe:x")}`])("refuses %j", (header) =>
    expect(basicCredentials(header)).toBeUndefined(),
  );
});

describe("the fetch handler with --htpasswd", () => {
  let r: MemoryRegistry;
  let secrets: MemoryFileSystem;
  beforeAll(async () => {
    secrets = new MemoryFileSystem();
    secrets.set("htpasswd", new TextEncoder().encode(`alice:${hash("wonderland")}\nbob:${hash("builder")}\n`));
    r = memoryRegistry({ htpasswd: { fs: secrets, path: "htpasswd", realm: "Registry Realm", checkIntervalMs: 0 } });
    await r.put("hello.oci", [{ image: hello, annotations: { "org.opencontainers.image.ref.name": "latest" } }]);
  });

  const routes = [
    ["GET", "/v2/"],
    ["GET", "/v2"],
    ["HEAD", "/v2/"],
    ["GET", "/v2/hello/manifests/latest"],
    ["HEAD", "/v2/hello/manifests/latest"],
    ["GET", `/v2/hello/blobs/${hello.layers[0].digest}`],
    ["GET", "/v2/hello/tags/list"],
    ["GET", "/v2/_catalog"],
    ["GET", "/v2/nothing/manifests/latest"],
    ["PUT", "/v2/hello/manifests/latest"],
  ] as const;

  it.each(routes)("%s %s without credentials: 401, WWW-Authenticate, UNAUTHORIZED", async (method, path) => {
    const res = await r.get(path, { method });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Basic realm="Registry Realm"');
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const body = await res.text();
    if (method === "HEAD") expect(body).toBe("");
    else expect(JSON.parse(body).errors[0].code).toBe("UNAUTHORIZED");
  });

  it.each([
    ["a wrong password", basic("alice", "looking-glass")],
    ["an unknown user", basic("mallory", "wonderland")],
    ["another scheme", "Bearer wonderland"],
    ["garbage", "Basic %%%"],
  ])("refuses %s", async (_, authorization) => {
    const res = await r.get("/v2/hello/manifests/latest", { headers: { authorization } });
    expect(res.status).toBe(401);
    expect(JSON.parse(await res.text()).errors[0].code).toBe("UNAUTHORIZED");
  });

  it("serves every route with good credentials", async () => {
    const headers = { authorization: basic("alice", "wonderland") };
    expect((await r.get("/v2/", { headers })).status).toBe(200);
    const manifest = await r.get("/v2/hello/manifests/latest", { headers });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get("docker-content-digest")).toBe(hello.manifest.digest);
    const blob = await r.get(`/v2/hello/blobs/${hello.layers[0].digest}`, { headers });
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(hello.layers[0].bytes);
    expect((await r.get("/v2/hello/tags/list", { headers: { authorization: basic("bob", "builder") } })).status).toBe(200);
    // Past auth, the usual errors.
    expect((await r.get("/v2/nothing/manifests/latest", { headers })).status).toBe(404);
    expect((await r.get("/v2/hello/manifests/latest", { method: "PUT", headers })).status).toBe(405);
  });

  it("leaves /healthz, /readyz and /metrics open (probes and scrapers carry no credentials)", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics"]) expect((await r.get(path)).status, path).toBe(200);
    expect((await r.get("/favicon.ico")).status).toBe(404);
  });

  it("re-reads the file when it changes: a new user gets in, a removed one is refused", async () => {
    const carol = { authorization: basic("carol", "c4rol") };
    const alice = { authorization: basic("alice", "wonderland") };
    expect((await r.get("/v2/", { headers: carol })).status).toBe(401);
    secrets.set("htpasswd", new TextEncoder().encode(`carol:${hash("c4rol")}\n`));
    expect((await r.get("/v2/", { headers: carol })).status).toBe(200);
    expect((await r.get("/v2/", { headers: alice })).status).toBe(401);
  });

  it("refuses everyone while the file is missing, and logs it", async () => {
    secrets.delete("htpasswd");
    expect((await r.get("/v2/", { headers: { authorization: basic("carol", "c4rol") } })).status).toBe(401);
    expect(r.logs.some((l) => l.msg.startsWith("htpasswd missing"))).toBe(true);
    secrets.set("htpasswd", new TextEncoder().encode(`carol:${hash("c4rol")}\n`));
    expect((await r.get("/v2/", { headers: { authorization: basic("carol", "c4rol") } })).status).toBe(200);
  });

  it("counts refusals in the metrics", async () => {
    const text = await (await r.get("/metrics")).text();
    expect(text).toMatch(/simple_oci_registry_auth_failures_total\{reason="missing"\} \d+/);
    expect(text).toMatch(/simple_oci_registry_auth_failures_total\{reason="wrong"\} \d+/);
  });
});

describe("HtpasswdAuth", () => {
  it("checks the file at most once per interval", async () => {
    const fs = new MemoryFileSystem();
    fs.set("h", new TextEncoder().encode(`u:${hash("p")}\n`));
    let now = 0;
    const auth = new HtpasswdAuth({ fs, path: "h", checkIntervalMs: 1000 }, { now: () => now });
    expect(await auth.verify("u", "p")).toBe(true);
    fs.resetStats();
    for (let i = 0; i < 10; i++) await auth.verify("u", "p");
    expect(fs.stats.stat).toBe(0);
    now = 1500;
    await auth.verify("u", "p");
    expect(fs.stats.stat).toBe(1);
  });

  it("remembers good credentials (bcrypt once), never wrong ones", async () => {
    const fs = new MemoryFileSystem();
    fs.set("h", new TextEncoder().encode(`u:${hash("p", 8)}\n`));
    const auth = new HtpasswdAuth({ fs, path: "h", checkIntervalMs: 60_000 });
    let t = performance.now();
    expect(await auth.verify("u", "p")).toBe(true);
    const first = performance.now() - t;
    t = performance.now();
    for (let i = 0; i < 20; i++) expect(await auth.verify("u", "p")).toBe(true);
    expect((performance.now() - t) / 20).toBeLessThan(first / 4);
    expect(await auth.verify("u", "P")).toBe(false);
    expect(await auth.verify("u", "p ")).toBe(false);
  });
});

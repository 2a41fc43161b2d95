/**
 * The fetch handler as a table of requests, over the in-memory file system
 * (as go-containerregistry's TestCalls).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { blob, image, imageIndex, layer, MEDIA, ref } from "../fixtures/oci.ts";
import { memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";

const amd64 = image({ layers: [{ "hello.txt": "hello amd64\n" }] });
const arm64 = image({ layers: [{ "hello.txt": "hello arm64\n" }], platform: { architecture: "arm64", os: "linux" } });
const multi = imageIndex([amd64, arm64]);
const docker = image({ mediaTypes: "docker", layers: [{ "d.txt": "docker\n" }] });
const web1 = image({ layers: [{ "web.txt": "web 1\n" }] });
const web2 = image({ layers: [{ "web.txt": "web 2\n" }] });
const gz = image({ layers: [{ "gz.txt": "from a gzipped archive\n" }] });
const big = image({ layers: [layer({ "big.bin": new Uint8Array(300_000).map((_, i) => i % 251) }, { gzip: false })] });

const text = new TextDecoder();
const layerOf = (i: typeof amd64) => i.layers[0];

let r: MemoryRegistry;
beforeAll(async () => {
  r = memoryRegistry();
  // <name>/<reference>.oci with one untagged manifest: served as <reference>.
  await r.put("hello/latest.oci", [{ image: amd64 }]);
  // <name>/*.oci with several tagged images, "./" prefixes and folder entries.
  await r.put("team/web/all.oci", [{ image: web1, annotations: ref("1.0") }, { image: web2, annotations: ref("team/web:2.0") }], { prefix: "./", folders: true });
  // <name>:<reference>.oci and <name>.oci
  await r.put("multi:1.oci", [{ index: multi }]);
  await r.put("multi.oci", [{ image: docker, annotations: ref("docker.io/library/multi:docker") }], { order: "blobs-first" });
  await r.put("big.oci", [{ image: big, annotations: ref("v1") }]);
  await r.put("gz/latest.oci", [{ image: gz }], { gzip: true });
});

interface Row {
  name: string;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  status: number;
  expectHeaders?: Record<string, string | null>;
  body?: string | Uint8Array | ((body: Uint8Array) => void);
  code?: string;
}

const rows: Row[] = [
  { name: "base", path: "/v2/", status: 200, body: "{}", expectHeaders: { "docker-distribution-api-version": "registry/2.0" } },
  { name: "base without slash", path: "/v2", status: 200, body: "{}" },
  {
    name: "manifest by file tag",
    path: "/v2/hello/manifests/latest",
    status: 200,
    body: amd64.manifest.bytes,
    expectHeaders: { "content-type": MEDIA.ociManifest, "docker-content-digest": amd64.manifest.digest, "content-length": String(amd64.manifest.size) },
  },
  {
    name: "HEAD manifest: same headers, no body",
    method: "HEAD",
    path: "/v2/hello/manifests/latest",
    status: 200,
    body: "",
    expectHeaders: { "content-type": MEDIA.ociManifest, "docker-content-digest": amd64.manifest.digest, "content-length": String(amd64.manifest.size) },
  },
  { name: "manifest by digest", path: `/v2/hello/manifests/${amd64.manifest.digest}`, status: 200, body: amd64.manifest.bytes },
  { name: "bare tag annotation", path: "/v2/team/web/manifests/1.0", status: 200, body: web1.manifest.bytes },
  { name: "name:tag annotation", path: "/v2/team/web/manifests/2.0", status: 200, body: web2.manifest.bytes },
  { name: "multi-arch index", path: "/v2/multi/manifests/1", status: 200, body: multi.manifest.bytes, expectHeaders: { "content-type": MEDIA.ociIndex } },
  { name: "child manifest by digest", path: `/v2/multi/manifests/${arm64.manifest.digest}`, status: 200, body: arm64.manifest.bytes },
  {
    name: "docker schema2 via docker.io/library/ annotation",
    path: "/v2/multi/manifests/docker",
    status: 200,
    body: docker.manifest.bytes,
    expectHeaders: { "content-type": MEDIA.dockerManifest },
  },
  { name: "same name via library/", path: "/v2/library/multi/manifests/docker", status: 404, code: "NAME_UNKNOWN" },
  { name: "containerd ns parameter ignored", path: "/v2/hello/manifests/latest?ns=docker.io", status: 200, body: amd64.manifest.bytes },
  {
    name: "blob",
    path: `/v2/hello/blobs/${layerOf(amd64).digest}`,
    status: 200,
    body: layerOf(amd64).bytes,
    expectHeaders: {
      "content-type": "application/octet-stream",
      "docker-content-digest": layerOf(amd64).digest,
      "content-length": String(layerOf(amd64).size),
      "accept-ranges": "bytes",
    },
  },
  { name: "HEAD blob", method: "HEAD", path: `/v2/hello/blobs/${layerOf(amd64).digest}`, status: 200, body: "", expectHeaders: { "content-length": String(layerOf(amd64).size) } },
  { name: "config blob", path: `/v2/hello/blobs/${amd64.config.digest}`, status: 200, body: amd64.config.bytes },
  { name: "child layer of an index", path: `/v2/multi/blobs/${layerOf(arm64).digest}`, status: 200, body: layerOf(arm64).bytes },
  {
    name: "range a-b",
    path: `/v2/big/blobs/${layerOf(big).digest}`,
    headers: { Range: "bytes=1000-1999" },
    status: 206,
    body: layerOf(big).bytes.slice(1000, 2000),
    expectHeaders: { "content-range": `bytes 1000-1999/${layerOf(big).size}`, "content-length": "1000", "docker-content-digest": layerOf(big).digest },
  },
  { name: "range a-", path: `/v2/big/blobs/${layerOf(big).digest}`, headers: { Range: "bytes=300000-" }, status: 206, body: layerOf(big).bytes.slice(300000) },
  { name: "suffix range", path: `/v2/big/blobs/${layerOf(big).digest}`, headers: { Range: "bytes=-500" }, status: 206, body: layerOf(big).bytes.slice(-500) },
  {
    name: "range end clipped",
    path: `/v2/big/blobs/${layerOf(big).digest}`,
    headers: { Range: `bytes=${layerOf(big).size - 10}-99999999` },
    status: 206,
    body: layerOf(big).bytes.slice(-10),
  },
  {
    name: "range past the end: 416",
    path: `/v2/big/blobs/${layerOf(big).digest}`,
    headers: { Range: `bytes=${layerOf(big).size}-` },
    status: 416,
    expectHeaders: { "content-range": `bytes */${layerOf(big).size}` },
  },
  { name: "malformed range ignored", path: `/v2/hello/blobs/${layerOf(amd64).digest}`, headers: { Range: "bytes=abc" }, status: 200, body: layerOf(amd64).bytes },
  { name: "blob of another name", path: `/v2/hello/blobs/${layerOf(arm64).digest}`, status: 404, code: "BLOB_UNKNOWN" },
  { name: "blob of an unknown name", path: `/v2/nope/blobs/${layerOf(arm64).digest}`, status: 404, code: "NAME_UNKNOWN" },
  { name: "unknown tag", path: "/v2/hello/manifests/nope", status: 404, code: "MANIFEST_UNKNOWN" },
  { name: "unknown name", path: "/v2/nope/manifests/latest", status: 404, code: "NAME_UNKNOWN" },
  { name: "unknown digest", path: `/v2/hello/manifests/${blob("x").digest}`, status: 404, code: "MANIFEST_UNKNOWN" },
  { name: "tag outside the grammar", path: "/v2/hello/manifests/.INVALID_MANIFEST_NAME", status: 404, code: "MANIFEST_UNKNOWN" },
  { name: "malformed digest", path: "/v2/hello/manifests/sha256:totallywrong", status: 400, code: "DIGEST_INVALID" },
  { name: "malformed blob digest", path: "/v2/hello/blobs/sha256:abc", status: 400, code: "DIGEST_INVALID" },
  { name: "invalid name", path: "/v2/Hello/manifests/latest", status: 400, code: "NAME_INVALID" },
  { name: "encoded traversal (URL parsing resolves it away)", path: "/v2/%2e%2e/%2e%2e/hello/manifests/latest", status: 404, code: "NOT_FOUND" },
  { name: "encoded slash", path: "/v2/team%2fweb/manifests/1.0", status: 400, code: "NAME_INVALID" },
  { name: "DELETE", method: "DELETE", path: "/v2/hello/manifests/latest", status: 405, code: "UNSUPPORTED" },
  { name: "PUT", method: "PUT", path: "/v2/hello/manifests/latest", status: 405, code: "UNSUPPORTED" },
  { name: "POST upload", method: "POST", path: "/v2/hello/blobs/uploads/", status: 405, code: "UNSUPPORTED" },
  { name: "PATCH", method: "PATCH", path: "/v2/hello/blobs/uploads/x", status: 405, code: "UNSUPPORTED" },
  { name: "unknown path", path: "/v3/", status: 404, code: "NOT_FOUND" },
  {
    name: "tags",
    path: "/v2/team/web/tags/list",
    status: 200,
    body: JSON.stringify({ name: "team/web", tags: ["1.0", "2.0"] }),
    expectHeaders: { "content-type": "application/json", "content-length": String(JSON.stringify({ name: "team/web", tags: ["1.0", "2.0"] }).length) },
  },
  { name: "tags of a file-tagged name", path: "/v2/hello/tags/list", status: 200, body: JSON.stringify({ name: "hello", tags: ["latest"] }) },
  { name: "tags across <name>:*.oci and <name>.oci", path: "/v2/multi/tags/list", status: 200, body: JSON.stringify({ name: "multi", tags: ["1", "docker"] }) },
  {
    name: "tags n=1",
    path: "/v2/team/web/tags/list?n=1",
    status: 200,
    body: JSON.stringify({ name: "team/web", tags: ["1.0"] }),
    expectHeaders: { link: '</v2/team/web/tags/list?n=1&last=1.0>; rel="next"' },
  },
  { name: "tags n=1 last=1.0", path: "/v2/team/web/tags/list?n=1&last=1.0", status: 200, body: JSON.stringify({ name: "team/web", tags: ["2.0"] }), expectHeaders: { link: null } },
  { name: "tags n=0", path: "/v2/team/web/tags/list?n=0", status: 200, body: JSON.stringify({ name: "team/web", tags: [] }) },
  { name: "tags of unknown name", path: "/v2/nope/tags/list", status: 404, code: "NAME_UNKNOWN" },
  {
    name: "gzip archive manifest",
    path: "/v2/gz/manifests/latest",
    status: 200,
    body: gz.manifest.bytes,
  },
  { name: "gzip archive blob", path: `/v2/gz/blobs/${layerOf(gz).digest}`, status: 200, body: layerOf(gz).bytes },
  { name: "gzip archive range", path: `/v2/gz/blobs/${layerOf(gz).digest}`, headers: { Range: "bytes=0-9" }, status: 206, body: layerOf(gz).bytes.slice(0, 10) },
];

describe("fetch handler", () => {
  it.each(rows)("$name", async (row) => {
    const res = await r.get(row.path, { method: row.method ?? "GET", headers: row.headers });
    const body = new Uint8Array(await res.arrayBuffer());
    expect(res.status, text.decode(body)).toBe(row.status);
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    for (const [k, v] of Object.entries(row.expectHeaders ?? {})) expect(res.headers.get(k), k).toBe(v);
    if (typeof row.body === "string") expect(text.decode(body)).toBe(row.body);
    else if (row.body instanceof Uint8Array) expect(Buffer.from(body).equals(Buffer.from(row.body))).toBe(true);
    if (row.code) {
      if (row.method === "HEAD") expect(body.byteLength).toBe(0);
      else {
        expect(res.headers.get("content-type")).toMatch(/^application\/json/);
        const json = JSON.parse(text.decode(body));
        expect(json.errors[0].code).toBe(row.code);
        expect(typeof json.errors[0].message).toBe("string");
        expect(json.errors[0]).toHaveProperty("detail");
      }
    }
  });

  it("answers several ranges with multipart/byteranges", async () => {
    const l = layerOf(big);
    const res = await r.get(`/v2/big/blobs/${l.digest}`, { headers: { Range: "bytes=0-9,100-109" } });
    expect(res.status).toBe(206);
    const type = res.headers.get("content-type")!;
    const boundary = /^multipart\/byteranges; boundary=(.+)$/.exec(type)![1];
    const body = Buffer.from(await res.arrayBuffer());
    expect(Number(res.headers.get("content-length"))).toBe(body.length);
    const parts = body.toString("latin1").split(`--${boundary}`);
    expect(parts).toHaveLength(4);
    expect(parts[1]).toContain(`Content-Range: bytes 0-9/${l.size}`);
    expect(parts[1].endsWith(`\r\n\r\n${Buffer.from(l.bytes.slice(0, 10)).toString("latin1")}\r\n`)).toBe(true);
    expect(parts[2]).toContain(`Content-Range: bytes 100-109/${l.size}`);
    expect(parts[3]).toBe("--\r\n");
  });

  it("HEAD of an error has the status and no body", async () => {
    const res = await r.get("/v2/nope/manifests/latest", { method: "HEAD" });
    expect(res.status).toBe(404);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });
});

describe("Accept negotiation, as CNCF distribution does it", () => {
  let n: MemoryRegistry;
  const list = imageIndex([docker, image({ mediaTypes: "docker", platform: { architecture: "arm64", os: "linux" } })], { mediaTypes: "docker" });
  beforeAll(async () => {
    n = memoryRegistry();
    await n.put("neg.oci", [
      { image: amd64, annotations: ref("oci") },
      { index: multi, annotations: ref("ociindex") },
      { image: docker, annotations: ref("docker") },
      { index: list, annotations: ref("list") },
    ]);
  });
  const digestFor = async (path: string, accept: string) => {
    const res = await n.get(path, { headers: { Accept: accept } });
    const body = await res.text();
    return res.status === 200 ? res.headers.get("docker-content-digest") : `${res.status} ${JSON.parse(body).errors[0].code}`;
  };

  it.each([
    ["oci", "application/json", "404 MANIFEST_UNKNOWN"],
    ["oci", "*/*", "404 MANIFEST_UNKNOWN"],
    ["oci", `${MEDIA.ociManifest};q=0.5`, amd64.manifest.digest],
    ["ociindex", MEDIA.ociManifest, "404 MANIFEST_UNKNOWN"],
    ["ociindex", MEDIA.ociIndex, multi.manifest.digest],
    ["docker", "application/json", docker.manifest.digest],
    ["list", MEDIA.dockerManifest, docker.manifest.digest],
    ["list", "application/json", "400 MANIFEST_INVALID"],
    ["list", `${MEDIA.dockerList}, ${MEDIA.dockerManifest}`, list.manifest.digest],
    [list.manifest.digest, MEDIA.dockerManifest, list.manifest.digest],
  ])("%s with Accept %s -> %s", async (reference, accept, expected) => {
    expect(await digestFor(`/v2/neg/manifests/${reference}`, accept)).toBe(expected);
  });

  it("If-None-Match with the digest answers 304", async () => {
    const res = await n.get("/v2/neg/manifests/oci", { headers: { "If-None-Match": `"${amd64.manifest.digest}"` } });
    expect(res.status).toBe(304);
    expect(res.headers.get("docker-content-digest")).toBe(amd64.manifest.digest);
  });
});

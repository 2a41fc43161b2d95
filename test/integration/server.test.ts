/**
 * The server on a real temp folder, on every runtime (Node's built CLI and `deno run`, as
 * subprocesses): bytes over HTTP, the access log, files changing on disk.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { image, layer, layout, MEDIA, packTar, ref } from "../fixtures/oci.ts";
import { ACCEPT_ALL } from "../helpers/memory-registry.ts";
import { describeRuntimes, type RunningServer, startServer } from "../helpers/server.ts";

const big = image({ layers: [layer({ "big.bin": new Uint8Array(3 << 20).map((_, i) => (i * 7) % 256) }, { gzip: false })] });
const small = image({ layers: [{ "s.txt": "small\n" }] });
const other = image({ layers: [{ "o.txt": "other\n" }] });

describeRuntimes((runtime) => {
  let dir: string;
  let cacheDir: string;
  let server: RunningServer;

  async function archive(path: string, entries: Parameters<typeof layout>[0], gzip = false) {
    const full = join(dir, path);
    mkdirSync(join(full, ".."), { recursive: true });
    writeFileSync(full, await packTar(layout(entries), { gzip }));
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "sor-int-"));
    cacheDir = mkdtempSync(join(tmpdir(), "sor-int-cache-"));
    await archive("big/latest.oci", [{ image: big }]);
    await archive("team/app.oci", [{ image: small, annotations: ref("localhost/team/app:1") }]);
    await archive("zipped/latest.oci", [{ image: small }], true);
    server = await startServer({ dir, cacheDir, runtime, args: ["--rescan-interval", "0", "--shutdown-grace", "2s"] });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  });

  const get = (path: string, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    if (!headers.has("Accept")) headers.set("Accept", ACCEPT_ALL);
    return fetch(`${server.url}${path}`, { ...init, headers });
  };

  it("serves /v2/ with the API version header and a reason phrase", async () => {
    const res = await get("/v2/");
    expect(res.status).toBe(200);
    expect(res.statusText).toBe("OK");
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    expect(await res.text()).toBe("{}");
  });

  it("serves a 3 MiB layer byte for byte, and ranges of it", async () => {
    const l = big.layers[0];
    const res = await get(`/v2/big/blobs/${l.digest}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(l.size));
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(l.bytes))).toBe(true);
    const part = await get(`/v2/big/blobs/${l.digest}`, { headers: { Range: "bytes=1048576-2097151" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 1048576-2097151/${l.size}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(Buffer.from(l.bytes.slice(1048576, 2097152)))).toBe(true);
  });

  it("HEAD of a manifest carries digest and length", async () => {
    const res = await get("/v2/team/app/manifests/1", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(MEDIA.ociManifest);
    expect(res.headers.get("docker-content-digest")).toBe(small.manifest.digest);
    expect(res.headers.get("content-length")).toBe(String(small.manifest.size));
  });

  it("unpacks a gzipped archive into --cache-dir and serves from it", async () => {
    const l = small.layers[0];
    const res = await get(`/v2/zipped/blobs/${l.digest}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(l.bytes))).toBe(true);
    const { readdirSync } = await import("node:fs");
    expect(readdirSync(join(cacheDir, "blobs/sha256"))).toContain(l.digest.slice(7));
  });

  it("writes one access log line per request", async () => {
    await (await get("/v2/team/app/manifests/1")).arrayBuffer();
    await new Promise((r) => setTimeout(r, 20));
    const line = server.logLines().filter((l) => l.msg === "request" && l.path === "/v2/team/app/manifests/1").at(-1)!;
    expect(line).toMatchObject({ method: "GET", status: 200, bytes: small.manifest.size });
    expect(typeof line.ms).toBe("number");
  });

  it("a download in progress completes with the old bytes when the archive is replaced by rename", async () => {
    const l = big.layers[0];
    const res = await get(`/v2/big/blobs/${l.digest}`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    const tmp = join(dir, "big/.latest.oci.tmp");
    writeFileSync(tmp, await packTar(layout([{ image: other }])));
    renameSync(tmp, join(dir, "big/latest.oci"));
    const chunks = [first.value!];
    for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
    expect(Buffer.concat(chunks).equals(Buffer.from(l.bytes))).toBe(true);
    // And the next request sees the new file.
    const next = await get("/v2/big/manifests/latest");
    expect(next.headers.get("docker-content-digest")).toBe(other.manifest.digest);
    expect((await get(`/v2/big/blobs/${l.digest}`)).status).toBe(404);
  });

  it("serves a manifest's exact bytes, ASCII or not, on the first request and the cached ones", async () => {
    const accented = image({ layers: [{ "e.txt": "e\n" }], annotations: { "org.opencontainers.image.title": "café – ünïcode ✓" } });
    await archive("bytes.oci", [{ image: small, annotations: ref("ascii") }, { image: accented, annotations: ref("utf8") }]);
    for (const [tag, img] of [["ascii", small], ["utf8", accented]] as const) {
      for (let i = 0; i < 3; i++) {
        const res = await get(`/v2/bytes/manifests/${tag}`);
        expect(res.headers.get("content-length")).toBe(String(img.manifest.size));
        expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(img.manifest.bytes)), `${tag} #${i}`).toBe(true);
      }
    }
  });

  it("a <name>/<tag>.oci written beside a cached <name>.oci is served on the next request", async () => {
    await archive("beside.oci", [{ image: small, annotations: ref("latest") }]);
    for (let i = 0; i < 3; i++) expect((await get("/v2/beside/manifests/latest")).headers.get("docker-content-digest")).toBe(small.manifest.digest);
    await archive("beside/latest.oci", [{ image: other }]);
    expect((await get("/v2/beside/manifests/latest")).headers.get("docker-content-digest")).toBe(other.manifest.digest);
  });

  it("a deleted archive answers 404 on the next request", async () => {
    await archive("gone/latest.oci", [{ image: small }]);
    expect((await get("/v2/gone/manifests/latest")).status).toBe(200);
    rmSync(join(dir, "gone/latest.oci"));
    const res = await get("/v2/gone/manifests/latest");
    expect(res.status).toBe(404);
    expect((await res.json()).errors[0].code).toBe("NAME_UNKNOWN");
  });
});

/** /metrics, /healthz and /readyz over the fetch handler and the in-memory file system. */
import { describe, expect, it } from "vitest";
import type { FileSystem } from "../../core/fs.ts";
import { Health } from "../../core/health.ts";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { Counter, Histogram, Metrics, routeOf } from "../../core/metrics.ts";
import { image, ref } from "../fixtures/oci.ts";
import { memoryRegistry } from "../helpers/memory-registry.ts";

/** Parses Prometheus text into `name{labels}` -> value, checking every line's shape. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.trimEnd().split("\n")) {
    if (line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line);
    expect(m, `not a sample line: ${line}`).not.toBeNull();
    samples.set(`${m![1]}${m![2] ?? ""}`, Number(m![3]));
  }
  return samples;
}

const fsOf = (fs: FileSystem): FileSystem => ({
  list: (path) => fs.list(path),
  stat: (path) => fs.stat(path),
  read: (path, offset, length) => fs.read(path, offset, length),
  stream: (path, start, end, options) => fs.stream(path, start, end, options),
});

const hello = image({ layers: [{ "hello.txt": "hello\n".repeat(1000) }] });

describe("Prometheus text", () => {
  it("renders counters with escaped labels and cumulative histograms", () => {
    const c = new Counter("x_total", "help");
    c.inc({ path: 'a"b\\c\nd' }, 2);
    expect(c.render()).toEqual(["# HELP x_total help", "# TYPE x_total counter", 'x_total{path="a\\"b\\\\c\\nd"} 2']);
    const h = new Histogram("d_seconds", "help", [0.1, 1]);
    h.observe({ route: "blob" }, 0.05);
    h.observe({ route: "blob" }, 0.5);
    h.observe({ route: "blob" }, 5);
    expect(h.render().slice(2)).toEqual([
      'd_seconds_bucket{route="blob",le="0.1"} 1',
      'd_seconds_bucket{route="blob",le="1"} 2',
      'd_seconds_bucket{route="blob",le="+Inf"} 3',
      'd_seconds_sum{route="blob"} 5.55',
      'd_seconds_count{route="blob"} 3',
    ]);
  });

  it.each([
    ["/v2/", "base"],
    ["/v2", "base"],
    ["/v2/a/b/manifests/latest", "manifest"],
    ["/v2/manifests/manifests/x", "manifest"],
    ["/v2/a/blobs/sha256:abc", "blob"],
    ["/v2/a/tags/list", "tags"],
    ["/v2/a/referrers/sha256:abc", "referrers"],
    ["/v2/_catalog", "catalog"],
    ["/v2/a/blobs/uploads/", "other"],
    ["/metrics", "metrics"],
    ["/healthz", "healthz"],
    ["/readyz", "readyz"],
    ["/", "not_found"],
  ])("route of %s is %s (never the repository name)", (path, route) => expect(routeOf(path)).toBe(route));
});

describe("/metrics", () => {
  it("counts requests by route and status, bytes sent, durations, cache hits and misses, archives and their errors", async () => {
    let t = 0;
    const r = memoryRegistry();
    // A clock the handler reads: each request appears to take 20 ms.
    Object.assign(r.registry.metrics, { now: () => (t += 10) });
    await r.put("hello.oci", [{ image: hello, annotations: ref("latest") }]);
    const broken = new TextEncoder().encode("not a tar archive at all".repeat(40));
    r.images.set("broken.oci", broken);

    // Requests are counted when their body has been sent: read each one.
    await (await r.get("/v2/hello/manifests/latest")).arrayBuffer();
    await (await r.get("/v2/hello/manifests/latest")).arrayBuffer();
    const blob = await r.get(`/v2/hello/blobs/${hello.layers[0].digest}`);
    expect((await blob.arrayBuffer()).byteLength).toBe(hello.layers[0].size);
    await (await r.get("/v2/hello/manifests/nope")).arrayBuffer();
    await (await r.get("/v2/broken/manifests/latest")).arrayBuffer();
    await r.get("/v2/hello/manifests/latest", { method: "HEAD" });

    const res = await r.get("/metrics");
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const m = parse(await res.text());
    const p = "simple_oci_registry_";
    expect(m.get(`${p}http_requests_total{route="manifest",method="GET",status="200"}`)).toBe(2);
    expect(m.get(`${p}http_requests_total{route="manifest",method="HEAD",status="200"}`)).toBe(1);
    expect(m.get(`${p}http_requests_total{route="manifest",method="GET",status="404"}`)).toBe(2);
    expect(m.get(`${p}http_requests_total{route="blob",method="GET",status="200"}`)).toBe(1);
    expect(m.get(`${p}http_response_bytes_total{route="blob"}`)).toBe(hello.layers[0].size);
    expect(m.get(`${p}http_response_bytes_total{route="manifest"}`)).toBeGreaterThanOrEqual(2 * hello.manifest.size);
    expect(m.get(`${p}http_request_duration_seconds_count{route="manifest"}`)).toBe(5);
    expect(m.get(`${p}http_request_duration_seconds_bucket{route="manifest",le="0.005"}`)).toBe(0);
    expect(m.get(`${p}http_request_duration_seconds_bucket{route="manifest",le="0.025"}`)).toBe(5);
    expect(m.get(`${p}downloads_in_flight`)).toBe(0);
    expect(m.get(`${p}archives_indexed_total{format="tar"}`)).toBe(1);
    expect(m.get(`${p}archive_index_duration_seconds_count`)).toBe(1);
    expect(m.get(`${p}archive_errors_total`)).toBe(1);
    expect(m.get(`${p}lookup_cache_hits_total`)).toBeGreaterThanOrEqual(2);
    expect(m.get(`${p}lookup_cache_misses_total`)).toBeGreaterThanOrEqual(3);
  });

  it("counts images made unservable by a digest mismatch", async () => {
    const r = memoryRegistry();
    const files = (await import("../fixtures/oci.ts")).layout([{ image: hello, annotations: ref("latest") }]);
    const name = `blobs/${hello.manifest.digest.replace(":", "/")}`;
    const bad = new Uint8Array(files.get(name)!);
    bad[bad.length - 2] ^= 1;
    files.set(name, bad);
    r.images.set("hello.oci", await (await import("../fixtures/oci.ts")).packTar(files));
    expect((await r.get("/v2/hello/manifests/latest")).status).toBe(404);
    expect(parse(await (await r.get("/metrics")).text()).get("simple_oci_registry_image_errors_total")).toBe(1);
  });

  it("shows a download in flight until its body ends or the client goes away", async () => {
    const r = memoryRegistry();
    await r.put("hello.oci", [{ image: hello, annotations: ref("latest") }]);
    const inFlight = async () => parse(await r.registry.operations(new Request("http://x/metrics")).then((x) => x.text())).get("simple_oci_registry_downloads_in_flight");
    const a = await r.get(`/v2/hello/blobs/${hello.layers[0].digest}`);
    const b = await r.get(`/v2/hello/blobs/${hello.layers[0].digest}`);
    expect(await inFlight()).toBe(2);
    await a.arrayBuffer();
    expect(await inFlight()).toBe(1);
    await b.body!.cancel();
    expect(await inFlight()).toBe(0);
    // HEAD sends no body: never in flight.
    await r.get(`/v2/hello/blobs/${hello.layers[0].digest}`, { method: "HEAD" });
    expect(await inFlight()).toBe(0);
    expect(r.images.openStreams).toBe(0);
  });
});

describe("/healthz and /readyz", () => {
  it("healthz answers ok without touching the folder", async () => {
    const r = memoryRegistry();
    r.images.resetStats();
    const res = await r.get("/healthz");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok\n");
    expect(r.images.stats).toMatchObject({ stat: 0, list: 0, read: 0 });
    expect((await r.get("/healthz", { method: "HEAD" })).status).toBe(200);
    expect((await r.get("/healthz", { method: "POST" })).status).toBe(405);
  });

  it("readyz waits for the first scan, which indexes every archive", async () => {
    const images = new MemoryFileSystem();
    const files = await import("../fixtures/oci.ts");
    images.set("hello.oci", await files.packTar(files.layout([{ image: hello, annotations: ref("latest") }])));
    images.set("team/app/v1.oci", await files.packTar(files.layout([{ image: hello }])));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: FileSystem = {
      ...fsOf(images),
      read: async (path, offset, length) => {
        await gate;
        return images.read(path, offset, length);
      },
    };
    const { createRegistry } = await import("../../core/registry.ts");
    const registry = createRegistry({ images: slow, rescanIntervalMs: 0, initialScan: true });
    const before = await registry.fetch(new Request("http://x/readyz"));
    expect(before.status).toBe(503);
    expect(await before.text()).toBe("not ready: the first scan of the image folder is not done yet\n");
    release();
    await registry.scanned;
    expect((await registry.fetch(new Request("http://x/readyz"))).status).toBe(200);
    const m = parse(registry.metrics.render());
    expect(m.get('simple_oci_registry_archives_indexed_total{format="tar"}')).toBe(2);
  });

  it("readyz answers 503 when the folder cannot be listed, or does not answer in time", async () => {
    const images = new MemoryFileSystem();
    const health = new Health(images, { scanned: true, timeoutMs: 50 });
    expect(await health.readiness()).toEqual({ ready: true, reasons: [] });
    images.faults = (op) => (op === "list" ? Object.assign(new Error("EIO: i/o error"), { code: "EIO" }) : undefined);
    expect(await health.readiness()).toEqual({ ready: false, reasons: ["the image folder cannot be listed: EIO: i/o error"] });
    images.faults = undefined;
    const hung: FileSystem = { ...fsOf(images), list: () => new Promise(() => {}) };
    expect(await new Health(hung, { scanned: true, timeoutMs: 50 }).readiness()).toEqual({
      ready: false,
      reasons: ["the image folder did not answer within 50 ms"],
    });
  });

  it("without initialScan, ready at once", async () => {
    const r = memoryRegistry();
    expect((await r.get("/readyz")).status).toBe(200);
  });

  it("with operationsOnMainPort: false, the endpoints are only on operations()", async () => {
    const r = memoryRegistry({ operationsOnMainPort: false });
    expect((await r.get("/metrics")).status).toBe(404);
    expect((await r.registry.operations(new Request("http://x/metrics"))).status).toBe(200);
    expect((await r.registry.operations(new Request("http://x/healthz"))).status).toBe(200);
    expect((await r.registry.operations(new Request("http://x/v2/"))).status).toBe(404);
  });
});

describe("Metrics.instrument", () => {
  it("counts a handler that throws as a 500", async () => {
    const metrics = new Metrics();
    const handler = metrics.instrument(async () => {
      throw new Error("boom");
    });
    await expect(handler(new Request("http://x/v2/"))).rejects.toThrow("boom");
    expect(metrics.requests.get({ route: "base", method: "GET", status: "500" })).toBe(1);
  });
});

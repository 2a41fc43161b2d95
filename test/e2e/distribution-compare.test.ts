// The registry answers like CNCF distribution (Debian's docker-registry 2.8) serving the same
// images: every real-tool archive is pushed to distribution with
// `skopeo copy --all --preserve-digests`, then the same requests go to both and status,
// Content-Type, Docker-Content-Digest, Content-Length, Content-Range, bytes and error codes must
// agree. Where distribution is known to differ from the spec, our answer is checked alone (the
// `ours` rows say why).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ALL_VARIANTS, placeArchives, RealTools, servedRefs, variantAvailable, type RealArchive, type VariantId } from "../fixtures/real-tools.ts";
import { compareRegistries, type Probe } from "../helpers/compare.ts";
import { startContainerd, type Containerd } from "../helpers/containerd.ts";
import { startDistribution, type Distribution } from "../helpers/distribution.ts";
import { ACCEPT_MANIFESTS, childManifests, MT, writeDirFrom } from "../helpers/oci-layout.ts";
import { startServer, type RunningServer } from "../helpers/server.ts";
import { skopeoCopy } from "../helpers/skopeo.ts";
import { describeWithTools, inCI } from "../helpers/tools.ts";

const ZERO = `sha256:${"0".repeat(64)}`;
const accept = { Accept: ACCEPT_MANIFESTS };

/** Requests about one archive's images, under one name. */
function probesFor(archive: RealArchive, name: string): Probe[] {
  const probes: Probe[] = [];
  const manifests = new Set<string>();
  const blobs = new Map<string, number>();
  for (const { name: servedName, tag, want } of servedRefs(archive)) {
    if (servedName !== name) continue;
    for (const method of ["GET", "HEAD"] as const) {
      // Accept negotiation. Without Docker schema2 in Accept, distribution 2.8 rewrites schema2
      // manifests to signed schema1; distribution 3 (and we) never make schema1: a schema2
      // manifest is served as is, and a Docker list fetched by tag, whose fallback would be its
      // linux/amd64 schema2 child, answers 400 MANIFEST_INVALID.
      const schema1 =
        want.mediaType === MT.dockerManifest
          ? { status: 200, headers: { "content-type": MT.dockerManifest, "docker-content-digest": want.digest }, why: "distribution 2.8 converts to schema1; we serve schema2 as is (as distribution 3 does)" }
          : want.mediaType === MT.dockerList
            ? { status: 400, codes: ["MANIFEST_INVALID"], why: "distribution 2.8 converts the amd64 child to schema1; distribution 3 and we answer MANIFEST_INVALID" }
            : undefined;
      for (const headers of [undefined, { Accept: MT.ociManifest }]) {
        probes.push({ title: "manifest by tag, no schema2 in Accept", method, path: `/v2/${name}/manifests/${tag}`, headers, ...(schema1 ? { ours: schema1 } : {}) });
      }
      probes.push({ title: "manifest by tag, Accept docker v2 only", method, path: `/v2/${name}/manifests/${tag}`, headers: { Accept: MT.dockerManifest } });
      probes.push({ title: "manifest by tag", method, path: `/v2/${name}/manifests/${tag}`, headers: accept });
      probes.push({ title: "manifest by digest", method, path: `/v2/${name}/manifests/${want.digest}`, headers: accept });
    }
    manifests.add(want.digest);
    for (const child of childManifests(archive.contents, want.digest, want.mediaType)) {
      manifests.add(child.digest);
      probes.push({ title: "child manifest", method: "GET", path: `/v2/${name}/manifests/${child.digest}`, headers: accept });
      probes.push({ title: "child manifest", method: "HEAD", path: `/v2/${name}/manifests/${child.digest}`, headers: accept });
    }
    for (const digest of archive.contents.closure(want.digest)) {
      if (!manifests.has(digest)) blobs.set(digest, archive.contents.blob(digest)!.length);
    }
  }
  for (const [digest, size] of blobs) {
    probes.push({ title: "blob", method: "GET", path: `/v2/${name}/blobs/${digest}` });
    probes.push({ title: "blob", method: "HEAD", path: `/v2/${name}/blobs/${digest}` });
  }
  // Ranges on the largest blob (a layer).
  const [layer, size] = [...blobs].sort((a, b) => b[1] - a[1])[0]!;
  for (const range of [
    "bytes=0-9",
    "bytes=5-",
    "bytes=-7",
    `bytes=0-${size + 100}`,
    `bytes=${size - 1}-`,
    `bytes=${size}-`,
    `bytes=${size + 5}-${size + 10}`,
    `bytes=${Math.floor(size / 3)}-${Math.floor(size / 3) + 70_000}`,
    `bytes=-${size + 10}`,
  ]) {
    probes.push({ title: `range ${range}`, method: "GET", path: `/v2/${name}/blobs/${layer}`, headers: { Range: range } });
  }
  probes.push({
    title: "range start > end",
    method: "GET",
    path: `/v2/${name}/blobs/${layer}`,
    headers: { Range: "bytes=3-1" },
    ours: { status: 416, headers: { "content-range": `bytes */${size}` }, why: "Go's ServeContent sends 416 without Content-Range here; RFC 9110 wants bytes */size" },
  });
  const tags = Object.keys(archive.tags).sort();
  probes.push(
    { title: "unknown tag", method: "GET", path: `/v2/${name}/manifests/no-such-tag`, headers: accept },
    { title: "unknown tag", method: "HEAD", path: `/v2/${name}/manifests/no-such-tag`, headers: accept },
    { title: "unknown manifest digest", method: "GET", path: `/v2/${name}/manifests/${ZERO}`, headers: accept },
    { title: "unknown manifest digest", method: "HEAD", path: `/v2/${name}/manifests/${ZERO}`, headers: accept },
    { title: "unknown blob", method: "GET", path: `/v2/${name}/blobs/${ZERO}` },
    { title: "unknown blob", method: "HEAD", path: `/v2/${name}/blobs/${ZERO}` },
    { title: "malformed blob digest", method: "GET", path: `/v2/${name}/blobs/sha256:totallywrong` },
    { title: "tags", method: "GET", path: `/v2/${name}/tags/list`, compare: "tags" },
    // distribution 2.8 ignores n and last: check ours against the spec.
    {
      title: "tags page 1",
      method: "GET",
      path: `/v2/${name}/tags/list?n=1`,
      ours: {
        status: 200,
        body: { name, tags: tags.slice(0, 1) },
        link: tags.length > 1 ? `</v2/${name}/tags/list?n=1&last=${tags[0]}>; rel="next"` : null,
        why: "distribution 2.8 ignores n; the spec pages in lexical order with a Link to the next page",
      },
    },
    {
      title: "tags page 2",
      method: "GET",
      path: `/v2/${name}/tags/list?n=1&last=${tags[0]}`,
      ours: {
        status: 200,
        body: { name, tags: tags.slice(1, 2) },
        link: tags.length > 2 ? `</v2/${name}/tags/list?n=1&last=${tags[1]}>; rel="next"` : null,
        why: "distribution 2.8 ignores last; the spec says last is exclusive",
      },
    },
    {
      title: "malformed manifest digest",
      method: "GET",
      path: `/v2/${name}/manifests/sha256:totallywrong`,
      headers: accept,
      // distribution 2.8 answers 500 UNKNOWN (it looks the string up as a tag).
      ours: { status: [400, 404], why: "distribution answers 500; the conformance suite accepts 400 or 404" },
    },
  );
  return probes;
}

describeWithTools(["skopeo", "docker-registry"], "responses match CNCF distribution serving the same images", () => {
  let work: string;
  let server: RunningServer;
  let distribution: Distribution;
  let containerd: Promise<Containerd> | undefined;
  let tools: RealTools;
  const archives = new Map<VariantId, RealArchive>();

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-compare-"));
    tools = new RealTools({ dir: join(work, "tools"), containerd: () => (containerd ??= startContainerd()) });
    for (const archive of await tools.all()) archives.set(archive.id as VariantId, archive);
    placeArchives(join(work, "registry"), [...archives.values()]);
    // One after the other: if one fails to start, the other is already assigned and afterAll stops it.
    distribution = await startDistribution();
    server = await startServer({ dir: join(work, "registry") });
    // Push every tag of every archive, from the archive's own bytes (a skopeo dir: folder).
    let n = 0;
    for (const archive of archives.values()) {
      for (const { name, tag, want } of servedRefs(archive)) {
        const dir = join(work, `push-${++n}`);
        writeDirFrom(archive.contents, dir, want.digest, want.mediaType);
        await skopeoCopy(`dir:${dir}`, `docker://${distribution.host}/${name}:${tag}`);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    await distribution?.stop();
    tools?.cleanup();
    await (await containerd?.catch(() => undefined))?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const id of ALL_VARIANTS) {
    test.skipIf(!inCI() && !variantAvailable(id))(`${id}: manifests, blobs, ranges, tags and errors`, async () => {
      const archive = archives.get(id)!;
      const probes = [archive.name, ...archive.aliases.map((a) => a.name)].flatMap((name) => probesFor(archive, name));
      expect(await compareRegistries(server.url, distribution.url, probes)).toEqual([]);
    });
  }

  test("names, cross-repository blobs and the base endpoint", async () => {
    const a = archives.get("skopeo-named") ?? [...archives.values()][0]!;
    const b = [...archives.values()].find((x) => x !== a && !x.contents.closure(Object.values(x.tags)[0]!.digest).some((d) => a.contents.blob(d)))!;
    const bDigest = Object.values(b.tags)[0]!.digest;
    const bLayer = b.contents.closure(bDigest).find((d) => !b.contents.manifest(bDigest).json.manifests && d !== bDigest) ?? b.contents.closure(bDigest).at(-1)!;
    const probes: Probe[] = [
      { title: "base", method: "GET", path: "/v2/", compare: "json" },
      // Another repository's blob and manifest are not served under this name.
      { title: "foreign blob", method: "GET", path: `/v2/${a.name}/blobs/${bLayer}` },
      { title: "foreign blob", method: "HEAD", path: `/v2/${a.name}/blobs/${bLayer}` },
      { title: "foreign manifest", method: "GET", path: `/v2/${a.name}/manifests/${bDigest}`, headers: accept },
      { title: "unknown name tags", method: "GET", path: "/v2/no-such-repo/tags/list" },
      { title: "unknown name blob", method: "HEAD", path: `/v2/no-such-repo/blobs/${ZERO}` },
      { title: "invalid tag", method: "GET", path: `/v2/${a.name}/manifests/.INVALID_MANIFEST_NAME`, headers: accept, compare: "status" },
      { title: "invalid tag", method: "HEAD", path: `/v2/${a.name}/manifests/.INVALID_MANIFEST_NAME`, headers: accept, compare: "status" },
      {
        title: "unknown name manifest",
        method: "GET",
        path: "/v2/no-such-repo/manifests/latest",
        headers: accept,
        ours: { status: 404, codes: ["NAME_UNKNOWN"], why: "issue 2: an unknown name answers NAME_UNKNOWN (distribution says MANIFEST_UNKNOWN)" },
      },
      {
        title: "unknown name blob",
        method: "GET",
        path: `/v2/no-such-repo/blobs/${ZERO}`,
        ours: { status: 404, why: "404 with NAME_UNKNOWN or BLOB_UNKNOWN (distribution: BLOB_UNKNOWN)" },
      },
    ];
    const diffs = await compareRegistries(server.url, distribution.url, probes);
    expect(diffs).toEqual([]);
    const base = await fetch(`${server.url}/v2/`);
    expect(base.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
  });

  test("the server logged no warnings or errors", () => {
    const problems = server.logLines().filter((line) => line.level === "warn" || line.level === "error");
    expect(problems).toEqual([]);
  });
});

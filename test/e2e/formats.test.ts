// Issue 7 end to end: the formats and endpoints it adds, pulled by real clients from the server
// (Node, and Deno when it runs here) over one folder of archives made by real tools:
//   - unpacked layout folders: skopeo `oci:DIR/<name>/<ref>` (an image and an index), umoci
//     `DIR/<name>`, podman `save --format oci-dir`;
//   - docker save: podman `--format docker-archive`, a pre-Docker-25 archive built here, a
//     Docker 25+ one (OCI layout + manifest.json) assembled from skopeo output, and both of
//     those gzipped (`docker save | gzip`);
//   - referrers (signature- and SBOM-style artifacts beside a skopeo-written image);
//   - /v2/_catalog over the whole folder, multipart ranges, Accept negotiation (compared with
//     CNCF distribution serving the same images, pushed there from this server by skopeo).
// Archives are generated once per file (test/fixtures/real-formats.ts); each runtime gets its own
// server over the same folder.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  formatAvailable,
  placeFormats,
  RealFormats,
  SBOM_TYPE,
  SIGNATURE_TYPE,
  type DockerSaveFormat,
  type Format,
  type FormatId,
  type LayoutFormat,
  type ReferrersFormat,
  type SavedImage,
} from "../fixtures/real-formats.ts";
import { CONTAINERD_TOOLS, startContainerd, type Containerd } from "../helpers/containerd.ts";
import { startDistribution, type Distribution } from "../helpers/distribution.ts";
import { run } from "../helpers/exec.ts";
import { ACCEPT_MANIFESTS, MT, platformClosure, readDirCopy, sha256, type IndexJson } from "../helpers/oci-layout.ts";
import { describeRuntimes, type RunningServer, startServer } from "../helpers/server.ts";
import { skopeoCopy, skopeoInspect, skopeoInspectRaw, skopeoListTags } from "../helpers/skopeo.ts";
import { describeWithTools, inCI, requireTool } from "../helpers/tools.ts";

const ZERO = `sha256:${"0".repeat(64)}`;
/** Whether a test needing these tools runs (outside CI: skipped when one is missing; in CI: throws). */
const runs = (...tools: string[]) => !requireTool(...tools).skip;
const CAN_CONTAINERD = runs(...CONTAINERD_TOOLS);
const CAN_DISTRIBUTION = runs("docker-registry");
const formatRuns = (id: FormatId) => inCI() || formatAvailable(id);

interface Raw {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP request with exactly these headers (fetch would add `Accept: *\/*`). */
function raw(base: string, path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(base + path, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

const errorCodes = (answer: Raw): string[] | undefined => {
  try {
    return (JSON.parse(answer.body.toString("utf8")) as { errors?: { code: string }[] }).errors?.map((e) => e.code);
  } catch {
    return undefined;
  }
};

const describeRaw = (r: Raw) =>
  `${r.status} ${JSON.stringify({ "content-type": r.headers["content-type"], "docker-content-digest": r.headers["docker-content-digest"] })} ${r.body.subarray(0, 300).toString("utf8")}`;

interface Part {
  contentType?: string;
  contentRange?: string;
  data: Buffer;
}

/** Parses a multipart/byteranges body (RFC 9110 §14.6 / RFC 2046). */
function parseMultipart(body: Buffer, contentType: string): Part[] {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!boundary) throw new Error(`no boundary in ${contentType}`);
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Part[] = [];
  let at = body.indexOf(delimiter);
  if (at < 0) throw new Error(`no --${boundary} in the body`);
  for (;;) {
    const afterDelimiter = at + delimiter.length;
    if (body.subarray(afterDelimiter, afterDelimiter + 2).toString() === "--") break; // the close delimiter
    const headersStart = body.indexOf("\r\n", afterDelimiter) + 2;
    const headersEnd = body.indexOf("\r\n\r\n", headersStart);
    if (headersEnd < 0) throw new Error("a part without the blank line after its headers");
    const headers = Object.fromEntries(
      body
        .subarray(headersStart, headersEnd)
        .toString("latin1")
        .split("\r\n")
        .filter(Boolean)
        .map((line) => [line.slice(0, line.indexOf(":")).trim().toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]),
    );
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`), headersEnd + 4);
    if (next < 0) throw new Error("a part without a following delimiter");
    parts.push({ contentType: headers["content-type"], contentRange: headers["content-range"], data: body.subarray(headersEnd + 4, next) });
    at = next + 2;
  }
  return parts;
}

describeWithTools(["skopeo"], "issue 7 formats and endpoints, pulled by real clients", () => {
  let work: string;
  let registryDir: string;
  let formats: RealFormats;
  let containerd: Containerd | undefined;
  let distribution: Distribution | undefined;
  const placed = new Map<FormatId, Format>();
  let namespaces = 0;
  /** The images pushed to distribution (by the first runtime's server). */
  let pushed: Promise<{ name: string; tag: string; digest: string; mediaType: string }[]> | undefined;

  const layoutFormat = (id: FormatId) => placed.get(id) as LayoutFormat;
  const saveFormat = (id: FormatId) => placed.get(id) as DockerSaveFormat;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-formats-"));
    registryDir = join(work, "registry");
    formats = new RealFormats({ dir: join(work, "formats") });
    const started = Promise.all([CAN_CONTAINERD ? startContainerd() : undefined, CAN_DISTRIBUTION ? startDistribution() : undefined]);
    try {
      for (const format of await formats.all()) placed.set(format.id as FormatId, format);
    } finally {
      [containerd, distribution] = await started; // stopped by afterAll even when a generator failed
    }
    placeFormats(registryDir, [...placed.values()]);
    // Things that must not become names: a folder that is no layout, a layout whose index.json
    // is not written yet, a hidden partial copy, a damaged archive.
    mkdirSync(join(registryDir, "notes"), { recursive: true });
    writeFileSync(join(registryDir, "notes/readme.txt"), "not an image\n");
    mkdirSync(join(registryDir, "half/blobs/sha256"), { recursive: true });
    writeFileSync(join(registryDir, "half/oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    if (placed.has("umoci-folder")) placeFormats(join(registryDir, "partial"), [{ ...placed.get("umoci-folder")!, placeAt: ".incoming" }]);
    writeFileSync(join(registryDir, "broken.oci"), "this is not a tar archive".repeat(40));
  }, 180_000);

  afterAll(async () => {
    await containerd?.stop();
    await distribution?.stop();
    formats?.cleanup();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // --- checks on the archives themselves (no server) -------------------------------------------

  test.skipIf(!formatRuns("podman-docker-archive"))("podman save --format docker-archive writes the legacy docker save layout", () => {
    const format = saveFormat("podman-docker-archive");
    const names = new Map(format.entries.map((e) => [e.name, e]));
    expect(names.has("manifest.json") && names.has("repositories"), JSON.stringify(format.entries)).toBe(true);
    expect(names.has("index.json"), "no index.json: not an OCI layout").toBe(false);
    const [entry] = format.manifestJson;
    expect(format.manifestJson).toHaveLength(1);
    expect([...entry!.RepoTags!].sort()).toEqual(["localhost/podman-save:latest", "localhost/podman-save:v1"]);
    expect(entry!.Config).toMatch(/^[0-9a-f]{64}\.json$/);
    // podman 4 lists the layer as <diff id>.tar and adds the legacy <v1 id>/{layer.tar,VERSION,json}
    // beside it, layer.tar being a symlink to ../<diff id>.tar.
    const legacyLayer = format.entries.find((e) => /^[0-9a-f]{64}\/layer\.tar$/.test(e.name));
    expect(legacyLayer, JSON.stringify(format.entries)).toBeDefined();
    const id = legacyLayer!.name.split("/")[0];
    expect(names.has(`${id}/VERSION`) && names.has(`${id}/json`)).toBe(true);
    for (const layerPath of entry!.Layers) {
      const listed = names.get(layerPath);
      expect(listed, layerPath).toBeDefined();
      if (legacyLayer!.type === "symlink") expect(`../${layerPath}`).toBe(legacyLayer!.linkname);
    }
    // Layers are the uncompressed diffs: each one's sha256 is the config's diff_id.
    const image = format.images[0]!;
    expect(image.layers.map((l) => l.digest)).toEqual(image.diffIds);
  });

  test("the pre-Docker-25 archive built here has the layout docker save wrote", () => {
    const format = saveFormat("legacy-docker-save");
    const names = format.entries.map((e) => e.name);
    for (const [i, image] of format.images.entries()) {
      for (const path of format.manifestJson[i]!.Layers) {
        expect(path).toMatch(/^[0-9a-f]{64}\/layer\.tar$/);
        const id = path.split("/")[0];
        expect(names).toEqual(expect.arrayContaining([`${id}/VERSION`, `${id}/json`, path]));
      }
      expect(image.layers.map((l) => l.digest)).toEqual(image.diffIds);
    }
    expect(names).toEqual(expect.arrayContaining(["manifest.json", "repositories"]));
    const symlink = format.entries.find((e) => e.type === "symlink");
    expect(symlink?.linkname).toMatch(/^\.\.\/[0-9a-f]{64}\/layer\.tar$/);
    expect(format.tags.base!.layers[0]!.digest).toBe(format.tags["1.0"]!.layers[0]!.digest);
  });

  test.skipIf(!formatRuns("docker25"))("the Docker 25+ archive is an OCI layout with manifest.json and repositories", () => {
    const contents = layoutFormat("docker25").contents;
    expect([...contents.files.keys()]).toEqual(expect.arrayContaining(["oci-layout", "index.json", "manifest.json", "repositories"]));
    const saved = JSON.parse(contents.files.get("manifest.json")!.toString("utf8")) as { Config: string; Layers: string[] }[];
    for (const path of [saved[0]!.Config, ...saved[0]!.Layers]) expect(contents.files.has(path), path).toBe(true);
  });

  describeRuntimes((runtime) => {
    let server: RunningServer;
    const context = () => `server (${runtime}) log:\n${server.logs().slice(-3000)}`;

    beforeAll(async () => {
      server = await startServer({ dir: registryDir, runtime });
    });
    afterAll(async () => {
      await server?.stop();
    });

    /** ctr pull --plain-http (which unpacks) into a fresh namespace; checks digest, type, content, unpack. */
    async function ctrPull(ref: string, want: { digest: string; mediaType: string; content: string[] }) {
      const ns = `formats${++namespaces}`;
      await containerd!.pull(ref, [], { namespace: ns });
      const image = (await containerd!.images({ namespace: ns })).find((i) => i.ref === ref);
      expect(image, `ctr images check lists ${ref}\n${context()}`).toBeDefined();
      expect(image!.digest, `digest of ${ref}`).toBe(want.digest);
      expect(image!.mediaType, `media type of ${ref}`).toBe(want.mediaType);
      expect(image!.status, `content of ${ref}`).toMatch(/^complete/);
      expect(image!.unpacked, `${ref} is unpacked`).toBe(true);
      expect(await containerd!.content({ namespace: ns }), `content store after pulling ${ref}`).toEqual(expect.arrayContaining(want.content));
      expect((await containerd!.snapshots({ namespace: ns })).length, `snapshots after pulling ${ref}`).toBeGreaterThan(0);
    }

    // --- OCI layouts: folders written by skopeo, umoci and podman; the Docker 25+ archive -------

    const layoutIds: FormatId[] = ["skopeo-folder", "skopeo-folder-multi", "umoci-folder", "podman-folder", "docker25", "docker25-gzip", "signed"];
    for (const id of layoutIds) {
      test.skipIf(!formatRuns(id))(`${id}: skopeo inspect, inspect --raw, copy --all --preserve-digests (digests equal)`, async () => {
        const format = layoutFormat(id);
        for (const [tag, want] of Object.entries(format.tags)) {
          const ref = `${server.host}/${format.name}:${tag}`;
          const served = await skopeoInspectRaw(ref);
          expect(served.equals(want.bytes), `inspect --raw ${ref} is the layout's manifest (${format.description})\n${context()}`).toBe(true);
          expect((await skopeoInspect(ref)).Digest, `inspect ${ref}`).toBe(want.digest);
          expect((await skopeoInspectRaw(`${server.host}/${format.name}@${want.digest}`)).equals(want.bytes), `by digest`).toBe(true);
          const out = mkdtempSync(join(work, "copy-"));
          await skopeoCopy(`docker://${ref}`, `oci:${out}:${tag}`);
          const index = JSON.parse(readFileSync(join(out, "index.json"), "utf8")) as IndexJson;
          expect(index.manifests.find((d) => d.annotations?.["org.opencontainers.image.ref.name"] === tag)?.digest, `copied ${ref}`).toBe(want.digest);
          for (const digest of format.contents.closure(want.digest)) {
            const copied = readFileSync(join(out, "blobs", digest.replace(":", "/")));
            expect(sha256(copied), `blob ${digest} of ${ref}`).toBe(digest);
            expect(copied.equals(format.contents.blob(digest)!), `blob ${digest} of ${ref}`).toBe(true);
          }
          rmSync(out, { recursive: true, force: true });
        }
        expect(await skopeoListTags(`${server.host}/${format.name}`)).toEqual(expect.arrayContaining(Object.keys(format.tags)));
      });

      test.skipIf(!CAN_CONTAINERD || !formatRuns(id))(`${id}: ctr images pull --plain-http, unpacked`, async () => {
        const format = layoutFormat(id);
        for (const [tag, want] of Object.entries(format.tags)) {
          const content = platformClosure(format.contents, want.digest, undefined, want.mediaType);
          await ctrPull(`${server.host}/${format.name}:${tag}`, { ...want, content });
          await ctrPull(`${server.host}/${format.name}@${want.digest}`, { ...want, content });
        }
      });
    }

    for (const [id, name] of [["docker25", "docker25"], ["docker25-gzip", "docker25-gz"]] as const) {
      test.skipIf(!formatRuns(id))(`${id}: served as OCI (the index.json manifest), not as a docker save`, async () => {
        const want = layoutFormat("docker25").tags.v1!;
        const res = await raw(server.url, `/v2/${name}/manifests/v1`, { Accept: ACCEPT_MANIFESTS });
        expect(res.status, describeRaw(res)).toBe(200);
        expect(res.headers["content-type"]).toBe(MT.ociManifest);
        expect(res.headers["docker-content-digest"]).toBe(want.digest);
        expect(res.body.equals(want.bytes)).toBe(true);
      });
    }

    // --- docker save archives ---------------------------------------------------------------------

    /** The archive as skopeo's docker-archive: reads it (skopeo 1.9 cannot read a gzipped one). */
    const plainCopy = (format: DockerSaveFormat): string => {
      const bytes = readFileSync(format.path);
      if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return format.path;
      const file = join(work, `${format.id}.tar`);
      writeFileSync(file, gunzipSync(bytes));
      return file;
    };

    for (const id of ["podman-docker-archive", "legacy-docker-save", "legacy-docker-save-gzip"] as const) {
      /** What the server answers for name:tag, checked against the archive. */
      async function servedManifest(format: DockerSaveFormat, tag: string, image: SavedImage) {
        const ref = `${server.host}/${format.name}:${tag}`;
        const bytes = await skopeoInspectRaw(ref);
        const manifest = JSON.parse(bytes.toString("utf8")) as { mediaType: string; config: { mediaType: string; digest: string; size: number }; layers: { mediaType: string; digest: string; size: number }[] };
        expect(manifest.mediaType, `${ref}\n${context()}`).toBe(MT.dockerManifest);
        expect(manifest.config).toEqual({ mediaType: MT.dockerConfig, digest: image.configDigest, size: image.config.length });
        expect(manifest.layers).toEqual(image.layers.map((l) => ({ mediaType: "application/vnd.docker.image.rootfs.diff.tar", digest: l.digest, size: l.bytes.length })));
        return { ref, bytes, digest: sha256(bytes), manifest };
      }

      test.skipIf(!formatRuns(id))(`${id}: skopeo inspect shows the RepoTags, copy round-trips layers whose sha256 are the diff_ids`, async () => {
        const format = saveFormat(id);
        const tags = Object.keys(format.tags).sort();
        expect(tags.length, JSON.stringify(format.manifestJson)).toBeGreaterThan(1);
        for (const [tag, image] of Object.entries(format.tags)) {
          const { ref, bytes, digest } = await servedManifest(format, tag, image);
          const inspected = await skopeoInspect(ref);
          expect(inspected.Digest).toBe(digest);
          expect([...(inspected.RepoTags ?? [])].sort(), `RepoTags of ${ref}`).toEqual(tags);
          expect(inspected.Layers).toEqual(image.layers.map((l) => l.digest));
          // The same blobs skopeo itself finds reading the archive from disk.
          const local = JSON.parse((await run("skopeo", ["inspect", "--raw", `docker-archive:${plainCopy(format)}:${image.repoTags.find((t) => t.endsWith(`:${tag}`))}`])).stdout) as {
            config: { digest: string };
            layers: { digest: string }[];
          };
          expect(local.config.digest).toBe(image.configDigest);
          // Digests only: skopeo 1.9 gives a layer reached through a symlink the link entry's size, 0.
          expect(local.layers.map((l) => l.digest)).toEqual(image.layers.map((l) => l.digest));
          // By digest, stable across requests.
          expect((await skopeoInspectRaw(`${server.host}/${format.name}@${digest}`)).equals(bytes)).toBe(true);

          const out = mkdtempSync(join(work, "copy-"));
          await skopeoCopy(`docker://${ref}`, `dir:${out}`);
          const copy = readDirCopy(out);
          expect(copy.manifest.equals(bytes), `copied manifest of ${ref}`).toBe(true);
          expect(copy.blob(image.configDigest)?.equals(image.config)).toBe(true);
          for (const [i, layer] of image.layers.entries()) {
            const copied = copy.blob(layer.digest);
            expect(copied?.equals(layer.bytes), `layer ${layer.path} of ${ref}`).toBe(true);
            expect(sha256(copied!), `layer ${i} of ${ref} is the diff_id`).toBe(image.diffIds[i]);
          }
          rmSync(out, { recursive: true, force: true });
        }
      });

      test.skipIf(!CAN_CONTAINERD || !formatRuns(id))(`${id}: ctr images pull --plain-http, unpacked`, async () => {
        const format = saveFormat(id);
        for (const [tag, image] of Object.entries(format.tags)) {
          const { digest } = await servedManifest(format, tag, image);
          const content = [digest, image.configDigest, ...image.layers.map((l) => l.digest)];
          await ctrPull(`${server.host}/${format.name}:${tag}`, { digest, mediaType: MT.dockerManifest, content });
        }
      });
    }

    test("legacy-docker-save-gzip: the same manifests, configs and layers as the plain archive of the same images", async () => {
      const plain = saveFormat("legacy-docker-save");
      const zipped = saveFormat("legacy-docker-save-gzip");
      expect(Object.keys(zipped.tags).sort()).toEqual(Object.keys(plain.tags).sort());
      for (const tag of Object.keys(plain.tags)) {
        const [want, got] = await Promise.all([plain, zipped].map((f) => raw(server.url, `/v2/${f.name}/manifests/${tag}`, { Accept: ACCEPT_MANIFESTS })));
        expect(got!.status, `${zipped.name}:${tag} ${describeRaw(got!)}\n${context()}`).toBe(200);
        expect(got!.headers["docker-content-digest"], tag).toBe(want!.headers["docker-content-digest"]);
        expect(got!.body.equals(want!.body), tag).toBe(true);
        const manifest = JSON.parse(got!.body.toString("utf8")) as { config: { digest: string }; layers: { digest: string }[] };
        for (const digest of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
          const blob = await raw(server.url, `/v2/${zipped.name}/blobs/${digest}`);
          expect(blob.status, digest).toBe(200);
          expect(sha256(blob.body), digest).toBe(digest);
        }
      }
    });

    // --- referrers ------------------------------------------------------------------------------

    describe.skipIf(!formatRuns("referrers"))("referrers", () => {
      const index = async (path: string) => {
        const res = await raw(server.url, path);
        expect(res.status, `GET ${path}: ${describeRaw(res)}`).toBe(200);
        expect(res.headers["content-type"]).toBe(MT.ociIndex);
        const body = JSON.parse(res.body.toString("utf8")) as IndexJson & { manifests: Record<string, unknown>[] };
        expect(body.schemaVersion).toBe(2);
        expect(body.mediaType).toBe(MT.ociIndex);
        return { body, filters: res.headers["oci-filters-applied"] };
      };
      const expectedFor = (referrers: ReferrersFormat, subject: string, type?: string) =>
        referrers.artifacts
          .filter((a) => a.subject === subject && (type === undefined || a.artifactType === type))
          .map((a) => ({ mediaType: MT.ociManifest, digest: a.digest, size: a.size, artifactType: a.artifactType, annotations: a.annotations }))
          .sort((a, b) => a.digest.localeCompare(b.digest));
      const sorted = (list: Record<string, unknown>[]) => [...list].sort((a, b) => String(a.digest).localeCompare(String(b.digest)));

      test("GET /v2/<name>/referrers/<digest> lists the signature and the SBOM of the image, the signature of the index", async () => {
        const referrers = placed.get("referrers") as ReferrersFormat;
        const subjects = [...new Set(referrers.artifacts.map((a) => a.subject))];
        expect(subjects).toHaveLength(2);
        for (const subject of subjects) {
          const { body, filters } = await index(`/v2/signed/referrers/${subject}`);
          expect(sorted(body.manifests), `referrers of ${subject}\n${context()}`).toEqual(expectedFor(referrers, subject));
          expect(filters).toBeUndefined();
          // Each one is a manifest the registry serves.
          for (const d of body.manifests) {
            const res = await raw(server.url, `/v2/signed/manifests/${String(d.digest)}`, { Accept: MT.ociManifest });
            expect(res.status).toBe(200);
            expect(res.body.equals(referrers.artifacts.find((a) => a.digest === d.digest)!.bytes)).toBe(true);
          }
        }
        const child = referrers.artifacts.find((a) => a.artifactType === SBOM_TYPE)!.subject;
        expect(expectedFor(referrers, child).map((d) => d.artifactType).sort()).toEqual([SIGNATURE_TYPE, SBOM_TYPE].sort());
      });

      test("?artifactType= filters and sets OCI-Filters-Applied; unknown subjects, other names, bad digests", async () => {
        const referrers = placed.get("referrers") as ReferrersFormat;
        const child = referrers.artifacts.find((a) => a.artifactType === SBOM_TYPE)!.subject;
        for (const type of [SIGNATURE_TYPE, SBOM_TYPE, "application/vnd.example.nothing"]) {
          const { body, filters } = await index(`/v2/signed/referrers/${child}?artifactType=${encodeURIComponent(type)}`);
          expect(sorted(body.manifests), type).toEqual(expectedFor(referrers, child, type));
          expect(filters).toBe("artifactType");
        }
        expect((await index(`/v2/signed/referrers/${ZERO}`)).body.manifests).toEqual([]);
        // The artifacts are in signed's archives only.
        if (placed.has("skopeo-folder")) expect((await index(`/v2/layout-skopeo/referrers/${child}`)).body.manifests).toEqual([]);
        const bad = await raw(server.url, "/v2/signed/referrers/sha256:nope");
        expect(bad.status).toBe(400);
        expect(errorCodes(bad)).toEqual(["DIGEST_INVALID"]);
      });

      test("skopeo copy --all --preserve-digests of the image still works with its referrers beside it", async () => {
        const format = layoutFormat("signed");
        const want = format.tags.latest!;
        const out = mkdtempSync(join(work, "copy-"));
        await skopeoCopy(`docker://${server.host}/signed:latest`, `oci:${out}:latest`);
        for (const digest of format.contents.closure(want.digest)) {
          expect(readFileSync(join(out, "blobs", digest.replace(":", "/"))).equals(format.contents.blob(digest)!), digest).toBe(true);
        }
        rmSync(out, { recursive: true, force: true });
        expect(await skopeoListTags(`${server.host}/signed`)).toEqual(["latest"]);
      });
    });

    // --- catalog ----------------------------------------------------------------------------------

    test("GET /v2/_catalog lists exactly the names placed, each of which serves its tags", async () => {
      const expected = new Set([...placed.values()].map((f) => f.name));
      // team/layout-umoci is also a layout folder `<name>/*` of `team`, and umoci's bare tags fit
      // any name: the lookup serves team:v1 too, so the catalog lists it.
      if (placed.has("umoci-folder")) expected.add("team");
      const res = await raw(server.url, "/v2/_catalog");
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^application\/json/);
      const { repositories } = JSON.parse(res.body.toString("utf8")) as { repositories: string[] };
      expect(repositories, context()).toEqual([...expected].sort());
      for (const name of repositories) {
        const tags = JSON.parse((await raw(server.url, `/v2/${name}/tags/list`)).body.toString("utf8")) as { tags: string[] };
        expect(tags.tags.length, `tags of ${name}`).toBeGreaterThan(0);
        for (const tag of tags.tags) expect((await raw(server.url, `/v2/${name}/manifests/${tag}`, { Accept: ACCEPT_MANIFESTS }, "HEAD")).status, `${name}:${tag}`).toBe(200);
      }
      for (const name of ["notes", "half", "partial", "broken", "signed/referrers", "signed/image"]) expect(repositories).not.toContain(name);
    });

    test("GET /v2/_catalog pages with n, last and Link", async () => {
      const all = (JSON.parse((await raw(server.url, "/v2/_catalog")).body.toString("utf8")) as { repositories: string[] }).repositories;
      expect(all.length).toBeGreaterThan(2);
      const seen: string[] = [];
      let path: string | undefined = "/v2/_catalog?n=2";
      let pages = 0;
      while (path) {
        const res = await raw(server.url, path);
        expect(res.status, path).toBe(200);
        const page = (JSON.parse(res.body.toString("utf8")) as { repositories: string[] }).repositories;
        expect(page.length, path).toBeLessThanOrEqual(2);
        seen.push(...page);
        const link = res.headers.link as string | undefined;
        if (seen.length < all.length) {
          const next = /^<([^>]+)>; *rel="?next"?$/.exec(link ?? "")?.[1];
          expect(next, `${path} has a Link while names remain: ${link}`).toBeDefined();
          const url = new URL(next!, server.url);
          expect([url.pathname, url.searchParams.get("n"), url.searchParams.get("last")], link).toEqual(["/v2/_catalog", "2", page.at(-1)]);
          path = next;
        } else {
          expect(link, `last page ${path}`).toBeUndefined();
          path = undefined;
        }
        expect(++pages).toBeLessThan(all.length + 2);
      }
      expect(seen).toEqual(all);
      // last is exclusive, and a name between entries starts after it.
      const after = (JSON.parse((await raw(server.url, `/v2/_catalog?last=${encodeURIComponent(all[0]!)}`)).body.toString("utf8")) as { repositories: string[] }).repositories;
      expect(after).toEqual(all.slice(1));
    });

    test("a layout folder skopeo writes while the server runs: served, listed, re-read when skopeo adds a tag, gone when removed", async () => {
      const src = await formats.source();
      const name = `late-${runtime}`;
      const folder = join(registryDir, name);
      const names = async () => (JSON.parse((await raw(server.url, "/v2/_catalog")).body.toString("utf8")) as { repositories: string[] }).repositories;
      try {
        expect(await names()).not.toContain(name);
        await run("skopeo", ["--insecure-policy", "copy", "--quiet", `oci:${src.dir}:amd64`, `oci:${folder}:v1`]);
        expect((await skopeoInspectRaw(`${server.host}/${name}:v1`)).equals(src.images[0]!.manifest), context()).toBe(true);
        expect(await names()).toContain(name);
        // skopeo rewrites index.json in place to add the second tag.
        await run("skopeo", ["--insecure-policy", "copy", "--quiet", `oci:${src.dir}:arm64`, `oci:${folder}:v2`]);
        expect((await skopeoInspectRaw(`${server.host}/${name}:v2`)).equals(src.images[1]!.manifest), context()).toBe(true);
        expect(await skopeoListTags(`${server.host}/${name}`)).toEqual(["v1", "v2"]);
      } finally {
        rmSync(folder, { recursive: true, force: true });
      }
      expect(await names()).not.toContain(name);
      const gone = await raw(server.url, `/v2/${name}/manifests/v1`, { Accept: ACCEPT_MANIFESTS });
      expect(gone.status).toBe(404);
    });

    // --- several ranges -----------------------------------------------------------------------------

    test("Range: bytes=0-9,20-29 (and three ranges with a suffix) answers multipart/byteranges with the layer's bytes", async () => {
      const targets: { name: string; digest: string; bytes: Buffer; where: string }[] = [];
      const legacy = saveFormat("legacy-docker-save");
      const layer = legacy.tags["1.0"]!.layers[0]!;
      targets.push({ name: legacy.name, digest: layer.digest, bytes: layer.bytes, where: "a layer.tar inside a docker save archive" });
      if (placed.has("skopeo-folder")) {
        const format = layoutFormat("skopeo-folder");
        const manifest = format.contents.manifest(format.tags.v1!.digest).json;
        const d = manifest.layers![0]!.digest;
        targets.push({ name: format.name, digest: d, bytes: format.contents.blob(d)!, where: "a blob file of a skopeo layout folder" });
      }
      for (const target of targets) {
        const size = target.bytes.length;
        expect(size, target.where).toBeGreaterThan(40);
        for (const [range, spans] of [
          ["bytes=0-9,20-29", [[0, 9], [20, 29]]],
          [`bytes=0-0,15-19,-5`, [[0, 0], [15, 19], [size - 5, size - 1]]],
        ] as const) {
          const res = await raw(server.url, `/v2/${target.name}/blobs/${target.digest}`, { Range: range });
          const label = `${range} on ${target.where} (${size} bytes)`;
          expect(res.status, `${label}: ${describeRaw(res)}`).toBe(206);
          expect(res.headers["content-type"]).toMatch(/^multipart\/byteranges; *boundary=/);
          expect(Number(res.headers["content-length"]), label).toBe(res.body.length);
          const parts = parseMultipart(res.body, res.headers["content-type"]!);
          expect(
            parts.map((p) => ({ range: p.contentRange, data: p.data.toString("hex") })),
            label,
          ).toEqual(spans.map(([a, b]) => ({ range: `bytes ${a}-${b}/${size}`, data: target.bytes.subarray(a, b + 1).toString("hex") })));
          for (const p of parts) expect(p.contentType).toBe("application/octet-stream");
        }
      }
    });

    // --- Accept negotiation, compared with CNCF distribution -------------------------------------

    describe.skipIf(!CAN_DISTRIBUTION)("Accept negotiation as CNCF distribution does it", () => {
      /** Pushes the images with skopeo from this server to distribution (once per file). */
      const push = () =>
        (pushed ??= (async () => {
          const refs: { name: string; tag: string; digest: string; mediaType: string }[] = [];
          const add = (name: string, tag: string, digest: string, mediaType: string) => refs.push({ name, tag, digest, mediaType });
          if (placed.has("skopeo-folder")) add("layout-skopeo", "v1", layoutFormat("skopeo-folder").tags.v1!.digest, MT.ociManifest);
          if (placed.has("skopeo-folder-multi")) add("layout-skopeo", "multi", layoutFormat("skopeo-folder-multi").tags.multi!.digest, MT.ociIndex);
          if (placed.has("docker25")) add("docker25", "v1", layoutFormat("docker25").tags.v1!.digest, MT.ociManifest);
          const legacy = sha256(await skopeoInspectRaw(`${server.host}/docker-legacy:1.0`));
          add("docker-legacy", "1.0", legacy, MT.dockerManifest);
          for (const ref of refs) await skopeoCopy(`docker://${server.host}/${ref.name}:${ref.tag}`, `docker://${distribution!.host}/${ref.name}:${ref.tag}`);
          return refs;
        })());

      test("skopeo copy from this server to distribution keeps every digest", async () => {
        for (const ref of await push()) {
          const theirs = await raw(distribution!.url, `/v2/${ref.name}/manifests/${ref.tag}`, { Accept: ACCEPT_MANIFESTS });
          expect(theirs.headers["docker-content-digest"], `${ref.name}:${ref.tag}`).toBe(ref.digest);
        }
      });

      test("status, error code, Content-Type and digest agree for each Accept header", async () => {
        const refs = await push();
        const diffs: string[] = [];
        const accepts: (string | undefined)[] = [undefined, "*/*", MT.dockerManifest, `${MT.dockerManifest}, ${MT.dockerList}`, MT.ociManifest, MT.ociIndex, ACCEPT_MANIFESTS];
        let notFound = 0;
        for (const ref of refs) {
          for (const reference of [ref.tag, ref.digest]) {
            for (const accept of accepts) {
              // distribution 2.8 rewrites schema2 to signed schema1 when Accept lacks schema2; we
              // serve it unchanged (as distribution 3 does): checked alone below.
              if (ref.mediaType === MT.dockerManifest && !accept?.includes(MT.dockerManifest)) continue;
              for (const method of ["GET", "HEAD"]) {
                const path = `/v2/${ref.name}/manifests/${reference}`;
                const headers: Record<string, string> = accept === undefined ? {} : { Accept: accept };
                const [ours, theirs] = await Promise.all([raw(server.url, path, headers, method), raw(distribution!.url, path, headers, method)]);
                const label = `${method} ${path} [Accept: ${accept ?? "(none)"}]`;
                const summary = (r: Raw) => ({
                  status: r.status,
                  ...(method === "GET" && r.status >= 400 && { codes: errorCodes(r) }),
                  ...(r.status === 200 && { type: r.headers["content-type"], digest: r.headers["docker-content-digest"], length: r.headers["content-length"] }),
                  ...(method === "GET" && r.status === 200 && { body: sha256(r.body) }),
                });
                if (JSON.stringify(summary(ours)) !== JSON.stringify(summary(theirs))) diffs.push(`${label}: ours ${JSON.stringify(summary(ours))}, distribution ${JSON.stringify(summary(theirs))}`);
                if (ours.status === 404) notFound++;
              }
            }
          }
        }
        expect(diffs).toEqual([]);
        // The interesting case happened: OCI manifests refused for lack of an OCI Accept.
        expect(notFound).toBeGreaterThan(0);
        const oci = refs.find((r) => r.mediaType === MT.ociManifest);
        if (oci) {
          const noAccept = await raw(server.url, `/v2/${oci.name}/manifests/${oci.tag}`);
          expect(noAccept.status).toBe(404);
          expect(errorCodes(noAccept)).toEqual(["MANIFEST_UNKNOWN"]);
          expect((await raw(server.url, `/v2/${oci.name}/manifests/${oci.tag}`, { Accept: MT.ociManifest })).status).toBe(200);
        }
        const schema2 = refs.find((r) => r.mediaType === MT.dockerManifest)!;
        const plain = await raw(server.url, `/v2/${schema2.name}/manifests/${schema2.tag}`);
        expect(plain.status, "a Docker schema 2 manifest is served whatever the Accept header").toBe(200);
        expect(plain.headers["docker-content-digest"]).toBe(schema2.digest);
      });

      test("several ranges: the same parts as distribution", async () => {
        await push();
        const legacy = saveFormat("legacy-docker-save");
        const layer = legacy.tags["1.0"]!.layers[0]!;
        const path = `/v2/docker-legacy/blobs/${layer.digest}`;
        const parts = async (base: string) => {
          const res = await raw(base, path, { Range: "bytes=0-9,20-29" });
          expect(res.status, `${base}${path}`).toBe(206);
          return parseMultipart(res.body, res.headers["content-type"]!).map((p) => ({ type: p.contentType, range: p.contentRange, data: p.data.toString("hex") }));
        };
        expect(await parts(server.url)).toEqual(await parts(distribution!.url));
      });
    });
  });
});


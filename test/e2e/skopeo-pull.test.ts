// skopeo pulls every real-tool archive (skopeo, umoci, buildah, podman, ctr export, gzip; OCI and
// Docker schema2; single- and multi-arch; zstd and uncompressed layers) from the running server
// and gets the archive's exact manifests and blobs.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ALL_VARIANTS, placeArchives, RealTools, servedRefs, variantAvailable, type RealArchive, type VariantId } from "../fixtures/real-tools.ts";
import { startContainerd, type Containerd } from "../helpers/containerd.ts";
import { childManifests, MT, readDirCopy, type IndexJson } from "../helpers/oci-layout.ts";
import { describeRuntimes, startServer, type RunningServer } from "../helpers/server.ts";
import { skopeoCopy, skopeoInspect, skopeoInspectRaw, skopeoListTags } from "../helpers/skopeo.ts";
import { describeWithTools, inCI } from "../helpers/tools.ts";

describeWithTools(["skopeo"], "skopeo pulls archives written by real tools", () => {
  let work: string;
  let containerd: Promise<Containerd> | undefined;
  let tools: RealTools;
  const archives = new Map<VariantId, RealArchive>();

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-skopeo-"));
    tools = new RealTools({ dir: join(work, "tools"), containerd: () => (containerd ??= startContainerd()) });
    for (const archive of await tools.all()) archives.set(archive.id as VariantId, archive);
    placeArchives(join(work, "registry"), [...archives.values()]);
  }, 180_000);

  afterAll(async () => {
    tools?.cleanup();
    await (await containerd?.catch(() => undefined))?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // Every test below runs against the Node and the Deno server, on the same archives.
  describeRuntimes((runtime) => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await startServer({ dir: join(work, "registry"), runtime });
    }, 60_000);
    afterAll(async () => {
      await server?.stop();
    });

    for (const id of ALL_VARIANTS) {
      test.skipIf(!inCI() && !variantAvailable(id))(`${id}: inspect, inspect --raw, copy --all --preserve-digests, by digest`, async () => {
        const archive = archives.get(id)!;
        const context = `${archive.description}\nserver log:\n${server.logs().slice(-4000)}`;
        for (const { name, tag, want } of servedRefs(archive)) {
          const ref = `${server.host}/${name}:${tag}`;

          const raw = await skopeoInspectRaw(ref);
          expect(raw.equals(want.bytes), `inspect --raw ${ref} returns the archive's manifest bytes\n${context}`).toBe(true);

          const inspected = await skopeoInspect(ref);
          expect(inspected.Digest, `inspect ${ref}`).toBe(want.digest);

          const byDigest = await skopeoInspectRaw(`${server.host}/${name}@${want.digest}`);
          expect(byDigest.equals(want.bytes), `inspect --raw ${name}@${want.digest}`).toBe(true);
          for (const child of childManifests(archive.contents, want.digest, want.mediaType)) {
            const childRaw = await skopeoInspectRaw(`${server.host}/${name}@${child.digest}`);
            expect(childRaw.equals(archive.contents.blob(child.digest)!), `child ${child.digest} of ${ref}`).toBe(true);
          }

          // Copy everything (all platforms) and compare it blob by blob with the archive. skopeo
          // 1.9 cannot write a Docker manifest list into an oci: layout unchanged, so those go to dir:.
          const out = mkdtempSync(join(work, "copy-"));
          if (want.mediaType === MT.dockerList) {
            await skopeoCopy(`docker://${ref}`, `dir:${out}`);
            const copy = readDirCopy(out);
            expect(copy.manifest.equals(want.bytes), `copied manifest.json of ${ref}`).toBe(true);
            for (const digest of archive.contents.closure(want.digest)) {
              expect(copy.blob(digest)?.equals(archive.contents.blob(digest)!), `blob ${digest} of ${ref}`).toBe(true);
            }
          } else {
            await skopeoCopy(`docker://${ref}`, `oci:${out}:${tag}`);
            const index = JSON.parse(readFileSync(join(out, "index.json"), "utf8")) as IndexJson;
            const entry = index.manifests.find((d) => d.annotations?.["org.opencontainers.image.ref.name"] === tag);
            expect(entry?.digest, `copied index.json of ${ref}`).toBe(want.digest);
            for (const digest of archive.contents.closure(want.digest)) {
              const copied = readFileSync(join(out, "blobs", digest.replace(":", "/")));
              expect(copied.equals(archive.contents.blob(digest)!), `blob ${digest} of ${ref}`).toBe(true);
            }
          }
          rmSync(out, { recursive: true, force: true });
        }

        for (const name of [archive.name, ...archive.aliases.map((alias) => alias.name)]) {
          const listed = await skopeoListTags(`${server.host}/${name}`);
          expect([...listed].sort(), `list-tags ${name}`).toEqual(expect.arrayContaining(Object.keys(archive.tags).sort()));
        }
      });
    }

    test.skipIf(!inCI() && !variantAvailable("skopeo-multi"))("copy by digest of a multi-arch index keeps every child", async () => {
      const archive = archives.get("skopeo-multi")!;
      const want = archive.tags.latest!;
      const out = mkdtempSync(join(work, "copy-digest-"));
      await skopeoCopy(`docker://${server.host}/${archive.name}@${want.digest}`, `oci:${out}`);
      const index = JSON.parse(readFileSync(join(out, "index.json"), "utf8")) as IndexJson;
      expect(index.manifests.map((d) => d.digest)).toEqual([want.digest]);
      for (const digest of archive.contents.closure(want.digest)) {
        expect(readFileSync(join(out, "blobs", digest.replace(":", "/"))).equals(archive.contents.blob(digest)!)).toBe(true);
      }
    });

    test("the server logged no warnings or errors", () => {
      const problems = server.logLines().filter((line) => line.level === "warn" || line.level === "error");
      expect(problems).toEqual([]);
    });
  });
});

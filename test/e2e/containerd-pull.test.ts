// containerd (`ctr images pull --plain-http`, which also unpacks into the native snapshotter)
// pulls every real-tool archive from the running server: by tag, by digest, and all platforms of
// the multi-arch ones. Each pull gets its own namespace so no content is shared between them.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ALL_VARIANTS, placeArchives, RealTools, servedRefs, variantAvailable, type RealArchive, type VariantId } from "../fixtures/real-tools.ts";
import { CONTAINERD_TOOLS, startContainerd, type Containerd } from "../helpers/containerd.ts";
import { platformClosure } from "../helpers/oci-layout.ts";
import { describeRuntimes, startServer, type RunningServer } from "../helpers/server.ts";
import { describeWithTools, inCI } from "../helpers/tools.ts";

describeWithTools([...CONTAINERD_TOOLS], "containerd pulls archives written by real tools", () => {
  let work: string;
  let containerd: Containerd;
  let tools: RealTools;
  const archives = new Map<VariantId, RealArchive>();
  let namespaces = 0;
  const namespace = () => `pull${++namespaces}`;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-containerd-"));
    containerd = await startContainerd();
    tools = new RealTools({ dir: join(work, "tools"), containerd: async () => containerd });
    for (const archive of await tools.all()) archives.set(archive.id as VariantId, archive);
    placeArchives(join(work, "registry"), [...archives.values()]);
  }, 180_000);

  afterAll(async () => {
    tools?.cleanup();
    await containerd?.stop();
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

    /** Pulls `ref` into a fresh namespace and checks digest, media type, content and unpack. */
    async function pullAndCheck(archive: RealArchive, ref: string, want: { digest: string; mediaType: string }) {
      const ns = namespace();
      const context = () => `${archive.description}\nserver log:\n${server.logs().slice(-3000)}`;
      await containerd.pull(ref, [], { namespace: ns });
      const image = (await containerd.images({ namespace: ns })).find((i) => i.ref === ref);
      expect(image, `ctr images check lists ${ref}\n${context()}`).toBeDefined();
      expect(image!.digest, `digest of ${ref}`).toBe(want.digest);
      expect(image!.mediaType, `media type of ${ref}`).toBe(want.mediaType);
      expect(image!.status, `content of ${ref}`).toMatch(/^complete/);
      expect(image!.unpacked, `${ref} is unpacked`).toBe(true);
      const content = await containerd.content({ namespace: ns });
      expect(content, `content store after pulling ${ref}`).toEqual(expect.arrayContaining(platformClosure(archive.contents, want.digest, undefined, want.mediaType)));
      expect((await containerd.snapshots({ namespace: ns })).length, `snapshots after pulling ${ref}`).toBeGreaterThan(0);
    }

    for (const id of ALL_VARIANTS) {
      test.skipIf(!inCI() && !variantAvailable(id))(`${id}: pull by tag and by digest, unpacked`, async () => {
        const archive = archives.get(id)!;
        for (const { name, tag, want } of servedRefs(archive)) {
          await pullAndCheck(archive, `${server.host}/${name}:${tag}`, want);
          await pullAndCheck(archive, `${server.host}/${name}@${want.digest}`, want);
          if (want.multiArch) {
            // Every platform's content, not only this machine's.
            const ns = namespace();
            await containerd.pull(`${server.host}/${name}:${tag}`, ["--all-platforms"], { namespace: ns });
            expect(await containerd.content({ namespace: ns }), `--all-platforms pull of ${name}:${tag}`).toEqual(
              expect.arrayContaining(archive.contents.closure(want.digest)),
            );
          }
        }
      });
    }

    test("through a hosts.toml mirror (containerd adds ?ns=<upstream>), as kubelet pulls", async () => {
      const hostsDir = join(work, "hosts.d");
      const mirror = (upstream: string, upstreamUrl: string) => {
        mkdirSync(join(hostsDir, upstream), { recursive: true });
        writeFileSync(
          join(hostsDir, upstream, "hosts.toml"),
          [`server = ${JSON.stringify(upstreamUrl)}`, "", `[host."http://${server.host}"]`, `  capabilities = ["pull", "resolve"]`, ""].join("\n"),
        );
      };
      mirror("docker.io", "https://registry-1.docker.io");
      mirror("registry.example:5000", "https://registry.example:5000");
      // No network here: a pull that succeeds went through the mirror.
      const cases: [string, RealArchive | undefined, string][] = [
        // docker.io/library/ctr-export is looked up as library/ctr-export (ns=docker.io).
        ["docker.io/library/ctr-export:v1", archives.get("ctr-export"), "v1"],
        // A registry with a port: ns=registry.example%3A5000.
        ["registry.example:5000/umoci:latest", archives.get("umoci"), "latest"],
        ["registry.example:5000/skopeo-multi:latest", archives.get("skopeo-multi"), "latest"],
      ];
      for (const [ref, archive, tag] of cases) {
        if (!archive) continue;
        const ns = namespace();
        await containerd.ctr(["images", "pull", "--hosts-dir", hostsDir, "--snapshotter", "native", ref], { namespace: ns, timeout: 60_000 });
        const image = (await containerd.images({ namespace: ns })).find((i) => i.ref === ref);
        expect(image?.digest, `${ref} through the mirror\n${server.logs().slice(-2000)}`).toBe(archive.tags[tag]!.digest);
        expect(image?.unpacked).toBe(true);
      }
    });

    test("an unknown tag fails the pull with not found", async () => {
      await expect(containerd.pull(`${server.host}/umoci:does-not-exist`, [], { namespace: namespace() })).rejects.toThrow(/not found/);
    });

    test("the server logged no warnings or errors", () => {
      const problems = server.logLines().filter((line) => line.level === "warn" || line.level === "error");
      expect(problems).toEqual([]);
    });
  });
});

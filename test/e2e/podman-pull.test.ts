// podman pulls (into its own vfs storage) every real-tool archive from the running server.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ALL_VARIANTS, placeArchives, RealTools, servedRefs, variantAvailable, type RealArchive, type VariantId } from "../fixtures/real-tools.ts";
import { startContainerd, type Containerd } from "../helpers/containerd.ts";
import { run } from "../helpers/exec.ts";
import { startServer, type RunningServer } from "../helpers/server.ts";
import { describeWithTools, inCI } from "../helpers/tools.ts";

describeWithTools(["podman"], "podman pulls archives written by real tools", () => {
  let work: string;
  let runRoot: string;
  let server: RunningServer;
  let containerd: Promise<Containerd> | undefined;
  let tools: RealTools;
  const archives = new Map<VariantId, RealArchive>();

  const podman = (args: string[]) =>
    run("podman", ["--root", join(work, "storage"), "--runroot", runRoot, "--storage-driver", "vfs", "--events-backend", "none", "--cgroup-manager", "cgroupfs", ...args]);

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-podman-"));
    runRoot = mkdtempSync(join(tmpdir(), "pp-")); // podman wants a --runroot under 50 characters
    tools = new RealTools({ dir: join(work, "tools"), containerd: () => (containerd ??= startContainerd()) });
    for (const archive of await tools.all()) archives.set(archive.id as VariantId, archive);
    placeArchives(join(work, "registry"), [...archives.values()]);
    server = await startServer({ dir: join(work, "registry") });
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    tools?.cleanup();
    await (await containerd?.catch(() => undefined))?.stop();
    if (runRoot) rmSync(runRoot, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const id of ALL_VARIANTS) {
    test.skipIf(!inCI() && !variantAvailable(id))(`${id}: podman pull by tag and by digest`, async () => {
      const archive = archives.get(id)!;
      for (const { name, tag, want } of servedRefs(archive)) {
        for (const ref of [`${server.host}/${name}:${tag}`, `${server.host}/${name}@${want.digest}`]) {
          const { stdout } = await podman(["pull", "--quiet", "--tls-verify=false", ref]);
          const imageId = stdout.trim().split("\n").pop()!;
          const { stdout: digest } = await podman(["image", "inspect", "--format", "{{.Digest}}", ref]);
          expect(digest.trim(), `podman image inspect ${ref}\n${archive.description}`).toBe(want.digest);
          await podman(["rmi", "--force", imageId]);
        }
      }
    });
  }

  test("the server logged no warnings or errors", () => {
    const problems = server.logLines().filter((line) => line.level === "warn" || line.level === "error");
    expect(problems).toEqual([]);
  });
});

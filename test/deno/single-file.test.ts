// The deployment the README describes for Deno: `dist/deno/simple-oci-registry.js` copied alone
// into an empty folder, run with an empty DENO_DIR, no remote or npm modules and an npm registry
// that cannot answer, with the least permissions: it serves plain and gzipped archives, skopeo
// copies from it and containerd pulls from it, and nothing is downloaded or written beside it.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { image, layout, MEDIA, packTar, ref } from "../fixtures/oci.ts";
import { CONTAINERD_TOOLS, startContainerd } from "../helpers/containerd.ts";
import { ACCEPT_ALL } from "../helpers/memory-registry.ts";
import { ensureBuilt, REPO_ROOT, registerRuntime, type RunningServer, startServer } from "../helpers/server.ts";
import { skopeoCopy } from "../helpers/skopeo.ts";
import { missingTools } from "../helpers/tools.ts";
import { DENO, describeWithDeno, OFFLINE_ENV } from "./deno.ts";

const BUNDLE = join(REPO_ROOT, "dist/deno/simple-oci-registry.js");
const work = mkdtempSync(join(tmpdir(), "sor-single-file-"));
const app = join(work, "app"); // holds the copied file, and nothing else
const denoDir = join(work, "deno-dir");

function flag(cliArgs: string[], name: string): string {
  const i = cliArgs.indexOf(name);
  if (i < 0) throw new Error(`${name} missing from ${cliArgs.join(" ")}`);
  return cliArgs[i + 1]!;
}

registerRuntime("deno-single-file", {
  prepare: async () => {
    await ensureBuilt();
    mkdirSync(app, { recursive: true });
    mkdirSync(denoDir, { recursive: true });
    copyFileSync(BUNDLE, join(app, "simple-oci-registry.js"));
  },
  command: (cliArgs) => {
    const [dir, cache] = [flag(cliArgs, "--dir"), flag(cliArgs, "--cache-dir")];
    const net = `${flag(cliArgs, "--host")}:${flag(cliArgs, "--port")}`;
    return {
      command: DENO,
      args: ["run", "--no-remote", "--no-npm", `--allow-read=${dir},${cache}`, `--allow-write=${cache}`, `--allow-net=${net}`, join(app, "simple-oci-registry.js"), ...cliArgs],
      env: { ...OFFLINE_ENV, DENO_DIR: denoDir },
    };
  },
});

const plain = image({ layers: [{ "p.txt": "plain\n" }, { "q.txt": "second layer\n" }] });
const zipped = image({ layers: [{ "z.txt": "zipped\n" }] });

describeWithDeno("the single Deno file, copied alone", () => {
  let dir: string;
  let server: RunningServer;

  beforeAll(async () => {
    dir = join(work, "images");
    mkdirSync(join(dir, "app"), { recursive: true });
    writeFileSync(join(dir, "app/1.0.oci"), await packTar(layout([{ image: plain, annotations: ref("1.0") }])));
    writeFileSync(join(dir, "zipped.oci"), await packTar(layout([{ image: zipped, annotations: ref("latest") }]), { gzip: true }));
    server = await startServer({ dir, runtime: "deno-single-file" });
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("serves manifests and blobs of a plain and a gzipped archive", async () => {
    const manifest = await fetch(`${server.url}/v2/app/manifests/1.0`, { headers: { Accept: ACCEPT_ALL } });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get("content-type")).toBe(MEDIA.ociManifest);
    expect(manifest.headers.get("docker-content-digest")).toBe(plain.manifest.digest);
    expect(Buffer.from(await manifest.arrayBuffer()).equals(Buffer.from(plain.manifest.bytes))).toBe(true);
    for (const [name, blob] of [
      ["app", plain.layers[1]],
      ["zipped", zipped.layers[0]],
    ] as const) {
      const res = await fetch(`${server.url}/v2/${name}/blobs/${blob.digest}`);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(blob.bytes))).toBe(true);
    }
    expect(server.logLines().some((l) => l.msg === "archive unusable")).toBe(false);
  });

  it.skipIf(missingTools(["skopeo"]).length > 0)("skopeo copies an image from it with its digests", async () => {
    const out = join(work, "copy");
    await skopeoCopy(`docker://${server.host}/app:1.0`, `oci:${out}:1.0`);
    for (const blob of [plain.manifest, plain.config, ...plain.layers]) {
      expect(readFileSync(join(out, "blobs", blob.digest.replace(":", "/"))).equals(Buffer.from(blob.bytes))).toBe(true);
    }
  });

  it.skipIf(missingTools([...CONTAINERD_TOOLS]).length > 0)("containerd pulls and unpacks an image from it", async () => {
    const containerd = await startContainerd();
    try {
      const reference = `${server.host}/zipped:latest`;
      await containerd.pull(reference);
      const pulled = (await containerd.images()).find((i) => i.ref === reference);
      expect(pulled).toMatchObject({ digest: zipped.manifest.digest, unpacked: true });
    } finally {
      await containerd.stop();
    }
  });

  it("needed nothing beside the file: no node_modules, lock file or downloaded package", async () => {
    expect(readdirSync(app)).toEqual(["simple-oci-registry.js"]);
    // DENO_DIR holds Deno's own caches; downloaded modules would be under npm/ or remote/.
    const downloaded = ["npm", "remote", "deps"].flatMap((folder) => {
      try {
        return readdirSync(join(denoDir, folder)).map((entry) => `${folder}/${entry}`);
      } catch {
        return [];
      }
    });
    expect(downloaded).toEqual([]);
    const imports = readFileSync(BUNDLE, "utf8").match(/^import .* from "([^"]+)";$/gm) ?? [];
    expect(imports.every((line) => / from "node:[a-z_/]+";$/.test(line))).toBe(true);
  });
});

// The permissions the README lists for `deno run adapters/deno/main.ts`, each shown necessary:
// read on the image folder and the cache, write on the cache, net on the listening address;
// env only for SIMPLE_OCI_REGISTRY_* variables. Nothing else (no --allow-sys, no --allow-run).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { image, layout, packTar, ref } from "../fixtures/oci.ts";
import { freePort, REPO_ROOT, sleep } from "../helpers/server.ts";
import { DENO, describeWithDeno, OFFLINE_ENV } from "./deno.ts";

const plain = image({ layers: [{ "p.txt": "plain\n" }] });
const zipped = image({ layers: [{ "z.txt": "zipped\n" }] });

interface Run {
  url: string;
  stderr: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

/** `deno run PERMISSIONS adapters/deno/main.ts --dir DIR --cache-dir CACHE ...` on a free port. */
async function denoRun(permissions: (port: number) => string[], args: string[], env: Record<string, string> = {}): Promise<Run> {
  const port = await freePort();
  const child = spawn(DENO, ["run", ...permissions(port), "adapters/deno/main.ts", "--host", "127.0.0.1", "--port", String(port), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...OFFLINE_ENV, ...env },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  for (let i = 0; i < 300 && !done && !stderr.includes('"msg":"listening"'); i++) await sleep(50);
  return {
    url: `http://127.0.0.1:${port}`,
    stderr: () => stderr,
    exited,
    stop: async () => {
      if (!done) child.kill("SIGTERM");
      return exited;
    },
  };
}

describeWithDeno("Deno permissions", () => {
  let work: string;
  let dir: string;
  let cache: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "sor-deno-perms-"));
    dir = join(work, "images");
    cache = join(work, "cache");
    mkdirSync(dir);
    mkdirSync(cache);
    writeFileSync(join(dir, "plain.oci"), await packTar(layout([{ image: plain, annotations: ref("1") }])));
    writeFileSync(join(dir, "zipped.oci"), await packTar(layout([{ image: zipped, annotations: ref("1") }]), { gzip: true }));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const blob = async (run: Run, name: string, layer: { digest: string }) => (await fetch(`${run.url}/v2/${name}/blobs/${layer.digest}`)).status;

  it("serves plain and gzipped archives with read on DIR and the cache, write on the cache, net on the address", async () => {
    const run = await denoRun((port) => [`--allow-read=${dir},${cache}`, `--allow-write=${cache}`, `--allow-net=127.0.0.1:${port}`], ["--dir", dir, "--cache-dir", cache]);
    try {
      expect(await blob(run, "plain", plain.layers[0])).toBe(200);
      expect(await blob(run, "zipped", zipped.layers[0])).toBe(200);
      expect(readdirSync(join(cache, "blobs/sha256"))).toContain(zipped.layers[0].digest.slice("sha256:".length));
    } finally {
      expect(await run.stop()).toBe(0);
    }
    expect(run.stderr()).not.toMatch(/NotCapable|Requires .* access/);
  });

  it("without net access it exits 1 saying it cannot listen", async () => {
    const run = await denoRun(() => [`--allow-read=${dir}`], ["--dir", dir, "--cache-dir", cache]);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/^simple-oci-registry: cannot listen on 127\.0\.0\.1:\d+: Requires net access to "127\.0\.0\.1:\d+"/);
  });

  it("without read access to DIR it exits 1 saying so", async () => {
    const run = await denoRun((port) => [`--allow-net=127.0.0.1:${port}`], ["--dir", dir, "--cache-dir", cache]);
    expect(await run.exited).toBe(1);
    expect(run.stderr().trim()).toMatch(new RegExp(`^simple-oci-registry: --dir ${dir} Requires read access to "${dir}"`));
  });

  it("without write access to the cache, gzipped archives are unusable and the rest is served", async () => {
    const empty = mkdtempSync(join(work, "cache-"));
    const run = await denoRun((port) => [`--allow-read=${dir},${empty}`, `--allow-net=127.0.0.1:${port}`], ["--dir", dir, "--cache-dir", empty]);
    try {
      expect(await blob(run, "plain", plain.layers[0])).toBe(200);
      expect(await blob(run, "zipped", zipped.layers[0])).not.toBe(200);
    } finally {
      await run.stop();
    }
    expect(run.stderr()).toMatch(/Requires write access/);
  });

  it("reads SIMPLE_OCI_REGISTRY_* only with env access; without it, flags are needed", async () => {
    const env = { SIMPLE_OCI_REGISTRY_DIR: dir, SIMPLE_OCI_REGISTRY_CACHE_DIR: cache };
    const without = await denoRun((port) => [`--allow-read=${dir},${cache}`, `--allow-write=${cache}`, `--allow-net=127.0.0.1:${port}`], [], env);
    expect(await without.exited).toBe(2);
    expect(without.stderr().trim()).toBe("simple-oci-registry: --dir is required: the folder of .oci archives to serve");
    const names = "SIMPLE_OCI_REGISTRY_DIR,SIMPLE_OCI_REGISTRY_CACHE_DIR";
    const withEnv = await denoRun((port) => [`--allow-read=${dir},${cache}`, `--allow-write=${cache}`, `--allow-net=127.0.0.1:${port}`, `--allow-env=${names}`], [], env);
    try {
      expect(await blob(withEnv, "zipped", zipped.layers[0])).toBe(200);
    } finally {
      expect(await withEnv.stop()).toBe(0);
    }
  });
});

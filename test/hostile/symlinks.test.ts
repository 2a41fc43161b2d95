/**
 * Symlinks inside --dir are followed only when their target resolves inside --dir, or inside a
 * folder named by --allow-symlink-root. Anything else is "not there", logged once.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeFileSystem } from "../../adapters/node/fs.ts";
import { type RunningServer, serve } from "../../adapters/node/server.ts";
import { image, layout, packTar, ref } from "../fixtures/oci.ts";
import { collectingLogger, get, MANIFEST_TYPES, rawRequest } from "./helpers.ts";

const inside = image({ layers: [{ "in.txt": "inside\n" }] });
const outside = image({ layers: [{ "out.txt": "outside\n" }] });
const shared = image({ layers: [{ "nfs.txt": "allowed root\n" }] });

let root: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "sor-symlinks-"));
  for (const d of ["dir/app", "dir/real", "outside/team", "nfs/images"]) mkdirSync(join(root, d), { recursive: true });
  const pack = (i: typeof inside) => packTar(layout([{ image: i, annotations: ref("latest") }]));
  writeFileSync(join(root, "dir/real/latest.oci"), await pack(inside));
  writeFileSync(join(root, "outside/evil.oci"), await pack(outside));
  writeFileSync(join(root, "outside/team/latest.oci"), await pack(outside));
  writeFileSync(join(root, "nfs/images/latest.oci"), await pack(shared));
  writeFileSync(join(root, "outside/passwd"), "root:x:0:0\n");
  // Inside -> inside: followed.
  symlinkSync("../real/latest.oci", join(root, "dir/app/latest.oci"));
  symlinkSync("real", join(root, "dir/alias"));
  // Inside -> outside (file, folder, absolute, relative, chained through an inside link): refused.
  symlinkSync(join(root, "outside/evil.oci"), join(root, "dir/evil.oci"));
  symlinkSync("../outside/team", join(root, "dir/team"));
  symlinkSync("../outside/passwd", join(root, "dir/passwd.oci"));
  symlinkSync("evil.oci", join(root, "dir/chain.oci"));
  symlinkSync("/", join(root, "dir/rootfs"));
  // Inside -> an allowed root: followed only with --allow-symlink-root.
  symlinkSync(join(root, "nfs/images"), join(root, "dir/nfs"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("nodeFileSystem confinement", () => {
  it("follows links that stay inside, and hides links that leave", async () => {
    const refused: string[] = [];
    const fs = nodeFileSystem(join(root, "dir"), { symlinks: { onRefused: (p) => refused.push(p) } });
    expect(await fs.stat("app/latest.oci")).toMatchObject({ kind: "file" });
    expect(await fs.list("alias")).toEqual(["latest.oci"]);
    for (const p of ["evil.oci", "chain.oci", "passwd.oci", "team", "team/latest.oci", "rootfs", "rootfs/etc/passwd", "nfs", "nfs/latest.oci"]) {
      expect(await fs.stat(p), p).toBeUndefined();
      expect(await fs.read(p, 0, 10), p).toBeUndefined();
      expect(await fs.stream(p, 0, 1), p).toBeUndefined();
    }
    expect(await fs.list("team")).toBeUndefined();
    expect(await fs.list("rootfs")).toBeUndefined();
    // Reported once per path, however often asked.
    expect(new Set(refused).size).toBe(refused.length);
  });

  it("follows links into an allowed root", async () => {
    const fs = nodeFileSystem(join(root, "dir"), { symlinks: { allowedRoots: [join(root, "nfs")] } });
    expect(await fs.stat("nfs/latest.oci")).toMatchObject({ kind: "file" });
    expect(await fs.list("nfs")).toEqual(["latest.oci"]);
    expect(await fs.stat("evil.oci")).toBeUndefined();
  });

  it("re-checks a link that is retargeted (its identity changes)", async () => {
    const fs = nodeFileSystem(join(root, "dir"));
    symlinkSync("real/latest.oci", join(root, "dir/flip.oci"));
    expect(await fs.stat("flip.oci")).toBeDefined();
    rmSync(join(root, "dir/flip.oci"));
    symlinkSync(join(root, "outside/evil.oci"), join(root, "dir/flip.oci"));
    expect(await fs.stat("flip.oci")).toBeUndefined();
    expect(await fs.read("flip.oci", 0, 10)).toBeUndefined();
    rmSync(join(root, "dir/flip.oci"));
  });
});

describe("the Node server with symlinks in --dir", () => {
  const run = async (allow?: string[]) => {
    const { logger, logs } = collectingLogger();
    const server = await serve(
      {
        dir: join(root, "dir"),
        cacheDir: join(root, "cache"),
        port: 0,
        host: "127.0.0.1",
        rescanIntervalMs: 0,
        logLevel: "debug",
        shutdownGraceMs: 100,
        allowSymlinkRoots: allow,
      } as never,
      logger,
    );
    return { server, logs, port: Number(new URL(server.url).port) };
  };
  let a: { server: RunningServer; logs: Array<Record<string, unknown>>; port: number };
  let b: typeof a;
  beforeAll(async () => {
    a = await run();
    b = await run([join(root, "nfs")]);
  });
  afterAll(async () => {
    await a.server.close(100);
    await b.server.close(100);
  });

  const manifest = (port: number, name: string) => rawRequest(port, get(`/v2/${name}/manifests/latest`, { Accept: MANIFEST_TYPES }));

  it("serves through inside links, 404s through outside links, and logs the refusal", async () => {
    expect((await manifest(a.port, "app")).headers["docker-content-digest"]).toBe(inside.manifest.digest);
    expect((await manifest(a.port, "alias")).headers["docker-content-digest"]).toBe(inside.manifest.digest);
    for (const name of ["evil", "chain", "passwd", "team", "nfs"]) {
      const res = await manifest(a.port, name);
      expect(res.status, name).toBe(404);
      expect(res.body.toString()).not.toContain(outside.manifest.digest);
    }
    expect(a.logs.some((l) => l.msg === "symlink leads outside --dir, ignored")).toBe(true);
  });

  it("--allow-symlink-root opens exactly that folder", async () => {
    expect((await manifest(b.port, "nfs")).headers["docker-content-digest"]).toBe(shared.manifest.digest);
    expect((await manifest(b.port, "evil")).status).toBe(404);
  });
});

/**
 * An archive the server may not read (mode 000) answers 500 UNKNOWN for that request only.
 * Root reads anything, so as root (CI) the built CLI runs as `nobody` for this test.
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { image, layout, packTar, ref } from "../fixtures/oci.ts";
import { ensureBuilt, freePort, REPO_ROOT } from "../helpers/server.ts";
import { ACCEPT_ALL } from "../helpers/memory-registry.ts";

const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;

let dir: string;
let child: ReturnType<typeof spawn>;
let url: string;
let stderr = "";

beforeAll(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "sor-unreadable-"));
  chmodSync(dir, 0o755);
  const img = image({ layers: [{ "a.txt": "a\n" }] });
  for (const name of ["locked", "open"]) {
    mkdirSync(join(dir, name), { mode: 0o755 });
    writeFileSync(join(dir, name, "latest.oci"), await packTar(layout([{ image: img, annotations: ref("latest") }])), { mode: 0o644 });
  }
  chmodSync(join(dir, "locked/latest.oci"), 0);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  child = spawn(process.execPath, [join(REPO_ROOT, "dist/node/cli.js"), "--dir", dir, "--port", String(port), "--host", "127.0.0.1", "--cache-dir", join(dir, ".cache")], {
    ...(asRoot && { uid: NOBODY, gid: NOBODY }),
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.on("data", (d) => (stderr += d));
  for (let i = 0; i < 200; i++) {
    if (await fetch(`${url}/v2/`).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not start: ${stderr}`);
});

afterAll(() => {
  child?.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

describe(`an unreadable archive (server running as ${asRoot ? "nobody" : "this user"})`, () => {
  it("answers 500 UNKNOWN with no detail from the disk, logs the reason, and serves the rest", async () => {
    const res = await fetch(`${url}/v2/locked/manifests/latest`, { headers: { Accept: ACCEPT_ALL } });
    expect(res.status).toBe(500);
    const body = await res.json();
    expect(body.errors[0].code).toBe("UNKNOWN");
    expect(JSON.stringify(body)).not.toContain(dir);
    expect(stderr).toMatch(/EACCES/);
    expect((await fetch(`${url}/v2/open/manifests/latest`, { headers: { Accept: ACCEPT_ALL } })).status).toBe(200);
  });

  it("serves it once it is readable again", async () => {
    chmodSync(join(dir, "locked/latest.oci"), 0o644);
    expect((await fetch(`${url}/v2/locked/manifests/latest`, { headers: { Accept: ACCEPT_ALL } })).status).toBe(200);
  });
});

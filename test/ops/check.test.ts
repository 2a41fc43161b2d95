/**
 * `simple-oci-registry check`: the report over the in-memory file system, then the built CLI
 * on a real folder (table, --json, exit status).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkFolder, formatReport, parseCheckArgs, type CheckReport } from "../../adapters/shared/check.ts";
import { defaultHasher } from "../../core/hash.ts";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { namesServedBy } from "../../core/scan.ts";
import { image, imageIndex, layout, packTar, ref } from "../fixtures/oci.ts";
import { ensureBuilt, REPO_ROOT } from "../helpers/server.ts";

const amd64 = image({ layers: [{ "a.txt": "amd64\n" }] });
const arm64 = image({ layers: [{ "a.txt": "arm64\n" }], platform: { architecture: "arm64", os: "linux", variant: "v8" } });
const multi = imageIndex([amd64, arm64]);
const other = image({ layers: [{ "o.txt": "other\n" }] });

/** An archive whose layer bytes no longer match the layer's digest (same size). */
async function corruptLayer(): Promise<Uint8Array> {
  const files = layout([{ image: other, annotations: ref("v1") }]);
  const name = `blobs/${other.layers[0].digest.replace(":", "/")}`;
  const bytes = new Uint8Array(files.get(name)!);
  bytes[bytes.length - 1] ^= 0xff;
  files.set(name, bytes);
  return packTar(files);
}

async function check(fill: (fs: MemoryFileSystem) => Promise<void>): Promise<CheckReport> {
  const images = new MemoryFileSystem();
  await fill(images);
  return checkFolder({ images, cache: new MemoryFileSystem(), createHasher: defaultHasher });
}

const codes = (r: CheckReport) => r.problems.map((p) => `${p.severity} ${p.code}`).sort();

describe("namesServedBy", () => {
  it.each([
    ["hello.oci", ["hello"]],
    ["redis:7.oci", ["redis"]],
    ["team/app/v1.2.oci", ["team/app/v1.2", "team/app"]],
    // Also a candidate of `team` as `team/*.oci`.
    ["team/app:v1.oci", ["team/app", "team"]],
    ["app/latest", ["app/latest", "app"]],
    ["My App/x.oci", []],
  ])("%s -> %j", (path, names) => expect(namesServedBy(path)).toEqual(names));
});

describe("checkFolder", () => {
  it("lists name, tag, digest, platforms and file of a clean folder, with no problem", async () => {
    const r = await check(async (fs) => {
      fs.set("multi.oci", await packTar(layout([{ index: multi, annotations: ref("1.0") }])));
      fs.set("team/app/v2.oci", await packTar(layout([{ image: other }])));
    });
    expect(r.problems).toEqual([]);
    expect(r.errors).toBe(0);
    expect(r.images).toEqual([
      { name: "multi", tag: "1.0", digest: multi.manifest.digest, mediaType: multi.manifest.mediaType, platforms: ["linux/amd64", "linux/arm64/v8"], file: "multi.oci" },
      { name: "team/app", tag: "v2", digest: other.manifest.digest, mediaType: other.manifest.mediaType, platforms: ["linux/amd64"], file: "team/app/v2.oci" },
    ]);
    expect(r.archives).toEqual([
      { file: "multi.oci", format: "tar", manifests: 3, blobs: 7 },
      { file: "team/app/v2.oci", format: "tar", manifests: 1, blobs: 3 },
    ]);
  });

  it("reports broken archives and digest mismatches as errors", async () => {
    const r = await check(async (fs) => {
      fs.set("junk.oci", new TextEncoder().encode("this is not a tar archive".repeat(30)));
      fs.set("corrupt.oci", await corruptLayer());
      const files = layout([{ image: amd64, annotations: ref("v1") }]);
      const m = `blobs/${amd64.manifest.digest.replace(":", "/")}`;
      const bytes = new Uint8Array(files.get(m)!);
      bytes[10] ^= 1;
      files.set(m, bytes);
      fs.set("badmanifest.oci", await packTar(files));
    });
    expect(codes(r)).toEqual(["error broken-archive", "error digest-mismatch", "error digest-mismatch"]);
    expect(r.problems.find((p) => p.file === "corrupt.oci")?.message).toMatch(/blob sha256:[0-9a-f]+: its bytes do not match its digest/);
    expect(r.problems.find((p) => p.file === "badmanifest.oci" && p.code === "digest-mismatch")?.digest).toBe(amd64.manifest.digest);
    expect(r.errors).toBe(3);
  });

  it("reports a tag in several files: an error when the digests differ, a shadowed tag when they do not", async () => {
    const r = await check(async (fs) => {
      fs.set("app/latest.oci", await packTar(layout([{ image: amd64 }])));
      fs.set("app.oci", await packTar(layout([{ image: other, annotations: ref("latest") }, { image: amd64, annotations: ref("stable") }])));
      fs.set("app:stable.oci", await packTar(layout([{ image: amd64 }])));
    });
    const conflict = r.problems.find((p) => p.code === "tag-conflict")!;
    expect(conflict).toMatchObject({ severity: "error", name: "app", tag: "latest", file: "app/latest.oci" });
    expect(conflict.message).toContain("app.oci");
    const shadowed = r.problems.find((p) => p.code === "shadowed-tag")!;
    expect(shadowed).toMatchObject({ severity: "warning", name: "app", tag: "stable", file: "app.oci" });
    expect(r.images.filter((i) => i.name === "app").map((i) => [i.tag, i.file])).toEqual([
      ["latest", "app/latest.oci"],
      ["stable", "app:stable.oci"],
    ]);
    expect(r.errors).toBe(1);
  });

  it("warns about images no tag serves and files no valid name reaches", async () => {
    const r = await check(async (fs) => {
      fs.set("plain.oci", await packTar(layout([{ image: amd64 }])));
      fs.set("Bad Name.oci", await packTar(layout([{ image: other, annotations: ref("v1") }])));
    });
    expect(codes(r)).toEqual(["warning unreachable", "warning untagged", "warning untagged"]);
    expect(r.problems.find((p) => p.file === "plain.oci")?.message).toContain(`pull it as plain@${amd64.manifest.digest}`);
    expect(r.errors).toBe(0);
  });

  it("lists files under a <host>:<port>/ folder as served to ?ns= requests (--ns-dirs)", async () => {
    const r = await check(async (fs) => {
      fs.set("registry.example:5000/tools/jq/1.6.oci", await packTar(layout([{ image: other }])));
      fs.set("tools/jq/1.6.oci", await packTar(layout([{ image: amd64 }])));
      fs.set("registry.example/tools/jq.oci", await packTar(layout([{ image: amd64, annotations: ref("registry.example/tools/jq:1.7") }])));
    });
    expect(r.problems).toEqual([]);
    expect(r.images.map((i) => [i.ns, i.name, i.tag, i.file])).toEqual([
      [undefined, "registry.example/tools/jq", "1.7", "registry.example/tools/jq.oci"],
      [undefined, "tools/jq", "1.6", "tools/jq/1.6.oci"],
      ["registry.example:5000", "tools/jq", "1.6", "registry.example:5000/tools/jq/1.6.oci"],
    ]);
    expect(r.images[2].digest).toBe(other.manifest.digest);
    expect(formatReport(r)).toMatch(/registry\.example:5000\/tools\/jq\s+1\.6/);
  });

  it("checks gzipped archives through the cache", async () => {
    const r = await check(async (fs) => fs.set("gz.oci", await packTar(layout([{ image: other, annotations: ref("v1") }]), { gzip: true })));
    expect(r.problems).toEqual([]);
    expect(r.archives[0].format).toBe("tar+gzip");
    expect(r.images.map((i) => `${i.name}:${i.tag}`)).toEqual(["gz:v1"]);
  });

  it("formats a table, problems and a summary", async () => {
    const r = await check(async (fs) => {
      fs.set("multi.oci", await packTar(layout([{ index: multi, annotations: ref("1.0") }])));
      fs.set("corrupt.oci", await corruptLayer());
    });
    const text = formatReport(r);
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+TAG\s+DIGEST\s+PLATFORMS\s+FILE$/);
    expect(text).toMatch(new RegExp(`multi\\s+1\\.0\\s+${multi.manifest.digest.slice(0, 19)}\\s+linux/amd64,linux/arm64/v8\\s+multi\\.oci`));
    expect(text).toContain("PROBLEMS");
    expect(text).toMatch(/error\s+digest-mismatch\s+corrupt\.oci: blob/);
    expect(lines.at(-1)).toBe("2 archives, 2 tags served, 1 error, 0 warnings");
  });
});

describe("parseCheckArgs", () => {
  it("takes --dir (or the environment), --json and --cache-dir", () => {
    expect(parseCheckArgs(["--dir", "/d", "--json"], {})).toEqual({ dir: "/d", json: true, cacheDir: undefined });
    expect(parseCheckArgs(["--cache-dir=/c"], { SIMPLE_OCI_REGISTRY_DIR: "/e" })).toEqual({ dir: "/e", json: false, cacheDir: "/c" });
    expect(parseCheckArgs(["--help"], {})).toBeUndefined();
    expect(() => parseCheckArgs([], {})).toThrow(/--dir is required/);
    expect(() => parseCheckArgs(["--dir", "/d", "--port", "1"], {})).toThrow(/unknown option --port/);
  });
});

describe("simple-oci-registry check (built CLI)", () => {
  let dir: string;
  const cli = (args: string[]) => spawnSync(process.execPath, [join(REPO_ROOT, "dist/node/cli.js"), "check", ...args], { encoding: "utf8", env: { ...process.env, SIMPLE_OCI_REGISTRY_DIR: "" } });

  beforeAll(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), "sor-check-"));
    mkdirSync(join(dir, "team/app"), { recursive: true });
    writeFileSync(join(dir, "multi.oci"), await packTar(layout([{ index: multi, annotations: ref("1.0") }])));
    writeFileSync(join(dir, "team/app/v2.oci"), await packTar(layout([{ image: other }]), { gzip: true }));
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("prints the table and exits 0 for a clean folder", () => {
    const { status, stdout } = cli(["--dir", dir]);
    expect(status).toBe(0);
    expect(stdout).toMatch(/^NAME\s+TAG/);
    expect(stdout).toContain("team/app");
    expect(stdout.trimEnd().split("\n").at(-1)).toBe("2 archives, 2 tags served, 0 errors, 0 warnings");
  });

  it("prints JSON with --json and exits 1 on errors", async () => {
    writeFileSync(join(dir, "corrupt.oci"), await corruptLayer());
    try {
      const { status, stdout } = cli(["--dir", dir, "--json"]);
      expect(status).toBe(1);
      const report = JSON.parse(stdout);
      expect(report.dir).toBe(dir);
      expect(report.errors).toBe(1);
      expect(report.problems[0]).toMatchObject({ severity: "error", code: "digest-mismatch", file: "corrupt.oci" });
      expect(report.images.map((i: { name: string; tag: string }) => `${i.name}:${i.tag}`).sort()).toEqual(["corrupt:v1", "multi:1.0", "team/app:v2"]);
    } finally {
      rmSync(join(dir, "corrupt.oci"));
    }
  });

  it("exits 2 on a usage error and 1 for a missing folder, with one line", () => {
    const usage = cli([]);
    expect(usage.status).toBe(2);
    expect(usage.stderr.trim()).toBe("simple-oci-registry: check: --dir is required: the folder of .oci archives to check");
    const missing = cli(["--dir", "/nonexistent/folder"]);
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toBe("simple-oci-registry: --dir /nonexistent/folder does not exist");
    expect(cli(["--help"]).stdout).toContain("Usage: simple-oci-registry check --dir DIR");
  });
});

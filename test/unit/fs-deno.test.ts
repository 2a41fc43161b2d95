// The FileSystem contract, and the Node adapter's own file-system checks, against `denoFileSystem`
// running in a real Deno process (test/deno/fs-bridge.ts drives it over stdio).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import * as nodefs from "node:fs/promises";
import os from "node:os";
import { dirname, join, relative } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { digestOf, defaultHasher } from "../../core/hash.ts";
import { collect, describeFileSystemContract, patterned } from "../contract/fs-contract.ts";
import { DenoBridge } from "../deno/fs-bridge.ts";
import { REPO_ROOT } from "../helpers/server.ts";
import { describeWithDeno } from "../deno/deno.ts";

const text = (s: string) => new TextEncoder().encode(s);
const MiB = 1024 * 1024;

let bridge: DenoBridge | undefined;
const deno = () => (bridge ??= new DenoBridge());
afterAll(async () => {
  await bridge?.stop();
});

const tempRoot = () => nodefs.mkdtemp(join(os.tmpdir(), "fs-deno-test-"));

describeWithDeno("denoFileSystem", () => {
  describeFileSystemContract("denoFileSystem", async () => {
    const root = await tempRoot();
    const at = (path: string) => join(root, path);
    const fs = await deno().fileSystem(root, { writable: true });
    return {
      fs,
      statNow: (path) => fs.statNowThere(path),
      put: async (path, bytes) => {
        await nodefs.mkdir(dirname(at(path)), { recursive: true });
        await nodefs.writeFile(at(path), bytes);
      },
      replaceByRename: async (path, bytes) => {
        await nodefs.writeFile(`${at(path)}.tmp`, bytes);
        await nodefs.rename(`${at(path)}.tmp`, at(path));
      },
      overwriteInPlace: async (path, bytes) => {
        const handle = await nodefs.open(at(path), "r+");
        try {
          await handle.write(bytes, 0, bytes.length, 0);
          await handle.truncate(bytes.length);
        } finally {
          await handle.close();
        }
      },
      truncate: (path, size) => nodefs.truncate(at(path), size),
      remove: (path) => nodefs.rm(at(path), { force: true }),
      mkdir: async (path) => void (await nodefs.mkdir(at(path), { recursive: true })),
      cleanup: async () => {
        await fs.close();
        await nodefs.rm(root, { recursive: true, force: true });
      },
    };
  });

  // ---- what test/unit/fs.test.ts checks of the Node implementation beyond the contract ----
  describe("beyond the contract", () => {

    let root: string;
    beforeEach(async () => {
      root = await tempRoot();
    });
    afterEach(async () => {
      await nodefs.rm(root, { recursive: true, force: true });
    });

    it.skipIf(!existsSync("/proc/self/fd"))("releases file descriptors however a stream or read ends", async () => {
      const fs = await deno().fileSystem(root, { writable: true });
      await nodefs.writeFile(join(root, "big"), patterned(2 * MiB));
      await nodefs.writeFile(join(root, "small"), patterned(1000));
      const info = (await fs.stat("big"))!;
      const open = async (path: string, start: number, end: number) => (await fs.stream(path, start, end))!;
      const round = async () => {
        await (await open("big", 0, 2 * MiB)).cancel(); // never read
        const reader = (await open("big", 0, 2 * MiB)).getReader();
        await reader.read();
        await reader.cancel(); // cancelled mid-way
        await collect(await open("small", 0, 1000)); // read to the end
        await collect(await open("small", 10, 10)); // empty range
        expect(await fs.stream("big", 0, 10, { expect: { ...info, size: 1 } })).toBeUndefined(); // mismatch
        await expect(collect(await open("small", 0, 1001))).rejects.toThrow(); // runs past the end
        await fs.read("small", 0, 100);
        await fs.read("small", 5000, 100);
        expect(await fs.read("", 0, 1)).toBeUndefined(); // a folder
        await expect(fs.write("small/x", new Blob([text("x")]).stream())).rejects.toThrow(); // fails after opening nothing
      };
      await round();
      const before = deno().openFds();
      for (let i = 0; i < 50; i++) await round();
      expect(deno().openFds()).toBeLessThanOrEqual(before + 2);
      await fs.close();
    });

    it("follows symlinks: kind, size and id come from the target", async () => {
      const fs = await deno().fileSystem(root);
      await nodefs.mkdir(join(root, "real"));
      await nodefs.writeFile(join(root, "real/file"), text("target"));
      await nodefs.symlink("real/file", join(root, "link-file"));
      await nodefs.symlink("real", join(root, "link-dir"));
      await nodefs.symlink("nowhere", join(root, "dangling"));
      const target = (await fs.stat("real/file"))!;
      expect(await fs.stat("link-file")).toEqual(target);
      expect(await fs.stat("link-dir")).toMatchObject({ kind: "directory" });
      expect(await fs.list("link-dir")).toEqual(["file"]);
      expect(new TextDecoder().decode(await fs.read("link-file", 0, 100))).toBe("target");
      expect(await fs.stat("dangling")).toBeUndefined();
      expect(await fs.read("dangling", 0, 1)).toBeUndefined();
      expect(await fs.stream("dangling", 0, 1)).toBeUndefined();
    });

    it("confines symlinks: followed inside the root or an allowed root, hidden elsewhere and reported once", async () => {
      for (const d of ["dir/app", "dir/real", "outside/team", "nfs/images"]) await nodefs.mkdir(join(root, d), { recursive: true });
      await nodefs.writeFile(join(root, "dir/real/latest.oci"), text("inside"));
      await nodefs.writeFile(join(root, "outside/evil.oci"), text("outside"));
      await nodefs.writeFile(join(root, "outside/team/latest.oci"), text("outside"));
      await nodefs.writeFile(join(root, "nfs/images/latest.oci"), text("allowed root"));
      await nodefs.symlink("../real/latest.oci", join(root, "dir/app/latest.oci"));
      await nodefs.symlink("real", join(root, "dir/alias"));
      await nodefs.symlink(join(root, "outside/evil.oci"), join(root, "dir/evil.oci"));
      await nodefs.symlink("../outside/team", join(root, "dir/team"));
      await nodefs.symlink("evil.oci", join(root, "dir/chain.oci"));
      await nodefs.symlink(join(root, "nfs/images"), join(root, "dir/nfs"));

      const fs = await deno().fileSystem(join(root, "dir"));
      expect(await fs.stat("app/latest.oci")).toMatchObject({ kind: "file" });
      expect(await fs.list("alias")).toEqual(["latest.oci"]);
      for (const p of ["evil.oci", "chain.oci", "team", "team/latest.oci", "nfs", "nfs/latest.oci"]) {
        expect(await fs.stat(p), p).toBeUndefined();
        expect(await fs.read(p, 0, 10), p).toBeUndefined();
        expect(await fs.stream(p, 0, 1), p).toBeUndefined();
      }
      expect(await fs.list("team")).toBeUndefined();
      const refused = await fs.refused();
      expect(refused.length).toBeGreaterThan(0);
      expect(new Set(refused).size).toBe(refused.length);

      const allowed = await deno().fileSystem(join(root, "dir"), { allowedRoots: [join(root, "nfs")] });
      expect(new TextDecoder().decode(await allowed.read("nfs/latest.oci", 0, 100))).toBe("allowed root");
      expect(await allowed.list("nfs")).toEqual(["latest.oci"]);
      expect(await allowed.stat("evil.oci")).toBeUndefined();

      // A link retargeted outside is checked afresh (its identity changed).
      await nodefs.symlink("real/latest.oci", join(root, "dir/flip.oci"));
      expect(await fs.stat("flip.oci")).toBeDefined();
      await nodefs.rm(join(root, "dir/flip.oci"));
      await nodefs.symlink(join(root, "outside/evil.oci"), join(root, "dir/flip.oci"));
      expect(await fs.stat("flip.oci")).toBeUndefined();
      expect(await fs.read("flip.oci", 0, 10)).toBeUndefined();
    });

    it("answers undefined for a path through a file (NotADirectory)", async () => {
      const fs = await deno().fileSystem(root, { writable: true });
      await nodefs.writeFile(join(root, "f"), text("f"));
      expect(await fs.stat("f/x")).toBeUndefined();
      expect(await fs.list("f/x")).toBeUndefined();
      expect(await fs.read("f/x", 0, 1)).toBeUndefined();
      expect(await fs.stream("f/x", 0, 1)).toBeUndefined();
      await fs.remove("f/x");
    });

    it("propagates errors other than not-found, and removes files only", async () => {
      const fs = await deno().fileSystem(root, { writable: true });
      await nodefs.writeFile(join(root, "f"), text("f"));
      await expect(fs.write("f/x", new Blob([text("x")]).stream())).rejects.toMatchObject({ name: expect.stringMatching(/^(NotADirectory|AlreadyExists)$/) });
      await nodefs.mkdir(join(root, "d"));
      await expect(fs.remove("d")).rejects.toThrow(/folder/);
      expect(await fs.stat("d")).toMatchObject({ kind: "directory" });
      await nodefs.chmod(join(root, "d"), 0o000);
      if (process.getuid?.() !== 0) await expect(fs.list("d")).rejects.toMatchObject({ name: "PermissionDenied" }); // root reads anything
    });

    it("refuses paths outside what Deno may read with a permission error, not undefined", async () => {
      const fs = await deno().fileSystem("/");
      await expect(fs.stat("etc/hostname")).rejects.toMatchObject({ name: "NotCapable" });
    });

    it("never hangs on a FIFO, and does not treat it as a file", { timeout: 5000 }, async (ctx) => {
      const fifo = join(root, "fifo");
      if (spawnSync("mkfifo", [fifo]).status !== 0) return ctx.skip();
      const fs = await deno().fileSystem(root);
      expect(await fs.stat("fifo")).toMatchObject({ kind: "other" });
      expect(await fs.read("fifo", 0, 10)).toBeUndefined();
      expect(await fs.stream("fifo", 0, 10)).toBeUndefined();
    });

    it("is read-only unless created writable", async () => {
      await nodefs.writeFile(join(root, "f"), text("f"));
      const fs = await deno().fileSystem(root);
      let cancelled = false;
      const source = new ReadableStream<Uint8Array>({ cancel: () => void (cancelled = true) });
      await expect(fs.write("g", source)).rejects.toThrow(/read-only/);
      expect(cancelled).toBe(true);
      await expect(fs.remove("f")).rejects.toThrow(/read-only/);
      expect(await fs.list("")).toEqual(["f"]);
    });

    it("streams in chunks of the configured size", async () => {
      await nodefs.writeFile(join(root, "f"), patterned(10_500));
      const fs = await deno().fileSystem(root, { chunkSize: 1000 });
      const { bytes, chunks } = await collect((await fs.stream("f", 0, 10_500))!);
      expect(chunks).toEqual([...Array(10).fill(1000), 500]);
      expect(Buffer.from(bytes).equals(Buffer.from(patterned(10_500)))).toBe(true);
      const middle = await collect((await fs.stream("f", 2500, 4100))!);
      expect(middle.chunks).toEqual([1000, 600]);
      expect(Buffer.from(middle.bytes).equals(Buffer.from(patterned(10_500).subarray(2500, 4100)))).toBe(true);
    });

    it("reads only when pulled", async () => {
      await nodefs.writeFile(join(root, "f"), patterned(3 * MiB));
      const fs = await deno().fileSystem(root, { chunkSize: MiB });
      const reader = (await fs.stream("f", 0, 3 * MiB))!.getReader();
      await new Promise((r) => setTimeout(r, 20));
      await nodefs.truncate(join(root, "f"), 0);
      await expect(reader.read()).rejects.toThrow(/truncated/);
    });

    it("resolves paths under the root only, and takes a relative root", async () => {
      await nodefs.mkdir(join(root, "inner"));
      await nodefs.writeFile(join(root, "outside"), text("o"));
      await nodefs.writeFile(join(root, "inner/redis:7.oci"), text("r"));
      const fs = await deno().fileSystem(join(root, "inner/"));
      await expect(fs.stat("../outside")).rejects.toThrow(/\.\./);
      await expect(fs.stat(join(root, "outside"))).rejects.toThrow(/relative/);
      expect(await fs.stat("..x")).toBeUndefined(); // a name that starts with two dots is fine
      expect(await fs.stat("redis:7.oci")).toMatchObject({ kind: "file", size: 1 }); // a colon is no drive letter
      const fromCwd = await deno().fileSystem(relative(REPO_ROOT, root)); // the bridge runs in REPO_ROOT
      expect(await fromCwd.stat("outside")).toMatchObject({ kind: "file" });
    });

    it("hashes sha256 and sha512 natively, like the pure-JS default", async () => {
      const data = patterned(100_000);
      expect(await deno().hash("sha256", [text("abc")])).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
      expect(`sha512:${await deno().hash("sha512", [data.subarray(0, 10), data.subarray(10)])}`).toBe(digestOf(defaultHasher, "sha512", data));
      expect(await deno().hash("md5", [data])).toBeUndefined();
    });
  });
});

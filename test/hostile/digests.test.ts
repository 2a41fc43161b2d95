/**
 * Layer digests: a blob whose bytes do not match its digest is never delivered complete. The
 * first full download is hashed with the last chunk held back; a mismatch aborts it, logs it,
 * and later requests get BLOB_UNKNOWN until the archive changes. Verified blobs are not hashed
 * again; ranges are never hashed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { concat, image, layer, layout, packTar, ref, sha256 } from "../fixtures/oci.ts";
import { memoryRegistry } from "../helpers/memory-registry.ts";
import { get, MANIFEST_TYPES, rawRequest, type TempServer, tempServer } from "./helpers.ts";

const bigData = new Uint8Array(600_000).map((_, i) => (i * 31) % 251);
const good = image({ layers: [layer({ "big.bin": bigData }, { gzip: false })] });

/** An archive whose layer entry holds other bytes of the same length than its digest says. */
async function corruptArchive(): Promise<{ bytes: Uint8Array; layerDigest: string; size: number }> {
  const files = layout([{ image: good, annotations: ref("v1") }]);
  const l = good.layers[0];
  const path = `blobs/${l.digest.replace(":", "/")}`;
  const bad = files.get(path)!.slice();
  bad[bad.length - 10] ^= 0xff; // the last chunk differs: everything before it is right
  bad[1000] ^= 0x01;
  files.set(path, bad);
  return { bytes: await packTar(files), layerDigest: l.digest, size: l.size };
}

async function readAll(res: Response): Promise<{ bytes: Uint8Array; error?: unknown }> {
  const parts: Uint8Array[] = [];
  const reader = res.body!.getReader();
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) parts.push(r.value);
  } catch (error) {
    return { bytes: concat(...parts), error };
  }
  return { bytes: concat(...parts) };
}

describe("layer digests through the fetch handler", () => {
  it("aborts the first download of a corrupt layer before its last chunk, then answers BLOB_UNKNOWN", async () => {
    const r = memoryRegistry();
    const { bytes, layerDigest, size } = await corruptArchive();
    r.images.set("app/v1.oci", bytes);
    r.images.set("other/v1.oci", await packTar(layout([{ image: image({ layers: [{ "o.txt": "other" }] }) }])));

    const res = await r.get(`/v2/app/blobs/${layerDigest}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(size));
    const { bytes: got, error } = await readAll(res);
    expect(error).toBeDefined();
    expect(got.length).toBeLessThan(size);
    const line = r.logs.find((l) => l.msg === "blob digest mismatch");
    expect(line?.fields).toMatchObject({ file: "app/v1.oci", digest: layerDigest });

    for (const method of ["GET", "HEAD"]) {
      const again = await r.get(`/v2/app/blobs/${layerDigest}`, { method });
      expect(again.status).toBe(404);
      if (method === "GET") expect((await again.json()).errors[0]).toMatchObject({ code: "BLOB_UNKNOWN" });
    }
    // Only that blob: the manifest, the config and other archives are still served.
    expect((await r.get("/v2/app/manifests/v1")).status).toBe(200);
    const config = await r.get(`/v2/app/blobs/${good.config.digest}`);
    expect(config.status).toBe(200);
    await config.arrayBuffer();
    expect((await r.get("/v2/other/manifests/v1")).status).toBe(200);
    expect(r.images.openStreams).toBe(0);
  });

  it("serves the blob again once the archive is fixed (a new version of the file)", async () => {
    const r = memoryRegistry();
    const { bytes, layerDigest } = await corruptArchive();
    r.images.set("app/v1.oci", bytes);
    await readAll(await r.get(`/v2/app/blobs/${layerDigest}`));
    expect((await r.get(`/v2/app/blobs/${layerDigest}`)).status).toBe(404);
    r.images.set("app/v1.oci", await packTar(layout([{ image: good, annotations: ref("v1") }])));
    const res = await r.get(`/v2/app/blobs/${layerDigest}`);
    expect(res.status).toBe(200);
    const { bytes: got, error } = await readAll(res);
    expect(error).toBeUndefined();
    expect(sha256(got)).toBe(layerDigest);
  });

  it("hashes a blob once per archive version; ranges and HEAD are never hashed", async () => {
    const r = memoryRegistry();
    r.images.set("app/v1.oci", await packTar(layout([{ image: good, annotations: ref("v1") }])));
    const l = good.layers[0];
    // Ranges first: served, not hashed, so a later full download still verifies.
    const part = await r.get(`/v2/app/blobs/${l.digest}`, { headers: { Range: "bytes=0-99" } });
    expect(part.status).toBe(206);
    expect((await readAll(part)).bytes.length).toBe(100);
    expect(r.logs.some((x) => x.msg === "blob digest mismatch")).toBe(false);
    for (let i = 0; i < 3; i++) {
      const res = await r.get(`/v2/app/blobs/${l.digest}`);
      const { bytes, error } = await readAll(res);
      expect(error).toBeUndefined();
      expect(bytes.length).toBe(l.size);
    }
    expect((await r.get(`/v2/app/blobs/${l.digest}`, { method: "HEAD" })).status).toBe(200);
  });

  it("a corrupt blob inside a range-only access pattern is served as ranges (not hashed) without error", async () => {
    const r = memoryRegistry();
    const { bytes, layerDigest } = await corruptArchive();
    r.images.set("app/v1.oci", bytes);
    const part = await r.get(`/v2/app/blobs/${layerDigest}`, { headers: { Range: "bytes=10-20" } });
    expect(part.status).toBe(206);
    expect((await readAll(part)).error).toBeUndefined();
  });
});

describe("layer digests through the Node server (a real HTTP client)", () => {
  let t: TempServer;
  let layerDigest: string;
  let size: number;
  beforeAll(async () => {
    t = await tempServer();
    const c = await corruptArchive();
    layerDigest = c.layerDigest;
    size = c.size;
    t.write("app/v1.oci", c.bytes);
  });
  afterAll(() => t.close());

  it("the client sees a broken transfer, never a complete body with the announced length", async () => {
    const res = await rawRequest(t.port, get(`/v2/app/blobs/${layerDigest}`));
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe(String(size));
    expect(res.broken).toBe(true);
    expect(res.body.length).toBeLessThan(size);
    // fetch (undici) reports the failure as an error while reading the body.
    const again = await fetch(`http://127.0.0.1:${t.port}/v2/app/blobs/${layerDigest}`);
    expect(again.status).toBe(404);
    expect((await again.json()).errors[0].code).toBe("BLOB_UNKNOWN");
    expect(t.logs.some((l) => l.msg === "blob digest mismatch" && l.file === "app/v1.oci")).toBe(true);
  });

  it("fetch's body read fails for a corrupt layer in a fresh archive", async () => {
    const c = await corruptArchive();
    t.write("app2/v1.oci", c.bytes);
    const res = await fetch(`http://127.0.0.1:${t.port}/v2/app2/blobs/${c.layerDigest}`);
    expect(res.status).toBe(200);
    await expect(res.arrayBuffer()).rejects.toThrow();
    // The server is fine: the next request on a new connection works.
    const m = await fetch(`http://127.0.0.1:${t.port}/v2/app2/manifests/v1`, { headers: { Accept: MANIFEST_TYPES } });
    expect(m.status, await m.clone().text()).toBe(200);
  });
});

/**
 * Property-based tests of the archive readers with mutated archives: bytes flipped, runs
 * overwritten, cut short, blocks duplicated, dropped or zeroed, plain and gzipped. The seeking
 * tar reader fails only with ArchiveError and never points outside the file; through the
 * registry, a mutated archive never makes the handler throw or answer 5xx, and a manifest or
 * blob that is served complete always matches its digest.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { ArchiveError } from "../../core/errors.ts";
import { indexTar } from "../../core/tar.ts";
import { gzip, image, imageIndex, layer, layout, packTar, ref, sha256 } from "../fixtures/oci.ts";
import { memoryRegistry } from "../helpers/memory-registry.ts";
import { runs, SEED, timeoutFor } from "./config.ts";

const a = image({ layers: [layer({ "a.bin": new Uint8Array(3000).map((_, i) => i % 7) }, { gzip: false })] });
const b = image({ layers: [{ "b.txt": "b\n" }], platform: { architecture: "arm64", os: "linux" } });
const multi = imageIndex([a, b]);
const DIGESTS = [a.manifest.digest, a.config.digest, a.layers[0].digest, b.manifest.digest, b.layers[0].digest, multi.manifest.digest];

let seeds: Uint8Array[];
beforeAll(async () => {
  const files = layout([{ index: multi, annotations: ref("v1") }, { image: a, annotations: ref("a") }]);
  seeds = [
    await packTar(files),
    await packTar(files, { prefix: "./", folders: true, order: "index-first" }),
    await packTar(files, { pax: true }),
    await packTar(files, { gnuLongNames: true }),
  ];
});

type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "overwrite"; at: number; bytes: Uint8Array }
  | { kind: "truncate"; at: number }
  | { kind: "zero-block"; block: number }
  | { kind: "drop-block"; block: number }
  | { kind: "dup-block"; block: number }
  | { kind: "octal"; block: number; field: number; text: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant("overwrite" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("zero-block" as const), block: fc.nat() }),
  fc.record({ kind: fc.constant("drop-block" as const), block: fc.nat() }),
  fc.record({ kind: fc.constant("dup-block" as const), block: fc.nat() }),
  // Header number fields: size (124), checksum (148), mode (100), with hostile text.
  fc.record({
    kind: fc.constant("octal" as const),
    block: fc.nat(),
    field: fc.constantFrom(100, 124, 148),
    text: fc.constantFrom("77777777777", "99999999999", "-1", "\x80\xff\xff\xff\xff\xff\xff\xff", "0", "", "   1", "1e10"),
  }),
);

function mutate(seed: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = seed.slice();
  for (const m of mutations) {
    const blocks = Math.floor(out.length / 512);
    if (blocks === 0 && (m.kind === "zero-block" || m.kind === "drop-block" || m.kind === "dup-block" || m.kind === "octal")) continue;
    switch (m.kind) {
      case "flip":
        if (out.length) out[m.at % out.length] ^= 1 << m.bit;
        break;
      case "overwrite":
        if (out.length) out.set(m.bytes.subarray(0, Math.max(0, out.length - (m.at % out.length))), m.at % out.length);
        break;
      case "truncate":
        out = out.subarray(0, m.at % (out.length + 1));
        break;
      case "zero-block":
        out.fill(0, (m.block % blocks) * 512, (m.block % blocks) * 512 + 512);
        break;
      case "drop-block": {
        const at = (m.block % blocks) * 512;
        const next = new Uint8Array(Math.max(0, out.length - 512));
        next.set(out.subarray(0, at));
        next.set(out.subarray(at + 512), at);
        out = next;
        break;
      }
      case "dup-block": {
        const at = (m.block % blocks) * 512;
        const next = new Uint8Array(out.length + 512);
        next.set(out.subarray(0, at + 512));
        next.set(out.subarray(at, at + 512), at + 512);
        next.set(out.subarray(at + 512), at + 1024);
        out = next;
        break;
      }
      case "octal": {
        const at = (m.block % blocks) * 512 + m.field;
        for (let i = 0; i < 12 && at + i < out.length; i++) out[at + i] = i < m.text.length ? m.text.charCodeAt(i) & 0xff : 0;
        break;
      }
    }
  }
  return out;
}

const mutated = fc.tuple(fc.nat({ max: 3 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.boolean()).map(([i, ms, gz]) => ({ i, ms, gz }));

describe("fuzz: the seeking tar reader", () => {
  const count = runs(1500);
  it(
    `fails only with ArchiveError, never points outside the file (${count} runs)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(mutated, async ({ i, ms }) => {
          const bytes = mutate(seeds[i], ms);
          const readAt = async (offset: number, length: number) => bytes.subarray(offset, offset + length);
          try {
            const entries = await indexTar(readAt, bytes.length);
            for (const e of entries) {
              expect(e.offset).toBeGreaterThanOrEqual(0);
              expect(e.offset + e.size).toBeLessThanOrEqual(bytes.length);
            }
          } catch (err) {
            expect(err, String(err)).toBeInstanceOf(ArchiveError);
          }
        }),
        { numRuns: count, seed: SEED },
      );
    },
    timeoutFor(count, 2),
  );
});

describe("fuzz: mutated archives through the registry", () => {
  const count = runs(400);
  it(
    `no throw, no 5xx, and whatever is served complete matches its digest (${count} runs)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(mutated, async ({ i, ms, gz }) => {
          const r = memoryRegistry();
          const bytes = mutate(gz ? gzip(seeds[i]) : seeds[i], ms);
          r.images.set("m.oci", bytes);
          r.images.set("ok/latest.oci", seeds[0]);
          for (const path of ["/v2/m/manifests/v1", "/v2/m/manifests/a", "/v2/m/tags/list", ...DIGESTS.map((d) => `/v2/m/blobs/${d}`), ...DIGESTS.map((d) => `/v2/m/manifests/${d}`)]) {
            const res = await r.get(path);
            expect(res.status, path).toBeLessThan(500);
            let body: Uint8Array;
            try {
              body = new Uint8Array(await res.arrayBuffer());
            } catch {
              continue; // an aborted transfer: the right answer for bytes that do not match
            }
            const digest = res.headers.get("docker-content-digest");
            if (res.status === 200 && digest) expect(sha256(body), path).toBe(digest);
            if (res.status >= 400) expect(JSON.parse(new TextDecoder().decode(body)).errors).toBeDefined();
          }
          // The good archive next to it is not disturbed.
          expect((await r.get("/v2/ok/manifests/v1")).status).toBe(200);
          expect(r.images.openStreams).toBe(0);
          expect(r.cache.openStreams).toBe(0);
        }),
        { numRuns: count, seed: SEED },
      );
    },
    timeoutFor(count, 30),
  );
});

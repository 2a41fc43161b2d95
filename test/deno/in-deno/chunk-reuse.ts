/**
 * Runs inside Deno (test/deno/chunk-reuse.test.ts): the chunk-buffer reuse of the Deno adapter
 * (adapters/deno/chunks.ts, denoFileSystem's streams). `deno run --allow-read --allow-write
 * chunk-reuse.ts DIR` writes its files under DIR and prints one JSON line of results; a failed
 * check throws (exit code 1).
 */
import { markReusable, releaseChunk, ServedChunks } from "../../../adapters/deno/chunks.ts";
import { denoFileSystem } from "../../../adapters/deno/fs.ts";

const dir = Deno.args[0];
if (!dir) throw new Error("usage: chunk-reuse.ts DIR");

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

const results: Record<string, unknown> = {};

// ServedChunks: a chunk is released once `hold` bytes were handed over between it and the newest.
{
  const released: number[] = [];
  const served = new ServedChunks(250);
  const chunks = Array.from({ length: 8 }, (_, i) => markReusable(new Uint8Array(100), () => released.push(i)));
  const after: number[][] = [];
  for (const chunk of chunks) {
    served.served(chunk);
    after.push([...released]);
  }
  // After chunk n is served, chunks 1..n-1 lie between chunk 0 and it: 300 bytes from n = 4.
  check(JSON.stringify(after) === JSON.stringify([[], [], [], [], [0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]), `ServedChunks released ${JSON.stringify(after)}`);
  served.drop();
  check(released.length === 4, "drop() must not release the chunks still held");
  releaseChunk(chunks[0]);
  check(released.length === 4, "a chunk is released once only");
  // One chunk larger than the hold: the one before it stays held until enough follows.
  const big: string[] = [];
  const s2 = new ServedChunks(250);
  s2.served(markReusable(new Uint8Array(10), () => big.push("a")));
  s2.served(markReusable(new Uint8Array(1000), () => big.push("b")));
  check(big.length === 0, "a chunk is not released because the one after it is large");
  s2.served(markReusable(new Uint8Array(10), () => big.push("c")));
  check(big.join("") === "a", `expected only the first chunk released, got ${big.join("")}`);
  results.servedChunks = "ok";
}

const size = 5 * 65536 + 12345;
const content = new Uint8Array(size);
for (let i = 0; i < size; i += 65536) crypto.getRandomValues(content.subarray(i, i + 65536));
await Deno.writeFile(`${dir}/blob`, content);
const fs = denoFileSystem(dir, { chunkSize: 65536 });

async function chunksOf(start: number, end: number, release: boolean): Promise<{ bytes: Uint8Array; buffers: Set<ArrayBufferLike>; count: number }> {
  const stream = await fs.stream("blob", start, end);
  if (!stream) throw new Error("stream missing");
  const reader = stream.getReader();
  const bytes = new Uint8Array(end - start);
  const buffers = new Set<ArrayBufferLike>();
  const kept: Uint8Array[] = [];
  let at = 0;
  let count = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes.set(value, at);
    at += value.byteLength;
    buffers.add(value.buffer);
    count++;
    if (release) releaseChunk(value);
    else kept.push(value);
  }
  check(at === end - start, `read ${at} bytes of ${end - start}`);
  // Chunks nobody released are never written again: every kept chunk still holds its bytes.
  let offset = start;
  for (const chunk of kept) {
    check(equal(chunk, content.subarray(offset, offset + chunk.byteLength)), `kept chunk at ${offset} was overwritten`);
    offset += chunk.byteLength;
  }
  return { bytes, buffers, count };
}

{
  const kept = await chunksOf(0, size, false);
  check(equal(kept.bytes, content), "stream without releases: wrong bytes");
  check(kept.buffers.size === kept.count, "chunks nobody released must each have their own buffer");
  const reused = await chunksOf(100, size, true);
  check(equal(reused.bytes, content.subarray(100)), "stream with releases: wrong bytes");
  check(reused.buffers.size <= 2, `a consumer that releases each chunk should cycle through 1-2 buffers, used ${reused.buffers.size}`);
  const short = await chunksOf(7, 7 + 1000, true);
  check(equal(short.bytes, content.subarray(7, 1007)), "short range: wrong bytes");
  // A released chunk whose buffer was transferred (detached) is not pooled.
  const stream = await fs.stream("blob", 0, size);
  const reader = stream!.getReader();
  const first = (await reader.read()).value!;
  const copy = first.slice();
  (first.buffer as ArrayBuffer).transfer();
  releaseChunk(first);
  const second = (await reader.read()).value!;
  check(equal(second, content.subarray(65536, 131072)) && equal(copy, content.subarray(0, 65536)), "after a detached release: wrong bytes");
  await reader.cancel();
  results.streams = { chunks: kept.count, buffersWithRelease: reused.buffers.size };
}

console.log(JSON.stringify(results));

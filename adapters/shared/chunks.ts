/**
 * Reusable chunk buffers for file streams (both adapters' `stream`). A blob download would
 * otherwise allocate a fresh buffer per chunk: gigabytes of short-lived ArrayBuffers, which V8
 * collects only after tens of MiB of them pile up (the bench saw 125 MiB peak RSS with 8 clients
 * on a 1 GiB blob).
 *
 * The file stream marks each chunk it enqueues with a release function; whoever finally
 * consumes the chunk (Node's writer once the socket has taken it; on Deno, ServedChunks in
 * adapters/deno/chunks.ts once Deno.serve has moved far enough past it) calls `releaseChunk`, and
 * the buffer goes back to the stream's free list. A consumer that never calls it (tar
 * ingestion, tests, a Web-stream wrapper that copies) just leaves the chunk to the GC, so
 * forgetting to release is never unsafe; releasing a chunk that is still in use would be, so
 * only the last holder may do it.
 */
const releases = new WeakMap<Uint8Array, () => void>();

export function markReusable(chunk: Uint8Array, release: () => void): Uint8Array {
  releases.set(chunk, release);
  return chunk;
}

/** Gives a chunk back to the stream that made it, if it was marked; safe to call more than once. */
export function releaseChunk(chunk: Uint8Array): void {
  const release = releases.get(chunk);
  if (release) {
    releases.delete(chunk);
    release();
  }
}

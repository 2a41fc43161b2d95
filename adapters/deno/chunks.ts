/**
 * Reusable chunk buffers for Deno file streams. Without them a blob download allocates a fresh
 * ArrayBuffer per chunk: V8 zero-fills each one (memset was 7% of the server's CPU with 8 clients
 * on a 1 GiB blob, page faults another 3-4%) and frees them only when a GC comes round, which let
 * peak RSS reach 176 MiB.
 *
 * The file stream (fs.ts) marks each chunk it enqueues with a release function (the helpers are
 * shared with Node: adapters/shared/chunks.ts); the last holder
 * of a chunk calls `releaseChunk` and the buffer goes back to its file system's pool. A consumer
 * that never calls it (tar ingestion, the cache writer, tests) leaves the chunk to the GC, so
 * forgetting to release is never unsafe; releasing a chunk whose bytes are still to be used
 * would be. On Deno the last holder is Deno.serve's native side, which never says when it is
 * done with a buffer: `ServedChunks` below decides that from how far the stream has moved on.
 */
import { releaseChunk } from "../shared/chunks.ts";
export { markReusable, releaseChunk } from "../shared/chunks.ts";

/**
 * How many bytes a response body must have handed to Deno.serve between a chunk and the newest
 * one before that chunk's buffer may be written again. Deno 2 sends a JS body like this (ext/web
 * `resourceForReadableStream`, ext/http `response_body.rs`, hyper): it reads the next chunk only
 * once the previous one is in its channel; the channel takes a chunk only while it holds less
 * than 64 KiB; hyper takes 64 KiB slices from it and keeps at most about 400 KiB of them unsent
 * (its write-buffer limit, HTTP/1 and HTTP/2 alike; TLS copies on write). The earliest a released
 * buffer is written again is the stream's next read, which Deno asks for once the newest chunk is
 * in the channel: then the native side can still need the newest chunk and at most about 530 KiB
 * before it. 1 MiB is about twice that, a margin for buffering a later Deno may add (and each
 * download holds about 1.5 MiB of chunks). test/deno/chunk-reuse.test.ts checks the bytes that
 * concurrent fast and slow clients receive: on Deno 2.9.6 it fails with a 256 KiB hold and
 * passes with 512 KiB.
 */
export const SERVED_HOLD_BYTES = 1024 * 1024;

/**
 * The chunks of one response body on their way to Deno.serve, oldest first. `served` is called
 * with each chunk as it is handed over; a chunk is released for reuse once `holdBytes` bytes
 * have been handed over between it and the newest chunk. Chunks still held when the body ends,
 * fails or is cancelled are left to the GC: the native side may still be sending them.
 */
export class ServedChunks {
  private readonly held: Uint8Array[] = [];
  /** Bytes in `held` except the newest chunk. */
  private before = 0;

  constructor(private readonly holdBytes = SERVED_HOLD_BYTES) {}

  served(chunk: Uint8Array): void {
    const newest = this.held[this.held.length - 1];
    if (newest) this.before += newest.byteLength;
    this.held.push(chunk);
    while (this.held.length > 1 && this.before - this.held[0].byteLength >= this.holdBytes) {
      const oldest = this.held.shift()!;
      this.before -= oldest.byteLength;
      releaseChunk(oldest);
    }
  }

  /** The body is over: forget the rest without releasing them. */
  drop(): void {
    this.held.length = 0;
    this.before = 0;
  }
}

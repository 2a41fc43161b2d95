/**
 * What `require("events")` in the npm dependencies (streamx, through events-universal) gets in
 * the single-file Deno build: Deno's built-in `node:events`, imported rather than required, since
 * an ES module has no `require`.
 */
export { EventEmitter } from "node:events";

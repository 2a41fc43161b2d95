/**
 * nodeFileSystem's `statsPerTurn` (what the server uses for --dir): stats of one path share
 * an answer within an event-loop turn and never past it (`stat` and `statNow` alike); without
 * the option every call stats.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { nodeFileSystem } from "../../adapters/node/fs.ts";

const root = mkdtempSync(join(tmpdir(), "stats-per-turn-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("nodeFileSystem statsPerTurn", () => {
  it("shares a stat within a turn and stats again in the next", async () => {
    const fs = nodeFileSystem(root, { statsPerTurn: true });
    writeFileSync(join(root, "a.oci"), "one");
    // The first stat of a path also resolves its real path (the symlink check), which takes
    // turns of its own; after that a stat completes within its turn.
    await fs.stat("a.oci");
    await nextTurn();
    const first = await fs.stat("a.oci");
    expect(first?.size).toBe(3);
    expect(fs.statNow!("a.oci"), "statNow and stat share it").toBe(first);
    rmSync(join(root, "a.oci"));
    expect(await fs.stat("a.oci"), "same turn: the shared answer").toBe(first);
    await nextTurn();
    expect(await fs.stat("a.oci"), "next turn: stats again").toBeUndefined();
    writeFileSync(join(root, "a.oci"), "three");
    expect(await fs.stat("a.oci"), "a miss is shared too").toBeUndefined();
    await nextTurn();
    const [x, y] = [fs.statNow!("a.oci"), fs.statNow!("a.oci")];
    expect(x?.size).toBe(5);
    expect(x, "calls in one turn share one stat").toBe(y);
    writeFileSync(join(root, "a.oci"), "seven..");
    expect(await fs.stat("a.oci"), "still the turn's answer").toBe(x);
    await nextTurn();
    expect((await fs.stat("a.oci"))?.size).toBe(7);
    writeFileSync(join(root, "a.oci"), "three");
    await nextTurn();
    expect((await fs.stat("a.oci"))?.size).toBe(5);
  });

  it("is off by default and on writable trees", async () => {
    for (const fs of [nodeFileSystem(root), nodeFileSystem(root, { statsPerTurn: true, writable: true })]) {
      writeFileSync(join(root, "b.oci"), "one");
      expect((await fs.stat("b.oci"))?.size).toBe(3);
      writeFileSync(join(root, "b.oci"), "four");
      expect((await fs.stat("b.oci"))?.size).toBe(4);
    }
  });
});

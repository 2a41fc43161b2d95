// Per-process counters from /proc (Linux): CPU time, bytes read, peak RSS. A server may be a
// process tree (nginx: master and workers), so every reading sums the tree.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

let ticksPerSecond;
function clockTicks() {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

const read = (path) => {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
};

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parens). */
function statFields(pid) {
  const text = read(`/proc/${pid}/stat`);
  if (!text) return undefined;
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** `pid` and its descendants. */
export function processTree(pid) {
  const parentOf = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields) parentOf.set(Number(entry), Number(fields[1]));
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parentOf) if (parent === tree[i]) tree.push(child);
  }
  return tree.filter((p) => parentOf.has(p));
}

/** User + system CPU seconds used so far by the tree (exited children not counted). */
export function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / clockTicks();
}

/** Bytes the tree asked read() and friends for (`rchar`: page cache hits count too). */
export function readBytes(pids) {
  let total = 0;
  for (const pid of pids) {
    const m = /^rchar:\s+(\d+)/m.exec(read(`/proc/${pid}/io`) ?? "");
    if (m) total += Number(m[1]);
  }
  return total;
}

/** Sum of the tree's peak resident set sizes (VmHWM), in bytes. */
export function peakRss(pids) {
  let total = 0;
  for (const pid of pids) {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(read(`/proc/${pid}/status`) ?? "");
    if (m) total += Number(m[1]) * 1024;
  }
  return total;
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0); false when the kernel refuses. */
export function resetPeakRss(pids) {
  let ok = true;
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, "5");
    } catch {
      ok = false;
    }
  }
  return ok;
}

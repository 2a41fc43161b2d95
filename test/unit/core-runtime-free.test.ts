/**
 * `core/` must run on any runtime with Web APIs: no Node builtins, no `Deno`, `Bun`,
 * `process`, `Buffer` or `require`. Like go-containerregistry's depcheck_test.go, this fails
 * naming the file and line of each offence. Comments are ignored; string contents are ignored
 * for the global checks (a log message may say "process") but import specifiers are checked.
 */
import { readFileSync, readdirSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const CORE = fileURLToPath(new URL("../../core/", import.meta.url));

/**
 * Two views of a source of the same length (newlines kept, so offsets map to lines):
 * `code` with comments blanked, `bare` with comments and string, template and regex text blanked
 * (template `${...}` expressions stay, they are code).
 */
export function blankComments(src: string): { code: string; bare: string } {
  const code = src.split("");
  const bare = src.split("");
  const blank = (out: string[], from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = " ";
  };
  const n = src.length;
  const templates: number[] = []; // brace depth at each open `${`
  let depth = 0;
  let prev = ""; // last significant character, to tell a regex from a division

  // Scans template text from `from`; answers where code resumes.
  const template = (from: number): number => {
    let k = from;
    while (k < n) {
      if (src[k] === "\\") k += 2;
      else if (src[k] === "`") {
        blank(bare, from, k);
        prev = "`";
        return k + 1;
      } else if (src[k] === "$" && src[k + 1] === "{") {
        blank(bare, from, k);
        templates.push(depth);
        depth++;
        prev = "{";
        return k + 2;
      } else k++;
    }
    blank(bare, from, n);
    return n;
  };

  let i = 0;
  while (i < n) {
    const c = src[i];
    const d = src[i + 1];
    if (c === "/" && d === "/") {
      const j = src.indexOf("\n", i) < 0 ? n : src.indexOf("\n", i);
      blank(code, i, j);
      blank(bare, i, j);
      i = j;
    } else if (c === "/" && d === "*") {
      const e = src.indexOf("*/", i + 2);
      const j = e < 0 ? n : e + 2;
      blank(code, i, j);
      blank(bare, i, j);
      i = j;
    } else if (c === "'" || c === '"') {
      let k = i + 1;
      while (k < n && src[k] !== c && src[k] !== "\n") k += src[k] === "\\" ? 2 : 1;
      blank(bare, i + 1, k);
      prev = c;
      i = k + 1;
    } else if (c === "`") {
      i = template(i + 1);
    } else if (c === "}" && templates.length > 0 && templates[templates.length - 1] === depth - 1) {
      templates.pop();
      depth--;
      i = template(i + 1);
    } else if (c === "/" && (prev === "" || "(,=:[!&|?{};+-*%<>~^".includes(prev))) {
      // a regex literal
      let k = i + 1;
      let inClass = false;
      while (k < n && src[k] !== "\n") {
        if (src[k] === "\\") k++;
        else if (src[k] === "[") inClass = true;
        else if (src[k] === "]") inClass = false;
        else if (src[k] === "/" && !inClass) break;
        k++;
      }
      blank(bare, i + 1, k);
      prev = "/";
      i = k + 1;
    } else {
      if (c === "{") depth++;
      else if (c === "}") depth--;
      if (!/\s/.test(c)) prev = c;
      i++;
    }
  }
  return { code: code.join(""), bare: bare.join("") };
}

const RUNTIME_PREFIXES = ["node:", "bun:", "npm:", "jsr:"];

function forbiddenSpecifier(spec: string): string | undefined {
  const prefix = RUNTIME_PREFIXES.find((p) => spec.startsWith(p));
  if (prefix) return `imports runtime-specific module "${spec}"`;
  if (builtinModules.includes(spec) || builtinModules.includes(spec.split("/")[0])) return `imports Node builtin "${spec}"`;
  return undefined;
}

const IMPORTS = [
  // import x from "m", import type { A } from "m", import "m", export * from "m", export { a } from "m"
  /\b(?:import|export)\s+(?:type\s+)?(?:[\w*${}\s,]+?\s+from\s*)?(["'])([^"'\n]+)\1/g,
  // import("m")
  /\bimport\s*\(\s*(["'`])([^"'`\n]+)\1/g,
];

const GLOBALS: [RegExp, string][] = [
  [/(?<![\w$.])(Deno|Bun|process)\s*\./g, "uses the runtime global"],
  [/(?<![\w$])globalThis\s*\.\s*(Deno|Bun|process|Buffer|require)\b/g, "uses the runtime global"],
  [/(?<![\w$.])(Buffer)\b/g, "uses Node's"],
  [/(?<![\w$.])(require)\s*\(/g, "calls"],
  [/(?<![\w$.])(__dirname|__filename)\b/g, "uses CommonJS"],
];

/** Offences in one source, as `line: message`. */
export function runtimeOffences(src: string): { line: number; message: string }[] {
  const { code, bare } = blankComments(src);
  const lineOf = (index: number) => src.slice(0, index).split("\n").length;
  const found: { line: number; message: string }[] = [];
  for (const re of IMPORTS) {
    for (const m of code.matchAll(re)) {
      if (bare[m.index] === " ") continue; // the keyword itself sits inside a string
      const why = forbiddenSpecifier(m[2]);
      if (why) found.push({ line: lineOf(m.index + m[0].lastIndexOf(m[2])), message: why });
    }
  }
  for (const [re, what] of GLOBALS) {
    for (const m of bare.matchAll(re)) found.push({ line: lineOf(m.index), message: `${what} ${m[1]}` });
  }
  return found.sort((a, b) => a.line - b.line);
}

function coreFiles(): string[] {
  return readdirSync(CORE, { recursive: true, encoding: "utf8" })
    .filter((f) => /\.[mc]?tsx?$/.test(f))
    .map((f) => join(CORE, f))
    .sort();
}

describe("core/ is runtime-free", () => {
  it("imports no Node builtins and uses no Deno, Bun, process, Buffer or require", () => {
    const files = coreFiles();
    expect(files.length).toBeGreaterThan(0);
    const offences = files.flatMap((file) =>
      runtimeOffences(readFileSync(file, "utf8")).map(({ line, message }) => `core/${relative(CORE, file)}:${line}: ${message}`),
    );
    expect(offences).toEqual([]);
  });
});

describe("runtimeOffences (the checker itself)", () => {
  it("finds imports and globals, with their lines", () => {
    const src = [
      'import { readFile } from "node:fs/promises";', // 1
      "import path from 'path';", // 2
      "import {", // 3
      "  createHash,", // 4
      '} from "crypto";', // 5
      'export * from "stream";', // 6
      'const z = await import("node:zlib");', // 7
      "const n = process.env.HOME;", // 8
      "const b: Buffer = Buffer.from([1]);", // 9
      "const d = Deno.readFile;", // 10
      'const r = require("x");', // 11
      "const g = globalThis.process;", // 12
      "const t = `${process.pid}`;", // 13
    ].join("\n");
    expect(runtimeOffences(src).map((o) => `${o.line}: ${o.message}`)).toEqual([
      '1: imports runtime-specific module "node:fs/promises"',
      '2: imports Node builtin "path"',
      '5: imports Node builtin "crypto"',
      '6: imports Node builtin "stream"',
      '7: imports runtime-specific module "node:zlib"',
      "8: uses the runtime global process",
      "9: uses Node's Buffer",
      "9: uses Node's Buffer",
      "10: uses the runtime global Deno",
      "11: calls require",
      "12: uses the runtime global process",
      "13: uses the runtime global process",
    ]);
  });

  it("ignores comments, strings, regexes and look-alike names", () => {
    const src = [
      '// import fs from "node:fs"; process.exit()',
      "/* Buffer.from(x)",
      '   require("fs") */',
      'const msg = "process.exit and Buffer.from are not allowed";',
      "const tpl = `Deno.run ${1 + 2} import x from 'fs'`;",
      "const re = /process\\.env|\\/\\/ Buffer/g;",
      "const ratio = a / b / c; // process.",
      "const ab = new ArrayBuffer(8); const sab = SharedArrayBuffer;",
      "const o = { process: 1 }; o.process.toString(); myprocess.x;",
      'import { digest } from "@noble/hashes/sha2.js";',
      'import type { FileSystem } from "./fs.ts";',
      'const u = "https://example.com/path"; import("./lazy.ts");',
    ].join("\n");
    expect(runtimeOffences(src)).toEqual([]);
  });
});

#!/usr/bin/env node
// Prints a bench result (bench/results/*.json) again: `node bench/report.mjs FILE [--markdown]`.
import { readFileSync } from "node:fs";
import { renderMarkdown, renderReport } from "./lib/report.mjs";

const [file, flag] = process.argv.slice(2);
if (!file) {
  console.error("usage: node bench/report.mjs RESULTS.json [--markdown]");
  process.exit(2);
}
const results = JSON.parse(readFileSync(file, "utf8"));
console.log(flag === "--markdown" ? renderMarkdown(results) : renderReport(results));

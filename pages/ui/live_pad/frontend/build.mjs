// npm ci && npm run build: src/ -> build/, which the app serves (and git keeps, so `make run` needs no Node).
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
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
// The runtime itself: the one .wasm the plain (CPU, SIMD) backend loads, next to the script.
copyFileSync("node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm", "build/ort-wasm-simd-threaded.wasm");

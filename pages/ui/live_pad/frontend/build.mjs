// npm ci && npm run build: src/ -> build/, which the app serves (and git keeps, so `make run` needs no Node).
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { brotliCompressSync, constants } from "node:zlib";
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
// The runtime itself: the one .wasm the plain (CPU, SIMD) backend loads, next to the script, as Brotli
// at its strongest (14.2 MB -> 2.3 MB; gzip -9 made 3.7 MB). Browsers' DecompressionStream has no Brotli,
// so the script decodes it with brotli.js (about 130 KB in the bundle). The encoder is deterministic: the
// same runtime gives the same bytes.
const runtime = readFileSync("node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm");
writeFileSync("build/ort-wasm-simd-threaded.wasm.br", brotliCompressSync(runtime, {
  params: {
    [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
    [constants.BROTLI_PARAM_LGWIN]: constants.BROTLI_MAX_WINDOW_BITS,
    [constants.BROTLI_PARAM_SIZE_HINT]: runtime.length,
  },
}));

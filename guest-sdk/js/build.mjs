// Builds a pilot-host plugin written in JavaScript into a WebAssembly component with
// @bytecodealliance/componentize-js (its `http` and `fetch-event` features disabled).
//
//     node build.mjs [--world pilot-control] --wit WIT_DIR --out plugin.wasm plugin.js
//
// The world is `pilot-plugin` unless `--world pilot-control` (a control plugin, whose WIT folder holds
// control.wit and deps/). The entry module imports the SDK as './pilot_sdk.js' (and
// './pilot_control.js'); when its folder has none, the SDK beside this script is used. componentize-js is looked up in $PILOT_JS_TOOLCHAIN/node_modules, then in the
// current folder's and this script's node_modules (`npm install` puts it there).

import { cp, mkdtemp, readdir, rm, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const args = { wit: join(here, 'wit'), out: null, entry: null, world: 'pilot-plugin' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--wit') args.wit = argv[++i];
    else if (argv[i] === '--out') args.out = argv[++i];
    else if (argv[i] === '--world') args.world = argv[++i];
    else args.entry = argv[i];
  }
  if (!args.entry || !args.out) {
    console.error('usage: node build.mjs [--world pilot-plugin|pilot-control] [--wit WIT_DIR] --out plugin.wasm plugin.js');
    process.exit(2);
  }
  if (!['pilot-plugin', 'pilot-control'].includes(args.world)) {
    console.error(`--world is \`${args.world}\`; use \`pilot-plugin\` or \`pilot-control\``);
    process.exit(2);
  }
  return args;
}

async function exists(path) {
  return access(path).then(() => true, () => false);
}

async function loadComponentize() {
  const roots = [process.env.PILOT_JS_TOOLCHAIN, process.cwd(), here].filter(Boolean);
  for (const root of roots) {
    const file = join(root, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js');
    if (await exists(file)) return (await import(pathToFileURL(file).href)).componentize;
  }
  console.error(`@bytecodealliance/componentize-js is not installed (looked in ${roots.join(', ')}); ` +
    'run `npm install` in this folder, or set PILOT_JS_TOOLCHAIN to a folder holding its node_modules');
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const componentize = await loadComponentize();
const source = dirname(resolve(args.entry));
const stage = await mkdtemp(join(tmpdir(), 'pilot-js-build-'));
try {
  for (const name of await readdir(source)) {
    if (name.endsWith('.js') || name.endsWith('.mjs')) await cp(join(source, name), join(stage, name));
  }
  for (const sdk of ['pilot_sdk.js', 'pilot_control.js']) {
    if (!(await exists(join(stage, sdk))) && (await exists(join(here, sdk)))) {
      await cp(join(here, sdk), join(stage, sdk));
    }
  }
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: join(stage, basename(args.entry)),
    witPath: resolve(args.wit),
    worldName: args.world,
    disableFeatures: ['http', 'fetch-event'],
  });
  await writeFile(args.out, component);
  console.log(`${args.out}: ${(component.length / 1e6).toFixed(1)} MB in ${((Date.now() - started) / 1e3).toFixed(1)} s`);
} finally {
  await rm(stage, { recursive: true, force: true });
}

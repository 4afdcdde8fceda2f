// Opens web/index.html on an export in headless Chromium (WebGPU on its CPU backend,
// SwiftShader), waits for the page to finish, and writes what it published (window.kdResult)
// as JSON, with a screenshot of the page. Used by tests/web_page.rs.
//
//   node run-page.mjs --web DIR --export DIR --out FILE [--steps N] [--readbacks N] [--screenshot FILE]
//                     [--timeout S] [--no-webgpu]

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]?.startsWith('--') ? '' : all[i + 1] ?? '']] : pairs), []));
for (const required of ['web', 'export', 'out']) {
  if (!args[required]) throw new Error(`--${required} is required`);
}
const timeout = 1000 * Number(args.timeout ?? 600);

// The page's files under /web/, the export under /export/, on 127.0.0.1 only (WebGPU needs a
// secure context: localhost is one; fetch does not work from file://).
const types = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json' };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const [, root, ...rest] = url.pathname.split('/');
  const dir = { web: args.web, export: args.export }[root];
  const file = dir && path.join(dir, ...rest.map(decodeURIComponent));
  if (!file || !file.startsWith(path.resolve(dir)) && !file.startsWith(dir) || !fs.existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;

// --no-webgpu: a browser without WebGPU, to see the page's message.
const webgpu = args['no-webgpu'] === undefined
  ? ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-webgpu-adapter=swiftshader']
  : ['--disable-features=WebGPU'];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', ...webgpu, '--disable-background-networking', '--disable-component-update',
    '--no-first-run'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1040, height: 1000 } });
  page.on('console', (m) => console.log(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  const steps = (args.steps ? `&steps=${args.steps}` : '') + (args.readbacks ? `&readbacks=${args.readbacks}` : '');
  await page.goto(`http://127.0.0.1:${port}/web/index.html?export=/export/&autostart=1${steps}`);
  await page.waitForFunction(() => window.kdResult || window.kdError, null, { timeout, polling: 500 });
  const { result, error } = await page.evaluate(() => ({ result: window.kdResult, error: window.kdError }));
  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
  if (error) {
    console.log(`the page failed: ${error}`);
    fs.writeFileSync(args.out, JSON.stringify({ error }));
    code = 1;
  } else {
    fs.writeFileSync(args.out, JSON.stringify(result));
    console.log(`the page finished: ${result.steps} steps, ${result.msPerStep.toFixed(1)} ms a step`);
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(code);

// A report's HTML opened in a real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) from its file, with
// JavaScript disabled as a mail reader would: saved as a full-page PNG
// and printed to an A4 PDF. Fails on any console error, page error, or
// request for anything but the file itself (a report is self-contained).
//
//   node report.mjs REPORT.html OUT_DIR NAME
//
// Started by crates/report/tests/report.rs; prints one JSON line:
// {"png": path, "pdf": path, "pdf_bytes": n, "svgs": n, "sections": [...]}.

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [input, outDir, name] = process.argv.slice(2);
if (!input || !outDir || !name) {
  console.error('usage: node report.mjs REPORT.html OUT_DIR NAME');
  process.exit(2);
}
setTimeout(() => {
  console.error('report.mjs: gave up after 90 s');
  process.exit(1);
}, 90_000).unref();

const url = pathToFileURL(path.resolve(input)).href;
const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1000, height: 1400 } });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (r.url() !== url) problems.push(`request for ${r.url()}`);
  });
  await page.goto(url, { waitUntil: 'load' });
  const svgs = await page.locator('svg').count();
  const sections = await page.locator('section[id]').evaluateAll((s) => s.map((e) => e.id));
  fs.mkdirSync(outDir, { recursive: true });
  const png = path.join(outDir, `${name}.png`);
  const pdf = path.join(outDir, `${name}.pdf`);
  await page.screenshot({ path: png, fullPage: true });
  await page.emulateMedia({ media: 'print' });
  await page.pdf({ path: pdf, format: 'A4', printBackground: true, preferCSSPageSize: true });
  const pdfBytes = fs.statSync(pdf).size;
  if (problems.length > 0) {
    console.error(problems.join('\n'));
    process.exit(1);
  }
  console.log(JSON.stringify({ png, pdf, pdf_bytes: pdfBytes, svgs, sections }));
} finally {
  await browser.close();
}

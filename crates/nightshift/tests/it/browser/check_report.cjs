// Opens a night report page in the OS's headless Chromium (through playwright-core) and
// prints what the Rust test asserts on, as one JSON object: page errors, console errors,
// dialogs, timeline lanes and bars, task rows, whether a hostile title became markup, and a
// screenshot (and a full-page one to $FULL_SHOT when set, for looking at the whole page).
// Usage: node check_report.cjs PAGE.html SCREENSHOT.png HOSTILE_TEXT
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

async function main() {
  const [page_file, shot, hostile] = process.argv.slice(2);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 900 },
  });
  const out = { page_errors: [], console_errors: [], dialogs: [], requests: [] };
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => out.page_errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') out.console_errors.push(m.text()); });
    page.on('dialog', async (d) => { out.dialogs.push(d.message()); await d.dismiss(); });
    // Anything but the page itself is an external asset the page must not have.
    page.on('request', (r) => { if (!r.url().startsWith('file:')) out.requests.push(r.url()); });
    await page.goto('file://' + path.resolve(page_file), { waitUntil: 'load' });
    out.title = await page.title();
    out.lanes = await page.locator('svg#timeline g.lane').count();
    out.bars = await page.locator('svg#timeline rect.bar').count();
    out.flags = await page.locator('svg#timeline g.flag-mark').count();
    out.fires = await page.locator('svg#timeline g.fire-mark').count();
    out.task_rows = await page.locator('table#tasks tbody tr.task-row').count();
    out.details = await page.locator('section.task-detail').count();
    out.scripts = await page.locator('script').count();
    out.imgs = await page.locator('img').count();
    out.row_texts = await page.locator('table#tasks tbody tr.task-row').allInnerTexts();
    out.hostile_as_text = hostile
      ? (await page.locator('table#tasks').innerText()).includes(hostile) : null;
    // Every link in the table leads to a section of the same page.
    const links = await page.locator('table#tasks a').evaluateAll(
      (as) => as.map((a) => a.getAttribute('href')));
    out.broken_links = [];
    for (const href of links) {
      if (!href.startsWith('#') || (await page.locator(href).count()) !== 1) out.broken_links.push(href);
    }
    out.diff_added = await page.locator('pre.diff span.add').count();
    await page.screenshot({ path: shot, fullPage: false });
    if (process.env.FULL_SHOT) await page.screenshot({ path: process.env.FULL_SHOT, fullPage: true });
    out.screenshot = shot;
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
